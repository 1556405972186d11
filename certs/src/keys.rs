//! Private and public keys: generation (seeded), PKCS#8 and
//! SubjectPublicKeyInfo parsing, signing and verification.
//!
//! Signing and verification are ring's. Key generation takes the caller's
//! random source: p256/p384 for ECDSA, the seed octets for Ed25519, the `rsa`
//! crate for RSA (ring cannot generate RSA keys). RSA and EC keys are then
//! handed to ring as PKCS#8 documents.
//!
//! Signing needs randomness too (ECDSA nonces, PSS salts, RSA blinding); ring
//! only takes it from its own system source, so [`PrivateKey::sign`] uses
//! that. Ed25519 and RSA PKCS#1 v1.5 signatures are deterministic anyway.

use core::fmt;
use core::str::FromStr;

use rand_core::CryptoRngCore;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};
use zeroize::Zeroizing;

/// OIDs (dotted strings, as x509-parser prints them) this crate acts on.
pub(crate) mod oid {
    pub(crate) const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    pub(crate) const P256: &str = "1.2.840.10045.3.1.7";
    pub(crate) const P384: &str = "1.3.132.0.34";
    pub(crate) const ED25519: &str = "1.3.101.112";
    pub(crate) const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    pub(crate) const RSA_PSS: &str = "1.2.840.113549.1.1.10";
    pub(crate) const SHA1_WITH_RSA: &str = "1.2.840.113549.1.1.5";
    pub(crate) const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
    pub(crate) const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
    pub(crate) const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
    pub(crate) const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
    pub(crate) const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
    pub(crate) const MGF1: &str = "1.2.840.113549.1.1.8";
    pub(crate) const SHA256: &str = "2.16.840.1.101.3.4.2.1";
    pub(crate) const SHA384: &str = "2.16.840.1.101.3.4.2.2";
    pub(crate) const SHA512: &str = "2.16.840.1.101.3.4.2.3";
}

// RFC 7427 AlgorithmIdentifiers, DER (RFC 7427 A.1-A.4; RFC 8420 3).
const AI_ECDSA_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const AI_ECDSA_SHA384: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const AI_ED25519: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
const fn ai_rsa(last: u8) -> [u8; 15] {
    [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last, 0x05, 0x00,
    ]
}
const AI_SHA1_RSA: [u8; 15] = ai_rsa(0x05);
const AI_SHA256_RSA: [u8; 15] = ai_rsa(0x0b);
const AI_SHA384_RSA: [u8; 15] = ai_rsa(0x0c);
const AI_SHA512_RSA: [u8; 15] = ai_rsa(0x0d);
/// RSASSA-PSS AlgorithmIdentifier: hash `h` (last OID octet of
/// 2.16.840.1.101.3.4.2.h), MGF1 with the same hash, salt `salt` octets.
const fn ai_pss(h: u8, salt: u8) -> [u8; 67] {
    [
        0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x0a, // id-RSASSA-PSS
        0x30, 0x34, // RSASSA-PSS-params
        0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, h,
        0x05, 0x00, // [0] hashAlgorithm
        0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08,
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, h, 0x05,
        0x00, // [1] maskGenAlgorithm: MGF1(hash)
        0xa2, 0x03, 0x02, 0x01, salt, // [2] saltLength
    ]
}
const AI_PSS_SHA256: [u8; 67] = ai_pss(0x01, 32);
const AI_PSS_SHA384: [u8; 67] = ai_pss(0x02, 48);
const AI_PSS_SHA512: [u8; 67] = ai_pss(0x03, 64);

/// A key algorithm this crate can generate keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (secp256r1).
    EcdsaP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcdsaP384,
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
}

