//! Identities and credential files, shared by `connect`/`listen` (command
//! line flags) and `daemon` (its TOML configuration).
//!
//! Secrets come from files only, never from a command line or a config
//! value; what is read is zeroized once parsed, and a secret file that
//! others may read is warned about.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use endpoint::{AuthMethod, Credentials, Identity};
use zeroize::Zeroizing;

/// Parse an identity as strongSwan writes them: an IP address, `@fqdn`,
/// `user@domain`, a dotted name, or `null`/`%null`.
pub(crate) fn parse_identity(s: &str) -> Result<Identity> {
    if s == "null" || s == "%null" {
        return Ok(Identity::Null);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Identity::from_ip(ip));
    }
    if let Some(f) = s.strip_prefix('@') {
        if f.is_empty() {
            bail!("identity {s:?}: empty FQDN after @");
        }
        return Ok(Identity::Fqdn(f.to_owned()));
    }
    if s.contains('@') {
        return Ok(Identity::Rfc822(s.to_owned()));
    }
    if s.contains('.') {
        return Ok(Identity::Fqdn(s.to_owned()));
    }
    bail!("identity {s:?}: expected an IP address, @fqdn, user@domain or null")
}

/// Our identity when none is configured: `null` for NULL authentication,
/// else our IP address (a placeholder FQDN when bound to the wildcard).
pub(crate) fn default_local_id(auth: AuthMethod, local_ip: IpAddr) -> Identity {
    match auth {
        AuthMethod::Null => Identity::Null,
        _ if local_ip.is_unspecified() => Identity::Fqdn("latchkey.invalid".into()),
        _ => Identity::from_ip(local_ip),
    }
}

/// Read a file, saying which and what for on failure.
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Read a secret: zeroized when dropped; a file readable by group or
/// others is warned about (it should be 0600).
fn read_secret(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = Zeroizing::new(read(path, what)?);
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format_args!("{mode:03o}"),
                "{what} file is readable by others; it should be 0600"
            );
        }
    }
    Ok(bytes)
}

/// A pre-shared key from a file (text, or `0x...` hex).
pub(crate) fn psk_from_file(path: &Path) -> Result<certs::Psk> {
    let text = read_secret(path, "pre-shared key")?;
    certs::Psk::from_text(&text).map_err(|e| anyhow!("pre-shared key {}: {e}", path.display()))
}

/// A pre-shared key from bytes given some other way (LATCHKEY_PSK).
pub(crate) fn psk_from_bytes(bytes: Vec<u8>) -> Result<certs::Psk> {
    let text = Zeroizing::new(bytes);
    certs::Psk::from_text(&text).map_err(|e| anyhow!("pre-shared key: {e}"))
}

/// Our private key (PKCS#8 PEM).
pub(crate) fn private_key(path: &Path) -> Result<Arc<certs::PrivateKey>> {
    let pem = read_secret(path, "private key")?;
    let key = certs::PrivateKey::from_pem(&pem)
        .map_err(|e| anyhow!("private key {}: {e}", path.display()))?;
    Ok(Arc::new(key))
}

/// Our certificate chain (PEM, end entity first; or one DER certificate).
pub(crate) fn certificate_chain(path: &Path) -> Result<Vec<Vec<u8>>> {
    certs::certificates_from_pem_or_der(&read(path, "certificate")?)
        .map_err(|e| anyhow!("certificate {}: {e}", path.display()))
}

/// Trust anchors: every certificate in the file.
pub(crate) fn trust_anchors(path: &Path) -> Result<Vec<certs::TrustAnchor>> {
    let mut out = Vec::new();
    for der in certs::certificates_from_pem_or_der(&read(path, "trust anchor")?)
        .map_err(|e| anyhow!("trust anchor {}: {e}", path.display()))?
    {
        out.push(
            certs::TrustAnchor::from_der(&der)
                .map_err(|e| anyhow!("trust anchor {}: {e}", path.display()))?,
        );
    }
    Ok(out)
}

/// A raw public key accepted from the peer: a DER SubjectPublicKeyInfo, or
/// a certificate whose key is taken.
pub(crate) fn peer_key(path: &Path) -> Result<certs::PublicKey> {
    let bytes = read(path, "peer key")?;
    if let Ok(k) = certs::PublicKey::from_spki_der(&bytes) {
        return Ok(k);
    }
    let der = certs::certificates_from_pem_or_der(&bytes)
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| {
            anyhow!(
                "peer key {}: neither a DER SubjectPublicKeyInfo nor a certificate",
                path.display()
            )
        })?;
    certs::certificate_public_key(&der).map_err(|e| anyhow!("peer key {}: {e}", path.display()))
}

/// How the settings are spelled where the user wrote them (flags or
/// config keys), for the messages of [`check`].
pub(crate) struct Spelling {
    pub(crate) auth: &'static str,
    pub(crate) key: &'static str,
    pub(crate) cert: &'static str,
    pub(crate) ca: &'static str,
    pub(crate) peer_key: &'static str,
    pub(crate) btns: &'static str,
}

/// The command line's spelling.
pub(crate) const FLAGS: Spelling = Spelling {
    auth: "--auth",
    key: "--key FILE",
    cert: "--cert FILE",
    ca: "--ca FILE",
    peer_key: "--peer-key FILE (the peer's key), --peer-key-dns NAME,",
    btns: "--btns",
};

/// Whether the credentials are enough for `auth`: signing needs our key,
/// certificates need a chain and anchors (or BTNS), raw keys need the
/// peer's key (or BTNS, or a DNS lookup still to come).
pub(crate) fn check(
    auth: AuthMethod,
    c: &Credentials,
    btns: bool,
    key_from_dns: bool,
    s: &Spelling,
) -> Result<()> {
    let signs = matches!(auth, AuthMethod::Certificate | AuthMethod::RawPublicKey);
    if signs && c.private_key.is_none() {
        bail!("{} {auth} needs {} (our private key)", s.auth, s.key);
    }
    if auth == AuthMethod::Certificate && c.certificates.is_empty() {
        bail!(
            "{} certificate needs {} (our certificate chain)",
            s.auth,
            s.cert
        );
    }
    if auth == AuthMethod::Certificate && c.trust_anchors.is_empty() && !btns {
        bail!(
            "{} certificate needs {} (what the peer's certificate must chain to), or {}",
            s.auth,
            s.ca,
            s.btns
        );
    }
    if auth == AuthMethod::RawPublicKey && c.peer_keys.is_empty() && !btns && !key_from_dns {
        bail!("{} rawpublickey needs {} or {}", s.auth, s.peer_key, s.btns);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert_eq!(parse_identity("null").unwrap(), Identity::Null);
        assert_eq!(
            parse_identity("@gw.example").unwrap(),
            Identity::Fqdn("gw.example".into())
        );
        assert_eq!(
            parse_identity("a@b.example").unwrap(),
            Identity::Rfc822("a@b.example".into())
        );
        assert_eq!(
            parse_identity("192.0.2.1").unwrap(),
            Identity::from_ip("192.0.2.1".parse().unwrap())
        );
        assert!(parse_identity("@").is_err());
        assert!(parse_identity("word").is_err());
    }

    #[test]
    fn check_names_what_is_missing() {
        let c = Credentials::default();
        let e = check(AuthMethod::Certificate, &c, false, false, &FLAGS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--auth certificate needs --key FILE (our private key)"
        );
        check(AuthMethod::Psk, &c, false, false, &FLAGS).unwrap();
        check(AuthMethod::Null, &c, false, false, &FLAGS).unwrap();
    }
}
