//! Connection latching in the endpoint: the latch table shared between the
//! driver's datapath, IKE's child-SA policy hook and the API.
//!
//! Invariants:
//! - The table lives behind one `std::sync::Mutex`, taken only for short,
//!   synchronous sections (never across an `.await`).
//! - Only the driver task mutates the table (API requests arrive as
//!   commands), so IKE's `authorize` call and the `sa_added` that follows it
//!   run with no other latch change in between (R13, R16): both happen in
//!   one synchronous stretch of the driver (`handle_datagram`, then the
//!   event flush). `sa_added` re-checks the final SA under the same lock as
//!   a second line of defence.
//! - Per-packet work is O(1) hash lookups under a lock taken once per
//!   receive burst ([`BurstLatch`]), not once per packet.

use std::borrow::{Borrow, BorrowMut};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use latch::{
    AdmittingSa, ChildSaDescriptor, ChildSaVerdict, DropReason, FiveTuple, Flow, LatchTable,
    NatInfo, PackedV4, PassKind, PeerAuth, PeerIdentity, Verdict,
};
use pad::{
    AuthKind, IdPattern, IpRange, KeyFingerprint, Pad, PadAuth, PadEntry, Protection, SaQop, Spd,
    SpdAction, SpdEntry,
};

/// Where a latch check dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// Inbound, right after ESP decapsulation (R5, R6).
    Inbound,
    /// Outbound, before ESP encapsulation (R5, R6, R9).
    Outbound,
    /// At delivery to the application, when the table changed since
    /// decapsulation (R16).
    Delivery,
}

/// One latch drop counter (in [`crate::Status::latch_drops`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatchDropCount {
    /// Where.
    pub direction: Direction,
    /// Why: the name of a [`latch::DropReason`] (`SaMismatch`,
    /// `NotEstablished`, ...).
    pub reason: String,
    /// How many packets.
    pub count: u64,
}

/// The PAD and SPD an endpoint starts with when none is given: one PAD
/// entry `default` that accepts any peer by PSK, certificate (validated by
/// `ike` to its configured anchors), raw public key or NULL authentication
/// (BTNS) asserting any address, and one SPD entry `default` that PROTECTs
/// everything (confidentiality and integrity, 128-bit keys, anti-replay).
pub fn default_policy() -> pad::PolicyConfig {
    let mut peer = PadEntry::new("default", IdPattern::Any);
    peer.auth = vec![
        PadAuth::Psk,
        PadAuth::Null,
        PadAuth::Certificate {
            trust_anchors: Vec::new(),
        },
        PadAuth::RawPublicKey,
    ];
    peer.child_sa = vec![
        IpRange {
            start: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            end: IpAddr::V4(Ipv4Addr::BROADCAST),
        },
        IpRange {
            start: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            end: IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        },
    ];
    peer.btns = true;
    pad::PolicyConfig {
        pad: Pad::new(vec![peer]),
        spd: Spd::new(vec![SpdEntry::any(
            "default",
            SpdAction::Protect(Protection::default()),
        )]),
    }
}

/// The replay window latched for SAs whose window IKE does not tell the
/// policy hook (the driver installs every SA with at least this window).
pub(crate) const MIN_REPLAY_WINDOW: u32 = 1024;

/// What the driver, IKE's policy hook and the API share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) table: LatchTable,
    drops: BTreeMap<(Direction, &'static str), u64>,
    /// Anonymous-peer handle of each IKE SA (NULL authentication): the
    /// handle of the IKE SA it was rekeyed from, or a fresh one.
    anon: HashMap<ike::IkeSaId, u64>,
    /// What each established IKE SA's peer proved (certificate and anchor,
    /// raw key), from `IkeSaEstablished`.
    creds: HashMap<ike::IkeSaId, ike::PeerCredential>,
    /// Key manager restarts: part of every anonymous handle, so an IKE SA
    /// id reused after a restart never looks like the same peer (R10).
    pub(crate) epoch: u64,
    /// R13 child-SA authorization on (the default). Off only for the
    /// misbehaving-peer harness.
    pub(crate) authorize: bool,
}

pub(crate) type SharedRef = Arc<Mutex<Shared>>;

