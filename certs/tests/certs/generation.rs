//! Generation + validation for every key type; PEM round trips; the
//! contents of ValidatedPeer.

use crate::common::{key, now, rng, Pki};
use certs::{
    certificates_from_pem, describe, self_signed, validate, AltName, CertificateAuthority,
    EndEntity, KeyAlgorithm, KeyType, PrivateKey, PublicKey, SignatureScheme, TrustAnchor,
    ValidationError, ValidationPolicy,
};
use pad::Identity;

fn host_spec() -> EndEntity {
    EndEntity::host("192.0.2.10")
        .with_alt_name(AltName::Dns("gw.example.net".into()))
        .with_alt_name(AltName::Ip("2001:db8::10".parse().unwrap()))
        .with_organization("latchkey tests")
}

#[test]
fn every_key_type_issues_and_validates() {
    let now = now();
    for (i, alg) in KeyAlgorithm::ALL.into_iter().enumerate() {
        let mut rng = rng(100 + i as u64);
        let pki = Pki::new(alg, now, &mut rng);
        let host = pki
            .inter
            .issue_for_key(&host_spec(), key(alg, 0, &mut rng), now, &mut rng)
            .unwrap();
        let user = pki
            .inter
            .issue_for_key(
                &EndEntity::user("alice@example.net").with_organization("latchkey tests"),
                key(alg, 0, &mut rng),
                now,
                &mut rng,
            )
            .unwrap();
        let anchors = pki.anchors();
        let inters = [pki.inter.cert_der()];
        for id in [
            Identity::Ipv4("192.0.2.10".parse().unwrap()),
            Identity::Ipv6("2001:db8::10".parse().unwrap()),
            Identity::Fqdn("gw.example.net".into()),
        ] {
            let v = validate(
                &host.cert_der,
                &inters,
                &anchors,
                now,
                &ValidationPolicy::for_id(id),
            )
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(v.key.kind(), alg.key_type());
            assert_eq!(v.chain, vec![pki.inter.cert_der().to_vec()]);
            assert_eq!(v.trust_anchor.der(), pki.root.cert_der());
            assert_eq!(v.trust_anchor.subject(), "CN=latchkey test root");
            assert_eq!(v.subject, "CN=192.0.2.10, O=latchkey tests");
            assert_eq!(v.spki_sha256, host.key.public_key().fingerprint());
            assert_eq!(v.end_entity_der, host.cert_der);
            assert!(v.alt_names.contains(&AltName::Dns("gw.example.net".into())));
        }
        let v = validate(
            &user.cert_der,
            &inters,
            &anchors,
            now,
            &ValidationPolicy::for_id(Identity::Rfc822("alice@example.net".into())),
        )
        .unwrap();
        // The subject DN as ID_DER_ASN1_DN matches too.
        let dn = v.subject_der.clone();
        validate(
            &user.cert_der,
            &inters,
            &anchors,
            now,
            &ValidationPolicy::for_id(Identity::DerAsn1Dn(dn)),
        )
        .unwrap();
        // The key in the result verifies what the holder signs.
        let scheme = host.key.default_scheme();
        let sig = host.key.sign(b"IKE AUTH octets", scheme).unwrap();
        let v = validate(
            &host.cert_der,
            &inters,
            &anchors,
            now,
            &ValidationPolicy::default(),
        )
        .unwrap();
        v.key.verify(scheme, b"IKE AUTH octets", &sig).unwrap();
        // Without the intermediate there is no path.
        assert_eq!(
            validate(
                &host.cert_der,
                &[],
                &anchors,
                now,
                &ValidationPolicy::default()
            ),
            Err(ValidationError::UnknownIssuer)
        );
    }
}

#[test]
fn generation_is_deterministic_under_a_seed() {
    let a = PrivateKey::generate(KeyAlgorithm::EcdsaP384, &mut rng(7)).unwrap();
    let b = PrivateKey::generate(KeyAlgorithm::EcdsaP384, &mut rng(7)).unwrap();
    assert_eq!(a.pkcs8_der(), b.pkcs8_der());
    let now = now();
    let c1 = CertificateAuthority::root("x", KeyAlgorithm::Ed25519, now, &mut rng(8)).unwrap();
    let c2 = CertificateAuthority::root("x", KeyAlgorithm::Ed25519, now, &mut rng(8)).unwrap();
    assert_eq!(c1.cert_der(), c2.cert_der());
}

