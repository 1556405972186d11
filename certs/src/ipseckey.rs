//! The IPSECKEY resource record (RFC 4025): its RDATA parsed into a
//! gateway and a public key that [`PublicKey`] can verify with, and back.
//!
//! Key formats by algorithm type (RFC 4025 2.4 and the IANA registry):
//! 2 = RSA in the RFC 3110 form (exponent length, exponent, modulus);
//! 3 = ECDSA as RFC 8005 defines it (by reference to RFC 6605: `x || y`,
//! 64 octets for P-256, 96 for P-384); 4 = EdDSA (RFC 9373, key as in
//! RFC 8080: 32 octets Ed25519, 57 octets Ed448). Each is turned into a DER
//! SubjectPublicKeyInfo. DSA (1), Ed448 and unknown types are refused with
//! a precise [`IpsecKeyError`].
//!
//! No I/O: the DNS query lives in the `endpoint` crate. [`IpsecKey::parse`]
//! is total: any bytes give a record or an error, never a panic.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::keys::{KeyError, KeyType, PublicKey};

/// The IPSECKEY RR type code (RFC 4025 2).
pub const RECORD_TYPE: u16 = 45;

/// Algorithm type values (RFC 4025 2.4, RFC 8005, RFC 9373).
pub mod algorithm {
    /// No key present.
    pub const NONE: u8 = 0;
    /// DSA (RFC 2536 key format); not supported here.
    pub const DSA: u8 = 1;
    /// RSA (RFC 3110 key format).
    pub const RSA: u8 = 2;
    /// ECDSA (RFC 8005, RFC 6605 key format).
    pub const ECDSA: u8 = 3;
    /// EdDSA (RFC 9373, RFC 8080 key format).
    pub const EDDSA: u8 = 4;
}

/// Where IPsec traffic for the record's owner should go (RFC 4025 2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Gateway {
    /// Type 0: no gateway (the owner itself, or none named).
    None,
    /// Type 1: an IPv4 address.
    Ipv4(Ipv4Addr),
    /// Type 2: an IPv6 address.
    Ipv6(Ipv6Addr),
    /// Type 3: a domain name, absolute, in presentation form (`gw.example.`).
    Name(String),
}

impl Gateway {
    /// The gateway type octet.
    pub fn type_code(&self) -> u8 {
        match self {
            Self::None => 0,
            Self::Ipv4(_) => 1,
            Self::Ipv6(_) => 2,
            Self::Name(_) => 3,
        }
    }
}

