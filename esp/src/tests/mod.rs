//! Tests of the SAD and the packet paths: round trips, known answers,
//! anti-replay, tampering, every drop reason, and random input.

mod kat;

use std::net::SocketAddr;

use pad::alg::{Encr, Integ};
use pad::{Mode, TrafficSelector};
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::{inner, DropReason, EncapError, SaConfig, Sad, SadError};

pub(crate) const SUITES: [(Encr, Option<Integ>); 6] = [
    (Encr::AesGcm16_128, None),
    (Encr::AesGcm16_256, None),
    (Encr::ChaCha20Poly1305, None),
    (Encr::AesCbc128, Some(Integ::HmacSha256_128)),
    (Encr::AesCbc256, Some(Integ::HmacSha384_192)),
    (Encr::AesCbc256, Some(Integ::HmacSha512_256)),
];

pub(crate) fn keys(encr: Encr, integ: Option<Integ>, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let ek = (0..encr.keymat_len())
        .map(|i| seed.wrapping_add(i as u8))
        .collect();
    let ik = integ
        .map(|i| (0..i.key_len()).map(|k| seed ^ (k as u8)).collect())
        .unwrap_or_default();
    (ek, ik)
}

fn ts(s: &str) -> TrafficSelector {
    s.parse().unwrap()
}

/// A SAD holding an outbound SA and the matching inbound SA (same SPI, same
/// keys), so that packets can go around in one process. The sender is
/// 10.0.0.0/24, the receiver 10.0.1.0/24.
pub(crate) fn looped(encr: Encr, integ: Option<Integ>, mode: Mode, esn: bool, spi: u32) -> Sad {
    looped_window(encr, integ, mode, esn, spi, 1024)
}

