//! IKEv2 (RFC 7296) as a sans-IO state machine.
//!
//! Invariants: no I/O, no clock, no ambient randomness. Datagrams and `now`
//! go in; datagrams to send, the next deadline and events come out. All
//! randomness (SPIs, nonces, IVs, D-H private values) comes from the
//! injected, seedable RNG.
//!
//! - [`wire`]: the message codec (total, round-tripping).
//! - [`crypto`]: key exchange, PRFs, key derivation and the SK payload.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod wire;
