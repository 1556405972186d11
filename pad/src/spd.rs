//! The Security Policy Database (RFC 4301 4.4.1): ordered entries with
//! selectors and an action (PROTECT with a minimum [`Protection`], BYPASS,
//! DISCARD), looked up by a packet's 5-tuple, first match wins.
//!
//! Also the quality of protection of a concrete child SA ([`SaQop`]) and the
//! two comparisons connection latching needs: whether an SA meets a minimum
//! ([`Protection::admits`]) and whether a requested protection meets or
//! exceeds what the SPD requires ([`Protection::meets_or_exceeds`], the
//! optional-protection check of draft-ietf-btns-connection-latching 3, R19).
//!
//! Invariants: no I/O; lookups are total.

use crate::alg::{Encr, Integ};
use crate::{IpRange, Mode};
use core::fmt;
use std::net::{IpAddr, SocketAddr};

/// A connection's 5-tuple seen from this host: protocol, local and remote
/// address and port (ports 0 for protocols without ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct FiveTuple {
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub proto: u8,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
}

impl FiveTuple {
    /// A 5-tuple.
    pub fn new(proto: u8, local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            proto,
            local,
            remote,
        }
    }

    /// The local 3-tuple (what a listener latches on).
    pub fn three(&self) -> ThreeTuple {
        ThreeTuple {
            proto: self.proto,
            local: self.local,
        }
    }
}

impl fmt::Display for FiveTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            proto_name(self.proto),
            self.local,
            self.remote
        )
    }
}

/// A listener's 3-tuple: protocol, local address and port. The unspecified
/// address (`0.0.0.0`, `::`) listens on every local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ThreeTuple {
    /// IP protocol number.
    pub proto: u8,
    /// Local address and port.
    pub local: SocketAddr,
}

impl ThreeTuple {
    /// A 3-tuple.
    pub fn new(proto: u8, local: SocketAddr) -> Self {
        Self { proto, local }
    }

    /// Whether a connection's 5-tuple falls under this listener.
    pub fn covers(&self, t: &FiveTuple) -> bool {
        self.proto == t.proto
            && self.local.port() == t.local.port()
            && (self.local.ip() == t.local.ip()
                || (self.local.ip().is_unspecified() && self.local.is_ipv4() == t.local.is_ipv4()))
    }
}

impl fmt::Display for ThreeTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", proto_name(self.proto), self.local)
    }
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        p => format!("proto{p}"),
    }
}

/// Parse a protocol name or number (`tcp`, `udp`, `icmp`, `any`, `6`).
pub fn parse_proto(s: &str) -> Option<u8> {
    match s.trim() {
        "any" => Some(0),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" | "ipv6-icmp" => Some(58),
        "sctp" => Some(132),
        n => n.parse().ok(),
    }
}

/// Security services of ESP (RFC 4303 3.2).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Services {
    /// Integrity (and data origin authentication) only: ESP with NULL
    /// encryption.
    IntegrityOnly,
    /// Confidentiality and integrity (an AEAD, or a cipher with an
    /// integrity algorithm). Exceeds [`Services::IntegrityOnly`].
    ConfidentialityAndIntegrity,
}

impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IntegrityOnly => "integrity_only",
            Self::ConfidentialityAndIntegrity => "confidentiality_and_integrity",
        })
    }
}

/// The quality of protection of one concrete child SA: what a latch latches
/// (R1) and compares for "equal quality of protection" (R12, R13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SaQop {
    /// Tunnel or transport mode.
    pub mode: Mode,
    /// Cipher (`None`: ESP with NULL encryption, integrity only).
    pub encr: Option<Encr>,
    /// Integrity algorithm (`None` with an AEAD).
    pub integ: Option<Integ>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Anti-replay window in packets (0: replay protection off).
    pub replay_window: u32,
}

impl SaQop {
    /// The services this SA gives.
    pub fn services(&self) -> Services {
        if self.encr.is_some() {
            Services::ConfidentialityAndIntegrity
        } else {
            Services::IntegrityOnly
        }
    }