/// Lock the shared state; a poisoned lock is still usable (the table's
/// methods keep it consistent; a panic in a test thread must not wedge the
/// datapath).
pub(crate) fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latch table's lock held over one receive burst, for the inbound
/// checks of its packets (R5, R6, R17): taken at the first check, kept
/// across the burst's packets, released by [`release`](Self::release)
/// (before anything that may take the lock again on this thread, or write
/// to a device or socket) or when dropped.
///
/// While the guard is held, nobody else can change the table, and this
/// holder changes it only through [`get_mut`](Self::get_mut). So the
/// verdicts of the last [`MEMO`] IPv4 flows checked (5-tuple packed into
/// two words, SA tag) are remembered, and of the last other flow: the next
/// packet of one of them under the same SA (a burst of a few bulk
/// transfers) gets its verdict on a compare, without a table lookup. The
/// memory is forgotten whenever the guard is released or the table handed
/// out mutably, and never holds a listener verdict (the caller creates a
/// latch on it). The version returned with a verdict is the table's at the
/// check (R16).
///
/// `T` is the endpoint's shared state, or a bare table (benches).
pub struct BurstLatch<'a, T> {
    mutex: &'a Mutex<T>,
    guard: Option<MutexGuard<'a, T>>,
    /// IPv4 flows checked under the guard: `memo_flows` (packed 5-tuple,
    /// SA tag; [`PackedV4::NONE`] in an empty entry, which no flow
    /// matches) and their `memo_verdicts` (separate arrays, so a compare
    /// reads only keys); `memo_next` is replaced next.
    memo_flows: [(PackedV4, Option<u64>); MEMO],
    memo_verdicts: [Verdict; MEMO],
    memo_next: usize,
    /// The last other (IPv6 or mixed) flow's check, kept only while
    /// `remembered` (separate fields, not an `Option` of a tuple: written
    /// one by one, the verdict is not read back through a wider copy).
    remembered: bool,
    last_five: FiveTuple,
    last_sa: Option<u64>,
    last_verdict: Verdict,
    /// Counts the times the memory was forgotten (the guard released, or
    /// the table handed out mutably): an answer obtained at one epoch
    /// still holds while the epoch is the same ([`Self::epoch`]).
    epoch: u64,
}

/// How many IPv4 flows' verdicts a [`BurstLatch`] remembers: a burst of a
/// few interleaved bulk flows checks each packet on compares, not lookups.
pub const MEMO: usize = 4;

