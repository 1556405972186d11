//! Malformed and hostile input, state bounds (RFC 7296 2.1, 2.5, 2.6).

use super::*;
use ike::wire::{flags, Header, Payload};

fn init_request(spi_i: u64, extra: Vec<Payload>) -> Vec<u8> {
    // A real IKE_SA_INIT from an initiator, with extra payloads added.
    let mut sim = Sim::new(70, config(vec![]), config(vec![]));
    sim.mute[0] = true;
    sim.initiate(peer_a());
    let mut m = Message::parse(&sim.log[0].data).unwrap();
    m.header.spi_i = spi_i;
    m.payloads.extend(extra);
    m.emit()
}

#[test]
fn unsupported_critical_payload() {
    let mut b = Ike::new(config(vec![peer_b()]), rng(71), Box::new(AcceptAll));
    let now = Instant::now();
    let (la, lb) = (SocketAddr::new(A, IKE_PORT), SocketAddr::new(B, IKE_PORT));
    let req = init_request(
        7,
        vec![Payload::Unknown {
            kind: 200,
            critical: true,
            data: vec![1, 2],
        }],
    );
    b.handle_datagram(now, lb, la, &req);
    let t = b.poll_transmit().unwrap();
    let m = Message::parse(&t.data).unwrap();
    let n = ike::wire::find_notify(&m.payloads, notify::UNSUPPORTED_CRITICAL_PAYLOAD).unwrap();
    assert_eq!(n.data, vec![200]);
    assert_eq!(b.ike_sa_count(), 0);
    // Not critical: ignored (RFC 7296 2.5).
    let req = init_request(
        8,
        vec![Payload::Unknown {
            kind: 200,
            critical: false,
            data: vec![1, 2],
        }],
    );
    b.handle_datagram(now, lb, la, &req);
    assert_eq!(b.ike_sa_count(), 1);
}

#[test]
fn half_open_bounded_and_init_duplicates_cached() {
    let mut cb = config(vec![peer_b()]);
    cb.cookie_threshold = 1000;
    cb.max_half_open = 10;
    let mut b = Ike::new(cb, rng(72), Box::new(AcceptAll));
    let now = Instant::now();
    let (la, lb) = (SocketAddr::new(A, IKE_PORT), SocketAddr::new(B, IKE_PORT));
    let first = init_request(1000, vec![]);
    b.handle_datagram(now, lb, la, &first);
    let r1 = b.poll_transmit().unwrap();
    // RFC 7296 2.1: the same request again gets the same answer.
    b.handle_datagram(now, lb, la, &first);
    assert_eq!(b.poll_transmit().unwrap().data, r1.data);
    assert_eq!(b.ike_sa_count(), 1);
    for i in 0..50 {
        b.handle_datagram(now, lb, la, &init_request(2000 + i, vec![]));
        while b.poll_transmit().is_some() {}
    }
    assert_eq!(b.ike_sa_count(), 10);
    assert_eq!(b.stats().drops(DropReason::HalfOpenLimit), 41);
    // Half-open SAs expire.
    b.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(b.ike_sa_count(), 0);
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn random_datagrams_never_panic() {
    let mut b = Ike::new(config(vec![peer_b()]), rng(73), Box::new(AcceptAll));
    let mut r = ChaCha20Rng::seed_from_u64(74);
    let now = Instant::now();
    let (la, lb) = (SocketAddr::new(A, IKE_PORT), SocketAddr::new(B, IKE_PORT));
    let valid = init_request(9, vec![]);
    for i in 0..3000 {
        let mut d = if i % 2 == 0 {
            valid.clone()
        } else {
            let mut h = Header {
                spi_i: r.next_u64(),
                spi_r: 0,
                next_payload: 0,
                version: 0x20,
                exchange: 34 + (r.next_u32() % 4) as u8,
                flags: flags::INITIATOR,
                message_id: r.next_u32() % 3,
                length: 0,
            }
            .to_bytes()
            .to_vec();
            let n = (r.next_u32() % 300) as usize;
            h.extend((0..n).map(|_| r.next_u32() as u8));
            h
        };
        let flips = r.next_u32() % 4;
        for _ in 0..flips {
            let n = d.len();
            let at = (r.next_u32() as usize) % n;
            d[at] ^= 1 << (r.next_u32() % 8);
        }
        if r.next_u32() % 5 == 0 {
            d.truncate((r.next_u32() as usize) % d.len());
        }
        b.handle_datagram(now, lb, la, &d);
        while b.poll_transmit().is_some() {}
        while b.poll_event().is_some() {}
    }
    assert!(b.ike_sa_count() <= 64);
    assert!(b.stats().total_drops() > 0);
}

#[test]
fn unknown_ke_group_gets_invalid_ke() {
    let mut b = Ike::new(config(vec![peer_b()]), rng(75), Box::new(AcceptAll));
    let (la, lb) = (SocketAddr::new(A, IKE_PORT), SocketAddr::new(B, IKE_PORT));
    let mut m = Message::parse(&init_request(11, vec![])).unwrap();
    for p in &mut m.payloads {
        if let Payload::Ke { group, .. } = p {
            *group = 99;
        }
    }
    b.handle_datagram(Instant::now(), lb, la, &m.emit());
    let r = Message::parse(&b.poll_transmit().unwrap().data).unwrap();
    let n = ike::wire::find_notify(&r.payloads, notify::INVALID_KE_PAYLOAD).unwrap();
    assert_eq!(n.data, 31u16.to_be_bytes());
    assert_eq!(b.ike_sa_count(), 0);
}
