//! The Peer Authorization Database (RFC 4301 4.4.3), with the BTNS flag
//! (RFC 5386) and the latch-disable flag of connection latching (R14,
//! draft-ietf-btns-connection-latching-02 2.1).
//!
//! The PAD is an ordered list of [`PadEntry`]s; [`Pad::lookup`] returns the
//! first entry matching the asserted identity, the authentication method used
//! and (for raw keys) the key's SHA-256 fingerprint. An entry also carries the
//! child-SA authorization data: the address ranges a matching peer may assert
//! as its traffic selectors ([`PadEntry::may_assert`]).
//!
//! Invariants: no I/O; matching never panics on any identity bytes.

use crate::{Identity, IpRange, TrafficSelector};
use core::fmt;
use std::net::IpAddr;

/// SHA-256 fingerprint of a public key (of its DER SubjectPublicKeyInfo),
/// how BTNS and raw-public-key peers (RFC 7670) are identified. The hash is
/// computed by the caller (`certs`); `pad` only compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint(pub [u8; 32]);

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for KeyFingerprint {
    /// As 64 hex digits.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl core::str::FromStr for KeyFingerprint {
    type Err = PadError;
    /// 64 hex digits, optionally separated by `:`.
    fn from_str(s: &str) -> Result<Self, PadError> {
        let v = parse_hex(s).ok_or_else(|| PadError::BadFingerprint(s.to_owned()))?;
        <[u8; 32]>::try_from(v.as_slice())
            .map(Self)
            .map_err(|_| PadError::BadFingerprint(s.to_owned()))
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| *b != b':')
        .map(|b| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(
        digits
            .chunks(2)
            .map(|c| c.iter().fold(0u8, |a, d| (a << 4) | d))
            .collect(),
    )
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a PAD pattern or entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PadError {
    /// The identity pattern has no known `TYPE:` prefix.
    #[error("unknown identity pattern {0:?} (expected any, ip:, ipv4:, ipv6:, fqdn:, rfc822:, dn:, dn-der:, keyid: or pubkey-sha256:)")]
    UnknownPatternType(String),
    /// The value after the prefix does not parse.
    #[error("bad identity pattern {0:?}")]
    BadPattern(String),
    /// A key fingerprint is not 32 octets of hex.
    #[error("bad SHA-256 key fingerprint {0:?} (expected 64 hex digits)")]
    BadFingerprint(String),
}

/// A distinguished name in its string form, as relative distinguished names
/// in DER order (most significant first, strongSwan style:
/// `C=CH, O=Example, CN=gw`). An RDN value `*` matches any value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnPattern {
    rdns: Vec<(String, String)>,
}

impl DnPattern {
    /// Parse `TYPE=VALUE, TYPE=VALUE, ...` (types case-insensitive, `\,`
    /// escapes a comma in a value).
    pub fn parse(s: &str) -> Result<Self, PadError> {
        let bad = || PadError::BadPattern(format!("dn:{s}"));
        let mut rdns = Vec::new();
        let mut cur = String::new();
        let mut parts = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.push(chars.next().ok_or_else(bad)?),
                ',' => parts.push(core::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        parts.push(cur);
        for p in parts {
            let (t, v) = p.split_once('=').ok_or_else(bad)?;
            let (t, v) = (t.trim(), v.trim());
            if t.is_empty() {
                return Err(bad());
            }
            rdns.push((t.to_ascii_uppercase(), v.to_owned()));
        }
        Ok(Self { rdns })
    }

    /// Whether a DN given as (type, value) pairs in DER order matches.
    /// Values compare case-insensitively (RFC 4518 caseIgnoreMatch).
    pub fn matches_rdns(&self, rdns: &[(String, String)]) -> bool {
        self.rdns.len() == rdns.len()
            && self.rdns.iter().zip(rdns).all(|((pt, pv), (t, v))| {
                pt.eq_ignore_ascii_case(t) && (pv == "*" || pv.eq_ignore_ascii_case(v))
            })
    }
}

impl fmt::Display for DnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (t, v)) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}={}", v.replace(',', "\\,"))?;
        }
        Ok(())
    }
}

