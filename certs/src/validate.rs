//! X.509 path validation for IKE peers (RFC 5280 6.1, profiled by RFC 4945).
//!
//! What is checked, for each certificate of the path:
//! - it parses (x509-parser), with no trailing bytes, and carries no
//!   critical extension this module does not process;
//! - its validity period contains `now` (the caller's clock, never ours);
//! - its signature, by the next certificate's key (ring);
//! - issuers: basicConstraints `cA` TRUE, pathLenConstraint, keyUsage
//!   `keyCertSign` when keyUsage is present;
//! - the end entity: keyUsage, when present, has `digitalSignature` or
//!   `nonRepudiation` (RFC 4945 5.1.3.2); extendedKeyUsage, when present,
//!   allows IKE (see [`eku_allows_ike`]); optionally the IKE identity
//!   matches a subjectAltName or the subject (RFC 4945 3.1).
//!
//! Path building: from the end entity, issuers are looked up by name among
//! the trust anchors first and the given intermediates second; every
//! candidate whose name matches is tried (depth first, bounded by
//! [`ValidationPolicy::max_intermediates`], never using a certificate twice).
//! Trust anchors are configured certificates: their name, key, validity,
//! basicConstraints and pathLen apply (as `openssl verify` does).
//!
//! Not checked: revocation (no CRL or OCSP: no I/O here), name constraints
//! and policy constraints (a certificate carrying them as critical is
//! refused with [`ValidationError::UnhandledCriticalExtension`]).

use std::net::IpAddr;

use pad::Identity;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::keys::{PublicKey, SpkiFingerprint, VerifyError};

/// Why a certificate was not accepted. Each reason is one fact a log line
/// or an AUTHENTICATION_FAILED diagnostic can name; [`Self::code`] gives a
/// short stable token for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A certificate (or the ID given) is not well-formed DER X.509.
    #[error("malformed certificate")]
    Malformed,
    /// A key or signature algorithm this crate does not verify.
    #[error("unsupported key or signature algorithm")]
    UnsupportedAlgorithm,
    /// A critical extension this validator does not process.
    #[error("unhandled critical extension")]
    UnhandledCriticalExtension,
    /// A certificate of the path is past its notAfter.
    #[error("certificate expired")]
    Expired,
    /// A certificate of the path is before its notBefore.
    #[error("certificate not yet valid")]
    NotYetValid,
    /// No trust anchor or given intermediate names the issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// A signature in the path does not verify under the issuer's key.
    #[error("bad certificate signature")]
    BadSignature,
    /// An issuer is not a CA (basicConstraints absent or cA FALSE).
    #[error("issuer is not a CA")]
    NotCa,
    /// An issuer's pathLenConstraint is exceeded.
    #[error("path length constraint exceeded")]
    PathLenExceeded,
    /// An issuer's keyUsage lacks keyCertSign.
    #[error("issuer key usage lacks keyCertSign")]
    IssuerKeyUsage,
    /// The end entity's keyUsage allows neither digitalSignature nor
    /// nonRepudiation.
    #[error("key usage does not allow signatures")]
    KeyUsage,
    /// The end entity's extendedKeyUsage does not allow IKE.
    #[error("extended key usage does not allow IKE")]
    Eku,
    /// The IKE identity matches no subjectAltName (or the subject DN).
    #[error("identity does not match the certificate")]
    IdMismatch,
    /// No path within the depth bound.
    #[error("certificate chain too long")]
    ChainTooLong,
}

impl ValidationError {
    /// A short, stable token for logs and diagnostics (`expired`,
    /// `unknown-issuer`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported-algorithm",
            Self::UnhandledCriticalExtension => "unhandled-critical-extension",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::UnknownIssuer => "unknown-issuer",
            Self::BadSignature => "bad-signature",
            Self::NotCa => "issuer-not-ca",
            Self::PathLenExceeded => "path-len-exceeded",
            Self::IssuerKeyUsage => "issuer-key-usage",
            Self::KeyUsage => "key-usage",
            Self::Eku => "extended-key-usage",
            Self::IdMismatch => "id-mismatch",
            Self::ChainTooLong => "chain-too-long",
        }
    }
}

