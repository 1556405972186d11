//! Connection latching end to end (MISSION.md R1-R21): real endpoints on
//! loopback, real IKE (NULL authentication: BTNS peers) and ESP in UDP,
//! the latch table in the responder's driver. One or more tests per
//! requirement, named after it, and the attack the draft exists for.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: failing loudly is the point"
)]

use std::net::SocketAddr;
use std::time::Duration;

use endpoint::{
    btns_peer, Channel, ConnectionRequest, Direction, Endpoint, EndpointConfig, Error, FiveTuple,
    LatchState, PeerConfig, RequestedProtection, RestartPolicy,
};
use latch::PeerAuth;
use pad::alg::Encr;
use pad::{EspProposal, Protection};
use rand_core::SeedableRng;

/// The responder's inner address and the latched server port.
const SERVER: &str = "10.0.0.1:7000";
/// The address both BTNS peers assert, and the latched client port.
const CLIENT: &str = "10.0.0.9:5000";

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The latched connection as the responder sees it.
fn server_five() -> FiveTuple {
    FiveTuple::new(17, addr(SERVER), addr(CLIENT))
}

/// A responder that answers any BTNS peer asserting an address in
/// 10.0.0.0/24.
async fn responder(misbehave: bool) -> Endpoint {
    let mut cfg = EndpointConfig::loopback();
    cfg.misbehave = misbehave;
    Endpoint::bind(
        cfg,
        vec![btns_peer("btns", ts("10.0.0.1/32"), ts("10.0.0.0/24"))],
    )
    .await
    .unwrap()
}

/// An initiator (a BTNS peer); `misbehave`: an attacker that sends outside
/// its traffic selectors.
async fn initiator(misbehave: bool) -> Endpoint {
    let mut cfg = EndpointConfig::loopback();
    cfg.connect_timeout = Duration::from_secs(10);
    cfg.misbehave = misbehave;
    Endpoint::bind(cfg, vec![]).await.unwrap()
}

/// A BTNS peer configuration asserting `inner` (whole host, any port).
fn peer_to(right: &Endpoint, inner: &str) -> PeerConfig {
    let mut p = btns_peer("responder", ts(&format!("{inner}/32")), ts("10.0.0.1/32"));
    p.remote_natt_port = right.natt_addr().port();
    p
}

/// Connect `left` to `right`: the initiator's channel and the responder's.
async fn connect(left: &Endpoint, right: &Endpoint, peer: PeerConfig) -> (Channel, Channel) {
    let accept = async {
        tokio::time::timeout(Duration::from_secs(10), right.accept())
            .await
            .ok()
            .flatten()
    };
    let (ch, acc) = tokio::join!(left.connect(peer, right.ike_addr()), accept);
    (ch.unwrap(), acc.expect("the responder accepted a channel"))
}

/// The next datagram, waiting up to 300 ms: for "nothing arrives" checks
/// (after the sender's datagrams were already on their way).
async fn recv(ch: &mut Channel) -> Option<endpoint::Datagram> {
    tokio::time::timeout(Duration::from_millis(300), ch.recv())
        .await
        .ok()
        .flatten()
}

/// A datagram that must arrive (up to 5 s).
async fn expect(ch: &mut Channel) -> endpoint::Datagram {
    tokio::time::timeout(Duration::from_secs(5), ch.recv())
        .await
        .expect("a datagram within 5 s")
        .expect("the channel is open")
}

