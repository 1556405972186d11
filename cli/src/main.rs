//! `latchkey`: the command-line face of the latchkey IPsec endpoint.
//!
//! Thin on purpose: it parses arguments, reads files and environment
//! variables (the libraries do no I/O of that kind), and drives the
//! `endpoint` crate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use endpoint::{
    AuthMethod, Channel, Endpoint, EndpointConfig, EspProposal, IkeProposal, TrafficSelector,
};

mod control;
mod creds;
mod daemon;
mod demo;
mod keys;
mod pki;
mod probe;

/// latchkey: a userspace IKEv2 endpoint with BTNS and IPsec connection latching.
///
/// Start with `latchkey demo`: two endpoints on loopback set up an IKE SA and
/// a child SA (NULL authentication, the BTNS case) and move datagrams both
/// ways through ESP, no root and no configuration needed.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, propagate_version = true)]
struct Cli {
    /// Log verbosity: -v info, -vv debug, -vvv trace (or set RUST_LOG).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two endpoints on loopback, in one process: IKE SA, child SA, data both
    /// ways through ESP; prints suites, SPIs and counters.
    Demo(demo::DemoArgs),
    /// Answer IKE (responder) and print or echo the datagrams that arrive
    /// through the channels peers set up.
    Listen(ListenArgs),
    /// Set up an IKE SA and child SA with PEER (initiator), optionally send
    /// datagrams through it, then delete the SAs and exit.
    Connect(ConnectArgs),
    /// Test PKI: make CAs, host/user and BTNS certificates, the set of bad
    /// certificates, and show whether a certificate validates.
    Pki(pki::PkiArgs),
    /// Test harness, active half: play BTNS and misbehaving peers against
    /// TARGET (a second peer asserting another's address, a changed key,
    /// bad certificates, NULL or a wrong PSK) and report what it accepted.
    Probe(probe::ProbeArgs),
    /// List the connection latches of a running `latchkey listen` (RFC 5660
    /// ENUMERATE), through its control socket.
    Latches(LatchesArgs),
    /// What a connection is latched to (R2, R7): state, peer ID and how it
    /// authenticated, key or anonymous, suites and key lengths, mode, replay
    /// window, NAT information, SPIs. Asks a running `latchkey listen`.
    Inquire(InquireArgs),
    /// Run as a daemon (foreground, logs to stderr): IKE responder and
    /// initiator for the connections of a TOML configuration, managed with
    /// `up`, `down`, `status`, `reload` through its control socket.
    /// SIGHUP reloads; SIGTERM/SIGINT delete the SAs and exit.
    Daemon(daemon::DaemonArgs),
    /// Ask the daemon to initiate connection NAME (waits until its IKE SA
    /// and first child SA are up, or failed).
    Up(NameArgs),
    /// Ask the daemon to delete connection NAME's IKE SAs.
    Down(NameArgs),
    /// The daemon's connections, IKE SAs, child SAs (SPIs, suites,
    /// selectors, traffic), latches and drop counters.
    Status(ControlArgs),
    /// Ask the daemon to re-read its configuration (as SIGHUP does); a
    /// mistake is reported and the running configuration stays.
    Reload(ControlArgs),
    /// The daemon's configured connections and their state.
    Connections(ControlArgs),
    /// Write the SECRET keys of the SAs of a running `latchkey listen
    /// --allow-key-export`, or of a `latchkey daemon` whose configuration
    /// says `[daemon] allow_key_export = true`, as Wireshark decryption
    /// tables, so that tshark/Wireshark decrypts a capture of its IKE and
    /// ESP traffic.
    ///
    /// Asks the `listen` or `daemon` process over its control socket
    /// (`--control`, as `latchkey status` takes it) for the keys of its
    /// IKE and child SAs and writes them as Wireshark's
    /// `ikev2_decryption_table` and `esp_sa` (mode 0600) into DIR. THESE ARE
    /// SECRET KEYS: whoever reads the files can decrypt and forge that
    /// traffic; delete them when done. Use DIR as a Wireshark profile
    /// directory, e.g. `--wireshark /tmp/k/wireshark`, then
    /// `XDG_CONFIG_HOME=/tmp/k tshark -o esp.enable_encryption_decode:TRUE
    /// -r CAPTURE -V`. SAs using ChaCha20-Poly1305 are left out (Wireshark
    /// 4.0 cannot decrypt them).
    Keys(KeysArgs),
}

