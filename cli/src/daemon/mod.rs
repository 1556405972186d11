//! `latchkey daemon`: a long-running IKE endpoint driven by a TOML
//! configuration ([`config`]) and managed through the control socket
//! (`latchkey up|down|status|reload|connections`, see `crate::control`).
//!
//! What it keeps: the configuration in force, and a handle (the
//! [`endpoint::Channel`]) for every child SA that came up, initiated by
//! `up`/`start` or accepted from a peer, filed under its connection name
//! (the IKE peer configuration's name, which the responder picks by the
//! peer's identity and authentication). A handle ends when its SA goes
//! (peer Delete, DPD, expiry, `down`). `down` deletes the IKE SAs the
//! endpoint files under the connection's name, looked up when it runs, not
//! those of the handles: an IKE SA whose child SAs the peer deleted while
//! it stays has no handle but is still the connection's.
//!
//! With `[daemon.tun]` the child SAs carry the OS stack's traffic through
//! the TUN device (routes per remote selector, optional R18 flow latching);
//! `[daemon] allow_key_export` lets `latchkey keys --wireshark` read the
//! SAs' keys through the control socket.
//!
//! Reload (SIGHUP or `latchkey reload`): the file is read again; on a
//! mistake the running configuration stays and the mistake is reported
//! (file:line:column: field). Otherwise the PAD and SPD are replaced
//! (established latches keep their state, R8), the peer configurations are
//! replaced (established SAs are untouched), removed connections are
//! brought down and added `start` connections are initiated. `[daemon]`
//! settings (sockets, control socket, TUN) need a restart; a reload that
//! changes them says so.
//!
//! `close_action = "start"`: when a connection's SA goes without `down`
//! (the peer deleted it, DPD, the peer restarted), it is initiated again,
//! retried 1 s, 2 s, ... 60 s apart until it is up; `down`, a reload that
//! drops it, or SIGTERM stop that. A `down` during an `up` wins. If the
//! peer deleted only the child SA, a new child SA is created under the IKE
//! SA that is still up (CREATE_CHILD_SA); only if the peer refuses it is
//! that IKE SA deleted and the connection started over (never a second
//! IKE SA beside it).
//!
//! SIGTERM/SIGINT: every IKE SA is deleted (the peers are told), then the
//! process exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use endpoint::{
    Channel, ChildSummary, Endpoint, EndpointConfig, IkeSummary, LatchId, ListenerRequest,
    ThreeTuple,
};
use serde::Serialize;

pub(crate) mod config;
mod status;

pub(crate) use status::StatusView;

use config::{DaemonConfig, StartAction};

/// `latchkey daemon` arguments.
#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// The configuration file (TOML; see dist/latchkey.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The control socket (default: `[daemon] control` of the
    /// configuration, else $XDG_RUNTIME_DIR/latchkey.sock, else
    /// /run/latchkey/control.sock).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Parse and check the configuration (and the files it names), print
    /// what it holds, and exit.
    #[arg(long)]
    check: bool,
}

/// `close_action = "start"`: the first retry's delay, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A child SA the daemon holds.
struct Held {
    id: u64,
    name: String,
    initiator: bool,
}

#[derive(Default)]
struct Conns {
    next: u64,
    held: Vec<Held>,
    connecting: BTreeSet<String>,
    /// Connections being brought back up (`close_action = "start"`).
    retrying: BTreeSet<String>,
    /// Bumped by every `down` of a connection: an SA that goes after it,
    /// or a retry begun before it, is not brought back.
    downs: BTreeMap<String, u64>,
    /// Set at SIGTERM: nothing is brought back any more.
    stopping: bool,
}

impl Conns {
    fn downs(&self, name: &str) -> u64 {
        self.downs.get(name).copied().unwrap_or(0)
    }
}