/// Wait until the responder has decapsulated `n` packets on child SA `id`.
async fn wait_packets_in(right: &Endpoint, id: u64, n: u64) {
    for _ in 0..100 {
        let st = right.status().await.unwrap();
        if st
            .child_sas
            .iter()
            .any(|(c, t)| c.id == id && t.packets_in >= n)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("child SA {id} did not receive {n} packets");
}

/// Peer A (BTNS) latched on the responder: the latch is created first
/// (Larval), A's child SA binds it.
async fn latched_to_a() -> (Endpoint, Endpoint, Channel, Channel, endpoint::LatchedFlow) {
    let right = responder(false).await;
    let flow = right
        .create_connection_latch(ConnectionRequest::new(server_five()))
        .await
        .unwrap();
    assert_eq!(flow.inquire().unwrap().state, LatchState::Larval);
    let a = initiator(false).await;
    let (ach, rach) = connect(&a, &right, peer_to(&right, "10.0.0.9")).await;
    let info = right.inquire(&server_five()).unwrap();
    assert_eq!(info.state, LatchState::Established);
    assert_eq!(
        info.params.as_ref().unwrap().first_sa(),
        Some(rach.child_sa().id)
    );
    (right, a, ach, rach, flow)
}

fn anon_peer(right: &Endpoint) -> u64 {
    let info = right.inquire(&server_five()).unwrap();
    match info.params.unwrap().peer().unwrap().auth {
        PeerAuth::Null { anonymous_peer } => anonymous_peer,
        ref other => panic!("expected an anonymous (NULL) peer, got {other:?}"),
    }
}

/// THE ATTACK (draft 1, 4): two BTNS peers assert the same inner address
/// to one responder. The flow latched to the first stays latched to it;
/// the second's child SA is narrowed around the flow; every packet the
/// second injects for the latched 5-tuple is dropped and counted.
#[tokio::test]
async fn attack_two_btns_peers_same_address() {
    let (right, _a, ach, mut rach, _flow) = latched_to_a().await;
    let victim = anon_peer(&right);
    ach.send(addr(CLIENT), addr(SERVER), b"from A")
        .await
        .unwrap();
    let d = expect(&mut rach).await;
    assert_eq!(d.data, b"from A");
    assert_eq!(d.latch, Some(right.inquire(&server_five()).unwrap().id));

    // The attacker: another BTNS peer asserting 10.0.0.9 too, and sending
    // outside whatever it is granted.
    let b = initiator(true).await;
    let (bch, mut rbch) = connect(&b, &right, peer_to(&right, "10.0.0.9")).await;
    // R13: narrowed around the latched point (udp 10.0.0.9:5000).
    let granted: Vec<pad::TrafficSelector> = rbch
        .child_sa()
        .remote_ts
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(!granted.is_empty());
    assert!(
        !granted
            .iter()
            .any(|t| t.matches(17, addr(CLIENT).ip(), addr(CLIENT).port())),
        "the attacker's SA must not cover the latched flow: {granted:?}"
    );
    assert_eq!(
        bch.child_sa().local_ts,
        rbch.child_sa().remote_ts,
        "both sides agree on the narrowed selectors"
    );

    const N: u64 = 200;
    let before = right.status().await.unwrap();
    for i in 0..N {
        bch.send(addr(CLIENT), addr(SERVER), format!("forged {i}").as_bytes())
            .await
            .unwrap();
    }
    // The forged packets are sent before this one on the same socket.
    // A legitimate flow of the attacker (outside the latch) still works.
    bch.send(addr("10.0.0.9:5001"), addr(SERVER), b"other port")
        .await
        .unwrap();
    let d = expect(&mut rbch).await;
    assert_eq!(d.data, b"other port");
    assert_eq!(d.latch, None);
    assert!(
        recv(&mut rach).await.is_none(),
        "nothing forged reached A's channel"
    );
    assert!(
        recv(&mut rbch).await.is_none(),
        "nothing forged reached B's channel"
    );

    let after = right.status().await.unwrap();
    let dropped = (after.esp_drops_for("SelectorMismatch")
        - before.esp_drops_for("SelectorMismatch"))
        + (after.latch_drops_total(Direction::Inbound)
            - before.latch_drops_total(Direction::Inbound));
    println!(
        "attack: {N} forged packets, 0 accepted on the latched flow, {dropped} dropped \
         (ESP selector check {}, latch check {})",
        after.esp_drops_for("SelectorMismatch"),
        after.latch_drops_total(Direction::Inbound)
    );
    assert_eq!(dropped, N, "every forged packet dropped and counted");

    // The latch is still bound to A, and A's flow still passes.
    let info = right.inquire(&server_five()).unwrap();
    assert_eq!(info.state, LatchState::Established);
    assert_eq!(anon_peer(&right), victim);
    ach.send(addr(CLIENT), addr(SERVER), b"A again")
        .await
        .unwrap();
    assert_eq!(expect(&mut rach).await.data, b"A again");
}

/// The same attack against a responder whose key manager does not narrow
/// (authorization off: the misbehaving-endpoint harness): the attacker's
/// SA covering the flow is installed, the latch turns BROKEN (RFC 5660),
/// is never re-bound, and the datapath drops every packet of the flow.
#[tokio::test]
async fn attack_datapath_holds_without_child_sa_authorization() {
    let right = responder(true).await;
    let _flow = right
        .create_connection_latch(ConnectionRequest::new(server_five()))
        .await
        .unwrap();
    let a = initiator(false).await;
    let (_ach, _rach) = connect(&a, &right, peer_to(&right, "10.0.0.9")).await;
    let victim = anon_peer(&right);
    let b = initiator(true).await;
    let (bch, mut rbch) = connect(&b, &right, peer_to(&right, "10.0.0.9")).await;
    let info = right.inquire(&server_five()).unwrap();
    assert_eq!(info.state, LatchState::Broken);
    assert_eq!(info.conflicting_sas, vec![rbch.child_sa().id]);
    const N: u64 = 100;
    for _ in 0..N {
        bch.send(addr(CLIENT), addr(SERVER), b"forged")
            .await
            .unwrap();
    }
    assert!(recv(&mut rbch).await.is_none());
    let mut st = right.status().await.unwrap();
    for _ in 0..100 {
        if st.latch_drops_for(Direction::Inbound, "Broken") >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        st = right.status().await.unwrap();
    }
    assert_eq!(st.latch_drops_for(Direction::Inbound, "Broken"), N);
    assert_eq!(anon_peer(&right), victim, "never re-bound (R8)");
}

/// R5: while the latch is Larval nothing of the flow is sent or accepted:
/// an SA that does not fit the latch is narrowed around it, outbound
/// packets are dropped; the fitting SA establishes it.
#[tokio::test]
async fn r5_no_packet_before_established() {
    let right = responder(false).await;
    let mut req = ConnectionRequest::new(server_five());
    req.protection = RequestedProtection::Protect(Protection {
        encr: vec![Encr::AesGcm16_256],
        min_key_bits: 256,
        ..Protection::default()
    });
    let flow = right.create_connection_latch(req).await.unwrap();
    let a = initiator(true).await;
    // AES-128: does not fit the latch.
    let (ach, mut rach) = connect(&a, &right, peer_to(&right, "10.0.0.9")).await;
    assert_eq!(flow.inquire().unwrap().state, LatchState::Larval);
    for _ in 0..10 {
        ach.send(addr(CLIENT), addr(SERVER), b"early")
            .await
            .unwrap();
    }
    assert!(
        recv(&mut rach).await.is_none(),
        "nothing accepted before Established"
    );
    match rach.send(addr(SERVER), addr(CLIENT), b"early reply").await {
        Err(Error::Dropped { latch, reason }) => {
            assert_eq!(latch, flow.id());
            assert_eq!(reason, "NotEstablished");
        }
        other => panic!("expected a latch drop, got {other:?}"),
    }
    let st = right.status().await.unwrap();
    assert_eq!(st.latch_drops_for(Direction::Outbound, "NotEstablished"), 1);
    assert_eq!(st.esp_drops_for("SelectorMismatch"), 10);

    // AES-256: fits; the latch is Established and the flow passes.
    let a2 = initiator(false).await;
    let mut p = peer_to(&right, "10.0.0.9");
    p.child.esp_proposals = EspProposal::parse_list("aes256gcm16").unwrap();
    let (ach2, mut rach2) = connect(&a2, &right, p).await;
    let info = flow.inquire().unwrap();
    assert_eq!(info.state, LatchState::Established);
    assert_eq!(
        info.params.unwrap().qop().unwrap().encr,
        Some(Encr::AesGcm16_256)
    );
    ach2.send(addr(CLIENT), addr(SERVER), b"now").await.unwrap();
    assert_eq!(expect(&mut rach2).await.data, b"now");
}

/// R6 (outbound): a latched flow leaves only under the latched SA, even
/// when the application sends it through another peer's channel; once no
/// matching SA exists it is dropped (packet loss, R9), never sent under
/// another SA.
#[tokio::test]
async fn r6_mismatched_sa_dropped() {
    let (right, _a, ach, rach, _flow) = latched_to_a().await;
    let mut ach = ach;
    let b = initiator(false).await;
    let (mut bch, rbch) = connect(&b, &right, peer_to(&right, "10.0.0.9")).await;
    // Sent through B's channel: leaves under A's SA, reaches A only.
    rbch.send(addr(SERVER), addr(CLIENT), b"to the latched peer")
        .await
        .unwrap();
    assert_eq!(expect(&mut ach).await.data, b"to the latched peer");
    assert!(recv(&mut bch).await.is_none());
    // A goes away: nothing matches the latch any more.
    ach.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        right.inquire(&server_five()).unwrap().state,
        LatchState::Established
    );
    match rbch.send(addr(SERVER), addr(CLIENT), b"lost").await {
        Err(Error::Dropped { reason, .. }) => assert_eq!(reason, "NoMatchingSa"),
        other => panic!("expected packet loss, got {other:?}"),
    }
    assert!(recv(&mut bch).await.is_none(), "never sent under B's SA");
    drop(rach);
    let st = right.status().await.unwrap();
    assert_eq!(st.latch_drops_for(Direction::Outbound, "NoMatchingSa"), 1);
}

