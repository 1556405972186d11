//! `latchkey probe TARGET`: the harness's active half (issue 4, item 6).
//!
//! Plays misbehaving and BTNS peers against a target IKEv2 endpoint
//! (another latchkey, or strongSwan in a namespace) and reports, scenario
//! by scenario, what the target accepted. Every scenario uses fresh
//! in-process endpoints as initiators and fresh IKE SAs. Every verdict
//! comes from what happened on the wire, as the endpoint reports it: the
//! child SA as installed (selectors granted), the error notify received,
//! a timeout, or the child SA deleted by the target right after install.
//!
//! Scenarios:
//! - `second-peer-same-address`: peer A sets up a channel asserting inner
//!   address X; peer B (another key or identity) then asserts X too: the
//!   draft's attack (R11, R13). B's grant is compared with A's: accepted
//!   (the same selectors), narrowed (fewer) or refused. With `--send`, B
//!   also sends datagrams for A's 5-tuple and the probe reports whether
//!   any echo came back.
//! - `changed-key`: a known peer (same address and ID) comes back with a
//!   different key (raw public keys, or self-signed certificates with
//!   `--auth certificate`).
//! - `bad-cert-KIND`: one per [`certs::BadKind`], issued under `--ca-dir`
//!   (so the target can trust that CA) or a throwaway CA.
//! - `null-where-cert-wanted`: NULL authentication (RFC 7619).
//! - `psk-wrong`: a wrong pre-shared key (only with `--auth psk`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use certs::{BadKind, CertificateAuthority, EndEntity, KeyAlgorithm, PrivateKey};
use clap::Args;
use endpoint::{AuthMethod, Channel, Endpoint, EndpointConfig, Identity, TrafficSelector};
use rand_core::RngCore;

/// Arguments of `latchkey probe`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The target's IKE address, `ADDR` or `ADDR:PORT` (default port 500).
    target: String,
    /// Our IKE address and port (peer B of `second-peer-same-address`
    /// uses the same address with any free ports). Default: the
    /// unspecified address of the target's family, any free port.
    #[arg(long)]
    local: Option<SocketAddr>,
    /// Our NAT-T port (0: any free port).
    #[arg(long, default_value_t = 0)]
    nat_t_port: u16,
    /// The target's NAT-T port.
    #[arg(long, default_value_t = 4500)]
    remote_nat_t_port: u16,
    /// Our traffic selector (the inner addresses we assert).
    #[arg(long, conflicts_with = "inner")]
    local_ts: Option<TrafficSelector>,
    /// The target's traffic selector.
    #[arg(long, default_value = "0.0.0.0/0")]
    remote_ts: TrafficSelector,
    /// The inner address we assert (shorthand for --local-ts ADDR/32).
    #[arg(long)]
    inner: Option<IpAddr>,
    /// A `latchkey pki init` directory: certificates are issued under
    /// that CA (configure the target to trust it). Default: a throwaway,
    /// untrusted CA.
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Our identity (`@fqdn`, address, `user@domain`), where a scenario
    /// asserts one.
    #[arg(long)]
    id: Option<String>,
    /// How our peers authenticate where the scenario leaves it open
    /// (`second-peer-same-address`): null (BTNS), psk, certificate (under
    /// the CA), rawpublickey (fresh keys).
    #[arg(long, default_value = "null")]
    auth: AuthMethod,
    /// The pre-shared key for --auth psk (`0x...` is hex); or the
    /// LATCHKEY_PSK environment variable.
    #[arg(long, value_name = "FILE")]
    psk_file: Option<PathBuf>,
    /// How the target authenticates itself: null, psk, or certificate /
    /// rawpublickey (any key it proves is accepted: the probe tests the
    /// target, it does not validate it).
    #[arg(long, default_value = "null")]
    target_auth: AuthMethod,
    /// A scenario to run (repeatable; default: all). `bad-cert` runs every
    /// bad certificate kind.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// `second-peer-same-address`: send datagrams of A's flow, from
    /// --inner (or the first address of --local-ts) port --sport to this
    /// inner ADDR:PORT of the target, first through A, then forged
    /// through B; report whether echoes came back.
    #[arg(long, value_name = "ADDR:PORT")]
    send: Option<SocketAddr>,
    /// Our inner source port for --send.
    #[arg(long, default_value_t = 5000)]
    sport: u16,
    /// Seconds to wait for each IKE SA and child SA.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Two peers assert the same inner address.
    SecondPeerSameAddress,
    /// A known peer comes back with another key.
    ChangedKey,
    /// A certificate with one defect.
    BadCert(BadKind),
    /// NULL authentication.
    NullWhereCertWanted,
    /// A wrong pre-shared key.
    PskWrong,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub(crate) fn all() -> Vec<Self> {
        let mut v = vec![Self::SecondPeerSameAddress, Self::ChangedKey];
        v.extend(BadKind::ALL.iter().map(|k| Self::BadCert(*k)));
        v.push(Self::NullWhereCertWanted);
        v.push(Self::PskWrong);
        v
    }

    /// The scenario's name on the command line and in reports.
    pub(crate) fn name(self) -> String {
        match self {
            Self::SecondPeerSameAddress => "second-peer-same-address".into(),
            Self::ChangedKey => "changed-key".into(),
            Self::BadCert(k) => format!("bad-cert-{}", k.name()),
            Self::NullWhereCertWanted => "null-where-cert-wanted".into(),
            Self::PskWrong => "psk-wrong".into(),
        }
    }

    /// Scenarios by name (`bad-cert` stands for every kind).
    pub(crate) fn parse(s: &str) -> Result<Vec<Self>> {
        if s == "bad-cert" {
            return Ok(BadKind::ALL.iter().map(|k| Self::BadCert(*k)).collect());
        }
        Self::all()
            .into_iter()
            .find(|c| c.name() == s)
            .map(|c| vec![c])
            .ok_or_else(|| {
                let names: Vec<String> = Self::all().into_iter().map(Self::name).collect();
                anyhow!(
                    "unknown scenario {s:?}; known: {}, bad-cert",
                    names.join(", ")
                )
            })
    }
}

