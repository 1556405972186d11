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
