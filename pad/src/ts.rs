//! Traffic selectors (RFC 7296 3.13.1) and the set operations that
//! narrowing (RFC 7296 2.9) and latching need.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IpRange {
    /// First address.
    pub start: IpAddr,
    /// Last address (same family as `start`, not below it).
    pub end: IpAddr,
}

/// Why a traffic selector is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    /// Start and end address are of different families.
    #[error("traffic selector mixes IPv4 and IPv6")]
    MixedFamily,
    /// Start is above end.
    #[error("traffic selector range is empty (start above end)")]
    Inverted,
    /// The text form could not be parsed.
    #[error("cannot parse traffic selector {0:?} (expected ADDR, ADDR/PREFIX or ADDR-ADDR, optionally [PROTO/PORT])")]
    Syntax(String),
}

/// An address as an integer (IPv4 in the low 32 bits), for range
/// arithmetic.
pub fn addr_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`addr_to_u128`] for the given family (an IPv4 value
/// above 32 bits saturates).
pub fn addr_from_u128(v4: bool, x: u128) -> IpAddr {
    if v4 {
        // Values come from IPv4 addresses, so they fit in 32 bits.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(x).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(x))
    }
}

impl IpRange {
    /// A range, checked.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<Self, TsError> {
        if start.is_ipv4() != end.is_ipv4() {
            return Err(TsError::MixedFamily);
        }
        if addr_to_u128(start) > addr_to_u128(end) {
            return Err(TsError::Inverted);
        }
        Ok(Self { start, end })
    }

    /// One address.
    pub fn host(a: IpAddr) -> Self {
        Self { start: a, end: a }
    }

    /// Every address of a family.
    pub fn any(v4: bool) -> Self {
        if v4 {
            Self::host(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).with_end(IpAddr::V4(Ipv4Addr::BROADCAST))
        } else {
            Self::host(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
                .with_end(IpAddr::V6(Ipv6Addr::from(u128::MAX)))
        }
    }

    fn with_end(mut self, end: IpAddr) -> Self {
        self.end = end;
        self
    }

    /// A CIDR prefix.
    pub fn prefix(a: IpAddr, len: u8) -> Result<Self, TsError> {
        let bits: u32 = if a.is_ipv4() { 32 } else { 128 };
        if u32::from(len) > bits {
            return Err(TsError::Syntax(format!("{a}/{len}")));
        }
        let host_bits = bits - u32::from(len);
        let mask: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let x = addr_to_u128(a);
        Ok(Self {
            start: addr_from_u128(a.is_ipv4(), x & !mask),
            end: addr_from_u128(a.is_ipv4(), x | mask),
        })
    }

    /// True for IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.start.is_ipv4()
    }

    /// Whether the address is inside.
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.is_ipv4()
            && addr_to_u128(self.start) <= addr_to_u128(a)
            && addr_to_u128(a) <= addr_to_u128(self.end)
    }

    /// The common part, if any.
    pub fn intersect(&self, o: &Self) -> Option<Self> {
        if self.is_ipv4() != o.is_ipv4() {
            return None;
        }
        let s = addr_to_u128(self.start).max(addr_to_u128(o.start));
        let e = addr_to_u128(self.end).min(addr_to_u128(o.end));
        (s <= e).then(|| Self {
            start: addr_from_u128(self.is_ipv4(), s),
            end: addr_from_u128(self.is_ipv4(), e),
        })
    }

    /// Whether `o` lies wholly inside `self`.
    pub fn covers(&self, o: &Self) -> bool {
        self.intersect(o).as_ref() == Some(o)
    }

    /// The smallest list of prefixes (address, length) covering exactly
    /// this range, in address order: one for a subnet, at most two per
    /// address bit for any other range (routes and indexes are by prefix,
    /// selectors are ranges). Empty if the families differ or `start` is
    /// above `end`.
    pub fn prefixes(&self) -> Vec<(IpAddr, u8)> {
        let (s, e, bits, v4) = match (self.start, self.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => (
                u128::from(u32::from(s)),
                u128::from(u32::from(e)),
                32u32,
                true,
            ),
            (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128u32, false),
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut cur = s;
        while cur <= e {
            // The largest block aligned at `cur` that does not pass `end`.
            let mut size_log = if cur == 0 {
                bits
            } else {
                cur.trailing_zeros().min(bits)
            };
            while size_log > 0 {
                let last = if size_log >= 128 {
                    u128::MAX
                } else {
                    cur | ((1u128 << size_log) - 1)
                };
                if last <= e {
                    break;
                }
                size_log -= 1;
            }
            let addr = if v4 {
                IpAddr::V4(Ipv4Addr::from(u32::try_from(cur).unwrap_or(u32::MAX)))
            } else {
                IpAddr::V6(Ipv6Addr::from(cur))
            };
            out.push((addr, u8::try_from(bits - size_log).unwrap_or(0)));
            let step = if size_log >= 128 {
                return out;
            } else {
                1u128 << size_log
            };
            match cur.checked_add(step) {
                Some(n) => cur = n,
                None => break,
            }
        }
        out
    }
}

