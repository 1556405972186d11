//! Two `endpoint::Endpoint`s on loopback, through real UDP sockets: IKE,
//! child SA, datagrams both ways through ESP in UDP, and failures reported
//! the way a user needs them.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: failing loudly is the point"
)]

use std::net::SocketAddr;
use std::time::Duration;

use endpoint::{peer_config, AuthMethod, Endpoint, EndpointConfig, EspProposal, IkeProposal};

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

fn psk(s: &str) -> Option<certs::Psk> {
    Some(certs::Psk::new(s.as_bytes()).unwrap())
}

async fn pair(
    auth: AuthMethod,
    left_psk: Option<certs::Psk>,
    right_psk: Option<certs::Psk>,
    left_ike: &str,
    right_ike: &str,
) -> (Endpoint, Endpoint, endpoint::PeerConfig) {
    let mut rp = peer_config(
        "left",
        auth,
        right_psk,
        ts("10.0.0.2/32"),
        ts("10.0.0.1/32"),
    );
    rp.ike_proposals = IkeProposal::parse_list(right_ike).unwrap();
    let right = Endpoint::bind(EndpointConfig::loopback(), vec![rp])
        .await
        .unwrap();
    let mut cfg = EndpointConfig::loopback();
    cfg.connect_timeout = Duration::from_secs(20);
    let left = Endpoint::bind(cfg, vec![]).await.unwrap();
    let mut lp = peer_config(
        "right",
        auth,
        left_psk,
        ts("10.0.0.1/32"),
        ts("10.0.0.0/24"),
    );
    lp.ike_proposals = IkeProposal::parse_list(left_ike).unwrap();
    lp.remote_natt_port = right.natt_addr().port();
    (left, right, lp)
}

#[tokio::test]
async fn btns_channel_carries_datagrams_both_ways() {
    let (left, right, lp) = pair(
        AuthMethod::Null,
        None,
        None,
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-prfsha256-x25519",
    )
    .await;
    let (ch, acc) = tokio::join!(left.connect(lp, right.ike_addr()), right.accept());
    let mut ch = ch.unwrap();
    let mut rch = acc.unwrap();
    // Narrowed by the responder (RFC 7296 2.9): 10.0.0.0/24 -> 10.0.0.2.
    assert_eq!(ch.child_sa().remote_ts, vec!["10.0.0.2".to_string()]);
    assert_eq!(ch.ike_sa().peer_auth, AuthMethod::Null);
    assert_eq!(ch.child_sa().outbound_spi, rch.child_sa().inbound_spi);

    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    for i in 0..20u32 {
        let msg = format!("datagram {i}");
        ch.send(a, b, msg.as_bytes()).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(5), rch.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.data, msg.as_bytes());
        assert_eq!((d.src, d.dst), (a, b));
        assert_eq!(d.spi, rch.child_sa().inbound_spi);
        rch.send(b, a, &d.data).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), ch.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.data, msg.as_bytes());
    }
    // Too large for one datagram: refused with the reason, nothing sent.
    let err = ch.send(a, b, &vec![7u8; 70_000]).await.unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    // Outside the negotiated selectors: refused, nothing sent.
    let err = ch
        .send(a, "10.0.0.3:2000".parse().unwrap(), b"x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("traffic selectors"), "{err}");

    let st = left.status().await.unwrap();
    let (_, t) = &st.child_sas[0];
    assert_eq!((t.packets_out, t.packets_in), (20, 20));
    ch.close().await.unwrap();
    left.shutdown().await.unwrap();
    right.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_psk_is_authentication_failed() {
    let (left, right, lp) = pair(
        AuthMethod::Psk,
        psk("left key"),
        psk("right key"),
        "aes256gcm16-prfsha384-ecp256",
        "aes256gcm16-prfsha384-ecp256",
    )
    .await;
    let err = left.connect(lp, right.ike_addr()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("AUTHENTICATION_FAILED")
            || text.to_lowercase().contains("authentication failed"),
        "{text}"
    );
}

#[tokio::test]
async fn no_common_proposal_names_both_sides() {
    let (left, right, lp) = pair(
        AuthMethod::Null,
        None,
        None,
        "aes128gcm16-prfsha256-x25519",
        "chacha20poly1305-prfsha512-ecp384",
    )
    .await;
    let err = left.connect(lp, right.ike_addr()).await.unwrap_err();
    let text = err.to_string();
    // The initiator names its own proposals; the responder's are not on the
    // wire (RFC 7296 3.10.1: NO_PROPOSAL_CHOSEN carries no data), so the
    // responder logs both sides' lists instead.
    assert!(text.to_lowercase().contains("no proposal chosen"), "{text}");
    assert!(text.contains("aes128gcm16-prfsha256-x25519"), "{text}");
}

#[tokio::test]
async fn psk_channel_with_cbc_suites() {
    let key = psk("correct horse battery staple");
    let (left, right, mut lp) = pair(
        AuthMethod::Psk,
        key.clone(),
        key,
        "aes128-sha256-modp2048",
        "aes128-sha256-modp2048",
    )
    .await;
    lp.child.esp_proposals = EspProposal::parse_list("aes128-sha256").unwrap();
    let (ch, acc) = tokio::join!(left.connect(lp, right.ike_addr()), right.accept());
    let ch = ch.unwrap();
    let mut rch = acc.unwrap();
    assert_eq!(ch.child_sa().suite, "aes128-sha256");
    assert_eq!(ch.ike_sa().peer_auth, AuthMethod::Psk);
    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    ch.send(a, b, b"cbc").await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), rch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"cbc");
}

