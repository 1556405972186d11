//! `interop/daemon-tun.sh` from `cargo test`: the daemon as a TUN gateway
//! between network namespaces and against strongSwan. It needs root (TUN
//! devices, namespaces, raw sockets) and takes about half a minute to two
//! minutes, so it runs only when asked for:
//!
//! ```sh
//! sudo LATCHKEY_ROOT_TESTS=1 cargo test -p latchkey --test daemon_tun -- --nocapture
//! ```
//!
//! `LATCHKEY_NO_STRONGSWAN=1` leaves out part (b) (charon). Otherwise the
//! test prints why it skips and passes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: failing loudly is the point"
)]

use std::process::Command;

/// Our effective user id is 0 (from /proc, no `unsafe` libc call).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn daemon_tun_interop() {
    if std::env::var("LATCHKEY_ROOT_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "daemon_tun_interop: skipped: set LATCHKEY_ROOT_TESTS=1 (and run as root) to run \
             interop/daemon-tun.sh (TUN devices, network namespaces, strongSwan)"
        );
        return;
    }
    if !is_root() {
        eprintln!(
            "daemon_tun_interop: skipped: LATCHKEY_ROOT_TESTS=1 but not root (effective uid is \
             not 0); interop/daemon-tun.sh needs root for TUN devices and network namespaces"
        );
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../interop/daemon-tun.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .env("LATCHKEY", env!("CARGO_BIN_EXE_latchkey"));
    if std::env::var("LATCHKEY_NO_STRONGSWAN").as_deref() == Ok("1") {
        cmd.arg("--no-strongswan");
    }
    let out = cmd.output().expect("running interop/daemon-tun.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .rfind(|l| l.starts_with("daemon-tun: ") && l.contains(" passed, "))
        .unwrap_or("");
    assert!(
        out.status.success() && summary.ends_with(" 0 failed"),
        "interop/daemon-tun.sh failed ({}; {summary:?}); failures:\n{}\nstderr (tail):\n{}",
        out.status,
        stdout
            .lines()
            .filter(|l| l.contains(": fail -- "))
            .collect::<Vec<_>>()
            .join("\n"),
        stderr
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !stdout.contains("daemon-tun: skipped"),
        "the script skipped although we are root"
    );
}
