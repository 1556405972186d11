//! strongSwan (and libreswan) interop, CI subset: runs
//! `interop/run-matrix.sh LATCHKEY --ci` (auth PSK/ECDSA/RSA/raw keys, SA
//! deletion, the daemon with a TUN device (ping, TCP, status), in both
//! roles; a child SA rekey under traffic, DPD, and the quick proposal
//! matrix) against charon in network namespaces.
//!
//! Needs root, strongSwan (interop/setup.sh) and `LATCHKEY_ROOT_TESTS=1`;
//! otherwise it prints why it does not run and passes. The latchkey binary
//! is `$LATCHKEY_BIN`, else the workspace's target/debug/latchkey (built
//! with `cargo build -p latchkey` when missing). The results go to
//! `$LK_RESULTS_MD` (default: a file in the temporary directory, so that
//! the committed interop/RESULTS.md is left alone), the run's files to
//! interop/run/.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if std::env::var_os("LATCHKEY_ROOT_TESTS").as_deref() != Some("1".as_ref()) {
        return Some(
            "LATCHKEY_ROOT_TESTS=1 is not set (the interop run needs root and network namespaces)"
                .into(),
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if uid != "0" {
        return Some(format!("not root (effective uid {uid})"));
    }
    for tool in [
        "/usr/lib/ipsec/charon",
        "/usr/sbin/swanctl",
        "/usr/bin/tshark",
    ] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} missing: run interop/setup.sh"));
        }
    }
    None
}

fn latchkey_bin(ws: &Path) -> PathBuf {
    if let Some(b) = std::env::var_os("LATCHKEY_BIN") {
        return PathBuf::from(b);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let bin = target.join("debug").join("latchkey");
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "latchkey"])
            .current_dir(ws)
            .status()
            .expect("running cargo build -p latchkey");
        assert!(st.success(), "cargo build -p latchkey failed");
    }
    bin
}

#[test]
fn strongswan_interop_ci_subset() {
    if let Some(why) = skip_reason() {
        eprintln!("interop test skipped: {why}");
        return;
    }
    let ws = workspace();
    let bin = latchkey_bin(&ws);
    let results = std::env::var_os("LK_RESULTS_MD")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("latchkey-interop-RESULTS.md"));
    let out = Command::new(ws.join("interop/run-matrix.sh"))
        .arg(&bin)
        .arg("--ci")
        .env("LK_RESULTS_MD", &results)
        .current_dir(&ws)
        .output()
        .expect("running interop/run-matrix.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The per-case verdicts, whatever the outcome.
    for line in stderr.lines().filter(|l| l.contains("RESULT ")) {
        eprintln!("{line}");
    }
    eprintln!("{stdout}");
    eprintln!("results: {}", results.display());
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        out.status.success(),
        "interop/run-matrix.sh --ci failed ({}); last lines of its log:\n{}",
        out.status,
        lines[lines.len().saturating_sub(30)..].join("\n")
    );
    assert!(
        stdout.contains("run-matrix: ") && stdout.contains(" 0 failed"),
        "no clean summary line in run-matrix.sh's output:\n{stdout}"
    );
}
