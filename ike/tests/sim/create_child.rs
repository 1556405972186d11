//! CREATE_CHILD_SA: new child, child rekey, IKE rekey (RFC 7296 1.3).

use super::*;

fn up(seed: u64) -> (Sim, IkeSaId) {
    let mut sim = Sim::new(seed, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    (sim, id)
}

#[test]
fn new_child_with_pfs() {
    let mut b = peer_b();
    b.child.esp_proposals = EspProposal::parse_list("aes128gcm16-x25519,aes128gcm16").unwrap();
    let mut sim = Sim::new(50, config(vec![]), config(vec![b]));
    let id = sim.handshake(peer_a());
    assert_eq!(sim.children(0)[0].pfs, None);
    let mut c = child("10.1.0.0/24", "10.2.0.0/24");
    c.esp_proposals = EspProposal::parse_list("aes256gcm16-ecp256").unwrap();
    // B's policy must allow PFS with ecp256 too.
    sim.nodes[0].ike.create_child(sim.now, id, c).unwrap();
    sim.run_until(Duration::from_secs(10), |s| {
        s.children(0).len() == 2 || !s.child_failures(0).is_empty()
    });
    // B's ChildConfig has no ecp256 PFS proposal: refused.
    match &sim.child_failures(0)[..] {
        [e @ Error::NoProposalChosen { .. }] => {
            assert!(e.to_string().contains("aes256gcm16-ecp256"), "{e}");
            assert!(
                e.to_string()
                    .contains("theirs aes128gcm16-x25519, aes128gcm16"),
                "{e}"
            );
        }
        x => panic!("{x:?}"),
    }

    let mut c = child("10.1.0.0/24", "10.2.0.0/24");
    c.esp_proposals = EspProposal::parse_list("aes128gcm16-x25519,aes128gcm16").unwrap();
    sim.nodes[0].ike.create_child(sim.now, id, c).unwrap();
    sim.run_until(Duration::from_secs(10), |s| s.children(0).len() == 2);
    let (ca, cb) = (&sim.children(0)[1], &sim.children(1)[1]);
    assert_eq!(ca.pfs, Some(DhGroup::X25519));
    assert_eq!(cb.pfs, Some(DhGroup::X25519));
    assert_pair(ca, cb);
    assert_eq!(ca.replaces, None);
    assert_ne!(ca.inbound_spi, sim.children(0)[0].inbound_spi);
}

#[test]
fn child_rekey_replaces_and_deletes_old() {
    let (mut sim, id) = up(51);
    let old_a = sim.children(0)[0].clone();
    let old_b = sim.children(1)[0].clone();
    sim.nodes[0].ike.rekey_child(sim.now, id, old_a.id).unwrap();
    sim.run_for(Duration::from_secs(3));
    let (na, nb) = (&sim.children(0)[1], &sim.children(1)[1]);
    assert_eq!(na.replaces, Some(old_a.id));
    assert_eq!(nb.replaces, Some(old_b.id));
    assert_pair(na, nb);
    assert_ne!(na.outbound_encr_key, old_a.outbound_encr_key);
    assert_eq!(
        sim.deleted_children(0),
        vec![(old_a.id, old_a.inbound_spi, old_a.outbound_spi)]
    );
    assert_eq!(
        sim.deleted_children(1),
        vec![(old_b.id, old_b.inbound_spi, old_b.outbound_spi)]
    );
    assert_eq!(sim.nodes[0].ike.child_sas(id).len(), 1);
}

/// `ChildSaInfo::initiator` says which side initiated the exchange that
/// made the child SA: for a rekey, who initiated the rekey (the side that
/// may send on it at once, RFC 7296 2.8). Both roles, both directions.
#[test]
fn rekey_initiator_flag_in_both_roles() {
    let (mut sim, id) = up(60);
    let rb = sim.responder_sa();
    let (a0, b0) = (sim.children(0)[0].clone(), sim.children(1)[0].clone());
    // IKE_AUTH's child SA: A initiated it.
    assert!(a0.initiator && !b0.initiator);
    // A rekeys: A is the rekey's initiator, B its responder.
    sim.nodes[0].ike.rekey_child(sim.now, id, a0.id).unwrap();
    sim.run_for(Duration::from_secs(3));
    let (a1, b1) = (sim.children(0)[1].clone(), sim.children(1)[1].clone());
    assert_eq!((a1.replaces, b1.replaces), (Some(a0.id), Some(b0.id)));
    assert!(a1.initiator, "A initiated the rekey: {a1:?}");
    assert!(!b1.initiator, "B responded to the rekey: {b1:?}");
    // B (the IKE SA's responder) rekeys: the roles swap.
    sim.nodes[1].ike.rekey_child(sim.now, rb, b1.id).unwrap();
    sim.run_for(Duration::from_secs(3));
    let (a2, b2) = (sim.children(0)[2].clone(), sim.children(1)[2].clone());
    assert_eq!((a2.replaces, b2.replaces), (Some(a1.id), Some(b1.id)));
    assert_pair(&a2, &b2);
    assert!(!a2.initiator, "A responded to the rekey: {a2:?}");
    assert!(b2.initiator, "B initiated the rekey: {b2:?}");
    // The listing agrees with the events.
    let listed = sim.nodes[0].ike.child_sas(id);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].initiator), (a2.id, false));
}

