//! Diffie-Hellman key exchange for the KE payload (RFC 7296 1.2, 3.4):
//! X25519 (RFC 8031), ECP-256/384 (RFC 5903), MODP-2048 (RFC 3526, with the
//! RFC 6989 2.1 public value check).

use core::fmt;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::subtle::{ConstantTimeGreater, ConstantTimeLess};
use crypto_bigint::{Encoding, U2048};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use pad::alg::DhGroup;
use rand_core::CryptoRngCore;
use zeroize::{Zeroize, Zeroizing};

use super::{CryptoError, Secret};

/// The 2048-bit MODP prime of RFC 3526 section 3 (group 14):
/// p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }; generator 2.
const MODP2048_P: U2048 = U2048::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// Octets of a MODP-2048 value on the wire.
const MODP_LEN: usize = 256;

/// Bits of the random MODP private exponent we generate. RFC 3526 section 8
/// gives 220-320 bits for the 2048-bit group; we take the upper estimate.
/// The modexp runs in time that depends only on this bound, not on the value.
const MODP_EXP_BITS: usize = 320;

enum Private {
    X25519(x25519_dalek::StaticSecret),
    Ecp256(p256::SecretKey),
    Ecp384(p384::SecretKey),
    /// Exponent and the number of low bits of it the modexp processes.
    Modp {
        exp: Box<Zeroizing<U2048>>,
        exp_bits: usize,
    },
    /// ring's ephemeral X25519 key ([`X25519Source::System`]), taken by
    /// the one [`DhPrivate::agree`] it allows.
    X25519System(std::sync::Mutex<Option<ring::agreement::EphemeralPrivateKey>>),
    /// A group this build does not implement (see [`DhPrivate::generate`]).
    Unsupported,
}

/// Our half of a key exchange: the private value and the public value sent
/// in the KE payload. The private value is zeroized on drop (x25519-dalek's
/// and RustCrypto's secret types zeroize themselves; the MODP exponent is
/// held in [`Zeroizing`]).
pub struct DhPrivate {
    group: DhGroup,
    private: Private,
    public: Vec<u8>,
}

impl fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group)
            .field("public_len", &self.public.len())
            .finish_non_exhaustive()
    }
}

