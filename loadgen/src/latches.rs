//! `latches`: a latch table with N connection latches in this process: the
//! resident memory it takes (VmRSS before and after) and the time of one
//! `check_inbound` for a latched and an unlatched flow at that size (the
//! same table shape as endpoint/benches/latch_check.rs), looped on one flow
//! (a hot cache) and over every latch's flow in a scrambled order (a cold
//! one), in wall time and in on-CPU time (the part other processes' turns
//! on the CPU do not inflate). The ALERT queue is drained every 1024
//! latches, as the endpoint's driver drains it after every event
//! (`--keep-alerts`: never, so the queue's 1M ALERTs count as latch memory,
//! as before 2026-11-28).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use anyhow::{anyhow, Result};
use latch::{
    ChildSaDescriptor, ConnectionRequest, FiveTuple, LatchConfig, LatchTable, NatInfo, PeerAuth,
    PeerIdentity,
};
use pad::alg::Encr;
use pad::{Identity, Mode, PolicyConfig, SaQop};

use crate::util;

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

const TAG: u64 = 1;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connection latches to create.
    #[arg(long, default_value_t = 1_000_000)]
    count: u32,
    /// Checks to time for each flow.
    #[arg(long, default_value_t = 2_000_000)]
    checks: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Keep every creation ALERT queued (do not drain the queue).
    #[arg(long)]
    keep_alerts: bool,
}

fn tuple(remote: Ipv4Addr, port: u16, proto: u8, local_port: u16) -> FiveTuple {
    FiveTuple::new(
        proto,
        SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).into(), local_port),
        SocketAddr::new(remote.into(), port),
    )
}

/// Latch i: host 10.1.x.x (outside the SA's selectors: stays Larval).
fn other(i: u32) -> FiveTuple {
    let remote = Ipv4Addr::from(0x0a01_0000 + i / 1000);
    let port = u16::try_from(1024 + i % 1000).unwrap_or(1024);
    tuple(remote, port, 6, 443)
}

pub(crate) fn run(a: Args) -> Result<()> {
    let c = PolicyConfig::from_toml(POLICY, "loadgen.toml").map_err(|e| anyhow!("{e}"))?;
    let mut t = LatchTable::new(c.pad, c.spd, LatchConfig::default());
    let measured = tuple(Ipv4Addr::new(10, 0, 0, 9), 5000, 17, 7000);
    let unlatched = tuple(Ipv4Addr::new(10, 0, 0, 9), 5001, 17, 7001);
    let now = Instant::now();
    let before = util::rss_bytes(None).unwrap_or(0);
    let t0 = Instant::now();
    for i in 0..a.count {
        t.create_connection(ConnectionRequest::new(other(i)), now)
            .map_err(|e| anyhow!("latch {i}: {e}"))?;
        if !a.keep_alerts && i % 1024 == 1023 {
            while t.poll_alert().is_some() {}
        }
    }
    let create_s = t0.elapsed().as_secs_f64();
    let after = util::rss_bytes(None).unwrap_or(0);
    t.create_connection(ConnectionRequest::new(measured), now)
        .map_err(|e| anyhow!("{e}"))?;
    t.sa_added(
        ChildSaDescriptor {
            id: TAG,
            peer: PeerIdentity {
                asserted: Identity::Null,
                authenticated: None,
                auth: PeerAuth::Null { anonymous_peer: 1 },
                pad_entry: "btns".into(),
            },
            protection: SaQop {
                mode: Mode::Tunnel,
                encr: Some(Encr::AesGcm16_128),
                integ: None,
                esn: false,
                replay_window: 1024,
            },
            local_ts: vec!["10.0.0.1".parse().map_err(|e| anyhow!("{e:?}"))?].into(),
            remote_ts: vec!["10.0.0.9".parse().map_err(|e| anyhow!("{e:?}"))?].into(),
            nat: NatInfo::default(),
            spi_in: 1,
            spi_out: 2,
        },
        now,
    )
    .map_err(|e| anyhow!("{e}"))?;
    while t.poll_alert().is_some() {}
    // Wall and on-CPU time per check of `checks` checks of `flow(i)`.
    let time = |flow: &dyn Fn(u32) -> FiveTuple| {
        let (t0, c0) = (Instant::now(), util::thread_cpu_ns());
        let mut pass = 0u32;
        for i in 0..a.checks {
            pass += u32::from(t.check_inbound(black_box(&flow(i)), Some(TAG)).passes());
        }
        black_box(pass);
        let n = f64::from(a.checks.max(1));
        let cpu = match (c0, util::thread_cpu_ns()) {
            (Some(c0), Some(c1)) => c1.saturating_sub(c0) as f64 / n,
            _ => f64::NAN,
        };
        (t0.elapsed().as_nanos() as f64 / n, cpu)
    };
    let (latched_ns, latched_cpu) = time(&|_| measured);
    let (unlatched_ns, unlatched_cpu) = time(&|_| unlatched);
    // Every latch's flow in turn, in a scrambled order (i * P mod count, P
    // prime to count): consecutive checks hit unrelated parts of the table,
    // a cold cache, unlike the loops on one flow above.
    let count = a.count.max(1);
    let step = [1_000_003u64, 999_983, 1]
        .into_iter()
        .find(|p| gcd(*p, u64::from(count)) == 1)
        .unwrap_or(1);
    let (spread_ns, spread_cpu) = time(&|i| {
        let j = u32::try_from(u64::from(i % count) * step % u64::from(count)).unwrap_or(0);
        other(j)
    });
    let per_latch = (after.saturating_sub(before)) as f64 / f64::from(a.count.max(1));
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "latches": t.len(), "rss_before": before, "rss_after": after,
                "bytes_per_latch": per_latch, "create_s": create_s,
                "check_latched_ns": latched_ns, "check_unlatched_ns": unlatched_ns,
                "check_spread_ns": spread_ns, "check_latched_cpu_ns": latched_cpu,
                "check_unlatched_cpu_ns": unlatched_cpu, "check_spread_cpu_ns": spread_cpu,
                "alerts_kept": a.keep_alerts,
            })
        );
    } else {
        println!(
            "{} latches: RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per latch, created in {:.2} s",
            t.len(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per_latch,
            create_s
        );
        println!(
            "check_inbound (wall / on-CPU): latched flow {latched_ns:.1} / {latched_cpu:.1} ns, \
             unlatched flow {unlatched_ns:.1} / {unlatched_cpu:.1} ns, \
             every latch's flow in a scrambled order {spread_ns:.1} / {spread_cpu:.1} ns"
        );
    }
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
