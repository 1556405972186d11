//! The endpoint's per-packet inbound path with connection latching, as the
//! driver runs it: `Sad::decapsulate` of a 1400-octet tunnel-mode packet
//! (AES-128-GCM, selector check included), parsing the inner IP/UDP header
//! into a 5-tuple, and the latch check through the driver's
//! `endpoint::benching::BurstLatch` (the latch table's `Mutex` taken once
//! per receive burst, the last verdict remembered while it is held), with
//! 0, 10k and 1M connection latches in the table.
//!
//! Every timed iteration is one burst of `B` packets, `B` = 1 (a lock per
//! packet, what the driver did before) or 64 (the driver's receive burst,
//! `tun::BURST` reads; a GRO read may hold more datagrams): divide the
//! reported time by `B` for the time per packet.
//!
//! - `decapsulate_only/B`, `decapsulate_parse/B`: the baselines;
//! - `decapsulate_parse_check/n/B`: the whole path (one flow, as a bulk
//!   transfer's burst);
//! - `check_same_flow/n/B`: the check alone, the measured flow `B` times
//!   (a bulk transfer: after the first packet, the remembered verdict);
//! - `check_two_flows/n/B`: the check alone, two flows bound to the SA
//!   alternating (both remembered: compares, no lookup, after the first
//!   two);
//! - `check_many_flows/n/B`: the check alone, `2 * MEMO` flows bound to the
//!   SA in turn, more than `BurstLatch` remembers, so that every check is a
//!   table lookup (5-tuple map, the latch's known SA) with the lock per
//!   burst; hot caches;
//! - `check_round_robin/n/B`: the other (Larval) latches' flows in a
//!   scrambled order, a full lookup each: a cold-ish cache at 1M;
//! - `check_round_robin_untouched/n/B`: the same without the touch pass
//!   (what a check costs cold when its cache miss is not overlapped with
//!   the burst's others);
//! - `check_round_robin_staged/n/B`, `admit_round_robin_staged/n/B`: the
//!   touched lookup and the TUN path of those scrambled flows, with each
//!   burst's 5-tuples copied out of the list before the timer starts (the
//!   driver parses them from packets it has just decrypted); the unstaged
//!   rows also time streaming them from the 68 MB list;
//! - `admit_same_flow/n/B`, `admit_many_flows/n/B`,
//!   `admit_round_robin/n/B`: the driver's TUN path (`deliver_staged`) on
//!   a table whose `n` latches are all bound to the SA that covers them
//!   (a gateway's usual state): the SA alone passes every packet
//!   (`LatchTable::sa_admits`), so nothing is read per flow; the measured
//!   flow, the `2 * MEMO` hot flows in turn, and the `n` flows scrambled;
//! - `outbound_select_round_robin/n/B`, `outbound_admit_round_robin/n/B`:
//!   the outbound decision of the driver's `select_outbound` for the same
//!   scrambled flows (the lock per packet, as there): the latch's SA
//!   looked up per flow (`select_outbound_sa`), or the SA alone
//!   (`sa_admits`, what the driver now asks first).
//!
//! The `check_*` rows are the check where the SA alone cannot decide (a
//! latch it covers not bound to it, a listener, or the channel path, which
//! reports each packet's latch). Those of bursts of more than one packet
//! first touch the burst's table entries in one pass (`BurstLatch::touch`),
//! as the driver does for a UDP GRO read. `decapsulate_parse_check`
//! decapsulates the whole burst first, then runs the driver's TUN path
//! (`admit_burst`); its measured flow is bound to the SA, which binds no
//! other latch of the table: admitted.
//!
//! Run: `cargo bench -p endpoint --bench latch_check -- --warm-up-time 1
//! --measurement-time 3`. Benchmarks report; they do not assert.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]
#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use endpoint::benching::{BurstLatch, MEMO};
use esp::{SaConfig, Sad};
use latch::{
    ChildSaDescriptor, ConnectionRequest, FiveTuple, Flow, LatchConfig, LatchTable, NatInfo,
    Outbound, PassKind, PeerAuth, PeerIdentity, Verdict,
};
use pad::alg::Encr;
use pad::{Identity, Mode, PolicyConfig, SaQop};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

