//! Every bad certificate is refused with its own reason; other path
//! failures (path length, wrong anchors, depth bound).

use crate::common::{key, now, rng, Pki};
use certs::{
    validate, BadKind, CertificateAuthority, EndEntity, KeyAlgorithm, TrustAnchor, ValidationError,
    ValidationPolicy,
};
use pad::Identity;

#[test]
fn every_bad_certificate_is_refused_with_its_reason() {
    let now = now();
    for alg in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::EcdsaP384,
    ] {
        let mut rng = rng(200);
        let pki = Pki::new(alg, now, &mut rng);
        let anchors = pki.anchors();
        for spec in [
            EndEntity::host("192.0.2.20"),
            EndEntity::host("vpn.example.org"),
            EndEntity::user("bob@example.org"),
        ] {
            for kind in BadKind::ALL {
                let bad = pki
                    .inter
                    .issue_bad(kind, &spec, alg, now, &mut rng)
                    .unwrap();
                let mut inters: Vec<&[u8]> = vec![pki.inter.cert_der()];
                inters.extend(bad.extra_intermediates.iter().map(Vec::as_slice));
                let got = validate(
                    &bad.issued.cert_der,
                    &inters,
                    &anchors,
                    now,
                    &ValidationPolicy::for_id(bad.id.clone()),
                );
                assert_eq!(got.err(), Some(kind.expected_error()), "{alg} {kind}");
                // Chain-only checking sees only the chain defects.
                let chain = validate(
                    &bad.issued.cert_der,
                    &inters,
                    &anchors,
                    now,
                    &ValidationPolicy::chain_only(),
                );
                assert_eq!(
                    chain.is_ok(),
                    kind.chain_is_sound(),
                    "{alg} {kind}: {chain:?}"
                );
                assert!(!kind.why().is_empty());
            }
        }
    }
}

