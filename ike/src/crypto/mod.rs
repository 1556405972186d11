//! IKEv2 cryptography: key exchange, PRFs and key derivation, the SK
//! (Encrypted) payload, AUTH computations, NAT detection and cookies.
//!
//! Invariants:
//! - No ambient randomness: every random value (D-H private values, CBC IVs,
//!   cookie secrets) comes from the caller's [`rand_core::CryptoRngCore`].
//! - Key exchange uses RustCrypto (x25519-dalek, p256, p384, crypto-bigint
//!   for MODP), so private values can come from the injected RNG and be
//!   checked with known-answer vectors. HMAC, SHA-1, AES-GCM and
//!   ChaCha20-Poly1305 go through `ring`; AES-CBC through `aes` + `cbc`.
//! - Secret material we own ([`Secret`], [`DhPrivate`], [`SkCipher`],
//!   [`CookieJar`]) is zeroized on drop and never printed by `Debug`.
//!   (Key schedules that `ring` or `aes` build from it live only for the
//!   duration of one call.)
//! - Nothing here panics on peer input: every parse is length-checked and
//!   returns a [`CryptoError`].

mod auth;
mod dh;
mod kdf;
mod sk;

pub use auth::{
    nat_detection_hash, null_auth, null_auth_verify, psk_auth, psk_auth_verify, signed_octets,
    CookieJar, COOKIE_LEN,
};
pub use dh::{respond as dh_respond, DhPrivate, X25519Source};
pub use kdf::{
    child_keymat, child_keys, ike_keys, prf, prf_plus, rekey_skeyseed, skeyseed, ChildKeys,
    IkeKeys, IkeSuite,
};
pub use sk::SkCipher;

use pad::alg::DhGroup;

/// Secret bytes (keys, shared secrets, keying material): zeroized on drop.
pub type Secret = zeroize::Zeroizing<Vec<u8>>;

/// Why a cryptographic operation failed. Each variant is a distinct reason,
/// so that tests (and the state machine's choice of Notify) can tell them
/// apart.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The peer's KE payload data is not an acceptable public value for the
    /// group (wrong length, not on the curve, outside 1 < y < p-1, or it
    /// produced an all-zero X25519 shared secret).
    #[error("bad {group} public value: {reason}")]
    BadPublicValue {
        /// The group of the exchange.
        group: DhGroup,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A private value given to [`DhPrivate::from_private_bytes`] is unusable.
    #[error("bad {group} private value: {reason}")]
    BadPrivateValue {
        /// The group.
        group: DhGroup,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// Integrity check failed: the AEAD tag or the truncated HMAC ICV does
    /// not match (RFC 7296 3.14). Nothing was decrypted into the output.
    #[error("integrity check failed")]
    Decrypt,
    /// The decrypted Pad Length octet points outside the plaintext.
    #[error("bad padding")]
    BadPadding,
    /// The SK payload body is too short, or (CBC) its ciphertext is not a
    /// whole number of blocks.
    #[error("truncated or misaligned encrypted payload")]
    Truncated,
    /// prf+ can produce at most 255 blocks of output (RFC 7296 2.13).
    #[error("prf+ asked for {requested} octets, at most {max} possible")]
    KeymatTooLong {
        /// Octets asked for.
        requested: usize,
        /// The limit for this PRF: 255 * output length.
        max: usize,
    },
    /// A key has the wrong length for its algorithm.
    #[error("{what}: key is {got} octets, expected {expected}")]
    BadKeyLength {
        /// Which key.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The combination of transforms is invalid: an AEAD with an integrity
    /// algorithm, or a non-AEAD cipher without one (RFC 7296 3.3, RFC 5282 8).
    #[error("invalid transform combination: {0}")]
    BadSuite(&'static str),
    /// The algorithm or group is not implemented by this build (`pad`'s
    /// enums are non-exhaustive: a newer variant may be unknown here).
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// The plaintext is too long for the AEAD (ring's per-message limit).
    #[error("plaintext too long")]
    TooLong,
    /// The AEAD IV counter of this [`SkCipher`] is exhausted (2^64 messages);
    /// the IKE SA must be rekeyed.
    #[error("IV space exhausted; rekey")]
    IvExhausted,
}

/// Constant-time equality of two byte strings (the lengths are public).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use crypto_bigint::subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn error_messages_name_the_reason() {
        let e = CryptoError::BadPublicValue {
            group: DhGroup::Modp2048,
            reason: "y <= 1",
        };
        assert_eq!(e.to_string(), "bad modp2048 public value: y <= 1");
    }
}
