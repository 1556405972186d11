//! The Security Association Database (RFC 4301 4.4.2) and the per-packet
//! paths: [`Sad::encapsulate`] and [`Sad::decapsulate`].

use core::hash::{BuildHasherDefault, Hasher};
use core::ops::Range;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pad::alg::{Encr, Integ};
use pad::{addr_from_u128, addr_to_u128, IpRange, Mode, TrafficSelector};

use crate::cipher::Transform;
use crate::inner::{self, L4Selector};
use crate::replay::ReplayWindow;
use crate::{DropReason, EncapError, SadError, ESP_HEADER_LEN, MAX_REPLAY_WINDOW};

/// Next Header of a dummy packet (RFC 4303 2.6).
pub const NEXT_HEADER_DUMMY: u8 = 59;
/// Next Header of an inner IPv4 packet (tunnel mode).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next Header of an inner IPv6 packet (tunnel mode).
pub const NEXT_HEADER_IPV6: u8 = 41;

/// What it takes to install one SA.
#[derive(Debug, Clone)]
pub struct SaConfig<'a> {
    /// The SPI: chosen by us for inbound SAs, by the peer for outbound ones.
    pub spi: u32,
    /// Encryption (or combined-mode) algorithm.
    pub encr: Encr,
    /// Integrity algorithm: `Some` for AES-CBC, `None` for the AEADs.
    pub integ: Option<Integ>,
    /// Encryption KEYMAT, including the 4-octet salt at its end for the
    /// AEADs (`encr.keymat_len()` octets). Copied into key schedules; the
    /// caller keeps (and wipes) its own copy.
    pub encr_key: &'a [u8],
    /// Integrity KEYMAT (`integ.key_len()` octets; empty for AEADs).
    pub integ_key: &'a [u8],
    /// Extended (64-bit) sequence numbers (RFC 4303 2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets (inbound only): raised to
    /// [`crate::MIN_REPLAY_WINDOW`] and rounded up to a multiple of 64.
    pub replay_window: u32,
    /// Tunnel or transport mode.
    pub mode: Mode,
    /// Our side's traffic selectors (inbound tunnel mode: the inner
    /// destination must match one of them; an empty list matches nothing).
    /// Outbound packets are not checked here: choosing the SA is the SPD's
    /// (and the latch's) job, so an outbound SA does not keep them.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's traffic selectors (inbound tunnel mode: the inner source
    /// must match one of them; not kept by outbound SAs).
    pub remote_ts: Vec<TrafficSelector>,
    /// Opaque identifier chosen by the caller (the child SA id), reported
    /// with every decapsulated packet (R17).
    pub tag: u64,
}

/// Counters of one SA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaStats {
    /// Packets protected (outbound) or accepted (inbound).
    pub packets: u64,
    /// Payload octets (before ESP framing) of those packets.
    pub bytes: u64,
    /// Packets refused: inbound drops after the SPI lookup; outbound
    /// encapsulations refused (sequence number exhausted, bad next header,
    /// buffer too small).
    pub drops: u64,
    /// Outbound: the last sequence number used. Inbound: the highest
    /// sequence number accepted. 0 if none.
    pub seq: u64,
}

/// A snapshot of one SA (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SaInfo {
    /// SPI.
    pub spi: u32,
    /// The caller's tag.
    pub tag: u64,
    /// Mode.
    pub mode: Mode,
    /// Encryption algorithm.
    pub encr: Encr,
    /// Integrity algorithm.
    pub integ: Option<Integ>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Effective replay window in packets (inbound; 0 for outbound SAs).
    pub replay_window: u64,
    /// Local traffic selectors (inbound SAs; empty for outbound SAs, which
    /// do not keep them).
    pub local_ts: Vec<TrafficSelector>,
    /// Remote traffic selectors (inbound SAs; empty for outbound SAs).
    pub remote_ts: Vec<TrafficSelector>,
    /// Counters.
    pub stats: SaStats,
}

/// Global counters, a snapshot taken by [`Sad::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets encapsulated (all SAs, including removed ones).
    pub encapsulated: u64,
    /// Payload octets encapsulated.
    pub encapsulated_bytes: u64,
    /// Packets decapsulated and accepted.
    pub decapsulated: u64,
    /// Payload octets accepted.
    pub decapsulated_bytes: u64,
    /// Encapsulations refused because the sequence number would cycle.
    pub seq_exhausted: u64,
    /// Encapsulations refused for an unknown SPI.
    pub encap_unknown_spi: u64,
    drops: [u64; DropReason::COUNT],
}

impl Stats {
    /// Inbound packets dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// Inbound packets dropped, all reasons.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Every reason with its count.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.drops(r)))
    }
}

/// A packet that passed every inbound check.
#[derive(Debug, PartialEq, Eq)]
pub struct Decapsulated<'a> {
    /// SPI of the SA that protected it.
    pub spi: u32,
    /// That SA's tag (R17: every inbound packet names its SA).
    pub tag: u64,
    /// Full (64-bit with ESN) sequence number.
    pub seq: u64,
    /// Next Header: 4 or 41 in tunnel mode, the upper-layer protocol in
    /// transport mode.
    pub next_header: u8,
    /// The payload, decrypted in place: the inner IP packet (tunnel mode,
    /// cut to the length its header gives, so TFC padding is dropped) or
    /// the upper-layer payload (transport mode).
    pub payload: &'a [u8],
}

/// A hasher for SPIs: they are random (ours) or peer-chosen, and the
/// number of SAs a peer can create is bounded by the key manager, so a
/// keyed hash (and the OS random source it needs) buys nothing here.
#[derive(Default, Clone, Copy)]
struct SpiHasher(u64);

impl Hasher for SpiHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type SpiMap<V> = HashMap<u32, V, BuildHasherDefault<SpiHasher>>;

/// One traffic selector as the inbound check compares it: the address
/// range as `addr_to_u128` numbers, converted once when the SA is installed
/// rather than per packet, in 64-bit halves so that the record keeps an
/// 8-octet alignment (40 octets, the size of a `TrafficSelector`). It
/// converts back to the exact `TrafficSelector` it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sel {
    start: [u64; 2],
    end: [u64; 2],
    start_port: u16,
    end_port: u16,
    ip_proto: u8,
    /// The range's family (that of its start, as `IpRange::is_ipv4`).
    v4: bool,
    /// The family of its end (the same for every valid selector; kept so
    /// that the conversion back is exact for any input).
    end_v4: bool,
}

