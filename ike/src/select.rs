//! Proposals on the wire and their selection (RFC 7296 2.7, 3.3).
//!
//! The responder picks the first of the initiator's proposals that matches
//! one of its own, in the initiator's order; within a proposal it takes the
//! initiator's first acceptable transform of each type, except the D-H
//! group, where the group of the KE payload wins when acceptable (it saves
//! an INVALID_KE_PAYLOAD round trip, RFC 7296 1.2).

use pad::alg::{DhGroup, Encr, Integ, Prf};
use pad::{EspProposal, IkeProposal};

use crate::crypto::IkeSuite;
use crate::wire::{protocol, transform_type, Attribute, Proposal, Transform, ATTR_KEY_LENGTH};

/// A negotiated ESP suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EspSuite {
    pub(crate) encr: Encr,
    pub(crate) integ: Option<Integ>,
    pub(crate) dh: Option<DhGroup>,
    pub(crate) esn: bool,
}

/// Why selection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No proposal matches (NO_PROPOSAL_CHOSEN).
    NoProposal,
    /// A proposal matches, but with another D-H group than the KE payload's:
    /// INVALID_KE_PAYLOAD naming this group.
    WrongGroup(DhGroup),
}

fn encr_transform(e: Encr) -> Transform {
    Transform {
        kind: transform_type::ENCR,
        id: e.transform_id(),
        attributes: e
            .key_length_attr()
            .map(|k| Attribute::Tv {
                kind: ATTR_KEY_LENGTH,
                value: k,
            })
            .into_iter()
            .collect(),
    }
}

fn simple(kind: u8, id: u16) -> Transform {
    Transform {
        kind,
        id,
        attributes: Vec::new(),
    }
}

/// Our IKE proposals as wire proposals (numbered from 1).
pub(crate) fn ike_offer(ours: &[IkeProposal], spi: &[u8]) -> Vec<Proposal> {
    ours.iter()
        .enumerate()
        .map(|(i, p)| {
            let mut t: Vec<Transform> = p.encr.iter().map(|e| encr_transform(*e)).collect();
            t.extend(
                p.prf
                    .iter()
                    .map(|x| simple(transform_type::PRF, x.transform_id())),
            );
            t.extend(
                p.integ
                    .iter()
                    .map(|x| simple(transform_type::INTEG, x.transform_id())),
            );
            t.extend(
                p.dh.iter()
                    .map(|x| simple(transform_type::DH, x.transform_id())),
            );
            Proposal {
                num: u8::try_from(i + 1).unwrap_or(u8::MAX),
                protocol_id: protocol::IKE,
                spi: spi.to_vec(),
                transforms: t,
            }
        })
        .collect()
}

/// Our ESP proposals as wire proposals; `pfs` false leaves the D-H groups
/// out (IKE_AUTH, RFC 7296 1.2).
pub(crate) fn esp_offer(ours: &[EspProposal], spi: u32, pfs: bool) -> Vec<Proposal> {
    ours.iter()
        .enumerate()
        .map(|(i, p)| {
            let mut t: Vec<Transform> = p.encr.iter().map(|e| encr_transform(*e)).collect();
            t.extend(
                p.integ
                    .iter()
                    .map(|x| simple(transform_type::INTEG, x.transform_id())),
            );
            if pfs {
                t.extend(
                    p.dh.iter()
                        .map(|x| simple(transform_type::DH, x.transform_id())),
                );
            }
            let esn = if p.esn.is_empty() {
                &[false][..]
            } else {
                &p.esn
            };
            t.extend(
                esn.iter()
                    .map(|e| simple(transform_type::ESN, u16::from(*e))),
            );
            Proposal {
                num: u8::try_from(i + 1).unwrap_or(u8::MAX),
                protocol_id: protocol::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms: t,
            }
        })
        .collect()
}