fn looped_window(
    encr: Encr,
    integ: Option<Integ>,
    mode: Mode,
    esn: bool,
    spi: u32,
    replay_window: u32,
) -> Sad {
    let mut sad = Sad::new();
    let (ek, ik) = keys(encr, integ, spi as u8);
    let base = SaConfig {
        spi,
        encr,
        integ,
        encr_key: &ek,
        integ_key: &ik,
        esn,
        replay_window,
        mode,
        local_ts: vec![ts("10.0.0.0/24"), ts("2001:db8::/64")],
        remote_ts: vec![ts("10.0.1.0/24"), ts("2001:db8:1::/64")],
        tag: 7000 + u64::from(spi),
    };
    sad.add_outbound(base.clone()).unwrap();
    sad.add_inbound(SaConfig {
        local_ts: base.remote_ts.clone(),
        remote_ts: base.local_ts.clone(),
        ..base
    })
    .unwrap();
    sad
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp_packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 100 + payload.len()];
    let n = inner::build_udp(sa(src), sa(dst), payload, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn encap(sad: &Sad, spi: u32, nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; sad.encapsulated_len(spi, payload.len()).unwrap()];
    let n = sad.encapsulate(spi, nh, payload, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

fn decap(sad: &Sad, pkt: &[u8]) -> Result<(u64, u8, Vec<u8>, u64), DropReason> {
    let mut buf = pkt.to_vec();
    sad.decapsulate(&mut buf)
        .map(|d| (d.seq, d.next_header, d.payload.to_vec(), d.tag))
}

#[test]
fn round_trip_every_suite_mode_and_size() {
    for (i, (encr, integ)) in SUITES.into_iter().enumerate() {
        for esn in [false, true] {
            let spi = 0x1000 + i as u32;
            let sad = looped(encr, integ, Mode::Transport, esn, spi);
            for (k, len) in [0usize, 1, 2, 3, 4, 13, 14, 15, 16, 17, 63, 100, 1400, 8192]
                .into_iter()
                .enumerate()
            {
                let payload: Vec<u8> = (0..len).map(|b| b as u8).collect();
                let pkt = encap(&sad, spi, 17, &payload);
                // Header: SPI and the low 32 bits of the sequence number.
                assert_eq!(pkt[..4], spi.to_be_bytes());
                assert_eq!(pkt[4..8], (k as u32 + 1).to_be_bytes());
                // Ciphertext aligned to the block (4 or 16 octets).
                let t_over =
                    8 + encr.iv_len() + encr.aead_icv_len() + integ.map_or(0, |x| x.icv_len());
                assert_eq!((pkt.len() - t_over) % encr.block_len(), 0);
                let (seq, nh, got, tag) = decap(&sad, &pkt).unwrap();
                assert_eq!((seq, nh, tag), (k as u64 + 1, 17, 7000 + u64::from(spi)));
                assert_eq!(got, payload, "{encr:?} {esn} {len}");
            }
            let st = sad.inbound_stats(spi).unwrap();
            assert_eq!(st.packets, 14);
            assert_eq!(sad.outbound_stats(spi).unwrap().seq, 14);
        }
    }
}

#[test]
fn tunnel_mode_round_trip_ipv4_and_ipv6_with_selectors() {
    for (i, (encr, integ)) in SUITES.into_iter().enumerate() {
        let spi = 0x2000 + i as u32;
        let sad = looped(encr, integ, Mode::Tunnel, false, spi);
        let p4 = udp_packet("10.0.0.5:1000", "10.0.1.7:2000", b"four");
        let pkt = encap(&sad, spi, 4, &p4);
        let (_, nh, got, _) = decap(&sad, &pkt).unwrap();
        assert_eq!((nh, &got), (4, &p4));
        let p6 = udp_packet("[2001:db8::5]:1000", "[2001:db8:1::7]:2000", b"six");
        let pkt = encap(&sad, spi, 41, &p6);
        let (_, nh, got, _) = decap(&sad, &pkt).unwrap();
        assert_eq!((nh, &got), (41, &p6));
        // Wrong family for the next header.
        let pkt = encap(&sad, spi, 41, &p4);
        assert_eq!(decap(&sad, &pkt), Err(DropReason::MalformedInner));
    }
}

#[test]
fn cbc_ivs_differ_per_packet_and_look_random() {
    let spi = 0x3000;
    let sad = looped(
        Encr::AesCbc128,
        Some(Integ::HmacSha256_128),
        Mode::Transport,
        false,
        spi,
    );
    let a = encap(&sad, spi, 17, b"same");
    let b = encap(&sad, spi, 17, b"same");
    assert_ne!(a[8..24], b[8..24]);
    assert_ne!(a[24..40], b[24..40]);
    // Not the sequence number in clear.
    assert_ne!(a[8..16], 1u64.to_be_bytes());
}

#[test]
fn encapsulate_errors() {
    let spi = 0x3100;
    let sad = looped(Encr::AesGcm16_128, None, Mode::Tunnel, false, spi);
    let mut small = [0u8; 10];
    assert_eq!(
        sad.encapsulate(spi, 4, b"abc", &mut small),
        Err(EncapError::BufferTooSmall {
            needed: 8 + 8 + 8 + 16
        })
    );
    assert_eq!(
        sad.encapsulate(99, 4, b"abc", &mut small),
        Err(EncapError::UnknownSpi(99))
    );
    let mut out = [0u8; 100];
    assert_eq!(
        sad.encapsulate(spi, 17, b"abc", &mut out),
        Err(EncapError::BadNextHeader(17))
    );
    assert_eq!(sad.encapsulated_len(99, 1), Err(EncapError::UnknownSpi(99)));
    // A failed encapsulation does not use up a sequence number.
    assert_eq!(sad.outbound_stats(spi).unwrap().seq, 0);
    assert_eq!(sad.stats().encap_unknown_spi, 1);
}

#[test]
fn sequence_number_exhaustion() {
    let spi = 0x3200;
    let sad = looped(Encr::AesGcm16_128, None, Mode::Transport, false, spi);
    sad.set_outbound_seq(spi, u64::from(u32::MAX) - 1);
    let mut out = [0u8; 100];
    assert!(sad.encapsulate(spi, 17, b"x", &mut out).is_ok());
    assert_eq!(&out[4..8], &[0xff; 4]);
    assert_eq!(
        sad.encapsulate(spi, 17, b"x", &mut out),
        Err(EncapError::SequenceExhausted)
    );
    assert_eq!(
        sad.encapsulate(spi, 17, b"x", &mut out),
        Err(EncapError::SequenceExhausted)
    );
    assert_eq!(sad.stats().seq_exhausted, 2);
    assert_eq!(sad.outbound_stats(spi).unwrap().drops, 2);

    let spi = 0x3201;
    let sad = looped(Encr::ChaCha20Poly1305, None, Mode::Transport, true, spi);
    sad.set_outbound_seq(spi, u64::MAX - 1);
    assert!(sad.encapsulate(spi, 17, b"x", &mut out).is_ok());
    assert_eq!(
        sad.encapsulate(spi, 17, b"x", &mut out),
        Err(EncapError::SequenceExhausted)
    );
}

#[test]
fn sad_errors() {
    let mut sad = Sad::new();
    let (ek, ik) = keys(Encr::AesCbc128, Some(Integ::HmacSha256_128), 1);
    let cfg = SaConfig {
        spi: 5,
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha256_128),
        encr_key: &ek,
        integ_key: &ik,
        esn: false,
        replay_window: 0,
        mode: Mode::Tunnel,
        local_ts: vec![],
        remote_ts: vec![],
        tag: 1,
    };
    sad.add_inbound(cfg.clone()).unwrap();
    assert_eq!(sad.add_inbound(cfg.clone()), Err(SadError::DuplicateSpi(5)));
    // Same SPI in the other direction is fine.
    sad.add_outbound(cfg.clone()).unwrap();
    assert_eq!(
        sad.add_inbound(SaConfig {
            spi: 0,
            ..cfg.clone()
        }),
        Err(SadError::ZeroSpi)
    );
    assert_eq!(
        sad.add_inbound(SaConfig {
            spi: 6,
            integ: None,
            ..cfg.clone()
        }),
        Err(SadError::MissingInteg)
    );
    assert_eq!(
        sad.add_inbound(SaConfig {
            spi: 6,
            encr_key: &ek[..15],
            ..cfg.clone()
        }),
        Err(SadError::EncrKeyLength {
            expected: 16,
            got: 15
        })
    );
    assert_eq!(
        sad.add_inbound(SaConfig {
            spi: 6,
            integ_key: &ik[..31],
            ..cfg.clone()
        }),
        Err(SadError::IntegKeyLength {
            expected: 32,
            got: 31
        })
    );
    let gk = [0u8; 20];
    assert_eq!(
        sad.add_inbound(SaConfig {
            spi: 6,
            encr: Encr::AesGcm16_128,
            encr_key: &gk,
            ..cfg.clone()
        }),
        Err(SadError::UnexpectedInteg)
    );
    assert_eq!(
        sad.add_inbound(SaConfig {
            spi: 6,
            replay_window: u32::MAX,
            ..cfg.clone()
        }),
        Err(SadError::ReplayWindowTooLarge(u32::MAX))
    );
    // Window raised to the minimum and rounded up.
    assert_eq!(sad.inbound(5).unwrap().replay_window, 1024);
    sad.add_inbound(SaConfig {
        spi: 7,
        replay_window: 2000,
        ..cfg.clone()
    })
    .unwrap();
    assert_eq!(sad.inbound(7).unwrap().replay_window, 2048);
    let g = sad.generation();
    assert!(sad.remove_inbound(7).is_some());
    assert!(sad.remove_inbound(7).is_none());
    assert!(sad.generation() > g);
    let mut spis = sad.inbound_spis();
    spis.sort_unstable();
    assert_eq!(spis, vec![5]);
    assert_eq!(sad.outbound_spis(), vec![5]);
    assert!(sad.contains_inbound(5));
    assert!(sad.remove_outbound(5).is_some());
    assert!(sad.outbound(5).is_none());
}

#[test]
fn stats_survive_removal() {
    let spi = 0x3300;
    let mut sad = looped(Encr::AesGcm16_256, None, Mode::Transport, false, spi);
    for _ in 0..3 {
        let p = encap(&sad, spi, 6, b"abcdef");
        decap(&sad, &p).unwrap();
    }
    let s = sad.stats();
    assert_eq!((s.encapsulated, s.encapsulated_bytes), (3, 18));
    assert_eq!((s.decapsulated, s.decapsulated_bytes), (3, 18));
    let fin = sad.remove_inbound(spi).unwrap();
    assert_eq!((fin.packets, fin.bytes, fin.seq), (3, 18, 3));
    sad.remove_outbound(spi).unwrap();
    let s2 = sad.stats();
    assert_eq!((s2.encapsulated, s2.decapsulated), (3, 3));
}

#[test]
fn replay_duplicates_old_and_far_ahead() {
    for (i, (encr, integ)) in SUITES.into_iter().enumerate() {
        let spi = 0x4000 + i as u32;
        let sad = looped(encr, integ, Mode::Transport, false, spi);
        let first = encap(&sad, spi, 17, b"1");
        let second = encap(&sad, spi, 17, b"2");
        assert!(decap(&sad, &second).is_ok());
        // Out of order inside the window.
        assert!(decap(&sad, &first).is_ok());
        assert_eq!(decap(&sad, &first), Err(DropReason::Replayed));
        assert_eq!(decap(&sad, &second), Err(DropReason::Replayed));
        // Jump far ahead: 1 and 2 fall out of the window.
        sad.set_outbound_seq(spi, 5000);
        let far = encap(&sad, spi, 17, b"far");
        assert_eq!(decap(&sad, &far).unwrap().0, 5001);
        assert_eq!(decap(&sad, &first), Err(DropReason::TooOld));
        // A packet just inside the window is still accepted.
        sad.set_outbound_seq(spi, 5001 - 1024);
        let edge = encap(&sad, spi, 17, b"edge");
        assert_eq!(decap(&sad, &edge).unwrap().0, 3978);
        sad.set_outbound_seq(spi, 5001 - 1025);
        let out = encap(&sad, spi, 17, b"out");
        assert_eq!(decap(&sad, &out), Err(DropReason::TooOld));
        let st = sad.inbound_stats(spi).unwrap();
        assert_eq!((st.packets, st.drops, st.seq), (4, 4, 5001));
    }
}

#[test]
fn replay_window_is_not_moved_by_forgeries() {
    let spi = 0x4100;
    let sad = looped(Encr::AesGcm16_128, None, Mode::Transport, false, spi);
    let good = encap(&sad, spi, 17, b"x");
    // A forged packet claiming a far-ahead sequence number.
    let mut forged = good.clone();
    forged[4..8].copy_from_slice(&100_000u32.to_be_bytes());
    assert_eq!(decap(&sad, &forged), Err(DropReason::IntegrityFailed));
    assert!(decap(&sad, &good).is_ok());
    assert_eq!(sad.inbound(spi).unwrap().stats.seq, 1);
}

#[test]
fn esn_wrap_of_the_low_32_bits() {
    for (i, (encr, integ)) in SUITES.into_iter().enumerate() {
        let spi = 0x5000 + i as u32;
        let sad = looped(encr, integ, Mode::Transport, true, spi);
        // Bring the receiver near the end of the first 2^32 subspace.
        sad.set_outbound_seq(spi, 0xFFFF_F000);
        let p = encap(&sad, spi, 17, b"a");
        assert_eq!(decap(&sad, &p).unwrap().0, 0xFFFF_F001);
        sad.set_outbound_seq(spi, 0xFFFF_FFFD);
        let before = encap(&sad, spi, 17, b"b"); // ..FFFE
        let last = encap(&sad, spi, 17, b"c"); // ..FFFF
        let wrap = encap(&sad, spi, 17, b"d"); // 1_0000_0000
        let after = encap(&sad, spi, 17, b"e"); // 1_0000_0001
        assert_eq!(&wrap[4..8], &[0, 0, 0, 0]);
        assert_eq!(&after[4..8], &[0, 0, 0, 1]);
        assert_eq!(decap(&sad, &after).unwrap().0, 0x1_0000_0001);
        assert_eq!(decap(&sad, &last).unwrap().0, 0xFFFF_FFFF);
        assert_eq!(decap(&sad, &wrap).unwrap().0, 0x1_0000_0000);
        assert_eq!(decap(&sad, &before).unwrap().0, 0xFFFF_FFFE);
        assert_eq!(decap(&sad, &wrap), Err(DropReason::Replayed));
        assert_eq!(decap(&sad, &before), Err(DropReason::Replayed));
        assert_eq!(sad.inbound(spi).unwrap().stats.seq, 0x1_0000_0001);
    }
}

#[test]
fn esn_high_bits_are_authenticated() {
    // Without ESN on the receiver, a packet sent with ESN (high bits != 0)
    // fails the ICV: the high bits are part of it (RFC 4303 2.2.1).
    for (i, (encr, integ)) in SUITES.into_iter().enumerate() {
        let spi = 0x5100 + i as u32;
        let sad = looped(encr, integ, Mode::Transport, true, spi);
        sad.set_outbound_seq(spi, 0x1_0000_0000);
        let p = encap(&sad, spi, 17, b"hi");
        // Receiver still in subspace 0: infers high bits 0 for low bits 1.
        assert_eq!(decap(&sad, &p), Err(DropReason::IntegrityFailed));
        sad.set_inbound_top(spi, 0x1_0000_0000);
        assert_eq!(decap(&sad, &p).unwrap().0, 0x1_0000_0001);
    }
}

#[test]
fn tampering_any_byte_fails_integrity() {
    for (i, (encr, integ)) in SUITES.into_iter().enumerate() {
        let spi = 0x6000 + i as u32;
        let sad = looped(encr, integ, Mode::Transport, false, spi);
        let pkt = encap(&sad, spi, 17, b"attack at dawn, bring snacks");
        for pos in 0..pkt.len() {
            let mut bad = pkt.clone();
            bad[pos] ^= 0x40;
            let want = if pos < 4 {
                DropReason::UnknownSpi
            } else {
                DropReason::IntegrityFailed
            };
            assert_eq!(decap(&sad, &bad), Err(want), "{encr:?} byte {pos}");
        }
        // Truncated by one octet, extended by one.
        let short = &pkt[..pkt.len() - 1];
        assert!(decap(&sad, short).is_err());
        // Nothing moved the window: the original still goes through.
        assert!(decap(&sad, &pkt).is_ok());
    }
}

/// Every drop reason is reachable, and counted.
#[test]
fn every_drop_reason() {
    let mut seen = Vec::new();
    let mut check = |sad: &Sad, pkt: &[u8], want: DropReason| {
        assert_eq!(decap(sad, pkt), Err(want));
        assert!(sad.stats().drops(want) >= 1);
        seen.push(want);
    };

    let spi = 0x7000;
    let gcm = looped(Encr::AesGcm16_128, None, Mode::Tunnel, false, spi);
    let p4 = udp_packet("10.0.0.5:1000", "10.0.1.7:2000", b"ok");

    check(&gcm, &[1, 2, 3, 4, 5, 6, 7], DropReason::Truncated);
    let mut hdr_only = spi.to_be_bytes().to_vec();
    hdr_only.extend_from_slice(&[0, 0, 0, 1]);
    check(&gcm, &hdr_only, DropReason::Truncated);
    check(
        &gcm,
        &[9, 9, 9, 9, 0, 0, 0, 1, 0, 0],
        DropReason::UnknownSpi,
    );

    let good = encap(&gcm, spi, 4, &p4);
    decap(&gcm, &good).unwrap();
    check(&gcm, &good, DropReason::Replayed);
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    bad[7] = 9; // a fresh sequence number, so the ICV is what fails
    check(&gcm, &bad, DropReason::IntegrityFailed);
    gcm.set_outbound_seq(spi, 3000);
    decap(&gcm, &encap(&gcm, spi, 4, &p4)).unwrap();
    check(&gcm, &good, DropReason::TooOld);

    // Padding that is not 1, 2, 3: payload 'ab', pad [1, 3], pad length 2.
    let mut pt = p4.clone();
    pt.extend_from_slice(&[1, 3, 2, 4]);
    while pt.len() & 3 != 0 {
        pt.insert(p4.len(), 0);
    }
    let bad_pad = gcm.seal_raw(spi, 4000, &pt);
    check(&gcm, &bad_pad, DropReason::BadPadding);
    // Pad length beyond the plaintext.
    let bad_len = gcm.seal_raw(spi, 4001, &[0, 0, 200, 4]);
    check(&gcm, &bad_len, DropReason::BadPadding);

    check(&gcm, &encap(&gcm, spi, 59, b""), DropReason::DummyPacket);
    // UDP straight into a tunnel-mode SA.
    check(
        &gcm,
        &gcm.seal_raw(spi, 4002, &[1, 2, 0, 17]),
        DropReason::BadNextHeader,
    );
    // Garbage announced as IPv4.
    check(
        &gcm,
        &encap(&gcm, spi, 4, &[0x45, 1, 2]),
        DropReason::MalformedInner,
    );
    // Inner source outside the peer's selectors; inner destination outside ours.
    let spoofed = udp_packet("10.9.9.9:1000", "10.0.1.7:2000", b"x");
    check(
        &gcm,
        &encap(&gcm, spi, 4, &spoofed),
        DropReason::SelectorMismatch,
    );
    let elsewhere = udp_packet("10.0.0.5:1000", "10.0.2.7:2000", b"x");
    check(
        &gcm,
        &encap(&gcm, spi, 4, &elsewhere),
        DropReason::SelectorMismatch,
    );

    // AES-CBC ciphertext not a whole number of blocks.
    let spi = 0x7001;
    let cbc = looped(
        Encr::AesCbc128,
        Some(Integ::HmacSha256_128),
        Mode::Transport,
        false,
        spi,
    );
    let mut odd = encap(&cbc, spi, 17, b"0123456789");
    odd.push(0);
    check(&cbc, &odd, DropReason::BadLength);
    // A transport-mode SA refuses IP-in-IP.
    check(
        &cbc,
        &cbc.seal_raw(
            spi,
            10,
            &[0; 14].iter().copied().chain([0, 4]).collect::<Vec<_>>(),
        ),
        DropReason::BadNextHeader,
    );

    for r in DropReason::ALL {
        assert!(seen.contains(&r), "{r:?} not reached");
        assert!(!r.to_string().is_empty());
    }
    assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
    for (i, r) in DropReason::ALL.into_iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}

#[test]
fn selectors_with_ports_and_icmp() {
    let spi = 0x7100;
    let mut sad = Sad::new();
    let (ek, _) = keys(Encr::AesGcm16_128, None, 3);
    let cfg = SaConfig {
        spi,
        encr: Encr::AesGcm16_128,
        integ: None,
        encr_key: &ek,
        integ_key: &[],
        esn: false,
        replay_window: 1024,
        mode: Mode::Tunnel,
        local_ts: vec![ts("10.0.1.0/24[udp/53]")],
        remote_ts: vec![ts("10.0.0.0/24[udp]")],
        tag: 1,
    };
    sad.add_outbound(cfg.clone()).unwrap();
    sad.add_inbound(cfg).unwrap();
    let ok = udp_packet("10.0.0.5:1000", "10.0.1.7:53", b"q");
    assert!(decap(&sad, &encap(&sad, spi, 4, &ok)).is_ok());
    let wrong_port = udp_packet("10.0.0.5:1000", "10.0.1.7:54", b"q");
    assert_eq!(
        decap(&sad, &encap(&sad, spi, 4, &wrong_port)),
        Err(DropReason::SelectorMismatch)
    );
    // ICMP is not UDP.
    let mut icmp = ok;
    icmp[9] = 1;
    assert_eq!(
        decap(&sad, &encap(&sad, spi, 4, &icmp)),
        Err(DropReason::SelectorMismatch)
    );
}

#[test]
fn tfc_padding_after_the_inner_packet_is_cut() {
    let spi = 0x7200;
    let sad = looped(Encr::ChaCha20Poly1305, None, Mode::Tunnel, false, spi);
    let p4 = udp_packet("10.0.0.5:1000", "10.0.1.7:2000", b"tfc");
    let mut padded = p4.clone();
    padded.extend_from_slice(&[0u8; 37]);
    let (_, _, got, _) = decap(&sad, &encap(&sad, spi, 4, &padded)).unwrap();
    assert_eq!(got, p4);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1a7c_4e5f);
    let sads: Vec<(u32, Sad, Vec<u8>)> = SUITES
        .into_iter()
        .enumerate()
        .flat_map(|(i, (encr, integ))| {
            [Mode::Tunnel, Mode::Transport]
                .into_iter()
                .map(move |mode| {
                    let spi = 0x8000 + (i as u32) * 2 + u32::from(mode == Mode::Tunnel);
                    let sad = looped(encr, integ, mode, i % 2 == 0, spi);
                    let nh = if mode == Mode::Tunnel { 4 } else { 17 };
                    let p = udp_packet("10.0.0.5:1000", "10.0.1.7:2000", b"seed packet");
                    let pkt = encap(&sad, spi, nh, &p);
                    (spi, sad, pkt)
                })
        })
        .collect();
    let mut buf = vec![0u8; 2048];
    for round in 0..60_000u32 {
        let (spi, sad, valid) = &sads[round as usize % sads.len()];
        let len = (rng.next_u32() % 300) as usize;
        let pkt = &mut buf[..len];
        match round % 3 {
            // Pure noise with the SPI spliced in.
            0 => {
                rng.fill_bytes(pkt);
                if len >= 4 {
                    pkt[..4].copy_from_slice(&spi.to_be_bytes());
                }
            }
            // A valid packet with a few bytes flipped or cut.
            1 => {
                let n = len.min(valid.len());
                pkt[..n].copy_from_slice(&valid[..n]);
                for _ in 0..1 + rng.next_u32() % 3 {
                    if n > 0 {
                        let at = rng.next_u32() as usize % n;
                        pkt[at] ^= 1 << (rng.next_u32() % 8);
                    }
                }
            }
            // Pure noise.
            _ => rng.fill_bytes(pkt),
        }
        let _ = sad.decapsulate(&mut buf[..len]);
    }
    let total: u64 = sads.iter().map(|(_, s, _)| s.stats().total_drops()).sum();
    assert!(total > 0);
}

