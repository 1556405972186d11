//! Signature authentication (RFC 7296 3.8, RFC 4754, RFC 7427), CERT and
//! CERTREQ (RFC 7296 3.6, 3.7), raw public keys (RFC 7670), certificate
//! validation and ID matching (RFC 4945).

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use certs::time::OffsetDateTime;
use certs::{
    BadKind, CertificateAuthority, EndEntity, KeyAlgorithm, PrivateKey, SignatureScheme,
    TrustAnchor,
};
use ike::{Credentials, PeerCredential, SignatureMethods};

use super::*;

/// Calendar time of the test PKI (certificates valid a year from here).
fn pki_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
}

/// The sims' wall clock: a day after the PKI was made.
fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + 86_400)
}

/// Key types of the matrix.
pub(crate) const KEYS: [KeyAlgorithm; 4] = [
    KeyAlgorithm::Rsa2048,
    KeyAlgorithm::EcdsaP256,
    KeyAlgorithm::EcdsaP384,
    KeyAlgorithm::Ed25519,
];

fn vector_key(alg: KeyAlgorithm, second: bool) -> PrivateKey {
    let pem: &[u8] = match (alg, second) {
        (KeyAlgorithm::Rsa2048, false) => {
            include_bytes!("../../../certs/tests/vectors/rsa2048.pk8.pem")
        }
        (KeyAlgorithm::Rsa2048, true) => {
            include_bytes!("../../../certs/tests/vectors/rsa2048b.pk8.pem")
        }
        (KeyAlgorithm::Rsa3072, false) => {
            include_bytes!("../../../certs/tests/vectors/rsa3072.pk8.pem")
        }
        _ => include_bytes!("../../../certs/tests/vectors/rsa3072b.pk8.pem"),
    };
    PrivateKey::from_pem(pem).unwrap()
}

/// (key type, a.example key, its certificate, b.example key, its
/// certificate).
type Host = (
    KeyAlgorithm,
    Arc<PrivateKey>,
    Vec<u8>,
    Arc<PrivateKey>,
    Vec<u8>,
);

/// A root CA -> intermediate -> end entities, made once per test binary
/// (seeded; RSA keys from certs' vectors).
pub(crate) struct Pki {
    pub(crate) root: CertificateAuthority,
    pub(crate) inter: CertificateAuthority,
    /// (key type, end entity for a.example, end entity for b.example)
    pub(crate) hosts: Vec<Host>,
    /// An RSA-3072 CA chain: (root, intermediate, a.example, b.example).
    pub(crate) big: (
        CertificateAuthority,
        CertificateAuthority,
        certs::Issued,
        certs::Issued,
    ),
}

pub(crate) fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(0x7427);
        let now = pki_time();
        let root = CertificateAuthority::root(
            "latchkey test root",
            KeyAlgorithm::EcdsaP384,
            now,
            &mut rng,
        )
        .unwrap();
        let inter = root
            .intermediate(
                "latchkey test intermediate",
                KeyAlgorithm::EcdsaP256,
                now,
                &mut rng,
            )
            .unwrap();
        let mut hosts = Vec::new();
        for alg in KEYS {
            let key = |second| {
                if alg == KeyAlgorithm::Rsa2048 {
                    vector_key(alg, second)
                } else {
                    PrivateKey::generate(
                        alg,
                        &mut ChaCha20Rng::seed_from_u64(u64::from(second) + 9),
                    )
                    .unwrap()
                }
            };
            let a = inter
                .issue_for_key(&EndEntity::host("a.example"), key(false), now, &mut rng)
                .unwrap();
            let b = inter
                .issue_for_key(&EndEntity::host("b.example"), key(true), now, &mut rng)
                .unwrap();
            hosts.push((
                alg,
                Arc::new(a.key),
                a.cert_der,
                Arc::new(b.key),
                b.cert_der,
            ));
        }
        let big_root = CertificateAuthority::root_for_key(
            "latchkey big root",
            vector_key(KeyAlgorithm::Rsa3072, false),
            now,
            &mut rng,
        )
        .unwrap();
        let big_inter = big_root
            .intermediate_for_key(
                "latchkey big intermediate",
                vector_key(KeyAlgorithm::Rsa3072, true),
                Some(0),
                now,
                &mut rng,
            )
            .unwrap();
        let big_a = big_inter
            .issue_for_key(
                &EndEntity::host("a.example"),
                vector_key(KeyAlgorithm::Rsa2048, false),
                now,
                &mut rng,
            )
            .unwrap();
        let big_b = big_inter
            .issue_for_key(
                &EndEntity::host("b.example"),
                vector_key(KeyAlgorithm::Rsa2048, true),
                now,
                &mut rng,
            )
            .unwrap();
        Pki {
            root,
            inter,
            hosts,
            big: (big_root, big_inter, big_a, big_b),
        }
    })
}