impl DhPrivate {
    /// Generate a fresh private value for `group` from `rng`.
    ///
    /// `DhGroup` is non-exhaustive: for a group this build does not
    /// implement, the result has an empty public value and every
    /// [`DhPrivate::agree`] fails with [`CryptoError::Unsupported`]. Use
    /// [`DhPrivate::try_generate`] to be told up front.
    pub fn generate(group: DhGroup, rng: &mut dyn CryptoRngCore) -> Self {
        let private = match group {
            DhGroup::X25519 => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(bytes.as_mut());
                Private::X25519(x25519_dalek::StaticSecret::from(*bytes))
            }
            DhGroup::Ecp256 => Private::Ecp256(p256::SecretKey::random(&mut &mut *rng)),
            DhGroup::Ecp384 => Private::Ecp384(p384::SecretKey::random(&mut &mut *rng)),
            DhGroup::Modp2048 => {
                // A uniformly random exponent below 2^MODP_EXP_BITS, with the
                // top bit forced so that it is never small.
                let mut bytes = Zeroizing::new([0u8; MODP_LEN]);
                let n = MODP_EXP_BITS / 8;
                let start = MODP_LEN - n;
                if let Some(tail) = bytes.get_mut(start..) {
                    rng.fill_bytes(tail);
                }
                if let Some(top) = bytes.get_mut(start) {
                    *top |= 0x80;
                }
                Private::Modp {
                    exp: Box::new(Zeroizing::new(U2048::from_be_slice(bytes.as_ref()))),
                    exp_bits: MODP_EXP_BITS,
                }
            }
            _ => Private::Unsupported,
        };
        Self::with_private(group, private)
    }

    /// Like [`DhPrivate::generate`], but X25519 with
    /// [`X25519Source::System`] is ring's ephemeral key from the system
    /// RNG: faster, not seedable, good for exactly one
    /// [`DhPrivate::agree`] (the initiator's IKE_SA_INIT), and not zeroized
    /// by ring (see [`X25519Source`]). Anything else is
    /// [`DhPrivate::generate`] from `rng`.
    pub fn generate_from(
        group: DhGroup,
        rng: &mut dyn CryptoRngCore,
        source: X25519Source,
    ) -> Self {
        if group == DhGroup::X25519 && source == X25519Source::System {
            use ring::agreement;
            let sys = ring::rand::SystemRandom::new();
            let key = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &sys).ok();
            let public = key
                .as_ref()
                .and_then(|k| k.compute_public_key().ok())
                .map(|p| p.as_ref().to_vec());
            if let (Some(key), Some(public)) = (key, public) {
                return Self {
                    group,
                    private: Private::X25519System(std::sync::Mutex::new(Some(key))),
                    public,
                };
            }
        }
        Self::generate(group, rng)
    }

    /// Like [`DhPrivate::generate`], but fails for a group this build does
    /// not implement.
    pub fn try_generate(group: DhGroup, rng: &mut dyn CryptoRngCore) -> Result<Self, CryptoError> {
        let k = Self::generate(group, rng);
        match k.private {
            Private::Unsupported => Err(CryptoError::Unsupported(group.name())),
            _ => Ok(k),
        }
    }

    /// Build from fixed private bytes, for known-answer tests: X25519 the 32
    /// octet scalar (RFC 7748 5); ECP the big-endian scalar of the curve's
    /// size; MODP a big-endian exponent of at most 256 octets.
    #[doc(hidden)]
    pub fn from_private_bytes(group: DhGroup, bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad = |reason| CryptoError::BadPrivateValue { group, reason };
        let private = match group {
            DhGroup::X25519 => {
                let arr: [u8; 32] = bytes.try_into().map_err(|_| bad("length"))?;
                Private::X25519(x25519_dalek::StaticSecret::from(arr))
            }
            DhGroup::Ecp256 => {
                if bytes.len() != 32 {
                    return Err(bad("length"));
                }
                Private::Ecp256(p256::SecretKey::from_slice(bytes).map_err(|_| bad("scalar"))?)
            }
            DhGroup::Ecp384 => {
                if bytes.len() != 48 {
                    return Err(bad("length"));
                }
                Private::Ecp384(p384::SecretKey::from_slice(bytes).map_err(|_| bad("scalar"))?)
            }
            DhGroup::Modp2048 => {
                let padded = left_pad::<MODP_LEN>(bytes).ok_or_else(|| bad("length"))?;
                Private::Modp {
                    exp: Box::new(Zeroizing::new(U2048::from_be_slice(padded.as_ref()))),
                    exp_bits: 2048,
                }
            }
            _ => return Err(CryptoError::Unsupported(group.name())),
        };
        Ok(Self::with_private(group, private))
    }

    fn with_private(group: DhGroup, private: Private) -> Self {
        let public = match &private {
            Private::X25519(s) => x25519_dalek::PublicKey::from(s).as_bytes().to_vec(),
            Private::Ecp256(s) => {
                uncompressed_xy(s.public_key().to_encoded_point(false).as_bytes())
            }
            Private::Ecp384(s) => {
                uncompressed_xy(s.public_key().to_encoded_point(false).as_bytes())
            }
            Private::Modp { exp, exp_bits } => modp_pow(&U2048::from_u8(2), exp, *exp_bits)
                .to_be_bytes()
                .to_vec(),
            Private::X25519System(_) | Private::Unsupported => Vec::new(),
        };
        Self {
            group,
            private,
            public,
        }
    }

    /// The group of this exchange.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The KE payload's Key Exchange Data: X25519 the 32-octet u-coordinate
    /// (RFC 8031 2); ECP x || y without the 0x04 prefix (RFC 5903 7); MODP
    /// 256 octets big-endian, left-padded with zeros (RFC 7296 3.4).
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// Compute the shared secret g^ir from the peer's KE data, after checking
    /// it: the length must be exact; ECP points must be on the curve (RFC
    /// 5903 and RFC 6989 2.3); MODP values must satisfy 1 < y < p-1 (RFC 6989
    /// 2.1); an all-zero X25519 result is rejected (RFC 8031 2).
    ///
    /// The result is X25519's 32 octets, the ECP x coordinate only (RFC 5903
    /// 9), or the MODP value as 256 octets left-padded (RFC 7296 2.14).
    pub fn agree(&self, peer_public: &[u8]) -> Result<Secret, CryptoError> {
        let group = self.group;
        let bad = |reason| CryptoError::BadPublicValue { group, reason };
        if matches!(self.private, Private::Unsupported) {
            return Err(CryptoError::Unsupported(group.name()));
        }
        if peer_public.len() != group.public_len() {
            return Err(bad("wrong length"));
        }
        match &self.private {
            Private::X25519(s) => {
                let arr: [u8; 32] = peer_public.try_into().map_err(|_| bad("wrong length"))?;
                let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(arr));
                // RFC 8031 section 2 (paraphrased, not a verbatim quote):
                // an all-zero X25519 shared secret must be detected and the
                // exchange aborted (RFC 7748 section 6.1's check).
                if !shared.was_contributory() {
                    return Err(bad("all-zero shared secret"));
                }
                Ok(Secret::new(shared.as_bytes().to_vec()))
            }
            Private::Ecp256(s) => {
                let peer = p256::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| bad("not a point on the curve"))?;
                let shared = p256::ecdh::diffie_hellman(s.to_nonzero_scalar(), peer.as_affine());
                Ok(Secret::new(shared.raw_secret_bytes().to_vec()))
            }
            Private::Ecp384(s) => {
                let peer = p384::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| bad("not a point on the curve"))?;
                let shared = p384::ecdh::diffie_hellman(s.to_nonzero_scalar(), peer.as_affine());
                Ok(Secret::new(shared.raw_secret_bytes().to_vec()))
            }
            Private::X25519System(key) => {
                use ring::agreement;
                let key =
                    key.lock()
                        .ok()
                        .and_then(|mut k| k.take())
                        .ok_or(CryptoError::Unsupported(
                            "X25519 private value already used",
                        ))?;
                let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer_public);
                // ring fails on an all-zero shared secret (RFC 8031 2).
                agreement::agree_ephemeral(key, &peer, |k| Secret::new(k.to_vec()))
                    .map_err(|_| bad("all-zero shared secret"))
            }
            Private::Modp { exp, exp_bits } => {
                let y = U2048::from_be_slice(peer_public);
                // RFC 6989 section 2.1 (paraphrased): the recipient checks
                // that 1 < y < p-1; comparisons in constant time.
                let p_minus_1 = MODP2048_P.wrapping_sub(&U2048::ONE);
                let ok = y.ct_gt(&U2048::ONE) & y.ct_lt(&p_minus_1);
                if !bool::from(ok) {
                    return Err(bad("not in 1 < y < p-1"));
                }
                let mut shared = modp_pow(&y, exp, *exp_bits);
                let out = Secret::new(shared.to_be_bytes().to_vec());
                shared.zeroize();
                Ok(out)
            }
            Private::Unsupported => Err(CryptoError::Unsupported(group.name())),
        }
    }
}