/// R13 over real IKE: the second peer's proposal covering the latched
/// flow is narrowed; with narrowing off it is refused (TS_UNACCEPTABLE).
#[tokio::test]
async fn r13_child_sa_narrowed_around_latch() {
    let (right, _a, _ach, _rach, _flow) = latched_to_a().await;
    let b = initiator(false).await;
    let (bch, rbch) = connect(&b, &right, peer_to(&right, "10.0.0.9")).await;
    let remote: Vec<pad::TrafficSelector> = rbch
        .child_sa()
        .remote_ts
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let c = addr(CLIENT);
    assert!(!remote.iter().any(|t| t.matches(17, c.ip(), c.port())));
    // The rest of 10.0.0.9 is still granted.
    assert!(remote.iter().any(|t| t.matches(17, c.ip(), 5001)));
    assert!(remote.iter().any(|t| t.matches(17, c.ip(), 4999)));
    // The initiator installed what the responder narrowed to.
    assert_eq!(bch.child_sa().local_ts, rbch.child_sa().remote_ts);

    // Narrowing off: refused.
    let mut cfg = EndpointConfig::loopback();
    cfg.latching.narrow = false;
    let strict = Endpoint::bind(
        cfg,
        vec![btns_peer("btns", ts("10.0.0.1/32"), ts("10.0.0.0/24"))],
    )
    .await
    .unwrap();
    let _l = strict
        .create_connection_latch(ConnectionRequest::new(server_five()))
        .await
        .unwrap();
    let a = initiator(false).await;
    let _ = connect(&a, &strict, peer_to(&strict, "10.0.0.9")).await;
    let c2 = initiator(false).await;
    let r = c2
        .connect(peer_to(&strict, "10.0.0.9"), strict.ike_addr())
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Child {
                error: ike::Error::TsUnacceptable,
                ..
            }) | Err(Error::Ike {
                error: ike::Error::TsUnacceptable,
                ..
            })
        ),
        "expected TS_UNACCEPTABLE, got {r:?}"
    );
}

