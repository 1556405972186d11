//! Small conversions between wire payloads and the `pad` vocabulary
//! (identities, traffic selectors), plus convenience constructors.

use super::{Message, Notify, Payload, WireTs};
use pad::{Identity, IdentityError, TrafficSelector};

impl Payload {
    /// An IDi payload carrying `id`.
    pub fn from_identity_i(id: &Identity) -> Self {
        Self::IdI {
            id_type: id.id_type(),
            data: id.data(),
        }
    }

    /// An IDr payload carrying `id`.
    pub fn from_identity_r(id: &Identity) -> Self {
        Self::IdR {
            id_type: id.id_type(),
            data: id.data(),
        }
    }

    /// The identity of an IDi or IDr payload (`None` for other payloads).
    pub fn identity(&self) -> Option<Result<Identity, IdentityError>> {
        match self {
            Self::IdI { id_type, data } | Self::IdR { id_type, data } => {
                Some(Identity::from_wire(*id_type, data))
            }
            _ => None,
        }
    }

    /// A Notify payload without SPI (protocol ID 0).
    pub fn notify(kind: u16, data: Vec<u8>) -> Self {
        Self::Notify(Notify {
            protocol_id: 0,
            spi: Vec::new(),
            kind,
            data,
        })
    }

    /// A Notify payload about the SA with `spi` of protocol `protocol_id`
    /// (e.g. REKEY_SA for a child SA).
    pub fn notify_spi(protocol_id: u8, spi: Vec<u8>, kind: u16, data: Vec<u8>) -> Self {
        Self::Notify(Notify {
            protocol_id,
            spi,
            kind,
            data,
        })
    }

    /// A TSi payload with these selectors.
    pub fn ts_i(ts: &[TrafficSelector]) -> Self {
        Self::TsI(ts.iter().copied().map(WireTs::Addr).collect())
    }

    /// A TSr payload with these selectors.
    pub fn ts_r(ts: &[TrafficSelector]) -> Self {
        Self::TsR(ts.iter().copied().map(WireTs::Addr).collect())
    }

    /// The Notify inside, if this is a Notify payload.
    pub fn as_notify(&self) -> Option<&Notify> {
        match self {
            Self::Notify(n) => Some(n),
            _ => None,
        }
    }
}

impl WireTs {
    /// The selector, if it is an address range of type 7 or 8.
    pub fn selector(&self) -> Option<&TrafficSelector> {
        match self {
            Self::Addr(ts) => Some(ts),
            Self::Other { .. } => None,
        }
    }

    /// All selectors of a TS payload if each is an address range, or `None`
    /// if any is of another type or an inverted range (the caller answers
    /// TS_UNACCEPTABLE).
    pub fn all_selectors(ts: &[Self]) -> Option<Vec<TrafficSelector>> {
        ts.iter().map(|t| t.selector().copied()).collect()
    }
}

impl From<TrafficSelector> for WireTs {
    fn from(ts: TrafficSelector) -> Self {
        Self::Addr(ts)
    }
}

impl Message {
    /// The first Notify payload of type `kind` in the outer chain.
    pub fn notify(&self, kind: u16) -> Option<&Notify> {
        find_notify(&self.payloads, kind)
    }
}

/// The first Notify payload of type `kind` in a chain.
pub fn find_notify(payloads: &[Payload], kind: u16) -> Option<&Notify> {
    payloads
        .iter()
        .filter_map(Payload::as_notify)
        .find(|n| n.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{emit_payload_chain, notify, parse_payload_chain};

    #[test]
    fn identity_round_trips() {
        for id in [
            Identity::Fqdn("vpn.example".into()),
            Identity::Ipv4("192.0.2.1".parse().unwrap()),
            Identity::Ipv6("2001:db8::1".parse().unwrap()),
            Identity::KeyId(vec![1, 2, 3]),
            Identity::Null,
        ] {
            let p = Payload::from_identity_i(&id);
            assert_eq!(p.identity(), Some(Ok(id.clone())));
            let q = Payload::from_identity_r(&id);
            let (first, bytes) = emit_payload_chain(&[p.clone(), q.clone()]);
            assert_eq!(parse_payload_chain(first, &bytes).unwrap(), vec![p, q]);
        }
        assert_eq!(Payload::Nonce(vec![]).identity(), None);
        assert!(Payload::IdI {
            id_type: Identity::ID_IPV4_ADDR,
            data: vec![1]
        }
        .identity()
        .unwrap()
        .is_err());
    }

    #[test]
    fn selectors_and_notifies() {
        let ts: TrafficSelector = "10.0.0.0/24[tcp/80]".parse().unwrap();
        let p = Payload::ts_i(&[ts]);
        let Payload::TsI(w) = &p else { panic!() };
        assert_eq!(WireTs::all_selectors(w), Some(vec![ts]));
        assert_eq!(WireTs::from(ts).selector(), Some(&ts));
        let other = WireTs::Other {
            ts_type: 10,
            data: vec![0],
        };
        assert_eq!(WireTs::all_selectors(&[other, ts.into()][..]), None);
        let m = Message::new(
            crate::wire::Header {
                spi_i: 1,
                spi_r: 0,
                next_payload: 0,
                version: 0x20,
                exchange: 34,
                flags: 8,
                message_id: 0,
                length: 0,
            },
            vec![
                p,
                Payload::notify(notify::COOKIE, vec![9]),
                Payload::notify_spi(3, vec![1, 2, 3, 4], notify::REKEY_SA, vec![]),
            ],
        );
        assert_eq!(m.notify(notify::COOKIE).unwrap().data, vec![9]);
        assert_eq!(m.notify(notify::REKEY_SA).unwrap().spi, vec![1, 2, 3, 4]);
        assert!(m.notify(notify::NO_PROPOSAL_CHOSEN).is_none());
    }
}
