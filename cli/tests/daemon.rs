//! End to end: two `latchkey daemon` processes on loopback (distinct
//! ports, no TUN, no root), driven by the client commands through their
//! control sockets: `up`, `status --json` on both sides, `down`, `reload`
//! of a changed configuration (the SA stays), a broken one (refused, the
//! old configuration stays, the mistake is named by file:line:field), and
//! SIGTERM (the peer is told: its status loses the SA).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: failing loudly is the point"
)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// Kills the daemons if the test fails half-way.
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("latchkey-daemon-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Four free UDP ports on loopback (bound, then released).
fn free_ports() -> [u16; 4] {
    let socks: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let p: Vec<u16> = socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    [p[0], p[1], p[2], p[3]]
}

fn config_a(dir: &Path, ports: [u16; 4], extra: &str) -> String {
    config_a_with(dir, ports, "", extra)
}

fn config_a_with(dir: &Path, ports: [u16; 4], daemon_extra: &str, extra: &str) -> String {
    format!(
        r#"[daemon]
listen = "127.0.0.1:{a}"
natt_port = {an}
control = "{dir}/a.sock"
{daemon_extra}

[[connection]]
name = "ab"
remote = "127.0.0.1:{b}"
remote_natt_port = {bn}
auth = "psk"
psk_file = "psk.txt"
local_id = "@a.example"
remote_id = "@b.example"
ike_proposals = "aes128gcm16-prfsha256-x25519"
esp_proposals = "aes128gcm16"
local_ts = ["10.98.0.1/32"]
remote_ts = ["10.99.0.1/32"]
{extra}
[[peer]]
name = "b"
id = "fqdn:b.example"
auth = ["psk"]
child_sa = ["10.99.0.0/24"]

[[policy]]
name = "all"
action = "protect"
"#,
        a = ports[0],
        an = ports[1],
        b = ports[2],
        bn = ports[3],
        dir = dir.display(),
    )
}

fn config_b(dir: &Path, ports: [u16; 4]) -> String {
    format!(
        r#"[daemon]
listen = "127.0.0.1:{b}"
natt_port = {bn}
control = "{dir}/b.sock"

[[connection]]
name = "ba"
auth = "psk"
psk_file = "psk.txt"
local_id = "@b.example"
remote_id = "@a.example"
local_ts = ["10.99.0.1/32"]
remote_ts = ["10.98.0.1/32"]
"#,
        b = ports[2],
        bn = ports[3],
        dir = dir.display(),
    )
}

fn start(dir: &Path, conf: &str, log: &str) -> Child {
    Command::new(BIN)
        .args(["-vv", "daemon", "--config"])
        .arg(dir.join(conf))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap()
}

fn run(args: &[&str], control: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--control")
        .arg(control)
        .output()
        .unwrap()
}

/// A client command that must succeed; its JSON output.
fn json(args: &[&str], control: &Path) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = run(&a, control);
    assert!(
        out.status.success(),
        "latchkey {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn ike_sas(status: &Value) -> &Vec<Value> {
    status["ike_sas"].as_array().unwrap()
}

fn write_psk(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let psk = dir.join("psk.txt");
    std::fs::write(&psk, "a shared secret for the end-to-end test\n").unwrap();
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state(control: &Path) -> (String, Option<String>) {
    let s = json(&["status"], control);
    let st = s["connections"][0]["state"].as_str().unwrap().to_owned();
    let spi = ike_sas(&s)
        .first()
        .map(|i| i["spi_i"].as_str().unwrap().to_owned());
    (st, spi)
}

/// `start = "start"` with `close_action = "start"`: A comes up although
/// B starts after it, comes back after B restarts (B's SIGTERM deletes the
/// SA, A notices and retries until B answers again), and stays down after
/// `latchkey down`.
#[test]
fn close_action_start_brings_the_connection_back() {
    let dir = tempdir("restart");
    write_psk(&dir);
    let ports = free_ports();
    std::fs::write(
        dir.join("a.toml"),
        config_a_with(
            &dir,
            ports,
            "connect_timeout = 2",
            "start = \"start\"\nclose_action = \"start\"\n",
        ),
    )
    .unwrap();
    std::fs::write(dir.join("b.toml"), config_b(&dir, ports)).unwrap();
    let (sa, sb) = (dir.join("a.sock"), dir.join("b.sock"));
    let mut d = Daemons(vec![start(&dir, "a.toml", "a.log")]);
    std::thread::sleep(Duration::from_millis(700));
    d.0.push(start(&dir, "b.toml", "b.log"));
    wait_for("A to come up once B runs", || {
        run(&["status"], &sa).status.success() && state(&sa).0 == "up"
    });
    let (_, first) = state(&sa);
    let first = first.unwrap();

    signal(&d.0[1], "-TERM");
    assert!(wait_exit(&mut d.0[1]).success());
    wait_for("A to see the SA go", || state(&sa).1.is_none());
    let c = json(&["connections"], &sa);
    assert_eq!(c[0]["close_action"], "start");

    d.0[1] = start(&dir, "b.toml", "b2.log");
    wait_for("A to come back up", || state(&sa).0 == "up");
    let (_, second) = state(&sa);
    assert_ne!(second.unwrap(), first, "a new IKE SA");
    wait_for("B to see it", || {
        run(&["status"], &sb).status.success() && !ike_sas(&json(&["status"], &sb)).is_empty()
    });

    // down wins over close_action: nothing comes back.
    json(&["down", "ab"], &sa);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&sa), ("down".to_owned(), None));
    assert_eq!(json(&["connections"], &sa)[0]["retrying"], false);
    assert!(ike_sas(&json(&["status"], &sb)).is_empty());
    let log = std::fs::read_to_string(dir.join("a.log")).unwrap();
    assert!(log.contains("SA gone"), "{log}");
    signal(&d.0[0], "-TERM");
    signal(&d.0[1], "-TERM");
    assert!(wait_exit(&mut d.0[0]).success());
    assert!(wait_exit(&mut d.0[1]).success());
}

