//! The public vocabulary of the state machine: configuration, events,
//! errors, statistics and the child SA policy hook.

use core::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pad::alg::{DhGroup, Encr, Integ};
use pad::{AuthMethod, Identity, Mode, TrafficSelector, TsList};

use crate::crypto::{IkeSuite, Secret};
use crate::wire::notify;

/// Endpoint-wide configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our IKE port (500 in production).
    pub ike_port: u16,
    /// Our NAT-T port (4500 in production); IKE messages sent from it get the
    /// non-ESP marker from the driver.
    pub natt_port: u16,
    /// Peers. As responder, the first entry whose `remote_id` matches the
    /// peer's IDi (`None` = any) and whose `remote_auth` matches the AUTH
    /// method used is chosen (for signature methods: `Certificate` when
    /// the peer sent an X.509 CERT, else `RawPublicKey`; an X.509 CERT
    /// falls back to a `RawPublicKey` entry, whose keys it may carry).
    pub peers: Vec<PeerConfig>,
    /// Half-open IKE SAs before a COOKIE is demanded (RFC 7296 2.6); 0 means
    /// always.
    pub cookie_threshold: usize,
    /// Hard bound on half-open IKE SAs; new IKE_SA_INIT requests beyond it
    /// are dropped (counted as [`DropReason::HalfOpenLimit`]).
    pub max_half_open: usize,
    /// Retransmission of our requests (RFC 7296 2.1).
    pub retransmit: RetransmitConfig,
    /// IKE fragmentation (RFC 7383).
    pub fragmentation: FragmentationConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ike_port: 500,
            natt_port: 4500,
            peers: Vec::new(),
            cookie_threshold: 64,
            max_half_open: 1024,
            retransmit: RetransmitConfig::default(),
            fragmentation: FragmentationConfig::default(),
        }
    }
}

/// IKE fragmentation (RFC 7383): offered and accepted with
/// IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT; encrypted messages whose
/// IP datagram would exceed `max_datagram` are then sent as SKF fragments.
/// Reassembly is bounded by `max_fragments` and `max_message`; fragments
/// beyond the bounds are dropped and counted
/// ([`DropReason::FragmentLimit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentationConfig {
    /// Offer and accept fragmentation.
    pub enabled: bool,
    /// Largest IP datagram we send (IP and UDP headers and the non-ESP
    /// marker included), as strongSwan's `fragment_size`: 1280 by default.
    pub max_datagram: u16,
    /// Most fragments a reassembled message may have (received side).
    pub max_fragments: u16,
    /// Most octets of decrypted content a reassembled message may have.
    pub max_message: usize,
}

impl Default for FragmentationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_datagram: 1280,
            max_fragments: 16,
            max_message: 64 * 1024,
        }
    }
}

/// Retransmission timing (RFC 7296 2.1): the first retransmission after
/// `initial`, each further one `backoff` times later than the previous, at
/// most `max_timeout` apart; after `max_tries` transmissions without an
/// answer the IKE SA fails with [`Error::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// Timeout after the first transmission.
    pub initial: Duration,
    /// Multiplier applied after every retransmission.
    pub backoff: u32,
    /// Upper bound of one timeout.
    pub max_timeout: Duration,
    /// Transmissions (first one included) before giving up.
    pub max_tries: u32,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            backoff: 2,
            max_timeout: Duration::from_secs(30),
            max_tries: 5,
        }
    }
}

impl RetransmitConfig {
    /// The timeout after transmission number `try_no` (1 = first).
    pub fn timeout(&self, try_no: u32) -> Duration {
        let mut t = self.initial;
        for _ in 1..try_no {
            t = t.saturating_mul(self.backoff.max(1));
            if t >= self.max_timeout {
                return self.max_timeout;
            }
        }
        t.min(self.max_timeout)
    }
}

