//! Certificate authentication end to end through two endpoints on
//! loopback: a CA made by `certs`, ECDSA and Ed25519 end entities, the
//! peer's certificate and trust anchor visible on the channel, and a bad
//! certificate refused with its reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: failing loudly is the point"
)]

use std::sync::Arc;
use std::time::Duration;

use certs::{BadKind, CertificateAuthority, EndEntity, KeyAlgorithm, TrustAnchor};
use endpoint::{peer_config, AuthMethod, Endpoint, EndpointConfig, Identity, PeerCredential};
use rand_core::SeedableRng;

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

fn creds(
    ca: &CertificateAuthority,
    cert: Vec<u8>,
    key: certs::PrivateKey,
) -> endpoint::Credentials {
    endpoint::Credentials {
        private_key: Some(Arc::new(key)),
        certificates: vec![cert],
        trust_anchors: vec![TrustAnchor::from_der(ca.cert_der()).unwrap()],
        ..Default::default()
    }
}

/// Right (responder, ECDSA P-256 "right.example") and the initiator's
/// peer configuration with the given certificate and key.
async fn setup(
    ca: &CertificateAuthority,
    left_cert: Vec<u8>,
    left_key: certs::PrivateKey,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> (Endpoint, Endpoint, endpoint::PeerConfig) {
    let now = time::OffsetDateTime::now_utc();
    let right_cert = ca
        .issue(
            &EndEntity::host("right.example"),
            KeyAlgorithm::EcdsaP256,
            now,
            rng,
        )
        .unwrap();
    let mut rp = peer_config(
        "left",
        AuthMethod::Certificate,
        None,
        ts("10.0.0.2/32"),
        ts("10.0.0.1/32"),
    );
    rp.local_id = Identity::Fqdn("right.example".into());
    rp.remote_id = Some(Identity::Fqdn("left.example".into()));
    rp.credentials = creds(ca, right_cert.cert_der, right_cert.key);
    let right = Endpoint::bind(EndpointConfig::loopback(), vec![rp])
        .await
        .unwrap();
    let mut cfg = EndpointConfig::loopback();
    cfg.connect_timeout = Duration::from_secs(10);
    let left = Endpoint::bind(cfg, vec![]).await.unwrap();
    let mut lp = peer_config(
        "right",
        AuthMethod::Certificate,
        None,
        ts("10.0.0.1/32"),
        ts("10.0.0.2/32"),
    );
    lp.local_id = Identity::Fqdn("left.example".into());
    lp.remote_id = Some(Identity::Fqdn("right.example".into()));
    lp.remote_natt_port = right.natt_addr().port();
    lp.credentials = creds(ca, left_cert, left_key);
    (left, right, lp)
}

#[tokio::test]
async fn certificate_channel_shows_peer_certificate_and_anchor() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let now = time::OffsetDateTime::now_utc();
    let ca =
        CertificateAuthority::root("latchkey test root", KeyAlgorithm::EcdsaP256, now, &mut rng)
            .unwrap();
    let left = ca
        .issue(
            &EndEntity::host("left.example"),
            KeyAlgorithm::Ed25519,
            now,
            &mut rng,
        )
        .unwrap();
    let left_cert = left.cert_der.clone();
    let (l, r, lp) = setup(&ca, left.cert_der, left.key, &mut rng).await;
    let (ch, acc) = tokio::join!(l.connect(lp, r.ike_addr()), r.accept());
    let mut ch = ch.unwrap();
    let rch = acc.unwrap();
    assert_eq!(ch.ike_sa().peer_auth, AuthMethod::Certificate);
    assert_eq!(ch.ike_sa().peer_id, "right.example");
    assert_eq!(rch.ike_sa().peer_id, "left.example");
    // R7: the responder's view of the initiator names its certificate and
    // the trust anchor it chained to.
    let a = "10.0.0.1:1000".parse().unwrap();
    let b = "10.0.0.2:2000".parse().unwrap();
    rch.send(b, a, b"signed").await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), ch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"signed");
    match ch.peer_credential() {
        PeerCredential::Certificate(v) => {
            assert_eq!(v.trust_anchor.der(), ca.cert_der());
        }
        other => panic!("expected a certificate credential, got {other:?}"),
    }
    match rch.peer_credential() {
        PeerCredential::Certificate(v) => assert_eq!(v.end_entity_der, left_cert),
        other => panic!("expected a certificate credential, got {other:?}"),
    }
}

