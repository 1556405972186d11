//! Paired ESP-against-ring benchmark: the verdict for target 4 of the speed
//! issue ("ESP seal/open at 1400 B at least 85% of ring's raw rate, same
//! bench"), robust to the noise of a shared machine.
//!
//! Each round times one batch of latchkey's packet path and one batch of
//! ring's raw AEAD on the *same bytes*, back to back, in alternating order
//! (AB, then BA, ...), and records the ratio `ring time / latchkey time`
//! (latchkey's rate as a fraction of ring's). A burst of other load hits
//! both halves of a round or shifts one round's ratio; the median over many
//! rounds is what the noise does not decide. The quartiles are printed too.
//!
//! What each side does, per packet (AES-128-GCM, 1400-octet payload, so a
//! 1404-octet ciphertext: payload, 2 octets of padding, Pad Length, Next
//! Header, RFC 4303 2.4; 8-octet AAD SPI || seq, 8-octet IV, 16-octet ICV):
//! - Which API: latchkey's side is the SAD owner's (`&mut Sad`:
//!   `Sad::decapsulate_mut`, `Sad::sealer_mut`), what the endpoint's
//!   driver, which owns its SAD, uses since 2026-11-29: plain sequence and
//!   octet counters and no replay-window lock. With `--shared` it is the
//!   `&Sad` API instead (`Sad::decapsulate`, `Sad::encapsulate`,
//!   `Sad::sealer`: atomic counters and the window's writer lock, so that
//!   several threads may use one SAD), rows named `..., shared SAD`.
//! - `open`: latchkey `Sad::decapsulate_mut` on the ESP packet (length checks,
//!   SPI lookup, replay pre-check, AEAD open, replay update, trailer and
//!   padding check, next header check; in `tunnel` also the inner IPv4/UDP
//!   header parse and the traffic-selector check). ring raw:
//!   `LessSafeKey::open_in_place` of the same packet's ciphertext and ICV
//!   with the same nonce (salt || IV) and AAD (its first 8 octets), nothing
//!   else. Both work on their own fresh copy of the same sealed packets,
//!   each copied (untimed) right before its own timed run, so both start
//!   equally hot in cache (until 2026-11-28 05:00 both copies were made
//!   before the round, which left ring's, made second, the hotter one).
//! - Which seal the endpoint uses: the TUN offload datapath writes each
//!   segment of a TSO read where it is sealed and the channels build their
//!   inner packet there, both then `encapsulate_in_place` (the row
//!   `seal (in place)`, since 2026-11-29); the copying `seal` row is what a
//!   single TUN read (an ACK, a packet the stack did not ask us to cut, or
//!   any packet with offload off) costs, its copy out of the read buffer
//!   counted.
//! - `seal`: latchkey `SealerMut::encapsulate` (the SPI looked up per
//!   packet with `Sad::sealer_mut`) of the payload into an output
//!   buffer (header, a copy of the payload, padding and trailer, sequence
//!   number, AEAD seal). ring raw: `seal_in_place_separate_tag` over a
//!   1404-octet buffer with a 12-octet nonce and the 8-octet AAD, in place
//!   (no copy of the payload: the copy is latchkey's and is counted
//!   against it).
//! - `seal (in place)`: latchkey `SealerMut::encapsulate_in_place` (the SPI
//!   looked up per packet) on a buffer that already holds the payload after
//!   the ESP header and IV (where a TUN read into the send buffer puts it):
//!   header, padding and trailer, sequence number, AEAD seal, no copy of the
//!   payload. ring raw as for `seal`. Both seal whatever their buffer holds
//!   from the previous round.
//!
//! Run: `cargo bench -p esp --bench pair` (options: `--rounds N`, `--batch
//! N`, `--size N`, `--only open|tunnel|seal|seal-in-place`, `--shared`,
//! `--markdown` for table rows,
//! `--spin` to run only latchkey's seal and open for a profiler, transport
//! mode or, with `--only tunnel`, tunnel mode). Benchmarks report; they do
//! not assert.