/// Where a responder's X25519 key pair comes from (see [`respond`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum X25519Source {
    /// x25519-dalek from the injected RNG: seedable (simulator, known
    /// answers) and zeroized on drop. The default.
    #[default]
    Injected,
    /// ring's X25519 (BoringSSL's field arithmetic, with the ADX/BMI2 code
    /// where the CPU has it) and ring's own system RNG: about twice as fast
    /// per exchange, but neither seedable nor zeroized by ring on drop
    /// (ring keeps no copy: the private value lives on the stack for the
    /// one call to [`respond`]). For a responder on a real network.
    System,
}

/// A responder's whole key exchange in one step (RFC 7296 1.2: the
/// IKE_SA_INIT response's KE and g^ir): a fresh private value for
/// `group`, our public value and the shared secret with `peer_public`,
/// checked as in [`DhPrivate::agree`]. The private value is not kept.
///
/// With [`X25519Source::System`] and X25519 the key pair is ring's
/// ephemeral one (RFC 7748 5; ring rejects an all-zero result, the check
/// RFC 8031 2 asks for); every other case is [`DhPrivate::generate`]
/// then [`DhPrivate::agree`] from `rng`.
pub fn respond(
    group: DhGroup,
    rng: &mut dyn CryptoRngCore,
    source: X25519Source,
    peer_public: &[u8],
) -> Result<(Vec<u8>, Secret), CryptoError> {
    if group == DhGroup::X25519 && source == X25519Source::System {
        use ring::agreement;
        let bad = |reason| CryptoError::BadPublicValue { group, reason };
        if peer_public.len() != group.public_len() {
            return Err(bad("wrong length"));
        }
        let sys = ring::rand::SystemRandom::new();
        let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &sys)
            .map_err(|_| CryptoError::Unsupported("X25519 key generation"))?;
        let public = private
            .compute_public_key()
            .map_err(|_| CryptoError::Unsupported("X25519 key generation"))?
            .as_ref()
            .to_vec();
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer_public);
        // ring fails on an all-zero shared secret (RFC 7748 6.1's check,
        // required by RFC 8031 2) and copies the secret out here.
        let shared = agreement::agree_ephemeral(private, &peer, |k| Secret::new(k.to_vec()))
            .map_err(|_| bad("all-zero shared secret"))?;
        return Ok((public, shared));
    }
    let k = DhPrivate::generate(group, rng);
    let shared = k.agree(peer_public)?;
    Ok((k.public, shared))
}