impl<T> std::fmt::Debug for BurstLatch<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurstLatch")
            .field("held", &self.guard.is_some())
            .field("memo_flows", &self.memo_flows)
            .field("memo_verdicts", &self.memo_verdicts)
            .field("remembered", &self.remembered)
            .field("last_five", &self.last_five)
            .field("last_sa", &self.last_sa)
            .field("last_verdict", &self.last_verdict)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl<'a, T: Borrow<LatchTable>> BurstLatch<'a, T> {
    /// Nothing locked yet.
    pub fn new(mutex: &'a Mutex<T>) -> Self {
        let nothing = Verdict::Pass(PassKind::NotLatched);
        Self {
            mutex,
            guard: None,
            memo_flows: [(PackedV4::NONE, None); MEMO],
            memo_verdicts: [nothing; MEMO],
            memo_next: 0,
            remembered: false,
            last_five: FiveTuple::new(
                0,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            ),
            last_sa: None,
            last_verdict: nothing,
            epoch: 0,
        }
    }

    fn guard(&mut self) -> &mut MutexGuard<'a, T> {
        let mutex = self.mutex;
        self.guard
            .get_or_insert_with(|| mutex.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `LatchTable::check_inbound` of `five` under SA `sa`, and the table's
    /// version at the check. Takes the lock if not held.
    #[inline]
    pub fn check_inbound(&mut self, five: &FiveTuple, sa: Option<u64>) -> (Verdict, u64) {
        let flow = Flow::new(five);
        if let Some(g) = &self.guard {
            let version = (**g).borrow().version();
            match flow.packed() {
                Some(k) => {
                    // Every entry compared (empty ones never match): no
                    // count to check, a loop the compiler unrolls.
                    if let Some(i) = self.memo_flows.iter().position(|m| *m == (k, sa)) {
                        return (self.memo_verdicts[i], version);
                    }
                }
                None => {
                    if self.remembered && self.last_sa == sa && self.last_five == *five {
                        return (self.last_verdict, version);
                    }
                }
            }
        }
        self.look_up(flow, sa)
    }

    /// Reads into the cache the table entries the checks of these flows
    /// will read first ([`LatchTable::touch_inbound_packed`]), in one tight
    /// pass, before the caller checks them one by one: with a million
    /// latches, a burst of different flows then waits for its cache misses
    /// together rather than one after another. Changes nothing; takes the
    /// lock if not held; nothing more for a table small enough to stay in
    /// the caches ([`LatchTable::touch_pays`]). A flow among the last
    /// [`MEMO`] touched is not touched again (a burst of a few bulk flows:
    /// its checks hit the memory of verdicts after the first of each).
    pub fn touch<'f>(&mut self, fives: impl IntoIterator<Item = &'f FiveTuple>) {
        let table = self.table();
        if !table.touch_pays() {
            // A table this small stays in the caches.
            return;
        }
        let mut recent = [PackedV4::NONE; MEMO];
        let mut last = PackedV4::NONE;
        let mut next = 0;
        let packed = fives.into_iter().filter_map(|five| {
            let k = PackedV4::of(five)?;
            // The last one first: one compare for a burst of one flow.
            if k == last || recent.contains(&k) {
                return None;
            }
            last = k;
            if let Some(r) = recent.get_mut(next) {
                *r = k;
            }
            next = (next + 1) % MEMO;
            Some(k)
        });
        std::hint::black_box(table.touch_inbound_packed(packed));
    }

    /// [`LatchTable::sa_admits`]: whether SA `sa` alone passes an inbound
    /// packet of `five` (every latch it covers bound to its peer and
    /// protection, no listener it may carry traffic of), with nothing read
    /// per flow. Takes the lock if not held. The answer holds while
    /// [`Self::epoch`] stays the same.
    #[inline]
    pub fn sa_admits(&mut self, five: &FiveTuple, sa: u64) -> bool {
        self.table().sa_admits(Flow::new(five), sa)
    }

    /// [`Self::sa_admits`] of each flow of a burst (5-tuple, SA tag),
    /// written to its `bool`: the SA looked up once for a run of packets
    /// under the same SA, then only its selectors compared per packet, and
    /// not even those for the same IPv4 flow as the packet before.
    pub fn sa_admits_each<'f>(
        &mut self,
        flows: impl IntoIterator<Item = (&'f FiveTuple, u64, &'f mut bool)>,
    ) {
        let table = self.table();
        let mut tag = None;
        let mut admitting: Option<AdmittingSa<'_>> = None;
        // The last IPv4 flow judged under `tag`, and its answer.
        let (mut last, mut last_admitted) = (PackedV4::NONE, false);
        for (five, sa, out) in flows {
            if tag != Some(sa) {
                tag = Some(sa);
                admitting = table.admitting_sa(sa);
                last = PackedV4::NONE;
            }
            let Some(a) = admitting else {
                *out = false;
                continue;
            };
            let flow = Flow::new(five);
            match flow.packed() {
                Some(k) if k == last => *out = last_admitted,
                Some(k) => {
                    last = k;
                    last_admitted = a.covers(flow);
                    *out = last_admitted;
                }
                None => *out = a.covers(flow),
            }
        }
    }

    /// Changes whenever the table may have changed under this holder (the
    /// guard released, or the table handed out mutably): an answer read
    /// at one epoch holds at the same epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The check that is not a remembered one: a table lookup.
    #[inline(never)]
    fn look_up(&mut self, flow: Flow<'_>, sa: Option<u64>) -> (Verdict, u64) {
        let table = self.table();
        let version = table.version();
        let v = table.check_inbound_flow(flow, sa);
        if matches!(v, Verdict::Pass(PassKind::Listener(_))) {
            return (v, version);
        }
        match flow.packed() {
            Some(k) => {
                let i = self.memo_next;
                self.memo_flows[i] = (k, sa);
                self.memo_verdicts[i] = v;
                self.memo_next = (i + 1) % MEMO;
            }
            None => {
                self.remembered = true;
                self.last_five = *flow.five();
                self.last_sa = sa;
                self.last_verdict = v;
            }
        }
        (v, version)
    }

    /// Forget every remembered verdict.
    fn forget(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.memo_flows = [(PackedV4::NONE, None); MEMO];
        self.memo_next = 0;
        self.remembered = false;
    }

    /// The locked state, to change it: forgets the last verdict.
    pub fn get_mut(&mut self) -> &mut T
    where
        T: BorrowMut<LatchTable>,
    {
        self.forget();
        self.guard()
    }

    /// The locked table, to read it (the SPD, say): takes the lock if not
    /// held; the last verdict stays remembered (nothing changes).
    pub fn table(&mut self) -> &LatchTable {
        (**self.guard()).borrow()
    }

    /// Release the lock (if held) and forget the last verdict.
    pub fn release(&mut self) {
        self.forget();
        self.guard = None;
    }

    /// Whether the lock is held.
    pub fn is_held(&self) -> bool {
        self.guard.is_some()
    }
}