/// The transforms of one wire proposal, decoded per type (unknown ones
/// dropped; `unknown` counts per type whether any was seen).
#[derive(Default)]
struct Decoded {
    encr: Vec<Encr>,
    prf: Vec<Prf>,
    integ: Vec<Integ>,
    dh: Vec<DhGroup>,
    esn: Vec<bool>,
    /// Transform types present, including unknown IDs (a type present only
    /// with unknown IDs makes the proposal unacceptable).
    has_integ: bool,
    has_dh: bool,
    has_esn: bool,
    /// A transform type we do not understand (RFC 7296 3.3.6: the whole
    /// proposal is unacceptable).
    unknown_type: bool,
}

fn decode(p: &Proposal) -> Decoded {
    let mut d = Decoded::default();
    for t in &p.transforms {
        match t.kind {
            transform_type::ENCR => {
                if let Some(e) = Encr::from_wire(t.id, t.key_length()) {
                    d.encr.push(e);
                }
            }
            transform_type::PRF => d.prf.extend(Prf::from_wire(t.id)),
            // INTEG NONE (0) and D-H NONE (0) mean "none" (RFC 7296 3.3.3).
            transform_type::INTEG if t.id != 0 => {
                d.has_integ = true;
                d.integ.extend(Integ::from_wire(t.id));
            }
            transform_type::DH if t.id != 0 => {
                d.has_dh = true;
                d.dh.extend(DhGroup::from_wire(t.id));
            }
            transform_type::ESN => {
                d.has_esn = true;
                if t.id <= 1 {
                    d.esn.push(t.id == 1);
                }
            }
            // INTEG NONE / D-H NONE.
            transform_type::INTEG | transform_type::DH => {}
            _ => d.unknown_type = true,
        }
    }
    d
}

fn first_common<T: Copy + PartialEq>(theirs: &[T], ours: &[T]) -> Option<T> {
    theirs.iter().copied().find(|t| ours.contains(t))
}

/// Pick the D-H group: the KE payload's group if both accept it, else our
/// preferred common one (which triggers INVALID_KE_PAYLOAD).
fn pick_group(
    theirs: &[DhGroup],
    ours: &[DhGroup],
    ke: Option<DhGroup>,
) -> Option<Result<DhGroup, DhGroup>> {
    if let Some(g) = ke.filter(|g| theirs.contains(g) && ours.contains(g)) {
        return Some(Ok(g));
    }
    let pref = ours.iter().copied().find(|g| theirs.contains(g))?;
    Some(if ke.is_some() { Err(pref) } else { Ok(pref) })
}

/// Responder: select an IKE suite (RFC 7296 2.7). Returns the chosen
/// proposal's number and suite.
pub(crate) fn select_ike(
    theirs: &[Proposal],
    ours: &[IkeProposal],
    ke: Option<DhGroup>,
) -> Result<(u8, IkeSuite), Refusal> {
    let mut wrong_group = None;
    for p in theirs.iter().filter(|p| p.protocol_id == protocol::IKE) {
        let d = decode(p);
        if d.unknown_type {
            continue;
        }
        for o in ours {
            let Some(encr) = first_common(&d.encr, &o.encr) else {
                continue;
            };
            let Some(prf) = first_common(&d.prf, &o.prf) else {
                continue;
            };
            let Some(integ) = pick_integ(encr, d.has_integ, &d.integ, &o.integ) else {
                continue;
            };
            match pick_group(&d.dh, &o.dh, ke) {
                Some(Ok(dh)) => {
                    return Ok((
                        p.num,
                        IkeSuite {
                            encr,
                            prf,
                            integ,
                            dh,
                        },
                    ))
                }
                Some(Err(g)) => {
                    wrong_group.get_or_insert(g);
                }
                None => {}
            }
        }
    }
    Err(wrong_group.map_or(Refusal::NoProposal, Refusal::WrongGroup))
}

/// The integrity transform to pair with `encr`: none for an AEAD (and a
/// proposal that insists on one is refused, RFC 5282 8), else the first
/// common one. `None`: no acceptable choice.
fn pick_integ(
    encr: Encr,
    theirs_has_integ: bool,
    theirs: &[Integ],
    ours: &[Integ],
) -> Option<Option<Integ>> {
    if encr.is_aead() {
        (!theirs_has_integ).then_some(None)
    } else {
        first_common(theirs, ours).map(Some)
    }
}

