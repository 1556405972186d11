//! The daemon's configuration file (TOML): `[daemon]`, `[[connection]]`,
//! `[[listener_latch]]`, and the PAD and SPD (`[[peer]]`, `[[policy]]`, read by
//! [`pad::PolicyConfig::from_toml`]) in the same file or in the file
//! `[daemon] policy_file` names. `dist/latchkey.toml` is the commented
//! example.
//!
//! Every mistake comes back as a [`pad::ConfigError`]: file, line, column
//! and field. Credential files are read here (a reload reads them again);
//! a file that cannot be read or parsed is reported at the key naming it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use endpoint::{
    AuthMethod, EspProposal, IkeProposal, Mode, PeerConfig, PolicyConfig, ThreeTuple,
    TrafficSelector, TunConfig,
};
use pad::{ConfigError, ConfigErrorKind};
use serde::Deserialize;
use toml::Spanned;

use crate::creds;

/// What to do with a connection when the daemon starts (or a reload adds
/// it), or when its SA goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StartAction {
    /// Nothing: wait for `latchkey up NAME` or for the peer.
    None,
    /// Initiate the IKE SA and child SA.
    Start,
}

/// A configured connection.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// Its name (also the IKE peer configuration's name).
    pub(crate) name: String,
    /// The peer's IKE address; `None`: responder only.
    pub(crate) remote: Option<SocketAddr>,
    /// What to do at startup.
    pub(crate) start: StartAction,
    /// What to do when its SA goes without `latchkey down` (the peer
    /// deleted it, DPD found it dead, the peer restarted).
    pub(crate) close_action: StartAction,
    /// The IKE peer configuration, credentials loaded.
    pub(crate) peer: PeerConfig,
}

/// The whole configuration, credential files read.
#[derive(Debug, Clone)]
pub(crate) struct DaemonConfig {
    /// Address and port for IKE.
    pub(crate) ike_addr: SocketAddr,
    /// Port for NAT-T (IKE after the move, ESP in UDP), same address.
    pub(crate) natt_port: u16,
    /// The control socket, if configured (the command line wins).
    pub(crate) control: Option<PathBuf>,
    /// Half-open IKE SAs before COOKIEs are demanded.
    pub(crate) cookie_threshold: usize,
    /// Hard bound on half-open IKE SAs.
    pub(crate) max_half_open: usize,
    /// How long `up` waits for the IKE SA and first child SA.
    pub(crate) connect_timeout: Duration,
    /// The TUN device, if any.
    pub(crate) tun: Option<TunConfig>,
    /// `allow_key_export`: the control socket's `keys` op hands out the
    /// SAs' SECRET keys (`latchkey keys --wireshark`).
    pub(crate) key_export: bool,
    /// `pin_file`: where the BTNS pin store is kept across restarts
    /// (relative to the configuration file's directory).
    pub(crate) pin_file: Option<PathBuf>,
    /// The PAD and SPD (`None`: the endpoint's default policy).
    pub(crate) policy: Option<PolicyConfig>,
    /// The connections, in file order.
    pub(crate) connections: Vec<Connection>,
    /// Listener latches (R12): the first datagram of each connection to
    /// one of these binds that connection to the peer and protection that
    /// carried it.
    pub(crate) listener_latches: Vec<ThreeTuple>,
}

impl DaemonConfig {
    /// The connection called `name`.
    pub(crate) fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// The peer configurations the endpoint answers with.
    pub(crate) fn peers(&self) -> Vec<PeerConfig> {
        self.connections.iter().map(|c| c.peer.clone()).collect()
    }

