//! IKEv2 (RFC 7296) as a sans-IO state machine.
//!
//! Invariants: no I/O, no clock, no ambient randomness. Datagrams and `now`
//! go in; datagrams to send, the next deadline and events come out. All
//! randomness (SPIs, nonces, IVs, D-H private values) comes from the
//! injected, seedable RNG.
//!
//! - [`wire`]: the message codec (total, round-tripping).
//! - [`crypto`]: key exchange, PRFs, key derivation and the SK payload.
//! - [`Ike`]: the endpoint holding every IKE SA (quinn-proto style).
//!
//! # Driving an [`Ike`]
//! Like quinn-proto's `Connection`, the methods fall into four groups:
//! - getters: [`Ike::stats`], [`Ike::ike_sa`], [`Ike::ike_sas`] (and,
//!   opt-in, [`Ike::export_keys`] for a protocol analyzer);
//! - `handle_*`: [`Ike::handle_datagram`] for every received IKE message
//!   (non-ESP marker already stripped), [`Ike::handle_timeout`] when the
//!   deadline of [`Ike::poll_timeout`] has passed;
//! - mutators: [`Ike::initiate`], [`Ike::create_child`], [`Ike::rekey_child`],
//!   [`Ike::rekey_ike`], [`Ike::delete_child`], [`Ike::delete_ike`],
//!   [`Ike::liveness_check`];
//! - `poll_*`: after any of the above, drain [`Ike::poll_transmit`] and
//!   [`Ike::poll_event`], then re-arm the timer with [`Ike::poll_timeout`].
//!
//! # Bounds
//! Every piece of state is bounded: half-open IKE SAs
//! ([`Config::max_half_open`]), one cached response per IKE SA, queued
//! operations per IKE SA, child SAs per IKE SA, and the event and transmit
//! queues. Whatever is refused or dropped is counted in [`Stats`] and
//! logged with `tracing::debug!`.
//!
//! # What is implemented (RFC 7296 unless noted)
//! - IKE_SA_INIT and IKE_AUTH in both roles (1.2): proposal selection in
//!   the initiator's order (2.7, 3.3.6), INVALID_KE_PAYLOAD with a retry in
//!   the responder's group, COOKIE past `cookie_threshold` (2.6), NAT
//!   detection and the move to the NAT-T port (2.23; `force_encap` fakes the
//!   source hash), PSK (2.15) and NULL authentication (RFC 7619), the peer
//!   config chosen by IDi and AUTH method, AUTHENTICATION_FAILED (2.21.2),
//!   the first child SA with narrowing and the [`ChildSaPolicy`] hook (2.9),
//!   TS_UNACCEPTABLE keeping the IKE SA (2.21.3), USE_TRANSPORT_MODE.
//! - Reliability (2.1-2.4): retransmission with backoff, message IDs with
//!   window size 1, duplicate requests answered from the cached response,
//!   IKE_SA_INIT duplicates answered from the half-open SA.
//! - INFORMATIONAL: liveness checks and DPD, Delete of child SAs (answered
//!   with our SPIs, 1.4.1) and of the IKE SA, UNSUPPORTED_CRITICAL_PAYLOAD
//!   (2.5); messages failing integrity are dropped silently.
//! - CREATE_CHILD_SA (1.3): new child SAs with optional PFS, child SA rekey
//!   (REKEY_SA; the initiator deletes the old SA), simultaneous child
//!   rekeys resolved by the nonces (2.8.1), IKE SA rekey (1.3.2, 2.18) and
//!   its collisions (2.8.2), TEMPORARY_FAILURE for work on SAs being closed
//!   (2.25), timers with jitter.
//! - INITIAL_CONTACT (2.4) and following a NATed peer's new address (2.23).
//! - Signature authentication ([`pad::AuthMethod::Certificate`],
//!   [`pad::AuthMethod::RawPublicKey`], configured in [`Credentials`]): RSA
//!   Digital Signature (method 1, verified only: ring cannot sign PKCS#1
//!   v1.5 with SHA-1, so RSA keys sign with method 14), ECDSA (RFC 4754,
//!   methods 9 and 10; 11, P-521, is refused), Digital Signature (RFC 7427,
//!   method 14: ECDSA, RSASSA-PSS, RSA PKCS#1 with SHA-2, Ed25519) with
//!   SIGNATURE_HASH_ALGORITHMS in IKE_SA_INIT; CERT (encoding 4, end entity
//!   first) and CERTREQ (SHA-1 of the anchors' SubjectPublicKeyInfo, 3.7);
//!   raw public keys (RFC 7670, CERT encoding 15). Peer certificates are
//!   validated with [`certs::validate()`] at the wall-clock time given by
//!   [`Ike::set_wall_clock`], and the IKE ID must match them (RFC 4945).
//!   Every refusal is AUTHENTICATION_FAILED on the wire and
//!   [`Error::AuthenticationFailed`] naming the reason (the
//!   [`certs::ValidationError::code`] for certificates), logged with
//!   `tracing::warn!`. What was proven is in [`IkeSaInfo::peer_credential`]
//!   and [`ChildSaInfo::peer_credential`] (latching's R7).
//! - IKE fragmentation (RFC 7383, [`FragmentationConfig`]): negotiated in
//!   IKE_SA_INIT, SKF fragments each encrypted on its own, retransmitted as
//!   the same fragments, reassembly bounded (fragments, octets, one message
//!   per direction, a timeout), every fragment authenticated before it is
//!   stored; refused fragments counted as [`DropReason::FragmentLimit`].
//! - BTNS with keys (RFC 5386): [`Credentials::accept_any_key`] accepts
//!   any key the peer proves possession of; [`Credentials::pinning`]
//!   checks it against the [`PinStore`] (SSH `known_hosts` style).
//!
//! Not implemented: EAP, configuration payloads, MOBIKE, windows larger
//! than 1, PMTU discovery for fragments (RFC 7383 2.5.2), hash-and-URL
//! certificates, revocation checks. A CREATE_CHILD_SA request arriving while another
//! request of ours (other than an IKE rekey) is outstanding gets
//! TEMPORARY_FAILURE; the peer retries.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod wire;

mod api;
mod child;
mod endpoint;
mod exchange;
mod export;
mod frag;
mod init;
mod msg;
mod pins;
mod rekey;
mod sa;
mod select;
mod sig;

pub use api::{
    AcceptAll, ChildConfig, ChildSaDecision, ChildSaId, ChildSaInfo, ChildSaPolicy, ChildSaRequest,
    Config, Credentials, DropReason, Error, Event, FragmentationConfig, IkeSaId, IkeSaInfo,
    PeerConfig, PeerCredential, RetransmitConfig, SignatureMethods, Stats, Transmit,
};
pub use endpoint::Ike;
pub use export::IkeSaKeys;
pub use pins::{PinCheck, PinParseError, PinPolicy, PinStore};
/// The RNG traits `Ike::new` takes, re-exported for callers without a
/// direct dependency.
pub use rand_core;
