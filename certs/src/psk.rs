//! Pre-shared keys (RFC 7296 2.15).

use core::fmt;
use zeroize::Zeroizing;

/// A pre-shared key (RFC 7296 2.15). Zeroized on drop; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(Zeroizing<Vec<u8>>);

/// Why a PSK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PskError {
    /// The key is empty (after trimming a trailing newline).
    #[error("pre-shared key is empty")]
    Empty,
    /// A `0x` key is not valid hex.
    #[error("pre-shared key starts with 0x but is not valid hex")]
    BadHex,
}

impl Psk {
    /// A PSK from raw octets.
    pub fn new(bytes: &[u8]) -> Result<Self, PskError> {
        if bytes.is_empty() {
            return Err(PskError::Empty);
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A PSK as written in a file or environment variable: one trailing
    /// newline (LF or CRLF) is removed; `0x...` is read as hex, as strongSwan
    /// does; anything else is taken as its UTF-8 octets.
    pub fn from_text(text: &[u8]) -> Result<Self, PskError> {
        let t = text
            .strip_suffix(b"\n")
            .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
            .unwrap_or(text);
        if let Some(hex) = t.strip_prefix(b"0x") {
            if hex.len() % 2 != 0 {
                return Err(PskError::BadHex);
            }
            let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
            for pair in hex.chunks_exact(2) {
                let hi = hexval(pair[0]).ok_or(PskError::BadHex)?;
                let lo = hexval(pair[1]).ok_or(PskError::BadHex)?;
                out.push(hi << 4 | lo);
            }
            return Self::new(&out);
        }
        Self::new(t)
    }

    /// The key's octets.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        assert_eq!(Psk::from_text(b"secret\n").unwrap().expose(), b"secret");
        assert_eq!(Psk::from_text(b"secret\r\n").unwrap().expose(), b"secret");
        assert_eq!(Psk::from_text(b"0x01aB").unwrap().expose(), &[1, 0xab]);
        assert_eq!(Psk::from_text(b"0x1"), Err(PskError::BadHex));
        assert_eq!(Psk::from_text(b"0xzz"), Err(PskError::BadHex));
        assert_eq!(Psk::from_text(b"\n"), Err(PskError::Empty));
    }

    #[test]
    fn debug_redacts() {
        let p = Psk::new(b"hunter2").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