#[test]
fn two_daemons_up_status_down_reload_sigterm() {
    let dir = tempdir("main");
    write_psk(&dir);
    let ports = free_ports();
    std::fs::write(dir.join("a.toml"), config_a(&dir, ports, "")).unwrap();
    std::fs::write(dir.join("b.toml"), config_b(&dir, ports)).unwrap();
    let (sa, sb) = (dir.join("a.sock"), dir.join("b.sock"));

    // --check parses and names the connections without starting anything.
    let out = Command::new(BIN)
        .args(["daemon", "--check", "--config"])
        .arg(dir.join("a.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 connection(s): ab"));

    let mut d = Daemons(vec![
        start(&dir, "a.toml", "a.log"),
        start(&dir, "b.toml", "b.log"),
    ]);
    wait_for("the control sockets", || {
        run(&["connections"], &sa).status.success() && run(&["connections"], &sb).status.success()
    });
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sa).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "control socket mode");
    }
    let conns = json(&["connections"], &sa);
    assert_eq!(conns[0]["name"], "ab");
    assert_eq!(conns[0]["state"], "down");

    // Errors are reported, not hidden.
    let out = run(&["up", "nosuch"], &sa);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection named \"nosuch\""));
    let out = run(&["up", "ba"], &sb);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no remote address"));

    // up: both sides see the same IKE SA and matching child SPIs.
    let up = json(&["up", "ab"], &sa);
    let spi_i = up["ike_sa"]["spi_i"].as_str().unwrap().to_owned();
    assert_eq!(spi_i.len(), 16);
    let a = json(&["status"], &sa);
    wait_for("B's IKE SA", || {
        !ike_sas(&json(&["status"], &sb)).is_empty()
    });
    let b = json(&["status"], &sb);
    let (ia, ib) = (&ike_sas(&a)[0], &ike_sas(&b)[0]);
    assert_eq!(ia["name"], "ab");
    assert_eq!(ib["name"], "ba");
    assert_eq!(ia["state"], "ESTABLISHED");
    assert_eq!(ib["state"], "ESTABLISHED");
    assert_eq!(ia["initiator"], true);
    assert_eq!(ib["initiator"], false);
    assert_eq!(ia["spi_i"], spi_i.as_str());
    assert_eq!(ib["spi_i"], ia["spi_i"]);
    assert_eq!(ib["spi_r"], ia["spi_r"]);
    assert_eq!(ia["suite"], "aes128gcm16-prfsha256-x25519");
    assert_eq!(ia["remote_id"], "b.example");
    assert_eq!(ib["remote_id"], "a.example");
    let (ca, cb) = (&ia["child_sas"][0], &ib["child_sas"][0]);
    assert_eq!(ca["spi_in"].as_str().unwrap().len(), 8);
    assert_eq!(ca["spi_in"], cb["spi_out"]);
    assert_eq!(ca["spi_out"], cb["spi_in"]);
    assert_eq!(ca["suite"], "aes128gcm16");
    assert_eq!(ca["state"], "INSTALLED");
    assert!(ca["packets_in"].is_u64() && ca["bytes_out"].is_u64());
    assert!(a["latches"].is_array() && a["esp_drops"].is_object());
    assert_eq!(a["connections"][0]["state"], "up");
    assert_eq!(b["connections"][0]["state"], "up");
    // The human rendering names the same SA.
    let text = String::from_utf8_lossy(&run(&["status"], &sa).stdout).into_owned();
    assert!(text.contains(&format!("{spi_i}_i")), "{text}");
    // A second up while up is refused.
    assert!(!run(&["up", "ab"], &sa).status.success());

    // down: the IKE SA is deleted on both sides.
    let down = json(&["down", "ab"], &sa);
    assert_eq!(down["ike_sas_closed"], 1);
    wait_for("both sides to lose the SA", || {
        ike_sas(&json(&["status"], &sa)).is_empty() && ike_sas(&json(&["status"], &sb)).is_empty()
    });
    assert!(!run(&["down", "ab"], &sa).status.success(), "not up");

    // up again, then reload a changed configuration: the SA stays.
    json(&["up", "ab"], &sa);
    let before = ike_sas(&json(&["status"], &sa))[0]["spi_i"].clone();
    std::fs::write(
        dir.join("a.toml"),
        config_a(
            &dir,
            ports,
            "dpd = \"30s\"\n\n[[connection]]\nname = \"extra\"\nauth = \"null\"\n",
        ),
    )
    .unwrap();
    let r = json(&["reload"], &sa);
    assert_eq!(r["added"], serde_json::json!(["extra"]));
    assert_eq!(r["kept"], serde_json::json!(["ab"]));
    let a = json(&["status"], &sa);
    assert_eq!(ike_sas(&a).len(), 1);
    assert_eq!(ike_sas(&a)[0]["spi_i"], before);
    assert_eq!(a["connections"].as_array().unwrap().len(), 2);

    // A broken configuration is refused with file:line: field, and the
    // running one stays (both through `reload` and SIGHUP).
    let broken = config_a(&dir, ports, "dpd = \"soon\"\n");
    std::fs::write(dir.join("a.toml"), &broken).unwrap();
    let line = broken.lines().position(|l| l.starts_with("dpd")).unwrap() + 1;
    let out = run(&["reload"], &sa);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("a.toml:{line}:7: field \"dpd\"")),
        "{err}"
    );
    signal(&d.0[0], "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    let a = json(&["status"], &sa);
    assert_eq!(ike_sas(&a)[0]["spi_i"], before);
    assert_eq!(
        a["connections"].as_array().unwrap().len(),
        2,
        "old config kept"
    );
    let log = std::fs::read_to_string(dir.join("a.log")).unwrap();
    assert!(log.contains("reload failed"), "{log}");

    // SIGTERM: A deletes its IKE SA, B hears it, A exits 0.
    assert!(!ike_sas(&json(&["status"], &sb)).is_empty());
    signal(&d.0[0], "-TERM");
    let code = wait_exit(&mut d.0[0]);
    assert!(code.success(), "exit status {code}");
    assert!(!sa.exists(), "control socket removed");
    let b = json(&["status"], &sb);
    assert!(ike_sas(&b).is_empty(), "B still has {b}");
    assert_eq!(b["connections"][0]["state"], "down");
    signal(&d.0[1], "-TERM");
    let _ = d.0[1].wait();
}