/// A subjectAltName entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AltName {
    /// iPAddress.
    Ip(IpAddr),
    /// dNSName.
    Dns(String),
    /// rfc822Name (an e-mail address).
    Email(String),
    /// uniformResourceIdentifier.
    Uri(String),
    /// directoryName, as text.
    DirectoryName(String),
    /// Any other form, not interpreted.
    Other,
}

impl core::fmt::Display for AltName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Ip(a) => write!(f, "IP:{a}"),
            Self::Dns(s) => write!(f, "DNS:{s}"),
            Self::Email(s) => write!(f, "email:{s}"),
            Self::Uri(s) => write!(f, "URI:{s}"),
            Self::DirectoryName(s) => write!(f, "DirName:{s}"),
            Self::Other => f.write_str("othername"),
        }
    }
}

/// A configured trust anchor: a (normally self-signed) CA certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    der: Vec<u8>,
    subject: String,
    subject_der: Vec<u8>,
    key: PublicKey,
}

impl TrustAnchor {
    /// A trust anchor from a DER certificate. Only its form and key are
    /// checked here; validity and CA constraints apply at validation time.
    pub fn from_der(der: &[u8]) -> Result<Self, ValidationError> {
        let c = parse(der)?;
        Ok(Self {
            der: der.to_vec(),
            subject: c.x.subject().to_string(),
            subject_der: c.x.subject().as_raw().to_vec(),
            key: c.key.clone()?,
        })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject, as text (RFC 4514 style).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject, DER.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// The anchor's public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
}

impl core::fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TrustAnchor")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// What [`validate`] checks beyond the chain itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationPolicy {
    /// The identity the peer asserted (IDi/IDr); `None`: not checked here.
    /// ID_KEY_ID and ID_NULL never match a certificate (see
    /// [`identity_matches`]): the PAD decides about those, not this check.
    pub expected_id: Option<Identity>,
    /// Check the end entity's keyUsage and extendedKeyUsage (default: yes).
    pub check_end_entity_usage: bool,
    /// Apply RFC 4945 5.1.3.12 to the letter: an EKU must hold
    /// id-kp-ipsecIKE or anyExtendedKeyUsage (default: no, serverAuth and
    /// clientAuth are accepted too; see [`eku_allows_ike`]).
    pub strict_eku: bool,
    /// The most intermediates a path may hold (default 6).
    pub max_intermediates: usize,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            expected_id: None,
            check_end_entity_usage: true,
            strict_eku: false,
            max_intermediates: 6,
        }
    }
}

impl ValidationPolicy {
    /// The default policy, also requiring `id` to match the certificate.
    pub fn for_id(id: Identity) -> Self {
        Self {
            expected_id: Some(id),
            ..Self::default()
        }
    }

    /// Chain checks only: no end-entity usage and no identity checks (what
    /// `pki --verify` of strongSwan checks, for cross-checks).
    pub fn chain_only() -> Self {
        Self {
            check_end_entity_usage: false,
            ..Self::default()
        }
    }
}

/// A peer whose certificate validated: what latching records (R7: the peer
/// certificate and the trust anchor it was validated to).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatedPeer {
    /// The end-entity certificate, DER.
    pub end_entity_der: Vec<u8>,
    /// Its subject, as text.
    pub subject: String,
    /// Its subject, DER (comparable with ID_DER_ASN1_DN).
    pub subject_der: Vec<u8>,
    /// Its subjectAltNames.
    pub alt_names: Vec<AltName>,
    /// The intermediates used, the end entity's issuer first (DER).
    pub chain: Vec<Vec<u8>>,
    /// The trust anchor the path ends at.
    pub trust_anchor: TrustAnchor,
    /// SHA-256 of the end entity's SubjectPublicKeyInfo.
    pub spki_sha256: SpkiFingerprint,
    /// The end entity's public key, for verifying the IKE AUTH payload.
    pub key: PublicKey,
}