#[tokio::test]
async fn expired_certificate_is_refused_with_its_reason() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
    let now = time::OffsetDateTime::now_utc();
    let ca =
        CertificateAuthority::root("latchkey test root", KeyAlgorithm::EcdsaP256, now, &mut rng)
            .unwrap();
    let bad = ca
        .issue_bad(
            BadKind::Expired,
            &EndEntity::host("left.example"),
            KeyAlgorithm::EcdsaP256,
            now,
            &mut rng,
        )
        .unwrap();
    let (l, r, lp) = setup(&ca, bad.issued.cert_der, bad.issued.key, &mut rng).await;
    let err = l.connect(lp, r.ike_addr()).await.unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("authentication"),
        "AUTHENTICATION_FAILED expected: {err}"
    );
}

/// R7 end to end with certificates: a connection latch on the responder,
/// bound when the certificate peer's child SA comes up, and its inquiry
/// names the peer's end-entity certificate and the trust anchor it chained
/// to (not only the channel's view of them).
#[tokio::test]
async fn r7_latch_inquiry_names_certificate_and_anchor() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let now = time::OffsetDateTime::now_utc();
    let ca =
        CertificateAuthority::root("latchkey test root", KeyAlgorithm::EcdsaP256, now, &mut rng)
            .unwrap();
    let left = ca
        .issue(
            &EndEntity::host("left.example"),
            KeyAlgorithm::EcdsaP256,
            now,
            &mut rng,
        )
        .unwrap();
    let left_cert = left.cert_der.clone();
    let (l, r, lp) = setup(&ca, left.cert_der, left.key, &mut rng).await;
    let five = endpoint::FiveTuple::new(
        17,
        "10.0.0.2:2000".parse().unwrap(),
        "10.0.0.1:1000".parse().unwrap(),
    );
    let flow = r
        .create_connection_latch(endpoint::ConnectionRequest::new(five))
        .await
        .unwrap();
    assert_eq!(flow.inquire().unwrap().state, endpoint::LatchState::Larval);
    let (ch, acc) = tokio::join!(l.connect(lp, r.ike_addr()), r.accept());
    let _ch = ch.unwrap();
    let _rch = acc.unwrap();
    let info = flow.inquire().unwrap();
    assert_eq!(info.state, endpoint::LatchState::Established);
    let params = info.params.unwrap();
    let peer = params.peer().unwrap();
    // The endpoint's default policy: one PAD entry, `default`, that takes
    // certificates validated to the peer configuration's anchors.
    assert_eq!(peer.pad_entry, "default");
    assert_eq!(peer.asserted.to_string(), "left.example");
    match &peer.auth {
        latch::PeerAuth::Certificate {
            cert_der,
            trust_anchor,
        } => {
            assert_eq!(cert_der, &left_cert, "the peer's end-entity certificate");
            assert_eq!(trust_anchor.der, ca.cert_der(), "the anchor it chained to");
        }
        other => panic!("expected a certificate peer, got {other:?}"),
    }
    assert!(!peer.auth.is_unauthenticated());
    // The JSON an application sees carries both, hex-encoded.
    let json = serde_json::to_string(&peer.auth).unwrap();
    assert!(json.contains("\"method\":\"certificate\""), "{json}");
    assert!(json.contains(&hex_of(ca.cert_der())), "{json}");
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
