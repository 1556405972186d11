//! The responder of a child SA rekey keeps sending on the old SA until the
//! rekey's initiator shows it has the new one (RFC 7296 2.8: "The responder
//! can be assured that the initiator is prepared to receive messages on an
//! SA if either (1) it has received a cryptographically valid message on
//! the other half of the SA pair, or (2) the new SA rekeys an existing SA
//! and it receives an IKE request to close the replaced SA").
//!
//! Two endpoints talk through a UDP relay that can drop chosen IKE
//! messages, which stretches the window a real network leaves between the
//! responder installing the new SA and the initiator learning of it: the
//! relay drops the CREATE_CHILD_SA response once (the initiator learns of
//! the new SA only from its retransmission) and holds back the
//! initiator's Delete of the old SA until told otherwise.

#![allow(clippy::unwrap_used, reason = "a test: failing loudly is the point")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use endpoint::{btns_peer, Channel, Endpoint, EndpointConfig};
use tokio::net::UdpSocket;

const CREATE_CHILD_SA: u8 = 36;
const INFORMATIONAL: u8 = 37;
/// IKE header flags (RFC 7296 3.1).
const RESPONSE: u8 = 0x20;

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

/// What the relay drops.
#[derive(Debug, Default)]
struct Filter {
    /// CREATE_CHILD_SA responses (right to left) still to drop.
    drop_ccsa_responses: u32,
    /// Drop INFORMATIONAL requests from left to right (the Delete).
    hold_informational: bool,
    /// Dropped so far: CREATE_CHILD_SA responses, INFORMATIONAL requests.
    dropped: (u32, u32),
}

/// Exchange type and flags of an IKE message, on either port (the NAT-T
/// port's IKE messages start with the four zero octets of the non-ESP
/// marker, RFC 3948 2.2); `None` for ESP and keepalives.
fn ike_kind(d: &[u8], natt: bool) -> Option<(u8, u8)> {
    let d = if natt {
        d.strip_prefix(&[0u8; 4][..])?
    } else {
        d
    };
    Some((*d.get(18)?, *d.get(19)?))
}

/// Relays datagrams between `left` (whoever sends to the front socket)
/// and `target`, dropping what the filter says. Returns the front
/// address.
async fn relay(target: SocketAddr, natt: bool, filter: Arc<Mutex<Filter>>) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut left: Option<SocketAddr> = None;
        let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
        loop {
            tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { return };
                    left = Some(from);
                    let d = &a[..n];
                    if let Some((INFORMATIONAL, flags)) = ike_kind(d, natt) {
                        let mut f = filter.lock().unwrap();
                        if flags & RESPONSE == 0 && f.hold_informational {
                            f.dropped.1 += 1;
                            continue;
                        }
                    }
                    let _ = back.send_to(d, target).await;
                }
                r = back.recv_from(&mut b) => {
                    let Ok((n, _)) = r else { return };
                    let d = &b[..n];
                    if let Some((CREATE_CHILD_SA, flags)) = ike_kind(d, natt) {
                        let mut f = filter.lock().unwrap();
                        if flags & RESPONSE != 0 && f.drop_ccsa_responses > 0 {
                            f.drop_ccsa_responses -= 1;
                            f.dropped.0 += 1;
                            continue;
                        }
                    }
                    if let Some(l) = left {
                        let _ = front.send_to(d, l).await;
                    }
                }
            }
        }
    });
    addr
}

async fn child_ids(e: &Endpoint) -> Vec<(u64, u32)> {
    let st = e.status().await.unwrap();
    st.child_sas
        .iter()
        .map(|(c, _)| (c.id, c.inbound_spi))
        .collect()
}

