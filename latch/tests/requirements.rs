//! One or more tests per requirement of MISSION.md (R1...R21) that the latch
//! table carries on its own, named after it. The IKE/ESP integration tests
//! come with the integration.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

use latch::*;
use pad::alg::{Encr, Integ};
use pad::{
    Identity, KeyFingerprint, Mode, PolicyConfig, Protection, SaQop, Services, Shortfall,
    TrafficSelector,
};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[[peer]]
name = "corp"
id = "fqdn:*.corp.example"
auth = ["psk", "certificate"]
trust_anchors = ["corp-root"]
child_sa = ["10.1.0.0/16"]

[[peer]]
name = "legacy"
id = "fqdn:legacy.example"
auth = ["psk"]
child_sa = ["10.9.0.0/16"]
latch_disable = true

[[peer]]
name = "btns"
id = "any"
auth = ["null", "raw_public_key"]
child_sa = ["10.0.0.0/16", "10.66.0.0/16"]
btns = true

[[policy]]
name = "public-web"
proto = "tcp"
local_port = 80
action = "bypass"

[[policy]]
name = "blocked"
remote = "10.66.0.0/16"
action = "discard"

[[policy]]
name = "strict"
remote = "10.1.0.0/16"
action = "protect"
protection = { min_key_bits = 256 }

[[policy]]
name = "default"
action = "protect"
"#;

fn table_with(config: LatchConfig) -> LatchTable {
    let c = PolicyConfig::from_toml(POLICY, "policy.toml").unwrap();
    LatchTable::new(c.pad, c.spd, config)
}

fn table() -> LatchTable {
    table_with(LatchConfig::default())
}

fn five(local: &str, remote: &str) -> FiveTuple {
    FiveTuple::new(6, local.parse().unwrap(), remote.parse().unwrap())
}

fn ts(s: &str) -> TrafficSelector {
    s.parse().unwrap()
}

fn btns_peer(n: u8) -> PeerIdentity {
    PeerIdentity {
        asserted: Identity::Null,
        authenticated: None,
        auth: PeerAuth::Btns {
            fingerprint: KeyFingerprint([n; 32]),
            key_der: vec![0x30, n],
        },
        pad_entry: "btns".into(),
    }
}

fn psk_peer(name: &str) -> PeerIdentity {
    let id = Identity::Fqdn(name.into());
    PeerIdentity {
        asserted: id.clone(),
        authenticated: Some(id),
        auth: PeerAuth::Psk,
        pad_entry: "corp".into(),
    }
}

fn gcm(bits: u16) -> SaQop {
    SaQop {
        mode: Mode::Transport,
        encr: Some(if bits == 256 {
            Encr::AesGcm16_256
        } else {
            Encr::AesGcm16_128
        }),
        integ: None,
        esn: false,
        replay_window: 64,
    }
}

fn sa(id: SaTag, peer: PeerIdentity, qop: SaQop, local: &str, remote: &str) -> ChildSaDescriptor {
    ChildSaDescriptor {
        id,
        peer,
        protection: qop,
        local_ts: vec![ts(local)].into(),
        remote_ts: vec![ts(remote)].into(),
        nat: NatInfo::default(),
        spi_in: u32::try_from(id).unwrap_or(0),
        spi_out: u32::try_from(id).unwrap_or(0) + 0x1000,
    }
}

fn drops(v: Verdict, why: DropReason) -> bool {
    matches!(v, Verdict::Drop { reason, .. } if reason == why)
}

fn alerts(t: &mut LatchTable) -> Vec<(LatchId, Option<LatchState>, LatchState, AlertReason)> {
    std::iter::from_fn(|| t.poll_alert())
        .map(|a| (a.latch, a.from, a.to, a.reason))
        .collect()
}

