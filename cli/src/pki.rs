//! `latchkey pki`: a throwaway PKI for testing IPsec deployments (the
//! cert/BTNS harness of the certificates issue).
//!
//! Subcommands: `init` (a root or intermediate CA), `issue` (a host or user
//! certificate), `selfsign` (a BTNS certificate), `bad` (every deliberately
//! bad certificate, with an index), `show` (what a certificate holds and
//! whether it validates against given anchors, now).
//!
//! Files are PEM. Private keys are PKCS#8, written with mode 0600 and never
//! overwritten unless `--force` is given. A CA directory holds `ca.pem`,
//! `ca.key`, `root.pem` (the trust anchor of its hierarchy) and, for an
//! intermediate, `chain.pem` (the intermediates from it up to, not
//! including, the root: what a peer sends along with its certificate).
//!
//! All the work is the `certs` crate's; this module reads and writes files
//! and takes the clock and the operating system's random source.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use certs::time::OffsetDateTime;
use certs::{
    AltName, BadKind, CertificateAuthority, EndEntity, ExtKeyUsage, KeyAlgorithm, PrivateKey,
    TrustAnchor, ValidationPolicy,
};
use clap::{Args, Subcommand};
use pad::Identity;

/// Make and inspect test certificates: CAs, host and user certificates,
/// BTNS self-signed certificates and deliberately bad ones.
#[derive(Debug, Args)]
pub(crate) struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a CA in --out: a self-signed root, or with --parent an
    /// intermediate signed by the CA in that directory.
    Init(InitArgs),
    /// Issue a host or user certificate signed by the CA in --ca.
    Issue(IssueArgs),
    /// Make a self-signed certificate (BTNS: proves possession of a key,
    /// nothing more) and print its SPKI fingerprint.
    Selfsign(SelfsignArgs),
    /// Issue the whole set of deliberately bad certificates into --out,
    /// with an INDEX.md saying what is wrong with each.
    Bad(BadArgs),
    /// Show what a certificate holds and, with --anchor, whether it
    /// validates now (exit status 1 when it does not).
    Show(ShowArgs),
}

/// Key and output options shared by the generating subcommands.
#[derive(Debug, Args)]
struct KeyOut {
    /// Key type: ecdsa-p256, ecdsa-p384, ed25519, rsa2048 or rsa3072.
    #[arg(long, default_value = "ecdsa-p256")]
    key: KeyAlgorithm,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The CA's name (its subject commonName).
    #[arg(long)]
    name: String,
    /// Make an intermediate (pathLen 0) signed by the CA in this directory.
    #[arg(long, value_name = "CA_DIR")]
    parent: Option<PathBuf>,
    #[command(flatten)]
    ko: KeyOut,
}

/// What an end-entity certificate names.
#[derive(Debug, Args)]
struct SubjectArgs {
    /// A subjectAltName: `ip:ADDR`, `dns:NAME`, `email:ADDR`, or bare (an
    /// IP address, an address with `@`, else a DNS name). Repeatable; the
    /// first is the certificate's IKE identity.
    #[arg(long = "san", required = true)]
    sans: Vec<String>,
    /// Subject commonName (default: the first SAN).
    #[arg(long)]
    cn: Option<String>,
    /// Subject organizationName.
    #[arg(long)]
    org: Option<String>,
    /// extendedKeyUsage purposes, comma-separated: serverauth, clientauth,
    /// ipsecike, any (default: no EKU extension, as RFC 4945 advises).
    #[arg(long, value_delimiter = ',')]
    eku: Vec<String>,
    /// Days of validity.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Base name of the files written (default: derived from the first SAN).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// The issuing CA's directory (from `latchkey pki init`).
    #[arg(long, value_name = "CA_DIR")]
    ca: PathBuf,
    #[command(flatten)]
    subject: SubjectArgs,
    #[command(flatten)]
    ko: KeyOut,
}

#[derive(Debug, Args)]
struct SelfsignArgs {
    #[command(flatten)]
    subject: SubjectArgs,
    #[command(flatten)]
    ko: KeyOut,
}