impl fmt::Display for Gateway {
    /// Presentation form: `.` for none, an address, or the name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("."),
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "{a}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// Why an IPSECKEY RDATA was refused or its key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpsecKeyError {
    /// The RDATA ends inside a field.
    #[error("IPSECKEY RDATA truncated in the {0} field")]
    Truncated(&'static str),
    /// A gateway type other than 0 to 3.
    #[error("IPSECKEY gateway type {0} is not defined (0 to 3)")]
    UnknownGatewayType(u8),
    /// The type 3 gateway is not an uncompressed wire-format name.
    #[error("IPSECKEY gateway name is malformed: {0}")]
    BadGatewayName(&'static str),
    /// Algorithm 0, or an empty public key field: nothing to authenticate with.
    #[error("IPSECKEY record carries no public key")]
    NoKey,
    /// An algorithm type this crate cannot verify with (DSA is 1).
    #[error("IPSECKEY algorithm type {0} is not supported (RSA 2, ECDSA 3, EdDSA 4 are)")]
    UnsupportedAlgorithm(u8),
    /// The key field does not follow its algorithm's format.
    #[error("IPSECKEY {algorithm} key is malformed: {reason}")]
    MalformedKey {
        /// RSA, ECDSA or EdDSA.
        algorithm: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// An ECDSA key whose length names no supported curve.
    #[error("IPSECKEY ECDSA key of {0} octets: only P-256 (64) and P-384 (96) are supported")]
    UnsupportedCurve(usize),
    /// An Ed448 key (57 octets): ring cannot verify Ed448.
    #[error("IPSECKEY EdDSA key is Ed448, which is not supported (Ed25519 is)")]
    Ed448,
    /// The key decoded but is not usable (for example an RSA modulus
    /// outside 2048..=8192 bits).
    #[error("IPSECKEY public key refused: {0}")]
    Key(#[from] KeyError),
}

/// One IPSECKEY record's data (RFC 4025 2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpsecKey {
    /// Precedence: lower values are preferred (RFC 4025 2.2).
    pub precedence: u8,
    /// The gateway.
    pub gateway: Gateway,
    /// The algorithm type ([`algorithm`]).
    pub algorithm: u8,
    /// The public key field, as on the wire (may be empty).
    pub public_key: Vec<u8>,
}

impl IpsecKey {
    /// Parse RDATA. Total on any bytes. Only the syntax of the record is
    /// checked here; the key is checked by [`Self::spki_der`] and
    /// [`Self::to_public_key`], so a record with an unsupported key is still
    /// readable (its gateway, for instance).
    pub fn parse(rdata: &[u8]) -> Result<Self, IpsecKeyError> {
        let [precedence, gateway_type, algorithm, rest @ ..] = rdata else {
            return Err(IpsecKeyError::Truncated("header"));
        };
        let (gateway, key) = match *gateway_type {
            0 => (Gateway::None, rest),
            1 => {
                let (a, k) = split::<4>(rest).ok_or(IpsecKeyError::Truncated("gateway"))?;
                (Gateway::Ipv4(Ipv4Addr::from(a)), k)
            }
            2 => {
                let (a, k) = split::<16>(rest).ok_or(IpsecKeyError::Truncated("gateway"))?;
                (Gateway::Ipv6(Ipv6Addr::from(a)), k)
            }
            3 => {
                let (name, k) = wire_name(rest)?;
                (Gateway::Name(name), k)
            }
            t => return Err(IpsecKeyError::UnknownGatewayType(t)),
        };
        Ok(Self {
            precedence: *precedence,
            gateway,
            algorithm: *algorithm,
            public_key: key.to_vec(),
        })
    }

    /// The RDATA wire form (the gateway name uncompressed, RFC 4025 2.3).
    pub fn to_rdata(&self) -> Result<Vec<u8>, IpsecKeyError> {
        let mut out = vec![self.precedence, self.gateway.type_code(), self.algorithm];
        match &self.gateway {
            Gateway::None => {}
            Gateway::Ipv4(a) => out.extend_from_slice(&a.octets()),
            Gateway::Ipv6(a) => out.extend_from_slice(&a.octets()),
            Gateway::Name(n) => out.extend_from_slice(&name_to_wire(n)?),
        }
        out.extend_from_slice(&self.public_key);
        Ok(out)
    }

    /// A record publishing `key` (algorithm type and key format chosen from
    /// the key type): what a zone needs to authenticate us RFC 4322 style.
    pub fn from_public_key(
        precedence: u8,
        gateway: Gateway,
        key: &PublicKey,
    ) -> Result<Self, IpsecKeyError> {
        let (algorithm, public_key) = match key.kind() {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => (
                algorithm::ECDSA,
                spki_bits(key)?.get(1..).unwrap_or(&[]).to_vec(),
            ),
            KeyType::Ed25519 => (algorithm::EDDSA, spki_bits(key)?),
            KeyType::Rsa { .. } => (algorithm::RSA, rsa_to_rfc3110(key)?),
        };
        Ok(Self {
            precedence,
            gateway,
            algorithm,
            public_key,
        })
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, IpsecKeyError> {
        let key = self.public_key.as_slice();
        if self.algorithm == algorithm::NONE || key.is_empty() {
            return Err(IpsecKeyError::NoKey);
        }
        match self.algorithm {
            algorithm::RSA => rsa_spki(key),
            algorithm::ECDSA => {
                let curve: &[u8] = match key.len() {
                    64 => &OID_P256,
                    96 => &OID_P384,
                    n => return Err(IpsecKeyError::UnsupportedCurve(n)),
                };
                let mut point = Vec::with_capacity(1 + key.len());
                point.push(0x04);
                point.extend_from_slice(key);
                Ok(spki(&[&OID_EC_PUBLIC_KEY, curve], &point))
            }
            algorithm::EDDSA => match key.len() {
                32 => Ok(spki(&[&OID_ED25519], key)),
                57 => Err(IpsecKeyError::Ed448),
                _ => Err(IpsecKeyError::MalformedKey {
                    algorithm: "EdDSA",
                    reason: "neither 32 (Ed25519) nor 57 (Ed448) octets",
                }),
            },
            a => Err(IpsecKeyError::UnsupportedAlgorithm(a)),
        }
    }

    /// The public key, ready to verify IKE AUTH signatures.
    pub fn to_public_key(&self) -> Result<PublicKey, IpsecKeyError> {
        Ok(PublicKey::from_spki_der(&self.spki_der()?)?)
    }
}

impl fmt::Display for IpsecKey {
    /// Presentation form (RFC 4025 3): `precedence gateway-type algorithm
    /// gateway base64-key`, as a zone file holds it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.precedence,
            self.gateway.type_code(),
            self.algorithm,
            self.gateway
        )?;
        if !self.public_key.is_empty() {
            write!(f, " {}", base64(&self.public_key))?;
        }
        Ok(())
    }
}

fn split<const N: usize>(b: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, tail) = b.split_first_chunk::<N>()?;
    Some((*head, tail))
}

/// An uncompressed wire-format domain name (RFC 1035 3.1) at the start of
/// `b`, in presentation form with a trailing dot, and what follows it.
fn wire_name(b: &[u8]) -> Result<(String, &[u8]), IpsecKeyError> {
    let mut name = String::new();
    let mut rest = b;
    let mut wire_len = 0usize;
    loop {
        let (&len, tail) = rest
            .split_first()
            .ok_or(IpsecKeyError::Truncated("gateway"))?;
        let len = usize::from(len);
        wire_len += 1 + len;
        if wire_len > 255 {
            return Err(IpsecKeyError::BadGatewayName("longer than 255 octets"));
        }
        if len == 0 {
            if name.is_empty() {
                name.push('.');
            }
            return Ok((name, tail));
        }
        if len > 63 {
            // 0xC0 and up: a compression pointer, which RFC 4025 2.3 forbids.
            return Err(IpsecKeyError::BadGatewayName(
                "compressed or label longer than 63",
            ));
        }
        let label = tail.get(..len).ok_or(IpsecKeyError::Truncated("gateway"))?;
        for &c in label {
            match c {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    name.push('\\');
                    name.push(char::from(c));
                }
                0x21..=0x7e => name.push(char::from(c)),
                _ => name.push_str(&format!("\\{c:03}")),
            }
        }
        name.push('.');
        rest = tail.get(len..).unwrap_or(&[]);
    }
}

