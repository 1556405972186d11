//! Latch and SA churn with `S` child SAs installed (1, 1 000, 100 000), each
//! of its own peer host (a BTNS gateway's usual state: one SA per remote
//! host, 10.x.y.z/32): what creating and destroying a connection latch
//! costs (`connection_create_destroy/S`: the covering SAs are found, the
//! latch established on its SA, every SA's count of blockers kept), and
//! what installing and removing an SA over a Larval latch waiting for it
//! costs, the latch included (`sa_add_remove/S`). Neither should grow
//! with `S`.
//!
//! Run: `cargo bench -p latch --bench churn -- --warm-up-time 1
//! --measurement-time 3`. Benchmarks report; they do not assert.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]
#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use latch::*;
use pad::{PolicyConfig, TrafficSelector};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

mod common;
use common::POLICY;

/// Peer host `i`: 10.1.0.0 + `i`.
fn host(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + i)
}

/// SA `i + 1` of peer host `i` (its own key), transport mode, our
/// 10.0.0.1 to that host alone.
fn descriptor(i: u32) -> ChildSaDescriptor {
    let mut fingerprint = [0u8; 32];
    fingerprint[..4].copy_from_slice(&i.to_be_bytes());
    let remote: TrafficSelector = host(i).to_string().parse().unwrap();
    common::btns_sa(
        u64::from(i) + 1,
        fingerprint,
        remote,
        (2 * i + 1, 2 * i + 2),
    )
}

/// A TCP connection from our 10.0.0.1:`port` to host `i`'s port 443.
fn flow(i: u32, port: u16) -> FiveTuple {
    FiveTuple::new(
        6,
        SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).into(), port),
        SocketAddr::new(host(i).into(), 443),
    )
}

/// `s` SAs, each with one connection latch established on it.
fn table(s: u32) -> LatchTable {
    let c = PolicyConfig::from_toml(POLICY, "bench.toml").unwrap();
    let mut t = LatchTable::new(c.pad, c.spd, LatchConfig::default());
    let now = Instant::now();
    for i in 0..s {
        t.sa_added(descriptor(i), now).unwrap();
        t.create_connection(ConnectionRequest::new(flow(i, 40_000)), now)
            .unwrap();
    }
    while t.poll_alert().is_some() {}
    t
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("latch_churn");
    for s in [1u32, 1_000, 10_000, 100_000] {
        let mut t = table(s);
        let now = Instant::now();
        // A connection to the middle SA's host: established on it.
        let f = flow(s / 2, 40_001);
        g.bench_with_input(
            BenchmarkId::new("connection_create_destroy", s),
            &s,
            |b, _| {
                b.iter(|| {
                    let id = t
                        .create_connection(ConnectionRequest::new(black_box(f)), now)
                        .unwrap();
                    t.destroy(id).unwrap();
                    while t.poll_alert().is_some() {}
                })
            },
        );
        // A host no SA covers yet: a Larval latch waits for its SA, which
        // comes (the latch established on it) and goes.
        let waiting = flow(s, 40_000);
        g.bench_with_input(BenchmarkId::new("sa_add_remove", s), &s, |b, _| {
            b.iter(|| {
                let larval = t
                    .create_connection(ConnectionRequest::new(black_box(waiting)), now)
                    .unwrap();
                t.sa_added(black_box(descriptor(s)), now).unwrap();
                black_box(t.sa_removed(u64::from(s) + 1));
                t.destroy(larval).unwrap();
                while t.poll_alert().is_some() {}
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