use std::hint::black_box;
use std::time::{Duration, Instant};

use esp::{SaConfig, Sad, NEXT_HEADER_IPV4};
use pad::alg::Encr;
use pad::{Mode, TrafficSelector};
use ring::aead;

const SPI: u32 = 0x1234_5678;

struct Opts {
    rounds: usize,
    batch: usize,
    size: usize,
    only: Option<String>,
    spin: bool,
    markdown: bool,
    shared: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        rounds: 30000,
        batch: 32,
        size: 1400,
        only: None,
        spin: false,
        markdown: false,
        shared: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |d: usize| args.next().and_then(|v| v.parse().ok()).unwrap_or(d).max(1);
        match a.as_str() {
            "--rounds" => o.rounds = num(o.rounds),
            "--batch" => o.batch = num(o.batch),
            "--size" => o.size = num(o.size),
            "--only" => o.only = args.next(),
            "--spin" => o.spin = true,
            "--markdown" => o.markdown = true,
            "--shared" => o.shared = true,
            // `cargo bench` passes `--bench`; filters are not used.
            _ => {}
        }
    }
    o
}

fn ts(s: &str) -> TrafficSelector {
    s.parse().expect("selector")
}

/// Encryption KEYMAT: 16 octets of AES key, 4 of salt.
fn keymat() -> Vec<u8> {
    (0..Encr::AesGcm16_128.keymat_len())
        .map(|i| i as u8)
        .collect()
}

fn sad(mode: Mode) -> Sad {
    let ek = keymat();
    let (local, remote) = match mode {
        Mode::Tunnel => (vec![ts("10.0.1.0/24")], vec![ts("10.0.0.0/24")]),
        Mode::Transport => (Vec::new(), Vec::new()),
    };
    let cfg = SaConfig {
        spi: SPI,
        encr: Encr::AesGcm16_128,
        integ: None,
        encr_key: &ek,
        integ_key: &[],
        esn: false,
        replay_window: 1024,
        mode,
        local_ts: local,
        remote_ts: remote,
        tag: 1,
    };
    let mut s = Sad::new();
    s.add_outbound(cfg.clone()).expect("outbound SA");
    s.add_inbound(cfg).expect("inbound SA");
    s
}

fn ring_key() -> (aead::LessSafeKey, [u8; 4]) {
    let km = keymat();
    let (k, salt) = km.split_at(16);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, k).expect("key"));
    (key, salt.try_into().expect("salt"))
}

/// A payload of `size` octets: in tunnel mode an IPv4/UDP packet from
/// 10.0.0.1 to 10.0.1.1 (within the SA's selectors).
fn payload(mode: Mode, size: usize) -> Vec<u8> {
    let mut p = vec![0xa5u8; size.max(28)];
    if mode == Mode::Tunnel {
        let len = p.len() as u16;
        p[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 1, 1,
        ]);
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p[20..22].copy_from_slice(&1234u16.to_be_bytes());
        p[22..24].copy_from_slice(&5678u16.to_be_bytes());
        p[24..26].copy_from_slice(&(len - 20).to_be_bytes());
    }
    p
}

fn nonce(salt: &[u8; 4], pkt: &[u8]) -> aead::Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(&pkt[8..16]);
    aead::Nonce::assume_unique_for_key(n)
}

fn aad(pkt: &[u8]) -> aead::Aad<[u8; 8]> {
    aead::Aad::from(pkt[..8].try_into().expect("8 octets"))
}

/// Ratios' median and quartiles.
fn summary(mut r: Vec<f64>) -> (f64, f64, f64) {
    r.sort_by(f64::total_cmp);
    let q = |f: f64| r[((r.len() - 1) as f64 * f) as usize];
    (q(0.25), q(0.5), q(0.75))
}

