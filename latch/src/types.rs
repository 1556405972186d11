//! The data a latch holds and the table's inputs and outputs.

use core::fmt;
use pad::{FiveTuple, IdPattern, Identity, KeyFingerprint, Mode, Protection, SaQop, ThreeTuple};
use pad::{IpRange, TrafficSelector, TsList};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Serialize octets (DER, keys) as a hex string.
fn hex<S: serde::Serializer>(d: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut out = String::with_capacity(d.len() * 2);
    for b in d {
        out.push_str(&format!("{b:02x}"));
    }
    s.serialize_str(&out)
}

/// A child SA as the datapath and the key manager name it (e.g. its inbound
/// SPI, or an index into the SAD). Inbound packets are tagged with it (R17).
pub type SaTag = u64;

/// A latch's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct LatchId(pub u64);

impl fmt::Display for LatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "latch#{}", self.0)
    }
}

/// A trust anchor a certificate chained to, as `certs` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TrustAnchor {
    /// The name it has in the configuration.
    pub name: String,
    /// Its certificate (or subject), opaque DER.
    #[serde(serialize_with = "hex")]
    pub der: Vec<u8>,
}

/// How the peer authenticated (R7: all of it is exposed by inquiry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum PeerAuth {
    /// Pre-shared key.
    Psk,
    /// NULL authentication (RFC 7619): anonymous. Such a peer is known only
    /// by a handle the key manager gives it (kept across IKE SA rekeys).
    Null {
        /// The key manager's handle for this anonymous peer.
        anonymous_peer: u64,
    },
    /// BTNS (RFC 5386): an unauthenticated public key, known by its
    /// fingerprint.
    Btns {
        /// SHA-256 of the key's SubjectPublicKeyInfo.
        fingerprint: KeyFingerprint,
        /// The key's SubjectPublicKeyInfo (DER), or a self-signed
        /// certificate carrying it.
        #[serde(serialize_with = "hex")]
        key_der: Vec<u8>,
    },
    /// A certificate validated to a trust anchor.
    Certificate {
        /// The end-entity certificate (DER).
        #[serde(serialize_with = "hex")]
        cert_der: Vec<u8>,
        /// The anchor it chained to.
        trust_anchor: TrustAnchor,
    },
    /// A raw public key pinned in the PAD (RFC 7670).
    RawPublicKey {
        /// SHA-256 of the SubjectPublicKeyInfo.
        fingerprint: KeyFingerprint,
        /// The SubjectPublicKeyInfo (DER).
        #[serde(serialize_with = "hex")]
        spki_der: Vec<u8>,
    },
}

impl PeerAuth {
    /// True for peers whose identity nobody vouched for (BTNS, NULL).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Self::Null { .. } | Self::Btns { .. })
    }

    /// The key fingerprint, for key-based methods.
    pub fn fingerprint(&self) -> Option<&KeyFingerprint> {
        match self {
            Self::Btns { fingerprint, .. } | Self::RawPublicKey { fingerprint, .. } => {
                Some(fingerprint)
            }
            _ => None,
        }
    }
}

/// Who the peer of a child SA is (R1, R7).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PeerIdentity {
    /// The identity it asserted in IDi/IDr.
    pub asserted: Identity,
    /// The identity authorized by the PAD (`None` for unauthenticated
    /// peers).
    pub authenticated: Option<Identity>,
    /// How it authenticated.
    pub auth: PeerAuth,
    /// The PAD entry that authorized it.
    pub pad_entry: String,
}

/// What makes two peers "the same peer" for latching (R11, R12, R20).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum PeerKey {
    /// Authenticated by PSK as this identity.
    Psk(Vec<u8>, u8),
    /// Authenticated by certificate as this identity, to this anchor.
    Certificate {
        /// ID type and data.
        id: (u8, Vec<u8>),
        /// Trust anchor name.
        anchor: String,
    },
    /// Known by its public key (BTNS or pinned raw key).
    Key(KeyFingerprint),
    /// An anonymous peer (NULL authentication).
    Anonymous(u64),
}