fn anchor(ca: &CertificateAuthority) -> TrustAnchor {
    TrustAnchor::from_der(ca.cert_der()).unwrap()
}

/// Certificate credentials: our key and chain, the root as anchor.
fn cert_creds(
    key: &Arc<PrivateKey>,
    ee: &[u8],
    methods: SignatureMethods,
    schemes: &[SignatureScheme],
) -> Credentials {
    let p = pki();
    Credentials {
        private_key: Some(key.clone()),
        certificates: vec![ee.to_vec(), p.inter.cert_der().to_vec()],
        trust_anchors: vec![anchor(&p.root)],
        signature_schemes: schemes.to_vec(),
        methods,
        ..Credentials::default()
    }
}

/// The default pair with certificate authentication both ways.
fn cert_pair(
    alg: KeyAlgorithm,
    methods: SignatureMethods,
    schemes: &[SignatureScheme],
) -> (PeerConfig, PeerConfig) {
    let h = pki().hosts.iter().find(|h| h.0 == alg).unwrap();
    let mut a = peer_a();
    let mut b = peer_b();
    for p in [&mut a, &mut b] {
        p.local_auth = AuthMethod::Certificate;
        p.remote_auth = AuthMethod::Certificate;
        p.psk = None;
    }
    a.credentials = cert_creds(&h.1, &h.2, methods, schemes);
    b.credentials = cert_creds(&h.3, &h.4, methods, schemes);
    (a, b)
}

fn cert_sim(seed: u64, b: PeerConfig) -> Sim {
    let mut sim = Sim::new(seed, config(vec![]), config(vec![b]));
    for n in &mut sim.nodes {
        n.ike.set_wall_clock(sim.start, wall());
    }
    sim
}

/// The AUTH methods on the wire cannot be seen (encrypted); what the sides
/// established can.
fn check_established(sim: &Sim, auth: AuthMethod) {
    let ea = &sim.established(0)[0];
    let eb = &sim.established(1)[0];
    assert_eq!(ea.peer_auth, auth);
    assert_eq!(eb.peer_auth, auth);
    assert_eq!(ea.peer_id, Identity::Fqdn("b.example".into()));
    assert_eq!(eb.peer_id, Identity::Fqdn("a.example".into()));
    assert_pair(&sim.children(0)[0], &sim.children(1)[0]);
    assert_eq!(sim.children(1)[0].peer_credential, eb.peer_credential);
}