/// A running daemon: the endpoint, the configuration in force, the SAs
/// held.
pub(crate) struct Daemon {
    ep: Arc<Endpoint>,
    path: PathBuf,
    config: Mutex<Arc<DaemonConfig>>,
    conns: Mutex<Conns>,
    /// The listener latches made from `[[listener_latch]]`.
    listeners: Mutex<BTreeMap<ThreeTuple, LatchId>>,
    reloading: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection as `latchkey connections` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnectionView {
    /// Its name.
    pub(crate) name: String,
    /// `up` (an established IKE SA of this name exists), `connecting`
    /// (an `up` is under way) or `down`.
    pub(crate) state: &'static str,
    /// The peer's IKE address, if we may initiate.
    pub(crate) remote: Option<std::net::SocketAddr>,
    /// Start action.
    pub(crate) start: StartAction,
    /// Close action.
    pub(crate) close_action: StartAction,
    /// Being brought back up after its SA went (`close_action = "start"`).
    pub(crate) retrying: bool,
    /// Its IKE SA ids (established ones).
    pub(crate) ike_sas: Vec<u64>,
    /// Child SAs held that we initiated (`up`, `start`).
    pub(crate) initiated: usize,
    /// Child SAs held that the peer initiated.
    pub(crate) accepted: usize,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReloadReport {
    /// Connections added.
    pub(crate) added: Vec<String>,
    /// Connections removed (brought down).
    pub(crate) removed: Vec<String>,
    /// Connections kept (their SAs untouched).
    pub(crate) kept: Vec<String>,
    /// `[daemon]` settings that changed but need a restart.
    pub(crate) restart_needed: Vec<&'static str>,
    /// Listener latches created.
    pub(crate) listener_latches_added: Vec<String>,
    /// Listener latches released.
    pub(crate) listener_latches_removed: Vec<String>,
    /// What could not be applied (the rest was).
    pub(crate) errors: Vec<String>,
}

impl ReloadReport {
    pub(crate) fn text(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        let mut s = format!(
            "reloaded: added {}; removed {}; kept {}\n",
            list(&self.added),
            list(&self.removed),
            list(&self.kept)
        );
        if !self.listener_latches_added.is_empty() || !self.listener_latches_removed.is_empty() {
            s.push_str(&format!(
                "listener latches: added {}; released {}\n",
                list(&self.listener_latches_added),
                list(&self.listener_latches_removed)
            ));
        }
        if !self.restart_needed.is_empty() {
            s.push_str(&format!(
                "not applied until a restart: [daemon] {}\n",
                self.restart_needed.join(", ")
            ));
        }
        for e in &self.errors {
            s.push_str(&format!("not applied: {e}\n"));
        }
        s
    }
}

/// What `up` brought up.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpReport {
    /// The connection.
    pub(crate) name: String,
    /// The IKE SA.
    pub(crate) ike_sa: IkeSummary,
    /// Its first child SA.
    pub(crate) child_sa: ChildSummary,
}

impl UpReport {
    pub(crate) fn text(&self) -> String {
        let i = &self.ike_sa;
        let c = &self.child_sa;
        format!(
            "{} up: IKE SA #{} {} <-> {}  {}  SPIs {}_i {}_r  peer {} ({})\n  child SA #{} {} {}  SPIs in {:08x} out {:08x}  {} === {}\n",
            self.name,
            i.id,
            i.local,
            i.remote,
            i.suite,
            i.spi_i,
            i.spi_r,
            i.peer_id,
            i.peer_auth,
            c.id,
            c.suite,
            c.mode,
            c.inbound_spi,
            c.outbound_spi,
            c.local_ts.join(","),
            c.remote_ts.join(",")
        )
    }
}

impl Daemon {
    /// The endpoint.
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.ep
    }

    fn config(&self) -> Arc<DaemonConfig> {
        lock(&self.config).clone()
    }