/// R14: a peer matching a PAD entry flagged latch_disable gets no latches
/// on the addresses it may assert; the refusal names the entry; its
/// channels work with traditional IPsec semantics.
#[tokio::test]
async fn r14_latch_disabled_peer() {
    let policy = pad::PolicyConfig::from_toml(
        r#"
        [[peer]]
        name = "legacy-btns"
        id = "any"
        auth = ["null"]
        child_sa = "10.0.0.0/24"
        btns = true
        latch_disable = true
        [[policy]]
        name = "default"
        action = "protect"
        "#,
        "r14.toml",
    )
    .unwrap();
    let mut cfg = EndpointConfig::loopback();
    cfg.policy = Some(policy);
    let right = Endpoint::bind(
        cfg,
        vec![btns_peer("btns", ts("10.0.0.1/32"), ts("10.0.0.0/24"))],
    )
    .await
    .unwrap();
    let e = right
        .create_connection_latch(ConnectionRequest::new(server_five()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("\"legacy-btns\""),
        "the refusal names the PAD entry: {e}"
    );
    let a = initiator(false).await;
    let (ach, mut rach) = connect(&a, &right, peer_to(&right, "10.0.0.9")).await;
    ach.send(addr(CLIENT), addr(SERVER), b"unlatched")
        .await
        .unwrap();
    let d = expect(&mut rach).await;
    assert_eq!(d.latch, None);
    assert!(right.inquire(&server_five()).is_none());
}

/// R16: datagrams decapsulated and queued before a latch change are
/// checked again at delivery: after a reset (every latch CLOSED) the
/// queued datagrams of the latched flow are dropped and counted.
#[tokio::test]
async fn r16_delivery_rechecked_after_change() {
    let (right, _a, ach, mut rach, flow) = latched_to_a().await;
    ach.send(addr(CLIENT), addr(SERVER), b"checked now")
        .await
        .unwrap();
    let d = expect(&mut rach).await;
    assert_eq!(d.latch, Some(flow.id()));
    for i in 0..5 {
        ach.send(addr(CLIENT), addr(SERVER), format!("queued {i}").as_bytes())
            .await
            .unwrap();
    }
    // Let them be decapsulated and queued, unread.
    wait_packets_in(&right, rach.child_sa().id, 6).await;
    let v0 = right.status().await.unwrap().latch_version;
    right
        .restart_key_manager(RestartPolicy::Reset)
        .await
        .unwrap();
    assert!(right.status().await.unwrap().latch_version > v0);
    assert_eq!(flow.inquire().unwrap().state, LatchState::Closed);
    assert!(
        recv(&mut rach).await.is_none(),
        "no queued datagram delivered"
    );
    let st = right.status().await.unwrap();
    assert_eq!(st.latch_drops_for(Direction::Delivery, "Closed"), 5);
}

/// R8: a PAD/SPD reload mid-connection leaves the Established latch as it
/// was, even when the new policy would refuse it.
#[tokio::test]
async fn r8_policy_reload_keeps_established_latch() {
    let (right, _a, ach, mut rach, flow) = latched_to_a().await;
    let before = flow.inquire().unwrap();
    let strict = pad::PolicyConfig::from_toml(
        r#"
        [[peer]]
        name = "nobody"
        id = "fqdn:nobody.invalid"
        auth = ["psk"]
        child_sa = "10.0.0.0/24"
        latch_disable = true
        [[policy]]
        name = "deny"
        action = "discard"
        "#,
        "reload.toml",
    )
    .unwrap();
    right.set_policy(strict).await.unwrap();
    let after = flow.inquire().unwrap();
    assert_eq!(after.state, LatchState::Established);
    assert_eq!(after.params, before.params);
    ach.send(addr(CLIENT), addr(SERVER), b"still latched")
        .await
        .unwrap();
    let d = expect(&mut rach).await;
    assert_eq!(d.latch, Some(flow.id()));
    // New latches follow the new policy.
    let e = right
        .create_connection_latch(ConnectionRequest::new(FiveTuple::new(
            17,
            addr(SERVER),
            addr("10.0.0.9:5002"),
        )))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("nobody") || e.to_string().contains("deny"),
        "{e}"
    );
}

