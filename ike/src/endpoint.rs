//! The endpoint: every IKE SA, looked up by our SPI and by local handle
//! (quinn-proto's `Endpoint` and `Connection` in one, since IKE SAs share
//! nothing but the socket and the half-open bound).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use crate::api::{
    ChildConfig, ChildSaId, ChildSaPolicy, Config, DropReason, Error, Event, IkeSaId, IkeSaInfo,
    PeerConfig, Stats, Transmit,
};
use crate::crypto::CookieJar;
use crate::sa::{later, ChildCfg, Ctx, IkeSa, Op, Out};
use crate::wire::{exchange, Message};

/// How often the cookie secret changes (RFC 7296 2.6).
const COOKIE_ROTATION: Duration = Duration::from_secs(120);

/// The IKEv2 endpoint: a sans-IO state machine holding every IKE SA.
///
/// See the crate documentation for the order of calls.
pub struct Ike {
    config: Config,
    /// `config.peers`, shared with the SAs made from them.
    peers: Vec<Arc<PeerConfig>>,
    x25519: crate::crypto::X25519Source,
    rng: Box<dyn CryptoRngCore + Send>,
    policy: Box<dyn ChildSaPolicy>,
    sas: BTreeMap<IkeSaId, Box<IkeSa>>,
    by_spi: HashMap<u64, IkeSaId>,
    /// Half-open responder SAs by (SPIi, initiator address): IKE_SA_INIT
    /// retransmissions (RFC 7296 2.1).
    init_index: HashMap<(u64, SocketAddr), IkeSaId>,
    /// The `init_index` key of each SA that has one (removed with the SA).
    init_keys: HashMap<IkeSaId, (u64, SocketAddr)>,
    /// Every live SA's next deadline as filed, ordered: `poll_timeout` and
    /// `handle_timeout` cost O(log n), not a scan of every SA. A filed
    /// deadline is never later than the SA's real one (`peer_alive` only
    /// moves deadlines later), so no timer is missed.
    timers: BTreeSet<(Instant, IkeSaId)>,
    deadlines: HashMap<IkeSaId, Instant>,
    /// SAs counted as half-open for the cookie threshold (RFC 7296 2.6).
    unauth: HashSet<IkeSaId>,
    out: Out,
    next_sa: u64,
    next_child: u64,
    cookies: CookieJar,
    cookie_rotate_at: Option<Instant>,
    wall: crate::sig::WallAnchor,
    pins: crate::pins::PinStore,
}

impl core::fmt::Debug for Ike {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ike")
            .field("ike_sas", &self.sas.len())
            .field("stats", &self.out.stats)
            .finish_non_exhaustive()
    }
}