/// One peer (or class of peers, when `remote_id` is `None`).
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Name used in logs and [`IkeSaInfo::name`].
    pub name: String,
    /// Our identity (IDi or IDr); [`Identity::Null`] sends ID_NULL.
    pub local_id: Identity,
    /// The identity the peer must assert; `None` accepts any.
    pub remote_id: Option<Identity>,
    /// How we authenticate.
    pub local_auth: AuthMethod,
    /// How the peer must authenticate.
    pub remote_auth: AuthMethod,
    /// The pre-shared key, needed when either side uses PSK.
    pub psk: Option<certs::Psk>,
    /// Keys, certificates and trust anchors for signature authentication
    /// ([`AuthMethod::Certificate`], [`AuthMethod::RawPublicKey`]).
    pub credentials: Credentials,
    /// IKE SA proposals in order of preference (the first D-H group of the
    /// first proposal goes into the initiator's KE payload).
    pub ike_proposals: Vec<pad::IkeProposal>,
    /// The child SA negotiated in IKE_AUTH (and the responder's policy for
    /// later ones).
    pub child: ChildConfig,
    /// Rekey the IKE SA after this long (`None`: never).
    pub ike_rekey_after: Option<Duration>,
    /// Check liveness when nothing was heard from the peer for this long.
    pub dpd_interval: Option<Duration>,
    /// Send a NAT_DETECTION_SOURCE_IP that cannot match, so both sides use
    /// UDP encapsulation (as strongSwan's kernel-libipsec does).
    pub force_encap: bool,
    /// The peer's NAT-T port (4500 in production): where the initiator
    /// moves IKE after NAT detection (RFC 7296 2.23).
    pub remote_natt_port: u16,
}

/// Which AUTH method numbers we sign with (RFC 7296 3.8, RFC 4754,
/// RFC 7427).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureMethods {
    /// Digital Signature (14, RFC 7427) when the peer announced
    /// SIGNATURE_HASH_ALGORITHMS; otherwise the RFC 7296 methods where the
    /// key has one (ECDSA 9 and 10), and 14 for the others.
    #[default]
    Auto,
    /// Always Digital Signature (14).
    DigitalSignature,
    /// The RFC 7296 / RFC 4754 methods: ECDSA P-256 (9) and P-384 (10).
    /// RSA keys still sign with method 14: method 1 needs PKCS#1 v1.5 with
    /// SHA-1, which ring does not make (we verify it); Ed25519 has only 14.
    Legacy,
}

/// Credentials for signature authentication: ours, and what we accept
/// from the peer. The default is empty (PSK and NULL need none).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Our private key (certificate or raw public key authentication).
    pub private_key: Option<Arc<certs::PrivateKey>>,
    /// Our certificate chain, DER: the end entity first, then
    /// intermediates (sent as CERT payloads, encoding 4, in this order).
    /// With [`AuthMethod::RawPublicKey`] our key goes as CERT encoding 15
    /// instead.
    pub certificates: Vec<Vec<u8>>,
    /// Trust anchors the peer's certificate must validate to (also
    /// announced in CERTREQ, RFC 7296 3.7).
    pub trust_anchors: Vec<certs::TrustAnchor>,
    /// Raw public keys accepted from the peer (RFC 7670).
    pub peer_keys: Vec<certs::PublicKey>,
    /// Signature schemes we sign with in method 14, in order of
    /// preference; the first that fits our key and whose hash the peer
    /// announced is used. Empty: the key's default scheme
    /// ([`certs::PrivateKey::default_scheme`]).
    pub signature_schemes: Vec<certs::SignatureScheme>,
    /// Which AUTH method numbers we use.
    pub methods: SignatureMethods,
    /// Apply RFC 4945 5.1.3.12 to the letter for the peer's certificate
    /// (see [`certs::eku_allows_ike`]).
    pub strict_eku: bool,
    /// BTNS (RFC 5386) with [`AuthMethod::RawPublicKey`]: accept any key
    /// the peer proves possession of, sent as a raw key (CERT encoding 15)
    /// or in any certificate (self-signed included, not validated); what
    /// identifies the peer is then the key's fingerprint
    /// ([`PeerCredential::spki_sha256`]), never the ID it asserts.
    pub accept_any_key: bool,
    /// Check the peer's key against the endpoint's pin store
    /// ([`crate::PinStore`], SSH `known_hosts` style, by peer address):
    /// unknown addresses are learned, a changed key is refused or warned
    /// about as the store's policy says.
    pub pinning: bool,
}

