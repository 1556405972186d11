//! Traffic selector narrowing and the policy hook (RFC 7296 2.9, 2.21.3).

use super::*;

#[test]
fn responder_narrows() {
    let mut a = peer_a();
    a.child = child("10.1.0.0/16", "10.2.0.0/16");
    let mut sim = Sim::new(30, config(vec![]), config(vec![peer_b()]));
    sim.handshake(a);
    let (ca, cb) = (&sim.children(0)[0], &sim.children(1)[0]);
    assert_eq!(ca.local_ts, vec![ts("10.1.0.0/24")].into());
    assert_eq!(ca.remote_ts, vec![ts("10.2.0.0/24")].into());
    assert_pair(ca, cb);
}

struct Refuse;
impl ChildSaPolicy for Refuse {
    fn authorize(&mut self, _: &ChildSaRequest<'_>) -> ChildSaDecision {
        ChildSaDecision::Refuse
    }
}

/// Narrows TSi to one host.
struct OneHost;
impl ChildSaPolicy for OneHost {
    fn authorize(&mut self, r: &ChildSaRequest<'_>) -> ChildSaDecision {
        assert!(!r.initiator);
        ChildSaDecision::Accept {
            tsi: vec![ts("10.1.0.7")],
            tsr: r.tsr.to_vec(),
        }
    }
}

#[test]
fn policy_narrows_further() {
    let mut sim = Sim::with_policy(
        31,
        config(vec![]),
        config(vec![peer_b()]),
        Box::new(AcceptAll),
        Box::new(OneHost),
    );
    sim.handshake(peer_a());
    assert_eq!(sim.children(0)[0].local_ts, vec![ts("10.1.0.7")].into());
}

#[test]
fn refusal_is_ts_unacceptable_and_ike_sa_stays() {
    let mut sim = Sim::with_policy(
        32,
        config(vec![]),
        config(vec![peer_b()]),
        Box::new(AcceptAll),
        Box::new(Refuse),
    );
    let id = sim.initiate(peer_a());
    sim.run_until(Duration::from_secs(30), |s| !s.child_failures(0).is_empty());
    assert_eq!(sim.child_failures(0), vec![Error::TsUnacceptable]);
    assert_eq!(sim.child_failures(1), vec![Error::TsUnacceptable]);
    assert_eq!(sim.established(0).len(), 1);
    assert!(sim.children(0).is_empty());
    // The IKE SA is up: a liveness check works.
    sim.nodes[0].ike.liveness_check(sim.now, id).unwrap();
    sim.run_for(Duration::from_secs(5));
    assert!(sim.nodes[0].ike.ike_sa(id).unwrap().established);
    assert!(sim.failures(0).is_empty());
}

#[test]
fn disjoint_selectors_refused() {
    let mut a = peer_a();
    a.child = child("10.9.0.0/24", "10.2.0.0/24");
    let mut sim = Sim::new(33, config(vec![]), config(vec![peer_b()]));
    sim.initiate(a);
    sim.run_until(Duration::from_secs(30), |s| !s.child_failures(0).is_empty());
    assert_eq!(sim.child_failures(0), vec![Error::TsUnacceptable]);
    assert_eq!(sim.established(1).len(), 1);
}

/// The initiator's own policy refuses what the responder accepted: the
/// responder's half is deleted again.
#[test]
fn initiator_policy_refusal_deletes_the_responders_half() {
    let mut sim = Sim::with_policy(
        34,
        config(vec![]),
        config(vec![peer_b()]),
        Box::new(Refuse),
        Box::new(AcceptAll),
    );
    sim.initiate(peer_a());
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.child_failures(0), vec![Error::TsUnacceptable]);
    assert_eq!(sim.children(1).len(), 1);
    assert_eq!(sim.deleted_children(1).len(), 1);
    let rb = sim.responder_sa();
    assert!(sim.nodes[1].ike.child_sas(rb).is_empty());
    assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
}