/// A parsed certificate with the facts validation needs.
struct Cert<'a> {
    der: &'a [u8],
    x: X509Certificate<'a>,
    key: Result<PublicKey, ValidationError>,
    /// basicConstraints: (cA, pathLenConstraint).
    ca: Option<(bool, Option<u32>)>,
    key_usage: Option<u16>,
    /// extendedKeyUsage, when present.
    eku: Option<Eku>,
    alt_names: Vec<AltName>,
    /// A critical extension not processed here is present.
    unhandled_critical: bool,
}

// keyUsage bit positions as x509-parser numbers them (bit 0 = digitalSignature).
const KU_DIGITAL_SIGNATURE: u16 = 1 << 0;
const KU_NON_REPUDIATION: u16 = 1 << 1;
const KU_KEY_CERT_SIGN: u16 = 1 << 5;

/// id-kp-ipsecIKE (RFC 4945 5.1.3.12).
const OID_KP_IPSEC_IKE: &str = "1.3.6.1.5.5.7.3.17";

/// One TLV of the certificate's outer frame, its length in shortest form.
fn der_tlv(buf: &[u8]) -> Option<pad::der::Tlv<'_>> {
    pad::der::tlv(buf).filter(|t| t.shortest)
}

/// The certificate's outer frame, strictly DER (RFC 5280 4.1: `Certificate
/// ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`).
/// The parts outside the signed `tbsCertificate` are the ones a third party
/// can alter without breaking the signature, so they must be in their one
/// DER form; x509-parser alone accepts, for instance, another tag class on
/// the outer SEQUENCE (found by the `peer_certs` fuzz target). Checked: the
/// outer and the tbsCertificate tags are SEQUENCE, every length of the frame
/// is in shortest form, nothing trails, signatureAlgorithm is octet for
/// octet the tbsCertificate's `signature` field (RFC 5280 4.1.1.2), and the
/// signature BIT STRING has no unused bits.
fn strict_frame(der: &[u8]) -> Option<()> {
    const SEQUENCE: u8 = 0x30;
    const BIT_STRING: u8 = 0x03;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    let cert = der_tlv(der).filter(|t| t.tag == SEQUENCE && t.rest.is_empty())?;
    let tbs = der_tlv(cert.contents).filter(|t| t.tag == SEQUENCE)?;
    let alg = der_tlv(tbs.rest).filter(|t| t.tag == SEQUENCE)?;
    der_tlv(alg.rest)
        .filter(|t| t.tag == BIT_STRING && t.contents.first() == Some(&0) && t.rest.is_empty())?;
    // tbsCertificate: [0] version (optional), serialNumber, signature.
    let mut field = der_tlv(tbs.contents)?;
    if field.tag == VERSION {
        field = der_tlv(field.rest)?;
    }
    if field.tag != INTEGER {
        return None;
    }
    let inner_alg = der_tlv(field.rest)?;
    (inner_alg.whole == alg.whole).then_some(())
}