#[derive(Debug, Args)]
struct ControlArgs {
    /// The daemon's control socket (default: $XDG_RUNTIME_DIR/latchkey.sock,
    /// else /run/latchkey/control.sock).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct NameArgs {
    /// The connection's name (`[[connection]] name`).
    name: String,
    #[command(flatten)]
    ctl: ControlArgs,
}

impl ControlArgs {
    async fn ask(self, req: control::Request) -> Result<()> {
        let path = self.control.unwrap_or_else(control::default_path);
        control::ask(&path, &req, self.json).await
    }
}

/// Arguments of `latchkey keys`.
#[derive(Debug, Args)]
struct KeysArgs {
    /// Directory to write `ikev2_decryption_table` and `esp_sa` into
    /// (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    wireshark: PathBuf,
    /// The control socket of the `listen` or `daemon` process (default:
    /// $XDG_RUNTIME_DIR/latchkey.sock, else /run/latchkey/control.sock).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LatchesArgs {
    /// The control socket of the `listen` process (default:
    /// $XDG_RUNTIME_DIR/latchkey.sock, else /run/latchkey/control.sock).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InquireArgs {
    /// Protocol: udp, tcp, ... or a number.
    proto: String,
    /// Our side of the connection (inner address), ADDR:PORT.
    local: SocketAddr,
    /// The peer's side, ADDR:PORT.
    remote: SocketAddr,
    /// The control socket of the `listen` process.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Security parameters shared by `listen` and `connect`.
#[derive(Debug, Args)]
struct SecurityArgs {
    /// Authentication, ours and the one we require of the peer: `null`
    /// (RFC 7619, BTNS: no identity proven), `psk`, `certificate` (X.509,
    /// with --cert, --key, --ca) or `rawpublickey` (RFC 7670, with --key and
    /// --peer-key or --btns).
    #[arg(long, default_value = "null")]
    auth: AuthMethod,
    /// File holding the pre-shared key (for --auth psk). `0x...` is hex.
    /// The key may instead come from the LATCHKEY_PSK environment variable;
    /// it is never taken from the command line.
    #[arg(long, value_name = "FILE")]
    psk_file: Option<PathBuf>,
    /// Our identity: an IP address, `@fqdn`, `user@domain`, or `null`.
    /// Default: `null` for NULL auth, else our IP address.
    #[arg(long)]
    id: Option<String>,
    /// The identity we require of the peer (default: any).
    #[arg(long)]
    remote_id: Option<String>,
    /// IKE proposals in strongSwan syntax, comma-separated
    /// (e.g. `aes128gcm16-prfsha256-x25519`). Default: latchkey's list.
    #[arg(long)]
    ike_proposal: Option<String>,
    /// ESP proposals in strongSwan syntax (e.g. `aes128gcm16`).
    #[arg(long)]
    esp_proposal: Option<String>,
    /// Our traffic selector (CIDR, range or address, optional [proto/port]).
    #[arg(long, default_value = "0.0.0.0/0")]
    local_ts: TrafficSelector,
    /// The peer's traffic selector.
    #[arg(long, default_value = "0.0.0.0/0")]
    remote_ts: TrafficSelector,
    /// Use ESP in UDP even without a NAT (needed without root: no raw ESP
    /// socket). On by default; `--force-encap=false` to turn off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    force_encap: bool,
    /// Our certificate chain (PEM, end entity first; or one DER
    /// certificate), for `--auth certificate`.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Our private key (PKCS#8 PEM), for `--auth certificate` or
    /// `--auth rawpublickey`.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A trust anchor (CA certificate, PEM or DER) the peer's certificate
    /// must validate to. Repeatable.
    #[arg(long, value_name = "FILE")]
    ca: Vec<PathBuf>,
    /// A raw public key accepted from the peer (RFC 7670): a DER
    /// SubjectPublicKeyInfo (`latchkey pki selfsign` writes NAME.spki.der)
    /// or a certificate whose key is taken. Repeatable.
    #[arg(long, value_name = "FILE")]
    peer_key: Vec<PathBuf>,
    /// BTNS with keys (RFC 5386): accept any key the peer proves it holds;
    /// the peer is then identified by the key's fingerprint.
    #[arg(long)]
    btns: bool,
    /// `connect` only: take the peer's key from its IPSECKEY record in DNS
    /// (RFC 4025, RFC 4322 style) instead of --peer-key: a NAME, or
    /// `reverse` for the reverse name of the peer's address.
    #[arg(long, value_name = "NAME|reverse")]
    peer_key_dns: Option<String>,
    /// The DNS server for --peer-key-dns, ADDR:PORT (default: the first
    /// nameserver in /etc/resolv.conf, port 53).
    #[arg(long, value_name = "ADDR:PORT")]
    dns_server: Option<SocketAddr>,
    /// Rekey each IKE SA after this many seconds (default: never).
    #[arg(long, value_name = "SECS")]
    ike_rekey: Option<f64>,
    /// Rekey each child SA after this many seconds (default: never).
    #[arg(long, value_name = "SECS")]
    child_rekey: Option<f64>,
    /// Dead peer detection: check liveness when nothing was heard from the
    /// peer for this many seconds (default: off).
    #[arg(long, value_name = "SECS")]
    dpd: Option<f64>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ListenArgs {
    /// Address and port for IKE.
    #[arg(long, default_value = "0.0.0.0:500")]
    ike: SocketAddr,
    /// Address and port for NAT-T (IKE after the move, ESP in UDP).
    #[arg(long, default_value = "0.0.0.0:4500")]
    natt: SocketAddr,
    /// Send every datagram that arrives back to its sender.
    #[arg(long)]
    echo: bool,
    /// Serve `latchkey latches` and `latchkey inquire` on this Unix socket
    /// (default: $XDG_RUNTIME_DIR/latchkey.sock, else
    /// /run/latchkey/control.sock; a failure to open it is only a warning).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// PAD and SPD (`[[peer]]` and `[[policy]]` TOML) for latching;
    /// default: any peer by PSK or NULL, PROTECT everything.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Latch UDP connections to this inner port (a listener latch on
    /// 0.0.0.0:PORT, R12): each connection's first datagram binds it to the
    /// peer and protection that carried it. Repeatable.
    #[arg(long, value_name = "PORT")]
    latch_udp: Vec<u16>,
    /// Half-open IKE SAs before a COOKIE is demanded (RFC 7296 2.6).
    #[arg(long, default_value_t = 64)]
    cookie_threshold: usize,
    /// Hard bound on half-open IKE SAs; IKE_SA_INIT past it is dropped.
    #[arg(long, default_value_t = 4096)]
    max_half_open: usize,
    /// Let `latchkey keys` read the SECRET keys of every SA through the
    /// control socket (for decrypting captures with Wireshark). Off by
    /// default; anyone who can open the control socket gets the keys.
    #[arg(long)]
    allow_key_export: bool,
    #[command(flatten)]
    sec: SecurityArgs,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// The peer's IKE address, `ADDR` or `ADDR:PORT` (default port 500).
    peer: String,
    /// Our IKE address and port.
    #[arg(long, default_value = "0.0.0.0:500")]
    local: SocketAddr,
    /// Our NAT-T port (IKE after the move, ESP in UDP).
    #[arg(long, default_value_t = 4500)]
    nat_t_port: u16,
    /// The peer's NAT-T port.
    #[arg(long, default_value_t = 4500)]
    remote_nat_t_port: u16,
    /// Our inner address: the source of the datagrams we send
    /// (default: the first address of --local-ts).
    #[arg(long)]
    inner_addr: Option<IpAddr>,
    /// Send datagrams to this inner address and port through the child SA.
    #[arg(long, value_name = "ADDR:PORT")]
    send_udp: Option<SocketAddr>,
    /// The datagram's text.
    #[arg(long, default_value = "hello from latchkey")]
    message: String,
    /// How many datagrams to send.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Seconds between two datagrams (replies are received meanwhile).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    interval: f64,
    /// Seconds to stay up after sending (receiving replies), before deleting
    /// the SAs.
    #[arg(long, default_value_t = 1.0)]
    wait: f64,
    /// Seconds to wait for the IKE SA and child SA.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Once the SAs are up, write their SECRET keys as Wireshark's
    /// `ikev2_decryption_table` and `esp_sa` (mode 0600) into DIR, so that
    /// tshark decrypts a capture of this run. Whoever reads them can
    /// decrypt and forge this traffic.
    #[arg(long, value_name = "DIR")]
    keys_wireshark: Option<PathBuf>,
    #[command(flatten)]
    sec: SecurityArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchkey: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async {
        match cli.command {
            Command::Demo(a) => demo::run(a).await,
            Command::Listen(a) => listen(a).await,
            Command::Connect(a) => connect(a).await,
            Command::Pki(a) => pki::run(a),
            Command::Probe(a) => probe::run(a).await,
            Command::Daemon(a) => daemon::run(a).await,
            Command::Up(a) => a.ctl.ask(control::Request::Up { name: a.name }).await,
            Command::Down(a) => a.ctl.ask(control::Request::Down { name: a.name }).await,
            Command::Status(a) => a.ask(control::Request::Status).await,
            Command::Reload(a) => a.ask(control::Request::Reload).await,
            Command::Connections(a) => a.ask(control::Request::Connections).await,
            Command::Latches(a) => {
                control::latches(&a.control.unwrap_or_else(control::default_path), a.json).await
            }
            Command::Inquire(a) => {
                let proto = pad::spd::parse_proto(&a.proto)
                    .ok_or_else(|| anyhow!("unknown protocol {:?}", a.proto))?;
                control::inquire(
                    &a.control.unwrap_or_else(control::default_path),
                    proto,
                    a.local,
                    a.remote,
                    a.json,
                )
                .await
            }
            Command::Keys(a) => {
                control::keys(
                    &a.control.unwrap_or_else(control::default_path),
                    &a.wireshark,
                )
                .await
            }
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The PSK from --psk-file or LATCHKEY_PSK, never from the command line.
fn load_psk(sec: &SecurityArgs) -> Result<Option<certs::Psk>> {
    if sec.auth != AuthMethod::Psk {
        return Ok(None);
    }
    if let Some(path) = &sec.psk_file {
        return creds::psk_from_file(path).map(Some);
    }
    if let Some(v) = std::env::var_os("LATCHKEY_PSK") {
        return creds::psk_from_bytes(v.into_encoded_bytes()).map(Some);
    }
    bail!("--auth psk needs a key: --psk-file FILE or the LATCHKEY_PSK environment variable")
}

fn peer_config(name: &str, sec: &SecurityArgs, local_ip: IpAddr) -> Result<endpoint::PeerConfig> {
    let psk = load_psk(sec)?;
    let mut p = endpoint::peer_config(name, sec.auth, psk, sec.local_ts, sec.remote_ts);
    p.local_id = match &sec.id {
        Some(s) => creds::parse_identity(s)?,
        None => creds::default_local_id(sec.auth, local_ip),
    };
    p.remote_id = sec
        .remote_id
        .as_deref()
        .map(creds::parse_identity)
        .transpose()?;
    if let Some(s) = &sec.ike_proposal {
        p.ike_proposals = IkeProposal::parse_list(s).context("--ike-proposal")?;
    }
    if let Some(s) = &sec.esp_proposal {
        p.child.esp_proposals = EspProposal::parse_list(s).context("--esp-proposal")?;
    }
    p.force_encap = sec.force_encap;
    p.ike_rekey_after = sec.ike_rekey.map(|s| secs(s, "--ike-rekey")).transpose()?;
    p.child.rekey_after = sec
        .child_rekey
        .map(|s| secs(s, "--child-rekey"))
        .transpose()?;
    p.dpd_interval = sec.dpd.map(|s| secs(s, "--dpd")).transpose()?;
    p.credentials = load_credentials(sec)?;
    Ok(p)
}

/// Keys, certificates and trust anchors for signature authentication
/// (RFC 7296 2.15, RFC 7427, RFC 7670), read from the files given.
fn load_credentials(sec: &SecurityArgs) -> Result<endpoint::Credentials> {
    let mut c = endpoint::Credentials::default();
    if let Some(path) = &sec.key {
        c.private_key = Some(creds::private_key(path)?);
    }
    if let Some(path) = &sec.cert {
        c.certificates = creds::certificate_chain(path)?;
    }
    for path in &sec.ca {
        c.trust_anchors.extend(creds::trust_anchors(path)?);
    }
    for path in &sec.peer_key {
        c.peer_keys.push(creds::peer_key(path)?);
    }
    c.accept_any_key = sec.btns;
    creds::check(
        sec.auth,
        &c,
        sec.btns,
        sec.peer_key_dns.is_some(),
        &creds::FLAGS,
    )?;
    Ok(c)
}

fn parse_peer(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = s
        .parse()
        .map_err(|_| anyhow!("peer {s:?}: expected ADDR or ADDR:PORT"))?;
    Ok(SocketAddr::new(ip, 500))
}

async fn connect(a: ConnectArgs) -> Result<()> {
    let remote = parse_peer(&a.peer)?;
    let mut peer = peer_config("peer", &a.sec, a.local.ip())?;
    if let Some(name) = &a.sec.peer_key_dns {
        peer_key_from_dns(&mut peer, name, a.sec.dns_server, remote, a.sec.json).await?;
    }
    peer.remote_natt_port = a.remote_nat_t_port;
    let mut cfg = EndpointConfig::on(a.local.ip(), a.local.port(), a.nat_t_port);
    cfg.connect_timeout = secs(a.timeout, "--timeout")?;
    cfg.key_export = a.keys_wireshark.is_some();
    let ep = Endpoint::bind(cfg, vec![]).await?;
    let mut ch = ep
        .connect(peer, remote)
        .await
        .with_context(|| format!("connecting to {remote}"))?;
    let exported = match &a.keys_wireshark {
        Some(dir) => {
            let k = ep.session_keys().await?;
            keys::write_wireshark(dir, &k)?;
            Some(k)
        }
        None => None,
    };
    if !a.sec.json {
        let i = ch.ike_sa();
        let c = ch.child_sa();
        println!(
            "IKE SA up: {} <-> {}  {}  SPIs {}_i {}_r  peer ID {} authenticated by {}",
            i.local, i.remote, i.suite, i.spi_i, i.spi_r, i.peer_id, i.peer_auth
        );
        println!(
            "child SA up: {} {}  SPIs in {:08x} out {:08x}  {} === {}",
            c.suite,
            c.mode,
            c.inbound_spi,
            c.outbound_spi,
            c.local_ts.join(","),
            c.remote_ts.join(",")
        );
    }
    let mut sent = 0u32;
    let mut replies = Vec::new();
    let show = |d: &endpoint::Datagram| {
        if !a.sec.json {
            println!(
                "received {} octets {} -> {} (SPI {:08x}): {}",
                d.data.len(),
                d.src,
                d.dst,
                d.spi,
                String::from_utf8_lossy(&d.data)
            );
        }
    };
    // `None` once the channel closed (the peer deleted the SAs, or they failed).
    let mut open = true;
    if let Some(dst) = a.send_udp {
        let src_ip = a.inner_addr.unwrap_or(a.sec.local_ts.addr.start);
        let src = SocketAddr::new(src_ip, 40000);
        let interval = secs(a.interval, "--interval")?;
        for i in 0..a.count {
            let msg = if a.count > 1 {
                format!("{} {}", a.message, i + 1)
            } else {
                a.message.clone()
            };
            ch.send(src, dst, msg.as_bytes()).await?;
            sent += 1;
            if i + 1 < a.count && !interval.is_zero() {
                let next = tokio::time::Instant::now() + interval;
                loop {
                    match tokio::time::timeout_at(next, ch.recv()).await {
                        Ok(Some(d)) => {
                            show(&d);
                            replies.push(d);
                        }
                        Ok(None) => {
                            open = false;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if !open {
                    break;
                }
            }
        }
    }
    let wait = secs(a.wait, "--wait")?;
    let deadline = tokio::time::Instant::now() + wait;
    while open {
        match tokio::time::timeout_at(deadline, ch.recv()).await {
            Ok(Some(d)) => {
                show(&d);
                replies.push(d);
            }
            Ok(None) => open = false,
            Err(_) => break,
        }
    }
    if !open {
        tracing::warn!("the channel closed: the SAs were deleted or failed");
    }
    let status = ep.status().await?;
    if a.sec.json {
        let out = serde_json::json!({
            "ike_sa": ch.ike_sa(),
            "child_sa": ch.child_sa(),
            "sent": sent,
            "channel_closed": !open,
            "received": replies.iter().map(|d| serde_json::json!({
                "src": d.src, "dst": d.dst, "spi": format!("{:08x}", d.spi),
                "data": String::from_utf8_lossy(&d.data),
            })).collect::<Vec<_>>(),
            "status": status,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (c, t) in &status.child_sas {
            println!(
                "child SA {:08x}/{:08x}: out {} packets {} octets, in {} packets {} octets",
                c.inbound_spi, c.outbound_spi, t.packets_out, t.bytes_out, t.packets_in, t.bytes_in
            );
        }
    }
    if let (Some(dir), Some(first)) = (&a.keys_wireshark, &exported) {
        // SAs rekeyed in the meantime: write again, old and new together.
        let all = keys::merged(first, &ep.session_keys().await?);
        if all != *first {
            keys::write_wireshark(dir, &all)?;
        }
    }
    if open {
        ch.close().await?;
    }
    ep.shutdown().await?;
    Ok(())
}

async fn listen(a: ListenArgs) -> Result<()> {
    if a.sec.peer_key_dns.is_some() {
        bail!("--peer-key-dns is for connect: a responder does not know its peer in advance");
    }
    let peer = peer_config("any", &a.sec, a.ike.ip())?;
    let mut cfg = EndpointConfig::on(a.ike.ip(), a.ike.port(), a.natt.port());
    cfg.natt_addr = a.natt;
    cfg.cookie_threshold = a.cookie_threshold;
    cfg.max_half_open = a.max_half_open;
    cfg.key_export = a.allow_key_export;
    cfg.shared_receive = true;
    if let Some(f) = &a.policy {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        cfg.policy = Some(
            endpoint::PolicyConfig::from_toml(&text, &f.display().to_string())
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    let ep = std::sync::Arc::new(Endpoint::bind(cfg, vec![peer]).await?);
    for port in &a.latch_udp {
        let three = endpoint::ThreeTuple::new(
            17,
            SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), *port),
        );
        let id = ep
            .create_listener_latch(endpoint::ListenerRequest::new(three))
            .await
            .with_context(|| format!("listener latch on {three}"))?;
        if !a.sec.json {
            println!("{id}: listener latch on {three}");
        }
    }
    let control_path = a.control.clone().unwrap_or_else(control::default_path);
    let serving = match control::serve(control::Backend::Endpoint(ep.clone()), &control_path) {
        Ok(()) => {
            if !a.sec.json {
                println!("control socket {}", control_path.display());
            }
            true
        }
        Err(e) if a.control.is_some() => return Err(e),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no control socket");
            false
        }
    };
    if !a.sec.json {
        println!(
            "listening: IKE {}  NAT-T {}  (Ctrl-C to stop)",
            ep.ike_addr(),
            ep.natt_addr()
        );
    }
    let json = a.sec.json;
    let echo = a.echo;
    let serve = serve_channels(&ep, json, echo);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        () = serve => {}
        r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; }
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: deleting the IKE SAs (RFC 7296 1.4.1)");
    if serving {
        let _ = std::fs::remove_file(&control_path);
    }
    ep.shutdown().await?;
    Ok(())
}

/// `listen`'s service of its channels, with the endpoint's one receive
/// queue (`EndpointConfig::shared_receive`): one loop accepts channels and
/// prints them (the handle is dropped then: the endpoint keeps the SA), the
/// other prints the datagrams of all channels and echoes them
/// (`--echo`). Nothing is kept per channel here: a future and a queue per
/// channel cost about 0.4 KiB per SA held (docs/performance.md, memory per
/// SA). The two loops run side by side, so an echo waiting for the driver
/// never holds up `accept` (whose queue would overflow while SAs keep
/// coming). Ends when the endpoint stops.
async fn serve_channels(ep: &Endpoint, json: bool, echo: bool) {
    let accepting = async {
        while let Some(ch) = ep.accept().await {
            print_channel(&ch, json);
        }
    };
    let receiving = async {
        while let Some(d) = ep.recv_any().await {
            deliver(ep, d, json, echo).await;
        }
    };
    tokio::join!(accepting, receiving);
}

/// Print a datagram and (`echo`) send it back.
async fn deliver(ep: &Endpoint, d: endpoint::Datagram, json: bool, echo: bool) {
    print_datagram(&d, json);
    if echo {
        if let Err(e) = ep.send_on(d.channel, d.dst, d.src, &d.data).await {
            tracing::warn!(error = %e, "echo failed");
        }
    }
}

fn print_channel(ch: &Channel, json: bool) {
    let ike = ch.ike_sa();
    let child = ch.child_sa();
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "channel", "ike_sa": ike, "child_sa": child})
        );
    } else {
        println!(
            "channel from {} ({} {}): {} {} === {}",
            ike.remote,
            ike.peer_id,
            ike.peer_auth,
            child.suite,
            child.local_ts.join(","),
            child.remote_ts.join(",")
        );
    }
}

fn print_datagram(d: &endpoint::Datagram, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "datagram", "src": d.src, "dst": d.dst,
            "spi": format!("{:08x}", d.spi), "latch": d.latch, "channel": d.channel,
            "data": String::from_utf8_lossy(&d.data)})
        );
    } else {
        println!(
            "received {} octets {} -> {} (SPI {:08x}{}): {}",
            d.data.len(),
            d.src,
            d.dst,
            d.spi,
            d.latch.map_or(String::new(), |l| format!(", {l}")),
            String::from_utf8_lossy(&d.data)
        );
    }
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow!("{what} {s}: not a valid number of seconds"))
}