#[test]
fn sad_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Sad>();
}

#[test]
fn concurrent_encapsulation_gives_unique_sequence_numbers() {
    let spi = 0x9000;
    let sad = looped(Encr::AesGcm16_128, None, Mode::Transport, false, spi);
    let packets = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut out = [0u8; 64];
                let mut mine = Vec::new();
                for _ in 0..500 {
                    let n = sad.encapsulate(spi, 17, b"t", &mut out).unwrap();
                    mine.push(out[..n].to_vec());
                }
                packets.lock().unwrap().extend(mine);
            });
        }
    });
    let mut packets = packets.into_inner().unwrap();
    packets.sort_by_key(|p| u32::from_be_bytes(p[4..8].try_into().unwrap()));
    let mut seqs: Vec<u64> = packets.iter().map(|p| decap(&sad, p).unwrap().0).collect();
    seqs.dedup();
    assert_eq!(seqs, (1..=2000).collect::<Vec<u64>>());
}

#[test]
fn concurrent_decapsulation_of_one_sa() {
    let spi = 0x9100;
    let sad = looped_window(
        Encr::ChaCha20Poly1305,
        None,
        Mode::Transport,
        true,
        spi,
        1 << 16,
    );
    let packets: Vec<Vec<u8>> = (0..4000u32)
        .map(|i| encap(&sad, spi, 17, &i.to_be_bytes()))
        .collect();
    std::thread::scope(|s| {
        for k in 0..2 {
            let (sad, packets) = (&sad, &packets);
            s.spawn(move || {
                for p in packets.iter().skip(k).step_by(2) {
                    let mut b = p.clone();
                    sad.decapsulate(&mut b).unwrap();
                    // A second copy is refused, whichever thread sees it.
                    let mut again = p.clone();
                    assert_eq!(sad.decapsulate(&mut again), Err(DropReason::Replayed));
                }
            });
        }
    });
    let st = sad.inbound_stats(spi).unwrap();
    assert_eq!((st.packets, st.drops, st.seq), (4000, 4000, 4000));
}

