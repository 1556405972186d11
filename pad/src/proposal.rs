//! IKE and ESP proposals, written and read in strongSwan's syntax
//! (`aes128gcm16-prfsha256-x25519`, `aes128-sha256-modp2048`,
//! `aes256gcm16-x25519-esn`), with several proposals separated by commas.

use crate::alg::{DhGroup, Encr, Integ, Prf};
use core::fmt;

/// Why a proposal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// A token names no algorithm latchkey knows.
    #[error("unknown algorithm {token:?} in proposal {proposal:?}")]
    UnknownAlgorithm {
        /// The token.
        token: String,
        /// The proposal it was in.
        proposal: String,
    },
    /// A required transform type is missing.
    #[error("proposal {proposal:?} has no {what}")]
    Missing {
        /// What is missing ("encryption algorithm", ...).
        what: &'static str,
        /// The proposal.
        proposal: String,
    },
    /// AEAD and non-AEAD ciphers, or an AEAD with an integrity algorithm,
    /// in one proposal (RFC 5282 8, RFC 7296 3.3).
    #[error("proposal {proposal:?} mixes AEAD and non-AEAD algorithms; write them as two proposals separated by a comma")]
    MixedAead {
        /// The proposal.
        proposal: String,
    },
    /// The string holds no proposal at all.
    #[error("empty proposal list")]
    Empty,
}

/// One IKE SA proposal: every listed algorithm is acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IkeProposal {
    /// Encryption algorithms, in order of preference.
    pub encr: Vec<Encr>,
    /// PRFs, in order of preference.
    pub prf: Vec<Prf>,
    /// Integrity algorithms (empty for AEAD proposals).
    pub integ: Vec<Integ>,
    /// Key exchange groups, in order of preference.
    pub dh: Vec<DhGroup>,
}

/// One child SA (ESP) proposal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EspProposal {
    /// Encryption algorithms, in order of preference.
    pub encr: Vec<Encr>,
    /// Integrity algorithms (empty for AEAD proposals).
    pub integ: Vec<Integ>,
    /// Key exchange groups for PFS (empty: no PFS).
    pub dh: Vec<DhGroup>,
    /// Extended sequence numbers acceptable, in order of preference
    /// (`true` = ESN). Default: `[false]`, which strongSwan's userspace ESP
    /// requires.
    pub esn: Vec<bool>,
}

struct Tokens {
    encr: Vec<Encr>,
    prf: Vec<Prf>,
    integ: Vec<Integ>,
    dh: Vec<DhGroup>,
    esn: Vec<bool>,
}

fn tokens(p: &str) -> Result<Tokens, ProposalError> {
    let mut t = Tokens {
        encr: vec![],
        prf: vec![],
        integ: vec![],
        dh: vec![],
        esn: vec![],
    };
    for tok in p.split('-').map(str::trim) {
        if let Some(e) = Encr::from_name(tok) {
            t.encr.push(e);
        } else if let Some(x) = Prf::from_name(tok) {
            t.prf.push(x);
        } else if let Some(x) = Integ::from_name(tok) {
            t.integ.push(x);
        } else if let Some(x) = DhGroup::from_name(tok) {
            t.dh.push(x);
        } else if tok == "esn" {
            t.esn.push(true);
        } else if tok == "noesn" {
            t.esn.push(false);
        } else {
            return Err(ProposalError::UnknownAlgorithm {
                token: tok.to_owned(),
                proposal: p.to_owned(),
            });
        }
    }
    if t.encr.is_empty() {
        return Err(ProposalError::Missing {
            what: "encryption algorithm",
            proposal: p.to_owned(),
        });
    }
    let aead = t.encr.iter().filter(|e| e.is_aead()).count();
    if aead != 0 && (aead != t.encr.len() || !t.integ.is_empty()) {
        return Err(ProposalError::MixedAead {
            proposal: p.to_owned(),
        });
    }
    if aead == 0 && t.integ.is_empty() {
        return Err(ProposalError::Missing {
            what: "integrity algorithm (a CBC cipher needs one, e.g. aes128-sha256)",
            proposal: p.to_owned(),
        });
    }
    Ok(t)
}

fn split_list(s: &str) -> Result<Vec<&str>, ProposalError> {
    let v: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if v.is_empty() {
        return Err(ProposalError::Empty);
    }
    Ok(v)
}