/// R10: after a key manager restart (Survive) the latch keeps its peer;
/// the same BTNS peer coming back is a new anonymous peer to us, so the
/// latch is not re-bound to it: its new SA is narrowed around the flow
/// and the flow's packets are lost. With Reset every latch is CLOSED.
#[tokio::test]
async fn r10_key_manager_restart_never_rebinds() {
    let (right, a, _ach, _rach, flow) = latched_to_a().await;
    let mut alerts = right.alerts();
    let old_peer = anon_peer(&right);
    right
        .restart_key_manager(RestartPolicy::Survive)
        .await
        .unwrap();
    let (_ach2, rach2) = connect(&a, &right, peer_to(&right, "10.0.0.9")).await;
    let info = flow.inquire().unwrap();
    assert_eq!(info.state, LatchState::Established);
    assert_eq!(anon_peer(&right), old_peer, "never re-bound");
    assert!(info.current_sas.is_empty());
    let c = addr(CLIENT);
    assert!(!rach2.child_sa().remote_ts.iter().any(|t| t
        .parse::<pad::TrafficSelector>()
        .unwrap()
        .matches(17, c.ip(), c.port())));
    assert!(matches!(
        rach2.send(addr(SERVER), addr(CLIENT), b"x").await,
        Err(Error::Dropped { .. })
    ));

    right
        .restart_key_manager(RestartPolicy::Reset)
        .await
        .unwrap();
    assert_eq!(flow.inquire().unwrap().state, LatchState::Closed);
    let mut saw_reset = false;
    while let Ok(a) = alerts.try_recv() {
        if a.latch == flow.id() && a.to == LatchState::Closed {
            assert_eq!(a.reason, latch::AlertReason::KeyManagerRestart);
            saw_reset = true;
        }
    }
    assert!(saw_reset, "ALERT for the reset (RFC 5660)");
}