impl Borrow<LatchTable> for Shared {
    fn borrow(&self) -> &LatchTable {
        &self.table
    }
}

impl BorrowMut<LatchTable> for Shared {
    fn borrow_mut(&mut self) -> &mut LatchTable {
        &mut self.table
    }
}

fn reason_name(r: DropReason) -> &'static str {
    match r {
        DropReason::NotEstablished => "NotEstablished",
        DropReason::Unprotected => "Unprotected",
        DropReason::UnknownSa => "UnknownSa",
        DropReason::SaMismatch => "SaMismatch",
        DropReason::ProtectedOnBypass => "ProtectedOnBypass",
        DropReason::Broken => "Broken",
        DropReason::Failed => "Failed",
        DropReason::Closed => "Closed",
        DropReason::NoMatchingSa => "NoMatchingSa",
        DropReason::FutureVersion => "FutureVersion",
        _ => "Other",
    }
}

impl Shared {
    pub(crate) fn new(table: LatchTable, authorize: bool) -> Self {
        Self {
            table,
            drops: BTreeMap::new(),
            anon: HashMap::new(),
            creds: HashMap::new(),
            epoch: 0,
            authorize,
        }
    }

    pub(crate) fn count(&mut self, d: Direction, r: DropReason) {
        *self.drops.entry((d, reason_name(r))).or_default() += 1;
    }

    pub(crate) fn drop_counts(&self) -> Vec<LatchDropCount> {
        self.drops
            .iter()
            .map(|((d, r), n)| LatchDropCount {
                direction: *d,
                reason: (*r).to_owned(),
                count: *n,
            })
            .collect()
    }

    /// The anonymous handle of an IKE SA.
    pub(crate) fn anon_handle(&self, sa: ike::IkeSaId) -> u64 {
        self.anon
            .get(&sa)
            .copied()
            .unwrap_or((self.epoch << 40) | sa.0)
    }

    /// An IKE SA was rekeyed: the new one keeps the peer's handle.
    pub(crate) fn ike_rekeyed(&mut self, old: ike::IkeSaId, new: ike::IkeSaId) {
        let h = self.anon_handle(old);
        self.anon.remove(&old);
        self.anon.insert(new, h);
        if let Some(c) = self.creds.remove(&old) {
            self.creds.insert(new, c);
        }
    }

    /// An IKE SA is established: remember what its peer proved.
    pub(crate) fn ike_up(&mut self, sa: ike::IkeSaId, cred: ike::PeerCredential) {
        self.creds.insert(sa, cred);
    }

    pub(crate) fn ike_gone(&mut self, sa: ike::IkeSaId) {
        self.anon.remove(&sa);
        self.creds.remove(&sa);
    }

    /// Everything IKE state is forgotten (R10).
    pub(crate) fn restarted(&mut self) {
        self.anon.clear();
        self.creds.clear();
        self.epoch += 1;
    }

