//! The TUN datapath of the driver: the OS stack's packets in and out of
//! the TUN device, protected by the child SAs IKE negotiated.
//!
//! Outbound (device -> peer): parse the IP header ([`crate::packet`]),
//! look up the child SA whose local and remote selectors admit the packet
//! (RFC 4301 5.1 SPD/SAD lookup, cached per flow and invalidated whenever
//! a child SA comes or goes), watch the flow for R18, run the same latch
//! checks as `Channel::send` (`select_outbound`: a latched flow leaves only
//! under an SA matching its latch, R5/R6/R9), encapsulate, and send ESP in
//! UDP from the NAT-T socket (gathered per burst for one UDP GSO send,
//! `esp_out`) or raw ESP. A packet no SA covers is dropped
//! and counted, never sent in the clear (RFC 4301 5.1: DISCARD when no
//! SA; R6).
//!
//! Inbound (peer -> device): every decapsulated inner packet that passes
//! `check_inbound` with the tag of the SA that protected it (R5, R6, R17)
//! is written to the device.
//!
//! No allocation per packet: the driver's buffers are reused, drop reasons
//! are static strings, the flow cache is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use latch::{ConnectionRequest, FiveTuple, LatchId};

use super::gro::{Gro, VNET_LEN};
use super::tso::{self, Read, Tso};
use super::{ChildState, Driver};
use crate::flows::{FlowAction, FlowWatcher, Way};
use crate::latching::{lock, BurstLatch, Shared};
use crate::os::{self, RawEsp, Routes};
use crate::packet::{self, ts_admits, PacketInfo};
use crate::{Error, TunConfig};

/// Flows remembered by the outbound lookup cache before it starts afresh.
const FLOW_CACHE_MAX: usize = 65_536;
/// Consecutive failed reads after which the device is taken as gone and
/// no longer read (instead of spinning on an error).
const MAX_READ_ERRORS: u32 = 1000;
/// Capacity of each offload write buffer: what tun-rs's GRO requires to
/// coalesce up to the largest IP packet into it (`2 * header + 65 535`).
const GRO_WRITE_CAPACITY: usize = 2 * tun_rs::VIRTIO_NET_HDR_LEN + u16::MAX as usize;
/// Packets read from a ready device or socket in one go.
pub(super) const BURST: usize = 64;

/// What `Endpoint::bind` opens before the driver starts.
pub(crate) struct TunSetup {
    dev: Arc<tun_rs::AsyncDevice>,
    name: String,
    raw: Option<RawEsp>,
    cfg: TunConfig,
}

impl TunSetup {
    /// Create the device and, if asked, the raw ESP socket of the family
    /// of the endpoint's addresses (`v6`).
    pub(crate) async fn open(cfg: &TunConfig, v6: bool) -> Result<Self, Error> {
        let (dev, offload) = os::open_tun(cfg).await?;
        let name = dev.name().unwrap_or_else(|_| cfg.name.clone());
        let cfg = &TunConfig {
            offload,
            ..cfg.clone()
        };
        let raw = if cfg.raw_esp {
            Some(RawEsp::open(v6).map_err(|e| Error::Tun {
                name: name.clone(),
                reason: format!("cannot open the raw ESP socket (IP protocol 50): {e}"),
            })?)
        } else {
            None
        };
        Ok(Self {
            dev,
            name,
            raw,
            cfg: cfg.clone(),
        })
    }
}

/// The selectors an outbound lookup depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
}