impl KeyAlgorithm {
    /// Every algorithm, in a fixed order (for test matrices).
    pub const ALL: [Self; 5] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Ed25519,
        Self::Rsa2048,
        Self::Rsa3072,
    ];

    /// The name used on the command line (`ecdsa-p256`, `rsa2048`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Ed25519 => "ed25519",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
        }
    }

    /// The key type a key of this algorithm has.
    pub fn key_type(self) -> KeyType {
        match self {
            Self::EcdsaP256 => KeyType::EcdsaP256,
            Self::EcdsaP384 => KeyType::EcdsaP384,
            Self::Ed25519 => KeyType::Ed25519,
            Self::Rsa2048 => KeyType::Rsa { bits: 2048 },
            Self::Rsa3072 => KeyType::Rsa { bits: 3072 },
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or(KeyError::UnsupportedAlgorithm)
    }
}

/// The type of a parsed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA.
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

/// A signature scheme: key type, hash and encoding together.
///
/// IKEv2 methods 9 and 10 (RFC 4754) want the fixed-length `r || s` ECDSA
/// encoding; RFC 7427 Digital Signature (method 14) wants the DER
/// `Ecdsa-Sig-Value` that X.509 uses. Both are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// ECDSA P-256 with SHA-256, fixed-length `r || s` (64 octets).
    EcdsaP256Sha256Fixed,
    /// ECDSA P-256 with SHA-256, DER `Ecdsa-Sig-Value`.
    EcdsaP256Sha256Der,
    /// ECDSA P-384 with SHA-384, fixed-length `r || s` (96 octets).
    EcdsaP384Sha384Fixed,
    /// ECDSA P-384 with SHA-384, DER `Ecdsa-Sig-Value`.
    EcdsaP384Sha384Der,
    /// Ed25519 (PureEdDSA, RFC 8032).
    Ed25519,
    /// RSASSA-PKCS1-v1_5 with SHA-1. Verification only (legacy peers using
    /// IKEv2 method 1); ring cannot sign with it.
    RsaPkcs1Sha1,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-octet salt.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, 48-octet salt.
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, 64-octet salt.
    RsaPssSha512,
}

impl SignatureScheme {
    /// Every scheme.
    pub const ALL: [Self; 12] = [
        Self::EcdsaP256Sha256Fixed,
        Self::EcdsaP256Sha256Der,
        Self::EcdsaP384Sha384Fixed,
        Self::EcdsaP384Sha384Der,
        Self::Ed25519,
        Self::RsaPkcs1Sha1,
        Self::RsaPkcs1Sha256,
        Self::RsaPkcs1Sha384,
        Self::RsaPkcs1Sha512,
        Self::RsaPssSha256,
        Self::RsaPssSha384,
        Self::RsaPssSha512,
    ];

    /// Whether a key of type `kind` can make or check this scheme.
    pub fn fits(self, kind: KeyType) -> bool {
        matches!(
            (self, kind),
            (
                Self::EcdsaP256Sha256Fixed | Self::EcdsaP256Sha256Der,
                KeyType::EcdsaP256
            ) | (
                Self::EcdsaP384Sha384Fixed | Self::EcdsaP384Sha384Der,
                KeyType::EcdsaP384
            ) | (Self::Ed25519, KeyType::Ed25519)
                | (
                    Self::RsaPkcs1Sha1
                        | Self::RsaPkcs1Sha256
                        | Self::RsaPkcs1Sha384
                        | Self::RsaPkcs1Sha512
                        | Self::RsaPssSha256
                        | Self::RsaPssSha384
                        | Self::RsaPssSha512,
                    KeyType::Rsa { .. }
                )
        )
    }