fn split(x: u128) -> [u64; 2] {
    [(x >> 64) as u64, x as u64]
}

fn join([hi, lo]: [u64; 2]) -> u128 {
    u128::from(hi) << 64 | u128::from(lo)
}

impl Sel {
    fn new(ts: &TrafficSelector) -> Self {
        Self {
            start: split(addr_to_u128(ts.addr.start)),
            end: split(addr_to_u128(ts.addr.end)),
            start_port: ts.start_port,
            end_port: ts.end_port,
            ip_proto: ts.ip_proto,
            v4: ts.addr.start.is_ipv4(),
            end_v4: ts.addr.end.is_ipv4(),
        }
    }

    fn to_ts(self) -> TrafficSelector {
        TrafficSelector {
            ip_proto: self.ip_proto,
            start_port: self.start_port,
            end_port: self.end_port,
            addr: IpRange {
                start: addr_from_u128(self.v4, join(self.start)),
                end: addr_from_u128(self.end_v4, join(self.end)),
            },
        }
    }

    /// Whether the selector admits a packet of this protocol and family
    /// with this address (as `addr_to_u128`) and port; `port` is `None`
    /// when the packet carries no port information (a non-initial
    /// fragment): only the full port range admits it (RFC 4301 4.4.1.1,
    /// OPAQUE).
    #[inline(always)]
    fn admits(&self, proto: u8, v4: bool, a: u128, port: Option<u16>) -> bool {
        (self.ip_proto == 0 || self.ip_proto == proto)
            && self.v4 == v4
            && join(self.start) <= a
            && a <= join(self.end)
            && match port {
                Some(p) => self.start_port <= p && p <= self.end_port,
                None => self.start_port == 0 && self.end_port == u16::MAX,
            }
    }
}

/// An SA's traffic selectors on one side. Inline when there is one (what
/// nearly every child SA has): no heap block per selector list, of which
/// each SA pair had four (docs/performance.md, memory per SA), and no loop
/// on the per-packet check.
#[derive(Debug)]
enum Selectors {
    One(Sel),
    /// None or several (an empty boxed slice does not allocate).
    Many(Box<[Sel]>),
}

impl Selectors {
    fn new(ts: &[TrafficSelector]) -> Self {
        match ts {
            [one] => Self::One(Sel::new(one)),
            _ => Self::Many(ts.iter().map(Sel::new).collect()),
        }
    }

    fn to_vec(&self) -> Vec<TrafficSelector> {
        match self {
            Self::One(s) => vec![s.to_ts()],
            Self::Many(s) => s.iter().map(|s| s.to_ts()).collect(),
        }
    }

    /// Whether one of the selectors admits the packet (see [`Sel::admits`]).
    #[inline(always)]
    fn admit(&self, proto: u8, v4: bool, a: u128, port: Option<u16>) -> bool {
        match self {
            Self::One(s) => s.admits(proto, v4, a, port),
            Self::Many(list) => list.iter().any(|s| s.admits(proto, v4, a, port)),
        }
    }
}

#[derive(Debug)]
struct SaCore {
    spi: u32,
    tag: u64,
    mode: Mode,
    encr: Encr,
    integ: Option<Integ>,
    esn: bool,
    transform: Transform,
    /// Packets refused after the SPI lookup (inbound) or encapsulations
    /// refused (outbound). The accepted packets are counted per direction
    /// where it costs no extra atomic: from the sequence number
    /// (outbound), under the replay window's writer lock (inbound).
    drops: AtomicU64,
}

impl SaCore {
    fn new(cfg: SaConfig<'_>) -> Result<Self, SadError> {
        if cfg.spi == 0 {
            return Err(SadError::ZeroSpi);
        }
        let transform = Transform::new(cfg.encr, cfg.integ, cfg.encr_key, cfg.integ_key)?;
        Ok(Self {
            spi: cfg.spi,
            tag: cfg.tag,
            mode: cfg.mode,
            encr: cfg.encr,
            integ: cfg.integ,
            esn: cfg.esn,
            transform,
            drops: AtomicU64::new(0),
        })
    }

    fn drop(&self) {
        self.drops.fetch_add(1, Relaxed);
    }

    fn info(&self, replay_window: u64, seq: u64, packets: u64, bytes: u64) -> SaInfo {
        self.info_ts(replay_window, seq, packets, bytes, Vec::new(), Vec::new())
    }

    fn info_ts(
        &self,
        replay_window: u64,
        seq: u64,
        packets: u64,
        bytes: u64,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
    ) -> SaInfo {
        SaInfo {
            spi: self.spi,
            tag: self.tag,
            mode: self.mode,
            encr: self.encr,
            integ: self.integ,
            esn: self.esn,
            replay_window,
            local_ts,
            remote_ts,
            stats: SaStats {
                packets,
                bytes,
                drops: self.drops.load(Relaxed),
                seq,
            },
        }
    }
}

#[derive(Debug)]
struct OutboundSa {
    core: SaCore,
    /// Last sequence number used (0: none).
    seq: AtomicU64,
    /// Sequence numbers spent on failed seals (not expected to happen).
    burnt: AtomicU64,
    /// Payload octets protected.
    bytes: AtomicU64,
}

impl OutboundSa {
    fn info(&self) -> SaInfo {
        let seq = self.seq.load(Relaxed);
        // Every sequence number used is a packet sent, but for failed seals.
        let packets = seq.saturating_sub(self.burnt.load(Relaxed));
        self.core.info(0, seq, packets, self.bytes.load(Relaxed))
    }
}

#[derive(Debug)]
struct InboundSa {
    core: SaCore,
    /// The pre-check reads it without a lock; each authentic packet takes
    /// its writer lock once, briefly, after the ICV verified (and counts
    /// itself there). Never held during cryptography, so packets of one SA
    /// can be decrypted on several threads at once.
    window: ReplayWindow,
    local_ts: Selectors,
    remote_ts: Selectors,
}

impl InboundSa {
    fn info(&self) -> SaInfo {
        let w = &self.window;
        let t = w.tally();
        self.core.info_ts(
            w.size(),
            w.top(),
            t.packets,
            t.bytes,
            self.local_ts.to_vec(),
            self.remote_ts.to_vec(),
        )
    }
}