    /// The settings of `[daemon]` that differ from `other` and that only a
    /// restart applies (sockets, control socket, TUN).
    pub(crate) fn restart_only_changes(&self, other: &Self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.ike_addr != other.ike_addr {
            v.push("listen");
        }
        if self.natt_port != other.natt_port {
            v.push("natt_port");
        }
        if self.control != other.control {
            v.push("control");
        }
        if self.cookie_threshold != other.cookie_threshold {
            v.push("cookie_threshold");
        }
        if self.max_half_open != other.max_half_open {
            v.push("max_half_open");
        }
        if self.connect_timeout != other.connect_timeout {
            v.push("connect_timeout");
        }
        if self.tun != other.tun {
            v.push("tun");
        }
        if self.key_export != other.key_export {
            v.push("allow_key_export");
        }
        if self.pin_file != other.pin_file {
            v.push("pin_file");
        }
        v
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The file itself could not be read.
    #[error("reading {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A mistake in it (or in a file it names).
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// Read and check the configuration file at `path`.
pub(crate) fn load(path: &Path) -> Result<DaemonConfig, LoadError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        file: file.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(parse(&src, &file, base)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default)]
    connection: Vec<RawConnection>,
    #[serde(default)]
    listener_latch: Vec<RawListener>,
    // pad's tables, read by `pad::PolicyConfig::from_toml`.
    #[serde(default)]
    peer: Option<toml::Value>,
    #[serde(default)]
    policy: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    natt_port: Option<Spanned<u16>>,
    #[serde(default)]
    control: Option<Spanned<String>>,
    #[serde(default)]
    cookie_threshold: Option<usize>,
    #[serde(default)]
    max_half_open: Option<usize>,
    #[serde(default)]
    connect_timeout: Option<Spanned<toml::Value>>,
    #[serde(default)]
    policy_file: Option<Spanned<String>>,
    #[serde(default)]
    tun: Option<RawTun>,
    #[serde(default)]
    allow_key_export: Option<bool>,
    #[serde(default)]
    pin_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    #[serde(default)]
    proto: Option<Spanned<String>>,
    local: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTun {
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(default)]
    mtu: Option<Spanned<u16>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    #[serde(default)]
    routes: Option<bool>,
    #[serde(default)]
    latch_flows: Option<bool>,
    #[serde(default)]
    udp_idle: Option<Spanned<toml::Value>>,
    #[serde(default)]
    raw_esp: Option<bool>,
    #[serde(default)]
    offload: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    name: Spanned<String>,
    #[serde(default)]
    remote: Option<Spanned<String>>,
    #[serde(default)]
    remote_natt_port: Option<u16>,
    #[serde(default)]
    local_id: Option<Spanned<String>>,
    #[serde(default)]
    remote_id: Option<Spanned<String>>,
    auth: Spanned<String>,
    #[serde(default)]
    psk_file: Option<Spanned<String>>,
    #[serde(default)]
    cert: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    ca: Vec<Spanned<String>>,
    #[serde(default)]
    peer_key: Vec<Spanned<String>>,
    #[serde(default)]
    btns: bool,
    #[serde(default)]
    ike_proposals: Option<Spanned<String>>,
    #[serde(default)]
    esp_proposals: Option<Spanned<String>>,
    #[serde(default)]
    local_ts: Vec<Spanned<String>>,
    #[serde(default)]
    remote_ts: Vec<Spanned<String>>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    force_encap: Option<bool>,
    #[serde(default)]
    ike_rekey: Option<Spanned<toml::Value>>,
    #[serde(default)]
    child_rekey: Option<Spanned<toml::Value>>,
    #[serde(default)]
    dpd: Option<Spanned<toml::Value>>,
    #[serde(default)]
    replay_window: Option<u32>,
    #[serde(default)]
    start: Option<StartAction>,
    #[serde(default)]
    close_action: Option<Spanned<StartAction>>,
}

/// Positions errors in one file.
struct Ctx<'a> {
    src: &'a str,
    file: &'a str,
    base: &'a Path,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        field: &str,
        v: &Spanned<T>,
        kind: ConfigErrorKind,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(self.src, self.file, v.span(), field, kind, msg)
    }

    /// A string value parsed with `f`; its error is reported at the value.
    fn parse<T, E: std::fmt::Display>(
        &self,
        field: &str,
        v: &Spanned<String>,
        f: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        f(v.get_ref()).map_err(|e| self.err(field, v, ConfigErrorKind::Schema, e.to_string()))
    }

    /// A path, relative to the configuration file's directory.
    fn path(&self, v: &Spanned<String>) -> PathBuf {
        let p = Path::new(v.get_ref());
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    /// Read a file a key names with `f`; its error is reported at the key.
    fn file<T>(
        &self,
        field: &str,
        v: &Spanned<String>,
        f: impl FnOnce(&Path) -> anyhow::Result<T>,
    ) -> Result<T, ConfigError> {
        f(&self.path(v)).map_err(|e| self.err(field, v, ConfigErrorKind::File, format!("{e:#}")))
    }

    /// `N` (seconds) or `"N[s|m|h|d]"`.
    fn duration(&self, field: &str, v: &Spanned<toml::Value>) -> Result<Duration, ConfigError> {
        let bad = || {
            self.err(
                field,
                v,
                ConfigErrorKind::Schema,
                format!(
                    "{} is not a duration (expected seconds, or a string like \"90s\", \"30m\", \"4h\", \"1d\")",
                    v.get_ref()
                ),
            )
        };
        let secs = match v.get_ref() {
            toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| bad())?,
            toml::Value::String(s) => {
                let s = s.trim();
                let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
                    Some(i) => s.split_at(i),
                    None => (s, "s"),
                };
                let n: u64 = num.parse().map_err(|_| bad())?;
                let mul = match unit.trim() {
                    "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86400,
                    _ => return Err(bad()),
                };
                n.checked_mul(mul).ok_or_else(bad)?
            }
            _ => return Err(bad()),
        };
        if secs == 0 {
            return Err(self.err(
                field,
                v,
                ConfigErrorKind::Schema,
                "must be at least one second (leave it out for never)",
            ));
        }
        Ok(Duration::from_secs(secs))
    }
}