#[test]
fn certificate_matrix() {
    let p = pki();
    let mut seed = 7000;
    let rsa = [
        vec![],
        vec![SignatureScheme::RsaPssSha256],
        vec![SignatureScheme::RsaPkcs1Sha384],
        vec![SignatureScheme::RsaPssSha512],
    ];
    for alg in KEYS {
        for methods in [
            SignatureMethods::Auto,
            SignatureMethods::DigitalSignature,
            SignatureMethods::Legacy,
        ] {
            let scheme_sets: &[Vec<SignatureScheme>] = if alg == KeyAlgorithm::Rsa2048 {
                &rsa
            } else {
                &rsa[..1]
            };
            for schemes in scheme_sets {
                seed += 1;
                let (a, b) = cert_pair(alg, methods, schemes);
                let mut sim = cert_sim(seed, b);
                sim.handshake(a);
                check_established(&sim, AuthMethod::Certificate);
                // R7: the peer's certificate and trust anchor are visible.
                let h = p.hosts.iter().find(|h| h.0 == alg).unwrap();
                let eb = &sim.established(1)[0];
                assert_eq!(
                    eb.peer_credential.certificate(),
                    Some(&h.2[..]),
                    "{alg} {methods:?}"
                );
                assert_eq!(
                    eb.peer_credential.trust_anchor().unwrap().der(),
                    p.root.cert_der()
                );
                let PeerCredential::Certificate(v) = &sim.established(0)[0].peer_credential else {
                    panic!("not a certificate credential");
                };
                assert_eq!(v.end_entity_der, h.4);
                assert_eq!(v.chain, vec![p.inter.cert_der().to_vec()]);
                assert_eq!(v.trust_anchor.subject(), anchor(&p.root).subject());
                assert_eq!(
                    Some(v.spki_sha256),
                    sim.established(0)[0].peer_credential.spki_sha256()
                );
            }
        }
    }
}

#[test]
fn raw_public_keys_both_ways() {
    let mut seed = 7100;
    for alg in KEYS {
        for methods in [SignatureMethods::Auto, SignatureMethods::Legacy] {
            seed += 1;
            let h = pki().hosts.iter().find(|h| h.0 == alg).unwrap();
            let mut a = peer_a();
            let mut b = peer_b();
            for p in [&mut a, &mut b] {
                p.local_auth = AuthMethod::RawPublicKey;
                p.remote_auth = AuthMethod::RawPublicKey;
                p.psk = None;
            }
            a.credentials = Credentials {
                private_key: Some(h.1.clone()),
                peer_keys: vec![h.3.public_key().clone()],
                methods,
                ..Credentials::default()
            };
            b.credentials = Credentials {
                private_key: Some(h.3.clone()),
                peer_keys: vec![h.1.public_key().clone()],
                methods,
                ..Credentials::default()
            };
            let mut sim = cert_sim(seed, b);
            sim.handshake(a);
            check_established(&sim, AuthMethod::RawPublicKey);
            let eb = &sim.established(1)[0];
            assert_eq!(
                eb.peer_credential,
                PeerCredential::RawPublicKey(h.1.public_key().clone())
            );
            assert_eq!(
                eb.peer_credential.spki_sha256(),
                Some(h.1.public_key().fingerprint())
            );
        }
    }
}

#[test]
fn raw_key_not_configured_is_refused() {
    let h = &pki().hosts[1];
    let other = &pki().hosts[2];
    let mut a = peer_a();
    let mut b = peer_b();
    for p in [&mut a, &mut b] {
        p.local_auth = AuthMethod::RawPublicKey;
        p.remote_auth = AuthMethod::RawPublicKey;
    }
    a.credentials = Credentials {
        private_key: Some(h.1.clone()),
        peer_keys: vec![h.3.public_key().clone()],
        ..Credentials::default()
    };
    b.credentials = Credentials {
        private_key: Some(h.3.clone()),
        peer_keys: vec![other.1.public_key().clone()],
        ..Credentials::default()
    };
    let mut sim = cert_sim(7200, b);
    sim.initiate(a);
    sim.run_for(Duration::from_secs(30));
    let fb = sim.failures(1);
    assert!(
        matches!(&fb[..], [Error::AuthenticationFailed { detail }] if detail.contains("unknown-key")),
        "{fb:?}"
    );
    assert!(matches!(
        &sim.failures(0)[..],
        [Error::AuthenticationFailed { .. }]
    ));
}

