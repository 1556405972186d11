//! Sign/verify round trips for every scheme, raw public keys (RFC 7670),
//! and known-answer vectors through our verify path.

use crate::common::{key, rng};
use certs::{
    KeyAlgorithm, KeyError, PrivateKey, PublicKey, SignError, SignatureScheme, VerifyError,
};

#[test]
fn round_trips_for_every_fitting_scheme() {
    let mut rng = rng(400);
    for alg in KeyAlgorithm::ALL {
        let k = key(alg, 0, &mut rng);
        let pk = PublicKey::from_spki_der(k.public_key().spki_der()).unwrap();
        assert_eq!(&pk, k.public_key());
        let mut fitting = 0;
        for scheme in SignatureScheme::ALL {
            let msg = b"octets to sign: InitiatorSignedOctets";
            match k.sign(msg, scheme) {
                Ok(sig) => {
                    fitting += 1;
                    assert!(scheme.fits(k.kind()));
                    pk.verify(scheme, msg, &sig)
                        .unwrap_or_else(|e| panic!("{alg} {scheme:?}: {e}"));
                    assert_eq!(
                        pk.verify(scheme, b"other octets", &sig),
                        Err(VerifyError::BadSignature)
                    );
                    let mut bad = sig.clone();
                    bad[0] ^= 1;
                    assert_eq!(pk.verify(scheme, msg, &bad), Err(VerifyError::BadSignature));
                    match scheme {
                        SignatureScheme::EcdsaP256Sha256Fixed => assert_eq!(sig.len(), 64),
                        SignatureScheme::EcdsaP384Sha384Fixed => assert_eq!(sig.len(), 96),
                        SignatureScheme::EcdsaP256Sha256Der
                        | SignatureScheme::EcdsaP384Sha384Der => {
                            assert_eq!(sig[0], 0x30)
                        }
                        SignatureScheme::Ed25519 => assert_eq!(sig.len(), 64),
                        _ => {}
                    }
                }
                Err(SignError::SchemeMismatch) => {
                    // Only SHA-1 PKCS#1 (verify-only) or a non-fitting scheme.
                    assert!(!scheme.fits(k.kind()) || scheme == SignatureScheme::RsaPkcs1Sha1);
                    assert!(matches!(
                        pk.verify(scheme, msg, &[0; 64]),
                        Err(VerifyError::SchemeMismatch | VerifyError::BadSignature)
                    ));
                }
                Err(e) => panic!("{alg} {scheme:?}: {e}"),
            }
        }
        let expected = match alg {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => 2,
            KeyAlgorithm::Ed25519 => 1,
            _ => 6,
        };
        assert_eq!(fitting, expected, "{alg}");
        // A signature made by one key does not verify under another.
        let other = key(alg, 1, &mut rng);
        let s = k.default_scheme();
        let sig = k.sign(b"x", s).unwrap();
        assert_eq!(
            other.public_key().verify(s, b"x", &sig),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn fixed_and_der_ecdsa_are_the_same_signature() {
    // Convert a fixed r||s signature to DER and check it under the DER scheme.
    let mut rng = rng(401);
    let k = PrivateKey::generate(KeyAlgorithm::EcdsaP256, &mut rng).unwrap();
    let fixed = k.sign(b"m", SignatureScheme::EcdsaP256Sha256Fixed).unwrap();
    let der = ecdsa_fixed_to_der(&fixed);
    k.public_key()
        .verify(SignatureScheme::EcdsaP256Sha256Der, b"m", &der)
        .unwrap();
}

/// RFC 8032 7.1, TEST 1 (empty message): sign with the seed and compare;
/// verify through `PublicKey`.
#[test]
fn ed25519_rfc8032_test_1() {
    let seed: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    let public =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
    let sig = hex::decode(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    )
    .unwrap();
    let k = PrivateKey::ed25519_from_seed(&seed).unwrap();
    assert_eq!(k.public_key_raw(), public.as_slice());
    assert_eq!(k.sign(b"", SignatureScheme::Ed25519).unwrap(), sig);
    // The same key as an RFC 8410 SubjectPublicKeyInfo (a raw public key).
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(&public);
    let pk = PublicKey::from_spki_der(&spki).unwrap();
    pk.verify(SignatureScheme::Ed25519, b"", &sig).unwrap();
    assert_eq!(
        pk.verify(SignatureScheme::Ed25519, b"x", &sig),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(pk.fingerprint(), k.public_key().fingerprint());
}

/// RFC 6979 A.2.5: ECDSA P-256, SHA-256, message "sample".
#[test]
fn ecdsa_p256_rfc6979_sample() {
    let ux = "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6";
    let uy = "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
    let r = "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716";
    let s = "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8";
    // SubjectPublicKeyInfo for id-ecPublicKey / prime256v1.
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d03010703420004").unwrap();
    spki.extend(hex::decode(format!("{ux}{uy}")).unwrap());
    let pk = PublicKey::from_spki_der(&spki).unwrap();
    let fixed = hex::decode(format!("{r}{s}")).unwrap();
    pk.verify(SignatureScheme::EcdsaP256Sha256Fixed, b"sample", &fixed)
        .unwrap();
    pk.verify(
        SignatureScheme::EcdsaP256Sha256Der,
        b"sample",
        &ecdsa_fixed_to_der(&fixed),
    )
    .unwrap();
    assert_eq!(
        pk.verify(SignatureScheme::EcdsaP256Sha256Fixed, b"test", &fixed),
        Err(VerifyError::BadSignature)
    );
    // The private key x gives this public key.
    let x =
        hex::decode("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721").unwrap();
    let sk = p256::SecretKey::from_slice(&x).unwrap();
    use p256::pkcs8::EncodePrivateKey;
    let k = PrivateKey::from_pkcs8_der(sk.to_pkcs8_der().unwrap().as_bytes()).unwrap();
    assert_eq!(k.public_key(), &pk);
}

#[test]
fn raw_public_keys_are_refused_when_malformed() {
    assert_eq!(PublicKey::from_spki_der(&[]), Err(KeyError::Malformed));
    // Ed25519 key one octet short.
    let mut spki = hex::decode("3029300506032b6570032000").unwrap();
    spki.extend([0u8; 31]);
    assert_eq!(PublicKey::from_spki_der(&spki), Err(KeyError::Malformed));
    // X25519 (1.3.101.110) is not a signature key.
    let mut x = hex::decode("302a300506032b656e032100").unwrap();
    x.extend([9u8; 32]);
    assert_eq!(
        PublicKey::from_spki_der(&x),
        Err(KeyError::UnsupportedAlgorithm)
    );
    // Trailing octets.
    let k = PrivateKey::generate(KeyAlgorithm::Ed25519, &mut rng(402)).unwrap();
    let mut t = k.public_key().spki_der().to_vec();
    t.push(0);
    assert_eq!(PublicKey::from_spki_der(&t), Err(KeyError::Malformed));
}

fn ecdsa_fixed_to_der(fixed: &[u8]) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let int = |v: &[u8]| {
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        let mut body = if v.first().is_some_and(|b| b & 0x80 != 0) {
            vec![0]
        } else {
            vec![]
        };
        body.extend(v);
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    };
    let mut body = int(r);
    body.extend(int(s));
    let mut out = vec![0x30];
    if body.len() >= 128 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

/// RFC 7427 AlgorithmIdentifiers: each scheme's encoding decodes back to it
/// for a fitting key type and to nothing for others; the ECDSA and RSA
/// encodings are the byte strings printed in RFC 7427 Appendix A.
#[test]
fn rfc7427_algorithm_identifiers() {
    use certs::KeyType;
    let kinds = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Ed25519,
        KeyType::Rsa { bits: 2048 },
    ];
    let mut named = 0;
    for scheme in SignatureScheme::ALL {
        let Some(ai) = scheme.algorithm_identifier() else {
            assert!(matches!(
                scheme,
                SignatureScheme::EcdsaP256Sha256Fixed | SignatureScheme::EcdsaP384Sha384Fixed
            ));
            continue;
        };
        named += 1;
        for kind in kinds {
            let back = SignatureScheme::from_algorithm_identifier(ai, kind);
            assert_eq!(
                back,
                scheme.fits(kind).then_some(scheme),
                "{scheme:?} {kind:?}"
            );
        }
        let mut trailing = ai.to_vec();
        trailing.push(0);
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(&trailing, KeyType::Rsa { bits: 2048 }),
            None
        );
    }
    assert_eq!(named, 10);
    // RFC 7427 A.1 sha256WithRSAEncryption and A.3 ecdsa-with-sha256.
    assert_eq!(
        SignatureScheme::RsaPkcs1Sha256
            .algorithm_identifier()
            .unwrap(),
        hex::decode("300d06092a864886f70d01010b0500").unwrap()
    );
    assert_eq!(
        SignatureScheme::EcdsaP256Sha256Der
            .algorithm_identifier()
            .unwrap(),
        hex::decode("300a06082a8648ce3d040302").unwrap()
    );
    // sha256WithRSAEncryption without the NULL is accepted too.
    let no_null = hex::decode("300b06092a864886f70d01010b").unwrap();
    assert_eq!(
        SignatureScheme::from_algorithm_identifier(&no_null, KeyType::Rsa { bits: 3072 }),
        Some(SignatureScheme::RsaPkcs1Sha256)
    );
    // PSS with a salt length ring cannot check is not offered.
    let mut odd_salt = SignatureScheme::RsaPssSha256
        .algorithm_identifier()
        .unwrap()
        .to_vec();
    *odd_salt.last_mut().unwrap() = 20;
    assert_eq!(
        SignatureScheme::from_algorithm_identifier(&odd_salt, KeyType::Rsa { bits: 2048 }),
        None
    );
    // Junk.
    for junk in [&b""[..], b"\x30\x00", b"\x30\x03\x06\x01\x00", b"\xff\xff"] {
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(junk, KeyType::Ed25519),
            None
        );
    }
}
