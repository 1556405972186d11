//! ESP out: one inner packet encapsulated under a child SA (RFC 4303 3.3)
//! and sent to the peer, ESP in UDP from the NAT-T socket (RFC 3948 2.1,
//! no marker) or raw ESP (IP protocol 50). Used by `Channel::send` and by
//! the TUN datapath alike.
//!
//! TUN bursts are gathered: consecutive ESP-in-UDP packets for the same
//! peer and SA are encapsulated straight into one buffer, back to back at
//! the size of the first (the last may be shorter), and leave with one
//! `sendmsg` and `UDP_SEGMENT` (UDP GSO, [`os::send_gso`]) when the burst
//! ends or the next packet does not fit. Sequence numbers are taken in
//! packet order at encapsulation (RFC 4303 3.3.3) and the buffer leaves in
//! that order. If the kernel refuses segmentation (`EIO`/`EINVAL`), that
//! buffer goes out one datagram per send and the refusal is counted
//! (`Status::gso_refused`); after [`MAX_GSO_REFUSALS`] refusals in a row
//! segmentation is no longer tried. Raw ESP packets are gathered the same
//! way and leave with one `sendmmsg` on the raw socket
//! ([`os::RawEsp::try_send_batch`]; raw sockets have no segmentation
//! offload); what the kernel does not take is a counted drop.
//!
//! Every packet is written where it is sealed (the payload offset of its
//! slot) and sealed in place: a TUN read's segments by `tso`, a channel's
//! datagram built there, any other packet copied there once.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{ChildState, Driver};
use crate::os;

/// Refusals of `UDP_SEGMENT` in a row after which every packet is sent on
/// its own.
const MAX_GSO_REFUSALS: u32 = 8;

/// Why a packet did not leave.
#[derive(Debug)]
pub(super) enum EspOutError {
    /// The child SA is gone.
    ChildGone,
    /// `Sad::encapsulate` refused (sequence numbers exhausted ...).
    Encap(esp::EncapError),
    /// A raw ESP SA, but no raw ESP socket (channels without TUN).
    NoRawSocket,
    /// A raw ESP SA whose peer is of the other address family.
    Family,
    /// The socket refused the datagram.
    Io(std::io::Error),
    /// The inner packet could not be written where it is sealed (a
    /// segment that did not come out as long as announced).
    Inner,
}

impl EspOutError {
    /// The drop reason of the TUN datapath.
    pub(super) fn tun_reason(&self) -> &'static str {
        match self {
            Self::ChildGone => "TUN: child SA gone",
            Self::Encap(_) => "TUN: ESP encapsulation failed",
            Self::NoRawSocket => "TUN: SA without UDP encapsulation and no raw ESP socket",
            Self::Family => "TUN: peer of another address family than the raw ESP socket",
            Self::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                "TUN: ESP socket send buffer full"
            }
            Self::Io(_) => "TUN: ESP send failed",
            Self::Inner => "TUN: segment not written",
        }
    }
}

/// ESP-in-UDP packets waiting to leave together (see the module doc).
#[derive(Debug)]
pub(super) struct EspBatch {
    /// [`os::GSO_MAX_BYTES`] long once used (allocated on first use).
    buf: Vec<u8>,
    /// Octets used.
    len: usize,
    /// Size of every packet but the last.
    seg: usize,
    count: usize,
    /// The last packet was shorter than `seg`: nothing may follow it.
    closed: bool,
    dest: Option<SocketAddr>,
    /// Raw ESP (leaves with one `sendmmsg` on the raw socket) rather than
    /// ESP in UDP (one UDP GSO send).
    raw: bool,
    child: ike::ChildSaId,
    inner_bytes: u64,
    /// Whether `UDP_SEGMENT` is still tried.
    pub(super) gso: bool,
    refusals_in_row: u32,
    /// Sends the kernel refused to segment (counted for `Status`).
    pub(super) refused: u64,
}