/// R2, R7, R12, R15, RFC 5660: inquiry by 5-tuple shows the peer and how
/// it authenticated, QoP, NAT information and SPIs; ENUMERATE lists the
/// latch; ALERTs report its changes; release destroys it.
#[tokio::test]
async fn r2_r7_inquire_enumerate_alerts_release() {
    let right = responder(false).await;
    let mut alerts = right.alerts();
    let flow = right
        .create_connection_latch(ConnectionRequest::new(server_five()))
        .await
        .unwrap();
    let a = initiator(false).await;
    let (_ach, rach) = connect(&a, &right, peer_to(&right, "10.0.0.9")).await;
    let info = right.inquire(&server_five()).unwrap();
    let p = info.params.unwrap();
    let peer = p.peer().unwrap();
    assert!(matches!(peer.auth, PeerAuth::Null { .. }));
    assert_eq!(peer.pad_entry, "default");
    assert_eq!(p.qop().unwrap().encr, Some(Encr::AesGcm16_128));
    assert_eq!(p.mode(), Some(pad::Mode::Tunnel));
    assert_eq!(
        p.spis(),
        Some((rach.child_sa().inbound_spi, rach.child_sa().outbound_spi))
    );
    let nat = p.nat().unwrap();
    assert_eq!(nat.peer_outer.map(|a| a.ip()), Some(a.ike_addr().ip()));
    assert_eq!(nat.peer_inner, Some(addr(CLIENT).ip()));
    assert_eq!(right.latches().len(), 1);
    let states: Vec<_> = std::iter::from_fn(|| alerts.try_recv().ok())
        .map(|a| a.to)
        .collect();
    assert_eq!(states, vec![LatchState::Larval, LatchState::Established]);
    let id = flow.id();
    flow.release().await.unwrap();
    assert!(right.latch_info(id).is_none());
    assert!(right.latches().is_empty());
}

