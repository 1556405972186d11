//! One IKE SA: its state (as types: keys exist only once derived), the
//! message layer (RFC 7296 2.1, 2.2: message IDs, window size 1,
//! retransmission, the cached last response) and its timers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pad::{AuthMethod, Identity, Mode, TrafficSelector, TsList};
use rand_core::CryptoRngCore;

use crate::api::{
    ChildConfig, ChildSaId, ChildSaInfo, ChildSaPolicy, Config, DropReason, Error, Event, IkeSaId,
    IkeSaInfo, PeerConfig, PeerCredential, Stats, Transmit,
};
use crate::crypto::{DhPrivate, IkeKeys, IkeSuite, Secret, SkCipher};
use crate::select::EspSuite;
use crate::wire::{self, flags, Header, Message, Payload};

/// Bound on queued operations per IKE SA.
pub(crate) const MAX_QUEUED_OPS: usize = 32;
/// Bound on child SAs per IKE SA.
pub(crate) const MAX_CHILDREN: usize = 64;
/// Bound on queued events and transmits.
const MAX_QUEUE: usize = 4096;
/// How long a rekeyed or deleted IKE SA lingers to answer retransmissions.
pub(crate) const LINGER: Duration = Duration::from_secs(10);

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(10 * 365 * 86400)))
        .unwrap_or(now)
}

/// What the endpoint hands out: transmits, events, counters.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    /// The inbound ESP SPIs of every installed child SA (announced by
    /// [`Event::ChildSaEstablished`], gone with [`Event::ChildSaDeleted`]):
    /// a new SPI must be none of them (RFC 4301 4.1: the SPI names one SA
    /// at its receiver). Random 32-bit SPIs meet a live one about once per
    /// 100 000 SAs held (birthday bound), and the SA then failed to
    /// install ("duplicate SPI").
    pub(crate) live_esp_spis: HashSet<u32>,
}

impl Out {
    pub(crate) fn send(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUE {
            self.stats
                .drop(DropReason::QueueFull, "transmit queue full");
            return;
        }
        self.transmits.push_back(Transmit {
            local,
            remote,
            data,
        });
    }

    /// Send a message's datagrams (one, or its fragments).
    pub(crate) fn send_all<D: AsRef<[u8]>>(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[D],
    ) {
        if data.len() > 1 {
            self.stats.fragments_out += data.len() as u64;
        }
        for d in data {
            self.send(local, remote, d.as_ref().to_vec());
        }
    }

    pub(crate) fn event(&mut self, e: Event) {
        // Kept whether or not the event itself fits the queue below.
        match &e {
            Event::ChildSaEstablished(info) => {
                self.live_esp_spis.insert(info.inbound_spi);
            }
            Event::ChildSaDeleted { inbound_spi, .. } => {
                self.live_esp_spis.remove(inbound_spi);
            }
            _ => {}
        }
        if self.events.len() >= MAX_QUEUE {
            self.stats.events_dropped += 1;
            tracing::debug!("event queue full, event dropped");
            return;
        }
        self.events.push_back(e);
    }

    pub(crate) fn drop(&mut self, reason: DropReason, detail: &str) {
        self.stats.drop(reason, detail);
    }
}

/// A message's datagrams as a responder keeps them for retransmission
/// (RFC 7296 2.1) until the next request: one datagram (the usual case)
/// without a list around it, or the fragments (RFC 7383); no spare
/// capacity either way. One IKE SA keeps one such response while it lives
/// (docs/performance.md, memory per SA).
#[derive(Debug)]
pub(crate) enum Datagrams {
    One(Box<[u8]>),
    Fragments(Box<[Box<[u8]>]>),
}

impl Datagrams {
    pub(crate) fn keep(mut data: Vec<Vec<u8>>) -> Self {
        match data.len() {
            1 => Self::One(data.swap_remove(0).into_boxed_slice()),
            _ => Self::Fragments(data.into_iter().map(Vec::into_boxed_slice).collect()),
        }
    }

    /// Send them again, from `from` to `to`.
    pub(crate) fn resend(&self, out: &mut Out, from: SocketAddr, to: SocketAddr) {
        match self {
            Self::One(d) => out.send(from, to, d.to_vec()),
            Self::Fragments(f) => out.send_all(from, to, f),
        }
    }
}