/// An authentic packet that a check after decryption refuses still moves
/// the replay window (its replay is refused as a replay) and is counted as
/// a drop, not as accepted; accepted packets count their payload octets.
#[test]
fn refused_authentic_packets_move_the_window_but_are_not_counted() {
    let spi = 0x7100;
    let sad = looped(Encr::AesGcm16_128, None, Mode::Tunnel, false, spi);
    let p4 = udp_packet("10.0.0.5:1000", "10.0.1.7:2000", b"ok");
    let good = encap(&sad, spi, 4, &p4);
    assert!(decap(&sad, &good).is_ok());
    // UDP straight into a tunnel-mode SA: authentic, wrong next header.
    let bad_nh = sad.seal_raw(spi, 5, &[1, 2, 0, 17]);
    assert_eq!(decap(&sad, &bad_nh), Err(DropReason::BadNextHeader));
    assert_eq!(decap(&sad, &bad_nh), Err(DropReason::Replayed));
    let info = sad.inbound(spi).unwrap();
    assert_eq!(info.stats.packets, 1);
    assert_eq!(info.stats.bytes, p4.len() as u64);
    assert_eq!(info.stats.drops, 2);
    assert_eq!(info.stats.seq, 5);
    let st = sad.stats();
    assert_eq!(
        (st.decapsulated, st.decapsulated_bytes),
        (1, p4.len() as u64)
    );
}

