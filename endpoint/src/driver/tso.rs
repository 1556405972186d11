//! Our own segmentation of TUN reads with offload on (TSO, and USO for
//! UDP): the OS stack hands the device one TCP packet of up to 64 KiB
//! (or one UDP "super-datagram") with a virtio-net header saying how to
//! cut it; here it is cut into the packets the wire carries, each written
//! straight where it is encapsulated (the ESP send buffer, after the ESP
//! header and IV), so that it is sealed in place.
//!
//! Before this, tun-rs cut every read into its own segment buffers (one
//! copy) and each segment was copied again into the ESP send buffer to be
//! sealed (a second copy). Now the payload is copied once, from the read
//! to where it is sealed.
//!
//! The cut follows Linux's own GSO (`tcp_gso_segment`, `inet_gso_segment`,
//! `ipv6_gso_segment`, `__udp_gso_segment`): every segment carries the
//! headers of the read with
//! - the IP length field of the segment, the IPv4 identification
//!   incremented per segment and the IPv4 header checksum recomputed;
//! - TCP: the sequence number advanced by the payload before it; FIN and
//!   PSH only on the last segment, CWR only on the first;
//! - UDP: the UDP length of the segment;
//! - the transport checksum computed over the segment (RFC 9293 3.1,
//!   RFC 768, RFC 8200 8.1: the pseudo-header with the segment's length;
//!   a UDP checksum that comes out 0 is sent as all ones).
//!
//! A read without segmentation whose checksum the stack left to the device
//! (`NEEDS_CSUM`) gets it completed here (RFC 1071), in place.
//!
//! Pure: no I/O. Every field of the virtio-net header and the packet is
//! checked before it is used; a read that does not hold together is
//! refused with the reason, for the driver to count.

use super::gro::{
    be16, be32, fold, sum, TCP, UDP, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_GSO_TCPV6,
    VNET_GSO_UDP_L4, VNET_LEN,
};