fn parse(der: &[u8]) -> Result<Cert<'_>, ValidationError> {
    strict_frame(der).ok_or(ValidationError::Malformed)?;
    let (rest, x) = X509Certificate::from_der(der).map_err(|_| ValidationError::Malformed)?;
    if !rest.is_empty() {
        return Err(ValidationError::Malformed);
    }
    // RFC 5280 4.1.1.2: signatureAlgorithm MUST equal tbsCertificate.signature.
    if x.signature_algorithm != x.tbs_certificate.signature {
        return Err(ValidationError::Malformed);
    }
    let key = PublicKey::from_parsed(x.public_key()).map_err(|e| match e {
        crate::keys::KeyError::Malformed => ValidationError::Malformed,
        _ => ValidationError::UnsupportedAlgorithm,
    });
    let mut c = Cert {
        der,
        key,
        ca: None,
        key_usage: None,
        eku: None,
        alt_names: Vec::new(),
        unhandled_critical: false,
        x,
    };
    for ext in c.x.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => c.ca = Some((bc.ca, bc.path_len_constraint)),
            ParsedExtension::KeyUsage(ku) => c.key_usage = Some(ku.flags),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                c.eku = Some(Eku {
                    ike: eku.any
                        || eku
                            .other
                            .iter()
                            .any(|o| o.to_id_string() == OID_KP_IPSEC_IKE),
                    tls: eku.server_auth || eku.client_auth,
                });
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    c.alt_names.push(alt_name(n)?);
                }
            }
            ParsedExtension::ParseError { .. } => return Err(ValidationError::Malformed),
            ParsedExtension::SubjectKeyIdentifier(_)
            | ParsedExtension::AuthorityKeyIdentifier(_)
            | ParsedExtension::CertificatePolicies(_) => {}
            _ if ext.critical => c.unhandled_critical = true,
            _ => {}
        }
    }
    Ok(c)
}

fn alt_name(n: &GeneralName<'_>) -> Result<AltName, ValidationError> {
    Ok(match n {
        GeneralName::IPAddress(b) => match b.len() {
            4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                AltName::Ip(IpAddr::from(a))
            }
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                AltName::Ip(IpAddr::from(a))
            }
            _ => return Err(ValidationError::Malformed),
        },
        GeneralName::DNSName(s) => AltName::Dns((*s).to_owned()),
        GeneralName::RFC822Name(s) => AltName::Email((*s).to_owned()),
        GeneralName::URI(s) => AltName::Uri((*s).to_owned()),
        GeneralName::DirectoryName(n) => AltName::DirectoryName(n.to_string()),
        GeneralName::Invalid(..) => return Err(ValidationError::Malformed),
        _ => AltName::Other,
    })
}

/// What an extendedKeyUsage extension holds, as far as IKE cares.
#[derive(Clone, Copy)]
struct Eku {
    /// id-kp-ipsecIKE or anyExtendedKeyUsage.
    ike: bool,
    /// id-kp-serverAuth or id-kp-clientAuth.
    tls: bool,
}

fn eku_ok(eku: Option<Eku>, strict: bool) -> bool {
    eku.is_none_or(|e| e.ike || (e.tls && !strict))
}

/// Whether a certificate's extendedKeyUsage allows use in IKE.
///
/// RFC 4945 5.1.3.12: CAs SHOULD NOT put EKU in IKE certificates; a
/// validator that supports EKU continues when there is no EKU or when it
/// holds id-kp-ipsecIKE or anyExtendedKeyUsage, and otherwise rejects.
/// `strict` applies exactly that. Without `strict` (latchkey's default),
/// id-kp-serverAuth and id-kp-clientAuth are accepted as well, because
/// IPsec gateways are commonly issued TLS-style certificates (strongSwan's
/// documentation has gateways made with serverAuth, which Windows and Apple
/// clients require) and refusing them would break interoperation for no
/// security gain in IKE. Anything else (codeSigning or emailProtection
/// alone, say) is refused with [`ValidationError::Eku`] either way.
pub fn eku_allows_ike(cert_der: &[u8], strict: bool) -> Result<bool, ValidationError> {
    Ok(eku_ok(parse(cert_der)?.eku, strict))
}

fn check_time(c: &Cert<'_>, now: i64) -> Result<(), ValidationError> {
    let v = c.x.validity();
    if now < v.not_before.timestamp() {
        return Err(ValidationError::NotYetValid);
    }
    if now > v.not_after.timestamp() {
        return Err(ValidationError::Expired);
    }
    Ok(())
}