/// Responder: select an ESP suite. `ke` is the KE payload's group in
/// CREATE_CHILD_SA; `pfs_allowed` false (IKE_AUTH) ignores D-H transforms.
pub(crate) fn select_esp(
    theirs: &[Proposal],
    ours: &[EspProposal],
    ke: Option<DhGroup>,
    pfs_allowed: bool,
) -> Result<(u8, u32, EspSuite), Refusal> {
    let mut wrong_group = None;
    for p in theirs.iter().filter(|p| p.protocol_id == protocol::ESP) {
        let Some(spi) = crate::msg::spi32(&p.spi) else {
            continue;
        };
        let d = decode(p);
        if d.unknown_type {
            continue;
        }
        for o in ours {
            let Some(encr) = first_common(&d.encr, &o.encr) else {
                continue;
            };
            let Some(integ) = pick_integ(encr, d.has_integ, &d.integ, &o.integ) else {
                continue;
            };
            let their_esn = if d.has_esn {
                d.esn.clone()
            } else {
                vec![false]
            };
            let our_esn = if o.esn.is_empty() {
                vec![false]
            } else {
                o.esn.clone()
            };
            let Some(esn) = first_common(&their_esn, &our_esn) else {
                continue;
            };
            let dh = if !pfs_allowed {
                None
            } else if d.has_dh {
                match pick_group(&d.dh, &o.dh, ke) {
                    Some(Ok(g)) => Some(g),
                    Some(Err(g)) => {
                        wrong_group.get_or_insert(g);
                        continue;
                    }
                    None => continue,
                }
            } else if o.dh.is_empty() {
                None
            } else {
                // We require PFS, they offer none.
                continue;
            };
            return Ok((
                p.num,
                spi,
                EspSuite {
                    encr,
                    integ,
                    dh,
                    esn,
                },
            ));
        }
    }
    Err(wrong_group.map_or(Refusal::NoProposal, Refusal::WrongGroup))
}

/// The responder's answer: one proposal with exactly one transform of each
/// type.
pub(crate) fn ike_chosen(num: u8, s: &IkeSuite, spi: &[u8]) -> Proposal {
    let mut t = vec![
        encr_transform(s.encr),
        simple(transform_type::PRF, s.prf.transform_id()),
    ];
    if let Some(i) = s.integ {
        t.push(simple(transform_type::INTEG, i.transform_id()));
    }
    t.push(simple(transform_type::DH, s.dh.transform_id()));
    Proposal {
        num,
        protocol_id: protocol::IKE,
        spi: spi.to_vec(),
        transforms: t,
    }
}

/// The responder's ESP answer.
pub(crate) fn esp_chosen(num: u8, s: &EspSuite, spi: u32) -> Proposal {
    let mut t = vec![encr_transform(s.encr)];
    if let Some(i) = s.integ {
        t.push(simple(transform_type::INTEG, i.transform_id()));
    }
    if let Some(g) = s.dh {
        t.push(simple(transform_type::DH, g.transform_id()));
    }
    t.push(simple(transform_type::ESN, u16::from(s.esn)));
    Proposal {
        num,
        protocol_id: protocol::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms: t,
    }
}

/// Initiator: check the responder's IKE answer is one of ours (RFC 7296
/// 2.7: exactly one proposal, one transform per type, offered by us).
pub(crate) fn accept_ike(answer: &[Proposal], ours: &[IkeProposal]) -> Option<(IkeSuite, Vec<u8>)> {
    let [p] = answer else { return None };
    let d = decode(p);
    let ([encr], [prf], [dh]) = (&d.encr[..], &d.prf[..], &d.dh[..]) else {
        return None;
    };
    let integ = match &d.integ[..] {
        [] if encr.is_aead() && !d.has_integ => None,
        [i] if !encr.is_aead() => Some(*i),
        _ => return None,
    };
    let ok = ours.iter().any(|o| {
        o.encr.contains(encr)
            && o.prf.contains(prf)
            && o.dh.contains(dh)
            && integ.is_none_or(|i| o.integ.contains(&i))
    });
    ok.then(|| {
        (
            IkeSuite {
                encr: *encr,
                prf: *prf,
                integ,
                dh: *dh,
            },
            p.spi.clone(),
        )
    })
}