/// Presentation name (dots between labels, `\.`, `\\` and `\DDD` escapes)
/// to uncompressed wire form.
fn name_to_wire(name: &str) -> Result<Vec<u8>, IpsecKeyError> {
    let mut out = Vec::new();
    let mut label = Vec::new();
    let bytes = name.as_bytes();
    let mut i = 0;
    let push = |out: &mut Vec<u8>, label: &mut Vec<u8>| -> Result<(), IpsecKeyError> {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or(IpsecKeyError::BadGatewayName(
                "empty label or longer than 63",
            ))?;
        out.push(len);
        out.append(label);
        Ok(())
    };
    if name != "." {
        while let Some(&c) = bytes.get(i) {
            i += 1;
            match c {
                b'.' => push(&mut out, &mut label)?,
                b'\\' => {
                    let digits = bytes
                        .get(i..i + 3)
                        .filter(|d| d.iter().all(u8::is_ascii_digit));
                    if let Some(d) = digits {
                        let v = d.iter().fold(0u32, |a, x| a * 10 + u32::from(x - b'0'));
                        label.push(
                            u8::try_from(v)
                                .map_err(|_| IpsecKeyError::BadGatewayName("escape above 255"))?,
                        );
                        i += 3;
                    } else {
                        let e = bytes
                            .get(i)
                            .ok_or(IpsecKeyError::BadGatewayName("dangling escape"))?;
                        label.push(*e);
                        i += 1;
                    }
                }
                _ => label.push(c),
            }
        }
        if !label.is_empty() {
            push(&mut out, &mut label)?;
        }
    }
    out.push(0);
    if out.len() > 255 {
        return Err(IpsecKeyError::BadGatewayName("longer than 255 octets"));
    }
    Ok(out)
}

// DER pieces.
const OID_RSA_ENCRYPTION: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const DER_NULL: [u8; 2] = [0x05, 0x00];
const OID_EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        let n = be.len() - skip;
        out.push(0x80 | n as u8);
        out.extend_from_slice(be.get(skip..).unwrap_or(&[]));
    }
    out.extend_from_slice(content);
    out
}