const SPI: u32 = 0x1234_5678;
const TAG: u64 = 1;
const PACKET: usize = 1400;

const POLICY: &str = r#"
[[peer]]
name = "btns"
id = "any"
auth = ["null"]
child_sa = "10.0.0.0/8"
btns = true

[[policy]]
name = "default"
action = "protect"
"#;

fn sad() -> Sad {
    let ek: Vec<u8> = (0..Encr::AesGcm16_128.keymat_len())
        .map(|i| i as u8)
        .collect();
    let mut sad = Sad::new();
    let cfg = |local: &str, remote: &str| SaConfig {
        spi: SPI,
        encr: Encr::AesGcm16_128,
        integ: None,
        encr_key: &ek,
        integ_key: &[],
        esn: false,
        replay_window: 1024,
        mode: Mode::Tunnel,
        local_ts: vec![local.parse().unwrap()],
        remote_ts: vec![remote.parse().unwrap()],
        tag: TAG,
    };
    // Inbound: we are 10.0.0.1, the peer asserts 10.0.0.0/8. The outbound
    // SA (same keys) only makes the packets the inbound one accepts.
    sad.add_outbound(cfg("10.0.0.0/8", "10.0.0.1")).unwrap();
    sad.add_inbound(cfg("10.0.0.1", "10.0.0.0/8")).unwrap();
    sad
}

/// The measured flow: the peer's 10.0.0.9:5000 to our 10.0.0.1:7000.
fn measured() -> FiveTuple {
    FiveTuple::new(
        17,
        "10.0.0.1:7000".parse().unwrap(),
        "10.0.0.9:5000".parse().unwrap(),
    )
}

/// The flows the SA binds: the peer's 10.0.0.9:5000 + `j` (`hot(0)` is
/// the measured one), `2 * MEMO` of them.
fn hot(j: u16) -> FiveTuple {
    FiveTuple::new(
        17,
        "10.0.0.1:7000".parse().unwrap(),
        SocketAddr::from(([10, 0, 0, 9], 5000 + j)),
    )
}

/// How many flows the SA binds: twice what a `BurstLatch` remembers.
const HOT: u16 = 2 * MEMO as u16;

/// The other latches: hosts 10.1.x.x, outside the SA's selectors, so the
/// SA binds only the measured one (the rest stay Larval).
fn other(i: u32) -> FiveTuple {
    let remote = Ipv4Addr::from(0x0a01_0000 + i / 1000);
    let port = u16::try_from(1024 + i % 1000).unwrap();
    FiveTuple::new(
        6,
        "10.0.0.1:443".parse().unwrap(),
        SocketAddr::new(remote.into(), port),
    )
}

fn table(n: u32) -> LatchTable {
    let c = PolicyConfig::from_toml(POLICY, "bench.toml").unwrap();
    let mut t = LatchTable::new(c.pad, c.spd, LatchConfig::default());
    let now = Instant::now();
    for i in 0..n {
        t.create_connection(ConnectionRequest::new(other(i)), now)
            .unwrap();
    }
    if n > 0 {
        for j in 0..HOT {
            t.create_connection(ConnectionRequest::new(hot(j)), now)
                .unwrap();
        }
    }
    t.sa_added(descriptor("10.0.0.9"), now).unwrap();
    while t.poll_alert().is_some() {}
    t
}

/// SA `TAG` from our 10.0.0.1 to the peer's `remote`.
fn descriptor(remote: &str) -> ChildSaDescriptor {
    let peer = PeerIdentity {
        asserted: Identity::Null,
        authenticated: None,
        auth: PeerAuth::Null { anonymous_peer: 1 },
        pad_entry: "btns".into(),
    };
    ChildSaDescriptor {
        id: TAG,
        peer,
        protection: SaQop {
            mode: Mode::Tunnel,
            encr: Some(Encr::AesGcm16_128),
            integ: None,
            esn: false,
            replay_window: 1024,
        },
        local_ts: vec!["10.0.0.1".parse().unwrap()].into(),
        remote_ts: vec![remote.parse().unwrap()].into(),
        nat: NatInfo::default(),
        spi_in: SPI,
        spi_out: SPI,
    }
}