fn latches(control: &Path) -> Vec<Value> {
    json(&["status"], control)["latches"]
        .as_array()
        .unwrap()
        .clone()
}

/// `[[listener_latch]]`: a datagram from a peer (`latchkey connect`, which
/// sends one through its child SA) creates and binds a connection latch
/// in the daemon; `status --json` shows it; a reload to a PAD and SPD
/// under which it would be refused now leaves it Established with the
/// same peer (R8); a reload without the listener releases that (R15).
#[test]
fn reload_keeps_established_latches() {
    let dir = tempdir("latch");
    write_psk(&dir);
    let ports = free_ports();
    let base = format!(
        "{}\n[[listener_latch]]\nproto = \"udp\"\nlocal = \"0.0.0.0:9999\"\n",
        config_b(&dir, ports)
    );
    std::fs::write(dir.join("b.toml"), &base).unwrap();
    let sb = dir.join("b.sock");
    let mut d = Daemons(vec![start(&dir, "b.toml", "b.log")]);
    wait_for("B's control socket", || {
        run(&["status"], &sb).status.success()
    });
    let l = latches(&sb);
    assert_eq!((l.len(), l[0]["state"].as_str()), (1, Some("LISTENER")));
    let listener_id = l[0]["id"].clone();

    let peer = Command::new(BIN)
        .args(["connect", &format!("127.0.0.1:{}", ports[2])])
        .args(["--local", "127.0.0.1:0", "--nat-t-port", "0"])
        .args(["--remote-nat-t-port", &ports[3].to_string()])
        .args(["--auth", "psk", "--psk-file"])
        .arg(dir.join("psk.txt"))
        .args(["--id", "@a.example", "--remote-id", "@b.example"])
        .args(["--local-ts", "10.98.0.1/32", "--remote-ts", "10.99.0.1/32"])
        .args(["--send-udp", "10.99.0.1:9999", "--wait", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    d.0.push(peer);
    let established = |l: &[Value]| {
        l.iter()
            .find(|x| x["state"] == "ESTABLISHED")
            .map(|x| (x["id"].clone(), x["params"]["peer"].clone()))
    };
    wait_for("the connection latch", || {
        established(&latches(&sb)).is_some()
    });
    let (id, peer_before) = established(&latches(&sb)).unwrap();
    assert_eq!(peer_before["authenticated"]["value"], "a.example");

    // A policy that would refuse this peer and this flow now.
    let strict = format!(
        "{base}\n[[peer]]\nname = \"other\"\nid = \"fqdn:other.example\"\nauth = [\"psk\"]\n\n[[policy]]\nname = \"no-udp\"\nproto = \"udp\"\naction = \"discard\"\n"
    );
    std::fs::write(dir.join("b.toml"), &strict).unwrap();
    let r = json(&["reload"], &sb);
    assert_eq!(r["kept"], serde_json::json!(["ba"]));
    assert_eq!(r["listener_latches_added"], serde_json::json!([]));
    let l = latches(&sb);
    assert_eq!(established(&l), Some((id, peer_before)));
    assert!(l
        .iter()
        .any(|x| x["id"] == listener_id && x["state"] == "LISTENER"));

    // Without the [[listener_latch]]: the listener is released.
    std::fs::write(dir.join("b.toml"), config_b(&dir, ports)).unwrap();
    let r = json(&["reload"], &sb);
    assert_eq!(
        r["listener_latches_removed"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );
    assert!(!latches(&sb).iter().any(|x| x["id"] == listener_id));
    signal(&d.0[0], "-TERM");
    assert!(wait_exit(&mut d.0[0]).success());
}

/// The peer `b` of `config_a` as an in-process endpoint (it can delete
/// just a child SA, which a daemon never does), and its runtime.
fn peer_b(ports: [u16; 4]) -> (tokio::runtime::Runtime, endpoint::Endpoint) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ts = |s: &str| s.parse::<endpoint::TrafficSelector>().unwrap();
    let mut peer = endpoint::peer_config(
        "ba",
        endpoint::AuthMethod::Psk,
        Some(certs::Psk::from_text(b"a shared secret for the end-to-end test\n").unwrap()),
        ts("10.99.0.1/32"),
        ts("10.98.0.1/32"),
    );
    peer.local_id = endpoint::Identity::Fqdn("b.example".into());
    peer.remote_id = Some(endpoint::Identity::Fqdn("a.example".into()));
    let ip = "127.0.0.1".parse().unwrap();
    let ep = rt
        .block_on(endpoint::Endpoint::bind(
            endpoint::EndpointConfig::on(ip, ports[2], ports[3]),
            vec![peer],
        ))
        .unwrap();
    (rt, ep)
}

/// The peer deletes only the child SA (its IKE SA stays): the daemon holds
/// no channel for the connection any more, but `down` still deletes the
/// connection's IKE SA (it looks the IKE SAs up by connection, not by
/// channel), and the peer is told. The peer here is an in-process
/// `endpoint::Endpoint`, which can delete just a child SA.
#[test]
fn down_closes_an_ike_sa_whose_child_sa_the_peer_deleted() {
    let dir = tempdir("childless");
    write_psk(&dir);
    let ports = free_ports();
    std::fs::write(dir.join("a.toml"), config_a(&dir, ports, "")).unwrap();
    let sa = dir.join("a.sock");
    let _d = Daemons(vec![start(&dir, "a.toml", "a.log")]);
    wait_for("the control socket", || {
        run(&["connections"], &sa).status.success()
    });

    let (rt, ep) = peer_b(ports);

    let up = json(&["up", "ab"], &sa);
    let spi_i = up["ike_sa"]["spi_i"].as_str().unwrap().to_owned();
    let ch = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), ep.accept()).await })
        .expect("the peer accepts the child SA")
        .unwrap();
    assert_eq!(ch.ike_sa().spi_i, spi_i);

    // The peer deletes the child SA only.
    rt.block_on(ch.close_child()).unwrap();
    wait_for(
        "the daemon to lose the child SA but keep the IKE SA",
        || {
            let s = json(&["status"], &sa);
            let i = ike_sas(&s);
            i.len() == 1
                && i[0]["child_sas"].as_array().unwrap().is_empty()
                && s["connections"][0]["initiated"] == 0
        },
    );
    let s = rt.block_on(ep.status()).unwrap();
    assert_eq!(s.ike_sas.len(), 1, "the peer keeps the IKE SA");
    assert!(s.child_sas.is_empty(), "the peer deleted its child SA");
    assert_eq!(json(&["connections"], &sa)[0]["state"], "up");

    // down: the IKE SA is deleted, and the peer is told.
    let out = run(&["down", "ab"], &sa);
    assert!(
        out.status.success(),
        "down of a connection whose IKE SA has no child SA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ike_sas(&json(&["status"], &sa)).is_empty());
    wait_for("the peer to lose the IKE SA", || {
        rt.block_on(ep.status()).unwrap().ike_sas.is_empty()
    });
    assert_eq!(json(&["connections"], &sa)[0]["state"], "down");
    // And a second down says so.
    let out = run(&["down", "ab"], &sa);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not up"));
    rt.block_on(ep.shutdown()).unwrap();
}

