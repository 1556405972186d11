//! Inner IPv4/IPv6 packets: building UDP packets and parsing headers.
//!
//! A userspace endpoint has no kernel stack behind its tunnel, so it builds
//! the inner packets it sends ([`build_udp`]) and parses those it receives
//! ([`parse`]), which is also how it extracts the 5-tuple of a packet for
//! latching. Every access is bounds-checked: no input makes these functions
//! panic.

use core::ops::Range;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Hop limit / TTL of the packets [`build_udp`] makes.
pub const TTL: u8 = 64;

const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;
const PROTO_UDPLITE: u8 = 136;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
/// At most this many IPv6 extension headers are walked.
const MAX_EXT_HEADERS: usize = 8;

/// Why an inner packet could not be built or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InnerError {
    /// Shorter than its headers.
    #[error("inner packet truncated")]
    Truncated,
    /// IP version is neither 4 nor 6.
    #[error("IP version is not 4 or 6")]
    BadVersion,
    /// IPv4 IHL below 5 or beyond the packet, or a malformed IPv6
    /// extension header chain.
    #[error("bad IP header length")]
    BadHeaderLength,
    /// Total (payload) length beyond the packet or below the header.
    #[error("bad IP total length")]
    BadTotalLength,
    /// IPv4 header checksum mismatch.
    #[error("bad IPv4 header checksum")]
    BadHeaderChecksum,
    /// UDP length field inconsistent with the IP packet.
    #[error("bad UDP length")]
    BadUdpLength,
    /// UDP checksum mismatch (or zero over IPv6, RFC 8200 8.1).
    #[error("bad UDP checksum")]
    BadUdpChecksum,
    /// Source and destination are of different families.
    #[error("source and destination address families differ")]
    FamilyMismatch,
    /// The output buffer is too small.
    #[error("buffer too small: {needed} octets needed")]
    BufferTooSmall {
        /// Octets needed.
        needed: usize,
    },
    /// The packet would exceed 65535 octets.
    #[error("packet too large")]
    TooLarge,
}

/// A parsed inner packet (offsets are into the slice given to [`parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InnerPacket {
    /// 4 or 6.
    pub version: u8,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port for TCP, UDP, SCTP and UDP-Lite; 0 otherwise.
    pub src_port: u16,
    /// Destination port for TCP, UDP, SCTP and UDP-Lite; 0 otherwise.
    pub dst_port: u16,
    /// Length of the IP header including IPv6 extension headers: the
    /// upper-layer header starts here.
    pub header_len: usize,
    /// Length of the IP packet from its header (octets after it, such as
    /// TFC padding, are not part of the packet).
    pub total_len: usize,
    /// A fragment (IPv4 MF or offset, IPv6 Fragment header): ports are those
    /// of the first fragment if this is it, 0 otherwise; UDP is not checked.
    pub fragment: bool,
    /// Range of the UDP payload, for an unfragmented UDP packet whose length
    /// and checksum were verified.
    pub udp_payload_range: Option<Range<usize>>,
}

impl InnerPacket {
    /// The UDP payload, given the same packet that was parsed.
    pub fn udp_payload<'p>(&self, packet: &'p [u8]) -> Option<&'p [u8]> {
        packet.get(self.udp_payload_range.clone()?)
    }

    /// Source address and port.
    pub fn src_socket(&self) -> SocketAddr {
        SocketAddr::new(self.src, self.src_port)
    }

    /// Destination address and port.
    pub fn dst_socket(&self) -> SocketAddr {
        SocketAddr::new(self.dst, self.dst_port)
    }
}

/// What a traffic selector's port fields are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4Selector {
    /// Source and destination ports.
    Ports(u16, u16),
    /// ICMP type (high octet) and code (low octet) (RFC 7296 3.13.1).
    Icmp(u16),
    /// A protocol without ports.
    None,
    /// A non-initial fragment: ports unknown (RFC 4301 4.4.1.1 OPAQUE).
    Opaque,
}