    /// Key length in bits that counts for a minimum: the cipher's, or the
    /// integrity key's for integrity-only SAs.
    pub fn key_bits(&self) -> u16 {
        match (self.encr, self.integ) {
            (Some(e), _) => e.key_length_attr().unwrap_or(256),
            (None, Some(i)) => u16::try_from(i.key_len() * 8).unwrap_or(u16::MAX),
            (None, None) => 0,
        }
    }

    /// Whether anti-replay is on.
    pub fn replay_protection(&self) -> bool {
        self.replay_window > 0
    }
}

impl fmt::Display for SaQop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.encr, self.integ) {
            (Some(e), Some(i)) => write!(f, "{e}-{i}")?,
            (Some(e), None) => write!(f, "{e}")?,
            (None, Some(i)) => write!(f, "null-{i}")?,
            (None, None) => f.write_str("none")?,
        }
        write!(
            f,
            " {} {} replay-window {}",
            self.mode,
            if self.esn { "esn" } else { "noesn" },
            self.replay_window
        )
    }
}

/// Which requirement of a minimum protection is not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Shortfall {
    /// Integrity only where confidentiality is required.
    #[error("confidentiality required")]
    Services,
    /// A cipher outside the allowed list.
    #[error("cipher not allowed")]
    Cipher,
    /// An integrity algorithm outside the allowed list.
    #[error("integrity algorithm not allowed")]
    Integrity,
    /// A key shorter than the minimum.
    #[error("key too short")]
    KeyLength,
    /// No anti-replay where it is required.
    #[error("replay protection required")]
    ReplayProtection,
    /// Another mode than the one required.
    #[error("wrong mode")]
    Mode,
}

/// The minimum protection a PROTECT policy requires, or an application
/// requests (R3, R19).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Protection {
    /// Services required.
    pub services: Services,
    /// Allowed ciphers (empty: any latchkey speaks).
    pub encr: Vec<Encr>,
    /// Allowed integrity algorithms for non-AEAD ciphers (empty: any).
    pub integ: Vec<Integ>,
    /// Minimum key length in bits.
    pub min_key_bits: u16,
    /// Anti-replay required.
    pub replay_protection: bool,
    /// Required mode (`None`: either).
    pub mode: Option<Mode>,
}

impl Default for Protection {
    /// Confidentiality and integrity, any suite, 128-bit keys, anti-replay,
    /// either mode.
    fn default() -> Self {
        Self {
            services: Services::ConfidentialityAndIntegrity,
            encr: Vec::new(),
            integ: Vec::new(),
            min_key_bits: 128,
            replay_protection: true,
            mode: None,
        }
    }
}

fn subset<T: PartialEq>(inner: &[T], outer: &[T]) -> bool {
    outer.is_empty() || (!inner.is_empty() && inner.iter().all(|x| outer.contains(x)))
}

impl Protection {
    /// Whether an SA of quality `q` gives at least this protection.
    pub fn admits(&self, q: &SaQop) -> Result<(), Shortfall> {
        if q.services() < self.services {
            return Err(Shortfall::Services);
        }
        if let Some(e) = q.encr {
            if !self.encr.is_empty() && !self.encr.contains(&e) {
                return Err(Shortfall::Cipher);
            }
        }
        if let Some(i) = q.integ {
            if !self.integ.is_empty() && !self.integ.contains(&i) {
                return Err(Shortfall::Integrity);
            }
        }
        if q.key_bits() < self.min_key_bits {
            return Err(Shortfall::KeyLength);
        }
        if self.replay_protection && !q.replay_protection() {
            return Err(Shortfall::ReplayProtection);
        }
        if self.mode.is_some_and(|m| m != q.mode) {
            return Err(Shortfall::Mode);
        }
        Ok(())
    }

