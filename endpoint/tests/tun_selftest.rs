//! The TUN datapath end to end: runs `interop/tun-selftest.sh` (two
//! latchkey gateways in network namespaces, ESP in UDP and raw ESP, R18
//! flow latching, and strongSwan when installed).
//!
//! Needs root and `LATCHKEY_ROOT_TESTS=1` (it creates namespaces, TUN
//! devices and routes, and takes the interop harness lock); otherwise it
//! says why it skips and passes.

use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn tun_selftest_script() {
    if std::env::var("LATCHKEY_ROOT_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set LATCHKEY_ROOT_TESTS=1 (and run as root) to run interop/tun-selftest.sh"
        );
        return;
    }
    if !is_root() {
        eprintln!(
            "skipped: interop/tun-selftest.sh needs root (namespaces, TUN devices, raw sockets)"
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/tun-selftest.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run interop/tun-selftest.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(out.status.success(), "tun-selftest failed: {stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" 0 failed") && !last.contains(": 0 passed"),
        "unexpected summary: {last}"
    );
}