impl PeerIdentity {
    /// The peer's key for "same peer" comparisons: the authenticated
    /// identity (and trust anchor) for PSK and certificates, the public key
    /// for BTNS and raw keys, the anonymous handle for NULL.
    pub fn key(&self) -> PeerKey {
        let id = self.authenticated.as_ref().unwrap_or(&self.asserted);
        match &self.auth {
            PeerAuth::Psk => PeerKey::Psk(id.data(), id.id_type()),
            PeerAuth::Certificate { trust_anchor, .. } => PeerKey::Certificate {
                id: (id.id_type(), id.data()),
                anchor: trust_anchor.name.clone(),
            },
            PeerAuth::Btns { fingerprint, .. } | PeerAuth::RawPublicKey { fingerprint, .. } => {
                PeerKey::Key(*fingerprint)
            }
            PeerAuth::Null { anonymous_peer } => PeerKey::Anonymous(*anonymous_peer),
        }
    }

    /// Whether this peer matches an expected-peer pattern given by an
    /// application (R3): key patterns against the key, others against the
    /// authenticated identity (never against a merely asserted one).
    pub fn matches(&self, p: &IdPattern) -> bool {
        match p {
            IdPattern::Any => true,
            IdPattern::KeyFingerprint(_) => p.matches(&Identity::Null, self.auth.fingerprint()),
            _ => self
                .authenticated
                .as_ref()
                .is_some_and(|id| p.matches(id, self.auth.fingerprint())),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.auth {
            PeerAuth::Psk => write!(f, "{} (psk)", self.asserted),
            PeerAuth::Null { anonymous_peer } => {
                write!(
                    f,
                    "anonymous#{anonymous_peer} (null, asserted {})",
                    self.asserted
                )
            }
            PeerAuth::Btns { fingerprint, .. } => {
                write!(f, "btns key {fingerprint} (asserted {})", self.asserted)
            }
            PeerAuth::Certificate { trust_anchor, .. } => {
                write!(
                    f,
                    "{} (certificate, anchor {})",
                    self.asserted, trust_anchor.name
                )
            }
            PeerAuth::RawPublicKey { fingerprint, .. } => {
                write!(f, "raw key {fingerprint} (asserted {})", self.asserted)
            }
        }
    }
}

/// NAT information about the peer (R7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct NatInfo {
    /// The peer is behind a NAT (RFC 7296 2.23 detection).
    pub peer_behind_nat: bool,
    /// This host is behind a NAT.
    pub local_behind_nat: bool,
    /// The peer's outer address: where its IKE and ESP (in UDP) packets come
    /// from, after any NAT.
    pub peer_outer: Option<SocketAddr>,
    /// The peer's inner address: its own address before NAT (NAT-OA), or
    /// its address inside the tunnel.
    pub peer_inner: Option<IpAddr>,
}

/// A child SA as the key manager announces it to the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildSaDescriptor {
    /// The SA's tag.
    pub id: SaTag,
    /// The peer it was negotiated with.
    pub peer: PeerIdentity,
    /// Its quality of protection.
    pub protection: SaQop,
    /// Local traffic selectors.
    pub local_ts: TsList,
    /// Remote traffic selectors.
    pub remote_ts: TsList,
    /// NAT information of its IKE SA.
    pub nat: NatInfo,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
}

/// A [`ChildSaDescriptor`] without its peer: what the table keeps of an
/// SA, the peer held once beside it (shared with the latches it binds), not
/// a hollow copy inline in every SA's record.
#[derive(Debug, Clone)]
pub(crate) struct SaDesc {
    pub(crate) id: SaTag,
    pub(crate) protection: SaQop,
    pub(crate) local_ts: TsList,
    pub(crate) remote_ts: TsList,
    pub(crate) nat: NatInfo,
    pub(crate) spi_in: u32,
    pub(crate) spi_out: u32,
}

impl SaDesc {
    /// The descriptor's parts: the SA, its peer.
    pub(crate) fn split(d: ChildSaDescriptor) -> (Self, PeerIdentity) {
        let ChildSaDescriptor {
            id,
            peer,
            protection,
            local_ts,
            remote_ts,
            nat,
            spi_in,
            spi_out,
        } = d;
        let sa = Self {
            id,
            protection,
            local_ts,
            remote_ts,
            nat,
            spi_in,
            spi_out,
        };
        (sa, peer)
    }

    /// The descriptor again.
    pub(crate) fn join(self, peer: PeerIdentity) -> ChildSaDescriptor {
        ChildSaDescriptor {
            id: self.id,
            peer,
            protection: self.protection,
            local_ts: self.local_ts,
            remote_ts: self.remote_ts,
            nat: self.nat,
            spi_in: self.spi_in,
            spi_out: self.spi_out,
        }
    }