    /// Whether this (requested) protection meets or exceeds `min` (what the
    /// SPD requires): every SA this admits, `min` admits too.
    pub fn meets_or_exceeds(&self, min: &Self) -> Result<(), Shortfall> {
        if self.services < min.services {
            return Err(Shortfall::Services);
        }
        if !subset(&self.encr, &min.encr) {
            return Err(Shortfall::Cipher);
        }
        if !subset(&self.integ, &min.integ) {
            return Err(Shortfall::Integrity);
        }
        if self.min_key_bits < min.min_key_bits {
            return Err(Shortfall::KeyLength);
        }
        if min.replay_protection && !self.replay_protection {
            return Err(Shortfall::ReplayProtection);
        }
        if min.mode.is_some() && self.mode != min.mode {
            return Err(Shortfall::Mode);
        }
        Ok(())
    }
}

/// What the SPD does with matching traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpdAction {
    /// Protect with IPsec, with at least this protection.
    Protect(Protection),
    /// Pass in the clear.
    Bypass,
    /// Drop.
    Discard,
}

impl fmt::Display for SpdAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Protect(_) => "protect",
            Self::Bypass => "bypass",
            Self::Discard => "discard",
        })
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: Self = Self {
        start: 0,
        end: u16::MAX,
    };

    /// Whether `p` is inside.
    pub fn contains(&self, p: u16) -> bool {
        self.start <= p && p <= self.end
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self::ANY
    }
}

impl core::str::FromStr for PortRange {
    type Err = String;
    /// `443`, `1000-2000` or `any`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "any" {
            return Ok(Self::ANY);
        }
        let bad = || format!("bad port range {s:?} (expected PORT, LO-HI or any)");
        let (lo, hi) = s.split_once('-').unwrap_or((s, s));
        let start = lo.trim().parse().map_err(|_| bad())?;
        let end = hi.trim().parse().map_err(|_| bad())?;
        if start > end {
            return Err(bad());
        }
        Ok(Self { start, end })
    }
}

/// One SPD entry (RFC 4301 4.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdEntry {
    /// The entry's name, quoted in refusals.
    pub name: String,
    /// Local address ranges (empty: any).
    pub local: Vec<IpRange>,
    /// Remote address ranges (empty: any).
    pub remote: Vec<IpRange>,
    /// IP protocol (0: any).
    pub proto: u8,
    /// Local ports.
    pub local_ports: PortRange,
    /// Remote ports.
    pub remote_ports: PortRange,
    /// What to do.
    pub action: SpdAction,
}

fn in_ranges(rs: &[IpRange], a: IpAddr) -> bool {
    rs.is_empty() || rs.iter().any(|r| r.contains(a))
}

impl SpdEntry {
    /// An entry matching everything.
    pub fn any(name: impl Into<String>, action: SpdAction) -> Self {
        Self {
            name: name.into(),
            local: Vec::new(),
            remote: Vec::new(),
            proto: 0,
            local_ports: PortRange::ANY,
            remote_ports: PortRange::ANY,
            action,
        }
    }

    /// Whether a packet of this 5-tuple matches the selectors.
    pub fn matches(&self, t: &FiveTuple) -> bool {
        (self.proto == 0 || self.proto == t.proto)
            && in_ranges(&self.local, t.local.ip())
            && in_ranges(&self.remote, t.remote.ip())
            && self.local_ports.contains(t.local.port())
            && self.remote_ports.contains(t.remote.port())
    }

    /// Whether the selectors match the 3-tuple for every remote address and
    /// port (the entry that governs a listener as a whole).
    pub fn matches_listener(&self, t: &ThreeTuple) -> bool {
        (self.proto == 0 || self.proto == t.proto)
            && (self.local.is_empty() || in_ranges(&self.local, t.local.ip()))
            && self.local_ports.contains(t.local.port())
            && (self.remote.is_empty()
                || self
                    .remote
                    .iter()
                    .any(|r| *r == IpRange::any(t.local.is_ipv4())))
            && self.remote_ports == PortRange::ANY
    }
}

