//! latchkey credentials: pre-shared keys, X.509 certificates and raw public
//! keys.
//!
//! - [`Psk`]: pre-shared keys.
//! - [`PrivateKey`] / [`PublicKey`]: key generation (from a caller's random
//!   source), PKCS#8 and SubjectPublicKeyInfo parsing, IKE signing and
//!   verification ([`SignatureScheme`]), SPKI fingerprints (the identity of
//!   a raw public key, RFC 7670, and of a BTNS peer).
//! - [`validate()`]: certificate path validation to configured
//!   [`TrustAnchor`]s with IKE ID matching (RFC 5280, RFC 4945), giving a
//!   [`ValidatedPeer`] or a precise [`ValidationError`].
//! - [`CertificateAuthority`], [`self_signed`], [`BadKind`]: certificate
//!   generation for the `latchkey pki` harness, good and deliberately bad.
//!
//! Invariants: no I/O (callers read files and hand over bytes), no clock
//! (callers pass `now`), key generation draws only from the caller's random
//! source; secrets are zeroized on drop and never printed; parsers are total
//! (no panic on any input).
#![forbid(unsafe_code)]

pub mod encoding;
pub mod generate;
pub mod ipseckey;
pub mod keys;
mod psk;
pub mod validate;

pub use encoding::{
    certificate_to_pem, certificates_from_pem, certificates_from_pem_or_der, PemError,
};
pub use generate::{
    self_signed, BadCertificate, BadKind, CertificateAuthority, EndEntity, ExtKeyUsage, GenError,
    Issued,
};
pub use ipseckey::{Gateway, IpsecKey, IpsecKeyError};
pub use keys::{
    KeyAlgorithm, KeyError, KeyType, PrivateKey, PublicKey, SignError, SignatureScheme,
    SpkiFingerprint, VerifyError,
};
pub use psk::{Psk, PskError};
pub use validate::{
    certificate_public_key, describe, eku_allows_ike, identity_matches, validate, AltName,
    CertificateInfo, TrustAnchor, ValidatedPeer, ValidationError, ValidationPolicy,
};

/// The `time` crate, for `now` arguments (`time::OffsetDateTime`).
pub use time;
/// Zeroizing wrapper (as returned by [`PrivateKey::to_pem`]), for callers
/// holding key material they read from files.
pub use zeroize::Zeroizing;