    /// As [`ChildSaDescriptor::covers`].
    pub(crate) fn covers(&self, t: &FiveTuple) -> bool {
        ts_side(&self.local_ts, t.proto, t.local) && ts_side(&self.remote_ts, t.proto, t.remote)
    }

    /// [`Self::covers`] of the 5-tuple `proto`, `local` (address, port),
    /// `remote` between two IPv4 addresses, on integers: the per-packet
    /// check's form (no `SocketAddr`/`IpAddr` conversions per selector).
    pub(crate) fn covers_v4(&self, proto: u8, local: (u32, u16), remote: (u32, u16)) -> bool {
        ts_side_v4(&self.local_ts, proto, local) && ts_side_v4(&self.remote_ts, proto, remote)
    }

    /// As [`ChildSaDescriptor::covers_listener`].
    pub(crate) fn covers_listener(&self, t: &ThreeTuple) -> bool {
        listener_side(&self.local_ts, t)
    }

    /// As [`ChildSaDescriptor::remote_ranges`].
    pub(crate) fn remote_ranges(&self) -> impl Iterator<Item = IpRange> + '_ {
        self.remote_ts.iter().map(|t| t.addr)
    }
}

fn ts_side(ts: &[TrafficSelector], proto: u8, a: SocketAddr) -> bool {
    ts.iter().any(|t| t.matches(proto, a.ip(), a.port()))
}

/// Whether local selectors `ts` may carry some traffic of listener `t`
/// (any address of its family when it listens on the unspecified one).
fn listener_side(ts: &[TrafficSelector], t: &ThreeTuple) -> bool {
    if t.local.ip().is_unspecified() {
        ts.iter().any(|s| {
            (s.ip_proto == 0 || s.ip_proto == t.proto)
                && s.addr.is_ipv4() == t.local.is_ipv4()
                && s.start_port <= t.local.port()
                && t.local.port() <= s.end_port
        })
    } else {
        ts_side(ts, t.proto, t.local)
    }
}

/// `ts_side` for an IPv4 address `a` and `port`: exactly
/// [`TrafficSelector::matches`] (a range is IPv4 when its start is, and
/// compares as integers, its end included).
fn ts_side_v4(ts: &[TrafficSelector], proto: u8, (a, port): (u32, u16)) -> bool {
    ts.iter().any(|t| {
        (t.ip_proto == 0 || t.ip_proto == proto)
            && t.start_port <= port
            && port <= t.end_port
            && match (t.addr.start, t.addr.end) {
                (IpAddr::V4(s), IpAddr::V4(e)) => u32::from(s) <= a && a <= u32::from(e),
                (IpAddr::V4(s), IpAddr::V6(e)) => {
                    u32::from(s) <= a && u128::from(a) <= u128::from(e)
                }
                (IpAddr::V6(_), _) => false,
            }
    })
}

impl ChildSaDescriptor {
    /// Whether the SA may carry this connection (TSi x TSr covers it).
    pub fn covers(&self, t: &FiveTuple) -> bool {
        ts_side(&self.local_ts, t.proto, t.local) && ts_side(&self.remote_ts, t.proto, t.remote)
    }

    /// Whether the SA's selectors may carry some traffic of this listener.
    pub fn covers_listener(&self, t: &ThreeTuple) -> bool {
        listener_side(&self.local_ts, t)
    }

    /// Remote address ranges of its selectors.
    pub fn remote_ranges(&self) -> impl Iterator<Item = IpRange> + '_ {
        self.remote_ts.iter().map(|t| t.addr)
    }
}

/// The parameters latched into an Established connection (R1, R7). They
/// are set once, when the latch is established, and never change (R8): the
/// fields are private and there is no setter.
///
/// ```compile_fail
/// fn tamper(p: &mut latch::LatchedParams) {
///     p.peer = None; // private: R8
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatchedParams {
    qop: Option<SaQop>,
    /// Shared with the SA's entry and every latch it bound: a peer's
    /// certificate is held once, not once per latch.
    #[serde(serialize_with = "shared_peer")]
    peer: Option<Arc<PeerIdentity>>,
    nat: Option<NatInfo>,
    first_sa: Option<SaTag>,
    spis: Option<(u32, u32)>,
    #[serde(skip)]
    established_at: Instant,
}

