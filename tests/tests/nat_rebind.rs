//! RFC 7296 2.23: the initiator sits behind a NAT that rebinds its mapping
//! (a new outer port) while the SA is up. The responder follows the
//! source of the initiator's next authenticated IKE message, and its ESP
//! follows too: the child SA's datagrams go to the new mapping, not into
//! the one the NAT forgot.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: failing loudly is the point"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use endpoint::{btns_peer, Endpoint, EndpointConfig};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

type Outer = (Arc<UdpSocket>, JoinHandle<()>);

/// One port of the NAT: datagrams from the inside (to `front`) go out from
/// the current outer socket to `target`; what comes back to that outer
/// socket goes to the inside sender. `rebind` opens a new outer socket and
/// forgets the old one: replies to it are lost, as at a NAT whose mapping
/// expired.
struct NatPort {
    front: Arc<UdpSocket>,
    outer: Arc<Mutex<Outer>>,
    inside: Arc<Mutex<Option<SocketAddr>>>,
}

impl NatPort {
    async fn new(target: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let inside = Arc::new(Mutex::new(None));
        let outer = Arc::new(Mutex::new(Self::outer(front.clone(), inside.clone()).await));
        let (f, o, i) = (front.clone(), outer.clone(), inside.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = f.recv_from(&mut buf).await else {
                    return;
                };
                *i.lock().unwrap() = Some(from);
                let sock = o.lock().unwrap().0.clone();
                let _ = sock.send_to(&buf[..n], target).await;
            }
        });
        Self {
            front,
            outer,
            inside,
        }
    }

    async fn outer(front: Arc<UdpSocket>, inside: Arc<Mutex<Option<SocketAddr>>>) -> Outer {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let s = sock.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, _)) = s.recv_from(&mut buf).await else {
                    return;
                };
                let to = *inside.lock().unwrap();
                if let Some(to) = to {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
        (sock, task)
    }

    fn addr(&self) -> SocketAddr {
        self.front.local_addr().unwrap()
    }

    fn outer_addr(&self) -> SocketAddr {
        self.outer.lock().unwrap().0.local_addr().unwrap()
    }

    async fn rebind(&self) {
        let new = Self::outer(self.front.clone(), self.inside.clone()).await;
        let old = std::mem::replace(&mut *self.outer.lock().unwrap(), new);
        old.1.abort();
    }
}

#[tokio::test]
async fn esp_follows_the_peers_new_nat_mapping() {
    let right = Endpoint::bind(
        EndpointConfig::loopback(),
        vec![btns_peer("any", ts("10.0.0.1/32"), ts("10.0.0.0/24"))],
    )
    .await
    .unwrap();
    let nat_ike = NatPort::new(right.ike_addr()).await;
    let nat_natt = NatPort::new(right.natt_addr()).await;
    let left = Endpoint::bind(EndpointConfig::loopback(), vec![])
        .await
        .unwrap();
    let mut lp = btns_peer("right", ts("10.0.0.9/32"), ts("10.0.0.1/32"));
    lp.remote_natt_port = nat_natt.addr().port();
    // Liveness checks carry the IKE message the responder learns the new
    // mapping from.
    lp.dpd_interval = Some(Duration::from_millis(500));
    let (ch, acc) = tokio::join!(left.connect(lp, nat_ike.addr()), right.accept());
    let mut ch = ch.unwrap();
    let rch = acc.unwrap();
    let (a, b): (SocketAddr, SocketAddr) = (
        "10.0.0.9:5000".parse().unwrap(),
        "10.0.0.1:7000".parse().unwrap(),
    );
    rch.send(b, a, b"before").await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), ch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"before");
    let ike = right.status().await.unwrap().ike_sas[0].clone();
    assert_eq!(ike.remote, nat_natt.outer_addr(), "the NAT's mapping");
    // R7: a latched flow's inquiry says where the peer is.
    let flow = rch.latch(b, a).await.unwrap();
    let old_outer = nat_natt.outer_addr();
    let info = flow.inquire().unwrap();
    assert_eq!(info.current_nat.unwrap().peer_outer, Some(old_outer));
    assert_eq!(
        info.params.unwrap().nat().unwrap().peer_outer,
        Some(old_outer)
    );

    nat_natt.rebind().await;
    let new_outer = nat_natt.outer_addr();
    // The initiator's next liveness check comes from the new mapping.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = right.status().await.unwrap();
        if st.ike_sas[0].remote == new_outer {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "IKE did not follow the NAT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The child SA's ESP goes there too.
    rch.send(b, a, b"after").await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), ch.recv())
        .await
        .expect("the datagram must reach the new mapping")
        .unwrap();
    assert_eq!(d.data, b"after");
    // R7: the inquiry follows the NAT; R8: the latched parameters do not
    // change.
    let info = flow.inquire().unwrap();
    let now = info.current_nat.unwrap();
    assert_eq!(now.peer_outer, Some(new_outer));
    assert!(now.peer_behind_nat, "the initiator is behind a NAT");
    assert_eq!(
        info.params.unwrap().nat().unwrap().peer_outer,
        Some(old_outer)
    );
}