/// The driver's TUN state.
pub(super) struct TunState {
    pub(super) dev: Arc<tun_rs::AsyncDevice>,
    pub(super) raw: Option<Arc<RawEsp>>,
    routes: Option<Routes>,
    watcher: Option<FlowWatcher>,
    cache: HashMap<FlowKey, ike::ChildSaId>,
    /// The last lookup: the segments of one TSO read are one flow, so
    /// most packets skip hashing (cleared with `cache`).
    last: Option<(FlowKey, ike::ChildSaId)>,
    /// Reused for timed-out flows.
    actions: Vec<FlowAction>,
    /// IFF_VNET_HDR: every write starts with a virtio-net header.
    offload: bool,
    /// Whether the device is still read (false after
    /// [`MAX_READ_ERRORS`] failed reads in a row).
    pub(super) reading: bool,
    pub(super) read_errors: u32,
    /// Offload: decapsulated packets of a burst waiting to be written
    /// together (each after room for its virtio-net header), so that
    /// in-order TCP segments are coalesced into one write (GRO).
    writes: Vec<Vec<u8>>,
    queued: usize,
    gro: tun_rs::GROTable,
    /// Offload, UDP GRO reads: the writes of one read's packets, planned
    /// by our own GRO and gathered straight from the read's buffer.
    plan: Gro,
    /// Writes `plan` merged, and the packets they carried
    /// (`Status::tun_merged_writes`, `tun_merged_packets`).
    pub(super) merged_writes: u64,
    pub(super) merged_packets: u64,
    /// Reads cut into segments (`tso`), and the segments
    /// (`Status::tun_cut_reads`, `tun_cut_segments`).
    pub(super) cut_reads: u64,
    pub(super) cut_segments: u64,
    /// Reused: the decapsulated packets of one UDP GRO read, between the
    /// passes of `on_natt_gro`.
    staged: Vec<Staged>,
}

/// A decapsulated inner packet of a UDP GRO read, waiting for its latch
/// check: where it lies in the read's buffer, its SA, its parse.
pub(super) struct Staged {
    start: usize,
    len: usize,
    tag: u64,
    info: PacketInfo,
    five: FiveTuple,
    /// Its SA alone passes it (`BurstLatch::sa_admits`), at the epoch the
    /// burst's staged packets were judged at.
    admitted: bool,
}

impl TunState {
    /// A child SA was installed: route its remote selectors into the
    /// device; lookups start afresh.
    pub(super) fn child_added(&mut self, c: &ChildState) {
        self.cache.clear();
        self.last = None;
        if let Some(r) = self.routes.as_mut() {
            r.add(&c.remote_ts, c.remote.ip());
        }
    }

    /// A child SA is gone: its routes (unless another SA needs them), and
    /// the lookup cache.
    pub(super) fn child_removed(&mut self, c: &ChildState) {
        self.cache.clear();
        self.last = None;
        if let Some(r) = self.routes.as_mut() {
            r.remove(&c.remote_ts, c.remote.ip());
        }
    }

    pub(super) fn new(setup: TunSetup) -> Self {
        let udp_gso = setup.dev.udp_gso();
        Self {
            routes: setup.cfg.routes.then(|| Routes::new(setup.name.clone())),
            watcher: setup
                .cfg
                .latch_flows
                .then(|| FlowWatcher::new(setup.cfg.udp_idle)),
            dev: setup.dev,
            raw: setup.raw.map(Arc::new),
            cache: HashMap::new(),
            last: None,
            actions: Vec::new(),
            offload: setup.cfg.offload,
            reading: true,
            read_errors: 0,
            writes: Vec::new(),
            queued: 0,
            staged: Vec::new(),
            gro: tun_rs::GROTable::default(),
            plan: Gro::new(udp_gso),
            merged_writes: 0,
            merged_packets: 0,
            cut_reads: 0,
            cut_segments: 0,
        }
    }
}

/// Put one packet into an offload write buffer, after room for the
/// virtio-net header tun-rs writes in front.
fn load_write_buffer(b: &mut Vec<u8>, pkt: &[u8]) {
    b.clear();
    b.resize(tun_rs::VIRTIO_NET_HDR_LEN, 0);
    b.extend_from_slice(pkt);
}

/// The buffer the device is read into, owned by the driver's loop: one
/// read, with its virtio-net header when offload is on.
pub(super) struct TunBufs {
    pub(super) buf: Vec<u8>,
}

impl TunBufs {
    pub(super) fn new(tun: Option<&TunState>) -> Self {
        let len = match tun {
            Some(_) => super::MAX_DATAGRAM + VNET_LEN,
            None => 0,
        };
        Self {
            buf: vec![0u8; len],
        }
    }
}

