//! The IKEv2 message codec (RFC 7296 3): header and every payload.
//!
//! Invariants:
//! - Parsing is total: any byte string gives a value or a [`ParseError`],
//!   never a panic, and never allocates more than the input's length in
//!   payload data (counts come from lengths already bounded by the input).
//! - `parse(emit(m)) == m` for every representable message `m`, and
//!   `emit(parse(b)) == b` for every canonically encoded `b` (reserved
//!   fields and bits zero, critical bit clear on known payloads).
//!   Representable means: `header.next_payload` and `header.length` hold the
//!   values emit computes (see [`Message::new`]); every field fits its wire
//!   size (payload bodies up to 65531 octets, SPIs up to 255, attribute and
//!   CP types up to 0x7fff); SK/SKF only last, with a fragment number in
//!   `1..=total`; Delete SPIs each `spi_size` long (none for size 0);
//!   [`Payload::Unknown`] only with a type this codec does not know;
//!   [`WireTs::Addr`] with a same-family, non-inverted range;
//!   [`WireTs::Other`] with non-empty data and, for types 7/8, only what
//!   parsing produces (an inverted range of the right length). [`Message::emit`]
//!   never fails or panics: it clamps what does not fit.
//! - The datagram is exactly one message: the header's Length field must
//!   equal the datagram length.
//! - Unknown payloads are kept with their critical bit so the state machine
//!   can answer UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 2.5, 3.2).
//! - The SK payload is kept encrypted ([`Payload::Encrypted`]); its
//!   decrypted content is parsed with [`parse_payload_chain`].
//!
//! This module owns only bytes <-> values. Crypto is in [`crate::crypto`].

mod codec;
mod convert;
mod proposal;
mod reader;

pub use codec::{
    emit_payload_chain, header_only, parse_payload_chain, sk_prefix, MAX_ATTRIBUTES,
    MAX_CP_ATTRIBUTES, MAX_PAYLOADS, MAX_PROPOSALS, MAX_TRAFFIC_SELECTORS, MAX_TRANSFORMS,
};
pub use convert::find_notify;
pub use proposal::{esp_proposal_to_wire, ike_proposal_to_wire, Offer};

