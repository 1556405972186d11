//! Small helpers between the codec's payloads and the state machine's
//! values: the SK prefix, notifies, identities and traffic selectors.

use pad::{Identity, TrafficSelector};

use crate::wire::{Notify, Payload, WireTs};

pub(crate) use crate::wire::sk_prefix;

/// A notify without SPI.
pub(crate) fn notify(kind: u16, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol_id: 0,
        spi: Vec::new(),
        kind,
        data,
    })
}

/// The AUTH payload's method and data, if the message has one.
pub(crate) fn auth_payload(payloads: &[Payload]) -> Option<(u8, &Vec<u8>)> {
    payloads.iter().find_map(|x| match x {
        Payload::Auth { method, data } => Some((*method, data)),
        _ => None,
    })
}

pub(crate) use crate::wire::find_notify;

/// All notifies of a type.
pub(crate) fn notifies(payloads: &[Payload], kind: u16) -> impl Iterator<Item = &Notify> {
    payloads.iter().filter_map(move |p| match p {
        Payload::Notify(n) if n.kind == kind => Some(n),
        _ => None,
    })
}

/// The first error notify (type below 16384, RFC 7296 3.10.1).
pub(crate) fn error_notify(payloads: &[Payload]) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if crate::wire::notify::is_error(n.kind) => Some(n),
        _ => None,
    })
}

/// The type of the first unknown payload with the critical bit set
/// (RFC 7296 2.5: answered with UNSUPPORTED_CRITICAL_PAYLOAD).
pub(crate) fn unsupported_critical(payloads: &[Payload]) -> Option<u8> {
    payloads.iter().find_map(|p| match p {
        Payload::Unknown {
            kind,
            critical: true,
            ..
        } => Some(*kind),
        _ => None,
    })
}

/// The ID payload body from the ID type on (RFC 7296 2.15: the
/// RestOfInitIDPayload / RestOfRespIDPayload).
pub(crate) fn id_body(id_type: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + data.len());
    v.extend_from_slice(&[id_type, 0, 0, 0]);
    v.extend_from_slice(data);
    v
}

/// IDi payload of an identity.
pub(crate) fn id_i(id: &Identity) -> Payload {
    Payload::IdI {
        id_type: id.id_type(),
        data: id.data(),
    }
}

/// IDr payload of an identity.
pub(crate) fn id_r(id: &Identity) -> Payload {
    Payload::IdR {
        id_type: id.id_type(),
        data: id.data(),
    }
}

/// Selectors for the wire.
pub(crate) fn ts_to_wire(ts: &[TrafficSelector]) -> Vec<WireTs> {
    ts.iter().copied().map(WireTs::Addr).collect()
}

/// Address-range selectors from the wire (other types are ignored: we
/// cannot honour them, so they narrow away).
pub(crate) fn ts_from_wire(ts: &[WireTs]) -> Vec<TrafficSelector> {
    ts.iter()
        .filter_map(|t| match t {
            WireTs::Addr(a) => Some(*a),
            WireTs::Other { .. } => None,
        })
        .collect()
}

/// Pairwise intersection of two selector lists, without duplicates
/// (RFC 7296 2.9 narrowing).
pub(crate) fn ts_intersect(a: &[TrafficSelector], b: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for x in a {
        for y in b {
            if let Some(z) = x.intersect(y) {
                if !out.contains(&z) {
                    out.push(z);
                }
            }
        }
    }
    out
}

/// Whether every selector of `inner` lies inside some selector of `outer`.
pub(crate) fn ts_subset(inner: &[TrafficSelector], outer: &[TrafficSelector]) -> bool {
    inner.iter().all(|i| outer.iter().any(|o| o.covers(i)))
}

/// A 4-octet SPI from the wire.
pub(crate) fn spi32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// An 8-octet SPI from the wire.
pub(crate) fn spi64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_ops() {
        let a: TrafficSelector = "10.0.0.0/16".parse().unwrap();
        let b: TrafficSelector = "10.0.1.0/24".parse().unwrap();
        let c: TrafficSelector = "192.168.0.0/24".parse().unwrap();
        assert_eq!(ts_intersect(&[a, c], &[b]), vec![b]);
        assert!(ts_subset(&[b], &[a]));
        assert!(!ts_subset(&[c], &[a]));
    }
}