/// R12, R15: a listener latch; the first datagram of each connection under
/// it creates that connection's latch, bound to the SA that carried it;
/// another BTNS peer's connection to the same port gets its own latch.
#[tokio::test]
async fn r12_listener_latch_binds_each_connection() {
    let right = responder(false).await;
    let listener = right
        .create_listener_latch(endpoint::ListenerRequest::new(endpoint::ThreeTuple::new(
            17,
            addr(SERVER),
        )))
        .await
        .unwrap();
    // Unique per 3-tuple.
    assert!(right
        .create_listener_latch(endpoint::ListenerRequest::new(endpoint::ThreeTuple::new(
            17,
            addr(SERVER),
        )))
        .await
        .is_err());
    let a = initiator(false).await;
    let (ach, mut rach) = connect(&a, &right, peer_to(&right, "10.0.0.9")).await;
    let b = initiator(false).await;
    let (bch, mut rbch) = connect(&b, &right, peer_to(&right, "10.0.0.10")).await;
    ach.send(addr(CLIENT), addr(SERVER), b"a").await.unwrap();
    let da = expect(&mut rach).await;
    bch.send(addr("10.0.0.10:5000"), addr(SERVER), b"b")
        .await
        .unwrap();
    let db = expect(&mut rbch).await;
    let (la, lb) = (da.latch.unwrap(), db.latch.unwrap());
    assert_ne!(la, lb);
    assert_ne!(la, listener);
    let ia = right.latch_info(la).unwrap();
    let ib = right.latch_info(lb).unwrap();
    assert_eq!(ia.state, LatchState::Established);
    assert_eq!(ib.state, LatchState::Established);
    assert!(!ia.params.unwrap().same_peer(&ib.params.unwrap()), "R20");
    assert_eq!(right.latches().len(), 3);
    right.release_latch(listener).await.unwrap();
    assert_eq!(right.latches().len(), 2);
}

/// R9: no matching SA within the Larval timeout: the latch FAILs (the
/// driver's timer drives the table) and an ALERT says so, as though the
/// connection were reset; its packets are plain loss meanwhile.
#[tokio::test]
async fn r9_larval_timeout_reported() {
    let mut cfg = EndpointConfig::loopback();
    cfg.latching.larval_timeout = Some(Duration::from_millis(200));
    let right = Endpoint::bind(cfg, vec![]).await.unwrap();
    let mut alerts = right.alerts();
    let flow = right
        .create_connection_latch(ConnectionRequest::new(server_five()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let a = tokio::time::timeout_at(deadline, alerts.recv())
            .await
            .expect("an ALERT before the deadline")
            .unwrap();
        if a.to == LatchState::Failed {
            assert_eq!(a.latch, flow.id());
            assert_eq!(a.reason, latch::AlertReason::Timeout);
            break;
        }
    }
    assert_eq!(flow.inquire().unwrap().state, LatchState::Failed);
}

/// R7, R20 with BTNS public keys (RFC 7670 raw keys under a BTNS PAD
/// entry): the latch shows the peer's key fingerprint; a second peer with
/// another key asserting the same address is narrowed around the latch.
#[tokio::test]
async fn r7_btns_key_peer_latched_by_fingerprint() {
    use certs::{KeyAlgorithm, PrivateKey};
    use std::sync::Arc;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let key = |rng: &mut rand_chacha::ChaCha20Rng| {
        Arc::new(PrivateKey::generate(KeyAlgorithm::Ed25519, rng).unwrap())
    };
    let (server, alice, mallory) = (key(&mut rng), key(&mut rng), key(&mut rng));
    let raw =
        |name: &str, own: &Arc<PrivateKey>, peers: Vec<certs::PublicKey>, l: &str, r: &str| {
            let mut p =
                endpoint::peer_config(name, endpoint::AuthMethod::RawPublicKey, None, ts(l), ts(r));
            p.credentials = ike::Credentials {
                private_key: Some(own.clone()),
                peer_keys: peers,
                ..ike::Credentials::default()
            };
            p
        };
    let right = Endpoint::bind(
        EndpointConfig::loopback(),
        vec![raw(
            "btns-keys",
            &server,
            vec![alice.public_key().clone(), mallory.public_key().clone()],
            "10.0.0.1/32",
            "10.0.0.0/24",
        )],
    )
    .await
    .unwrap();
    let flow = right
        .create_connection_latch(ConnectionRequest::new(server_five()))
        .await
        .unwrap();
    let to_right = |own: &Arc<PrivateKey>| {
        let mut p = raw(
            "responder",
            own,
            vec![server.public_key().clone()],
            "10.0.0.9/32",
            "10.0.0.1/32",
        );
        p.remote_natt_port = right.natt_addr().port();
        p
    };
    let a = initiator(false).await;
    let (_ach, _rach) = connect(&a, &right, to_right(&alice)).await;
    let info = flow.inquire().unwrap();
    assert_eq!(info.state, LatchState::Established);
    let params = info.params.unwrap();
    match &params.peer().unwrap().auth {
        PeerAuth::Btns { fingerprint, .. } => {
            assert_eq!(fingerprint.0, alice.public_key().fingerprint().0);
        }
        other => panic!("expected a BTNS key peer, got {other:?}"),
    }
    // Mallory's key is a BTNS peer of its own: the SA negotiated inside
    // IKE_AUTH is narrowed there already (ike hands the policy hook the
    // credential IKE_AUTH proved), around the flow latched to Alice (R13:
    // "reject or narrow"). Mallory's channel cannot carry that flow; its
    // other traffic passes.
    let m = initiator(false).await;
    let mch = m
        .connect(to_right(&mallory), right.ike_addr())
        .await
        .unwrap();
    let rm = tokio::time::timeout(Duration::from_secs(5), right.accept())
        .await
        .expect("Mallory's narrowed SA is a channel")
        .unwrap();
    assert_eq!(rm.child_sa().inbound_spi, mch.child_sa().outbound_spi);
    let err = mch
        .send(addr(CLIENT), addr(SERVER), b"hijack")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("traffic selectors"), "{err}");
    mch.send(addr("10.0.0.9:5001"), addr(SERVER), b"other flow")
        .await
        .unwrap();
    // Alice's SA and latch are untouched (R8): Mallory asserted the same
    // identity with INITIAL_CONTACT, but a BTNS identity proves nothing
    // without its key (RFC 7296 2.4 with RFC 5386).
    let st = right.status().await.unwrap();
    assert_eq!(st.ike_sas.len(), 2, "Alice's IKE SA and Mallory's");
    assert!(st
        .child_sas
        .iter()
        .any(|(c, _)| c.id == params.first_sa().unwrap()));
    assert_eq!(flow.inquire().unwrap().params.unwrap(), params, "R8");
}

