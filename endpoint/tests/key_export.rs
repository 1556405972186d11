//! Key export (`EndpointConfig::key_export`, `Endpoint::session_keys`):
//! two endpoints on loopback; the keys one exports are the other's keys
//! crossed over, with the SPIs and outer addresses of the packets; they go
//! when the SAs go; with export off the call fails.

#![allow(clippy::unwrap_used, reason = "a test: failing loudly is the point")]

use std::time::Duration;

use endpoint::{btns_peer, Endpoint, EndpointConfig, Error};

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

#[tokio::test]
async fn session_keys_follow_the_sas() {
    let mut rcfg = EndpointConfig::loopback();
    rcfg.key_export = true;
    let right = Endpoint::bind(
        rcfg,
        vec![btns_peer("l", ts("10.0.0.2/32"), ts("10.0.0.1/32"))],
    )
    .await
    .unwrap();
    let mut lcfg = EndpointConfig::loopback();
    lcfg.key_export = true;
    lcfg.connect_timeout = Duration::from_secs(20);
    let left = Endpoint::bind(lcfg, vec![]).await.unwrap();
    let off = Endpoint::bind(EndpointConfig::loopback(), vec![])
        .await
        .unwrap();
    assert!(matches!(off.session_keys().await, Err(Error::KeyExport(_))));

    assert!(left.session_keys().await.unwrap().ike_sas.is_empty());
    let mut lp = btns_peer("r", ts("10.0.0.1/32"), ts("10.0.0.2/32"));
    lp.remote_natt_port = right.natt_addr().port();
    let (ch, acc) = tokio::join!(left.connect(lp, right.ike_addr()), right.accept());
    let ch = ch.unwrap();
    let _rch = acc.unwrap();

    let lk = left.session_keys().await.unwrap();
    let rk = right.session_keys().await.unwrap();
    assert_eq!(lk.ike_sas.len(), 1);
    assert_eq!(rk.ike_sas.len(), 1);
    assert_eq!(
        lk.ike_sas[0].keys, rk.ike_sas[0].keys,
        "same IKE keys both sides"
    );
    let spi_i = u64::from_str_radix(&ch.ike_sa().spi_i, 16).unwrap();
    assert_eq!(lk.ike_sas[0].keys.spi_i, spi_i);
    assert_eq!(lk.ike_sas[0].remote, right.natt_addr());
    assert_eq!(lk.esp_sas.len(), 2);
    assert_eq!(rk.esp_sas.len(), 2);
    let out = lk.esp_sas.iter().find(|e| !e.inbound).unwrap();
    assert_eq!(out.spi, ch.child_sa().outbound_spi);
    assert!(out.udp_encap);
    assert_eq!(out.dst, right.natt_addr());
    // The peer's inbound SA is our outbound one: same SPI, same key,
    // same outer addresses.
    let peer_in = rk.esp_sas.iter().find(|e| e.inbound).unwrap();
    assert_eq!(peer_in.spi, out.spi);
    assert_eq!(peer_in.encr_key, out.encr_key);
    assert_eq!(
        (peer_in.src.ip(), peer_in.dst.ip()),
        (out.src.ip(), out.dst.ip())
    );
    assert_eq!(out.encr_key.len(), out.encr.keymat_len());
    let inb = lk.esp_sas.iter().find(|e| e.inbound).unwrap();
    assert_ne!(inb.encr_key, out.encr_key);
    assert!(format!("{lk:?}").contains("redacted"));

    ch.close().await.unwrap();
    let gone = left.session_keys().await.unwrap();
    assert!(
        gone.ike_sas.is_empty() && gone.esp_sas.is_empty(),
        "{gone:?}"
    );
    left.shutdown().await.unwrap();
    right.shutdown().await.unwrap();
}

#[tokio::test]
async fn ike_rekey_exports_the_new_keys() {
    let mut rcfg = EndpointConfig::loopback();
    rcfg.key_export = true;
    let right = Endpoint::bind(
        rcfg,
        vec![btns_peer("l", ts("10.0.0.2/32"), ts("10.0.0.1/32"))],
    )
    .await
    .unwrap();
    let mut lcfg = EndpointConfig::loopback();
    lcfg.key_export = true;
    let left = Endpoint::bind(lcfg, vec![]).await.unwrap();
    let mut lp = btns_peer("r", ts("10.0.0.1/32"), ts("10.0.0.2/32"));
    lp.remote_natt_port = right.natt_addr().port();
    lp.ike_rekey_after = Some(Duration::from_millis(500));
    let (ch, acc) = tokio::join!(left.connect(lp, right.ike_addr()), right.accept());
    let ch = ch.unwrap();
    let _rch = acc.unwrap();
    let before = left.session_keys().await.unwrap();
    let old = before.ike_sas[0].keys.clone();
    let mut after = before.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = left.session_keys().await.unwrap();
        if after
            .ike_sas
            .first()
            .is_some_and(|r| r.keys.spi_i != old.spi_i)
        {
            break;
        }
    }
    assert_eq!(after.ike_sas.len(), 1, "only the new IKE SA: {after:?}");
    let new = &after.ike_sas[0];
    assert_ne!(new.keys.spi_i, old.spi_i, "rekeyed: {after:?}");
    assert_ne!(new.keys.sk_ei, old.sk_ei);
    let peer = right.session_keys().await.unwrap();
    assert!(
        peer.ike_sas.iter().any(|r| r.keys == new.keys),
        "the peer agrees"
    );
    // The child SAs moved to the new IKE SA.
    assert_eq!(after.esp_sas.len(), 2);
    assert!(after.esp_sas.iter().all(|e| e.ike_sa == new.ike_sa));
    ch.close().await.unwrap();
    left.shutdown().await.unwrap();
    right.shutdown().await.unwrap();
}