    /// `up NAME`: initiate the connection's IKE SA and first child SA and
    /// keep the channel.
    pub(crate) async fn up(self: &Arc<Self>, name: &str) -> Result<UpReport> {
        let cfg = self.config();
        let conn = cfg
            .connection(name)
            .ok_or_else(|| anyhow!("no connection named {name:?} in the configuration"))?;
        let remote = conn.remote.ok_or_else(|| {
            anyhow!("connection {name:?} has no remote address: it only answers (responder)")
        })?;
        let downs = {
            let mut c = lock(&self.conns);
            if c.connecting.contains(name) {
                bail!("connection {name:?} is already being brought up");
            }
            if c.held.iter().any(|h| h.name == name) {
                bail!("connection {name:?} is already up (`latchkey down {name}` first)");
            }
            c.connecting.insert(name.to_owned());
            c.downs(name)
        };
        // The peer deleted only the child SA: a new one under the IKE SA
        // that is still up (CREATE_CHILD_SA, RFC 7296 1.3.1), rather than a
        // second IKE SA. If the peer refuses it, that IKE SA goes and the
        // connection starts over.
        let r = match self.childless_ike_sa(name).await {
            Some(ike_sa) => {
                tracing::info!(
                    connection = name,
                    ike_sa,
                    "creating a child SA under the IKE SA left without one"
                );
                match self.ep.connect_child(ike_sa, conn.peer.child.clone()).await {
                    Ok(ch) => Ok(ch),
                    Err(e) => {
                        tracing::warn!(connection = name, ike_sa, error = %e, "no child SA under the existing IKE SA; starting over");
                        self.close_childless(name).await;
                        self.ep.connect(conn.peer.clone(), remote).await
                    }
                }
            }
            None => {
                tracing::info!(connection = name, %remote, "initiating");
                self.ep.connect(conn.peer.clone(), remote).await
            }
        };
        let downed = {
            let mut c = lock(&self.conns);
            c.connecting.remove(name);
            c.downs(name) != downs
        };
        let ch = r.with_context(|| format!("connection {name:?} to {remote}"))?;
        if downed {
            // `down` was asked for while we waited: it wins.
            let _ = ch.close().await;
            bail!("connection {name:?} was brought down while it came up");
        }
        let report = UpReport {
            name: name.to_owned(),
            ike_sa: ch.ike_sa().clone(),
            child_sa: ch.child_sa().clone(),
        };
        tracing::info!(
            connection = name,
            ike_sa = report.ike_sa.id,
            spi_i = %report.ike_sa.spi_i,
            spi_r = %report.ike_sa.spi_r,
            "connection up"
        );
        self.hold(name.to_owned(), ch, true);
        Ok(report)
    }

    /// `down NAME`: delete every established IKE SA of the connection
    /// (INFORMATIONAL Delete; its child SAs go with it). Returns how many
    /// were closed.
    ///
    /// The IKE SAs are those the endpoint files under the connection's
    /// name (its peer configuration, whichever side initiated), looked up
    /// now: so an IKE SA rekeyed since it came up, or one whose child SAs
    /// the peer deleted while it stays (no channel is held for it any
    /// more), is closed too.
    pub(crate) async fn down(&self, name: &str) -> Result<usize> {
        let was_retrying = {
            let mut c = lock(&self.conns);
            *c.downs.entry(name.to_owned()).or_default() += 1;
            c.retrying.contains(name) || c.connecting.contains(name)
        };
        let ike_sas = self.ike_sas_of(name).await?;
        if ike_sas.is_empty() && was_retrying {
            tracing::info!(
                connection = name,
                "down: no longer brought up (the attempt under way is abandoned)"
            );
            return Ok(0);
        }
        if ike_sas.is_empty() {
            if self.config().connection(name).is_none() {
                bail!("no connection named {name:?}");
            }
            bail!("connection {name:?} is not up");
        }
        let mut closed = 0;
        for id in ike_sas {
            match self.ep.close_ike_sa(id).await {
                Ok(()) => {
                    closed += 1;
                    tracing::info!(connection = name, ike_sa = id, "IKE SA deleted");
                }
                Err(e) => {
                    tracing::warn!(connection = name, ike_sa = id, error = %e, "closing failed")
                }
            }
        }
        tracing::info!(connection = name, closed, "connection down");
        Ok(closed)
    }