/// Serialize a shared peer as the peer itself.
fn shared_peer<S: serde::Serializer>(
    p: &Option<Arc<PeerIdentity>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&p.as_deref(), s)
}

impl LatchedParams {
    /// The parameters of SA `sa`, whose peer is `peer` (the SA's own,
    /// shared).
    pub(crate) fn from_sa(sa: &SaDesc, peer: Arc<PeerIdentity>, now: Instant) -> Self {
        Self {
            qop: Some(sa.protection),
            peer: Some(peer),
            nat: Some(sa.nat),
            first_sa: Some(sa.id),
            spis: Some((sa.spi_in, sa.spi_out)),
            established_at: now,
        }
    }

    pub(crate) fn bypass(now: Instant) -> Self {
        Self {
            qop: None,
            peer: None,
            nat: None,
            first_sa: None,
            spis: None,
            established_at: now,
        }
    }

    /// True if the connection is latched to no protection at all (BYPASS,
    /// R19).
    pub fn is_bypass(&self) -> bool {
        self.qop.is_none()
    }

    /// Quality of protection: suites, key lengths, ESN, replay window, mode.
    pub fn qop(&self) -> Option<&SaQop> {
        self.qop.as_ref()
    }

    /// Transport or tunnel mode.
    pub fn mode(&self) -> Option<Mode> {
        self.qop.map(|q| q.mode)
    }

    /// Services: confidentiality and integrity, or integrity only.
    pub fn services(&self) -> Option<pad::Services> {
        self.qop.map(|q| q.services())
    }

    /// The peer: asserted and authenticated IDs and how it authenticated,
    /// with its certificate and trust anchor or its key.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_deref()
    }

    /// NAT information about the peer.
    pub fn nat(&self) -> Option<&NatInfo> {
        self.nat.as_ref()
    }

    /// The SA the latch was established with.
    pub fn first_sa(&self) -> Option<SaTag> {
        self.first_sa
    }

    /// Inbound and outbound SPI of that SA.
    pub fn spis(&self) -> Option<(u32, u32)> {
        self.spis
    }

    /// When the latch was established.
    pub fn established_at(&self) -> Instant {
        self.established_at
    }

    /// Whether two latches are bound to the same peer (R20): what an
    /// application with several connections compares.
    pub fn same_peer(&self, other: &Self) -> bool {
        match (&self.peer, &other.peer) {
            (Some(a), Some(b)) => a.key() == b.key(),
            _ => false,
        }
    }
}

/// A latch's state (draft 2; BROKEN and CLOSED from RFC 5660). The
/// transitions are in the crate documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LatchState {
    /// A listener latch on a 3-tuple.
    Listener,
    /// Waiting for a matching child SA.
    Larval,
    /// Bound: parameters latched.
    Established,
    /// No matching SA could be had in time, or the ULP rejected it.
    Failed,
    /// A conflicting SA exists (RFC 5660): every packet is dropped until the
    /// conflict goes.
    Broken,
    /// Released, or reset by a key manager restart (RFC 5660).
    Closed,
}

impl fmt::Display for LatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Listener => "LISTENER",
            Self::Larval => "LARVAL",
            Self::Established => "ESTABLISHED",
            Self::Failed => "FAILED",
            Self::Broken => "BROKEN",
            Self::Closed => "CLOSED",
        })
    }
}

/// What protection a ULP asks for (R3, R19).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RequestedProtection {
    /// What the SPD says.
    #[default]
    Policy,
    /// At least this protection; allowed where the SPD says PROTECT with a
    /// minimum this meets or exceeds, or where it says BYPASS (optional
    /// protection).
    Protect(Protection),
    /// No protection: where the SPD says BYPASS, or for a privileged caller
    /// where it says PROTECT.
    Bypass,
}

/// A request to create a connection latch (R12, R3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRequest {
    /// The connection.
    pub five: FiveTuple,
    /// The protection wanted.
    pub protection: RequestedProtection,
    /// The peer the application expects (matched against the authenticated
    /// identity, or the key for `pubkey-sha256:` patterns).
    pub expected_peer: Option<IdPattern>,
    /// The caller may override PROTECT with BYPASS.
    pub privileged: bool,
    /// R11: bind to the same peer as Established latches between the same
    /// addresses (default `true`; SHOULD).
    pub same_peer_as_existing: bool,
}