/// SubjectPublicKeyInfo from the AlgorithmIdentifier's DER parts and the
/// subjectPublicKey bits.
fn spki(alg_parts: &[&[u8]], key_bits: &[u8]) -> Vec<u8> {
    let alg = der(0x30, &alg_parts.concat());
    let mut bits = vec![0u8];
    bits.extend_from_slice(key_bits);
    der(0x30, &[alg, der(0x03, &bits)].concat())
}

/// A positive DER INTEGER from big-endian magnitude octets (no leading zeros).
fn der_uint(magnitude: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
        c.push(0);
    }
    c.extend_from_slice(magnitude);
    der(0x02, &c)
}

/// RFC 3110 2: exponent length (1 octet, or 0 then 2 octets), exponent,
/// modulus; leading zero octets prohibited.
fn rsa_spki(key: &[u8]) -> Result<Vec<u8>, IpsecKeyError> {
    let bad = |reason| IpsecKeyError::MalformedKey {
        algorithm: "RSA",
        reason,
    };
    let (exp_len, rest) = match key {
        [0, hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
        [0, ..] => return Err(bad("truncated exponent length")),
        [n, rest @ ..] => (usize::from(*n), rest),
        [] => return Err(IpsecKeyError::NoKey),
    };
    if exp_len == 0 {
        return Err(bad("empty exponent"));
    }
    let exponent = rest.get(..exp_len).ok_or(bad("exponent truncated"))?;
    let modulus = rest.get(exp_len..).unwrap_or(&[]);
    if modulus.is_empty() {
        return Err(bad("no modulus"));
    }
    if exponent.first() == Some(&0) || modulus.first() == Some(&0) {
        return Err(bad("leading zero octets"));
    }
    let rsa_public_key = der(0x30, &[der_uint(modulus), der_uint(exponent)].concat());
    Ok(spki(&[&OID_RSA_ENCRYPTION, &DER_NULL], &rsa_public_key))
}

/// The subjectPublicKey bits of a key's SPKI.
fn spki_bits(key: &PublicKey) -> Result<Vec<u8>, IpsecKeyError> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(key.spki_der())
        .map_err(|_| IpsecKeyError::Key(KeyError::Malformed))?;
    Ok(spki.subject_public_key.data.to_vec())
}