#[derive(Debug, Args)]
struct BadArgs {
    /// The issuing CA's directory (from `latchkey pki init`).
    #[arg(long, value_name = "CA_DIR")]
    ca: PathBuf,
    /// The host or user the bad certificates claim to be for (same syntax
    /// as `issue --san`; default 192.0.2.1).
    #[arg(long, default_value = "192.0.2.1")]
    san: String,
    #[command(flatten)]
    ko: KeyOut,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The certificate (PEM or DER). Further certificates in a PEM file are
    /// taken as untrusted intermediates.
    cert: PathBuf,
    /// Trust anchor certificates (PEM or DER); repeatable. Without any,
    /// only the contents are shown.
    #[arg(long)]
    anchor: Vec<PathBuf>,
    /// Untrusted intermediate certificates; repeatable.
    #[arg(long)]
    untrusted: Vec<PathBuf>,
    /// The IKE identity the peer would assert: an IP address, `@fqdn`,
    /// `user@domain`, or a bare DNS name.
    #[arg(long)]
    id: Option<String>,
    /// Skip the end entity's keyUsage/extendedKeyUsage checks.
    #[arg(long)]
    chain_only: bool,
    /// Apply RFC 4945 5.1.3.12 strictly: an extendedKeyUsage must hold
    /// ipsecIKE or anyExtendedKeyUsage (by default serverAuth/clientAuth
    /// are accepted too).
    #[arg(long)]
    strict_eku: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Run `latchkey pki`. Synchronous: no sockets, only files.
pub(crate) fn run(a: PkiArgs) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let mut rng = rand_core::OsRng;
    match a.command {
        PkiCommand::Init(a) => init(a, now, &mut rng),
        PkiCommand::Issue(a) => issue(a, now, &mut rng),
        PkiCommand::Selfsign(a) => selfsign(a, now, &mut rng),
        PkiCommand::Bad(a) => bad(a, now, &mut rng),
        PkiCommand::Show(a) => show(a, now),
    }
}

type Rng = rand_core::OsRng;

fn init(a: InitArgs, now: OffsetDateTime, rng: &mut Rng) -> Result<()> {
    slow_key_note(a.ko.key);
    let out = Out::new(&a.ko)?;
    let (ca, root_der, chain) = match &a.parent {
        None => {
            let ca = CertificateAuthority::root(&a.name, a.ko.key, now, rng)?;
            let root = ca.cert_der().to_vec();
            (ca, root, Vec::new())
        }
        Some(dir) => {
            let parent = CaDir::load(dir)?;
            let ca = parent.ca.intermediate(&a.name, a.ko.key, now, rng)?;
            let mut chain = vec![ca.cert_der().to_vec()];
            chain.extend(parent.chain);
            (ca, parent.root, chain)
        }
    };
    out.cert("ca.pem", &[ca.cert_der().to_vec()])?;
    out.key("ca.key", ca.key())?;
    out.cert("root.pem", &[root_der])?;
    if !chain.is_empty() {
        out.cert("chain.pem", &chain)?;
    }
    println!("CA {:?} ({}) in {}", a.name, a.ko.key, a.ko.out.display());
    println!("  trust anchor: {}", a.ko.out.join("root.pem").display());
    Ok(())
}

fn issue(a: IssueArgs, now: OffsetDateTime, rng: &mut Rng) -> Result<()> {
    slow_key_note(a.ko.key);
    let ca = CaDir::load(&a.ca)?;
    let spec = end_entity(&a.subject)?;
    let out = Out::new(&a.ko)?;
    let issued = ca.ca.issue(&spec, a.ko.key, now, rng)?;
    let base = base_name(&a.subject);
    let mut full = vec![issued.cert_der.clone()];
    full.extend(ca.chain.iter().cloned());
    out.cert(
        &format!("{base}.pem"),
        std::slice::from_ref(&issued.cert_der),
    )?;
    out.key(&format!("{base}.key"), &issued.key)?;
    out.cert(&format!("{base}-chain.pem"), &full)?;
    println!(
        "{base}: {} signed by {}",
        describe_line(&issued.cert_der)?,
        a.ca.display()
    );
    println!("  SPKI SHA-256 {}", issued.key.public_key().fingerprint());
    Ok(())
}

