//! Our own receive offload (GRO) for TUN writes with offload on: the
//! decapsulated inner packets of one UDP GRO read, planned into as few
//! device writes as possible, each gathered (`writev`) straight from the
//! read's buffer, where the packets were decrypted in place.
//!
//! In-order TCP segments of one connection (flags ACK or ACK|PSH, same IP
//! header fields, same acknowledgment and options, every segment but the
//! last of one size) become one write with a virtio-net GSO header (the
//! kernel takes it as one received TCP packet, as its own GRO would make
//! it); so do UDP datagrams of one flow of one size (the last may be
//! shorter; GSO_UDP_L4). Anything else is written as it came, with a
//! virtio-net header of zeros. Packets are never reordered within a flow:
//! a packet of a flow that cannot join its flow's open write closes it.
//!
//! Checksums: a packet joins a merged write only if its IP header and
//! transport checksums are valid, checked here (a merged write's transport
//! checksum is completed by the kernel, `NEEDS_CSUM`, and so no longer
//! verified there). A packet with a bad checksum is written alone, for the
//! kernel to verify and drop.
//!
//! Before this, every packet was copied into a write buffer of its own,
//! and tun-rs's `send_multiple` copied each again (`to_vec`) and merged it
//! (a third copy). Here nothing is copied in user space; the headers of a
//! merged write (at most 130 octets) are the only bytes built.
//!
//! Pure: no I/O. Every parse is bounds-checked; any bytes are accepted
//! (what cannot be merged is written as it came).

use std::io::IoSlice;
use std::ops::Range;

/// Length of the virtio-net header in front of every write (no
/// `num_buffers`: the device is not opened with mergeable buffers).
pub const VNET_LEN: usize = 10;
/// Room for the virtio-net header, the largest IPv4 header and the
/// largest TCP header.
const HEAD_MAX: usize = VNET_LEN + 60 + 60;
/// Segments in one merged write at most (one `iovec` each, plus the
/// header; far below `UIO_MAXIOV`).
const SEGS_MAX: usize = 128;
/// The largest IP packet (IPv4 total length, IPv6 payload length).
const IP_MAX: usize = u16::MAX as usize;

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
pub(super) const VNET_F_NEEDS_CSUM: u8 = 1;
pub(super) const VNET_GSO_TCPV4: u8 = 1;
pub(super) const VNET_GSO_TCPV6: u8 = 4;
pub(super) const VNET_GSO_UDP_L4: u8 = 5;

/// What a packet is, for merging.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Shape {
    v6: bool,
    proto: u8,
    /// IP header length.
    iph: usize,
    /// IP and transport header length.
    hdrs: usize,
    /// Addresses and ports, as they lie in the packet (v4: 12 octets).
    key: [u8; 36],
}

/// A mergeable packet: its shape, what may join it, its place in the
/// flow.
struct Candidate {
    shape: Shape,
    payload: usize,
    /// TCP sequence number (0 for UDP).
    seq: u32,
    psh: bool,
    fields: Fields,
}

/// The header fields a merged packet takes from its first segment, which
/// must be the same in every segment (as Linux's GRO requires): IPv4 TOS,
/// DF and TTL; IPv6 version, traffic class, flow label and hop limit; the
/// TCP acknowledgment number and options. (The TCP window is taken from
/// the first segment, as Linux's GRO does.)
#[derive(PartialEq, Eq, Clone, Copy)]
struct Fields {
    ip: u32,
    ttl: u8,
    df: u8,
    ack: u32,
    opts: [u8; 40],
}

/// One planned write.
struct Write {
    /// The whole first packet, in the read's buffer.
    first: Range<usize>,
    /// `Some` if more may join or have joined.
    merge: Option<Merge>,
}

struct Merge {
    shape: Shape,
    fields: Fields,
    /// Payload size of the first segment (the GSO size).
    gso: usize,
    /// Payload of all segments together.
    payload: usize,
    /// Where the next TCP segment must start.
    next_seq: u32,
    /// Nothing more may join: a shorter segment, PSH, a packet of the
    /// flow that could not join.
    closed: bool,
    psh: bool,
    /// Payloads of the segments after the first, in the read's buffer.
    rest: Vec<Range<usize>>,
    /// The merged write's header (`merged_head`), built when written.
    head: [u8; HEAD_MAX],
    head_len: usize,
}