/// Run a handshake where A presents `chain` for `id` and B validates it.
fn refused_initiator(
    seed: u64,
    key: Arc<PrivateKey>,
    chain: Vec<Vec<u8>>,
    id: Identity,
) -> (Sim, Vec<Error>) {
    let h = &pki().hosts[1];
    let (mut a, mut b) = cert_pair(h.0, SignatureMethods::Auto, &[]);
    b.remote_id = None;
    a.local_id = id;
    a.credentials.private_key = Some(key);
    a.credentials.certificates = chain;
    let mut sim = cert_sim(seed, b);
    sim.initiate(a);
    sim.run_for(Duration::from_secs(30));
    // A hears AUTHENTICATION_FAILED on the wire.
    let fa = sim.failures(0);
    assert!(
        matches!(&fa[..], [Error::AuthenticationFailed { detail }] if detail.contains("refused our authentication")),
        "{fa:?}"
    );
    assert!(sim.established(1).is_empty());
    let fb = sim.failures(1);
    (sim, fb)
}

#[test]
fn every_bad_certificate_is_refused() {
    let p = pki();
    let mut rng = ChaCha20Rng::seed_from_u64(0xbad);
    for (i, kind) in BadKind::ALL.into_iter().enumerate() {
        let spec = EndEntity::host("a.example");
        let bad = p
            .root
            .issue_bad(kind, &spec, KeyAlgorithm::EcdsaP256, pki_time(), &mut rng)
            .unwrap();
        let mut chain = vec![bad.issued.cert_der.clone()];
        chain.extend(bad.extra_intermediates.iter().cloned());
        // Validity is judged at the sim's wall clock, a day after issuing.
        let (_, fb) = refused_initiator(
            7300 + i as u64,
            Arc::new(bad.issued.key),
            chain,
            Identity::Fqdn("a.example".into()),
        );
        let code = kind.expected_error().code();
        assert!(
            matches!(&fb[..], [Error::AuthenticationFailed { detail }] if detail.contains(code)),
            "{kind}: {fb:?}"
        );
    }
}

#[test]
fn certificate_not_matching_idi_is_refused() {
    let h = &pki().hosts[1];
    let (_, fb) = refused_initiator(
        7400,
        h.1.clone(),
        vec![h.2.clone(), pki().inter.cert_der().to_vec()],
        Identity::Fqdn("someone-else.example".into()),
    );
    assert!(
        matches!(&fb[..], [Error::AuthenticationFailed { detail }] if detail.contains("id-mismatch")),
        "{fb:?}"
    );
}

#[test]
fn signature_by_another_key_is_refused() {
    // A valid certificate, but AUTH signed with a key that is not its own.
    let h = &pki().hosts[1];
    let (_, fb) = refused_initiator(
        7500,
        h.3.clone(),
        vec![h.2.clone(), pki().inter.cert_der().to_vec()],
        Identity::Fqdn("a.example".into()),
    );
    assert!(
        matches!(&fb[..], [Error::AuthenticationFailed { detail }] if detail.contains("does not verify")),
        "{fb:?}"
    );
}

#[test]
fn signature_by_a_key_of_another_type_is_refused() {
    let h = &pki().hosts[1];
    let (_, fb) = refused_initiator(
        7550,
        pki().hosts[2].1.clone(),
        vec![h.2.clone(), pki().inter.cert_der().to_vec()],
        Identity::Fqdn("a.example".into()),
    );
    assert!(
        matches!(&fb[..], [Error::AuthenticationFailed { detail }] if detail.contains("not fitting")),
        "{fb:?}"
    );
}

#[test]
fn without_wall_clock_certificates_are_refused() {
    let (a, b) = cert_pair(KeyAlgorithm::EcdsaP256, SignatureMethods::Auto, &[]);
    let mut sim = Sim::new(7600, config(vec![]), config(vec![b]));
    sim.initiate(a);
    sim.run_for(Duration::from_secs(30));
    assert!(
        matches!(&sim.failures(1)[..], [Error::AuthenticationFailed { detail }] if detail.contains("wall clock")),
        "{:?}",
        sim.failures(1)
    );
}