/// One DER TLV: (tag, contents, rest) (`crate::der::tlv`; lengths not
/// in their shortest form are read as they are).
fn der_tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    crate::der::tlv(d).map(|t| (t.tag, t.contents, t.rest))
}

fn oid_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x05] => "SERIALNUMBER".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "E".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        _ => format!("OID.{}", hex(oid)),
    }
}

/// Decode a DER `Name` (as carried in ID_DER_ASN1_DN) into (type, value)
/// pairs in DER order. `None` if it is not a well-formed Name of string
/// values. Multi-valued RDNs give one pair per value.
pub fn dn_rdns(der: &[u8]) -> Option<Vec<(String, String)>> {
    let (tag, mut seq, rest) = der_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    while !seq.is_empty() {
        let (tag, mut set, r) = der_tlv(seq)?;
        seq = r;
        if tag != 0x31 {
            return None;
        }
        while !set.is_empty() {
            let (tag, atv, r) = der_tlv(set)?;
            set = r;
            if tag != 0x30 {
                return None;
            }
            let (otag, oid, r) = der_tlv(atv)?;
            let (_vtag, val, r) = der_tlv(r)?;
            if otag != 0x06 || !r.is_empty() {
                return None;
            }
            let v = core::str::from_utf8(val).ok()?;
            out.push((oid_name(oid), v.to_owned()));
        }
    }
    Some(out)
}

/// How a PAD entry matches a peer's identity (RFC 4301 4.4.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdPattern {
    /// Any identity (`any`): the BTNS catch-all entry of RFC 5386.
    Any,
    /// An IPv4 or IPv6 address identity inside a range (`ip:10.0.0.0/24`,
    /// `ipv6:2001:db8::1`, `ip:10.0.0.1-10.0.0.9`).
    Ip(IpRange),
    /// An FQDN: exact (case-insensitive) or `*.example.com` (any name below
    /// the domain) or `*` (any FQDN).
    Fqdn(String),
    /// An RFC 822 address: exact, `*@example.com` (any user at the domain)
    /// or `*`.
    Rfc822(String),
    /// A distinguished name in string form (`dn:C=CH, O=Example, CN=*`).
    Dn(DnPattern),
    /// A distinguished name as exact DER octets (`dn-der:HEX`).
    DnDer(Vec<u8>),
    /// An exact ID_KEY_ID (`keyid:HEX`).
    KeyId(Vec<u8>),
    /// The SHA-256 fingerprint of the peer's public key
    /// (`pubkey-sha256:HEX`), whatever identity it asserts: raw public keys
    /// (RFC 7670) and BTNS peers.
    KeyFingerprint(KeyFingerprint),
}

fn wildcard_suffix(pattern: &str, value: &str, sep: char) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with(sep) => {
            value.len() > suffix.len()
                && value
                    .get(value.len() - suffix.len()..)
                    .is_some_and(|t| t.eq_ignore_ascii_case(suffix))
        }
        _ => pattern.eq_ignore_ascii_case(value),
    }
}