#[test]
fn bad_signature_for_every_key_type() {
    let now = now();
    for alg in KeyAlgorithm::ALL {
        let mut rng = rng(201);
        let pki = Pki::new(alg, now, &mut rng);
        let mut leaf = pki
            .inter
            .issue_for_key(
                &EndEntity::host("192.0.2.21"),
                key(alg, 0, &mut rng),
                now,
                &mut rng,
            )
            .unwrap();
        let last = leaf.cert_der.len() - 1;
        leaf.cert_der[last] ^= 0x80;
        assert_eq!(
            validate(
                &leaf.cert_der,
                &[pki.inter.cert_der()],
                &pki.anchors(),
                now,
                &ValidationPolicy::default()
            ),
            Err(ValidationError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn validity_is_checked_against_the_given_time() {
    let now = now();
    let mut rng = rng(202);
    let pki = Pki::new(KeyAlgorithm::EcdsaP256, now, &mut rng);
    let leaf = pki
        .inter
        .issue(
            &EndEntity::host("192.0.2.22").with_validity_days(30),
            KeyAlgorithm::EcdsaP256,
            now,
            &mut rng,
        )
        .unwrap();
    let check = |t| {
        validate(
            &leaf.cert_der,
            &[pki.inter.cert_der()],
            &pki.anchors(),
            t,
            &ValidationPolicy::default(),
        )
        .map(|_| ())
    };
    assert_eq!(check(now), Ok(()));
    assert_eq!(
        check(now + time::Duration::days(31)),
        Err(ValidationError::Expired)
    );
    assert_eq!(
        check(now - time::Duration::days(1)),
        Err(ValidationError::NotYetValid)
    );
    // The CAs expire too (ten years).
    assert_eq!(
        check(now + time::Duration::days(3651)),
        Err(ValidationError::Expired)
    );
}

#[test]
fn path_len_and_anchors() {
    let now = now();
    let mut rng = rng(203);
    let alg = KeyAlgorithm::EcdsaP256;
    let pki = Pki::new(alg, now, &mut rng);
    // The intermediate has pathLen 0: a CA below it breaks the constraint.
    let sub = pki
        .inter
        .intermediate_for_key("sub", key(alg, 0, &mut rng), None, now, &mut rng)
        .unwrap();
    let leaf = sub
        .issue(&EndEntity::host("192.0.2.23"), alg, now, &mut rng)
        .unwrap();
    assert_eq!(
        validate(
            &leaf.cert_der,
            &[pki.inter.cert_der(), sub.cert_der()],
            &pki.anchors(),
            now,
            &ValidationPolicy::default()
        ),
        Err(ValidationError::PathLenExceeded)
    );
    // An unconstrained chain of two intermediates is fine, in any order.
    let inter2 = pki
        .root
        .intermediate_for_key("inter2", key(alg, 0, &mut rng), None, now, &mut rng)
        .unwrap();
    let sub2 = inter2
        .intermediate_for_key("sub2", key(alg, 0, &mut rng), Some(0), now, &mut rng)
        .unwrap();
    let leaf2 = sub2
        .issue(&EndEntity::host("192.0.2.24"), alg, now, &mut rng)
        .unwrap();
    let v = validate(
        &leaf2.cert_der,
        &[pki.inter.cert_der(), inter2.cert_der(), sub2.cert_der()],
        &pki.anchors(),
        now,
        &ValidationPolicy::default(),
    )
    .unwrap();
    assert_eq!(
        v.chain,
        vec![sub2.cert_der().to_vec(), inter2.cert_der().to_vec()]
    );
    // The depth bound holds.
    let mut tight = ValidationPolicy::default();
    tight.max_intermediates = 1;
    assert_eq!(
        validate(
            &leaf2.cert_der,
            &[sub2.cert_der(), inter2.cert_der()],
            &pki.anchors(),
            now,
            &tight
        ),
        Err(ValidationError::ChainTooLong)
    );
    // The intermediate as the only anchor works (partial chain), another
    // root with the same name but another key does not.
    validate(
        &leaf2.cert_der,
        &[sub2.cert_der()],
        &[TrustAnchor::from_der(inter2.cert_der()).unwrap()],
        now,
        &ValidationPolicy::default(),
    )
    .unwrap();
    let impostor = CertificateAuthority::root("latchkey test root", alg, now, &mut rng).unwrap();
    assert_eq!(
        validate(
            &leaf2.cert_der,
            &[sub2.cert_der(), inter2.cert_der()],
            &[TrustAnchor::from_der(impostor.cert_der()).unwrap()],
            now,
            &ValidationPolicy::default()
        ),
        Err(ValidationError::BadSignature)
    );
    // With both anchors configured, the right one is found.
    let both = [
        TrustAnchor::from_der(impostor.cert_der()).unwrap(),
        TrustAnchor::from_der(pki.root.cert_der()).unwrap(),
    ];
    let v = validate(
        &leaf2.cert_der,
        &[sub2.cert_der(), inter2.cert_der()],
        &both,
        now,
        &ValidationPolicy::default(),
    )
    .unwrap();
    assert_eq!(v.trust_anchor.der(), pki.root.cert_der());
    // A leaf asserting an ID it does not hold.
    assert_eq!(
        validate(
            &leaf2.cert_der,
            &[sub2.cert_der(), inter2.cert_der()],
            &both,
            now,
            &ValidationPolicy::for_id(Identity::Ipv4("192.0.2.25".parse().unwrap()))
        ),
        Err(ValidationError::IdMismatch)
    );
}

#[test]
fn self_loops_terminate() {
    // Two intermediates, each listed many times, with the issuer missing:
    // the search visits each at most once per path and ends.
    let now = now();
    let mut rng = rng(204);
    let alg = KeyAlgorithm::Ed25519;
    let pki = Pki::new(alg, now, &mut rng);
    let leaf = pki
        .inter
        .issue(&EndEntity::host("192.0.2.26"), alg, now, &mut rng)
        .unwrap();
    let many: Vec<&[u8]> = std::iter::repeat_n(pki.inter.cert_der(), 50).collect();
    assert_eq!(
        validate(
            &leaf.cert_der,
            &many,
            &[],
            now,
            &ValidationPolicy::default()
        ),
        Err(ValidationError::UnknownIssuer)
    );
}

#[test]
fn self_signed_loops_terminate() {
    let now = now();
    let mut rng = rng(205);
    let x = certs::self_signed(
        &EndEntity::host("192.0.2.27"),
        KeyAlgorithm::Ed25519,
        now,
        &mut rng,
    )
    .unwrap();
    let many: Vec<&[u8]> = std::iter::repeat_n(x.cert_der.as_slice(), 50).collect();
    // Its only candidate issuer is itself, which is not a CA.
    assert_eq!(
        validate(&x.cert_der, &many, &[], now, &ValidationPolicy::default()),
        Err(ValidationError::UnknownIssuer)
    );
}

#[test]
fn eku_policy_lenient_and_strict() {
    use certs::ExtKeyUsage as E;
    let now = now();
    let mut rng = rng(206);
    let alg = KeyAlgorithm::EcdsaP256;
    let pki = Pki::new(alg, now, &mut rng);
    let mut strict = ValidationPolicy::default();
    strict.strict_eku = true;
    for (ekus, lenient_ok, strict_ok) in [
        (&[][..], true, true),
        (&[E::IpsecIke][..], true, true),
        (&[E::Any][..], true, true),
        (&[E::ServerAuth][..], true, false),
        (&[E::ClientAuth, E::ServerAuth][..], true, false),
        (&[E::CodeSigning, E::IpsecIke][..], true, true),
        (&[E::EmailProtection][..], false, false),
    ] {
        let leaf = pki
            .inter
            .issue(
                &EndEntity::host("192.0.2.28").with_eku(ekus),
                alg,
                now,
                &mut rng,
            )
            .unwrap();
        let v = |p: &ValidationPolicy| {
            validate(
                &leaf.cert_der,
                &[pki.inter.cert_der()],
                &pki.anchors(),
                now,
                p,
            )
        };
        let expect = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ValidationError::Eku)
            }
        };
        assert_eq!(
            v(&ValidationPolicy::default()).map(|_| ()),
            expect(lenient_ok),
            "{ekus:?}"
        );
        assert_eq!(v(&strict).map(|_| ()), expect(strict_ok), "{ekus:?} strict");
        assert_eq!(certs::eku_allows_ike(&leaf.cert_der, false), Ok(lenient_ok));
        assert_eq!(certs::eku_allows_ike(&leaf.cert_der, true), Ok(strict_ok));
    }
}

/// The frame outside the signed tbsCertificate must be strict DER: a third
/// party can change it without breaking the signature. x509-parser alone
/// accepted the outer SEQUENCE under another tag class (0x30 -> 0x50 or
/// 0xb0: found by the `peer_certs` fuzz target); each variant below is the
/// same signed certificate in another encoding, and each is refused.
#[test]
fn only_the_der_frame_of_a_certificate_is_accepted() {
    let now = now();
    let mut rng = rng(210);
    let pki = Pki::new(KeyAlgorithm::EcdsaP256, now, &mut rng);
    let anchors = pki.anchors();
    let leaf = pki
        .inter
        .issue(
            &EndEntity::host("vpn.example.org"),
            KeyAlgorithm::EcdsaP256,
            now,
            &mut rng,
        )
        .unwrap()
        .cert_der;
    let inters = [pki.inter.cert_der()];
    let policy = ValidationPolicy::for_id(Identity::Fqdn("vpn.example.org".into()));
    let check = |der: &[u8]| validate(der, &inters, &anchors, now, &policy).map(|_| ());
    assert_eq!(check(&leaf), Ok(()), "the DER original validates");

    // The outer SEQUENCE under other tag classes.
    for tag in [0x50u8, 0x70, 0x90, 0xb0, 0xf0] {
        let mut v = leaf.clone();
        v[0] = tag;
        assert_eq!(
            check(&v),
            Err(ValidationError::Malformed),
            "outer tag {tag:#04x}"
        );
    }
    // The outer length in a longer form than needed (0x82 LL LL -> 0x83 00 LL LL).
    assert_eq!(leaf[1], 0x82, "a certificate of 256 to 65535 octets");
    let mut longer = vec![0x30, 0x83, 0x00];
    longer.extend_from_slice(&leaf[2..]);
    assert_eq!(
        check(&longer),
        Err(ValidationError::Malformed),
        "long-form length"
    );
    // Octets after the certificate.
    let mut trailing = leaf.clone();
    trailing.push(0);
    assert_eq!(
        check(&trailing),
        Err(ValidationError::Malformed),
        "trailing octet"
    );
    // A certificate that is not the end entity is held to it as well: the
    // intermediate under another outer tag class does not make a path.
    let mut inter = pki.inter.cert_der().to_vec();
    inter[0] = 0xb0;
    assert!(validate(&leaf, &[&inter], &anchors, now, &policy).is_err());
    // And as a trust anchor.
    let mut root = pki.root.cert_der().to_vec();
    root[0] = 0x50;
    assert!(TrustAnchor::from_der(&root).is_err());
}
