//! One DER TLV reader for the few places that walk DER by hand: the
//! ID_DER_ASN1_DN names of the PAD (`pad_db`) and the outer frame of a
//! certificate (`certs`). Total: any bytes give a TLV or `None`.

/// One TLV at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag octet (single-octet tags only).
    pub tag: u8,
    /// The contents.
    pub contents: &'a [u8],
    /// The whole TLV: tag, length and contents.
    pub whole: &'a [u8],
    /// What follows it.
    pub rest: &'a [u8],
    /// The length is in its shortest form (X.690 10.1, DER): no leading
    /// zero octet, the long form only from 128.
    pub shortest: bool,
}

/// The TLV at the start of `buf`: definite lengths of at most four octets
/// (the indefinite form 0x80 is BER only); `None` if it does not fit.
pub fn tlv(buf: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = buf.split_first()?;
    let (&first, after_first) = after_tag.split_first()?;
    let (len, body, shortest) = if first < 0x80 {
        (usize::from(first), after_first, true)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_first.len() < n {
            return None;
        }
        let (octets, body) = after_first.split_at(n);
        let len = octets
            .iter()
            .fold(0usize, |acc, &o| (acc << 8) | usize::from(o));
        (len, body, octets.first() != Some(&0) && len >= 0x80)
    };
    if body.len() < len {
        return None;
    }
    let header = buf.len() - body.len();
    Some(Tlv {
        tag,
        contents: &body[..len],
        whole: &buf[..header + len],
        rest: &body[len..],
        shortest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_and_not_shortest_lengths() {
        let t = tlv(&[0x30, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!(
            (t.tag, t.contents, t.rest, t.shortest),
            (0x30, &[0xaa][..], &[0xbb][..], true)
        );
        assert_eq!(t.whole, &[0x30, 0x01, 0xaa]);
        let long: Vec<u8> = [0x04, 0x81, 0x80].into_iter().chain([7; 0x80]).collect();
        let t = tlv(&long).unwrap();
        assert_eq!((t.contents.len(), t.shortest), (0x80, true));
        // A length that fits the short form, written long: read, not shortest.
        assert!(!tlv(&[0x04, 0x81, 0x01, 0xaa]).unwrap().shortest);
        assert!(!tlv(&[0x04, 0x82, 0x00, 0x01, 0xaa]).unwrap().shortest);
        // Indefinite, too many length octets, too short: none.
        assert_eq!(tlv(&[0x30, 0x80, 0x00, 0x00]), None);
        assert_eq!(tlv(&[0x30, 0x85, 1, 0, 0, 0, 0]), None);
        assert_eq!(tlv(&[0x30, 0x02, 0xaa]), None);
        assert_eq!(tlv(&[0x30]), None);
    }
}
