//! Signature authentication in IKE_AUTH: RSA Digital Signature (method 1,
//! RFC 7296 3.8), ECDSA (methods 9, 10, 11, RFC 4754) and Digital Signature
//! (method 14, RFC 7427), with certificates (CERT encoding 4, CERTREQ,
//! RFC 7296 3.6, 3.7; validated with [`certs::validate`] and the IKE ID
//! matched against the certificate, RFC 4945) and raw public keys (CERT
//! encoding 15, RFC 7670).
//!
//! Signing: ring cannot make RSASSA-PKCS1-v1_5 signatures with SHA-1, so
//! method 1 is verified but never sent: RSA keys always sign with method 14
//! (PKCS#1 v1.5 or PSS with SHA-2). ECDSA keys use 9 or 10 when the peer
//! did not announce SIGNATURE_HASH_ALGORITHMS (RFC 7427 4), 14 otherwise.
//! P-521 (method 11) is not supported by `certs`: refused clearly.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use certs::{KeyType, PublicKey, SignatureScheme};
use pad::{AuthMethod, Identity};

use crate::api::{Credentials, PeerConfig, PeerCredential, SignatureMethods};
use crate::msg::notify;
use crate::wire::{notify as n, Payload};

/// CERT encoding: X.509 Certificate - Signature (RFC 7296 3.6).
pub(crate) const CERT_X509: u8 = 4;
/// CERT encoding: Raw Public Key (RFC 7670).
pub(crate) const CERT_RAW: u8 = 15;

/// RFC 7427 4 / RFC 8420: hash algorithm identifiers.
pub(crate) mod hash {
    pub(crate) const SHA1: u16 = 1;
    pub(crate) const SHA2_256: u16 = 2;
    pub(crate) const SHA2_384: u16 = 3;
    pub(crate) const SHA2_512: u16 = 4;
    pub(crate) const IDENTITY: u16 = 5;
}

/// The hashes we accept in method 14, announced in IKE_SA_INIT.
const OUR_HASHES: [u16; 4] = [
    hash::SHA2_256,
    hash::SHA2_384,
    hash::SHA2_512,
    hash::IDENTITY,
];

/// A wall clock anchored to the monotonic one: the driver says once what
/// time it is at some `Instant`; certificate validity is checked at
/// `anchor + (now - instant)`.
pub(crate) type WallAnchor = Option<(Instant, SystemTime)>;

/// The wall-clock time at `now`, as certs wants it.
pub(crate) fn wall_time(anchor: WallAnchor, now: Instant) -> Option<certs::time::OffsetDateTime> {
    let (at, wall) = anchor?;
    let t = if now >= at {
        wall.checked_add(now.duration_since(at))?
    } else {
        wall.checked_sub(at.duration_since(now))?
    };
    Some(certs::time::OffsetDateTime::from(t))
}

/// The SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 4).
pub(crate) fn hash_algorithms_notify() -> Payload {
    let data = OUR_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect();
    notify(n::SIGNATURE_HASH_ALGORITHMS, data)
}