/// What the target did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// The target accepted what was offered.
    Accepted {
        /// What was granted, and anything worth knowing.
        detail: String,
    },
    /// The child SA was accepted with fewer selectors.
    Narrowed {
        /// Our selectors as granted.
        local_ts: Vec<String>,
        /// The target's selectors as granted.
        remote_ts: Vec<String>,
    },
    /// The target refused: the notify it sent (or `DELETE` when it
    /// deleted the child SA right after setting it up).
    Refused {
        /// Notify name.
        notify: String,
        /// The error as the endpoint reported it.
        detail: String,
    },
    /// No answer in time.
    Timeout {
        /// The error as the endpoint reported it.
        detail: String,
    },
    /// Not run, or a precondition failed.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The probe itself failed inside this scenario.
    Error {
        /// What failed.
        detail: String,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accepted { detail } => write!(f, "accepted ({detail})"),
            Self::Narrowed {
                local_ts,
                remote_ts,
            } => write!(
                f,
                "narrowed({} === {})",
                local_ts.join(","),
                remote_ts.join(",")
            ),
            Self::Refused { notify, detail } => write!(f, "refused({notify}: {detail})"),
            Self::Timeout { detail } => write!(f, "timeout ({detail})"),
            Self::Skipped { reason } => write!(f, "skipped({reason})"),
            Self::Error { detail } => write!(f, "error({detail})"),
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Outcome {
    /// Scenario name.
    pub(crate) scenario: String,
    /// What was offered to the target.
    pub(crate) offered: String,
    /// What the target did.
    #[serde(flatten)]
    pub(crate) verdict: Verdict,
    /// Further observations (the first peer's grant, echoes ...).
    pub(crate) notes: Vec<String>,
}

/// The probe's settings, resolved from the arguments.
#[derive(Debug)]
pub(crate) struct ProbeConfig {
    /// The target's IKE address.
    pub(crate) target: SocketAddr,
    /// Our IKE address (the NAT-T address: same IP, `nat_t_port`).
    pub(crate) local: SocketAddr,
    /// Our NAT-T port.
    pub(crate) nat_t_port: u16,
    /// The target's NAT-T port.
    pub(crate) remote_nat_t_port: u16,
    /// Our selector.
    pub(crate) local_ts: TrafficSelector,
    /// The target's selector.
    pub(crate) remote_ts: TrafficSelector,
    /// The CA certificates are issued under, and the chain above it.
    pub(crate) ca: ProbeCa,
    /// Our identity, if given.
    pub(crate) id: Option<Identity>,
    /// How our peers authenticate by default.
    pub(crate) auth: AuthMethod,
    /// The PSK for `auth` psk.
    pub(crate) psk: Option<certs::Psk>,
    /// How the target authenticates.
    pub(crate) target_auth: AuthMethod,
    /// Datagrams for `second-peer-same-address`: (our source, the
    /// target's inner address).
    pub(crate) send: Option<(SocketAddr, SocketAddr)>,
    /// IKE timeout.
    pub(crate) timeout: Duration,
}

/// A CA to issue certificates under.
#[derive(Debug)]
pub(crate) struct ProbeCa {
    /// The CA.
    pub(crate) ca: CertificateAuthority,
    /// Intermediates from this CA up (sent after the end entity).
    pub(crate) chain: Vec<Vec<u8>>,
    /// Whether it is a throwaway CA no target trusts.
    pub(crate) throwaway: bool,
    /// The root of a `--ca-dir` hierarchy: with `--target-auth
    /// certificate` the target's certificate is validated to it (and
    /// asked for with CERTREQ, which strongSwan's default `send_cert =
    /// ifasked` needs).
    pub(crate) anchor: Option<certs::TrustAnchor>,
}

impl ProbeCa {
    /// A throwaway root CA (ECDSA P-256).
    pub(crate) fn throwaway() -> Result<Self> {
        let ca = CertificateAuthority::root(
            "latchkey probe throwaway CA",
            KeyAlgorithm::EcdsaP256,
            certs::time::OffsetDateTime::now_utc(),
            &mut rand_core::OsRng,
        )
        .map_err(|e| anyhow!("throwaway CA: {e}"))?;
        Ok(Self {
            ca,
            chain: Vec::new(),
            throwaway: true,
            anchor: None,
        })
    }

    /// A `latchkey pki init` directory: ca.pem, ca.key, chain.pem (if any).
    fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        };
        let cert = certs::certificates_from_pem_or_der(&read("ca.pem")?)
            .map_err(|e| anyhow!("{}/ca.pem: {e}", dir.display()))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{}: no certificate in ca.pem", dir.display()))?;
        let key_pem = certs::Zeroizing::new(read("ca.key")?);
        let key =
            PrivateKey::from_pem(&key_pem).map_err(|e| anyhow!("{}/ca.key: {e}", dir.display()))?;
        let chain = if dir.join("chain.pem").exists() {
            certs::certificates_from_pem_or_der(&read("chain.pem")?)
                .map_err(|e| anyhow!("{}/chain.pem: {e}", dir.display()))?
        } else {
            Vec::new()
        };
        let root = match dir.join("root.pem").exists() {
            true => certs::certificates_from_pem_or_der(&read("root.pem")?)
                .map_err(|e| anyhow!("{}/root.pem: {e}", dir.display()))?
                .into_iter()
                .next(),
            false => None,
        };
        let anchor = certs::TrustAnchor::from_der(root.as_deref().unwrap_or(&cert))
            .map_err(|e| anyhow!("{}: trust anchor: {e}", dir.display()))?;
        let ca = CertificateAuthority::from_der(&cert, key)
            .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        Ok(Self {
            ca,
            chain,
            throwaway: false,
            anchor: Some(anchor),
        })
    }
}