#[test]
fn responder_certificate_refused_by_initiator() {
    // B's certificate chains to a root A does not trust.
    let (mut a, b) = cert_pair(KeyAlgorithm::Ed25519, SignatureMethods::Auto, &[]);
    a.credentials.trust_anchors = vec![anchor(&pki().big.0)];
    let mut sim = cert_sim(7700, b);
    sim.initiate(a);
    sim.run_for(Duration::from_secs(30));
    let fa = sim.failures(0);
    assert!(
        matches!(&fa[..], [Error::AuthenticationFailed { detail }] if detail.contains("unknown-issuer")),
        "{fa:?}"
    );
    // B is told (RFC 7296 2.21.2) and fails too.
    assert!(
        sim.failures(1)
            .iter()
            .any(|e| matches!(e, Error::AuthenticationFailed { .. })),
        "{:?}",
        sim.events(1)
    );
}

#[test]
fn config_without_key_is_refused_locally() {
    let (mut a, b) = cert_pair(KeyAlgorithm::EcdsaP256, SignatureMethods::Auto, &[]);
    a.credentials.private_key = None;
    let mut sim = cert_sim(7800, b);
    sim.initiate(a);
    assert!(matches!(&sim.failures(0)[..], [Error::InvalidConfig(_)]));
}

#[test]
fn certreq_and_hash_notify_in_ike_sa_init() {
    let (a, b) = cert_pair(KeyAlgorithm::EcdsaP256, SignatureMethods::Auto, &[]);
    let mut sim = cert_sim(7900, b);
    sim.handshake(a);
    let init = exchanges_of(&sim.log, exchange::IKE_SA_INIT);
    let req = Message::parse(&init[0].data).unwrap();
    let resp = Message::parse(&init[1].data).unwrap();
    let has = |m: &Message, kind: u16| {
        m.payloads
            .iter()
            .any(|p| matches!(p, ike::wire::Payload::Notify(x) if x.kind == kind))
    };
    for m in [&req, &resp] {
        assert!(has(m, notify::SIGNATURE_HASH_ALGORITHMS));
        assert!(has(m, notify::IKEV2_FRAGMENTATION_SUPPORTED));
    }
    // The responder's CERTREQ names the root by the SHA-1 of its SPKI.
    let want = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        anchor(&pki().root).key().spki_der(),
    );
    assert!(resp.payloads.iter().any(|p| matches!(p,
        ike::wire::Payload::CertReq { encoding: 4, data } if data == want.as_ref())));
}

/// A pair authenticating with the RSA-3072 CA chain (IKE_AUTH messages of
/// about 3 KB: they need fragments).
fn big_pair() -> (PeerConfig, PeerConfig) {
    let (root, inter, ea, eb) = &pki().big;
    let (mut a, mut b) = cert_pair(KeyAlgorithm::EcdsaP256, SignatureMethods::Auto, &[]);
    let creds = |ee: &certs::Issued| Credentials {
        private_key: Some(Arc::new(
            PrivateKey::from_pkcs8_der(ee.key.pkcs8_der()).unwrap(),
        )),
        certificates: vec![ee.cert_der.clone(), inter.cert_der().to_vec()],
        trust_anchors: vec![anchor(root)],
        ..Credentials::default()
    };
    a.credentials = creds(ea);
    b.credentials = creds(eb);
    (a, b)
}

fn is_fragment(data: &[u8]) -> bool {
    Message::parse(data).is_ok_and(|m| {
        matches!(
            m.payloads.last(),
            Some(ike::wire::Payload::EncryptedFragment(_))
        )
    })
}

