//! Header fields of the IP packets the TUN datapath carries: what the OS
//! stack writes into the device (outbound) and what comes out of ESP for it
//! (inbound).
//!
//! Unlike `esp::inner::parse` no checksum is verified (the OS stack checks
//! what it receives, and a packet it sends is its own business): only the
//! fields the SPD/SAD lookup (RFC 4301 4.4.1 selectors), the latch checks
//! (5-tuples) and the flow watcher (TCP flags, R18) need. Total: every
//! access is bounds-checked, no input makes [`parse`] panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use latch::FiveTuple;

/// IP protocol numbers the datapath looks into.
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;
const PROTO_UDPLITE: u8 = 136;

/// TCP header flags (RFC 9293 3.1).
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

/// At most this many IPv6 extension headers are walked.
const MAX_EXT_HEADERS: usize = 8;

/// Why a packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Shorter than its headers.
    Truncated,
    /// Neither IPv4 nor IPv6.
    BadVersion,
    /// A header length or total length inconsistent with the packet.
    BadLength,
}

impl ParseError {
    /// The drop-counter name.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Truncated => "TUN: truncated IP packet",
            Self::BadVersion => "TUN: not an IPv4/IPv6 packet",
            Self::BadLength => "TUN: bad IP header or total length",
        }
    }
}

/// The fields of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PacketInfo {
    /// 4 or 6.
    pub(crate) version: u8,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub(crate) proto: u8,
    /// Source address.
    pub(crate) src: IpAddr,
    /// Destination address.
    pub(crate) dst: IpAddr,
    /// Ports for TCP, UDP, SCTP and UDP-Lite (0 otherwise, and for
    /// non-initial fragments): the 5-tuple of latches.
    pub(crate) sport: u16,
    /// See `sport`.
    pub(crate) dport: u16,
    /// What traffic selectors' port ranges are compared with (source,
    /// destination): the ports; ICMP type and code as one 16-bit number
    /// (RFC 7296 3.13.1); 0 for protocols without ports; `None` for a
    /// non-initial fragment (RFC 4301 4.4.1.1 OPAQUE: only selectors with
    /// the full port range admit it).
    pub(crate) selector_ports: Option<(u16, u16)>,
    /// TCP flags (0 for other protocols).
    pub(crate) tcp_flags: u8,
    /// Length of the IP packet from its header (what follows it in the
    /// buffer is not part of it).
    pub(crate) total_len: usize,
}

impl PacketInfo {
    /// The packet's connection as this host sees it when the packet leaves
    /// it (local = source).
    pub(crate) fn outbound_five(&self) -> FiveTuple {
        FiveTuple::new(
            self.proto,
            SocketAddr::new(self.src, self.sport),
            SocketAddr::new(self.dst, self.dport),
        )
    }

    /// The packet's connection as this host sees it when the packet
    /// arrives (local = destination).
    pub(crate) fn inbound_five(&self) -> FiveTuple {
        FiveTuple::new(
            self.proto,
            SocketAddr::new(self.dst, self.dport),
            SocketAddr::new(self.src, self.sport),
        )
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn arr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Parse the IP header(s) and the first octets of the upper-layer header.
pub(crate) fn parse(p: &[u8]) -> Result<PacketInfo, ParseError> {
    use ParseError::{BadLength, Truncated};
    let first = *p.first().ok_or(Truncated)?;
    let (version, proto, src, dst, header_len, total_len, fragment, initial) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if p.len() < 20 {
                return Err(Truncated);
            }
            if ihl < 20 || ihl > p.len() {
                return Err(BadLength);
            }
            let total = usize::from(be16(p, 2).ok_or(Truncated)?);
            if total < ihl || total > p.len() {
                return Err(BadLength);
            }
            let frag = be16(p, 6).ok_or(Truncated)?;
            let offset = frag & 0x1fff;
            let src: [u8; 4] = arr(p, 12).ok_or(Truncated)?;
            let dst: [u8; 4] = arr(p, 16).ok_or(Truncated)?;
            (
                4,
                *p.get(9).ok_or(Truncated)?,
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                ihl,
                total,
                frag & 0x2000 != 0 || offset != 0,
                offset == 0,
            )
        }
        6 => {
            if p.len() < 40 {
                return Err(Truncated);
            }
            let total = 40 + usize::from(be16(p, 4).ok_or(Truncated)?);
            if total > p.len() {
                return Err(BadLength);
            }
            let src: [u8; 16] = arr(p, 8).ok_or(Truncated)?;
            let dst: [u8; 16] = arr(p, 24).ok_or(Truncated)?;
            let mut nh = *p.get(6).ok_or(Truncated)?;
            let mut off = 40usize;
            let (mut fragment, mut initial) = (false, true);
            for walked in 0..=MAX_EXT_HEADERS {
                let len = match nh {
                    // Hop-by-Hop, Routing, Destination Options (RFC 8200 4).
                    0 | 43 | 60 => (usize::from(*p.get(off + 1).ok_or(BadLength)?) + 1) * 8,
                    // Fragment (RFC 8200 4.5).
                    44 => {
                        let fo = be16(p, off + 2).ok_or(BadLength)?;
                        fragment = true;
                        initial = fo >> 3 == 0;
                        8
                    }
                    // Authentication Header (RFC 4302 2.2).
                    51 => (usize::from(*p.get(off + 1).ok_or(BadLength)?) + 2) * 4,
                    _ => break,
                };
                if walked == MAX_EXT_HEADERS {
                    return Err(BadLength);
                }
                nh = *p.get(off).ok_or(BadLength)?;
                off += len;
                if off > total {
                    return Err(BadLength);
                }
                if !initial {
                    break;
                }
            }
            (
                6,
                nh,
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                off,
                total,
                fragment,
                initial,
            )
        }
        _ => return Err(ParseError::BadVersion),
    };
    let l4 = p.get(header_len..total_len).unwrap_or_default();
    let (mut sport, mut dport, mut tcp_flags) = (0, 0, 0);
    let selector_ports = if !initial {
        None
    } else {
        match proto {
            PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_UDPLITE => {
                match (be16(l4, 0), be16(l4, 2)) {
                    (Some(s), Some(d)) => {
                        (sport, dport) = (s, d);
                        if proto == PROTO_TCP {
                            tcp_flags = l4.get(13).copied().unwrap_or(0);
                        }
                        Some((s, d))
                    }
                    _ if fragment => None,
                    _ => return Err(Truncated),
                }
            }
            PROTO_ICMP | PROTO_ICMPV6 => match be16(l4, 0) {
                Some(tc) => Some((tc, tc)),
                None if fragment => None,
                None => return Err(Truncated),
            },
            _ => Some((0, 0)),
        }
    };
    Ok(PacketInfo {
        version,
        proto,
        src,
        dst,
        sport,
        dport,
        selector_ports,
        tcp_flags,
        total_len,
    })
}