/// Checks on `issuer` as the signer of `subject`, with `below` CA
/// certificates between `issuer` and the end entity.
fn check_issuer(
    issuer: &Cert<'_>,
    subject: &Cert<'_>,
    below: usize,
    now: i64,
) -> Result<(), ValidationError> {
    let key = issuer.key.as_ref().map_err(|e| *e)?;
    key.verify_x509(
        &subject.x.signature_algorithm,
        subject.x.tbs_certificate.as_ref(),
        subject.x.signature_value.data.as_ref(),
    )
    .map_err(|e| match e {
        Some(VerifyError::BadSignature) => ValidationError::BadSignature,
        _ => ValidationError::UnsupportedAlgorithm,
    })?;
    if issuer.unhandled_critical {
        return Err(ValidationError::UnhandledCriticalExtension);
    }
    check_time(issuer, now)?;
    match issuer.ca {
        Some((true, path_len)) => {
            if path_len.is_some_and(|n| usize::try_from(n).is_ok_and(|n| below > n)) {
                return Err(ValidationError::PathLenExceeded);
            }
        }
        _ => return Err(ValidationError::NotCa),
    }
    if issuer
        .key_usage
        .is_some_and(|ku| ku & KU_KEY_CERT_SIGN == 0)
    {
        return Err(ValidationError::IssuerKeyUsage);
    }
    Ok(())
}

/// Name equality for chaining and for ID_DER_ASN1_DN: identical DER, or the
/// same attributes in the same order with string values equal after ASCII
/// case folding and whitespace collapsing (RFC 5280 7.1, simplified).
fn names_equal(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    if a.as_raw() == b.as_raw() {
        return true;
    }
    let ra: Vec<_> = a.iter_rdn().collect();
    let rb: Vec<_> = b.iter_rdn().collect();
    if ra.len() != rb.len() {
        return false;
    }
    ra.iter().zip(rb.iter()).all(|(x, y)| {
        let ax: Vec<_> = x.iter().collect();
        let ay: Vec<_> = y.iter().collect();
        ax.len() == ay.len()
            && ax.iter().zip(ay.iter()).all(|(p, q)| {
                p.attr_type() == q.attr_type()
                    && match (p.as_str(), q.as_str()) {
                        (Ok(s), Ok(t)) => fold(s) == fold(t),
                        _ => p.as_slice() == q.as_slice(),
                    }
            })
    })
}

fn fold(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

enum Found {
    Anchor(usize),
}

struct PathSearch<'a> {
    anchor_certs: Vec<Option<Cert<'a>>>,
    inters: Vec<Option<Cert<'a>>>,
    now: i64,
    max: usize,
    /// Signature checks left: bounds the work a peer's junk can cause.
    budget: core::cell::Cell<usize>,
}

/// The most issuer checks (signature verifications) one validation does.
const CHECK_BUDGET: usize = 64;

/// Prefer a precise failure over "unknown issuer".
fn better(old: ValidationError, new: ValidationError) -> ValidationError {
    if old == ValidationError::UnknownIssuer {
        new
    } else {
        old
    }
}

impl<'a> PathSearch<'a> {
    fn check(
        &self,
        issuer: &Cert<'_>,
        subject: &Cert<'_>,
        below: usize,
    ) -> Result<(), ValidationError> {
        let left = self.budget.get();
        if left == 0 {
            return Err(ValidationError::ChainTooLong);
        }
        self.budget.set(left - 1);
        check_issuer(issuer, subject, below, self.now)
    }

    fn build(&self, cur: &Cert<'a>, path: &mut Vec<usize>) -> Result<Found, ValidationError> {
        let mut err = ValidationError::UnknownIssuer;
        for (i, a) in self.anchor_certs.iter().enumerate() {
            let Some(a) = a else { continue };
            if names_equal(cur.x.issuer(), a.x.subject()) {
                match self.check(a, cur, path.len()) {
                    Ok(()) => return Ok(Found::Anchor(i)),
                    Err(e) => err = better(err, e),
                }
            }
        }
        for (j, c) in self.inters.iter().enumerate() {
            let Some(c) = c else { continue };
            // Never the same certificate twice in a path (no loops).
            let used = |d: &[u8]| {
                d == cur.der
                    || path.iter().any(|&k| {
                        self.inters
                            .get(k)
                            .and_then(Option::as_ref)
                            .is_some_and(|p| p.der == d)
                    })
            };
            if used(c.der) || !names_equal(cur.x.issuer(), c.x.subject()) {
                continue;
            }
            if path.len() >= self.max {
                err = better(err, ValidationError::ChainTooLong);
                continue;
            }
            if let Err(e) = self.check(c, cur, path.len()) {
                err = better(err, e);
                continue;
            }
            path.push(j);
            match self.build(c, path) {
                Ok(f) => return Ok(f),
                Err(e) => {
                    err = better(err, e);
                    path.pop();
                }
            }
        }
        Err(err)
    }
}

