//! Two `Ike` endpoints in a simulated network with simulated time
//! (STYLE.md 1): seeded RNGs, latency, and optional loss, duplication and
//! reordering decided by the network's own seeded RNG. Time jumps to the
//! next delivery or `poll_timeout`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test harness: failing loudly is the point"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ike::wire::{exchange, notify, Message};
use ike::{
    AcceptAll, ChildConfig, ChildSaDecision, ChildSaInfo, ChildSaPolicy, ChildSaRequest, Config,
    DropReason, Error, Event, Ike, IkeSaId, PeerConfig, RetransmitConfig, Transmit,
};
use pad::alg::{DhGroup, Encr, Prf};
use pad::{AuthMethod, EspProposal, Identity, IkeProposal, Mode, TrafficSelector};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;

fn ts(s: &str) -> TrafficSelector {
    s.parse().unwrap()
}

fn child(local: &str, remote: &str) -> ChildConfig {
    ChildConfig {
        esp_proposals: EspProposal::parse_list("aes128gcm16,aes128-sha256").unwrap(),
        local_ts: vec![ts(local)],
        remote_ts: vec![ts(remote)],
        mode: Mode::Tunnel,
        rekey_after: None,
        replay_window: 64,
    }
}

fn peer(
    name: &str,
    local_id: &str,
    remote_id: Option<&str>,
    auth: AuthMethod,
    psk: &[u8],
) -> PeerConfig {
    let id = |s: &str| {
        if s == "null" {
            Identity::Null
        } else {
            Identity::Fqdn(s.into())
        }
    };
    PeerConfig {
        name: name.into(),
        local_id: id(local_id),
        remote_id: remote_id.map(id),
        local_auth: auth,
        remote_auth: auth,
        psk: Some(certs::Psk::new(psk).unwrap()),
        ike_proposals: IkeProposal::parse_list("aes128gcm16-prfsha256-x25519").unwrap(),
        child: child("10.1.0.0/24", "10.2.0.0/24"),
        ike_rekey_after: None,
        dpd_interval: None,
        force_encap: false,
        remote_natt_port: NATT_PORT,
    }
}

/// Initiator's view of the default pair.
fn peer_a() -> PeerConfig {
    peer(
        "to-b",
        "a.example",
        Some("b.example"),
        AuthMethod::Psk,
        b"secret",
    )
}

/// Responder's view.
fn peer_b() -> PeerConfig {
    let mut p = peer(
        "from-a",
        "b.example",
        Some("a.example"),
        AuthMethod::Psk,
        b"secret",
    );
    p.child = child("10.2.0.0/24", "10.1.0.0/24");
    p
}

fn config(peers: Vec<PeerConfig>) -> Config {
    Config {
        ike_port: IKE_PORT,
        natt_port: NATT_PORT,
        peers,
        cookie_threshold: 16,
        max_half_open: 64,
        retransmit: RetransmitConfig {
            initial: Duration::from_millis(500),
            backoff: 2,
            max_timeout: Duration::from_secs(8),
            max_tries: 5,
        },
    }
}

struct Node {
    ike: Ike,
    addr: IpAddr,
    events: Vec<Event>,
}

#[derive(Default, Clone, Copy)]
struct Faults {
    loss: f64,
    dup: f64,
    reorder: f64,
}

struct Sim {
    nodes: [Node; 2],
    rng: ChaCha20Rng,
    start: Instant,
    now: Instant,
    latency: Duration,
    faults: Faults,
    /// (delivery time, sequence) -> (node index, datagram).
    flight: BTreeMap<(Instant, u64), (usize, Transmit)>,
    seq: u64,
    /// Every datagram put on the wire, in order.
    log: Vec<Transmit>,
    /// Silence node i (its datagrams are lost).
    mute: [bool; 2],
}

fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

impl Sim {
    fn new(seed: u64, ca: Config, cb: Config) -> Self {
        Self::with_policy(seed, ca, cb, Box::new(AcceptAll), Box::new(AcceptAll))
    }

