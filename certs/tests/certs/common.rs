//! Shared fixtures: a seeded random source, keys, a three-level PKI.

use certs::time::OffsetDateTime;
use certs::{CertificateAuthority, KeyAlgorithm, PrivateKey, TrustAnchor};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub(crate) fn now() -> OffsetDateTime {
    // A fixed instant; the tool cross-checks use the real clock instead.
    OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap()
}

/// The RSA fixture keys (made by OpenSSL, see tests/vectors/README.md).
pub(crate) fn rsa_fixture(name: &str) -> PrivateKey {
    let path = format!(
        "{}/tests/vectors/{name}.pk8.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    PrivateKey::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

/// A key of type `alg`: generated for EC/Ed25519, a fixture for RSA
/// (`which` picks one of two per size). RSA generation is tested on its own.
pub(crate) fn key(alg: KeyAlgorithm, which: u8, rng: &mut ChaCha20Rng) -> PrivateKey {
    let b = if which.is_multiple_of(2) { "" } else { "b" };
    match alg {
        KeyAlgorithm::Rsa2048 => rsa_fixture(&format!("rsa2048{b}")),
        KeyAlgorithm::Rsa3072 => rsa_fixture(&format!("rsa3072{b}")),
        _ => PrivateKey::generate(alg, rng).unwrap(),
    }
}

/// Root and intermediate CA, both with keys of type `alg`.
pub(crate) struct Pki {
    pub(crate) root: CertificateAuthority,
    pub(crate) inter: CertificateAuthority,
}

impl Pki {
    pub(crate) fn new(alg: KeyAlgorithm, now: OffsetDateTime, rng: &mut ChaCha20Rng) -> Self {
        // RSA: three distinct fixture keys per chain (the leaf takes
        // `key(alg, 0, ..)`).
        let rk = match alg {
            KeyAlgorithm::Rsa2048 => rsa_fixture("rsa3072b"),
            KeyAlgorithm::Rsa3072 => rsa_fixture("rsa2048b"),
            _ => key(alg, 1, rng),
        };
        let ik = key(alg, 1, rng);
        let root = CertificateAuthority::root_for_key("latchkey test root", rk, now, rng).unwrap();
        let inter = root
            .intermediate_for_key("latchkey test intermediate", ik, Some(0), now, rng)
            .unwrap();
        Self { root, inter }
    }

    pub(crate) fn anchors(&self) -> Vec<TrustAnchor> {
        vec![TrustAnchor::from_der(self.root.cert_der()).unwrap()]
    }
}