/// A latch established with BTNS peer 1 on 10.0.0.1:443 <- 10.0.0.9:5000.
fn established(t: &mut LatchTable, now: Instant) -> (LatchId, FiveTuple) {
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    t.sa_added(sa(1, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    assert_eq!(t.inquire(&f).unwrap().state, LatchState::Established);
    (id, f)
}

#[test]
fn r1_latched_parameters_recorded() {
    let now = Instant::now();
    let mut t = table();
    let (_, f) = established(&mut t, now);
    let info = t.inquire(&f).unwrap();
    let p = info.params.unwrap();
    assert_eq!(p.qop(), Some(&gcm(128)));
    assert_eq!(p.mode(), Some(Mode::Transport));
    assert_eq!(p.services(), Some(Services::ConfidentialityAndIntegrity));
    assert_eq!(p.qop().unwrap().key_bits(), 128);
    assert_eq!(p.qop().unwrap().replay_window, 64);
    assert_eq!(p.peer(), Some(&btns_peer(1)));
    assert_eq!(p.first_sa(), Some(1));
    assert_eq!(p.spis(), Some((1, 0x1001)));
    assert!(!p.is_bypass());
}

#[test]
fn r2_inquire_by_five_tuple() {
    let now = Instant::now();
    let mut t = table();
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    assert_eq!(t.inquire(&f), None);
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    let info = t.inquire(&f).unwrap();
    assert_eq!(
        (info.id, info.state, info.params),
        (id, LatchState::Larval, None)
    );
    assert_eq!(info.spd_entry, "default");
    assert_eq!(info.tuple, Tuple::Five(f));
    assert_eq!(t.inquire(&five("10.0.0.1:443", "10.0.0.9:5001")), None);
}

#[test]
fn r3_requests_limited_by_policy_and_privilege() {
    let now = Instant::now();
    let mut t = table();
    let mut req = ConnectionRequest::new(five("10.0.0.1:22", "10.0.0.9:5000"));
    req.protection = RequestedProtection::Bypass;
    let e = t.create_connection(req, now).unwrap_err();
    assert_eq!(
        e,
        LatchError::BypassNeedsPrivilege {
            entry: "default".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "SPD entry \"default\" requires protection; BYPASS needs privilege"
    );
    // The 256-bit minimum of "strict" is not met by a 128-bit request.
    let mut req = ConnectionRequest::new(five("10.0.0.1:22", "10.1.0.9:5000"));
    req.protection = RequestedProtection::Protect(Protection::default());
    assert_eq!(
        t.create_connection(req, now),
        Err(LatchError::ProtectionBelowPolicy {
            entry: "strict".into(),
            shortfall: Shortfall::KeyLength
        })
    );
    // Without a request, QoP comes from the SPD.
    let id = t
        .create_connection(
            ConnectionRequest::new(five("10.0.0.1:22", "10.1.0.9:5000")),
            now,
        )
        .unwrap();
    let Requirement::Protect(p) = t.info(id).unwrap().requirement else {
        panic!("strict protects")
    };
    assert_eq!(p.min_key_bits, 256);
    // An expected peer the SA's peer is not: the SA does not bind it.
    let f = five("10.0.0.1:23", "10.1.0.7:5000");
    let mut req = ConnectionRequest::new(f);
    req.expected_peer = Some("fqdn:db.corp.example".parse().unwrap());
    let id = t.create_connection(req, now).unwrap();
    t.sa_added(
        sa(
            7,
            psk_peer("web.corp.example"),
            gcm(256),
            "10.0.0.1",
            "10.1.0.7",
        ),
        now,
    )
    .unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Larval);
    t.sa_added(
        sa(
            8,
            psk_peer("db.corp.example"),
            gcm(256),
            "10.0.0.1[tcp/23]",
            "10.1.0.7",
        ),
        now,
    )
    .unwrap();
    assert_eq!(
        t.info(id).unwrap().state,
        LatchState::Larval,
        "7 and 8 disagree"
    );
    t.sa_removed(7);
    t.bind(id, 8, now).unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Established);
    // No PAD entry lets any peer assert 192.0.2.1: no SA could protect it.
    assert_eq!(
        t.create_connection(
            ConnectionRequest::new(five("10.0.0.1:1", "192.0.2.1:2")),
            now
        ),
        Err(LatchError::NoPeerMayAssert {
            remote: "192.0.2.1".parse().unwrap()
        })
    );
}

#[test]
fn r4_states_listener_larval_established_failed() {
    let now = Instant::now();
    let mut t = table();
    let l = t
        .create_listener(
            ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:443".parse().unwrap())),
            now,
        )
        .unwrap();
    assert_eq!(t.info(l).unwrap().state, LatchState::Listener);
    let (id, _) = established(&mut t, now);
    let f2 = five("10.0.0.1:443", "10.0.0.8:5000");
    let id2 = t
        .create_connection(ConnectionRequest::new(f2), now)
        .unwrap();
    assert_eq!(t.info(id2).unwrap().state, LatchState::Larval);
    t.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(t.info(id2).unwrap().state, LatchState::Failed);
    assert_eq!(t.info(id).unwrap().state, LatchState::Established);
    assert_eq!(LatchState::Failed.to_string(), "FAILED");
}

#[test]
fn r5_no_packet_before_established() {
    let now = Instant::now();
    let mut t = table();
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    // An SA that does not fit (integrity only, under the default's minimum).
    let mut weak = sa(1, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9");
    weak.protection.encr = None;
    weak.protection.integ = Some(Integ::HmacSha256_128);
    t.sa_added(weak, now).unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Larval);
    for sa_tag in [None, Some(1), Some(99)] {
        assert!(drops(
            t.check_inbound(&f, sa_tag),
            DropReason::NotEstablished
        ));
        assert!(drops(
            t.check_outbound(&f, sa_tag),
            DropReason::NotEstablished
        ));
    }
    assert_eq!(
        t.select_outbound_sa(&f),
        Outbound::Drop {
            latch: id,
            reason: DropReason::NotEstablished
        }
    );
    // Other flows are not latched.
    assert_eq!(
        t.check_inbound(&five("10.0.0.1:444", "10.0.0.9:5000"), None),
        Verdict::Pass(PassKind::NotLatched)
    );
}

#[test]
fn r6_only_matching_sa_after_established() {
    let now = Instant::now();
    let mut t = table();
    let (id, f) = established(&mut t, now);
    assert_eq!(
        t.check_inbound(&f, Some(1)),
        Verdict::Pass(PassKind::Latched(id))
    );
    assert_eq!(
        t.check_outbound(&f, Some(1)),
        Verdict::Pass(PassKind::Latched(id))
    );
    assert!(drops(t.check_inbound(&f, None), DropReason::Unprotected));
    assert!(drops(t.check_outbound(&f, None), DropReason::Unprotected));
    assert!(drops(t.check_inbound(&f, Some(42)), DropReason::UnknownSa));
    // A rekeyed SA with the same peer and protection carries it too.
    t.sa_added(sa(2, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    assert!(t.check_inbound(&f, Some(2)).passes());
    assert_eq!(t.select_outbound_sa(&f), Outbound::Use { latch: id, sa: 2 });
    // Same peer, SA not covering the flow.
    t.sa_added(sa(3, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.10"), now)
        .unwrap();
    assert!(drops(t.check_inbound(&f, Some(3)), DropReason::SaMismatch));
    t.sa_removed(1);
    t.sa_removed(2);
    assert_eq!(
        t.select_outbound_sa(&f),
        Outbound::Drop {
            latch: id,
            reason: DropReason::NoMatchingSa
        }
    );
    assert_eq!(t.info(id).unwrap().state, LatchState::Established);
}

#[test]
fn r7_inquiry_exposes_certificate_anchor_and_nat() {
    let now = Instant::now();
    let mut t = table();
    let f = five("10.0.0.1:443", "10.1.0.5:40000");
    t.create_connection(ConnectionRequest::new(f), now).unwrap();
    let id = Identity::Fqdn("gw.corp.example".into());
    let peer = PeerIdentity {
        asserted: id.clone(),
        authenticated: Some(id),
        auth: PeerAuth::Certificate {
            cert_der: vec![0x30, 0x82, 1, 2],
            trust_anchor: TrustAnchor {
                name: "corp-root".into(),
                der: vec![0x30, 9],
            },
        },
        pad_entry: "corp".into(),
    };
    let mut d = sa(5, peer, gcm(256), "10.0.0.1", "10.1.0.5");
    d.nat = NatInfo {
        peer_behind_nat: true,
        local_behind_nat: false,
        peer_outer: Some("198.51.100.7:4500".parse().unwrap()),
        peer_inner: Some("10.1.0.5".parse().unwrap()),
    };
    t.sa_added(d, now).unwrap();
    let p = t.inquire(&f).unwrap().params.unwrap();
    let PeerAuth::Certificate {
        cert_der,
        trust_anchor,
    } = &p.peer().unwrap().auth
    else {
        panic!("certificate peer")
    };
    assert_eq!(cert_der, &[0x30, 0x82, 1, 2]);
    assert_eq!(trust_anchor.name, "corp-root");
    assert_eq!(trust_anchor.der, [0x30, 9]);
    let nat = p.nat().unwrap();
    assert!(nat.peer_behind_nat && !nat.local_behind_nat);
    assert_eq!(nat.peer_outer, Some("198.51.100.7:4500".parse().unwrap()));
    assert_eq!(nat.peer_inner, Some("10.1.0.5".parse().unwrap()));
    assert_eq!(
        p.peer().unwrap().to_string(),
        "gw.corp.example (certificate, anchor corp-root)"
    );
}

#[test]
fn r7_inquiry_serializes_for_the_cli() {
    let now = Instant::now();
    let mut t = table();
    let (_, f) = established(&mut t, now);
    let json = serde_json::to_value(t.inquire(&f).unwrap()).unwrap();
    assert_eq!(json["state"], "ESTABLISHED");
    assert_eq!(json["spd_entry"], "default");
    assert_eq!(json["tuple"]["five"]["remote"], "10.0.0.9:5000");
    let peer = &json["params"]["peer"];
    assert_eq!(peer["auth"]["method"], "btns");
    assert_eq!(peer["auth"]["fingerprint"], "01".repeat(32));
    assert_eq!(peer["auth"]["key_der"], "3001");
    assert_eq!(json["params"]["qop"]["replay_window"], 64);
    assert_eq!(json["params"]["nat"]["peer_behind_nat"], false);
}

#[test]
fn r8_params_frozen_after_establish() {
    let now = Instant::now();
    let mut t = table();
    let (id, f) = established(&mut t, now);
    let before = t.info(id).unwrap().params.unwrap();
    // A configuration reload with a stricter SPD and without the BTNS entry.
    let reloaded = PolicyConfig::from_toml(
        "[[policy]]\nname = \"all\"\naction = \"protect\"\nprotection = { min_key_bits = 256 }\n",
        "reload.toml",
    )
    .unwrap();
    t.set_policy(reloaded.pad, reloaded.spd);
    // Rekey, removal of the first SA, an SA with other protection.
    t.sa_added(sa(2, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    t.sa_removed(1);
    t.sa_added(sa(3, btns_peer(1), gcm(256), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    t.sa_removed(3);
    let after = t.info(id).unwrap();
    assert_eq!(after.state, LatchState::Established);
    assert_eq!(after.params.unwrap(), before);
    assert!(t.check_inbound(&f, Some(2)).passes());
    // Binding to an SA of other protection is refused, not re-latched.
    t.sa_added(
        sa(
            4,
            btns_peer(1),
            gcm(256),
            "10.0.0.1[tcp/443]",
            "10.0.0.9[tcp/5000]",
        ),
        now,
    )
    .unwrap();
    assert_eq!(
        t.bind(id, 4, now),
        Err(LatchError::WrongState {
            latch: id,
            state: LatchState::Broken
        })
    );
    assert_eq!(t.info(id).unwrap().params.unwrap(), before);
}

#[test]
fn r9_larval_timeout_fails_with_alert() {
    let now = Instant::now();
    let mut t = table();
    assert_eq!(t.poll_timeout(), None);
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(30)));
    alerts(&mut t);
    t.handle_timeout(now + Duration::from_secs(29));
    assert_eq!(t.info(id).unwrap().state, LatchState::Larval);
    t.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(t.info(id).unwrap().state, LatchState::Failed);
    assert_eq!(
        alerts(&mut t),
        [(
            id,
            Some(LatchState::Larval),
            LatchState::Failed,
            AlertReason::Timeout
        )]
    );
    assert_eq!(t.poll_timeout(), None);
    assert!(drops(t.check_inbound(&f, None), DropReason::Failed));
    // A Failed latch can be replaced by a new create on the same 5-tuple.
    let id2 = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    assert_ne!(id, id2);
    assert_eq!(t.info(id), None);
    // Without a timeout, a missing SA is only packet loss.
    let mut t = table_with(LatchConfig {
        larval_timeout: None,
        ..LatchConfig::default()
    });
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    assert_eq!(t.poll_timeout(), None);
    t.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(t.info(id).unwrap().state, LatchState::Larval);
}

#[test]
fn r10_restart_never_rebinds() {
    let now = Instant::now();
    // Survive: bindings stay; another peer's SA breaks, never re-binds.
    let mut t = table();
    let (id, f) = established(&mut t, now);
    let f2 = five("10.0.0.1:443", "10.0.0.8:6000");
    let larval = t
        .create_connection(ConnectionRequest::new(f2), now)
        .unwrap();
    let before = t.info(id).unwrap().params.unwrap();
    t.key_manager_restarted(RestartPolicy::Survive);
    assert_eq!(t.info(id).unwrap().state, LatchState::Established);
    assert_eq!(t.info(larval).unwrap().state, LatchState::Larval);
    assert!(drops(t.check_inbound(&f, Some(1)), DropReason::UnknownSa));
    // The restarted key manager negotiates with peer 2 for the same address.
    let v = t.authorize_child_sa(
        &btns_peer(2),
        &gcm(128),
        &[ts("10.0.0.1")],
        &[ts("10.0.0.9")],
    );
    assert!(matches!(v, ChildSaVerdict::Narrow { .. }), "{v:?}");
    t.sa_added(sa(10, btns_peer(2), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    let info = t.info(id).unwrap();
    assert_eq!(info.state, LatchState::Broken);
    assert_eq!(info.conflicting_sas, [10]);
    assert_eq!(info.params.unwrap(), before, "still bound to peer 1");
    assert!(drops(t.check_inbound(&f, Some(10)), DropReason::Broken));
    t.sa_removed(10);
    t.sa_added(sa(11, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Established);
    assert_eq!(t.info(id).unwrap().params.unwrap(), before);
    assert!(t.check_inbound(&f, Some(11)).passes());

    // Reset: every latch is Closed and its packets dropped.
    let mut t = table();
    let (id, f) = established(&mut t, now);
    let l = t
        .create_listener(
            ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:22".parse().unwrap())),
            now,
        )
        .unwrap();
    alerts(&mut t);
    t.key_manager_restarted(RestartPolicy::Reset);
    let a = alerts(&mut t);
    assert!(a.contains(&(
        id,
        Some(LatchState::Established),
        LatchState::Closed,
        AlertReason::KeyManagerRestart
    )));
    assert!(a.contains(&(
        l,
        Some(LatchState::Listener),
        LatchState::Closed,
        AlertReason::KeyManagerRestart
    )));
    assert!(t.enumerate().iter().all(|i| i.state == LatchState::Closed));
    assert!(drops(t.check_inbound(&f, Some(1)), DropReason::Closed));
    // The closed latch keeps what it was latched to, for inquiry.
    assert_eq!(
        t.info(id).unwrap().params.unwrap().peer(),
        Some(&btns_peer(1))
    );
    // A new SA of another peer binds nothing.
    t.sa_added(sa(2, btns_peer(2), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Closed);
}

#[test]
fn r11_new_channel_same_addresses_bound_to_same_peer() {
    let now = Instant::now();
    let mut t = table();
    let f1 = five("10.0.0.1:443", "10.0.0.9:5000");
    let first = t
        .create_connection(ConnectionRequest::new(f1), now)
        .unwrap();
    t.sa_added(
        sa(1, btns_peer(1), gcm(128), "10.0.0.1[tcp/443]", "10.0.0.9"),
        now,
    )
    .unwrap();
    assert_eq!(t.info(first).unwrap().state, LatchState::Established);
    let f2 = five("10.0.0.1:8443", "10.0.0.9:5001");
    let id = t
        .create_connection(ConnectionRequest::new(f2), now)
        .unwrap();
    // Peer 2 asserts the same address: its SA for the new flow binds nothing,
    // and its proposal is narrowed around the Larval latch.
    let v = t.authorize_child_sa(
        &btns_peer(2),
        &gcm(128),
        &[ts("10.0.0.1[tcp/8443]")],
        &[ts("10.0.0.9")],
    );
    let ChildSaVerdict::Narrow { excluded, .. } = v else {
        panic!("narrowed: {v:?}")
    };
    assert_eq!(excluded, [id]);
    t.sa_added(
        sa(2, btns_peer(2), gcm(128), "10.0.0.1[tcp/8443]", "10.0.0.9"),
        now,
    )
    .unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Larval);
    assert_eq!(
        t.bind(id, 2, now),
        Err(LatchError::OtherPeerThanEstablished { latch: first })
    );
    t.sa_removed(2);
    // Peer 1's SA binds it.
    t.sa_added(
        sa(3, btns_peer(1), gcm(128), "10.0.0.1[tcp/8443]", "10.0.0.9"),
        now,
    )
    .unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Established);
    // Opting out of R11 lets another peer bind.
    let f3 = five("10.0.0.1:9443", "10.0.0.9:5002");
    let mut req = ConnectionRequest::new(f3);
    req.same_peer_as_existing = false;
    let id3 = t.create_connection(req, now).unwrap();
    t.sa_added(
        sa(4, btns_peer(2), gcm(128), "10.0.0.1[tcp/9443]", "10.0.0.9"),
        now,
    )
    .unwrap();
    assert_eq!(t.info(id3).unwrap().state, LatchState::Established);
}

#[test]
fn r12_listener_latch_unique_per_3tuple() {
    let now = Instant::now();
    let mut t = table();
    let three = ThreeTuple::new(6, "10.0.0.1:443".parse().unwrap());
    let l = t.create_listener(ListenerRequest::new(three), now).unwrap();
    assert_eq!(
        t.create_listener(ListenerRequest::new(three), now),
        Err(LatchError::ListenerExists { existing: l, three })
    );
    // Another 3-tuple (port, protocol, wildcard address) is another listener.
    t.create_listener(
        ListenerRequest::new(ThreeTuple::new(6, "10.0.0.1:444".parse().unwrap())),
        now,
    )
    .unwrap();
    t.create_listener(
        ListenerRequest::new(ThreeTuple::new(17, "10.0.0.1:443".parse().unwrap())),
        now,
    )
    .unwrap();
    t.create_listener(
        ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:443".parse().unwrap())),
        now,
    )
    .unwrap();
    t.destroy(l).unwrap();
    t.create_listener(ListenerRequest::new(three), now).unwrap();
}

#[test]
fn r12_connection_latch_conflicts() {
    let now = Instant::now();
    let mut t = table();
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    assert_eq!(
        t.create_connection(ConnectionRequest::new(f), now),
        Err(LatchError::ConnectionExists {
            existing: id,
            five: f
        })
    );
    // Two peers' SAs cover another 5-tuple: no latch can be created on it.
    let g = five("10.0.0.1:443", "10.0.0.7:5000");
    t.sa_added(sa(1, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.7"), now)
        .unwrap();
    t.sa_added(
        sa(2, btns_peer(2), gcm(128), "10.0.0.1", "10.0.0.0/24"),
        now,
    )
    .unwrap();
    assert_eq!(
        t.create_connection(ConnectionRequest::new(g), now),
        Err(LatchError::ConflictingSas { sas: vec![1, 2] })
    );
    t.sa_removed(2);
    // One peer, equal protection: created Established at once.
    let gid = t.create_connection(ConnectionRequest::new(g), now).unwrap();
    assert_eq!(t.info(gid).unwrap().state, LatchState::Established);
    // An SA that does not meet the request: refused.
    let h = five("10.0.0.1:443", "10.0.0.6:5000");
    let mut weak = sa(3, btns_peer(3), gcm(128), "10.0.0.1", "10.0.0.6");
    weak.protection.replay_window = 0;
    t.sa_added(weak, now).unwrap();
    assert_eq!(
        t.create_connection(ConnectionRequest::new(h), now),
        Err(LatchError::SaDoesNotMeetRequest { sa: 3 })
    );
}

#[test]
fn r12_listener_yields_connection_latches() {
    let now = Instant::now();
    let mut t = table();
    let l = t
        .create_listener(
            ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:443".parse().unwrap())),
            now,
        )
        .unwrap();
    t.sa_added(sa(1, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    let syn = five("10.0.0.1:443", "10.0.0.9:5000");
    assert_eq!(
        t.check_inbound(&syn, Some(1)),
        Verdict::Pass(PassKind::Listener(l))
    );
    assert!(drops(t.check_inbound(&syn, None), DropReason::Unprotected));
    let c = t.accept(l, syn, Some(1), now).unwrap();
    assert_eq!(t.info(c).unwrap().state, LatchState::Established);
    assert_eq!(
        t.check_inbound(&syn, Some(1)),
        Verdict::Pass(PassKind::Latched(c))
    );
    assert_eq!(
        t.accept(l, five("10.0.0.1:80", "10.0.0.9:5000"), Some(1), now),
        Err(LatchError::NotUnderListener {
            listener: l,
            five: five("10.0.0.1:80", "10.0.0.9:5000")
        })
    );
}

#[test]
fn r13_child_sa_narrowed_around_latch() {
    let now = Instant::now();
    let mut t = table();
    let (id, f) = established(&mut t, now);
    // Same peer, same protection: accepted as is.
    assert_eq!(
        t.authorize_child_sa(
            &btns_peer(1),
            &gcm(128),
            &[ts("10.0.0.1")],
            &[ts("10.0.0.0/24")]
        ),
        ChildSaVerdict::Accept
    );
    // Another peer proposing the whole /24: narrowed around the latch.
    let v = t.authorize_child_sa(
        &btns_peer(2),
        &gcm(128),
        &[ts("10.0.0.1")],
        &[ts("10.0.0.0/24")],
    );
    let ChildSaVerdict::Narrow {
        local_ts,
        remote_ts,
        excluded,
    } = v
    else {
        panic!("narrowed: {v:?}")
    };
    assert_eq!(excluded, [id]);
    assert_eq!(local_ts, [ts("10.0.0.1")]);
    assert_eq!(
        remote_ts,
        [
            ts("10.0.0.0-10.0.0.8"),
            ts("10.0.0.10-10.0.0.255"),
            ts("10.0.0.9[tcp/0-4999]"),
            ts("10.0.0.9[tcp/5001-65535]"),
        ]
    );
    assert!(!remote_ts
        .iter()
        .any(|s| s.matches(6, f.remote.ip(), f.remote.port())));
    // Same peer with other protection conflicts too.
    assert!(matches!(
        t.authorize_child_sa(
            &btns_peer(1),
            &gcm(256),
            &[ts("10.0.0.1")],
            &[ts("10.0.0.9")]
        ),
        ChildSaVerdict::Narrow { .. }
    ));
    // A proposal that is the latched flow itself: refused.
    assert_eq!(
        t.authorize_child_sa(
            &btns_peer(2),
            &gcm(128),
            &[ts("10.0.0.1[tcp/443]")],
            &[ts("10.0.0.9[tcp/5000]")]
        ),
        ChildSaVerdict::Refuse { latch: id }
    );
    // The remote side is the latched point itself, the local side wider:
    // the local side is narrowed instead.
    let v = t.authorize_child_sa(
        &btns_peer(2),
        &gcm(128),
        &[ts("10.0.0.1[tcp]")],
        &[ts("10.0.0.9[tcp/5000]")],
    );
    assert_eq!(
        v,
        ChildSaVerdict::Narrow {
            local_ts: vec![ts("10.0.0.1[tcp/0-442]"), ts("10.0.0.1[tcp/444-65535]")],
            remote_ts: vec![ts("10.0.0.9[tcp/5000]")],
            excluded: vec![id],
        }
    );
    // A proposal that would cover a Larval latch without fitting it (weaker
    // than its protection) is narrowed too, or the latch could never bind.
    let h = five("10.0.0.1:443", "10.0.0.30:7000");
    let larval = t.create_connection(ConnectionRequest::new(h), now).unwrap();
    let mut weak = gcm(128);
    weak.replay_window = 0;
    let v = t.authorize_child_sa(&btns_peer(3), &weak, &[ts("10.0.0.1")], &[ts("10.0.0.30")]);
    assert!(
        matches!(&v, ChildSaVerdict::Narrow { excluded, .. } if excluded == &[larval]),
        "{v:?}"
    );
    assert_eq!(
        t.authorize_child_sa(
            &btns_peer(3),
            &gcm(128),
            &[ts("10.0.0.1")],
            &[ts("10.0.0.30")]
        ),
        ChildSaVerdict::Accept
    );
    // A proposal not covering the local side: accepted.
    assert_eq!(
        t.authorize_child_sa(
            &btns_peer(2),
            &gcm(128),
            &[ts("10.0.0.2")],
            &[ts("10.0.0.0/24")]
        ),
        ChildSaVerdict::Accept
    );
    // Several latches, several selectors.
    let g = five("10.0.0.1:443", "10.0.0.20:7000");
    t.create_connection(ConnectionRequest::new(g), now).unwrap();
    t.sa_added(sa(2, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.20"), now)
        .unwrap();
    let v = t.authorize_child_sa(
        &btns_peer(2),
        &gcm(128),
        &[ts("10.0.0.1"), ts("10.0.0.2")],
        &[ts("10.0.0.0/24"), ts("10.0.1.0/24")],
    );
    let ChildSaVerdict::Narrow {
        remote_ts,
        excluded,
        ..
    } = v
    else {
        panic!("narrowed")
    };
    assert_eq!(excluded.len(), 2);
    for p in [f, g] {
        assert!(!remote_ts
            .iter()
            .any(|s| s.matches(6, p.remote.ip(), p.remote.port())));
    }
    assert!(remote_ts.contains(&ts("10.0.1.0/24")));
    // Refuse instead of narrowing, when so configured.
    let mut t = table_with(LatchConfig {
        narrow: false,
        ..LatchConfig::default()
    });
    let (id, _) = established(&mut t, now);
    assert_eq!(
        t.authorize_child_sa(
            &btns_peer(2),
            &gcm(128),
            &[ts("10.0.0.1")],
            &[ts("10.0.0.0/24")]
        ),
        ChildSaVerdict::Refuse { latch: id }
    );
}

#[test]
fn r14_latch_disabled_peer() {
    let now = Instant::now();
    let mut t = table();
    let e = t
        .create_connection(
            ConnectionRequest::new(five("10.0.0.1:443", "10.9.1.2:5000")),
            now,
        )
        .unwrap_err();
    assert_eq!(
        e,
        LatchError::LatchDisabledByPad {
            entry: "legacy".into(),
            remote: "10.9.1.2".parse().unwrap()
        }
    );
    assert_eq!(
        e.to_string(),
        "latching disabled by PAD entry \"legacy\" (latch_disable): its peers may assert 10.9.1.2"
    );
    // Its peers' child SAs keep traditional semantics: nothing to narrow.
    assert_eq!(
        t.authorize_child_sa(
            &psk_peer("legacy.example"),
            &gcm(128),
            &[ts("0.0.0.0/0")],
            &[ts("10.9.0.0/16")]
        ),
        ChildSaVerdict::Accept
    );
    // The MAY switch: latching off altogether.
    let mut t = table_with(LatchConfig {
        enabled: false,
        ..LatchConfig::default()
    });
    assert_eq!(
        t.create_connection(
            ConnectionRequest::new(five("10.0.0.1:443", "10.0.0.9:5000")),
            now
        ),
        Err(LatchError::LatchingDisabled)
    );
}

#[test]
fn r15_destroy_releases_latches() {
    let now = Instant::now();
    let mut t = table();
    let (id, f) = established(&mut t, now);
    alerts(&mut t);
    t.destroy(id).unwrap();
    assert_eq!(
        alerts(&mut t),
        [(
            id,
            Some(LatchState::Established),
            LatchState::Closed,
            AlertReason::Released
        )]
    );
    assert_eq!(t.inquire(&f), None);
    assert_eq!(
        t.check_inbound(&f, None),
        Verdict::Pass(PassKind::NotLatched)
    );
    assert_eq!(t.destroy(id), Err(LatchError::UnknownLatch(id)));
    // A connection the listener could not latch is destroyed with the error.
    let l = t
        .create_listener(
            ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:22".parse().unwrap())),
            now,
        )
        .unwrap();
    let g = five("10.0.0.1:22", "10.0.0.9:6000");
    let mut weak = sa(2, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9");
    weak.protection.replay_window = 0;
    t.sa_added(weak, now).unwrap();
    assert!(t.accept(l, g, Some(2), now).is_err());
    assert_eq!(t.inquire(&g), None);
}

#[test]
fn r16_version_moves_on_every_change() {
    let now = Instant::now();
    let mut t = table();
    let mut last = t.version();
    let mut moved = |t: &LatchTable, what: &str| {
        assert!(t.version() > last, "version did not move on {what}");
        last = t.version();
    };
    let f = five("10.0.0.1:443", "10.0.0.9:5000");
    let id = t.create_connection(ConnectionRequest::new(f), now).unwrap();
    moved(&t, "create");
    t.sa_added(sa(1, btns_peer(1), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    moved(&t, "sa_added + bind");
    let v_decap = t.version();
    assert_eq!(t.check_delivery(v_decap, &f, Some(1)), Delivery::Deliver);
    t.sa_added(sa(2, btns_peer(2), gcm(128), "10.0.0.2", "10.0.0.9"), now)
        .unwrap();
    moved(&t, "unrelated sa_added");
    // The version moved, the latch did not: re-checked and delivered.
    assert_eq!(t.check_delivery(v_decap, &f, Some(1)), Delivery::Deliver);
    t.sa_removed(2);
    moved(&t, "sa_removed");
    t.sa_added(sa(3, btns_peer(2), gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    moved(&t, "conflicting sa_added (Broken)");
    // A packet that passed at decapsulation, delivered after the latch broke.
    assert_eq!(
        t.check_delivery(v_decap, &f, Some(1)),
        Delivery::Drop {
            latch: Some(id),
            reason: DropReason::Broken
        }
    );
    t.destroy(id).unwrap();
    moved(&t, "destroy");
    t.key_manager_restarted(RestartPolicy::Survive);
    moved(&t, "restart");
    let l = t
        .create_listener(
            ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:1".parse().unwrap())),
            now,
        )
        .unwrap();
    moved(&t, "create_listener");
    t.destroy(l).unwrap();
    moved(&t, "destroy listener");
    let g = five("10.0.0.1:443", "10.0.0.8:5000");
    t.create_connection(ConnectionRequest::new(g), now).unwrap();
    moved(&t, "create");
    t.handle_timeout(now + Duration::from_secs(60));
    moved(&t, "timeout");
    assert_eq!(
        t.check_delivery(t.version() + 1, &g, None),
        Delivery::Drop {
            latch: None,
            reason: DropReason::FutureVersion
        }
    );
    // Every alert carries the version it made.
    let versions: Vec<u64> = std::iter::from_fn(|| t.poll_alert())
        .map(|a| a.version)
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

#[test]
fn r19_optional_protection() {
    let now = Instant::now();
    let mut t = table();
    // BYPASS policy (port 80): an app may ask for protection.
    let web = five("10.0.0.1:80", "10.0.0.9:5000");
    let mut req = ConnectionRequest::new(web);
    req.protection = RequestedProtection::Protect(Protection::default());
    let id = t.create_connection(req, now).unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Larval);
    assert!(drops(
        t.check_inbound(&web, None),
        DropReason::NotEstablished
    ));
    // Without a request, the BYPASS policy gives a BYPASS latch.
    let web2 = five("10.0.0.1:80", "10.0.0.9:5001");
    let b = t
        .create_connection(ConnectionRequest::new(web2), now)
        .unwrap();
    let info = t.info(b).unwrap();
    assert_eq!(info.state, LatchState::Established);
    assert!(info.params.unwrap().is_bypass());
    assert_eq!(
        t.check_inbound(&web2, None),
        Verdict::Pass(PassKind::Bypass(b))
    );
    // PROTECT policy: only a privileged app may ask for BYPASS.
    let ssh = five("10.0.0.1:22", "10.0.0.9:5000");
    let mut req = ConnectionRequest::new(ssh);
    req.protection = RequestedProtection::Bypass;
    assert!(matches!(
        t.create_connection(req.clone(), now),
        Err(LatchError::BypassNeedsPrivilege { entry }) if entry == "default"
    ));
    req.privileged = true;
    let p = t.create_connection(req, now).unwrap();
    assert_eq!(
        t.check_outbound(&ssh, None),
        Verdict::Pass(PassKind::Bypass(p))
    );
    assert_eq!(t.select_outbound_sa(&ssh), Outbound::Bypass(p));
    t.sa_added(sa(9, btns_peer(1), gcm(128), "10.0.0.2", "10.0.0.9"), now)
        .unwrap();
    assert!(drops(
        t.check_inbound(&ssh, Some(9)),
        DropReason::ProtectedOnBypass
    ));
    // Nobody overrides DISCARD, privileged or not, whatever is asked.
    for protection in [
        RequestedProtection::Policy,
        RequestedProtection::Bypass,
        RequestedProtection::Protect(Protection::default()),
    ] {
        let mut req = ConnectionRequest::new(five("10.0.0.1:22", "10.66.0.1:5000"));
        req.protection = protection;
        req.privileged = true;
        assert_eq!(
            t.create_connection(req, now),
            Err(LatchError::Discarded {
                entry: "blocked".into()
            })
        );
    }
    // Requested protection must meet or exceed the SPD's.
    let weak = Protection {
        services: Services::IntegrityOnly,
        ..Protection::default()
    };
    let mut req = ConnectionRequest::new(five("10.0.0.1:22", "10.0.0.9:5002"));
    req.protection = RequestedProtection::Protect(weak);
    assert_eq!(
        t.create_connection(req, now),
        Err(LatchError::ProtectionBelowPolicy {
            entry: "default".into(),
            shortfall: Shortfall::Services
        })
    );
    // Listeners too.
    let mut lr = ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:22".parse().unwrap()));
    lr.protection = RequestedProtection::Bypass;
    assert!(matches!(
        t.create_listener(lr, now),
        Err(LatchError::BypassNeedsPrivilege { .. })
    ));
}

#[test]
fn r20_applications_compare_latched_ids() {
    let now = Instant::now();
    let mut t = table();
    let (a, _) = established(&mut t, now);
    let g = five("10.0.0.1:444", "10.0.0.9:5000");
    let b = t.create_connection(ConnectionRequest::new(g), now).unwrap();
    let mut req = ConnectionRequest::new(five("10.0.0.1:445", "10.0.0.5:5000"));
    req.same_peer_as_existing = false;
    let c = t.create_connection(req, now).unwrap();
    t.sa_added(sa(5, btns_peer(5), gcm(128), "10.0.0.1", "10.0.0.5"), now)
        .unwrap();
    let p = |id| t.info(id).unwrap().params.unwrap();
    assert!(p(a).same_peer(&p(b)));
    assert!(!p(a).same_peer(&p(c)));
}

#[test]
fn rfc5660_enumerate_and_alerts() {
    let now = Instant::now();
    let mut t = table();
    let l = t
        .create_listener(
            ListenerRequest::new(ThreeTuple::new(6, "0.0.0.0:443".parse().unwrap())),
            now,
        )
        .unwrap();
    let (c, _) = established(&mut t, now);
    let all = t.enumerate();
    assert_eq!(
        all.iter().map(|i| (i.id, i.state)).collect::<Vec<_>>(),
        [(l, LatchState::Listener), (c, LatchState::Established)]
    );
    assert_eq!(
        alerts(&mut t),
        [
            (l, None, LatchState::Listener, AlertReason::Created),
            (c, None, LatchState::Larval, AlertReason::Created),
            (
                c,
                Some(LatchState::Larval),
                LatchState::Established,
                AlertReason::Bound(1)
            ),
        ]
    );
    assert_eq!(t.info(c).unwrap().current_sas, [1]);
}

/// The attack the draft exists for: two BTNS peers assert the same address.
#[test]
fn attack_two_btns_peers_same_address() {
    let now = Instant::now();
    let mut t = table();
    // Victim flow latched to BTNS peer 1.
    let (id, f) = established(&mut t, now);
    let victim = t.info(id).unwrap().params.unwrap();
    // Peer 2 (the attacker) also asserts 10.0.0.9 and proposes a child SA
    // covering everything to and from it.
    let attacker = btns_peer(2);
    let v = t.authorize_child_sa(&attacker, &gcm(128), &[ts("0.0.0.0/0")], &[ts("10.0.0.9")]);
    let ChildSaVerdict::Narrow { remote_ts, .. } = &v else {
        panic!("narrowed: {v:?}")
    };
    assert!(!remote_ts
        .iter()
        .any(|s| s.matches(6, f.remote.ip(), f.remote.port())));
    // A narrowed SA installs without touching the latch.
    let mut narrowed = sa(66, attacker.clone(), gcm(128), "0.0.0.0/0", "10.0.0.9");
    narrowed.remote_ts = remote_ts.clone().into();
    t.sa_added(narrowed, now).unwrap();
    assert_eq!(t.info(id).unwrap().state, LatchState::Established);
    // Even an SA that slipped past authorization (a bug, a manual SA) gains
    // nothing: packets it carries for the latched flow are dropped.
    t.sa_added(sa(67, attacker, gcm(128), "10.0.0.1", "10.0.0.9"), now)
        .unwrap();
    let (mut accepted, mut dropped) = (0u32, 0u32);
    for sa_tag in [66u64, 67] {
        for _ in 0..500 {
            if t.check_inbound(&f, Some(sa_tag)).passes() {
                accepted += 1;
            } else {
                dropped += 1;
            }
        }
    }
    assert_eq!((accepted, dropped), (0, 1000));
    // The flow stays latched to peer 1.
    assert_eq!(t.info(id).unwrap().params.unwrap(), victim);
    assert_eq!(
        t.info(id)
            .unwrap()
            .params
            .unwrap()
            .peer()
            .unwrap()
            .auth
            .fingerprint(),
        Some(&KeyFingerprint([1; 32]))
    );
    // Once the rogue SA is gone, peer 1's traffic flows again.
    t.sa_removed(67);
    assert!(t.check_inbound(&f, Some(1)).passes());
    assert!(drops(t.check_inbound(&f, Some(66)), DropReason::SaMismatch));
}