#[test]
fn child_rekey_timer() {
    let mut a = peer_a();
    a.child.rekey_after = Some(Duration::from_secs(100));
    let mut sim = Sim::new(52, config(vec![]), config(vec![peer_b()]));
    sim.handshake(a);
    sim.run_for(Duration::from_secs(250));
    // Rekeyed at ~90-100 s and again at ~180-200 s.
    assert_eq!(sim.children(0).len(), 3);
    assert_eq!(sim.deleted_children(1).len(), 2);
    let last = sim.children(0)[2].clone();
    let lb = sim.children(1)[2].clone();
    assert_pair(&last, &lb);
}

#[test]
fn rekey_collision_keeps_exactly_one() {
    for seed in 53..58 {
        let (mut sim, id) = up(seed);
        let rb = sim.responder_sa();
        let (ca, cb) = (sim.children(0)[0].clone(), sim.children(1)[0].clone());
        let now = sim.now;
        sim.nodes[0].ike.rekey_child(now, id, ca.id).unwrap();
        sim.nodes[1].ike.rekey_child(now, rb, cb.id).unwrap();
        sim.run_for(Duration::from_secs(5));
        let la = sim.nodes[0].ike.child_sas(id);
        let lb = sim.nodes[1].ike.child_sas(rb);
        assert_eq!(la.len(), 1, "seed {seed}: {:?}", sim.events(0));
        assert_eq!(lb.len(), 1, "seed {seed}: {:?}", sim.events(1));
        assert_pair(&sim.installed(0, la[0].id), &sim.installed(1, lb[0].id));
        assert_ne!(la[0].id, ca.id);
        // The survivor was initiated by exactly one side.
        assert_ne!(la[0].initiator, lb[0].initiator, "seed {seed}");
        // Two new SAs were created on each side, three deleted
        // in total per side: the old one and the redundant one.
        assert_eq!(sim.children(0).len(), 3);
        assert_eq!(sim.deleted_children(0).len(), 2);
        assert_eq!(sim.deleted_children(1).len(), 2);
        assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
    }
}