/// How the peer proved who it is, as latching shows it (R7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PeerCredential {
    /// Nothing proven (yet), or NULL authentication (RFC 7619): anonymous.
    #[default]
    Anonymous,
    /// The pre-shared key.
    SharedKey,
    /// A certificate validated to a trust anchor: the end entity, the
    /// intermediates used, the trust anchor, the key's fingerprint.
    Certificate(Arc<certs::ValidatedPeer>),
    /// A raw public key (RFC 7670) configured for the peer.
    RawPublicKey(certs::PublicKey),
}

impl PeerCredential {
    /// SHA-256 of the peer's SubjectPublicKeyInfo, for signature methods.
    pub fn spki_sha256(&self) -> Option<certs::SpkiFingerprint> {
        match self {
            Self::Certificate(v) => Some(v.spki_sha256),
            Self::RawPublicKey(k) => Some(k.fingerprint()),
            Self::Anonymous | Self::SharedKey => None,
        }
    }

    /// The peer's end-entity certificate, DER.
    pub fn certificate(&self) -> Option<&[u8]> {
        match self {
            Self::Certificate(v) => Some(&v.end_entity_der),
            _ => None,
        }
    }

    /// The trust anchor the peer's certificate validated to.
    pub fn trust_anchor(&self) -> Option<&certs::TrustAnchor> {
        match self {
            Self::Certificate(v) => Some(&v.trust_anchor),
            _ => None,
        }
    }
}

/// A child SA's policy.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// ESP proposals in order of preference; D-H groups ask for PFS in
    /// CREATE_CHILD_SA (they are left out in IKE_AUTH, RFC 7296 1.2).
    pub esp_proposals: Vec<pad::EspProposal>,
    /// Our side's traffic selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side's traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Tunnel or transport mode.
    pub mode: Mode,
    /// Rekey after this long (`None`: never).
    pub rekey_after: Option<Duration>,
    /// Replay window the datapath should use (passed through).
    pub replay_window: u32,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Our address to send from.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The IKE message without the non-ESP marker; the driver prepends the
    /// marker when `local.port()` is the NAT-T port.
    pub data: Vec<u8>,
}

/// Local handle of an IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSaId(pub u64);

/// Local handle of a child SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildSaId(pub u64);

/// Decides whether a child SA may be created (latching, R13).
pub trait ChildSaPolicy: Send {
    /// Called after our own RFC 7296 2.9 narrowing, in both roles.
    fn authorize(&mut self, req: &ChildSaRequest<'_>) -> ChildSaDecision;
}

/// What the policy hook is asked about.
#[derive(Debug)]
pub struct ChildSaRequest<'a> {
    /// The IKE SA.
    pub ike_sa: IkeSaId,
    /// The peer's authenticated identity.
    pub peer_id: &'a Identity,
    /// How the peer authenticated.
    pub peer_auth: AuthMethod,
    /// What its authentication proved (already known for the child SA
    /// negotiated inside IKE_AUTH, so a key-identified BTNS peer can be
    /// narrowed there).
    pub peer_credential: &'a PeerCredential,
    /// The peer's outer address.
    pub remote: SocketAddr,
    /// Whether we initiated this child SA.
    pub initiator: bool,
    /// Initiator's traffic selectors, after narrowing.
    pub tsi: &'a [TrafficSelector],
    /// Responder's traffic selectors, after narrowing.
    pub tsr: &'a [TrafficSelector],
    /// Mode.
    pub mode: Mode,
    /// Negotiated cipher.
    pub encr: Encr,
    /// Negotiated integrity algorithm (`None` for AEADs).
    pub integ: Option<Integ>,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildSaDecision {
    /// Accept, possibly narrowed further (each selector must lie inside the
    /// ones asked about, or the answer counts as a refusal).
    Accept {
        /// Initiator's selectors.
        tsi: Vec<TrafficSelector>,
        /// Responder's selectors.
        tsr: Vec<TrafficSelector>,
    },
    /// Refuse: TS_UNACCEPTABLE.
    Refuse,
}

/// A policy that accepts everything as narrowed by the [`ChildConfig`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl ChildSaPolicy for AcceptAll {
    fn authorize(&mut self, req: &ChildSaRequest<'_>) -> ChildSaDecision {
        ChildSaDecision::Accept {
            tsi: req.tsi.to_vec(),
            tsr: req.tsr.to_vec(),
        }
    }
}