impl Default for EspBatch {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            len: 0,
            seg: 0,
            count: 0,
            closed: false,
            dest: None,
            raw: false,
            child: ike::ChildSaId(0),
            inner_bytes: 0,
            gso: true,
            refusals_in_row: 0,
            refused: 0,
        }
    }
}

impl EspBatch {
    /// Whether a packet of `len` octets for `dest` under `child` may join.
    fn fits(&self, dest: SocketAddr, child: ike::ChildSaId, len: usize) -> bool {
        self.count == 0
            || (self.dest == Some(dest)
                && self.child == child
                && !self.closed
                && len <= self.seg
                && self.count < os::GSO_MAX_SEGMENTS
                && self.len + len <= os::GSO_MAX_BYTES)
    }

    /// Room for the next packet.
    fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.buf.len() < os::GSO_MAX_BYTES {
            self.buf.resize(os::GSO_MAX_BYTES, 0);
        }
        self.buf.get_mut(self.len..self.len + len)
    }

    /// The packet written into [`Self::slot`] is `n` octets long.
    fn commit(
        &mut self,
        dest: SocketAddr,
        raw: bool,
        child: ike::ChildSaId,
        n: usize,
        inner: usize,
    ) {
        if self.count == 0 {
            self.dest = Some(dest);
            self.raw = raw;
            self.child = child;
            self.seg = n;
            self.closed = false;
            self.inner_bytes = 0;
        } else if n < self.seg {
            self.closed = true;
        }
        self.len += n;
        self.count += 1;
        self.inner_bytes += inner as u64;
    }

    fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
        self.closed = false;
        self.dest = None;
        self.inner_bytes = 0;
    }
}

/// What a flush of the batch touches besides the batch: fields of the
/// driver, borrowed one by one so that the SAD may stay borrowed (by a
/// [`esp::Sealer`]) while a full batch leaves.
struct Flush<'a> {
    sock: &'a tokio::net::UdpSocket,
    raw: Option<&'a os::RawEsp>,
    children: &'a mut super::ChildMap<Box<ChildState>>,
    drops: &'a mut HashMap<&'static str, u64>,
}

/// The inner packets one call of [`Driver::esp_out`] encapsulates, in
/// order: a packet as it is, or the segments of one TSO read
/// ([`super::tso::Tso`]), each written straight where it is sealed.
pub(super) trait Inner {
    /// How many packets.
    fn count(&self) -> usize;
    /// Octets of packet `i`.
    fn len(&self, i: usize) -> usize;
    /// Write packet `i` into `out` (exactly [`Self::len`]`(i)` octets);
    /// false if it could not be.
    fn write(&self, i: usize, out: &mut [u8]) -> bool;
}

impl Inner for [u8] {
    fn count(&self) -> usize {
        1
    }
    fn len(&self, _: usize) -> usize {
        <[u8]>::len(self)
    }
    fn write(&self, _: usize, out: &mut [u8]) -> bool {
        match out.get_mut(..<[u8]>::len(self)) {
            Some(o) => {
                o.copy_from_slice(self);
                true
            }
            None => false,
        }
    }
}

impl Inner for super::tso::Tso<'_> {
    fn count(&self) -> usize {
        super::tso::Tso::count(self)
    }
    fn len(&self, i: usize) -> usize {
        self.seg_len(i)
    }
    fn write(&self, i: usize, out: &mut [u8]) -> bool {
        super::tso::Tso::write(self, i, out)
    }
}

/// A channel's datagram as the inner UDP packet that carries it, built
/// where it is sealed (`esp::inner::build_udp`); why it could not be
/// built is kept for the caller's error.
pub(super) struct UdpInner<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    data: &'a [u8],
    error: std::cell::Cell<Option<esp::inner::InnerError>>,
}

impl<'a> UdpInner<'a> {
    pub(super) fn new(src: SocketAddr, dst: SocketAddr, data: &'a [u8]) -> Self {
        Self {
            src,
            dst,
            data,
            error: std::cell::Cell::new(None),
        }
    }

