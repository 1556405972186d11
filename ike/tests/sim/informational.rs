//! INFORMATIONAL: liveness, DPD, deletes, bad input (RFC 7296 1.4, 1.5, 2.4, 2.21).

use super::*;

#[test]
fn liveness_check_answered() {
    let mut sim = Sim::new(40, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    let before = sim.nodes[1].ike.stats().exchanges;
    sim.nodes[0].ike.liveness_check(sim.now, id).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.nodes[1].ike.stats().exchanges, before + 1);
    let infos = exchanges_of(&sim.log, exchange::INFORMATIONAL);
    assert_eq!(infos.len(), 2);
    assert!(sim.failures(0).is_empty());
}

#[test]
fn liveness_timeout_fails_the_sa() {
    let mut sim = Sim::new(41, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    sim.mute[1] = true;
    sim.nodes[0].ike.liveness_check(sim.now, id).unwrap();
    sim.run_until(Duration::from_secs(60), |s| !s.failures(0).is_empty());
    assert_eq!(sim.failures(0), vec![Error::Timeout]);
    // The child went with it.
    assert_eq!(sim.deleted_children(0).len(), 1);
    assert!(sim.nodes[0].ike.ike_sa(id).is_none());
}

#[test]
fn dpd_when_idle() {
    let mut a = peer_a();
    a.dpd_interval = Some(Duration::from_secs(10));
    let mut sim = Sim::new(42, config(vec![]), config(vec![peer_b()]));
    sim.handshake(a);
    sim.run_for(Duration::from_secs(35));
    let infos = exchanges_of(&sim.log, exchange::INFORMATIONAL);
    assert_eq!(infos.len(), 6, "three DPD exchanges in 35 s");
    sim.mute[1] = true;
    sim.run_until(Duration::from_secs(60), |s| !s.failures(0).is_empty());
    assert_eq!(sim.failures(0), vec![Error::Timeout]);
}

#[test]
fn delete_child_both_sides() {
    let mut sim = Sim::new(43, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    let ca = sim.children(0)[0].clone();
    let cb = sim.children(1)[0].clone();
    sim.nodes[0].ike.delete_child(sim.now, id, ca.id).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(
        sim.deleted_children(0),
        vec![(ca.id, ca.inbound_spi, ca.outbound_spi)]
    );
    assert_eq!(
        sim.deleted_children(1),
        vec![(cb.id, cb.inbound_spi, cb.outbound_spi)]
    );
    // RFC 7296 1.4.1: the response carries B's inbound SPI.
    let infos = exchanges_of(&sim.log, exchange::INFORMATIONAL);
    assert_eq!(infos.len(), 2);
    assert!(sim.nodes[0].ike.child_sas(id).is_empty());
    assert!(sim.nodes[0].ike.ike_sa(id).unwrap().established);
    assert_eq!(
        sim.nodes[0].ike.delete_child(sim.now, id, ca.id),
        Err(Error::UnknownSa)
    );
}

#[test]
fn delete_ike_takes_children() {
    let mut sim = Sim::new(44, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(peer_a());
    let rb = sim.responder_sa();
    sim.nodes[0].ike.delete_ike(sim.now, id).unwrap();
    sim.run_for(Duration::from_secs(2));
    for i in 0..2 {
        assert_eq!(sim.deleted_children(i).len(), 1);
        assert!(sim
            .events(i)
            .iter()
            .any(|e| matches!(e, Event::IkeSaDeleted { .. })));
        assert_eq!(sim.nodes[i].ike.ike_sa_count(), 0);
    }
    assert!(sim.nodes[1].ike.ike_sa(rb).is_none());
    assert_eq!(
        sim.nodes[0].ike.liveness_check(sim.now, id),
        Err(Error::UnknownSa)
    );
}

#[test]
fn garbage_and_forgeries_are_dropped() {
    let mut sim = Sim::new(45, config(vec![]), config(vec![peer_b()]));
    sim.handshake(peer_a());
    let auth = exchanges_of(&sim.log, exchange::IKE_AUTH)[0].clone();
    let b = &mut sim.nodes[1].ike;
    let now = sim.now;
    b.handle_datagram(now, auth.remote, auth.local, b"garbage");
    // A replayed IKE_AUTH request is answered from the cache...
    b.handle_datagram(now, auth.remote, auth.local, &auth.data);
    assert_eq!(b.stats().cached_responses, 1);
    // ...a tampered one is dropped silently (integrity).
    let mut bad = auth.data.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    b.handle_datagram(now, auth.remote, auth.local, &bad);
    assert_eq!(b.stats().drops(DropReason::Malformed), 1);
    assert_eq!(b.stats().drops(DropReason::IntegrityFailed), 1);
    while b.poll_transmit().is_some() {}
}

/// RFC 7296 2.4: after a restart the initiator sends INITIAL_CONTACT and
/// the responder drops the stale IKE SA (and its child SAs).
#[test]
fn initial_contact_after_restart() {
    let mut sim = Sim::new(46, config(vec![]), config(vec![peer_b()]));
    sim.handshake(peer_a());
    let stale = sim.responder_sa();
    let auth = exchanges_of(&sim.log, exchange::IKE_AUTH);
    assert_eq!(auth.len(), 2);
    // A restarts: a fresh endpoint with no memory of the SA.
    sim.nodes[0].ike = Ike::new(config(vec![]), rng(4600), Box::new(AcceptAll));
    sim.nodes[0].events.clear();
    sim.handshake(peer_a());
    assert_eq!(sim.established(1).len(), 2);
    assert!(sim.nodes[1].ike.ike_sa(stale).is_none());
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 1);
    assert!(sim
        .events(1)
        .iter()
        .any(|e| matches!(e, Event::IkeSaDeleted { sa } if *sa == stale)));
    assert_eq!(sim.deleted_children(1).len(), 1);
    // A second IKE SA to the same peer carries no INITIAL_CONTACT, so
    // both stay.
    sim.initiate(peer_a());
    sim.run_until(Duration::from_secs(10), |s| s.established(1).len() == 3);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 2);
}