/// `close_action = "start"` and the peer deletes only the child SA: the
/// daemon brings the connection back with a new child SA under the IKE SA
/// that is still up (CREATE_CHILD_SA), so the peer ends with one IKE SA
/// (the same one) and one child SA, never a second IKE SA.
#[test]
fn close_action_start_after_a_child_only_delete_makes_a_child_under_the_same_ike_sa() {
    let dir = tempdir("childless-restart");
    write_psk(&dir);
    let ports = free_ports();
    std::fs::write(
        dir.join("a.toml"),
        config_a(&dir, ports, "close_action = \"start\"\n"),
    )
    .unwrap();
    let sa = dir.join("a.sock");
    let _d = Daemons(vec![start(&dir, "a.toml", "a.log")]);
    wait_for("the control socket", || {
        run(&["connections"], &sa).status.success()
    });
    let (rt, ep) = peer_b(ports);
    let accept = || {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), ep.accept()).await })
            .expect("the peer accepts a child SA")
            .unwrap()
    };
    let up = json(&["up", "ab"], &sa);
    let old = up["ike_sa"]["spi_i"].as_str().unwrap().to_owned();
    let ch = accept();
    rt.block_on(ch.close_child()).unwrap();
    // The daemon brings the connection back: a new child SA, same IKE SA.
    let old_child = ch.child_sa().inbound_spi;
    let again = accept();
    assert_eq!(again.ike_sa().spi_i, old, "the same IKE SA");
    assert_ne!(again.child_sa().inbound_spi, old_child, "a new child SA");
    wait_for("the peer to hold one IKE SA with one child SA", || {
        let s = rt.block_on(ep.status()).unwrap();
        s.ike_sas.len() == 1 && s.ike_sas[0].spi_i == old && s.child_sas.len() == 1
    });
    let s = json(&["status"], &sa);
    let i = ike_sas(&s);
    assert_eq!(i.len(), 1, "{s}");
    assert_eq!(i[0]["child_sas"].as_array().unwrap().len(), 1, "{s}");
    assert!(run(&["down", "ab"], &sa).status.success());
    drop(again);
    rt.block_on(ep.shutdown()).unwrap();
}