    /// The DER AlgorithmIdentifier naming this scheme in an RFC 7427
    /// Digital Signature AUTH payload (RFC 7427 A, RFC 8420 for Ed25519).
    /// `None` for the fixed-length ECDSA encodings, which RFC 7427 does not
    /// use. RSA PKCS#1 identifiers carry NULL parameters, and so do the
    /// SHA-2 identifiers inside RSASSA-PSS parameters (RFC 4055 2.1 says
    /// both forms must be accepted; strongSwan sends NULL).
    pub fn algorithm_identifier(self) -> Option<&'static [u8]> {
        Some(match self {
            Self::EcdsaP256Sha256Der => &AI_ECDSA_SHA256,
            Self::EcdsaP384Sha384Der => &AI_ECDSA_SHA384,
            Self::Ed25519 => &AI_ED25519,
            Self::RsaPkcs1Sha1 => &AI_SHA1_RSA,
            Self::RsaPkcs1Sha256 => &AI_SHA256_RSA,
            Self::RsaPkcs1Sha384 => &AI_SHA384_RSA,
            Self::RsaPkcs1Sha512 => &AI_SHA512_RSA,
            Self::RsaPssSha256 => &AI_PSS_SHA256,
            Self::RsaPssSha384 => &AI_PSS_SHA384,
            Self::RsaPssSha512 => &AI_PSS_SHA512,
            Self::EcdsaP256Sha256Fixed | Self::EcdsaP384Sha384Fixed => return None,
        })
    }

    /// The scheme a DER AlgorithmIdentifier (from an RFC 7427 AUTH payload)
    /// names, for a key of type `kind`; `None` when it is malformed, not
    /// supported, or does not fit the key (ECDSA identifiers do not name
    /// the curve: the key does). Total on any bytes.
    pub fn from_algorithm_identifier(der: &[u8], kind: KeyType) -> Option<Self> {
        let (rest, alg) = AlgorithmIdentifier::from_der(der).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let id = alg.algorithm.to_id_string();
        let no_params = alg.parameters.is_none();
        let null_or_none = alg
            .parameters
            .as_ref()
            .is_none_or(|p| p.tag() == x509_parser::der_parser::asn1_rs::Tag::Null);
        let scheme = match id.as_str() {
            oid::ECDSA_SHA256 if no_params => Self::EcdsaP256Sha256Der,
            oid::ECDSA_SHA384 if no_params => Self::EcdsaP384Sha384Der,
            oid::ED25519 if no_params => Self::Ed25519,
            oid::SHA1_WITH_RSA if null_or_none => Self::RsaPkcs1Sha1,
            oid::SHA256_WITH_RSA if null_or_none => Self::RsaPkcs1Sha256,
            oid::SHA384_WITH_RSA if null_or_none => Self::RsaPkcs1Sha384,
            oid::SHA512_WITH_RSA if null_or_none => Self::RsaPkcs1Sha512,
            oid::RSA_PSS => pss_scheme(&alg)?,
            _ => return None,
        };
        scheme.fits(kind).then_some(scheme)
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::EcdsaP256Sha256Fixed => &signature::ECDSA_P256_SHA256_FIXED,
            Self::EcdsaP256Sha256Der => &signature::ECDSA_P256_SHA256_ASN1,
            Self::EcdsaP384Sha384Fixed => &signature::ECDSA_P384_SHA384_FIXED,
            Self::EcdsaP384Sha384Der => &signature::ECDSA_P384_SHA384_ASN1,
            Self::Ed25519 => &signature::ED25519,
            Self::RsaPkcs1Sha1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Self::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RsaPkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RsaPkcs1Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::RsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }
}

/// Why a key could not be generated, parsed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The encoding is not a well-formed PKCS#8 / SubjectPublicKeyInfo / PEM.
    #[error("malformed key encoding")]
    Malformed,
    /// The key algorithm (or curve) is not one this crate supports.
    #[error("unsupported key algorithm")]
    UnsupportedAlgorithm,
    /// An RSA key outside 2048..=8192 bits.
    #[error("unsupported RSA key size")]
    UnsupportedKeySize,
    /// Key generation failed.
    #[error("key generation failed")]
    Generation,
    /// PEM input held no `PRIVATE KEY` block (PKCS#8 is required; convert
    /// other forms with `openssl pkcs8 -topk8 -nocrypt`).
    #[error("no PKCS#8 PRIVATE KEY block in PEM input")]
    NoPrivateKey,
}