/// What happened.
///
/// Rekeying the IKE SA emits only [`Event::IkeSaRekeyed`]: the new handle
/// takes over every child SA at once and no `IkeSaEstablished` is emitted
/// for it, no `IkeSaDeleted` for the old one (its handle is simply gone).
/// A rekeyed child SA gives [`Event::ChildSaEstablished`] with
/// [`ChildSaInfo::replaces`] set, later followed by
/// [`Event::ChildSaDeleted`] for the old one.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "events are rare and moved once; the driver matches on ChildSaInfo by value"
)]
pub enum Event {
    /// IKE_AUTH completed.
    IkeSaEstablished(IkeSaInfo),
    /// A child SA is ready to be installed.
    ChildSaEstablished(ChildSaInfo),
    /// A child SA is gone.
    ChildSaDeleted {
        /// The IKE SA it belonged to.
        ike_sa: IkeSaId,
        /// The child SA.
        child: ChildSaId,
        /// Our inbound SPI.
        inbound_spi: u32,
        /// Our outbound SPI.
        outbound_spi: u32,
    },
    /// The IKE SA was deleted (by either side); its child SAs were deleted
    /// before (each with its own event).
    IkeSaDeleted {
        /// The IKE SA.
        sa: IkeSaId,
    },
    /// The IKE SA failed (while being set up or later). As responder, a
    /// failed IKE_SA_INIT that created no SA gets a fresh handle too, so the
    /// operator sees both sides' proposals.
    IkeSaFailed {
        /// The IKE SA.
        sa: IkeSaId,
        /// Why.
        error: Error,
    },
    /// The IKE SA was rekeyed (RFC 7296 1.3.2).
    IkeSaRekeyed {
        /// The old handle (gone).
        old: IkeSaId,
        /// The new handle, holding the child SAs.
        new: IkeSaId,
    },
    /// The peer is behind a NAT whose mapping changed: IKE and ESP now
    /// go to a new outer address (RFC 7296 2.23). Every child SA of the
    /// IKE SA moves with it.
    PeerAddressChanged {
        /// The IKE SA.
        sa: IkeSaId,
        /// Our address.
        local: SocketAddr,
        /// The peer's new address.
        remote: SocketAddr,
    },
    /// A peer's key was pinned to its address for the first time (the
    /// driver may persist [`crate::Ike::pins`] now).
    PeerKeyPinned {
        /// The IKE SA.
        sa: IkeSaId,
        /// The peer's address.
        address: std::net::IpAddr,
        /// The key's SHA-256 SubjectPublicKeyInfo fingerprint.
        fingerprint: certs::SpkiFingerprint,
    },
    /// A pinned address presented another key.
    PeerKeyChanged {
        /// The IKE SA.
        sa: IkeSaId,
        /// The peer's address.
        address: std::net::IpAddr,
        /// The pinned key.
        pinned: certs::SpkiFingerprint,
        /// The key presented.
        presented: certs::SpkiFingerprint,
        /// Whether the peer was refused ([`crate::PinPolicy::Refuse`]).
        refused: bool,
    },
    /// A child SA could not be created (the IKE SA stays up).
    ChildSaFailed {
        /// The IKE SA.
        ike_sa: IkeSaId,
        /// Why.
        error: Error,
    },
}

/// A snapshot of an IKE SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeSaInfo {
    /// Handle.
    pub id: IkeSaId,
    /// The peer config's name (empty until the responder chose one).
    pub name: String,
    /// Whether we are the original initiator (of this SA, after a rekey:
    /// of the rekeying exchange).
    pub initiator: bool,
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI.
    pub spi_r: u64,
    /// Our current address.
    pub local: SocketAddr,
    /// The peer's current address.
    pub remote: SocketAddr,
    /// Our identity.
    pub local_id: Identity,
    /// The peer's identity ([`Identity::Null`] until authenticated).
    pub peer_id: Identity,
    /// How the peer authenticated.
    pub peer_auth: AuthMethod,
    /// What the peer's authentication proved (certificate and trust
    /// anchor, raw key, or anonymous).
    pub peer_credential: PeerCredential,
    /// IKE fragmentation (RFC 7383) was negotiated.
    pub fragmentation: bool,
    /// Negotiated algorithms.
    pub suite: IkeSuite,
    /// We are behind a NAT.
    pub nat_local: bool,
    /// The peer is behind a NAT.
    pub nat_remote: bool,
    /// IKE and ESP travel in UDP on the NAT-T port.
    pub udp_encap: bool,
    /// IKE_AUTH completed.
    pub established: bool,
}