/// Validate an end-entity certificate: build a path through `intermediates`
/// to one of `anchors`, check it at time `now`, and apply `policy`.
///
/// Unparseable intermediates are ignored (a peer may send junk); an
/// unparseable end entity is [`ValidationError::Malformed`]. An end entity
/// that is itself one of the anchors (a pinned self-signed certificate) is
/// trusted directly, with only its validity and usage checked.
pub fn validate(
    end_entity: &[u8],
    intermediates: &[&[u8]],
    anchors: &[TrustAnchor],
    now: OffsetDateTime,
    policy: &ValidationPolicy,
) -> Result<ValidatedPeer, ValidationError> {
    let ts = now.unix_timestamp();
    let ee = parse(end_entity)?;
    let key = ee.key.clone()?;
    if ee.unhandled_critical {
        return Err(ValidationError::UnhandledCriticalExtension);
    }
    check_time(&ee, ts)?;
    if policy.check_end_entity_usage {
        if ee
            .key_usage
            .is_some_and(|ku| ku & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION) == 0)
        {
            return Err(ValidationError::KeyUsage);
        }
        if !eku_ok(ee.eku, policy.strict_eku) {
            return Err(ValidationError::Eku);
        }
    }
    let (chain, anchor) = if let Some(a) = anchors.iter().find(|a| a.der == end_entity) {
        (Vec::new(), a.clone())
    } else {
        let search = PathSearch {
            anchor_certs: anchors.iter().map(|a| parse(&a.der).ok()).collect(),
            // Duplicates dropped: each distinct certificate is tried once.
            inters: intermediates
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if intermediates.get(..i).is_some_and(|prev| prev.contains(d)) {
                        None
                    } else {
                        parse(d).ok()
                    }
                })
                .collect(),
            now: ts,
            max: policy.max_intermediates,
            budget: core::cell::Cell::new(CHECK_BUDGET),
        };
        let mut path = Vec::new();
        let Found::Anchor(i) = search.build(&ee, &mut path)?;
        let anchor = anchors
            .get(i)
            .ok_or(ValidationError::UnknownIssuer)?
            .clone();
        let chain = path
            .iter()
            .filter_map(|&j| search.inters.get(j).and_then(|c| c.as_ref()))
            .map(|c| c.der.to_vec())
            .collect();
        (chain, anchor)
    };
    if let Some(id) = &policy.expected_id {
        if !id_matches(&ee, id) {
            return Err(ValidationError::IdMismatch);
        }
    }
    Ok(ValidatedPeer {
        end_entity_der: end_entity.to_vec(),
        subject: ee.x.subject().to_string(),
        subject_der: ee.x.subject().as_raw().to_vec(),
        alt_names: ee.alt_names.clone(),
        chain,
        trust_anchor: anchor,
        spki_sha256: key.fingerprint(),
        key,
    })
}

/// The public key of a certificate, without validating anything else: for
/// BTNS peers (RFC 5386), whose self-signed (or any) certificate only
/// carries the key whose possession the IKE AUTH payload proves. The
/// certificate's own signature is deliberately not checked: it proves
/// nothing the AUTH payload does not.
pub fn certificate_public_key(cert_der: &[u8]) -> Result<PublicKey, ValidationError> {
    parse(cert_der)?.key
}