/// An RSA key's RFC 3110 form.
fn rsa_to_rfc3110(key: &PublicKey) -> Result<Vec<u8>, IpsecKeyError> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(key.spki_der())
        .map_err(|_| IpsecKeyError::Key(KeyError::Malformed))?;
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
        return Err(IpsecKeyError::Key(KeyError::Malformed));
    };
    let strip = |b: &[u8]| -> Vec<u8> {
        let skip = b.iter().take_while(|x| **x == 0).count();
        b.get(skip..).unwrap_or(&[]).to_vec()
    };
    let (e, n) = (strip(rsa.exponent), strip(rsa.modulus));
    let mut out = Vec::with_capacity(3 + e.len() + n.len());
    match u8::try_from(e.len()) {
        Ok(l) if l > 0 => out.push(l),
        _ => {
            let l = u16::try_from(e.len()).map_err(|_| IpsecKeyError::Key(KeyError::Malformed))?;
            out.push(0);
            out.extend_from_slice(&l.to_be_bytes());
        }
    }
    out.extend_from_slice(&e);
    out.extend_from_slice(&n);
    Ok(out)
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                s.push(char::from(A.get(idx).copied().unwrap_or(b'A')));
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::{KeyAlgorithm, PrivateKey};
    use rand_core::{RngCore, SeedableRng};

    fn unbase64(s: &str) -> Vec<u8> {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
            let v = A.iter().position(|a| *a == c).unwrap() as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    }

    /// The key of every RFC 4025 section 3 example.
    const RFC4025_KEY: &str = "AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==";

    fn rdata(head: &[u8], gateway: &[u8]) -> Vec<u8> {
        [head, gateway, &unbase64(RFC4025_KEY)].concat()
    }

    /// RFC 4025 section 3, the five presentation-form examples, encoded
    /// to wire form by hand and parsed back.
    #[test]
    fn rfc4025_section3_examples() {
        let cases: Vec<(Vec<u8>, Gateway, &str)> = vec![
            (
                rdata(&[10, 1, 2], &[192, 0, 2, 38]),
                Gateway::Ipv4(Ipv4Addr::new(192, 0, 2, 38)),
                "10 1 2 192.0.2.38 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
            ),
            (
                rdata(&[10, 0, 2], &[]),
                Gateway::None,
                "10 0 2 . AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
            ),
            (
                rdata(&[10, 1, 2], &[192, 0, 2, 3]),
                Gateway::Ipv4(Ipv4Addr::new(192, 0, 2, 3)),
                "10 1 2 192.0.2.3 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
            ),
            (
                rdata(&[10, 3, 2], b"\x09mygateway\x07example\x03com\x00"),
                Gateway::Name("mygateway.example.com.".into()),
                "10 3 2 mygateway.example.com. AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
            ),
            (
                rdata(
                    &[10, 2, 2],
                    &"2001:0DB8:0:8002::2000:1"
                        .parse::<Ipv6Addr>()
                        .unwrap()
                        .octets(),
                ),
                Gateway::Ipv6("2001:db8:0:8002::2000:1".parse().unwrap()),
                "10 2 2 2001:db8:0:8002::2000:1 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
            ),
        ];
        for (wire, gateway, text) in cases {
            let k = IpsecKey::parse(&wire).unwrap();
            assert_eq!(k.precedence, 10);
            assert_eq!(k.algorithm, algorithm::RSA);
            assert_eq!(k.gateway, gateway);
            assert_eq!(k.to_string(), text);
            assert_eq!(k.to_rdata().unwrap(), wire);
            // The example key is RSA with exponent 3 and a 256-bit
            // modulus: well formed, but far below what we accept.
            let spki = k.spki_der().unwrap();
            let (_, parsed) = {
                use x509_parser::prelude::FromDer as _;
                x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap()
            };
            match parsed.parsed().unwrap() {
                x509_parser::public_key::PublicKey::RSA(rsa) => {
                    assert_eq!(rsa.exponent, [3]);
                    assert_eq!(rsa.modulus, &unbase64(RFC4025_KEY)[2..]);
                    assert_eq!(rsa.modulus.len(), 32);
                }
                other => panic!("RSA expected, got {other:?}"),
            }
            assert_eq!(
                k.to_public_key(),
                Err(IpsecKeyError::Key(KeyError::UnsupportedKeySize))
            );
        }
        // The same wire form as another implementation encodes the first
        // example (base64 of the whole RDATA).
        assert_eq!(
            IpsecKey::parse(&unbase64(
                "CgECwAACJgEDUVN5hu01UztgZEeO7rJ7W9dNrhSbboG6OgUhr4KreAE="
            ))
            .unwrap()
            .to_string(),
            "10 1 2 192.0.2.38 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ=="
        );
    }

    /// RFC 8005 5.5 takes the ECDSA key format of RFC 6605: `x || y`.
    /// RFC 6605 6.1 gives a P-256 key pair: the private scalar and the
    /// public key in that form. The SPKI built from the public key must be
    /// the one of the key derived from the scalar.
    #[test]
    fn rfc6605_p256_example_key() {
        use p256::pkcs8::EncodePrivateKey as _;
        let public = unbase64(
            "GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edbkrSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA==",
        );
        let scalar = unbase64("GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ=");
        let sk = p256::SecretKey::from_slice(&scalar).unwrap();
        let private = PrivateKey::from_pkcs8_der(sk.to_pkcs8_der().unwrap().as_bytes()).unwrap();
        let rec =
            IpsecKey::parse(&[[10, 0, algorithm::ECDSA].as_slice(), &public].concat()).unwrap();
        let key = rec.to_public_key().unwrap();
        assert_eq!(key.kind(), KeyType::EcdsaP256);
        assert_eq!(&key, private.public_key());
        // And back: the record made from the key carries the same octets.
        let back = IpsecKey::from_public_key(10, Gateway::None, &key).unwrap();
        assert_eq!(back, rec);
        // A signature made with the private key verifies with the DNS key.
        let sig = private
            .sign(b"ipseckey", crate::SignatureScheme::EcdsaP256Sha256Der)
            .unwrap();
        key.verify(
            crate::SignatureScheme::EcdsaP256Sha256Der,
            b"ipseckey",
            &sig,
        )
        .unwrap();
    }

    /// Every key type round-trips through an IPSECKEY record and verifies.
    #[test]
    fn generated_keys_round_trip() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4025);
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Rsa2048,
        ] {
            let private = PrivateKey::generate(alg, &mut rng).unwrap();
            let rec = IpsecKey::from_public_key(
                5,
                Gateway::Name("gw.example.".into()),
                private.public_key(),
            )
            .unwrap();
            let wire = rec.to_rdata().unwrap();
            let parsed = IpsecKey::parse(&wire).unwrap();
            assert_eq!(parsed, rec, "{alg}");
            assert_eq!(
                &parsed.to_public_key().unwrap(),
                private.public_key(),
                "{alg}"
            );
            let expected = match alg {
                KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => algorithm::ECDSA,
                KeyAlgorithm::Ed25519 => algorithm::EDDSA,
                _ => algorithm::RSA,
            };
            assert_eq!(parsed.algorithm, expected);
        }
    }

    #[test]
    fn refusals_are_precise() {
        let e = |b: &[u8]| {
            IpsecKey::parse(b)
                .and_then(|k| k.to_public_key())
                .unwrap_err()
        };
        assert_eq!(e(&[]), IpsecKeyError::Truncated("header"));
        assert_eq!(e(&[1, 0]), IpsecKeyError::Truncated("header"));
        assert_eq!(e(&[1, 4, 2]), IpsecKeyError::UnknownGatewayType(4));
        assert_eq!(e(&[1, 1, 2, 1, 2]), IpsecKeyError::Truncated("gateway"));
        assert_eq!(e(&[1, 2, 2, 1]), IpsecKeyError::Truncated("gateway"));
        assert_eq!(e(&[1, 3, 2, 3, b'a']), IpsecKeyError::Truncated("gateway"));
        assert!(matches!(
            e(&[1, 3, 2, 0xc0, 0x0c]),
            IpsecKeyError::BadGatewayName(_)
        ));
        assert_eq!(e(&[1, 0, 0]), IpsecKeyError::NoKey);
        assert_eq!(e(&[1, 0, 2]), IpsecKeyError::NoKey);
        assert_eq!(e(&[1, 0, 1, 9, 9]), IpsecKeyError::UnsupportedAlgorithm(1));
        assert_eq!(e(&[1, 0, 7, 9]), IpsecKeyError::UnsupportedAlgorithm(7));
        assert_eq!(e(&[1, 0, 3, 4, 4]), IpsecKeyError::UnsupportedCurve(2));
        assert_eq!(
            e(&[[1, 0, 4].as_slice(), &[7; 57]].concat()),
            IpsecKeyError::Ed448
        );
        assert!(matches!(
            e(&[1, 0, 4, 1, 2, 3]),
            IpsecKeyError::MalformedKey { .. }
        ));
        assert!(matches!(
            e(&[1, 0, 2, 5, 1, 2]),
            IpsecKeyError::MalformedKey { .. }
        ));
        assert!(matches!(
            e(&[1, 0, 2, 1, 0, 9]),
            IpsecKeyError::MalformedKey { .. }
        ));
        // A P-256 "point" that is not on the curve is refused by the key
        // parser or at verification, never accepted silently as valid.
        let bogus = [[1, 0, 3].as_slice(), &[0xff; 64]].concat();
        if let Ok(k) = IpsecKey::parse(&bogus).unwrap().to_public_key() {
            assert!(k
                .verify(crate::SignatureScheme::EcdsaP256Sha256Der, b"m", &[0x30, 0])
                .is_err());
        }
    }

    #[test]
    fn gateway_names_with_odd_octets_round_trip() {
        let wire = [[1, 3, 4].as_slice(), b"\x03a.b\x02\\\x01\x00\x00", &[9; 32]].concat();
        let k = IpsecKey::parse(&wire).unwrap();
        assert_eq!(k.gateway, Gateway::Name("a\\.b.\\\\\\001.".into()));
        assert_eq!(k.to_rdata().unwrap(), wire);
        let root = IpsecKey::parse(&[1, 3, 4, 0]).unwrap();
        assert_eq!(root.gateway, Gateway::Name(".".into()));
        assert_eq!(root.to_rdata().unwrap(), [1, 3, 4, 0]);
    }

    /// Totality: random bytes (and random bytes behind valid headers) never
    /// panic, whatever the outcome.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(45);
        for i in 0..20_000 {
            let len = (rng.next_u32() % 200) as usize;
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            if i % 2 == 0 && len >= 3 {
                b[1] = (rng.next_u32() % 4) as u8;
                b[2] = 2 + (rng.next_u32() % 3) as u8;
            }
            if let Ok(k) = IpsecKey::parse(&b) {
                let _ = k.to_string();
                let _ = k.to_rdata();
                let _ = k.to_public_key();
            }
        }
    }
}