fn selfsign(a: SelfsignArgs, now: OffsetDateTime, rng: &mut Rng) -> Result<()> {
    slow_key_note(a.ko.key);
    let spec = end_entity(&a.subject)?;
    let out = Out::new(&a.ko)?;
    let issued = certs::self_signed(&spec, a.ko.key, now, rng)?;
    let base = base_name(&a.subject);
    out.cert(
        &format!("{base}.pem"),
        std::slice::from_ref(&issued.cert_der),
    )?;
    out.key(&format!("{base}.key"), &issued.key)?;
    out.raw(
        &format!("{base}.spki.der"),
        issued.key.public_key().spki_der(),
    )?;
    println!("{base}: self-signed {}", describe_line(&issued.cert_der)?);
    // The BTNS identity (RFC 5386) latching records for this peer.
    println!("  SPKI SHA-256 {}", issued.key.public_key().fingerprint());
    Ok(())
}

fn bad(a: BadArgs, now: OffsetDateTime, rng: &mut Rng) -> Result<()> {
    slow_key_note(a.ko.key);
    let ca = CaDir::load(&a.ca)?;
    let spec = match parse_san(&a.san)? {
        AltName::Email(e) => EndEntity::user(&e),
        AltName::Ip(ip) => EndEntity::host(&ip.to_string()),
        n => {
            let AltName::Dns(d) = n else {
                bail!("--san {:?}: not an IP, DNS or e-mail name", a.san)
            };
            EndEntity::host(&d)
        }
    };
    let out = Out::new(&a.ko)?;
    let mut index = String::from(
        "# Deliberately bad certificates (latchkey pki bad)\n\n\
         Each `NAME.pem` has one defect; `NAME.key` is its key; `NAME-chain.pem` is the\n\
         certificate followed by the certificates a peer would send with it. The trust\n\
         anchor is `root.pem`. `latchkey reason` is the code latchkey's validator and\n\
         AUTHENTICATION_FAILED diagnostics give.\n\n",
    );
    index.push_str(&format!(
        "Issuer: {} ({}). Identity claimed: {}. Key type: {}.\n\n",
        ca.ca_subject,
        a.ca.display(),
        spec.identity()
            .map_or_else(|| "-".to_owned(), |i| i.to_string()),
        a.ko.key
    ));
    index.push_str("| file | latchkey reason | what is wrong |\n|---|---|---|\n");
    out.cert("root.pem", std::slice::from_ref(&ca.root))?;
    for kind in BadKind::ALL {
        let b = ca.ca.issue_bad(kind, &spec, a.ko.key, now, rng)?;
        let name = kind.name();
        let mut full = vec![b.issued.cert_der.clone()];
        full.extend(b.extra_intermediates.iter().cloned());
        full.extend(ca.chain.iter().cloned());
        out.cert(
            &format!("{name}.pem"),
            std::slice::from_ref(&b.issued.cert_der),
        )?;
        out.key(&format!("{name}.key"), &b.issued.key)?;
        out.cert(&format!("{name}-chain.pem"), &full)?;
        index.push_str(&format!(
            "| {name}.pem | {} | {} |\n",
            kind.expected_error().code(),
            kind.why()
        ));
        println!("{name:<16} {}", kind.why());
    }
    out.raw("INDEX.md", index.as_bytes())?;
    println!("index: {}", a.ko.out.join("INDEX.md").display());
    Ok(())
}