impl IdPattern {
    /// Whether a peer asserting `id`, holding the key with fingerprint `key`
    /// (if it proved one), matches.
    pub fn matches(&self, id: &Identity, key: Option<&KeyFingerprint>) -> bool {
        match (self, id) {
            (Self::Any, _) => true,
            (Self::KeyFingerprint(f), _) => key == Some(f),
            (Self::Ip(r), Identity::Ipv4(a)) => r.contains(IpAddr::V4(*a)),
            (Self::Ip(r), Identity::Ipv6(a)) => r.contains(IpAddr::V6(*a)),
            (Self::Fqdn(p), Identity::Fqdn(v)) => wildcard_suffix(p, v, '.'),
            (Self::Rfc822(p), Identity::Rfc822(v)) => wildcard_suffix(p, v, '@'),
            (Self::Dn(p), Identity::DerAsn1Dn(d)) => {
                dn_rdns(d).is_some_and(|rdns| p.matches_rdns(&rdns))
            }
            (Self::DnDer(p), Identity::DerAsn1Dn(d)) => p == d,
            (Self::KeyId(p), Identity::KeyId(d)) => p == d,
            _ => false,
        }
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Ip(r) if r.start == r.end => write!(f, "ip:{}", r.start),
            Self::Ip(r) => write!(f, "ip:{}-{}", r.start, r.end),
            Self::Fqdn(s) => write!(f, "fqdn:{s}"),
            Self::Rfc822(s) => write!(f, "rfc822:{s}"),
            Self::Dn(d) => write!(f, "dn:{d}"),
            Self::DnDer(d) => write!(f, "dn-der:{}", hex(d)),
            Self::KeyId(d) => write!(f, "keyid:{}", hex(d)),
            Self::KeyFingerprint(k) => write!(f, "pubkey-sha256:{k}"),
        }
    }
}

impl serde::Serialize for IdPattern {
    /// In its configuration syntax (`fqdn:*.example.com`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl core::str::FromStr for IdPattern {
    type Err = PadError;
    fn from_str(s: &str) -> Result<Self, PadError> {
        let s = s.trim();
        if s == "any" || s == "*" {
            return Ok(Self::Any);
        }
        let bad = || PadError::BadPattern(s.to_owned());
        let (kind, v) = s
            .split_once(':')
            .ok_or_else(|| PadError::UnknownPatternType(s.to_owned()))?;
        let v = v.trim();
        Ok(match kind.trim().to_ascii_lowercase().as_str() {
            k @ ("ip" | "ipv4" | "ipv6") => {
                let ts: TrafficSelector = v.parse().map_err(|_| bad())?;
                if ts != TrafficSelector::range(ts.addr)
                    || (k == "ipv4" && !ts.addr.is_ipv4())
                    || (k == "ipv6" && ts.addr.is_ipv4())
                {
                    return Err(bad());
                }
                Self::Ip(ts.addr)
            }
            "fqdn" if !v.is_empty() => Self::Fqdn(v.to_owned()),
            "rfc822" | "email" if !v.is_empty() => Self::Rfc822(v.to_owned()),
            "dn" => Self::Dn(DnPattern::parse(v)?),
            "dn-der" => Self::DnDer(parse_hex(v).ok_or_else(bad)?),
            "keyid" => Self::KeyId(parse_hex(v).ok_or_else(bad)?),
            "pubkey-sha256" => Self::KeyFingerprint(v.parse()?),
            "fqdn" | "rfc822" | "email" => return Err(bad()),
            _ => return Err(PadError::UnknownPatternType(s.to_owned())),
        })
    }
}

/// The authentication method a peer used, as the PAD sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthKind {
    /// Pre-shared key (RFC 7296 2.15).
    Psk,
    /// NULL authentication (RFC 7619): anonymous, BTNS only.
    Null,
    /// A certificate validated to a trust anchor (RFC 7296 3.6, RFC 7427).
    Certificate,
    /// A raw public key (RFC 7670): pinned by fingerprint, or BTNS.
    RawPublicKey,
}

impl From<crate::AuthMethod> for AuthKind {
    fn from(m: crate::AuthMethod) -> Self {
        match m {
            crate::AuthMethod::Psk => Self::Psk,
            crate::AuthMethod::Null => Self::Null,
            crate::AuthMethod::Certificate => Self::Certificate,
            crate::AuthMethod::RawPublicKey => Self::RawPublicKey,
        }
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Psk => "psk",
            Self::Null => "null",
            Self::Certificate => "certificate",
            Self::RawPublicKey => "raw_public_key",
        })
    }
}