/// Everything an IKE SA may touch besides itself.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    /// Where a responder's X25519 key pairs come from.
    pub(crate) x25519: crate::crypto::X25519Source,
    /// `config.peers`, each behind an `Arc` the SAs share.
    pub(crate) peers: &'a [Arc<PeerConfig>],
    pub(crate) rng: &'a mut (dyn CryptoRngCore + Send),
    pub(crate) policy: &'a mut dyn ChildSaPolicy,
    pub(crate) out: &'a mut Out,
    /// SPIs in use (ours), to keep new ones unique.
    pub(crate) spis: &'a HashMap<u64, IkeSaId>,
    pub(crate) next_sa: &'a mut u64,
    pub(crate) next_child: &'a mut u64,
    /// IKE SAs created while handling (IKE SA rekey).
    pub(crate) born: Vec<IkeSa>,
    /// An authenticated peer sent INITIAL_CONTACT (RFC 7296 2.4): its
    /// identity and address; its other IKE SAs are stale.
    pub(crate) initial_contact: Option<(Identity, std::net::IpAddr)>,
    /// The wall clock, for certificate validity.
    pub(crate) wall: crate::sig::WallAnchor,
    /// Peer address -> key pins.
    pub(crate) pins: &'a mut crate::pins::PinStore,
}

impl Ctx<'_> {
    pub(crate) fn random(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    pub(crate) fn nonce(&mut self) -> Vec<u8> {
        // RFC 7296 2.10: at least 128 bits and half the PRF key size; 32
        // octets covers every PRF we speak.
        self.random(32)
    }

    /// A fresh, unused, nonzero IKE SPI.
    pub(crate) fn new_ike_spi(&mut self) -> u64 {
        loop {
            let s = self.rng.next_u64();
            if s != 0 && !self.spis.contains_key(&s) && !self.born.iter().any(|b| b.our_spi() == s)
            {
                return s;
            }
        }
    }

    /// A fresh ESP SPI (RFC 4303 2.1: values 1-255 are reserved), none of
    /// the installed child SAs' inbound SPIs (`Out::live_esp_spis`).
    pub(crate) fn new_esp_spi(&mut self) -> u32 {
        loop {
            let s = self.rng.next_u32();
            if s > 255 && !self.out.live_esp_spis.contains(&s) {
                return s;
            }
        }
    }

    pub(crate) fn new_sa_id(&mut self) -> IkeSaId {
        *self.next_sa += 1;
        IkeSaId(*self.next_sa)
    }

    pub(crate) fn new_child_id(&mut self) -> ChildSaId {
        *self.next_child += 1;
        ChildSaId(*self.next_child)
    }

    /// `d` minus up to 10 %, so both peers do not rekey at the same time.
    pub(crate) fn jittered(&mut self, d: Duration) -> Duration {
        let j = self.rng.next_u32() % 1000;
        let cut = (d / 10)
            .checked_mul(j)
            .map(|x| x / 1000)
            .unwrap_or_default();
        d.saturating_sub(cut)
    }

    pub(crate) fn dh(&mut self, group: pad::alg::DhGroup) -> DhPrivate {
        DhPrivate::generate(group, &mut *self.rng)
    }

    /// The initiator's IKE_SA_INIT key: from [`Ctx::x25519`]'s source
    /// (used for exactly one agreement, see [`DhPrivate::generate_from`]).
    pub(crate) fn init_dh(&mut self, group: pad::alg::DhGroup) -> DhPrivate {
        DhPrivate::generate_from(group, &mut *self.rng, self.x25519)
    }
}

/// What the initiator keeps between IKE_SA_INIT request and response.
pub(crate) struct InitSent {
    pub(crate) dh: DhPrivate,
    pub(crate) ni: Vec<u8>,
    pub(crate) cookie: Option<Vec<u8>>,
    /// The request as last sent (RealMessage1 of RFC 7296 2.15).
    pub(crate) request: Vec<u8>,
    pub(crate) cookie_tries: u8,
    pub(crate) ke_tries: u8,
}

/// What AUTH signs (RFC 7296 2.15) and the first child SA derives from.
pub(crate) struct AuthData {
    pub(crate) init_i: Vec<u8>,
    pub(crate) init_r: Vec<u8>,
    pub(crate) ni: Vec<u8>,
    pub(crate) nr: Vec<u8>,
}

