//! One full in-memory IKEv2 handshake (IKE_SA_INIT + IKE_AUTH with the first
//! child SA) between two `Ike` state machines, datagrams handed over
//! directly: the protocol and crypto cost of setting up an IKE SA, without
//! sockets. PSK, X25519, AES-GCM as in the speed issue's handshake target;
//! NULL auth and MODP-2048 for comparison.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "a benchmark: literals known to parse, failure is loud"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ike::{AcceptAll, ChildConfig, Config, Event, Ike, PeerConfig, RetransmitConfig};
use pad::{AuthMethod, EspProposal, Identity, IkeProposal, Mode};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

fn peer(auth: AuthMethod, ike: &str, local: &str, remote: &str) -> PeerConfig {
    PeerConfig {
        name: "bench".into(),
        local_id: if auth == AuthMethod::Null {
            Identity::Null
        } else {
            Identity::Fqdn("bench.example".into())
        },
        remote_id: None,
        local_auth: auth,
        remote_auth: auth,
        psk: Some(certs::Psk::new(b"bench secret").unwrap()),
        credentials: Default::default(),
        ike_proposals: IkeProposal::parse_list(ike).unwrap(),
        child: ChildConfig {
            esp_proposals: EspProposal::parse_list("aes128gcm16").unwrap(),
            local_ts: vec![local.parse().unwrap()],
            remote_ts: vec![remote.parse().unwrap()],
            mode: Mode::Tunnel,
            rekey_after: None,
            replay_window: 1024,
        },
        ike_rekey_after: None,
        dpd_interval: None,
        force_encap: false,
        remote_natt_port: 4500,
    }
}

fn config(peers: Vec<PeerConfig>) -> Config {
    Config {
        ike_port: 500,
        natt_port: 4500,
        peers,
        cookie_threshold: 1 << 20,
        max_half_open: 1 << 20,
        retransmit: RetransmitConfig::default(),
        fragmentation: Default::default(),
    }
}

/// Run one handshake to completion; returns the number of datagrams.
fn handshake(seed: u64, auth: AuthMethod, proposal: &str) -> usize {
    let now = Instant::now();
    let mut a = Ike::new(
        config(vec![]),
        Box::new(ChaCha20Rng::seed_from_u64(seed)),
        Box::new(AcceptAll),
    );
    let mut b = Ike::new(
        config(vec![peer(auth, proposal, "10.2.0.0/24", "10.1.0.0/24")]),
        Box::new(ChaCha20Rng::seed_from_u64(seed ^ 0x5555)),
        Box::new(AcceptAll),
    );
    a.initiate(
        now,
        peer(auth, proposal, "10.1.0.0/24", "10.2.0.0/24"),
        SocketAddr::new(A, 500),
        SocketAddr::new(B, 500),
    );
    let (mut up_a, mut up_b, mut n) = (false, false, 0);
    for _ in 0..16 {
        while let Some(t) = a.poll_transmit() {
            n += 1;
            b.handle_datagram(now, t.remote, t.local, &t.data);
        }
        while let Some(t) = b.poll_transmit() {
            n += 1;
            a.handle_datagram(now, t.remote, t.local, &t.data);
        }
        while let Some(e) = a.poll_event() {
            up_a |= matches!(e, Event::ChildSaEstablished(_));
        }
        while let Some(e) = b.poll_event() {
            up_b |= matches!(e, Event::ChildSaEstablished(_));
        }
        if up_a && up_b {
            return n;
        }
    }
    panic!("handshake did not complete");
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ike_handshake");
    g.measurement_time(Duration::from_secs(5));
    for (name, auth, proposal) in [
        (
            "psk_x25519_aes128gcm",
            AuthMethod::Psk,
            "aes128gcm16-prfsha256-x25519",
        ),
        (
            "null_x25519_aes128gcm",
            AuthMethod::Null,
            "aes128gcm16-prfsha256-x25519",
        ),
        (
            "psk_ecp256_aes256gcm",
            AuthMethod::Psk,
            "aes256gcm16-prfsha384-ecp256",
        ),
        (
            "psk_modp2048_aes128cbc",
            AuthMethod::Psk,
            "aes128-sha256-modp2048",
        ),
    ] {
        let mut seed = 0u64;
        g.bench_function(name, |bch| {
            bch.iter(|| {
                seed += 1;
                handshake(seed, auth, proposal)
            });
        });
    }
    g.finish();
}

/// The responder's X25519 work per handshake (one key pair, one agreement),
/// x25519-dalek (what `ike` uses: seedable) against ring (system RNG only),
/// same run.
fn x25519(c: &mut Criterion) {
    let mut g = c.benchmark_group("x25519_keygen_agree");
    g.measurement_time(Duration::from_secs(3));
    let peer = {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let s = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
        *x25519_dalek::PublicKey::from(&s).as_bytes()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    g.bench_function("dalek", |b| {
        b.iter(|| {
            let s = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
            let p = x25519_dalek::PublicKey::from(&s);
            let k = s.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
            (p.as_bytes()[0], k.as_bytes()[0])
        });
    });
    let sys = ring::rand::SystemRandom::new();
    g.bench_function("ring", |b| {
        b.iter(|| {
            let s = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &sys)
                .unwrap();
            let p = s.compute_public_key().unwrap();
            let k = ring::agreement::agree_ephemeral(
                s,
                &ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, peer),
                |k| k[0],
            )
            .unwrap();
            (p.as_ref()[0], k)
        });
    });
    g.finish();
}

/// The responder's cost per IKE_SA_INIT request while cookies are demanded
/// (RFC 7296 2.6), in memory: the full path (`handle_datagram`: whole
/// message parsed, answer built as a `Message`, queued, taken with
/// `poll_transmit`) against the stateless path the driver takes under a
/// flood (`answer_with_cookie`: generic payload headers only, the answer
/// written into a reused buffer).
fn cookie(c: &mut Criterion) {
    let now = Instant::now();
    let (a, b) = (SocketAddr::new(A, 500), SocketAddr::new(B, 500));
    let mut init = Ike::new(
        config(vec![]),
        Box::new(ChaCha20Rng::seed_from_u64(1)),
        Box::new(AcceptAll),
    );
    let proposal = "aes128gcm16-prfsha256-x25519";
    init.initiate(
        now,
        peer(AuthMethod::Psk, proposal, "10.1.0.0/24", "10.2.0.0/24"),
        a,
        b,
    );
    let req = init.poll_transmit().unwrap().data;
    let responder = || {
        let mut cfg = config(vec![peer(
            AuthMethod::Psk,
            proposal,
            "10.2.0.0/24",
            "10.1.0.0/24",
        )]);
        cfg.cookie_threshold = 0;
        Ike::new(
            cfg,
            Box::new(ChaCha20Rng::seed_from_u64(2)),
            Box::new(AcceptAll),
        )
    };
    let mut g = c.benchmark_group("ike_sa_init_cookie");
    g.measurement_time(Duration::from_secs(3));
    let mut full = responder();
    g.bench_function("full_path", |bch| {
        bch.iter(|| {
            full.handle_datagram(now, b, a, &req);
            full.poll_transmit().unwrap().data.len()
        });
    });
    let mut fast = responder();
    let mut out = Vec::with_capacity(128);
    g.bench_function("stateless_path", |bch| {
        bch.iter(|| {
            assert!(fast.answer_with_cookie(now, a, &req, &mut out));
            out.len()
        });
    });
    g.finish();
}

criterion_group!(benches, bench, x25519, cookie);
criterion_main!(benches);