/// A list of traffic selectors as a child SA keeps it: one shared,
/// immutable allocation. A child SA's selectors are fixed when it is
/// negotiated and read by IKE, the latch table and the driver alike; each
/// holds a pointer to the same list instead of a copy of its own (a busy
/// SA held six `Vec`s of them: six allocations, about 430 octets).
pub type TsList = std::sync::Arc<[TrafficSelector]>;

/// A traffic selector: addresses, an IP protocol (0 = any) and a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TrafficSelector {
    /// IP protocol number, 0 for any.
    pub ip_proto: u8,
    /// First port (for ICMP: type/code packed as RFC 4301 4.4.1.1).
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// Address range.
    pub addr: IpRange,
}

impl TrafficSelector {
    /// TS_IPV4_ADDR_RANGE.
    pub const TS_IPV4_ADDR_RANGE: u8 = 7;
    /// TS_IPV6_ADDR_RANGE.
    pub const TS_IPV6_ADDR_RANGE: u8 = 8;

    /// Everything to and from one address range, any protocol and port.
    pub fn range(addr: IpRange) -> Self {
        Self {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            addr,
        }
    }

    /// Everything of one host.
    pub fn host(a: IpAddr) -> Self {
        Self::range(IpRange::host(a))
    }

    /// The TS type number (7 or 8).
    pub fn ts_type(&self) -> u8 {
        if self.addr.is_ipv4() {
            Self::TS_IPV4_ADDR_RANGE
        } else {
            Self::TS_IPV6_ADDR_RANGE
        }
    }

    /// Whether a packet with this protocol, address and port matches.
    pub fn matches(&self, proto: u8, addr: IpAddr, port: u16) -> bool {
        (self.ip_proto == 0 || self.ip_proto == proto)
            && self.addr.contains(addr)
            && self.start_port <= port
            && port <= self.end_port
    }

    /// The common part of two selectors, if any (RFC 7296 2.9 narrowing).
    pub fn intersect(&self, o: &Self) -> Option<Self> {
        let ip_proto = match (self.ip_proto, o.ip_proto) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let start_port = self.start_port.max(o.start_port);
        let end_port = self.end_port.min(o.end_port);
        if start_port > end_port {
            return None;
        }
        Some(Self {
            ip_proto,
            start_port,
            end_port,
            addr: self.addr.intersect(&o.addr)?,
        })
    }

    /// Whether `o` lies wholly inside `self`.
    pub fn covers(&self, o: &Self) -> bool {
        self.intersect(o).as_ref() == Some(o)
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.addr.start == self.addr.end {
            write!(f, "{}", self.addr.start)?;
        } else {
            write!(f, "{}-{}", self.addr.start, self.addr.end)?;
        }
        if self.ip_proto != 0 || self.start_port != 0 || self.end_port != u16::MAX {
            write!(f, "[{}/", self.ip_proto)?;
            if self.start_port == self.end_port {
                write!(f, "{}]", self.start_port)?;
            } else {
                write!(f, "{}-{}]", self.start_port, self.end_port)?;
            }
        }
        Ok(())
    }
}