/// Exchange types (RFC 7296 3.1).
pub mod exchange {
    /// IKE_SA_INIT.
    pub const IKE_SA_INIT: u8 = 34;
    /// IKE_AUTH.
    pub const IKE_AUTH: u8 = 35;
    /// CREATE_CHILD_SA.
    pub const CREATE_CHILD_SA: u8 = 36;
    /// INFORMATIONAL.
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flags (RFC 7296 3.1).
pub mod flags {
    /// Initiator: set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// Version: a higher major version could be spoken.
    pub const VERSION: u8 = 0x10;
    /// Response.
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type numbers (RFC 7296 3.2, RFC 7383).
pub mod payload_type {
    /// No next payload.
    pub const NONE: u8 = 0;
    /// Security Association.
    pub const SA: u8 = 33;
    /// Key Exchange.
    pub const KE: u8 = 34;
    /// Identification - Initiator.
    pub const IDI: u8 = 35;
    /// Identification - Responder.
    pub const IDR: u8 = 36;
    /// Certificate.
    pub const CERT: u8 = 37;
    /// Certificate Request.
    pub const CERTREQ: u8 = 38;
    /// Authentication.
    pub const AUTH: u8 = 39;
    /// Nonce.
    pub const NONCE: u8 = 40;
    /// Notify.
    pub const NOTIFY: u8 = 41;
    /// Delete.
    pub const DELETE: u8 = 42;
    /// Vendor ID.
    pub const VENDOR_ID: u8 = 43;
    /// Traffic Selector - Initiator.
    pub const TSI: u8 = 44;
    /// Traffic Selector - Responder.
    pub const TSR: u8 = 45;
    /// Encrypted and Authenticated.
    pub const SK: u8 = 46;
    /// Configuration.
    pub const CP: u8 = 47;
    /// Extensible Authentication.
    pub const EAP: u8 = 48;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Notify message types (RFC 7296 3.10.1 and IANA).
pub mod notify {
    /// UNSUPPORTED_CRITICAL_PAYLOAD.
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    /// INVALID_IKE_SPI.
    pub const INVALID_IKE_SPI: u16 = 4;
    /// INVALID_MAJOR_VERSION.
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    /// INVALID_SYNTAX.
    pub const INVALID_SYNTAX: u16 = 7;
    /// INVALID_MESSAGE_ID.
    pub const INVALID_MESSAGE_ID: u16 = 9;
    /// INVALID_SPI.
    pub const INVALID_SPI: u16 = 11;
    /// NO_PROPOSAL_CHOSEN.
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    /// INVALID_KE_PAYLOAD.
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    /// AUTHENTICATION_FAILED.
    pub const AUTHENTICATION_FAILED: u16 = 24;
    /// SINGLE_PAIR_REQUIRED.
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    /// NO_ADDITIONAL_SAS.
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    /// INTERNAL_ADDRESS_FAILURE.
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    /// FAILED_CP_REQUIRED.
    pub const FAILED_CP_REQUIRED: u16 = 37;
    /// TS_UNACCEPTABLE.
    pub const TS_UNACCEPTABLE: u16 = 38;
    /// INVALID_SELECTORS.
    pub const INVALID_SELECTORS: u16 = 39;
    /// TEMPORARY_FAILURE.
    pub const TEMPORARY_FAILURE: u16 = 43;
    /// CHILD_SA_NOT_FOUND.
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    /// INITIAL_CONTACT.
    pub const INITIAL_CONTACT: u16 = 16384;
    /// SET_WINDOW_SIZE.
    pub const SET_WINDOW_SIZE: u16 = 16385;
    /// ADDITIONAL_TS_POSSIBLE.
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    /// IPCOMP_SUPPORTED.
    pub const IPCOMP_SUPPORTED: u16 = 16387;
    /// NAT_DETECTION_SOURCE_IP.
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    /// NAT_DETECTION_DESTINATION_IP.
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    /// COOKIE.
    pub const COOKIE: u16 = 16390;
    /// USE_TRANSPORT_MODE.
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    /// REKEY_SA.
    pub const REKEY_SA: u16 = 16393;
    /// ESP_TFC_PADDING_NOT_SUPPORTED.
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    /// NON_FIRST_FRAGMENTS_ALSO.
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    /// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383).
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427).
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

    /// Whether a notify type is an error (types below 16384, RFC 7296 3.10.1).
    pub fn is_error(t: u16) -> bool {
        t < 16384
    }
}

/// Protocol IDs used in proposals, notifies and deletes (RFC 7296 3.3.1).
pub mod protocol {
    /// IKE.
    pub const IKE: u8 = 1;
    /// AH.
    pub const AH: u8 = 2;
    /// ESP.
    pub const ESP: u8 = 3;
}

/// Transform types (RFC 7296 3.3.2).
pub mod transform_type {
    /// Encryption algorithm (ENCR).
    pub const ENCR: u8 = 1;
    /// Pseudorandom function (PRF).
    pub const PRF: u8 = 2;
    /// Integrity algorithm (INTEG).
    pub const INTEG: u8 = 3;
    /// Key exchange method (D-H group).
    pub const DH: u8 = 4;
    /// Extended sequence numbers.
    pub const ESN: u8 = 5;
}

/// Attribute type of the key length (RFC 7296 3.3.5), always in TV form.
pub const ATTR_KEY_LENGTH: u16 = 14;

/// The fixed IKE header (RFC 7296 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA initiator's SPI.
    pub spi_i: u64,
    /// IKE SA responder's SPI (0 in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: u8,
    /// Major version (high nibble) and minor version (low nibble): 0x20.
    pub version: u8,
    /// Exchange type, see [`exchange`].
    pub exchange: u8,
    /// Flags, see [`flags`].
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
    /// Total message length including the header, as found on the wire.
    /// [`Message::emit`] writes the real length regardless.
    pub length: u32,
}

impl Header {
    /// Header length in octets.
    pub const LEN: usize = 28;