/// Counters of SAs already removed, folded into [`Sad::stats`].
#[derive(Debug, Default)]
struct Retired {
    encapsulated: u64,
    encapsulated_bytes: u64,
    decapsulated: u64,
    decapsulated_bytes: u64,
}

/// The Security Association Database and the ESP datapath.
///
/// The packet paths take `&self`: outbound sequence numbers are atomics,
/// per-SA counters are atomics and each inbound SA's replay window is
/// atomics with a writer `Mutex`, so one `Sad` serves packets from several
/// threads at once.
/// Adding and removing SAs takes `&mut self` (the key manager's task owns
/// the `Sad`; a program that shares it between threads puts it in a
/// `RwLock`), which keeps every lock off the per-packet lookup. An owner
/// that alone handles packets (the endpoint's driver) uses the `&mut self`
/// packet paths, [`Sad::sealer_mut`] and [`Sad::decapsulate_mut`]: the same
/// bytes, checks and counters without atomic read-modify-writes or the
/// window's lock.
///
/// Methods group as: installing and removing SAs ([`Sad::add_inbound`],
/// [`Sad::add_outbound`], [`Sad::remove_inbound`], [`Sad::remove_outbound`]),
/// the packet paths ([`Sad::encapsulate`], [`Sad::decapsulate`]), and
/// getters ([`Sad::inbound`], [`Sad::outbound`], [`Sad::stats`], ...).
#[derive(Debug, Default)]
pub struct Sad {
    inbound: SpiMap<Box<InboundSa>>,
    outbound: SpiMap<Box<OutboundSa>>,
    drops: [AtomicU64; DropReason::COUNT],
    seq_exhausted: AtomicU64,
    encap_unknown_spi: AtomicU64,
    retired: Retired,
    generation: u64,
}

/// An ESP packet's SPI and the low 32 bits of its sequence number.
fn esp_header(packet: &[u8]) -> Result<(u32, u32), DropReason> {
    if packet.len() < ESP_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    Ok((be32(packet, 0), be32(packet, 4)))
}