impl core::str::FromStr for TrafficSelector {
    type Err = TsError;
    /// `10.0.0.0/24`, `10.0.0.1`, `10.0.0.1-10.0.0.9`, each optionally
    /// followed by `[PROTO]`, `[PROTO/PORT]` or `[PROTO/LO-HI]`.
    fn from_str(s: &str) -> Result<Self, TsError> {
        let syn = || TsError::Syntax(s.to_owned());
        let (addr, rest) = match s.find('[') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let range = if let Some((a, l)) = addr.split_once('/') {
            IpRange::prefix(
                a.trim().parse().map_err(|_| syn())?,
                l.trim().parse().map_err(|_| syn())?,
            )?
        } else if let Some((a, b)) = addr.split_once('-') {
            IpRange::new(
                a.trim().parse().map_err(|_| syn())?,
                b.trim().parse().map_err(|_| syn())?,
            )?
        } else {
            IpRange::host(addr.trim().parse().map_err(|_| syn())?)
        };
        let mut ts = Self::range(range);
        if let Some(r) = rest {
            let inner = r
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or_else(syn)?;
            let (proto, ports) = match inner.split_once('/') {
                Some((p, q)) => (p, Some(q)),
                None => (inner, None),
            };
            ts.ip_proto = match proto.trim() {
                "tcp" => 6,
                "udp" => 17,
                "icmp" => 1,
                "any" | "" => 0,
                p => p.parse().map_err(|_| syn())?,
            };
            if let Some(q) = ports {
                let (lo, hi) = q.split_once('-').unwrap_or((q, q));
                ts.start_port = lo.trim().parse().map_err(|_| syn())?;
                ts.end_port = hi.trim().parse().map_err(|_| syn())?;
                if ts.start_port > ts.end_port {
                    return Err(TsError::Inverted);
                }
            }
        }
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    fn p(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pr(start: IpAddr, end: IpAddr) -> Vec<(IpAddr, u8)> {
        IpRange { start, end }.prefixes()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(
            ts("10.0.0.0/24").addr.end,
            "10.0.0.255".parse::<IpAddr>().unwrap()
        );
        assert_eq!(ts("10.0.0.1[udp/500]").to_string(), "10.0.0.1[17/500]");
        assert_eq!(ts("::/0").addr, IpRange::any(false));
        assert_eq!(ts("0.0.0.0/0").addr, IpRange::any(true));
        assert!("10.0.0.9-10.0.0.1".parse::<TrafficSelector>().is_err());
        assert!("10.0.0.1-::1".parse::<TrafficSelector>().is_err());
        assert!("10.0.0.1/33".parse::<TrafficSelector>().is_err());
        assert!("nonsense".parse::<TrafficSelector>().is_err());
    }

    #[test]
    fn narrowing_intersects() {
        let wide = ts("10.0.0.0/16");
        let narrow = ts("10.0.1.0/24[tcp/80]");
        assert_eq!(wide.intersect(&narrow), Some(narrow));
        assert!(wide.covers(&narrow));
        assert!(!narrow.covers(&wide));
        assert_eq!(ts("10.0.0.0/24").intersect(&ts("10.0.1.0/24")), None);
        assert_eq!(
            ts("10.0.0.0/24[tcp]").intersect(&ts("10.0.0.0/24[udp]")),
            None
        );
        assert_eq!(ts("10.0.0.0/8").intersect(&ts("::/0")), None);
    }

    #[test]
    fn matches_packets() {
        let t = ts("10.0.0.0/24[udp/1000-2000]");
        assert!(t.matches(17, "10.0.0.7".parse().unwrap(), 1500));
        assert!(!t.matches(6, "10.0.0.7".parse().unwrap(), 1500));
        assert!(!t.matches(17, "10.0.1.7".parse().unwrap(), 1500));
        assert!(!t.matches(17, "10.0.0.7".parse().unwrap(), 999));
    }

    #[test]
    fn ranges_become_prefixes() {
        assert_eq!(
            pr(p("10.99.0.0"), p("10.99.0.255")),
            vec![(p("10.99.0.0"), 24)]
        );
        assert_eq!(pr(p("10.0.0.1"), p("10.0.0.1")), vec![(p("10.0.0.1"), 32)]);
        assert_eq!(
            pr(p("10.0.0.1"), p("10.0.0.6")),
            vec![
                (p("10.0.0.1"), 32),
                (p("10.0.0.2"), 31),
                (p("10.0.0.4"), 31),
                (p("10.0.0.6"), 32)
            ]
        );
        assert_eq!(
            pr(p("0.0.0.0"), p("255.255.255.255")),
            vec![(p("0.0.0.0"), 0)]
        );
        assert_eq!(
            pr(p("::"), p("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            vec![(p("::"), 0)]
        );
        assert_eq!(pr(p("fd00::"), p("fd00::ffff")), vec![(p("fd00::"), 112)]);
        assert!(pr(p("10.0.0.2"), p("10.0.0.1")).is_empty());
        assert!(pr(p("10.0.0.2"), p("::1")).is_empty());
        assert_eq!(
            pr(p("255.255.255.254"), p("255.255.255.255")),
            vec![(p("255.255.255.254"), 31)]
        );
    }
}
