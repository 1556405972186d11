//! A small control socket: `latchkey listen --control PATH` answers
//! `latchkey latches` and `latchkey inquire` (RFC 5660 ENUMERATE and
//! INQUIRE, R2, R7) over a Unix stream socket, one JSON object per line.
//!
//! Requests: `{"op":"latches"}`, `{"op":"inquire","proto":17,
//! "local":"10.0.0.2:2000","remote":"10.0.0.1:1000"}`,
//! `{"op":"keys"}` (only with `listen --allow-key-export`: the SAs' SECRET
//! keys as Wireshark tables, `crate::keys::control_answer`). Answers:
//! `{"ok":true,"data":...,"text":"..."}` (`data`: the latch information as
//! JSON, `text`: the rendering `latchkey` prints) or
//! `{"ok":false,"error":"..."}`. Access is the socket file's permissions
//! (0600: the user who started `listen`). The daemon's full control
//! protocol comes with the interop issue; this answers inquiries only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use endpoint::{Endpoint, FiveTuple};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The default control socket: `$XDG_RUNTIME_DIR/latchkey.sock`, else
/// `/run/latchkey/control.sock`.
pub(crate) fn default_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("latchkey.sock"),
        _ => PathBuf::from("/run/latchkey/control.sock"),
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Latches,
    Inquire {
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// The SAs' keys as Wireshark tables (`listen --allow-key-export`).
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

async fn answer(ep: &Endpoint, line: &str) -> Response {
    let fail = |e: String| Response {
        ok: false,
        data: None,
        text: None,
        error: Some(e),
    };
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return fail(format!("bad request: {e}")),
    };
    let (data, text) = match req {
        Request::Latches => {
            let all = ep.latches();
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
            (serde_json::to_value(&all), text)
        }
        Request::Inquire {
            proto,
            local,
            remote,
        } => {
            let five = FiveTuple::new(proto, local, remote);
            match ep.inquire(&five) {
                Some(i) => (
                    serde_json::to_value(&i),
                    crate::demo::render_inquiry(&i, ""),
                ),
                None => (
                    Ok(serde_json::Value::Null),
                    format!("{five}: not latched\n"),
                ),
            }
        }
        Request::Keys => match ep.session_keys().await {
            Ok(k) => crate::keys::control_answer(&k),
            Err(e) => return fail(e.to_string()),
        },
    };
    match data {
        Ok(d) => Response {
            ok: true,
            data: Some(d),
            text: Some(text),
            error: None,
        },
        Err(e) => fail(e.to_string()),
    }
}

/// Serve the control socket at `path` until the process ends.
pub(crate) fn serve(ep: Arc<Endpoint>, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        // Another `listen` answering there keeps its socket; a file left by
        // an earlier run (nobody answers) is removed.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another latchkey listen", path.display());
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
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let ep = ep.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let resp = answer(&ep, &line).await;
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

/// Ask the `listen` process behind `path`; its answer, if it succeeded.
async fn request(path: &Path, req: &Request) -> Result<Response> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "connecting to the control socket {} (is `latchkey listen --control {}` running?)",
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

/// Ask the `listen` process behind `path`; prints its answer (JSON or text).
async fn ask(path: &Path, req: &Request, json: bool) -> Result<()> {
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

/// `latchkey keys --wireshark DIR`: the keys of the `listen` process's SAs,
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
