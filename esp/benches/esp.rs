//! ESP datapath benchmarks: `Sad::encapsulate` (seal) and
//! `Sad::decapsulate` (open) per suite at 64, 512, 1400 and 8192 octets, and
//! ring's raw `LessSafeKey` at the same sizes as the baseline for the AEADs.
//!
//! ring's side seals and opens the plaintext length ESP does at that size
//! (payload, padding to 4 octets, Pad Length and Next Header), with an
//! 8-octet AAD; in place, so without the payload copy `Sad::encapsulate`
//! makes. For the ESP-against-ring verdict use the `pair` bench, which
//! alternates both on the same bytes round by round; separate criterion
//! runs swing by 20-50% on a shared machine.
//!
//! Run: `cargo bench -p esp --bench esp -- --warm-up-time 1
//! --measurement-time 3 'aes128gcm'`. Benchmarks report; they do not assert.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use esp::{SaConfig, Sad};
use pad::alg::{Encr, Integ};
use pad::Mode;
use ring::aead;

const SIZES: [usize; 4] = [64, 512, 1400, 8192];
const SPI: u32 = 0x1234_5678;

struct Suite {
    name: &'static str,
    encr: Encr,
    integ: Option<Integ>,
    ring: Option<&'static aead::Algorithm>,
}

const SUITES: [Suite; 4] = [
    Suite {
        name: "aes128gcm",
        encr: Encr::AesGcm16_128,
        integ: None,
        ring: Some(&aead::AES_128_GCM),
    },
    Suite {
        name: "aes256gcm",
        encr: Encr::AesGcm16_256,
        integ: None,
        ring: Some(&aead::AES_256_GCM),
    },
    Suite {
        name: "chacha20poly1305",
        encr: Encr::ChaCha20Poly1305,
        integ: None,
        ring: Some(&aead::CHACHA20_POLY1305),
    },
    Suite {
        name: "aes128cbc-sha256",
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha256_128),
        ring: None,
    },
];

fn sad(s: &Suite) -> Sad {
    let ek: Vec<u8> = (0..s.encr.keymat_len()).map(|i| i as u8).collect();
    let ik: Vec<u8> = s
        .integ
        .map(|i| (0..i.key_len()).map(|k| 0x80 ^ k as u8).collect())
        .unwrap_or_default();
    let mut sad = Sad::new();
    let cfg = SaConfig {
        spi: SPI,
        encr: s.encr,
        integ: s.integ,
        encr_key: &ek,
        integ_key: &ik,
        esn: false,
        replay_window: 1024,
        mode: Mode::Transport,
        local_ts: Vec::new(),
        remote_ts: Vec::new(),
        tag: 1,
    };
    sad.add_outbound(cfg.clone()).expect("outbound SA");
    sad.add_inbound(cfg).expect("inbound SA");
    sad
}

fn bench(c: &mut Criterion) {
    for s in &SUITES {
        let mut g = c.benchmark_group(s.name);
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let payload = vec![0xa5u8; size];

            // Seal: encapsulate into a reused buffer.
            let tx = sad(s);
            let mut out = vec![0u8; tx.encapsulated_len(SPI, size).expect("len")];
            g.bench_with_input(BenchmarkId::new("seal", size), &payload, |b, p| {
                b.iter(|| tx.encapsulate(SPI, 17, p, &mut out).expect("seal"));
            });

            // Open: each iteration gets a fresh packet (the replay window
            // refuses a second copy); making it is not timed.
            let rx = sad(s);
            let mut scratch = vec![0u8; rx.encapsulated_len(SPI, size).expect("len")];
            g.bench_with_input(BenchmarkId::new("open", size), &payload, |b, p| {
                b.iter_batched_ref(
                    || {
                        let n = rx.encapsulate(SPI, 17, p, &mut scratch).expect("seal");
                        scratch[..n].to_vec()
                    },
                    |pkt| rx.decapsulate(pkt).map(|d| d.payload.len()).expect("open"),
                    BatchSize::SmallInput,
                );
            });

            let Some(alg) = s.ring else {
                continue;
            };
            // Baseline: ring's AEAD alone, in place, with an 8-octet AAD,
            // over ESP's plaintext length (RFC 4303 2.4: payload, padding,
            // Pad Length, Next Header; 4-octet alignment for the AEADs).
            let key_bytes: Vec<u8> = (0..alg.key_len()).map(|i| i as u8).collect();
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key_bytes).expect("key"));
            let payload = vec![0xa5u8; (size + 2).div_ceil(4) * 4];
            let mut buf = payload.clone();
            let mut ctr = 0u64;
            g.bench_with_input(BenchmarkId::new("ring_seal", size), &size, |b, _| {
                b.iter(|| {
                    ctr += 1;
                    let mut n = [0u8; 12];
                    n[4..].copy_from_slice(&ctr.to_be_bytes());
                    key.seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(n),
                        aead::Aad::from([0u8; 8]),
                        &mut buf,
                    )
                    .expect("ring seal")
                });
            });
            let nonce = [7u8; 12];
            let mut sealed = payload.clone();
            let tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from([0u8; 8]),
                    &mut sealed,
                )
                .expect("ring seal");
            sealed.extend_from_slice(tag.as_ref());
            g.bench_with_input(BenchmarkId::new("ring_open", size), &size, |b, _| {
                b.iter_batched_ref(
                    || sealed.clone(),
                    |ct| {
                        key.open_in_place(
                            aead::Nonce::assume_unique_for_key(nonce),
                            aead::Aad::from([0u8; 8]),
                            ct,
                        )
                        .map(|p| p.len())
                        .expect("ring open")
                    },
                    BatchSize::SmallInput,
                );
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