    /// Who the peer of an IKE SA is, as the latch table sees it (R1, R7),
    /// from what its authentication proved (`cred`; for signature methods
    /// the credential of the IKE SA when `cred` is `None`).
    pub(crate) fn peer_identity(
        &self,
        sa: ike::IkeSaId,
        peer_id: &pad::Identity,
        auth: pad::AuthMethod,
        cred: Option<&ike::PeerCredential>,
    ) -> PeerLookup {
        let cred = cred.or_else(|| self.creds.get(&sa));
        let (pauth, authenticated, key) = match (auth, cred) {
            (pad::AuthMethod::Null, _) => (
                PeerAuth::Null {
                    anonymous_peer: self.anon_handle(sa),
                },
                None,
                None,
            ),
            (pad::AuthMethod::Psk, _) => (PeerAuth::Psk, Some(peer_id.clone()), None),
            (_, Some(ike::PeerCredential::Certificate(v))) => (
                PeerAuth::Certificate {
                    cert_der: v.end_entity_der.clone(),
                    trust_anchor: latch::TrustAnchor {
                        name: v.trust_anchor.subject().to_owned(),
                        der: v.trust_anchor.der().to_vec(),
                    },
                },
                Some(peer_id.clone()),
                Some(KeyFingerprint(v.spki_sha256.0)),
            ),
            (_, Some(ike::PeerCredential::RawPublicKey(k))) => {
                let fingerprint = KeyFingerprint(k.fingerprint().0);
                (
                    PeerAuth::RawPublicKey {
                        fingerprint,
                        spki_der: k.spki_der().to_vec(),
                    },
                    Some(peer_id.clone()),
                    Some(fingerprint),
                )
            }
            // A signature method whose credential IKE has not handed over
            // yet (the first child SA, negotiated inside IKE_AUTH).
            _ => return PeerLookup::Unknown,
        };
        let Some(entry) = self
            .table
            .pad()
            .lookup(peer_id, AuthKind::from(auth), key.as_ref())
        else {
            return PeerLookup::NotAllowed;
        };
        // BTNS (RFC 5386): an unpinned raw key is an unauthenticated peer
        // known by its key.
        let (pauth, authenticated) = match pauth {
            PeerAuth::RawPublicKey {
                fingerprint,
                spki_der,
            } if entry.is_unauthenticated(AuthKind::RawPublicKey) => (
                PeerAuth::Btns {
                    fingerprint,
                    key_der: spki_der,
                },
                None,
            ),
            other => (other, authenticated),
        };
        PeerLookup::Peer(PeerIdentity {
            asserted: peer_id.clone(),
            authenticated,
            auth: pauth,
            pad_entry: entry.name.clone(),
        })
    }
}

/// The answer of [`Shared::peer_identity`].
pub(crate) enum PeerLookup {
    /// The peer, with the PAD entry that allows it.
    Peer(PeerIdentity),
    /// No PAD entry allows it (RFC 4301 4.4.3).
    NotAllowed,
    /// Its credential is not known yet.
    Unknown,
}

/// The QoP a child SA is latched with.
pub(crate) fn qop(
    mode: pad::Mode,
    encr: pad::alg::Encr,
    integ: Option<pad::alg::Integ>,
    esn: bool,
    replay_window: u32,
) -> SaQop {
    SaQop {
        mode,
        encr: Some(encr),
        integ,
        esn,
        replay_window,
    }
}

/// The descriptor of an installed child SA.
pub(crate) fn descriptor(
    info: &ike::ChildSaInfo,
    peer: PeerIdentity,
    nat: NatInfo,
) -> ChildSaDescriptor {
    ChildSaDescriptor {
        id: info.id.0,
        peer,
        protection: qop(
            info.mode,
            info.encr,
            info.integ,
            info.esn,
            info.replay_window.max(MIN_REPLAY_WINDOW),
        ),
        local_ts: info.local_ts.clone(),
        remote_ts: info.remote_ts.clone(),
        nat,
        spi_in: info.inbound_spi,
        spi_out: info.outbound_spi,
    }
}

/// IKE's child-SA policy hook (R13, R14): asks the latch table.
pub(crate) struct LatchPolicy {
    pub(crate) shared: SharedRef,
}

