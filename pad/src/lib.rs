//! latchkey's policy vocabulary.
//!
//! Invariants: no I/O, no clock, no randomness. Everything here is plain data
//! shared by `ike`, `esp`, `latch` and `endpoint`: peer identities
//! ([`Identity`]), traffic selectors ([`TrafficSelector`]), the algorithm
//! identifiers of the IANA IKEv2 registries ([`alg`]) and proposals in
//! strongSwan's familiar syntax ([`IkeProposal`], [`EspProposal`]).
//!
//! The Peer Authorization Database and the Security Policy Database (RFC 4301
//! 4.4.1 and 4.4.3) will live here too (the latching issue).
#![forbid(unsafe_code)]

pub mod alg;
pub mod config;
pub mod der;
mod identity;
pub mod pad_db;
mod proposal;
pub mod spd;
mod ts;

pub use config::{ConfigError, ConfigErrorKind, PolicyConfig};
pub use identity::{AuthMethod, Identity, IdentityError};
pub use pad_db::{
    AuthKind, DnPattern, IdPattern, KeyFingerprint, Pad, PadAuth, PadEntry, PadError,
};
pub use proposal::{EspProposal, IkeProposal, ProposalError};
pub use spd::{
    FiveTuple, PortRange, Protection, SaQop, Services, Shortfall, Spd, SpdAction, SpdEntry,
    SpdRefusal, ThreeTuple,
};
pub use ts::{addr_from_u128, addr_to_u128, IpRange, TrafficSelector, TsError, TsList};

/// IPsec mode of a child SA (RFC 4301 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Tunnel mode: the whole inner IP packet is protected.
    Tunnel,
    /// Transport mode: only the upper-layer payload is protected.
    Transport,
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Tunnel => "tunnel",
            Self::Transport => "transport",
        })
    }
}