#[test]
fn rsa3072_chain_goes_in_fragments() {
    let (a, b) = big_pair();
    let mut sim = cert_sim(8000, b);
    sim.handshake(a);
    check_established(&sim, AuthMethod::Certificate);
    let auth = exchanges_of(&sim.log, exchange::IKE_AUTH);
    assert!(auth.len() > 2, "IKE_AUTH was not fragmented");
    for t in &auth {
        assert!(is_fragment(&t.data));
        // 1280-octet IPv4 datagrams: 20 IP + 8 UDP.
        assert!(t.data.len() <= 1280 - 28, "{}", t.data.len());
    }
    for n in &sim.nodes {
        let s = n.ike.stats();
        assert!(s.fragments_out >= 3 && s.fragments_in >= 3, "{s:?}");
        assert_eq!(s.reassembled, 1);
        assert!(n.ike.ike_sas()[0].fragmentation);
    }
    // The peer's chain came through whole.
    let eb = &sim.established(1)[0];
    assert_eq!(
        eb.peer_credential.certificate(),
        Some(&pki().big.2.cert_der[..])
    );
    assert_eq!(
        eb.peer_credential.trust_anchor().unwrap().der(),
        pki().big.0.cert_der()
    );
}

#[test]
fn fragments_under_loss_duplication_and_reordering() {
    for seed in 0..6 {
        let (a, b) = big_pair();
        let mut sim = cert_sim(8100 + seed, b);
        sim.faults = Faults {
            loss: 0.15,
            dup: 0.2,
            reorder: 0.4,
        };
        sim.handshake(a);
        check_established(&sim, AuthMethod::Certificate);
    }
}

#[test]
fn fragmentation_off_sends_whole_messages() {
    let (a, b) = big_pair();
    let mut ca = config(vec![]);
    ca.fragmentation.enabled = false;
    let mut sim = Sim::new(8200, ca, config(vec![b]));
    for n in &mut sim.nodes {
        n.ike.set_wall_clock(sim.start, wall());
    }
    sim.handshake(a);
    let auth = exchanges_of(&sim.log, exchange::IKE_AUTH);
    assert_eq!(auth.len(), 2);
    assert!(auth
        .iter()
        .all(|t| !is_fragment(&t.data) && t.data.len() > 1280));
    assert!(!sim.established(1)[0].fragmentation);
}

/// The responder's reassembly bounds: fragments beyond them are dropped
/// and counted, and the handshake cannot complete.
fn bounded(seed: u64, tweak: impl FnOnce(&mut ike::FragmentationConfig)) -> Sim {
    let (a, b) = big_pair();
    let mut cb = config(vec![b]);
    tweak(&mut cb.fragmentation);
    let mut sim = Sim::new(seed, config(vec![]), cb);
    for n in &mut sim.nodes {
        n.ike.set_wall_clock(sim.start, wall());
    }
    sim.initiate(a);
    sim.run_for(Duration::from_secs(60));
    assert!(sim.established(1).is_empty());
    assert!(
        matches!(&sim.failures(0)[..], [Error::Timeout]),
        "{:?}",
        sim.failures(0)
    );
    sim
}

#[test]
fn too_many_fragments_are_dropped() {
    let sim = bounded(8300, |f| f.max_fragments = 2);
    let s = sim.nodes[1].ike.stats();
    assert!(s.drops(DropReason::FragmentLimit) >= 3, "{s:?}");
    assert_eq!(s.fragments_in, 0, "nothing was stored");
}

#[test]
fn oversized_reassembly_is_dropped() {
    let sim = bounded(8400, |f| f.max_message = 1500);
    let s = sim.nodes[1].ike.stats();
    assert!(s.drops(DropReason::FragmentLimit) >= 1, "{s:?}");
    assert_eq!(s.reassembled, 0);
}

#[test]
fn forged_fragments_are_dropped_before_storage() {
    let (a, b) = big_pair();
    let mut sim = cert_sim(8500, b);
    sim.initiate(a);
    // Run until the IKE_AUTH fragments are in flight to the responder.
    let ok = sim.run_until(Duration::from_secs(5), |s| {
        s.flight
            .values()
            .any(|(d, t)| *d == 1 && is_fragment(&t.data))
    });
    assert!(ok);
    let forged: Vec<Transmit> = sim
        .flight
        .values()
        .filter(|(d, t)| *d == 1 && is_fragment(&t.data))
        .map(|(_, t)| {
            let mut t = t.clone();
            let n = t.data.len();
            t.data[n - 40] ^= 1;
            t
        })
        .collect();
    let count = forged.len() as u64;
    for t in forged {
        let now = sim.now;
        sim.nodes[1]
            .ike
            .handle_datagram(now, t.remote, t.local, &t.data);
    }
    let s = sim.nodes[1].ike.stats().clone();
    assert_eq!(s.drops(DropReason::IntegrityFailed), count);
    assert_eq!(s.fragments_in, 0);
    // The genuine fragments still make the message.
    let done = sim.run_until(Duration::from_secs(60), |s| {
        !s.children(0).is_empty() && !s.children(1).is_empty()
    });
    assert!(done, "{:?}", sim.events(0));
}