/// Read from the device: one packet of the OS stack (with offload, up to
/// 64 KiB of TCP or UDP for us to cut, `tso`).
pub(super) async fn tun_recv(
    dev: Option<&tun_rs::AsyncDevice>,
    b: &mut TunBufs,
) -> std::io::Result<usize> {
    match dev {
        Some(d) => d.recv(&mut b.buf).await,
        None => std::future::pending().await,
    }
}

/// [`tun_recv`] without waiting.
pub(super) fn tun_try_recv(dev: &tun_rs::AsyncDevice, b: &mut TunBufs) -> std::io::Result<usize> {
    dev.try_recv(&mut b.buf)
}

pub(super) async fn raw_recv(
    raw: Option<&RawEsp>,
    buf: &mut [u8],
) -> std::io::Result<(std::ops::Range<usize>, IpAddr)> {
    match raw {
        Some(r) => r.recv(buf).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// One read of the device (with offload on, its virtio-net header
    /// first): a packet of the OS stack, sent on as it is, or cut into
    /// segments written straight into the ESP send buffer (`tso`).
    pub(super) fn on_tun_read(&mut self, buf: &mut [u8]) {
        if !self.tun.as_ref().is_some_and(|t| t.offload) {
            self.on_tun_packet(buf, None);
            return;
        }
        match tso::read(buf) {
            Ok(Read::One(pkt)) => self.on_tun_packet(pkt, None),
            Ok(Read::Segments(t)) => {
                if let Some(tun) = self.tun.as_mut() {
                    tun.cut_reads += 1;
                    tun.cut_segments += t.count() as u64;
                }
                self.on_tun_packet(t.packet(), Some(&t));
            }
            Err(reason) => {
                tracing::debug!(reason, "TUN read dropped");
                self.drop_counted(reason);
            }
        }
    }

    /// One packet the OS stack wrote into the device, or (`cut`) one to
    /// cut into segments. The outbound decision is made once for the
    /// packet as the stack wrote it (its segments are one flow; its TCP
    /// flags are theirs together): SPD/SAD lookup, R18 flow watch, latch
    /// check, SPD check. A drop before the cut counts every segment.
    fn on_tun_packet(&mut self, pkt: &[u8], cut: Option<&Tso<'_>>) {
        let packets = cut.map_or(1, |t| t.count() as u64);
        let info = match packet::parse(pkt) {
            Ok(i) => i,
            Err(e) => {
                self.drops_counted(e.reason(), packets);
                return;
            }
        };
        let pkt = pkt.get(..info.total_len).unwrap_or(pkt);
        let five = info.outbound_five();
        // RFC 4301 5.1: the SPD/SAD lookup; no SA, no sending.
        let Some(child) = self.tun_lookup(&info) else {
            tracing::debug!(%five, "TUN packet dropped: no child SA covers it");
            self.drops_counted("TUN: no child SA covers the packet", packets);
            return;
        };
        // R18: a connection begins: latch it to the SA carrying it.
        let action = self.watch(Way::Out, &info, five);
        if let Some(FlowAction::Latch(f)) = action {
            if !self.flow_latch(f, child.0) {
                return;
            }
        }
        // R5, R6, R9: the latch decides which SA the packet may leave under.
        let (sa, spd_decides) = if self.ignore_ts {
            (child, false)
        } else {
            match self.select_outbound(child, five) {
                Ok(sa) => sa,
                Err(Error::Dropped { reason, .. }) => {
                    if reason == "NotEstablished" || reason == "NoMatchingSa" {
                        self.acquire(child, five);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(%five, error = %e, "TUN packet dropped: no outbound decision");
                    self.drops_counted("TUN: no outbound latch decision", packets);
                    return;
                }
            }
        };
        // RFC 4301 5.1: a flow no latch decided is the SPD's to decide
        // (DISCARD, or more protection than the SA gives); only SAs it does
        // not admit as a whole pay a lookup.
        if spd_decides {
            if let Some(reason) = self.spd_refuses(sa, &five) {
                tracing::debug!(%five, sa = sa.0, reason, "TUN packet dropped by the SPD");
                self.drops_counted(reason, packets);
                return;
            }
        }
        let next_header = if info.version == 4 { 4 } else { 41 };
        let sent = match cut {
            Some(t) => self.esp_out(sa, next_header, t, true),
            None => self.esp_out(sa, next_header, pkt, true),
        };
        if let Err(e) = sent {
            tracing::debug!(error = ?e.error, child = sa.0, "TUN packet not sent");
            self.drops_counted(e.error.tun_reason(), e.packets);
        }
        if let Some(FlowAction::Release(f, id)) = action {
            self.flow_release(f, id);
        }
    }

    /// The child SA that covers an outbound packet: the newest of those
    /// whose local selectors admit its source and remote selectors its
    /// destination (after a rekey, the new SA). Cached per flow. After a
    /// rekey the peer initiated, the packet still leaves under the old SA
    /// until the peer uses the new one or deletes the old one
    /// (`Driver::sending_sa` in `esp_out`, RFC 7296 2.8).
    fn tun_lookup(&mut self, info: &PacketInfo) -> Option<ike::ChildSaId> {
        let key = FlowKey {
            proto: info.proto,
            src: info.src,
            dst: info.dst,
            ports: info.selector_ports,
        };
        let tun = self.tun.as_mut()?;
        if let Some((k, c)) = tun.last {
            if k == key {
                return Some(c);
            }
        }
        if let Some(c) = tun.cache.get(&key) {
            tun.last = Some((key, *c));
            return Some(*c);
        }
        let (sport, dport) = match info.selector_ports {
            Some((s, d)) => (Some(s), Some(d)),
            None => (None, None),
        };
        let found = self
            .children
            .iter()
            .filter(|(_, c)| {
                c.local_ts
                    .iter()
                    .any(|t| ts_admits(t, info.proto, info.src, sport))
                    && c.remote_ts
                        .iter()
                        .any(|t| ts_admits(t, info.proto, info.dst, dport))
            })
            .map(|(id, _)| *id)
            .max_by_key(|id| id.0)?;
        if tun.cache.len() >= FLOW_CACHE_MAX {
            tun.cache.clear();
        }
        tun.cache.insert(key, found);
        tun.last = Some((key, found));
        Some(found)
    }

    /// The TUN half of `on_esp`: one decapsulated inner packet, protected
    /// by the SA tagged `tag`; the latch check runs under the burst's lock
    /// `held`, released before a latch change or a device write.
    pub(super) fn on_esp_tun(
        &mut self,
        tag: u64,
        payload: &[u8],
        held: &mut BurstLatch<'_, Shared>,
    ) {
        let info = match packet::parse(payload) {
            Ok(i) => i,
            Err(e) => {
                self.drop_counted(e.reason());
                return;
            }
        };
        self.on_inner_tun(tag, payload, info, info.inbound_five(), None, None, held);
    }

    /// TUN mode, one read of several ESP-in-UDP datagrams of one peer
    /// (UDP GRO: `data` cut every `stride` octets), in passes: decapsulate
    /// and parse every ESP datagram; mark those their SA alone passes
    /// (`BurstLatch::sa_admits_each`: every latch the SA covers is bound
    /// to it, the usual case, so nothing is read per flow); touch the
    /// latch table entries of the others' flows in one tight pass
    /// (`BurstLatch::touch`); then check (the unmarked) and deliver them in
    /// order. With a million latches and many flows, the cache misses of
    /// the checks then overlap instead of following each other
    /// (docs/performance.md). A datagram that is not ESP (IKE, keepalive)
    /// is handled in its place, after the ESP packets before it.
    pub(super) fn on_natt_gro(
        &mut self,
        data: &mut [u8],
        stride: usize,
        from: std::net::SocketAddr,
        held: &mut BurstLatch<'_, Shared>,
    ) {
        let mut staged = self
            .tun
            .as_mut()
            .map(|t| std::mem::take(&mut t.staged))
            .unwrap_or_default();
        staged.clear();
        let mut at = 0;
        while at < data.len() {
            let end = at.saturating_add(stride).min(data.len());
            let Some(datagram) = data.get_mut(at..end) else {
                break;
            };
            let start = at;
            at = end;
            if !matches!(esp::udp::classify(datagram), esp::udp::Natt::Esp(_)) {
                self.deliver_staged(data, &mut staged, held);
                if let Some(datagram) = data.get_mut(start..end) {
                    self.on_natt(datagram, from, held);
                }
                continue;
            }
            let base = datagram.as_ptr() as usize;
            let Some(d) = self.decapsulate(datagram) else {
                continue;
            };
            let info = match packet::parse(d.payload) {
                Ok(i) => i,
                Err(e) => {
                    self.drop_counted(e.reason());
                    continue;
                }
            };
            // Where the payload lies in `data` (it is a part of the
            // datagram, decrypted in place).
            let offset = (d.payload.as_ptr() as usize).saturating_sub(base);
            staged.push(Staged {
                start: start + offset,
                len: d.payload.len(),
                tag: d.tag,
                five: info.inbound_five(),
                info,
                admitted: false,
            });
        }
        self.deliver_staged(data, &mut staged, held);
        if let Some(t) = self.tun.as_mut() {
            t.staged = staged;
        }
    }

    /// The last two passes of [`Self::on_natt_gro`] over the packets
    /// staged so far, which are then gone.
    fn deliver_staged(
        &mut self,
        data: &[u8],
        staged: &mut Vec<Staged>,
        held: &mut BurstLatch<'_, Shared>,
    ) {
        // R5, R6: the packets their SA alone passes (the usual case; if the
        // SPD admits the SA's selectors whole, see `on_inner_tun`) need
        // nothing read per flow; the others' table entries are touched.
        held.sa_admits_each(staged.iter_mut().map(|s| (&s.five, s.tag, &mut s.admitted)));
        let mut clean: Option<(u64, bool)> = None;
        let mut lookups = 0usize;
        for s in staged.iter_mut() {
            if s.admitted {
                s.admitted = match clean {
                    Some((tag, c)) if tag == s.tag => c,
                    _ => {
                        let c = self.spd_clean(s.tag);
                        clean = Some((s.tag, c));
                        c
                    }
                };
            }
            lookups += usize::from(!s.admitted);
        }
        if lookups > 1 {
            held.touch(staged.iter().filter(|s| !s.admitted).map(|s| &s.five));
        }
        let epoch = held.epoch();
        for s in staged.iter() {
            let payload = data.get(s.start..s.start + s.len).unwrap_or_default();
            let admitted = Some((s.admitted, epoch));
            self.on_inner_tun(
                s.tag,
                payload,
                s.info,
                s.five,
                admitted,
                Some(s.start),
                held,
            );
        }
        staged.clear();
        // Offload: the packets that passed, written now (they lie in this
        // read's buffer), after any queued before them.
        if self.tun.as_ref().is_some_and(|t| !t.plan.is_empty()) {
            held.release();
            self.flush_tun_writes();
            self.write_planned(data);
        }
    }

    /// Offload: make the writes our GRO planned for the packets of the
    /// read `data` (`gro::Gro`): in-order TCP segments (and same-sized UDP
    /// datagrams) of a flow as one GSO write, each gathered from `data`
    /// with one `writev`.
    fn write_planned(&mut self, data: &[u8]) {
        let Some(t) = self.tun.as_mut() else {
            return;
        };
        let dev = &t.dev;
        let done = t.plan.write(data, |iov| dev.try_send_vectored(iov));
        t.merged_writes += done.merged as u64;
        t.merged_packets += done.merged_packets as u64;
        for _ in 0..done.failed {
            self.drop_counted(match done.last_error {
                Some(std::io::ErrorKind::WouldBlock) => {
                    "TUN: device write queue full (GSO write, one or more packets)"
                }
                _ => "TUN: device write failed (GSO write, one or more packets)",
            });
        }
        if let Some(e) = done.last_error {
            tracing::debug!(error = ?e, failed = done.failed, "TUN GSO write failed");
        }
    }

    /// [`Self::on_esp_tun`] after the parse: `info` of `payload`, and its
    /// 5-tuple as the latch table sees it (local = destination);
    /// `admitted`: whether its SA alone passes it (`BurstLatch::sa_admits`,
    /// and the SPD admits the SA's selectors whole) as judged at a
    /// [`BurstLatch::epoch`], if judged already; `direct`: where `payload`
    /// starts in the UDP GRO read it was decrypted in, if it is written
    /// from there (offload: `write_planned`, after the read's last packet).
    #[allow(clippy::too_many_arguments)]
    fn on_inner_tun(
        &mut self,
        tag: u64,
        payload: &[u8],
        info: PacketInfo,
        five: FiveTuple,
        admitted: Option<(bool, u64)>,
        direct: Option<usize>,
        held: &mut BurstLatch<'_, Shared>,
    ) {
        let pkt = payload.get(..info.total_len).unwrap_or(payload);
        let action = self.watch(Way::In, &info, five);
        if let Some(FlowAction::Latch(f)) = action {
            held.release();
            if !self.flow_latch(f, tag) {
                return;
            }
        }
        let child = ike::ChildSaId(tag);
        // R5, R6: an SA that alone passes the packet needs no lookup of its
        // flow, if the SPD admits the SA's selectors whole (a flow no latch
        // decided is the SPD's, RFC 4301 5.2, and which flows a latch
        // decided is what is not looked up). The answer judged before the
        // flow watch holds if nothing changed the table since.
        let admitted = match admitted {
            Some((a, epoch)) if held.epoch() == epoch => a,
            _ => held.sa_admits(&five, tag) && self.spd_clean(tag),
        };
        if !admitted {
            // R5, R6, R17: the latch check with the SA that protected it.
            let Some((latch, _)) = Self::inbound_latch_check(held, five, tag) else {
                return;
            };
            // RFC 4301 5.2: a flow no latch decided is the SPD's to decide.
            if latch.is_none() {
                if let Some(reason) = self.spd_refuses_held(held, child, &five) {
                    tracing::debug!(%five, sa = tag, reason, "TUN packet dropped by the SPD");
                    self.drop_counted(reason);
                    return;
                }
            }
        }
        if let Some(c) = self.children.get_mut(&child) {
            c.traffic.packets_in += 1;
            c.traffic.bytes_in += pkt.len() as u64;
        }
        let offload = self.tun.as_ref().is_some_and(|t| t.offload);
        if offload {
            if let (Some(start), Some(t)) = (direct, self.tun.as_mut()) {
                // Written with the rest of its read (`write_planned`).
                t.plan.push(pkt, start);
            } else if self.queue_tun_write(pkt) {
                // Queued for the rest of the burst (`flush_tun_writes`),
                // flushed now if the queue is full.
                held.release();
                self.flush_tun_writes();
            }
            if let Some(FlowAction::Release(f, id)) = action {
                held.release();
                self.flow_release(f, id);
            }
            return;
        }
        let written = self.tun.as_ref().map(|t| t.dev.try_send(pkt));
        match written {
            Some(Ok(_)) => {}
            Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.drop_counted("TUN: device write queue full");
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "TUN write failed");
                self.drop_counted("TUN: device write failed");
            }
            None => {}
        }
        if let Some(FlowAction::Release(f, id)) = action {
            held.release();
            self.flow_release(f, id);
        }
    }

    /// Offload: queue a decapsulated packet for the next batch write.
    /// True if the queue is full and must be flushed now.
    fn queue_tun_write(&mut self, pkt: &[u8]) -> bool {
        let Some(t) = self.tun.as_mut() else {
            return false;
        };
        if t.writes.len() <= t.queued {
            // tun-rs coalesces a segment into this buffer only if its
            // capacity holds the whole coalesced packet (it never grows a
            // buffer): room for the largest IP packet, 65 535 octets, and
            // tun-rs's check of twice the header. No more: a larger
            // capacity would let a coalesced packet outgrow the 16-bit IP
            // length. Pages are touched only as far as packets fill them.
            t.writes.push(Vec::with_capacity(GRO_WRITE_CAPACITY));
        }
        if let Some(b) = t.writes.get_mut(t.queued) {
            load_write_buffer(b, pkt);
            t.queued += 1;
        }
        t.queued >= tun_rs::IDEAL_BATCH_SIZE
    }

    /// Offload: write the queued packets, in-order TCP segments of one
    /// flow coalesced into one write with a GSO virtio-net header (tun-rs
    /// `send_multiple` and its `GROTable`); the rest one write each with a
    /// header of zeros (no segmentation; the checksums are complete, they
    /// came from the peer).
    pub(super) fn flush_tun_writes(&mut self) {
        let Some(t) = self.tun.as_mut() else {
            return;
        };
        if t.queued == 0 {
            return;
        }
        let n = t.queued;
        t.queued = 0;
        let dev: &tun_rs::DeviceImpl = &t.dev;
        let bufs = t.writes.get_mut(..n).unwrap_or_default();
        let r = dev.send_multiple(&mut t.gro, bufs, tun_rs::VIRTIO_NET_HDR_LEN);
        if let Err(e) = r {
            // tun-rs reports the last failed write of the batch.
            tracing::debug!(error = %e, "TUN batch write failed");
            self.drop_counted(if e.kind() == std::io::ErrorKind::WouldBlock {
                "TUN: device write queue full (batch, one or more packets)"
            } else {
                "TUN: device write failed (batch, one or more packets)"
            });
        }
    }

    /// R18: show a packet to the flow watcher, if latching by watching is
    /// on (no clock read otherwise).
    fn watch(&mut self, way: Way, info: &PacketInfo, five: FiveTuple) -> Option<FlowAction> {
        let w = self.tun.as_mut()?.watcher.as_mut()?;
        w.observe(way, info, five, Instant::now())
    }

    /// R18, R12: create the connection latch of a watched flow and bind it
    /// to SA `sa` (the SA carrying its first packet). Returns false if the
    /// packet must be dropped (the SA does not match the latch the flow
    /// got). A latch that cannot be created (another latch of the flow
    /// exists, latching is disabled for the peer (R14), conflicting SAs)
    /// leaves the flow unlatched: it is still protected by the SA the SPD
    /// lookup chose.
    fn flow_latch(&mut self, five: FiveTuple, sa: u64) -> bool {
        let now = Instant::now();
        let mut s = lock(&self.shared);
        let made = s
            .table
            .create_connection(ConnectionRequest::new(five), now)
            .and_then(|id| match s.table.bind(id, sa, now) {
                Ok(()) => Ok(id),
                Err(e) => {
                    let _ = s.table.destroy(id);
                    Err(e)
                }
            });
        drop(s);
        let watcher = self.tun.as_mut().and_then(|t| t.watcher.as_mut());
        match made {
            Ok(id) => {
                tracing::info!(%five, latch = %id, sa, "flow latched (R18)");
                if let Some(w) = watcher {
                    w.latched(&five, id);
                }
                true
            }
            Err(latch::LatchError::SaDoesNotMeetRequest { .. })
            | Err(latch::LatchError::OtherPeerThanEstablished { .. }) => {
                if let Some(w) = watcher {
                    w.forget(&five);
                }
                tracing::debug!(%five, sa, "flow's SA does not fit its latch: packet dropped");
                self.drop_counted("TUN: flow's SA does not fit its latch");
                false
            }
            Err(e) => {
                if let Some(w) = watcher {
                    w.forget(&five);
                }
                tracing::debug!(%five, error = %e, "flow not latched");
                true
            }
        }
    }

    /// R15: the watched connection ended; destroy its latch.
    fn flow_release(&mut self, five: FiveTuple, id: LatchId) {
        match lock(&self.shared).table.destroy(id) {
            Ok(()) => tracing::info!(%five, latch = %id, "flow latch released (R18)"),
            Err(e) => tracing::debug!(%five, latch = %id, error = %e, "flow latch already gone"),
        }
    }

    /// A read from the device failed (a malformed offload read, or the
    /// device is gone): counted; after many in a row, stop reading.
    pub(super) fn tun_read_failed(&mut self, e: &std::io::Error) {
        tracing::debug!(error = %e, "TUN device read failed");
        self.drop_counted("TUN: device read failed");
        if let Some(t) = self.tun.as_mut() {
            t.read_errors += 1;
            if t.read_errors >= MAX_READ_ERRORS {
                t.reading = false;
                tracing::error!(error = %e, "TUN device keeps failing: no longer read");
            }
        }
    }

    /// When the flow watcher wants to run.
    pub(super) fn tun_poll_timeout(&self) -> Option<Instant> {
        self.tun
            .as_ref()
            .and_then(|t| t.watcher.as_ref())
            .and_then(FlowWatcher::poll_timeout)
    }

    /// Release the latches of idle flows.
    pub(super) fn tun_timeout(&mut self, now: Instant) {
        let Some(t) = self.tun.as_mut() else {
            return;
        };
        let Some(w) = t.watcher.as_mut() else {
            return;
        };
        let mut actions = std::mem::take(&mut t.actions);
        w.handle_timeout(now, &mut actions);
        for a in actions.drain(..) {
            if let FlowAction::Release(f, id) = a {
                self.flow_release(f, id);
            }
        }
        if let Some(t) = self.tun.as_mut() {
            t.actions = actions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ones' complement sum (RFC 1071) folded, for building test packets.
    fn sum(data: &[u8], mut acc: u32) -> u16 {
        for c in data.chunks(2) {
            let hi = u32::from(c.first().copied().unwrap_or(0)) << 8;
            acc += hi | u32::from(c.get(1).copied().unwrap_or(0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    /// An IPv4 TCP segment (ACK only) of flow 10.98.0.1:5000 ->
    /// 10.99.0.1:5201 with `payload` octets at sequence number `seq`,
    /// valid IP and TCP checksums.
    fn segment(seq: u32, payload: usize) -> Vec<u8> {
        let total = 20 + 20 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 98, 0, 1]);
        p[16..20].copy_from_slice(&[10, 99, 0, 1]);
        let c = sum(&p[..20], 0);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&5000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = 0x10; // ACK
        p[34..36].copy_from_slice(&64000u16.to_be_bytes());
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&((total - 20) as u16).to_be_bytes());
        let mut acc = 0u32;
        for c in pseudo.chunks(2) {
            acc += u32::from(c[0]) << 8 | u32::from(c[1]);
        }
        let c = sum(&p[20..], acc);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// tun-rs's GRO over buffers made by `make`: which buffers it would
    /// write, and their lengths.
    fn gro(make: fn() -> Vec<u8>, segments: &[Vec<u8>]) -> Vec<usize> {
        let mut bufs: Vec<Vec<u8>> = segments
            .iter()
            .map(|s| {
                let mut b = make();
                load_write_buffer(&mut b, s);
                b
            })
            .collect();
        let (mut tcp, mut udp, mut to_write) = (Default::default(), Default::default(), Vec::new());
        tun_rs::handle_gro(
            &mut bufs,
            tun_rs::VIRTIO_NET_HDR_LEN,
            &mut tcp,
            &mut udp,
            false,
            &mut to_write,
        )
        .unwrap();
        to_write.iter().map(|&i| bufs[i].len()).collect()
    }

    /// The write buffers let tun-rs coalesce the in-order segments of one
    /// TSO burst into one write (they did not before 5e97635: the buffers
    /// had the capacity of one packet, and every segment was a write).
    #[test]
    fn write_buffers_let_in_order_segments_coalesce() {
        let mss = 1388;
        let segs: Vec<_> = (0..45u32)
            .map(|i| segment(1000 + i * mss as u32, mss))
            .collect();
        let hdr = tun_rs::VIRTIO_NET_HDR_LEN;
        let fresh = || Vec::with_capacity(GRO_WRITE_CAPACITY);
        assert_eq!(gro(fresh, &segs), vec![hdr + 40 + 45 * mss]);
        // The old buffers (grown to one packet) coalesce nothing.
        assert_eq!(gro(Vec::new, &segs).len(), 45);
        // More than 64 KiB of segments: a second write, never an IP
        // length over 65 535.
        let many: Vec<_> = (0..60u32)
            .map(|i| segment(1000 + i * mss as u32, mss))
            .collect();
        let lens = gro(fresh, &many);
        assert_eq!(lens.len(), 2);
        assert!(lens.iter().all(|&l| l - hdr <= usize::from(u16::MAX)));
        assert_eq!(lens.iter().sum::<usize>(), 2 * (hdr + 40) + 60 * mss);
        // A segment out of order is not merged into the run.
        let mut gap = segs;
        gap.swap(10, 30);
        assert!(gro(fresh, &gap).len() > 1);
    }
}