/// base^exp mod p with crypto-bigint's constant-time (in the exponent's
/// value) Montgomery exponentiation over the low `exp_bits` bits.
fn modp_pow(base: &U2048, exp: &U2048, exp_bits: usize) -> U2048 {
    let params = DynResidueParams::new(&MODP2048_P);
    let mut r = DynResidue::new(base, params).pow_bounded_exp(exp, exp_bits);
    let out = r.retrieve();
    r.zeroize();
    out
}

/// Strip the SEC1 0x04 prefix: x || y (RFC 5903 7).
fn uncompressed_xy(sec1: &[u8]) -> Vec<u8> {
    sec1.get(1..).unwrap_or_default().to_vec()
}

/// Add the SEC1 uncompressed-point prefix to x || y.
fn sec1_uncompressed(xy: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(xy.len() + 1);
    v.push(0x04);
    v.extend_from_slice(xy);
    v
}

/// Left-pad `bytes` with zeros to exactly `N` octets; `None` if longer.
fn left_pad<const N: usize>(bytes: &[u8]) -> Option<Zeroizing<[u8; N]>> {
    let mut out = Zeroizing::new([0u8; N]);
    let start = N.checked_sub(bytes.len())?;
    out.get_mut(start..)?.copy_from_slice(bytes);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // RFC 7748 section 6.1 (Curve25519 Diffie-Hellman example).
    #[test]
    fn x25519_rfc7748_6_1() {
        let a = DhPrivate::from_private_bytes(
            DhGroup::X25519,
            &h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
        )
        .unwrap();
        let b = DhPrivate::from_private_bytes(
            DhGroup::X25519,
            &h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
        )
        .unwrap();
        assert_eq!(
            a.public(),
            h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            b.public(),
            h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let k = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(*a.agree(b.public()).unwrap(), k);
        assert_eq!(*b.agree(a.public()).unwrap(), k);
    }

    // RFC 7748 section 5.2, the two single-scalar-multiplication vectors.
    #[test]
    fn x25519_rfc7748_5_2() {
        for (scalar, u, out) in [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ] {
            let k = DhPrivate::from_private_bytes(DhGroup::X25519, &h(scalar)).unwrap();
            assert_eq!(*k.agree(&h(u)).unwrap(), h(out));
        }
    }

    // RFC 8031 section 2: an all-zero shared secret MUST be rejected. The
    // u-coordinates 0 and 1 are small-order points that force it.
    #[test]
    fn x25519_rejects_all_zero_output() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let k = DhPrivate::generate(DhGroup::X25519, &mut rng);
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one] {
            assert!(matches!(
                k.agree(&bad),
                Err(CryptoError::BadPublicValue {
                    group: DhGroup::X25519,
                    ..
                })
            ));
        }
    }

    // The responder's one-step exchange, both X25519 sources, checked
    // against RFC 7748 6.1's Alice: her known private value must reach the
    // same shared secret from the responder's public value (ring's private
    // value cannot be set, so this is its known-answer check), and her
    // public value is the RFC's.
    #[test]
    fn respond_agrees_with_rfc7748_alice() {
        let alice = DhPrivate::from_private_bytes(
            DhGroup::X25519,
            &h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
        )
        .unwrap();
        assert_eq!(
            alice.public(),
            h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for source in [X25519Source::Injected, X25519Source::System] {
            let (a, k1) = respond(DhGroup::X25519, &mut rng, source, alice.public()).unwrap();
            let (b, k2) = respond(DhGroup::X25519, &mut rng, source, alice.public()).unwrap();
            assert_eq!(a.len(), 32, "{source:?}");
            assert_ne!(a, b, "{source:?}: a fresh key pair per exchange");
            assert_eq!(*alice.agree(&a).unwrap(), *k1, "{source:?}");
            assert_eq!(*alice.agree(&b).unwrap(), *k2, "{source:?}");
            assert_ne!(*k1, *k2, "{source:?}");
        }
        // The injected source is the seeded path: same seed, same answer.
        let r1 = respond(
            DhGroup::X25519,
            &mut ChaCha20Rng::seed_from_u64(9),
            X25519Source::Injected,
            alice.public(),
        )
        .unwrap();
        let r2 = respond(
            DhGroup::X25519,
            &mut ChaCha20Rng::seed_from_u64(9),
            X25519Source::Injected,
            alice.public(),
        )
        .unwrap();
        assert_eq!(r1.0, r2.0);
        assert_eq!(*r1.1, *r2.1);
        // Other groups ignore the source.
        let bob = DhPrivate::generate(DhGroup::Ecp256, &mut rng);
        let (p, k) = respond(
            DhGroup::Ecp256,
            &mut rng,
            X25519Source::System,
            bob.public(),
        )
        .unwrap();
        assert_eq!(*bob.agree(&p).unwrap(), *k);
    }

    // The initiator's ring key: its public value and one agreement match
    // RFC 7748 6.1's Bob (known private value) computing the other way;
    // a second agreement is refused; small-order points are refused.
    #[test]
    fn generate_from_system_agrees_once_with_rfc7748_bob() {
        let bob = DhPrivate::from_private_bytes(
            DhGroup::X25519,
            &h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
        )
        .unwrap();
        assert_eq!(
            bob.public(),
            h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let a = DhPrivate::generate_from(DhGroup::X25519, &mut rng, X25519Source::System);
        assert!(matches!(a.private, Private::X25519System(_)));
        assert_eq!(a.public().len(), 32);
        let k = a.agree(bob.public()).unwrap();
        assert_eq!(*k, *bob.agree(a.public()).unwrap());
        assert!(a.agree(bob.public()).is_err());
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one] {
            let a = DhPrivate::generate_from(DhGroup::X25519, &mut rng, X25519Source::System);
            assert!(matches!(
                a.agree(&bad),
                Err(CryptoError::BadPublicValue { .. })
            ));
        }
        // The injected source stays the seeded one.
        let x = DhPrivate::generate_from(
            DhGroup::X25519,
            &mut ChaCha20Rng::seed_from_u64(6),
            X25519Source::Injected,
        );
        let y = DhPrivate::generate(DhGroup::X25519, &mut ChaCha20Rng::seed_from_u64(6));
        assert_eq!(x.public(), y.public());
    }

    // RFC 8031 2 on the one-step path: small-order points (u = 0, 1) force
    // an all-zero secret and are refused; so are wrong lengths.
    #[test]
    fn respond_rejects_bad_x25519_values() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut one = [0u8; 32];
        one[0] = 1;
        for source in [X25519Source::Injected, X25519Source::System] {
            for bad in [&[0u8; 32][..], &one[..], &[9u8; 31][..], &[9u8; 33][..]] {
                assert!(
                    matches!(
                        respond(DhGroup::X25519, &mut rng, source, bad),
                        Err(CryptoError::BadPublicValue {
                            group: DhGroup::X25519,
                            ..
                        })
                    ),
                    "{source:?} {bad:?}"
                );
            }
        }
    }

    // RFC 5903 section 8.1: 256-bit random ECP group.
    #[test]
    fn ecp256_rfc5903_8_1() {
        let i = DhPrivate::from_private_bytes(
            DhGroup::Ecp256,
            &h("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433"),
        )
        .unwrap();
        let r = DhPrivate::from_private_bytes(
            DhGroup::Ecp256,
            &h("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53"),
        )
        .unwrap();
        assert_eq!(
            i.public(),
            h(
                "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180\
               5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3"
            )
        );
        assert_eq!(
            r.public(),
            h(
                "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
               56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB"
            )
        );
        let gir = h("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE");
        assert_eq!(*i.agree(r.public()).unwrap(), gir);
        assert_eq!(*r.agree(i.public()).unwrap(), gir);
    }

    // RFC 5903 section 8.2: 384-bit random ECP group.
    #[test]
    fn ecp384_rfc5903_8_2() {
        let i = DhPrivate::from_private_bytes(
            DhGroup::Ecp384,
            &h(
                "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655\
                E35B538041E649EE3FAEF896783AB194",
            ),
        )
        .unwrap();
        let r = DhPrivate::from_private_bytes(
            DhGroup::Ecp384,
            &h(
                "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942\
                E0308312916B8ED2960E4BD55A7448FC",
            ),
        )
        .unwrap();
        assert_eq!(
            i.public(),
            h(
                "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6\
               DE3AC808ACB4BDB4C88732AEE95F41AA\
               9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38E\
               EB9FCFF3C2C947DAE69B4C634573A81C"
            )
        );
        assert_eq!(
            r.public(),
            h(
                "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D\
               0D1AC43A0336DEF96FDA41D0774A3571\
               DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FF\
               F83FA40142209DFF5EAAD96DB9E6386C"
            )
        );
        let gir = h(
            "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4\
                     D603135569B9E9D09CF5D4A270F59746",
        );
        assert_eq!(*i.agree(r.public()).unwrap(), gir);
        assert_eq!(*r.agree(i.public()).unwrap(), gir);
    }

    #[test]
    fn ecp_rejects_off_curve_and_bad_length() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for group in [DhGroup::Ecp256, DhGroup::Ecp384] {
            let k = DhPrivate::generate(group, &mut rng);
            let mut off = k.public().to_vec();
            if let Some(last) = off.last_mut() {
                *last ^= 1;
            }
            assert!(matches!(
                k.agree(&off),
                Err(CryptoError::BadPublicValue { .. })
            ));
            assert!(k.agree(&vec![0u8; group.public_len()]).is_err());
            assert!(k.agree(&k.public()[1..]).is_err());
            assert!(k.agree(&[]).is_err());
        }
    }

    // The prime is RFC 3526 group 14's: its SHA-256 was computed from the
    // RFC's formula p = 2^2048 - 2^1984 - 1 + 2^64 * ([2^1918 pi] + 124476)
    // (pi evaluated to 800 digits), and that value also equals the RFC's hex.
    #[test]
    fn modp_prime_is_rfc3526_group14() {
        let digest = ring::digest::digest(&ring::digest::SHA256, &MODP2048_P.to_be_bytes());
        assert_eq!(
            digest.as_ref(),
            h("d66436f79bbd6b2e38c0ffbd079be904d2641415e2e67140e09448be9a60890e")
        );
        let b = MODP2048_P.to_be_bytes();
        assert_eq!(&b[..8], &[0xff; 8]);
        assert_eq!(&b[248..], &[0xff; 8]);
        // The next 64 bits are floor(pi * 2^62) = 0xC90FDAA22168C234.
        assert_eq!(&b[8..16], &h("C90FDAA22168C234")[..]);
    }

    #[test]
    fn modp_two_party_agreement() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = DhPrivate::generate(DhGroup::Modp2048, &mut rng);
        let b = DhPrivate::generate(DhGroup::Modp2048, &mut rng);
        assert_eq!(a.public().len(), 256);
        assert_ne!(a.public(), b.public());
        let ka = a.agree(b.public()).unwrap();
        let kb = b.agree(a.public()).unwrap();
        assert_eq!(ka.len(), 256);
        assert_eq!(*ka, *kb);
    }

    #[test]
    fn modp_known_small_exponent() {
        // Exponent 3: the public value is 2^3 = 8, left-padded to 256 octets,
        // and agreeing with peer value 2 gives 8 as well.
        let k = DhPrivate::from_private_bytes(DhGroup::Modp2048, &[3]).unwrap();
        let mut eight = vec![0u8; 256];
        eight[255] = 8;
        assert_eq!(k.public(), &eight[..]);
        let mut two = vec![0u8; 256];
        two[255] = 2;
        assert_eq!(*k.agree(&two).unwrap(), eight);
    }

    // RFC 6989 2.1: reject 0, 1, p-1, p and values above p.
    #[test]
    fn modp_rejects_rfc6989_values() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let k = DhPrivate::generate(DhGroup::Modp2048, &mut rng);
        let p = MODP2048_P;
        let bad = [
            U2048::ZERO,
            U2048::ONE,
            p.wrapping_sub(&U2048::ONE),
            p,
            p.wrapping_add(&U2048::ONE),
            U2048::MAX,
        ];
        for y in bad {
            assert!(
                matches!(
                    k.agree(&y.to_be_bytes()),
                    Err(CryptoError::BadPublicValue {
                        group: DhGroup::Modp2048,
                        ..
                    })
                ),
                "{y:?} accepted"
            );
        }
        // p-2 is the largest value allowed.
        assert!(k
            .agree(&p.wrapping_sub(&U2048::from_u8(2)).to_be_bytes())
            .is_ok());
        assert!(k.agree(&[2u8; 255]).is_err());
    }

    #[test]
    fn generated_keys_agree_in_every_group_and_are_deterministic() {
        for group in DhGroup::ALL {
            let mut rng = ChaCha20Rng::seed_from_u64(5);
            let a = DhPrivate::generate(group, &mut rng);
            let b = DhPrivate::generate(group, &mut rng);
            assert_eq!(a.group(), group);
            assert_eq!(a.public().len(), group.public_len());
            assert_eq!(*a.agree(b.public()).unwrap(), *b.agree(a.public()).unwrap());
            let mut rng2 = ChaCha20Rng::seed_from_u64(5);
            let a2 = DhPrivate::generate(group, &mut rng2);
            assert_eq!(a.public(), a2.public());
        }
    }

    #[test]
    fn debug_does_not_print_the_private_value() {
        let k = DhPrivate::from_private_bytes(DhGroup::X25519, &[0x41; 32]).unwrap();
        let s = format!("{k:?}");
        assert!(!s.contains("41, 65") && !s.to_lowercase().contains("4141"));
        assert!(s.contains("X25519"));
    }

    #[test]
    fn from_private_bytes_rejects_bad_lengths() {
        assert!(DhPrivate::from_private_bytes(DhGroup::X25519, &[1; 31]).is_err());
        assert!(DhPrivate::from_private_bytes(DhGroup::Ecp256, &[1; 31]).is_err());
        assert!(DhPrivate::from_private_bytes(DhGroup::Ecp256, &[0; 32]).is_err());
        assert!(DhPrivate::from_private_bytes(DhGroup::Ecp384, &[1; 32]).is_err());
        assert!(DhPrivate::from_private_bytes(DhGroup::Modp2048, &[1; 257]).is_err());
    }
}