/// `n` latches (the [`other`] flows) and the hot ones, all bound to SA
/// `TAG`, whose selectors cover them all (the peer's 10.0.0.0/8): what a
/// gateway's table holds while its connections run. The SA comes first,
/// so each latch is Established as it is created.
fn bound_table(n: u32) -> LatchTable {
    let c = PolicyConfig::from_toml(POLICY, "bench.toml").unwrap();
    let mut t = LatchTable::new(c.pad, c.spd, LatchConfig::default());
    let now = Instant::now();
    t.sa_added(descriptor("10.0.0.0/8"), now).unwrap();
    for five in (0..n).map(other).chain((0..HOT).map(hot)) {
        t.create_connection(ConnectionRequest::new(five), now)
            .unwrap();
    }
    while t.poll_alert().is_some() {}
    t
}

/// The other latches' flows in a scrambled order (Fisher-Yates with a fixed
/// xorshift), so consecutive checks touch unrelated parts of the table: a
/// cold-ish cache, unlike the one hot measured flow.
fn scrambled(n: u32) -> Vec<FiveTuple> {
    let mut v: Vec<FiveTuple> = (0..n).map(other).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = usize::try_from(x % (i as u64 + 1)).unwrap();
        v.swap(i, j);
    }
    v
}

fn packet(sad: &Sad) -> Vec<u8> {
    let f = measured();
    let mut inner = vec![0u8; PACKET];
    let payload = vec![0xa5u8; PACKET - 28];
    let n = esp::inner::build_udp(f.remote, f.local, &payload, &mut inner).unwrap();
    assert_eq!(n, PACKET);
    let mut out = vec![0u8; PACKET + 64];
    let m = sad.encapsulate(SPI, 4, &inner[..n], &mut out).unwrap();
    out.truncate(m);
    out
}

/// One burst of packets through the endpoint's inbound path as the driver
/// runs a UDP GRO read in TUN mode (`on_natt_gro`): decapsulate and parse
/// them all, then [`admit_burst`]. `staged` is reused across bursts, as the
/// driver's is.
fn inbound_burst(
    sad: &Sad,
    table: &Mutex<LatchTable>,
    pkts: &mut [Vec<u8>],
    staged: &mut Vec<(FiveTuple, u64, bool)>,
) -> usize {
    staged.clear();
    for pkt in pkts {
        let Ok(d) = sad.decapsulate(pkt) else {
            continue;
        };
        let Ok(inner) = esp::inner::parse(d.payload) else {
            continue;
        };
        let five = FiveTuple::new(
            inner.protocol,
            SocketAddr::new(inner.dst, inner.dst_port),
            SocketAddr::new(inner.src, inner.src_port),
        );
        staged.push((five, d.tag, false));
    }
    admit_burst(table, staged)
}

/// The latch part of the driver's TUN path for one burst
/// (`deliver_staged`): which packets their SA alone passes
/// (`BurstLatch::sa_admits_each`, the lock taken there), the others' table
/// entries touched in one pass, then each packet passed on its mark or
/// checked. The driver also reads whether the SPD admits the SA's
/// selectors whole (one compare per packet after the first of its SA), and
/// delivers; not here. How many passed.
#[inline(always)]
fn admit_burst(t: &Mutex<LatchTable>, staged: &mut [(FiveTuple, u64, bool)]) -> usize {
    let mut held = BurstLatch::new(t);
    held.sa_admits_each(staged.iter_mut().map(|(f, tag, a)| (&*f, *tag, a)));
    let lookups = staged.iter().filter(|s| !s.2).count();
    if lookups > 1 {
        held.touch(staged.iter().filter(|s| !s.2).map(|s| &s.0));
    }
    let epoch = held.epoch();
    let mut passed = 0;
    for (five, tag, admitted) in staged.iter() {
        if *admitted && held.epoch() == epoch {
            passed += 1;
            continue;
        }
        let (v, version) = held.check_inbound(black_box(five), Some(*tag));
        passed += usize::from(v.passes());
        take((v, version));
    }
    held.release();
    passed
}

