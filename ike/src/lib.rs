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
//! - getters: [`Ike::stats`], [`Ike::ike_sa`], [`Ike::ike_sas`];
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
#![forbid(unsafe_code)]

pub mod crypto;
pub mod wire;

mod api;
mod child;
mod endpoint;
mod exchange;
mod init;
mod msg;
mod sa;
mod select;

pub use api::{
    AcceptAll, ChildConfig, ChildSaDecision, ChildSaId, ChildSaInfo, ChildSaPolicy, ChildSaRequest,
    Config, DropReason, Error, Event, IkeSaId, IkeSaInfo, PeerConfig, RetransmitConfig, Stats,
    Transmit,
};
pub use endpoint::Ike;
/// The RNG traits `Ike::new` takes, re-exported for callers without a
/// direct dependency.
pub use rand_core;
