//! The control socket: a Unix stream socket (0600: the user who started
//! the process), one JSON object per line each way.
//!
//! `latchkey listen --control PATH` answers `latches` and `inquire` (RFC
//! 5660 ENUMERATE and INQUIRE, R2, R7); `latchkey daemon` answers those and
//! `up`, `down`, `status`, `reload`, `connections`.
//!
//! Requests: `{"op":"latches"}`, `{"op":"inquire","proto":17,
//! "local":"10.0.0.2:2000","remote":"10.0.0.1:1000"}`, `{"op":"up",
//! "name":"office"}`, `{"op":"down","name":"office"}`, `{"op":"status"}`,
//! `{"op":"reload"}`, `{"op":"connections"}`, `{"op":"keys"}` (only with
//! `listen --allow-key-export` or `[daemon] allow_key_export = true`: the
//! SAs' SECRET keys as Wireshark tables,
//! `crate::keys::control_answer`). Answers:
//! `{"ok":true,"data":...,"text":"..."}` (`data`: the answer as JSON, the
//! shape `--json` prints; `text`: the rendering `latchkey` prints) or
//! `{"ok":false,"error":"..."}`.
//!
//! A new operation is one more [`Request`] variant, one arm in `answer`
//! and a client command calling [`ask`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use endpoint::{Endpoint, FiveTuple};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::daemon::Daemon;

/// The default control socket: `$XDG_RUNTIME_DIR/latchkey.sock`, else
/// `/run/latchkey/control.sock`.
pub(crate) fn default_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("latchkey.sock"),
        _ => PathBuf::from("/run/latchkey/control.sock"),
    }
}

/// One request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Every latch (ENUMERATE).
    Latches,
    /// The latch of a 5-tuple (INQUIRE).
    Inquire {
        /// IP protocol number.
        proto: u8,
        /// Our side.
        local: SocketAddr,
        /// The peer's side.
        remote: SocketAddr,
    },
    /// Daemon: initiate a configured connection.
    Up {
        /// The connection's name.
        name: String,
    },
    /// Daemon: delete a connection's IKE SAs.
    Down {
        /// The connection's name.
        name: String,
    },
    /// Daemon: IKE SAs, child SAs, counters, latches.
    Status,
    /// Daemon: re-read the configuration file.
    Reload,
    /// Daemon: the configured connections and their state.
    Connections,
    /// The SAs' keys as Wireshark tables (`listen --allow-key-export`,
    /// `[daemon] allow_key_export = true`).
    Keys,
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Who answers: a bare endpoint (`listen`) or the daemon.
#[derive(Clone)]
pub(crate) enum Backend {
    /// `latchkey listen`: latches and inquiries only.
    Endpoint(Arc<Endpoint>),
    /// `latchkey daemon`: everything.
    Daemon(Arc<Daemon>),
}

impl Backend {
    fn endpoint(&self) -> &Endpoint {
        match self {
            Self::Endpoint(ep) => ep,
            Self::Daemon(d) => d.endpoint(),
        }
    }

    fn daemon(&self) -> Result<&Arc<Daemon>, String> {
        match self {
            Self::Daemon(d) => Ok(d),
            Self::Endpoint(_) => Err(
                "this is `latchkey listen`, which answers latches and inquire only; run `latchkey daemon`".into(),
            ),
        }
    }
}

/// What an operation answers: JSON data and its text rendering.
type Answer = Result<(serde_json::Value, String), String>;

fn json<T: Serialize>(v: &T, text: String) -> Answer {
    serde_json::to_value(v)
        .map(|d| (d, text))
        .map_err(|e| e.to_string())
}

