//! What a peer sends for public-key authentication, fed to the `certs`
//! crate: CERT payload contents (X.509 end entity and intermediates, raw
//! public keys, RFC 7296 3.6 / RFC 7670), AUTH signatures, and the other
//! parsers of outside bytes (PEM/DER bundles, IPSECKEY RDATA). Nothing may
//! panic, and no garbage may validate.
//!
//! Input: the first byte selects the mode, the rest is split into records
//! `[len_hi, len_lo, bytes...]`.
//! - mode & 3 == 0: the records are the end entity and the intermediates,
//!   as they are;
//! - mode & 3 == 1: the records are edits `[pos_hi, pos_lo, xor]...` applied
//!   to a valid leaf (first record) and a valid intermediate (second), so
//!   the fuzzer works inside well-formed DER, behind the outer checks;
//! - mode & 3 == 2: the first record is an SPKI (raw public key), the second
//!   a signature over the third, checked under every scheme;
//! - mode & 3 == 3: the whole rest to the bundle, IPSECKEY and PEM parsers.
//!
//! What must hold besides "no panic": an edited chain validates only if the
//! edits left both certificates' DER unchanged (a flipped bit in a signed
//! certificate must never pass), and a random signature never verifies.
#![no_main]

use std::sync::OnceLock;

use certs::time::{Duration, OffsetDateTime};
use certs::{
    CertificateAuthority, EndEntity, KeyAlgorithm, PublicKey, SignatureScheme, TrustAnchor,
    ValidationPolicy,
};
use libfuzzer_sys::fuzz_target;
use pad::Identity;

#[path = "common/rng.rs"]
mod rng;
use rng::FuzzRng;

struct Pki {
    anchor: TrustAnchor,
    intermediate: Vec<u8>,
    leaf: Vec<u8>,
    now: OffsetDateTime,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut rng = FuzzRng(0x9e37_79b9_7f4a_7c15);
        let now = OffsetDateTime::now_utc();
        let root = CertificateAuthority::root("fuzz root", KeyAlgorithm::EcdsaP256, now, &mut rng)
            .expect("root");
        let inter = root
            .intermediate("fuzz intermediate", KeyAlgorithm::EcdsaP256, now, &mut rng)
            .expect("intermediate");
        let leaf = inter
            .issue(
                &EndEntity::host("peer.example"),
                KeyAlgorithm::EcdsaP256,
                now,
                &mut rng,
            )
            .expect("leaf");
        Pki {
            anchor: TrustAnchor::from_der(root.cert_der()).expect("anchor"),
            intermediate: inter.cert_der().to_vec(),
            leaf: leaf.cert_der,
            // A minute in: inside every certificate's validity.
            now: now + Duration::minutes(1),
        }
    })
}

fn records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 8 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

fn edit(base: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for e in edits.chunks_exact(3) {
        let pos = usize::from(u16::from_be_bytes([e[0], e[1]]));
        if let Some(b) = v.get_mut(pos) {
            *b ^= e[2];
        }
    }
    v
}

/// Everything the IKE_AUTH path asks of a peer's certificate.
fn check_chain(p: &Pki, ee: &[u8], inters: &[&[u8]]) -> bool {
    let id = Identity::Fqdn("peer.example".into());
    let _ = certs::certificate_public_key(ee);
    let _ = certs::identity_matches(ee, &id);
    let _ = certs::describe(ee);
    let _ = certs::eku_allows_ike(ee, true);
    let _ = TrustAnchor::from_der(ee);
    let anchors = [p.anchor.clone()];
    let ok = certs::validate(ee, inters, &anchors, p.now, &ValidationPolicy::for_id(id)).is_ok();
    let _ = certs::validate(ee, inters, &anchors, p.now, &ValidationPolicy::chain_only());
    ok
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let p = pki();
    let recs = records(rest);
    match mode & 3 {
        0 => {
            if let Some((ee, inters)) = recs.split_first() {
                check_chain(p, ee, inters);
            }
        }
        1 => {
            let leaf = edit(&p.leaf, recs.first().copied().unwrap_or_default());
            let inter = edit(&p.intermediate, recs.get(1).copied().unwrap_or_default());
            let ok = check_chain(p, &leaf, &[&inter]);
            if leaf != p.leaf || inter != p.intermediate {
                // A changed signed certificate never validates (its
                // signature covers every octet but the signature's own,
                // and a changed signature does not verify).
                assert!(!ok, "an edited chain validated");
            } else {
                assert!(ok, "the untouched chain validates");
            }
        }
        2 => {
            let (spki, sig, msg) = (
                recs.first().copied().unwrap_or_default(),
                recs.get(1).copied().unwrap_or_default(),
                recs.get(2).copied().unwrap_or_default(),
            );
            if let Ok(k) = PublicKey::from_spki_der(spki) {
                let _ = k.fingerprint();
                for s in SignatureScheme::ALL {
                    let _ = k.verify(s, msg, sig);
                }
            }
            // The leaf's real key against a fuzzed signature: never valid
            // (finding a signature by chance is not possible).
            if let Ok(k) = certs::certificate_public_key(&p.leaf) {
                assert!(k
                    .verify(SignatureScheme::EcdsaP256Sha256Der, msg, sig)
                    .is_err());
            }
        }
        _ => {
            let _ = certs::certificates_from_pem_or_der(rest);
            let _ = certs::certificates_from_pem(rest);
            if let Ok(k) = certs::IpsecKey::parse(rest) {
                let _ = k.to_rdata();
                let _ = k.spki_der();
                let _ = k.to_public_key();
            }
        }
    }
});