    /// Delete the established IKE SAs of connection `name` that have no
    /// child SA left (the peer deleted them and kept the IKE SA).
    async fn close_childless(&self, name: &str) {
        let Ok(s) = self.ep.status().await else {
            return;
        };
        let childless = s.ike_sas.iter().filter(|i| {
            i.name == name && i.established && !s.child_sas.iter().any(|(c, _)| c.ike_sa == i.id)
        });
        for i in childless {
            match self.ep.close_ike_sa(i.id).await {
                Ok(()) => tracing::info!(
                    connection = name,
                    ike_sa = i.id,
                    "IKE SA without child SAs deleted before bringing the connection back"
                ),
                Err(e) => {
                    tracing::warn!(connection = name, ike_sa = i.id, error = %e, "closing failed")
                }
            }
        }
    }

    /// An established IKE SA of connection `name` that we initiated and
    /// that has no child SA left.
    async fn childless_ike_sa(&self, name: &str) -> Option<u64> {
        let s = self.ep.status().await.ok()?;
        s.ike_sas
            .iter()
            .find(|i| {
                i.name == name
                    && i.established
                    && i.initiator
                    && !s.child_sas.iter().any(|(c, _)| c.ike_sa == i.id)
            })
            .map(|i| i.id)
    }

    /// The established IKE SAs the endpoint files under connection `name`.
    async fn ike_sas_of(&self, name: &str) -> Result<Vec<u64>> {
        Ok(self
            .ep
            .status()
            .await?
            .ike_sas
            .iter()
            .filter(|s| s.name == name && s.established)
            .map(|s| s.id)
            .collect())
    }

    /// Keep `ch` under `name` until its SA goes (the peer deleted it or
    /// its IKE SA, DPD, `down`).
    fn hold(self: &Arc<Self>, name: String, mut ch: Channel, initiator: bool) {
        let (id, downs) = {
            let mut c = lock(&self.conns);
            c.next += 1;
            let id = c.next;
            let downs = c.downs(&name);
            c.held.push(Held {
                id,
                name: name.clone(),
                initiator,
            });
            (id, downs)
        };
        let me = self.clone();
        tokio::spawn(async move {
            // With a TUN device the child SA's traffic goes to the OS
            // stack; what comes to the channel (nothing, or datagrams no
            // one reads without TUN) is only logged.
            while let Some(d) = ch.recv().await {
                tracing::debug!(
                    connection = %name,
                    src = %d.src,
                    dst = %d.dst,
                    len = d.data.len(),
                    spi = format_args!("{:08x}", d.spi),
                    "datagram through the channel"
                );
            }
            tracing::info!(connection = %name, "child SA gone");
            let again = {
                let mut c = lock(&me.conns);
                c.held.retain(|h| h.id != id);
                !c.stopping && c.downs(&name) == downs
            };
            let close_start = me
                .config()
                .connection(&name)
                .is_some_and(|k| k.close_action == StartAction::Start);
            if again && close_start {
                // The peer may have deleted only the child SA: `up` then
                // creates a new one under the IKE SA still up.
                me.keep_up(name, RETRY_FIRST);
            }
        });
        tracing::debug!(id, initiator, "holding channel");
    }