/// `VIRTIO_NET_HDR_GSO_NONE`.
const VNET_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_ECN`: the stack set ECN on the TCP packet (CWR
/// stays on the first segment only, as without it).
const VNET_GSO_ECN: u8 = 0x80;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// One read from the device, as the driver sends it on.
#[derive(Debug)]
pub enum Read<'a> {
    /// One packet, its checksum completed if the stack left that to us.
    One(&'a [u8]),
    /// A packet to cut into segments.
    Segments(Tso<'a>),
}

/// A TCP or UDP packet with segmentation left to the device, checked:
/// its segments are [`Tso::count`] packets of [`Tso::seg_len`] octets,
/// written by [`Tso::write`].
#[derive(Debug, Clone, Copy)]
pub struct Tso<'a> {
    /// The whole packet (headers once, then all the payload).
    pkt: &'a [u8],
    v6: bool,
    proto: u8,
    /// Where the transport header starts (IPv4 header, or IPv6 header and
    /// extension headers).
    l4_at: usize,
    /// IP and transport headers.
    hdr_len: usize,
    /// Payload octets per segment (the last may carry fewer).
    gso_size: usize,
    count: usize,
    /// Sums (RFC 1071, unfolded) of what every segment shares, taken once
    /// from the read: the IPv4 header without its total length,
    /// identification and checksum; the transport header without its
    /// checksum and the fields that change (TCP sequence number, data
    /// offset and flags; UDP length), plus the pseudo-header's addresses
    /// and protocol. A segment's checksums are these plus its own fields
    /// and the sum of its payload, read from the read's buffer: nothing
    /// just written is read back (a load of freshly stored bytes of
    /// another width stalls on store forwarding).
    ip_base: u64,
    l4_base: u64,
    /// The TCP header's octet 12 (data offset) and flags (octet 13);
    /// first sequence number; the IPv4 identification.
    tcp_off: u8,
    tcp_flags: u8,
    seq: u32,
    ip_id: u16,
}

/// The virtio-net header's fields (legacy layout, host byte order, as
/// tun-rs opens the device).
struct Vnet {
    flags: u8,
    gso_type: u8,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

fn vnet(b: &[u8]) -> Option<Vnet> {
    let ne = |at: usize| Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?));
    Some(Vnet {
        flags: *b.first()?,
        gso_type: *b.get(1)?,
        gso_size: ne(4)?,
        csum_start: ne(6)?,
        csum_offset: ne(8)?,
    })
}

/// Take one read of the device (`buf`: the virtio-net header, then the
/// packet): a packet to send as it is (its checksum completed in place
/// when the stack asked for that), or one to cut. The error is the reason
/// to count the read's drop under.
pub fn read(buf: &mut [u8]) -> Result<Read<'_>, &'static str> {
    let h = vnet(buf).ok_or("TUN: read shorter than its virtio-net header")?;
    let pkt = buf
        .get_mut(VNET_LEN..)
        .filter(|p| !p.is_empty())
        .ok_or("TUN: read shorter than its virtio-net header")?;
    let gso = h.gso_type & !VNET_GSO_ECN;
    if gso == VNET_GSO_NONE {
        if h.flags & VNET_F_NEEDS_CSUM != 0 {
            complete_checksum(pkt, usize::from(h.csum_start), usize::from(h.csum_offset))?;
        }
        return Ok(Read::One(pkt));
    }
    let pkt: &[u8] = pkt;
    let v6 = match pkt.first().map(|b| b >> 4) {
        Some(4) => false,
        Some(6) => true,
        _ => return Err("TUN: GSO read is not an IP packet"),
    };
    let proto = match (gso, v6) {
        (VNET_GSO_TCPV4, false) | (VNET_GSO_TCPV6, true) => TCP,
        (VNET_GSO_UDP_L4, _) => UDP,
        _ => return Err("TUN: GSO type does not match the packet"),
    };
    let gso_size = usize::from(h.gso_size);
    if gso_size == 0 {
        return Err("TUN: GSO read with a segment size of 0");
    }
    let l4_at = usize::from(h.csum_start);
    // The transport checksum's place, as TCP and UDP have it.
    let csum_field = if proto == TCP { 16 } else { 6 };
    if usize::from(h.csum_offset) != csum_field {
        return Err("TUN: GSO read's checksum offset is not its protocol's");
    }
    // The IP header: lengths that agree with the read (the stack builds
    // the header for the whole packet before it is cut).
    let ip_len_ok = if v6 {
        l4_at >= 40 && be16(pkt, 4).map(|n| usize::from(n) + 40) == Some(pkt.len())
    } else {
        let ihl = usize::from(pkt.first().copied().unwrap_or(0) & 0x0f) * 4;
        l4_at == ihl
            && ihl >= 20
            && pkt.get(9) == Some(&proto)
            && be16(pkt, 2).map(usize::from) == Some(pkt.len())
            // Not a fragment (MF or an offset): a fragment is not cut.
            && be16(pkt, 6).is_some_and(|f| f & 0x3fff == 0)
    };
    if !ip_len_ok {
        return Err("TUN: GSO read's IP header does not match the read");
    }
    // The transport header's own length, not the virtio-net header's
    // `hdr_len` (the kernel may give the whole first packet's length there
    // for a forwarded packet).
    let l4_len = if proto == TCP {
        let n = pkt
            .get(l4_at + 12)
            .map(|b| usize::from(b >> 4) * 4)
            .unwrap_or(0);
        if !(20..=60).contains(&n) {
            return Err("TUN: GSO read's TCP header length is not 20 to 60");
        }
        n
    } else {
        8
    };
    let hdr_len = l4_at + l4_len;
    let payload = pkt.len().saturating_sub(hdr_len);
    if payload == 0 {
        return Err("TUN: GSO read without payload");
    }
    // What every segment shares (see `Tso::ip_base`): headers copied
    // with the changing fields zeroed, summed once.
    let mut h = [0u8; 60 + 60];
    let ip_base = if v6 {
        0
    } else {
        let ip = h
            .get_mut(..l4_at)
            .ok_or("TUN: GSO read's IP header too long")?;
        ip.copy_from_slice(pkt.get(..l4_at).unwrap_or_default());
        // Total length, identification, checksum.
        for at in [2, 3, 4, 5, 10, 11] {
            ip[at] = 0;
        }
        sum(ip, 0)
    };
    let l4 = h
        .get_mut(..l4_len)
        .ok_or("TUN: GSO read's transport header too long")?;
    l4.copy_from_slice(pkt.get(l4_at..hdr_len).unwrap_or_default());
    let (tcp_off, tcp_flags, seq) = if proto == TCP {
        let r = (l4[12], l4[13], be32(l4, 4).unwrap_or(0));
        // Sequence number, data offset and flags, checksum.
        for at in [4, 5, 6, 7, 12, 13, 16, 17] {
            l4[at] = 0;
        }
        r
    } else {
        // Length, checksum.
        for at in [4, 5, 6, 7] {
            l4[at] = 0;
        }
        (0, 0, 0)
    };
    let addrs = if v6 { pkt.get(8..40) } else { pkt.get(12..20) };
    let l4_base = sum(l4, sum(addrs.unwrap_or_default(), u64::from(proto)));
    Ok(Read::Segments(Tso {
        pkt,
        v6,
        proto,
        l4_at,
        hdr_len,
        gso_size,
        count: payload.div_ceil(gso_size),
        ip_base,
        l4_base,
        tcp_off,
        tcp_flags,
        seq,
        ip_id: be16(pkt, 4).unwrap_or(0),
    }))
}

/// RFC 1071: complete the transport checksum the stack left partial
/// (`NEEDS_CSUM`, `CHECKSUM_PARTIAL`): the sum from `start` to the end,
/// folded into the field at `start + offset`, which holds the
/// pseudo-header sum.
fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), &'static str> {
    const BAD: &str = "TUN: read's checksum start or offset outside the packet";
    let at = start.checked_add(offset).ok_or(BAD)?;
    let initial = be16(pkt, at).ok_or(BAD)?;
    pkt.get_mut(at..at + 2).ok_or(BAD)?.fill(0);
    let covered = pkt.get(start..).ok_or(BAD)?;
    let mut c = !fold(sum(covered, u64::from(initial)));
    // RFC 768: a UDP checksum computed as 0 is sent as all ones (0 means
    // none). The UDP checksum field lies at 6, TCP's at 16.
    if c == 0 && offset == 6 {
        c = 0xffff;
    }
    pkt.get_mut(at..at + 2)
        .ok_or(BAD)?
        .copy_from_slice(&c.to_be_bytes());
    Ok(())
}

impl<'a> Tso<'a> {
    /// The packet as read, before it is cut (for the outbound decision:
    /// its flags are those of all its segments together).
    pub fn packet(&self) -> &'a [u8] {
        self.pkt
    }

    /// Octets of IP and transport header every segment starts with.
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// Segments it is cut into.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Payload of segment `i`.
    fn payload(&self, i: usize) -> &'a [u8] {
        let start = self.hdr_len + i * self.gso_size;
        let end = (start + self.gso_size).min(self.pkt.len());
        self.pkt.get(start..end).unwrap_or_default()
    }

    /// Octets of segment `i` (headers and payload).
    pub fn seg_len(&self, i: usize) -> usize {
        self.hdr_len + self.payload(i).len()
    }

    /// Write segment `i` into `out`, which must be [`Self::seg_len`]`(i)`
    /// octets long (else nothing is written and false returned).
    pub fn write(&self, i: usize, out: &mut [u8]) -> bool {
        self.write_inner(i, out).is_some()
    }

    fn write_inner(&self, i: usize, out: &mut [u8]) -> Option<()> {
        let payload = self.payload(i);
        let len = self.hdr_len + payload.len();
        if out.len() != len || i >= self.count {
            return None;
        }
        // The payload's sum, from the read (before and apart from the
        // copy).
        let payload_sum = sum(payload, 0);
        let (hdrs, body) = out.split_at_mut(self.hdr_len);
        hdrs.copy_from_slice(self.pkt.get(..self.hdr_len)?);
        body.copy_from_slice(payload);
        let l4_len = len - self.l4_at;
        let l4_len16 = u16::try_from(l4_len).ok()?;
        if self.v6 {
            // The payload length: extension headers, transport header and
            // data.
            hdrs.get_mut(4..6)?
                .copy_from_slice(&u16::try_from(len - 40).ok()?.to_be_bytes());
        } else {
            let len16 = u16::try_from(len).ok()?;
            let id = self.ip_id.wrapping_add(i as u16);
            let c = !fold(self.ip_base + u64::from(len16) + u64::from(id));
            hdrs.get_mut(2..4)?.copy_from_slice(&len16.to_be_bytes());
            hdrs.get_mut(4..6)?.copy_from_slice(&id.to_be_bytes());
            hdrs.get_mut(10..12)?.copy_from_slice(&c.to_be_bytes());
        }
        // The pseudo-header's length, then the fields of this segment.
        let mut acc = self.l4_base + payload_sum + u64::from(l4_len16);
        let l4 = hdrs.get_mut(self.l4_at..)?;
        let csum_at = if self.proto == TCP {
            let seq = self.seq.wrapping_add((i * self.gso_size) as u32);
            let mut flags = self.tcp_flags;
            if i > 0 {
                flags &= !TCP_CWR;
            }
            if i + 1 < self.count {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            acc += u64::from(seq >> 16)
                + u64::from(seq & 0xffff)
                + u64::from(u16::from_be_bytes([self.tcp_off, flags]));
            l4.get_mut(4..8)?.copy_from_slice(&seq.to_be_bytes());
            *l4.get_mut(13)? = flags;
            16
        } else {
            acc += u64::from(l4_len16);
            l4.get_mut(4..6)?.copy_from_slice(&l4_len16.to_be_bytes());
            6
        };
        let mut c = !fold(acc);
        if c == 0 && self.proto == UDP {
            c = 0xffff;
        }
        l4.get_mut(csum_at..csum_at + 2)?
            .copy_from_slice(&c.to_be_bytes());
        Some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::driver::gro::tests::sum16;

    /// The IPv4 header checksum (if v4) and the transport checksum of a
    /// packet whose transport header starts at `l4` verify.
    fn verifies(p: &[u8], l4: usize) -> bool {
        let v6 = p[0] >> 4 == 6;
        if !v6 && sum16(&p[..l4], 0) != 0xffff {
            return false;
        }
        let proto = if v6 { p[6] } else { p[9] };
        let addrs = if v6 { &p[8..40] } else { &p[12..20] };
        let pseudo = u64::from(sum16(addrs, 0)) + u64::from(proto) + (p.len() - l4) as u64;
        sum16(&p[l4..], pseudo) == 0xffff
    }

    fn vnet_hdr(gso_type: u8, gso_size: u16, csum_start: u16, csum_offset: u16) -> Vec<u8> {
        let mut v = vec![VNET_F_NEEDS_CSUM, gso_type];
        for f in [0u16, gso_size, csum_start, csum_offset] {
            v.extend_from_slice(&f.to_ne_bytes());
        }
        v
    }

    /// A read as the stack hands it over: virtio-net header, then an IP
    /// packet of `proto` with `payload`, the transport checksum field
    /// holding the pseudo-header sum of the whole packet (as the stack
    /// leaves it with `NEEDS_CSUM`). TCP with 12 octets of options and
    /// flags `flags`.
    fn superpacket(v6: bool, proto: u8, flags: u8, payload: &[u8], gso_size: u16) -> Vec<u8> {
        let l4 = if proto == TCP {
            let mut t = vec![0u8; 32];
            t[..4].copy_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
            t[4..8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
            t[8..12].copy_from_slice(&77u32.to_be_bytes());
            t[12] = 8 << 4;
            t[13] = flags;
            t[14..16].copy_from_slice(&512u16.to_be_bytes());
            t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
            t
        } else {
            let mut u = vec![0u8; 8];
            u[..4].copy_from_slice(&[0x13, 0x88, 0x11, 0x5c]);
            u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            u
        };
        let l4_len = l4.len() + payload.len();
        let mut p = if v6 {
            let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            h.extend((0..16).map(|i| 0x20 + i as u8));
            h.extend((0..16).map(|i| 0x40 + i as u8));
            h
        } else {
            let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
            h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            h.extend_from_slice(&[10, 0, 0, 1, 10, 0, 1, 1]);
            let c = !sum16(&h, 0);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        };
        let iph = p.len();
        let addrs = if v6 {
            p[8..40].to_vec()
        } else {
            p[12..20].to_vec()
        };
        p.extend_from_slice(&l4);
        p.extend_from_slice(payload);
        let csum_at = if proto == TCP { 16 } else { 6 };
        let partial = sum16(&addrs, u64::from(proto) + l4_len as u64);
        p[iph + csum_at..iph + csum_at + 2].copy_from_slice(&partial.to_be_bytes());
        let gso = match (proto, v6) {
            (TCP, false) => VNET_GSO_TCPV4,
            (TCP, true) => VNET_GSO_TCPV6,
            _ => VNET_GSO_UDP_L4,
        };
        let mut rd = vnet_hdr(gso, gso_size, iph as u16, csum_at as u16);
        rd.extend_from_slice(&p);
        rd
    }

    fn segments(rd: &mut [u8]) -> Vec<Vec<u8>> {
        let Read::Segments(t) = read(rd).unwrap() else {
            panic!("not a GSO read");
        };
        (0..t.count())
            .map(|i| {
                let mut out = vec![0u8; t.seg_len(i)];
                assert!(t.write(i, &mut out));
                out
            })
            .collect()
    }

    /// TCP over IPv4 and IPv6: every segment verifies, parses, has the
    /// right length, sequence number, identification and flags, and the
    /// payloads put back together are the payload.
    #[test]
    fn tcp_segments() {
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for v6 in [false, true] {
            let iph = if v6 { 40 } else { 20 };
            let fin_psh_cwr = 0x10 | TCP_FIN | TCP_PSH | TCP_CWR;
            let mut rd = superpacket(v6, TCP, fin_psh_cwr, &payload, 1388);
            let segs = segments(&mut rd);
            assert_eq!(segs.len(), payload.len().div_ceil(1388));
            let mut back = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let last = i + 1 == segs.len();
                assert!(verifies(s, iph), "segment {i} (v6 {v6}) checksums");
                let info = crate::packet::parse(s).unwrap();
                assert_eq!(info.total_len, s.len());
                let l4 = &s[iph..];
                let seq = u32::from_be_bytes(l4[4..8].try_into().unwrap());
                assert_eq!(seq, 0xffff_f000u32.wrapping_add(1388 * i as u32));
                let want = if last { 0x10 | TCP_FIN | TCP_PSH } else { 0x10 }
                    | if i == 0 { TCP_CWR } else { 0 };
                assert_eq!(l4[13], want, "flags of segment {i}");
                assert_eq!(&l4[20..32], &[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
                if !v6 {
                    assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0x1234 + i as u16);
                }
                assert!(last || s.len() == iph + 32 + 1388);
                back.extend_from_slice(&l4[32..]);
            }
            assert_eq!(back, payload);
        }
    }

    /// UDP (USO) over IPv4 and IPv6: each datagram has its own UDP length
    /// and checksum.
    #[test]
    fn udp_segments() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        for v6 in [false, true] {
            let iph = if v6 { 40 } else { 20 };
            let mut rd = superpacket(v6, UDP, 0, &payload, 1200);
            let segs = segments(&mut rd);
            assert_eq!(segs.len(), 5);
            let mut back = Vec::new();
            for s in &segs {
                assert!(verifies(s, iph));
                let udp_len = usize::from(u16::from_be_bytes([s[iph + 4], s[iph + 5]]));
                assert_eq!(udp_len, s.len() - iph);
                assert_ne!(&s[iph + 6..iph + 8], &[0, 0]);
                back.extend_from_slice(&s[iph + 8..]);
            }
            assert_eq!(segs[4].len(), iph + 8 + 200);
            assert_eq!(back, payload);
        }
    }

    /// A read without segmentation: its partial checksum is completed;
    /// without `NEEDS_CSUM` it is left alone.
    #[test]
    fn single_packet_checksum() {
        let payload = b"0123456789abcdefg".to_vec();
        for (v6, proto) in [(false, TCP), (true, TCP), (false, UDP), (true, UDP)] {
            let mut rd = superpacket(v6, proto, 0x18, &payload, 1400);
            rd[1] = VNET_GSO_NONE;
            let iph = if v6 { 40 } else { 20 };
            let before = rd.clone();
            let Read::One(p) = read(&mut rd).unwrap() else {
                panic!("one packet");
            };
            assert!(verifies(p, iph));
            let mut untouched = before.clone();
            untouched[0] = 0;
            let Read::One(q) = read(&mut untouched).unwrap() else {
                panic!("one packet");
            };
            assert_eq!(q, &before[VNET_LEN..]);
        }
    }

    /// RFC 768: a UDP checksum that comes out 0 is sent as all ones, both
    /// when completed in place and in a cut segment.
    #[test]
    fn udp_zero_checksum_is_all_ones() {
        for (v6, gso) in [(false, false), (true, false), (false, true), (true, true)] {
            let iph = if v6 { 40 } else { 20 };
            let mut payload = vec![9u8; 40];
            // Choose the last word (first 0) so that the sum is all ones.
            payload[38..40].fill(0);
            let mut rd = superpacket(v6, UDP, 0, &payload, 1000);
            let p = &mut rd[VNET_LEN..];
            p[iph + 6..iph + 8].fill(0);
            let addrs = if v6 { &p[8..40] } else { &p[12..20] };
            let pseudo = u64::from(sum16(addrs, 0)) + 17 + (p.len() - iph) as u64;
            let s = sum16(&p[iph..], pseudo);
            let w = 0xffff - s;
            payload[38..40].copy_from_slice(&w.to_be_bytes());
            let mut rd = superpacket(v6, UDP, 0, &payload, 1000);
            if !gso {
                rd[1] = VNET_GSO_NONE;
                let Read::One(p) = read(&mut rd).unwrap() else {
                    panic!("one packet");
                };
                assert_eq!(&p[iph + 6..iph + 8], &[0xff, 0xff]);
                assert!(verifies(p, iph));
            } else {
                let segs = segments(&mut rd);
                assert_eq!(segs.len(), 1);
                assert_eq!(&segs[0][iph + 6..iph + 8], &[0xff, 0xff]);
                assert!(verifies(&segs[0], iph));
            }
        }
    }

    /// Reads that do not hold together are refused.
    #[test]
    fn refusals() {
        let payload = vec![7u8; 3000];
        let good = superpacket(false, TCP, 0x10, &payload, 1400);
        type Spoil = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("short", Box::new(|r| r.truncate(5))),
            ("empty packet", Box::new(|r| r.truncate(VNET_LEN))),
            ("gso size 0", Box::new(|r| r[4..6].fill(0))),
            ("TCPv6 on v4", Box::new(|r| r[1] = VNET_GSO_TCPV6)),
            ("unknown type", Box::new(|r| r[1] = 3)),
            ("csum offset", Box::new(|r| r[8] = 6)),
            ("csum start", Box::new(|r| r[6] = 24)),
            ("ip length", Box::new(|r| r[VNET_LEN + 3] ^= 1)),
            ("protocol", Box::new(|r| r[VNET_LEN + 9] = UDP)),
            ("fragment", Box::new(|r| r[VNET_LEN + 6] = 0x20)),
            ("tcp doff", Box::new(|r| r[VNET_LEN + 32] = 4 << 4)),
            ("not ip", Box::new(|r| r[VNET_LEN] = 0x55)),
            (
                "no payload",
                Box::new(|r| {
                    r.truncate(VNET_LEN + 52);
                    r[VNET_LEN + 2..VNET_LEN + 4].copy_from_slice(&52u16.to_be_bytes());
                }),
            ),
        ];
        let mut ok = good.clone();
        assert!(matches!(read(&mut ok), Ok(Read::Segments(_))));
        for (name, spoil) in cases {
            let mut r = good.clone();
            spoil(&mut r);
            assert!(read(&mut r).is_err(), "{name} accepted");
        }
    }

    /// Total on any bytes: random reads (and corruptions of good ones)
    /// never panic, and every segment written is as long as announced.
    #[test]
    fn total() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = [
            superpacket(false, TCP, 0x18, &[3u8; 4000], 1000),
            superpacket(true, UDP, 0, &[5u8; 999], 100),
        ];
        for round in 0..3000 {
            let mut r = seeds[round % 2].clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % r.len();
                r[at] = next() as u8;
            }
            if round % 7 == 0 {
                let n = (next() as usize) % r.len();
                r.truncate(n);
            }
            if let Ok(Read::Segments(t)) = read(&mut r) {
                let mut total = 0;
                for i in 0..t.count().min(5000) {
                    let mut out = vec![0u8; t.seg_len(i)];
                    assert!(t.write(i, &mut out));
                    assert!(!t.write(i, &mut out[1..]));
                    total += out.len();
                }
                assert!(total >= t.packet().len() || t.count() > 5000);
            }
        }
    }
}