/// Where a keyed IKE SA stands.
pub(crate) enum Phase {
    /// Responder: IKE_SA_INIT answered, IKE_AUTH awaited (half-open).
    AwaitAuth(Box<AuthData>),
    /// Initiator: IKE_AUTH sent.
    AuthSent(Box<AuthData>),
    /// Authenticated.
    Established,
    /// Rekeyed or being deleted: only answers and deletes.
    Closing,
}

/// The keys of RFC 7296 2.14 an IKE SA keeps besides its SK ciphers (which
/// hold SK_e* and SK_a*): SK_d for its whole life, SK_pi and SK_pr until
/// both AUTH payloads are checked (boxed, and gone after IKE_AUTH).
pub(crate) struct KeptKeys {
    pub(crate) sk_d: Secret,
    auth: Option<Box<[Secret; 2]>>,
}

impl KeptKeys {
    pub(crate) fn new(k: IkeKeys) -> Self {
        let IkeKeys {
            sk_d, sk_pi, sk_pr, ..
        } = k;
        Self {
            sk_d,
            auth: Some(Box::new([sk_pi, sk_pr])),
        }
    }

    /// SK_pi (empty once forgotten).
    pub(crate) fn sk_pi(&self) -> &[u8] {
        self.auth.as_ref().map_or(&[], |a| &a[0][..])
    }

    /// SK_pr (empty once forgotten).
    pub(crate) fn sk_pr(&self) -> &[u8] {
        self.auth.as_ref().map_or(&[], |a| &a[1][..])
    }

    /// Drops (zeroizes) SK_pi and SK_pr.
    pub(crate) fn forget_auth(&mut self) {
        self.auth = None;
    }
}

/// The IKE SA's keys and ciphers: exist only once IKE_SA_INIT completed.
pub(crate) struct Keyed {
    pub(crate) suite: IkeSuite,
    pub(crate) keys: KeptKeys,
    pub(crate) seal: SkCipher,
    pub(crate) open: SkCipher,
    pub(crate) phase: Phase,
}

/// IKE SA states.
pub(crate) enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent(Box<InitSent>),
    /// Keys derived.
    Keyed(Box<Keyed>),
}

/// An outstanding request of ours.
pub(crate) struct Pending {
    pub(crate) msg_id: u32,
    pub(crate) exchange: u8,
    /// The request's datagrams (several: RFC 7383 fragments, retransmitted
    /// as they are, 2.6.1).
    pub(crate) data: Vec<Vec<u8>>,
    pub(crate) tries: u32,
    pub(crate) next_at: Instant,
    pub(crate) kind: PendingKind,
}

/// What an outstanding request was for.
pub(crate) enum PendingKind {
    Init,
    Auth(Box<ChildReq>),
    CreateChild(Box<ChildReq>),
    RekeyIke(Box<IkeRekeyReq>),
    DeleteChild(Vec<ChildSaId>),
    DeleteIke,
    Liveness,
    /// A notification that needs no processing of the answer.
    Notify,
}

/// A child SA's configuration, shared, not copied per child SA: the
/// peer configuration's (IKE_AUTH) or the one given to `create_child`.
#[derive(Clone)]
pub(crate) enum ChildCfg {
    /// `PeerConfig::child` of the SA's peer.
    Peer(Arc<PeerConfig>),
    /// Given to [`crate::Ike::create_child`].
    Own(Arc<ChildConfig>),
}

impl std::ops::Deref for ChildCfg {
    type Target = ChildConfig;
    fn deref(&self) -> &ChildConfig {
        match self {
            Self::Peer(p) => &p.child,
            Self::Own(c) => c,
        }
    }
}

/// A child SA we asked for.
pub(crate) struct ChildReq {
    pub(crate) cfg: ChildCfg,
    pub(crate) inbound_spi: u32,
    /// Our nonce in CREATE_CHILD_SA.
    pub(crate) ni: Option<Vec<u8>>,
    pub(crate) dh: Option<DhPrivate>,
    pub(crate) rekeys: Option<ChildSaId>,
    pub(crate) tsi: Vec<TrafficSelector>,
    pub(crate) tsr: Vec<TrafficSelector>,
    pub(crate) ke_tries: u8,
}

/// An IKE SA rekey we asked for.
pub(crate) struct IkeRekeyReq {
    pub(crate) new_spi: u64,
    pub(crate) ni: Vec<u8>,
    pub(crate) dh: DhPrivate,
}