/// Polls until `f` holds (at most 10 s).
async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `tag` on `from` and returns the SPI it arrived under on `to`
/// (`None` if it did not arrive within 700 ms). Other datagrams are
/// skipped.
async fn hop(
    from: &Channel,
    to: &mut Channel,
    src: SocketAddr,
    dst: SocketAddr,
    tag: &[u8],
) -> Option<u32> {
    from.send(src, dst, tag).await.unwrap();
    let end = tokio::time::Instant::now() + Duration::from_millis(700);
    loop {
        let d = tokio::time::timeout_at(end, to.recv()).await.ok()??;
        if d.data == tag {
            return Some(d.spi);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_responder_sends_on_old_sa_until_the_initiator_has_the_new_one() {
    // Right only answers; left rekeys its child SA once, early on.
    let rp = btns_peer("l", ts("10.0.0.2/32"), ts("10.0.0.1/32"));
    let right = Endpoint::bind(EndpointConfig::loopback(), vec![rp])
        .await
        .unwrap();
    let filter = Arc::new(Mutex::new(Filter {
        drop_ccsa_responses: 1,
        hold_informational: true,
        dropped: (0, 0),
    }));
    let ike_front = relay(right.ike_addr(), false, filter.clone()).await;
    let natt_front = relay(right.natt_addr(), true, filter.clone()).await;
    let left = Endpoint::bind(EndpointConfig::loopback(), vec![])
        .await
        .unwrap();
    let mut lp = btns_peer("r", ts("10.0.0.1/32"), ts("10.0.0.2/32"));
    lp.remote_natt_port = natt_front.port();
    lp.child.rekey_after = Some(Duration::from_secs(3));
    let (ch, acc) = tokio::join!(left.connect(lp, ike_front), right.accept());
    let mut lch = ch.unwrap();
    let mut rch = acc.unwrap();
    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:2000".parse().unwrap();

    // Before the rekey: one SA pair.
    let [(l_old, l_old_spi)] = child_ids(&left).await[..] else {
        panic!("left: not one child SA")
    };
    let [(r_old, r_old_spi)] = child_ids(&right).await[..] else {
        panic!("right: not one child SA")
    };
    assert_eq!(hop(&rch, &mut lch, b, a, b"r0").await, Some(l_old_spi));
    assert_eq!(hop(&lch, &mut rch, a, b, b"l0").await, Some(r_old_spi));

    // Left rekeys (after 2.7 to 3 s); right answers and installs the new
    // SA, but its response is lost: left does not have the new SA yet.
    wait_for("right installs the new child SA", || async {
        child_ids(&right).await.len() == 2
    })
    .await;
    // The relay may see right's response a little after right reports the
    // SA installed (a loaded machine): wait for it, then count.
    wait_for("the relay drops right's response", || async {
        filter.lock().unwrap().dropped.0 >= 1
    })
    .await;
    assert_eq!(filter.lock().unwrap().dropped.0, 1);
    assert_eq!(child_ids(&left).await.len(), 1, "left got the response");
    // Right's datagram must leave under the old SA: left has no other.
    assert_eq!(
        hop(&rch, &mut lch, b, a, b"r1").await,
        Some(l_old_spi),
        "right sent on an SA left does not have yet"
    );

    // Left's retransmission gets the (cached) response: left installs the
    // new SA and sends on it; its Delete of the old one is held back.
    wait_for("left installs the new child SA", || async {
        child_ids(&left).await.len() == 2
    })
    .await;
    wait_for("left's Delete of the old SA is held back", || async {
        filter.lock().unwrap().dropped.1 > 0
    })
    .await;
    let l_new_spi = child_ids(&left)
        .await
        .into_iter()
        .find(|(id, _)| *id != l_old)
        .unwrap()
        .1;
    // Right has neither seen a packet on the new SA nor the Delete: still
    // the old SA.
    assert_eq!(hop(&rch, &mut lch, b, a, b"r2").await, Some(l_old_spi));
    // (1) Left sends on the new SA; once right received on it, right sends
    // on it too.
    let r_got = hop(&lch, &mut rch, a, b, b"l1").await.unwrap();
    assert_ne!(r_got, r_old_spi, "left still sends on the old SA");
    assert_eq!(hop(&rch, &mut lch, b, a, b"r3").await, Some(l_new_spi));

    // The Delete goes through (left retransmits it): the old SA is gone on
    // both sides, and traffic keeps flowing on the new one.
    filter.lock().unwrap().hold_informational = false;
    wait_for("the old SA is deleted on both sides", || async {
        !child_ids(&right).await.iter().any(|(id, _)| *id == r_old)
            && !child_ids(&left).await.iter().any(|(id, _)| *id == l_old)
    })
    .await;
    assert_eq!(hop(&rch, &mut lch, b, a, b"r4").await, Some(l_new_spi));
    let st = left.status().await.unwrap();
    assert_eq!(st.esp_drops, vec![], "left dropped ESP: {:?}", st.esp_drops);
    left.shutdown().await.unwrap();
    right.shutdown().await.unwrap();
}

/// (2) Without any packet from the initiator on the new SA, the Delete of
/// the old one moves the responder to the new SA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_responder_moves_to_the_new_sa_on_the_delete_of_the_old() {
    let rp = btns_peer("l", ts("10.0.0.2/32"), ts("10.0.0.1/32"));
    let right = Endpoint::bind(EndpointConfig::loopback(), vec![rp])
        .await
        .unwrap();
    let filter = Arc::new(Mutex::new(Filter {
        drop_ccsa_responses: 0,
        hold_informational: true,
        dropped: (0, 0),
    }));
    let ike_front = relay(right.ike_addr(), false, filter.clone()).await;
    let natt_front = relay(right.natt_addr(), true, filter.clone()).await;
    let left = Endpoint::bind(EndpointConfig::loopback(), vec![])
        .await
        .unwrap();
    let mut lp = btns_peer("r", ts("10.0.0.1/32"), ts("10.0.0.2/32"));
    lp.remote_natt_port = natt_front.port();
    lp.child.rekey_after = Some(Duration::from_secs(3));
    let (ch, acc) = tokio::join!(left.connect(lp, ike_front), right.accept());
    let mut lch = ch.unwrap();
    let rch = acc.unwrap();
    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    let [(l_old, l_old_spi)] = child_ids(&left).await[..] else {
        panic!("left: not one child SA")
    };
    let [(r_old, _)] = child_ids(&right).await[..] else {
        panic!("right: not one child SA")
    };

    wait_for("left's Delete of the old SA is held back", || async {
        filter.lock().unwrap().dropped.1 > 0
    })
    .await;
    assert_eq!(child_ids(&right).await.len(), 2);
    let l_new_spi = child_ids(&left)
        .await
        .into_iter()
        .find(|(id, _)| *id != l_old)
        .unwrap()
        .1;
    // Left has the new SA, but right cannot know: the old SA still.
    assert_eq!(hop(&rch, &mut lch, b, a, b"r1").await, Some(l_old_spi));
    // The Delete arrives (left retransmits it): the new SA from then on.
    filter.lock().unwrap().hold_informational = false;
    wait_for("right deletes the old SA", || async {
        !child_ids(&right).await.iter().any(|(id, _)| *id == r_old)
    })
    .await;
    assert_eq!(hop(&rch, &mut lch, b, a, b"r2").await, Some(l_new_spi));
    left.shutdown().await.unwrap();
    right.shutdown().await.unwrap();
}
