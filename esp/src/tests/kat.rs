//! Known-answer tests through the whole ESP path.
//!
//! Sources:
//! - RFC 7634 Appendix A (ChaCha20-Poly1305 ESP example, tunnel mode).
//! - draft-mcgrew-gcm-test-01 (AES-GCM ESP packets; the vectors of its
//!   pages 6 and 8: AES-128 with a 64-bit ESN, AES-256 with a 32-bit
//!   sequence number). Both of those plaintexts end in Next Header 1, so they
//!   go through transport-mode SAs.
//! - RFC 3602 section 4 (AES-128-CBC) and RFC 4868 2.7.2.1 (HMAC-SHA-256-128)
//!   are in `cipher.rs`; the CBC suite as a whole is covered by round trips.

use pad::alg::Encr;
use pad::Mode;

use crate::{SaConfig, Sad};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn sad_with(
    encr: Encr,
    key: &[u8],
    spi: u32,
    esn: bool,
    mode: Mode,
    local: &str,
    remote: &str,
) -> Sad {
    let mut sad = Sad::new();
    let cfg = SaConfig {
        spi,
        encr,
        integ: None,
        encr_key: key,
        integ_key: &[],
        esn,
        replay_window: 1024,
        mode,
        local_ts: vec![local.parse().unwrap()],
        remote_ts: vec![remote.parse().unwrap()],
        tag: 42,
    };
    sad.add_outbound(cfg.clone()).unwrap();
    sad.add_inbound(cfg).unwrap();
    sad
}