impl ike::ChildSaPolicy for LatchPolicy {
    fn authorize(&mut self, req: &ike::ChildSaRequest<'_>) -> ike::ChildSaDecision {
        let s = lock(&self.shared);
        let accept = ike::ChildSaDecision::Accept {
            tsi: req.tsi.to_vec(),
            tsr: req.tsr.to_vec(),
        };
        let peer = match s.peer_identity(
            req.ike_sa,
            req.peer_id,
            req.peer_auth,
            Some(req.peer_credential),
        ) {
            PeerLookup::Peer(p) => p,
            PeerLookup::NotAllowed => {
                tracing::warn!(peer = %req.peer_id, auth = %req.peer_auth, "no PAD entry allows this peer: child SA refused");
                return ike::ChildSaDecision::Refuse;
            }
            // Judged when the SA is installed, with the credential (the
            // driver deletes it there if it conflicts with a latch).
            PeerLookup::Unknown => return accept,
        };
        if !s.authorize {
            return accept;
        }
        // Our side and theirs: the initiator's selectors are TSi.
        let (local, remote) = if req.initiator {
            (req.tsi, req.tsr)
        } else {
            (req.tsr, req.tsi)
        };
        // ESN and the replay window are not part of the request: the
        // driver re-checks the installed SA with its real values.
        let q = qop(req.mode, req.encr, req.integ, false, MIN_REPLAY_WINDOW);
        match s.table.authorize_child_sa(&peer, &q, local, remote) {
            ChildSaVerdict::Accept => accept,
            ChildSaVerdict::Narrow {
                local_ts,
                remote_ts,
                excluded,
            } => {
                tracing::info!(peer = %peer, ?excluded, "child SA narrowed around latched connections (R13)");
                if req.initiator {
                    ike::ChildSaDecision::Accept {
                        tsi: local_ts,
                        tsr: remote_ts,
                    }
                } else {
                    ike::ChildSaDecision::Accept {
                        tsi: remote_ts,
                        tsr: local_ts,
                    }
                }
            }
            ChildSaVerdict::Refuse { latch } => {
                tracing::info!(peer = %peer, %latch, "child SA refused: it would cover a latched connection (R13)");
                ike::ChildSaDecision::Refuse
            }
            _ => ike::ChildSaDecision::Refuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latch::{ConnectionRequest, LatchConfig, LatchId, ListenerRequest, ThreeTuple};
    use std::time::Instant;

    fn five(port: u16) -> FiveTuple {
        FiveTuple::new(
            17,
            "10.0.0.1:7000".parse().unwrap(),
            SocketAddr::from(([10, 0, 0, 9], port)),
        )
    }

    fn shared(policy: pad::PolicyConfig) -> Mutex<Shared> {
        let table = LatchTable::new(policy.pad, policy.spd, LatchConfig::default());
        Mutex::new(Shared::new(table, true))
    }

    /// One SPD entry: BYPASS everything.
    fn bypass_policy() -> pad::PolicyConfig {
        pad::PolicyConfig::from_toml(
            "[[policy]]\nname = \"clear\"\naction = \"bypass\"\n",
            "test.toml",
        )
        .unwrap()
    }

    /// A connection latch for `five(port)`, created through the lock.
    fn connect(m: &Mutex<Shared>, port: u16) -> LatchId {
        m.lock()
            .unwrap()
            .table
            .create_connection(ConnectionRequest::new(five(port)), Instant::now())
            .unwrap()
    }

    #[test]
    fn burst_holds_the_lock_until_released() {
        let m = shared(default_policy());
        let mut held = BurstLatch::new(&m);
        assert!(!held.is_held());
        assert!(
            m.try_lock().is_ok(),
            "nothing locked before the first check"
        );
        let (v, _) = held.check_inbound(&five(1), Some(7));
        assert_eq!(v, Verdict::Pass(PassKind::NotLatched));
        assert!(held.is_held());
        assert!(m.try_lock().is_err(), "held across the burst");
        held.check_inbound(&five(2), Some(7));
        assert!(m.try_lock().is_err());
        held.release();
        assert!(!held.is_held());
        assert!(m.try_lock().is_ok(), "released");
        held.check_inbound(&five(1), Some(7));
        drop(held);
        assert!(m.try_lock().is_ok(), "released on drop");
    }

    #[test]
    fn touching_a_burst_takes_the_lock_and_changes_no_verdict() {
        // Enough latches that the touch runs (`touch_pays`).
        let m = shared(default_policy());
        let n = u16::try_from(LatchTable::TOUCH_FROM).unwrap() + 40;
        let ids: Vec<LatchId> = (1..=n).map(|p| connect(&m, p)).collect();
        assert!(m.lock().unwrap().table.touch_pays());
        let fives: Vec<FiveTuple> = (1..=n + 10).map(five).collect();
        let mut plain = BurstLatch::new(&m);
        let before: Vec<(Verdict, u64)> = fives
            .iter()
            .map(|f| plain.check_inbound(f, Some(7)))
            .collect();
        plain.release();
        let mut held = BurstLatch::new(&m);
        held.touch(&fives);
        assert!(held.is_held(), "touched under the lock");
        assert!(m.try_lock().is_err());
        let after: Vec<(Verdict, u64)> = fives
            .iter()
            .map(|f| held.check_inbound(f, Some(7)))
            .collect();
        assert_eq!(before, after);
        // The latched flows are still each their own latch's.
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                after[i].0,
                Verdict::Drop {
                    latch: *id,
                    reason: DropReason::NotEstablished
                }
            );
        }
        held.release();
    }