/// `Sad::sealer`: one lookup that sizes and encapsulates; the same packets,
/// sequence numbers and counters as `Sad::encapsulate`.
#[test]
fn sealer_sizes_and_encapsulates_like_sad() {
    let spi = 0x3300;
    for (encr, integ) in SUITES {
        let sad = looped(encr, integ, Mode::Tunnel, false, spi);
        let p4 = udp_packet("10.0.0.5:1000", "10.0.1.7:2000", b"sealer");
        let s = sad.sealer(spi).unwrap();
        assert_eq!(s.spi(), spi);
        for n in [0, 1, 13, 100, 1400] {
            assert_eq!(Ok(s.encapsulated_len(n)), sad.encapsulated_len(spi, n));
        }
        let mut out = vec![0u8; s.encapsulated_len(p4.len())];
        let n = s.encapsulate(4, &p4, &mut out).unwrap();
        assert_eq!(n, out.len());
        // Interleaved with `Sad::encapsulate`: one sequence.
        let second = encap(&sad, spi, 4, &p4);
        assert_eq!(&out[4..8], &1u32.to_be_bytes());
        assert_eq!(&second[4..8], &2u32.to_be_bytes());
        let (seq, nh, payload, _) = decap(&sad, &out).unwrap();
        assert_eq!((seq, nh, payload.as_slice()), (1, 4, p4.as_slice()));
        assert_eq!(decap(&sad, &second).unwrap().0, 2);
        assert_eq!(
            s.encapsulate(17, &p4, &mut out),
            Err(EncapError::BadNextHeader(17))
        );
        let mut small = [0u8; 8];
        assert!(matches!(
            s.encapsulate(4, &p4, &mut small),
            Err(EncapError::BufferTooSmall { .. })
        ));
        let st = sad.outbound_stats(spi).unwrap();
        assert_eq!(
            (st.packets, st.bytes, st.drops),
            (2, 2 * p4.len() as u64, 2)
        );
        assert_eq!(sad.sealer(99).unwrap_err(), EncapError::UnknownSpi(99));
        assert_eq!(sad.stats().encap_unknown_spi, 1);
    }
}

