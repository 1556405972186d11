//! Conversions between wire proposals ([`Proposal`]) and the configured
//! proposals of `pad` ([`IkeProposal`], [`EspProposal`]).
//!
//! Outgoing: one configured proposal becomes one Proposal substructure with
//! its transforms in RFC 7296 order (ENCR, PRF, INTEG, D-H, ESN).
//! Incoming: [`Offer::from_wire`] lists what a peer's proposal offers in
//! latchkey's terms and records what it did not understand:
//!
//! > If the responder receives a proposal that contains a Transform Type
//! > it does not understand, or a proposal that is missing a mandatory
//! > Transform Type, it MUST consider this proposal unacceptable; however,
//! > other proposals in the same SA payload are processed as usual.
//! > (RFC 7296 3.3.6)
//!
//! An unknown transform *ID* of a known type is simply never chosen.

use super::{protocol, transform_type as tt, Attribute, Proposal, Transform, ATTR_KEY_LENGTH};
use pad::alg::{DhGroup, Encr, Integ, Prf};
use pad::{EspProposal, IkeProposal};

fn encr_transform(e: Encr) -> Transform {
    Transform {
        kind: tt::ENCR,
        id: e.transform_id(),
        attributes: e
            .key_length_attr()
            .map(|value| Attribute::Tv {
                kind: ATTR_KEY_LENGTH,
                value,
            })
            .into_iter()
            .collect(),
    }
}

fn plain(kind: u8, id: u16) -> Transform {
    Transform {
        kind,
        id,
        attributes: Vec::new(),
    }
}

/// The Proposal substructure for an IKE SA proposal; `spi` is empty in
/// IKE_SA_INIT and the new initiator or responder SPI (8 octets) when
/// rekeying the IKE SA.
pub fn ike_proposal_to_wire(num: u8, p: &IkeProposal, spi: &[u8]) -> Proposal {
    let mut transforms: Vec<Transform> = p.encr.iter().copied().map(encr_transform).collect();
    transforms.extend(p.prf.iter().map(|x| plain(tt::PRF, x.transform_id())));
    transforms.extend(p.integ.iter().map(|x| plain(tt::INTEG, x.transform_id())));
    transforms.extend(p.dh.iter().map(|x| plain(tt::DH, x.transform_id())));
    Proposal {
        num,
        protocol_id: protocol::IKE,
        spi: spi.to_vec(),
        transforms,
    }
}

/// The Proposal substructure for an ESP child SA proposal with our inbound
/// `spi` (4 octets). An empty `dh` list offers no PFS (no D-H transform).
pub fn esp_proposal_to_wire(num: u8, p: &EspProposal, spi: &[u8]) -> Proposal {
    let mut transforms: Vec<Transform> = p.encr.iter().copied().map(encr_transform).collect();
    transforms.extend(p.integ.iter().map(|x| plain(tt::INTEG, x.transform_id())));
    transforms.extend(p.dh.iter().map(|x| plain(tt::DH, x.transform_id())));
    transforms.extend(p.esn.iter().map(|e| plain(tt::ESN, u16::from(*e))));
    Proposal {
        num,
        protocol_id: protocol::ESP,
        spi: spi.to_vec(),
        transforms,
    }
}

/// What one wire proposal offers, in latchkey's terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offer {
    /// Proposal number.
    pub num: u8,
    /// Protocol ID, see [`protocol`].
    pub protocol_id: u8,
    /// The SPI as sent.
    pub spi: Vec<u8>,
    /// Encryption algorithms understood, in the peer's order.
    pub encr: Vec<Encr>,
    /// PRFs understood.
    pub prf: Vec<Prf>,
    /// Integrity algorithms understood.
    pub integ: Vec<Integ>,
    /// Whether INTEG transform ID 0 (NONE) was offered.
    pub integ_none: bool,
    /// Key exchange groups understood.
    pub dh: Vec<DhGroup>,
    /// Whether D-H transform ID 0 (NONE, no PFS) was offered.
    pub dh_none: bool,
    /// ESN choices (`true` = ESN).
    pub esn: Vec<bool>,
    /// `(type, id)` of transforms of a known type whose ID, key length or
    /// attributes latchkey does not support: never chosen.
    pub unknown_ids: Vec<(u8, u16)>,
    /// Transform types latchkey does not know: the whole proposal is
    /// unacceptable (RFC 7296 3.3.6).
    pub unknown_types: Vec<u8>,
}