/// Why signing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The scheme does not fit the key (or cannot be made by ring).
    #[error("signature scheme does not fit the key")]
    SchemeMismatch,
    /// The signing primitive failed.
    #[error("signing failed")]
    Failed,
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The scheme does not fit the key.
    #[error("signature scheme does not fit the key")]
    SchemeMismatch,
    /// The signature is not valid for this key and message.
    #[error("bad signature")]
    BadSignature,
}

/// The SHA-256 digest of a DER SubjectPublicKeyInfo: the identity of a raw
/// public key (RFC 7670) and of a BTNS peer for latching.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpkiFingerprint(pub [u8; 32]);

impl SpkiFingerprint {
    /// The fingerprint of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, spki_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// The digest octets.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex with `:` between octets (the form `openssl` prints).
    pub fn to_colon_hex(&self) -> String {
        let mut s = String::with_capacity(95);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Display for SpkiFingerprint {
    /// Lowercase hex, no separators.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SpkiFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiFingerprint({self})")
    }
}

/// A public key: from a certificate, a raw public key (RFC 7670) or a
/// private key. Verifies signatures for IKE and for certificate chains.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    spki: Vec<u8>,
    kind: KeyType,
    /// The subjectPublicKey bits: EC point, Ed25519 key, or PKCS#1 RSAPublicKey.
    raw: Vec<u8>,
}

