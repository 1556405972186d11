//! A borrowing reader over a byte slice (the rustls `Reader` shape).
//!
//! Every read is checked: asking for more octets than remain gives
//! [`ParseError::Truncated`], never a panic. Length-delimited parts are read
//! through [`Reader::sub`], which first proves that the claimed length is
//! present, and each part ends with [`Reader::finish`], which rejects
//! trailing octets.

use super::ParseError;

/// A cursor over borrowed bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Octets not yet read.
    pub(crate) fn left(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` octets.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(ParseError::Truncated {
                what,
                need: n,
                have: self.buf.len(),
            }),
        }
    }

    /// The next `N` octets as an array (for fixed-size headers).
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], ParseError> {
        let have = self.buf.len();
        let s = self.take(N, what)?;
        <[u8; N]>::try_from(s).map_err(|_| ParseError::Truncated {
            what,
            need: N,
            have,
        })
    }

    /// A big-endian `u16`.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        self.array::<2>(what).map(u16::from_be_bytes)
    }

    /// A sub-reader over the next `n` octets, where `n` came from a length
    /// field: if fewer remain, the length is wrong ([`ParseError::BadLength`]
    /// reporting `reported_len`, the field's value).
    pub(crate) fn sub(
        &mut self,
        n: usize,
        what: &'static str,
        reported_len: usize,
    ) -> Result<Self, ParseError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(Self::new(head))
            }
            None => Err(ParseError::BadLength {
                what,
                len: reported_len,
            }),
        }
    }

    /// Everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// Succeeds only if nothing is left.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::TrailingData(self.buf.len(), what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(
            r.take(4, "b"),
            Err(ParseError::Truncated {
                what: "b",
                need: 4,
                have: 3
            })
        );
        assert_eq!(
            r.clone().sub(9, "c", 13).unwrap_err(),
            ParseError::BadLength { what: "c", len: 13 }
        );
        let s = r.sub(2, "c", 6).unwrap();
        assert_eq!(s.clone().finish("s"), Err(ParseError::TrailingData(2, "s")));
        assert_eq!(r.array::<1>("d").unwrap(), [5]);
        assert!(r.is_empty());
        assert_eq!(r.left(), 0);
        assert_eq!(Reader::new(&[7]).rest(), &[7]);
        r.finish("r").unwrap();
    }
}