/// The Security Policy Database: ordered entries, first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spd {
    entries: Vec<SpdEntry>,
}

impl Spd {
    /// An SPD of these entries, in order.
    pub fn new(entries: Vec<SpdEntry>) -> Self {
        Self { entries }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[SpdEntry] {
        &self.entries
    }

    /// The first entry matching a 5-tuple. `None` means no policy: callers
    /// treat it as DISCARD (RFC 4301 4.4.1: the SPD must decide every
    /// packet).
    pub fn lookup(&self, t: &FiveTuple) -> Option<&SpdEntry> {
        self.entries.iter().find(|e| e.matches(t))
    }

    /// The first entry governing a listener's 3-tuple for any remote peer.
    pub fn lookup_listener(&self, t: &ThreeTuple) -> Option<&SpdEntry> {
        self.entries.iter().find(|e| e.matches_listener(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five(s: &str) -> FiveTuple {
        let (l, r) = s.split_once(' ').unwrap();
        FiveTuple::new(6, l.parse().unwrap(), r.parse().unwrap())
    }

    fn qop(encr: Option<Encr>, integ: Option<Integ>) -> SaQop {
        SaQop {
            mode: Mode::Transport,
            encr,
            integ,
            esn: false,
            replay_window: 64,
        }
    }

    #[test]
    fn first_match_wins() {
        let mut web = SpdEntry::any("web", SpdAction::Bypass);
        web.local_ports = "443".parse().unwrap();
        web.proto = 6;
        let spd = Spd::new(vec![
            web,
            SpdEntry::any("all", SpdAction::Protect(Protection::default())),
        ]);
        assert_eq!(
            spd.lookup(&five("10.0.0.1:443 10.0.0.2:5000"))
                .unwrap()
                .name,
            "web"
        );
        assert_eq!(
            spd.lookup(&five("10.0.0.1:80 10.0.0.2:5000")).unwrap().name,
            "all"
        );
        assert_eq!(
            Spd::default().lookup(&five("10.0.0.1:80 10.0.0.2:5000")),
            None
        );
        let l = ThreeTuple::new(6, "0.0.0.0:443".parse().unwrap());
        assert_eq!(spd.lookup_listener(&l).unwrap().name, "web");
        assert!(l.covers(&five("10.0.0.1:443 10.0.0.2:5000")));
        assert!(!l.covers(&five("10.0.0.1:444 10.0.0.2:5000")));
    }

    #[test]
    fn protection_admits_and_exceeds() {
        let min = Protection::default();
        assert_eq!(min.admits(&qop(Some(Encr::AesGcm16_128), None)), Ok(()));
        assert_eq!(
            min.admits(&qop(None, Some(Integ::HmacSha256_128))),
            Err(Shortfall::Services)
        );
        let mut strict = min.clone();
        strict.min_key_bits = 256;
        assert_eq!(
            strict.admits(&qop(Some(Encr::AesGcm16_128), None)),
            Err(Shortfall::KeyLength)
        );
        assert_eq!(
            strict.admits(&qop(Some(Encr::ChaCha20Poly1305), None)),
            Ok(())
        );
        assert_eq!(strict.meets_or_exceeds(&min), Ok(()));
        assert_eq!(min.meets_or_exceeds(&strict), Err(Shortfall::KeyLength));
        let mut gcm = min.clone();
        gcm.encr = vec![Encr::AesGcm16_256];
        assert_eq!(min.meets_or_exceeds(&gcm), Err(Shortfall::Cipher));
        assert_eq!(gcm.meets_or_exceeds(&min), Ok(()));
        let mut tunnel = min.clone();
        tunnel.mode = Some(Mode::Tunnel);
        assert_eq!(min.meets_or_exceeds(&tunnel), Err(Shortfall::Mode));
        let mut norep = qop(Some(Encr::AesGcm16_128), None);
        norep.replay_window = 0;
        assert_eq!(min.admits(&norep), Err(Shortfall::ReplayProtection));
    }
}
