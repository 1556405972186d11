//! Embedding latchkey: open a latched-to-be IPsec channel to a peer and send
//! datagrams through it, in-process and without root.
//!
//! Two endpoints run on loopback with free ports. The right one answers IKE
//! for any BTNS peer (NULL authentication, RFC 7619); the left one connects,
//! and the two exchange a datagram through ESP in UDP.
//!
//! ```sh
//! cargo run -p endpoint --example channel
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an example: literals known to parse"
)]

use endpoint::{btns_peer, Endpoint, EndpointConfig, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let ts = |s: &str| s.parse().expect("valid traffic selector");

    // The responder: which peers it accepts, and what they may send.
    let right = Endpoint::bind(
        EndpointConfig::loopback(),
        vec![btns_peer("left", ts("10.0.0.2/32"), ts("10.0.0.1/32"))],
    )
    .await?;

    // The initiator: connect, and get a channel once the child SA is up.
    let left = Endpoint::bind(EndpointConfig::loopback(), vec![]).await?;
    let mut peer = btns_peer("right", ts("10.0.0.1/32"), ts("10.0.0.2/32"));
    peer.remote_natt_port = right.natt_addr().port();
    let (ch, accepted) = tokio::join!(left.connect(peer, right.ike_addr()), right.accept());
    let ch = ch?;
    let mut theirs = accepted.ok_or(Error::Closed)?;

    println!(
        "IKE SA {} with {} ({}), child SA {} SPI out {:08x}",
        ch.ike_sa().suite,
        ch.ike_sa().peer_id,
        ch.ike_sa().peer_auth,
        ch.child_sa().suite,
        ch.child_sa().outbound_spi
    );

    let (src, dst) = (
        "10.0.0.1:1000".parse().unwrap(),
        "10.0.0.2:2000".parse().unwrap(),
    );
    ch.send(src, dst, b"hello through ESP").await?;
    if let Some(d) = theirs.recv().await {
        // Every datagram says which SA protected it.
        println!(
            "right received {:?} from {} under SPI {:08x}",
            String::from_utf8_lossy(&d.data),
            d.src,
            d.spi
        );
    }

    // Latch the connection on the right (R12): from now on it is bound to
    // this peer and this protection, whatever other peers assert (R13).
    let flow = theirs.latch(dst, src).await?;
    ch.send(src, dst, b"latched").await?;
    if let Some(d) = theirs.recv().await {
        println!(
            "right received {:?} under {:?}",
            String::from_utf8_lossy(&d.data),
            d.latch
        );
    }
    if let Some(info) = right.inquire(&flow.five_tuple()) {
        let peer = info
            .params
            .as_ref()
            .and_then(|p| p.peer().map(ToString::to_string));
        println!(
            "{} is {} with peer {}",
            info.tuple,
            info.state,
            peer.unwrap_or_default()
        );
    }
    // Changes of state come as ALERTs (RFC 5660).
    let mut alerts = right.alerts();
    flow.release().await?;
    if let Ok(a) = alerts.recv().await {
        println!(
            "ALERT: {} {} -> {} ({})",
            a.latch,
            a.from.map(|s| s.to_string()).unwrap_or_default(),
            a.to,
            a.reason
        );
    }

    ch.close().await?;
    left.shutdown().await?;
    right.shutdown().await?;
    Ok(())
}
