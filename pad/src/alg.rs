//! IKEv2 transform identifiers (IANA "IKEv2 Parameters", RFC 7296 3.3.2) for
//! the algorithms latchkey speaks, with the properties the rest of the code
//! needs (key lengths, ICV lengths) and strongSwan's names for them.

use core::fmt;

/// Transform type 1: encryption algorithm, for IKE (SK payload) and ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Encr {
    /// ENCR_AES_CBC (12) with a 128-bit key (RFC 3602); needs an integrity
    /// algorithm.
    AesCbc128,
    /// ENCR_AES_CBC (12) with a 256-bit key.
    AesCbc256,
    /// ENCR_AES_GCM_16 (20), 128-bit key, 16-octet ICV (RFC 4106, RFC 5282).
    AesGcm16_128,
    /// ENCR_AES_GCM_16 (20), 256-bit key.
    AesGcm16_256,
    /// ENCR_CHACHA20_POLY1305 (28, RFC 7634).
    ChaCha20Poly1305,
}

impl Encr {
    /// Every encryption algorithm latchkey speaks.
    pub const ALL: [Self; 5] = [
        Self::AesGcm16_128,
        Self::AesGcm16_256,
        Self::ChaCha20Poly1305,
        Self::AesCbc128,
        Self::AesCbc256,
    ];

    /// The transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::AesCbc128 | Self::AesCbc256 => 12,
            Self::AesGcm16_128 | Self::AesGcm16_256 => 20,
            Self::ChaCha20Poly1305 => 28,
        }
    }

    /// The key length attribute in bits, if the transform carries one
    /// (RFC 7296 3.3.5; ChaCha20-Poly1305 has none, RFC 7634 2).
    pub fn key_length_attr(self) -> Option<u16> {
        match self {
            Self::AesCbc128 | Self::AesGcm16_128 => Some(128),
            Self::AesCbc256 | Self::AesGcm16_256 => Some(256),
            Self::ChaCha20Poly1305 => None,
        }
    }

    /// Decode a transform ID and key length attribute.
    pub fn from_wire(id: u16, key_len: Option<u16>) -> Option<Self> {
        match (id, key_len) {
            (12, Some(128)) => Some(Self::AesCbc128),
            (12, Some(256)) => Some(Self::AesCbc256),
            (20, Some(128)) => Some(Self::AesGcm16_128),
            (20, Some(256)) => Some(Self::AesGcm16_256),
            (28, None) => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// True for combined-mode (AEAD) ciphers, which take no integrity
    /// transform (RFC 5282 8, RFC 4106 8).
    pub fn is_aead(self) -> bool {
        !matches!(self, Self::AesCbc128 | Self::AesCbc256)
    }

    /// Octets of keying material taken from KEYMAT / prf+ for the cipher,
    /// including the salt of the AEADs (4 octets: RFC 4106 8.1, RFC 5282 7.1,
    /// RFC 7634 2).
    pub fn keymat_len(self) -> usize {
        match self {
            Self::AesCbc128 => 16,
            Self::AesCbc256 => 32,
            Self::AesGcm16_128 => 16 + 4,
            Self::AesGcm16_256 => 32 + 4,
            Self::ChaCha20Poly1305 => 32 + 4,
        }
    }

    /// Length of the IV carried in each packet or SK payload.
    pub fn iv_len(self) -> usize {
        match self {
            Self::AesCbc128 | Self::AesCbc256 => 16,
            _ => 8,
        }
    }

    /// Length of the AEAD's ICV (0 for CBC, whose ICV comes from [`Integ`]).
    pub fn aead_icv_len(self) -> usize {
        if self.is_aead() {
            16
        } else {
            0
        }
    }

    /// Block size that the plaintext is padded to.
    pub fn block_len(self) -> usize {
        match self {
            Self::AesCbc128 | Self::AesCbc256 => 16,
            _ => 4,
        }
    }

    /// strongSwan's name (e.g. `aes128gcm16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AesCbc128 => "aes128",
            Self::AesCbc256 => "aes256",
            Self::AesGcm16_128 => "aes128gcm16",
            Self::AesGcm16_256 => "aes256gcm16",
            Self::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }

    /// Parse strongSwan's name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "aes128" | "aes128cbc" | "aes" => Self::AesCbc128,
            "aes256" | "aes256cbc" => Self::AesCbc256,
            "aes128gcm16" | "aes128gcm" => Self::AesGcm16_128,
            "aes256gcm16" | "aes256gcm" => Self::AesGcm16_256,
            "chacha20poly1305" => Self::ChaCha20Poly1305,
            _ => return None,
        })
    }
}