    /// The configured connections and their state.
    pub(crate) fn connections(&self, status: &endpoint::Status) -> Vec<ConnectionView> {
        let cfg = self.config();
        let c = lock(&self.conns);
        cfg.connections
            .iter()
            .map(|k| {
                let ike_sas: Vec<u64> = status
                    .ike_sas
                    .iter()
                    .filter(|s| s.name == k.name && s.established)
                    .map(|s| s.id)
                    .collect();
                let state = if !ike_sas.is_empty() {
                    "up"
                } else if c.connecting.contains(&k.name) {
                    "connecting"
                } else {
                    "down"
                };
                ConnectionView {
                    name: k.name.clone(),
                    state,
                    remote: k.remote,
                    start: k.start,
                    close_action: k.close_action,
                    retrying: c.retrying.contains(&k.name),
                    ike_sas,
                    initiated: c
                        .held
                        .iter()
                        .filter(|h| h.name == k.name && h.initiator)
                        .count(),
                    accepted: c
                        .held
                        .iter()
                        .filter(|h| h.name == k.name && !h.initiator)
                        .count(),
                }
            })
            .collect()
    }

    /// `status`: the endpoint's state, grouped for people and scripts.
    pub(crate) async fn status(&self) -> Result<StatusView> {
        let s = self.ep.status().await?;
        let conns = self.connections(&s);
        Ok(StatusView::new(s, conns, self.ep.latches()))
    }

    /// `reload` and SIGHUP.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<ReloadReport> {
        let _one = self.reloading.lock().await;
        let new = config::load(&self.path).map_err(|e| anyhow!("{e}"))?;
        let old = self.config();
        let restart_needed = new.restart_only_changes(&old);
        for field in &restart_needed {
            tracing::warn!(
                field,
                "[daemon] setting changed; it takes effect at the next restart"
            );
        }
        self.ep
            .set_policy(new.policy.clone().unwrap_or_else(endpoint::default_policy))
            .await?;
        self.ep.set_peers(new.peers()).await?;
        let names = |c: &DaemonConfig| -> BTreeSet<String> {
            c.connections.iter().map(|c| c.name.clone()).collect()
        };
        let (old_names, new_names) = (names(&old), names(&new));
        let mut report = ReloadReport {
            added: new_names.difference(&old_names).cloned().collect(),
            removed: old_names.difference(&new_names).cloned().collect(),
            kept: new_names.intersection(&old_names).cloned().collect(),
            restart_needed,
            listener_latches_added: Vec::new(),
            listener_latches_removed: Vec::new(),
            errors: Vec::new(),
        };
        self.sync_listeners(&new.listener_latches, &mut report)
            .await;
        let new = Arc::new(new);
        *lock(&self.config) = new.clone();
        for name in &report.removed {
            let held = lock(&self.conns).held.iter().any(|h| &h.name == name);
            let up = !self.ike_sas_of(name).await.unwrap_or_default().is_empty();
            if held || up {
                if let Err(e) = self.down(name).await {
                    tracing::warn!(connection = %name, error = %format!("{e:#}"), "bringing down a removed connection");
                }
            }
        }
        for name in &report.added {
            if let Some(c) = new.connection(name) {
                if c.start == StartAction::Start {
                    self.start(c);
                }
            }
        }
        for e in &report.errors {
            tracing::warn!(error = %e, "reload: not applied");
        }
        tracing::info!(
            added = ?report.added,
            removed = ?report.removed,
            kept = report.kept.len(),
            "configuration reloaded"
        );
        Ok(report)
    }

    /// `close_action = "start"`: bring `name` up after `first` and retry
    /// (1 s, 2 s, ... 60 s apart) until it is up, or `down` is asked for,
    /// or the configuration drops it or its close action, or the daemon
    /// stops. One retry loop per connection.
    fn keep_up(self: &Arc<Self>, name: String, first: Duration) {
        let downs = {
            let mut c = lock(&self.conns);
            if !c.retrying.insert(name.clone()) {
                return;
            }
            c.downs(&name)
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut delay = first;
            let mut backoff = RETRY_FIRST;
            loop {
                tokio::time::sleep(delay).await;
                let wanted = {
                    let c = lock(&me.conns);
                    !c.stopping && c.downs(&name) == downs && !c.held.iter().any(|h| h.name == name)
                } && me
                    .config()
                    .connection(&name)
                    .is_some_and(|k| k.close_action == StartAction::Start);
                if !wanted {
                    break;
                }
                match me.up(&name).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(
                            connection = %name,
                            error = %format!("{e:#}"),
                            retry_in = ?backoff,
                            "bringing the connection back up failed"
                        );
                        delay = backoff;
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
            lock(&me.conns).retrying.remove(&name);
        });
    }

    /// Initiate a connection as its start action says: once, or (with
    /// `close_action = "start"`) until it is up.
    fn start(self: &Arc<Self>, c: &config::Connection) {
        if c.close_action == StartAction::Start {
            self.keep_up(c.name.clone(), Duration::ZERO);
        } else {
            self.spawn_up(c.name.clone());
        }
    }

    /// Make the listener latches those of `wanted`: release the others
    /// (R15), create the missing ones (R12). Latches of connections that
    /// came under a kept listener stay as they are (R8).
    async fn sync_listeners(&self, wanted: &[ThreeTuple], report: &mut ReloadReport) {
        let (gone, missing): (Vec<_>, Vec<_>) = {
            let l = lock(&self.listeners);
            (
                l.iter()
                    .filter(|(t, _)| !wanted.contains(t))
                    .map(|(t, id)| (*t, *id))
                    .collect(),
                wanted
                    .iter()
                    .filter(|t| !l.contains_key(t))
                    .copied()
                    .collect(),
            )
        };
        for (three, id) in gone {
            match self.ep.release_latch(id).await {
                Ok(()) => report.listener_latches_removed.push(three.to_string()),
                Err(e) => report
                    .errors
                    .push(format!("releasing the listener latch on {three}: {e}")),
            }
            lock(&self.listeners).remove(&three);
        }
        for three in missing {
            match self
                .ep
                .create_listener_latch(ListenerRequest::new(three))
                .await
            {
                Ok(id) => {
                    lock(&self.listeners).insert(three, id);
                    report.listener_latches_added.push(three.to_string());
                }
                Err(e) => report
                    .errors
                    .push(format!("[[listener_latch]] on {three}: {e}")),
            }
        }
    }

    fn spawn_up(self: &Arc<Self>, name: String) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.up(&name).await {
                tracing::warn!(connection = %name, error = %format!("{e:#}"), "start failed");
            }
        });
    }
}

