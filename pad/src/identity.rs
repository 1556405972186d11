//! Peer identities as IKEv2 carries them in IDi/IDr (RFC 7296 3.5, RFC 7619).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IKEv2 identity (ID payload content, RFC 7296 3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Identity {
    /// ID_IPV4_ADDR (1).
    Ipv4(Ipv4Addr),
    /// ID_FQDN (2).
    Fqdn(String),
    /// ID_RFC822_ADDR (3).
    Rfc822(String),
    /// ID_IPV6_ADDR (5).
    Ipv6(Ipv6Addr),
    /// ID_DER_ASN1_DN (9): the DER encoding of a distinguished name.
    DerAsn1Dn(Vec<u8>),
    /// ID_KEY_ID (11): opaque octets.
    KeyId(Vec<u8>),
    /// ID_NULL (13, RFC 7619): no identity at all (BTNS / NULL authentication).
    Null,
    /// Any other ID type, kept as raw octets.
    Other {
        /// The ID type number.
        id_type: u8,
        /// The identification data.
        data: Vec<u8>,
    },
}

/// Why an identity could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The data length does not fit the ID type.
    #[error("identity of type {id_type} has bad length {len}")]
    BadLength {
        /// The ID type number.
        id_type: u8,
        /// The length found.
        len: usize,
    },
    /// FQDN or RFC822 data is not UTF-8.
    #[error("identity of type {0} is not valid UTF-8")]
    NotUtf8(u8),
    /// ID_NULL carries data (RFC 7619 3: it MUST be empty).
    #[error("ID_NULL must carry no data")]
    NullWithData,
}

impl Identity {
    /// ID_IPV4_ADDR.
    pub const ID_IPV4_ADDR: u8 = 1;
    /// ID_FQDN.
    pub const ID_FQDN: u8 = 2;
    /// ID_RFC822_ADDR.
    pub const ID_RFC822_ADDR: u8 = 3;
    /// ID_IPV6_ADDR.
    pub const ID_IPV6_ADDR: u8 = 5;
    /// ID_DER_ASN1_DN.
    pub const ID_DER_ASN1_DN: u8 = 9;
    /// ID_KEY_ID.
    pub const ID_KEY_ID: u8 = 11;
    /// ID_NULL (RFC 7619).
    pub const ID_NULL: u8 = 13;

    /// The identity of an IP address.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::Ipv4(a),
            IpAddr::V6(a) => Self::Ipv6(a),
        }
    }

    /// The ID type number (RFC 7296 3.5).
    pub fn id_type(&self) -> u8 {
        match self {
            Self::Ipv4(_) => Self::ID_IPV4_ADDR,
            Self::Fqdn(_) => Self::ID_FQDN,
            Self::Rfc822(_) => Self::ID_RFC822_ADDR,
            Self::Ipv6(_) => Self::ID_IPV6_ADDR,
            Self::DerAsn1Dn(_) => Self::ID_DER_ASN1_DN,
            Self::KeyId(_) => Self::ID_KEY_ID,
            Self::Null => Self::ID_NULL,
            Self::Other { id_type, .. } => *id_type,
        }
    }

    /// The identification data as carried on the wire.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Self::Ipv4(a) => a.octets().to_vec(),
            Self::Ipv6(a) => a.octets().to_vec(),
            Self::Fqdn(s) | Self::Rfc822(s) => s.as_bytes().to_vec(),
            Self::DerAsn1Dn(d) | Self::KeyId(d) => d.clone(),
            Self::Null => Vec::new(),
            Self::Other { data, .. } => data.clone(),
        }
    }

    /// Decode an identity from its type and data. Total: any bytes give a
    /// value or an error.
    pub fn from_wire(id_type: u8, data: &[u8]) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadLength {
            id_type,
            len: data.len(),
        };
        Ok(match id_type {
            Self::ID_IPV4_ADDR => Self::Ipv4(Ipv4Addr::from(
                <[u8; 4]>::try_from(data).map_err(|_| bad())?,
            )),
            Self::ID_IPV6_ADDR => Self::Ipv6(Ipv6Addr::from(
                <[u8; 16]>::try_from(data).map_err(|_| bad())?,
            )),
            Self::ID_FQDN | Self::ID_RFC822_ADDR => {
                let s = core::str::from_utf8(data)
                    .map_err(|_| IdentityError::NotUtf8(id_type))?
                    .to_owned();
                if id_type == Self::ID_FQDN {
                    Self::Fqdn(s)
                } else {
                    Self::Rfc822(s)
                }
            }
            Self::ID_DER_ASN1_DN => Self::DerAsn1Dn(data.to_vec()),
            Self::ID_KEY_ID => Self::KeyId(data.to_vec()),
            // RFC 7619 3: "the Identification Data field MUST be empty".
            Self::ID_NULL if data.is_empty() => Self::Null,
            Self::ID_NULL => return Err(IdentityError::NullWithData),
            _ => Self::Other {
                id_type,
                data: data.to_vec(),
            },
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "{a}"),
            Self::Fqdn(s) => write!(f, "{s}"),
            Self::Rfc822(s) => write!(f, "{s}"),
            Self::DerAsn1Dn(d) => write!(f, "dn:{}", hexstr(d)),
            Self::KeyId(d) => write!(f, "keyid:{}", hexstr(d)),
            Self::Null => f.write_str("(null)"),
            Self::Other { id_type, data } => write!(f, "id{id_type}:{}", hexstr(data)),
        }
    }
}