/// `encapsulate_in_place` writes the same bytes as `encapsulate` (same
/// keys, same sequence number: the AEAD IV is the sequence number, the CBC
/// IV derived from it), for every suite, both modes and many sizes, into a
/// buffer longer than the packet; the packet opens; errors leave the
/// buffer alone and are counted like `encapsulate`'s.
#[test]
fn encapsulate_in_place_matches_encapsulate() {
    let spi = 0x3500;
    for (encr, integ) in SUITES {
        for mode in [Mode::Tunnel, Mode::Transport] {
            let a = looped(encr, integ, mode, false, spi);
            let b = looped(encr, integ, mode, false, spi);
            let (sa, sb) = (a.sealer(spi).unwrap(), b.sealer(spi).unwrap());
            let off = sb.payload_offset();
            assert_eq!(off, if integ.is_some() { 24 } else { 16 });
            for n in [0usize, 1, 2, 3, 13, 14, 15, 16, 17, 100, 1400] {
                let (nh, payload) = match mode {
                    Mode::Tunnel => (
                        4,
                        udp_packet("10.0.0.5:1000", "10.0.1.7:2000", &vec![7u8; n]),
                    ),
                    Mode::Transport => (17, (0..n).map(|i| i as u8).collect()),
                };
                let mut want = vec![0u8; sa.encapsulated_len(payload.len())];
                let len = sa.encapsulate(nh, &payload, &mut want).unwrap();
                let mut buf = vec![0xeeu8; len + 37];
                buf[off..off + payload.len()].copy_from_slice(&payload);
                assert_eq!(
                    sb.encapsulate_in_place(nh, &mut buf, payload.len()),
                    Ok(len)
                );
                assert_eq!(&buf[..len], &want[..], "{encr:?} {mode:?} {n}");
                assert!(buf[len..].iter().all(|&x| x == 0xee));
                let (_, got_nh, got, _) = decap(&b, &buf[..len]).unwrap();
                assert_eq!((got_nh, got.as_slice()), (nh, payload.as_slice()));
            }
            // Errors: nothing written, counted as drops, no sequence number used.
            let good = if mode == Mode::Tunnel { 4 } else { 17 };
            let mut small = vec![0x11u8; off + 10];
            assert!(matches!(
                sb.encapsulate_in_place(good, &mut small, 10),
                Err(EncapError::BufferTooSmall { .. })
            ));
            assert!(small.iter().all(|&x| x == 0x11));
            let bad = if mode == Mode::Tunnel { 17 } else { 4 };
            let mut buf = vec![0x22u8; 200];
            assert_eq!(
                sb.encapsulate_in_place(bad, &mut buf, 10),
                Err(EncapError::BadNextHeader(bad))
            );
            assert!(buf.iter().all(|&x| x == 0x22));
            let (sta, stb) = (
                a.outbound_stats(spi).unwrap(),
                b.outbound_stats(spi).unwrap(),
            );
            assert_eq!(
                (stb.packets, stb.bytes, stb.seq),
                (sta.packets, sta.bytes, sta.seq)
            );
            assert_eq!(stb.drops, 2);
        }
    }
}

