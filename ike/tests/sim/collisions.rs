//! Simultaneous exchanges (RFC 7296 2.8.1, 2.8.2, 1.4.1).

use super::*;

#[test]
fn simultaneous_ike_rekey() {
    for seed in 80..85 {
        simultaneous_ike_rekey_seed(seed);
    }
}

fn simultaneous_ike_rekey_seed(seed: u64) {
    let mut sim = Sim::new(seed, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    let rb = sim.responder_sa();
    let now = sim.now;
    sim.nodes[0].ike.rekey_ike(now, id).unwrap();
    sim.nodes[1].ike.rekey_ike(now, rb).unwrap();
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.nodes[0].ike.ike_sa_count(), 1);
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 1);
    let a = sim.nodes[0].ike.ike_sas().pop().unwrap();
    let b = sim.nodes[1].ike.ike_sas().pop().unwrap();
    assert_eq!((a.spi_i, a.spi_r), (b.spi_i, b.spi_r));
    assert_eq!(sim.nodes[0].ike.child_sas(a.id).len(), 1);
    // RFC 7296 2.8.2: settled at once, by the nonces (no retry).
    for i in 0..2 {
        let rekeyed: Vec<_> = sim
            .events(i)
            .iter()
            .filter(|e| matches!(e, Event::IkeSaRekeyed { .. }))
            .collect();
        assert_eq!(rekeyed.len(), 1, "{:?}", sim.events(i));
    }
    let temp_failures = exchanges_of(&sim.log, exchange::CREATE_CHILD_SA).len();
    assert_eq!(temp_failures, 4, "two requests, two responses");
    assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
    // Still works.
    sim.nodes[0].ike.liveness_check(sim.now, a.id).unwrap();
    sim.run_for(Duration::from_secs(3));
    assert!(sim.failures(0).is_empty());
}

#[test]
fn simultaneous_child_delete() {
    let mut sim = Sim::new(81, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    let rb = sim.responder_sa();
    let (ca, cb) = (sim.children(0)[0].clone(), sim.children(1)[0].clone());
    let now = sim.now;
    sim.nodes[0].ike.delete_child(now, id, ca.id).unwrap();
    sim.nodes[1].ike.delete_child(now, rb, cb.id).unwrap();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.deleted_children(0).len(), 1);
    assert_eq!(sim.deleted_children(1).len(), 1);
    assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
}

#[test]
fn child_invalid_ke_retry() {
    let mut a = peer_a();
    a.child.esp_proposals = EspProposal::parse_list("aes128gcm16-ecp256-x25519").unwrap();
    let mut b = peer_b();
    b.child.esp_proposals = EspProposal::parse_list("aes128gcm16-x25519").unwrap();
    let mut sim = Sim::new(82, config(vec![]), config(vec![b]));
    let id = sim.handshake(a.clone());
    sim.nodes[0].ike.create_child(sim.now, id, a.child).unwrap();
    sim.run_until(Duration::from_secs(10), |s| s.children(0).len() == 2);
    let (ca, cb) = (&sim.children(0)[1], &sim.children(1)[1]);
    assert_eq!(ca.pfs, Some(DhGroup::X25519));
    assert_pair(ca, cb);
    assert!(sim.child_failures(0).is_empty());
}

#[test]
fn rekey_of_a_child_being_deleted() {
    let mut sim = Sim::new(83, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    let rb = sim.responder_sa();
    let (ca, cb) = (sim.children(0)[0].clone(), sim.children(1)[0].clone());
    let now = sim.now;
    sim.nodes[1].ike.delete_child(now, rb, cb.id).unwrap();
    sim.nodes[0].ike.rekey_child(now, id, ca.id).unwrap();
    sim.run_for(Duration::from_secs(10));
    // RFC 7296 2.25.1: TEMPORARY_FAILURE, then the delete wins.
    assert!(sim.nodes[0].ike.child_sas(id).is_empty());
    assert!(sim.nodes[1].ike.child_sas(rb).is_empty());
    assert_eq!(sim.children(0).len(), 1);
    assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
}