/// Initiator: check the responder's ESP answer; returns its SPI and suite.
pub(crate) fn accept_esp(
    answer: &[Proposal],
    ours: &[EspProposal],
    pfs: bool,
) -> Option<(u32, EspSuite)> {
    let [p] = answer else { return None };
    if p.protocol_id != protocol::ESP {
        return None;
    }
    let spi = crate::msg::spi32(&p.spi)?;
    let d = decode(p);
    let [encr] = &d.encr[..] else { return None };
    let integ = match &d.integ[..] {
        [] if encr.is_aead() && !d.has_integ => None,
        [i] if !encr.is_aead() => Some(*i),
        _ => return None,
    };
    let esn = match &d.esn[..] {
        [] if !d.has_esn => false,
        [e] => *e,
        _ => return None,
    };
    let dh = match &d.dh[..] {
        [] if !d.has_dh => None,
        [g] if pfs => Some(*g),
        _ => return None,
    };
    let ok = ours.iter().any(|o| {
        let our_esn = if o.esn.is_empty() {
            &[false][..]
        } else {
            &o.esn[..]
        };
        o.encr.contains(encr)
            && integ.is_none_or(|i| o.integ.contains(&i))
            && our_esn.contains(&esn)
            && dh.is_none_or(|g| o.dh.contains(&g))
    });
    ok.then_some((
        spi,
        EspSuite {
            encr: *encr,
            integ,
            dh,
            esn,
        },
    ))
}

/// Wire proposals in strongSwan syntax, for error messages.
pub(crate) fn describe(theirs: &[Proposal]) -> String {
    let mut out = Vec::new();
    for p in theirs {
        let mut names = Vec::new();
        // strongSwan's order: encryption, integrity, PRF, D-H, ESN.
        let rank = |k: u8| match k {
            transform_type::ENCR => 0,
            transform_type::INTEG => 1,
            transform_type::PRF => 2,
            transform_type::DH => 3,
            transform_type::ESN => 4,
            _ => 5,
        };
        let mut ts: Vec<&Transform> = p.transforms.iter().collect();
        ts.sort_by_key(|t| rank(t.kind));
        for t in ts {
            let n = match t.kind {
                transform_type::ENCR => {
                    Encr::from_wire(t.id, t.key_length()).map(|e| e.name().to_owned())
                }
                transform_type::PRF => Prf::from_wire(t.id).map(|e| e.name().to_owned()),
                transform_type::INTEG => Integ::from_wire(t.id).map(|e| e.name().to_owned()),
                transform_type::DH => DhGroup::from_wire(t.id).map(|e| e.name().to_owned()),
                transform_type::ESN => Some(if t.id == 1 { "esn" } else { "noesn" }.to_owned()),
                _ => None,
            };
            names.push(n.unwrap_or_else(|| format!("unknown{}:{}", t.kind, t.id)));
        }
        out.push(names.join("-"));
    }
    if out.is_empty() {
        "(none)".into()
    } else {
        out.join(", ")
    }
}

/// Longest proposal text carried in a NO_PROPOSAL_CHOSEN notify.
const NPC_TEXT_MAX: usize = 512;

/// Data of our NO_PROPOSAL_CHOSEN notify: our proposals in strongSwan
/// syntax. RFC 7296 3.10.1 defines no data for this notify and receivers
/// ignore it; a latchkey initiator shows it, so that its error names both
/// sides' proposals. (Only algorithm names: a peer could learn them by
/// probing anyway.)
pub(crate) fn npc_data(ours: &str) -> Vec<u8> {
    let mut end = ours.len().min(NPC_TEXT_MAX);
    while !ours.is_char_boundary(end) {
        end -= 1;
    }
    ours.get(..end).unwrap_or_default().as_bytes().to_vec()
}

