//! Certificate generation with rcgen: CAs, host and user certificates,
//! self-signed BTNS certificates, and deliberately bad certificates for
//! testing peers (the `latchkey pki` harness).
//!
//! Everything takes `now` and a random source from the caller: with a
//! seeded source the same keys and serial numbers come out every time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pad::Identity;
use rand_core::CryptoRngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::keys::{KeyAlgorithm, KeyError, PrivateKey};
use crate::validate::{AltName, ValidationError};

/// Why a certificate could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// Key generation or parsing failed.
    #[error("key: {0}")]
    Key(#[from] KeyError),
    /// A name cannot be encoded (a dNSName or rfc822Name must be ASCII).
    #[error("cannot encode name {0:?}")]
    InvalidName(String),
    /// The validity period is out of range.
    #[error("validity period out of range")]
    Time,
    /// The key does not belong to the certificate.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The certificate given as a CA cannot parse, or is not a CA.
    #[error("not a usable CA certificate")]
    NotCa,
    /// rcgen refused (the message is rcgen's).
    #[error("certificate generation: {0}")]
    Rcgen(String),
}

impl From<rcgen::Error> for GenError {
    fn from(e: rcgen::Error) -> Self {
        Self::Rcgen(e.to_string())
    }
}

/// An extendedKeyUsage purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtKeyUsage {
    /// id-kp-serverAuth.
    ServerAuth,
    /// id-kp-clientAuth.
    ClientAuth,
    /// id-kp-ipsecIKE (RFC 4945).
    IpsecIke,
    /// anyExtendedKeyUsage.
    Any,
    /// id-kp-codeSigning (not for IKE).
    CodeSigning,
    /// id-kp-emailProtection (not for IKE).
    EmailProtection,
}

impl ExtKeyUsage {
    fn rcgen(self) -> ExtendedKeyUsagePurpose {
        match self {
            Self::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Self::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            Self::IpsecIke => ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 17]),
            Self::Any => ExtendedKeyUsagePurpose::Any,
            Self::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
            Self::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        }
    }
}

/// What an end-entity (host, user or BTNS) certificate should say.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndEntity {
    /// The subject commonName.
    pub common_name: String,
    /// The subject organizationName, if any.
    pub organization: Option<String>,
    /// subjectAltNames (IP, DNS and e-mail are encoded; others are ignored).
    pub alt_names: Vec<AltName>,
    /// extendedKeyUsage purposes; empty: no EKU extension (RFC 4945
    /// 5.1.3.12: CAs SHOULD NOT include it).
    pub eku: Vec<ExtKeyUsage>,
    /// Days of validity from `now`.
    pub validity_days: u32,
}

impl EndEntity {
    /// A host certificate for `name`: an IP address becomes an iPAddress
    /// subjectAltName, anything else a dNSName; the commonName is `name`.
    pub fn host(name: &str) -> Self {
        let alt = match name.parse::<IpAddr>() {
            Ok(ip) => AltName::Ip(ip),
            Err(_) => AltName::Dns(name.to_owned()),
        };
        Self {
            common_name: name.to_owned(),
            organization: None,
            alt_names: vec![alt],
            eku: Vec::new(),
            validity_days: 365,
        }
    }

    /// A user certificate for an e-mail address: an rfc822Name
    /// subjectAltName, the address as commonName.
    pub fn user(email: &str) -> Self {
        Self {
            common_name: email.to_owned(),
            organization: None,
            alt_names: vec![AltName::Email(email.to_owned())],
            eku: Vec::new(),
            validity_days: 365,
        }
    }

    /// Add a subjectAltName.
    pub fn with_alt_name(mut self, name: AltName) -> Self {
        self.alt_names.push(name);
        self
    }

    /// Set the subject organizationName.
    pub fn with_organization(mut self, o: &str) -> Self {
        self.organization = Some(o.to_owned());
        self
    }

    /// Set the extendedKeyUsage purposes.
    pub fn with_eku(mut self, eku: &[ExtKeyUsage]) -> Self {
        self.eku = eku.to_vec();
        self
    }

    /// Set the validity in days.
    pub fn with_validity_days(mut self, days: u32) -> Self {
        self.validity_days = days;
        self
    }

    /// The IKE identity this certificate is for: its first IP, DNS or
    /// e-mail subjectAltName, else `None`.
    pub fn identity(&self) -> Option<Identity> {
        self.alt_names.iter().find_map(|n| match n {
            AltName::Ip(ip) => Some(Identity::from_ip(*ip)),
            AltName::Dns(d) => Some(Identity::Fqdn(d.clone())),
            AltName::Email(e) => Some(Identity::Rfc822(e.clone())),
            _ => None,
        })
    }

