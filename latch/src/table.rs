//! The latch table: every listener and connection latch, the child SAs the
//! key manager announced, the state version, and the ALERT queue.

use crate::error::LatchError;
use crate::narrow::{narrow_local, narrow_remote, product_covers};
use crate::types::{
    Alert, AlertReason, ChildSaDescriptor, ConnectionRequest, LatchId, LatchInfo, LatchState,
    LatchedParams, ListenerRequest, NatInfo, PeerKey, RequestedProtection, Requirement, SaDesc,
    SaTag, Tuple,
};
use ahash::RandomState;
use pad::TrafficSelector;
use pad::{FiveTuple, IdPattern, IpRange, Pad, SaQop, Spd, SpdAction, SpdEntry, ThreeTuple};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The table's hash maps: aHash, keyed at random per map (the 5-tuple and
/// the SA tag are attacker-influenced, so the hash must stay keyed against
/// HashDoS), and several times faster than the default SipHash-1-3.
type Map<K, V> = HashMap<K, V, RandomState>;

fn map<K, V>() -> Map<K, V> {
    HashMap::with_hasher(RandomState::new())
}

/// The hash of what the per-packet check reads (IPv4 5-tuples packed into
/// two `u64`s, in `five4`'s map; SA tags, in a hash map of this type):
/// foldhash (a multiply-mix hash), with a random seed per
/// map, so it stays keyed against HashDoS (the 5-tuples are partly chosen
/// by the peers); cheaper than aHash's generic path for these keys. Its
/// `quality` variant: `fast` spread neighbouring 5-tuples over too few of
/// hashbrown's control-byte values for some seeds (36 of 200 runs of
/// `mix_hash_is_keyed_and_spreads` failed; `quality` 0 of 200).
type MixState = foldhash::quality::RandomState;
type FastMap<K, V> = HashMap<K, V, MixState>;

fn fast_map<K, V>() -> FastMap<K, V> {
    HashMap::with_hasher(MixState::default())
}

/// Switches of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatchConfig {
    /// Latching on at all (R14's MAY switch). Default on.
    pub enabled: bool,
    /// How long a connection latch may stay Larval before it is Failed (R9).
    /// `None`: never; a missing SA is only packet loss. Default 30 s.
    pub larval_timeout: Option<Duration>,
    /// R13: narrow conflicting child-SA proposals (default) rather than
    /// refuse them.
    pub narrow: bool,
}

impl Default for LatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            larval_timeout: Some(Duration::from_secs(30)),
            narrow: true,
        }
    }
}

/// What happens to latches when the key manager restarts (R10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Every latch is Closed: the ULPs reset their connections.
    Reset,
    /// Latches survive with their bindings; the old key manager's SAs are
    /// forgotten (re-announce those still installed with `sa_added`). A
    /// survivor is never re-bound: an SA of another peer or protection makes
    /// it Broken.
    Survive,
}

/// The answer to a child-SA proposal (R13).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildSaVerdict {
    /// No latch is in the way.
    Accept,
    /// Accept these narrower selectors: the latched 5-tuples of other peers
    /// or other protection are left out.
    Narrow {
        /// Local selectors (unchanged).
        local_ts: Vec<TrafficSelector>,
        /// Remote selectors with the latched points cut out.
        remote_ts: Vec<TrafficSelector>,
        /// The latches that forced it.
        excluded: Vec<LatchId>,
    },
    /// Refuse (TS_UNACCEPTABLE): nothing would be left, or narrowing is off.
    Refuse {
        /// A latch in the way.
        latch: LatchId,
    },
}

/// Why a packet is dropped (R5, R6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The latch is still Larval (R5).
    NotEstablished,
    /// A latched flow's packet without IPsec (R6).
    Unprotected,
    /// Under an SA the table does not know.
    UnknownSa,
    /// Under an SA of another peer or other protection, or not covering the
    /// flow (R6).
    SaMismatch,
    /// Under IPsec on a flow latched to BYPASS.
    ProtectedOnBypass,
    /// The latch is Broken.
    Broken,
    /// The latch Failed.
    Failed,
    /// The latch is Closed.
    Closed,
    /// Outbound: no SA matching the latch now (acquire one; R9).
    NoMatchingSa,
    /// Delivery: the packet's version is newer than the table's.
    FutureVersion,
}

/// Why a packet may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PassKind {
    /// No latch covers the flow: the SPD alone decides.
    NotLatched,
    /// The flow is latched and the SA matches the latch.
    Latched(LatchId),
    /// The flow is latched to BYPASS and the packet is in the clear.
    Bypass(LatchId),
    /// A listener latch covers the flow and the packet may open a
    /// connection; the ULP then calls [`LatchTable::accept`].
    Listener(LatchId),
}

/// A per-packet decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Pass.
    Pass(PassKind),
    /// Drop (and count).
    Drop {
        /// The latch that refused it.
        latch: LatchId,
        /// Why.
        reason: DropReason,
    },
}

impl Verdict {
    /// True for [`Verdict::Pass`].
    pub fn passes(&self) -> bool {
        matches!(self, Self::Pass(_))
    }
}

/// A delivery decision after a version check (R16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Hand the packet to the ULP.
    Deliver,
    /// Drop it.
    Drop {
        /// The latch that refused it, if any.
        latch: Option<LatchId>,
        /// Why.
        reason: DropReason,
    },
}

/// Which SA an outbound packet of a flow must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outbound {
    /// Not latched: the SPD decides.
    NotLatched,
    /// Latched to BYPASS: send in the clear.
    Bypass(LatchId),
    /// Send under this SA.
    Use {
        /// The latch.
        latch: LatchId,
        /// The SA.
        sa: SaTag,
    },
    /// Drop; for [`DropReason::NoMatchingSa`], also acquire an SA with the
    /// latched peer and protection.
    Drop {
        /// The latch.
        latch: LatchId,
        /// Why.
        reason: DropReason,
    },
}

/// What an SA must equal for a latch to accept it: "same peer and equal
/// quality of protection" (R12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Binding {
    peer: PeerKey,
    qop: SaQop,
}

impl Binding {
    fn of(sa: &ChildSaDescriptor) -> Self {
        Self {
            peer: sa.peer.key(),
            qop: sa.protection,
        }
    }
}

/// A binding shared by an SA's entry and the latches it bound (one
/// allocation per SA, not per latch). `==` on `Arc<Binding>` compares the
/// pointers first, then the values: two equal bindings are equal whether or
/// not they share the allocation.
type SharedBinding = Arc<Binding>;

#[derive(Debug, Clone)]
struct Bound {
    params: LatchedParams,
    /// `None`: latched to BYPASS.
    binding: Option<SharedBinding>,
}

#[derive(Debug, Clone)]
struct BrokenBy {
    bound: Bound,
    /// The conflicting SAs.
    conflicts: Vec<SaTag>,
}

/// A latch's state. The bound variants are boxed: most latches of a big
/// table are Larval or Listener, and the state is 24 octets.
#[derive(Debug, Clone)]
enum St {
    Listener,
    Larval { deadline: Option<Instant> },
    Established(Box<Bound>),
    Broken(Box<BrokenBy>),
    Failed,
    Closed(Option<Box<LatchedParams>>),
}

impl St {
    fn state(&self) -> LatchState {
        match self {
            Self::Listener => LatchState::Listener,
            Self::Larval { .. } => LatchState::Larval,
            Self::Established(_) => LatchState::Established,
            Self::Broken(..) => LatchState::Broken,
            Self::Failed => LatchState::Failed,
            Self::Closed(_) => LatchState::Closed,
        }
    }

    fn bound(&self) -> Option<&Bound> {
        match self {
            Self::Established(b) => Some(b),
            Self::Broken(bb) => Some(&bb.bound),
            _ => None,
        }
    }

    /// What the per-packet check needs of a connection latch in this state
    /// (`None` for a listener, which is not in the 5-tuple map).
    fn gate(&self) -> Option<Gate> {
        Some(match self {
            Self::Listener => return None,
            Self::Larval { .. } => Gate::Larval,
            Self::Established(b) => b
                .binding
                .clone()
                .map_or(Gate::Bypass, |k| Gate::Bound(k, None)),
            Self::Broken(_) => Gate::Broken,
            Self::Failed => Gate::Failed,
            Self::Closed(_) => Gate::Closed,
        })
    }