#[test]
fn rsa2048_generation() {
    // Slow in unoptimised builds (about 30 s): one key, for the code path.
    let k = PrivateKey::generate(KeyAlgorithm::Rsa2048, &mut rng(9)).unwrap();
    assert_eq!(k.kind(), KeyType::Rsa { bits: 2048 });
    let sig = k.sign(b"m", SignatureScheme::RsaPssSha256).unwrap();
    k.public_key()
        .verify(SignatureScheme::RsaPssSha256, b"m", &sig)
        .unwrap();
}

#[test]
#[ignore = "RSA-3072 generation takes minutes in unoptimised builds; run with --ignored"]
fn rsa3072_generation() {
    let k = PrivateKey::generate(KeyAlgorithm::Rsa3072, &mut rng(10)).unwrap();
    assert_eq!(k.kind(), KeyType::Rsa { bits: 3072 });
}

#[test]
fn pem_round_trips() {
    let now = now();
    let mut rng = rng(11);
    for alg in KeyAlgorithm::ALL {
        let k = key(alg, 0, &mut rng);
        let pem = k.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let k2 = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(k.pkcs8_der(), k2.pkcs8_der());
        assert_eq!(k.public_key(), k2.public_key());
        assert!(!format!("{k:?}").contains(&format!("{:?}", &k.pkcs8_der()[..8])));
    }
    let ca = CertificateAuthority::root("pem", KeyAlgorithm::EcdsaP256, now, &mut rng).unwrap();
    let both = format!("{}{}", ca.cert_pem(), ca.key().to_pem().as_str());
    assert_eq!(
        certificates_from_pem(both.as_bytes()).unwrap(),
        vec![ca.cert_der().to_vec()]
    );
    // A CA read back from its files issues certificates that chain to it.
    let again = CertificateAuthority::from_der(
        ca.cert_der(),
        PrivateKey::from_pem(both.as_bytes()).unwrap(),
    )
    .unwrap();
    let leaf = again
        .issue(
            &EndEntity::host("h.example"),
            KeyAlgorithm::Ed25519,
            now,
            &mut rng,
        )
        .unwrap();
    validate(
        &leaf.cert_der,
        &[],
        &[TrustAnchor::from_der(ca.cert_der()).unwrap()],
        now,
        &ValidationPolicy::for_id(Identity::Fqdn("h.example".into())),
    )
    .unwrap();
    // The wrong key for a CA certificate is refused.
    let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256, &mut rng).unwrap();
    assert!(CertificateAuthority::from_der(ca.cert_der(), other).is_err());
    // A leaf is not a CA.
    assert!(CertificateAuthority::from_der(&leaf.cert_der, leaf.key).is_err());
}

#[test]
fn btns_self_signed() {
    let now = now();
    let mut rng = rng(12);
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let c = self_signed(&EndEntity::host("198.51.100.7"), alg, now, &mut rng).unwrap();
        let info = describe(&c.cert_der).unwrap();
        assert!(info.self_issued && !info.is_ca);
        // Not a CA: it cannot anchor itself as an issuer...
        let anchors = [TrustAnchor::from_der(&c.cert_der).unwrap()];
        // ...but pinned as an anchor it is trusted directly (BTNS pinning).
        let v = validate(
            &c.cert_der,
            &[],
            &anchors,
            now,
            &ValidationPolicy::default(),
        )
        .unwrap();
        assert!(v.chain.is_empty());
        // The raw key of the certificate is the BTNS identity.
        let raw = PublicKey::from_spki_der(c.key.public_key().spki_der()).unwrap();
        assert_eq!(raw.fingerprint(), v.spki_sha256);
        assert_eq!(certs::certificate_public_key(&c.cert_der).unwrap(), raw);
        // Against an unrelated anchor, it is an unknown issuer.
        let other = CertificateAuthority::root("o", alg, now, &mut rng).unwrap();
        assert_eq!(
            validate(
                &c.cert_der,
                &[],
                &[TrustAnchor::from_der(other.cert_der()).unwrap()],
                now,
                &ValidationPolicy::default()
            ),
            Err(ValidationError::UnknownIssuer)
        );
    }
}

#[test]
fn describe_shows_what_a_certificate_holds() {
    let now = now();
    let mut rng = rng(13);
    let pki = Pki::new(KeyAlgorithm::EcdsaP256, now, &mut rng);
    let info = describe(pki.inter.cert_der()).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.path_len, Some(0));
    assert_eq!(info.key_usage, Some(vec!["keyCertSign", "cRLSign"]));
    assert_eq!(info.subject, "CN=latchkey test intermediate");
    assert_eq!(info.issuer, "CN=latchkey test root");
    assert_eq!(info.key_type, Some(KeyType::EcdsaP256));
    assert!(!info.self_issued);
}