/// The hash algorithms a SIGNATURE_HASH_ALGORITHMS notify lists (an odd
/// trailing octet is ignored).
pub(crate) fn parse_hash_algorithms(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// The RFC 7427 hash of a scheme.
fn scheme_hash(s: SignatureScheme) -> Option<u16> {
    Some(match s {
        SignatureScheme::EcdsaP256Sha256Der
        | SignatureScheme::RsaPkcs1Sha256
        | SignatureScheme::RsaPssSha256 => hash::SHA2_256,
        SignatureScheme::EcdsaP384Sha384Der
        | SignatureScheme::RsaPkcs1Sha384
        | SignatureScheme::RsaPssSha384 => hash::SHA2_384,
        SignatureScheme::RsaPkcs1Sha512 | SignatureScheme::RsaPssSha512 => hash::SHA2_512,
        SignatureScheme::Ed25519 => hash::IDENTITY,
        SignatureScheme::RsaPkcs1Sha1 => hash::SHA1,
        _ => return None,
    })
}

/// Whether a peer config's authentication (either direction) uses
/// signatures.
pub(crate) fn uses_signatures(p: &PeerConfig) -> bool {
    p.local_auth.is_signature() || p.remote_auth.is_signature()
}

/// Check that the credentials can work for `peer` (at initiation).
pub(crate) fn check_config(p: &PeerConfig) -> Result<(), String> {
    let c = &p.credentials;
    if p.local_auth.is_signature() && c.private_key.is_none() {
        return Err(format!(
            "{} authentication without a private key",
            p.local_auth
        ));
    }
    if p.local_auth == AuthMethod::Certificate && c.certificates.is_empty() {
        return Err("certificate authentication without a certificate".into());
    }
    if p.remote_auth == AuthMethod::Certificate && c.trust_anchors.is_empty() {
        return Err("peer certificate authentication without trust anchors".into());
    }
    if p.remote_auth == AuthMethod::RawPublicKey && c.peer_keys.is_empty() && !c.accept_any_key {
        return Err("peer raw public key authentication without a configured key".into());
    }
    Ok(())
}

/// CERT payloads for our side: the chain (encoding 4, end entity first)
/// or our raw public key (encoding 15).
pub(crate) fn cert_payloads(p: &PeerConfig) -> Vec<Payload> {
    let c = &p.credentials;
    match p.local_auth {
        AuthMethod::Certificate => c
            .certificates
            .iter()
            .map(|d| Payload::Cert {
                encoding: CERT_X509,
                data: d.clone(),
            })
            .collect(),
        AuthMethod::RawPublicKey => c
            .private_key
            .iter()
            .map(|k| Payload::Cert {
                encoding: CERT_RAW,
                data: k.public_key().spki_der().to_vec(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A CERTREQ naming trust anchors (RFC 7296 3.7: concatenated SHA-1
/// hashes of their SubjectPublicKeyInfo).
pub(crate) fn certreq<'a>(
    anchors: impl IntoIterator<Item = &'a certs::TrustAnchor>,
) -> Option<Payload> {
    let mut data = Vec::new();
    for a in anchors {
        let h = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, a.key().spki_der());
        if !data.chunks_exact(20).any(|c: &[u8]| c == h.as_ref()) {
            data.extend_from_slice(h.as_ref());
        }
    }
    (!data.is_empty()).then_some(Payload::CertReq {
        encoding: CERT_X509,
        data,
    })
}

/// The schemes we may sign with under method 14, best first.
fn our_schemes(c: &Credentials, key: &certs::PrivateKey) -> Vec<SignatureScheme> {
    let ok = |s: &SignatureScheme| {
        s.fits(key.kind())
            && s.algorithm_identifier().is_some()
            && *s != SignatureScheme::RsaPkcs1Sha1
    };
    let v: Vec<SignatureScheme> = c.signature_schemes.iter().copied().filter(ok).collect();
    if v.is_empty() {
        vec![key.default_scheme()]
    } else {
        v
    }
}

/// Our AUTH payload: (method, data) signing `signed`. `peer_hashes`: what
/// the peer announced in SIGNATURE_HASH_ALGORITHMS, if anything.
pub(crate) fn sign(
    p: &PeerConfig,
    peer_hashes: Option<&[u16]>,
    signed: &[u8],
) -> Result<(u8, Vec<u8>), String> {
    let c = &p.credentials;
    let key = c
        .private_key
        .as_ref()
        .ok_or_else(|| format!("peer {}: signature authentication without a key", p.name))?;
    let legacy = match key.kind() {
        KeyType::EcdsaP256 => Some((
            AuthMethod::WIRE_ECDSA_256,
            SignatureScheme::EcdsaP256Sha256Fixed,
        )),
        KeyType::EcdsaP384 => Some((
            AuthMethod::WIRE_ECDSA_384,
            SignatureScheme::EcdsaP384Sha384Fixed,
        )),
        _ => None,
    };
    let use_legacy = match c.methods {
        SignatureMethods::DigitalSignature => false,
        SignatureMethods::Legacy => legacy.is_some(),
        _ => legacy.is_some() && peer_hashes.is_none_or(<[u16]>::is_empty),
    };
    if let (true, Some((method, scheme))) = (use_legacy, legacy) {
        let sig = key.sign(signed, scheme).map_err(|e| e.to_string())?;
        return Ok((method, sig));
    }
    let schemes = our_schemes(c, key);
    let scheme = peer_hashes
        .and_then(|h| {
            schemes
                .iter()
                .copied()
                .find(|s| scheme_hash(*s).is_some_and(|x| h.contains(&x)))
        })
        .or_else(|| schemes.first().copied())
        .ok_or("no signature scheme for our key")?;
    let ai = scheme
        .algorithm_identifier()
        .ok_or("scheme without an AlgorithmIdentifier")?;
    let sig = key.sign(signed, scheme).map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(1 + ai.len() + sig.len());
    data.push(u8::try_from(ai.len()).map_err(|_| "AlgorithmIdentifier too long")?);
    data.extend_from_slice(ai);
    data.extend_from_slice(&sig);
    Ok((AuthMethod::WIRE_DIGITAL_SIGNATURE, data))
}

/// Check a signature AUTH payload under `key`.
fn verify_with(key: &PublicKey, method: u8, data: &[u8], signed: &[u8]) -> Result<(), String> {
    let (scheme, sig) = match method {
        AuthMethod::WIRE_RSA_SIG => (SignatureScheme::RsaPkcs1Sha1, data),
        AuthMethod::WIRE_ECDSA_256 => (SignatureScheme::EcdsaP256Sha256Fixed, data),
        AuthMethod::WIRE_ECDSA_384 => (SignatureScheme::EcdsaP384Sha384Fixed, data),
        AuthMethod::WIRE_ECDSA_521 => {
            return Err("ECDSA P-521 (method 11) is not supported".into());
        }
        AuthMethod::WIRE_DIGITAL_SIGNATURE => {
            //= https://www.rfc-editor.org/rfc/rfc7427#section-3
            //# ASN.1 Length (1 octet): The length of the ASN.1-encoded
            //# AlgorithmIdentifier object.
            let (&len, rest) = data.split_first().ok_or("empty Digital Signature")?;
            let len = usize::from(len);
            if rest.len() < len {
                return Err("truncated AlgorithmIdentifier".into());
            }
            let (ai, sig) = rest.split_at(len);
            let scheme =
                SignatureScheme::from_algorithm_identifier(ai, key.kind()).ok_or_else(|| {
                    format!(
                        "signature algorithm unsupported or not fitting a {} key",
                        key.kind()
                    )
                })?;
            if scheme == SignatureScheme::RsaPkcs1Sha1 {
                return Err("SHA-1 in a Digital Signature (not announced)".into());
            }
            (scheme, sig)
        }
        m => return Err(format!("auth method {m} is not a signature method")),
    };
    if !scheme.fits(key.kind()) {
        return Err(format!(
            "auth method {method} does not fit a {} key",
            key.kind()
        ));
    }
    key.verify(scheme, signed, sig)
        .map_err(|_| format!("signature (method {method}, {scheme:?}) does not verify"))
}

/// The CERT payloads of a message: (encoding, data).
pub(crate) fn certs_of(p: &[Payload]) -> Vec<(u8, &[u8])> {
    p.iter()
        .filter_map(|x| match x {
            Payload::Cert { encoding, data } => Some((*encoding, &data[..])),
            _ => None,
        })
        .collect()
}

/// The signature kind a peer's IKE_AUTH message is for: certificate when
/// it carries an X.509 CERT, raw public key otherwise.
pub(crate) fn kind_of(p: &[Payload]) -> AuthMethod {
    if certs_of(p).iter().any(|(e, _)| *e == CERT_X509) {
        AuthMethod::Certificate
    } else {
        AuthMethod::RawPublicKey
    }
}

/// Verify the peer's signature AUTH (method `method`, data `data`) over
/// `signed`, with the credentials `peer` accepts and the CERT payloads of
/// `payloads`. Returns what was proven, or the reason for refusal.
pub(crate) fn verify(
    peer: &PeerConfig,
    peer_id: &Identity,
    method: u8,
    data: &[u8],
    payloads: &[Payload],
    signed: &[u8],
    now: Option<certs::time::OffsetDateTime>,
) -> Result<PeerCredential, String> {
    let c = &peer.credentials;
    let sent = certs_of(payloads);
    match peer.remote_auth {
        AuthMethod::Certificate => {
            let mut x509 = sent
                .iter()
                .filter(|(e, _)| *e == CERT_X509)
                .map(|(_, d)| *d);
            let ee = x509
                .next()
                .ok_or("no certificate (CERT payload, encoding 4) sent")?;
            let inters: Vec<&[u8]> = x509.collect();
            let now =
                now.ok_or("no wall clock to check certificate validity (Ike::set_wall_clock)")?;
            let mut policy = certs::ValidationPolicy::for_id(peer_id.clone());
            policy.strict_eku = c.strict_eku;
            let v = certs::validate(ee, &inters, &c.trust_anchors, now, &policy)
                .map_err(|e| format!("certificate of {peer_id} refused: {} ({e})", e.code()))?;
            verify_with(&v.key, method, data, signed)?;
            Ok(PeerCredential::Certificate(Arc::new(v)))
        }
        AuthMethod::RawPublicKey => {
            // A key the peer sent (raw, or in a certificate whose key is
            // pinned), else every configured key.
            let mut sent_keys = Vec::new();
            for (e, d) in &sent {
                let k = match *e {
                    CERT_RAW => PublicKey::from_spki_der(d).map_err(|e| e.to_string()),
                    CERT_X509 => certs::certificate_public_key(d).map_err(|e| e.to_string()),
                    _ => continue,
                };
                sent_keys.push(k.map_err(|e| format!("malformed public key: {e}"))?);
            }
            let candidates: Vec<&PublicKey> = if sent_keys.is_empty() {
                c.peer_keys.iter().collect()
            } else {
                let known: Vec<&PublicKey> = c
                    .peer_keys
                    .iter()
                    .filter(|k| sent_keys.iter().any(|s| s.spki_der() == k.spki_der()))
                    .collect();
                if known.is_empty() && c.accept_any_key {
                    // BTNS: possession of the key is all that is proven.
                    let mut last = String::from("no key");
                    for k in &sent_keys {
                        match verify_with(k, method, data, signed) {
                            Ok(()) => return Ok(PeerCredential::RawPublicKey(k.clone())),
                            Err(e) => last = e,
                        }
                    }
                    return Err(last);
                }
                if known.is_empty() {
                    return Err(format!(
                        "unknown-key: raw public key {} is not configured for the peer",
                        sent_keys
                            .first()
                            .map(|k| k.fingerprint().to_string())
                            .unwrap_or_default()
                    ));
                }
                known
            };
            let mut last = String::from("no configured raw public key");
            for k in candidates {
                match verify_with(k, method, data, signed) {
                    Ok(()) => return Ok(PeerCredential::RawPublicKey(k.clone())),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        m => Err(format!("auth method {m} is not a signature method")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_peer() -> PeerConfig {
        PeerConfig {
            name: "t".into(),
            local_id: Identity::Null,
            remote_id: None,
            local_auth: AuthMethod::Certificate,
            remote_auth: AuthMethod::RawPublicKey,
            psk: None,
            credentials: Credentials::default(),
            ike_proposals: Vec::new(),
            child: crate::api::ChildConfig {
                esp_proposals: Vec::new(),
                local_ts: Vec::new(),
                remote_ts: Vec::new(),
                mode: pad::Mode::Tunnel,
                rekey_after: None,
                replay_window: 0,
            },
            ike_rekey_after: None,
            dpd_interval: None,
            force_encap: false,
            remote_natt_port: 4500,
        }
    }

    #[test]
    fn hash_notify_round_trip() {
        let Payload::Notify(x) = hash_algorithms_notify() else {
            panic!("not a notify")
        };
        assert_eq!(x.kind, n::SIGNATURE_HASH_ALGORITHMS);
        assert_eq!(parse_hash_algorithms(&x.data), OUR_HASHES.to_vec());
        assert_eq!(parse_hash_algorithms(&[0, 2, 0]), vec![2]);
    }

    #[test]
    fn wall_clock_follows_instants() {
        let i = Instant::now();
        let w = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let later = i + std::time::Duration::from_secs(10);
        let t = wall_time(Some((i, w)), later).map(|t| t.unix_timestamp());
        assert_eq!(t, Some(1_800_000_010));
        assert_eq!(wall_time(None, later), None);
    }

    /// RFC 7296 method 1 (RSASSA-PKCS1-v1_5 with SHA-1), which ring cannot
    /// make: a signature made by OpenSSL 3.0.19,
    /// `openssl dgst -sha1 -sign certs/tests/vectors/rsa2048.pk8.pem` over
    /// the message below.
    #[test]
    fn method_1_verifies_an_openssl_signature() {
        const MSG: &[u8] = b"latchkey RFC 7296 method 1 test";
        const SIG: &str = "632e252b0803f7af06f6aac09d3e3d7715fb4bc4cbc7d35901507157c21c3c46b53ee038339aee3f0247ae7ff612625bc6990c6c73134050474d9d87003ad4ef9897130db99ff83dc4f4062bb4a2f8ce516fdd73bde04ed281fee940af1e11520c40a3d405229479005a41c9b7df18986fceb1f04c4815d4da0e28709a53396f48abc39956f3eb15b8730f4990142cd4ccdea938af10edd611180d89d06c8d8003872c5063ac37c53f1cea2370e32c89b5845dfbe3d22fccad3b7e9b6420c32984dfc53128d4b256eb0ecbabc40d7167bd4e77777fd749a83aae6fbfe28f1f0b276e74010ba59d13b46e6d0b9cebe7f0f799e2836ef4ca03f46dc99bed7e5cf8";
        let k = certs::PrivateKey::from_pem(include_bytes!(
            "../../certs/tests/vectors/rsa2048.pk8.pem"
        ))
        .unwrap();
        let sig = hex::decode(SIG).unwrap();
        assert_eq!(verify_with(k.public_key(), 1, &sig, MSG), Ok(()));
        assert!(verify_with(k.public_key(), 1, &sig, b"another message").is_err());
        // The same key signs method 14 (ring has no PKCS#1 SHA-1 signing).
        let mut peer = test_peer();
        peer.credentials.private_key = Some(Arc::new(k));
        peer.credentials.methods = SignatureMethods::Legacy;
        let (m, data) = sign(&peer, None, MSG).unwrap();
        assert_eq!(m, 14);
        let pk = peer.credentials.private_key.as_ref().unwrap().public_key();
        assert_eq!(verify_with(pk, 14, &data, MSG), Ok(()));
        // The peer announced only SHA2-512: PKCS#1 with SHA-512 is chosen.
        peer.credentials.signature_schemes = vec![
            SignatureScheme::RsaPssSha256,
            SignatureScheme::RsaPkcs1Sha512,
        ];
        let (_, data) = sign(&peer, Some(&[hash::SHA2_512]), MSG).unwrap();
        let ai = SignatureScheme::RsaPkcs1Sha512
            .algorithm_identifier()
            .unwrap();
        assert_eq!(&data[1..1 + ai.len()], ai);
    }

    #[test]
    fn ecdsa_method_choice() {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for (alg, legacy) in [
            (certs::KeyAlgorithm::EcdsaP256, 9),
            (certs::KeyAlgorithm::EcdsaP384, 10),
            (certs::KeyAlgorithm::Ed25519, 14),
        ] {
            let key = Arc::new(certs::PrivateKey::generate(alg, &mut rng).unwrap());
            let mut peer = test_peer();
            peer.credentials.private_key = Some(key.clone());
            for (methods, hashes, want) in [
                (SignatureMethods::Auto, None, legacy),
                (SignatureMethods::Auto, Some(&OUR_HASHES[..]), 14),
                (SignatureMethods::DigitalSignature, None, 14),
                (SignatureMethods::Legacy, Some(&OUR_HASHES[..]), legacy),
            ] {
                peer.credentials.methods = methods;
                let (m, data) = sign(&peer, hashes, b"octets").unwrap();
                assert_eq!(m, want, "{alg} {methods:?}");
                assert_eq!(verify_with(key.public_key(), m, &data, b"octets"), Ok(()));
                assert!(verify_with(key.public_key(), m, &data, b"other").is_err());
            }
        }
    }

    #[test]
    fn truncated_digital_signatures_are_refused() {
        let k = certs::PrivateKey::ed25519_from_seed(&[7; 32]).unwrap();
        let pk = k.public_key();
        assert!(verify_with(pk, 14, &[], b"x").is_err());
        assert!(verify_with(pk, 14, &[200, 1, 2], b"x").is_err());
        assert!(verify_with(pk, 11, &[1, 2], b"x")
            .unwrap_err()
            .contains("P-521"));
        assert!(verify_with(pk, 9, &[0; 64], b"x")
            .unwrap_err()
            .contains("does not fit"));
    }
}