/// Whether the IKE identity `id` matches the certificate (RFC 4945 3.1):
/// ID_IPV4_ADDR / ID_IPV6_ADDR an iPAddress subjectAltName, ID_FQDN a
/// dNSName (ASCII case-insensitive, a trailing dot ignored, no wildcards),
/// ID_RFC822_ADDR an rfc822Name (domain part case-insensitive),
/// ID_DER_ASN1_DN the subject (see the module docs for name equality).
/// ID_KEY_ID, ID_NULL and other types never match a certificate: whether
/// they are acceptable is the PAD's decision, not the certificate's.
pub fn identity_matches(cert_der: &[u8], id: &Identity) -> Result<bool, ValidationError> {
    Ok(id_matches(&parse(cert_der)?, id))
}

fn id_matches(c: &Cert<'_>, id: &Identity) -> bool {
    match id {
        Identity::Ipv4(a) => c.alt_names.contains(&AltName::Ip(IpAddr::V4(*a))),
        Identity::Ipv6(a) => c.alt_names.contains(&AltName::Ip(IpAddr::V6(*a))),
        Identity::Fqdn(f) => {
            let want = f.strip_suffix('.').unwrap_or(f);
            c.alt_names.iter().any(|n| match n {
                AltName::Dns(d) => {
                    let d = d.strip_suffix('.').unwrap_or(d);
                    !d.is_empty() && d.eq_ignore_ascii_case(want)
                }
                _ => false,
            })
        }
        Identity::Rfc822(m) => c.alt_names.iter().any(|n| match n {
            AltName::Email(e) => email_eq(e, m),
            _ => false,
        }),
        Identity::DerAsn1Dn(dn) => match X509Name::from_der(dn) {
            Ok(([], name)) => names_equal(&name, c.x.subject()),
            _ => false,
        },
        _ => false,
    }
}

fn email_eq(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

/// What a certificate holds, for display (`latchkey pki show`, inquiry).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// Subject, as text.
    pub subject: String,
    /// Issuer, as text.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// The key type, when supported.
    pub key_type: Option<crate::keys::KeyType>,
    /// SHA-256 of the SubjectPublicKeyInfo.
    pub spki_sha256: SpkiFingerprint,
    /// The signature algorithm OID, dotted.
    pub signature_algorithm: String,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// keyUsage bit names, if the extension is present.
    pub key_usage: Option<Vec<&'static str>>,
    /// Whether the EKU (if any) allows IKE, leniently (see [`eku_allows_ike`]).
    pub eku_allows_ike: bool,
    /// Whether the EKU (if any) allows IKE under RFC 4945's strict rule.
    pub eku_allows_ike_strict: bool,
    /// subjectAltNames.
    pub alt_names: Vec<AltName>,
    /// Issuer and subject names are equal.
    pub self_issued: bool,
}

/// Describe a DER certificate.
pub fn describe(der: &[u8]) -> Result<CertificateInfo, ValidationError> {
    const KU_NAMES: [&str; 9] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ];
    let c = parse(der)?;
    let v = c.x.validity();
    Ok(CertificateInfo {
        subject: c.x.subject().to_string(),
        issuer: c.x.issuer().to_string(),
        serial: c
            .x
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        key_type: c.key.as_ref().ok().map(PublicKey::kind),
        spki_sha256: SpkiFingerprint::of_spki(c.x.public_key().raw),
        signature_algorithm: c.x.signature_algorithm.algorithm.to_id_string(),
        is_ca: c.ca.is_some_and(|(ca, _)| ca),
        path_len: c.ca.and_then(|(_, p)| p),
        key_usage: c.key_usage.map(|ku| {
            KU_NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| ku & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect()
        }),
        eku_allows_ike: eku_ok(c.eku, false),
        eku_allows_ike_strict: eku_ok(c.eku, true),
        alt_names: c.alt_names.clone(),
        self_issued: names_equal(c.x.subject(), c.x.issuer()),
    })
}
