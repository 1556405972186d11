//! IKE fragmentation (RFC 7383).

/// A message being reassembled.
pub(crate) struct Reassembly {}