/// AEAD keys are expanded on an SA's first packet, in each direction on
/// its own; a packet sealed before and after opens the same.
#[test]
fn aead_keys_expand_on_first_packet() {
    for (i, (encr, integ)) in SUITES.into_iter().enumerate() {
        let spi = 0x3400 + i as u32;
        let sad = looped(encr, integ, Mode::Transport, false, spi);
        let aead = integ.is_none();
        assert_eq!(sad.key_expanded(spi, false), Some(!aead));
        assert_eq!(sad.key_expanded(spi, true), Some(!aead));
        let a = encap(&sad, spi, 17, b"first");
        assert_eq!(sad.key_expanded(spi, false), Some(true));
        assert_eq!(sad.key_expanded(spi, true), Some(!aead));
        let b = encap(&sad, spi, 17, b"second");
        assert_eq!(decap(&sad, &a).unwrap().2, b"first");
        assert_eq!(sad.key_expanded(spi, true), Some(true));
        assert_eq!(decap(&sad, &b).unwrap().2, b"second");
    }
}

/// RFC 4301 4.1: two peers may choose the same SPI for the SAs we send
/// them on. Filed under keys of our own (`add_outbound_keyed`), both SAs
/// live side by side, each seals with its own keys and carries the SPI
/// its peer chose; plain `add_outbound` refuses the second.
#[test]
fn outbound_sas_with_the_same_spi_to_two_peers() {
    const SPI: u32 = 0x4242_4242;
    fn cfg(ek: &[u8], tag: u64) -> SaConfig<'_> {
        SaConfig {
            spi: SPI,
            encr: Encr::AesGcm16_128,
            integ: None,
            encr_key: ek,
            integ_key: &[],
            esn: false,
            replay_window: 64,
            mode: Mode::Transport,
            local_ts: vec![ts("10.0.0.0/24")],
            remote_ts: vec![ts("10.0.1.0/24")],
            tag,
        }
    }
    let (ek1, _) = keys(Encr::AesGcm16_128, None, 1);
    let (ek2, _) = keys(Encr::AesGcm16_128, None, 2);
    let mut ours = Sad::new();
    ours.add_outbound_keyed(1, cfg(&ek1, 1)).unwrap();
    ours.add_outbound_keyed(2, cfg(&ek2, 2)).unwrap();
    let mut plain = Sad::new();
    plain.add_outbound(cfg(&ek1, 1)).unwrap();
    assert!(matches!(
        plain.add_outbound(cfg(&ek2, 2)),
        Err(SadError::DuplicateSpi(SPI))
    ));
    // Each peer's inbound SA (its own SAD) opens only what was sealed for it.
    let peer = |ek: &[u8], tag: u64| {
        let mut s = Sad::new();
        s.add_inbound(SaConfig {
            local_ts: vec![ts("10.0.1.0/24")],
            remote_ts: vec![ts("10.0.0.0/24")],
            ..cfg(ek, tag)
        })
        .unwrap();
        s
    };
    let (p1, p2) = (peer(&ek1, 1), peer(&ek2, 2));
    let to1 = encap(&ours, 1, 17, b"to peer 1");
    let to2 = encap(&ours, 2, 17, b"to peer 2");
    assert_eq!(to1[..4], SPI.to_be_bytes());
    assert_eq!(to2[..4], SPI.to_be_bytes());
    assert_eq!(decap(&p1, &to1).unwrap().2, b"to peer 1");
    assert_eq!(decap(&p2, &to2).unwrap().2, b"to peer 2");
    assert!(
        decap(&p1, &to2).is_err(),
        "peer 1 cannot open peer 2's packet"
    );
    assert_eq!(ours.outbound(2).map(|i| i.spi), Some(SPI));
    assert!(ours.remove_outbound(1).is_some());
    assert_eq!(
        decap(&p2, &encap(&ours, 2, 17, b"still")).unwrap().2,
        b"still"
    );
}