/// Transform type 2: pseudorandom function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Prf {
    /// PRF_HMAC_SHA2_256 (5, RFC 4868).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl Prf {
    /// Every PRF latchkey speaks.
    pub const ALL: [Self; 3] = [Self::HmacSha256, Self::HmacSha384, Self::HmacSha512];

    /// The transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }

    /// Decode a transform ID.
    pub fn from_wire(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.transform_id() == id)
    }

    /// Output (and preferred key) length in octets.
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }

    /// strongSwan's name (e.g. `prfsha256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "prfsha256",
            Self::HmacSha384 => "prfsha384",
            Self::HmacSha512 => "prfsha512",
        }
    }

    /// Parse strongSwan's name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Transform type 3: integrity algorithm (only with non-AEAD ciphers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Integ {
    /// AUTH_HMAC_SHA2_256_128 (12, RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl Integ {
    /// Every integrity algorithm latchkey speaks.
    pub const ALL: [Self; 3] = [
        Self::HmacSha256_128,
        Self::HmacSha384_192,
        Self::HmacSha512_256,
    ];

    /// The transform ID.
    pub fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha256_128 => 12,
            Self::HmacSha384_192 => 13,
            Self::HmacSha512_256 => 14,
        }
    }

    /// Decode a transform ID.
    pub fn from_wire(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.transform_id() == id)
    }

    /// Key length in octets (RFC 4868 2.1: the hash's output length).
    pub fn key_len(self) -> usize {
        match self {
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
        }
    }

    /// Truncated ICV length in octets.
    pub fn icv_len(self) -> usize {
        match self {
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }

    /// strongSwan's name (e.g. `sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256_128 => "sha256",
            Self::HmacSha384_192 => "sha384",
            Self::HmacSha512_256 => "sha512",
        }
    }

    /// Parse strongSwan's name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Transform type 4: key exchange (Diffie-Hellman) group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum DhGroup {
    /// 2048-bit MODP group (14, RFC 3526).
    Modp2048,
    /// 256-bit random ECP group (19, RFC 5903).
    Ecp256,
    /// 384-bit random ECP group (20, RFC 5903).
    Ecp384,
    /// Curve25519 (31, RFC 8031).
    X25519,
}

impl DhGroup {
    /// Every group latchkey speaks.
    pub const ALL: [Self; 4] = [Self::X25519, Self::Ecp256, Self::Ecp384, Self::Modp2048];

    /// The transform ID (group number).
    pub fn transform_id(self) -> u16 {
        match self {
            Self::Modp2048 => 14,
            Self::Ecp256 => 19,
            Self::Ecp384 => 20,
            Self::X25519 => 31,
        }
    }

    /// Decode a group number.
    pub fn from_wire(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.transform_id() == id)
    }

    /// Length of the public value in the KE payload.
    pub fn public_len(self) -> usize {
        match self {
            Self::Modp2048 => 256,
            Self::Ecp256 => 64,
            Self::Ecp384 => 96,
            Self::X25519 => 32,
        }
    }

    /// strongSwan's name (e.g. `x25519`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Modp2048 => "modp2048",
            Self::Ecp256 => "ecp256",
            Self::Ecp384 => "ecp384",
            Self::X25519 => "x25519",
        }
    }

    /// Parse strongSwan's name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "curve25519" => Some(Self::X25519),
            _ => Self::ALL.into_iter().find(|p| p.name() == s),
        }
    }
}

macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}
display_by_name!(Encr, Prf, Integ, DhGroup);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_and_names_round_trip() {
        for e in Encr::ALL {
            assert_eq!(
                Encr::from_wire(e.transform_id(), e.key_length_attr()),
                Some(e)
            );
            assert_eq!(Encr::from_name(e.name()), Some(e));
        }
        for p in Prf::ALL {
            assert_eq!(Prf::from_wire(p.transform_id()), Some(p));
            assert_eq!(Prf::from_name(p.name()), Some(p));
        }
        for i in Integ::ALL {
            assert_eq!(Integ::from_wire(i.transform_id()), Some(i));
            assert_eq!(Integ::from_name(i.name()), Some(i));
        }
        for g in DhGroup::ALL {
            assert_eq!(DhGroup::from_wire(g.transform_id()), Some(g));
            assert_eq!(DhGroup::from_name(g.name()), Some(g));
        }
    }

    #[test]
    fn unknown_ids_are_none() {
        assert_eq!(Encr::from_wire(20, Some(192)), None);
        assert_eq!(Encr::from_wire(28, Some(256)), None);
        assert_eq!(Prf::from_wire(2), None);
        assert_eq!(DhGroup::from_wire(2), None);
    }
}