/// R9: a packet of a latched flow that no SA covers is lost (dropped,
/// counted) and an SA is acquired for it: CREATE_CHILD_SA narrowed to the
/// flow; the latch then binds, and the flow passes.
#[tokio::test]
async fn r9_missing_sa_is_acquired() {
    let right = responder(false).await;
    let a = initiator(false).await;
    let mut p = peer_to(&right, "10.0.0.9");
    // The first child SA covers only the client's port 5000.
    p.child.local_ts = vec![ts("10.0.0.9/32[udp/5000]")];
    let (ach, _rach) = connect(&a, &right, p).await;
    let five = FiveTuple::new(17, addr("10.0.0.9:5001"), addr(SERVER));
    let flow = a
        .create_connection_latch(ConnectionRequest::new(five))
        .await
        .unwrap();
    assert_eq!(flow.inquire().unwrap().state, LatchState::Larval);
    match ach.send(five.local, five.remote, b"lost").await {
        Err(Error::Dropped { latch, .. }) => assert_eq!(latch, flow.id()),
        other => panic!("expected the first packet to be lost, got {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while flow.inquire().unwrap().state != LatchState::Established {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the acquired SA never bound the latch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut acquired = tokio::time::timeout(Duration::from_secs(5), right.accept())
        .await
        .unwrap()
        .expect("the responder sees the acquired child SA");
    assert_eq!(
        acquired.child_sa().remote_ts,
        vec!["10.0.0.9[17/5001]".to_string()]
    );
    ach.send(five.local, five.remote, b"now").await.unwrap();
    let d = expect(&mut acquired).await;
    assert_eq!(d.data, b"now");
    assert_eq!(d.src, five.local);
}