/// RFC 7634 Appendix A: KEYMAT 80..a3 (key 80..9f, salt a0a1a2a3), SPI
/// 0x01020304, sequence number 5, IV 1011121314151617, an ICMP echo request
/// from 198.51.100.5 to 192.0.2.5 in tunnel mode.
#[test]
fn rfc7634_appendix_a_chacha20_poly1305() {
    let keymat = h("808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f a0a1a2a3");
    let source = h(
        "45000054a6f200004001e778c6336405 c000020508005b7a3a080000553bec10
                    0007362708090a0b0c0d0e0f10111213 1415161718191a1b1c1d1e1f20212223
                    2425262728292a2b2c2d2e2f30313233 34353637",
    );
    let esp = h("0102030400000005 1011121314151617
                 24039428b97f417e3c13753a4f05087b 67c352e6a7fab1b982d466ef407ae5c6
                 14ee8099d52844eb61aa95dfab4c02f7 2aa71e7c4c4f64c9befe2facc638e8f3
                 cbec163fac469b502773f6fb94e664da 9165b82829f641e0
                 76aaa8266b7fb0f7b11b369907e1ad43");
    let spi = 0x0102_0304;
    let sad = sad_with(
        Encr::ChaCha20Poly1305,
        &keymat,
        spi,
        false,
        Mode::Tunnel,
        "192.0.2.0/24",
        "198.51.100.0/24",
    );
    // Encapsulation produces the RFC's packet, given its IV.
    let ours = sad.encapsulate_with_iv(
        spi,
        5,
        h("1011121314151617").try_into().unwrap(),
        4,
        &source,
    );
    assert_eq!(hex::encode(&ours), hex::encode(&esp));
    assert_eq!(sad.encapsulated_len(spi, source.len()).unwrap(), esp.len());
    // Decapsulation recovers the inner packet.
    let mut pkt = esp;
    let d = sad.decapsulate(&mut pkt).unwrap();
    assert_eq!((d.spi, d.tag, d.seq, d.next_header), (spi, 42, 5, 4));
    assert_eq!(d.payload, &source[..]);
}

/// draft-mcgrew-gcm-test-01, the AES-128 packet with a 64-bit extended
/// sequence number: SPI 0x00004321, ESN 0x8765432100000000 (AAD = SPI ||
/// ESN, RFC 4106 5), IV 4956ed7e3b244cfe.
#[test]
fn gcm_test_01_aes128_esn() {
    let keymat = h("4c80cdefbb5d10da906ac73c3613a634 2e443b68");
    let payload = h(
        "45000048699a000080114db7c0a80102 c0a801010a9bf15638d3010000010000
                     00000000045f736970045f7564700373 69700963796265726369747902646b00
                     00210001",
    );
    let esp = h("00004321 00000000 4956ed7e3b244cfe
                 fecf537e729d5b07dc30df528dd22b76 8d1b98736696a6fd348509fa13ceac34
                 cfa2436f14a3f3cf65925bf1f4a13c5d 15b21e1884f5ff6247aeabb786b93bce
                 61bc17d768fd9732 459018148f6cbe722fd04796562dfdb4");
    let spi = 0x4321;
    let seq = 0x8765_4321_0000_0000;
    let sad = sad_with(
        Encr::AesGcm16_128,
        &keymat,
        spi,
        true,
        Mode::Transport,
        "0.0.0.0/0",
        "0.0.0.0/0",
    );
    let ours = sad.encapsulate_with_iv(
        spi,
        seq,
        h("4956ed7e3b244cfe").try_into().unwrap(),
        1,
        &payload,
    );
    assert_eq!(hex::encode(&ours), hex::encode(&esp));
    // The receiver has seen the sequence number just below: the high bits
    // 0x87654321 are inferred (RFC 4303 A2.2) from low bits 0.
    sad.set_inbound_top(spi, seq - 1);
    let mut pkt = esp;
    let d = sad.decapsulate(&mut pkt).unwrap();
    assert_eq!((d.seq, d.next_header), (seq, 1));
    assert_eq!(d.payload, &payload[..]);
}

/// draft-mcgrew-gcm-test-01, the AES-256 packet: SPI 0x4a2cbfe3, sequence
/// number 2, IV 0102030405060708.
#[test]
fn gcm_test_01_aes256() {
    let keymat = h("abbccddef00112233445566778899aab abbccddef00112233445566778899aab 11223344");
    let payload = h(
        "4500003069a6400080062690c0a80102 9389155e0a9e008b2dc57ee000000000
                     7002400020bf0000020405b401010402",
    );
    let esp = h("4a2cbfe3 00000002 0102030405060708
                 ff425c9b724599df7a3bcd510194e00d 6a78107f1b0b1cbf06efae9d65a5d763
                 748a637985771d347f0545659f14e99d ef842d8e
                 b335f4eecfdbf831824b4c4915956c96");
    let spi = 0x4a2c_bfe3;
    let sad = sad_with(
        Encr::AesGcm16_256,
        &keymat,
        spi,
        false,
        Mode::Transport,
        "0.0.0.0/0",
        "0.0.0.0/0",
    );
    let ours = sad.encapsulate_with_iv(
        spi,
        2,
        h("0102030405060708").try_into().unwrap(),
        1,
        &payload,
    );
    assert_eq!(hex::encode(&ours), hex::encode(&esp));
    let mut pkt = esp;
    let d = sad.decapsulate(&mut pkt).unwrap();
    assert_eq!((d.seq, d.next_header), (2, 1));
    assert_eq!(d.payload, &payload[..]);
}

/// Our own AEAD packets use the sequence number as IV (RFC 4106 3.1): the
/// same encapsulation through the public API equals the KAT path with IV =
/// seq.
#[test]
fn aead_iv_is_the_sequence_number() {
    let keymat = h("808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f a0a1a2a3");
    let spi = 0x0102_0304;
    let sad = sad_with(
        Encr::ChaCha20Poly1305,
        &keymat,
        spi,
        false,
        Mode::Transport,
        "0.0.0.0/0",
        "0.0.0.0/0",
    );
    let mut out = [0u8; 64];
    let n = sad.encapsulate(spi, 17, b"abc", &mut out).unwrap();
    assert_eq!(&out[8..16], &1u64.to_be_bytes());
    let kat = sad.encapsulate_with_iv(spi, 1, 1u64.to_be_bytes(), 17, b"abc");
    assert_eq!(&out[..n], &kat[..]);
}