/// Operations waiting for the request window.
pub(crate) enum Op {
    CreateChild(ChildCfg),
    RekeyChild(ChildSaId),
    RekeyIke,
    DeleteChild(ChildSaId),
    DeleteIke,
    Liveness,
    /// Delete an ESP SA the peer created but we refused after all.
    DeleteSpi(u32),
}

/// A child SA.
pub(crate) struct Child {
    pub(crate) id: ChildSaId,
    pub(crate) replaces: Option<ChildSaId>,
    /// We initiated the exchange that created it.
    pub(crate) initiator: bool,
    pub(crate) inbound_spi: u32,
    pub(crate) outbound_spi: u32,
    pub(crate) suite: EspSuite,
    pub(crate) mode: Mode,
    pub(crate) local_ts: TsList,
    pub(crate) remote_ts: TsList,
    // No keys: they go to the datapath once, in
    // `Event::ChildSaEstablished`; the IKE SA derives nothing from them.
    pub(crate) cfg: ChildCfg,
    pub(crate) rekey_at: Option<Instant>,
    /// A rekey of ours is queued or outstanding.
    pub(crate) rekeying: bool,
    /// The peer rekeyed this child while ours was outstanding (RFC 7296
    /// 2.8.1): the lowest nonce of its exchange and the child it created.
    /// Boxed: rare, and held by every child SA otherwise.
    pub(crate) collision: Option<Box<(Vec<u8>, ChildSaId)>>,
    /// Replaced by a rekey; waiting for the Delete.
    pub(crate) rekeyed: bool,
    /// The peer rekeyed it before our queued rekey started: skip ours.
    pub(crate) superseded: bool,
}

/// An IKE SA's child SAs: a vector, not a map (one child SA is usual,
/// [`MAX_CHILDREN`] the bound; a map's node would cost about 0.2 KiB per
/// IKE SA held).
#[derive(Default)]
pub(crate) struct Children(Vec<Child>);

impl Children {
    fn pos(&self, id: &ChildSaId) -> Option<usize> {
        self.0.iter().position(|c| c.id == *id)
    }

    pub(crate) fn get(&self, id: &ChildSaId) -> Option<&Child> {
        self.0.iter().find(|c| c.id == *id)
    }

    pub(crate) fn get_mut(&mut self, id: &ChildSaId) -> Option<&mut Child> {
        self.0.iter_mut().find(|c| c.id == *id)
    }

    pub(crate) fn contains_key(&self, id: &ChildSaId) -> bool {
        self.pos(id).is_some()
    }