/// The payload octets of a packet the plaintext checks accepted, to count
/// (`None`: refused; it still moves the window).
fn accepted_len(verdict: &Result<(Meta, Range<usize>), DropReason>) -> Option<usize> {
    verdict.as_ref().ok().map(|(_, r)| r.len())
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

impl Sad {
    /// An empty SAD.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_replay_window(cfg: &SaConfig<'_>) -> Result<(), SadError> {
        if cfg.replay_window > MAX_REPLAY_WINDOW {
            return Err(SadError::ReplayWindowTooLarge(cfg.replay_window));
        }
        Ok(())
    }

    /// Install an inbound SA. CBC key schedules are built here, AEAD keys on
    /// the first packet.
    pub fn add_inbound(&mut self, mut cfg: SaConfig<'_>) -> Result<(), SadError> {
        Self::check_replay_window(&cfg)?;
        let window = ReplayWindow::new(cfg.replay_window);
        let spi = cfg.spi;
        let local_ts = Selectors::new(&core::mem::take(&mut cfg.local_ts));
        let remote_ts = Selectors::new(&core::mem::take(&mut cfg.remote_ts));
        let encr_key = cfg.encr_key;
        let mut sa = Box::new(InboundSa {
            core: SaCore::new(cfg)?,
            window,
            local_ts,
            remote_ts,
        });
        if self.inbound.contains_key(&spi) {
            return Err(SadError::DuplicateSpi(spi));
        }
        // The key goes in where it stays (see `Transform::load_keymat`).
        sa.core.transform.load_keymat(encr_key)?;
        self.inbound.insert(spi, sa);
        self.generation += 1;
        Ok(())
    }

    /// Install an outbound SA; its first packet carries sequence number 1.
    /// It is filed under its SPI: [`Sad::encapsulate`] and the other
    /// outbound calls find it by `cfg.spi`. A program with SAs to several
    /// peers uses [`Sad::add_outbound_keyed`] instead.
    pub fn add_outbound(&mut self, cfg: SaConfig<'_>) -> Result<(), SadError> {
        let spi = cfg.spi;
        self.add_outbound_keyed(spi, cfg)
    }

    /// Install an outbound SA filed under `key`, a value of the caller's
    /// choosing that the outbound calls ([`Sad::encapsulate`],
    /// [`Sad::sealer`], [`Sad::remove_outbound`], ...) then take in place
    /// of the SPI. An outbound SPI is chosen by the peer (RFC 4301 4.1: it
    /// is unique only together with the peer's address), so two peers may
    /// pick the same one: a responder with many peers files each outbound
    /// SA under a key unique on this host (latchkey's endpoint uses the
    /// inbound SPI of the same child SA, which it chose itself). The packets
    /// carry `cfg.spi`.
    pub fn add_outbound_keyed(&mut self, key: u32, cfg: SaConfig<'_>) -> Result<(), SadError> {
        Self::check_replay_window(&cfg)?;
        let encr_key = cfg.encr_key;
        let mut sa = Box::new(OutboundSa {
            core: SaCore::new(cfg)?,
            seq: AtomicU64::new(0),
            burnt: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        if self.outbound.contains_key(&key) {
            return Err(SadError::DuplicateSpi(key));
        }
        sa.core.transform.load_keymat(encr_key)?;
        self.outbound.insert(key, sa);
        self.generation += 1;
        Ok(())
    }

    fn retire(&mut self, p: u64, b: u64, inbound: bool) {
        let r = &mut self.retired;
        if inbound {
            r.decapsulated += p;
            r.decapsulated_bytes += b;
        } else {
            r.encapsulated += p;
            r.encapsulated_bytes += b;
        }
    }

    /// Remove an inbound SA; returns its final counters.
    pub fn remove_inbound(&mut self, spi: u32) -> Option<SaStats> {
        let sa = self.inbound.remove(&spi)?;
        self.generation += 1;
        let stats = sa.info().stats;
        self.retire(stats.packets, stats.bytes, true);
        Some(stats)
    }

    /// Remove an outbound SA (by its SPI, or the key it was filed under
    /// with [`Sad::add_outbound_keyed`]); returns its final counters.
    pub fn remove_outbound(&mut self, spi: u32) -> Option<SaStats> {
        let sa = self.outbound.remove(&spi)?;
        self.generation += 1;
        let stats = sa.info().stats;
        self.retire(stats.packets, stats.bytes, false);
        Some(stats)
    }

    /// The inbound SA with this SPI.
    pub fn inbound(&self, spi: u32) -> Option<SaInfo> {
        self.inbound.get(&spi).map(|s| s.info())
    }

    /// The outbound SA with this SPI (or key, [`Sad::add_outbound_keyed`]).
    pub fn outbound(&self, spi: u32) -> Option<SaInfo> {
        self.outbound.get(&spi).map(|s| s.info())
    }

    /// Whether an inbound SA has this SPI (the key manager asks before
    /// choosing an SPI).
    pub fn contains_inbound(&self, spi: u32) -> bool {
        self.inbound.contains_key(&spi)
    }

    /// SPIs of all inbound SAs (in no particular order).
    pub fn inbound_spis(&self) -> Vec<u32> {
        self.inbound.keys().copied().collect()
    }

    /// SPIs (or keys, [`Sad::add_outbound_keyed`]) of all outbound SAs (in
    /// no particular order).
    pub fn outbound_spis(&self) -> Vec<u32> {
        self.outbound.keys().copied().collect()
    }

    /// Counters of the inbound SA with this SPI.
    pub fn inbound_stats(&self, spi: u32) -> Option<SaStats> {
        self.inbound(spi).map(|i| i.stats)
    }

    /// Counters of the outbound SA with this SPI.
    pub fn outbound_stats(&self, spi: u32) -> Option<SaStats> {
        self.outbound(spi).map(|i| i.stats)
    }

    /// Increases with every SA added or removed: a version of the SAD's
    /// contents, for callers that must order packets against SAD changes
    /// (R16).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A snapshot of the global counters. Per-SA counters of live SAs are
    /// summed in, so the hot path touches no shared global counter.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let r = &self.retired;
        s.encapsulated = r.encapsulated;
        s.encapsulated_bytes = r.encapsulated_bytes;
        s.decapsulated = r.decapsulated;
        s.decapsulated_bytes = r.decapsulated_bytes;
        for sa in self.outbound.values() {
            let st = sa.info().stats;
            s.encapsulated += st.packets;
            s.encapsulated_bytes += st.bytes;
        }
        for sa in self.inbound.values() {
            let t = sa.window.tally();
            s.decapsulated += t.packets;
            s.decapsulated_bytes += t.bytes;
        }
        for (d, a) in s.drops.iter_mut().zip(&self.drops) {
            *d = a.load(Relaxed);
        }
        s.seq_exhausted = self.seq_exhausted.load(Relaxed);
        s.encap_unknown_spi = self.encap_unknown_spi.load(Relaxed);
        s
    }

    /// Octets [`Sad::encapsulate`] writes for a payload of `payload_len`
    /// octets on this outbound SA.
    pub fn encapsulated_len(&self, spi: u32, payload_len: usize) -> Result<usize, EncapError> {
        let sa = self.outbound.get(&spi).ok_or(EncapError::UnknownSpi(spi))?;
        Ok(esp_len(&sa.core.transform, payload_len))
    }

    /// The outbound SA with this SPI, looked up once, for a caller that
    /// sizes its buffer before encapsulating into it
    /// ([`Sealer::encapsulated_len`], then [`Sealer::encapsulate`]): one
    /// SPI lookup where [`Sad::encapsulated_len`] and [`Sad::encapsulate`]
    /// make two. An unknown SPI is counted as [`Sad::encapsulate`] counts
    /// it.
    pub fn sealer(&self, spi: u32) -> Result<Sealer<'_>, EncapError> {
        match self.outbound.get(&spi) {
            Some(sa) => Ok(Sealer { sad: self, sa }),
            None => {
                self.encap_unknown_spi.fetch_add(1, Relaxed);
                Err(EncapError::UnknownSpi(spi))
            }
        }
    }

    /// [`Sad::sealer`] for the owner of the SAD, who alone seals on it
    /// while it holds `&mut`: the same packets, checks and counters, but the
    /// sequence number and the octet count are plain integers, not atomic
    /// read-modify-writes. Each of those is a locked instruction that also
    /// waits for the previous packet's ciphertext to leave the store buffer:
    /// two thirds of `Sealer::encapsulate_in_place`'s own time in the
    /// encrypting daemon at full load (perf, 2026-11-29). The endpoint's
    /// driver owns its SAD and seals with this.
    pub fn sealer_mut(&mut self, spi: u32) -> Result<SealerMut<'_>, EncapError> {
        let Self {
            outbound,
            seq_exhausted,
            encap_unknown_spi,
            ..
        } = self;
        match outbound.get_mut(&spi) {
            Some(sa) => Ok(SealerMut { seq_exhausted, sa }),
            None => {
                *encap_unknown_spi.get_mut() += 1;
                Err(EncapError::UnknownSpi(spi))
            }
        }
    }

    /// Protect one packet (RFC 4303 3.3): writes
    /// `SPI | seq (low 32 bits) | IV | ciphertext(payload | padding | pad
    /// length | next header) | ICV` into `out` and returns its length.
    ///
    /// Tunnel mode: `payload` is the inner IP packet, `next_header` 4 or 41
    /// (or 59 for a dummy packet). Transport mode: the upper-layer payload
    /// and its protocol number. The padding is the minimum (to 4 octets for
    /// the AEADs, 16 for AES-CBC).
    ///
    /// IVs: for the AEADs the IV is the 64-bit sequence number (unique per
    /// SA, as RFC 4106 3.1 and RFC 7634 2 allow). AES-CBC needs unpredictable
    /// IVs (RFC 3602 3) but this call has no random source (no `&mut`
    /// state, no OS randomness): the IV is `AES-256(K_iv, seq || 0^64)`
    /// under a per-SA IV key derived at setup as `HMAC-SHA-256(K_encr,
    /// "latchkey ESP AES-CBC IV key")` (NIST SP 800-38A Appendix C, with a
    /// key of its own). Unique because sequence numbers are; unpredictable
    /// without `K_iv`.
    ///
    /// The sequence number starts at 1 and never cycles (RFC 4303 3.3.3):
    /// after 2^32 - 1 (2^64 - 1 with ESN) every call fails with
    /// [`EncapError::SequenceExhausted`] until the SA is replaced.
    pub fn encapsulate(
        &self,
        spi: u32,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, EncapError> {
        self.sealer(spi)?.encapsulate(next_header, payload, out)
    }

    /// Verify and decrypt one packet in place (RFC 4303 3.4), in this
    /// order: length checks, SPI lookup, replay pre-check, ICV / AEAD open,
    /// replay window update, padding check, next header check, and in
    /// tunnel mode the traffic-selector check of the inner packet (RFC 4301
    /// 5.2 step 4).
    ///
    /// On success the returned payload borrows `packet` and carries the SA's
    /// SPI and tag (R17). On failure the reason is counted and returned;
    /// `packet` may then hold partly decrypted bytes.
    pub fn decapsulate<'a>(&self, packet: &'a mut [u8]) -> Result<Decapsulated<'a>, DropReason> {
        let r = self.decap(packet);
        self.deliver(packet, r)
    }

    /// [`Sad::decapsulate`] for the owner of the SAD, who alone opens on it
    /// while it holds `&mut`: the same checks, order and counters, without
    /// taking the replay window's writer lock (two locked instructions a
    /// packet; `ReplayWindow::accept` was 2% of the decrypting daemon at
    /// full load, perf 2026-11-29). The endpoint's driver owns its SAD and
    /// opens with this.
    pub fn decapsulate_mut<'a>(
        &mut self,
        packet: &'a mut [u8],
    ) -> Result<Decapsulated<'a>, DropReason> {
        let r = esp_header(packet).and_then(|(spi, seq_lo)| {
            let sa = self.inbound.get_mut(&spi).ok_or(DropReason::UnknownSpi)?;
            let r = sa.decap_mut(seq_lo, packet);
            if r.is_err() {
                sa.core.drop();
            }
            r
        });
        self.deliver(packet, r)
    }

    /// The result of a decapsulation, counted if it failed.
    fn deliver<'a>(
        &self,
        packet: &'a mut [u8],
        r: Result<(Meta, Range<usize>), DropReason>,
    ) -> Result<Decapsulated<'a>, DropReason> {
        match r {
            Ok((meta, range)) => {
                let packet: &'a [u8] = packet;
                match packet.get(range) {
                    Some(payload) => Ok(Decapsulated {
                        spi: meta.spi,
                        tag: meta.tag,
                        seq: meta.seq,
                        next_header: meta.next_header,
                        payload,
                    }),
                    None => {
                        self.count_drop(DropReason::Truncated);
                        Err(DropReason::Truncated)
                    }
                }
            }
            Err(reason) => {
                self.count_drop(reason);
                Err(reason)
            }
        }
    }

    fn count_drop(&self, reason: DropReason) {
        if let Some(c) = self.drops.get(reason.index()) {
            c.fetch_add(1, Relaxed);
        }
    }

    fn decap(&self, packet: &mut [u8]) -> Result<(Meta, Range<usize>), DropReason> {
        let (spi, seq_lo) = esp_header(packet)?;
        let sa = self.inbound.get(&spi).ok_or(DropReason::UnknownSpi)?;
        let r = sa.decap(seq_lo, packet);
        if r.is_err() {
            sa.core.drop();
        }
        r
    }

    /// Set the last sequence number used by an outbound SA (tests start
    /// near the end of the sequence space with it).
    #[cfg(test)]
    pub(crate) fn set_outbound_seq(&self, spi: u32, last: u64) {
        if let Some(sa) = self.outbound.get(&spi) {
            sa.seq.store(last, Relaxed);
        }
    }

    /// Whether the SA's AEAD key is expanded yet (inbound or outbound).
    #[cfg(test)]
    pub(crate) fn key_expanded(&self, spi: u32, inbound: bool) -> Option<bool> {
        if inbound {
            self.inbound.get(&spi).map(|s| s.core.transform.expanded())
        } else {
            self.outbound.get(&spi).map(|s| s.core.transform.expanded())
        }
    }

    /// Move an inbound SA's replay window (tests of ESN inference far into
    /// the sequence space).
    #[cfg(test)]
    pub(crate) fn set_inbound_top(&self, spi: u32, top: u64) {
        if let Some(sa) = self.inbound.get(&spi) {
            sa.window.accept(top, None).unwrap();
        }
    }

    /// Seal an arbitrary plaintext (payload, padding, pad length and next
    /// header as given; a whole number of blocks) on an outbound SA, to
    /// build packets `encapsulate` refuses to make.
    #[cfg(test)]
    pub(crate) fn seal_raw(&self, spi: u32, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let sa = self.outbound.get(&spi).unwrap();
        let t = &sa.core.transform;
        let mut pkt = vec![0u8; t.overhead() + plaintext.len()];
        pkt[..4].copy_from_slice(&spi.to_be_bytes());
        pkt[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        let start = ESP_HEADER_LEN + t.iv_len();
        pkt[start..start + plaintext.len()].copy_from_slice(plaintext);
        t.seal(seq, sa.core.esn, &mut pkt).unwrap();
        pkt
    }

    /// Encapsulate with an explicit AEAD IV (known-answer tests).
    #[cfg(test)]
    pub(crate) fn encapsulate_with_iv(
        &self,
        spi: u32,
        seq: u64,
        iv: [u8; 8],
        next_header: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let sa = self.outbound.get(&spi).unwrap();
        let t = &sa.core.transform;
        let mut pkt = vec![0u8; esp_len(t, payload.len())];
        write_plaintext(t, spi, seq, next_header, payload.len(), &mut pkt, |b| {
            b.copy_from_slice(payload);
        });
        t.seal_with_iv(seq, iv, sa.core.esn, &mut pkt).unwrap();
        pkt
    }
}

