//! RFC 4301 5.1 and 5.2: the SPD decides every packet, latched or not.
//! A child SA whose selectors cover a flow the SPD DISCARDs (or wants more
//! protection for) must not carry it, either way; a policy change applies
//! to the SAs already installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: failing loudly is the point"
)]

use std::net::SocketAddr;
use std::time::Duration;

use endpoint::{btns_peer, Channel, Endpoint, EndpointConfig};

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const PEERS: &str = r#"
[[peer]]
name = "btns"
id = "any"
auth = ["null"]
child_sa = "10.0.0.0/24"
btns = true
"#;

const STRICT: &str = r#"
[[policy]]
name = "no-6666"
proto = "udp"
remote_port = 6666
action = "discard"

[[policy]]
name = "strong-8443"
local_port = 8443
action = "protect"
protection = { min_key_bits = 256 }

[[policy]]
name = "rest"
action = "protect"
"#;

const OPEN: &str = r#"
[[policy]]
name = "rest"
action = "protect"
"#;

fn policy(spd: &str) -> pad::PolicyConfig {
    pad::PolicyConfig::from_toml(&format!("{PEERS}{spd}"), "spd.toml").unwrap()
}

/// The next datagram, within 5 s.
async fn next(ch: &mut Channel) -> endpoint::Datagram {
    tokio::time::timeout(Duration::from_secs(5), ch.recv())
        .await
        .expect("a datagram within 5 s")
        .expect("the channel is open")
}

async fn drops(ep: &Endpoint, reason: &str) -> u64 {
    let st = ep.status().await.unwrap();
    st.drops
        .iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, n)| *n)
        .sum()
}

#[tokio::test]
async fn the_spd_decides_packets_under_a_covering_sa() {
    let mut cfg = EndpointConfig::loopback();
    cfg.policy = Some(policy(STRICT));
    let right = Endpoint::bind(
        cfg,
        vec![btns_peer("btns", ts("10.0.0.1/32"), ts("10.0.0.0/24"))],
    )
    .await
    .unwrap();
    let left = Endpoint::bind(EndpointConfig::loopback(), vec![])
        .await
        .unwrap();
    let mut lp = btns_peer("right", ts("10.0.0.9/32"), ts("10.0.0.1/32"));
    lp.remote_natt_port = right.natt_addr().port();
    let accept = async {
        tokio::time::timeout(Duration::from_secs(10), right.accept())
            .await
            .expect("the responder accepts a channel")
    };
    let (ch, acc) = tokio::join!(left.connect(lp, right.ike_addr()), accept);
    let mut ch = ch.unwrap();
    let mut rch = acc.unwrap();
    let (server, client, blocked) = (
        addr("10.0.0.1:7000"),
        addr("10.0.0.9:5000"),
        addr("10.0.0.9:6666"),
    );

    // Outbound: the flow the SPD allows leaves, the others are refused
    // with the SPD's reason, though the SA's selectors cover them all.
    rch.send(server, client, b"allowed").await.unwrap();
    let d = next(&mut ch).await;
    assert_eq!(d.data, b"allowed");
    let e = rch.send(server, blocked, b"x").await.unwrap_err();
    assert!(e.to_string().contains("DISCARD"), "{e}");
    let e = rch
        .send(addr("10.0.0.1:8443"), client, b"x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("protection"), "{e}");

    // Inbound: the peer sends the DISCARDed flow, then an allowed one;
    // only the allowed one is delivered, the other is counted.
    ch.send(blocked, server, b"blocked").await.unwrap();
    ch.send(client, server, b"through").await.unwrap();
    let d = next(&mut rch).await;
    assert_eq!(d.data, b"through");
    assert_eq!(drops(&right, "SPD: DISCARD").await, 2, "one out, one in");
    assert_eq!(
        drops(&right, "SPD: the SA is below the entry's protection").await,
        1
    );

    // A policy change applies to the SA already installed.
    right.set_policy(policy(OPEN)).await.unwrap();
    rch.send(server, blocked, b"now allowed").await.unwrap();
    let d = next(&mut ch).await;
    assert_eq!(d.data, b"now allowed");
    ch.send(blocked, server, b"in too").await.unwrap();
    let d = next(&mut rch).await;
    assert_eq!(d.data, b"in too");
}