/// Everything the datapath needs to install a child SA.
#[derive(Clone)]
pub struct ChildSaInfo {
    /// The IKE SA.
    pub ike_sa: IkeSaId,
    /// Handle.
    pub id: ChildSaId,
    /// The child SA this one rekeyed.
    pub replaces: Option<ChildSaId>,
    /// We initiated the exchange that created this child SA (for a rekey,
    /// [`Self::replaces`] set: we initiated the rekey). RFC 7296 2.8: the
    /// rekey's initiator may send on the new SA once it has the response;
    /// its responder cannot know when that is, and keeps sending on the
    /// old SA until it has received a valid packet on the new one or a
    /// request to delete the old one.
    pub initiator: bool,
    /// SPI of inbound packets (ours).
    pub inbound_spi: u32,
    /// SPI of outbound packets (the peer's).
    pub outbound_spi: u32,
    /// Cipher.
    pub encr: Encr,
    /// Integrity algorithm (`None` for AEADs).
    pub integ: Option<Integ>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// D-H group of the PFS exchange, if any.
    pub pfs: Option<DhGroup>,
    /// Mode.
    pub mode: Mode,
    /// Our selectors.
    pub local_ts: TsList,
    /// The peer's selectors.
    pub remote_ts: TsList,
    /// Inbound cipher key (with salt for AEADs).
    pub inbound_encr_key: Secret,
    /// Inbound integrity key (empty for AEADs).
    pub inbound_integ_key: Secret,
    /// Outbound cipher key.
    pub outbound_encr_key: Secret,
    /// Outbound integrity key.
    pub outbound_integ_key: Secret,
    /// Our outer address.
    pub local: SocketAddr,
    /// The peer's outer address (port 4500 after the NAT-T move).
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948).
    pub udp_encap: bool,
    /// The peer's identity.
    pub peer_id: Identity,
    /// How the peer authenticated.
    pub peer_auth: AuthMethod,
    /// What the peer's authentication proved.
    pub peer_credential: PeerCredential,
    /// Replay window, from the [`ChildConfig`].
    pub replay_window: u32,
}

impl fmt::Debug for ChildSaInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSaInfo")
            .field("ike_sa", &self.ike_sa)
            .field("id", &self.id)
            .field("replaces", &self.replaces)
            .field("initiator", &self.initiator)
            .field("inbound_spi", &format_args!("{:08x}", self.inbound_spi))
            .field("outbound_spi", &format_args!("{:08x}", self.outbound_spi))
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("esn", &self.esn)
            .field("pfs", &self.pfs)
            .field("mode", &self.mode)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("keys", &"<redacted>")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("udp_encap", &self.udp_encap)
            .field("peer_id", &self.peer_id)
            .field("peer_auth", &self.peer_auth)
            .field("peer_credential", &self.peer_credential)
            .field("replay_window", &self.replay_window)
            .finish()
    }
}

/// Why an IKE or child SA failed, or an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No common proposal (RFC 7296 2.7); both lists in strongSwan syntax
    /// when known.
    #[error("no proposal chosen: ours {ours}; theirs {theirs}")]
    NoProposalChosen {
        /// Our proposals.
        ours: String,
        /// The peer's proposals ("unknown" when the peer did not tell).
        theirs: String,
    },
    /// AUTH did not verify, no peer config matched, or the peer said so.
    #[error("authentication failed: {detail}")]
    AuthenticationFailed {
        /// What failed.
        detail: String,
    },
    /// Traffic selectors refused (RFC 7296 2.9).
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    /// The D-H group could not be agreed (RFC 7296 1.2, 2.7).
    #[error("invalid KE payload (no D-H group agreed)")]
    InvalidKePayload,
    /// The peer did not answer (RFC 7296 2.1, 2.4).
    #[error("peer did not answer")]
    Timeout,
    /// The peer sent an error notify.
    #[error("peer sent {name} ({notify})")]
    PeerError {
        /// Notify type.
        notify: u16,
        /// Its name.
        name: &'static str,
    },
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No such IKE or child SA.
    #[error("unknown SA")]
    UnknownSa,
    /// Too many operations queued on this IKE SA.
    #[error("IKE SA busy")]
    Busy,
    /// The IKE SA is not established (yet, or any more).
    #[error("IKE SA not established")]
    NotEstablished,
    /// The configuration cannot work (e.g. PSK without a key).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A key exchange or key derivation failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// The peer deleted the SA.
    #[error("deleted by peer")]
    DeletedByPeer,
}