impl ConnectionRequest {
    /// A request with policy defaults.
    pub fn new(five: FiveTuple) -> Self {
        Self {
            five,
            protection: RequestedProtection::Policy,
            expected_peer: None,
            privileged: false,
            same_peer_as_existing: true,
        }
    }
}

/// A request to create a listener latch (R12, R3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerRequest {
    /// The listener.
    pub three: ThreeTuple,
    /// The protection wanted for its connections.
    pub protection: RequestedProtection,
    /// The peer expected.
    pub expected_peer: Option<IdPattern>,
    /// The caller may override PROTECT with BYPASS.
    pub privileged: bool,
}

impl ListenerRequest {
    /// A request with policy defaults.
    pub fn new(three: ThreeTuple) -> Self {
        Self {
            three,
            protection: RequestedProtection::Policy,
            expected_peer: None,
            privileged: false,
        }
    }
}

/// What a latch is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum Tuple {
    /// A listener's 3-tuple.
    Three(ThreeTuple),
    /// A connection's 5-tuple.
    Five(FiveTuple),
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Three(t) => t.fmt(f),
            Self::Five(t) => t.fmt(f),
        }
    }
}

/// What a latch requires of an SA before it binds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// No IPsec (BYPASS).
    Bypass,
    /// At least this protection.
    Protect(Protection),
}

/// Why a state changed (in an [`Alert`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum AlertReason {
    /// The latch was created.
    Created,
    /// A matching SA bound it.
    Bound(SaTag),
    /// A BYPASS latch needs no SA and is established at once.
    Bypassed,
    /// No matching SA within the Larval timeout (R9).
    Timeout,
    /// An SA that conflicts with the latch was installed.
    ConflictingSa(SaTag),
    /// The conflicting SAs are gone.
    ConflictResolved,
    /// The ULP released the latch (R15).
    Released,
    /// The key manager restarted with [`crate::RestartPolicy::Reset`] (R10).
    KeyManagerRestart,
}

impl fmt::Display for AlertReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created => f.write_str("created"),
            Self::Bound(sa) => write!(f, "bound to SA {sa:#x}"),
            Self::Bypassed => f.write_str("bypass: no SA needed"),
            Self::Timeout => f.write_str("no matching SA in time"),
            Self::ConflictingSa(sa) => write!(f, "conflicting SA {sa:#x} installed"),
            Self::ConflictResolved => f.write_str("conflicting SAs removed"),
            Self::Released => f.write_str("released"),
            Self::KeyManagerRestart => f.write_str("key manager restarted"),
        }
    }
}

/// RFC 5660 ALERT: a latch changed state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    /// The latch.
    pub latch: LatchId,
    /// What it is on.
    pub tuple: Tuple,
    /// The state before (`None` when created).
    pub from: Option<LatchState>,
    /// The state now.
    pub to: LatchState,
    /// Why.
    pub reason: AlertReason,
    /// The table's state version after the change (R16).
    pub version: u64,
}

/// What inquiry returns about a latch (R2, R7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatchInfo {
    /// The latch.
    pub id: LatchId,
    /// What it is on.
    pub tuple: Tuple,
    /// Its state.
    pub state: LatchState,
    /// The latched parameters (Established, Broken, and Closed after being
    /// established).
    pub params: Option<LatchedParams>,
    /// What it requires of an SA.
    pub requirement: Requirement,
    /// The peer the application expected.
    pub expected_peer: Option<IdPattern>,
    /// The SPD entry that governed its creation.
    pub spd_entry: String,
    /// The SAs that currently match it (may change on rekey; the latched
    /// parameters do not).
    pub current_sas: Vec<SaTag>,
    /// R7: NAT information of the first SA that matches it now, as it is
    /// now: the peer's outer address follows a NAT rebinding (RFC 7296
    /// 2.23), while [`LatchedParams::nat`] keeps what was latched (R8).
    /// `None` when no SA matches it.
    pub current_nat: Option<NatInfo>,
    /// Conflicting SAs (Broken).
    pub conflicting_sas: Vec<SaTag>,
    /// The last reason its state changed.
    pub last_reason: AlertReason,
    /// When it was created.
    #[serde(skip)]
    pub created_at: Instant,
}