    /// Adds (or replaces) the child SA with `c.id`, kept in id order.
    pub(crate) fn insert(&mut self, c: Child) {
        match self.0.binary_search_by_key(&c.id, |x| x.id) {
            Ok(i) => self.0[i] = c,
            Err(i) => {
                // Exactly: a `Vec`'s first growth makes room for 4.
                self.0.reserve_exact(1);
                self.0.insert(i, c);
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &ChildSaId) -> Option<Child> {
        let i = self.pos(id)?;
        let c = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(c)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Child> {
        self.0.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// One IKE SA.
pub(crate) struct IkeSa {
    pub(crate) id: IkeSaId,
    /// Shared with the endpoint's peer list (one allocation per
    /// configuration, not per SA).
    pub(crate) peer: Option<Arc<PeerConfig>>,
    pub(crate) initiator: bool,
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) nat_local: bool,
    pub(crate) nat_remote: bool,
    pub(crate) udp_encap: bool,
    pub(crate) state: State,
    pub(crate) children: Children,
    pub(crate) next_id: u32,
    /// Boxed: none outstanding is the usual state of an SA held.
    pub(crate) pending: Option<Box<Pending>>,
    pub(crate) queue: VecDeque<Op>,
    pub(crate) peer_next: u32,
    /// The last response sent: message ID, bytes, from, to.
    pub(crate) cached: Option<(u32, Datagrams, SocketAddr, SocketAddr)>,
    pub(crate) last_heard: Instant,
    /// Half-open expiry, or the end of a closing SA's linger.
    pub(crate) expire_at: Option<Instant>,
    pub(crate) ike_rekey_at: Option<Instant>,
    pub(crate) peer_id: Identity,
    pub(crate) peer_auth: AuthMethod,
    /// What the peer's authentication proved.
    pub(crate) peer_credential: PeerCredential,
    /// The hashes the peer announced in SIGNATURE_HASH_ALGORITHMS (RFC
    /// 7427 4), if it sent the notify.
    pub(crate) peer_hashes: Option<Vec<u16>>,
    /// IKE fragmentation (RFC 7383) negotiated.
    pub(crate) frag: bool,
    /// Reassembly of a fragmented request and of a fragmented response.
    pub(crate) reassembly: [Option<Box<crate::frag::Reassembly>>; 2],
    /// Remove from the endpoint.
    pub(crate) dead: bool,
    /// Send INITIAL_CONTACT in IKE_AUTH (RFC 7296 2.4): we hold no other
    /// IKE SA with this peer.
    pub(crate) initial_contact: bool,
    /// The peer rekeyed this IKE SA while our own rekey was outstanding
    /// (RFC 7296 2.8.2): the lowest nonce of its exchange and the SA it
    /// created, decided when our exchange completes.
    pub(crate) ike_collision: Option<Box<(Vec<u8>, Self)>>,
}

impl IkeSa {
    /// Our SPI: the one the peer's messages are looked up by.
    pub(crate) fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    pub(crate) fn keyed(&self) -> Option<&Keyed> {
        match &self.state {
            State::Keyed(k) => Some(k),
            State::InitSent(_) => None,
        }
    }

    pub(crate) fn keyed_mut(&mut self) -> Option<&mut Keyed> {
        match &mut self.state {
            State::Keyed(k) => Some(k),
            State::InitSent(_) => None,
        }
    }

    pub(crate) fn established(&self) -> bool {
        matches!(self.keyed().map(|k| &k.phase), Some(Phase::Established))
    }

    pub(crate) fn closing(&self) -> bool {
        matches!(self.keyed().map(|k| &k.phase), Some(Phase::Closing))
    }

    /// Held against [`Config::max_half_open`]: half-open, or lingering
    /// after a failed IKE_AUTH (never authenticated).
    pub(crate) fn unauthenticated(&self) -> bool {
        self.half_open() || (self.closing() && self.peer.is_none())
    }

    pub(crate) fn half_open(&self) -> bool {
        matches!(self.keyed().map(|k| &k.phase), Some(Phase::AwaitAuth(_)))
    }

    pub(crate) fn header(&self, exchange: u8, response: bool, msg_id: u32) -> Header {
        let mut f = 0;
        if self.initiator {
            f |= flags::INITIATOR;
        }
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            version: 0x20,
            exchange,
            flags: f,
            message_id: msg_id,
            length: 0,
        }
    }

    /// Check and decrypt an encrypted message (RFC 7296 3.14); `buf` is the
    /// datagram the message was parsed from.
    pub(crate) fn open(&self, buf: &[u8], msg: &Message) -> Result<Vec<Payload>, DropReason> {
        let k = self.keyed().ok_or(DropReason::WrongState)?;
        let Some(Payload::Encrypted(e)) = msg.payloads.last() else {
            return Err(DropReason::InvalidPayload);
        };
        let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
        let buf = buf.get(..len).unwrap_or(buf);
        let aad_len = buf
            .len()
            .checked_sub(e.body.len())
            .ok_or(DropReason::Malformed)?;
        let aad = buf.get(..aad_len).ok_or(DropReason::Malformed)?;
        let plain = k
            .open
            .open(aad, &e.body)
            .map_err(|_| DropReason::IntegrityFailed)?;
        wire::parse_payload_chain(e.first_inner, &plain).map_err(|_| DropReason::Malformed)
    }

    /// Send a new request (the window must be free).
    pub(crate) fn request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        exchange: u8,
        payloads: &[Payload],
        kind: PendingKind,
    ) {
        let msg_id = self.next_id;
        let Some(data) = self.seal_datagrams(ctx, exchange, false, msg_id, payloads) else {
            // Only an exhausted IV counter gets here: the SA cannot go on.
            self.fail(ctx, Error::Crypto("cannot encrypt a request".into()));
            return;
        };
        ctx.out.send_all(self.local, self.remote, &data);
        self.pending = Some(Box::new(Pending {
            msg_id,
            exchange,
            data,
            tries: 1,
            next_at: later(now, ctx.config.retransmit.timeout(1)),
            kind,
        }));
    }

    /// Send (and cache) the response to the peer's request `msg_id`.
    pub(crate) fn respond(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: u8,
        msg_id: u32,
        payloads: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let Some(data) = self.seal_datagrams(ctx, exchange, true, msg_id, payloads) else {
            return;
        };
        ctx.out.send_all(to.0, to.1, &data);
        ctx.out.stats.exchanges += 1;
        // Kept until the next request (RFC 7296 2.1).
        self.cached = Some((msg_id, Datagrams::keep(data), to.0, to.1));
    }

    /// The response to a request completed: free the window.
    pub(crate) fn complete(&mut self, ctx: &mut Ctx<'_>) -> Option<PendingKind> {
        let p = self.pending.take()?;
        self.next_id = self.next_id.wrapping_add(1);
        ctx.out.stats.exchanges += 1;
        Some(p.kind)
    }

    /// The SA failed: every child goes, the user hears why.
    pub(crate) fn fail(&mut self, ctx: &mut Ctx<'_>, error: Error) {
        if self.dead {
            return;
        }
        if self.closing() {
            // Rekeyed away: its handle is gone already (see Event).
            self.dead = true;
            return;
        }
        tracing::debug!(sa = self.id.0, %error, "IKE SA failed");
        self.drop_children(ctx);
        ctx.out.event(Event::IkeSaFailed { sa: self.id, error });
        self.dead = true;
    }

    /// The SA was deleted (by us or the peer).
    pub(crate) fn deleted(&mut self, ctx: &mut Ctx<'_>) {
        if self.dead {
            return;
        }
        if self.closing() {
            self.dead = true;
            return;
        }
        self.drop_children(ctx);
        ctx.out.event(Event::IkeSaDeleted { sa: self.id });
        self.dead = true;
    }

    pub(crate) fn drop_children(&mut self, ctx: &mut Ctx<'_>) {
        for c in std::mem::take(&mut self.children).0 {
            ctx.out.event(Event::ChildSaDeleted {
                ike_sa: self.id,
                child: c.id,
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
    }

    pub(crate) fn remove_child(&mut self, ctx: &mut Ctx<'_>, id: ChildSaId) {
        if let Some(c) = self.children.remove(&id) {
            ctx.out.event(Event::ChildSaDeleted {
                ike_sa: self.id,
                child: c.id,
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
    }

    pub(crate) fn info(&self) -> Option<IkeSaInfo> {
        let k = self.keyed();
        let suite = match (&self.state, k) {
            (_, Some(k)) => k.suite,
            (State::InitSent(i), None) => IkeSuite {
                encr: pad::alg::Encr::AesGcm16_128,
                prf: pad::alg::Prf::HmacSha256,
                integ: None,
                dh: i.dh.group(),
            },
            (State::Keyed(_), None) => return None,
        };
        Some(IkeSaInfo {
            id: self.id,
            name: self
                .peer
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            initiator: self.initiator,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            local: self.local,
            remote: self.remote,
            local_id: self
                .peer
                .as_ref()
                .map_or(Identity::Null, |p| p.local_id.clone()),
            peer_id: self.peer_id.clone(),
            peer_auth: self.peer_auth,
            peer_credential: self.peer_credential.clone(),
            fragmentation: self.frag,
            suite,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            udp_encap: self.udp_encap,
            established: self.established(),
        })
    }

    /// The child SA's description; its keys are empty (see
    /// [`Child`]: only `install_child` hands them out).
    pub(crate) fn child_info(&self, c: &Child) -> ChildSaInfo {
        ChildSaInfo {
            ike_sa: self.id,
            id: c.id,
            replaces: c.replaces,
            initiator: c.initiator,
            inbound_spi: c.inbound_spi,
            outbound_spi: c.outbound_spi,
            encr: c.suite.encr,
            integ: c.suite.integ,
            esn: c.suite.esn,
            pfs: c.suite.dh,
            mode: c.mode,
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
            inbound_encr_key: Secret::default(),
            inbound_integ_key: Secret::default(),
            outbound_encr_key: Secret::default(),
            outbound_integ_key: Secret::default(),
            local: self.local,
            remote: self.remote,
            udp_encap: self.udp_encap,
            peer_id: self.peer_id.clone(),
            peer_auth: self.peer_auth,
            peer_credential: self.peer_credential.clone(),
            replay_window: c.cfg.replay_window,
        }
    }

    /// The next instant this SA needs [`IkeSa::on_timeout`].
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.pending.as_ref().map(|p| p.next_at));
        consider(self.expire_at);
        if self.established() {
            consider(self.ike_rekey_at);
            for c in self.children.values() {
                consider(c.rekey_at);
            }
            consider(self.dpd_at());
        }
        t
    }

    fn dpd_at(&self) -> Option<Instant> {
        if self.pending.is_some() || !self.queue.is_empty() {
            return None;
        }
        let i = self.peer.as_ref()?.dpd_interval?;
        Some(later(self.last_heard, i))
    }

    /// Timers: retransmission (RFC 7296 2.1), expiry, rekeys, liveness.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if self.dead {
            return;
        }
        if let Some(p) = &mut self.pending {
            if p.next_at <= now {
                if p.tries >= ctx.config.retransmit.max_tries {
                    // RFC 7296 2.4: an unanswered request means the peer
                    // is gone; the SA fails.
                    let closing = matches!(p.kind, PendingKind::DeleteIke | PendingKind::Notify);
                    self.pending = None;
                    if closing {
                        self.deleted(ctx);
                    } else {
                        self.fail(ctx, Error::Timeout);
                    }
                    return;
                }
                p.tries += 1;
                p.next_at = later(now, ctx.config.retransmit.timeout(p.tries));
                ctx.out.stats.retransmits += 1;
                tracing::debug!(
                    sa = self.id.0,
                    msg_id = p.msg_id,
                    tries = p.tries,
                    "retransmit"
                );
                ctx.out.send_all(self.local, self.remote, &p.data);
            }
        }
        if self.expire_at.is_some_and(|e| e <= now) {
            self.expire_at = None;
            if self.half_open() {
                tracing::debug!(sa = self.id.0, "half-open IKE SA expired");
                self.dead = true;
                return;
            }
            if self.closing() {
                self.deleted(ctx);
                return;
            }
        }
        if !self.established() {
            return;
        }
        if self.ike_rekey_at.is_some_and(|t| t <= now) {
            self.ike_rekey_at = None;
            self.enqueue(Op::RekeyIke);
        }
        let due: Vec<ChildSaId> = self
            .children
            .values()
            .filter(|c| c.rekey_at.is_some_and(|t| t <= now))
            .map(|c| c.id)
            .collect();
        for id in due {
            if let Some(c) = self.children.get_mut(&id) {
                c.rekey_at = None;
            }
            self.enqueue(Op::RekeyChild(id));
        }
        if self.dpd_at().is_some_and(|t| t <= now) {
            self.enqueue(Op::Liveness);
        }
        self.start_next(ctx, now);
    }

    pub(crate) fn enqueue(&mut self, op: Op) -> bool {
        if self.queue.len() >= MAX_QUEUED_OPS {
            return false;
        }
        self.queue.push_back(op);
        true
    }

    /// Records that a (verified) message came from the peer.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// RFC 7296 2.23: with the peer behind a NAT, follow the source of its
    /// latest authenticated message (the NAT's mapping may change).
    pub(crate) fn follow_nat(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr, remote: SocketAddr) {
        if !self.nat_remote || !self.established() || (local, remote) == (self.local, self.remote) {
            return;
        }
        tracing::debug!(sa = self.id.0, %remote, "peer's NAT mapping changed");
        self.local = local;
        self.remote = remote;
        ctx.out.event(Event::PeerAddressChanged {
            sa: self.id,
            local,
            remote,
        });
    }

    /// The common part of a new IKE SA.
    #[allow(clippy::too_many_arguments, reason = "a constructor of plain data")]
    pub(crate) fn new(
        id: IkeSaId,
        peer: Option<Arc<PeerConfig>>,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        state: State,
        now: Instant,
    ) -> Self {
        let (peer_id, peer_auth) = match &peer {
            Some(p) => (p.remote_id.clone().unwrap_or(Identity::Null), p.remote_auth),
            None => (Identity::Null, AuthMethod::Null),
        };
        Self {
            id,
            peer,
            initiator,
            spi_i,
            spi_r,
            local,
            remote,
            nat_local: false,
            nat_remote: false,
            udp_encap: false,
            state,
            children: Children::default(),
            next_id: 0,
            pending: None,
            queue: VecDeque::new(),
            peer_next: 0,
            cached: None,
            last_heard: now,
            expire_at: None,
            ike_rekey_at: None,
            peer_id,
            peer_auth,
            peer_credential: PeerCredential::Anonymous,
            peer_hashes: None,
            frag: false,
            reassembly: [None, None],
            dead: false,
            initial_contact: false,
            ike_collision: None,
        }
    }
}