/// Does a traffic selector admit a packet's protocol, address and
/// selector port (RFC 4301 4.4.1; `None`: OPAQUE, only the full range)?
pub(crate) fn ts_admits(
    ts: &pad::TrafficSelector,
    proto: u8,
    addr: IpAddr,
    port: Option<u16>,
) -> bool {
    (ts.ip_proto == 0 || ts.ip_proto == proto)
        && ts.addr.contains(addr)
        && match port {
            Some(p) => ts.start_port <= p && p <= ts.end_port,
            None => ts.start_port == 0 && ts.end_port == u16::MAX,
        }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = 20 + l4.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            proto,
            0,
            0,
        ];
        p.extend_from_slice(&[10, 98, 0, 1, 10, 99, 0, 1]);
        p.extend_from_slice(l4);
        p
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[12] = 0x50;
        h[13] = flags;
        h
    }

    #[test]
    fn tcp_syn_fields() {
        let p = v4(PROTO_TCP, &tcp(40000, 5001, TCP_SYN));
        let i = parse(&p).unwrap();
        assert_eq!(i.version, 4);
        assert_eq!(i.proto, PROTO_TCP);
        assert_eq!((i.sport, i.dport), (40000, 5001));
        assert_eq!(i.tcp_flags, TCP_SYN);
        assert_eq!(i.selector_ports, Some((40000, 5001)));
        assert_eq!(i.src, "10.98.0.1".parse::<IpAddr>().unwrap());
        let f = i.outbound_five();
        assert_eq!(f.local, "10.98.0.1:40000".parse().unwrap());
        assert_eq!(i.inbound_five().local, "10.99.0.1:5001".parse().unwrap());
    }

    #[test]
    fn icmp_selector_is_type_and_code() {
        let p = v4(PROTO_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]);
        let i = parse(&p).unwrap();
        assert_eq!((i.sport, i.dport), (0, 0));
        assert_eq!(i.selector_ports, Some((0x0800, 0x0800)));
    }

    #[test]
    fn non_initial_fragment_is_opaque() {
        let mut p = v4(PROTO_UDP, &[1, 2, 3, 4, 5, 6, 7, 8]);
        p[6] = 0x00;
        p[7] = 0x10; // offset 16 * 8
        let i = parse(&p).unwrap();
        assert_eq!(i.selector_ports, None);
        assert_eq!((i.sport, i.dport), (0, 0));
    }

    #[test]
    fn ipv6_with_extension_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend_from_slice(&[0xfd; 16]);
        p.extend_from_slice(&[0xfe; 16]);
        // Destination Options (8 octets) then UDP.
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
        let i = parse(&p).unwrap();
        assert_eq!(i.version, 6);
        assert_eq!(i.proto, PROTO_UDP);
        assert_eq!((i.sport, i.dport), (5000, 53));
        assert_eq!(i.total_len, 56);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(parse(&[]), Err(ParseError::Truncated));
        assert_eq!(parse(&[0x15; 30]), Err(ParseError::BadVersion));
        let mut p = v4(PROTO_TCP, &tcp(1, 2, 0));
        p[3] = 200; // total length beyond the buffer
        assert_eq!(parse(&p), Err(ParseError::BadLength));
        // TCP without room for its ports.
        assert_eq!(parse(&v4(PROTO_TCP, &[0, 1])), Err(ParseError::Truncated));
    }

    #[test]
    fn parse_is_total() {
        // Every prefix and every single-octet corruption of valid packets.
        let mut seeds = vec![
            v4(PROTO_TCP, &tcp(1, 2, TCP_SYN)),
            v4(PROTO_ICMP, &[8, 0, 0, 0]),
        ];
        let mut v6 = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        v6.extend_from_slice(&[1; 32]);
        v6.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0, 6, 255, 0, 0, 0, 0, 0, 0]);
        seeds.push(v6);
        for s in &seeds {
            for n in 0..=s.len() {
                let _ = parse(&s[..n]);
            }
            for i in 0..s.len() {
                for b in [0u8, 0x0f, 0x45, 0x60, 0xff] {
                    let mut c = s.clone();
                    c[i] = b;
                    let _ = parse(&c);
                }
            }
        }
    }
}