    /// Why the packet could not be built, if it could not.
    pub(super) fn error(&self) -> Option<esp::inner::InnerError> {
        self.error.get()
    }
}

impl Inner for UdpInner<'_> {
    fn count(&self) -> usize {
        1
    }
    fn len(&self, _: usize) -> usize {
        esp::inner::udp_packet_len(self.src.is_ipv4(), self.data.len())
    }
    fn write(&self, _: usize, out: &mut [u8]) -> bool {
        match esp::inner::build_udp(self.src, self.dst, self.data, out) {
            Ok(n) => n == out.len(),
            Err(e) => {
                self.error.set(Some(e));
                false
            }
        }
    }
}

/// Why some of the packets of one [`Driver::esp_out`] call did not leave:
/// the reason and how many.
#[derive(Debug)]
pub(super) struct NotSent {
    pub(super) error: EspOutError,
    pub(super) packets: u64,
}

impl Driver {
    /// RFC 4303 3.3: encapsulate the packets of `inner` (next header
    /// `next_header`) under child SA `sa` and send them to the peer. Each
    /// is written by `inner` at the SA's payload offset in the buffer it
    /// leaves from (the batch, or `out`) and sealed there, in place
    /// (`Sealer::encapsulate_in_place`). With `gather`, ESP-in-UDP packets
    /// may wait in the batch until [`Self::flush_esp`] (their send errors
    /// are then counted there); otherwise each is sent now and the first
    /// error returned, with the packets it leaves unsent. The SA is looked
    /// up once ([`esp::Sad::sealer`]) for all of them.
    pub(super) fn esp_out<I: Inner + ?Sized>(
        &mut self,
        sa: ike::ChildSaId,
        next_header: u8,
        inner: &I,
        gather: bool,
    ) -> Result<(), NotSent> {
        let count = inner.count();
        let fail = |error, done: usize| NotSent {
            error,
            packets: (count - done) as u64,
        };
        // As the responder of a rekey, the old SA until the peer has the
        // new one (RFC 7296 2.8).
        let sa = self.sending_sa(sa);
        let Some(c) = self.children.get(&sa) else {
            return Err(fail(EspOutError::ChildGone, 0));
        };
        // The outbound SA is filed under the child's inbound SPI
        // (`on_child_up`: outbound SPIs of different peers may be equal).
        let (key, remote, udp) = (c.inbound_spi, c.remote, c.udp_encap);
        // The driver owns its SAD: plain counters (`sealer_mut`).
        let mut sealer = self
            .sad
            .sealer_mut(key)
            .map_err(|e| fail(EspOutError::Encap(e), 0))?;
        let off = sealer.payload_offset();
        // Raw ESP gathers too (one `sendmmsg`), where the raw socket is of
        // the peer's family.
        let raw_ok = !udp
            && self
                .tun
                .as_ref()
                .and_then(|t| t.raw.as_ref())
                .is_some_and(|r| r.is_v6() == remote.is_ipv6());
        let batched = gather && ((udp && self.esp_batch.gso) || raw_ok);
        for i in 0..count {
            let n = inner.len(i);
            let len = sealer.encapsulated_len(n);
            let gathered = batched && len <= os::GSO_MAX_BYTES;
            if !(gathered && self.esp_batch.fits(remote, sa, len)) {
                // What is gathered leaves first: to make room, or before a
                // packet sent now (same SA, in order).
                Flush::of(
                    &self.natt_sock,
                    self.tun.as_ref(),
                    &mut self.children,
                    &mut self.drops,
                )
                .batch(&mut self.esp_batch);
            }
            // (A batch it fits, or an empty one, has room for it.)
            let slot = if gathered {
                self.esp_batch.slot(len)
            } else {
                None
            };
            if let Some(slot) = slot {
                if !slot
                    .get_mut(off..off + n)
                    .is_some_and(|p| inner.write(i, p))
                {
                    return Err(fail(EspOutError::Inner, i));
                }
                let sealed = sealer
                    .encapsulate_in_place(next_header, slot, n)
                    .map_err(|e| fail(EspOutError::Encap(e), i))?;
                self.esp_batch.commit(remote, !udp, sa, sealed, n);
                continue;
            }
            // One packet, now.
            let Some(room) = self.out.get_mut(off..off + n) else {
                let too_long = esp::EncapError::BufferTooSmall { needed: len };
                return Err(fail(EspOutError::Encap(too_long), i));
            };
            if !inner.write(i, room) {
                return Err(fail(EspOutError::Inner, i));
            }
            let sealed = sealer
                .encapsulate_in_place(next_header, &mut self.out, n)
                .map_err(|e| fail(EspOutError::Encap(e), i))?;
            let esp = self.out.get(..sealed).unwrap_or_default();
            let sent = if udp {
                self.natt_sock.try_send_to(esp, remote)
            } else if let Some(raw) = self.tun.as_ref().and_then(|t| t.raw.as_ref()) {
                if remote.is_ipv6() != raw.is_v6() {
                    return Err(fail(EspOutError::Family, i));
                }
                raw.try_send(esp, remote.ip())
            } else {
                return Err(fail(EspOutError::NoRawSocket, i));
            };
            sent.map_err(|e| fail(EspOutError::Io(e), i))?;
            credit_out(&mut self.children, sa, 1, n as u64);
        }
        Ok(())
    }

