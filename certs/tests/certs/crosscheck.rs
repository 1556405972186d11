//! Cross-checks with tools no one here wrote: `openssl verify` (OpenSSL 3)
//! and strongSwan's `pki --verify` must agree with latchkey's verdict on
//! every good and bad certificate, for every key type.
//!
//! Scope, so that the verdicts compare like with like:
//! - openssl runs with `-purpose sslserver` (hosts) or `-purpose sslclient`
//!   (users), which checks the end entity's keyUsage and extendedKeyUsage,
//!   and with `-verify_ip` / `-verify_hostname` / `-verify_email`, which
//!   checks the identity; it is compared with latchkey's full check
//!   (`ValidationPolicy::for_id`).
//! - `pki --verify` checks the chain only (signatures, validity, CA flags,
//!   path length), not end-entity usage or identity; it is compared with
//!   `ValidationPolicy::chain_only()`.
//!
//! Each tool is skipped, with a printed reason, when it is not installed
//! (Debian packages: openssl, strongswan-pki).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{key, rng, Pki};
use certs::time::OffsetDateTime;
use certs::{
    certificate_to_pem, validate, BadKind, EndEntity, KeyAlgorithm, TrustAnchor, ValidationPolicy,
};
use pad::Identity;

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP: `{name}` is not installed; cross-check against it not run");
    }
    found
}