/// `latchkey probe`.
pub(crate) async fn run(a: ProbeArgs) -> Result<()> {
    let target = crate::parse_peer(&a.target)?;
    let local = a.local.unwrap_or_else(|| {
        let ip = match target.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        SocketAddr::new(ip, 0)
    });
    let local_ts = match (a.inner, a.local_ts) {
        (Some(ip), _) => TrafficSelector::host(ip),
        (None, Some(ts)) => ts,
        (None, None) => "0.0.0.0/0"
            .parse()
            .map_err(|e| anyhow!("default selector: {e}"))?,
    };
    let psk = if a.auth == AuthMethod::Psk || a.target_auth == AuthMethod::Psk {
        let text = if let Some(path) = &a.psk_file {
            std::fs::read(path).with_context(|| format!("reading PSK file {}", path.display()))?
        } else if let Some(v) = std::env::var_os("LATCHKEY_PSK") {
            v.into_encoded_bytes()
        } else {
            bail!("psk authentication needs a key: --psk-file FILE or LATCHKEY_PSK")
        };
        Some(certs::Psk::from_text(&text).map_err(|e| anyhow!("pre-shared key: {e}"))?)
    } else {
        None
    };
    let ca = match &a.ca_dir {
        Some(d) => ProbeCa::load(d)?,
        None => ProbeCa::throwaway()?,
    };
    let send = a
        .send
        .map(|dst| (SocketAddr::new(local_ts.addr.start, a.sport), dst));
    let cfg = ProbeConfig {
        target,
        local,
        nat_t_port: a.nat_t_port,
        remote_nat_t_port: a.remote_nat_t_port,
        local_ts,
        remote_ts: a.remote_ts,
        ca,
        id: a
            .id
            .as_deref()
            .map(crate::creds::parse_identity)
            .transpose()?,
        auth: a.auth,
        psk,
        target_auth: a.target_auth,
        send,
        timeout: crate::secs(a.timeout, "--timeout")?,
    };
    let mut scenarios = Vec::new();
    for s in &a.scenarios {
        for c in Scenario::parse(s)? {
            if !scenarios.contains(&c) {
                scenarios.push(c);
            }
        }
    }
    if scenarios.is_empty() {
        scenarios = Scenario::all();
    }
    // The probe must be able to open its sockets at all.
    let ep = endpoint_for(&cfg, true, false).await?;
    let _ = ep.shutdown().await;

    let outcomes = probe(&cfg, &scenarios).await;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        print_table(&cfg, &outcomes);
    }
    Ok(())
}