/// `ADDR:PORT`, or `ADDR` with `default_port`.
fn socket_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("{s:?}: expected ADDR or ADDR:PORT"))
}

/// `ADDR/PREFIX` for a TUN address.
fn prefixed(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("{s:?}: expected ADDR/PREFIX, e.g. \"10.98.0.1/24\"");
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = a.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if p > max {
        return Err(bad());
    }
    Ok((ip, p))
}

/// Parse and check the configuration text `src` of the file `file`;
/// relative paths are taken from `base`.
pub(crate) fn parse(src: &str, file: &str, base: &Path) -> Result<DaemonConfig, ConfigError> {
    let raw: RawFile = toml::from_str(src).map_err(|e| ConfigError::from_toml(src, file, &e))?;
    let cx = Ctx { src, file, base };
    let d = raw.daemon;
    let ike_addr = match d.as_ref().and_then(|d| d.listen.as_ref()) {
        Some(v) => cx.parse("listen", v, |s| socket_addr(s, 500))?,
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 500),
    };
    let natt = d.as_ref().and_then(|d| d.natt_port.as_ref());
    let natt_port = natt.map_or(4500, |v| *v.get_ref());
    // Both defaults (500, 4500) differ, so a collision was written down.
    let written = natt.map(|v| ("natt_port", v.span())).or_else(|| {
        d.as_ref()
            .and_then(|d| d.listen.as_ref())
            .map(|v| ("listen", v.span()))
    });
    if let (true, Some((field, span))) = (natt_port != 0 && natt_port == ike_addr.port(), written) {
        return Err(ConfigError::at(
            src,
            file,
            span,
            field,
            ConfigErrorKind::Inconsistent,
            format!("IKE and NAT-T would share port {natt_port}; give them different ports"),
        ));
    }
    let connect_timeout = match d.as_ref().and_then(|d| d.connect_timeout.as_ref()) {
        Some(v) => cx.duration("connect_timeout", v)?,
        None => Duration::from_secs(30),
    };
    let tun = match d.as_ref().and_then(|d| d.tun.as_ref()) {
        None => None,
        Some(t) => {
            // The daemon's default is TUN offload on: with UDP GSO/GRO it
            // is the fast path (docs/performance.md); the endpoint falls
            // back to plain reads and writes if the kernel refuses it.
            let mut c = TunConfig {
                offload: true,
                ..TunConfig::default()
            };
            if let Some(n) = &t.name {
                if n.get_ref().is_empty() || n.get_ref().len() > 15 {
                    return Err(cx.err(
                        "tun.name",
                        n,
                        ConfigErrorKind::Schema,
                        "an interface name has 1 to 15 characters",
                    ));
                }
                c.name.clone_from(n.get_ref());
            }
            if let Some(m) = &t.mtu {
                if *m.get_ref() < 576 {
                    return Err(cx.err(
                        "tun.mtu",
                        m,
                        ConfigErrorKind::Schema,
                        "below 576, the smallest IPv4 MTU every host must take",
                    ));
                }
                c.mtu = *m.get_ref();
            }
            for a in &t.addresses {
                c.addresses.push(cx.parse("tun.addresses", a, prefixed)?);
            }
            if let Some(r) = t.routes {
                c.routes = r;
            }
            if let Some(l) = t.latch_flows {
                c.latch_flows = l;
            }
            if let Some(v) = &t.udp_idle {
                // Only used with latch_flows (only watched flows idle out).
                c.udp_idle = cx.duration("tun.udp_idle", v)?;
            }
            if let Some(r) = t.raw_esp {
                c.raw_esp = r;
            }
            if let Some(o) = t.offload {
                c.offload = o;
            }
            Some(c)
        }
    };
    let policy = match d.as_ref().and_then(|d| d.policy_file.as_ref()) {
        Some(v) => {
            if raw.peer.is_some() || raw.policy.is_some() {
                return Err(cx.err(
                    "policy_file",
                    v,
                    ConfigErrorKind::Inconsistent,
                    "given although this file has [[peer]] or [[policy]] entries: keep them in one place",
                ));
            }
            let path = cx.path(v);
            let text = cx.file("policy_file", v, |p| {
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
            })?;
            Some(PolicyConfig::from_toml(&text, &path.display().to_string())?)
        }
        None if raw.peer.is_none() && raw.policy.is_none() => None,
        None => Some(PolicyConfig::from_toml(src, file)?),
    };
    let mut connections: Vec<Connection> = Vec::new();
    for c in raw.connection {
        if connections.iter().any(|o| o.name == *c.name.get_ref()) {
            return Err(cx.err(
                "name",
                &c.name,
                ConfigErrorKind::Inconsistent,
                format!(
                    "two [[connection]] entries are named {:?}",
                    c.name.get_ref()
                ),
            ));
        }
        connections.push(connection(&cx, c, ike_addr.ip())?);
    }
    let mut listener_latches: Vec<ThreeTuple> = Vec::new();
    for l in raw.listener_latch {
        let proto = match &l.proto {
            Some(v) => cx.parse("proto", v, |s| {
                pad::spd::parse_proto(s).ok_or_else(|| {
                    format!(
                        "unknown protocol {s:?} (expected tcp, udp, icmp, icmpv6, sctp or 0-255)"
                    )
                })
            })?,
            None => 17,
        };
        let local = cx.parse("local", &l.local, |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                format!("{s:?}: expected ADDR:PORT (0.0.0.0:PORT for every local address)")
            })
        })?;
        let three = ThreeTuple::new(proto, local);
        if listener_latches.contains(&three) {
            return Err(cx.err(
                "local",
                &l.local,
                ConfigErrorKind::Inconsistent,
                format!("a second [[listener_latch]] on {three}"),
            ));
        }
        listener_latches.push(three);
    }
    Ok(DaemonConfig {
        ike_addr,
        natt_port,
        control: d
            .as_ref()
            .and_then(|d| d.control.as_ref())
            .map(|v| cx.path(v)),
        pin_file: d
            .as_ref()
            .and_then(|d| d.pin_file.as_ref())
            .map(|v| cx.path(v)),
        cookie_threshold: d.as_ref().and_then(|d| d.cookie_threshold).unwrap_or(64),
        max_half_open: d.as_ref().and_then(|d| d.max_half_open).unwrap_or(4096),
        connect_timeout,
        tun,
        key_export: d.as_ref().and_then(|d| d.allow_key_export).unwrap_or(false),
        policy,
        connections,
        listener_latches,
    })
}