/// One outbound SA of a [`Sad`], looked up by [`Sad::sealer`].
#[derive(Debug, Clone, Copy)]
pub struct Sealer<'a> {
    sad: &'a Sad,
    sa: &'a OutboundSa,
}

impl Sealer<'_> {
    /// The SA's SPI.
    pub fn spi(&self) -> u32 {
        self.sa.core.spi
    }

    /// Octets [`Self::encapsulate`] writes for a payload of `payload_len`
    /// octets.
    pub fn encapsulated_len(&self, payload_len: usize) -> usize {
        esp_len(&self.sa.core.transform, payload_len)
    }

    /// [`Sad::encapsulate`] on this SA.
    pub fn encapsulate(
        &self,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, EncapError> {
        self.encap_with(next_header, payload.len(), out, |body| {
            body.copy_from_slice(payload);
        })
    }

    /// Where [`Self::encapsulate_in_place`] expects the payload in its
    /// buffer: after the ESP header and the IV (16 octets for the AEADs,
    /// 24 for AES-CBC).
    pub fn payload_offset(&self) -> usize {
        ESP_HEADER_LEN + self.sa.core.transform.iv_len()
    }

    /// [`Self::encapsulate`] without copying the payload: `buf` already
    /// holds the `payload_len` octets of payload at [`Self::payload_offset`]
    /// (a caller that reads the inner packet straight there, such as a TUN
    /// read into the send buffer at that offset, saves the copy). The
    /// header, IV, padding, trailer and ICV are written around it and the
    /// payload is encrypted in place; the packet is `buf[..len]` for the
    /// returned `len` (`buf` must be at least
    /// [`Self::encapsulated_len`]`(payload_len)` long). The same checks,
    /// counters, sequence number and bytes on the wire as
    /// [`Self::encapsulate`]; on an error `buf` is unchanged except after a
    /// failed seal ([`EncapError::Crypto`]).
    pub fn encapsulate_in_place(
        &self,
        next_header: u8,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, EncapError> {
        self.encap_with(next_header, payload_len, buf, |_| {})
    }

    /// The outbound path (see [`encap_with`]), spending sequence numbers
    /// and counting octets atomically: the SAD may be shared.
    #[inline(always)]
    fn encap_with(
        &self,
        next_header: u8,
        payload_len: usize,
        out: &mut [u8],
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, EncapError> {
        let sa = self.sa;
        encap_with(
            &sa.core,
            Shared(sa),
            &self.sad.seq_exhausted,
            next_header,
            payload_len,
            out,
            fill,
        )
    }
}

/// One outbound SA of a [`Sad`] its owner seals on, looked up by
/// [`Sad::sealer_mut`]: [`Sealer`]'s packets, checks and counters, with
/// plain arithmetic where `Sealer` needs atomics.
#[derive(Debug)]
pub struct SealerMut<'a> {
    seq_exhausted: &'a AtomicU64,
    sa: &'a mut OutboundSa,
}

impl SealerMut<'_> {
    /// The SA's SPI.
    pub fn spi(&self) -> u32 {
        self.sa.core.spi
    }

    /// [`Sealer::encapsulated_len`].
    pub fn encapsulated_len(&self, payload_len: usize) -> usize {
        esp_len(&self.sa.core.transform, payload_len)
    }

    /// [`Sealer::payload_offset`].
    pub fn payload_offset(&self) -> usize {
        ESP_HEADER_LEN + self.sa.core.transform.iv_len()
    }

    /// [`Sealer::encapsulate`].
    pub fn encapsulate(
        &mut self,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, EncapError> {
        self.encap_with(next_header, payload.len(), out, |body| {
            body.copy_from_slice(payload);
        })
    }

    /// [`Sealer::encapsulate_in_place`].
    pub fn encapsulate_in_place(
        &mut self,
        next_header: u8,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, EncapError> {
        self.encap_with(next_header, payload_len, buf, |_| {})
    }

    #[inline(always)]
    fn encap_with(
        &mut self,
        next_header: u8,
        payload_len: usize,
        out: &mut [u8],
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, EncapError> {
        let OutboundSa {
            core,
            seq,
            burnt,
            bytes,
        } = &mut *self.sa;
        let counters = Exclusive {
            seq: seq.get_mut(),
            burnt: burnt.get_mut(),
            bytes: bytes.get_mut(),
        };
        encap_with(
            core,
            counters,
            self.seq_exhausted,
            next_header,
            payload_len,
            out,
            fill,
        )
    }
}

/// How a sealer spends an outbound SA's sequence numbers and counts what
/// it protected: atomically ([`Shared`], for [`Sealer`]) or with plain
/// arithmetic ([`Exclusive`], for [`SealerMut`]).
trait Counters {
    /// The next sequence number, if the last one used is below `max`.
    fn spend(&mut self, max: u64) -> Option<u64>;
    /// A spent sequence number carried no packet (a failed seal).
    fn burn(&mut self);
    /// `octets` of payload protected.
    fn count(&mut self, octets: u64);
}

/// The counters of an SA that others may seal on at the same time.
struct Shared<'a>(&'a OutboundSa);

impl Counters for Shared<'_> {
    #[inline(always)]
    fn spend(&mut self, max: u64) -> Option<u64> {
        self.0
            .seq
            .fetch_update(Relaxed, Relaxed, |s| (s < max).then(|| s + 1))
            .ok()
            .map(|prev| prev + 1)
    }

    fn burn(&mut self) {
        self.0.burnt.fetch_add(1, Relaxed);
    }

    #[inline(always)]
    fn count(&mut self, octets: u64) {
        self.0.bytes.fetch_add(octets, Relaxed);
    }
}

/// The counters of an SA borrowed exclusively.
struct Exclusive<'a> {
    seq: &'a mut u64,
    burnt: &'a mut u64,
    bytes: &'a mut u64,
}