/// Run the daemon until SIGTERM or SIGINT.
pub(crate) async fn run(a: DaemonArgs) -> Result<()> {
    let cfg = config::load(&a.config).map_err(|e| anyhow!("{e}"))?;
    if a.check {
        println!(
            "{}: OK: IKE {}, NAT-T port {}, {} connection(s): {}; policy: {}",
            a.config.display(),
            cfg.ike_addr,
            cfg.natt_port,
            cfg.connections.len(),
            cfg.connections
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            cfg.policy
                .as_ref()
                .map_or("default".to_owned(), |p| format!(
                    "{} [[peer]], {} [[policy]]",
                    p.pad.entries().len(),
                    p.spd.entries().len()
                ))
        );
        if let Some(t) = &cfg.tun {
            println!(
                "  TUN {} mtu {} addresses {} routes {} latch_flows {}{} raw_esp {} offload {}",
                t.name,
                t.mtu,
                if t.addresses.is_empty() {
                    "-".to_owned()
                } else {
                    t.addresses
                        .iter()
                        .map(|(a, p)| format!("{a}/{p}"))
                        .collect::<Vec<_>>()
                        .join(",")
                },
                t.routes,
                t.latch_flows,
                if t.latch_flows {
                    format!(" (udp_idle {}s)", t.udp_idle.as_secs())
                } else {
                    String::new()
                },
                t.raw_esp,
                t.offload
            );
        }
        if let Some(p) = &cfg.pin_file {
            println!("  BTNS pins kept in {}", p.display());
        }
        if cfg.key_export {
            println!("  WARNING: allow_key_export = true: SA keys can be read through the control socket");
        }
        return Ok(());
    }
    let mut ecfg = EndpointConfig::on(cfg.ike_addr.ip(), cfg.ike_addr.port(), cfg.natt_port);
    ecfg.cookie_threshold = cfg.cookie_threshold;
    ecfg.max_half_open = cfg.max_half_open;
    ecfg.connect_timeout = cfg.connect_timeout;
    ecfg.policy = cfg.policy.clone();
    ecfg.tun = cfg.tun.clone();
    ecfg.key_export = cfg.key_export;
    ecfg.pin_file = cfg.pin_file.clone();
    if cfg.key_export {
        tracing::warn!(
            "{}: [daemon] allow_key_export = true: the SECRET keys of every SA are handed \
             to whoever can open the control socket (`latchkey keys --wireshark`); \
             for debugging only, turn it off in production",
            a.config.display()
        );
        eprintln!(
            "latchkey daemon: WARNING: allow_key_export = true in {}: SA keys can be \
             read through the control socket; for debugging only",
            a.config.display()
        );
    }
    let ep = match Endpoint::bind(ecfg, cfg.peers()).await {
        Ok(ep) => Arc::new(ep),
        Err(endpoint::Error::Tun { name, reason }) => {
            let t = cfg.tun.as_ref();
            bail!(
                "{}: [daemon.tun]: TUN device {name:?}: {reason}\n  \
                 (creating and configuring it needs root or CAP_NET_ADMIN{}; \
                 remove [daemon.tun] to negotiate SAs without carrying OS traffic)",
                a.config.display(),
                if t.is_some_and(|t| t.raw_esp) {
                    ", and raw_esp = true (the default) also CAP_NET_RAW; \
                     raw_esp = false does without"
                } else {
                    ""
                }
            )
        }
        Err(e) => bail!(
            "{}: [daemon] listen = \"{}\", natt_port = {}: {e}",
            a.config.display(),
            cfg.ike_addr,
            cfg.natt_port
        ),
    };
    let control_path = a
        .control
        .clone()
        .or_else(|| cfg.control.clone())
        .unwrap_or_else(crate::control::default_path);
    let daemon = Arc::new(Daemon {
        ep: ep.clone(),
        path: a.config.clone(),
        config: Mutex::new(Arc::new(cfg)),
        conns: Mutex::new(Conns::default()),
        listeners: Mutex::new(BTreeMap::new()),
        reloading: tokio::sync::Mutex::new(()),
    });
    let listeners = daemon.config().listener_latches.clone();
    for three in listeners {
        let id = ep
            .create_listener_latch(ListenerRequest::new(three))
            .await
            .with_context(|| format!("{}: [[listener_latch]] on {three}", a.config.display()))?;
        tracing::info!(%three, latch = %id, "listener latch");
        lock(&daemon.listeners).insert(three, id);
    }
    crate::control::serve(
        crate::control::Backend::Daemon(daemon.clone()),
        &control_path,
    )?;
    tracing::info!(
        ike = %ep.ike_addr(),
        natt = %ep.natt_addr(),
        control = %control_path.display(),
        "daemon running"
    );
    {
        let d = daemon.clone();
        tokio::spawn(async move {
            while let Some(ch) = d.ep.accept().await {
                let name = ch.ike_sa().name.clone();
                tracing::info!(
                    connection = %name,
                    peer = %ch.ike_sa().remote,
                    peer_id = %ch.ike_sa().peer_id,
                    "child SA accepted"
                );
                d.hold(name, ch, false);
            }
        });
    }
    for c in &daemon.config().connections {
        if c.start == StartAction::Start {
            daemon.start(c);
        }
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match daemon.reload().await {
                Ok(r) => tracing::info!("SIGHUP: {}", r.text().trim_end()),
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "SIGHUP: reload failed; the running configuration stays"
                ),
            },
        }
    }
    tracing::info!("shutting down: deleting the IKE SAs (RFC 7296 1.4.1)");
    lock(&daemon.conns).stopping = true;
    let _ = std::fs::remove_file(&control_path);
    ep.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests;