/// The checks of one burst of flows as the driver runs them for a UDP GRO
/// read (`on_natt_gro`): the table entries touched in one pass, then each
/// flow checked in order; `touch` false: checked without the pass (a
/// burst of single reads).
#[inline(always)]
fn check_burst(t: &Mutex<LatchTable>, burst: &[FiveTuple], touch: bool) {
    let mut held = BurstLatch::new(t);
    if touch && burst.len() > 1 {
        held.touch(black_box(burst));
    }
    for five in burst {
        take(held.check_inbound(black_box(five), black_box(Some(TAG))));
    }
}

/// What the driver takes from a check (`driver.rs`, `inbound`): the latch
/// the packet passed under, if any, and the table's version, read field by
/// field as its `match` does. Handing the whole 32-octet result to
/// `black_box` instead would copy it wide right after the check wrote it
/// field by field: a store-forwarding stall the driver never pays (perf
/// annotate, 2026-11-28: three quarters of the bench loop's samples).
#[inline(always)]
fn take((v, version): (Verdict, u64)) {
    let latch = match v {
        Verdict::Pass(PassKind::Latched(id)) => Some(id.0),
        _ => None,
    };
    black_box(latch);
    black_box(version);
}

/// The `b` flows after the `i`-th of `flows`, in a burst of their own
/// (`i` moves on, wrapping around).
fn next_flows(flows: &[FiveTuple], i: &mut usize, b: usize) -> Vec<FiveTuple> {
    (0..b)
        .map(|_| {
            *i = if *i + 1 >= flows.len() { 0 } else { *i + 1 };
            flows[*i]
        })
        .collect()
}

/// `b` fresh packets of the measured flow.
fn packets(sad: &Sad, b: usize) -> Vec<Vec<u8>> {
    (0..b).map(|_| packet(sad)).collect()
}

