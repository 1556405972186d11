//! A channel follows its child SA across many rekeys from both sides
//! (RFC 7296 1.3.3, 2.8, and 2.8.1 collisions) while datagrams flow both
//! ways: none is dropped as `no channel for child SA` (packets still in
//! flight on a replaced SA until its Delete, or on the new SA right after
//! it was installed), and the channel stays open and working throughout.

#![allow(clippy::unwrap_used, reason = "a test: failing loudly is the point")]

use std::net::SocketAddr;
use std::time::Duration;

use endpoint::{btns_peer, Channel, Endpoint, EndpointConfig};

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

fn no_channel_drops(st: &endpoint::Status) -> u64 {
    st.drops
        .iter()
        .filter(|(r, _)| r == "no channel for child SA")
        .map(|(_, n)| *n)
        .sum()
}

/// Sends a datagram every `gap` for `for_`, receiving meanwhile; returns
/// (sent, received, closed early).
async fn traffic(
    ch: &mut Channel,
    src: SocketAddr,
    dst: SocketAddr,
    gap: Duration,
    for_: Duration,
) -> (u64, u64, bool) {
    let end = tokio::time::Instant::now() + for_;
    let mut tick = tokio::time::interval(gap);
    let (mut sent, mut got) = (0u64, 0u64);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => return (sent, got, false),
            _ = tick.tick() => {
                if ch.send(src, dst, &sent.to_be_bytes()).await.is_ok() {
                    sent += 1;
                }
            }
            d = ch.recv() => match d {
                Some(_) => got += 1,
                None => return (sent, got, true),
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_survives_fast_rekeys_from_both_sides() {
    let mut rp = btns_peer("l", ts("10.0.0.2/32"), ts("10.0.0.1/32"));
    rp.child.rekey_after = Some(Duration::from_millis(120));
    let right = Endpoint::bind(EndpointConfig::loopback(), vec![rp])
        .await
        .unwrap();
    let mut lcfg = EndpointConfig::loopback();
    lcfg.connect_timeout = Duration::from_secs(20);
    let left = Endpoint::bind(lcfg, vec![]).await.unwrap();
    let mut lp = btns_peer("r", ts("10.0.0.1/32"), ts("10.0.0.2/32"));
    lp.remote_natt_port = right.natt_addr().port();
    lp.child.rekey_after = Some(Duration::from_millis(150));
    let (ch, acc) = tokio::join!(left.connect(lp, right.ike_addr()), right.accept());
    let mut ch = ch.unwrap();
    let mut rch = acc.unwrap();
    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:2000".parse().unwrap();

    let gap = Duration::from_micros(500);
    let run = Duration::from_secs(4);
    let ((ls, lg, lclosed), (rs, rg, rclosed)) = tokio::join!(
        traffic(&mut ch, a, b, gap, run),
        traffic(&mut rch, b, a, gap, run)
    );
    let (lst, rst) = (left.status().await.unwrap(), right.status().await.unwrap());
    eprintln!(
        "left sent {ls} got {lg}; right sent {rs} got {rg}; drops left {:?} right {:?}; esp drops left {:?} right {:?}",
        lst.drops, rst.drops, lst.esp_drops, rst.esp_drops
    );
    assert!(!lclosed && !rclosed, "a channel closed under rekeys");
    assert_eq!(no_channel_drops(&lst), 0, "left: {:?}", lst.drops);
    assert_eq!(no_channel_drops(&rst), 0, "right: {:?}", rst.drops);
    // Enough rekeys happened for the test to mean something: the child
    // SA ids grew well past the first one.
    let first = ch.child_sa().id;
    let now = lst.child_sas.iter().map(|(c, _)| c.id).max().unwrap();
    assert!(now >= first + 10, "only {} rekeys", now - first);

    // Still one working channel each way after the rekeys.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ch.send(a, b, b"after").await.unwrap();
    let d = loop {
        let d = tokio::time::timeout(Duration::from_secs(5), rch.recv())
            .await
            .unwrap()
            .unwrap();
        if d.data == b"after" {
            break d;
        }
    };
    rch.send(b, a, &d.data).await.unwrap();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), ch.recv())
            .await
            .unwrap()
            .unwrap();
        if e.data == b"after" {
            break;
        }
    }
    left.shutdown().await.unwrap();
    right.shutdown().await.unwrap();
}
