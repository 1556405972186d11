//! The per-packet maps against the latches themselves: a long random
//! sequence of operations, after each of which the 5-tuple maps' gates must
//! equal their latches' states, and every per-packet answer must equal the
//! one computed the slow way from the latch states (the check as it was
//! before the gates existed).

use super::*;
use crate::{ConnectionRequest, ListenerRequest, NatInfo, PeerAuth, PeerIdentity};
use pad::alg::Encr;
use pad::{Identity, KeyFingerprint, Mode, PolicyConfig};

const POLICY: &str = r#"
[[peer]]
name = "btns"
id = "any"
auth = ["null", "raw_public_key"]
child_sa = ["10.0.0.0/16", "fd00::/64"]
btns = true

[[policy]]
name = "web"
proto = "tcp"
local_port = 80
action = "bypass"

[[policy]]
name = "default"
action = "protect"
"#;

fn table() -> LatchTable {
    let c = PolicyConfig::from_toml(POLICY, "policy.toml").unwrap();
    LatchTable::new(c.pad, c.spd, LatchConfig::default())
}

fn peer(n: u8) -> PeerIdentity {
    PeerIdentity {
        asserted: Identity::Null,
        authenticated: None,
        auth: PeerAuth::Btns {
            fingerprint: KeyFingerprint([n; 32]),
            key_der: vec![0x30, n],
        },
        pad_entry: "btns".into(),
    }
}

fn qop(bits: u16) -> SaQop {
    SaQop {
        mode: Mode::Transport,
        encr: Some(if bits == 256 {
            Encr::AesGcm16_256
        } else {
            Encr::AesGcm16_128
        }),
        integ: None,
        esn: false,
        replay_window: 64,
    }
}

fn five(local: &str, remote: &str) -> FiveTuple {
    FiveTuple::new(6, local.parse().unwrap(), remote.parse().unwrap())
}

fn flows() -> Vec<FiveTuple> {
    vec![
        five("10.0.0.1:443", "10.0.0.9:5000"),
        five("10.0.0.1:443", "10.0.0.9:5001"),
        five("10.0.0.1:443", "10.0.0.10:5000"),
        five("10.0.0.1:80", "10.0.0.9:6000"),
        five("10.0.0.2:443", "10.0.0.9:5000"),
        five("[fd00::1]:443", "[fd00::9]:5000"),
        five("[fd00::1]:80", "[fd00::9]:6000"),
        FiveTuple::new(
            17,
            "10.0.0.1:443".parse().unwrap(),
            "10.0.0.9:5000".parse().unwrap(),
        ),
    ]
}