impl Offer {
    /// Sort the transforms of `p` into what latchkey understands and what
    /// it does not.
    pub fn from_wire(p: &Proposal) -> Self {
        let mut o = Self {
            num: p.num,
            protocol_id: p.protocol_id,
            spi: p.spi.clone(),
            ..Self::default()
        };
        for t in &p.transforms {
            // Only the key length attribute is understood; any other makes
            // the transform one we cannot choose.
            let only_key_len = t
                .attributes
                .iter()
                .all(|a| matches!(a, Attribute::Tv { kind, .. } if *kind == ATTR_KEY_LENGTH));
            // PRF, INTEG and D-H transforms take no attributes at all.
            let no_attrs = t.attributes.is_empty();
            let known = match t.kind {
                tt::ENCR => {
                    only_key_len
                        && Encr::from_wire(t.id, t.key_length())
                            .map(|e| o.encr.push(e))
                            .is_some()
                }
                tt::PRF => no_attrs && Prf::from_wire(t.id).map(|x| o.prf.push(x)).is_some(),
                tt::INTEG if t.id == 0 && no_attrs => {
                    o.integ_none = true;
                    true
                }
                tt::INTEG => no_attrs && Integ::from_wire(t.id).map(|x| o.integ.push(x)).is_some(),
                tt::DH if t.id == 0 && no_attrs => {
                    o.dh_none = true;
                    true
                }
                tt::DH => no_attrs && DhGroup::from_wire(t.id).map(|x| o.dh.push(x)).is_some(),
                tt::ESN if t.id <= 1 && no_attrs => {
                    o.esn.push(t.id == 1);
                    true
                }
                tt::ESN => false,
                other => {
                    o.unknown_types.push(other);
                    continue;
                }
            };
            if !known {
                o.unknown_ids.push((t.kind, t.id));
            }
        }
        o
    }

    /// Whether every transform type is known (RFC 7296 3.3.6); if not, the
    /// proposal must be skipped whole.
    pub fn types_understood(&self) -> bool {
        self.unknown_types.is_empty()
    }

    /// The understood algorithms as an IKE proposal (lists may be empty).
    pub fn to_ike_proposal(&self) -> IkeProposal {
        IkeProposal {
            encr: self.encr.clone(),
            prf: self.prf.clone(),
            integ: self.integ.clone(),
            dh: self.dh.clone(),
        }
    }

    /// The understood algorithms as an ESP proposal (lists may be empty;
    /// no ESN transform reads as `[false]`, no D-H transform as no PFS).
    pub fn to_esp_proposal(&self) -> EspProposal {
        EspProposal {
            encr: self.encr.clone(),
            integ: self.integ.clone(),
            dh: self.dh.clone(),
            esn: if self.esn.is_empty() {
                vec![false]
            } else {
                self.esn.clone()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_proposals_round_trip() {
        for p in IkeProposal::defaults() {
            let w = ike_proposal_to_wire(1, &p, &[]);
            assert_eq!(w.protocol_id, protocol::IKE);
            let o = Offer::from_wire(&w);
            assert!(o.types_understood());
            assert!(o.unknown_ids.is_empty());
            assert_eq!(o.to_ike_proposal(), p);
        }
    }

    #[test]
    fn esp_proposals_round_trip() {
        for p in EspProposal::defaults()
            .into_iter()
            .chain([EspProposal::parse("aes256gcm16-x25519-esn-noesn").unwrap()])
        {
            let w = esp_proposal_to_wire(2, &p, &[1, 2, 3, 4]);
            assert_eq!(w.spi, [1, 2, 3, 4]);
            let o = Offer::from_wire(&w);
            assert_eq!(o.num, 2);
            assert_eq!(o.to_esp_proposal(), p);
        }
    }

    #[test]
    fn unknown_ids_and_types_are_recorded() {
        let w = Proposal {
            num: 1,
            protocol_id: protocol::ESP,
            spi: vec![0; 4],
            transforms: vec![
                encr_transform(Encr::AesGcm16_128),
                // AES-GCM with a 192-bit key: known type, unknown choice.
                Transform {
                    kind: tt::ENCR,
                    id: 20,
                    attributes: vec![Attribute::Tv {
                        kind: ATTR_KEY_LENGTH,
                        value: 192,
                    }],
                },
                // A PRF with a stray attribute.
                Transform {
                    kind: tt::PRF,
                    id: 5,
                    attributes: vec![Attribute::Tv {
                        kind: ATTR_KEY_LENGTH,
                        value: 128,
                    }],
                },
                plain(tt::INTEG, 0),
                plain(tt::DH, 0),
                plain(tt::DH, 2),
                plain(tt::ESN, 7),
                plain(6, 1),
            ],
        };
        let o = Offer::from_wire(&w);
        assert_eq!(o.encr, [Encr::AesGcm16_128]);
        assert!(o.prf.is_empty());
        assert!(o.integ_none && o.dh_none);
        assert_eq!(o.unknown_ids, [(1, 20), (2, 5), (4, 2), (5, 7)]);
        assert_eq!(o.unknown_types, [6]);
        assert!(!o.types_understood());
        assert_eq!(o.to_esp_proposal().esn, [false]);
    }
}
