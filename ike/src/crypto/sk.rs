//! The Encrypted (SK) payload body, one direction (RFC 7296 3.14; RFC 5282
//! for AES-GCM; RFC 7634 for ChaCha20-Poly1305; AES-CBC with a truncated
//! HMAC-SHA2 ICV, RFC 3602 and RFC 4868).
//!
//! Body layout: IV || ciphertext(inner payloads || padding || pad length)
//! || ICV.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use pad::alg::{Encr, Integ};
use rand_core::CryptoRngCore;
use ring::{aead, hmac};
use zeroize::Zeroizing;

use super::{ct_eq, CryptoError, Secret};

/// AES block and CBC IV length.
const AES_BLOCK: usize = 16;
/// AEAD salt length at the end of SK_e (RFC 5282 7.1, RFC 7634 2).
const SALT_LEN: usize = 4;

/// Protection of SK payloads in one direction: build one for SK_ei/SK_ai
/// and one for SK_er/SK_ar, and keep each for the life of the IKE SA.
///
/// For the AEADs the 8-octet IV is a per-instance counter (RFC 5282 3.1,
/// RFC 7634 2 only require uniqueness per key), so [`SkCipher::seal`]
/// works through `&self`. Two `SkCipher`s built from the same key would
/// repeat IVs: never seal with more than one instance per key (a
/// retransmission resends the stored datagram; it does not re-seal).
///
/// Key bytes are held in [`Zeroizing`] buffers; the ring / aes key
/// schedules are built per call and dropped at its end.
pub struct SkCipher {
    encr: Encr,
    integ: Option<Integ>,
    /// Cipher key (without the AEAD salt).
    enc_key: Secret,
    /// AEAD salt (all zero, unused, for CBC).
    salt: Zeroizing<[u8; SALT_LEN]>,
    /// HMAC key for CBC (empty for AEAD).
    integ_key: Secret,
    /// Next AEAD IV.
    next_iv: AtomicU64,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkCipher")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

fn integ_hmac(integ: Integ) -> Result<hmac::Algorithm, CryptoError> {
    match integ {
        Integ::HmacSha256_128 => Ok(hmac::HMAC_SHA256),
        Integ::HmacSha384_192 => Ok(hmac::HMAC_SHA384),
        Integ::HmacSha512_256 => Ok(hmac::HMAC_SHA512),
        other => Err(CryptoError::Unsupported(other.name())),
    }
}

impl SkCipher {
    /// SK_e as given to [`SkCipher::new`] (AEAD: key || salt), for key
    /// export.
    pub fn sk_e(&self) -> Secret {
        // Sized up front: no reallocation leaves a key copy behind.
        let mut v = Secret::new(Vec::with_capacity(self.enc_key.len() + SALT_LEN));
        v.extend_from_slice(&self.enc_key);
        if self.encr.is_aead() {
            v.extend_from_slice(&self.salt[..]);
        }
        v
    }

    /// SK_a as given to [`SkCipher::new`] (empty for AEADs).
    pub fn sk_a(&self) -> Secret {
        self.integ_key.clone()
    }

