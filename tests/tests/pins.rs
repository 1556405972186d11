//! The BTNS pin store on disk (`EndpointConfig::pin_file`): a key pinned to
//! an address survives the endpoint's restart, so the changed key it would
//! have refused before the restart is still refused after it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: failing loudly is the point"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use certs::{KeyAlgorithm, PrivateKey};
use endpoint::{peer_config, AuthMethod, Endpoint, EndpointConfig};
use rand_core::SeedableRng;

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

/// A BTNS responder with keys that pins the first key of each address.
async fn responder(server: &Arc<PrivateKey>, pin_file: Option<&Path>) -> Endpoint {
    let mut p = peer_config(
        "btns-keys",
        AuthMethod::RawPublicKey,
        None,
        ts("10.0.0.1/32"),
        ts("10.0.0.0/24"),
    );
    p.credentials.private_key = Some(server.clone());
    p.credentials.accept_any_key = true;
    p.credentials.pinning = true;
    let mut cfg = EndpointConfig::loopback();
    cfg.pin_file = pin_file.map(Path::to_owned);
    Endpoint::bind(cfg, vec![p]).await.unwrap()
}

/// Connect to `right` from 127.0.0.1 with `own` key.
async fn connect(
    right: &Endpoint,
    server: &Arc<PrivateKey>,
    own: &Arc<PrivateKey>,
) -> Result<endpoint::Channel, endpoint::Error> {
    let mut p = peer_config(
        "responder",
        AuthMethod::RawPublicKey,
        None,
        ts("10.0.0.9/32"),
        ts("10.0.0.1/32"),
    );
    p.credentials.private_key = Some(own.clone());
    p.credentials.peer_keys = vec![server.public_key().clone()];
    p.remote_natt_port = right.natt_addr().port();
    let left = Endpoint::bind(EndpointConfig::loopback(), vec![])
        .await
        .unwrap();
    left.connect(p, right.ike_addr()).await
}

fn scratch() -> PathBuf {
    use rand_core::RngCore;
    let d = std::env::temp_dir().join(format!(
        "latchkey-pin-test-{}-{:x}",
        std::process::id(),
        rand_core::OsRng.next_u64()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn pinned_key_survives_restart() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let mut key = || Arc::new(PrivateKey::generate(KeyAlgorithm::Ed25519, &mut rng).unwrap());
    let (server, alice, mallory) = (key(), key(), key());
    let dir = scratch();
    let file = dir.join("pins");

    // First run: Alice is the first key seen from 127.0.0.1, so she is
    // pinned; the file is written at shutdown at the latest.
    let right = responder(&server, Some(&file)).await;
    let ch = connect(&right, &server, &alice).await.unwrap();
    drop(ch);
    right.shutdown().await.unwrap();
    drop(right);
    let text = std::fs::read_to_string(&file).unwrap();
    let line = format!("127.0.0.1 sha256:{}", alice.public_key().fingerprint());
    assert!(text.lines().any(|l| l == line), "{text}");

    // Second run from the same file: Mallory's key from the same address
    // is refused (AUTHENTICATION_FAILED), Alice's is still welcome.
    let right = responder(&server, Some(&file)).await;
    let err = connect(&right, &server, &mallory).await.unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    connect(&right, &server, &alice).await.unwrap();
    drop(right);

    // Without the file, the restarted endpoint has forgotten Alice and
    // takes Mallory: what the file is for.
    let right = responder(&server, None).await;
    connect(&right, &server, &mallory).await.unwrap();

    // A damaged file stops bind with the file and line named.
    std::fs::write(&file, "127.0.0.1 sha256:zz\n").unwrap();
    let mut cfg = EndpointConfig::loopback();
    cfg.pin_file = Some(file.clone());
    let err = Endpoint::bind(cfg, vec![]).await.unwrap_err().to_string();
    assert!(err.contains("pins") && err.contains("line 1"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