/// A BTNS responder (RFC 5386): any key, pinned by address.
fn btns_responder(policy: ike::PinPolicy) -> (PeerConfig, Sim) {
    let h = &pki().hosts[1];
    let mut b = peer_b();
    b.remote_id = None;
    b.local_auth = AuthMethod::RawPublicKey;
    b.remote_auth = AuthMethod::RawPublicKey;
    b.credentials = Credentials {
        private_key: Some(h.3.clone()),
        accept_any_key: true,
        pinning: true,
        ..Credentials::default()
    };
    let mut sim = cert_sim(8600, b);
    sim.nodes[1].ike.pins_mut().policy = policy;
    // The initiator pins the responder's raw key too.
    let mut a = peer_a();
    a.remote_auth = AuthMethod::RawPublicKey;
    a.credentials.peer_keys = vec![h.3.public_key().clone()];
    a.credentials.pinning = true;
    (a, sim)
}

fn btns_initiator(
    a: &PeerConfig,
    key: Arc<PrivateKey>,
    self_signed: Option<Vec<u8>>,
) -> PeerConfig {
    let mut a = a.clone();
    a.credentials.private_key = Some(key);
    match self_signed {
        Some(c) => {
            a.local_auth = AuthMethod::Certificate;
            a.credentials.certificates = vec![c];
        }
        None => a.local_auth = AuthMethod::RawPublicKey,
    }
    a
}

fn pinned(sim: &Sim, i: usize) -> Vec<(IpAddr, certs::SpkiFingerprint)> {
    sim.events(i)
        .iter()
        .filter_map(|e| match e {
            Event::PeerKeyPinned {
                address,
                fingerprint,
                ..
            } => Some((*address, *fingerprint)),
            _ => None,
        })
        .collect()
}

#[test]
fn btns_any_key_is_pinned_and_a_changed_key_refused() {
    let (a, mut sim) = btns_responder(ike::PinPolicy::Refuse);
    let mut rng = ChaCha20Rng::seed_from_u64(0xb7b5);
    let ss = certs::self_signed(
        &EndEntity::host("a.example"),
        KeyAlgorithm::Ed25519,
        pki_time(),
        &mut rng,
    )
    .unwrap();
    let first_fp = ss.key.public_key().fingerprint();
    // A self-signed certificate (BTNS): accepted for its key alone.
    sim.handshake(btns_initiator(&a, Arc::new(ss.key), Some(ss.cert_der)));
    let eb = &sim.established(1)[0];
    assert_eq!(eb.peer_auth, AuthMethod::RawPublicKey);
    assert_eq!(eb.peer_credential.spki_sha256(), Some(first_fp));
    assert_eq!(pinned(&sim, 1), vec![(A, first_fp)]);
    assert_eq!(sim.nodes[1].ike.pins().get(A), Some(&first_fp));
    assert_eq!(pinned(&sim, 0).len(), 1, "the initiator pinned B");
    // The same address with another key (raw this time): refused.
    let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256, &mut rng).unwrap();
    sim.initiate(btns_initiator(&a, Arc::new(other), None));
    sim.run_for(Duration::from_secs(30));
    assert!(
        sim.failures(1).iter().any(
            |e| matches!(e, Error::AuthenticationFailed { detail } if detail.contains("pin-mismatch"))
        ),
        "{:?}",
        sim.failures(1)
    );
    assert!(sim
        .events(1)
        .iter()
        .any(|e| matches!(e, Event::PeerKeyChanged { refused: true, .. })));
    assert_eq!(sim.established(1).len(), 1);
    // The store persists as text.
    let text = sim.nodes[1].ike.pins().to_text();
    let back = ike::PinStore::from_text(&text, ike::PinPolicy::Refuse).unwrap();
    assert_eq!(back.get(A), Some(&first_fp));
}

