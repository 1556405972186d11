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
//! - Per-packet work is one lock and O(1) hash lookups.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use latch::{
    ChildSaDescriptor, ChildSaVerdict, DropReason, LatchTable, NatInfo, PeerAuth, PeerIdentity,
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