/// The header fields the datapath needs; no checksum is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    pub(crate) version: u8,
    pub(crate) protocol: u8,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) header_len: usize,
    pub(crate) total_len: usize,
    pub(crate) fragment: bool,
    pub(crate) initial: bool,
    pub(crate) l4: L4Selector,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn arr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Parse the IP header(s) of a packet.
// Inlined: the decapsulation path reads a few fields of the result, and a
// call returned the whole struct through memory (a store-forwarding stall
// in the profile of the tunnel-mode open).
#[inline(always)]
pub(crate) fn headers(p: &[u8]) -> Result<Headers, InnerError> {
    let first = *p.first().ok_or(InnerError::Truncated)?;
    let (version, protocol, src, dst, header_len, total_len, fragment, initial) = match first >> 4 {
        4 => {
            if p.len() < IPV4_HEADER_LEN {
                return Err(InnerError::Truncated);
            }
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < IPV4_HEADER_LEN || ihl > p.len() {
                return Err(InnerError::BadHeaderLength);
            }
            let total = usize::from(be16(p, 2).ok_or(InnerError::Truncated)?);
            if total < ihl || total > p.len() {
                return Err(InnerError::BadTotalLength);
            }
            let frag = be16(p, 6).ok_or(InnerError::Truncated)?;
            let more = frag & 0x2000 != 0;
            let offset = frag & 0x1fff;
            let proto = *p.get(9).ok_or(InnerError::Truncated)?;
            let src: [u8; 4] = arr(p, 12).ok_or(InnerError::Truncated)?;
            let dst: [u8; 4] = arr(p, 16).ok_or(InnerError::Truncated)?;
            (
                4,
                proto,
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                ihl,
                total,
                more || offset != 0,
                offset == 0,
            )
        }
        6 => {
            if p.len() < IPV6_HEADER_LEN {
                return Err(InnerError::Truncated);
            }
            let total = IPV6_HEADER_LEN + usize::from(be16(p, 4).ok_or(InnerError::Truncated)?);
            if total > p.len() {
                return Err(InnerError::BadTotalLength);
            }
            let src: [u8; 16] = arr(p, 8).ok_or(InnerError::Truncated)?;
            let dst: [u8; 16] = arr(p, 24).ok_or(InnerError::Truncated)?;
            let mut nh = *p.get(6).ok_or(InnerError::Truncated)?;
            let mut off = IPV6_HEADER_LEN;
            let mut fragment = false;
            let mut initial = true;
            let mut walked = 0;
            loop {
                let len = match nh {
                    // Hop-by-Hop, Routing, Destination Options.
                    0 | 43 | 60 => {
                        (usize::from(*p.get(off + 1).ok_or(InnerError::BadHeaderLength)?) + 1) * 8
                    }
                    // Fragment.
                    44 => {
                        let fo = be16(p, off + 2).ok_or(InnerError::BadHeaderLength)?;
                        fragment = true;
                        initial = fo >> 3 == 0;
                        8
                    }
                    // Authentication Header.
                    51 => {
                        (usize::from(*p.get(off + 1).ok_or(InnerError::BadHeaderLength)?) + 2) * 4
                    }
                    _ => break,
                };
                walked += 1;
                if walked > MAX_EXT_HEADERS {
                    return Err(InnerError::BadHeaderLength);
                }
                nh = *p.get(off).ok_or(InnerError::BadHeaderLength)?;
                off += len;
                if off > total {
                    return Err(InnerError::BadHeaderLength);
                }
                if !initial {
                    // The rest of a non-initial fragment is opaque.
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
        _ => return Err(InnerError::BadVersion),
    };
    let l4 = p.get(header_len..total_len).unwrap_or_default();
    let l4 = if !initial {
        L4Selector::Opaque
    } else {
        match protocol {
            PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_UDPLITE => {
                match (be16(l4, 0), be16(l4, 2)) {
                    (Some(s), Some(d)) => L4Selector::Ports(s, d),
                    _ if fragment => L4Selector::Opaque,
                    _ => return Err(InnerError::Truncated),
                }
            }
            PROTO_ICMP | PROTO_ICMPV6 => match be16(l4, 0) {
                Some(tc) => L4Selector::Icmp(tc),
                None if fragment => L4Selector::Opaque,
                None => return Err(InnerError::Truncated),
            },
            _ => L4Selector::None,
        }
    };
    Ok(Headers {
        version,
        protocol,
        src,
        dst,
        header_len,
        total_len,
        fragment,
        initial,
        l4,
    })
}

/// What the inbound selector check (RFC 4301 5.2) compares of an inner
/// packet: its family, protocol, addresses as `pad::addr_to_u128` numbers,
/// and its ports (or ICMP type/code), plus its length from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SelectorKey {
    pub(crate) v4: bool,
    pub(crate) protocol: u8,
    pub(crate) src: u128,
    pub(crate) dst: u128,
    pub(crate) total_len: usize,
    pub(crate) l4: L4Selector,
}

impl SelectorKey {
    fn from_headers(h: &Headers) -> Self {
        Self {
            v4: h.version == 4,
            protocol: h.protocol,
            src: pad::addr_to_u128(h.src),
            dst: pad::addr_to_u128(h.dst),
            total_len: h.total_len,
            l4: h.l4,
        }
    }
}

/// [`headers`] reduced to a [`SelectorKey`], with a fast path for the
/// common inner packet, IPv4 without options (first octet 0x45), that reads
/// the fixed 20-octet header once and builds no `IpAddr`. Every other packet
/// (IPv4 with options, IPv6, anything malformed) goes through [`headers`].
/// Both give the same key or the same error for every input (tested below).
#[inline(always)]
pub(crate) fn selector_key(p: &[u8]) -> Result<SelectorKey, InnerError> {
    let Some((h, rest)) = p.split_first_chunk::<IPV4_HEADER_LEN>() else {
        return headers(p).map(|h| SelectorKey::from_headers(&h));
    };
    if h[0] != 0x45 {
        return headers(p).map(|h| SelectorKey::from_headers(&h));
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total < IPV4_HEADER_LEN || total > p.len() {
        return Err(InnerError::BadTotalLength);
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let offset = frag & 0x1fff;
    let fragment = frag & 0x2000 != 0 || offset != 0;
    let protocol = h[9];
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    // The upper-layer octets within the packet's own length.
    let l4 = rest.get(..total - IPV4_HEADER_LEN).unwrap_or_default();
    let l4 = if offset != 0 {
        L4Selector::Opaque
    } else {
        match protocol {
            PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_UDPLITE => match l4.first_chunk::<4>() {
                Some(&[a, b, c, d]) => {
                    L4Selector::Ports(u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))
                }
                None if fragment => L4Selector::Opaque,
                None => return Err(InnerError::Truncated),
            },
            PROTO_ICMP | PROTO_ICMPV6 => match l4.first_chunk::<2>() {
                Some(&[a, b]) => L4Selector::Icmp(u16::from_be_bytes([a, b])),
                None if fragment => L4Selector::Opaque,
                None => return Err(InnerError::Truncated),
            },
            _ => L4Selector::None,
        }
    };
    Ok(SelectorKey {
        v4: true,
        protocol,
        src: u128::from(src),
        dst: u128::from(dst),
        total_len: total,
        l4,
    })
}

/// One's-complement sum of 16-bit words (RFC 1071), not yet folded.
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            acc += u64::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Sum of the UDP pseudo-header (RFC 768, RFC 8200 8.1).
fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum(&d.octets(), sum(&s.octets(), 0)),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum(&d.octets(), sum(&s.octets(), 0)),
        _ => 0,
    };
    acc + u64::from(proto) + len as u64
}

/// Parse an IPv4 or IPv6 packet, verifying the IPv4 header checksum and,
/// for unfragmented UDP, the UDP length and checksum.
pub fn parse(packet: &[u8]) -> Result<InnerPacket, InnerError> {
    let h = headers(packet)?;
    if h.version == 4 {
        let hdr = packet.get(..h.header_len).ok_or(InnerError::Truncated)?;
        if fold(sum(hdr, 0)) != 0xffff {
            return Err(InnerError::BadHeaderChecksum);
        }
    }
    let (src_port, dst_port) = match h.l4 {
        L4Selector::Ports(s, d) => (s, d),
        _ => (0, 0),
    };
    let mut udp_payload_range = None;
    if h.protocol == PROTO_UDP && !h.fragment {
        let l4 = packet
            .get(h.header_len..h.total_len)
            .ok_or(InnerError::Truncated)?;
        let ulen = usize::from(be16(l4, 4).ok_or(InnerError::BadUdpLength)?);
        if ulen < UDP_HEADER_LEN || ulen > l4.len() {
            return Err(InnerError::BadUdpLength);
        }
        let ck = be16(l4, 6).ok_or(InnerError::BadUdpLength)?;
        let segment = l4.get(..ulen).ok_or(InnerError::BadUdpLength)?;
        if ck == 0 {
            if h.version == 6 {
                return Err(InnerError::BadUdpChecksum);
            }
        } else if fold(sum(segment, pseudo(h.src, h.dst, PROTO_UDP, ulen))) != 0xffff {
            return Err(InnerError::BadUdpChecksum);
        }
        udp_payload_range = Some(h.header_len + UDP_HEADER_LEN..h.header_len + ulen);
    }
    Ok(InnerPacket {
        version: h.version,
        protocol: h.protocol,
        src: h.src,
        dst: h.dst,
        src_port,
        dst_port,
        header_len: h.header_len,
        total_len: h.total_len,
        fragment: h.fragment,
        udp_payload_range,
    })
}

/// Octets [`build_udp`] writes for a payload.
pub fn udp_packet_len(ipv4: bool, payload_len: usize) -> usize {
    let ip = if ipv4 {
        IPV4_HEADER_LEN
    } else {
        IPV6_HEADER_LEN
    };
    ip + UDP_HEADER_LEN + payload_len
}

/// Build an IPv4 or IPv6 UDP packet into `out` (TTL / hop limit 64, IPv4
/// with DF set and ID 0 as RFC 6864 allows for atomic datagrams), with
/// correct IPv4 header and UDP checksums. Returns its length.
pub fn build_udp(
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, InnerError> {
    let v4 = match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => true,
        (IpAddr::V6(_), IpAddr::V6(_)) => false,
        _ => return Err(InnerError::FamilyMismatch),
    };
    let total = udp_packet_len(v4, payload.len());
    let ulen = UDP_HEADER_LEN + payload.len();
    let ulen16 = u16::try_from(ulen).map_err(|_| InnerError::TooLarge)?;
    let pkt = out
        .get_mut(..total)
        .ok_or(InnerError::BufferTooSmall { needed: total })?;
    let ip_len = total - ulen;
    let (ip, udp) = pkt.split_at_mut(ip_len);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total16 = u16::try_from(total).map_err(|_| InnerError::TooLarge)?;
            let mut h = [0u8; IPV4_HEADER_LEN];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total16.to_be_bytes());
            h[6] = 0x40; // DF
            h[8] = TTL;
            h[9] = PROTO_UDP;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let ck = !fold(sum(&h, 0));
            h[10..12].copy_from_slice(&ck.to_be_bytes());
            ip.copy_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = [0u8; IPV6_HEADER_LEN];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&ulen16.to_be_bytes());
            h[6] = PROTO_UDP;
            h[7] = TTL;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            ip.copy_from_slice(&h);
        }
        _ => return Err(InnerError::FamilyMismatch),
    }
    let (uh, body) = udp.split_at_mut(UDP_HEADER_LEN);
    let mut u = [0u8; UDP_HEADER_LEN];
    u[0..2].copy_from_slice(&src.port().to_be_bytes());
    u[2..4].copy_from_slice(&dst.port().to_be_bytes());
    u[4..6].copy_from_slice(&ulen16.to_be_bytes());
    body.copy_from_slice(payload);
    let acc = sum(body, sum(&u, pseudo(src.ip(), dst.ip(), PROTO_UDP, ulen)));
    let ck = match !fold(acc) {
        0 => 0xffff, // RFC 768: a computed zero is sent as all ones
        c => c,
    };
    u[6..8].copy_from_slice(&ck.to_be_bytes());
    uh.copy_from_slice(&u);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// `selector_key`'s IPv4 fast path gives what `headers` gives (the
    /// same key or the same error) for every packet: built ones, each of
    /// their prefixes, and many with random header fields (fragment
    /// offsets, MF, protocols, total lengths, IHL) and lengths.
    #[test]
    fn selector_key_agrees_with_headers() {
        let slow = |p: &[u8]| headers(p).map(|h| SelectorKey::from_headers(&h));
        let mut buf = [0u8; 100];
        let n = build_udp(sa("10.0.0.1:1234"), sa("10.0.1.2:53"), b"hello", &mut buf).unwrap();
        let udp = buf[..n].to_vec();
        let k = selector_key(&udp).unwrap();
        assert_eq!(k.l4, L4Selector::Ports(1234, 53));
        assert_eq!(k.src, 0x0a00_0001);
        assert_eq!(k.dst, 0x0a00_0102);
        assert_eq!((k.v4, k.protocol, k.total_len), (true, 17, n));
        for cut in 0..=udp.len() {
            assert_eq!(selector_key(&udp[..cut]), slow(&udp[..cut]), "cut {cut}");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let protos = [1, 6, 17, 58, 132, 136, 47, 0];
        let (mut fast, mut errs) = (0, 0);
        for _ in 0..200_000 {
            let r = next();
            let len = (r % 48) as usize;
            let mut p = vec![0u8; len];
            for b in p.iter_mut() {
                *b = next() as u8;
            }
            if let Some(b) = p.first_mut() {
                *b = match r >> 8 & 7 {
                    0 => 0x46,
                    1 => 0x60,
                    _ => 0x45,
                };
            }
            if p.len() >= 20 {
                let total = match r >> 12 & 3 {
                    0 => (next() % 64) as u16,
                    _ => (20 + next() % (len as u64 - 19)) as u16,
                };
                p[2..4].copy_from_slice(&total.to_be_bytes());
                let frag: u16 = match r >> 16 & 3 {
                    0 => 0x4000,
                    1 => 0x2000,
                    2 => next() as u16 & 0x3fff,
                    _ => 0,
                };
                p[6..8].copy_from_slice(&frag.to_be_bytes());
                p[9] = protos[(r >> 20) as usize % protos.len()];
            }
            let got = selector_key(&p);
            assert_eq!(got, slow(&p), "packet {p:02x?}");
            fast += usize::from(p.first() == Some(&0x45) && got.is_ok());
            errs += usize::from(got.is_err());
        }
        // Both outcomes were exercised on the fast path and off it.
        assert!(fast > 10_000 && errs > 10_000, "fast {fast}, errors {errs}");
    }

    #[test]
    fn ipv4_udp_round_trip() {
        let mut buf = [0u8; 100];
        let n = build_udp(sa("10.0.0.1:1234"), sa("10.0.0.2:53"), b"hello", &mut buf).unwrap();
        assert_eq!(n, 33);
        let p = parse(&buf[..n]).unwrap();
        assert_eq!(p.version, 4);
        assert_eq!(p.protocol, 17);
        assert_eq!(p.src_socket(), sa("10.0.0.1:1234"));
        assert_eq!(p.dst_socket(), sa("10.0.0.2:53"));
        assert_eq!(p.udp_payload(&buf[..n]), Some(&b"hello"[..]));
        assert_eq!(buf[8], 64);
        // Trailing octets (TFC padding) are not part of the packet.
        let p2 = parse(&buf[..n + 7]).unwrap();
        assert_eq!(p2.total_len, n);
    }

    /// A known IPv4 header (Wikipedia's "IPv4 header checksum" example).
    #[test]
    fn ipv4_header_checksum_known_answer() {
        let h = hex::decode("450000730000400040110000c0a80001c0a800c7").unwrap();
        assert_eq!(!fold(sum(&h, 0)), 0xb861);
    }

    #[test]
    fn ipv6_udp_round_trip() {
        let mut buf = [0u8; 100];
        let n = build_udp(
            sa("[2001:db8::1]:500"),
            sa("[2001:db8::2]:4500"),
            b"xyz",
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, 51);
        let p = parse(&buf[..n]).unwrap();
        assert_eq!(p.version, 6);
        assert_eq!(p.src_port, 500);
        assert_eq!(p.dst_port, 4500);
        assert_eq!(p.udp_payload(&buf[..n]), Some(&b"xyz"[..]));
    }

    #[test]
    fn checks() {
        let mut buf = [0u8; 100];
        let n = build_udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), b"abcd", &mut buf).unwrap();
        let good = buf[..n].to_vec();
        let mut bad = good.clone();
        bad[8] = 63; // TTL changed, checksum not
        assert_eq!(parse(&bad), Err(InnerError::BadHeaderChecksum));
        let mut bad = good.clone();
        bad[n - 1] ^= 1;
        assert_eq!(parse(&bad), Err(InnerError::BadUdpChecksum));
        let mut bad = good.clone();
        bad[0] = 0x44;
        assert_eq!(parse(&bad), Err(InnerError::BadHeaderLength));
        assert_eq!(parse(&good[..n - 1]), Err(InnerError::BadTotalLength));
        assert_eq!(parse(&good[..10]), Err(InnerError::Truncated));
        assert_eq!(parse(&[0x50; 40]), Err(InnerError::BadVersion));
        assert_eq!(parse(&[]), Err(InnerError::Truncated));
        // Zero UDP checksum: allowed over IPv4, not over IPv6.
        let mut z = good;
        z[26] = 0;
        z[27] = 0;
        assert!(parse(&z).is_ok());
        let n6 = build_udp(sa("[::1]:1"), sa("[::2]:2"), b"abcd", &mut buf).unwrap();
        let mut z6 = buf[..n6].to_vec();
        z6[46] = 0;
        z6[47] = 0;
        assert_eq!(parse(&z6), Err(InnerError::BadUdpChecksum));
        assert_eq!(
            build_udp(sa("10.0.0.1:1"), sa("[::2]:2"), b"", &mut buf),
            Err(InnerError::FamilyMismatch)
        );
        assert_eq!(
            build_udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[0; 90], &mut buf),
            Err(InnerError::BufferTooSmall { needed: 118 })
        );
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        let mut buf = [0u8; 100];
        let n = build_udp(sa("[::1]:7"), sa("[::2]:9"), b"abcd", &mut buf).unwrap();
        // Insert an 8-octet Destination Options header before UDP.
        let mut p = buf[..40].to_vec();
        p[6] = 60;
        p[5] += 8;
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&buf[40..n]);
        let h = headers(&p).unwrap();
        assert_eq!(h.protocol, 17);
        assert_eq!(h.header_len, 48);
        assert_eq!(h.l4, L4Selector::Ports(7, 9));
        // A non-initial fragment: ports are opaque.
        let mut f = buf[..40].to_vec();
        f[6] = 44;
        f[5] = 16;
        f[4] = 0;
        f.extend_from_slice(&[17, 0, 0, 8, 0, 0, 0, 1]);
        f.extend_from_slice(&[0; 8]);
        let h = headers(&f).unwrap();
        assert!(h.fragment);
        assert_eq!(h.l4, L4Selector::Opaque);
        let parsed = parse(&f).unwrap();
        assert_eq!(parsed.udp_payload_range, None);
    }
}