#[test]
fn ike_rekey_moves_children() {
    let (mut sim, id) = up(59);
    let rb = sim.responder_sa();
    let old_info = sim.nodes[0].ike.ike_sa(id).unwrap();
    sim.nodes[0].ike.rekey_ike(sim.now, id).unwrap();
    sim.run_for(Duration::from_secs(15));
    let rekeyed = |i: usize| {
        sim.events(i).iter().find_map(|e| match e {
            Event::IkeSaRekeyed { old, new } => Some((*old, *new)),
            _ => None,
        })
    };
    let (oa, na) = rekeyed(0).unwrap();
    let (ob, nb) = rekeyed(1).unwrap();
    assert_eq!((oa, ob), (id, rb));
    assert!(sim.nodes[0].ike.ike_sa(id).is_none());
    assert!(sim.nodes[1].ike.ike_sa(rb).is_none());
    let ia = sim.nodes[0].ike.ike_sa(na).unwrap();
    let ib = sim.nodes[1].ike.ike_sa(nb).unwrap();
    assert_eq!((ia.spi_i, ia.spi_r), (ib.spi_i, ib.spi_r));
    assert_ne!(ia.spi_i, old_info.spi_i);
    assert!(ia.initiator && ia.established && ib.established);
    assert_eq!(ib.peer_id, Identity::Fqdn("a.example".into()));
    assert_eq!(sim.nodes[0].ike.child_sas(na).len(), 1);
    assert_eq!(sim.nodes[1].ike.child_sas(nb).len(), 1);
    assert!(sim.deleted_children(0).is_empty());
    assert!(!sim
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::IkeSaDeleted { .. })));
    // The new SA works: rekey a child on it, from the responder side.
    let cb = sim.nodes[1].ike.child_sas(nb)[0].clone();
    sim.nodes[1].ike.rekey_child(sim.now, nb, cb.id).unwrap();
    sim.run_for(Duration::from_secs(3));
    let la = sim.nodes[0].ike.child_sas(na);
    let lb = sim.nodes[1].ike.child_sas(nb);
    assert_eq!(la.len(), 1);
    assert_pair(&sim.installed(0, la[0].id), &sim.installed(1, lb[0].id));
    assert_eq!(sim.nodes[0].ike.ike_sa_count(), 1);
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 1);
}

#[test]
fn ike_rekey_timer() {
    let mut a = peer_a();
    a.ike_rekey_after = Some(Duration::from_secs(60));
    let mut sim = Sim::new(60, config(vec![]), config(vec![peer_b()]));
    sim.handshake(a);
    sim.run_for(Duration::from_secs(130));
    let n = sim
        .events(0)
        .iter()
        .filter(|e| matches!(e, Event::IkeSaRekeyed { .. }))
        .count();
    assert_eq!(n, 2);
    assert_eq!(sim.nodes[0].ike.ike_sa_count(), 1);
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 1);
    assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
}

#[test]
fn operations_on_unknown_or_unready_sas() {
    let mut sim = Sim::new(61, config(vec![]), config(vec![peer_b()]));
    let id = sim.initiate(peer_a());
    let c = child("10.1.0.0/24", "10.2.0.0/24");
    assert_eq!(
        sim.nodes[0].ike.create_child(sim.now, id, c.clone()),
        Err(Error::NotEstablished)
    );
    assert_eq!(
        sim.nodes[0].ike.create_child(sim.now, IkeSaId(999), c),
        Err(Error::UnknownSa)
    );
    assert_eq!(
        sim.nodes[0].ike.rekey_ike(sim.now, IkeSaId(999)),
        Err(Error::UnknownSa)
    );
}

/// What the endpoint driver does with a channel, from one side's events:
/// the channel starts on the first child SA; a child SA that replaces one
/// of the channel's (up, or deleted before) joins it; a Delete takes only
/// that child out. Checks that every rekey names a child of the channel
/// and that the channel never loses all its child SAs while the IKE SA is
/// up. Returns the channel's child SAs at the end.
fn follow_channel(events: &[Event]) -> Vec<ike::ChildSaId> {
    let mut up: Vec<ike::ChildSaId> = Vec::new();
    let mut gone: Vec<ike::ChildSaId> = Vec::new();
    for e in events {
        match e {
            Event::ChildSaEstablished(c) => match c.replaces {
                None => {
                    assert!(up.is_empty() && gone.is_empty(), "a second channel: {c:?}");
                    up.push(c.id);
                }
                Some(old) => {
                    assert!(
                        up.contains(&old) || gone.contains(&old),
                        "{:?} replaces {old:?}, not a child of the channel ({up:?})",
                        c.id
                    );
                    up.push(c.id);
                }
            },
            Event::ChildSaDeleted { child, .. } => {
                up.retain(|x| x != child);
                gone.push(*child);
                assert!(
                    !up.is_empty(),
                    "the Delete of {child:?} left the channel without a child SA"
                );
            }
            Event::IkeSaDeleted { .. } | Event::IkeSaFailed { .. } => {
                panic!("IKE SA went away: {e:?}")
            }
            _ => {}
        }
    }
    up
}