fn show(a: ShowArgs, now: OffsetDateTime) -> Result<()> {
    let mut certs_in = read_certs(&a.cert)?;
    if certs_in.is_empty() {
        bail!("{}: no certificate", a.cert.display());
    }
    let ee = certs_in.remove(0);
    let mut untrusted = certs_in;
    for p in &a.untrusted {
        untrusted.extend(read_certs(p)?);
    }
    let mut anchors = Vec::new();
    for p in &a.anchor {
        for der in read_certs(p)? {
            anchors.push(
                TrustAnchor::from_der(&der)
                    .map_err(|e| anyhow!("{}: trust anchor: {e}", p.display()))?,
            );
        }
    }
    let info = certs::describe(&ee).map_err(|e| anyhow!("{}: {e}", a.cert.display()))?;
    let verdict = if anchors.is_empty() {
        None
    } else {
        let mut policy = match &a.id {
            Some(s) => ValidationPolicy::for_id(parse_id(s)?),
            None => ValidationPolicy::default(),
        };
        policy.check_end_entity_usage = !a.chain_only;
        policy.strict_eku = a.strict_eku;
        let inters: Vec<&[u8]> = untrusted.iter().map(Vec::as_slice).collect();
        Some(certs::validate(&ee, &inters, &anchors, now, &policy))
    };
    let key_usage = info.key_usage.as_ref().map(|v| v.join(", "));
    let alt: Vec<String> = info.alt_names.iter().map(ToString::to_string).collect();
    let time = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t).map_or_else(|_| t.to_string(), |d| d.to_string())
    };
    if a.json {
        let v = serde_json::json!({
            "subject": info.subject,
            "issuer": info.issuer,
            "serial": info.serial,
            "not_before": info.not_before,
            "not_after": info.not_after,
            "key_type": info.key_type.map(|k| k.to_string()),
            "spki_sha256": info.spki_sha256.to_string(),
            "signature_algorithm": info.signature_algorithm,
            "is_ca": info.is_ca,
            "path_len": info.path_len,
            "key_usage": info.key_usage,
            "eku_allows_ike": info.eku_allows_ike,
            "eku_allows_ike_strict": info.eku_allows_ike_strict,
            "alt_names": alt,
            "self_issued": info.self_issued,
            "validation": verdict.as_ref().map(|r| match r {
                Ok(p) => serde_json::json!({
                    "valid": true,
                    "trust_anchor": p.trust_anchor.subject(),
                    "chain": p.chain.iter().filter_map(|d| certs::describe(d).ok()).map(|i| i.subject).collect::<Vec<_>>(),
                }),
                Err(e) => serde_json::json!({
                    "valid": false,
                    "reason": e.code(),
                    "message": e.to_string(),
                }),
            }),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("subject:      {}", info.subject);
        println!("issuer:       {}", info.issuer);
        println!("serial:       {}", info.serial);
        println!("not before:   {}", time(info.not_before));
        println!("not after:    {}", time(info.not_after));
        println!(
            "key:          {}",
            info.key_type
                .map_or_else(|| "unsupported".to_owned(), |k| k.to_string())
        );
        println!("SPKI SHA-256: {}", info.spki_sha256);
        println!("signature:    {}", info.signature_algorithm);
        println!(
            "CA:           {}{}",
            info.is_ca,
            info.path_len
                .map(|n| format!(" (pathLen {n})"))
                .unwrap_or_default()
        );
        println!(
            "key usage:    {}",
            key_usage.as_deref().unwrap_or("(no extension)")
        );
        println!(
            "EKU for IKE:  {} (RFC 4945 strict: {})",
            if info.eku_allows_ike { "yes" } else { "no" },
            if info.eku_allows_ike_strict {
                "yes"
            } else {
                "no"
            }
        );
        println!("alt names:    {}", alt.join(", "));
        if info.self_issued {
            println!("self-issued:  yes");
        }
        match &verdict {
            None => println!("validation:   not checked (no --anchor given)"),
            Some(Ok(p)) => {
                println!("validation:   OK at {now}");
                for d in &p.chain {
                    if let Ok(i) = certs::describe(d) {
                        println!("  via         {}", i.subject);
                    }
                }
                println!("  anchor      {}", p.trust_anchor.subject());
            }
            Some(Err(e)) => println!("validation:   FAILED: {} ({e})", e.code()),
        }
    }
    if let Some(Err(e)) = verdict {
        bail!("{} does not validate: {}", a.cert.display(), e.code());
    }
    Ok(())
}

/// RSA keys take a while to generate in a debug build; say so.
fn slow_key_note(alg: KeyAlgorithm) {
    if matches!(alg, KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072) && cfg!(debug_assertions) {
        eprintln!("note: RSA key generation is slow in a debug build (up to minutes per key)");
    }
}

/// A CA directory written by `init`.
struct CaDir {
    ca: CertificateAuthority,
    ca_subject: String,
    root: Vec<u8>,
    /// Intermediates from this CA up (empty for a root).
    chain: Vec<Vec<u8>>,
}

impl CaDir {
    fn load(dir: &Path) -> Result<Self> {
        let cert = read_certs(&dir.join("ca.pem"))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{}: no certificate in ca.pem", dir.display()))?;
        let key_path = dir.join("ca.key");
        let key_pem = certs::Zeroizing::new(
            fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?,
        );
        let key =
            PrivateKey::from_pem(&key_pem).map_err(|e| anyhow!("{}: {e}", key_path.display()))?;
        let root = read_certs(&dir.join("root.pem"))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{}: no certificate in root.pem", dir.display()))?;
        let chain_path = dir.join("chain.pem");
        let chain = if chain_path.exists() {
            read_certs(&chain_path)?
        } else {
            Vec::new()
        };
        let ca_subject = certs::describe(&cert)
            .map(|i| i.subject)
            .unwrap_or_default();
        let ca = CertificateAuthority::from_der(&cert, key)
            .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        Ok(Self {
            ca,
            ca_subject,
            root,
            chain,
        })
    }
}

/// The output directory.
struct Out<'a> {
    dir: &'a Path,
    force: bool,
}