fn print_table(cfg: &ProbeConfig, outcomes: &[Outcome]) {
    println!(
        "probe of {} from {} (target auth {}, CA {})",
        cfg.target,
        cfg.local,
        cfg.target_auth,
        if cfg.ca.throwaway {
            "throwaway, untrusted"
        } else {
            "from --ca-dir"
        }
    );
    let w = outcomes
        .iter()
        .map(|o| o.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!("{:w$}  {:50}  VERDICT", "SCENARIO", "OFFERED");
    for o in outcomes {
        println!("{:w$}  {:50}  {}", o.scenario, o.offered, o.verdict);
        for n in &o.notes {
            println!("{:w$}  {:50}    - {n}", "", "");
        }
    }
}

/// Run the scenarios one after the other; what each found.
pub(crate) async fn probe(cfg: &ProbeConfig, scenarios: &[Scenario]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for s in scenarios {
        let o = match s {
            Scenario::SecondPeerSameAddress => second_peer(cfg).await,
            Scenario::ChangedKey => changed_key(cfg).await,
            Scenario::BadCert(k) => bad_cert(cfg, *k).await,
            Scenario::NullWhereCertWanted => null_auth(cfg).await,
            Scenario::PskWrong => psk_wrong(cfg).await,
        };
        let o = o.unwrap_or_else(|e| Outcome {
            scenario: s.name(),
            offered: String::new(),
            verdict: Verdict::Error {
                detail: format!("{e:#}"),
            },
            notes: Vec::new(),
        });
        tracing::info!(scenario = %o.scenario, verdict = %o.verdict, "probe");
        out.push(o);
    }
    out
}

/// A fresh endpoint: on `--local` (fixed ports) or the same address with
/// any free ports.
async fn endpoint_for(cfg: &ProbeConfig, fixed: bool, misbehave: bool) -> Result<Endpoint> {
    let (ike, natt) = if fixed {
        (cfg.local.port(), cfg.nat_t_port)
    } else {
        (0, 0)
    };
    let mut ec = EndpointConfig::on(cfg.local.ip(), ike, natt);
    ec.connect_timeout = cfg.timeout;
    ec.misbehave = misbehave;
    // The previous scenario's endpoint on the same fixed ports may still
    // be closing its sockets: retry briefly while they are in use.
    let mut tries = 0;
    loop {
        match Endpoint::bind(ec.clone(), vec![]).await {
            Ok(ep) => return Ok(ep),
            Err(endpoint::Error::Io { source, .. })
                if fixed && source.kind() == std::io::ErrorKind::AddrInUse && tries < 50 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(anyhow!("cannot open the probe's sockets: {e}")),
        }
    }
}

/// Our side of a peer's authentication.
struct Auth {
    method: AuthMethod,
    id: Identity,
    key: Option<Arc<PrivateKey>>,
    certificates: Vec<Vec<u8>>,
    psk: Option<certs::Psk>,
}

impl Auth {
    fn null() -> Self {
        Self {
            method: AuthMethod::Null,
            id: Identity::Null,
            key: None,
            certificates: Vec::new(),
            psk: None,
        }
    }

    fn describe(&self) -> String {
        match self.method {
            AuthMethod::Null => "NULL auth".into(),
            m => format!("{m} as {}", self.id),
        }
    }
}

/// The peer configuration toward the target.
fn peer(cfg: &ProbeConfig, name: &str, auth: Auth) -> endpoint::PeerConfig {
    let mut p = endpoint::peer_config(name, auth.method, None, cfg.local_ts, cfg.remote_ts);
    p.local_id = auth.id;
    p.remote_natt_port = cfg.remote_nat_t_port;
    let anchor = match (cfg.target_auth, &cfg.ca.anchor) {
        (AuthMethod::Certificate, Some(a)) => Some(a.clone()),
        _ => None,
    };
    p.remote_auth = match cfg.target_auth {
        AuthMethod::Certificate if anchor.is_some() => AuthMethod::Certificate,
        m if m.is_signature() => AuthMethod::RawPublicKey,
        m => m,
    };
    p.psk = if auth.method == AuthMethod::Psk {
        auth.psk
    } else if cfg.target_auth == AuthMethod::Psk {
        cfg.psk.clone()
    } else {
        None
    };
    p.credentials = endpoint::Credentials {
        private_key: auth.key,
        certificates: auth.certificates,
        accept_any_key: cfg.target_auth.is_signature() && anchor.is_none(),
        trust_anchors: anchor.into_iter().collect(),
        ..Default::default()
    };
    p
}

fn default_id(cfg: &ProbeConfig, fallback: &str) -> Identity {
    cfg.id
        .clone()
        .unwrap_or_else(|| Identity::Fqdn(fallback.to_owned()))
}

fn fqdn_of(id: &Identity, fallback: &str) -> String {
    match id {
        Identity::Fqdn(f) => f.clone(),
        Identity::Rfc822(e) => e.clone(),
        Identity::Ipv4(_) | Identity::Ipv6(_) => id.to_string(),
        _ => fallback.to_owned(),
    }
}

fn new_key() -> Result<Arc<PrivateKey>> {
    Ok(Arc::new(
        PrivateKey::generate(KeyAlgorithm::EcdsaP256, &mut rand_core::OsRng)
            .map_err(|e| anyhow!("key generation: {e}"))?,
    ))
}

/// A peer authenticating with `method` as `name` (a fresh key, a fresh
/// certificate under the probe's CA, or the PSK).
fn auth_as(cfg: &ProbeConfig, method: AuthMethod, id: Identity) -> Result<Auth> {
    Ok(match method {
        AuthMethod::Null => Auth::null(),
        AuthMethod::Psk => Auth {
            method,
            id,
            key: None,
            certificates: Vec::new(),
            psk: Some(
                cfg.psk
                    .clone()
                    .ok_or_else(|| anyhow!("--auth psk without a key"))?,
            ),
        },
        AuthMethod::RawPublicKey => Auth {
            method,
            id,
            key: Some(new_key()?),
            certificates: Vec::new(),
            psk: None,
        },
        AuthMethod::Certificate => {
            let name = fqdn_of(&id, "probe.latchkey.invalid");
            let spec = EndEntity::host(&name);
            let id = spec.identity().unwrap_or(id);
            let issued = cfg
                .ca
                .ca
                .issue(
                    &spec,
                    KeyAlgorithm::EcdsaP256,
                    certs::time::OffsetDateTime::now_utc(),
                    &mut rand_core::OsRng,
                )
                .map_err(|e| anyhow!("issuing a certificate for {name}: {e}"))?;
            let mut chain = vec![issued.cert_der];
            chain.extend(cfg.ca.chain.iter().cloned());
            Auth {
                method,
                id,
                key: Some(Arc::new(issued.key)),
                certificates: chain,
                psk: None,
            }
        }
        m => bail!("authentication {m} is not supported by the probe"),
    })
}

/// What one connection attempt gave.
enum Attempt {
    /// The channel is up (and was not deleted right after).
    Up(Box<Channel>),
    /// It failed, or the target deleted it at once: the verdict.
    Failed(Verdict),
}

/// Connect and classify; a child SA the target deletes within a short
/// grace period after setting it up counts as refused (`DELETE`).
async fn attempt(cfg: &ProbeConfig, ep: &Endpoint, peer: endpoint::PeerConfig) -> Attempt {
    match ep.connect(peer, cfg.target).await {
        Ok(ch) => {
            let grace = cfg.timeout.min(Duration::from_millis(600));
            tokio::time::sleep(grace).await;
            match ep.status().await {
                Ok(st) if st.child_sas.iter().any(|(c, _)| c.id == ch.child_sa().id) => {
                    Attempt::Up(Box::new(ch))
                }
                Ok(_) => Attempt::Failed(Verdict::Refused {
                    notify: "DELETE".into(),
                    detail: format!(
                        "the target deleted the child SA ({} === {}) right after setting it up",
                        ch.child_sa().local_ts.join(","),
                        ch.child_sa().remote_ts.join(",")
                    ),
                }),
                Err(e) => Attempt::Failed(Verdict::Error {
                    detail: e.to_string(),
                }),
            }
        }
        Err(e) => Attempt::Failed(classify(&e)),
    }
}

/// The verdict an endpoint error stands for. The IKE error is read
/// through its notify type (what the target sent) and its message (the
/// `ike` crate's wording for local conditions).
fn classify(e: &endpoint::Error) -> Verdict {
    let detail = e.to_string();
    let (endpoint::Error::Ike { error, .. } | endpoint::Error::Child { error, .. }) = e else {
        return match e {
            endpoint::Error::Timeout(_) => Verdict::Timeout { detail },
            _ => Verdict::Error { detail },
        };
    };
    let text = error.to_string();
    let refused = |notify: String| Verdict::Refused {
        notify,
        detail: detail.clone(),
    };
    match error.notify_type() {
        Some(AUTHENTICATION_FAILED) => {
            if let Some(d) = text.strip_prefix("authentication failed: responder") {
                // The responder sends its AUTH only after accepting ours
                // (RFC 7296 1.2): the target accepted; we refused it.
                Verdict::Accepted {
                    detail: format!(
                        "the target accepted our AUTH and answered with its own, which the \
                         probe refused: responder{d}"
                    ),
                }
            } else if text.ends_with("the peer refused our authentication") {
                refused(notify_name(AUTHENTICATION_FAILED))
            } else {
                Verdict::Error { detail }
            }
        }
        // Our own parser's complaint, not something the target sent.
        Some(_) if text.starts_with("protocol error") => Verdict::Error { detail },
        Some(n) => refused(notify_name(n)),
        None if text == "peer did not answer" => Verdict::Timeout { detail },
        None if text == "deleted by peer" => refused("DELETE".into()),
        None => Verdict::Error { detail },
    }
}

/// AUTHENTICATION_FAILED (RFC 7296 3.10.1).
const AUTHENTICATION_FAILED: u16 = 24;

/// The name of an error notify type (RFC 7296 3.10.1).
fn notify_name(n: u16) -> String {
    match n {
        1 => "UNSUPPORTED_CRITICAL_PAYLOAD".into(),
        4 => "INVALID_IKE_SPI".into(),
        5 => "INVALID_MAJOR_VERSION".into(),
        7 => "INVALID_SYNTAX".into(),
        9 => "INVALID_MESSAGE_ID".into(),
        11 => "INVALID_SPI".into(),
        14 => "NO_PROPOSAL_CHOSEN".into(),
        17 => "INVALID_KE_PAYLOAD".into(),
        24 => "AUTHENTICATION_FAILED".into(),
        34 => "SINGLE_PAIR_REQUIRED".into(),
        35 => "NO_ADDITIONAL_SAS".into(),
        36 => "INTERNAL_ADDRESS_FAILURE".into(),
        37 => "FAILED_CP_REQUIRED".into(),
        38 => "TS_UNACCEPTABLE".into(),
        39 => "INVALID_SELECTORS".into(),
        43 => "TEMPORARY_FAILURE".into(),
        44 => "CHILD_SA_NOT_FOUND".into(),
        n => format!("NOTIFY_{n}"),
    }
}

fn parse_ts(v: &[String]) -> Vec<TrafficSelector> {
    v.iter().filter_map(|s| s.parse().ok()).collect()
}

/// Accepted as asked, or narrowed relative to `asked` (ours, theirs).
fn grant_verdict(ch: &Channel, asked: (&[TrafficSelector], &[TrafficSelector])) -> Verdict {
    let c = ch.child_sa();
    let (l, r) = (parse_ts(&c.local_ts), parse_ts(&c.remote_ts));
    if l == asked.0 && r == asked.1 {
        Verdict::Accepted {
            detail: format!("{} === {}", c.local_ts.join(","), c.remote_ts.join(",")),
        }
    } else {
        Verdict::Narrowed {
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
        }
    }
}

async fn shutdown(eps: Vec<Endpoint>) {
    for ep in eps {
        let _ = ep.shutdown().await;
    }
}

/// Datagrams that came back on `ch` within `wait`.
async fn echoes(ch: &mut Channel, wait: Duration) -> usize {
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, ch.recv()).await {
        n += 1;
    }
    n
}