    /// Whether the R flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// Whether the I flag is set.
    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
}

/// A whole IKE message: header and the outer payload chain.
///
/// For encrypted exchanges the chain ends in [`Payload::Encrypted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header. `next_payload` and `length` are recomputed on emit.
    pub header: Header,
    /// The payloads in order.
    pub payloads: Vec<Payload>,
}

/// A transform attribute (RFC 7296 3.3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// Type/Value form (AF bit set): a 16-bit value.
    Tv {
        /// Attribute type (without the AF bit).
        kind: u16,
        /// The value.
        value: u16,
    },
    /// Type/Length/Value form.
    Tlv {
        /// Attribute type.
        kind: u16,
        /// The value.
        value: Vec<u8>,
    },
}

/// A transform substructure (RFC 7296 3.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform type, see [`transform_type`].
    pub kind: u8,
    /// Transform ID.
    pub id: u16,
    /// Attributes (in practice: at most a key length).
    pub attributes: Vec<Attribute>,
}

impl Transform {
    /// The key length attribute, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Tv { kind, value } if *kind == ATTR_KEY_LENGTH => Some(*value),
            _ => None,
        })
    }
}

/// A proposal substructure (RFC 7296 3.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal number (1, 2, ... in order).
    pub num: u8,
    /// Protocol ID, see [`protocol`].
    pub protocol_id: u8,
    /// SPI (empty for an initial IKE proposal, 8 octets for IKE rekey, 4 for ESP).
    pub spi: Vec<u8>,
    /// Transforms.
    pub transforms: Vec<Transform>,
}

/// Notify payload (RFC 7296 3.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// Protocol ID (0 when no SPI).
    pub protocol_id: u8,
    /// SPI (may be empty).
    pub spi: Vec<u8>,
    /// Notify message type, see [`notify`].
    pub kind: u16,
    /// Notification data.
    pub data: Vec<u8>,
}

/// Delete payload (RFC 7296 3.11).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    /// Protocol ID: IKE (no SPIs) or ESP/AH (4-octet SPIs).
    pub protocol_id: u8,
    /// SPI size in octets.
    pub spi_size: u8,
    /// The SPIs, each `spi_size` octets long.
    pub spis: Vec<Vec<u8>>,
}

/// One traffic selector as carried on the wire (RFC 7296 3.13.1).
///
/// Types 7 and 8 convert to [`pad::TrafficSelector`]; other types are kept
/// as raw data so the message still round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WireTs {
    /// TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE.
    Addr(pad::TrafficSelector),
    /// Any other TS type, or a type 7/8 selector whose start address is
    /// above its end address (kept so that it round-trips; the state
    /// machine refuses it).
    Other {
        /// TS type.
        ts_type: u8,
        /// The selector without its type and length fields: its second
        /// octet (the IP protocol ID for types 7 and 8) followed by every
        /// octet after the 2-octet Selector Length.
        data: Vec<u8>,
    },
}

/// Configuration attribute (RFC 7296 3.15.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpAttribute {
    /// Attribute type (15 bits).
    pub kind: u16,
    /// Value.
    pub value: Vec<u8>,
}

/// The SK payload, still encrypted (RFC 7296 3.14).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encrypted {
    /// Type of the first payload inside.
    pub first_inner: u8,
    /// IV, ciphertext (with padding and pad length) and ICV, as one blob.
    pub body: Vec<u8>,
}