    /// Keys for one direction: `sk_e` is SK_ei or SK_er as produced by
    /// [`super::ike_keys`] (AEAD: key || 4-octet salt), `sk_a` SK_ai or SK_ar
    /// (empty for AEADs). Fails on a bad transform combination or key
    /// length.
    pub fn new(
        encr: Encr,
        integ: Option<Integ>,
        sk_e: &[u8],
        sk_a: &[u8],
    ) -> Result<Self, CryptoError> {
        let want_a = match (encr.is_aead(), integ) {
            (true, None) => 0,
            (false, Some(i)) => {
                integ_hmac(i)?;
                i.key_len()
            }
            (true, Some(_)) => {
                return Err(CryptoError::BadSuite(
                    "AEAD cipher with an integrity algorithm",
                ))
            }
            (false, None) => {
                return Err(CryptoError::BadSuite("non-AEAD cipher without integrity"))
            }
        };
        if sk_e.len() != encr.keymat_len() {
            return Err(CryptoError::BadKeyLength {
                what: "SK_e",
                expected: encr.keymat_len(),
                got: sk_e.len(),
            });
        }
        if sk_a.len() != want_a {
            return Err(CryptoError::BadKeyLength {
                what: "SK_a",
                expected: want_a,
                got: sk_a.len(),
            });
        }
        let mut salt = Zeroizing::new([0u8; SALT_LEN]);
        let key_len = if encr.is_aead() {
            let (key, s) = sk_e.split_at(sk_e.len().saturating_sub(SALT_LEN));
            salt.copy_from_slice(s);
            key.len()
        } else {
            sk_e.len()
        };
        let this = Self {
            encr,
            integ,
            enc_key: Secret::new(sk_e.get(..key_len).unwrap_or_default().to_vec()),
            salt,
            integ_key: Secret::new(sk_a.to_vec()),
            next_iv: AtomicU64::new(0),
        };
        if encr.is_aead() {
            // Fail now rather than at the first seal.
            this.aead_key()?;
        }
        Ok(this)
    }

    /// The encryption transform.
    pub fn encr(&self) -> Encr {
        self.encr
    }

    /// The integrity transform (`None` for AEADs).
    pub fn integ(&self) -> Option<Integ> {
        self.integ
    }

    fn icv_len(&self) -> usize {
        match self.integ {
            Some(i) => i.icv_len(),
            None => self.encr.aead_icv_len(),
        }
    }

    /// Padding granularity. AES-CBC pads to its block; the AEADs are stream
    /// modes and send no padding (RFC 7634 3: "The sender SHOULD include no
    /// padding and set the Pad Length field to zero"; the same holds for
    /// AES-GCM, RFC 5282 3, whose block size is 1 in IKE).
    fn pad_block(&self) -> usize {
        if self.encr.is_aead() {
            1
        } else {
            AES_BLOCK
        }
    }

    fn pad_len(&self, plaintext_len: usize) -> usize {
        let b = self.pad_block();
        (b - (plaintext_len + 1) % b) % b
    }

    /// Length of the SK payload body for `plaintext_len` octets of inner
    /// payloads: IV + padded ciphertext (including the Pad Length octet) +
    /// ICV. The caller writes the IKE header and SK generic header lengths
    /// from this before calling [`SkCipher::seal`].
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.encr.iv_len() + plaintext_len + self.pad_len(plaintext_len) + 1 + self.icv_len()
    }

    fn aead_key(&self) -> Result<aead::LessSafeKey, CryptoError> {
        let alg = match self.encr {
            Encr::AesGcm16_128 => &aead::AES_128_GCM,
            Encr::AesGcm16_256 => &aead::AES_256_GCM,
            Encr::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            _ => return Err(CryptoError::BadSuite("not an AEAD")),
        };
        let key =
            aead::UnboundKey::new(alg, &self.enc_key).map_err(|_| CryptoError::BadKeyLength {
                what: "SK_e",
                expected: alg.key_len() + SALT_LEN,
                got: self.enc_key.len() + SALT_LEN,
            })?;
        Ok(aead::LessSafeKey::new(key))
    }

    fn nonce(&self, iv: &[u8]) -> Result<aead::Nonce, CryptoError> {
        let mut n = [0u8; aead::NONCE_LEN];
        let (s, i) = n.split_at_mut(SALT_LEN);
        s.copy_from_slice(self.salt.as_ref());
        if i.len() != iv.len() {
            return Err(CryptoError::Truncated);
        }
        i.copy_from_slice(iv);
        Ok(aead::Nonce::assume_unique_for_key(n))
    }