impl Error {
    /// The notify type that carries this error on the wire, if any.
    pub fn notify_type(&self) -> Option<u16> {
        match self {
            Self::NoProposalChosen { .. } => Some(notify::NO_PROPOSAL_CHOSEN),
            Self::AuthenticationFailed { .. } => Some(notify::AUTHENTICATION_FAILED),
            Self::TsUnacceptable => Some(notify::TS_UNACCEPTABLE),
            Self::InvalidKePayload => Some(notify::INVALID_KE_PAYLOAD),
            Self::PeerError { notify, .. } => Some(*notify),
            Self::Protocol(_) => Some(notify::INVALID_SYNTAX),
            _ => None,
        }
    }

    /// The error a received error notify stands for.
    pub(crate) fn from_notify(kind: u16) -> Self {
        match kind {
            notify::NO_PROPOSAL_CHOSEN => Self::NoProposalChosen {
                ours: String::new(),
                theirs: "unknown (the peer does not tell)".into(),
            },
            notify::AUTHENTICATION_FAILED => Self::AuthenticationFailed {
                detail: "the peer refused our authentication".into(),
            },
            notify::TS_UNACCEPTABLE => Self::TsUnacceptable,
            notify::INVALID_KE_PAYLOAD => Self::InvalidKePayload,
            k => Self::PeerError {
                notify: k,
                name: notify_name(k),
            },
        }
    }
}

/// The name of a notify type.
pub(crate) fn notify_name(kind: u16) -> &'static str {
    match kind {
        notify::UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD",
        notify::INVALID_IKE_SPI => "INVALID_IKE_SPI",
        notify::INVALID_MAJOR_VERSION => "INVALID_MAJOR_VERSION",
        notify::INVALID_SYNTAX => "INVALID_SYNTAX",
        notify::INVALID_MESSAGE_ID => "INVALID_MESSAGE_ID",
        notify::INVALID_SPI => "INVALID_SPI",
        notify::NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN",
        notify::INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD",
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
        notify::SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED",
        notify::NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS",
        notify::INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE",
        notify::FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED",
        notify::TS_UNACCEPTABLE => "TS_UNACCEPTABLE",
        notify::INVALID_SELECTORS => "INVALID_SELECTORS",
        notify::TEMPORARY_FAILURE => "TEMPORARY_FAILURE",
        notify::CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND",
        _ => "UNKNOWN_ERROR",
    }
}

/// Why a datagram was dropped (every drop is counted and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a parseable IKE message.
    Malformed,
    /// No IKE SA with this SPI.
    UnknownSpi,
    /// Too many half-open IKE SAs.
    HalfOpenLimit,
    /// The SK payload failed its integrity check or did not decrypt.
    IntegrityFailed,
    /// A response to no outstanding request.
    UnexpectedResponse,
    /// A request with a message ID outside the window.
    InvalidMessageId,
    /// A message not valid in the SA's state.
    WrongState,
    /// A message missing a required payload or with bad contents.
    InvalidPayload,
    /// An IKE_SA_INIT retransmission with nothing cached to answer.
    DuplicateInit,
    /// A bad COOKIE.
    BadCookie,
    /// Output queue full.
    QueueFull,
    /// A D-H or key derivation failure.
    Crypto,
    /// An IKE fragment (RFC 7383) beyond the reassembly bounds, of a
    /// stale message, or inconsistent with the others.
    FragmentLimit,
}

