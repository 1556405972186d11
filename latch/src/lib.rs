//! Connection latches (draft-ietf-btns-connection-latching-02 2.1, with the
//! BROKEN and CLOSED states, ALERT and ENUMERATE of RFC 5660) as a pure state
//! machine.
//!
//! Invariants: no I/O, no clock (`now` is passed in), no randomness in any
//! answer (the hash maps are keyed at random per map, aHash, against
//! HashDoS; nothing depends on the keys). The per-packet checks take
//! `&self` and cost O(1) in the number of latches: one lookup in the
//! 5-tuple map, whose value holds the latch's state and binding; one by SA
//! tag for a bound latch and a protected packet; the 3-tuple (listener) map
//! only for a flow without a connection latch while listeners exist. Latched parameters
//! never change once Established (R8): [`LatchedParams`] has private fields
//! set only when the latch is established.
//!
//! # Model
//! The ULP (or `endpoint` on its behalf) creates a listener latch per
//! listening 3-tuple and a connection latch per 5-tuple ([`LatchTable`]);
//! the key manager tells the table about child SAs
//! ([`LatchTable::sa_added`], [`LatchTable::sa_removed`]) and asks it about
//! child-SA proposals ([`LatchTable::authorize_child_sa`], R13); the
//! datapath asks it about each packet ([`LatchTable::check_inbound`],
//! [`LatchTable::check_outbound`], [`LatchTable::select_outbound_sa`]) and
//! re-checks at delivery when the state version moved
//! ([`LatchTable::check_delivery`], R16).
//!
//! "Same peer" is [`PeerIdentity::key`]: the authenticated identity (and
//! trust anchor) for PSK and certificates, the public key for BTNS and raw
//! keys, the key manager's handle for an anonymous (NULL) peer. "Equal
//! protection" is equality of [`pad::SaQop`] (suites, key lengths, mode,
//! ESN, replay window).
//!
//! # States and transitions
//!
//! | from | event | to | ALERT reason |
//! |---|---|---|---|
//! | (none) | `create_listener` | LISTENER | `Created` |
//! | (none) | `create_connection`, `accept` (protected) | LARVAL | `Created` |
//! | LARVAL | a fitting SA already covers it at creation, `bind`, `sa_added` of a fitting SA that no other SA contradicts | ESTABLISHED | `Bound(sa)` |
//! | LARVAL | created with BYPASS (R19): nothing to negotiate | ESTABLISHED | `Bypassed` |
//! | LARVAL | `handle_timeout` past the Larval deadline (R9) | FAILED | `Timeout` |
//! | ESTABLISHED | `sa_added` of an SA of another peer or other protection covering the 5-tuple (RFC 5660) | BROKEN | `ConflictingSa(sa)` |
//! | BROKEN | `sa_removed` of the last conflicting SA | ESTABLISHED (same parameters) | `ConflictResolved` |
//! | any but CLOSED | `key_manager_restarted(Reset)` (R10) | CLOSED | `KeyManagerRestart` |
//! | any but CLOSED | `destroy` (R15), then the latch is removed | CLOSED | `Released` |
//!
//! An ESTABLISHED latch whose SAs all expire stays ESTABLISHED: its packets
//! are dropped until an SA with the same peer and protection exists (packet
//! loss, R9). No transition ever changes a latch's peer or protection:
//! there is no ESTABLISHED -> LARVAL. FAILED and CLOSED latches stay in the
//! table (their packets dropped) until destroyed or replaced by a new
//! `create_*` on the same tuple.
//!
//! Every transition, creation and SA change increases the state version
//! ([`LatchTable::version`], R16) and every state change queues an
//! [`Alert`] ([`LatchTable::poll_alert`]).
//!
//! # Example
//! ```
//! use latch::*;
//! use pad::{alg::Encr, Identity, KeyFingerprint, Mode, PolicyConfig, SaQop};
//! use std::time::Instant;
//!
//! let cfg = PolicyConfig::from_toml(
//!     r#"
//!     [[peer]]
//!     name = "btns"
//!     id = "any"
//!     auth = ["raw_public_key"]
//!     child_sa = "10.0.0.0/16"
//!     btns = true
//!     [[policy]]
//!     name = "default"
//!     action = "protect"
//!     "#,
//!     "latchkey.toml",
//! )?;
//! let mut t = LatchTable::new(cfg.pad, cfg.spd, LatchConfig::default());
//! let now = Instant::now();
//! let five = FiveTuple::new(6, "10.0.0.1:443".parse()?, "10.0.0.9:5000".parse()?);
//! let id = t.create_connection(ConnectionRequest::new(five), now)?;
//! assert!(!t.check_inbound(&five, None).passes()); // R5: Larval
//!
//! let peer = PeerIdentity {
//!     asserted: Identity::Null,
//!     authenticated: None,
//!     auth: PeerAuth::Btns { fingerprint: KeyFingerprint([1; 32]), key_der: vec![] },
//!     pad_entry: "btns".into(),
//! };
//! let qop = SaQop {
//!     mode: Mode::Transport,
//!     encr: Some(Encr::AesGcm16_128),
//!     integ: None,
//!     esn: false,
//!     replay_window: 64,
//! };
//! // IKE asks before installing a child SA (R13), then announces it.
//! let (local_ts, remote_ts) = (vec!["10.0.0.1".parse()?], vec!["10.0.0.9".parse()?]);
//! assert_eq!(t.authorize_child_sa(&peer, &qop, &local_ts, &remote_ts), ChildSaVerdict::Accept);
//! t.sa_added(
//!     ChildSaDescriptor {
//!         id: 0x1234,
//!         peer,
//!         protection: qop,
//!         local_ts: local_ts.into(),
//!         remote_ts: remote_ts.into(),
//!         nat: NatInfo::default(),
//!         spi_in: 0x1234,
//!         spi_out: 0x5678,
//!     },
//!     now,
//! )?;
//! assert_eq!(t.inquire(&five).map(|i| i.state), Some(LatchState::Established));
//! assert_eq!(t.check_inbound(&five, Some(0x1234)), Verdict::Pass(PassKind::Latched(id)));
//! assert!(!t.check_inbound(&five, None).passes()); // R6: unprotected
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod narrow;
mod table;
mod types;

pub use error::LatchError;
pub use pad::{FiveTuple, ThreeTuple};
pub use table::{
    AdmittingSa, ChildSaVerdict, Delivery, DropReason, Flow, LatchConfig, LatchTable, Outbound,
    PackedV4, PassKind, RestartPolicy, Verdict,
};
pub use types::{
    Alert, AlertReason, ChildSaDescriptor, ConnectionRequest, LatchId, LatchInfo, LatchState,
    LatchedParams, ListenerRequest, NatInfo, PeerAuth, PeerIdentity, PeerKey, RequestedProtection,
    Requirement, SaTag, TrustAnchor, Tuple,
};