/// --peer-key-dns: the peer's IPSECKEY records (RFC 4025) become the only
/// keys accepted from it (RFC 4322 style); the gateways they name are
/// reported, not followed.
async fn peer_key_from_dns(
    peer: &mut endpoint::PeerConfig,
    name: &str,
    server: Option<SocketAddr>,
    remote: SocketAddr,
    json: bool,
) -> Result<()> {
    if peer.remote_auth != AuthMethod::RawPublicKey {
        bail!("--peer-key-dns needs --auth rawpublickey");
    }
    let name = if name == "reverse" {
        endpoint::reverse_name(remote.ip())
    } else {
        name.to_owned()
    };
    let server = match server {
        Some(s) => s,
        None => {
            let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let ip = conf
                .lines()
                .filter_map(|l| l.strip_prefix("nameserver"))
                .find_map(|a| a.trim().parse::<IpAddr>().ok())
                .ok_or_else(|| {
                    anyhow!("--peer-key-dns: no --dns-server and no nameserver in /etc/resolv.conf")
                })?;
            SocketAddr::new(ip, 53)
        }
    };
    let dns = endpoint::peer_keys_from_dns(server, &name, Duration::from_secs(5)).await?;
    for (rec, e) in &dns.skipped {
        tracing::warn!(record = %rec, error = %e, "IPSECKEY record skipped");
    }
    if !json {
        for k in &dns.keys {
            println!(
                "IPSECKEY {} (from {}): {} key {}",
                dns.name,
                dns.server,
                k.kind(),
                k.fingerprint()
            );
        }
        for g in &dns.gateways {
            println!(
                "IPSECKEY {}: gateway {g} (reported; IKE goes to {remote})",
                dns.name
            );
        }
    }
    peer.credentials = dns.credentials(std::mem::take(&mut peer.credentials));
    Ok(())
}