    fn with_policy(
        seed: u64,
        ca: Config,
        cb: Config,
        pa: Box<dyn ChildSaPolicy>,
        pb: Box<dyn ChildSaPolicy>,
    ) -> Self {
        let start = Instant::now();
        Self {
            nodes: [
                Node {
                    ike: Ike::new(ca, rng(seed * 3 + 1), pa),
                    addr: A,
                    events: vec![],
                },
                Node {
                    ike: Ike::new(cb, rng(seed * 3 + 2), pb),
                    addr: B,
                    events: vec![],
                },
            ],
            rng: ChaCha20Rng::seed_from_u64(seed * 3 + 3),
            start,
            now: start,
            latency: Duration::from_millis(20),
            faults: Faults::default(),
            flight: BTreeMap::new(),
            seq: 0,
            log: vec![],
            mute: [false; 2],
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < p
    }

    fn collect(&mut self) {
        for i in 0..2 {
            while let Some(t) = self.nodes[i].ike.poll_transmit() {
                self.log.push(t.clone());
                let Some(dst) = self.nodes.iter().position(|n| n.addr == t.remote.ip()) else {
                    continue;
                };
                if self.mute[i] || self.chance(self.faults.loss) {
                    continue;
                }
                let copies = if self.chance(self.faults.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let mut at = self.now + self.latency;
                    if self.chance(self.faults.reorder) {
                        at += Duration::from_millis(u64::from(self.rng.next_u32() % 200));
                    }
                    self.seq += 1;
                    self.flight.insert((at, self.seq), (dst, t.clone()));
                }
            }
            while let Some(e) = self.nodes[i].ike.poll_event() {
                self.nodes[i].events.push(e);
            }
        }
    }

    /// Advance to the next thing that happens; false when nothing will.
    fn step(&mut self) -> bool {
        self.collect();
        let next_flight = self.flight.keys().next().map(|k| k.0);
        let next_timer = self.nodes.iter().filter_map(|n| n.ike.poll_timeout()).min();
        let Some(next) = [next_flight, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some((&k, _)) = self.flight.iter().next() {
            if k.0 > self.now {
                break;
            }
            let (dst, t) = self.flight.remove(&k).unwrap();
            let port = t.remote.port();
            if port == IKE_PORT || port == NATT_PORT {
                self.nodes[dst]
                    .ike
                    .handle_datagram(self.now, t.remote, t.local, &t.data);
            }
        }
        for n in &mut self.nodes {
            if n.ike.poll_timeout().is_some_and(|t| t <= self.now) {
                n.ike.handle_timeout(self.now);
            }
        }
        self.collect();
        true
    }

    /// Run until `done` or nothing is left to happen or `limit` passes.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now > end || !self.step() {
                return done(self);
            }
        }
    }

    /// Run for a while of simulated time.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let next_flight = self.flight.keys().next().map(|k| k.0);
            let next_timer = self.nodes.iter().filter_map(|n| n.ike.poll_timeout()).min();
            match [next_flight, next_timer].into_iter().flatten().min() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = end;
                }
            }
            self.collect();
        }
    }

    fn initiate(&mut self, p: PeerConfig) -> IkeSaId {
        let id = self.nodes[0].ike.initiate(
            self.now,
            p,
            SocketAddr::new(A, IKE_PORT),
            SocketAddr::new(B, IKE_PORT),
        );
        self.collect();
        id
    }

    fn events(&self, i: usize) -> &[Event] {
        &self.nodes[i].events
    }

    fn established(&self, i: usize) -> Vec<ike::IkeSaInfo> {
        self.events(i)
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaEstablished(x) => Some(x.clone()),
                _ => None,
            })
            .collect()
    }

    fn children(&self, i: usize) -> Vec<ChildSaInfo> {
        self.events(i)
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaEstablished(x) => Some(x.clone()),
                _ => None,
            })
            .collect()
    }

    fn failures(&self, i: usize) -> Vec<Error> {
        self.events(i)
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaFailed { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    fn child_failures(&self, i: usize) -> Vec<Error> {
        self.events(i)
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaFailed { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    fn deleted_children(&self, i: usize) -> Vec<(ike::ChildSaId, u32, u32)> {
        self.events(i)
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaDeleted {
                    child,
                    inbound_spi,
                    outbound_spi,
                    ..
                } => Some((*child, *inbound_spi, *outbound_spi)),
                _ => None,
            })
            .collect()
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Handshake to completion on both sides.
    fn handshake(&mut self, p: PeerConfig) -> IkeSaId {
        let id = self.initiate(p);
        let ok = self.run_until(Duration::from_secs(60), |s| {
            !s.children(0).is_empty() && !s.children(1).is_empty()
        });
        assert!(
            ok,
            "handshake did not complete: a={:?} b={:?}",
            self.events(0),
            self.events(1)
        );
        id
    }

    fn responder_sa(&self) -> IkeSaId {
        self.established(1).last().unwrap().id
    }
}

/// The two sides' keys and SPIs cross over.
fn assert_pair(a: &ChildSaInfo, b: &ChildSaInfo) {
    assert_eq!(a.outbound_spi, b.inbound_spi);
    assert_eq!(a.inbound_spi, b.outbound_spi);
    assert_eq!(a.outbound_encr_key, b.inbound_encr_key);
    assert_eq!(a.outbound_integ_key, b.inbound_integ_key);
    assert_eq!(a.inbound_encr_key, b.outbound_encr_key);
    assert_eq!(a.inbound_integ_key, b.outbound_integ_key);
    assert_ne!(a.outbound_encr_key, a.inbound_encr_key);
    assert_eq!(a.encr, b.encr);
    assert_eq!(a.integ, b.integ);
    assert_eq!(a.mode, b.mode);
    assert_eq!(a.local_ts, b.remote_ts);
    assert_eq!(a.remote_ts, b.local_ts);
    assert!(!a.outbound_encr_key.is_empty());
}

fn exchanges_of(log: &[Transmit], ex: u8) -> Vec<&Transmit> {
    log.iter()
        .filter(|t| ike::wire::header_only(&t.data).is_ok_and(|h| h.exchange == ex))
        .collect()
}

mod handshake {
    use super::*;

    fn run_suite(encr: Encr, prf: Prf, dh: DhGroup, auth: AuthMethod, seed: u64) {
        let integ = if encr.is_aead() { "" } else { "-sha256" };
        let s = format!("{}{integ}-{}-{}", encr.name(), prf.name(), dh.name());
        let props = IkeProposal::parse_list(&s).unwrap();
        let mut a = peer_a();
        let mut b = peer_b();
        a.ike_proposals = props.clone();
        b.ike_proposals = props;
        if auth == AuthMethod::Null {
            for p in [&mut a, &mut b] {
                p.local_auth = AuthMethod::Null;
                p.remote_auth = AuthMethod::Null;
                p.local_id = Identity::Null;
                p.remote_id = None;
                p.psk = None;
            }
        }
        let mut sim = Sim::new(seed, config(vec![]), config(vec![b]));
        sim.handshake(a);
        let ea = &sim.established(0)[0];
        let eb = &sim.established(1)[0];
        assert_eq!(ea.suite.encr, encr, "{s}");
        assert_eq!(ea.suite.prf, prf);
        assert_eq!(ea.suite.dh, dh);
        assert_eq!(ea.suite, eb.suite);
        assert_eq!((ea.spi_i, ea.spi_r), (eb.spi_i, eb.spi_r));
        assert!(ea.initiator && !eb.initiator);
        assert_eq!(eb.peer_auth, auth);
        if auth == AuthMethod::Null {
            assert_eq!(eb.peer_id, Identity::Null);
            assert_eq!(ea.peer_id, Identity::Null);
        } else {
            assert_eq!(eb.peer_id, Identity::Fqdn("a.example".into()));
            assert_eq!(ea.peer_id, Identity::Fqdn("b.example".into()));
        }
        assert!(!ea.udp_encap && !ea.nat_local && !ea.nat_remote);
        assert_pair(&sim.children(0)[0], &sim.children(1)[0]);
    }

    #[test]
    fn psk_every_cipher_and_prf() {
        let mut seed = 1;
        for encr in Encr::ALL {
            for prf in [Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512] {
                seed += 1;
                run_suite(encr, prf, DhGroup::X25519, AuthMethod::Psk, seed);
            }
        }
    }

    #[test]
    fn psk_every_group() {
        for (i, dh) in DhGroup::ALL.into_iter().enumerate() {
            run_suite(
                Encr::AesGcm16_256,
                Prf::HmacSha384,
                dh,
                AuthMethod::Psk,
                100 + i as u64,
            );
            run_suite(
                Encr::AesCbc128,
                Prf::HmacSha256,
                dh,
                AuthMethod::Psk,
                200 + i as u64,
            );
        }
    }

    #[test]
    fn null_auth_suites() {
        let mut seed = 300;
        for encr in Encr::ALL {
            for dh in [DhGroup::X25519, DhGroup::Ecp256, DhGroup::Ecp384] {
                seed += 1;
                run_suite(encr, Prf::HmacSha256, dh, AuthMethod::Null, seed);
            }
        }
        run_suite(
            Encr::ChaCha20Poly1305,
            Prf::HmacSha512,
            DhGroup::Modp2048,
            AuthMethod::Null,
            399,
        );
    }

    #[test]
    fn transport_mode_and_esp_integ() {
        let mut a = peer_a();
        let mut b = peer_b();
        for p in [&mut a, &mut b] {
            p.child.mode = Mode::Transport;
            p.child.esp_proposals = EspProposal::parse_list("aes256-sha384").unwrap();
        }
        let mut sim = Sim::new(7, config(vec![]), config(vec![b]));
        sim.handshake(a);
        let (ca, cb) = (&sim.children(0)[0], &sim.children(1)[0]);
        assert_eq!(ca.mode, Mode::Transport);
        assert_eq!(ca.integ, Some(pad::alg::Integ::HmacSha384_192));
        assert_eq!(ca.inbound_integ_key.len(), 48);
        assert_pair(ca, cb);
        assert_eq!(ca.replay_window, 64);
        // Redacted Debug.
        let dbg = format!("{ca:?}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn wrong_psk_fails_on_both_sides() {
        let a = peer(
            "to-b",
            "a.example",
            Some("b.example"),
            AuthMethod::Psk,
            b"wrong",
        );
        let mut sim = Sim::new(8, config(vec![]), config(vec![peer_b()]));
        sim.initiate(a);
        sim.run_until(Duration::from_secs(30), |s| {
            !s.failures(0).is_empty() && !s.failures(1).is_empty()
        });
        assert!(
            matches!(sim.failures(0)[..], [Error::AuthenticationFailed { .. }]),
            "{:?}",
            sim.events(0)
        );
        assert!(
            matches!(sim.failures(1)[..], [Error::AuthenticationFailed { .. }]),
            "{:?}",
            sim.events(1)
        );
        assert_eq!(
            sim.failures(0)[0].notify_type(),
            Some(notify::AUTHENTICATION_FAILED)
        );
        assert!(sim.established(0).is_empty() && sim.established(1).is_empty());
        sim.run_for(Duration::from_secs(60));
        assert_eq!(sim.nodes[0].ike.ike_sa_count(), 0);
        assert_eq!(sim.nodes[1].ike.ike_sa_count(), 0);
    }

    #[test]
    fn unknown_identity_fails() {
        let a = peer(
            "to-b",
            "mallory.example",
            Some("b.example"),
            AuthMethod::Psk,
            b"secret",
        );
        let mut sim = Sim::new(9, config(vec![]), config(vec![peer_b()]));
        sim.initiate(a);
        sim.run_until(Duration::from_secs(30), |s| !s.failures(0).is_empty());
        assert!(matches!(
            sim.failures(0)[..],
            [Error::AuthenticationFailed { .. }]
        ));
        match &sim.failures(1)[..] {
            [Error::AuthenticationFailed { detail }] => {
                assert!(detail.contains("mallory"), "{detail}")
            }
            x => panic!("{x:?}"),
        }
    }

    #[test]
    fn no_proposal_chosen_names_both_sides() {
        let mut a = peer_a();
        a.ike_proposals = IkeProposal::parse_list("aes256-sha512-modp2048").unwrap();
        let mut sim = Sim::new(10, config(vec![]), config(vec![peer_b()]));
        sim.initiate(a);
        sim.run_until(Duration::from_secs(30), |s| !s.failures(0).is_empty());
        let ea = &sim.failures(0)[0];
        assert_eq!(ea.notify_type(), Some(notify::NO_PROPOSAL_CHOSEN));
        assert!(
            ea.to_string().contains("aes256-sha512-prfsha512-modp2048"),
            "{ea}"
        );
        let eb = sim.failures(1)[0].to_string();
        assert!(eb.contains("aes256-sha512-prfsha512-modp2048"), "{eb}");
        assert!(eb.contains("aes128gcm16-prfsha256-x25519"), "{eb}");
        assert_eq!(sim.nodes[1].ike.ike_sa_count(), 0);
    }

    #[test]
    fn invalid_ke_round_trip() {
        let mut a = peer_a();
        a.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-x25519-ecp256").unwrap();
        let mut b = peer_b();
        b.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-ecp256").unwrap();
        let mut sim = Sim::new(11, config(vec![]), config(vec![b]));
        sim.handshake(a);
        assert_eq!(sim.established(0)[0].suite.dh, DhGroup::Ecp256);
        let inits = exchanges_of(&sim.log, exchange::IKE_SA_INIT);
        // request(x25519), INVALID_KE, request(ecp256), response
        assert_eq!(inits.len(), 4);
        let m = Message::parse(&inits[1].data).unwrap();
        let n = ike::wire::find_notify(&m.payloads, notify::INVALID_KE_PAYLOAD).unwrap();
        assert_eq!(n.data, 19u16.to_be_bytes());
    }

    #[test]
    fn invalid_ke_without_common_group_fails() {
        let mut a = peer_a();
        a.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-x25519").unwrap();
        let mut b = peer_b();
        b.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-ecp384").unwrap();
        let mut sim = Sim::new(12, config(vec![]), config(vec![b]));
        sim.initiate(a);
        sim.run_until(Duration::from_secs(30), |s| !s.failures(0).is_empty());
        assert!(matches!(
            sim.failures(0)[..],
            [Error::NoProposalChosen { .. }]
        ));
    }

    #[test]
    fn cookie_round_trip() {
        let mut cb = config(vec![peer_b()]);
        cb.cookie_threshold = 0;
        let mut sim = Sim::new(13, config(vec![]), cb);
        sim.handshake(peer_a());
        let inits = exchanges_of(&sim.log, exchange::IKE_SA_INIT);
        assert_eq!(inits.len(), 4);
        let cookie = Message::parse(&inits[1].data).unwrap();
        let c = ike::wire::find_notify(&cookie.payloads, notify::COOKIE).unwrap();
        let retry = Message::parse(&inits[2].data).unwrap();
        match &retry.payloads[0] {
            ike::wire::Payload::Notify(n) => {
                assert_eq!(n.kind, notify::COOKIE);
                assert_eq!(n.data, c.data);
            }
            p => panic!("first payload {p:?}"),
        }
        assert_eq!(sim.nodes[1].ike.stats().cookies_sent, 1);
    }

    #[test]
    fn nat_t_move_with_force_encap() {
        let mut a = peer_a();
        a.force_encap = true;
        let mut sim = Sim::new(14, config(vec![]), config(vec![peer_b()]));
        sim.handshake(a);
        let auths = exchanges_of(&sim.log, exchange::IKE_AUTH);
        assert_eq!(auths[0].local.port(), NATT_PORT);
        assert_eq!(auths[0].remote.port(), NATT_PORT);
        assert_eq!(auths[1].local.port(), NATT_PORT);
        let (ea, eb) = (&sim.established(0)[0], &sim.established(1)[0]);
        assert!(ea.udp_encap && eb.udp_encap);
        // B thinks A is behind a NAT (the fake source hash).
        assert!(eb.nat_remote && !eb.nat_local);
        let (ca, cb) = (&sim.children(0)[0], &sim.children(1)[0]);
        assert!(ca.udp_encap && cb.udp_encap);
        assert_eq!(ca.remote.port(), NATT_PORT);
        assert_eq!(cb.remote.port(), NATT_PORT);
        assert_eq!(cb.local.port(), NATT_PORT);
    }

    #[test]
    fn lossy_network_still_completes() {
        for seed in 20..26 {
            let mut sim = Sim::new(seed, config(vec![]), config(vec![peer_b()]));
            sim.faults = Faults {
                loss: 0.3,
                dup: 0.2,
                reorder: 0.3,
            };
            sim.handshake(peer_a());
            assert_pair(&sim.children(0)[0], &sim.children(1)[0]);
            assert_eq!(sim.established(1).len(), 1, "seed {seed}");
            assert_eq!(sim.children(1).len(), 1, "seed {seed}");
            assert!(sim.elapsed() < Duration::from_secs(30));
            // Let retransmissions settle: nothing breaks.
            sim.run_for(Duration::from_secs(20));
            assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
        }
    }

    #[test]
    fn silent_peer_times_out() {
        let mut sim = Sim::new(15, config(vec![]), config(vec![peer_b()]));
        sim.mute[1] = true;
        sim.initiate(peer_a());
        sim.run_until(Duration::from_secs(120), |s| !s.failures(0).is_empty());
        assert_eq!(sim.failures(0), vec![Error::Timeout]);
        // 5 tries: 0.5 + 1 + 2 + 4 + 8 s.
        assert_eq!(sim.elapsed(), Duration::from_millis(15_500));
        assert_eq!(sim.nodes[0].ike.stats().retransmits, 4);
        assert_eq!(sim.nodes[0].ike.ike_sa_count(), 0);
        assert_eq!(sim.nodes[0].ike.poll_timeout(), None);
        // B expires its half-open SA.
        sim.run_for(Duration::from_secs(60));
        assert_eq!(sim.nodes[1].ike.ike_sa_count(), 0);
    }

    #[test]
    fn duplicate_requests_answered_from_cache() {
        let mut sim = Sim::new(16, config(vec![]), config(vec![peer_b()]));
        sim.faults.dup = 1.0;
        sim.handshake(peer_a());
        sim.run_for(Duration::from_secs(5));
        let st = sim.nodes[1].ike.stats();
        assert!(st.cached_responses >= 2, "{st:?}");
        assert_eq!(sim.established(1).len(), 1);
        // Duplicated responses are dropped at A.
        assert!(
            sim.nodes[0]
                .ike
                .stats()
                .drops(DropReason::UnexpectedResponse)
                >= 1
        );
    }
}

mod narrowing {
    use super::*;

    #[test]
    fn responder_narrows() {
        let mut a = peer_a();
        a.child = child("10.1.0.0/16", "10.2.0.0/16");
        let mut sim = Sim::new(30, config(vec![]), config(vec![peer_b()]));
        sim.handshake(a);
        let (ca, cb) = (&sim.children(0)[0], &sim.children(1)[0]);
        assert_eq!(ca.local_ts, vec![ts("10.1.0.0/24")]);
        assert_eq!(ca.remote_ts, vec![ts("10.2.0.0/24")]);
        assert_pair(ca, cb);
    }

    struct Refuse;
    impl ChildSaPolicy for Refuse {
        fn authorize(&mut self, _: &ChildSaRequest<'_>) -> ChildSaDecision {
            ChildSaDecision::Refuse
        }
    }

    /// Narrows TSi to one host.
    struct OneHost;
    impl ChildSaPolicy for OneHost {
        fn authorize(&mut self, r: &ChildSaRequest<'_>) -> ChildSaDecision {
            assert!(!r.initiator);
            ChildSaDecision::Accept {
                tsi: vec![ts("10.1.0.7")],
                tsr: r.tsr.to_vec(),
            }
        }
    }

    #[test]
    fn policy_narrows_further() {
        let mut sim = Sim::with_policy(
            31,
            config(vec![]),
            config(vec![peer_b()]),
            Box::new(AcceptAll),
            Box::new(OneHost),
        );
        sim.handshake(peer_a());
        assert_eq!(sim.children(0)[0].local_ts, vec![ts("10.1.0.7")]);
    }

    #[test]
    fn refusal_is_ts_unacceptable_and_ike_sa_stays() {
        let mut sim = Sim::with_policy(
            32,
            config(vec![]),
            config(vec![peer_b()]),
            Box::new(AcceptAll),
            Box::new(Refuse),
        );
        let id = sim.initiate(peer_a());
        sim.run_until(Duration::from_secs(30), |s| !s.child_failures(0).is_empty());
        assert_eq!(sim.child_failures(0), vec![Error::TsUnacceptable]);
        assert_eq!(sim.child_failures(1), vec![Error::TsUnacceptable]);
        assert_eq!(sim.established(0).len(), 1);
        assert!(sim.children(0).is_empty());
        // The IKE SA is up: a liveness check works.
        sim.nodes[0].ike.liveness_check(sim.now, id).unwrap();
        sim.run_for(Duration::from_secs(5));
        assert!(sim.nodes[0].ike.ike_sa(id).unwrap().established);
        assert!(sim.failures(0).is_empty());
    }

    #[test]
    fn disjoint_selectors_refused() {
        let mut a = peer_a();
        a.child = child("10.9.0.0/24", "10.2.0.0/24");
        let mut sim = Sim::new(33, config(vec![]), config(vec![peer_b()]));
        sim.initiate(a);
        sim.run_until(Duration::from_secs(30), |s| !s.child_failures(0).is_empty());
        assert_eq!(sim.child_failures(0), vec![Error::TsUnacceptable]);
        assert_eq!(sim.established(1).len(), 1);
    }
}

mod informational {
    use super::*;

    #[test]
    fn liveness_check_answered() {
        let mut sim = Sim::new(40, config(vec![]), config(vec![peer_b()]));
        let id = sim.handshake(peer_a());
        let before = sim.nodes[1].ike.stats().exchanges;
        sim.nodes[0].ike.liveness_check(sim.now, id).unwrap();
        sim.run_for(Duration::from_secs(2));
        assert_eq!(sim.nodes[1].ike.stats().exchanges, before + 1);
        let infos = exchanges_of(&sim.log, exchange::INFORMATIONAL);
        assert_eq!(infos.len(), 2);
        assert!(sim.failures(0).is_empty());
    }

    #[test]
    fn liveness_timeout_fails_the_sa() {
        let mut sim = Sim::new(41, config(vec![]), config(vec![peer_b()]));
        let id = sim.handshake(peer_a());
        sim.mute[1] = true;
        sim.nodes[0].ike.liveness_check(sim.now, id).unwrap();
        sim.run_until(Duration::from_secs(60), |s| !s.failures(0).is_empty());
        assert_eq!(sim.failures(0), vec![Error::Timeout]);
        // The child went with it.
        assert_eq!(sim.deleted_children(0).len(), 1);
        assert!(sim.nodes[0].ike.ike_sa(id).is_none());
    }

    #[test]
    fn dpd_when_idle() {
        let mut a = peer_a();
        a.dpd_interval = Some(Duration::from_secs(10));
        let mut sim = Sim::new(42, config(vec![]), config(vec![peer_b()]));
        sim.handshake(a);
        sim.run_for(Duration::from_secs(35));
        let infos = exchanges_of(&sim.log, exchange::INFORMATIONAL);
        assert_eq!(infos.len(), 6, "three DPD exchanges in 35 s");
        sim.mute[1] = true;
        sim.run_until(Duration::from_secs(60), |s| !s.failures(0).is_empty());
        assert_eq!(sim.failures(0), vec![Error::Timeout]);
    }

    #[test]
    fn delete_child_both_sides() {
        let mut sim = Sim::new(43, config(vec![]), config(vec![peer_b()]));
        let id = sim.handshake(peer_a());
        let ca = sim.children(0)[0].clone();
        let cb = sim.children(1)[0].clone();
        sim.nodes[0].ike.delete_child(sim.now, id, ca.id).unwrap();
        sim.run_for(Duration::from_secs(2));
        assert_eq!(
            sim.deleted_children(0),
            vec![(ca.id, ca.inbound_spi, ca.outbound_spi)]
        );
        assert_eq!(
            sim.deleted_children(1),
            vec![(cb.id, cb.inbound_spi, cb.outbound_spi)]
        );
        // RFC 7296 1.4.1: the response carries B's inbound SPI.
        let infos = exchanges_of(&sim.log, exchange::INFORMATIONAL);
        assert_eq!(infos.len(), 2);
        assert!(sim.nodes[0].ike.child_sas(id).is_empty());
        assert!(sim.nodes[0].ike.ike_sa(id).unwrap().established);
        assert_eq!(
            sim.nodes[0].ike.delete_child(sim.now, id, ca.id),
            Err(Error::UnknownSa)
        );
    }

    #[test]
    fn delete_ike_takes_children() {
        let mut sim = Sim::new(44, config(vec![]), config(vec![peer_b()]));
        let id = sim.handshake(peer_a());
        let rb = sim.responder_sa();
        sim.nodes[0].ike.delete_ike(sim.now, id).unwrap();
        sim.run_for(Duration::from_secs(2));
        for i in 0..2 {
            assert_eq!(sim.deleted_children(i).len(), 1);
            assert!(sim
                .events(i)
                .iter()
                .any(|e| matches!(e, Event::IkeSaDeleted { .. })));
            assert_eq!(sim.nodes[i].ike.ike_sa_count(), 0);
        }
        assert!(sim.nodes[1].ike.ike_sa(rb).is_none());
        assert_eq!(
            sim.nodes[0].ike.liveness_check(sim.now, id),
            Err(Error::UnknownSa)
        );
    }

    #[test]
    fn garbage_and_forgeries_are_dropped() {
        let mut sim = Sim::new(45, config(vec![]), config(vec![peer_b()]));
        sim.handshake(peer_a());
        let auth = exchanges_of(&sim.log, exchange::IKE_AUTH)[0].clone();
        let b = &mut sim.nodes[1].ike;
        let now = sim.now;
        b.handle_datagram(now, auth.remote, auth.local, b"garbage");
        // A replayed IKE_AUTH request is answered from the cache...
        b.handle_datagram(now, auth.remote, auth.local, &auth.data);
        assert_eq!(b.stats().cached_responses, 1);
        // ...a tampered one is dropped silently (integrity).
        let mut bad = auth.data.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        b.handle_datagram(now, auth.remote, auth.local, &bad);
        assert_eq!(b.stats().drops(DropReason::Malformed), 1);
        assert_eq!(b.stats().drops(DropReason::IntegrityFailed), 1);
        while b.poll_transmit().is_some() {}
    }
}

mod create_child {
    use super::*;

    fn up(seed: u64) -> (Sim, IkeSaId) {
        let mut sim = Sim::new(seed, config(vec![]), config(vec![peer_b()]));
        let id = sim.handshake(peer_a());
        (sim, id)
    }

    #[test]
    fn new_child_with_pfs() {
        let mut b = peer_b();
        b.child.esp_proposals = EspProposal::parse_list("aes128gcm16-x25519,aes128gcm16").unwrap();
        let mut sim = Sim::new(50, config(vec![]), config(vec![b]));
        let id = sim.handshake(peer_a());
        assert_eq!(sim.children(0)[0].pfs, None);
        let mut c = child("10.1.0.0/24", "10.2.0.0/24");
        c.esp_proposals = EspProposal::parse_list("aes256gcm16-ecp256").unwrap();
        // B's policy must allow PFS with ecp256 too.
        sim.nodes[0].ike.create_child(sim.now, id, c).unwrap();
        sim.run_until(Duration::from_secs(10), |s| {
            s.children(0).len() == 2 || !s.child_failures(0).is_empty()
        });
        // B's ChildConfig has no ecp256 PFS proposal: refused.
        match &sim.child_failures(0)[..] {
            [e @ Error::NoProposalChosen { .. }] => {
                assert!(e.to_string().contains("aes256gcm16-ecp256"), "{e}")
            }
            x => panic!("{x:?}"),
        }

        let mut c = child("10.1.0.0/24", "10.2.0.0/24");
        c.esp_proposals = EspProposal::parse_list("aes128gcm16-x25519,aes128gcm16").unwrap();
        sim.nodes[0].ike.create_child(sim.now, id, c).unwrap();
        sim.run_until(Duration::from_secs(10), |s| s.children(0).len() == 2);
        let (ca, cb) = (&sim.children(0)[1], &sim.children(1)[1]);
        assert_eq!(ca.pfs, Some(DhGroup::X25519));
        assert_eq!(cb.pfs, Some(DhGroup::X25519));
        assert_pair(ca, cb);
        assert_eq!(ca.replaces, None);
        assert_ne!(ca.inbound_spi, sim.children(0)[0].inbound_spi);
    }

    #[test]
    fn child_rekey_replaces_and_deletes_old() {
        let (mut sim, id) = up(51);
        let old_a = sim.children(0)[0].clone();
        let old_b = sim.children(1)[0].clone();
        sim.nodes[0].ike.rekey_child(sim.now, id, old_a.id).unwrap();
        sim.run_for(Duration::from_secs(3));
        let (na, nb) = (&sim.children(0)[1], &sim.children(1)[1]);
        assert_eq!(na.replaces, Some(old_a.id));
        assert_eq!(nb.replaces, Some(old_b.id));
        assert_pair(na, nb);
        assert_ne!(na.outbound_encr_key, old_a.outbound_encr_key);
        assert_eq!(
            sim.deleted_children(0),
            vec![(old_a.id, old_a.inbound_spi, old_a.outbound_spi)]
        );
        assert_eq!(
            sim.deleted_children(1),
            vec![(old_b.id, old_b.inbound_spi, old_b.outbound_spi)]
        );
        assert_eq!(sim.nodes[0].ike.child_sas(id).len(), 1);
    }

    #[test]
    fn child_rekey_timer() {
        let mut a = peer_a();
        a.child.rekey_after = Some(Duration::from_secs(100));
        let mut sim = Sim::new(52, config(vec![]), config(vec![peer_b()]));
        sim.handshake(a);
        sim.run_for(Duration::from_secs(250));
        // Rekeyed at ~90-100 s and again at ~180-200 s.
        assert_eq!(sim.children(0).len(), 3);
        assert_eq!(sim.deleted_children(1).len(), 2);
        let last = sim.children(0)[2].clone();
        let lb = sim.children(1)[2].clone();
        assert_pair(&last, &lb);
    }

    #[test]
    fn rekey_collision_keeps_exactly_one() {
        for seed in 53..58 {
            let (mut sim, id) = up(seed);
            let rb = sim.responder_sa();
            let (ca, cb) = (sim.children(0)[0].clone(), sim.children(1)[0].clone());
            let now = sim.now;
            sim.nodes[0].ike.rekey_child(now, id, ca.id).unwrap();
            sim.nodes[1].ike.rekey_child(now, rb, cb.id).unwrap();
            sim.run_for(Duration::from_secs(5));
            let la = sim.nodes[0].ike.child_sas(id);
            let lb = sim.nodes[1].ike.child_sas(rb);
            assert_eq!(la.len(), 1, "seed {seed}: {:?}", sim.events(0));
            assert_eq!(lb.len(), 1, "seed {seed}: {:?}", sim.events(1));
            assert_pair(&la[0], &lb[0]);
            assert_ne!(la[0].id, ca.id);
            // Two new SAs were created on each side, three deleted
            // in total per side: the old one and the redundant one.
            assert_eq!(sim.children(0).len(), 3);
            assert_eq!(sim.deleted_children(0).len(), 2);
            assert_eq!(sim.deleted_children(1).len(), 2);
            assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
        }
    }

    #[test]
    fn ike_rekey_moves_children() {
        let (mut sim, id) = up(59);
        let rb = sim.responder_sa();
        let old_info = sim.nodes[0].ike.ike_sa(id).unwrap();
        sim.nodes[0].ike.rekey_ike(sim.now, id).unwrap();
        sim.run_for(Duration::from_secs(15));
        let rekeyed = |i: usize| {
            sim.events(i).iter().find_map(|e| match e {
                Event::IkeSaRekeyed { old, new } => Some((*old, *new)),
                _ => None,
            })
        };
        let (oa, na) = rekeyed(0).unwrap();
        let (ob, nb) = rekeyed(1).unwrap();
        assert_eq!((oa, ob), (id, rb));
        assert!(sim.nodes[0].ike.ike_sa(id).is_none());
        assert!(sim.nodes[1].ike.ike_sa(rb).is_none());
        let ia = sim.nodes[0].ike.ike_sa(na).unwrap();
        let ib = sim.nodes[1].ike.ike_sa(nb).unwrap();
        assert_eq!((ia.spi_i, ia.spi_r), (ib.spi_i, ib.spi_r));
        assert_ne!(ia.spi_i, old_info.spi_i);
        assert!(ia.initiator && ia.established && ib.established);
        assert_eq!(ib.peer_id, Identity::Fqdn("a.example".into()));
        assert_eq!(sim.nodes[0].ike.child_sas(na).len(), 1);
        assert_eq!(sim.nodes[1].ike.child_sas(nb).len(), 1);
        assert!(sim.deleted_children(0).is_empty());
        assert!(!sim
            .events(0)
            .iter()
            .any(|e| matches!(e, Event::IkeSaDeleted { .. })));
        // The new SA works: rekey a child on it, from the responder side.
        let cb = sim.nodes[1].ike.child_sas(nb)[0].clone();
        sim.nodes[1].ike.rekey_child(sim.now, nb, cb.id).unwrap();
        sim.run_for(Duration::from_secs(3));
        let la = sim.nodes[0].ike.child_sas(na);
        let lb = sim.nodes[1].ike.child_sas(nb);
        assert_eq!(la.len(), 1);
        assert_pair(&la[0], &lb[0]);
        assert_eq!(sim.nodes[0].ike.ike_sa_count(), 1);
        assert_eq!(sim.nodes[1].ike.ike_sa_count(), 1);
    }

    #[test]
    fn ike_rekey_timer() {
        let mut a = peer_a();
        a.ike_rekey_after = Some(Duration::from_secs(60));
        let mut sim = Sim::new(60, config(vec![]), config(vec![peer_b()]));
        sim.handshake(a);
        sim.run_for(Duration::from_secs(130));
        let n = sim
            .events(0)
            .iter()
            .filter(|e| matches!(e, Event::IkeSaRekeyed { .. }))
            .count();
        assert_eq!(n, 2);
        assert_eq!(sim.nodes[0].ike.ike_sa_count(), 1);
        assert_eq!(sim.nodes[1].ike.ike_sa_count(), 1);
        assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
    }

    #[test]
    fn operations_on_unknown_or_unready_sas() {
        let mut sim = Sim::new(61, config(vec![]), config(vec![peer_b()]));
        let id = sim.initiate(peer_a());
        let c = child("10.1.0.0/24", "10.2.0.0/24");
        assert_eq!(
            sim.nodes[0].ike.create_child(sim.now, id, c.clone()),
            Err(Error::NotEstablished)
        );
        assert_eq!(
            sim.nodes[0].ike.create_child(sim.now, IkeSaId(999), c),
            Err(Error::UnknownSa)
        );
        assert_eq!(
            sim.nodes[0].ike.rekey_ike(sim.now, IkeSaId(999)),
            Err(Error::UnknownSa)
        );
    }
}

mod robustness {
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
}

mod collisions {
    use super::*;

    #[test]
    fn simultaneous_ike_rekey() {
        let mut sim = Sim::new(80, config(vec![]), config(vec![peer_b()]));
        let id = sim.handshake(peer_a());
        let rb = sim.responder_sa();
        let now = sim.now;
        sim.nodes[0].ike.rekey_ike(now, id).unwrap();
        sim.nodes[1].ike.rekey_ike(now, rb).unwrap();
        sim.run_for(Duration::from_secs(30));
        assert_eq!(sim.nodes[0].ike.ike_sa_count(), 1);
        assert_eq!(sim.nodes[1].ike.ike_sa_count(), 1);
        let a = sim.nodes[0].ike.ike_sas().pop().unwrap();
        let b = sim.nodes[1].ike.ike_sas().pop().unwrap();
        assert_eq!((a.spi_i, a.spi_r), (b.spi_i, b.spi_r));
        assert_eq!(sim.nodes[0].ike.child_sas(a.id).len(), 1);
        assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
        // Still works.
        sim.nodes[0].ike.liveness_check(sim.now, a.id).unwrap();
        sim.run_for(Duration::from_secs(3));
        assert!(sim.failures(0).is_empty());
    }

    #[test]
    fn simultaneous_child_delete() {
        let mut sim = Sim::new(81, config(vec![]), config(vec![peer_b()]));
        let id = sim.handshake(peer_a());
        let rb = sim.responder_sa();
        let (ca, cb) = (sim.children(0)[0].clone(), sim.children(1)[0].clone());
        let now = sim.now;
        sim.nodes[0].ike.delete_child(now, id, ca.id).unwrap();
        sim.nodes[1].ike.delete_child(now, rb, cb.id).unwrap();
        sim.run_for(Duration::from_secs(3));
        assert_eq!(sim.deleted_children(0).len(), 1);
        assert_eq!(sim.deleted_children(1).len(), 1);
        assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
    }

    #[test]
    fn child_invalid_ke_retry() {
        let mut a = peer_a();
        a.child.esp_proposals = EspProposal::parse_list("aes128gcm16-ecp256-x25519").unwrap();
        let mut b = peer_b();
        b.child.esp_proposals = EspProposal::parse_list("aes128gcm16-x25519").unwrap();
        let mut sim = Sim::new(82, config(vec![]), config(vec![b]));
        let id = sim.handshake(a.clone());
        sim.nodes[0].ike.create_child(sim.now, id, a.child).unwrap();
        sim.run_until(Duration::from_secs(10), |s| s.children(0).len() == 2);
        let (ca, cb) = (&sim.children(0)[1], &sim.children(1)[1]);
        assert_eq!(ca.pfs, Some(DhGroup::X25519));
        assert_pair(ca, cb);
        assert!(sim.child_failures(0).is_empty());
    }
}