impl IkeProposal {
    /// Parse one proposal. As in strongSwan, a non-AEAD proposal without a
    /// PRF takes the PRFs matching its integrity algorithms.
    pub fn parse(p: &str) -> Result<Self, ProposalError> {
        let t = tokens(p)?;
        let mut prf = t.prf;
        if prf.is_empty() {
            prf = t
                .integ
                .iter()
                .map(|i| match i {
                    Integ::HmacSha256_128 => Prf::HmacSha256,
                    Integ::HmacSha384_192 => Prf::HmacSha384,
                    Integ::HmacSha512_256 => Prf::HmacSha512,
                })
                .collect();
        }
        if prf.is_empty() {
            return Err(ProposalError::Missing {
                what: "PRF (e.g. prfsha256)",
                proposal: p.to_owned(),
            });
        }
        if t.dh.is_empty() {
            return Err(ProposalError::Missing {
                what: "key exchange group (e.g. x25519)",
                proposal: p.to_owned(),
            });
        }
        Ok(Self {
            encr: t.encr,
            prf,
            integ: t.integ,
            dh: t.dh,
        })
    }

    /// Parse a comma-separated list of proposals.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, ProposalError> {
        split_list(s)?.into_iter().map(Self::parse).collect()
    }

    /// latchkey's default IKE proposals: AEADs first, then AES-CBC with
    /// HMAC-SHA2 (RFC 8247 MUSTs included).
    pub fn defaults() -> Vec<Self> {
        Self::parse_list(
            "aes128gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp2048,\
             aes128-aes256-sha256-sha384-sha512-x25519-ecp256-ecp384-modp2048",
        )
        .unwrap_or_default()
    }
}

impl EspProposal {
    /// Parse one proposal.
    pub fn parse(p: &str) -> Result<Self, ProposalError> {
        let t = tokens(p)?;
        Ok(Self {
            encr: t.encr,
            integ: t.integ,
            dh: t.dh,
            esn: if t.esn.is_empty() { vec![false] } else { t.esn },
        })
    }

    /// Parse a comma-separated list of proposals.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, ProposalError> {
        split_list(s)?.into_iter().map(Self::parse).collect()
    }

    /// latchkey's default ESP proposals.
    pub fn defaults() -> Vec<Self> {
        Self::parse_list(
            "aes128gcm16-aes256gcm16-chacha20poly1305,aes128-aes256-sha256-sha384-sha512",
        )
        .unwrap_or_default()
    }
}

fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, first: &mut bool, v: &[T]) -> fmt::Result {
    for x in v {
        if !*first {
            f.write_str("-")?;
        }
        *first = false;
        write!(f, "{x}")?;
    }
    Ok(())
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        join(f, &mut first, &self.encr)?;
        join(f, &mut first, &self.integ)?;
        join(f, &mut first, &self.prf)?;
        join(f, &mut first, &self.dh)
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        join(f, &mut first, &self.encr)?;
        join(f, &mut first, &self.integ)?;
        join(f, &mut first, &self.dh)?;
        if self.esn != [false] {
            for e in &self.esn {
                write!(f, "-{}", if *e { "esn" } else { "noesn" })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strongswan_syntax() {
        let p = IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap();
        assert_eq!(p.encr, [Encr::AesGcm16_128]);
        assert_eq!(p.prf, [Prf::HmacSha256]);
        assert!(p.integ.is_empty());
        assert_eq!(p.dh, [DhGroup::X25519]);
        assert_eq!(p.to_string(), "aes128gcm16-prfsha256-x25519");

        let p = IkeProposal::parse("aes128-sha256-modp2048").unwrap();
        assert_eq!(p.prf, [Prf::HmacSha256]);
        assert_eq!(p.integ, [Integ::HmacSha256_128]);

        let e = EspProposal::parse("aes256gcm16-x25519-esn").unwrap();
        assert_eq!(e.dh, [DhGroup::X25519]);
        assert_eq!(e.esn, [true]);
        assert_eq!(e.to_string(), "aes256gcm16-x25519-esn");
        assert_eq!(EspProposal::parse("aes128gcm16").unwrap().esn, [false]);
    }

    #[test]
    fn refuses_bad_proposals() {
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-prfsha256-x9"),
            Err(ProposalError::UnknownAlgorithm { .. })
        ));
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-prfsha256"),
            Err(ProposalError::Missing { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes128gcm16-sha256"),
            Err(ProposalError::MixedAead { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes128"),
            Err(ProposalError::Missing { .. })
        ));
        assert_eq!(IkeProposal::parse_list(" , "), Err(ProposalError::Empty));
    }

    #[test]
    fn defaults_parse() {
        assert_eq!(IkeProposal::defaults().len(), 2);
        assert_eq!(EspProposal::defaults().len(), 2);
    }
}