impl<'a> Out<'a> {
    fn new(ko: &'a KeyOut) -> Result<Self> {
        fs::create_dir_all(&ko.out).with_context(|| format!("creating {}", ko.out.display()))?;
        Ok(Self {
            dir: &ko.out,
            force: ko.force,
        })
    }

    fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let path = self.dir.join(name);
        if self.force {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        // create_new: never write through an existing file (or symlink), so
        // the mode below is the mode the file gets.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("creating {} (use --force to overwrite)", path.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", path.display()))
    }

    fn cert(&self, name: &str, ders: &[Vec<u8>]) -> Result<()> {
        let pem: String = ders.iter().map(|d| certs::certificate_to_pem(d)).collect();
        self.write(name, pem.as_bytes(), 0o644)
    }

    fn key(&self, name: &str, key: &PrivateKey) -> Result<()> {
        self.write(name, key.to_pem().as_bytes(), 0o600)
    }

    fn raw(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.write(name, bytes, 0o644)
    }
}

fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    certs::certificates_from_pem_or_der(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn parse_san(s: &str) -> Result<AltName> {
    let (kind, v) = s.split_once(':').unwrap_or(("", s));
    Ok(match kind.to_ascii_lowercase().as_str() {
        "ip" => AltName::Ip(v.parse().with_context(|| format!("--san {s:?}"))?),
        "dns" => AltName::Dns(v.to_owned()),
        "email" => AltName::Email(v.to_owned()),
        // Bare (an IPv6 address has colons: try the whole string first).
        _ => {
            if let Ok(ip) = s.parse::<IpAddr>() {
                AltName::Ip(ip)
            } else if s.contains('@') {
                AltName::Email(s.to_owned())
            } else if !s.is_empty() && !s.contains(':') {
                AltName::Dns(s.to_owned())
            } else {
                bail!("--san {s:?}: expected ip:ADDR, dns:NAME, email:ADDR or a bare name")
            }
        }
    })
}

fn parse_eku(s: &str) -> Result<ExtKeyUsage> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "serverauth" => ExtKeyUsage::ServerAuth,
        "clientauth" => ExtKeyUsage::ClientAuth,
        "ipsecike" => ExtKeyUsage::IpsecIke,
        "any" => ExtKeyUsage::Any,
        _ => bail!("--eku {s:?}: expected serverauth, clientauth, ipsecike or any"),
    })
}

fn end_entity(s: &SubjectArgs) -> Result<EndEntity> {
    let sans = s
        .sans
        .iter()
        .map(|x| parse_san(x))
        .collect::<Result<Vec<_>>>()?;
    let first = sans
        .first()
        .ok_or_else(|| anyhow!("at least one --san is needed"))?;
    let first_text = match first {
        AltName::Ip(ip) => ip.to_string(),
        AltName::Dns(d) | AltName::Email(d) => d.clone(),
        other => other.to_string(),
    };
    let mut spec = match first {
        AltName::Email(e) => EndEntity::user(e),
        _ => EndEntity::host(&first_text),
    };
    spec.alt_names = sans;
    if let Some(cn) = &s.cn {
        spec.common_name = cn.clone();
    }
    if let Some(o) = &s.org {
        spec = spec.with_organization(o);
    }
    let eku = s
        .eku
        .iter()
        .map(|e| parse_eku(e))
        .collect::<Result<Vec<_>>>()?;
    Ok(spec.with_eku(&eku).with_validity_days(s.days))
}

