//! Memory of the ESP SAD per child SA pair (one inbound and one outbound
//! SA, AES-128-GCM, tunnel mode, one traffic selector per side, as IKE
//! installs them): the process's resident set before and after installing
//! `--count` pairs (default 100 000), divided by the count; then the same
//! after one packet went out through every outbound SA and in through every
//! inbound SA (the figure for SAs that carry traffic: AEAD keys are expanded
//! on an SA's first packet). Each pair is looped (the inbound and outbound
//! SA share SPI and keys) so that the packet sealed on one opens on the
//! other.
//!
//! Run: `cargo bench -p esp --bench memory` (`--count N`). Linux only (reads
//! `/proc/self/statm`). Benchmarks report; they do not assert.

use std::hint::black_box;

use esp::{SaConfig, Sad, NEXT_HEADER_IPV4};
use pad::alg::Encr;
use pad::{Mode, TrafficSelector};

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn ts(s: &str) -> TrafficSelector {
    s.parse().expect("selector")
}

fn main() {
    let mut count = 100_000u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--count" {
            count = args.next().and_then(|v| v.parse().ok()).unwrap_or(count);
        }
    }
    let local = ts("10.0.1.0/24");
    let remote = ts("10.0.0.0/24");
    let mut sad = Sad::new();
    let before = rss();
    for i in 0..count {
        let ek: Vec<u8> = (0..Encr::AesGcm16_128.keymat_len())
            .map(|k| (i as u8) ^ (k as u8))
            .collect();
        let cfg = |spi: u32, local: &TrafficSelector, remote: &TrafficSelector| SaConfig {
            spi,
            encr: Encr::AesGcm16_128,
            integ: None,
            encr_key: &ek,
            integ_key: &[],
            esn: false,
            replay_window: 1024,
            mode: Mode::Tunnel,
            local_ts: vec![*local],
            remote_ts: vec![*remote],
            tag: u64::from(i),
        };
        sad.add_inbound(cfg(i + 1, &local, &remote))
            .expect("inbound SA");
        sad.add_outbound(cfg(i + 1, &remote, &local))
            .expect("outbound SA");
    }
    let installed = rss();
    println!(
        "{count} child SA pairs installed: RSS {before} -> {installed} B, {:.0} B per pair (idle)",
        (installed.saturating_sub(before)) as f64 / f64::from(count)
    );
    // One packet out and back in through every pair.
    let mut inner = vec![0u8; 100];
    inner[..20].copy_from_slice(&[
        0x45, 0, 0, 100, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 1, 1,
    ]);
    let mut out = vec![0u8; 200];
    for i in 0..count {
        let n = sad
            .encapsulate(i + 1, NEXT_HEADER_IPV4, &inner, &mut out)
            .expect("seal");
        let pkt = out.get_mut(..n).expect("length");
        black_box(sad.decapsulate(pkt).expect("open").payload.len());
    }
    let used = rss();
    println!(
        "after one packet out and in per pair: RSS {used} B, {:.0} B per pair",
        (used.saturating_sub(before)) as f64 / f64::from(count)
    );
    black_box(&sad);
}