fn hexstr(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a peer authenticates itself in IKE_AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuthMethod {
    /// Shared Key Message Integrity Code (RFC 7296 3.8, method 2).
    Psk,
    /// NULL authentication (RFC 7619, method 13): BTNS, no identity proven.
    Null,
    /// A signature by the key of an X.509 certificate (CERT encoding 4)
    /// validated to a configured trust anchor: RSA Digital Signature
    /// (method 1), ECDSA (RFC 4754, methods 9, 10, 11) or Digital Signature
    /// (RFC 7427, method 14).
    Certificate,
    /// A signature by a raw public key (RFC 7670, CERT encoding 15, or a
    /// key configured for the peer), with the same signature methods as
    /// [`AuthMethod::Certificate`].
    RawPublicKey,
}

impl AuthMethod {
    /// RSA Digital Signature (RFC 7296 3.8): RSASSA-PKCS1-v1_5 with SHA-1.
    pub const WIRE_RSA_SIG: u8 = 1;
    /// Shared Key Message Integrity Code (RFC 7296 3.8).
    pub const WIRE_PSK: u8 = 2;
    /// ECDSA with SHA-256 on P-256 (RFC 4754).
    pub const WIRE_ECDSA_256: u8 = 9;
    /// ECDSA with SHA-384 on P-384 (RFC 4754).
    pub const WIRE_ECDSA_384: u8 = 10;
    /// ECDSA with SHA-512 on P-521 (RFC 4754).
    pub const WIRE_ECDSA_521: u8 = 11;
    /// NULL Authentication (RFC 7619).
    pub const WIRE_NULL: u8 = 13;
    /// Digital Signature (RFC 7427).
    pub const WIRE_DIGITAL_SIGNATURE: u8 = 14;

    /// The IANA auth method number carried in the AUTH payload. For the
    /// signature methods this is the default, Digital Signature (14,
    /// RFC 7427); the state machine may use 1, 9 or 10 instead, depending
    /// on the key and on what the peer announced.
    pub fn wire(self) -> u8 {
        match self {
            Self::Psk => Self::WIRE_PSK,
            Self::Null => Self::WIRE_NULL,
            Self::Certificate | Self::RawPublicKey => Self::WIRE_DIGITAL_SIGNATURE,
        }
    }

    /// Decode an auth method number. The signature methods (1, 9, 10, 11,
    /// 14) decode as [`AuthMethod::Certificate`]: whether the key came in a
    /// certificate or raw is told by the CERT payload, not by the number.
    pub fn from_wire(n: u8) -> Option<Self> {
        match n {
            Self::WIRE_PSK => Some(Self::Psk),
            Self::WIRE_NULL => Some(Self::Null),
            n if Self::is_signature_method(n) => Some(Self::Certificate),
            _ => None,
        }
    }

    /// Whether `n` is a signature method number (1, 9, 10, 11, 14).
    pub fn is_signature_method(n: u8) -> bool {
        matches!(
            n,
            Self::WIRE_RSA_SIG
                | Self::WIRE_ECDSA_256
                | Self::WIRE_ECDSA_384
                | Self::WIRE_ECDSA_521
                | Self::WIRE_DIGITAL_SIGNATURE
        )
    }

    /// Whether this method proves possession of a private key by a
    /// signature (certificates and raw public keys).
    pub fn is_signature(self) -> bool {
        matches!(self, Self::Certificate | Self::RawPublicKey)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Psk => "psk",
            Self::Null => "null",
            Self::Certificate => "certificate",
            Self::RawPublicKey => "rawpublickey",
        })
    }
}

impl core::str::FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "psk" => Ok(Self::Psk),
            "null" => Ok(Self::Null),
            "certificate" | "cert" => Ok(Self::Certificate),
            "rawpublickey" | "pubkey" | "raw" => Ok(Self::RawPublicKey),
            _ => Err(format!(
                "unknown auth method {s:?} (expected psk, null, certificate or pubkey)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip() {
        for id in [
            Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
            Identity::Ipv6(Ipv6Addr::LOCALHOST),
            Identity::Fqdn("gw.example".into()),
            Identity::Rfc822("a@b.example".into()),
            Identity::KeyId(vec![1, 2, 3]),
            Identity::Null,
            Identity::Other {
                id_type: 200,
                data: vec![9],
            },
        ] {
            assert_eq!(Identity::from_wire(id.id_type(), &id.data()), Ok(id));
        }
    }

    #[test]
    fn auth_methods() {
        for m in [
            AuthMethod::Psk,
            AuthMethod::Null,
            AuthMethod::Certificate,
            AuthMethod::RawPublicKey,
        ] {
            assert_eq!(m.to_string().parse::<AuthMethod>(), Ok(m));
        }
        assert_eq!(AuthMethod::from_wire(2), Some(AuthMethod::Psk));
        assert_eq!(AuthMethod::from_wire(13), Some(AuthMethod::Null));
        for n in [1, 9, 10, 11, 14] {
            assert_eq!(AuthMethod::from_wire(n), Some(AuthMethod::Certificate));
        }
        assert_eq!(AuthMethod::from_wire(3), None);
        assert_eq!(AuthMethod::RawPublicKey.wire(), 14);
    }

    #[test]
    fn bad_identities_are_errors() {
        assert!(Identity::from_wire(1, &[1, 2, 3]).is_err());
        assert!(Identity::from_wire(2, &[0xff]).is_err());
        assert_eq!(
            Identity::from_wire(13, &[0]),
            Err(IdentityError::NullWithData)
        );
    }
}