impl Ike {
    /// The context an exchange handler works in: everything of the
    /// endpoint but the IKE SA map.
    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            peers: &self.peers,
            x25519: self.x25519,
            rng: &mut *self.rng,
            policy: &mut *self.policy,
            out: &mut self.out,
            spis: &self.by_spi,
            next_sa: &mut self.next_sa,
            next_child: &mut self.next_child,
            born: Vec::new(),
            initial_contact: None,
            wall: self.wall,
            pins: &mut self.pins,
        }
    }

    /// A new endpoint. All randomness comes from `rng`; `policy` authorizes
    /// every child SA.
    pub fn new(
        config: Config,
        mut rng: Box<dyn CryptoRngCore + Send>,
        policy: Box<dyn ChildSaPolicy>,
    ) -> Self {
        let cookies = CookieJar::new(&mut *rng);
        let peers = config.peers.iter().cloned().map(Arc::new).collect();
        Self {
            config,
            peers,
            x25519: crate::crypto::X25519Source::Injected,
            rng,
            policy,
            sas: BTreeMap::new(),
            by_spi: HashMap::new(),
            init_index: HashMap::new(),
            init_keys: HashMap::new(),
            timers: BTreeSet::new(),
            deadlines: HashMap::new(),
            unauth: HashSet::new(),
            out: Out::default(),
            next_sa: 0,
            next_child: 0,
            cookies,
            cookie_rotate_at: None,
            wall: None,
            pins: crate::pins::PinStore::default(),
        }
    }

    /// Where the X25519 key pairs of IKE_SA_INIT (both roles) come from:
    /// the injected RNG (the default: seedable, for simulations and known
    /// answers) or ring's faster X25519 with the system RNG (see
    /// [`crate::crypto::X25519Source`]). Other groups, and the exchanges
    /// after IKE_SA_INIT, always use the injected RNG.
    pub fn set_x25519_source(&mut self, source: crate::crypto::X25519Source) {
        self.x25519 = source;
    }

    /// The pin store (peer address -> key), to persist.
    pub fn pins(&self) -> &crate::pins::PinStore {
        &self.pins
    }

    /// The pin store, to load, edit or set its policy.
    pub fn pins_mut(&mut self) -> &mut crate::pins::PinStore {
        &mut self.pins
    }

    /// Replace the peer configurations (a configuration reload). SAs already
    /// established keep the configuration they were made with; new
    /// exchanges, in both roles, use the new list.
    pub fn set_peers(&mut self, peers: Vec<PeerConfig>) {
        self.peers = peers.iter().cloned().map(Arc::new).collect();
        self.config.peers = peers;
    }

    /// Tell the state machine what wall-clock time it is at the monotonic
    /// instant `now` (certificate validity needs calendar time; timers keep
    /// using [`Instant`]). Until called, certificates are refused ("no wall
    /// clock"). Call once after [`Ike::new`]; calling again (say, hourly)
    /// corrects drift between the two clocks.
    pub fn set_wall_clock(&mut self, now: Instant, wall: std::time::SystemTime) {
        self.wall = Some((now, wall));
    }

    /// Run `f` on one SA with the shared context, then file the SA (and any
    /// SA it created) back, or forget it if it died.
    fn with_sa<R>(
        &mut self,
        id: IkeSaId,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let mut sa = self.sas.remove(&id)?;
        let (r, born, contact) = {
            let mut ctx = self.ctx();
            let r = f(&mut sa, &mut ctx);
            (r, ctx.born, ctx.initial_contact)
        };
        self.file(sa);
        for b in born {
            self.file(Box::new(b));
        }
        if let Some((peer_id, ip)) = contact {
            self.initial_contact(id, &peer_id, ip);
        }
        Some(r)
    }

    /// RFC 7296 2.4: INITIAL_CONTACT says the peer lost its state; its other
    /// IKE SAs (same authenticated identity, same address) go, without a
    /// Delete. ID_NULL peers are indistinguishable and never matched. A
    /// raw public key (RFC 7670) or a BTNS peer (RFC 5386: any key is
    /// accepted) does not authenticate the identity it asserts, only its
    /// key, so there the key must match too: otherwise any host with an
    /// acceptable key could end another peer's IKE SA by asserting its
    /// identity.
    fn initial_contact(&mut self, keep: IkeSaId, peer_id: &pad::Identity, ip: std::net::IpAddr) {
        if *peer_id == pad::Identity::Null {
            return;
        }
        let btns = |s: &IkeSa| {
            matches!(s.peer_credential, crate::PeerCredential::RawPublicKey(_))
                || s.peer
                    .as_ref()
                    .is_some_and(|p| p.credentials.accept_any_key)
        };
        let Some((new_key, new_btns)) = self
            .sas
            .get(&keep)
            .map(|s| (s.peer_credential.spki_sha256(), btns(s)))
        else {
            return;
        };
        let stale: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| {
                s.id != keep
                    && s.established()
                    && s.peer_id == *peer_id
                    && s.remote.ip() == ip
                    && (!(new_btns || btns(s)) || s.peer_credential.spki_sha256() == new_key)
            })
            .map(|s| s.id)
            .collect();
        for id in stale {
            tracing::debug!(sa = id.0, "INITIAL_CONTACT: dropping stale IKE SA");
            self.with_sa(id, |sa, ctx| sa.deleted(ctx));
        }
    }

    /// File an SA back (boxed: the map's nodes hold a pointer, not the
    /// SA, so their spare slots cost little per SA held).
    fn file(&mut self, sa: Box<IkeSa>) {
        let id = sa.id;
        if let Some(t) = self.deadlines.remove(&id) {
            self.timers.remove(&(t, id));
        }
        if sa.dead {
            if self.by_spi.get(&sa.our_spi()) == Some(&id) {
                self.by_spi.remove(&sa.our_spi());
            }
            if let Some(k) = self.init_keys.remove(&id) {
                if self.init_index.get(&k) == Some(&id) {
                    self.init_index.remove(&k);
                }
            }
            self.unauth.remove(&id);
            tracing::debug!(sa = id.0, "IKE SA removed");
            return;
        }
        if let Some(t) = sa.next_timeout() {
            self.timers.insert((t, id));
            self.deadlines.insert(id, t);
        }
        if sa.unauthenticated() {
            self.unauth.insert(id);
        } else {
            self.unauth.remove(&id);
        }
        // IKE_SA_INIT retransmissions (RFC 7296 2.1) come only before the
        // initiator has the response, so before IKE_AUTH: the index goes
        // once the SA is past half-open (two entries fewer per SA held).
        if !sa.half_open() {
            if let Some(k) = self.init_keys.remove(&id) {
                if self.init_index.get(&k) == Some(&id) {
                    self.init_index.remove(&k);
                }
            }
        }
        self.by_spi.insert(sa.our_spi(), id);
        self.sas.insert(id, sa);
    }

    /// RFC 7296 2.6: change the cookie secret every [`COOKIE_ROTATION`].
    fn rotate_cookies(&mut self, now: Instant) {
        if self.cookie_rotate_at.is_none_or(|t| t <= now) {
            if self.cookie_rotate_at.is_some() {
                self.cookies.rotate(&mut *self.rng);
            }
            self.cookie_rotate_at = Some(later(now, COOKIE_ROTATION));
        }
    }

    /// Whether cookies are demanded now: as many half-open IKE SAs as
    /// `cookie_threshold` (RFC 7296 2.6), and room under `max_half_open`.
    pub fn cookies_on(&self) -> bool {
        let half_open = self.unauth.len();
        half_open >= self.config.cookie_threshold && half_open < self.config.max_half_open
    }

    /// From the header and the first payload's only: whether `data` looks
    /// like a first IKE_SA_INIT request (exchange IKE_SA_INIT, Initiator
    /// flag, not a response, SPIr 0) without a COOKIE notify in front: what
    /// a flood of spoofed requests consists of. A driver under a flood
    /// handles everything else first (RFC 8019: an initiator that
    /// returns a cookie has shown that it receives at its address, and
    /// messages of existing SAs are not the flood) and may shed these.
    pub fn is_plain_init(data: &[u8]) -> bool {
        let Some(h) = data.get(..crate::wire::Header::LEN) else {
            return false;
        };
        let (np, exch, fl) = (h[16], h[18], h[19]);
        let spi_r_zero = h[8..16].iter().all(|b| *b == 0);
        let cookie_first = np == crate::wire::payload_type::NOTIFY
            && data.get(34..36) == Some(&crate::wire::notify::COOKIE.to_be_bytes()[..]);
        exch == exchange::IKE_SA_INIT
            && fl & crate::wire::flags::INITIATOR != 0
            && fl & crate::wire::flags::RESPONSE == 0
            && spi_r_zero
            && !cookie_first
    }

    /// The stateless path of an IKE_SA_INIT flood (RFC 7296 2.6, RFC
    /// 8019): when cookies are demanded ([`Ike::cookies_on`]) and `data`,
    /// received from `remote`, is a new IKE_SA_INIT request without a
    /// COOKIE, write the COOKIE answer into `out` (cleared first; the
    /// caller sends it to `remote` from the socket it came in on) and
    /// return true. Only the generic payload headers are read, nothing is
    /// allocated, no SA is touched, and the answer is the same octets
    /// [`Ike::handle_datagram`] would send through [`Ike::poll_transmit`].
    ///
    /// False, with `out` untouched and nothing counted, for everything
    /// else (cookies off, a request carrying a COOKIE, a retransmission of
    /// a half-open SA's request, anything that is not a well-formed
    /// IKE_SA_INIT request): pass it to [`Ike::handle_datagram`].
    pub fn answer_with_cookie(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        if !self.cookies_on() {
            return false;
        }
        let Some(req) = crate::init::scan_plain_init(data) else {
            return false;
        };
        if self.init_index.contains_key(&(req.spi_i, remote)) {
            return false;
        }
        self.out.stats.datagrams_in += 1;
        self.rotate_cookies(now);
        self.out.stats.cookies_sent += 1;
        crate::init::write_cookie_reply(&self.cookies, req, remote.ip(), out);
        true
    }

    /// Handle one received IKE message (non-ESP marker already stripped).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.out.stats.datagrams_in += 1;
        self.rotate_cookies(now);
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.out.drop(DropReason::Malformed, &e.to_string());
                return;
            }
        };
        let h = msg.header;
        if h.exchange == exchange::IKE_SA_INIT && !h.is_response() && h.spi_r == 0 {
            if let Some(id) = self.init_index.get(&(h.spi_i, remote)).copied() {
                // RFC 7296 2.1: a retransmitted IKE_SA_INIT gets the same
                // answer, not a new SA.
                self.with_sa(id, |sa, ctx| match &sa.cached {
                    Some((0, data, from, to)) if sa.half_open() => {
                        ctx.out.stats.cached_responses += 1;
                        data.resend(ctx.out, *from, *to);
                    }
                    _ => ctx
                        .out
                        .drop(DropReason::DuplicateInit, "IKE_SA_INIT of an SA past it"),
                });
                return;
            }
            let half_open = self.unauth.len();
            // Spelled out (not `self.ctx()`): the cookie jar is borrowed
            // alongside.
            let mut ctx = Ctx {
                config: &self.config,
                peers: &self.peers,
                x25519: self.x25519,
                rng: &mut *self.rng,
                policy: &mut *self.policy,
                out: &mut self.out,
                spis: &self.by_spi,
                next_sa: &mut self.next_sa,
                next_child: &mut self.next_child,
                born: Vec::new(),
                initial_contact: None,
                wall: self.wall,
                pins: &mut self.pins,
            };
            let sa = crate::init::respond_init(
                &mut ctx,
                now,
                local,
                remote,
                data,
                &msg,
                half_open,
                &self.cookies,
            );
            if let Some(sa) = sa {
                self.init_index.insert((h.spi_i, remote), sa.id);
                self.init_keys.insert(sa.id, (h.spi_i, remote));
                self.file(Box::new(sa));
            }
            return;
        }
        // The I flag says who sent it, hence which SPI is ours.
        let ours = if h.is_initiator() { h.spi_r } else { h.spi_i };
        let Some(id) = self.by_spi.get(&ours).copied() else {
            self.out
                .drop(DropReason::UnknownSpi, "no IKE SA with this SPI");
            return;
        };
        self.with_sa(id, |sa, ctx| sa.handle(ctx, now, local, remote, data, &msg));
    }

    /// Handle expired timers (call when [`Ike::poll_timeout`] has passed).
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<IkeSaId> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            // A filed deadline may be early (see `timers`): then the SA is
            // only filed again with its real one.
            self.with_sa(id, |sa, ctx| {
                if sa.next_timeout().is_some_and(|t| t <= now) {
                    sa.on_timeout(ctx, now);
                }
            });
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.out.transmits.pop_front()?;
        self.out.stats.datagrams_out += 1;
        Some(t)
    }

    /// When [`Ike::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Start an IKE SA with `peer` (IKE_SA_INIT goes out at once). Failures
    /// come as [`Event::IkeSaFailed`].
    pub fn initiate(
        &mut self,
        now: Instant,
        peer: PeerConfig,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IkeSaId {
        // RFC 7296 2.4: INITIAL_CONTACT when we hold no other IKE SA (in any
        // state) with this peer, so it can drop state from before our
        // restart.
        let first = !self.sas.values().any(|s| {
            s.remote.ip() == remote.ip() && s.peer.as_ref().is_some_and(|p| p.name == peer.name)
        });
        let mut ctx = self.ctx();
        let sa = crate::init::initiate(&mut ctx, now, Arc::new(peer), local, remote, first);
        let id = sa.id;
        self.file(Box::new(sa));
        id
    }

    fn queue_op(
        &mut self,
        now: Instant,
        sa: IkeSaId,
        child: Option<ChildSaId>,
        op: Op,
    ) -> Result<(), Error> {
        self.with_sa(sa, |s, ctx| {
            if !s.established() {
                return Err(Error::NotEstablished);
            }
            if child.is_some_and(|c| !s.children.contains_key(&c)) {
                return Err(Error::UnknownSa);
            }
            if !s.enqueue(op) {
                return Err(Error::Busy);
            }
            s.start_next(ctx, now);
            Ok(())
        })
        .unwrap_or(Err(Error::UnknownSa))
    }

    /// Create another child SA (CREATE_CHILD_SA, RFC 7296 1.3.1).
    pub fn create_child(
        &mut self,
        now: Instant,
        sa: IkeSaId,
        child: ChildConfig,
    ) -> Result<(), Error> {
        self.queue_op(
            now,
            sa,
            None,
            Op::CreateChild(ChildCfg::Own(Arc::new(child))),
        )
    }

    /// Rekey a child SA (RFC 7296 1.3.3).
    pub fn rekey_child(
        &mut self,
        now: Instant,
        sa: IkeSaId,
        child: ChildSaId,
    ) -> Result<(), Error> {
        self.queue_op(now, sa, Some(child), Op::RekeyChild(child))
    }

    /// Rekey the IKE SA (RFC 7296 1.3.2).
    pub fn rekey_ike(&mut self, now: Instant, sa: IkeSaId) -> Result<(), Error> {
        self.queue_op(now, sa, None, Op::RekeyIke)
    }

    /// Delete a child SA (RFC 7296 1.4.1).
    pub fn delete_child(
        &mut self,
        now: Instant,
        sa: IkeSaId,
        child: ChildSaId,
    ) -> Result<(), Error> {
        self.queue_op(now, sa, Some(child), Op::DeleteChild(child))
    }

    /// Delete the IKE SA and all its child SAs (RFC 7296 1.4.1). An SA not
    /// yet established is dropped at once.
    pub fn delete_ike(&mut self, now: Instant, sa: IkeSaId) -> Result<(), Error> {
        self.with_sa(sa, |s, ctx| {
            if s.established() {
                if !s.enqueue(Op::DeleteIke) {
                    return Err(Error::Busy);
                }
                s.start_next(ctx, now);
            } else {
                s.deleted(ctx);
            }
            Ok(())
        })
        .unwrap_or(Err(Error::UnknownSa))
    }

    /// Check the peer is alive (an empty INFORMATIONAL, RFC 7296 1.4).
    pub fn liveness_check(&mut self, now: Instant, sa: IkeSaId) -> Result<(), Error> {
        self.queue_op(now, sa, None, Op::Liveness)
    }

    /// Tell the state machine the peer is alive (an authenticated ESP
    /// packet arrived), postponing its liveness check. The filed deadline
    /// stays (it is now early; `handle_timeout` re-files it): no timer
    /// index work per packet.
    pub fn peer_alive(&mut self, now: Instant, sa: IkeSaId) {
        if let Some(s) = self.sas.get_mut(&sa) {
            s.heard(now.max(s.last_heard));
        }
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// A snapshot of one IKE SA (`None` once deleted, failed or rekeyed
    /// away).
    pub fn ike_sa(&self, sa: IkeSaId) -> Option<IkeSaInfo> {
        self.sas
            .get(&sa)
            .filter(|s| !s.closing())
            .and_then(|s| s.info())
    }

    /// The keys of one IKE SA (SPIs, SK_e*, SK_a*, algorithms), for an
    /// operator who turned key export on (Wireshark's
    /// `ikev2_decryption_table`). Opt-in: the state machine never calls
    /// it. `None` until IKE_SA_INIT derived the keys, and once the SA is
    /// gone. The result is secret and zeroized on drop; never log it.
    pub fn export_keys(&self, sa: IkeSaId) -> Option<crate::IkeSaKeys> {
        let s = self.sas.get(&sa)?;
        let k = s.keyed()?;
        // "i": initiator to responder, the original initiator's seal.
        let (ci, cr) = if s.initiator {
            (&k.seal, &k.open)
        } else {
            (&k.open, &k.seal)
        };
        Some(crate::IkeSaKeys {
            spi_i: s.spi_i,
            spi_r: s.spi_r,
            encr: k.suite.encr,
            integ: k.suite.integ,
            prf: k.suite.prf,
            sk_ei: ci.sk_e(),
            sk_er: cr.sk_e(),
            sk_ai: ci.sk_a(),
            sk_ar: cr.sk_a(),
        })
    }

    /// Snapshots of every IKE SA, half-open ones included (rekeyed-away
    /// ones, still lingering for the peer's Delete, are not).
    pub fn ike_sas(&self) -> Vec<IkeSaInfo> {
        self.sas
            .values()
            .filter(|s| !s.closing())
            .filter_map(|s| s.info())
            .collect()
    }

    /// Number of IKE SAs held, in every state (the bound the fuzz target
    /// and the tests check).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// The child SAs of an IKE SA, as installed, without their keys (the
    /// keys are empty here: they are handed out once, in
    /// [`crate::Event::ChildSaEstablished`], and not kept).
    pub fn child_sas(&self, sa: IkeSaId) -> Vec<crate::api::ChildSaInfo> {
        self.sas
            .get(&sa)
            .map(|s| s.children.values().map(|c| s.child_info(c)).collect())
            .unwrap_or_default()
    }
}
