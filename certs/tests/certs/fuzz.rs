//! Parsers are total: seeded random bytes and mutations of valid encodings
//! through every DER/PEM entry point, which must return, never panic.

use crate::common::{now, rng, Pki};
use certs::{
    certificates_from_pem, certificates_from_pem_or_der, describe, eku_allows_ike,
    identity_matches, validate, BadKind, EndEntity, KeyAlgorithm, PrivateKey, PublicKey,
    TrustAnchor, ValidationPolicy,
};
use pad::Identity;
use rand_chacha::rand_core::RngCore;

fn feed(bytes: &[u8], anchors: &[TrustAnchor], inter: &[u8]) {
    let now = now();
    let _ = PublicKey::from_spki_der(bytes);
    let _ = certs::SignatureScheme::from_algorithm_identifier(
        bytes,
        certs::KeyType::Rsa { bits: 2048 },
    );
    let _ = PrivateKey::from_pkcs8_der(bytes);
    let _ = PrivateKey::from_pem(bytes);
    let _ = certificates_from_pem(bytes);
    let _ = certificates_from_pem_or_der(bytes);
    let _ = TrustAnchor::from_der(bytes);
    let _ = describe(bytes);
    let _ = certs::certificate_public_key(bytes);
    let _ = eku_allows_ike(bytes, true);
    let _ = identity_matches(bytes, &Identity::Fqdn("a.example".into()));
    let _ = identity_matches(bytes, &Identity::Ipv4("192.0.2.1".parse().unwrap()));
    let _ = validate(bytes, &[inter], anchors, now, &ValidationPolicy::default());
    let _ = validate(
        inter,
        &[bytes, bytes],
        anchors,
        now,
        &ValidationPolicy::default(),
    );
    if let Ok(leaf) = describe(bytes) {
        let _ = leaf.alt_names.iter().map(ToString::to_string).count();
    }
    // As an ID_DER_ASN1_DN against a valid certificate.
    let _ = identity_matches(inter, &Identity::DerAsn1Dn(bytes.to_vec()));
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let now = now();
    let mut rng = rng(500);
    let pki = Pki::new(KeyAlgorithm::EcdsaP256, now, &mut rng);
    let anchors = pki.anchors();
    let leaf = pki
        .inter
        .issue(
            &EndEntity::host("192.0.2.50").with_alt_name(certs::AltName::Dns("a.example".into())),
            KeyAlgorithm::Ed25519,
            now,
            &mut rng,
        )
        .unwrap();
    let bad = pki
        .inter
        .issue_bad(
            BadKind::IssuerNotCa,
            &EndEntity::user("f@example.org"),
            KeyAlgorithm::EcdsaP256,
            now,
            &mut rng,
        )
        .unwrap();
    let seeds: Vec<Vec<u8>> = vec![
        leaf.cert_der.clone(),
        pki.inter.cert_der().to_vec(),
        bad.issued.cert_der,
        leaf.key.pkcs8_der().to_vec(),
        pki.inter.key().pkcs8_der().to_vec(),
        leaf.key.public_key().spki_der().to_vec(),
        leaf.cert_pem().into_bytes(),
        certs::SignatureScheme::RsaPssSha384
            .algorithm_identifier()
            .unwrap_or_default()
            .to_vec(),
        leaf.key.to_pem().as_bytes().to_vec(),
    ];
    let inter = pki.inter.cert_der().to_vec();
    // Pure random bytes, short and long.
    for i in 0..300 {
        let mut b = vec![0u8; (i * 7) % 700];
        rng.fill_bytes(&mut b);
        feed(&b, &anchors, &inter);
        // DER-looking: a SEQUENCE header in front.
        if b.len() > 4 {
            b[0] = 0x30;
            b[1] = 0x82;
        }
        feed(&b, &anchors, &inter);
    }
    // Mutations of valid encodings: bit flips, truncations, insertions.
    for round in 0..1500 {
        let base = &seeds[round % seeds.len()];
        let mut b = base.clone();
        match rng.next_u32() % 4 {
            0 => {
                for _ in 0..1 + rng.next_u32() % 4 {
                    let i = rng.next_u32() as usize % b.len();
                    b[i] ^= 1 << (rng.next_u32() % 8);
                }
            }
            1 => b.truncate(rng.next_u32() as usize % b.len()),
            2 => {
                let i = rng.next_u32() as usize % b.len();
                b.insert(i, rng.next_u32() as u8);
            }
            _ => {
                let i = rng.next_u32() as usize % b.len();
                b[i] = [0x00, 0x80, 0x81, 0x82, 0xff][rng.next_u32() as usize % 5];
            }
        }
        feed(&b, &anchors, &inter);
    }
}