/// The writes planned for one read; reused (its vectors keep their
/// capacity).
#[derive(Default)]
pub struct Gro {
    /// Whether UDP datagrams are merged (the device takes GSO_UDP_L4
    /// writes: tun-rs negotiated USO with the kernel).
    udp: bool,
    writes: Vec<Write>,
    used: usize,
    /// Reused: where the segment ranges of finished writes go back.
    spare: Vec<Vec<Range<usize>>>,
}

/// What [`Gro::write`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Device writes made.
    pub writes: usize,
    /// Of them, merged ones (more than one packet).
    pub merged: usize,
    /// The packets the merged ones carried.
    pub merged_packets: usize,
    /// Writes that failed.
    pub failed: usize,
    /// The last failed write's error kind.
    pub last_error: Option<std::io::ErrorKind>,
}

impl Gro {
    /// A planner for a device that takes UDP GSO writes (`udp`) or not.
    pub fn new(udp: bool) -> Self {
        Self {
            udp,
            ..Self::default()
        }
    }

    /// Packets planned and not yet written.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Plan the packet `pkt` (an IP packet, already checked and passed),
    /// which lies at `start` in the read's buffer: join it to its flow's
    /// open write or start a new one.
    pub fn push(&mut self, pkt: &[u8], start: usize) {
        let at = start..start + pkt.len();
        let c = candidate(pkt).filter(|c| c.shape.proto == TCP || self.udp);
        let Some(c) = c else {
            // Not mergeable: it closes its flow's open write (no segment
            // of that flow may pass it); every open write if its flow is
            // not known (not TCP or UDP, IP options, a fragment).
            match shape(pkt) {
                Some(shape) => {
                    if let Some(m) = self.open_of(&shape) {
                        m.closed = true;
                    }
                }
                None => self.close_all(),
            }
            self.start(at, None);
            return;
        };
        if let Some(m) = self.open_of(&c.shape) {
            if joins(m, &c) {
                m.rest.push(at.start + c.shape.hdrs..at.end);
                m.payload += c.payload;
                m.next_seq = c.seq.wrapping_add(c.payload as u32);
                // A shorter segment ends a GSO packet; so does PSH.
                m.closed = c.payload < m.gso || c.psh || m.rest.len() + 1 >= SEGS_MAX;
                m.psh |= c.psh;
                return;
            }
            m.closed = true;
        }
        let rest = self.spare.pop().unwrap_or_default();
        let merge = Merge {
            shape: c.shape,
            fields: c.fields,
            gso: c.payload,
            payload: c.payload,
            next_seq: c.seq.wrapping_add(c.payload as u32),
            closed: c.psh,
            psh: c.psh,
            rest,
            head: [0; HEAD_MAX],
            head_len: 0,
        };
        self.start(at, Some(merge));
    }

    fn start(&mut self, first: Range<usize>, merge: Option<Merge>) {
        let w = Write { first, merge };
        if let Some(slot) = self.writes.get_mut(self.used) {
            if let Some(m) = slot.merge.take() {
                self.spare.push(m.rest);
            }
            *slot = w;
        } else {
            self.writes.push(w);
        }
        self.used += 1;
    }

    fn close_all(&mut self) {
        let planned = self.writes.get_mut(..self.used).unwrap_or_default();
        for m in planned.iter_mut().filter_map(|w| w.merge.as_mut()) {
            m.closed = true;
        }
    }

    /// The open write of the flow of `shape`: the flow's last write, if
    /// still open.
    fn open_of(&mut self, shape: &Shape) -> Option<&mut Merge> {
        let planned = self.writes.get_mut(..self.used)?;
        planned
            .iter_mut()
            .rev()
            .filter_map(|w| w.merge.as_mut())
            .find(|m| {
                m.shape.key == shape.key && m.shape.v6 == shape.v6 && m.shape.proto == shape.proto
            })
            .filter(|m| !m.closed)
    }