    /// Send the gathered ESP packets: in UDP, one GSO send, or one
    /// datagram alone, per datagram if the kernel refuses segmentation;
    /// raw, one `sendmmsg`. (`esp_out` builds its `Flush` itself: its
    /// sealer keeps the SAD borrowed.)
    pub(super) fn flush_esp(&mut self) {
        Flush::of(
            &self.natt_sock,
            self.tun.as_ref(),
            &mut self.children,
            &mut self.drops,
        )
        .batch(&mut self.esp_batch);
    }
}

fn credit_out(
    children: &mut super::ChildMap<Box<ChildState>>,
    sa: ike::ChildSaId,
    packets: u64,
    bytes: u64,
) {
    if let Some(c) = children.get_mut(&sa) {
        c.traffic.packets_out += packets;
        c.traffic.bytes_out += bytes;
    }
}

impl<'a> Flush<'a> {
    /// The driver's fields a flush touches (borrowed one by one: the SAD
    /// may stay borrowed by a sealer meanwhile).
    fn of(
        sock: &'a tokio::net::UdpSocket,
        tun: Option<&'a super::tun::TunState>,
        children: &'a mut super::ChildMap<Box<ChildState>>,
        drops: &'a mut HashMap<&'static str, u64>,
    ) -> Self {
        Self {
            sock,
            raw: tun.and_then(|t| t.raw.as_deref()),
            children,
            drops,
        }
    }