/// The SKF payload: one fragment of an encrypted message (RFC 7383 2.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// Type of the first payload inside (nonzero in fragment 1 only).
    pub first_inner: u8,
    /// Fragment number, from 1.
    pub number: u16,
    /// Total number of fragments.
    pub total: u16,
    /// IV, ciphertext and ICV.
    pub body: Vec<u8>,
}

/// One payload of any type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Payload {
    /// SA: proposals.
    Sa(Vec<Proposal>),
    /// KE: D-H group number and public value.
    Ke {
        /// Group number.
        group: u16,
        /// Public value.
        data: Vec<u8>,
    },
    /// IDi: ID type and data.
    IdI {
        /// ID type.
        id_type: u8,
        /// ID data.
        data: Vec<u8>,
    },
    /// IDr.
    IdR {
        /// ID type.
        id_type: u8,
        /// ID data.
        data: Vec<u8>,
    },
    /// CERT: encoding and data.
    Cert {
        /// Certificate encoding (4 = X.509 signature, 15 = raw public key).
        encoding: u8,
        /// Certificate data.
        data: Vec<u8>,
    },
    /// CERTREQ: encoding and certification authority data.
    CertReq {
        /// Certificate encoding.
        encoding: u8,
        /// CA data (concatenated SHA-1 hashes for X.509).
        data: Vec<u8>,
    },
    /// AUTH: method and data.
    Auth {
        /// Auth method.
        method: u8,
        /// Authentication data.
        data: Vec<u8>,
    },
    /// Nonce.
    Nonce(Vec<u8>),
    /// Notify.
    Notify(Notify),
    /// Delete.
    Delete(Delete),
    /// Vendor ID.
    VendorId(Vec<u8>),
    /// TSi.
    TsI(Vec<WireTs>),
    /// TSr.
    TsR(Vec<WireTs>),
    /// SK (still encrypted).
    Encrypted(Encrypted),
    /// SKF (RFC 7383).
    EncryptedFragment(EncryptedFragment),
    /// CP: configuration type and attributes.
    Cp {
        /// CFG type (1 request, 2 reply, 3 set, 4 ack).
        cfg_type: u8,
        /// Attributes.
        attributes: Vec<CpAttribute>,
    },
    /// EAP, kept opaque.
    Eap(Vec<u8>),
    /// A payload type this codec does not know.
    Unknown {
        /// Payload type.
        kind: u8,
        /// The critical bit.
        critical: bool,
        /// Payload body after the generic header.
        data: Vec<u8>,
    },
}

/// Why a message or payload chain could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {what}: need {need} octets, have {have}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Octets needed.
        need: usize,
        /// Octets present.
        have: usize,
    },
    /// A length field is inconsistent (too small, or beyond its container).
    #[error("bad length in {what}: {len}")]
    BadLength {
        /// Which structure.
        what: &'static str,
        /// The length found.
        len: usize,
    },
    /// The header's major version is not 2.
    #[error("unsupported IKE major version {0}")]
    BadVersion(u8),
    /// Bytes left after the last payload or substructure.
    #[error("{0} octets of trailing data after {1}")]
    TrailingData(usize, &'static str),
    /// A field holds a value the RFC forbids (e.g. a wrong SPI size).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The SK or SKF payload is not the last payload (RFC 7296 3.14).
    #[error("encrypted payload is not the last payload")]
    EncryptedNotLast,
    /// Too many payloads or substructures (a bound against abuse).
    #[error("too many {0}")]
    TooMany(&'static str),
}

impl ParseError {
    /// The Notify type that reports this error to the peer when a response
    /// is sent at all (RFC 7296 2.21): INVALID_MAJOR_VERSION for
    /// [`ParseError::BadVersion`], INVALID_SYNTAX otherwise.
    pub fn notify_type(&self) -> u16 {
        match self {
            Self::BadVersion(_) => notify::INVALID_MAJOR_VERSION,
            _ => notify::INVALID_SYNTAX,
        }
    }
}
