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
use crate::{IpRange, Mode, TrafficSelector};
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

    /// RFC 4301 5.1, 5.2: may a packet of `t` (in the local/remote
    /// orientation, either direction) travel under an SA of quality `q`?
    /// Its entry must PROTECT with a protection `q` admits, or BYPASS (an
    /// SA that happens to cover a BYPASS flow gives more than the policy
    /// asks; this endpoint has no clear-text path). DISCARD, and no entry
    /// at all (RFC 4301 4.4.1: the SPD decides every packet), refuse it.
    pub fn admits_protected(&self, t: &FiveTuple, q: &SaQop) -> Result<(), SpdRefusal> {
        match self.lookup(t).map(|e| &e.action) {
            None => Err(SpdRefusal::NoEntry),
            Some(SpdAction::Discard) => Err(SpdRefusal::Discard),
            Some(SpdAction::Bypass) => Ok(()),
            Some(SpdAction::Protect(min)) => min.admits(q).map_err(SpdRefusal::Protection),
        }
    }

    /// Whether [`Spd::admits_protected`] admits every packet an SA with
    /// these selectors (TSi/TSr as local/remote) and quality may carry, so
    /// that its packets need no SPD lookup of their own. Conservative: for
    /// every pair of selectors, the first entry that touches their space
    /// must cover all of it and admit the SA; a space that several entries
    /// share gives false (its packets are then looked up one by one).
    pub fn admits_all_protected(
        &self,
        local: &[TrafficSelector],
        remote: &[TrafficSelector],
        q: &SaQop,
    ) -> bool {
        local.iter().all(|l| {
            remote.iter().all(|r| {
                let proto = match (l.ip_proto, r.ip_proto) {
                    (0, p) | (p, 0) => p,
                    (a, b) if a == b => a,
                    // No packet fits both: nothing to admit.
                    _ => return true,
                };
                let Some(e) = self.entries.iter().find(|e| e.touches(proto, l, r)) else {
                    return false;
                };
                e.covers(proto, l, r)
                    && match &e.action {
                        SpdAction::Protect(min) => min.admits(q).is_ok(),
                        SpdAction::Bypass => true,
                        SpdAction::Discard => false,
                    }
            })
        })
    }
}

/// Why the SPD refuses a packet under an SA ([`Spd::admits_protected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpdRefusal {
    /// No entry matches it: DISCARD (RFC 4301 4.4.1).
    NoEntry,
    /// Its entry DISCARDs it.
    Discard,
    /// Its entry asks for more protection than the SA gives.
    Protection(Shortfall),
}

impl SpdRefusal {
    /// A fixed text for drop counters.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoEntry => "SPD: no entry matches the packet (DISCARD)",
            Self::Discard => "SPD: DISCARD",
            Self::Protection(_) => "SPD: the SA is below the entry's protection",
        }
    }
}

impl fmt::Display for SpdRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protection(s) => write!(f, "{}: {s}", self.reason()),
            _ => f.write_str(self.reason()),
        }
    }
}

fn range_covers(outer: &[IpRange], inner: &IpRange) -> bool {
    outer.is_empty()
        || outer
            .iter()
            .any(|o| o.contains(inner.start) && o.contains(inner.end))
}

fn range_touches(outer: &[IpRange], inner: &IpRange) -> bool {
    outer.is_empty() || outer.iter().any(|o| o.intersect(inner).is_some())
}

impl SpdEntry {
    /// Whether some packet of protocol `proto` (0: any) from selector `l`
    /// to selector `r` matches this entry.
    fn touches(&self, proto: u8, l: &TrafficSelector, r: &TrafficSelector) -> bool {
        (self.proto == 0 || proto == 0 || self.proto == proto)
            && range_touches(&self.local, &l.addr)
            && range_touches(&self.remote, &r.addr)
            && self.local_ports.start <= l.end_port
            && l.start_port <= self.local_ports.end
            && self.remote_ports.start <= r.end_port
            && r.start_port <= self.remote_ports.end
    }

    /// Whether every such packet matches this entry.
    fn covers(&self, proto: u8, l: &TrafficSelector, r: &TrafficSelector) -> bool {
        (self.proto == 0 || self.proto == proto)
            && range_covers(&self.local, &l.addr)
            && range_covers(&self.remote, &r.addr)
            && self.local_ports.start <= l.start_port
            && l.end_port <= self.local_ports.end
            && self.remote_ports.start <= r.start_port
            && r.end_port <= self.remote_ports.end
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

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    #[test]
    fn protected_packets_follow_the_spd() {
        let gcm = qop(Some(Encr::AesGcm16_128), None);
        let mut telnet = SpdEntry::any("telnet", SpdAction::Discard);
        telnet.proto = 6;
        telnet.remote_ports = "23".parse().unwrap();
        let mut strong = SpdEntry::any(
            "strong",
            SpdAction::Protect(Protection {
                min_key_bits: 256,
                ..Protection::default()
            }),
        );
        strong.remote = vec![ts("10.9.0.0/16").addr];
        let mut lan = SpdEntry::any("lan", SpdAction::Protect(Protection::default()));
        lan.remote = vec![ts("10.0.0.0/8").addr];
        let spd = Spd::new(vec![telnet, strong, lan]);
        assert_eq!(
            spd.admits_protected(&five("10.0.0.1:5000 10.1.0.2:80"), &gcm),
            Ok(())
        );
        assert_eq!(
            spd.admits_protected(&five("10.0.0.1:5000 10.1.0.2:23"), &gcm),
            Err(SpdRefusal::Discard)
        );
        assert_eq!(
            spd.admits_protected(&five("10.0.0.1:5000 10.9.0.2:80"), &gcm),
            Err(SpdRefusal::Protection(Shortfall::KeyLength))
        );
        assert_eq!(
            spd.admits_protected(&five("10.0.0.1:5000 192.0.2.1:80"), &gcm),
            Err(SpdRefusal::NoEntry)
        );
        // Which SAs need no per-packet lookup: none that telnet touches,
        // none reaching into 10.9/16 or outside 10/8.
        let any = [ts("0.0.0.0/0")];
        assert!(!spd.admits_all_protected(&any, &[ts("10.1.0.0/16")], &gcm));
        assert!(spd.admits_all_protected(&any, &[ts("10.1.0.0/16[udp]")], &gcm));
        assert!(spd.admits_all_protected(&any, &[ts("10.1.0.0/16[tcp/80]")], &gcm));
        assert!(!spd.admits_all_protected(&any, &[ts("10.9.0.0/24[udp]")], &gcm));
        assert!(!spd.admits_all_protected(&any, &[ts("10.0.0.0/7[udp]")], &gcm));
        // A protocol no packet can have on both sides admits nothing.
        assert!(spd.admits_all_protected(&[ts("0.0.0.0/0[udp]")], &[ts("10.1.0.0/16[tcp]")], &gcm));
        // The default policy: one PROTECT entry for everything.
        let all = Spd::new(vec![SpdEntry::any(
            "default",
            SpdAction::Protect(Protection::default()),
        )]);
        assert!(all.admits_all_protected(&any, &any, &gcm));
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