    /// Child SA 7 between 10.0.0.1 and 10.0.0.9, NULL-authenticated.
    fn add_sa(m: &Mutex<Shared>) {
        let peer = PeerIdentity {
            asserted: pad::Identity::Null,
            authenticated: None,
            auth: PeerAuth::Null { anonymous_peer: 1 },
            pad_entry: "default".into(),
        };
        let d = ChildSaDescriptor {
            id: 7,
            peer,
            protection: qop(
                pad::Mode::Tunnel,
                pad::alg::Encr::AesGcm16_128,
                None,
                false,
                MIN_REPLAY_WINDOW,
            ),
            local_ts: vec!["10.0.0.1".parse().unwrap()].into(),
            remote_ts: vec!["10.0.0.9".parse().unwrap()].into(),
            nat: NatInfo::default(),
            spi_in: 1,
            spi_out: 2,
        };
        m.lock().unwrap().table.sa_added(d, Instant::now()).unwrap();
    }

    #[test]
    fn an_sa_passes_its_packets_alone_while_it_covers_no_other_latch() {
        let m = shared(default_policy());
        let id = connect(&m, 1);
        add_sa(&m);
        let mut held = BurstLatch::new(&m);
        let epoch = held.epoch();
        // The latch is bound to the SA (Established by `sa_added`); an
        // unlatched flow passes too; another SA, or a flow it does not
        // cover, is the check's to judge.
        assert!(held.sa_admits(&five(1), 7));
        assert_eq!(
            held.check_inbound(&five(1), Some(7)).0,
            Verdict::Pass(PassKind::Latched(id))
        );
        assert!(held.sa_admits(&five(2), 7));
        assert!(!held.sa_admits(&five(1), 8));
        let elsewhere = FiveTuple::new(
            17,
            "10.0.0.1:7000".parse().unwrap(),
            "10.0.0.10:1".parse().unwrap(),
        );
        assert!(!held.sa_admits(&elsewhere, 7));
        assert_eq!(held.epoch(), epoch, "reading changes nothing");
        // A listener the SA may carry traffic of: its packets may open
        // connections there (R12), so they are checked one by one.
        let three = ThreeTuple::new(17, "10.0.0.1:7000".parse().unwrap());
        let l = held
            .get_mut()
            .table
            .create_listener(ListenerRequest::new(three), Instant::now())
            .unwrap();
        assert_ne!(held.epoch(), epoch, "a change is a new epoch");
        assert!(!held.sa_admits(&five(1), 7));
        assert!(matches!(
            held.check_inbound(&five(2), Some(7)).0,
            Verdict::Pass(PassKind::Listener(_))
        ));
        held.get_mut().table.destroy(l).unwrap();
        assert!(held.sa_admits(&five(1), 7));
        // A latch the SA covers that is not bound to it: Closed after a
        // key-manager restart (its SA gone), then the SA again.
        let epoch = held.epoch();
        held.release();
        assert_ne!(held.epoch(), epoch, "a release is a new epoch");
        m.lock()
            .unwrap()
            .table
            .key_manager_restarted(latch::RestartPolicy::Reset);
        add_sa(&m);
        assert!(!held.sa_admits(&five(2), 7));
        assert_eq!(
            held.check_inbound(&five(1), Some(7)).0,
            Verdict::Drop {
                latch: id,
                reason: DropReason::Closed
            }
        );
    }

    #[test]
    fn remembered_verdict_is_forgotten_when_the_table_changes() {
        let m = shared(default_policy());
        let id = connect(&m, 1);
        let mut held = BurstLatch::new(&m);
        let (v, version) = held.check_inbound(&five(1), Some(7));
        assert_eq!(
            v,
            Verdict::Drop {
                latch: id,
                reason: DropReason::NotEstablished
            }
        );
        // The same flow and SA again: the same verdict and version.
        assert_eq!(held.check_inbound(&five(1), Some(7)), (v, version));
        // Another SA or another flow is looked up, not taken from memory.
        assert_eq!(
            held.check_inbound(&five(2), Some(7)).0,
            Verdict::Pass(PassKind::NotLatched)
        );
        held.check_inbound(&five(1), Some(7));
        // A change through the holder: the next check sees it (R16: at
        // the new version).
        held.get_mut().table.destroy(id).unwrap();
        let (v2, version2) = held.check_inbound(&five(1), Some(7));
        assert_eq!(v2, Verdict::Pass(PassKind::NotLatched));
        assert!(version2 > version);
        // A change by someone else after a release.
        held.release();
        let id2 = connect(&m, 1);
        assert_eq!(
            held.check_inbound(&five(1), Some(7)).0,
            Verdict::Drop {
                latch: id2,
                reason: DropReason::NotEstablished
            }
        );
    }

