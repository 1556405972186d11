//! Why a latch operation was refused.

use crate::types::{LatchId, LatchState, SaTag};
use pad::{FiveTuple, Shortfall, ThreeTuple};
use std::net::IpAddr;

/// Why a latch operation was refused. Policy refusals name the PAD or SPD
/// entry that refused (R3, R14, R19).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LatchError {
    /// Latching is switched off altogether (R14, MAY).
    #[error("connection latching is disabled")]
    LatchingDisabled,
    /// R14: peers of this PAD entry may assert the remote address, and the
    /// entry is flagged latch-disable.
    #[error(
        "latching disabled by PAD entry {entry:?} (latch_disable): its peers may assert {remote}"
    )]
    LatchDisabledByPad {
        /// The PAD entry.
        entry: String,
        /// The remote address.
        remote: IpAddr,
    },
    /// R12: a listener latch exists for this 3-tuple.
    #[error("a listener latch ({existing}) exists for {three}")]
    ListenerExists {
        /// The existing latch.
        existing: LatchId,
        /// The 3-tuple.
        three: ThreeTuple,
    },
    /// R12: a live connection latch exists for this 5-tuple.
    #[error("a connection latch ({existing}) exists for {five}")]
    ConnectionExists {
        /// The existing latch.
        existing: LatchId,
        /// The 5-tuple.
        five: FiveTuple,
    },
    /// R12: child SAs with different peers or protection cover the 5-tuple.
    #[error("child SAs {sas:x?} cover the connection with different peers or protection")]
    ConflictingSas {
        /// The SAs.
        sas: Vec<SaTag>,
    },
    /// R12: an SA covering the 5-tuple does not meet the request (peer or
    /// protection).
    #[error("child SA {sa:#x} covers the connection but does not meet the request")]
    SaDoesNotMeetRequest {
        /// The SA.
        sa: SaTag,
    },
    /// R11: an SA of another peer covers a connection between addresses
    /// that an Established latch binds to a peer.
    #[error("{latch} already binds these addresses to another peer (R11)")]
    OtherPeerThanEstablished {
        /// The Established latch.
        latch: LatchId,
    },
    /// R3/R19: the SPD says DISCARD; nobody overrides it.
    #[error("SPD entry {entry:?} discards this traffic")]
    Discarded {
        /// The SPD entry.
        entry: String,
    },
    /// No SPD entry matches (treated as DISCARD).
    #[error("no SPD entry matches {0}")]
    NoPolicy(String),
    /// R3/R19: only a privileged caller may ask for BYPASS where the SPD
    /// says PROTECT.
    #[error("SPD entry {entry:?} requires protection; BYPASS needs privilege")]
    BypassNeedsPrivilege {
        /// The SPD entry.
        entry: String,
    },
    /// R19: the requested protection is below the SPD's minimum.
    #[error("requested protection is below what SPD entry {entry:?} requires: {shortfall}")]
    ProtectionBelowPolicy {
        /// The SPD entry.
        entry: String,
        /// What falls short.
        shortfall: Shortfall,
    },
    /// R3: no PAD entry lets any peer assert the remote address, so no SA
    /// could ever protect the connection.
    #[error("no PAD entry allows a peer to assert {remote}")]
    NoPeerMayAssert {
        /// The remote address.
        remote: IpAddr,
    },
    /// An expected peer with BYPASS: nothing could check it.
    #[error("an expected peer cannot be checked without protection (BYPASS)")]
    ExpectedPeerWithBypass,
    /// No such latch.
    #[error("no latch {0}")]
    UnknownLatch(LatchId),
    /// No such SA.
    #[error("no child SA {0:#x}")]
    UnknownSa(SaTag),
    /// The SA tag is in use.
    #[error("child SA {0:#x} is already known")]
    DuplicateSa(SaTag),
    /// The operation needs another state.
    #[error("{latch} is {state}")]
    WrongState {
        /// The latch.
        latch: LatchId,
        /// Its state.
        state: LatchState,
    },
    /// The latch is not a listener.
    #[error("{0} is not a listener latch")]
    NotListener(LatchId),
    /// The 5-tuple is not under the listener's 3-tuple.
    #[error("{five} is not under listener {listener}")]
    NotUnderListener {
        /// The listener.
        listener: LatchId,
        /// The 5-tuple.
        five: FiveTuple,
    },
    /// The SA's selectors do not cover the latch's 5-tuple.
    #[error("child SA {sa:#x} does not cover {latch}")]
    SaDoesNotCover {
        /// The latch.
        latch: LatchId,
        /// The SA.
        sa: SaTag,
    },
    /// The SA does not meet the latch's requirement, expected peer or R11
    /// peer.
    #[error("child SA {sa:#x} does not match what {latch} requires")]
    SaDoesNotMatch {
        /// The latch.
        latch: LatchId,
        /// The SA.
        sa: SaTag,
    },
}