impl DropReason {
    /// Every reason, in the order of [`Stats::drops`].
    pub const ALL: [Self; 13] = [
        Self::Malformed,
        Self::UnknownSpi,
        Self::HalfOpenLimit,
        Self::IntegrityFailed,
        Self::UnexpectedResponse,
        Self::InvalidMessageId,
        Self::WrongState,
        Self::InvalidPayload,
        Self::DuplicateInit,
        Self::BadCookie,
        Self::QueueFull,
        Self::Crypto,
        Self::FragmentLimit,
    ];

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed message",
            Self::UnknownSpi => "unknown IKE SPI",
            Self::HalfOpenLimit => "half-open IKE SA limit reached",
            Self::IntegrityFailed => "integrity check failed",
            Self::UnexpectedResponse => "unexpected response",
            Self::InvalidMessageId => "message ID outside the window",
            Self::WrongState => "message not valid in this state",
            Self::InvalidPayload => "missing or invalid payload",
            Self::DuplicateInit => "IKE_SA_INIT duplicate without cached response",
            Self::BadCookie => "bad cookie",
            Self::QueueFull => "queue full",
            Self::Crypto => "key exchange or derivation failed",
            Self::FragmentLimit => "IKE fragment refused (limits, stale or inconsistent)",
        })
    }
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to [`crate::Ike::handle_datagram`].
    pub datagrams_in: u64,
    /// Datagrams returned by [`crate::Ike::poll_transmit`] (retransmissions
    /// included).
    pub datagrams_out: u64,
    /// Requests retransmitted on a timer.
    pub retransmits: u64,
    /// Duplicate requests answered from the cached response.
    pub cached_responses: u64,
    /// Exchanges completed (as initiator: response processed; as responder:
    /// request answered).
    pub exchanges: u64,
    /// IKE SAs established (IKE_AUTH) or rekeyed into.
    pub ike_sas_established: u64,
    /// Child SAs established.
    pub child_sas_established: u64,
    /// COOKIE notifies sent.
    pub cookies_sent: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// IKE fragments sent (RFC 7383), retransmissions included.
    pub fragments_out: u64,
    /// Authentic IKE fragments received.
    pub fragments_in: u64,
    /// Messages reassembled from fragments.
    pub reassembled: u64,
    drops: [u64; 13],
}

impl Stats {
    /// Drops for one reason.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Count a drop and log it.
    pub(crate) fn drop(&mut self, reason: DropReason, detail: &str) {
        if let Some(c) = self.drops.get_mut(reason.index()) {
            *c += 1;
        }
        tracing::debug!(%reason, detail, "IKE datagram dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmit_backoff() {
        let r = RetransmitConfig::default();
        let t: Vec<u64> = (1..=7).map(|i| r.timeout(i).as_secs()).collect();
        assert_eq!(t, [1, 2, 4, 8, 16, 30, 30]);
        let flat = RetransmitConfig { backoff: 0, ..r };
        assert_eq!(flat.timeout(5), Duration::from_secs(1));
    }

    #[test]
    fn errors_map_to_notifies() {
        assert_eq!(
            Error::TsUnacceptable.notify_type(),
            Some(notify::TS_UNACCEPTABLE)
        );
        assert_eq!(Error::Timeout.notify_type(), None);
        assert_eq!(
            Error::from_notify(notify::TEMPORARY_FAILURE),
            Error::PeerError {
                notify: notify::TEMPORARY_FAILURE,
                name: "TEMPORARY_FAILURE"
            }
        );
        assert_eq!(
            Error::from_notify(notify::INVALID_KE_PAYLOAD),
            Error::InvalidKePayload
        );
        let e = Error::NoProposalChosen {
            ours: "a".into(),
            theirs: "b".into(),
        };
        assert_eq!(e.to_string(), "no proposal chosen: ours a; theirs b");
    }

    #[test]
    fn drops_are_counted_per_reason() {
        let mut s = Stats::default();
        s.drop(DropReason::BadCookie, "test");
        s.drop(DropReason::BadCookie, "test");
        s.drop(DropReason::Crypto, "test");
        assert_eq!(s.drops(DropReason::BadCookie), 2);
        assert_eq!(s.drops(DropReason::Malformed), 0);
        assert_eq!(s.total_drops(), 3);
        for r in DropReason::ALL {
            assert!(!r.to_string().is_empty());
        }
    }
}
