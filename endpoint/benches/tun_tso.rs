//! The encrypting side's TUN reads with offload, user-space part before
//! the seal (no system call, no encryption): one 64 KiB TSO read (TCP over
//! IPv4, MSS 1388, 47 segments) cut into segments that end up back to
//! back in the ESP send buffer, each after room for the ESP header and IV
//! (16 octets) and followed by room for the trailer and ICV, where the
//! seal then runs in place.
//!
//! - `ours`: our cut (`driver/tso.rs`): each segment written straight
//!   into its place in the send buffer, its checksums computed there.
//! - `tun_rs`: what the driver did before: tun-rs's `gso_split` into a
//!   buffer per segment (its `recv_multiple`), then a copy of each into
//!   the send buffer (`Sealer::encapsulate`).
//!
//! Run: `cargo bench -p endpoint --bench tun_tso`.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use endpoint::benching::{tso_read, Read, VNET_LEN};
use std::hint::black_box;

const MSS: u16 = 1388;
const PAYLOAD: usize = 47 * MSS as usize;
/// ESP header and IV before each segment; padding, trailer and ICV after
/// it (at most).
const ESP_BEFORE: usize = 16;
const ESP_AFTER: usize = 4 + 16;
const SEND_BUFFER: usize = 64 * 1024 + 47 * (ESP_BEFORE + 40 + ESP_AFTER);

/// One TSO read: virtio-net header (TCPv4, NEEDS_CSUM), IPv4 and TCP
/// headers for the whole packet, the pseudo-header sum in the checksum
/// field, as the stack leaves it.
fn tso_read_bytes() -> Vec<u8> {
    let total = 40 + PAYLOAD;
    let mut r = vec![1u8, 1];
    for f in [40u16, MSS, 20, 16] {
        r.extend_from_slice(&f.to_ne_bytes());
    }
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 98, 0, 1]);
    p[16..20].copy_from_slice(&[10, 99, 0, 1]);
    let c = !tun_rs::checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..28].copy_from_slice(&1000u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x18;
    p[34..36].copy_from_slice(&64000u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let pseudo = tun_rs::checksum(&p[12..20], 6 + (total - 20) as u64);
    p[36..38].copy_from_slice(&pseudo.to_be_bytes());
    r.extend_from_slice(&p);
    r
}

fn bench(c: &mut Criterion) {
    let read = tso_read_bytes();
    let mut g = c.benchmark_group("tun_tso");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let mut send = vec![0u8; SEND_BUFFER];
    let mut buf = read.clone();
    assert!(matches!(tso_read(&mut buf), Ok(Read::Segments(_))));
    g.bench_function("ours", |b| {
        b.iter(|| {
            buf.copy_from_slice(&read);
            let Ok(Read::Segments(t)) = tso_read(black_box(&mut buf)) else {
                return;
            };
            let mut at = 0;
            for i in 0..t.count() {
                let n = t.seg_len(i);
                let slot = &mut send[at + ESP_BEFORE..at + ESP_BEFORE + n];
                assert!(t.write(i, slot));
                at += ESP_BEFORE + n + ESP_AFTER;
            }
            black_box(&send);
        })
    });
    let mut segs: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE)
        .map(|_| vec![0u8; 1500 + 128])
        .collect();
    let mut sizes = vec![0usize; segs.len()];
    g.bench_function("tun_rs", |b| {
        b.iter(|| {
            buf.copy_from_slice(&read);
            let hdr = tun_rs::VirtioNetHdr::decode(&buf[..VNET_LEN]).expect("header");
            let n = tun_rs::gso_split(
                black_box(&mut buf[VNET_LEN..]),
                hdr,
                &mut segs,
                &mut sizes,
                0,
                false,
            )
            .expect("split");
            let mut at = 0;
            for (s, &len) in segs.iter().zip(&sizes).take(n) {
                send[at + ESP_BEFORE..at + ESP_BEFORE + len].copy_from_slice(&s[..len]);
                at += ESP_BEFORE + len + ESP_AFTER;
            }
            black_box(&send);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