    fn is_live(&self) -> bool {
        !matches!(self, Self::Failed | Self::Closed(_))
    }
}

/// The per-packet view of a connection latch: its state, and for a bound
/// latch the binding an SA must have, kept in the 5-tuple map's value so
/// the check is one lookup there (and, for a bound latch, one in the SA
/// map). Always `St::gate` of the latch's state (`set_state`, `insert`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gate {
    Larval,
    /// Established, latched to BYPASS.
    Bypass,
    /// Established under this binding; and an SA known to pass: in the
    /// table, of this binding, covering the latch's 5-tuple (set when the
    /// SA binds the latch or is added beside its binding; cleared when that
    /// SA is removed, and whenever the gate is rebuilt from the state). A
    /// packet under that SA passes on one compare, without the SA map and
    /// the selectors; under any other SA it is checked in full (R6, R12).
    Bound(SharedBinding, Option<SaTag>),
    Broken,
    Failed,
    Closed,
}

/// The value of the 5-tuple maps.
#[derive(Debug, Clone)]
struct Slot {
    id: LatchId,
    gate: Gate,
}

/// An SA that alone passes the inbound packets it covers
/// ([`LatchTable::admitting_sa`]), borrowed from the table.
#[derive(Debug, Clone, Copy)]
pub struct AdmittingSa<'a> {
    desc: &'a SaDesc,
    /// Its selectors as integers, when each side is one IPv4 selector
    /// (local, remote): a packed flow is then judged on compares alone.
    v4: Option<(SideV4, SideV4)>,
}

impl<'a> AdmittingSa<'a> {
    fn new(desc: &'a SaDesc) -> Self {
        let v4 = SideV4::of(&desc.local_ts).zip(SideV4::of(&desc.remote_ts));
        Self { desc, v4 }
    }

    /// Whether the SA covers `flow`: then [`LatchTable::sa_admits`] of it.
    #[inline]
    pub fn covers(&self, flow: Flow<'_>) -> bool {
        match (&self.v4, flow.packed) {
            (Some((local, remote)), Some(k)) => {
                local.matches(k.proto(), k.local()) & remote.matches(k.proto(), k.remote())
            }
            _ => covers(self.desc, flow.five, flow.packed),
        }
    }
}

/// One side of an SA's selectors that is a single IPv4 selector, as
/// integers: [`TrafficSelector::matches`] on a packed flow's side without
/// the address enums (`AdmittingSa`). A range is its start and its span
/// (end minus start), so that one wrapping subtraction and one compare
/// test it.
#[derive(Debug, Clone, Copy)]
struct SideV4 {
    /// The protocol (0: any).
    proto: u8,
    /// 0xff when any protocol matches, 0 when only `proto` does.
    any_proto: u8,
    port: u16,
    port_span: u16,
    addr: u32,
    addr_span: u32,
}

impl SideV4 {
    /// `None` for anything but one IPv4 selector whose ranges are the
    /// right way round (the others are judged by `covers`).
    fn of(ts: &[TrafficSelector]) -> Option<Self> {
        let [t] = ts else { return None };
        let (IpAddr::V4(s), IpAddr::V4(e)) = (t.addr.start, t.addr.end) else {
            return None;
        };
        let (s, e) = (u32::from(s), u32::from(e));
        Some(Self {
            proto: t.ip_proto,
            any_proto: if t.ip_proto == 0 { 0xff } else { 0 },
            port: t.start_port,
            port_span: t.end_port.checked_sub(t.start_port)?,
            addr: s,
            addr_span: e.checked_sub(s)?,
        })
    }

    /// Exactly `TrafficSelector::matches` (protocol 0 is any), on integers
    /// and without branches.
    #[inline]
    fn matches(&self, proto: u8, (a, port): (u32, u16)) -> bool {
        ((proto ^ self.proto) & !self.any_proto == 0)
            & (port.wrapping_sub(self.port) <= self.port_span)
            & (a.wrapping_sub(self.addr) <= self.addr_span)
    }
}

/// A 5-tuple between two IPv4 addresses packed into two words (local and
/// remote address; local port, remote port and protocol): the key of the
/// IPv4 5-tuple map, one 16-octet hash input and compare. Injective, so
/// equal keys are equal 5-tuples: callers may compare these instead of
/// whole [`FiveTuple`]s (the driver's per-burst memory of verdicts does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedV4(u64, u64);

impl Hash for PackedV4 {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.0);
        h.write_u64(self.1);
    }
}

impl PackedV4 {
    /// A value no 5-tuple packs to (the second word's top 24 bits, above
    /// the ports, are set): marks an empty slot in a table of packed keys.
    pub const NONE: Self = Self(0, u64::MAX);

    /// The local address and port.
    #[inline]
    fn local(self) -> (u32, u16) {
        ((self.0 >> 32) as u32, (self.1 >> 24) as u16)
    }

    /// The remote address and port.
    #[inline]
    fn remote(self) -> (u32, u16) {
        (self.0 as u32, (self.1 >> 8) as u16)
    }

    /// The protocol.
    #[inline]
    fn proto(self) -> u8 {
        self.1 as u8
    }

    /// `f` packed, if both its addresses are IPv4.
    #[inline]
    pub fn of(f: &FiveTuple) -> Option<Self> {
        match (f.local, f.remote) {
            (SocketAddr::V4(l), SocketAddr::V4(r)) => Some(Self(
                (u64::from(u32::from(*l.ip())) << 32) | u64::from(u32::from(*r.ip())),
                (u64::from(l.port()) << 24) | (u64::from(r.port()) << 8) | u64::from(f.proto),
            )),
            _ => None,
        }
    }
}

/// A 5-tuple and its [`PackedV4`] (if IPv4), computed once: built only by
/// [`Flow::new`], so the two always agree.
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    five: &'a FiveTuple,
    packed: Option<PackedV4>,
}

impl<'a> Flow<'a> {
    /// `five`, packed if IPv4.
    #[inline]
    pub fn new(five: &'a FiveTuple) -> Self {
        Self {
            five,
            packed: PackedV4::of(five),
        }
    }

    /// The 5-tuple.
    #[inline]
    pub fn five(&self) -> &'a FiveTuple {
        self.five
    }

    /// Its packing, if both addresses are IPv4.
    #[inline]
    pub fn packed(&self) -> Option<PackedV4> {
        self.packed
    }
}

/// What a latch was created with: shared by the latches created alike
/// (the table reuses the last one when equal, and a listener's connection
/// latches usually are), so a latch holds one pointer, not its own copy of
/// the SPD entry name and the requested protection.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    requested: RequestedProtection,
    requirement: Requirement,
    expected_peer: Option<IdPattern>,
    privileged: bool,
    same_peer_as_existing: bool,
    spd_entry: String,
}

#[derive(Debug, Clone)]
struct Latch {
    id: LatchId,
    tuple: Tuple,
    req: Arc<Request>,
    last_reason: AlertReason,
    created_at: Instant,
    state: St,
}

