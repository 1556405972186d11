//! The decrypting side's TUN writes with offload, user-space part only
//! (no system call): the 45 in-order TCP segments of one 64 KiB TSO burst
//! (MSS 1388), as they lie decrypted in one UDP GRO read, planned into
//! device writes.
//!
//! - `ours`: our GRO (`driver/gro.rs`): plan in place, verify checksums,
//!   build the merged header and the gather list (`writev`).
//! - `tun_rs`: what the driver did before and still does for single
//!   reads: copy each packet into a write buffer of its own
//!   (`queue_tun_write`), then tun-rs's `handle_gro` (which copies each
//!   packet again and merges them into the first buffer).
//!
//! Both end with one write of the whole burst. Run:
//! `cargo bench -p endpoint --bench tun_gro`.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use endpoint::benching::{Gro, VNET_LEN};
use std::hint::black_box;

const MSS: usize = 1388;
const SEGMENTS: u32 = 45;

/// An IPv4 TCP segment (ACK) with valid checksums.
fn segment(seq: u32, id: u16) -> Vec<u8> {
    let total = 40 + MSS;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 98, 0, 1]);
    p[16..20].copy_from_slice(&[10, 99, 0, 1]);
    let c = !tun_rs::checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&64000u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (i as u32 ^ seq) as u8;
    }
    let pseudo = tun_rs::checksum_no_fold(&p[12..20], 6 + (total - 20) as u64);
    let c = !tun_rs::checksum(&p[20..], pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn bench(c: &mut Criterion) {
    let segs: Vec<Vec<u8>> = (0..SEGMENTS)
        .map(|i| segment(1000 + i * MSS as u32, i as u16))
        .collect();
    // As in a UDP GRO read: each packet after its ESP header (64 octets
    // apart, as if the ESP overhead lay between them).
    let mut read = Vec::new();
    let mut at = Vec::new();
    for s in &segs {
        read.extend_from_slice(&[0u8; 64]);
        at.push(read.len());
        read.extend_from_slice(s);
    }
    let mut g = c.benchmark_group("tun_gro");
    g.throughput(Throughput::Bytes((segs.len() * MSS) as u64));
    let mut gro = Gro::new(false);
    g.bench_function("ours", |b| {
        b.iter(|| {
            for (s, &start) in segs.iter().zip(&at) {
                gro.push(&read[start..start + s.len()], start);
            }
            let mut bytes = 0;
            let done = gro.write(black_box(&read), |iov| {
                bytes += iov.iter().map(|s| s.len()).sum::<usize>();
                Ok(bytes)
            });
            assert_eq!(done.writes, 1);
            black_box(bytes)
        })
    });
    let cap = 2 * tun_rs::VIRTIO_NET_HDR_LEN + usize::from(u16::MAX);
    let mut bufs: Vec<Vec<u8>> = (0..segs.len()).map(|_| Vec::with_capacity(cap)).collect();
    let mut to_write = Vec::new();
    // tun-rs resets its tables inside `send_multiple` (not public): fresh
    // tables each time here; `tun_rs_tables` is what that alone costs.
    g.bench_function("tun_rs_tables", |b| {
        let mut none: Vec<Vec<u8>> = Vec::new();
        b.iter(|| {
            let (mut tcp, mut udp) = (Default::default(), Default::default());
            to_write.clear();
            let r = tun_rs::handle_gro(
                &mut none,
                tun_rs::VIRTIO_NET_HDR_LEN,
                &mut tcp,
                &mut udp,
                false,
                &mut to_write,
            );
            black_box((r.is_ok(), tcp, udp))
        })
    });
    g.bench_function("tun_rs", |b| {
        b.iter(|| {
            let (mut tcp, mut udp) = (Default::default(), Default::default());
            for ((buf, s), &start) in bufs.iter_mut().zip(&segs).zip(&at) {
                buf.clear();
                buf.resize(tun_rs::VIRTIO_NET_HDR_LEN, 0);
                buf.extend_from_slice(&read[start..start + s.len()]);
            }
            to_write.clear();
            tun_rs::handle_gro(
                &mut bufs,
                tun_rs::VIRTIO_NET_HDR_LEN,
                &mut tcp,
                &mut udp,
                false,
                &mut to_write,
            )
            .expect("GRO");
            let bytes: usize = to_write.iter().map(|&i| bufs[i].len()).sum();
            assert_eq!(to_write.len(), 1);
            black_box(bytes)
        })
    });
    g.finish();
    assert_eq!(VNET_LEN, tun_rs::VIRTIO_NET_HDR_LEN);
}

criterion_group!(benches, bench);
criterion_main!(benches);
