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
        credentials: Default::default(),
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
        fragmentation: Default::default(),
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
    /// Node 0 behind a NAT that maps its source port (inside, outside).
    nat_a: Option<(u16, u16)>,
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
            nat_a: None,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < p
    }

    fn collect(&mut self) {
        for i in 0..2 {
            while let Some(mut t) = self.nodes[i].ike.poll_transmit() {
                self.log.push(t.clone());
                if let Some((inside, outside)) = self.nat_a.filter(|_| i == 0) {
                    if t.local.port() == inside {
                        t.local.set_port(outside);
                    }
                }
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
            let (dst, mut t) = self.flight.remove(&k).unwrap();
            if let Some((inside, outside)) = self.nat_a.filter(|_| dst == 0) {
                if t.remote.port() == outside {
                    t.remote.set_port(inside);
                }
            }
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

    /// Child SA `id` of node `i` as installed (with its keys: `child_sas`
    /// hands them out no more).
    fn installed(&self, i: usize, id: ike::ChildSaId) -> ChildSaInfo {
        let c = self
            .children(i)
            .into_iter()
            .find(|c| c.id == id)
            .expect("child SA established");
        assert!(self.nodes[i]
            .ike
            .child_sas(c.ike_sa)
            .iter()
            .all(|k| k.outbound_encr_key.is_empty() && k.inbound_encr_key.is_empty()));
        c
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

#[path = "sim/handshake.rs"]
mod handshake;

#[path = "sim/narrowing.rs"]
mod narrowing;

#[path = "sim/informational.rs"]
mod informational;

#[path = "sim/create_child.rs"]
mod create_child;

#[path = "sim/robustness.rs"]
mod robustness;

#[path = "sim/collisions.rs"]
mod collisions;

#[path = "sim/certs.rs"]
mod certs_auth;

#[path = "sim/export.rs"]
mod export;