const SPELLING: creds::Spelling = creds::Spelling {
    auth: "auth =",
    key: "key = \"FILE\"",
    cert: "cert = \"FILE\"",
    ca: "ca = [\"FILE\"]",
    peer_key: "peer_key = [\"FILE\"]",
    btns: "btns = true",
};

fn connection(cx: &Ctx<'_>, c: RawConnection, local_ip: IpAddr) -> Result<Connection, ConfigError> {
    let name = c.name.get_ref().clone();
    if name.is_empty() || name.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(cx.err(
            "name",
            &c.name,
            ConfigErrorKind::Schema,
            "a connection name is one word (no spaces)",
        ));
    }
    let auth: AuthMethod = cx.parse("auth", &c.auth, str::parse)?;
    let psk =
        match (&c.psk_file, auth) {
            (Some(f), AuthMethod::Psk) => Some(cx.file("psk_file", f, creds::psk_from_file)?),
            (None, AuthMethod::Psk) => return Err(cx.err(
                "auth",
                &c.auth,
                ConfigErrorKind::Inconsistent,
                "\"psk\" needs psk_file = \"FILE\" (keys are never written in the configuration)",
            )),
            (Some(f), _) => {
                return Err(cx.err(
                    "psk_file",
                    f,
                    ConfigErrorKind::Inconsistent,
                    format!("given but auth is \"{auth}\", not \"psk\""),
                ))
            }
            (None, _) => None,
        };
    let ts = |field: &str, v: &[Spanned<String>]| -> Result<Vec<TrafficSelector>, ConfigError> {
        if v.is_empty() {
            return Ok(vec![TrafficSelector::range(pad::IpRange::any(true))]);
        }
        v.iter().map(|s| cx.parse(field, s, str::parse)).collect()
    };
    let local_ts = ts("local_ts", &c.local_ts)?;
    let remote_ts = ts("remote_ts", &c.remote_ts)?;
    let any = TrafficSelector::range(pad::IpRange::any(true));
    let mut p = endpoint::peer_config(&name, auth, psk, any, any);
    p.child.local_ts = local_ts;
    p.child.remote_ts = remote_ts;
    p.local_id = match &c.local_id {
        Some(v) => cx.parse("local_id", v, creds::parse_identity)?,
        None => creds::default_local_id(auth, local_ip),
    };
    p.remote_id = match &c.remote_id {
        Some(v) => Some(cx.parse("remote_id", v, creds::parse_identity)?),
        None => None,
    };
    if let Some(v) = &c.ike_proposals {
        p.ike_proposals = cx.parse("ike_proposals", v, IkeProposal::parse_list)?;
    }
    if let Some(v) = &c.esp_proposals {
        p.child.esp_proposals = cx.parse("esp_proposals", v, EspProposal::parse_list)?;
    }
    if let Some(m) = c.mode {
        p.child.mode = m;
    }
    if let Some(f) = c.force_encap {
        p.force_encap = f;
    }
    if let Some(v) = &c.ike_rekey {
        p.ike_rekey_after = Some(cx.duration("ike_rekey", v)?);
    }
    if let Some(v) = &c.child_rekey {
        p.child.rekey_after = Some(cx.duration("child_rekey", v)?);
    }
    if let Some(v) = &c.dpd {
        p.dpd_interval = Some(cx.duration("dpd", v)?);
    }
    if let Some(w) = c.replay_window {
        p.child.replay_window = w;
    }
    p.remote_natt_port = c.remote_natt_port.unwrap_or(4500);
    let cr = &mut p.credentials;
    if let Some(v) = &c.key {
        cr.private_key = Some(cx.file("key", v, creds::private_key)?);
    }
    if let Some(v) = &c.cert {
        cr.certificates = cx.file("cert", v, creds::certificate_chain)?;
    }
    for v in &c.ca {
        cr.trust_anchors
            .extend(cx.file("ca", v, creds::trust_anchors)?);
    }
    for v in &c.peer_key {
        cr.peer_keys.push(cx.file("peer_key", v, creds::peer_key)?);
    }
    // BTNS (RFC 5386): any key the peer proves it holds, pinned to its
    // address from then on (SSH known_hosts style).
    cr.accept_any_key = c.btns;
    cr.pinning = c.btns;
    creds::check(auth, cr, c.btns, false, &SPELLING).map_err(|e| {
        cx.err(
            "auth",
            &c.auth,
            ConfigErrorKind::Inconsistent,
            e.to_string(),
        )
    })?;
    let remote = match &c.remote {
        Some(v) => Some(cx.parse("remote", v, |s| socket_addr(s, 500))?),
        None => None,
    };
    let start = c.start.unwrap_or(StartAction::None);
    if start == StartAction::Start && remote.is_none() {
        return Err(cx.err(
            "name",
            &c.name,
            ConfigErrorKind::Inconsistent,
            "start = \"start\" needs remote = \"ADDR[:PORT]\" (whom to initiate to)",
        ));
    }
    let close_action = match &c.close_action {
        Some(v) if *v.get_ref() == StartAction::Start && remote.is_none() => {
            return Err(cx.err(
                "close_action",
                v,
                ConfigErrorKind::Inconsistent,
                "\"start\" needs remote = \"ADDR[:PORT]\" (whom to initiate to)",
            ))
        }
        Some(v) => *v.get_ref(),
        None => StartAction::None,
    };
    Ok(Connection {
        name,
        remote,
        start,
        close_action,
        peer: p,
    })
}