    /// The CBC ICV: HMAC over aad || IV || ciphertext, truncated (RFC 7296
    /// 3.14: the checksum covers the message from the IKE header through
    /// the encrypted data).
    fn cbc_icv(
        &self,
        integ: Integ,
        aad: &[u8],
        iv: &[u8],
        ct: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = hmac::Key::new(integ_hmac(integ)?, &self.integ_key);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(aad);
        ctx.update(iv);
        ctx.update(ct);
        let tag = ctx.sign();
        tag.as_ref()
            .get(..integ.icv_len())
            .map(<[u8]>::to_vec)
            .ok_or(CryptoError::Unsupported(integ.name()))
    }

    fn cbc_encrypt(&self, iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
        let len = buf.len();
        let r = match self.encr {
            Encr::AesCbc128 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&self.enc_key, iv)
                .map(|c| c.encrypt_padded_mut::<NoPadding>(buf, len).map(|_| ())),
            Encr::AesCbc256 => cbc::Encryptor::<aes::Aes256>::new_from_slices(&self.enc_key, iv)
                .map(|c| c.encrypt_padded_mut::<NoPadding>(buf, len).map(|_| ())),
            _ => return Err(CryptoError::BadSuite("not CBC")),
        };
        match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(CryptoError::Truncated),
        }
    }

    fn cbc_decrypt(&self, iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
        let r = match self.encr {
            Encr::AesCbc128 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&self.enc_key, iv)
                .map(|c| c.decrypt_padded_mut::<NoPadding>(buf).map(|_| ())),
            Encr::AesCbc256 => cbc::Decryptor::<aes::Aes256>::new_from_slices(&self.enc_key, iv)
                .map(|c| c.decrypt_padded_mut::<NoPadding>(buf).map(|_| ())),
            _ => return Err(CryptoError::BadSuite("not CBC")),
        };
        match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(CryptoError::Truncated),
        }
    }

    /// Encrypt and protect `plaintext` (the inner payload chain). `aad` is
    /// the message bytes before the SK body: the IKE header and any
    /// unencrypted payloads and the SK generic payload header, whose length
    /// fields already count [`SkCipher::sealed_len`]. Returns IV ||
    /// ciphertext || ICV. CBC IVs come from `rng` (RFC 7296 3.14: they MUST
    /// be unpredictable); AEAD IVs from the instance's counter.
    pub fn seal(
        &self,
        rng: &mut dyn CryptoRngCore,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let pad = self.pad_len(plaintext.len());
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + pad + 1));
        buf.extend_from_slice(plaintext);
        buf.resize(plaintext.len() + pad, 0);
        buf.push(u8::try_from(pad).map_err(|_| CryptoError::BadPadding)?);

        let mut out = Vec::with_capacity(self.sealed_len(plaintext.len()));
        match self.integ {
            None => {
                let iv = self
                    .next_iv
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_add(1))
                    .map_err(|_| CryptoError::IvExhausted)?
                    .to_be_bytes();
                let key = self.aead_key()?;
                let tag = key
                    .seal_in_place_separate_tag(self.nonce(&iv)?, aead::Aad::from(aad), &mut buf)
                    .map_err(|_| CryptoError::TooLong)?;
                out.extend_from_slice(&iv);
                out.extend_from_slice(&buf);
                out.extend_from_slice(tag.as_ref());
            }
            Some(integ) => {
                let mut iv = [0u8; AES_BLOCK];
                rng.fill_bytes(&mut iv);
                self.cbc_encrypt(&iv, &mut buf)?;
                let icv = self.cbc_icv(integ, aad, &iv, &buf)?;
                out.extend_from_slice(&iv);
                out.extend_from_slice(&buf);
                out.extend_from_slice(&icv);
            }
        }
        Ok(out)
    }

    /// Check and decrypt an SK payload body (IV || ciphertext || ICV) with
    /// the same `aad` as [`SkCipher::seal`]. For CBC the ICV is verified in
    /// constant time BEFORE anything is decrypted. Returns the inner payload
    /// chain with padding and Pad Length removed.
    pub fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.encr.iv_len();
        let icv_len = self.icv_len();
        // At least IV, one octet (Pad Length) and the ICV.
        if body.len() < iv_len + 1 + icv_len {
            return Err(CryptoError::Truncated);
        }
        let (iv, rest) = body.split_at(iv_len);
        let (ct, icv) = rest.split_at(rest.len() - icv_len);
        let mut buf = Zeroizing::new(ct.to_vec());
        match self.integ {
            None => {
                let key = self.aead_key()?;
                let tag = aead::Tag::try_from(icv).map_err(|_| CryptoError::Truncated)?;
                key.open_in_place_separate_tag(
                    self.nonce(iv)?,
                    aead::Aad::from(aad),
                    tag,
                    &mut buf,
                    0..,
                )
                .map_err(|_| CryptoError::Decrypt)?;
            }
            Some(integ) => {
                if ct.len() % AES_BLOCK != 0 {
                    return Err(CryptoError::Truncated);
                }
                // Integrity first (RFC 7296 3.14: the ICV covers the message
                // through the encrypted data), in constant time; only an
                // authentic ciphertext is decrypted, so padding errors are
                // no oracle.
                if !ct_eq(&self.cbc_icv(integ, aad, iv, ct)?, icv) {
                    return Err(CryptoError::Decrypt);
                }
                self.cbc_decrypt(iv, &mut buf)?;
            }
        }
        let pad = usize::from(*buf.last().ok_or(CryptoError::Truncated)?);
        let keep = buf
            .len()
            .checked_sub(pad + 1)
            .ok_or(CryptoError::BadPadding)?;
        Ok(buf.get(..keep).unwrap_or_default().to_vec())
    }

    /// Set the next AEAD IV (known-answer tests only).
    #[cfg(test)]
    pub(super) fn set_next_iv(&self, iv: u64) {
        self.next_iv.store(iv, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // RFC 7634 Appendix B: an IKEv2 INFORMATIONAL request (Message ID 9)
    // whose SK payload carries one Notify, protected with ChaCha20-Poly1305;
    // key 0x80..0x9f, salt a0a1a2a3, IV 1011121314151617. (Bytes as in the
    // RFC, also carried in LibreSSL's tests/aeadtests.txt.)
    const B_KEY_SALT: &str =
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3";
    const B_AAD: &str = "c0c1c2c3c4c5c6c7 d0d1d2d3d4d5d6d7 2e202500 00000009 00000045 29000029";
    const B_PLAIN: &str = "0000000c000040010000000a"; // Notify payload; Pad Length 00 follows
    const B_BODY: &str = "1011121314151617 610394701f8d017f7c12924889 \
                          6b71bfe25236efd7cdc67066906315b2";

    #[test]
    fn chacha20poly1305_rfc7634_appendix_b_open() {
        let c = SkCipher::new(Encr::ChaCha20Poly1305, None, &h(B_KEY_SALT), &[]).unwrap();
        assert_eq!(c.open(&h(B_AAD), &h(B_BODY)).unwrap(), h(B_PLAIN));
    }

    #[test]
    fn chacha20poly1305_rfc7634_appendix_b_seal() {
        let c = SkCipher::new(Encr::ChaCha20Poly1305, None, &h(B_KEY_SALT), &[]).unwrap();
        c.set_next_iv(0x1011_1213_1415_1617);
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        // The SK header length 0x29 = 4 + sealed_len.
        assert_eq!(4 + c.sealed_len(12), 0x29);
        let body = c.seal(&mut rng, &h(B_AAD), &h(B_PLAIN)).unwrap();
        assert_eq!(body, h(B_BODY));
        // The counter moved on: the next IV differs.
        let again = c.seal(&mut rng, &h(B_AAD), &h(B_PLAIN)).unwrap();
        assert_eq!(again[..8], h("1011121314151618")[..]);
    }

    fn all_ciphers(rng: &mut ChaCha20Rng) -> Vec<SkCipher> {
        let mut v = Vec::new();
        for encr in Encr::ALL {
            let integs: Vec<Option<Integ>> = if encr.is_aead() {
                vec![None]
            } else {
                Integ::ALL.into_iter().map(Some).collect()
            };
            for integ in integs {
                let mut e = vec![0u8; encr.keymat_len()];
                rng.fill_bytes(&mut e);
                let mut a = vec![0u8; integ.map_or(0, |i| i.key_len())];
                rng.fill_bytes(&mut a);
                v.push(SkCipher::new(encr, integ, &e, &a).unwrap());
            }
        }
        v
    }

    #[test]
    fn round_trip_every_suite_and_length() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for c in all_ciphers(&mut rng) {
            for len in [0usize, 1, 3, 4, 14, 15, 16, 17, 31, 32, 100, 1000] {
                let mut pt = vec![0u8; len];
                rng.fill_bytes(&mut pt);
                let aad = b"ike header and sk header";
                let body = c.seal(&mut rng, aad, &pt).unwrap();
                assert_eq!(body.len(), c.sealed_len(len), "{c:?} {len}");
                if !c.encr().is_aead() {
                    assert_eq!((body.len() - 16 - c.icv_len()) % 16, 0);
                }
                assert_eq!(c.open(aad, &body).unwrap(), pt, "{c:?} {len}");
                // Wrong AAD fails.
                assert_eq!(c.open(b"other header", &body), Err(CryptoError::Decrypt));
            }
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected_as_integrity_failure() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        for c in all_ciphers(&mut rng) {
            let aad = [0x55u8; 32];
            let body = c.seal(&mut rng, &aad, b"inner payload chain").unwrap();
            for i in 0..body.len() {
                let mut t = body.clone();
                t[i] ^= 0x01;
                assert_eq!(
                    c.open(&aad, &t),
                    Err(CryptoError::Decrypt),
                    "{c:?} byte {i}"
                );
            }
            for i in 0..aad.len() {
                let mut a = aad;
                a[i] ^= 0x80;
                assert_eq!(c.open(&a, &body), Err(CryptoError::Decrypt));
            }
        }
    }

    /// Build a CBC body by hand with a chosen final plaintext block, and a
    /// valid ICV, to reach the padding check.
    fn cbc_body_with_plaintext(c: &SkCipher, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let iv = [9u8; 16];
        let mut buf = plain.to_vec();
        c.cbc_encrypt(&iv, &mut buf).unwrap();
        let icv = c.cbc_icv(c.integ().unwrap(), aad, &iv, &buf).unwrap();
        [&iv[..], &buf, &icv].concat()
    }

    #[test]
    fn cbc_bad_padding_rejected_after_integrity() {
        let c = SkCipher::new(
            Encr::AesCbc128,
            Some(Integ::HmacSha256_128),
            &[1u8; 16],
            &[2u8; 32],
        )
        .unwrap();
        let aad = b"hdr";
        // Pad Length 16 in a 16-octet plaintext: points before the start.
        let mut p = [0u8; 16];
        p[15] = 16;
        assert_eq!(
            c.open(aad, &cbc_body_with_plaintext(&c, aad, &p)),
            Err(CryptoError::BadPadding)
        );
        p[15] = 255;
        assert_eq!(
            c.open(aad, &cbc_body_with_plaintext(&c, aad, &p)),
            Err(CryptoError::BadPadding)
        );
        // Pad Length 15: everything is padding, empty payload chain.
        p[15] = 15;
        assert_eq!(
            c.open(aad, &cbc_body_with_plaintext(&c, aad, &p)).unwrap(),
            b""
        );
        // Peers may pad more than needed (up to 255): accepted.
        let mut long = vec![0xAAu8; 48];
        long[47] = 40;
        assert_eq!(
            c.open(aad, &cbc_body_with_plaintext(&c, aad, &long))
                .unwrap(),
            vec![0xAA; 7]
        );
    }

    #[test]
    fn cbc_tampered_icv_rejected_before_decryption() {
        // A ciphertext whose decryption would have bad padding AND a bad ICV
        // must report the ICV: integrity is checked first.
        let c = SkCipher::new(
            Encr::AesCbc256,
            Some(Integ::HmacSha384_192),
            &[3u8; 32],
            &[4u8; 48],
        )
        .unwrap();
        let aad = b"hdr";
        let mut p = [0u8; 16];
        p[15] = 200;
        let mut body = cbc_body_with_plaintext(&c, aad, &p);
        let n = body.len();
        body[n - 1] ^= 1;
        assert_eq!(c.open(aad, &body), Err(CryptoError::Decrypt));
    }

    #[test]
    fn aead_bad_padding_rejected() {
        let c = SkCipher::new(Encr::AesGcm16_128, None, &[5u8; 20], &[]).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        // Seal a plaintext whose final octet (taken as Pad Length) is too big:
        // seal appends Pad Length 0, so seal "ab" then forge by sealing raw.
        let body = c.seal(&mut rng, b"a", &[7u8; 3]).unwrap();
        assert_eq!(c.open(b"a", &body).unwrap(), vec![7u8; 3]);
        // Raw AEAD seal of [1, 2, 9]: Pad Length 9 > 2 octets before it.
        let key = c.aead_key().unwrap();
        let iv = [0xEEu8; 8];
        let mut buf = vec![1u8, 2, 9];
        let tag = key
            .seal_in_place_separate_tag(c.nonce(&iv).unwrap(), aead::Aad::from(b"a"), &mut buf)
            .unwrap();
        let forged = [&iv[..], &buf, tag.as_ref()].concat();
        assert_eq!(c.open(b"a", &forged), Err(CryptoError::BadPadding));
    }

    #[test]
    fn open_is_total_on_arbitrary_input() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let ciphers = all_ciphers(&mut rng);
        for c in &ciphers {
            let good = c.seal(&mut rng, b"aad", b"some payloads here").unwrap();
            for len in 0..good.len() {
                assert!(c.open(b"aad", &good[..len]).is_err());
            }
            for _ in 0..200 {
                let len = (rng.next_u32() % 200) as usize;
                let mut junk = vec![0u8; len];
                rng.fill_bytes(&mut junk);
                assert!(c.open(b"aad", &junk).is_err());
            }
        }
    }

    #[test]
    fn new_rejects_bad_keys_and_suites() {
        assert!(matches!(
            SkCipher::new(Encr::AesGcm16_128, None, &[0; 16], &[]),
            Err(CryptoError::BadKeyLength { .. })
        ));
        assert!(matches!(
            SkCipher::new(
                Encr::AesCbc128,
                Some(Integ::HmacSha256_128),
                &[0; 16],
                &[0; 16]
            ),
            Err(CryptoError::BadKeyLength { .. })
        ));
        assert!(matches!(
            SkCipher::new(Encr::AesCbc128, None, &[0; 16], &[]),
            Err(CryptoError::BadSuite(_))
        ));
        assert!(matches!(
            SkCipher::new(
                Encr::ChaCha20Poly1305,
                Some(Integ::HmacSha256_128),
                &[0; 36],
                &[0; 32]
            ),
            Err(CryptoError::BadSuite(_))
        ));
    }

    #[test]
    fn iv_counter_exhaustion_is_an_error() {
        let c = SkCipher::new(Encr::AesGcm16_256, None, &[5u8; 36], &[]).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        c.set_next_iv(u64::MAX - 1);
        assert!(c.seal(&mut rng, b"", b"x").is_ok());
        assert_eq!(c.seal(&mut rng, b"", b"x"), Err(CryptoError::IvExhausted));
    }

    #[test]
    fn cbc_ivs_are_random_and_debug_is_redacted() {
        let c = SkCipher::new(
            Encr::AesCbc128,
            Some(Integ::HmacSha256_128),
            &[0x41; 16],
            &[0x42; 32],
        )
        .unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let a = c.seal(&mut rng, b"", b"x").unwrap();
        let b = c.seal(&mut rng, b"", b"x").unwrap();
        assert_ne!(a[..16], b[..16]);
        let s = format!("{c:?}");
        assert!(!s.contains("65") && !s.contains("41"));
    }
}
