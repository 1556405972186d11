//! Exporting an IKE SA's keys to a protocol analyzer (Wireshark's
//! `ikev2_decryption_table`), opt-in: nothing in the state machine calls
//! this; a driver asks with [`crate::Ike::export_keys`] only when its
//! operator turned key export on.

use core::fmt;

use pad::alg::{Encr, Integ, Prf};

use crate::crypto::Secret;

/// The keys protecting one IKE SA's SK payloads (RFC 7296 2.14), with the
/// SPIs that name the SA and the algorithms they are for.
///
/// These are SECRET keys: whoever holds them reads (and could forge) every
/// message of the IKE SA. Every key is zeroized on drop; `Debug` prints
/// none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeSaKeys {
    /// Initiator's SPI (as on the wire, big-endian when written as hex).
    pub spi_i: u64,
    /// Responder's SPI.
    pub spi_r: u64,
    /// The SK payload's cipher.
    pub encr: Encr,
    /// Integrity algorithm; `None` for AEAD ciphers.
    pub integ: Option<Integ>,
    /// The PRF (not needed to decrypt; for completeness).
    pub prf: Prf,
    /// SK_ei: initiator-to-responder cipher key; for AEAD ciphers the key
    /// followed by the 4-octet salt ([`Encr::keymat_len`] octets).
    pub sk_ei: Secret,
    /// SK_er: responder-to-initiator cipher key (with salt for AEADs).
    pub sk_er: Secret,
    /// SK_ai: initiator-to-responder integrity key (empty for AEADs).
    pub sk_ai: Secret,
    /// SK_ar: responder-to-initiator integrity key (empty for AEADs).
    pub sk_ar: Secret,
}

impl IkeSaKeys {
    /// Cipher key length in octets, salt excluded (16 for AES-128).
    pub fn encr_key_len(&self) -> usize {
        let salt = if self.encr.is_aead() { 4 } else { 0 };
        self.sk_ei.len().saturating_sub(salt)
    }

    /// Integrity key length in octets (0 for AEADs).
    pub fn integ_key_len(&self) -> usize {
        self.sk_ai.len()
    }
}

impl fmt::Debug for IkeSaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeSaKeys")
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("prf", &self.prf)
            .field("keys", &"<redacted>")
            .finish()
    }
}