/// The draft's attack: B asserts the inner address A uses.
async fn second_peer(cfg: &ProbeConfig) -> Result<Outcome> {
    let name = Scenario::SecondPeerSameAddress.name();
    let (id_a, id_b) = match cfg.auth {
        AuthMethod::Null => (Identity::Null, Identity::Null),
        _ => (
            default_id(cfg, "probe-a.latchkey.invalid"),
            Identity::Fqdn("probe-b.latchkey.invalid".into()),
        ),
    };
    let auth_a = auth_as(cfg, cfg.auth, id_a)?;
    let auth_b = auth_as(cfg, cfg.auth, id_b)?;
    let offered = format!(
        "A: {}, then B: {}, both asserting {}",
        auth_a.describe(),
        auth_b.describe(),
        cfg.local_ts
    );
    let mut notes = Vec::new();
    let ep_a = endpoint_for(cfg, true, false).await?;
    let mut ch_a = match attempt(cfg, &ep_a, peer(cfg, "probe-a", auth_a)).await {
        Attempt::Up(ch) => ch,
        Attempt::Failed(v) => {
            shutdown(vec![ep_a]).await;
            return Ok(Outcome {
                scenario: name,
                offered,
                verdict: Verdict::Skipped {
                    reason: format!("peer A was not let in: {v}"),
                },
                notes,
            });
        }
    };
    let a_local = parse_ts(&ch_a.child_sa().local_ts);
    let a_remote = parse_ts(&ch_a.child_sa().remote_ts);
    notes.push(format!(
        "A granted {} === {}",
        ch_a.child_sa().local_ts.join(","),
        ch_a.child_sa().remote_ts.join(",")
    ));
    if let Some((src, dst)) = cfg.send {
        match ch_a.send(src, dst, b"latchkey probe: peer A").await {
            Ok(()) => {
                let n = echoes(&mut ch_a, Duration::from_secs(1)).await;
                notes.push(format!("A's flow {src} -> {dst}: 1 sent, {n} echoed to A"));
            }
            Err(e) => notes.push(format!("A could not send {src} -> {dst}: {e}")),
        }
    }
    let ep_b = match endpoint_for(cfg, false, cfg.send.is_some()).await {
        Ok(ep) => ep,
        Err(e) => {
            shutdown(vec![ep_a]).await;
            return Err(e);
        }
    };
    let verdict = match attempt(cfg, &ep_b, peer(cfg, "probe-b", auth_b)).await {
        Attempt::Failed(v) => v,
        Attempt::Up(mut ch_b) => {
            let v = grant_verdict(&ch_b, (&a_local, &a_remote));
            if let Some((src, dst)) = cfg.send {
                const N: usize = 5;
                let mut sent = 0;
                for i in 0..N {
                    let msg = format!("latchkey probe: forged by B {i}");
                    if ch_b.send(src, dst, msg.as_bytes()).await.is_ok() {
                        sent += 1;
                    }
                }
                let n = echoes(&mut ch_b, Duration::from_secs(1)).await;
                notes.push(format!(
                    "B sent {sent}/{N} datagrams of A's flow {src} -> {dst}: {n} echoed to B{}",
                    if n > 0 {
                        " (the target answered B on A's connection)"
                    } else {
                        ""
                    }
                ));
                let m = echoes(&mut ch_a, Duration::from_millis(300)).await;
                if m > 0 {
                    notes.push(format!("{m} datagrams reached A after B's"));
                }
            }
            v
        }
    };
    shutdown(vec![ep_b, ep_a]).await;
    Ok(Outcome {
        scenario: name,
        offered,
        verdict,
        notes,
    })
}