    /// Send gathered raw ESP packets: one `sendmmsg`; what the kernel did
    /// not take is counted as dropped (its buffer was full).
    fn raw_batch(&mut self, b: &EspBatch, dest: SocketAddr) {
        let count = b.count as u64;
        let data = b.buf.get(..b.len).unwrap_or_default();
        let Some(raw) = self.raw else {
            self.drops_counted(
                "TUN: SA without UDP encapsulation and no raw ESP socket",
                count,
            );
            return;
        };
        match raw.try_send_batch(data, b.seg, dest.ip()) {
            Ok(sent) => {
                let sent = (sent as u64).min(count);
                let per = b.inner_bytes / count.max(1);
                credit_out(self.children, b.child, sent, per * sent);
                if sent < count {
                    self.drops_counted("TUN: ESP socket send buffer full", count - sent);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.drops_counted("TUN: ESP socket send buffer full", count);
            }
            Err(e) => {
                tracing::debug!(error = %e, "raw ESP send failed");
                self.drops_counted("TUN: ESP send failed", count);
            }
        }
    }

    fn drops_counted(&mut self, reason: &'static str, n: u64) {
        *self.drops.entry(reason).or_default() += n;
        tracing::debug!(reason, n, "datagrams dropped");
    }

    /// Send the gathered packets of `b` and empty it.
    fn batch(&mut self, b: &mut EspBatch) {
        if b.count == 0 {
            return;
        }
        let data = b.buf.get(..b.len).unwrap_or_default();
        let Some(dest) = b.dest else {
            b.clear();
            return;
        };
        let count = b.count as u64;
        if b.raw {
            self.raw_batch(b, dest);
            b.clear();
            return;
        }
        let r = if b.count == 1 {
            self.sock.try_send_to(data, dest)
        } else {
            os::send_gso(self.sock, data, b.seg, dest)
        };
        match r {
            Ok(_) => {
                b.refusals_in_row = 0;
                credit_out(self.children, b.child, count, b.inner_bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.drops_counted("TUN: ESP socket send buffer full", count);
            }
            Err(e)
                if b.count > 1
                    && matches!(e.raw_os_error(), Some(code) if code == nix::libc::EIO || code == nix::libc::EINVAL) =>
            {
                b.refused += 1;
                b.refusals_in_row += 1;
                if b.refusals_in_row >= MAX_GSO_REFUSALS {
                    b.gso = false;
                    tracing::warn!(error = %e, "UDP GSO refused repeatedly: one send per ESP packet from now on");
                } else {
                    tracing::debug!(error = %e, "UDP GSO refused: this batch one send per ESP packet");
                }
                let (mut ok, mut full, mut failed) = (0u64, 0u64, 0u64);
                let mut inner_ok = 0u64;
                let per = b.inner_bytes / count.max(1);
                for d in data.chunks(b.seg.max(1)) {
                    match self.sock.try_send_to(d, dest) {
                        Ok(_) => {
                            ok += 1;
                            inner_ok += per;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => full += 1,
                        Err(_) => failed += 1,
                    }
                }
                credit_out(self.children, b.child, ok, inner_ok);
                if full > 0 {
                    self.drops_counted("TUN: ESP socket send buffer full", full);
                }
                if failed > 0 {
                    self.drops_counted("TUN: ESP send failed", failed);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "ESP send failed");
                self.drops_counted("TUN: ESP send failed", count);
            }
        }
        b.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Equal sizes join; a shorter packet ends the train; another peer,
    /// another SA, a longer packet, or the segment and byte limits start a
    /// new one.
    #[test]
    fn batch_rules() {
        let (p, q) = (addr("192.0.2.1:4500"), addr("192.0.2.2:4500"));
        let (a, b) = (ike::ChildSaId(1), ike::ChildSaId(2));
        let mut bt = EspBatch::default();
        assert!(bt.fits(p, a, 1400));
        bt.slot(1400).unwrap();
        bt.commit(p, false, a, 1400, 1300);
        assert!(bt.fits(p, a, 1400));
        assert!(!bt.fits(q, a, 1400));
        assert!(!bt.fits(p, b, 1400));
        assert!(!bt.fits(p, a, 1401));
        assert!(bt.fits(p, a, 80));
        bt.slot(80).unwrap();
        bt.commit(p, false, a, 80, 20);
        assert!(!bt.fits(p, a, 80), "nothing may follow a shorter segment");
        assert_eq!(
            (bt.count, bt.len, bt.seg, bt.inner_bytes),
            (2, 1480, 1400, 1320)
        );
        bt.clear();
        assert!(bt.fits(q, b, 1500));
        for _ in 0..os::GSO_MAX_SEGMENTS {
            assert!(bt.fits(p, a, 100));
            bt.slot(100).unwrap();
            bt.commit(p, false, a, 100, 50);
        }
        assert!(!bt.fits(p, a, 100), "segment limit");
        bt.clear();
        let big = 1500;
        while bt.len + big <= os::GSO_MAX_BYTES {
            bt.slot(big).unwrap();
            bt.commit(p, false, a, big, big);
        }
        assert!(!bt.fits(p, a, big), "byte limit");
        assert!(bt.slot(big).is_none());
    }
}