impl PublicKey {
    /// Parse a DER SubjectPublicKeyInfo (the RFC 7670 raw public key form).
    /// Total: any bytes give a key or an error. Trailing bytes are refused.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|_| KeyError::Malformed)?;
        if !rest.is_empty() {
            return Err(KeyError::Malformed);
        }
        Self::from_parsed(&spki)
    }

    pub(crate) fn from_parsed(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        let alg = spki.algorithm.algorithm.to_id_string();
        let raw = spki.subject_public_key.data.as_ref();
        let kind = match alg.as_str() {
            oid::EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .ok_or(KeyError::Malformed)?;
                let (kind, len) = match curve.as_str() {
                    oid::P256 => (KeyType::EcdsaP256, 65),
                    oid::P384 => (KeyType::EcdsaP384, 97),
                    _ => return Err(KeyError::UnsupportedAlgorithm),
                };
                // Uncompressed points only (RFC 5480 2.2: MUST support it;
                // ring verifies nothing else).
                if raw.len() != len || raw.first() != Some(&4) {
                    return Err(KeyError::Malformed);
                }
                kind
            }
            oid::ED25519 => {
                if raw.len() != 32 || spki.algorithm.parameters.is_some() {
                    return Err(KeyError::Malformed);
                }
                KeyType::Ed25519
            }
            oid::RSA_ENCRYPTION => {
                let bits = match spki.parsed() {
                    Ok(x509_parser::public_key::PublicKey::RSA(k)) => k.key_size(),
                    _ => return Err(KeyError::Malformed),
                };
                if !(2048..=8192).contains(&bits) {
                    return Err(KeyError::UnsupportedKeySize);
                }
                KeyType::Rsa { bits }
            }
            _ => return Err(KeyError::UnsupportedAlgorithm),
        };
        Ok(Self {
            spki: spki.raw.to_vec(),
            kind,
            raw: raw.to_vec(),
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key type.
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// SHA-256 over the DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> SpkiFingerprint {
        SpkiFingerprint::of_spki(&self.spki)
    }

    /// Check `signature` over `message` under `scheme`.
    pub fn verify(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        if !scheme.fits(self.kind) {
            return Err(VerifyError::SchemeMismatch);
        }
        self.verify_with(scheme.verification(), message, signature)
    }

    fn verify_with(
        &self,
        alg: &'static dyn VerificationAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        UnparsedPublicKey::new(alg, &self.raw)
            .verify(message, signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// Verify an X.509 signature (`signatureAlgorithm` as in a certificate)
    /// made by this key. `Err(None)`: algorithm unsupported or not fitting
    /// the key; `Err(Some(_))`: a bad signature.
    pub(crate) fn verify_x509(
        &self,
        alg: &AlgorithmIdentifier<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Option<VerifyError>> {
        let ring_alg = x509_verification_alg(alg, self.kind).ok_or(None)?;
        self.verify_with(ring_alg, message, signature).map_err(Some)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kind", &self.kind)
            .field("spki_sha256", &self.fingerprint())
            .finish()
    }
}

/// ring's verification algorithm for an X.509 signatureAlgorithm and the
/// signer's key type; `None` when unsupported or not fitting the key.
fn x509_verification_alg(
    alg: &AlgorithmIdentifier<'_>,
    kind: KeyType,
) -> Option<&'static dyn VerificationAlgorithm> {
    let id = alg.algorithm.to_id_string();
    // RFC 4055 / RFC 5758: RSA PKCS#1 algorithms carry NULL or no
    // parameters; ECDSA and Ed25519 carry none.
    let no_params = alg.parameters.is_none();
    let null_or_none = alg
        .parameters
        .as_ref()
        .is_none_or(|p| p.tag() == x509_parser::der_parser::asn1_rs::Tag::Null);
    Some(match (id.as_str(), kind) {
        (oid::ECDSA_SHA256, KeyType::EcdsaP256) if no_params => &signature::ECDSA_P256_SHA256_ASN1,
        (oid::ECDSA_SHA384, KeyType::EcdsaP256) if no_params => &signature::ECDSA_P256_SHA384_ASN1,
        (oid::ECDSA_SHA256, KeyType::EcdsaP384) if no_params => &signature::ECDSA_P384_SHA256_ASN1,
        (oid::ECDSA_SHA384, KeyType::EcdsaP384) if no_params => &signature::ECDSA_P384_SHA384_ASN1,
        (oid::ED25519, KeyType::Ed25519) if no_params => &signature::ED25519,
        (oid::SHA256_WITH_RSA, KeyType::Rsa { .. }) if null_or_none => {
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
        (oid::SHA384_WITH_RSA, KeyType::Rsa { .. }) if null_or_none => {
            &signature::RSA_PKCS1_2048_8192_SHA384
        }
        (oid::SHA512_WITH_RSA, KeyType::Rsa { .. }) if null_or_none => {
            &signature::RSA_PKCS1_2048_8192_SHA512
        }
        (oid::RSA_PSS, KeyType::Rsa { .. }) => pss_alg(alg)?,
        _ => return None,
    })
}

/// RSASSA-PSS parameters (RFC 4055 3.1) that ring can verify: MGF1 with the
/// same hash, salt length equal to the hash length, trailer field 1.
fn pss_scheme(alg: &AlgorithmIdentifier<'_>) -> Option<SignatureScheme> {
    use x509_parser::signature_algorithm::RsaSsaPssParams;
    let params = RsaSsaPssParams::try_from(alg.parameters.as_ref()?).ok()?;
    let hash = params.hash_algorithm_oid().to_id_string();
    let mgf = params.mask_gen_algorithm().ok()?;
    if mgf.mgf.to_id_string() != oid::MGF1
        || mgf.hash.to_id_string() != hash
        || params.trailer_field() != 1
    {
        return None;
    }
    let (scheme, salt) = match hash.as_str() {
        oid::SHA256 => (SignatureScheme::RsaPssSha256, 32),
        oid::SHA384 => (SignatureScheme::RsaPssSha384, 48),
        oid::SHA512 => (SignatureScheme::RsaPssSha512, 64),
        _ => return None,
    };
    (params.salt_length() == salt).then_some(scheme)
}

fn pss_alg(alg: &AlgorithmIdentifier<'_>) -> Option<&'static dyn VerificationAlgorithm> {
    pss_scheme(alg).map(SignatureScheme::verification)
}

enum Signer {
    EcdsaP256 {
        fixed: EcdsaKeyPair,
        der: EcdsaKeyPair,
    },
    EcdsaP384 {
        fixed: EcdsaKeyPair,
        der: EcdsaKeyPair,
    },
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private key, kept as its PKCS#8 document (zeroized on drop) and as
/// ring signing keys (ring offers no zeroization of its parsed key
/// objects). `Debug` shows only the public half.
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    signer: Signer,
    public: PublicKey,
}

/// The PKCS#8 v1 prefix for an Ed25519 seed (RFC 8410 7):
/// `PrivateKeyInfo { version 0, algorithm id-Ed25519, privateKey OCTET STRING { OCTET STRING (32) } }`.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl PrivateKey {
    /// Generate a key with randomness from `rng`: a seeded `rng` gives the
    /// same key every time (the harness and the tests rely on that).
    ///
    /// RSA generation is slow in unoptimised builds (seconds for 2048 bits,
    /// tens of seconds for 3072).
    pub fn generate<R: CryptoRngCore + ?Sized>(
        alg: KeyAlgorithm,
        mut rng: &mut R,
    ) -> Result<Self, KeyError> {
        use p256::pkcs8::EncodePrivateKey as _;
        let der: Zeroizing<Vec<u8>> = match alg {
            KeyAlgorithm::EcdsaP256 => Zeroizing::new(
                p256::SecretKey::random(&mut rng)
                    .to_pkcs8_der()
                    .map_err(|_| KeyError::Generation)?
                    .as_bytes()
                    .to_vec(),
            ),
            KeyAlgorithm::EcdsaP384 => Zeroizing::new(
                p384::SecretKey::random(&mut rng)
                    .to_pkcs8_der()
                    .map_err(|_| KeyError::Generation)?
                    .as_bytes()
                    .to_vec(),
            ),
            KeyAlgorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(seed.as_mut());
                Self::ed25519_pkcs8_from_seed(&seed)
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
                let bits = if alg == KeyAlgorithm::Rsa2048 {
                    2048
                } else {
                    3072
                };
                // RsaPrivateKey zeroizes itself on drop; so does the
                // SecretDocument the PKCS#8 encoding comes in.
                let key =
                    rsa::RsaPrivateKey::new(&mut *rng, bits).map_err(|_| KeyError::Generation)?;
                Zeroizing::new(
                    key.to_pkcs8_der()
                        .map_err(|_| KeyError::Generation)?
                        .as_bytes()
                        .to_vec(),
                )
            }
        };
        Self::from_pkcs8_der(&der)
    }

    /// An Ed25519 key from its 32-octet seed (RFC 8032 "private key").
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        Self::from_pkcs8_der(&Self::ed25519_pkcs8_from_seed(seed))
    }

    fn ed25519_pkcs8_from_seed(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(48));
        v.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        v.extend_from_slice(seed);
        v
    }

    /// Parse a PKCS#8 (RFC 5208 / RFC 5958) private key: ECDSA P-256/P-384,
    /// Ed25519 (v1 or v2) or RSA (2048 to 8192 bits). Total on any bytes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let signer = if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            Signer::Ed25519(k)
        } else if let Ok(fixed) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            let der =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
                    .map_err(|_| KeyError::Malformed)?;
            Signer::EcdsaP256 { fixed, der }
        } else if let Ok(fixed) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
        {
            let der =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
                    .map_err(|_| KeyError::Malformed)?;
            Signer::EcdsaP384 { fixed, der }
        } else {
            match RsaKeyPair::from_pkcs8(der) {
                Ok(k) => Signer::Rsa(k),
                Err(_) => return Err(KeyError::Malformed),
            }
        };
        // The public half as a SubjectPublicKeyInfo: rcgen builds it.
        let kp = rcgen::KeyPair::try_from(der).map_err(|_| KeyError::Malformed)?;
        let public = PublicKey::from_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&kp))?;
        Ok(Self {
            pkcs8: Zeroizing::new(der.to_vec()),
            signer,
            public,
        })
    }

    /// Parse the first `PRIVATE KEY` (PKCS#8) block of PEM text.
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(pem_text).map_err(|_| KeyError::Malformed)?;
        let block = blocks
            .iter()
            .find(|b| b.tag() == "PRIVATE KEY")
            .ok_or(KeyError::NoPrivateKey)?;
        let der = Zeroizing::new(block.contents().to_vec());
        // The parsed blocks are not zeroized by the pem crate; drop them now.
        drop(blocks);
        Self::from_pkcs8_der(&der)
    }

    /// The PKCS#8 document.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// PEM (`-----BEGIN PRIVATE KEY-----`), zeroized on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            self.pkcs8.to_vec(),
        )))
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key type.
    pub fn kind(&self) -> KeyType {
        self.public.kind
    }

    /// The scheme certificates and RFC 7427 signatures use by default for
    /// this key (DER ECDSA, Ed25519, PKCS#1 v1.5 with SHA-256).
    pub fn default_scheme(&self) -> SignatureScheme {
        match self.kind() {
            KeyType::EcdsaP256 => SignatureScheme::EcdsaP256Sha256Der,
            KeyType::EcdsaP384 => SignatureScheme::EcdsaP384Sha384Der,
            KeyType::Ed25519 => SignatureScheme::Ed25519,
            KeyType::Rsa { .. } => SignatureScheme::RsaPkcs1Sha256,
        }
    }

    /// Sign `data` under `scheme` (which must fit the key).
    pub fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>, SignError> {
        let rng = ring::rand::SystemRandom::new();
        let ecdsa = |k: &EcdsaKeyPair| {
            k.sign(&rng, data)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Failed)
        };
        match (&self.signer, scheme) {
            (Signer::EcdsaP256 { fixed, .. }, SignatureScheme::EcdsaP256Sha256Fixed)
            | (Signer::EcdsaP384 { fixed, .. }, SignatureScheme::EcdsaP384Sha384Fixed) => {
                ecdsa(fixed)
            }
            (Signer::EcdsaP256 { der, .. }, SignatureScheme::EcdsaP256Sha256Der)
            | (Signer::EcdsaP384 { der, .. }, SignatureScheme::EcdsaP384Sha384Der) => ecdsa(der),
            (Signer::Ed25519(k), SignatureScheme::Ed25519) => Ok(k.sign(data).as_ref().to_vec()),
            (Signer::Rsa(k), s) => {
                let padding: &'static dyn signature::RsaEncoding = match s {
                    SignatureScheme::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    SignatureScheme::RsaPkcs1Sha384 => &signature::RSA_PKCS1_SHA384,
                    SignatureScheme::RsaPkcs1Sha512 => &signature::RSA_PKCS1_SHA512,
                    SignatureScheme::RsaPssSha256 => &signature::RSA_PSS_SHA256,
                    SignatureScheme::RsaPssSha384 => &signature::RSA_PSS_SHA384,
                    SignatureScheme::RsaPssSha512 => &signature::RSA_PSS_SHA512,
                    _ => return Err(SignError::SchemeMismatch),
                };
                let mut out = vec![0u8; k.public().modulus_len()];
                k.sign(padding, &rng, data, &mut out)
                    .map_err(|_| SignError::Failed)?;
                Ok(out)
            }
            _ => Err(SignError::SchemeMismatch),
        }
    }

    /// The raw public key octets ring reports (EC point, Ed25519 key, or
    /// PKCS#1 RSAPublicKey).
    pub fn public_key_raw(&self) -> &[u8] {
        match &self.signer {
            Signer::EcdsaP256 { fixed, .. } | Signer::EcdsaP384 { fixed, .. } => {
                fixed.public_key().as_ref()
            }
            Signer::Ed25519(k) => k.public_key().as_ref(),
            Signer::Rsa(k) => k.public_key().as_ref(),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}