fn report(name: &str, o: &Opts, lk: &[Duration], rg: &[Duration]) {
    let name = if o.shared {
        format!("{name}, shared SAD")
    } else {
        name.to_string()
    };
    let per = |d: &[Duration]| {
        let mut v: Vec<f64> = d
            .iter()
            .map(|t| t.as_nanos() as f64 / o.batch as f64)
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios: Vec<f64> = lk
        .iter()
        .zip(rg)
        .map(|(a, b)| b.as_secs_f64() / a.as_secs_f64())
        .collect();
    let (q1, med, q3) = summary(ratios);
    if o.markdown {
        println!(
            "| {name} | {l:.1} ns | {r:.1} ns | {med:.3}x ({q1:.3} .. {q3:.3}) |",
            l = per(lk),
            r = per(rg),
        );
        return;
    }
    println!(
        "{name:<16} {size} B: latchkey {l:.1} ns, ring raw {r:.1} ns (medians per packet); \
         ratio ring/latchkey per round: median {med:.3}, quartiles {q1:.3} .. {q3:.3} ({n} rounds x {b} packets)",
        size = o.size,
        l = per(lk),
        r = per(rg),
        n = lk.len(),
        b = o.batch,
    );
}

fn open_pairs(o: &Opts, mode: Mode, name: &str) {
    let mut s = sad(mode);
    let (key, salt) = ring_key();
    let p = payload(mode, o.size);
    let nh = match mode {
        Mode::Tunnel => NEXT_HEADER_IPV4,
        Mode::Transport => 6,
    };
    let len = s.encapsulated_len(SPI, p.len()).expect("len");
    let mut sealed = vec![0u8; len * o.batch];
    let mut mine = sealed.clone();
    let mut theirs = sealed.clone();
    let (mut lk, mut rg) = (Vec::new(), Vec::new());
    let warm = o.rounds / 10;
    for round in 0..o.rounds + warm {
        for pkt in sealed.chunks_mut(len) {
            s.encapsulate(SPI, nh, &p, pkt).expect("seal");
        }
        // Each side copies its packets right before its own timed run, so
        // both start equally hot: a batch (32 x 1440 octets) is larger than
        // L1d, so copying both first left the later copy (ring's) hotter
        // for whichever side ran first.
        let mut run_lk = |buf: &mut [u8]| {
            buf.copy_from_slice(&sealed);
            let t = Instant::now();
            for pkt in buf.chunks_mut(len) {
                let d = if o.shared {
                    s.decapsulate(pkt)
                } else {
                    s.decapsulate_mut(pkt)
                };
                black_box(d.expect("open").payload.len());
            }
            t.elapsed()
        };
        let run_ring = |buf: &mut [u8]| {
            buf.copy_from_slice(&sealed);
            let t = Instant::now();
            for pkt in buf.chunks_mut(len) {
                let (head, ct) = pkt.split_at_mut(16);
                let n = nonce(&salt, head);
                let pt = key.open_in_place(n, aad(head), ct).expect("ring open");
                black_box(pt.len());
            }
            t.elapsed()
        };
        let (a, b) = if round % 2 == 0 {
            let a = run_lk(&mut mine);
            (a, run_ring(&mut theirs))
        } else {
            let b = run_ring(&mut theirs);
            (run_lk(&mut mine), b)
        };
        if round >= warm {
            lk.push(a);
            rg.push(b);
        }
    }
    report(name, o, &lk, &rg);
}

fn seal_pairs(o: &Opts, in_place: bool) {
    let mut s = sad(Mode::Transport);
    let (key, salt) = ring_key();
    let p = payload(Mode::Transport, o.size);
    let len = s.encapsulated_len(SPI, p.len()).expect("len");
    // ring seals the same plaintext length ESP does (payload + padding +
    // trailer), in place.
    let ct_len = len - 8 - 8 - 16;
    let mut out = vec![0u8; len * o.batch];
    if in_place {
        // The payload where a TUN read into the send buffer would put it;
        // from the second round on each packet seals the previous round's
        // bytes in place, as ring raw does.
        let off = s.sealer(SPI).expect("sealer").payload_offset();
        for pkt in out.chunks_mut(len) {
            pkt[off..off + p.len()].copy_from_slice(&p);
        }
    }
    let mut buf = vec![0xa5u8; ct_len * o.batch];
    let (mut lk, mut rg) = (Vec::new(), Vec::new());
    let warm = o.rounds / 10;
    let mut ctr = 0u64;
    let hdr = [0u8; 16];
    for round in 0..o.rounds + warm {
        let mut run_lk = || {
            let t = Instant::now();
            for pkt in out.chunks_mut(len) {
                // The SPI looked up per packet, as `Sad::encapsulate` does.
                let n = match (o.shared, in_place) {
                    (true, true) => {
                        let sealer = s.sealer(SPI).expect("sealer");
                        sealer.encapsulate_in_place(17, pkt, p.len())
                    }
                    (true, false) => s.encapsulate(SPI, 17, &p, pkt),
                    (false, true) => {
                        let mut sealer = s.sealer_mut(SPI).expect("sealer");
                        sealer.encapsulate_in_place(17, pkt, p.len())
                    }
                    (false, false) => {
                        let mut sealer = s.sealer_mut(SPI).expect("sealer");
                        sealer.encapsulate(17, &p, pkt)
                    }
                };
                black_box(n.expect("seal"));
            }
            t.elapsed()
        };
        let mut run_ring = || {
            let t = Instant::now();
            for pt in buf.chunks_mut(ct_len) {
                ctr += 1;
                let mut h = hdr;
                h[8..].copy_from_slice(&ctr.to_be_bytes());
                let tag = key
                    .seal_in_place_separate_tag(nonce(&salt, &h), aad(&h), pt)
                    .expect("ring seal");
                black_box(tag.as_ref()[0]);
            }
            t.elapsed()
        };
        let (a, b) = if round % 2 == 0 {
            let a = run_lk();
            (a, run_ring())
        } else {
            let b = run_ring();
            (run_lk(), b)
        };
        if round >= warm {
            lk.push(a);
            rg.push(b);
        }
    }
    report(
        if in_place { "seal (in place)" } else { "seal" },
        o,
        &lk,
        &rg,
    );
}

/// Open only, forever-ish, for `perf record`.
fn spin(o: &Opts) {
    let (mode, nh) = match o.only.as_deref() {
        Some("tunnel") => (Mode::Tunnel, NEXT_HEADER_IPV4),
        _ => (Mode::Transport, 6),
    };
    let s = sad(mode);
    let p = payload(mode, o.size);
    let len = s.encapsulated_len(SPI, p.len()).expect("len");
    let mut sealed = vec![0u8; len * o.batch];
    for _ in 0..o.rounds {
        for pkt in sealed.chunks_mut(len) {
            s.encapsulate(SPI, nh, &p, pkt).expect("seal");
        }
        for pkt in sealed.chunks_mut(len) {
            black_box(s.decapsulate(pkt).expect("open").payload.len());
        }
    }
}

fn main() {
    let o = opts();
    if o.spin {
        spin(&o);
        return;
    }
    let want = |n: &str| o.only.as_deref().is_none_or(|x| x == n);
    if o.markdown {
        println!(
            "| AES-128-GCM, {} B, {} rounds x {} packets | latchkey (median per packet) | ring raw, same bytes | ring time / latchkey time per round: median (quartiles) |",
            o.size, o.rounds, o.batch
        );
        println!("|---|---|---|---|");
    }
    if want("open") {
        open_pairs(&o, Mode::Transport, "open (transport)");
    }
    if want("tunnel") {
        open_pairs(&o, Mode::Tunnel, "open (tunnel)");
    }
    if want("seal") {
        seal_pairs(&o, false);
    }
    if want("seal-in-place") {
        seal_pairs(&o, true);
    }
}