struct Case {
    name: String,
    cert: Vec<u8>,
    /// Untrusted certificates sent along (intermediate, cA FALSE issuer).
    chain: Vec<Vec<u8>>,
    id: Identity,
    user: bool,
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("latchkey-crosscheck-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_pems(path: &Path, ders: &[Vec<u8>]) {
    let text: String = ders.iter().map(|d| certificate_to_pem(d)).collect();
    std::fs::write(path, text).unwrap();
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn cases(alg: KeyAlgorithm, pki: &Pki, now: OffsetDateTime) -> Vec<Case> {
    let mut rng = rng(600);
    let inter = pki.inter.cert_der().to_vec();
    let mut out = Vec::new();
    let specs = [
        ("host-ip", EndEntity::host("192.0.2.60"), false),
        ("host-dns", EndEntity::host("gw.example.com"), false),
        ("user", EndEntity::user("grace@example.com"), true),
    ];
    for (tag, spec, user) in &specs {
        let good = pki
            .inter
            .issue_for_key(spec, key(alg, 0, &mut rng), now, &mut rng)
            .unwrap();
        out.push(Case {
            name: format!("good-{tag}"),
            cert: good.cert_der,
            chain: vec![inter.clone()],
            id: spec.identity().unwrap(),
            user: *user,
        });
    }
    // The bad set, for hosts by address and users; RSA keys are slow to make
    // in debug builds, so bad certificates for RSA chains get ECDSA leaves
    // (their CA signatures are still RSA).
    let leaf_alg = match alg {
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => KeyAlgorithm::EcdsaP256,
        a => a,
    };
    for (tag, spec, user) in [&specs[0], &specs[2]] {
        for kind in BadKind::ALL {
            let bad = pki
                .inter
                .issue_bad(kind, spec, leaf_alg, now, &mut rng)
                .unwrap();
            let mut chain = vec![inter.clone()];
            chain.extend(bad.extra_intermediates.iter().cloned());
            out.push(Case {
                name: format!("{kind}-{tag}"),
                cert: bad.issued.cert_der,
                chain,
                id: bad.id,
                user: *user,
            });
        }
    }
    out
}

#[test]
fn openssl_and_strongswan_agree_with_latchkey() {
    let have_openssl = tool("openssl");
    let have_pki = tool("pki");
    if !have_openssl && !have_pki {
        return;
    }
    // The tools use the real clock, so this test does too.
    let now = OffsetDateTime::now_utc();
    let mut disagreements = Vec::new();
    let mut compared = 0;
    for alg in KeyAlgorithm::ALL {
        let mut rng = rng(601);
        let pki = Pki::new(alg, now, &mut rng);
        let anchors: Vec<TrustAnchor> = pki.anchors();
        let dir = tmpdir(alg.name());
        let root_pem = dir.join("root.pem");
        write_pems(&root_pem, &[pki.root.cert_der().to_vec()]);
        for case in cases(alg, &pki, now) {
            let cert_pem = dir.join(format!("{}.pem", case.name));
            let chain_pem = dir.join(format!("{}.chain.pem", case.name));
            write_pems(&cert_pem, std::slice::from_ref(&case.cert));
            write_pems(&chain_pem, &case.chain);
            let chain: Vec<&[u8]> = case.chain.iter().map(Vec::as_slice).collect();
            let full = validate(
                &case.cert,
                &chain,
                &anchors,
                now,
                &ValidationPolicy::for_id(case.id.clone()),
            );
            let chain_only = validate(
                &case.cert,
                &chain,
                &anchors,
                now,
                &ValidationPolicy::chain_only(),
            );
            if have_openssl {
                let mut cmd = Command::new("openssl");
                cmd.arg("verify")
                    .arg("-CAfile")
                    .arg(&root_pem)
                    .arg("-untrusted")
                    .arg(&chain_pem)
                    .arg("-purpose")
                    .arg(if case.user { "sslclient" } else { "sslserver" });
                match &case.id {
                    Identity::Ipv4(a) => cmd.arg("-verify_ip").arg(a.to_string()),
                    Identity::Ipv6(a) => cmd.arg("-verify_ip").arg(a.to_string()),
                    Identity::Fqdn(h) => cmd.arg("-verify_hostname").arg(h),
                    Identity::Rfc822(e) => cmd.arg("-verify_email").arg(e),
                    other => panic!("no openssl check for {other:?}"),
                };
                cmd.arg(&cert_pem);
                let (ok, text) = run(&mut cmd);
                compared += 1;
                eprintln!(
                    "{alg:>10} {:<24} openssl: {:<5} latchkey: {}",
                    case.name,
                    ok,
                    full.as_ref()
                        .map_or_else(|e| e.code().to_string(), |_| "ok".into())
                );
                if ok != full.is_ok() {
                    disagreements.push(format!(
                        "{alg} {}: openssl says {ok} ({}), latchkey says {:?}",
                        case.name,
                        text.trim(),
                        full.as_ref().err()
                    ));
                }
            }
            if have_pki {
                let mut cmd = Command::new("pki");
                cmd.arg("--verify")
                    .arg("--in")
                    .arg(&cert_pem)
                    .arg("--cacert")
                    .arg(&root_pem);
                for (i, c) in case.chain.iter().enumerate() {
                    let p = dir.join(format!("{}.ca{i}.pem", case.name));
                    write_pems(&p, std::slice::from_ref(c));
                    cmd.arg("--cacert").arg(p);
                }
                let (ok, text) = run(&mut cmd);
                compared += 1;
                eprintln!(
                    "{alg:>10} {:<24} pki:     {:<5} latchkey(chain): {}",
                    case.name,
                    ok,
                    chain_only
                        .as_ref()
                        .map_or_else(|e| e.code().to_string(), |_| "ok".into())
                );
                if ok != chain_only.is_ok() {
                    disagreements.push(format!(
                        "{alg} {}: pki --verify says {ok} ({}), latchkey (chain only) says {:?}",
                        case.name,
                        text.trim(),
                        chain_only.as_ref().err()
                    ));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!(
        "{compared} verdicts compared, {} disagreements",
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Certificates signed by OpenSSL (RSASSA-PSS with SHA-256 and SHA-384,
/// PKCS#1 v1.5 with SHA-512, ECDSA P-384 with SHA-256) under CAs made
/// here validate through latchkey; latchkey's SPKI fingerprints equal
/// OpenSSL's.
#[test]
fn openssl_signed_certificates_validate() {
    if !tool("openssl") {
        return;
    }
    let now = OffsetDateTime::now_utc();
    let dir = tmpdir("openssl-signed");
    let sh = |script: &str| {
        let (ok, text) = run(Command::new("sh").arg("-c").arg(script).current_dir(&dir));
        assert!(ok, "{script}: {text}");
        text
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:192.0.2.70,DNS:pss.example\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    sh(
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key 2>/dev/null \
        && openssl req -new -key leaf.key -subj /CN=openssl-leaf -out leaf.csr",
    );
    let mut rng = rng(602);
    let rsa_ca = certs::CertificateAuthority::root_for_key(
        "latchkey RSA root",
        crate::common::rsa_fixture("rsa2048"),
        now,
        &mut rng,
    )
    .unwrap();
    let ec_ca = certs::CertificateAuthority::root(
        "latchkey P-384 root",
        KeyAlgorithm::EcdsaP384,
        now,
        &mut rng,
    )
    .unwrap();
    for (tag, ca, opts) in [
        (
            "pss256",
            &rsa_ca,
            "-sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest",
        ),
        (
            "pss384",
            &rsa_ca,
            "-sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest",
        ),
        ("pkcs1-512", &rsa_ca, "-sha512"),
        ("p384-sha256", &ec_ca, "-sha256"),
    ] {
        std::fs::write(dir.join(format!("{tag}-ca.pem")), ca.cert_pem()).unwrap();
        std::fs::write(
            dir.join(format!("{tag}-ca.key")),
            ca.key().to_pem().as_bytes(),
        )
        .unwrap();
        sh(&format!(
            "openssl x509 -req -in leaf.csr -CA {tag}-ca.pem -CAkey {tag}-ca.key -set_serial 7 \
             -days 30 {opts} -extfile ext.cnf -out {tag}.pem 2>/dev/null"
        ));
        let pem = std::fs::read(dir.join(format!("{tag}.pem"))).unwrap();
        let der = certs::certificates_from_pem(&pem).unwrap().remove(0);
        let sig_alg = certs::describe(&der).unwrap().signature_algorithm;
        if tag.starts_with("pss") {
            assert_eq!(sig_alg, "1.2.840.113549.1.1.10", "{tag}: RSASSA-PSS");
            // OpenSSL's RSASSA-PSS AlgorithmIdentifier (the certificate's
            // outer signatureAlgorithm) decodes to our RFC 7427 scheme.
            let prefix = [
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
            ];
            let at = der
                .windows(prefix.len())
                .rposition(|w| w == prefix)
                .unwrap()
                - 2;
            let ai = &der[at..at + 2 + der[at + 1] as usize];
            let want = if tag == "pss256" {
                certs::SignatureScheme::RsaPssSha256
            } else {
                certs::SignatureScheme::RsaPssSha384
            };
            assert_eq!(
                certs::SignatureScheme::from_algorithm_identifier(
                    ai,
                    certs::KeyType::Rsa { bits: 2048 }
                ),
                Some(want),
                "{tag}: {}",
                hex::encode(ai)
            );
            // ...and is byte for byte what we send.
            assert_eq!(Some(ai), want.algorithm_identifier(), "{tag}");
        }
        // OpenSSL stamped notBefore with its own clock, just now.
        let now = OffsetDateTime::now_utc();
        let v = validate(
            &der,
            &[],
            &[TrustAnchor::from_der(ca.cert_der()).unwrap()],
            now,
            &ValidationPolicy::for_id(Identity::Fqdn("pss.example".into())),
        )
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
        // A bit flipped in OpenSSL's signature is noticed.
        let mut bad = der.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            validate(
                &bad,
                &[],
                &[TrustAnchor::from_der(ca.cert_der()).unwrap()],
                now,
                &ValidationPolicy::default()
            )
            .err(),
            Some(certs::ValidationError::BadSignature),
            "{tag}"
        );
        let out = sh(&format!(
            "openssl x509 -in {tag}.pem -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r"
        ));
        let theirs = out.split_whitespace().next().unwrap().to_owned();
        assert_eq!(v.spki_sha256.to_string(), theirs, "{tag}");
        eprintln!("{tag}: OpenSSL-signed certificate validates; SPKI SHA-256 {theirs} agrees");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Signatures both ways with OpenSSL: what `PrivateKey::sign` makes,
/// `openssl` verifies; what `openssl` signs with the same key, `PublicKey::
/// verify` accepts. Covers DER ECDSA (RFC 7427), Ed25519, RSA PKCS#1 v1.5
/// and RSASSA-PSS (salt length = hash length) with SHA-256/384/512.
#[test]
fn signatures_agree_with_openssl() {
    use certs::SignatureScheme as S;
    if !tool("openssl") {
        return;
    }
    let dir = tmpdir("signatures");
    let msg = b"IKE_AUTH InitiatorSignedOctets, as latchkey would sign them";
    std::fs::write(dir.join("msg"), msg).unwrap();
    let mut rng = rng(603);
    let mut checked = 0;
    for alg in KeyAlgorithm::ALL {
        let k = key(alg, 0, &mut rng);
        std::fs::write(dir.join("key.pem"), k.to_pem().as_bytes()).unwrap();
        let spki_pem = pem_block("PUBLIC KEY", k.public_key().spki_der());
        std::fs::write(dir.join("pub.pem"), spki_pem).unwrap();
        for scheme in S::ALL {
            if !scheme.fits(k.kind())
                || matches!(
                    scheme,
                    S::EcdsaP256Sha256Fixed | S::EcdsaP384Sha384Fixed | S::RsaPkcs1Sha1
                )
            {
                continue;
            }
            let (digest, pss) = match scheme {
                S::EcdsaP256Sha256Der | S::RsaPkcs1Sha256 => ("-sha256", false),
                S::EcdsaP384Sha384Der | S::RsaPkcs1Sha384 => ("-sha384", false),
                S::RsaPkcs1Sha512 => ("-sha512", false),
                S::RsaPssSha256 => ("-sha256", true),
                S::RsaPssSha384 => ("-sha384", true),
                S::RsaPssSha512 => ("-sha512", true),
                _ => ("", false),
            };
            let pss_opts = if pss {
                "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"
            } else {
                ""
            };
            let (verify, sign) = if scheme == S::Ed25519 {
                (
                    "openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in msg -sigfile sig"
                        .to_owned(),
                    "openssl pkeyutl -sign -inkey key.pem -rawin -in msg -out sig".to_owned(),
                )
            } else {
                (
                    format!("openssl dgst {digest} {pss_opts} -verify pub.pem -signature sig msg"),
                    format!("openssl dgst {digest} {pss_opts} -sign key.pem -out sig msg"),
                )
            };
            // Ours, checked by OpenSSL.
            let sig = k.sign(msg, scheme).unwrap();
            std::fs::write(dir.join("sig"), &sig).unwrap();
            let (ok, text) = run(Command::new("sh").arg("-c").arg(&verify).current_dir(&dir));
            assert!(
                ok,
                "{alg} {scheme:?}: openssl rejects our signature: {text}"
            );
            // Theirs, checked by us.
            let (ok, text) = run(Command::new("sh").arg("-c").arg(&sign).current_dir(&dir));
            assert!(ok, "{alg} {scheme:?}: openssl could not sign: {text}");
            let theirs = std::fs::read(dir.join("sig")).unwrap();
            k.public_key()
                .verify(scheme, msg, &theirs)
                .unwrap_or_else(|e| panic!("{alg} {scheme:?}: OpenSSL's signature refused: {e}"));
            checked += 1;
        }
    }
    eprintln!("{checked} (key, scheme) pairs agree with OpenSSL both ways");
    assert_eq!(checked, 1 + 1 + 1 + 6 + 6);
    let _ = std::fs::remove_dir_all(&dir);
}

fn pem_block(label: &str, der: &[u8]) -> String {
    // certificate_to_pem with another label: swap the label lines.
    certificate_to_pem(der).replace("CERTIFICATE", label)
}