/// An authentication method a PAD entry allows, with its data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PadAuth {
    /// Pre-shared key.
    Psk,
    /// NULL authentication (needs the entry's BTNS flag).
    Null,
    /// A certificate chaining to one of the named trust anchors.
    Certificate {
        /// Names of the trust anchors (resolved by `certs`).
        trust_anchors: Vec<String>,
    },
    /// A raw public key (pinned by a `pubkey-sha256:` pattern, or any key
    /// under the BTNS flag).
    RawPublicKey,
}

impl PadAuth {
    /// The method, without its data.
    pub fn kind(&self) -> AuthKind {
        match self {
            Self::Psk => AuthKind::Psk,
            Self::Null => AuthKind::Null,
            Self::Certificate { .. } => AuthKind::Certificate,
            Self::RawPublicKey => AuthKind::RawPublicKey,
        }
    }
}

/// One PAD entry (RFC 4301 4.4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PadEntry {
    /// The entry's name, quoted in errors and in latch refusals.
    pub name: String,
    /// Which identities match.
    pub id: IdPattern,
    /// Authentication methods allowed, with their data.
    pub auth: Vec<PadAuth>,
    /// Child-SA authorization data: the addresses the peer may assert in its
    /// traffic selectors (RFC 4301 4.4.3.2).
    pub child_sa: Vec<IpRange>,
    /// BTNS (RFC 5386): unauthenticated peers (NULL authentication, or any
    /// raw public key) are accepted under this entry.
    pub btns: bool,
    /// R14: connection latches may not be created on addresses that peers
    /// matching this entry may assert (traditional child-SA semantics).
    pub latch_disable: bool,
}

impl PadEntry {
    /// An entry with no methods, no addresses and no flags.
    pub fn new(name: impl Into<String>, id: IdPattern) -> Self {
        Self {
            name: name.into(),
            id,
            auth: Vec::new(),
            child_sa: Vec::new(),
            btns: false,
            latch_disable: false,
        }
    }

    /// Whether a peer authenticated by `kind` may use this entry. NULL
    /// authentication needs the BTNS flag; a raw key needs the BTNS flag or a
    /// pinned fingerprint.
    pub fn allows(&self, kind: AuthKind) -> bool {
        let listed = self.auth.iter().any(|a| a.kind() == kind);
        listed
            && match kind {
                AuthKind::Null => self.btns,
                AuthKind::RawPublicKey => {
                    self.btns || matches!(self.id, IdPattern::KeyFingerprint(_))
                }
                _ => true,
            }
    }

    /// Whether a peer under this entry is unauthenticated (BTNS) when it
    /// authenticates by `kind`.
    pub fn is_unauthenticated(&self, kind: AuthKind) -> bool {
        match kind {
            AuthKind::Null => true,
            AuthKind::RawPublicKey => !matches!(self.id, IdPattern::KeyFingerprint(_)),
            _ => false,
        }
    }