/// The owner's paths (`Sad::sealer_mut`, `Sad::decapsulate_mut`) against
/// the shared ones on a twin SAD (same keys): the same bytes on the wire,
/// sequence numbers, verdicts (accepted, replayed, forged, too short,
/// unknown SPI, bad next header, buffer too small) and, at the end, the
/// same counters, for every suite, both modes and with and without ESN.
#[test]
fn owner_paths_match_shared_paths() {
    let spi = 0x3700;
    for (encr, integ) in SUITES {
        for mode in [Mode::Tunnel, Mode::Transport] {
            for esn in [false, true] {
                let shared = looped(encr, integ, mode, esn, spi);
                let mut owned = looped(encr, integ, mode, esn, spi);
                let nh = if mode == Mode::Tunnel { 4 } else { 17 };
                let mut sent = Vec::new();
                for n in [0usize, 1, 13, 100, 1400] {
                    let payload = match mode {
                        Mode::Tunnel => udp_packet("10.0.0.5:1000", "10.0.1.7:2000", &vec![9u8; n]),
                        Mode::Transport => (0..n).map(|i| i as u8).collect(),
                    };
                    let want = encap(&shared, spi, nh, &payload);
                    let mut s = owned.sealer_mut(spi).unwrap();
                    assert_eq!(s.spi(), spi);
                    assert_eq!(s.encapsulated_len(payload.len()), want.len());
                    let mut got = vec![0u8; want.len()];
                    assert_eq!(s.encapsulate(nh, &payload, &mut got), Ok(want.len()));
                    assert_eq!(got, want, "{encr:?} {mode:?} esn {esn} copying, {n}");
                    // In place: the next sequence number on both.
                    let want = encap(&shared, spi, nh, &payload);
                    let off = s.payload_offset();
                    let mut buf = vec![0u8; want.len() + 5];
                    buf[off..off + payload.len()].copy_from_slice(&payload);
                    assert_eq!(
                        s.encapsulate_in_place(nh, &mut buf, payload.len()),
                        Ok(want.len())
                    );
                    assert_eq!(&buf[..want.len()], &want[..], "in place, {n}");
                    // Refusals, counted alike below.
                    let bad_nh = if mode == Mode::Tunnel { 17 } else { 4 };
                    assert_eq!(
                        s.encapsulate(bad_nh, &payload, &mut got),
                        Err(EncapError::BadNextHeader(bad_nh))
                    );
                    let mut out = vec![0u8; 200 + n];
                    assert_eq!(
                        shared.encapsulate(spi, bad_nh, &payload, &mut out),
                        Err(EncapError::BadNextHeader(bad_nh))
                    );
                    sent.push(want);
                }
                // Opened on both, in an order with a gap, replays and
                // forgeries: the same verdict each time.
                let mut forged = sent[2].clone();
                let last = forged.len() - 1;
                forged[last] ^= 1;
                let order: Vec<Vec<u8>> = vec![
                    sent[1].clone(),
                    sent[3].clone(),
                    sent[1].clone(),
                    forged,
                    sent[0].clone(),
                    sent[2].clone(),
                    sent[4].clone(),
                    sent[3].clone(),
                    sent[0][..7].to_vec(),
                    vec![0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0],
                ];
                for (i, pkt) in order.iter().enumerate() {
                    let want = decap(&shared, pkt);
                    let mut buf = pkt.clone();
                    let got = owned
                        .decapsulate_mut(&mut buf)
                        .map(|d| (d.seq, d.next_header, d.payload.to_vec(), d.tag));
                    assert_eq!(got, want, "{encr:?} {mode:?} esn {esn}, packet {i}");
                }
                assert!(matches!(
                    owned.sealer_mut(99).map(|_| ()),
                    Err(EncapError::UnknownSpi(99))
                ));
                assert!(shared.sealer(99).is_err());
                assert_eq!(owned.stats(), shared.stats());
                assert_eq!(owned.outbound_stats(spi), shared.outbound_stats(spi));
                assert_eq!(owned.inbound_stats(spi), shared.inbound_stats(spi));
                assert_eq!(owned.stats().drops(DropReason::Replayed), 2);
            }
        }
    }
}

/// `SealerMut` refuses at the end of the sequence space as `Sealer` does,
/// and counts it.
#[test]
fn owner_sequence_number_exhaustion() {
    let spi = 0x3800;
    for esn in [false, true] {
        let mut sad = looped(Encr::AesGcm16_128, None, Mode::Transport, esn, spi);
        let last = if esn { u64::MAX } else { u64::from(u32::MAX) };
        sad.set_outbound_seq(spi, last - 1);
        let mut out = [0u8; 100];
        let mut s = sad.sealer_mut(spi).unwrap();
        assert!(s.encapsulate(17, b"x", &mut out).is_ok());
        assert_eq!(&out[4..8], &(last as u32).to_be_bytes());
        for _ in 0..2 {
            assert_eq!(
                s.encapsulate(17, b"x", &mut out),
                Err(EncapError::SequenceExhausted)
            );
        }
        assert_eq!(sad.stats().seq_exhausted, 2);
        let st = sad.outbound_stats(spi).unwrap();
        assert_eq!((st.packets, st.drops), (last, 2));
    }
}
