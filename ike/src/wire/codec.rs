//! Parsing and emitting (owned by the codec work; placeholder until it lands).

use super::{Message, ParseError, Payload};

impl Message {
    /// Parse a whole message (header and outer payload chain).
    pub fn parse(_buf: &[u8]) -> Result<Self, ParseError> {
        todo!("codec")
    }

    /// Emit the message; `header.next_payload` and `header.length` are
    /// computed from the payloads.
    pub fn emit(&self) -> Vec<u8> {
        todo!("codec")
    }
}

/// Parse a chain of payloads starting with type `first`, e.g. the decrypted
/// content of an SK payload.
pub fn parse_payload_chain(_first: u8, _buf: &[u8]) -> Result<Vec<Payload>, ParseError> {
    todo!("codec")
}

/// Emit a chain of payloads; returns the type of the first one (0 if empty)
/// and the bytes.
pub fn emit_payload_chain(_payloads: &[Payload]) -> (u8, Vec<u8>) {
    todo!("codec")
}