/// The peer deletes only the child SA: `connect_child` makes a new one
/// under the IKE SA that is still up (CREATE_CHILD_SA, RFC 7296 1.3.1), no
/// second IKE SA; it carries datagrams; an IKE SA that does not exist is a
/// clear error.
#[tokio::test]
async fn child_sa_recreated_under_the_same_ike_sa() {
    let (left, right, lp) = pair(
        AuthMethod::Psk,
        psk("a long enough pre-shared key"),
        psk("a long enough pre-shared key"),
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-prfsha256-x25519",
    )
    .await;
    let child = lp.child.clone();
    let (ch, acc) = tokio::join!(left.connect(lp, right.ike_addr()), right.accept());
    let mut ch = ch.unwrap();
    let rch = acc.unwrap();
    let ike = ch.ike_sa().id;
    let old_spi = ch.child_sa().inbound_spi;
    rch.close_child().await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(5), ch.recv())
        .await
        .unwrap();
    assert!(gone.is_none(), "the channel ends with its child SA");
    let st = left.status().await.unwrap();
    assert_eq!(st.ike_sas.len(), 1);
    assert!(st.child_sas.is_empty());

    let (ch2, acc2) = tokio::join!(left.connect_child(ike, child.clone()), right.accept());
    let mut ch2 = ch2.unwrap();
    let rch2 = acc2.unwrap();
    assert_eq!(ch2.ike_sa().id, ike, "under the same IKE SA");
    assert_ne!(ch2.child_sa().inbound_spi, old_spi);
    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    rch2.send(b, a, b"again").await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), ch2.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"again");
    let st = left.status().await.unwrap();
    assert_eq!(st.ike_sas.len(), 1, "no second IKE SA");
    assert_eq!(st.child_sas.len(), 1);
    assert_eq!(right.status().await.unwrap().ike_sas.len(), 1);

    let err = left.connect_child(ike + 1000, child).await.unwrap_err();
    assert!(err.to_string().contains("no established IKE SA"), "{err}");
    left.shutdown().await.unwrap();
    right.shutdown().await.unwrap();
}

/// `EndpointConfig::shared_receive`: a responder serving two peers reads
/// both channels' datagrams from its one queue, each naming its channel,
/// and answers by channel id; the channel handles can be dropped (the SAs
/// stay), and a handle's own `recv` has nothing.
#[tokio::test]
async fn one_receive_queue_serves_every_channel() {
    let mut rp = peer_config(
        "any",
        AuthMethod::Null,
        None,
        ts("10.0.0.0/24"),
        ts("10.0.0.0/24"),
    );
    rp.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-x25519").unwrap();
    let mut rcfg = EndpointConfig::loopback();
    rcfg.shared_receive = true;
    let right = Endpoint::bind(rcfg, vec![rp]).await.unwrap();
    let mut lefts = Vec::new();
    for i in 1..=2u8 {
        let mut cfg = EndpointConfig::loopback();
        cfg.connect_timeout = Duration::from_secs(20);
        let left = Endpoint::bind(cfg, vec![]).await.unwrap();
        let mut lp = peer_config(
            "right",
            AuthMethod::Null,
            None,
            ts(&format!("10.0.0.{i}/32")),
            ts("10.0.0.100/32"),
        );
        lp.remote_natt_port = right.natt_addr().port();
        let (ch, acc) = tokio::join!(
            left.connect(lp, right.ike_addr()),
            tokio::time::timeout(Duration::from_secs(20), right.accept())
        );
        let mut acc = acc.unwrap().unwrap();
        assert_eq!(acc.child_sa().remote_ts, vec![format!("10.0.0.{i}")]);
        // The handle's own queue is not used.
        assert!(tokio::time::timeout(Duration::from_millis(50), acc.recv())
            .await
            .unwrap()
            .is_none());
        let id = acc.channel_id();
        drop(acc);
        lefts.push((left, ch.unwrap(), id));
    }
    assert_ne!(lefts[0].2, lefts[1].2);
    let server: SocketAddr = "10.0.0.100:7".parse().unwrap();
    for round in 0..5 {
        for (i, (_, ch, _)) in lefts.iter().enumerate() {
            let me: SocketAddr = format!("10.0.0.{}:5000", i + 1).parse().unwrap();
            ch.send(me, server, format!("{round} from {i}").as_bytes())
                .await
                .unwrap();
        }
        for _ in 0..2 {
            let d = tokio::time::timeout(Duration::from_secs(5), right.recv_any())
                .await
                .unwrap()
                .unwrap();
            let i = usize::from(d.src.ip().to_string().ends_with(".2"));
            assert_eq!(d.channel, lefts[i].2, "the datagram names its channel");
            assert_eq!(d.data, format!("{round} from {i}").as_bytes());
            right
                .send_on(d.channel, d.dst, d.src, &d.data)
                .await
                .unwrap();
        }
        for (i, (_, ch, _)) in lefts.iter_mut().enumerate() {
            let e = tokio::time::timeout(Duration::from_secs(5), ch.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(e.data, format!("{round} from {i}").as_bytes());
        }
    }
    // A channel id that does not exist.
    assert!(right.send_on(999, server, server, b"x").await.is_err());
    // Without shared_receive there is no shared queue.
    assert!(lefts[0].0.recv_any().await.is_none());
    for (left, ch, _) in lefts {
        ch.close().await.unwrap();
        left.shutdown().await.unwrap();
    }
    right.shutdown().await.unwrap();
}