/// A known peer (same address and ID) comes back with another key.
async fn changed_key(cfg: &ProbeConfig) -> Result<Outcome> {
    let scenario = Scenario::ChangedKey.name();
    let id = default_id(cfg, "probe-known.latchkey.invalid");
    let self_signed = cfg.auth == AuthMethod::Certificate;
    let make = |id: &Identity| -> Result<Auth> {
        if self_signed {
            let name = fqdn_of(id, "probe-known.latchkey.invalid");
            let spec = EndEntity::host(&name);
            let issued = certs::self_signed(
                &spec,
                KeyAlgorithm::EcdsaP256,
                certs::time::OffsetDateTime::now_utc(),
                &mut rand_core::OsRng,
            )
            .map_err(|e| anyhow!("self-signed certificate: {e}"))?;
            Ok(Auth {
                method: AuthMethod::Certificate,
                id: spec.identity().unwrap_or_else(|| id.clone()),
                key: Some(Arc::new(issued.key)),
                certificates: vec![issued.cert_der],
                psk: None,
            })
        } else {
            auth_as(cfg, AuthMethod::RawPublicKey, id.clone())
        }
    };
    let first = make(&id)?;
    let second = make(&id)?;
    let kind = if self_signed {
        "self-signed certificate"
    } else {
        "raw public key"
    };
    let offered = format!(
        "{} with a {kind}, then the same from {} with another key",
        first.id,
        cfg.local.ip()
    );
    let mut notes = Vec::new();
    let ep = endpoint_for(cfg, true, false).await?;
    match attempt(cfg, &ep, peer(cfg, "probe-known", first)).await {
        Attempt::Up(ch) => {
            notes.push("the first key was accepted".into());
            let _ = ch.close().await;
            shutdown(vec![ep]).await;
        }
        Attempt::Failed(v) => {
            shutdown(vec![ep]).await;
            return Ok(Outcome {
                scenario,
                offered,
                verdict: Verdict::Skipped {
                    reason: format!("the first key was not accepted: {v}"),
                },
                notes,
            });
        }
    }
    let ep = endpoint_for(cfg, true, false).await?;
    let verdict = match attempt(cfg, &ep, peer(cfg, "probe-known", second)).await {
        Attempt::Up(ch) => {
            let c = ch.child_sa();
            Verdict::Accepted {
                detail: format!(
                    "the changed key was let in ({} === {}); a warning, if the target gives one, \
                     is only in its log",
                    c.local_ts.join(","),
                    c.remote_ts.join(",")
                ),
            }
        }
        Attempt::Failed(v) => v,
    };
    shutdown(vec![ep]).await;
    Ok(Outcome {
        scenario,
        offered,
        verdict,
        notes,
    })
}

/// One single-connection scenario: offer `auth`, report the verdict.
async fn single(
    cfg: &ProbeConfig,
    scenario: String,
    offered: String,
    auth: Auth,
) -> Result<Outcome> {
    let asked = (vec![cfg.local_ts], vec![cfg.remote_ts]);
    let ep = endpoint_for(cfg, true, false).await?;
    let verdict = match attempt(cfg, &ep, peer(cfg, "probe", auth)).await {
        Attempt::Up(ch) => grant_verdict(&ch, (&asked.0, &asked.1)),
        Attempt::Failed(v) => v,
    };
    shutdown(vec![ep]).await;
    Ok(Outcome {
        scenario,
        offered,
        verdict,
        notes: Vec::new(),
    })
}

/// A certificate with one defect, under the probe's CA.
async fn bad_cert(cfg: &ProbeConfig, kind: BadKind) -> Result<Outcome> {
    let id = default_id(cfg, "probe.latchkey.invalid");
    let name = fqdn_of(&id, "probe.latchkey.invalid");
    let spec = EndEntity::host(&name);
    let bad = cfg
        .ca
        .ca
        .issue_bad(
            kind,
            &spec,
            KeyAlgorithm::EcdsaP256,
            certs::time::OffsetDateTime::now_utc(),
            &mut rand_core::OsRng,
        )
        .map_err(|e| anyhow!("issuing the {kind} certificate: {e}"))?;
    let mut chain = vec![bad.issued.cert_der];
    chain.extend(bad.extra_intermediates);
    chain.extend(cfg.ca.chain.iter().cloned());
    let offered = format!("{} certificate for {}: {}", kind, bad.id, kind.why());
    let auth = Auth {
        method: AuthMethod::Certificate,
        id: bad.id,
        key: Some(Arc::new(bad.issued.key)),
        certificates: chain,
        psk: None,
    };
    single(cfg, Scenario::BadCert(kind).name(), offered, auth).await
}

/// NULL authentication (RFC 7619).
async fn null_auth(cfg: &ProbeConfig) -> Result<Outcome> {
    single(
        cfg,
        Scenario::NullWhereCertWanted.name(),
        format!("NULL auth (ID_NULL) asserting {}", cfg.local_ts),
        Auth::null(),
    )
    .await
}