    /// Make the planned writes, in order, through `write` (one gathered
    /// write each: `writev` on the device), and forget them. `data` is
    /// the buffer [`Self::push`] was given.
    pub fn write(
        &mut self,
        data: &[u8],
        mut write: impl FnMut(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> Written {
        let mut done = Written::default();
        let planned = self.writes.get_mut(..self.used).unwrap_or_default();
        // The merged writes' headers first (the gathered writes borrow
        // them).
        for w in planned.iter_mut() {
            let first = data.get(w.first.clone()).unwrap_or_default();
            if let Some(m) = w.merge.as_mut().filter(|m| !m.rest.is_empty()) {
                m.head_len =
                    merged_head(&mut m.head, first, m.shape, m.gso, m.payload, m.psh).unwrap_or(0);
            }
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::new();
        let zeros = [0u8; VNET_LEN];
        for w in planned.iter() {
            iov.clear();
            let first = data.get(w.first.clone()).unwrap_or_default();
            match w.merge.as_ref().filter(|m| !m.rest.is_empty()) {
                Some(m) if m.head_len == 0 => {
                    // Not reached: the first packet was parsed when
                    // planned. Counted, never written half.
                    done.failed += 1;
                    done.last_error = Some(std::io::ErrorKind::InvalidData);
                    continue;
                }
                Some(m) => {
                    iov.push(IoSlice::new(m.head.get(..m.head_len).unwrap_or_default()));
                    iov.push(IoSlice::new(first.get(m.shape.hdrs..).unwrap_or_default()));
                    iov.extend(
                        m.rest
                            .iter()
                            .map(|r| IoSlice::new(data.get(r.clone()).unwrap_or_default())),
                    );
                    done.merged += 1;
                    done.merged_packets += 1 + m.rest.len();
                }
                None => {
                    iov.push(IoSlice::new(&zeros));
                    iov.push(IoSlice::new(first));
                }
            }
            done.writes += 1;
            if let Err(e) = write(&iov) {
                done.failed += 1;
                done.last_error = Some(e.kind());
            }
        }
        drop(iov);
        for w in planned.iter_mut() {
            if let Some(m) = w.merge.as_mut() {
                m.rest.clear();
            }
        }
        self.used = 0;
        done
    }
}

/// Whether the candidate `c` may join the open write `m` of its flow.
fn joins(m: &Merge, c: &Candidate) -> bool {
    let s = &m.shape;
    if c.shape.iph != s.iph || c.shape.hdrs != s.hdrs || c.payload > m.gso || c.fields != m.fields {
        return false;
    }
    // The merged packet's length field: IPv4 total length, IPv6 payload
    // length (both 16 bits).
    let fixed = if s.v6 { s.hdrs - s.iph } else { s.hdrs };
    if fixed + m.payload + c.payload > IP_MAX {
        return false;
    }
    s.proto != TCP || c.seq == m.next_seq
}

pub(super) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A TCP or UDP packet's flow and header lengths: IPv4 without options
/// or fragmentation, IPv6 without extension headers; its length field
/// matching `pkt`. `None` for anything else.
fn shape(pkt: &[u8]) -> Option<Shape> {
    let mut key = [0u8; 36];
    let (v6, proto, iph, len) = match pkt.first()? >> 4 {
        4 => {
            // IHL 5; neither MF nor a fragment offset.
            if *pkt.first()? != 0x45 || be16(pkt, 6)? & 0x3fff != 0 {
                return None;
            }
            key.get_mut(..8)?.copy_from_slice(pkt.get(12..20)?);
            (false, *pkt.get(9)?, 20, usize::from(be16(pkt, 2)?))
        }
        6 => {
            key.get_mut(..32)?.copy_from_slice(pkt.get(8..40)?);
            (true, *pkt.get(6)?, 40, 40 + usize::from(be16(pkt, 4)?))
        }
        _ => return None,
    };
    if len != pkt.len() {
        return None;
    }
    let l4 = match proto {
        TCP => usize::from(*pkt.get(iph + 12)? >> 4) * 4,
        UDP => 8,
        _ => return None,
    };
    if l4 < 8 || iph + l4 > pkt.len() {
        return None;
    }
    let at = if v6 { 32 } else { 8 };
    key.get_mut(at..at + 4)?
        .copy_from_slice(pkt.get(iph..iph + 4)?);
    Some(Shape {
        v6,
        proto,
        iph,
        hdrs: iph + l4,
        key,
    })
}

/// The packet as a candidate for merging: TCP with flags ACK or ACK|PSH
/// and a payload, or UDP with a payload and a UDP length matching the
/// packet; valid IPv4 header and transport checksums.
fn candidate(pkt: &[u8]) -> Option<Candidate> {
    let shape = shape(pkt)?;
    let l4 = pkt.get(shape.iph..)?;
    let payload = pkt.len().checked_sub(shape.hdrs).filter(|&n| n > 0)?;
    let mut opts = [0u8; 40];
    let (seq, psh, ack) = if shape.proto == TCP {
        let flags = *l4.get(13)?;
        if flags != TCP_ACK && flags != TCP_ACK | TCP_PSH {
            return None;
        }
        // Options: what lies between the fixed 20 octets and the data.
        let o = l4.get(20..shape.hdrs - shape.iph)?;
        opts.get_mut(..o.len())?.copy_from_slice(o);
        (be32(l4, 4)?, flags & TCP_PSH != 0, be32(l4, 8)?)
    } else {
        if usize::from(be16(l4, 4)?) != l4.len() {
            return None;
        }
        (0, false, 0)
    };
    let fields = if shape.v6 {
        Fields {
            ip: be32(pkt, 0)?,
            ttl: *pkt.get(7)?,
            df: 0,
            ack,
            opts,
        }
    } else {
        Fields {
            ip: u32::from(*pkt.get(1)?),
            ttl: *pkt.get(8)?,
            df: *pkt.get(6)? & 0x40,
            ack,
            opts,
        }
    };
    if !checksums_valid(pkt, &shape) {
        return None;
    }
    Some(Candidate {
        shape,
        payload,
        seq,
        psh,
        fields,
    })
}

/// RFC 1071 ones' complement sum of `data` added to `acc`, unfolded (in
/// big-endian 32-bit words: the folded result is the same as in 16-bit
/// words). tun-rs's, which uses AVX2 or SSE4.1 where the CPU has them
/// (the verification of every merged segment is on the per-byte path).
pub(super) fn sum(data: &[u8], acc: u64) -> u64 {
    tun_rs::checksum_no_fold(data, acc)
}

/// [`sum`] folded to 16 bits (not complemented).
pub(super) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of the transport pseudo-header (RFC 9293 3.1, RFC 8200 8.1)
/// of a packet of shape `s` whose transport header and payload are `len`
/// octets.
fn pseudo(pkt: &[u8], s: &Shape, len: usize) -> u64 {
    let addrs = if s.v6 {
        pkt.get(8..40)
    } else {
        pkt.get(12..20)
    };
    sum(addrs.unwrap_or_default(), u64::from(s.proto) + len as u64)
}

/// The IPv4 header checksum and the transport checksum verify (RFC 1071:
/// the sum over the covered octets is all ones). A UDP checksum of zero
/// (none, IPv4 only) is not accepted here: such a packet is written
/// alone.
fn checksums_valid(pkt: &[u8], s: &Shape) -> bool {
    if !s.v6 && fold(sum(pkt.get(..s.iph).unwrap_or_default(), 0)) != 0xffff {
        return false;
    }
    let Some(l4) = pkt.get(s.iph..) else {
        return false;
    };
    if s.proto == UDP && be16(l4, 6) == Some(0) {
        return false;
    }
    fold(sum(l4, pseudo(pkt, s, l4.len()))) == 0xffff
}

/// Build the header of a merged write in `head`: the virtio-net header
/// (GSO, `NEEDS_CSUM`), then the first segment's IP and transport headers
/// with the merged length, a new IPv4 header checksum, and the transport
/// checksum field holding the pseudo-header sum for the kernel to
/// complete. Its length, or `None` if the first packet is not as planned.
fn merged_head(
    head: &mut [u8; HEAD_MAX],
    first: &[u8],
    shape: Shape,
    gso: usize,
    payload: usize,
    psh: bool,
) -> Option<usize> {
    let s = &shape;
    let n = VNET_LEN + s.hdrs;
    let out = head.get_mut(..n)?;
    let (vnet, hdrs) = out.split_at_mut(VNET_LEN);
    hdrs.copy_from_slice(first.get(..s.hdrs)?);
    let l4_len = s.hdrs - s.iph + payload;
    let gso_type = match (s.proto, s.v6) {
        (TCP, false) => VNET_GSO_TCPV4,
        (TCP, true) => VNET_GSO_TCPV6,
        _ => VNET_GSO_UDP_L4,
    };
    // struct virtio_net_hdr in the host's byte order (a legacy virtio
    // header: tun takes it so unless told otherwise, TUNSETVNETBE/LE).
    vnet[0] = VNET_F_NEEDS_CSUM;
    vnet[1] = gso_type;
    vnet[2..4].copy_from_slice(&(s.hdrs as u16).to_ne_bytes());
    vnet[4..6].copy_from_slice(&(gso as u16).to_ne_bytes());
    vnet[6..8].copy_from_slice(&(s.iph as u16).to_ne_bytes());
    let csum_at: u16 = if s.proto == TCP { 16 } else { 6 };
    vnet[8..10].copy_from_slice(&csum_at.to_ne_bytes());
    if s.v6 {
        hdrs.get_mut(4..6)?
            .copy_from_slice(&u16::try_from(l4_len).ok()?.to_be_bytes());
    } else {
        let total = u16::try_from(s.iph + l4_len).ok()?;
        hdrs.get_mut(2..4)?.copy_from_slice(&total.to_be_bytes());
        hdrs.get_mut(10..12)?.copy_from_slice(&[0, 0]);
        let c = !fold(sum(hdrs.get(..s.iph)?, 0));
        hdrs.get_mut(10..12)?.copy_from_slice(&c.to_be_bytes());
    }
    let psum = fold(pseudo(hdrs, s, l4_len));
    let l4 = hdrs.get_mut(s.iph..)?;
    if s.proto == TCP {
        if psh {
            *l4.get_mut(13)? |= TCP_PSH;
        }
    } else {
        l4.get_mut(4..6)?
            .copy_from_slice(&u16::try_from(l4_len).ok()?.to_be_bytes());
    }
    let at = usize::from(csum_at);
    l4.get_mut(at..at + 2)?.copy_from_slice(&psum.to_be_bytes());
    Some(n)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// RFC 1071 in 16-bit words, independent of `sum`: the folded,
    /// uncomplemented sum (the `tso` tests use it too).
    pub(in crate::driver) fn sum16(data: &[u8], mut acc: u64) -> u16 {
        for c in data.chunks(2) {
            acc += u64::from(c[0]) << 8 | u64::from(c.get(1).copied().unwrap_or(0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn pseudo16(p: &[u8], v6: bool, proto: u8, len: usize) -> u64 {
        let addrs = if v6 { &p[8..40] } else { &p[12..20] };
        u64::from(sum16(addrs, 0)) + u64::from(proto) + len as u64
    }

    /// Fill in the IPv4 header checksum (if v4) and the transport
    /// checksum of a packet.
    fn finish(p: &mut [u8]) {
        let v6 = p[0] >> 4 == 6;
        let iph = if v6 { 40 } else { 20 };
        let proto = if v6 { p[6] } else { p[9] };
        if !v6 {
            p[10..12].fill(0);
            let c = !sum16(&p[..20], 0);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let at = iph + if proto == TCP { 16 } else { 6 };
        p[at..at + 2].fill(0);
        let mut c = !sum16(&p[iph..], pseudo16(p, v6, proto, p.len() - iph));
        if proto == UDP && c == 0 {
            c = 0xffff;
        }
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// A TCP segment of flow `flow` (source port 5000 + flow) with
    /// `payload` octets at `seq`, flags `flags`, IPv4 ID `id`.
    fn tcp(v6: bool, flow: u16, seq: u32, payload: usize, flags: u8, id: u16) -> Vec<u8> {
        let iph = if v6 { 40 } else { 20 };
        let total = iph + 20 + payload;
        let mut p = vec![0u8; total];
        if v6 {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            p[6] = TCP;
            p[7] = 64;
            p[8] = 0xfd;
            p[23] = 1;
            p[24] = 0xfd;
            p[39] = 2;
        } else {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&id.to_be_bytes());
            p[6] = 0x40;
            p[8] = 64;
            p[9] = TCP;
            p[12..16].copy_from_slice(&[10, 98, 0, 1]);
            p[16..20].copy_from_slice(&[10, 99, 0, 1]);
        }
        let t = &mut p[iph..];
        t[0..2].copy_from_slice(&(5000 + flow).to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&77u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&64000u16.to_be_bytes());
        for (i, b) in t[20..].iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(31).wrapping_add(seq) as u8;
        }
        finish(&mut p);
        p
    }

    fn udp4(flow: u16, payload: usize, id: u16) -> Vec<u8> {
        let total = 28 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[8] = 64;
        p[9] = UDP;
        p[12..16].copy_from_slice(&[10, 98, 0, 1]);
        p[16..20].copy_from_slice(&[10, 99, 0, 1]);
        p[20..22].copy_from_slice(&(6000 + flow).to_be_bytes());
        p[22..24].copy_from_slice(&4433u16.to_be_bytes());
        p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = (i * 7 + usize::from(id)) as u8;
        }
        finish(&mut p);
        p
    }

    /// Plan `pkts` (laid one after the other in one buffer, as in a read)
    /// and return the writes as the device would get them.
    fn plan(udp: bool, pkts: &[Vec<u8>]) -> (Vec<Vec<u8>>, Written) {
        let mut g = Gro::new(udp);
        let data: Vec<u8> = pkts.concat();
        let mut at = 0;
        for p in pkts {
            g.push(&data[at..at + p.len()], at);
            at += p.len();
        }
        let mut out = Vec::new();
        let done = g.write(&data, |iov| {
            out.push(
                iov.iter()
                    .flat_map(|s| s.iter().copied())
                    .collect::<Vec<u8>>(),
            );
            Ok(0)
        });
        assert!(g.is_empty());
        (out, done)
    }

    fn ne16(b: &[u8], at: usize) -> usize {
        usize::from(u16::from_ne_bytes([b[at], b[at + 1]]))
    }

    /// What the kernel makes of one write: its packets, as they were
    /// before merging (a GSO write cut at the GSO size, lengths, IPv4
    /// IDs, sequence numbers and checksums redone, PSH on the last only).
    fn resegment(w: &[u8]) -> Vec<Vec<u8>> {
        let (vnet, body) = w.split_at(VNET_LEN);
        if vnet[1] == 0 {
            assert_eq!(
                vnet, &[0u8; VNET_LEN],
                "a plain write has a header of zeros"
            );
            return vec![body.to_vec()];
        }
        assert_eq!(vnet[0], VNET_F_NEEDS_CSUM);
        let (hdr_len, gso, start, off) =
            (ne16(vnet, 2), ne16(vnet, 4), ne16(vnet, 6), ne16(vnet, 8));
        let v6 = body[0] >> 4 == 6;
        let proto = if v6 { body[6] } else { body[9] };
        assert_eq!(start, if v6 { 40 } else { 20 });
        assert_eq!(off, if proto == TCP { 16 } else { 6 });
        assert_eq!(
            vnet[1],
            match (proto, v6) {
                (TCP, false) => VNET_GSO_TCPV4,
                (TCP, true) => VNET_GSO_TCPV6,
                _ => VNET_GSO_UDP_L4,
            }
        );
        if v6 {
            assert_eq!(be16(body, 4).map(usize::from), Some(body.len() - 40));
        } else {
            assert_eq!(be16(body, 2).map(usize::from), Some(body.len()));
            assert_eq!(sum16(&body[..20], 0), 0xffff, "merged IPv4 header checksum");
        }
        // The partial checksum: the pseudo-header sum of the merged
        // packet, for the kernel to complete.
        let l4_len = body.len() - start;
        let field = u64::from(u16::from_be_bytes([
            body[start + off],
            body[start + off + 1],
        ]));
        assert_eq!(field as u16, sum16(&[], pseudo16(body, v6, proto, l4_len)));
        let (hdrs, payload) = body.split_at(hdr_len);
        let chunks: Vec<&[u8]> = payload.chunks(gso).collect();
        let n = chunks.len();
        assert!(n > 1, "a GSO write of one segment");
        let id = be16(hdrs, 4).unwrap_or(0);
        let seq = be32(hdrs, start + 4).unwrap_or(0);
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut p = [hdrs, c].concat();
                let total = p.len();
                if v6 {
                    p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
                } else {
                    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                    p[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
                }
                if proto == TCP {
                    let s = seq.wrapping_add((i * gso) as u32);
                    p[start + 4..start + 8].copy_from_slice(&s.to_be_bytes());
                    if i + 1 < n {
                        p[start + 13] &= !TCP_PSH;
                    }
                } else {
                    p[start + 4..start + 6]
                        .copy_from_slice(&((total - start) as u16).to_be_bytes());
                }
                finish(&mut p);
                p
            })
            .collect()
    }

    fn all(writes: &[Vec<u8>]) -> Vec<Vec<u8>> {
        writes.iter().flat_map(|w| resegment(w)).collect()
    }

    #[test]
    fn in_order_segments_are_one_gso_write_that_cuts_back_into_them() {
        for v6 in [false, true] {
            let mss = 1388;
            let mut segs: Vec<_> = (0..45u32)
                .map(|i| tcp(v6, 0, 1000 + i * mss as u32, mss, TCP_ACK, i as u16))
                .collect();
            // The last is shorter and pushed.
            segs.push(tcp(
                v6,
                0,
                1000 + 45 * mss as u32,
                100,
                TCP_ACK | TCP_PSH,
                45,
            ));
            let (writes, done) = plan(false, &segs);
            assert_eq!(writes.len(), 1, "v6 {v6}");
            assert_eq!(
                done,
                Written {
                    writes: 1,
                    merged: 1,
                    merged_packets: 46,
                    failed: 0,
                    last_error: None
                }
            );
            assert_eq!(writes[0].len(), VNET_LEN + segs[0].len() + 44 * mss + 100);
            assert_eq!(all(&writes), segs);
        }
    }

    #[test]
    fn merged_writes_stay_within_the_ip_length() {
        let mss = 1388;
        let segs: Vec<_> = (0..60u32)
            .map(|i| tcp(false, 0, i * mss as u32, mss, TCP_ACK, i as u16))
            .collect();
        let (writes, _) = plan(false, &segs);
        assert_eq!(writes.len(), 2);
        assert!(writes.iter().all(|w| w.len() - VNET_LEN <= IP_MAX));
        assert_eq!(all(&writes), segs);
    }

    #[test]
    fn what_cannot_join_is_written_alone_and_in_order() {
        let mss = 1000;
        let seg = |i: u32| tcp(false, 0, i * mss as u32, mss, TCP_ACK, i as u16);
        // A gap: segment 3 is missing.
        let gap = vec![seg(0), seg(1), seg(2), seg(4), seg(5)];
        let (w, _) = plan(false, &gap);
        assert_eq!(w.len(), 2);
        assert_eq!(all(&w), gap);
        // A bad checksum: written alone (for the kernel to drop); it
        // closes the run, so the next segment starts a new one.
        let mut bad = seg(2);
        bad[100] ^= 1;
        let pkts = vec![seg(0), seg(1), bad.clone(), seg(3), seg(4)];
        let (w, done) = plan(false, &pkts);
        assert_eq!(done.writes, 3);
        assert_eq!(w[1][VNET_LEN..], bad[..]);
        assert_eq!(all(&w), pkts);
        // A pure ACK of the same flow and a FIN: never merged, never
        // overtaken.
        let ack = tcp(false, 0, 3 * mss as u32, 0, TCP_ACK, 9);
        let fin = tcp(false, 0, 5 * mss as u32, 0, TCP_ACK | 0x01, 9);
        let pkts = vec![seg(0), seg(1), seg(2), ack, seg(3), seg(4), fin];
        let (w, _) = plan(false, &pkts);
        assert_eq!(w.len(), 4);
        assert_eq!(all(&w), pkts);
        // A longer segment after a shorter one.
        let short = tcp(false, 0, 0, 500, TCP_ACK, 0);
        let pkts = vec![short, tcp(false, 0, 500, mss, TCP_ACK, 1)];
        assert_eq!(plan(false, &pkts).0.len(), 2);
        // Different TTL: not merged.
        let mut ttl = seg(1);
        ttl[8] = 63;
        finish(&mut ttl);
        let pkts = vec![seg(0), ttl];
        assert_eq!(plan(false, &pkts).0.len(), 2);
    }

    #[test]
    fn interleaved_flows_merge_each_and_keep_their_order() {
        let mss = 1200;
        let mut pkts = Vec::new();
        for i in 0..20u32 {
            for f in 0..3u16 {
                pkts.push(tcp(false, f, i * mss as u32, mss, TCP_ACK, i as u16));
            }
        }
        let (w, done) = plan(false, &pkts);
        assert_eq!((done.writes, done.merged), (3, 3));
        let back = all(&w);
        for f in 0..3u16 {
            let of = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
                v.iter()
                    .filter(|p| be16(p, 20) == Some(5000 + f))
                    .cloned()
                    .collect()
            };
            assert_eq!(of(&back), of(&pkts));
        }
    }

    #[test]
    fn udp_merges_only_where_the_device_takes_it() {
        let pkts: Vec<_> = (0..10u16)
            .map(|i| udp4(0, 1200, i))
            .chain([udp4(0, 300, 10)])
            .collect();
        let (w, done) = plan(true, &pkts);
        assert_eq!((done.writes, done.merged), (1, 1));
        assert_eq!(all(&w), pkts);
        let (w, done) = plan(false, &pkts);
        assert_eq!((done.writes, done.merged), (11, 0));
        assert_eq!(all(&w), pkts);
        // No UDP checksum (IPv4): written alone.
        let mut none = udp4(0, 1200, 1);
        none[26..28].fill(0);
        let (w, _) = plan(true, &[udp4(0, 1200, 0), none.clone()]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1][VNET_LEN..], none[..]);
    }

    /// Any bytes: no panic, and every packet comes back, in order within
    /// its flow (each write cut back as the kernel would).
    #[test]
    fn random_mixes_come_back_whole() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300 {
            let mut pkts = Vec::new();
            let mut seq = [0u32; 3];
            let n = next() % 40;
            for i in 0..n {
                let f = (next() % 3) as usize;
                let len = [0, 1, 700, 1388, 1388, 1388][(next() % 6) as usize];
                let p = match next() % 10 {
                    0 => udp4(f as u16, len.max(1), i as u16),
                    1 => {
                        // Garbage of some length.
                        (0..next() % 80).map(|_| next() as u8).collect()
                    }
                    2 => {
                        let mut p = tcp(false, f as u16, seq[f], len, TCP_ACK, i as u16);
                        let at = (next() as usize) % p.len();
                        p[at] ^= 1 << (next() % 8);
                        p
                    }
                    3 => tcp(
                        false,
                        f as u16,
                        seq[f].wrapping_add(1),
                        len,
                        TCP_ACK,
                        i as u16,
                    ),
                    4 => tcp(false, f as u16, seq[f], len, TCP_ACK | TCP_PSH, i as u16),
                    _ => tcp(false, f as u16, seq[f], len, TCP_ACK, i as u16),
                };
                seq[f] = seq[f].wrapping_add(len as u32);
                if !p.is_empty() {
                    pkts.push(p);
                }
            }
            let (w, _) = plan(next() % 2 == 0, &pkts);
            // IPv4 IDs are made anew when the kernel cuts a GSO write
            // (consecutive from the first): compared without them.
            let no_id = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
                v.iter()
                    .map(|p| {
                        let mut p = p.clone();
                        if p.len() >= 20 && p[0] == 0x45 {
                            p[4..6].fill(0);
                            p[10..12].fill(0);
                        }
                        p
                    })
                    .collect()
            };
            let back = no_id(&all(&w));
            let pkts = no_id(&pkts);
            assert_eq!(back.len(), pkts.len(), "round {round}");
            let key = |p: &Vec<u8>| p.get(12..24).map(<[u8]>::to_vec);
            let mut flows: Vec<Option<Vec<u8>>> = pkts.iter().map(key).collect();
            flows.sort();
            flows.dedup();
            for k in flows {
                let of = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
                    v.iter().filter(|p| key(p) == k).cloned().collect()
                };
                assert!(
                    of(&back) == of(&pkts),
                    "round {round}: flow {k:?} came back otherwise"
                );
            }
        }
    }
}