/// SA `tag`: peer, protection and selectors chosen by the tag's bits.
fn sa(tag: SaTag, r: u64) -> ChildSaDescriptor {
    let v6 = r & 1 == 1;
    let (local, remote) = match (v6, r >> 1 & 1 == 1) {
        (false, false) => ("10.0.0.1", "10.0.0.9"),
        (false, true) => ("10.0.0.0/24", "10.0.0.0/24"),
        (true, false) => ("fd00::1", "fd00::9"),
        (true, true) => ("fd00::/64", "fd00::/64"),
    };
    ChildSaDescriptor {
        id: tag,
        peer: peer(u8::from(r >> 2 & 1 == 1) + 1),
        protection: qop(if r >> 3 & 1 == 1 { 256 } else { 128 }),
        local_ts: vec![local.parse().unwrap()].into(),
        remote_ts: vec![remote.parse().unwrap()].into(),
        nat: NatInfo::default(),
        spi_in: 1,
        spi_out: 2,
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl LatchTable {
    /// The connection latch of `five`, found by scanning every latch.
    fn scan_five(&self, five: &FiveTuple) -> Option<&Latch> {
        let mut found = self
            .latches
            .values()
            .filter(|l| l.tuple == Tuple::Five(*five))
            .map(|l| &**l);
        let l = found.next();
        assert!(found.next().is_none(), "one connection latch per 5-tuple");
        l
    }

    /// The check computed from the latch states alone.
    fn check_reference(&self, five: &FiveTuple, sa: Option<SaTag>) -> Verdict {
        let three = five.three();
        let latch = self.scan_five(five).or_else(|| {
            [three, wildcard(&three)]
                .iter()
                .find_map(|t| self.latches.values().find(|l| l.tuple == Tuple::Three(*t)))
                .map(|l| &**l)
        });
        let Some(l) = latch else {
            return Verdict::Pass(PassKind::NotLatched);
        };
        let drop = |reason| Verdict::Drop {
            latch: l.id,
            reason,
        };
        match &l.state {
            St::Larval { .. } => drop(DropReason::NotEstablished),
            St::Broken(..) => drop(DropReason::Broken),
            St::Failed => drop(DropReason::Failed),
            St::Closed(_) => drop(DropReason::Closed),
            St::Established(b) => match (&b.binding, sa) {
                (None, None) => Verdict::Pass(PassKind::Bypass(l.id)),
                (None, Some(_)) => drop(DropReason::ProtectedOnBypass),
                (Some(_), None) => drop(DropReason::Unprotected),
                (Some(k), Some(s)) => match self.sas.get(&s) {
                    None => drop(DropReason::UnknownSa),
                    Some(e) if *e.binding == **k && e.desc.covers(five) => {
                        Verdict::Pass(PassKind::Latched(l.id))
                    }
                    Some(_) => drop(DropReason::SaMismatch),
                },
            },
            St::Listener => match (&l.req.requirement, sa) {
                (Requirement::Bypass, None) => Verdict::Pass(PassKind::Listener(l.id)),
                (Requirement::Bypass, Some(_)) => drop(DropReason::ProtectedOnBypass),
                (Requirement::Protect(_), None) => drop(DropReason::Unprotected),
                (Requirement::Protect(_), Some(s)) => match self.sas.get(&s) {
                    None => drop(DropReason::UnknownSa),
                    Some(e) if e.desc.covers(five) && self.sa_fits(l, e) == Ok(true) => {
                        Verdict::Pass(PassKind::Listener(l.id))
                    }
                    Some(_) => drop(DropReason::SaMismatch),
                },
            },
        }
    }

    /// `select_outbound_sa` computed from the latch states alone.
    fn outbound_reference(&self, five: &FiveTuple) -> Outbound {
        let Some(l) = self.scan_five(five) else {
            return Outbound::NotLatched;
        };
        let drop = |reason| Outbound::Drop {
            latch: l.id,
            reason,
        };
        match &l.state {
            St::Established(b) => match &b.binding {
                None => Outbound::Bypass(l.id),
                Some(k) => {
                    let mut tags: Vec<SaTag> = self
                        .sas
                        .values()
                        .filter(|e| *e.binding == **k && e.desc.covers(five))
                        .map(|e| e.desc.id)
                        .collect();
                    tags.sort();
                    tags.last()
                        .map_or(drop(DropReason::NoMatchingSa), |sa| Outbound::Use {
                            latch: l.id,
                            sa: *sa,
                        })
                }
            },
            St::Larval { .. } => drop(DropReason::NotEstablished),
            St::Broken(..) => drop(DropReason::Broken),
            St::Failed => drop(DropReason::Failed),
            _ => drop(DropReason::Closed),
        }
    }

    /// The 5-tuple maps hold exactly the connection latches, each with the
    /// gate of its state.
    fn assert_consistent(&self) {
        let mut fives = 0;
        for (id, l) in &self.latches {
            assert_eq!(*id, l.id);
            let Tuple::Five(f) = l.tuple else { continue };
            fives += 1;
            let slot = self.slot(&f).unwrap();
            assert_eq!(slot.id, l.id);
            let (gate, known) = match &slot.gate {
                Gate::Bound(k, known) => (Gate::Bound(Arc::clone(k), None), *known),
                g => (g.clone(), None),
            };
            assert_eq!(Some(gate), l.state.gate(), "{:?}", l.state);
            // The SA a gate knows passes: in the table, of the latch's
            // binding, covering its 5-tuple.
            if let (Some(s), Gate::Bound(k, _)) = (known, &slot.gate) {
                let e = self.sas.get(&s).expect("a known SA is in the table");
                assert_eq!(e.binding, *k);
                assert!(e.desc.covers(&f));
            }
        }
        assert_eq!(self.by_five4.len() + self.by_five6.len(), fives);
        // Every SA's count of blockers, recounted from the latch states.
        for e in self.sas.values() {
            let latches = self
                .latches
                .values()
                .filter(|l| {
                    let Tuple::Five(f) = l.tuple else {
                        return false;
                    };
                    let own = matches!(&l.state, St::Established(b)
                        if b.binding.as_deref() == Some(&*e.binding));
                    e.desc.covers(&f) && !own
                })
                .count();
            let listeners = self
                .by_three
                .keys()
                .filter(|t| e.desc.covers_listener(t))
                .count();
            assert_eq!(
                e.blockers as usize,
                latches + listeners,
                "blockers of SA {}",
                e.desc.id
            );
        }
    }
}

#[test]
fn gates_follow_states_and_checks_match_the_reference() {
    let mut t = table();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let start = Instant::now();
    let mut now = start;
    let flows = flows();
    let listeners = [
        ThreeTuple::new(6, "10.0.0.1:443".parse().unwrap()),
        ThreeTuple::new(6, "0.0.0.0:443".parse().unwrap()),
    ];
    let mut seen = [0usize; 6];
    // Checks an SA alone passed, and checks it did not that then passed.
    let mut admitted = 0usize;
    let mut looked_up = 0usize;
    for step in 0..4000 {
        let f = flows[usize::try_from(rng.below(flows.len() as u64)).unwrap()];
        let tag = 1 + rng.below(6);
        let id = LatchId(1 + rng.below(t.next_id));
        let listener = listeners[usize::from(rng.below(8) == 0)];
        match rng.below(20) {
            0..=4 => {
                let mut req = ConnectionRequest::new(f);
                match rng.below(4) {
                    0 => {
                        req.protection = RequestedProtection::Bypass;
                        req.privileged = true;
                    }
                    1 => req.same_peer_as_existing = false,
                    _ => {}
                }
                t.create_connection(req, now).ok();
            }
            5..=6 => {
                t.destroy(id).ok();
            }
            7..=10 => {
                t.sa_added(sa(tag, rng.next()), now).ok();
            }
            11..=13 => {
                t.sa_removed(tag);
            }
            14..=15 => {
                t.bind(id, tag, now).ok();
            }
            16 => {
                now += Duration::from_secs(rng.below(20));
                t.handle_timeout(now);
            }
            17 => t.key_manager_restarted(if rng.below(2) == 0 {
                RestartPolicy::Reset
            } else {
                RestartPolicy::Survive
            }),
            18 => {
                t.create_listener(ListenerRequest::new(listener), now).ok();
            }
            _ => {
                let l = t.by_three.get(&listener).copied();
                if let Some(l) = l {
                    let sa = (rng.below(2) == 0).then_some(tag);
                    t.accept(l, f, sa, now).ok();
                }
            }
        }
        while t.poll_alert().is_some() {}
        t.assert_consistent();
        for f in &flows {
            for sa in [
                None,
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(99),
            ] {
                let v = t.check_inbound(f, sa);
                assert_eq!(v, t.check_reference(f, sa), "step {step}: {f} {sa:?}");
                // R5, R6: what an SA alone passes, the check passes, and
                // no listener takes it.
                if sa.is_some_and(|s| t.sa_admits(Flow::new(f), s)) {
                    assert!(
                        matches!(
                            v,
                            Verdict::Pass(PassKind::NotLatched | PassKind::Latched(_))
                        ),
                        "step {step}: {f} {sa:?} admitted, checked {v:?}"
                    );
                    admitted += 1;
                    // Outbound alike: the SA may carry the flow, latched
                    // (under its latch's peer and protection) or not.
                    let s = sa.unwrap();
                    match t.select_outbound_sa(f) {
                        Outbound::NotLatched => {}
                        Outbound::Use { sa: x, .. } => {
                            assert_eq!(t.sas[&x].binding, t.sas[&s].binding, "step {step}")
                        }
                        o => panic!("step {step}: {f} {s} admitted, outbound {o:?}"),
                    }
                } else if sa.is_some() && v.passes() {
                    looked_up += 1;
                }
                assert_eq!(t.check_outbound(f, sa), v);
                if let Some(older) = t.version().checked_sub(1) {
                    let d = t.check_delivery(older, f, sa);
                    assert_eq!(d == Delivery::Deliver, v.passes());
                }
                seen[match v {
                    Verdict::Pass(PassKind::NotLatched) => 0,
                    Verdict::Pass(PassKind::Latched(_)) => 1,
                    Verdict::Pass(PassKind::Bypass(_)) => 2,
                    Verdict::Pass(_) => 3,
                    Verdict::Drop {
                        reason: DropReason::NotEstablished,
                        ..
                    } => 4,
                    Verdict::Drop { .. } => 5,
                }] += 1;
            }
            assert_eq!(
                t.select_outbound_sa(f),
                t.outbound_reference(f),
                "step {step}: {f}"
            );
        }
    }
    // The sequence reached every kind of answer, and SAs that pass their
    // packets alone as well as ones that do not.
    assert!(seen.iter().all(|n| *n > 0), "{seen:?}");
    assert!(admitted > 0 && looked_up > 0, "{admitted} {looked_up}");
}

/// An SA removed and announced again gets a new binding allocation: the
/// latch bound under the old one still accepts it (value equality), and
/// rejects an SA of another peer.
#[test]
fn rebinding_allocation_compares_by_value() {
    let mut t = table();
    let now = Instant::now();
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    t.sa_added(sa(1, 0), now).unwrap();
    assert_eq!(
        t.check_inbound(&f, Some(1)),
        Verdict::Pass(PassKind::Latched(id))
    );
    t.sa_removed(1);
    assert_eq!(
        t.check_inbound(&f, Some(1)),
        Verdict::Drop {
            latch: id,
            reason: DropReason::UnknownSa
        }
    );
    t.sa_added(sa(2, 0), now).unwrap();
    let Some(Gate::Bound(k, _)) = t.slot(&f).map(|s| s.gate.clone()) else {
        panic!("bound")
    };
    assert!(!Arc::ptr_eq(&k, &t.sas[&2].binding));
    assert_eq!(
        t.check_inbound(&f, Some(2)),
        Verdict::Pass(PassKind::Latched(id))
    );
    // Another peer (bit 2) covering the flow breaks the latch.
    t.sa_added(sa(3, 0b100), now).unwrap();
    assert_eq!(
        t.check_inbound(&f, Some(2)),
        Verdict::Drop {
            latch: id,
            reason: DropReason::Broken
        }
    );
    t.sa_removed(3);
    assert_eq!(
        t.check_inbound(&f, Some(2)),
        Verdict::Pass(PassKind::Latched(id))
    );
    t.assert_consistent();
}

/// An SA's entry holds its peer once, shared with the latches it binds,
/// and `sa_removed` gives back the descriptor as it was announced.
#[test]
fn sa_peer_and_selectors_shared_and_given_back() {
    let mut t = table();
    let now = Instant::now();
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    let announced = sa(1, 0b100);
    t.sa_added(announced.clone(), now).unwrap();
    let St::Established(b) = &t.latches[&id].state else {
        panic!("established")
    };
    let peer = b.params.peer().unwrap();
    assert!(std::ptr::eq(peer, &*t.sas[&1].peer));
    assert_eq!(*peer, announced.peer);
    // The selector lists are the announced ones, not copies.
    let desc = &t.sas[&1].desc;
    assert!(Arc::ptr_eq(&desc.local_ts, &announced.local_ts));
    assert!(Arc::ptr_eq(&desc.remote_ts, &announced.remote_ts));
    let given_back = t.sa_removed(1).unwrap();
    assert!(Arc::ptr_eq(&given_back.local_ts, &announced.local_ts));
    assert_eq!(given_back, announced);
    // The latch keeps its latched peer (R8).
    assert_eq!(
        t.info(id).unwrap().params.unwrap().peer(),
        Some(&announced.peer)
    );
    t.sa_added(announced.clone(), now).unwrap();
    t.destroy(id).unwrap();
    assert_eq!(t.sa_removed(1), Some(announced));
}

/// Equal requests share one record; different ones do not.
#[test]
fn requests_are_shared() {
    let mut t = table();
    let now = Instant::now();
    let a = t
        .create_connection(
            ConnectionRequest::new(five("10.0.0.1:443", "10.0.0.9:5000")),
            now,
        )
        .unwrap();
    let b = t
        .create_connection(
            ConnectionRequest::new(five("10.0.0.1:443", "10.0.0.9:5001")),
            now,
        )
        .unwrap();
    let c = t
        .create_connection(
            ConnectionRequest::new(five("10.0.0.1:80", "10.0.0.9:5001")),
            now,
        )
        .unwrap();
    assert!(Arc::ptr_eq(&t.latches[&a].req, &t.latches[&b].req));
    assert!(!Arc::ptr_eq(&t.latches[&a].req, &t.latches[&c].req));
    assert_eq!(t.info(c).unwrap().spd_entry, "web");
    assert_eq!(t.info(a).unwrap().spd_entry, "default");
}

/// The per-packet key separates everything the 5-tuple holds.
#[test]
fn key4_is_injective_on_the_fields() {
    let base = five("10.0.0.1:443", "10.0.0.9:5000");
    let variants = [
        five("10.0.0.9:443", "10.0.0.1:5000"),
        five("10.0.0.1:5000", "10.0.0.9:443"),
        five("10.0.0.2:443", "10.0.0.9:5000"),
        five("10.0.0.1:443", "10.0.0.8:5000"),
        five("10.0.0.1:444", "10.0.0.9:5000"),
        five("10.0.0.1:443", "10.0.0.9:5001"),
        FiveTuple::new(17, base.local, base.remote),
    ];
    let k = PackedV4::of(&base).unwrap();
    for v in variants {
        assert_ne!(PackedV4::of(&v).unwrap(), k, "{v}");
    }
    assert!(PackedV4::of(&five("[fd00::1]:443", "[fd00::9]:5000")).is_none());
    assert!(PackedV4::of(&five("10.0.0.1:443", "[fd00::9]:5000")).is_none());
}

/// The packed key gives back the fields it was made of.
#[test]
fn key4_unpacks_to_its_fields() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..1000 {
        let (la, ra) = (rng.next() as u32, rng.next() as u32);
        let (lp, rp, proto) = (rng.next() as u16, rng.next() as u16, rng.next() as u8);
        let f = FiveTuple::new(
            proto,
            SocketAddr::new(Ipv4Addr::from(la).into(), lp),
            SocketAddr::new(Ipv4Addr::from(ra).into(), rp),
        );
        let k = PackedV4::of(&f).unwrap();
        assert_eq!(
            (k.proto(), k.local(), k.remote()),
            (proto, (la, lp), (ra, rp))
        );
        assert_ne!(k, PackedV4::NONE);
    }
    // The largest fields still leave the top of the second word clear.
    let top = FiveTuple::new(
        255,
        "255.255.255.255:65535".parse().unwrap(),
        "255.255.255.255:65535".parse().unwrap(),
    );
    assert_ne!(PackedV4::of(&top).unwrap(), PackedV4::NONE);
}

/// The per-packet selector check on integers is `SaDesc::covers`, for
/// IPv4 and IPv6 selectors, ranges ending in either family, any protocol
/// and port range, and 5-tuples inside, at and outside their edges.
#[test]
fn covers_v4_is_covers() {
    let mut rng = Rng(0x0fed_cba9_8765_4321);
    let addr4 = |rng: &mut Rng| Ipv4Addr::from(0x0a00_0000 | (rng.below(8) as u32));
    let selector = |rng: &mut Rng| {
        let start: IpAddr = if rng.below(5) == 0 {
            Ipv6Addr::from(rng.below(8) as u128).into()
        } else {
            addr4(rng).into()
        };
        let end: IpAddr = match rng.below(6) {
            0 => Ipv6Addr::from(u128::from(u32::MAX) + rng.below(3) as u128 - 1).into(),
            1 => Ipv6Addr::from(rng.below(8) as u128).into(),
            _ => addr4(rng).into(),
        };
        let (a, b) = (rng.below(6) as u16, rng.below(6) as u16);
        TrafficSelector {
            ip_proto: [0, 6, 17][rng.below(3) as usize],
            start_port: a.min(b),
            end_port: a.max(b),
            addr: IpRange { start, end },
        }
    };
    let mut seen = [0usize; 2];
    let mut fast = [0usize; 2];
    for _ in 0..20_000 {
        let mut d = sa(1, rng.next());
        d.local_ts = (0..=rng.below(2)).map(|_| selector(&mut rng)).collect();
        d.remote_ts = (0..=rng.below(2)).map(|_| selector(&mut rng)).collect();
        if rng.below(2) == 0 {
            // One IPv4 selector a side, its range the right way round
            // (the admitting SA's integer form).
            let v4 = |rng: &mut Rng| {
                let mut t = selector(rng);
                let (a, b) = (addr4(rng), addr4(rng));
                t.addr = IpRange {
                    start: a.min(b).into(),
                    end: a.max(b).into(),
                };
                t
            };
            d.local_ts = vec![v4(&mut rng)].into();
            d.remote_ts = vec![v4(&mut rng)].into();
        }
        let (desc, _) = SaDesc::split(d);
        let f = FiveTuple::new(
            [6, 17][rng.below(2) as usize],
            SocketAddr::new(addr4(&mut rng).into(), rng.below(6) as u16),
            SocketAddr::new(addr4(&mut rng).into(), rng.below(6) as u16),
        );
        let k = PackedV4::of(&f).unwrap();
        let want = desc.covers(&f);
        assert_eq!(covers(&desc, &f, Some(k)), want, "{f} {desc:?}");
        // The admitting SA's integer form (one IPv4 selector a side), too.
        let admitting = AdmittingSa::new(&desc);
        assert_eq!(admitting.covers(Flow::new(&f)), want, "{f} {desc:?}");
        seen[usize::from(want)] += 1;
        fast[usize::from(want)] += usize::from(admitting.v4.is_some());
    }
    assert!(
        seen[0] > 100 && seen[1] > 100,
        "both outcomes tried: {seen:?}"
    );
    assert!(
        fast[0] > 100 && fast[1] > 100,
        "both outcomes tried on integers: {fast:?}"
    );
}

/// The per-packet maps' hash depends on the map's random key, and spreads
/// neighbouring 5-tuples over the buckets and the control byte.
#[test]
fn mix_hash_is_keyed_and_spreads() {
    use std::hash::BuildHasher;
    let (a, b) = (MixState::default(), MixState::default());
    let k = PackedV4::of(&five("10.0.0.1:443", "10.0.0.9:5000")).unwrap();
    assert_ne!(a.hash_one(k), b.hash_one(k), "keyed per map");
    let mut low = std::collections::HashSet::new();
    let mut top = std::collections::HashSet::new();
    for port in 0..4096u16 {
        let f = FiveTuple::new(
            6,
            "10.0.0.1:443".parse().unwrap(),
            SocketAddr::new(Ipv4Addr::new(10, 0, 0, 9).into(), port),
        );
        let h = a.hash_one(PackedV4::of(&f).unwrap());
        low.insert(h & 0xfff);
        top.insert(h >> 57);
    }
    assert!(low.len() > 2400, "low bits spread: {}", low.len());
    assert_eq!(top.len(), 128, "every control byte value");
}