impl Latch {
    fn five(&self) -> Option<FiveTuple> {
        match self.tuple {
            Tuple::Five(f) => Some(f),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct SaEntry {
    /// The SA as announced, but its peer (in [`Self::peer`]).
    desc: SaDesc,
    /// The SA's peer, shared with the latches it binds (held once).
    peer: Arc<crate::PeerIdentity>,
    binding: SharedBinding,
    /// How many connection latches this SA covers whose gate is not bound
    /// to its own binding ([`blocks`]), plus the listener latches it may
    /// carry traffic of: while zero, the SA alone decides the inbound check
    /// of the packets it covers ([`LatchTable::sa_admits`]). Kept by
    /// [`LatchTable::gate_changed`] and [`LatchTable::listener_changed`].
    blockers: u32,
}

impl SaEntry {
    fn new(desc: ChildSaDescriptor, binding: SharedBinding) -> Self {
        let (desc, peer) = SaDesc::split(desc);
        Self {
            desc,
            peer: Arc::new(peer),
            binding,
            blockers: 0,
        }
    }

    /// Count one blocker more (`up`) or less.
    fn count_blocker(&mut self, up: bool) {
        if up {
            self.blockers = self.blockers.saturating_add(1);
        } else {
            debug_assert!(self.blockers > 0, "a blocker count went below zero");
            self.blockers = self.blockers.saturating_sub(1);
        }
    }

    /// The SA as announced.
    fn into_descriptor(self) -> ChildSaDescriptor {
        self.desc.join(Arc::unwrap_or_clone(self.peer))
    }
}

/// Whether a packet under SA `e` of a flow whose connection latch has
/// `gate` may be one the SA alone cannot pass: every gate but one bound to
/// the SA's own binding (the one gate whose packets `check_connection`
/// passes under every covering SA of that binding; R5, R6).
fn blocks(gate: &Gate, e: &SaEntry) -> bool {
    !matches!(gate, Gate::Bound(k, _) if *k == e.binding)
}

/// What of a gate [`blocks`] reads: the binding of a bound gate.
fn gate_binding(gate: Option<&Gate>) -> Option<Option<&SharedBinding>> {
    gate.map(|g| match g {
        Gate::Bound(k, _) => Some(k),
        _ => None,
    })
}

/// Whether SA `d` covers the flow `five`, packed as `key` if IPv4.
#[inline]
fn covers(d: &SaDesc, five: &FiveTuple, key: Option<PackedV4>) -> bool {
    match key {
        Some(k) => d.covers_v4(k.proto(), k.local(), k.remote()),
        None => d.covers(five),
    }
}

type AddrKey = (u8, u128);

fn addr_key(a: IpAddr) -> AddrKey {
    match a {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

fn range_keys(r: &IpRange) -> (AddrKey, AddrKey) {
    (addr_key(r.start), addr_key(r.end))
}

fn wildcard(t: &ThreeTuple) -> ThreeTuple {
    let ip = if t.local.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    ThreeTuple::new(t.proto, SocketAddr::new(ip, t.local.port()))
}

/// The connection-latch table of one key manager (draft 2.1): a pure state
/// machine, no I/O, no clock.
///
/// Methods, by group:
/// - getters: [`version`](Self::version), [`inquire`](Self::inquire),
///   [`info`](Self::info), [`enumerate`](Self::enumerate), [`pad`](Self::pad),
///   [`spd`](Self::spd);
/// - ULP operations (R12, R15): [`create_listener`](Self::create_listener),
///   [`create_connection`](Self::create_connection),
///   [`accept`](Self::accept), [`bind`](Self::bind),
///   [`destroy`](Self::destroy);
/// - key-manager input: [`sa_added`](Self::sa_added),
///   [`sa_removed`](Self::sa_removed),
///   [`authorize_child_sa`](Self::authorize_child_sa) (R13),
///   [`key_manager_restarted`](Self::key_manager_restarted) (R10),
///   [`set_policy`](Self::set_policy);
/// - datapath (O(1) in the number of latches, `&self`):
///   [`check_inbound`](Self::check_inbound),
///   [`check_outbound`](Self::check_outbound),
///   [`select_outbound_sa`](Self::select_outbound_sa),
///   [`check_delivery`](Self::check_delivery) (R16);
/// - time and events: [`handle_timeout`](Self::handle_timeout),
///   [`poll_timeout`](Self::poll_timeout), [`poll_alert`](Self::poll_alert).
///
/// Every mutation takes `&mut self`, so the version number and the state it
/// names change together for any reader (R16); the driver shares the table
/// behind a lock or a copy-on-write pointer.
#[derive(Debug, Clone)]
pub struct LatchTable {
    pad: Pad,
    spd: Spd,
    config: LatchConfig,
    version: u64,
    next_id: u64,
    /// Every latch, boxed: the map's slots stay 16 octets, so its spare
    /// capacity (up to half of it after a growth) costs little.
    latches: Map<LatchId, Box<Latch>>,
    /// Connection latches between IPv4 addresses, by 5-tuple, with what the
    /// per-packet check needs.
    by_five4: five4::Five4Map,
    /// The other connection latches (IPv6, or mixed families).
    by_five6: Map<FiveTuple, Slot>,
    by_three: Map<ThreeTuple, LatchId>,
    by_remote: BTreeMap<AddrKey, BTreeSet<LatchId>>,
    /// Boxed, like the latches: the map's spare slots (up to half of them
    /// after a growth) hold a pointer, not a whole entry, per SA.
    sas: FastMap<SaTag, Box<SaEntry>>,
    /// The SAs by the remote addresses their selectors cover: those that
    /// may cover a 5-tuple, without walking them all.
    sas_by_remote: sa_index::SaIndex,
    sas_by_binding: Map<SharedBinding, BTreeSet<SaTag>>,
    deadlines: BTreeSet<(Instant, LatchId)>,
    alerts: VecDeque<Alert>,
    /// The request of the last latch created, shared with the next one if
    /// equal.
    last_request: Option<Arc<Request>>,
}

impl LatchTable {
    /// An empty table under this policy.
    pub fn new(pad: Pad, spd: Spd, config: LatchConfig) -> Self {
        Self {
            pad,
            spd,
            config,
            version: 0,
            next_id: 1,
            latches: map(),
            by_five4: five4::Five4Map::new(),
            by_five6: map(),
            by_three: map(),
            by_remote: BTreeMap::new(),
            sas: fast_map(),
            sas_by_remote: sa_index::SaIndex::default(),
            sas_by_binding: map(),
            deadlines: BTreeSet::new(),
            alerts: VecDeque::new(),
            last_request: None,
        }
    }

    // ---- the 5-tuple maps ----

    fn slot(&self, f: &FiveTuple) -> Option<&Slot> {
        match PackedV4::of(f) {
            Some(k) => self.by_five4.get(&k),
            None => self.by_five6.get(f),
        }
    }

    fn slot_mut(&mut self, f: &FiveTuple) -> Option<&mut Slot> {
        match PackedV4::of(f) {
            Some(k) => self.by_five4.get_mut(&k),
            None => self.by_five6.get_mut(f),
        }
    }

    fn slot_insert(&mut self, f: FiveTuple, slot: Slot) {
        let before = self.slot(&f).map(|s| s.gate.clone());
        self.gate_changed(&f, before.as_ref(), Some(&slot.gate));
        match PackedV4::of(&f) {
            Some(k) => self.by_five4.insert(k, slot),
            None => self.by_five6.insert(f, slot),
        };
    }

    fn slot_remove(&mut self, f: &FiveTuple) {
        let before = self.slot(f).map(|s| s.gate.clone());
        self.gate_changed(f, before.as_ref(), None);
        match PackedV4::of(f) {
            Some(k) => self.by_five4.remove(&k),
            None => self.by_five6.remove(f),
        };
    }

    /// Keeps every SA's [`SaEntry::blockers`] true when the gate of the
    /// connection latch of `f` goes from `before` to `after` (`None`: no
    /// latch). Called before the slot changes. Only the SAs whose remote
    /// selectors hold the 5-tuple's remote address are asked
    /// ([`sa_index`]), as in [`Self::covering_sas`]; nothing for a change
    /// that moves no count (a known SA set or cleared, say).
    fn gate_changed(&mut self, f: &FiveTuple, before: Option<&Gate>, after: Option<&Gate>) {
        if gate_binding(before) == gate_binding(after) {
            return;
        }
        let mut tags = Vec::new();
        self.sas_by_remote.candidates(f.remote.ip(), &mut tags);
        for t in &tags {
            let Some(e) = self.sas.get_mut(t) else {
                continue;
            };
            let was = before.is_some_and(|g| blocks(g, e));
            let is = after.is_some_and(|g| blocks(g, e));
            if was != is && e.desc.covers(f) {
                e.count_blocker(is);
            }
        }
    }

    /// Keeps every SA's [`SaEntry::blockers`] true when listener latch `t`
    /// comes (`added`) or goes: every SA that may carry its traffic counts
    /// it (a packet under such an SA may open a connection at it, R12).
    /// O(SAs): a listener takes any remote address, so the index by
    /// remote address does not narrow it; listeners come and go rarely.
    fn listener_changed(&mut self, t: &ThreeTuple, added: bool) {
        for e in self.sas.values_mut() {
            if e.desc.covers_listener(t) {
                e.count_blocker(added);
            }
        }
    }

    /// The connection latch of a 5-tuple.
    fn latch_of(&self, f: &FiveTuple) -> Option<LatchId> {
        self.slot(f).map(|s| s.id)
    }

    /// Share the last request if this one is equal.
    fn intern(&mut self, r: Request) -> Arc<Request> {
        if let Some(last) = &self.last_request {
            if **last == r {
                return Arc::clone(last);
            }
        }
        let r = Arc::new(r);
        self.last_request = Some(Arc::clone(&r));
        r
    }

    // ---- getters ----

    /// The state version (R16): increases with every latch or SA change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The PAD in force.
    pub fn pad(&self) -> &Pad {
        &self.pad
    }

    /// The SPD in force.
    pub fn spd(&self) -> &Spd {
        &self.spd
    }

    /// The switches.
    pub fn config(&self) -> &LatchConfig {
        &self.config
    }

    /// Number of latches (all states).
    pub fn len(&self) -> usize {
        self.latches.len()
    }

    /// True if there is no latch.
    pub fn is_empty(&self) -> bool {
        self.latches.is_empty()
    }

    /// R2, R7: the connection latch of a 5-tuple, its state and latched
    /// parameters.
    pub fn inquire(&self, five: &FiveTuple) -> Option<LatchInfo> {
        self.latch_of(five).and_then(|id| self.info(id))
    }

    /// A latch by handle.
    pub fn info(&self, id: LatchId) -> Option<LatchInfo> {
        let l = self.latches.get(&id)?;
        let (current_sas, conflicting_sas) = match (&l.state, l.five()) {
            (St::Established(b), Some(f)) => (self.matching_sas(b, &f), Vec::new()),
            (St::Broken(bb), Some(f)) => (self.matching_sas(&bb.bound, &f), bb.conflicts.clone()),
            _ => (Vec::new(), Vec::new()),
        };
        let params = match &l.state {
            St::Closed(p) => p.as_deref().cloned(),
            st => st.bound().map(|b| b.params.clone()),
        };
        Some(LatchInfo {
            id,
            tuple: l.tuple,
            state: l.state.state(),
            params,
            requirement: l.req.requirement.clone(),
            expected_peer: l.req.expected_peer.clone(),
            spd_entry: l.req.spd_entry.clone(),
            current_nat: current_sas
                .first()
                .and_then(|t| self.sas.get(t))
                .map(|e| e.desc.nat),
            current_sas,
            conflicting_sas,
            last_reason: l.last_reason,
            created_at: l.created_at,
        })
    }

    /// RFC 5660 ENUMERATE: every latch, by handle.
    pub fn enumerate(&self) -> Vec<LatchInfo> {
        let mut ids: Vec<LatchId> = self.latches.keys().copied().collect();
        ids.sort();
        ids.into_iter().filter_map(|id| self.info(id)).collect()
    }

    fn matching_sas(&self, b: &Bound, f: &FiveTuple) -> Vec<SaTag> {
        b.binding
            .as_ref()
            .and_then(|k| self.sas_by_binding.get(&**k))
            .map(|set| {
                set.iter()
                    .copied()
                    .filter(|s| self.sas.get(s).is_some_and(|e| e.desc.covers(f)))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ---- policy (R3, R14, R19) ----

    fn resolve(
        entry: Option<&SpdEntry>,
        what: &dyn core::fmt::Display,
        requested: &RequestedProtection,
        privileged: bool,
    ) -> Result<(Requirement, String), LatchError> {
        let e = entry.ok_or_else(|| LatchError::NoPolicy(what.to_string()))?;
        let name = e.name.clone();
        let req = match (&e.action, requested) {
            (SpdAction::Protect(min), RequestedProtection::Policy) => {
                Requirement::Protect(min.clone())
            }
            (SpdAction::Protect(min), RequestedProtection::Protect(p)) => {
                p.meets_or_exceeds(min)
                    .map_err(|shortfall| LatchError::ProtectionBelowPolicy {
                        entry: name.clone(),
                        shortfall,
                    })?;
                Requirement::Protect(p.clone())
            }
            (SpdAction::Protect(_), RequestedProtection::Bypass) => {
                if !privileged {
                    return Err(LatchError::BypassNeedsPrivilege { entry: name });
                }
                Requirement::Bypass
            }
            (SpdAction::Bypass, RequestedProtection::Protect(p)) => Requirement::Protect(p.clone()),
            (SpdAction::Bypass, _) => Requirement::Bypass,
            // DISCARD, and any action this crate does not know.
            _ => return Err(LatchError::Discarded { entry: name }),
        };
        Ok((req, name))
    }

    fn check_enabled(&self, remote: Option<IpAddr>) -> Result<(), LatchError> {
        if !self.config.enabled {
            return Err(LatchError::LatchingDisabled);
        }
        if let Some(remote) = remote {
            if let Some(e) = self.pad.latch_disabled_for(remote) {
                return Err(LatchError::LatchDisabledByPad {
                    entry: e.name.clone(),
                    remote,
                });
            }
        }
        Ok(())
    }

    /// Replace the PAD and SPD (a configuration reload). Latches keep their
    /// state and latched parameters (R8); the new policy governs new latches
    /// and new SAs only.
    pub fn set_policy(&mut self, pad: Pad, spd: Spd) {
        self.pad = pad;
        self.spd = spd;
    }

    // ---- state changes ----

    fn bump(&mut self) {
        self.version = self.version.saturating_add(1);
    }

    fn set_state(&mut self, id: LatchId, new: St, reason: AlertReason) {
        let Some(l) = self.latches.get_mut(&id) else {
            return;
        };
        if let St::Larval {
            deadline: Some(d), ..
        } = l.state
        {
            self.deadlines.remove(&(d, id));
        }
        if let St::Larval { deadline: Some(d) } = new {
            self.deadlines.insert((d, id));
        }
        let from = l.state.state();
        let to = new.state();
        let gate = new.gate();
        l.state = new;
        l.last_reason = reason;
        let tuple = l.tuple;
        if let (Tuple::Five(f), Some(gate)) = (tuple, gate) {
            let before = self
                .slot(&f)
                .filter(|slot| slot.id == id)
                .map(|slot| slot.gate.clone());
            if let Some(before) = before {
                self.gate_changed(&f, Some(&before), Some(&gate));
                if let Some(slot) = self.slot_mut(&f) {
                    slot.gate = gate;
                }
            }
        }
        self.bump();
        self.alerts.push_back(Alert {
            latch: id,
            tuple,
            from: Some(from),
            to,
            reason,
            version: self.version,
        });
    }

    fn insert(&mut self, mut l: Latch) -> LatchId {
        let id = LatchId(self.next_id);
        self.next_id += 1;
        l.id = id;
        match l.tuple {
            Tuple::Five(f) => {
                let gate = l.state.gate().unwrap_or(Gate::Larval);
                self.slot_insert(f, Slot { id, gate });
                self.by_remote
                    .entry(addr_key(f.remote.ip()))
                    .or_default()
                    .insert(id);
            }
            Tuple::Three(t) => {
                // A stale listener it replaces was counted already.
                if self.by_three.insert(t, id).is_none() {
                    self.listener_changed(&t, true);
                }
            }
        }
        if let St::Larval { deadline: Some(d) } = l.state {
            self.deadlines.insert((d, id));
        }
        let alert = Alert {
            latch: id,
            tuple: l.tuple,
            from: None,
            to: l.state.state(),
            reason: AlertReason::Created,
            version: 0,
        };
        self.latches.insert(id, Box::new(l));
        self.bump();
        self.alerts.push_back(Alert {
            version: self.version,
            ..alert
        });
        id
    }

    fn remove(&mut self, id: LatchId) -> Option<Latch> {
        let l = *self.latches.remove(&id)?;
        match l.tuple {
            Tuple::Five(f) => {
                if self.latch_of(&f) == Some(id) {
                    self.slot_remove(&f);
                }
                let k = addr_key(f.remote.ip());
                if let Some(set) = self.by_remote.get_mut(&k) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.by_remote.remove(&k);
                    }
                }
            }
            Tuple::Three(t) => {
                if self.by_three.get(&t) == Some(&id) {
                    self.by_three.remove(&t);
                    self.listener_changed(&t, false);
                }
            }
        }
        if let St::Larval { deadline: Some(d) } = l.state {
            self.deadlines.remove(&(d, id));
        }
        self.bump();
        Some(l)
    }

    /// Connection latches whose remote address lies in one of the ranges.
    fn latches_in<'a>(&self, ranges: impl Iterator<Item = &'a IpRange>) -> BTreeSet<LatchId> {
        let mut out = BTreeSet::new();
        for r in ranges {
            let (lo, hi) = range_keys(r);
            for (_, ids) in self.by_remote.range(lo..=hi) {
                out.extend(ids.iter().copied());
            }
        }
        out
    }

    /// R11: the peer of an Established (or Broken) latch between the same
    /// addresses, other than `except`.
    fn pair_peer(&self, f: &FiveTuple, except: Option<LatchId>) -> Option<(PeerKey, LatchId)> {
        let ids = self.by_remote.get(&addr_key(f.remote.ip()))?;
        ids.iter().filter(|id| Some(**id) != except).find_map(|id| {
            let l = self.latches.get(id)?;
            let other = l.five()?;
            if other.local.ip() != f.local.ip() {
                return None;
            }
            let b = l.state.bound()?.binding.as_deref()?;
            Some((b.peer.clone(), *id))
        })
    }

    /// Whether `sa` meets what latch `l` requires (protection, expected
    /// peer, R11 peer). `Err` names the R11 latch on a peer mismatch.
    fn sa_fits(&self, l: &Latch, sa: &SaEntry) -> Result<bool, LatchId> {
        self.fits(l, &sa.peer, &sa.binding.peer, &sa.desc.protection)
    }

    /// Whether an SA of `peer` (key `key`) with protection `qop` meets what
    /// latch `l` requires. `Err` names the R11 latch on a peer mismatch.
    fn fits(
        &self,
        l: &Latch,
        peer: &crate::PeerIdentity,
        key: &PeerKey,
        qop: &SaQop,
    ) -> Result<bool, LatchId> {
        let Requirement::Protect(p) = &l.req.requirement else {
            return Ok(false);
        };
        if p.admits(qop).is_err() {
            return Ok(false);
        }
        if let Some(e) = &l.req.expected_peer {
            if !peer.matches(e) {
                return Ok(false);
            }
        }
        if l.req.same_peer_as_existing {
            if let Some(f) = l.five() {
                if let Some((other_peer, other)) = self.pair_peer(&f, Some(l.id)) {
                    if other_peer != *key {
                        return Err(other);
                    }
                }
            }
        }
        Ok(true)
    }

    /// The SAs covering `f`, in tag order: of those whose remote
    /// selectors hold its remote address ([`sa_index`]), the ones that
    /// cover it.
    fn covering_sas(&self, f: &FiveTuple) -> Vec<&SaEntry> {
        let mut tags = Vec::new();
        self.sas_by_remote.candidates(f.remote.ip(), &mut tags);
        tags.iter()
            .filter_map(|t| self.sas.get(t))
            .map(|e| &**e)
            .filter(|e| e.desc.covers(f))
            .collect()
    }

    // ---- ULP operations ----

    /// R12: create a listener latch for a 3-tuple; fails if one exists. The
    /// request is checked against the SPD entry governing the 3-tuple for
    /// every remote peer (R3, R19).
    pub fn create_listener(
        &mut self,
        req: ListenerRequest,
        now: Instant,
    ) -> Result<LatchId, LatchError> {
        self.check_enabled(None)?;
        if let Some(&existing) = self.by_three.get(&req.three) {
            if self
                .latches
                .get(&existing)
                .is_some_and(|l| l.state.is_live())
            {
                return Err(LatchError::ListenerExists {
                    existing,
                    three: req.three,
                });
            }
            self.remove(existing);
        }
        let (requirement, spd_entry) = Self::resolve(
            self.spd.lookup_listener(&req.three),
            &req.three,
            &req.protection,
            req.privileged,
        )?;
        if requirement == Requirement::Bypass && req.expected_peer.is_some() {
            return Err(LatchError::ExpectedPeerWithBypass);
        }
        let req_three = req.three;
        let req = self.intern(Request {
            requested: req.protection,
            requirement,
            expected_peer: req.expected_peer,
            privileged: req.privileged,
            same_peer_as_existing: true,
            spd_entry,
        });
        Ok(self.insert(Latch {
            id: LatchId(0),
            tuple: Tuple::Three(req_three),
            req,
            last_reason: AlertReason::Created,
            created_at: now,
            state: St::Listener,
        }))
    }

    /// R12: create a connection latch for a 5-tuple. Fails on a live latch
    /// of the same 5-tuple, on child SAs covering it with different peers or
    /// protection, or that do not meet the request; on policy (R3, R14,
    /// R19). A BYPASS latch is Established at once; a protected one is
    /// Larval, or Established at once when a fitting SA already covers it.
    pub fn create_connection(
        &mut self,
        req: ConnectionRequest,
        now: Instant,
    ) -> Result<LatchId, LatchError> {
        let f = req.five;
        self.check_enabled(Some(f.remote.ip()))?;
        let (requirement, spd_entry) =
            Self::resolve(self.spd.lookup(&f), &f, &req.protection, req.privileged)?;
        if requirement == Requirement::Bypass && req.expected_peer.is_some() {
            return Err(LatchError::ExpectedPeerWithBypass);
        }
        if matches!(requirement, Requirement::Protect(_))
            && !self.pad.anyone_may_assert(f.remote.ip())
        {
            return Err(LatchError::NoPeerMayAssert {
                remote: f.remote.ip(),
            });
        }
        let stale = match self.latch_of(&f) {
            Some(existing)
                if self
                    .latches
                    .get(&existing)
                    .is_some_and(|l| l.state.is_live()) =>
            {
                return Err(LatchError::ConnectionExists { existing, five: f });
            }
            other => other,
        };
        let bypass = requirement == Requirement::Bypass;
        let req = self.intern(Request {
            requested: req.protection,
            requirement,
            expected_peer: req.expected_peer,
            privileged: req.privileged,
            same_peer_as_existing: req.same_peer_as_existing,
            spd_entry,
        });
        let mut latch = Latch {
            id: LatchId(0),
            tuple: Tuple::Five(f),
            req,
            last_reason: AlertReason::Created,
            created_at: now,
            state: St::Larval {
                deadline: self.config.larval_timeout.and_then(|d| now.checked_add(d)),
            },
        };
        // The draft's rule: no child SA may cover the 5-tuple unless all of
        // them are with the same peer and equal protection, which the
        // request accepts.
        let covering = self.covering_sas(&f);
        let mut fit = None;
        if let Some(first) = covering.first() {
            if bypass || covering.iter().any(|e| e.binding != first.binding) {
                return Err(LatchError::ConflictingSas {
                    sas: covering.iter().map(|e| e.desc.id).collect(),
                });
            }
            match self.sa_fits(&latch, first) {
                Ok(true) => fit = Some(first.desc.id),
                Ok(false) => return Err(LatchError::SaDoesNotMeetRequest { sa: first.desc.id }),
                Err(latch) => return Err(LatchError::OtherPeerThanEstablished { latch }),
            }
        }
        if let Some(old) = stale {
            self.remove(old);
        }
        if bypass {
            latch.state = St::Larval { deadline: None };
        }
        let id = self.insert(latch);
        if let Some(sa) = fit {
            self.establish(id, sa, now);
        } else if bypass {
            let bound = Bound {
                params: LatchedParams::bypass(now),
                binding: None,
            };
            self.set_state(id, St::Established(Box::new(bound)), AlertReason::Bypassed);
        }
        Ok(id)
    }

    /// Bind latch `id` to SA `sa` (which must be in the table).
    fn establish(&mut self, id: LatchId, sa: SaTag, now: Instant) {
        let Some(e) = self.sas.get(&sa) else {
            return;
        };
        let bound = Bound {
            params: LatchedParams::from_sa(&e.desc, Arc::clone(&e.peer), now),
            binding: Some(Arc::clone(&e.binding)),
        };
        self.set_state(id, St::Established(Box::new(bound)), AlertReason::Bound(sa));
        self.set_known_sa(id, sa);
    }

    /// The known SA of latch `id`'s gate (`Gate::Bound`), to set or clear.
    fn known_sa_mut(&mut self, id: LatchId) -> Option<&mut Option<SaTag>> {
        let f = self.latches.get(&id)?.five()?;
        match self.slot_mut(&f)? {
            Slot {
                id: sid,
                gate: Gate::Bound(_, known),
            } if *sid == id => Some(known),
            _ => None,
        }
    }

    /// Gate of latch `id`: SA `sa` passes (it is in the table, of the
    /// latch's binding, and covers its 5-tuple: the caller checked).
    fn set_known_sa(&mut self, id: LatchId, sa: SaTag) {
        if let Some(known) = self.known_sa_mut(id) {
            *known = Some(sa);
        }
    }

    /// Gate of latch `id`: forget SA `sa` (removed) if it was the known one.
    fn forget_known_sa(&mut self, id: LatchId, sa: SaTag) {
        if let Some(known) = self.known_sa_mut(id).filter(|k| **k == Some(sa)) {
            *known = None;
        }
    }

    /// A connection arrived at a listener (e.g. a TCP SYN under SA `sa`):
    /// create its connection latch with the listener's request, checked
    /// against the SPD for the full 5-tuple, and bind it to `sa` (R12).
    /// If that fails the new latch is destroyed (R15) and the error
    /// returned.
    pub fn accept(
        &mut self,
        listener: LatchId,
        five: FiveTuple,
        sa: Option<SaTag>,
        now: Instant,
    ) -> Result<LatchId, LatchError> {
        let l = self
            .latches
            .get(&listener)
            .ok_or(LatchError::UnknownLatch(listener))?;
        let Tuple::Three(three) = l.tuple else {
            return Err(LatchError::NotListener(listener));
        };
        if !matches!(l.state, St::Listener) {
            return Err(LatchError::WrongState {
                latch: listener,
                state: l.state.state(),
            });
        }
        if !three.covers(&five) {
            return Err(LatchError::NotUnderListener { listener, five });
        }
        let req = ConnectionRequest {
            five,
            protection: l.req.requested.clone(),
            expected_peer: l.req.expected_peer.clone(),
            privileged: l.req.privileged,
            same_peer_as_existing: true,
        };
        let id = self.create_connection(req, now)?;
        if let Some(sa) = sa {
            if let Err(e) = self.bind(id, sa, now) {
                self.destroy(id).ok();
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Bind a connection latch to a child SA that covers it: Larval ->
    /// Established, taking the SA's peer and protection. On an Established
    /// latch, checks that the SA matches the latch (never re-binds: R8).
    pub fn bind(&mut self, id: LatchId, sa: SaTag, now: Instant) -> Result<(), LatchError> {
        let l = self.latches.get(&id).ok_or(LatchError::UnknownLatch(id))?;
        let f = l.five().ok_or(LatchError::WrongState {
            latch: id,
            state: LatchState::Listener,
        })?;
        let e = self.sas.get(&sa).ok_or(LatchError::UnknownSa(sa))?;
        if !e.desc.covers(&f) {
            return Err(LatchError::SaDoesNotCover { latch: id, sa });
        }
        match &l.state {
            St::Larval { .. } => {}
            St::Established(b) if b.binding.as_ref() == Some(&e.binding) => return Ok(()),
            St::Established(_) => return Err(LatchError::SaDoesNotMatch { latch: id, sa }),
            other => {
                return Err(LatchError::WrongState {
                    latch: id,
                    state: other.state(),
                })
            }
        }
        match self.sa_fits(l, e) {
            Ok(true) => {}
            Ok(false) => return Err(LatchError::SaDoesNotMatch { latch: id, sa }),
            Err(latch) => return Err(LatchError::OtherPeerThanEstablished { latch }),
        }
        let others: Vec<SaTag> = self
            .covering_sas(&f)
            .iter()
            .filter(|o| o.binding != e.binding)
            .map(|o| o.desc.id)
            .collect();
        if !others.is_empty() {
            return Err(LatchError::ConflictingSas { sas: others });
        }
        self.establish(id, sa, now);
        Ok(())
    }

    /// R15: destroy a latch (listener or connection). An ALERT reports it
    /// Closed, then it is gone: its packets are no longer latched.
    pub fn destroy(&mut self, id: LatchId) -> Result<(), LatchError> {
        let state = self
            .latches
            .get(&id)
            .map(|l| l.state.state())
            .ok_or(LatchError::UnknownLatch(id))?;
        if state != LatchState::Closed {
            let params = self
                .latches
                .get(&id)
                .and_then(|l| l.state.bound().map(|b| Box::new(b.params.clone())));
            self.set_state(id, St::Closed(params), AlertReason::Released);
        }
        self.remove(id);
        Ok(())
    }

    // ---- key manager input ----

    /// The key manager installed a child SA. Larval latches it fits are
    /// Established; Established latches it conflicts with (another peer or
    /// other protection covering their 5-tuple) become Broken (RFC 5660).
    pub fn sa_added(&mut self, sa: ChildSaDescriptor, now: Instant) -> Result<(), LatchError> {
        if self.sas.contains_key(&sa.id) {
            return Err(LatchError::DuplicateSa(sa.id));
        }
        // Share the binding of the SAs already there with the same peer and
        // protection (cheaper compares on the per-packet path).
        let binding = Binding::of(&sa);
        let binding = match self.sas_by_binding.get_key_value(&binding) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::new(binding),
        };
        let entry = SaEntry::new(sa, binding);
        let tag = entry.desc.id;
        self.sas_by_binding
            .entry(Arc::clone(&entry.binding))
            .or_default()
            .insert(tag);
        let ranges: Vec<IpRange> = entry.desc.remote_ranges().collect();
        let ids = self.latches_in(ranges.iter());
        let mut entry = Box::new(entry);
        entry.blockers = self.blockers_of(&entry, &ids);
        self.sas.insert(tag, entry);
        self.sas_by_remote.insert(tag, &ranges);
        self.bump();
        // From here on, `set_state` keeps its count (`gate_changed`).
        for id in ids {
            let (Some(l), Some(e)) = (self.latches.get(&id), self.sas.get(&tag)) else {
                continue;
            };
            let Some(f) = l.five() else { continue };
            if !e.desc.covers(&f) {
                continue;
            }
            match &l.state {
                St::Larval { .. } => {
                    let unanimous = self.covering_sas(&f).iter().all(|o| o.binding == e.binding);
                    if unanimous && self.sa_fits(l, e) == Ok(true) {
                        self.establish(id, tag, now);
                    }
                }
                St::Established(b) if b.binding.as_ref() != Some(&e.binding) => {
                    let broken = BrokenBy {
                        bound: (**b).clone(),
                        conflicts: vec![tag],
                    };
                    self.set_state(
                        id,
                        St::Broken(Box::new(broken)),
                        AlertReason::ConflictingSa(tag),
                    );
                }
                St::Broken(bb) if bb.bound.binding.as_ref() != Some(&e.binding) => {
                    if let Some(St::Broken(bb)) = self.latches.get_mut(&id).map(|l| &mut l.state) {
                        bb.conflicts.push(tag);
                    }
                }
                // Same binding, covering (checked above): the newest SA
                // (a rekey's) is the one the packets will come under.
                St::Established(_) => self.set_known_sa(id, tag),
                _ => {}
            }
        }
        Ok(())
    }

    /// [`SaEntry::blockers`] of a new SA `e`, counted: the connection
    /// latches among `ids` (those whose remote address its selectors
    /// cover) it covers, each through its 5-tuple's current slot, and the
    /// listeners it may carry traffic of.
    fn blockers_of(&self, e: &SaEntry, ids: &BTreeSet<LatchId>) -> u32 {
        let latches = ids
            .iter()
            .filter_map(|id| {
                let f = self.latches.get(id)?.five()?;
                self.slot(&f)
                    .filter(|slot| slot.id == *id && blocks(&slot.gate, e) && e.desc.covers(&f))
            })
            .count();
        let listeners = self
            .by_three
            .keys()
            .filter(|t| e.desc.covers_listener(t))
            .count();
        u32::try_from(latches.saturating_add(listeners)).unwrap_or(u32::MAX)
    }

    /// NAT information of SA `tag` (as announced), to update when its peer
    /// moved (RFC 7296 2.23: its NAT rebound the mapping, or it changed
    /// address), so that an inquiry reports where the peer is now (R7,
    /// [`LatchInfo::current_nat`]). The parameters latched when a
    /// connection was established stay as they were (R8). Nothing on the
    /// packet path reads it: an SA is bound by its peer and protection, not
    /// by the peer's outer address. `None` if there is no such SA.
    pub fn sa_nat_mut(&mut self, tag: SaTag) -> Option<&mut NatInfo> {
        self.sas.get_mut(&tag).map(|e| &mut e.desc.nat)
    }

    /// The key manager removed a child SA. Broken latches whose conflicts
    /// are all gone are Established again (same parameters). An Established
    /// latch left without SA stays Established: its packets are dropped
    /// until a matching SA comes (packet loss, R9).
    pub fn sa_removed(&mut self, tag: SaTag) -> Option<ChildSaDescriptor> {
        let e = *self.sas.remove(&tag)?;
        if let Some(set) = self.sas_by_binding.get_mut(&*e.binding) {
            set.remove(&tag);
            if set.is_empty() {
                self.sas_by_binding.remove(&*e.binding);
            }
        }
        self.bump();
        let ranges: Vec<IpRange> = e.desc.remote_ranges().collect();
        self.sas_by_remote.remove(tag, &ranges);
        for id in self.latches_in(ranges.iter()) {
            // Every latch it could be known to covers a 5-tuple the SA
            // covers, so its remote address is in these ranges.
            self.forget_known_sa(id, tag);
            let Some(l) = self.latches.get_mut(&id) else {
                continue;
            };
            if let St::Broken(bb) = &mut l.state {
                bb.conflicts.retain(|s| *s != tag);
                if bb.conflicts.is_empty() {
                    let b = Box::new(bb.bound.clone());
                    self.set_state(id, St::Established(b), AlertReason::ConflictResolved);
                }
            }
        }
        Some(e.into_descriptor())
    }

    /// R13: judge a child-SA proposal of `peer` with protection `qop` and
    /// selectors `local_ts` x `remote_ts` (for a responder: TSr x TSi).
    /// Proposals that would cover a latch bound to another peer or other
    /// protection (Established or Broken), or a Larval latch they do not fit
    /// (protection, expected peer, R11 peer), are narrowed around the
    /// latched 5-tuples, or refused.
    ///
    /// Call it and then [`sa_added`](Self::sa_added) under one lock, with no
    /// other change between: the verdict holds for the table as it is.
    pub fn authorize_child_sa(
        &self,
        peer: &crate::PeerIdentity,
        qop: &SaQop,
        local_ts: &[TrafficSelector],
        remote_ts: &[TrafficSelector],
    ) -> ChildSaVerdict {
        let key = Binding {
            peer: peer.key(),
            qop: *qop,
        };
        let mut excluded = Vec::new();
        let mut points = Vec::new();
        for id in self.latches_in(remote_ts.iter().map(|t| &t.addr)) {
            let Some(l) = self.latches.get(&id) else {
                continue;
            };
            let Some(f) = l.five() else { continue };
            if !product_covers(local_ts, remote_ts, &f) {
                continue;
            }
            let conflict = match &l.state {
                St::Established(_) | St::Broken(_) => {
                    l.state.bound().and_then(|b| b.binding.as_deref()) != Some(&key)
                }
                // A Larval latch may be bound by this SA only if it fits
                // (protection, expected peer, R11); an SA that covers it
                // without fitting would keep it from ever binding.
                St::Larval { .. } => self.fits(l, peer, &key.peer, qop) != Ok(true),
                _ => false,
            };
            if conflict {
                excluded.push(id);
                points.push(f);
            }
        }
        let Some(&first) = excluded.first() else {
            return ChildSaVerdict::Accept;
        };
        if !self.config.narrow {
            return ChildSaVerdict::Refuse { latch: first };
        }
        let narrowed = narrow_remote(remote_ts, &points);
        if !narrowed.is_empty() {
            return ChildSaVerdict::Narrow {
                local_ts: local_ts.to_vec(),
                remote_ts: narrowed,
                excluded,
            };
        }
        // Nothing left of the remote side (it was the latched point itself):
        // try cutting the latched points out of the local side instead.
        let narrowed = narrow_local(local_ts, &points);
        if narrowed.is_empty() {
            return ChildSaVerdict::Refuse { latch: first };
        }
        ChildSaVerdict::Narrow {
            local_ts: narrowed,
            remote_ts: remote_ts.to_vec(),
            excluded,
        }
    }

    /// R10: the key manager restarted. Its SAs are forgotten. With
    /// [`RestartPolicy::Reset`] every latch is Closed; with
    /// [`RestartPolicy::Survive`] latches keep their state and bindings
    /// (Broken ones whose conflicts went with the SAs are Established
    /// again). No latch is ever re-bound to another peer.
    pub fn key_manager_restarted(&mut self, policy: RestartPolicy) {
        let tags: Vec<SaTag> = self.sas.keys().copied().collect();
        for t in tags {
            self.sa_removed(t);
        }
        self.bump();
        if policy == RestartPolicy::Reset {
            let mut ids: Vec<LatchId> = self.latches.keys().copied().collect();
            ids.sort();
            for id in ids {
                let Some(l) = self.latches.get(&id) else {
                    continue;
                };
                if matches!(l.state, St::Closed(_)) {
                    continue;
                }
                let params = l.state.bound().map(|b| Box::new(b.params.clone()));
                self.set_state(id, St::Closed(params), AlertReason::KeyManagerRestart);
            }
        }
    }

    // ---- time and events ----

    /// R9: Larval latches past their deadline are Failed (reported by
    /// ALERT, as though the connection were reset).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(d, id)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.remove(&(d, id));
            if self
                .latches
                .get(&id)
                .is_some_and(|l| matches!(l.state, St::Larval { .. }))
            {
                self.set_state(id, St::Failed, AlertReason::Timeout);
            }
        }
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// The next ALERT (RFC 5660), oldest first.
    pub fn poll_alert(&mut self) -> Option<Alert> {
        self.alerts.pop_front()
    }

    // ---- datapath ----

    /// The per-packet check: one lookup in the 5-tuple map, whose value
    /// holds the latch's state and binding (and, for a bound latch and a
    /// protected packet, one in the SA map); the listener maps only when
    /// the flow has no connection latch and listeners exist.
    #[inline(always)]
    fn check(&self, five: &FiveTuple, sa: Option<SaTag>) -> Verdict {
        self.check_flow(Flow::new(five), sa)
    }

    /// [`Self::check`] of a flow packed already.
    #[inline(always)]
    fn check_flow(&self, flow: Flow<'_>, sa: Option<SaTag>) -> Verdict {
        // The packed key is computed once, for the map and the selectors.
        let (five, key) = (flow.five, flow.packed);
        let slot = match key {
            Some(k) => self.by_five4.get(&k),
            None => self.by_five6.get(five),
        };
        if let Some(slot) = slot {
            return self.check_connection(slot, five, key, sa);
        }
        if self.by_three.is_empty() {
            return Verdict::Pass(PassKind::NotLatched);
        }
        let three = five.three();
        let Some(l) = self
            .by_three
            .get(&three)
            .or_else(|| self.by_three.get(&wildcard(&three)))
            .and_then(|id| self.latches.get(id))
        else {
            return Verdict::Pass(PassKind::NotLatched);
        };
        let drop = |reason| Verdict::Drop {
            latch: l.id,
            reason,
        };
        match &l.state {
            St::Larval { .. } => drop(DropReason::NotEstablished),
            St::Broken(..) => drop(DropReason::Broken),
            St::Failed => drop(DropReason::Failed),
            St::Closed(_) => drop(DropReason::Closed),
            // Listener latches are never bound; kept for a total match.
            st @ St::Established(_) => match st.gate() {
                Some(gate) => self.check_connection(&Slot { id: l.id, gate }, five, None, sa),
                None => drop(DropReason::Closed),
            },
            St::Listener => match (&l.req.requirement, sa) {
                (Requirement::Bypass, None) => Verdict::Pass(PassKind::Listener(l.id)),
                (Requirement::Bypass, Some(_)) => drop(DropReason::ProtectedOnBypass),
                (Requirement::Protect(_), None) => drop(DropReason::Unprotected),
                (Requirement::Protect(_), Some(s)) => match self.sas.get(&s) {
                    None => drop(DropReason::UnknownSa),
                    Some(e) if e.desc.covers(five) && self.sa_fits(l, e) == Ok(true) => {
                        Verdict::Pass(PassKind::Listener(l.id))
                    }
                    Some(_) => drop(DropReason::SaMismatch),
                },
            },
        }
    }

    /// R5, R6: a packet of a flow with a connection latch.
    /// `key`: the 5-tuple packed, if between IPv4 addresses (`None` checks
    /// the selectors on `five` instead).
    #[inline(always)]
    fn check_connection(
        &self,
        slot: &Slot,
        five: &FiveTuple,
        key: Option<PackedV4>,
        sa: Option<SaTag>,
    ) -> Verdict {
        let drop = |reason| Verdict::Drop {
            latch: slot.id,
            reason,
        };
        match (&slot.gate, sa) {
            (Gate::Larval, _) => drop(DropReason::NotEstablished),
            (Gate::Broken, _) => drop(DropReason::Broken),
            (Gate::Failed, _) => drop(DropReason::Failed),
            (Gate::Closed, _) => drop(DropReason::Closed),
            (Gate::Bypass, None) => Verdict::Pass(PassKind::Bypass(slot.id)),
            (Gate::Bypass, Some(_)) => drop(DropReason::ProtectedOnBypass),
            (Gate::Bound(_, _), None) => drop(DropReason::Unprotected),
            (Gate::Bound(_, Some(known)), Some(s)) if *known == s => {
                Verdict::Pass(PassKind::Latched(slot.id))
            }
            (Gate::Bound(k, _), Some(s)) => match self.sas.get(&s) {
                None => drop(DropReason::UnknownSa),
                Some(e) if e.binding == *k && covers(&e.desc, five, key) => {
                    Verdict::Pass(PassKind::Latched(slot.id))
                }
                Some(_) => drop(DropReason::SaMismatch),
            },
        }
    }

    /// R5, R6: may an inbound packet of `five`, protected by SA `sa` (or in
    /// the clear), be accepted? O(1) in the number of latches.
    #[inline]
    pub fn check_inbound(&self, five: &FiveTuple, sa: Option<SaTag>) -> Verdict {
        self.check(five, sa)
    }

    /// [`check_inbound`](Self::check_inbound) of a flow whose IPv4 packing
    /// the caller has already computed (to compare it with remembered
    /// flows): the same verdict, without packing it again.
    #[inline]
    pub fn check_inbound_flow(&self, flow: Flow<'_>, sa: Option<SaTag>) -> Verdict {
        self.check_flow(flow, sa)
    }

    /// Reads (and so brings into the cache) the entries the checks of
    /// these IPv4 flows, packed (a receive burst's), will read first, and
    /// returns a word of them: fold it into a `std::hint::black_box` so the
    /// reads are kept. Changes nothing. The hashes are computed first, then
    /// the reads done alone, so that at a million latches their cache
    /// misses are in flight together rather than one after another (the
    /// entry's place is known from the hash: `five4`).
    #[inline]
    pub fn touch_inbound_packed(&self, flows: impl IntoIterator<Item = PackedV4>) -> u64 {
        self.by_five4.touch_all(flows)
    }

    /// Whether touching a burst's flows first is worth its cost (about 25
    /// instructions a packet): only when the IPv4 5-tuple map is larger
    /// than a core's caches keep ([`Self::TOUCH_FROM`] latches, 1.5 MiB
    /// of entries), so that a lookup may miss them.
    #[inline]
    pub fn touch_pays(&self) -> bool {
        self.by_five4.len() >= Self::TOUCH_FROM
    }

    /// See [`Self::touch_pays`].
    pub const TOUCH_FROM: usize = 16_384;

    /// R5, R6: whether SA `sa` alone passes a packet of `flow` under it,
    /// inbound or outbound, with nothing read per flow: the SA is in the
    /// table, covers the flow, and every connection latch it covers is
    /// bound to its own peer and protection, and no listener latch may
    /// take its traffic (its count of the others is zero; kept on every
    /// change of a latch or SA). Then [`Self::check_inbound`] and
    /// [`Self::check_outbound`] of the packet pass, as `NotLatched` or
    /// `Latched` (which one is not looked up) and never `Listener`; and
    /// the SA may carry it out (a latched flow's
    /// [`Self::select_outbound_sa`] names an SA of the same peer and
    /// protection). `false` says nothing: check the packet. O(1) in the
    /// number of latches.
    #[inline]
    pub fn sa_admits(&self, flow: Flow<'_>, sa: SaTag) -> bool {
        self.admitting_sa(sa).is_some_and(|a| a.covers(flow))
    }

    /// SA `sa`, if it is in the table and no latch or listener it covers
    /// is other than bound to its own peer and protection: the part of
    /// [`Self::sa_admits`] that is the same for every flow (one SA map
    /// lookup), to judge a burst's flows under one SA with
    /// [`AdmittingSa::covers`] alone.
    #[inline]
    pub fn admitting_sa(&self, sa: SaTag) -> Option<AdmittingSa<'_>> {
        self.sas
            .get(&sa)
            .filter(|e| e.blockers == 0)
            .map(|e| AdmittingSa::new(&e.desc))
    }

    /// R5, R6: may an outbound packet of `five` leave under SA `sa` (or in
    /// the clear)? O(1) in the number of latches.
    pub fn check_outbound(&self, five: &FiveTuple, sa: Option<SaTag>) -> Verdict {
        self.check(five, sa)
    }

    /// Which SA an outbound packet of `five` must use: one matching the
    /// latch (R6, R17). `Drop` with [`DropReason::NoMatchingSa`] means the
    /// caller should acquire one (the packet is lost: R9).
    pub fn select_outbound_sa(&self, five: &FiveTuple) -> Outbound {
        let Some(slot) = self.slot(five) else {
            return Outbound::NotLatched;
        };
        let drop = |reason| Outbound::Drop {
            latch: slot.id,
            reason,
        };
        match &slot.gate {
            Gate::Bypass => Outbound::Bypass(slot.id),
            Gate::Bound(k, _) => self
                .sas_by_binding
                .get(&**k)
                .and_then(|set| {
                    set.iter()
                        .rev()
                        .find(|s| self.sas.get(s).is_some_and(|e| e.desc.covers(five)))
                })
                .map_or(drop(DropReason::NoMatchingSa), |sa| Outbound::Use {
                    latch: slot.id,
                    sa: *sa,
                }),
            Gate::Larval => drop(DropReason::NotEstablished),
            Gate::Broken => drop(DropReason::Broken),
            Gate::Failed => drop(DropReason::Failed),
            Gate::Closed => drop(DropReason::Closed),
        }
    }

    /// R16: a packet decapsulated when the table was at `version_at_decap`
    /// is delivered now. Unchanged version: deliver (it was checked then).
    /// Otherwise it is checked again against the current state.
    pub fn check_delivery(
        &self,
        version_at_decap: u64,
        five: &FiveTuple,
        sa: Option<SaTag>,
    ) -> Delivery {
        if version_at_decap == self.version {
            return Delivery::Deliver;
        }
        if version_at_decap > self.version {
            return Delivery::Drop {
                latch: None,
                reason: DropReason::FutureVersion,
            };
        }
        match self.check(five, sa) {
            Verdict::Drop { latch, reason } => Delivery::Drop {
                latch: Some(latch),
                reason,
            },
            Verdict::Pass(_) => Delivery::Deliver,
        }
    }
}

mod five4;
mod sa_index;
#[cfg(test)]
mod tests;
