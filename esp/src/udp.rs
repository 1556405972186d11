//! UDP encapsulation of ESP (RFC 3948): telling apart what arrives on the
//! NAT-T port (4500).

/// The 4-octet zero Non-ESP Marker that precedes IKE messages on the NAT-T
/// port (RFC 3948 2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// The single octet of a NAT-keepalive packet (RFC 3948 2.3).
pub const KEEPALIVE: u8 = 0xff;

/// What a datagram received on the NAT-T port holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Natt<'a> {
    /// A NAT-keepalive (one 0xFF octet): nothing to do.
    Keepalive,
    /// An IKE message, the Non-ESP Marker already stripped.
    Ike(&'a [u8]),
    /// An ESP packet (the whole datagram, starting with the non-zero SPI).
    Esp(&'a [u8]),
    /// Neither: too short to hold a SPI or marker.
    Invalid,
}

/// Classify a datagram received on the NAT-T port (RFC 3948 2.2, 2.3, 3).
pub fn classify(datagram: &[u8]) -> Natt<'_> {
    if datagram == [KEEPALIVE] {
        return Natt::Keepalive;
    }
    match datagram.split_first_chunk::<4>() {
        Some((marker, ike)) if *marker == NON_ESP_MARKER => Natt::Ike(ike),
        Some(_) => Natt::Esp(datagram),
        None => Natt::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(&[0xff]), Natt::Keepalive);
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Natt::Ike(&[1, 2]));
        assert_eq!(classify(&[0, 0, 0, 1, 9]), Natt::Esp(&[0, 0, 0, 1, 9]));
        assert_eq!(classify(&[]), Natt::Invalid);
        assert_eq!(classify(&[0, 0, 0]), Natt::Invalid);
        assert_eq!(classify(&[0xfe]), Natt::Invalid);
    }
}