/// The burst sizes: a lock per packet, and the driver's receive burst.
const BURSTS: [usize; 2] = [1, 64];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("latch_check");
    let s = sad();
    for b in BURSTS {
        g.throughput(Throughput::Elements(b as u64));
        g.bench_with_input(BenchmarkId::new("decapsulate_only", b), &b, |bn, &b| {
            bn.iter_batched_ref(
                || packets(&s, b),
                |ps| {
                    for p in ps.iter_mut() {
                        black_box(s.decapsulate(p).is_ok());
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("decapsulate_parse", b), &b, |bn, &b| {
            bn.iter_batched_ref(
                || packets(&s, b),
                |ps| {
                    for p in ps.iter_mut() {
                        let d = s.decapsulate(p).unwrap();
                        black_box(esp::inner::parse(d.payload).is_ok());
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    for n in [0u32, 10_000, 1_000_000] {
        let t = Mutex::new(table(n));
        let s = sad();
        let mut p = packets(&s, 2);
        let mut staged = Vec::with_capacity(64);
        assert_eq!(
            inbound_burst(&s, &t, &mut p, &mut staged),
            2,
            "the measured flow passes"
        );
        let f = measured();
        let hots: Vec<FiveTuple> = (0..HOT).map(hot).collect();
        {
            let mut held = BurstLatch::new(&t);
            for h in &hots {
                let v = held.check_inbound(h, Some(TAG)).0;
                assert!(matches!(v, Verdict::Pass(PassKind::Latched(_))) || n == 0);
            }
        }
        let flows = scrambled(n);
        for b in BURSTS {
            g.throughput(Throughput::Elements(b as u64));
            let id = format!("{n}/{b}");
            g.bench_with_input(
                BenchmarkId::new("decapsulate_parse_check", &id),
                &b,
                |bn, &b| {
                    bn.iter_batched_ref(
                        || packets(&s, b),
                        |ps| black_box(inbound_burst(&s, &t, ps, &mut staged)),
                        BatchSize::SmallInput,
                    )
                },
            );
            let same: Vec<FiveTuple> = vec![f; b];
            let two: Vec<FiveTuple> = (0..b).map(|i| hots[i % 2]).collect();
            let many: Vec<FiveTuple> = (0..b).map(|i| hots[i % hots.len()]).collect();
            for (name, burst) in [
                ("check_same_flow", &same),
                ("check_two_flows", &two),
                ("check_many_flows", &many),
            ] {
                g.bench_with_input(BenchmarkId::new(name, &id), &b, |bn, _| {
                    bn.iter(|| check_burst(&t, burst, true))
                });
            }
            if n > 0 {
                // The next `b` flows of the scrambled list, copied into the
                // burst inside the timed loop alike for both rows.
                for (name, touch) in [
                    ("check_round_robin", true),
                    ("check_round_robin_untouched", false),
                ] {
                    g.bench_with_input(BenchmarkId::new(name, &id), &b, |bn, &b| {
                        let mut i = 0;
                        let mut burst = Vec::with_capacity(b);
                        bn.iter(|| {
                            burst.clear();
                            for _ in 0..b {
                                i = if i + 1 == flows.len() { 0 } else { i + 1 };
                                burst.push(flows[i]);
                            }
                            check_burst(&t, &burst, touch);
                        })
                    });
                }
                // The same checks with the burst's 5-tuples copied out of
                // the list before the timer starts, as the driver has them
                // (parsed from packets it has just decrypted): the row
                // above also times streaming them from a 68 MB list.
                g.bench_with_input(
                    BenchmarkId::new("check_round_robin_staged", &id),
                    &b,
                    |bn, &b| {
                        let mut i = 0;
                        bn.iter_batched_ref(
                            || next_flows(&flows, &mut i, b),
                            |burst| check_burst(&t, burst, true),
                            BatchSize::SmallInput,
                        )
                    },
                );
            }
        }
    }
    // The driver's TUN path on a table whose latches are all bound to the
    // SA covering them: the SA alone passes every packet.
    for n in [10_000u32, 1_000_000] {
        let t = Mutex::new(bound_table(n));
        let flows = scrambled(n);
        let mut staged: Vec<(FiveTuple, u64, bool)> = Vec::with_capacity(64);
        for b in BURSTS {
            g.throughput(Throughput::Elements(b as u64));
            let id = format!("{n}/{b}");
            let same: Vec<FiveTuple> = vec![measured(); b];
            let many: Vec<FiveTuple> = (0..b).map(|i| hot((i % usize::from(HOT)) as u16)).collect();
            for (name, burst) in [("admit_same_flow", &same), ("admit_many_flows", &many)] {
                // Staged once: the marks are rewritten by every burst.
                let mut st: Vec<(FiveTuple, u64, bool)> =
                    burst.iter().map(|f| (*f, TAG, false)).collect();
                g.bench_with_input(BenchmarkId::new(name, &id), &b, |bn, _| {
                    bn.iter(|| assert_eq!(admit_burst(&t, black_box(&mut st)), b))
                });
            }
            // Outbound, as the driver's `select_outbound` runs for each
            // packet (the lock per packet): the latch's SA looked up per
            // flow, or the SA alone (`sa_admits`).
            for (name, admit) in [
                ("outbound_select_round_robin", false),
                ("outbound_admit_round_robin", true),
            ] {
                g.bench_with_input(BenchmarkId::new(name, &id), &b, |bn, &b| {
                    let mut i = 0;
                    bn.iter(|| {
                        for _ in 0..b {
                            i = if i + 1 == flows.len() { 0 } else { i + 1 };
                            let five = black_box(&flows[i]);
                            let t = t.lock().unwrap();
                            if admit {
                                assert!(t.sa_admits(Flow::new(five), TAG));
                            } else {
                                let o = t.select_outbound_sa(five);
                                assert!(matches!(o, Outbound::Use { sa: TAG, .. }));
                            }
                        }
                    })
                });
            }
            g.bench_with_input(
                BenchmarkId::new("admit_round_robin_staged", &id),
                &b,
                |bn, &b| {
                    let mut i = 0;
                    bn.iter_batched_ref(
                        || {
                            next_flows(&flows, &mut i, b)
                                .into_iter()
                                .map(|f| (f, TAG, false))
                                .collect::<Vec<_>>()
                        },
                        |st| assert_eq!(admit_burst(&t, black_box(st)), b),
                        BatchSize::SmallInput,
                    )
                },
            );
            g.bench_with_input(BenchmarkId::new("admit_round_robin", &id), &b, |bn, &b| {
                let mut i = 0;
                bn.iter(|| {
                    staged.clear();
                    for _ in 0..b {
                        i = if i + 1 == flows.len() { 0 } else { i + 1 };
                        staged.push((flows[i], TAG, false));
                    }
                    assert_eq!(admit_burst(&t, black_box(&mut staged)), b);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