#[test]
fn btns_changed_key_with_warn_policy_is_accepted() {
    let (a, mut sim) = btns_responder(ike::PinPolicy::Warn);
    let k1 = pki().hosts[2].1.clone();
    let k2 = pki().hosts[3].1.clone();
    sim.handshake(btns_initiator(&a, k1.clone(), None));
    sim.initiate(btns_initiator(&a, k2, None));
    let ok = sim.run_until(Duration::from_secs(30), |s| s.established(1).len() == 2);
    assert!(ok, "{:?}", sim.events(1));
    assert!(sim
        .events(1)
        .iter()
        .any(|e| matches!(e, Event::PeerKeyChanged { refused: false, .. })));
    // The old pin stays.
    assert_eq!(
        sim.nodes[1].ike.pins().get(A),
        Some(&k1.public_key().fingerprint())
    );
}

/// RFC 7296 2.4 with BTNS (RFC 5386): INITIAL_CONTACT from a host that
/// asserts a BTNS peer's identity with another key does not end that
/// peer's IKE SA (the identity proves nothing); from the same key it does.
#[test]
fn btns_initial_contact_needs_the_same_key() {
    let (a, mut sim) = btns_responder(ike::PinPolicy::Warn);
    let k1 = pki().hosts[2].1.clone();
    let k2 = pki().hosts[3].1.clone();
    let fresh_initiator = |sim: &mut Sim, seed: u64| {
        // Another host (or the same one restarted): no IKE SA held, so its
        // IKE_AUTH carries INITIAL_CONTACT.
        sim.nodes[0].ike = Ike::new(config(vec![]), rng(seed), Box::new(AcceptAll));
        sim.nodes[0].ike.set_wall_clock(sim.start, wall());
        sim.nodes[0].events.clear();
    };
    sim.handshake(btns_initiator(&a, k1.clone(), None));
    let first = sim.responder_sa();
    fresh_initiator(&mut sim, 8601);
    sim.handshake(btns_initiator(&a, k2, None));
    assert!(
        sim.nodes[1].ike.ike_sa(first).is_some(),
        "another key's INITIAL_CONTACT must not end the first BTNS peer's IKE SA"
    );
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 2);
    // The first key restarts: its INITIAL_CONTACT ends its stale IKE SA.
    fresh_initiator(&mut sim, 8602);
    sim.handshake(btns_initiator(&a, k1, None));
    assert!(sim.nodes[1].ike.ike_sa(first).is_none());
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 2);
}

/// Records what the child SA policy hook is told about the peer.
struct Recorder(Arc<std::sync::Mutex<Vec<Option<certs::SpkiFingerprint>>>>);

impl ChildSaPolicy for Recorder {
    fn authorize(&mut self, req: &ChildSaRequest<'_>) -> ChildSaDecision {
        self.0
            .lock()
            .unwrap()
            .push(req.peer_credential.spki_sha256());
        ChildSaDecision::Accept {
            tsi: req.tsi.to_vec(),
            tsr: req.tsr.to_vec(),
        }
    }
}

#[test]
fn child_policy_sees_the_peer_key_in_ike_auth() {
    let h = &pki().hosts[3];
    let (a, b) = cert_pair(KeyAlgorithm::Ed25519, SignatureMethods::Auto, &[]);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sim = Sim::with_policy(
        8700,
        config(vec![]),
        config(vec![b]),
        Box::new(AcceptAll),
        Box::new(Recorder(seen.clone())),
    );
    for n in &mut sim.nodes {
        n.ike.set_wall_clock(sim.start, wall());
    }
    sim.handshake(a);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some(h.1.public_key().fingerprint())]
    );
}