fn base_name(s: &SubjectArgs) -> String {
    if let Some(n) = &s.name {
        return n.clone();
    }
    let first = s.sans.first().map_or("cert", String::as_str);
    let v = first
        .split_once(':')
        .filter(|(k, _)| matches!(k.to_ascii_lowercase().as_str(), "ip" | "dns" | "email"))
        .map_or(first, |(_, v)| v);
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '@' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn describe_line(der: &[u8]) -> Result<String> {
    let i = certs::describe(der).map_err(|e| anyhow!("{e}"))?;
    let alt: Vec<String> = i.alt_names.iter().map(ToString::to_string).collect();
    Ok(format!(
        "{} [{}] {}",
        i.subject,
        alt.join(", "),
        i.key_type.map(|k| k.to_string()).unwrap_or_default()
    ))
}

fn parse_id(s: &str) -> Result<Identity> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Identity::from_ip(ip));
    }
    if let Some(f) = s.strip_prefix('@') {
        if f.is_empty() {
            bail!("--id {s:?}: empty FQDN after @");
        }
        return Ok(Identity::Fqdn(f.to_owned()));
    }
    if s.contains('@') {
        return Ok(Identity::Rfc822(s.to_owned()));
    }
    if !s.is_empty() {
        return Ok(Identity::Fqdn(s.to_owned()));
    }
    bail!("--id {s:?}: expected an IP address, @fqdn, user@domain or a DNS name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Pki(PkiArgs),
    }

    fn pki(args: &[&str]) -> Result<()> {
        let mut v = vec!["latchkey", "pki"];
        v.extend_from_slice(args);
        let Top::Pki(a) = Cli::try_parse_from(v)?.cmd;
        run(a)
    }

    #[test]
    fn harness_end_to_end() {
        let dir = std::env::temp_dir().join(format!("latchkey-pki-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
        pki(&[
            "init",
            "--name",
            "Test Root",
            "--key",
            "ed25519",
            "--out",
            &d("root"),
        ])
        .unwrap();
        pki(&[
            "init",
            "--name",
            "Test Inter",
            "--key",
            "ecdsa-p384",
            "--parent",
            &d("root"),
            "--out",
            &d("inter"),
        ])
        .unwrap();
        pki(&[
            "issue",
            "--ca",
            &d("inter"),
            "--san",
            "192.0.2.7",
            "--san",
            "dns:gw.example",
            "--key",
            "ecdsa-p256",
            "--out",
            &d("hosts"),
        ])
        .unwrap();
        pki(&[
            "issue",
            "--ca",
            &d("inter"),
            "--san",
            "alice@example.org",
            "--key",
            "ed25519",
            "--out",
            &d("users"),
        ])
        .unwrap();
        pki(&[
            "selfsign",
            "--san",
            "198.51.100.9",
            "--key",
            "ed25519",
            "--out",
            &d("btns"),
        ])
        .unwrap();
        pki(&[
            "bad",
            "--ca",
            &d("inter"),
            "--san",
            "192.0.2.7",
            "--key",
            "ecdsa-p256",
            "--out",
            &d("bad"),
        ])
        .unwrap();
        // Keys are private, certificates are not.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("root/ca.key"), 0o600);
        assert_eq!(mode("hosts/192.0.2.7.key"), 0o600);
        assert_eq!(mode("bad/expired.key"), 0o600);
        assert_eq!(mode("hosts/192.0.2.7.pem"), 0o644);
        // No silent overwrite.
        assert!(pki(&["init", "--name", "X", "--out", &d("root")]).is_err());
        // show: the good host validates, with its chain and identity.
        pki(&[
            "show",
            &d("hosts/192.0.2.7-chain.pem"),
            "--anchor",
            &d("root/root.pem"),
            "--id",
            "192.0.2.7",
        ])
        .unwrap();
        pki(&[
            "show",
            &d("hosts/192.0.2.7-chain.pem"),
            "--anchor",
            &d("root/root.pem"),
            "--id",
            "@gw.example",
            "--json",
        ])
        .unwrap();
        pki(&[
            "show",
            &d("users/alice@example.org-chain.pem"),
            "--anchor",
            &d("root/root.pem"),
            "--id",
            "alice@example.org",
        ])
        .unwrap();
        assert!(pki(&[
            "show",
            &d("hosts/192.0.2.7-chain.pem"),
            "--anchor",
            &d("root/root.pem"),
            "--id",
            "192.0.2.8"
        ])
        .is_err());
        pki(&["show", &d("btns/198.51.100.9.pem")]).unwrap();
        // Every bad certificate fails, with the reason its index gives.
        let index = fs::read_to_string(dir.join("bad/INDEX.md")).unwrap();
        for kind in BadKind::ALL {
            let e = pki(&[
                "show",
                &d(&format!("bad/{}-chain.pem", kind.name())),
                "--anchor",
                &d("bad/root.pem"),
                "--id",
                "192.0.2.7",
            ])
            .unwrap_err()
            .to_string();
            assert!(e.ends_with(kind.expected_error().code()), "{kind}: {e}");
            assert!(index.contains(&format!(
                "| {}.pem | {} |",
                kind.name(),
                kind.expected_error().code()
            )));
        }
        tools_agree_on_files(&dir);
        let _ = fs::remove_dir_all(&dir);
    }

    /// `openssl verify` and strongSwan's `pki --verify` on the very files
    /// `latchkey pki` wrote: good ones pass, bad ones fail (pki --verify
    /// checks the chain only, so the usage/identity defects pass there).
    fn tools_agree_on_files(dir: &Path) {
        let have = |t: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let p = |f: &str| dir.join(f);
        let mut cases = vec![("hosts/192.0.2.7".to_owned(), "root/root.pem", true, true)];
        for kind in BadKind::ALL {
            cases.push((
                format!("bad/{}", kind.name()),
                "bad/root.pem",
                false,
                kind.chain_is_sound(),
            ));
        }
        if have("openssl") {
            for (base, root, ok, _) in &cases {
                let st = std::process::Command::new("openssl")
                    .args([
                        "verify",
                        "-purpose",
                        "sslserver",
                        "-verify_ip",
                        "192.0.2.7",
                        "-CAfile",
                    ])
                    .arg(p(root))
                    .arg("-untrusted")
                    .arg(p(&format!("{base}-chain.pem")))
                    .arg(p(&format!("{base}.pem")))
                    .output()
                    .unwrap();
                assert_eq!(st.status.success(), *ok, "openssl verify {base}");
            }
        } else {
            eprintln!("SKIP: openssl not installed");
        }
        if have("pki") {
            for (base, root, _, chain_ok) in &cases {
                // pki --verify takes CA certificates one per file.
                let chain = fs::read(p(&format!("{base}-chain.pem"))).unwrap();
                let mut cmd = std::process::Command::new("pki");
                cmd.args(["--verify", "--in"])
                    .arg(p(&format!("{base}.pem")));
                cmd.arg("--cacert").arg(p(root));
                for (i, der) in certs::certificates_from_pem(&chain)
                    .unwrap()
                    .iter()
                    .enumerate()
                    .skip(1)
                {
                    let f = p(&format!("{base}.ca{i}.pem"));
                    fs::write(&f, certs::certificate_to_pem(der)).unwrap();
                    cmd.arg("--cacert").arg(f);
                }
                let st = cmd.output().unwrap();
                assert_eq!(st.status.success(), *chain_ok, "pki --verify {base}");
            }
        } else {
            eprintln!("SKIP: strongSwan pki not installed");
        }
    }

    #[test]
    fn san_and_id_syntax() {
        assert_eq!(
            parse_san("ip:2001:db8::1").unwrap(),
            AltName::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_san("2001:db8::1").unwrap(),
            AltName::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_san("a@b.example").unwrap(),
            AltName::Email("a@b.example".into())
        );
        assert_eq!(
            parse_san("DNS:gw.example").unwrap(),
            AltName::Dns("gw.example".into())
        );
        assert!(parse_san("x:y").is_err());
        assert_eq!(
            parse_id("@gw.example").unwrap(),
            Identity::Fqdn("gw.example".into())
        );
        assert_eq!(parse_id("a@b").unwrap(), Identity::Rfc822("a@b".into()));
    }
}