async fn answer(b: &Backend, line: &str) -> Response {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return failure(format!("bad request: {e}")),
    };
    let r: Answer = match req {
        Request::Latches => {
            let all = b.endpoint().latches();
            let mut text = String::new();
            if all.is_empty() {
                text.push_str("no latches\n");
            }
            for i in &all {
                let peer = i
                    .params
                    .as_ref()
                    .and_then(|p| p.peer())
                    .map_or("-".to_owned(), ToString::to_string);
                text.push_str(&format!(
                    "{}  {}  {}  peer {}\n",
                    i.id, i.state, i.tuple, peer
                ));
            }
            json(&all, text)
        }
        Request::Inquire {
            proto,
            local,
            remote,
        } => {
            let five = FiveTuple::new(proto, local, remote);
            match b.endpoint().inquire(&five) {
                Some(i) => json(&i, crate::demo::render_inquiry(&i, "")),
                None => Ok((serde_json::Value::Null, format!("{five}: not latched\n"))),
            }
        }
        Request::Up { name } => match b.daemon() {
            Ok(d) => match d.up(&name).await {
                Ok(r) => json(&r, r.text()),
                Err(e) => Err(format!("{e:#}")),
            },
            Err(e) => Err(e),
        },
        Request::Down { name } => match b.daemon() {
            Ok(d) => match d.down(&name).await {
                Ok(n) => json(
                    &serde_json::json!({"name": name, "ike_sas_closed": n}),
                    format!("{name} down: {n} IKE SA(s) deleted\n"),
                ),
                Err(e) => Err(format!("{e:#}")),
            },
            Err(e) => Err(e),
        },
        Request::Status => match b.daemon() {
            Ok(d) => match d.status().await {
                Ok(s) => json(&s, s.text()),
                Err(e) => Err(format!("{e:#}")),
            },
            Err(e) => Err(e),
        },
        Request::Reload => match b.daemon() {
            Ok(d) => match d.reload().await {
                Ok(r) => json(&r, r.text()),
                Err(e) => Err(format!(
                    "reload failed, the running configuration stays: {e:#}"
                )),
            },
            Err(e) => Err(e),
        },
        Request::Connections => match b.daemon() {
            Ok(d) => match d.endpoint().status().await {
                Ok(s) => {
                    let v = d.connections(&s);
                    let mut text = String::new();
                    for c in &v {
                        text.push_str(&format!(
                            "{:<16} {:<10} remote {}  IKE SAs {:?}\n",
                            c.name,
                            c.state,
                            c.remote.map_or("-".to_owned(), |r| r.to_string()),
                            c.ike_sas
                        ));
                    }
                    if v.is_empty() {
                        text.push_str("no connections configured\n");
                    }
                    json(&v, text)
                }
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e),
        },
        Request::Keys => match b.endpoint().session_keys().await {
            Ok(k) => {
                let (d, text) = crate::keys::control_answer(&k);
                d.map(|d| (d, text)).map_err(|e| e.to_string())
            }
            Err(endpoint::Error::KeyExport(_)) if matches!(b, Backend::Daemon(_)) => Err(
                "key export is off in this daemon: set `allow_key_export = true` under [daemon] \
                 in its configuration and restart it (a reload does not turn it on)"
                    .into(),
            ),
            Err(e) => Err(e.to_string()),
        },
    };
    match r {
        Ok((d, text)) => Response {
            ok: true,
            data: Some(d),
            text: Some(text),
            error: None,
        },
        Err(e) => failure(e),
    }
}

fn failure(e: String) -> Response {
    Response {
        ok: false,
        data: None,
        text: None,
        error: Some(e),
    }
}

/// What one control connection may send in all.
const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// Serve the control socket at `path` until the process ends.
pub(crate) fn serve(backend: Backend, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        // A directory made here is ours alone (the socket is chmod 0600
        // right after bind; this closes the window before it).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        // Another process answering there keeps its socket; a file left by
        // an earlier run (nobody answers) is removed.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "{} is in use by another latchkey process (--control PATH picks another)",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let backend = backend.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                // Requests are small: a client gets MAX_REQUEST_BYTES per
                // connection, so no line can grow without bound.
                let mut lines = BufReader::new(r.take(MAX_REQUEST_BYTES)).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let resp = answer(&backend, &line).await;
                    // May hold keys ({"op":"keys"}): zeroized after sending.
                    let mut out =
                        zeroize::Zeroizing::new(serde_json::to_string(&resp).unwrap_or_default());
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Ask the process behind `path`; its answer, if it succeeded.
async fn request(path: &Path, req: &Request) -> Result<Response> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "connecting to the control socket {} (is `latchkey daemon` or `latchkey listen` running with --control {}?)",
            path.display(),
            path.display()
        )
    })?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(r).lines();
    let Some(answer) = lines.next_line().await? else {
        bail!("the control socket closed without answering");
    };
    let answer = zeroize::Zeroizing::new(answer);
    let resp: Response = serde_json::from_str(&answer).context("answer of the control socket")?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_default());
    }
    Ok(resp)
}

/// Ask the process behind `path`; prints its answer (JSON or text).
pub(crate) async fn ask(path: &Path, req: &Request, json: bool) -> Result<()> {
    let resp = request(path, req).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resp.data.unwrap_or_default())?
        );
    } else {
        print!("{}", resp.text.unwrap_or_default());
    }
    Ok(())
}

/// `latchkey keys --wireshark DIR`: the keys of the `listen` or `daemon`
/// process's SAs (`--allow-key-export`, `[daemon] allow_key_export`),
/// written as Wireshark tables into `dir`.
pub(crate) async fn keys(path: &Path, dir: &Path) -> Result<()> {
    let data = request(path, &Request::Keys)
        .await?
        .data
        .unwrap_or_default();
    let tables = crate::keys::from_control_answer(&data)?;
    for p in crate::keys::write_tables(dir, &tables)? {
        println!("{}", p.display());
    }
    Ok(())
}

/// `latchkey latches`.
pub(crate) async fn latches(path: &Path, json: bool) -> Result<()> {
    ask(path, &Request::Latches, json).await
}

/// `latchkey inquire`.
pub(crate) async fn inquire(
    path: &Path,
    proto: u8,
    local: SocketAddr,
    remote: SocketAddr,
    json: bool,
) -> Result<()> {
    ask(
        path,
        &Request::Inquire {
            proto,
            local,
            remote,
        },
        json,
    )
    .await
}