    fn params<R: CryptoRngCore + ?Sized>(
        &self,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<CertificateParams, GenError> {
        let mut p = base_params(&self.common_name, now, self.validity_days, rng)?;
        if let Some(o) = &self.organization {
            p.distinguished_name
                .push(DnType::OrganizationName, o.as_str());
        }
        p.subject_alt_names = sans(&self.alt_names)?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = self.eku.iter().map(|e| e.rcgen()).collect();
        p.is_ca = IsCa::NoCa;
        Ok(p)
    }
}

fn sans(names: &[AltName]) -> Result<Vec<SanType>, GenError> {
    let ia5 = |s: &str| {
        rcgen::string::Ia5String::try_from(s).map_err(|_| GenError::InvalidName(s.to_owned()))
    };
    let mut out = Vec::new();
    for n in names {
        match n {
            AltName::Ip(ip) => out.push(SanType::IpAddress(*ip)),
            AltName::Dns(d) => out.push(SanType::DnsName(ia5(d)?)),
            AltName::Email(e) => out.push(SanType::Rfc822Name(ia5(e)?)),
            AltName::Uri(u) => out.push(SanType::URI(ia5(u)?)),
            _ => {}
        }
    }
    Ok(out)
}

fn serial<R: CryptoRngCore + ?Sized>(rng: &mut R) -> SerialNumber {
    // RFC 5280 4.1.2.2: positive, at most 20 octets.
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[0] = (b[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&b)
}

fn base_params<R: CryptoRngCore + ?Sized>(
    cn: &str,
    now: OffsetDateTime,
    days: u32,
    rng: &mut R,
) -> Result<CertificateParams, GenError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    // An hour of slack for peers whose clocks run a little behind.
    p.not_before = now.checked_sub(Duration::hours(1)).ok_or(GenError::Time)?;
    p.not_after = now
        .checked_add(Duration::days(i64::from(days)))
        .ok_or(GenError::Time)?;
    p.serial_number = Some(serial(rng));
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn key_pair(k: &PrivateKey) -> Result<KeyPair, GenError> {
    KeyPair::try_from(k.pkcs8_der()).map_err(|_| GenError::Key(KeyError::Malformed))
}

/// A certificate and its private key.
#[derive(Debug)]
#[non_exhaustive]
pub struct Issued {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key.
    pub key: PrivateKey,
}

impl Issued {
    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        crate::encoding::certificate_to_pem(&self.cert_der)
    }
}

/// A certificate authority: its certificate and key; issues certificates.
#[derive(Debug)]
pub struct CertificateAuthority {
    cert_der: Vec<u8>,
    key: PrivateKey,
}

impl CertificateAuthority {
    /// A new self-signed root CA named `CN=name` (cA TRUE, no path length
    /// limit, keyUsage keyCertSign and cRLSign), valid ten years from `now`.
    pub fn root<R: CryptoRngCore + ?Sized>(
        name: &str,
        alg: KeyAlgorithm,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<Self, GenError> {
        let key = PrivateKey::generate(alg, rng)?;
        Self::root_for_key(name, key, now, rng)
    }

    /// A new self-signed root CA, as [`Self::root`], for an existing key.
    pub fn root_for_key<R: CryptoRngCore + ?Sized>(
        name: &str,
        key: PrivateKey,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<Self, GenError> {
        let p = ca_params(name, None, now, rng)?;
        let cert = p.self_signed(&key_pair(&key)?)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// A new intermediate CA named `CN=name`, signed by this CA, with
    /// pathLenConstraint 0 (it issues end entities only).
    pub fn intermediate<R: CryptoRngCore + ?Sized>(
        &self,
        name: &str,
        alg: KeyAlgorithm,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<Self, GenError> {
        let key = PrivateKey::generate(alg, rng)?;
        self.intermediate_for_key(name, key, Some(0), now, rng)
    }

    /// A new intermediate CA for an existing key, with the given
    /// pathLenConstraint (`None`: unlimited).
    pub fn intermediate_for_key<R: CryptoRngCore + ?Sized>(
        &self,
        name: &str,
        key: PrivateKey,
        path_len: Option<u8>,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<Self, GenError> {
        let p = ca_params(name, path_len, now, rng)?;
        let cert_der = self.sign(&p, &key)?;
        Ok(Self { cert_der, key })
    }

    /// A CA from an existing certificate and its key (e.g. read back from
    /// the files `latchkey pki init` wrote).
    pub fn from_der(cert_der: &[u8], key: PrivateKey) -> Result<Self, GenError> {
        let info = crate::validate::describe(cert_der).map_err(|_| GenError::NotCa)?;
        if !info.is_ca {
            return Err(GenError::NotCa);
        }
        if info.spki_sha256 != key.public_key().fingerprint() {
            return Err(GenError::KeyMismatch);
        }
        Ok(Self {
            cert_der: cert_der.to_vec(),
            key,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        crate::encoding::certificate_to_pem(&self.cert_der)
    }

    /// The CA's private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Sign `params` for the holder of `subject_key` under this CA.
    fn sign(
        &self,
        params: &CertificateParams,
        subject_key: &PrivateKey,
    ) -> Result<Vec<u8>, GenError> {
        let issuer =
            Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), key_pair(&self.key)?)?;
        Ok(params
            .signed_by(&key_pair(subject_key)?, &issuer)?
            .der()
            .to_vec())
    }

    /// Issue an end-entity certificate with a fresh key of type `alg`.
    pub fn issue<R: CryptoRngCore + ?Sized>(
        &self,
        spec: &EndEntity,
        alg: KeyAlgorithm,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<Issued, GenError> {
        let key = PrivateKey::generate(alg, rng)?;
        self.issue_for_key(spec, key, now, rng)
    }

    /// Issue an end-entity certificate for an existing key.
    pub fn issue_for_key<R: CryptoRngCore + ?Sized>(
        &self,
        spec: &EndEntity,
        key: PrivateKey,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<Issued, GenError> {
        let p = spec.params(now, rng)?;
        let cert_der = self.sign(&p, &key)?;
        Ok(Issued { cert_der, key })
    }

    /// Issue a certificate with one deliberate defect, `kind`, for the
    /// host or user `spec` describes (see [`BadKind`]).
    pub fn issue_bad<R: CryptoRngCore + ?Sized>(
        &self,
        kind: BadKind,
        spec: &EndEntity,
        alg: KeyAlgorithm,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<BadCertificate, GenError> {
        let id = spec
            .identity()
            .ok_or_else(|| GenError::InvalidName(spec.common_name.clone()))?;
        let key = PrivateKey::generate(alg, rng)?;
        let mut p = spec.params(now, rng)?;
        let mut extra_intermediates = Vec::new();
        let year = Duration::days(365);
        let shift = |d: Duration| now.checked_add(d).ok_or(GenError::Time);
        let cert_der = match kind {
            BadKind::Expired => {
                p.not_before = shift(-2 * year)?;
                p.not_after = shift(-year)?;
                self.sign(&p, &key)?
            }
            BadKind::NotYetValid => {
                p.not_before = shift(year)?;
                p.not_after = shift(2 * year)?;
                self.sign(&p, &key)?
            }
            BadKind::WrongKeyUsage => {
                // Neither digitalSignature nor nonRepudiation (RFC 4945
                // 5.1.3.2), nor keyEncipherment/keyAgreement (which OpenSSL's
                // TLS purposes would accept).
                p.key_usages = vec![KeyUsagePurpose::DataEncipherment];
                self.sign(&p, &key)?
            }
            BadKind::WrongEku => {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
                self.sign(&p, &key)?
            }
            BadKind::WrongSan => {
                p.subject_alt_names = sans(&[
                    AltName::Dns("wrong-host.invalid".to_owned()),
                    AltName::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254))),
                    AltName::Ip(IpAddr::V6(Ipv6Addr::new(
                        0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe,
                    ))),
                    AltName::Email("someone-else@wrong-host.invalid".to_owned()),
                ])?;
                self.sign(&p, &key)?
            }
            BadKind::UnknownIssuer => {
                let rogue = Self::root("latchkey rogue CA (not a trust anchor)", alg, now, rng)?;
                rogue.sign(&p, &key)?
            }
            BadKind::BadSignature => {
                let mut der = self.sign(&p, &key)?;
                // The last octet of a certificate is the last octet of its
                // signature value, whatever the algorithm.
                if let Some(b) = der.last_mut() {
                    *b ^= 0x01;
                }
                der
            }
            BadKind::IssuerNotCa => {
                // A certificate with cA FALSE (but keyCertSign, so that is
                // its only defect as an issuer) signs the end entity.
                let mid_key = PrivateKey::generate(alg, rng)?;
                let mut mp = base_params("latchkey not-a-CA issuer", now, 3650, rng)?;
                mp.is_ca = IsCa::ExplicitNoCa;
                mp.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ];
                let mid_der = self.sign(&mp, &mid_key)?;
                let issuer = Issuer::new(mp, key_pair(&mid_key)?);
                let der = p.signed_by(&key_pair(&key)?, &issuer)?.der().to_vec();
                extra_intermediates.push(mid_der);
                der
            }
        };
        Ok(BadCertificate {
            kind,
            issued: Issued { cert_der, key },
            extra_intermediates,
            id,
        })
    }
}

fn ca_params<R: CryptoRngCore + ?Sized>(
    name: &str,
    path_len: Option<u8>,
    now: OffsetDateTime,
    rng: &mut R,
) -> Result<CertificateParams, GenError> {
    let mut p = base_params(name, now, 3650, rng)?;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// A self-signed end-entity certificate (BTNS, RFC 5386: proves possession
/// of a key, nothing more). Not a CA; keyUsage digitalSignature.
pub fn self_signed<R: CryptoRngCore + ?Sized>(
    spec: &EndEntity,
    alg: KeyAlgorithm,
    now: OffsetDateTime,
    rng: &mut R,
) -> Result<Issued, GenError> {
    let key = PrivateKey::generate(alg, rng)?;
    let p = spec.params(now, rng)?;
    let cert = p.self_signed(&key_pair(&key)?)?;
    Ok(Issued {
        cert_der: cert.der().to_vec(),
        key,
    })
}

/// The deliberate defects of [`CertificateAuthority::issue_bad`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BadKind {
    /// notAfter a year ago.
    Expired,
    /// notBefore a year ahead.
    NotYetValid,
    /// keyUsage dataEncipherment only (no digitalSignature).
    WrongKeyUsage,
    /// extendedKeyUsage codeSigning only.
    WrongEku,
    /// subjectAltNames that name another host.
    WrongSan,
    /// Signed by a CA that is not among the trust anchors.
    UnknownIssuer,
    /// One bit of the signature flipped.
    BadSignature,
    /// Issued by a certificate with basicConstraints cA FALSE.
    IssuerNotCa,
}

impl BadKind {
    /// Every defect.
    pub const ALL: [Self; 8] = [
        Self::Expired,
        Self::NotYetValid,
        Self::WrongKeyUsage,
        Self::WrongEku,
        Self::WrongSan,
        Self::UnknownIssuer,
        Self::BadSignature,
        Self::IssuerNotCa,
    ];

    /// A file-name-friendly name (`expired`, `wrong-eku`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::WrongKeyUsage => "wrong-key-usage",
            Self::WrongEku => "wrong-eku",
            Self::WrongSan => "wrong-san",
            Self::UnknownIssuer => "unknown-issuer",
            Self::BadSignature => "bad-signature",
            Self::IssuerNotCa => "issuer-not-ca",
        }
    }

    /// Why a validating peer must refuse it, in a sentence.
    pub fn why(self) -> &'static str {
        match self {
            Self::Expired => "notAfter is a year in the past (RFC 5280 6.1.3 a.2)",
            Self::NotYetValid => "notBefore is a year in the future (RFC 5280 6.1.3 a.2)",
            Self::WrongKeyUsage => {
                "keyUsage is dataEncipherment only: neither digitalSignature nor nonRepudiation (RFC 4945 5.1.3.2)"
            }
            Self::WrongEku => {
                "extendedKeyUsage is codeSigning only: no ipsecIKE, serverAuth, clientAuth or anyExtendedKeyUsage (RFC 4945 5.1.3.12)"
            }
            Self::WrongSan => {
                "subjectAltNames name another host (wrong-host.invalid, 192.0.2.254, 2001:db8::fe): the IKE ID does not match (RFC 4945 3.1)"
            }
            Self::UnknownIssuer => "signed by a rogue CA that is not a trust anchor",
            Self::BadSignature => "one bit of the CA's signature is flipped",
            Self::IssuerNotCa => {
                "issued by a certificate whose basicConstraints say cA FALSE (RFC 5280 6.1.4 k)"
            }
        }
    }

    /// The reason [`crate::validate()`] gives when the certificate is checked
    /// against the right identity and trust anchors.
    pub fn expected_error(self) -> ValidationError {
        match self {
            Self::Expired => ValidationError::Expired,
            Self::NotYetValid => ValidationError::NotYetValid,
            Self::WrongKeyUsage => ValidationError::KeyUsage,
            Self::WrongEku => ValidationError::Eku,
            Self::WrongSan => ValidationError::IdMismatch,
            Self::UnknownIssuer => ValidationError::UnknownIssuer,
            Self::BadSignature => ValidationError::BadSignature,
            Self::IssuerNotCa => ValidationError::NotCa,
        }
    }

    /// Whether the chain itself is sound (the defect is in end-entity usage
    /// or identity, which chain-only checkers such as `pki --verify` do not
    /// look at).
    pub fn chain_is_sound(self) -> bool {
        matches!(self, Self::WrongKeyUsage | Self::WrongEku | Self::WrongSan)
    }
}

impl core::fmt::Display for BadKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A certificate with one deliberate defect.
#[derive(Debug)]
#[non_exhaustive]
pub struct BadCertificate {
    /// The defect.
    pub kind: BadKind,
    /// The certificate and its key.
    pub issued: Issued,
    /// Certificates the peer would send along (the cA FALSE issuer), DER.
    pub extra_intermediates: Vec<Vec<u8>>,
    /// The identity the certificate was made for.
    pub id: Identity,
}