impl Counters for Exclusive<'_> {
    #[inline(always)]
    fn spend(&mut self, max: u64) -> Option<u64> {
        (*self.seq < max).then(|| {
            *self.seq += 1;
            *self.seq
        })
    }

    fn burn(&mut self) {
        *self.burnt += 1;
    }

    #[inline(always)]
    fn count(&mut self, octets: u64) {
        // Wrapping, as the atomic's `fetch_add` does.
        *self.bytes = self.bytes.wrapping_add(octets);
    }
}

/// The outbound path of [`Sealer`] and [`SealerMut`]: checks, sequence
/// number, then `fill` puts the payload in place (or finds it there)
/// before the trailer is written and the packet sealed.
#[inline(always)]
fn encap_with(
    core: &SaCore,
    mut counters: impl Counters,
    seq_exhausted: &AtomicU64,
    next_header: u8,
    payload_len: usize,
    out: &mut [u8],
    fill: impl FnOnce(&mut [u8]),
) -> Result<usize, EncapError> {
    let spi = core.spi;
    let nh_ok = match core.mode {
        Mode::Tunnel => matches!(
            next_header,
            NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6 | NEXT_HEADER_DUMMY
        ),
        Mode::Transport => !matches!(next_header, NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6),
    };
    if !nh_ok {
        core.drop();
        return Err(EncapError::BadNextHeader(next_header));
    }
    let t = &core.transform;
    let len = esp_len(t, payload_len);
    let Some(pkt) = out.get_mut(..len) else {
        core.drop();
        return Err(EncapError::BufferTooSmall { needed: len });
    };
    let max = if core.esn {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    // RFC 4303 3.3.3: the counter must not cycle; refuse at the end.
    let Some(seq) = counters.spend(max) else {
        core.drop();
        seq_exhausted.fetch_add(1, Relaxed);
        return Err(EncapError::SequenceExhausted);
    };
    write_plaintext(t, spi, seq, next_header, payload_len, pkt, fill);
    if t.seal(seq, core.esn, pkt).is_err() {
        // The sequence number is spent: count it out of `packets`.
        counters.burn();
        core.drop();
        return Err(EncapError::Crypto);
    }
    // `packets` is derived from the sequence number: one count less.
    counters.count(payload_len as u64);
    Ok(len)
}

struct Meta {
    spi: u32,
    tag: u64,
    seq: u64,
    next_header: u8,
}

impl InboundSa {
    /// The checks before the plaintext's: length, replay pre-check, ICV /
    /// AEAD open (RFC 4303 3.4); the full sequence number and where the
    /// plaintext is.
    fn open(&self, seq_lo: u32, packet: &mut [u8]) -> Result<(u64, Range<usize>), DropReason> {
        let core = &self.core;
        let t = &core.transform;
        // Smallest packet: overhead plus one block of ciphertext (holding at
        // least Pad Length and Next Header).
        let min_ct = if t.block_len() == 16 { 16 } else { 2 };
        let ct_len = packet
            .len()
            .checked_sub(t.overhead())
            .filter(|l| *l >= min_ct)
            .ok_or(DropReason::Truncated)?;
        if ct_len % t.block_len() != 0 && t.block_len() == 16 {
            return Err(DropReason::BadLength);
        }
        // Replay pre-check (RFC 4303 3.4.3), before spending time on the
        // ICV; lock-free (see `ReplayWindow`).
        let w = &self.window;
        let seq = w.infer(seq_lo, core.esn).ok_or(DropReason::TooOld)?;
        w.check(seq)?;
        let pt = t
            .open(seq, core.esn, packet)
            .map_err(|_| DropReason::IntegrityFailed)?;
        Ok((seq, pt))
    }

    /// [`Sad::decapsulate`] on this SA: [`Self::open`], then the checks of
    /// the plaintext; the window moves (under its writer lock).
    fn decap(&self, seq_lo: u32, packet: &mut [u8]) -> Result<(Meta, Range<usize>), DropReason> {
        let (seq, pt) = self.open(seq_lo, packet)?;
        // Authentic: the window moves (RFC 4303 3.4.3), whatever the checks
        // of the plaintext below decide, and an accepted packet is counted
        // in the same locked step. (A replay of an authentic packet that a
        // later check refused is refused as a replay.)
        let verdict = self.check_plaintext(seq, packet, pt);
        self.window.accept(seq, accepted_len(&verdict))?;
        verdict
    }

    /// [`Self::decap`] by the SAD's owner: the window moves without its
    /// lock ([`Sad::decapsulate_mut`]).
    fn decap_mut(
        &mut self,
        seq_lo: u32,
        packet: &mut [u8],
    ) -> Result<(Meta, Range<usize>), DropReason> {
        let (seq, pt) = self.open(seq_lo, packet)?;
        // As in `decap`.
        let verdict = self.check_plaintext(seq, packet, pt);
        self.window.accept_mut(seq, accepted_len(&verdict))?;
        verdict
    }

    /// The checks after decryption: trailer and padding (RFC 4303 2.4-2.6),
    /// next header, and in tunnel mode the inner packet against the SA's
    /// selectors (RFC 4301 5.2 step 4).
    fn check_plaintext(
        &self,
        seq: u64,
        packet: &[u8],
        pt: Range<usize>,
    ) -> Result<(Meta, Range<usize>), DropReason> {
        let core = &self.core;
        let plain = packet.get(pt.clone()).ok_or(DropReason::Truncated)?;
        let (payload_len, next_header) = check_trailer(plain)?;
        let payload = pt.start..pt.start + payload_len;
        let meta = Meta {
            spi: core.spi,
            tag: core.tag,
            seq,
            next_header,
        };
        match core.mode {
            Mode::Transport => {
                if matches!(next_header, NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6) {
                    return Err(DropReason::BadNextHeader);
                }
                Ok((meta, payload))
            }
            Mode::Tunnel => {
                let want_v4 = match next_header {
                    NEXT_HEADER_IPV4 => true,
                    NEXT_HEADER_IPV6 => false,
                    _ => return Err(DropReason::BadNextHeader),
                };
                let inner_pkt = packet.get(payload.clone()).ok_or(DropReason::Truncated)?;
                let k = inner::selector_key(inner_pkt).map_err(|_| DropReason::MalformedInner)?;
                if k.v4 != want_v4 {
                    return Err(DropReason::MalformedInner);
                }
                let (sport, dport) = match k.l4 {
                    L4Selector::Ports(s, d) => (Some(s), Some(d)),
                    L4Selector::Icmp(tc) => (Some(tc), Some(tc)),
                    L4Selector::None => (Some(0), Some(0)),
                    L4Selector::Opaque => (None, None),
                };
                // RFC 4301 5.2 step 4: the inner source against the peer's
                // selectors, the inner destination against ours.
                if !(self.remote_ts.admit(k.protocol, k.v4, k.src, sport)
                    && self.local_ts.admit(k.protocol, k.v4, k.dst, dport))
                {
                    return Err(DropReason::SelectorMismatch);
                }
                Ok((meta, payload.start..payload.start + k.total_len))
            }
        }
    }
}

/// Check the ESP trailer (RFC 4303 2.4-2.6) of a decrypted plaintext;
/// returns the payload length and the next header.
fn check_trailer(plain: &[u8]) -> Result<(usize, u8), DropReason> {
    let (&next_header, rest) = plain.split_last().ok_or(DropReason::BadPadding)?;
    let (&pad_len, rest) = rest.split_last().ok_or(DropReason::BadPadding)?;
    let payload_len = rest
        .len()
        .checked_sub(usize::from(pad_len))
        .ok_or(DropReason::BadPadding)?;
    let pad = rest.get(payload_len..).ok_or(DropReason::BadPadding)?;
    // RFC 4303 2.4: the padding bytes are 1, 2, 3, ...
    let mut expect = 1u8;
    for &b in pad {
        if b != expect {
            return Err(DropReason::BadPadding);
        }
        expect = expect.wrapping_add(1);
    }
    if next_header == NEXT_HEADER_DUMMY {
        return Err(DropReason::DummyPacket);
    }
    Ok((payload_len, next_header))
}

/// Length of the ESP packet for a payload.
fn esp_len(t: &Transform, payload_len: usize) -> usize {
    let b = t.block_len();
    let ct = (payload_len + 2).div_ceil(b) * b;
    t.overhead() + ct
}

/// Write header, payload (through `fill`, given the payload's place),
/// padding and trailer; the IV and ICV are left to the transform. `pkt` is
/// exactly `esp_len(t, payload_len)` long.
fn write_plaintext(
    t: &Transform,
    spi: u32,
    seq: u64,
    next_header: u8,
    payload_len: usize,
    pkt: &mut [u8],
    fill: impl FnOnce(&mut [u8]),
) {
    let start = ESP_HEADER_LEN + t.iv_len();
    let end = pkt.len().saturating_sub(t.icv_len());
    if let Some(h) = pkt.get_mut(..ESP_HEADER_LEN) {
        let (s, q) = h.split_at_mut(4);
        s.copy_from_slice(&spi.to_be_bytes());
        q.copy_from_slice(&(seq as u32).to_be_bytes());
    }
    let Some(plain) = pkt.get_mut(start..end) else {
        return;
    };
    let Some((body, trailer)) = plain.split_at_mut_checked(payload_len) else {
        return;
    };
    fill(body);
    // trailer = padding (1, 2, 3, ...) | pad length | next header
    let pad_len = trailer.len().saturating_sub(2);
    let mut i = 1u8;
    for (k, b) in trailer.iter_mut().enumerate() {
        *b = if k < pad_len {
            let v = i;
            i = i.wrapping_add(1);
            v
        } else if k == pad_len {
            pad_len as u8
        } else {
            next_header
        };
    }
}

#[cfg(test)]
mod selectors_tests {
    use super::{InboundSa, OutboundSa, Selectors};
    use pad::{addr_to_u128, TrafficSelector};
    use std::net::IpAddr;

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    #[test]
    fn selectors_keep_every_entry_in_order() {
        assert!(Selectors::new(&[]).to_vec().is_empty());
        let one = Selectors::new(&[ts("10.0.0.0/24")]);
        assert!(matches!(one, Selectors::One(_)));
        assert_eq!(one.to_vec(), vec![ts("10.0.0.0/24")]);
        let list = vec![
            ts("10.0.0.0/24"),
            ts("2001:db8::/64"),
            ts("10.1.0.1[udp/53]"),
            ts("0.0.0.0/0[icmp/8]"),
            ts("::/0"),
        ];
        assert_eq!(Selectors::new(&list).to_vec(), list);
        // Even a selector whose ends are of two families (not valid, but
        // the fields are public) comes back as it went in.
        let mut odd = ts("10.0.0.0/24");
        odd.addr.end = "2001:db8::1".parse().unwrap();
        assert_eq!(Selectors::new(&[odd]).to_vec(), vec![odd]);
    }

    /// The per-packet check agrees with `TrafficSelector` semantics:
    /// family, protocol, address range, port range, OPAQUE; for one
    /// selector and for a list.
    #[test]
    fn admit_matches_selector_semantics() {
        let list = [ts("10.0.0.0/24[udp/53]"), ts("2001:db8::/64")];
        let many = Selectors::new(&list);
        let one4 = Selectors::new(&list[..1]);
        let one6 = Selectors::new(&list[1..]);
        let ad = |s: &Selectors, proto: u8, a: &str, port: Option<u16>| {
            let a: IpAddr = a.parse().unwrap();
            s.admit(proto, a.is_ipv4(), addr_to_u128(a), port)
        };
        for s in [&many, &one4] {
            assert!(ad(s, 17, "10.0.0.9", Some(53)));
            assert!(ad(s, 17, "10.0.0.0", Some(53)));
            assert!(ad(s, 17, "10.0.0.255", Some(53)));
            assert!(!ad(s, 6, "10.0.0.9", Some(53)));
            assert!(!ad(s, 17, "10.0.0.9", Some(54)));
            assert!(!ad(s, 17, "10.0.1.9", Some(53)));
            assert!(!ad(s, 17, "9.255.255.255", Some(53)));
            assert!(!ad(s, 17, "10.0.0.9", None));
        }
        for s in [&many, &one6] {
            assert!(ad(s, 6, "2001:db8::5", Some(80)));
            assert!(ad(s, 6, "2001:db8::5", None));
            assert!(ad(s, 6, "2001:db8::ffff:ffff:ffff:ffff", None));
            assert!(!ad(s, 6, "2001:db8:0:1::", Some(80)));
            assert!(!ad(
                s,
                6,
                "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
                Some(80)
            ));
        }
        assert!(!ad(&one4, 6, "2001:db8::5", Some(80)));
        assert!(!ad(&one6, 17, "10.0.0.9", Some(53)));
        // An IPv4 address whose 128-bit value falls in an IPv6 range.
        let low6 = Selectors::new(&[ts("::/96")]);
        assert!(!ad(&low6, 6, "10.0.0.1", Some(80)));
        assert!(!ad(&Selectors::new(&[]), 6, "10.0.0.1", Some(80)));
        // Agrees with `IpRange::contains` on a sweep around the edges.
        let r = ts("192.168.4.0/22");
        let s = Selectors::new(&[r]);
        for x in 0xc0a8_0300u32..0xc0a8_0900 {
            let a = IpAddr::V4(x.into());
            assert_eq!(ad(&s, 6, &a.to_string(), Some(1)), r.addr.contains(a));
        }
    }

    /// The SA records stay small: the AEAD key is expanded on the first
    /// packet (boxed), the outbound SA keeps no selectors and no window,
    /// the default replay window is inline (docs/performance.md, ESP SA
    /// memory).
    #[test]
    fn sa_records_stay_small() {
        let (inb, out) = (size_of::<InboundSa>(), size_of::<OutboundSa>());
        println!("InboundSa {inb} B, OutboundSa {out} B");
        assert!(inb <= 344, "InboundSa is {inb} octets");
        assert!(out <= 112, "OutboundSa is {out} octets");
    }
}