/// A wrong pre-shared key.
async fn psk_wrong(cfg: &ProbeConfig) -> Result<Outcome> {
    let scenario = Scenario::PskWrong.name();
    if cfg.auth != AuthMethod::Psk {
        return Ok(Outcome {
            scenario,
            offered: String::new(),
            verdict: Verdict::Skipped {
                reason: "--auth psk not given".into(),
            },
            notes: Vec::new(),
        });
    }
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let wrong = certs::Psk::new(&bytes).map_err(|e| anyhow!("random PSK: {e}"))?;
    let id = default_id(cfg, "probe.latchkey.invalid");
    let offered = format!("PSK as {id} with a random 32-octet key");
    let auth = Auth {
        method: AuthMethod::Psk,
        id,
        key: None,
        certificates: Vec::new(),
        psk: Some(wrong),
    };
    single(cfg, scenario, offered, auth).await
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: failing loudly is the point"
)]
mod tests {
    use super::*;
    use endpoint::{btns_peer, ConnectionRequest, FiveTuple, LatchState};

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    fn config(target: &Endpoint, ca: ProbeCa, target_auth: AuthMethod) -> ProbeConfig {
        ProbeConfig {
            target: target.ike_addr(),
            local: "127.0.0.1:0".parse().unwrap(),
            nat_t_port: 0,
            remote_nat_t_port: target.natt_addr().port(),
            local_ts: ts("10.0.0.9/32"),
            remote_ts: ts("10.0.0.1/32"),
            ca,
            id: None,
            auth: AuthMethod::Null,
            psk: None,
            target_auth,
            send: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// Echo every datagram back through the channel it came in on.
    fn echo(ep: Arc<Endpoint>) {
        tokio::spawn(async move {
            while let Some(mut ch) = ep.accept().await {
                tokio::spawn(async move {
                    while let Some(d) = ch.recv().await {
                        let _ = ch.send(d.dst, d.src, &d.data).await;
                    }
                });
            }
        });
    }

    /// A latching BTNS target with the flow 10.0.0.1:7000 <-> 10.0.0.9:5000
    /// latched (Larval until peer A's SA binds it).
    async fn latching_target(narrow: bool) -> (Arc<Endpoint>, endpoint::LatchedFlow) {
        let mut cfg = EndpointConfig::loopback();
        cfg.latching.narrow = narrow;
        let ep = Endpoint::bind(
            cfg,
            vec![btns_peer("btns", ts("10.0.0.1/32"), ts("10.0.0.0/24"))],
        )
        .await
        .unwrap();
        let five = FiveTuple::new(
            17,
            "10.0.0.1:7000".parse().unwrap(),
            "10.0.0.9:5000".parse().unwrap(),
        );
        let flow = ep
            .create_connection_latch(ConnectionRequest::new(five))
            .await
            .unwrap();
        let ep = Arc::new(ep);
        echo(ep.clone());
        (ep, flow)
    }

    /// The draft's attack against a latching latchkey: B is narrowed
    /// around A's latched flow (or refused with narrowing off), and B's
    /// forged datagrams for A's flow get no echo while A's do.
    #[tokio::test]
    async fn second_peer_narrowed_or_refused() {
        let (target, flow) = latching_target(true).await;
        let mut cfg = config(&target, ProbeCa::throwaway().unwrap(), AuthMethod::Null);
        cfg.send = Some((
            "10.0.0.9:5000".parse().unwrap(),
            "10.0.0.1:7000".parse().unwrap(),
        ));
        let out = probe(&cfg, &[Scenario::SecondPeerSameAddress]).await;
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        assert_eq!(flow.inquire().unwrap().state, LatchState::Established);
        let o = &out[0];
        let Verdict::Narrowed { remote_ts, .. } = &o.verdict else {
            panic!("expected narrowed, got {}", o.verdict);
        };
        // The target's view of B (its remote) is our local: B's local_ts
        // must no longer cover the latched 10.0.0.9:5000.
        let Verdict::Narrowed { local_ts, .. } = &o.verdict else {
            unreachable!()
        };
        assert!(!remote_ts.is_empty());
        let c: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        assert!(!parse_ts(local_ts)
            .iter()
            .any(|t| t.matches(17, c.ip(), c.port())));
        assert!(
            o.notes.iter().any(|n| n.contains("1 sent, 1 echoed to A")),
            "{:?}",
            o.notes
        );
        assert!(
            o.notes.iter().any(|n| n.contains(": 0 echoed to B")),
            "{:?}",
            o.notes
        );

        let (strict, _flow) = latching_target(false).await;
        let cfg = config(&strict, ProbeCa::throwaway().unwrap(), AuthMethod::Null);
        let out = probe(&cfg, &[Scenario::SecondPeerSameAddress]).await;
        match &out[0].verdict {
            Verdict::Refused { notify, .. } => assert_eq!(notify, "TS_UNACCEPTABLE"),
            v => panic!("expected refused(TS_UNACCEPTABLE), got {v}"),
        }
    }

    /// A target that wants certificates from our CA: every bad
    /// certificate and NULL authentication are refused
    /// (AUTHENTICATION_FAILED); good certificates get in.
    #[tokio::test]
    async fn bad_certificates_and_null_refused() {
        let ca = ProbeCa::throwaway().unwrap();
        let anchor = certs::TrustAnchor::from_der(ca.ca.cert_der()).unwrap();
        let mut p = endpoint::peer_config(
            "certs",
            AuthMethod::Certificate,
            None,
            ts("10.0.0.1/32"),
            ts("10.0.0.0/24"),
        );
        // The target authenticates with a certificate from the same CA;
        // the probe validates it to the CA (as with --ca-dir).
        let spec = EndEntity::host("target.latchkey.invalid");
        let own = ca
            .ca
            .issue(
                &spec,
                KeyAlgorithm::EcdsaP256,
                certs::time::OffsetDateTime::now_utc(),
                &mut rand_core::OsRng,
            )
            .unwrap();
        p.local_id = spec.identity().unwrap();
        p.credentials.private_key = Some(Arc::new(own.key));
        p.credentials.certificates = vec![own.cert_der];
        p.credentials.trust_anchors = vec![anchor.clone()];
        let target = Endpoint::bind(EndpointConfig::loopback(), vec![p])
            .await
            .unwrap();
        let mut cfg = config(&target, ca, AuthMethod::Certificate);
        cfg.ca.throwaway = false;
        cfg.ca.anchor = Some(anchor);
        let mut scenarios: Vec<Scenario> =
            BadKind::ALL.iter().map(|k| Scenario::BadCert(*k)).collect();
        scenarios.push(Scenario::NullWhereCertWanted);
        scenarios.push(Scenario::PskWrong);
        let out = probe(&cfg, &scenarios).await;
        print_table(&cfg, &out);
        for o in &out[..out.len() - 1] {
            match &o.verdict {
                Verdict::Refused { notify, .. } => {
                    assert_eq!(notify, "AUTHENTICATION_FAILED", "{}", o.scenario)
                }
                v => panic!("{}: expected refused, got {v}", o.scenario),
            }
        }
        assert!(matches!(
            out[out.len() - 1].verdict,
            Verdict::Skipped { .. }
        ));

        // Control: certificates from the same CA that are fine get in.
        cfg.auth = AuthMethod::Certificate;
        let out = probe(&cfg, &[Scenario::SecondPeerSameAddress]).await;
        assert!(
            matches!(
                out[0].verdict,
                Verdict::Accepted { .. } | Verdict::Narrowed { .. }
            ),
            "good certificates must be accepted: {}",
            out[0].verdict
        );
    }

    /// BTNS with keys: a target pinning keys refuses a changed key; one
    /// that does not pin accepts it.
    #[tokio::test]
    async fn changed_key_refused_with_pinning() {
        for pinning in [true, false] {
            let mut p = endpoint::peer_config(
                "btns-keys",
                AuthMethod::RawPublicKey,
                None,
                ts("10.0.0.1/32"),
                ts("10.0.0.0/24"),
            );
            p.credentials.private_key = Some(new_key().unwrap());
            p.credentials.accept_any_key = true;
            p.credentials.pinning = pinning;
            let target = Endpoint::bind(EndpointConfig::loopback(), vec![p])
                .await
                .unwrap();
            let cfg = config(
                &target,
                ProbeCa::throwaway().unwrap(),
                AuthMethod::RawPublicKey,
            );
            let out = probe(&cfg, &[Scenario::ChangedKey]).await;
            print_table(&cfg, &out);
            match (&out[0].verdict, pinning) {
                (Verdict::Refused { notify, .. }, true) => {
                    assert_eq!(notify, "AUTHENTICATION_FAILED")
                }
                (Verdict::Accepted { .. }, false) => {}
                (v, _) => panic!("pinning {pinning}: unexpected {v}"),
            }
        }
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Pki(crate::pki::PkiArgs),
        Probe(ProbeArgs),
    }

    /// The command path: `latchkey pki init` makes a CA directory, the
    /// target trusts its root, `latchkey probe --ca-dir` issues under it;
    /// the probe runs (exit 0) whatever the target decides.
    #[tokio::test]
    async fn command_with_ca_dir() {
        use clap::Parser;
        let dir = std::env::temp_dir().join(format!("latchkey-probe-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca_dir = dir.join("ca").to_string_lossy().into_owned();
        let Top::Pki(a) = Cli::try_parse_from([
            "latchkey",
            "pki",
            "init",
            "--name",
            "Probe Test Root",
            "--out",
            &ca_dir,
        ])
        .unwrap()
        .cmd
        else {
            unreachable!()
        };
        crate::pki::run(a).unwrap();
        let ca = ProbeCa::load(&dir.join("ca")).unwrap();
        let mut p = endpoint::peer_config(
            "certs",
            AuthMethod::Certificate,
            None,
            ts("10.0.0.1/32"),
            ts("10.0.0.0/24"),
        );
        p.local_auth = AuthMethod::Null;
        p.local_id = Identity::Null;
        p.credentials.trust_anchors = vec![ca.anchor.clone().unwrap()];
        let target = Endpoint::bind(EndpointConfig::loopback(), vec![p])
            .await
            .unwrap();
        let t = target.ike_addr().to_string();
        let natt = target.natt_addr().port().to_string();
        let Top::Probe(a) = Cli::try_parse_from([
            "latchkey",
            "probe",
            &t,
            "--remote-nat-t-port",
            &natt,
            "--inner",
            "10.0.0.9",
            "--remote-ts",
            "10.0.0.1/32",
            "--ca-dir",
            &ca_dir,
            "--auth",
            "certificate",
            "--scenario",
            "bad-cert-expired",
            "--scenario",
            "second-peer-same-address",
            "--timeout",
            "5",
            "--json",
        ])
        .unwrap()
        .cmd
        else {
            unreachable!()
        };
        run(a).await.unwrap();
        // The same through the library, to look at the verdicts.
        let mut cfg = config(&target, ca, AuthMethod::Null);
        cfg.auth = AuthMethod::Certificate;
        let out = probe(
            &cfg,
            &[
                Scenario::BadCert(BadKind::Expired),
                Scenario::SecondPeerSameAddress,
            ],
        )
        .await;
        assert!(
            matches!(out[0].verdict, Verdict::Refused { .. }),
            "{}",
            out[0].verdict
        );
        assert!(
            matches!(
                out[1].verdict,
                Verdict::Accepted { .. } | Verdict::Narrowed { .. }
            ),
            "{}",
            out[1].verdict
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::all() {
            assert_eq!(Scenario::parse(&s.name()).unwrap(), vec![s]);
        }
        assert_eq!(
            Scenario::parse("bad-cert").unwrap().len(),
            BadKind::ALL.len()
        );
        assert!(Scenario::parse("nonsense").is_err());
    }
}