    #[test]
    fn interleaved_flows_each_get_their_own_verdict() {
        let m = shared(default_policy());
        // Flows 1..=MEMO+2: the odd ones latched (Larval: dropped), the
        // even ones not latched; each checked under two SAs, interleaved,
        // more flows than the memory holds, three times over.
        let mut ids = BTreeMap::new();
        for i in (1..=MEMO as u16 + 2).filter(|i| i % 2 == 1) {
            ids.insert(i, connect(&m, i));
        }
        let mut held = BurstLatch::new(&m);
        for _ in 0..3 {
            for i in 1..=MEMO as u16 + 2 {
                for sa in [Some(7), None] {
                    let want = match ids.get(&i) {
                        Some(&latch) => Verdict::Drop {
                            latch,
                            reason: DropReason::NotEstablished,
                        },
                        None => Verdict::Pass(PassKind::NotLatched),
                    };
                    assert_eq!(held.check_inbound(&five(i), sa).0, want, "flow {i}");
                }
            }
            // The last MEMO checks are remembered, and give the same.
            for i in (MEMO as u16 / 2 + 3)..=MEMO as u16 + 2 {
                let (v, _) = held.check_inbound(&five(i), Some(7));
                assert_eq!(v.passes(), !ids.contains_key(&i), "flow {i}");
            }
        }
        assert!(held.memo_flows.iter().all(|m| m.0 != PackedV4::NONE));
        // An IPv6 flow: its last check is kept beside the IPv4 ones.
        let v6 = FiveTuple::new(
            17,
            "[fd00::1]:7000".parse().unwrap(),
            "[fd00::9]:1".parse().unwrap(),
        );
        let id6 = held
            .get_mut()
            .table
            .create_connection(ConnectionRequest::new(v6), Instant::now())
            .unwrap();
        let dropped = Verdict::Drop {
            latch: id6,
            reason: DropReason::NotEstablished,
        };
        assert_eq!(held.check_inbound(&v6, Some(7)).0, dropped);
        assert!(held.remembered);
        assert_eq!(
            held.check_inbound(&five(2), Some(7)).0,
            Verdict::Pass(PassKind::NotLatched)
        );
        assert_eq!(held.check_inbound(&v6, Some(7)).0, dropped);
    }

    #[test]
    fn remembered_verdicts_are_per_sa() {
        // BYPASS policy: each latch is established to BYPASS, so the same
        // flow passes in the clear and is dropped under an SA.
        let policy = bypass_policy();
        let m = shared(policy);
        let ids: Vec<_> = (1..=MEMO as u16 / 2).map(|i| connect(&m, i)).collect();
        let mut held = BurstLatch::new(&m);
        for _ in 0..3 {
            for (i, &id) in (1..).zip(&ids) {
                assert_eq!(
                    held.check_inbound(&five(i), None).0,
                    Verdict::Pass(PassKind::Bypass(id))
                );
                assert_eq!(
                    held.check_inbound(&five(i), Some(7)).0,
                    Verdict::Drop {
                        latch: id,
                        reason: DropReason::ProtectedOnBypass
                    }
                );
            }
        }
    }

    #[test]
    fn listener_verdicts_are_not_remembered() {
        let policy = bypass_policy();
        let m = shared(policy);
        let three = ThreeTuple::new(17, "10.0.0.1:7000".parse().unwrap());
        let l = m
            .lock()
            .unwrap()
            .table
            .create_listener(ListenerRequest::new(three), Instant::now())
            .unwrap();
        let mut held = BurstLatch::new(&m);
        assert_eq!(
            held.check_inbound(&five(1), None).0,
            Verdict::Pass(PassKind::Listener(l))
        );
        assert!(
            !held.remembered && held.memo_flows.iter().all(|m| m.0 == PackedV4::NONE),
            "a listener verdict is not kept"
        );
        let c = held
            .get_mut()
            .table
            .accept(l, five(1), None, Instant::now())
            .unwrap();
        assert_eq!(
            held.check_inbound(&five(1), None).0,
            Verdict::Pass(PassKind::Bypass(c))
        );
        let kept = held.memo_flows.iter().filter(|m| m.0 != PackedV4::NONE);
        assert_eq!(kept.count(), 1);
    }
}