    /// The trust anchors a certificate must chain to under this entry.
    pub fn trust_anchors(&self) -> &[String] {
        self.auth
            .iter()
            .find_map(|a| match a {
                PadAuth::Certificate { trust_anchors } => Some(trust_anchors.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// Whether a matching peer may assert this traffic selector (its whole
    /// address range lies inside the child-SA authorization data).
    pub fn may_assert(&self, ts: &TrafficSelector) -> bool {
        self.child_sa.iter().any(|r| r.covers(&ts.addr))
    }

    /// Whether a matching peer may assert this address.
    pub fn may_assert_addr(&self, a: IpAddr) -> bool {
        self.child_sa.iter().any(|r| r.contains(a))
    }
}

/// The Peer Authorization Database: ordered entries, first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pad {
    entries: Vec<PadEntry>,
}

impl Pad {
    /// A PAD of these entries, in order.
    pub fn new(entries: Vec<PadEntry>) -> Self {
        Self { entries }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[PadEntry] {
        &self.entries
    }

    /// An entry by name.
    pub fn entry(&self, name: &str) -> Option<&PadEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The first entry matching a peer that asserted `id`, authenticated by
    /// `kind`, with a public key of fingerprint `key` (raw keys, BTNS,
    /// certificates), RFC 4301 4.4.3.
    pub fn lookup(
        &self,
        id: &Identity,
        kind: AuthKind,
        key: Option<&KeyFingerprint>,
    ) -> Option<&PadEntry> {
        self.entries
            .iter()
            .find(|e| e.id.matches(id, key) && e.allows(kind))
    }

    /// Whether the peer of `entry` may assert `ts` (child-SA authorization).
    pub fn may_assert(&self, entry: &PadEntry, ts: &TrafficSelector) -> bool {
        entry.may_assert(ts)
    }

    /// R14: the first entry flagged latch-disable whose peers may assert
    /// `remote`, if any.
    pub fn latch_disabled_for(&self, remote: IpAddr) -> Option<&PadEntry> {
        self.entries
            .iter()
            .find(|e| e.latch_disable && e.may_assert_addr(remote))
    }

    /// Whether any entry's peers may assert `remote`.
    pub fn anyone_may_assert(&self, remote: IpAddr) -> bool {
        self.entries.iter().any(|e| e.may_assert_addr(remote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pat(s: &str) -> IdPattern {
        s.parse().unwrap()
    }

    /// DER of C=CH, O=Example, CN=gw.
    const DN: &[u8] = &[
        0x30, 0x2e, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'C', b'H',
        0x31, 0x10, 0x30, 0x0e, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x07, b'E', b'x', b'a', b'm',
        b'p', b'l', b'e', 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x04, b'g',
        b'w', b'.', b'x',
    ];

    #[test]
    fn patterns_match_by_type() {
        let fq = Identity::Fqdn("gw.Example.com".into());
        assert!(pat("fqdn:gw.example.com").matches(&fq, None));
        assert!(pat("fqdn:*.example.com").matches(&fq, None));
        assert!(!pat("fqdn:*.example.com").matches(&Identity::Fqdn("example.com".into()), None));
        assert!(!pat("fqdn:*.example.com").matches(&Identity::Fqdn("badexample.com".into()), None));
        assert!(pat("fqdn:*").matches(&fq, None));
        assert!(!pat("fqdn:*").matches(&Identity::Rfc822("a@b".into()), None));
        let mail = Identity::Rfc822("alice@example.com".into());
        assert!(pat("rfc822:*@example.com").matches(&mail, None));
        assert!(!pat("rfc822:*@example.org").matches(&mail, None));
        let v4 = Identity::Ipv4(Ipv4Addr::new(10, 0, 0, 7));
        assert!(pat("ip:10.0.0.0/24").matches(&v4, None));
        assert!(pat("ipv4:10.0.0.1-10.0.0.9").matches(&v4, None));
        assert!(!pat("ip:10.0.1.0/24").matches(&v4, None));
        assert!(!pat("ipv6:::/0").matches(&v4, None));
        assert!(pat("keyid:0102").matches(&Identity::KeyId(vec![1, 2]), None));
        assert!(pat("any").matches(&Identity::Null, None));
        let fp = KeyFingerprint([7; 32]);
        let p = IdPattern::KeyFingerprint(fp);
        assert_eq!(p.to_string().parse::<IdPattern>().unwrap(), p);
        assert!(p.matches(&Identity::Null, Some(&fp)));
        assert!(!p.matches(&Identity::Null, Some(&KeyFingerprint([8; 32]))));
        assert!(!p.matches(&Identity::Null, None));
    }

    #[test]
    fn dn_patterns_match_der() {
        let id = Identity::DerAsn1Dn(DN.to_vec());
        assert_eq!(
            dn_rdns(DN).unwrap(),
            [
                ("C".into(), "CH".into()),
                ("O".into(), "Example".into()),
                ("CN".into(), "gw.x".into())
            ]
        );
        assert!(pat("dn:C=CH, O=Example, CN=gw.x").matches(&id, None));
        assert!(pat("dn:c=ch,o=example,cn=*").matches(&id, None));
        assert!(!pat("dn:C=CH, O=Other, CN=*").matches(&id, None));
        assert!(!pat("dn:C=CH, O=Example").matches(&id, None));
        assert!(pat(&format!("dn-der:{}", hex(DN))).matches(&id, None));
        // Truncated or garbage DER never matches and never panics.
        for n in 0..DN.len() {
            assert!(!pat("dn:C=CH, O=Example, CN=*")
                .matches(&Identity::DerAsn1Dn(DN[..n].to_vec()), None));
        }
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(matches!(
            "host:x".parse::<IdPattern>(),
            Err(PadError::UnknownPatternType(_))
        ));
        assert!(matches!(
            "ip:10.0.0.0/33".parse::<IdPattern>(),
            Err(PadError::BadPattern(_))
        ));
        assert!(matches!(
            "ipv4:::1".parse::<IdPattern>(),
            Err(PadError::BadPattern(_))
        ));
        assert!(matches!(
            "ip:10.0.0.1[tcp]".parse::<IdPattern>(),
            Err(PadError::BadPattern(_))
        ));
        assert!(matches!(
            "pubkey-sha256:abcd".parse::<IdPattern>(),
            Err(PadError::BadFingerprint(_))
        ));
        assert!(matches!(
            "dn:novalue".parse::<IdPattern>(),
            Err(PadError::BadPattern(_))
        ));
    }

    #[test]
    fn lookup_is_first_match_with_method() {
        let mut gw = PadEntry::new("gw", pat("fqdn:*.example.com"));
        gw.auth = vec![PadAuth::Certificate {
            trust_anchors: vec!["root".into()],
        }];
        gw.child_sa = vec![IpRange::prefix("10.1.0.0".parse().unwrap(), 16).unwrap()];
        let mut psk = PadEntry::new("psk", pat("fqdn:*.example.com"));
        psk.auth = vec![PadAuth::Psk];
        let mut btns = PadEntry::new("btns", IdPattern::Any);
        btns.auth = vec![PadAuth::Null, PadAuth::RawPublicKey];
        btns.btns = true;
        btns.child_sa = vec![IpRange::any(true)];
        let mut nobtns = PadEntry::new("nobtns", IdPattern::Any);
        nobtns.auth = vec![PadAuth::Null, PadAuth::RawPublicKey];
        let pad = Pad::new(vec![gw, psk, nobtns, btns]);
        let id = Identity::Fqdn("a.example.com".into());
        assert_eq!(
            pad.lookup(&id, AuthKind::Certificate, None).unwrap().name,
            "gw"
        );
        assert_eq!(pad.lookup(&id, AuthKind::Psk, None).unwrap().name, "psk");
        // NULL auth and unpinned raw keys need the BTNS flag.
        assert_eq!(pad.lookup(&id, AuthKind::Null, None).unwrap().name, "btns");
        let e = pad
            .lookup(
                &Identity::Null,
                AuthKind::RawPublicKey,
                Some(&KeyFingerprint([1; 32])),
            )
            .unwrap();
        assert_eq!(e.name, "btns");
        assert!(e.is_unauthenticated(AuthKind::RawPublicKey));
        assert_eq!(pad.entries()[0].trust_anchors(), ["root".to_owned()]);
        let ts: TrafficSelector = "10.1.2.0/24".parse().unwrap();
        assert!(pad.may_assert(&pad.entries()[0], &ts));
        assert!(!pad.may_assert(&pad.entries()[0], &"10.2.0.0/24".parse().unwrap()));
    }
}