#[test]
fn rekeys_from_both_sides_keep_one_channel() {
    let mut collisions = 0;
    for seed in 60..72 {
        let mut a = peer_a();
        a.child.rekey_after = Some(Duration::from_secs(2));
        let mut b = peer_b();
        b.child.rekey_after = Some(Duration::from_secs(2));
        let mut sim = Sim::new(seed, config(vec![]), config(vec![b]));
        let id = sim.handshake(a);
        sim.faults = Faults {
            loss: 0.02,
            dup: 0.05,
            reorder: 0.3,
        };
        sim.run_for(Duration::from_secs(120));
        sim.faults = Faults::default();
        sim.run_for(Duration::from_secs(30));
        let rekeys = sim.children(0).len();
        assert!(rekeys > 40, "seed {seed}: only {rekeys} child SAs");
        let la = follow_channel(sim.events(0));
        let lb = follow_channel(sim.events(1));
        let (ca, cb) = (
            sim.nodes[0].ike.child_sas(id),
            sim.nodes[1].ike.child_sas(sim.responder_sa()),
        );
        assert_eq!(la.len(), ca.len(), "seed {seed}");
        assert_eq!(lb.len(), cb.len(), "seed {seed}");
        assert!(!ca.is_empty() && !cb.is_empty(), "seed {seed}");
        // RFC 7296 2.8.1: two child SAs that replace the same one.
        let mut replaced: Vec<_> = sim.children(0).iter().filter_map(|c| c.replaces).collect();
        let n = replaced.len();
        replaced.sort_by_key(|c| c.0);
        replaced.dedup();
        collisions += n - replaced.len();
    }
    assert!(collisions > 0, "no rekey collision happened");
}

/// A random source whose first `repeats` 32-bit draws are all `value`
/// (fill_bytes and 64-bit draws stay random): two ESP SPIs drawn in that
/// span are equal.
struct Repeating {
    inner: ChaCha20Rng,
    value: u32,
    repeats: u32,
}

impl RngCore for Repeating {
    fn next_u32(&mut self) -> u32 {
        if self.repeats > 0 {
            self.repeats -= 1;
            return self.value;
        }
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.inner.try_fill_bytes(dest)
    }
}
impl rand_core::CryptoRng for Repeating {}

/// RFC 4301 4.1: an inbound SPI names one SA at its receiver. The
/// responder's random source draws the same 32-bit value again and again:
/// its second child SA must still get an SPI of its own (before, it took
/// the live one's, and the endpoint failed to install it: "duplicate SPI",
/// about once per 100 000 SAs held with a real random source).
#[test]
fn a_new_inbound_spi_is_never_a_live_one() {
    let mut sim = Sim::new(58, config(vec![]), config(vec![peer_b()]));
    let rigged = Repeating {
        inner: ChaCha20Rng::seed_from_u64(58),
        value: 0x5eed_0001,
        repeats: 16,
    };
    sim.nodes[1].ike = Ike::new(
        config(vec![peer_b()]),
        Box::new(rigged),
        Box::new(AcceptAll),
    );
    let id = sim.handshake(peer_a());
    assert_eq!(sim.children(1)[0].inbound_spi, 0x5eed_0001);
    sim.nodes[0]
        .ike
        .create_child(sim.now, id, child("10.1.0.0/24", "10.2.0.0/24"))
        .unwrap();
    sim.run_until(Duration::from_secs(10), |s| {
        s.children(0).len() == 2 && s.children(1).len() == 2
    });
    let (first, second) = (&sim.children(1)[0], &sim.children(1)[1]);
    assert_ne!(second.inbound_spi, first.inbound_spi);
    assert_pair(&sim.children(0)[1], second);
    // Once the first is deleted, its SPI may be drawn again.
    sim.nodes[0]
        .ike
        .delete_child(sim.now, id, sim.children(0)[0].id)
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    assert!(sim.events(1).iter().any(|e| matches!(
        e,
        Event::ChildSaDeleted {
            inbound_spi: 0x5eed_0001,
            ..
        }
    )));
}
