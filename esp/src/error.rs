//! Error and drop-reason types of the datapath.

/// Why an inbound packet was dropped by [`crate::Sad::decapsulate`].
///
/// One variant per reason, so that tests (and operators reading counters)
/// see exactly which check refused a packet. Each reason has a global
/// counter ([`crate::Stats::drops`]); reasons found after the SPI lookup
/// also count against the SA ([`crate::SaStats::drops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than an ESP header, or than the smallest packet the SA's
    /// algorithms can produce.
    #[error("packet truncated")]
    Truncated,
    /// The ciphertext is not a whole number of cipher blocks (AES-CBC).
    #[error("ciphertext length is not a multiple of the cipher block size")]
    BadLength,
    /// No inbound SA has this SPI (RFC 4303 3.4.2).
    #[error("unknown SPI")]
    UnknownSpi,
    /// The sequence number was already received (RFC 4303 3.4.3).
    #[error("replayed sequence number")]
    Replayed,
    /// The sequence number is left of the replay window, or zero.
    #[error("sequence number too old (left of the replay window)")]
    TooOld,
    /// ICV verification or AEAD decryption failed (RFC 4303 3.4.4).
    #[error("integrity check failed")]
    IntegrityFailed,
    /// Pad Length exceeds the payload, or the padding bytes are not
    /// 1, 2, 3, ... (RFC 4303 2.4).
    #[error("bad padding")]
    BadPadding,
    /// Next Header 59: a dummy packet (RFC 4303 2.6), dropped on purpose.
    #[error("dummy packet (next header 59)")]
    DummyPacket,
    /// The Next Header is not allowed for the SA's mode: a tunnel-mode SA
    /// carries IPv4 (4) or IPv6 (41) only; a transport-mode SA carries no
    /// IP-in-IP.
    #[error("next header not allowed for the SA's mode")]
    BadNextHeader,
    /// Tunnel mode: the inner packet is not a well-formed IPv4/IPv6 packet
    /// of the family its Next Header announces.
    #[error("malformed inner packet")]
    MalformedInner,
    /// Tunnel mode: the inner source is outside the SA's remote traffic
    /// selectors or the inner destination outside its local ones (RFC 4301
    /// 5.2 step 4).
    #[error("inner packet outside the SA's traffic selectors")]
    SelectorMismatch,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 11;

    /// Every reason, in counter order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Truncated,
        Self::BadLength,
        Self::UnknownSpi,
        Self::Replayed,
        Self::TooOld,
        Self::IntegrityFailed,
        Self::BadPadding,
        Self::DummyPacket,
        Self::BadNextHeader,
        Self::MalformedInner,
        Self::SelectorMismatch,
    ];

    /// Position in [`Self::ALL`] (the counter index).
    pub fn index(self) -> usize {
        match self {
            Self::Truncated => 0,
            Self::BadLength => 1,
            Self::UnknownSpi => 2,
            Self::Replayed => 3,
            Self::TooOld => 4,
            Self::IntegrityFailed => 5,
            Self::BadPadding => 6,
            Self::DummyPacket => 7,
            Self::BadNextHeader => 8,
            Self::MalformedInner => 9,
            Self::SelectorMismatch => 10,
        }
    }
}

/// Why [`crate::Sad::encapsulate`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncapError {
    /// No outbound SA has this SPI.
    #[error("no outbound SA with SPI {0:#010x}")]
    UnknownSpi(u32),
    /// `out` is too small; `needed` octets are required.
    #[error("output buffer too small: {needed} octets needed")]
    BufferTooSmall {
        /// Octets needed.
        needed: usize,
    },
    /// The sequence number would cycle (RFC 4303 3.3.3): the SA must be
    /// rekeyed. Counted in [`crate::Stats::seq_exhausted`].
    #[error("sequence number space exhausted, rekey the SA")]
    SequenceExhausted,
    /// The next header does not fit the SA's mode (tunnel: 4, 41 or 59;
    /// transport: anything but 4 and 41).
    #[error("next header {0} not allowed for the SA's mode")]
    BadNextHeader(u8),
    /// The cryptographic library refused the operation (not expected).
    #[error("encryption failed")]
    Crypto,
}

/// Why an SA could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SadError {
    /// An SA with this SPI already exists in that direction.
    #[error("duplicate SPI {0:#010x}")]
    DuplicateSpi(u32),
    /// SPI 0 is reserved (RFC 4303 2.1).
    #[error("SPI 0 is reserved")]
    ZeroSpi,
    /// The encryption key (KEYMAT, with salt for AEADs) has the wrong length.
    #[error("encryption key is {got} octets, {expected} expected")]
    EncrKeyLength {
        /// Length expected for the algorithm.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The integrity key has the wrong length.
    #[error("integrity key is {got} octets, {expected} expected")]
    IntegKeyLength {
        /// Length expected for the algorithm.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// AES-CBC needs an integrity algorithm.
    #[error("a non-AEAD cipher needs an integrity algorithm")]
    MissingInteg,
    /// AEAD ciphers take no integrity algorithm (RFC 4106 8, RFC 7634 2).
    #[error("an AEAD cipher takes no integrity algorithm")]
    UnexpectedInteg,
    /// An algorithm this crate does not implement.
    #[error("unsupported algorithm")]
    Unsupported,
    /// The replay window is larger than [`crate::MAX_REPLAY_WINDOW`].
    #[error("replay window of {0} packets is too large")]
    ReplayWindowTooLarge(u32),
    /// The cryptographic library refused the key (not expected).
    #[error("key setup failed")]
    Crypto,
}
