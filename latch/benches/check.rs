//! Per-packet latch checks (R5, R6, R16) with 0, 10k and 1M connection
//! latches in the table: `check_inbound` for a latched flow under its SA, for
//! an unlatched flow, and `select_outbound_sa`. The cost should not grow
//! with the number of latches (hash lookups by 5-tuple, then by SA tag).
//! `inbound_latched_round_robin` checks every latched flow in turn, in a
//! scrambled order (a cold-ish cache at 1M); the other cases loop on one
//! flow (a hot cache).
//!
//! Run: `cargo bench -p latch --bench check -- --warm-up-time 1
//! --measurement-time 3`. Benchmarks report; they do not assert.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]
#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use latch::*;
use pad::PolicyConfig;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

mod common;
use common::POLICY;

fn flow(i: u32) -> FiveTuple {
    let remote = Ipv4Addr::from(0x0a00_0000 | (i / 1000 + 2));
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
    t.sa_added(
        common::btns_sa(1, [1; 32], "10.0.0.0/8".parse().unwrap(), (1, 2)),
        now,
    )
    .unwrap();
    // One more latch than asked, the one the benchmark checks.
    for i in 0..=n {
        t.create_connection(ConnectionRequest::new(flow(i)), now)
            .unwrap();
    }
    while t.poll_alert().is_some() {}
    t
}

/// Every latched flow of a table of `n` (+1) latches, in a scrambled order
/// (Fisher-Yates with a fixed xorshift), so consecutive checks touch
/// unrelated parts of the table: a cold-ish cache, unlike the one hot flow.
fn scrambled(n: u32) -> Vec<FiveTuple> {
    let mut v: Vec<FiveTuple> = (0..=n).map(flow).collect();
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

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("latch_check");
    for n in [0u32, 10_000, 1_000_000] {
        let t = table(n);
        let flows = scrambled(n);
        assert!(flows.iter().all(|f| t.check_inbound(f, Some(1)).passes()));
        g.bench_with_input(
            BenchmarkId::new("inbound_latched_round_robin", n),
            &n,
            |b, _| {
                let mut i = 0;
                b.iter(|| {
                    i = if i + 1 == flows.len() { 0 } else { i + 1 };
                    t.check_inbound(black_box(&flows[i]), black_box(Some(1)))
                })
            },
        );
        let latched = flow(n / 2);
        let unlatched = FiveTuple::new(
            17,
            "10.0.0.1:53".parse().unwrap(),
            "10.0.0.2:5353".parse().unwrap(),
        );
        assert!(t.check_inbound(&latched, Some(1)).passes());
        g.bench_with_input(BenchmarkId::new("inbound_latched", n), &n, |b, _| {
            b.iter(|| t.check_inbound(black_box(&latched), black_box(Some(1))))
        });
        g.bench_with_input(BenchmarkId::new("inbound_unlatched", n), &n, |b, _| {
            b.iter(|| t.check_inbound(black_box(&unlatched), black_box(None)))
        });
        g.bench_with_input(BenchmarkId::new("select_outbound_sa", n), &n, |b, _| {
            b.iter(|| t.select_outbound_sa(black_box(&latched)))
        });
        g.bench_with_input(BenchmarkId::new("check_delivery_stale", n), &n, |b, _| {
            b.iter(|| t.check_delivery(black_box(0), black_box(&latched), black_box(Some(1))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