/// The responder's proposals from its NO_PROPOSAL_CHOSEN data, sanitized.
pub(crate) fn npc_theirs(data: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(data)
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(NPC_TEXT_MAX)
        .collect();
    if text.is_empty() {
        "unknown (the responder does not tell)".into()
    } else {
        text
    }
}

/// Our proposals in strongSwan syntax.
pub(crate) fn describe_ours<T: core::fmt::Display>(ours: &[T]) -> String {
    let v: Vec<String> = ours.iter().map(ToString::to_string).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_in_initiator_order_and_ke_group() {
        let ours = IkeProposal::parse_list("aes256gcm16-prfsha384-ecp256-x25519").unwrap();
        let theirs = ike_offer(
            &IkeProposal::parse_list(
                "aes128gcm16-prfsha256-x25519,aes256gcm16-aes128gcm16-prfsha256-prfsha384-x25519-ecp256",
            )
            .unwrap(),
            &[],
        );
        let (num, s) = select_ike(&theirs, &ours, Some(DhGroup::X25519)).unwrap();
        assert_eq!(num, 2);
        assert_eq!(s.encr, Encr::AesGcm16_256);
        assert_eq!(s.prf, Prf::HmacSha384);
        assert_eq!(s.dh, DhGroup::X25519);
        // KE group not acceptable: our preferred common group.
        let theirs = ike_offer(
            &IkeProposal::parse_list("aes256gcm16-prfsha384-modp2048-ecp256-x25519").unwrap(),
            &[],
        );
        assert_eq!(
            select_ike(&theirs, &ours, Some(DhGroup::Modp2048)),
            Err(Refusal::WrongGroup(DhGroup::Ecp256))
        );
        let chosen = ike_chosen(1, &s, &[]);
        assert_eq!(accept_ike(&[chosen], &ours).map(|x| x.0), Some(s));
        let none = IkeProposal::parse_list("aes128-sha256-modp2048").unwrap();
        assert_eq!(
            select_ike(&theirs, &none, Some(DhGroup::Modp2048)),
            Err(Refusal::NoProposal)
        );
        assert!(describe(&theirs).starts_with("aes256gcm16-prfsha384-modp2048"));
        // RFC 7296 3.3.6: an unknown transform type spoils the proposal.
        let mut odd = ike_offer(&ours, &[]);
        odd[0].transforms.push(simple(99, 1));
        assert_eq!(
            select_ike(&odd, &ours, Some(DhGroup::Ecp256)),
            Err(Refusal::NoProposal)
        );
    }

    #[test]
    fn proposal_text_in_notify_data() {
        assert_eq!(
            npc_theirs(&npc_data("aes128gcm16-prfsha256-x25519")),
            "aes128gcm16-prfsha256-x25519"
        );
        assert_eq!(npc_theirs(b""), "unknown (the responder does not tell)");
        assert_eq!(npc_theirs(b"a\x1b[2Jb\n"), "a[2Jb");
        let long = "\u{e9}".repeat(600);
        let d = npc_data(&long);
        assert!(d.len() <= 512 && core::str::from_utf8(&d).is_ok());
    }

    #[test]
    fn esp_selection() {
        let ours = EspProposal::parse_list("aes128-sha256,aes128gcm16-x25519").unwrap();
        let theirs = esp_offer(
            &EspProposal::parse_list("aes256gcm16,aes128gcm16").unwrap(),
            7,
            false,
        );
        let (num, spi, s) = select_esp(&theirs, &ours, None, false).unwrap();
        assert_eq!((num, spi), (2, 7));
        assert_eq!(s.encr, Encr::AesGcm16_128);
        assert_eq!(s.dh, None);
        let ans = esp_chosen(num, &s, 9);
        assert_eq!(accept_esp(&[ans], &ours, false), Some((9, s)));
        // PFS in CREATE_CHILD_SA.
        let theirs = esp_offer(
            &EspProposal::parse_list("aes128gcm16-x25519").unwrap(),
            7,
            true,
        );
        let (_, _, s) = select_esp(&theirs, &ours, Some(DhGroup::X25519), true).unwrap();
        assert_eq!(s.dh, Some(DhGroup::X25519));
    }
}
