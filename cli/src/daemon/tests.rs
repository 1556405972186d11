//! The daemon's configuration: the shipped example, and every mistake
//! reported with file, line, column and field.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use endpoint::{AuthMethod, Identity, Mode};
use pad::{ConfigError, ConfigErrorKind};

use super::config::{parse, DaemonConfig, StartAction};

const EXAMPLE: &str = include_str!("../../../dist/latchkey.toml");

fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "latchkey-daemon-config-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_psk(dir: &Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, "a long enough shared secret 0123456789\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    Pki(crate::pki::PkiArgs),
}

fn pki(args: &[&str]) {
    use clap::Parser;
    let mut v = vec!["latchkey", "pki"];
    v.extend_from_slice(args);
    let Top::Pki(a) = Cli::try_parse_from(v).unwrap().cmd;
    crate::pki::run(a).unwrap();
}

/// The files `dist/latchkey.toml` names, made in `dir`.
fn example_files(dir: &Path) {
    write_psk(dir, "office.psk");
    let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
    pki(&["init", "--name", "Example Root", "--out", &d("ca")]);
    pki(&[
        "issue",
        "--ca",
        &d("ca"),
        "--san",
        "dns:left.example",
        "--out",
        &d(""),
    ]);
    pki(&["selfsign", "--san", "dns:btns.example", "--out", &d("")]);
}

fn ok(src: &str) -> DaemonConfig {
    let dir = tempdir("ok");
    write_psk(&dir, "k.psk");
    parse(src, "d.toml", &dir).unwrap()
}

fn err(src: &str) -> ConfigError {
    let dir = tempdir("err");
    write_psk(&dir, "k.psk");
    parse(src, "d.toml", &dir).unwrap_err()
}

#[test]
fn shipped_example_parses() {
    let dir = tempdir("example");
    example_files(&dir);
    let c = parse(EXAMPLE, "latchkey.toml", &dir).unwrap();
    assert_eq!(c.ike_addr, "0.0.0.0:500".parse().unwrap());
    assert_eq!(c.natt_port, 4500);
    assert_eq!(c.control, None);
    assert_eq!(c.cookie_threshold, 64);
    assert_eq!(c.connect_timeout, Duration::from_secs(30));
    assert_eq!(c.tun, None);
    assert!(!c.key_export);
    let names: Vec<_> = c.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["office", "branch", "anyone", "keyed"]);

    let office = c.connection("office").unwrap();
    assert_eq!(office.remote, Some("192.0.2.2:500".parse().unwrap()));
    assert_eq!(office.start, StartAction::Start);
    assert_eq!(office.close_action, StartAction::Start);
    let p = &office.peer;
    assert_eq!(p.name, "office");
    assert_eq!(p.local_auth, AuthMethod::Psk);
    assert!(p.psk.is_some());
    assert_eq!(p.local_id, Identity::Fqdn("left.example".into()));
    assert_eq!(p.remote_id, Some(Identity::Fqdn("right.example".into())));
    assert_eq!(p.ike_proposals.len(), 2);
    assert_eq!(
        p.ike_proposals[0].to_string(),
        "aes128gcm16-prfsha256-x25519"
    );
    assert_eq!(p.child.esp_proposals.len(), 2);
    let ts = |s: &str| s.parse::<endpoint::TrafficSelector>().unwrap();
    assert_eq!(p.child.local_ts, [ts("10.98.0.0/24")]);
    assert_eq!(p.child.remote_ts, [ts("10.99.0.0/24")]);
    assert_eq!(p.child.mode, Mode::Tunnel);
    assert_eq!(p.ike_rekey_after, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(p.child.rekey_after, Some(Duration::from_secs(3600)));
    assert_eq!(p.dpd_interval, Some(Duration::from_secs(30)));

    let branch = &c.connection("branch").unwrap().peer;
    assert_eq!(branch.local_auth, AuthMethod::Certificate);
    assert!(branch.credentials.private_key.is_some());
    assert_eq!(
        branch.credentials.certificates.len(),
        1,
        "the end entity (issued by the root)"
    );
    assert_eq!(branch.credentials.trust_anchors.len(), 1);
    assert_eq!(c.connection("branch").unwrap().start, StartAction::None);

    let anyone = c.connection("anyone").unwrap();
    assert_eq!(anyone.remote, None);
    assert_eq!(anyone.peer.local_id, Identity::Null);
    let keyed = &c.connection("keyed").unwrap().peer;
    assert!(keyed.credentials.accept_any_key && keyed.credentials.pinning);

    let policy = c.policy.as_ref().unwrap();
    assert_eq!(policy.pad.entries().len(), 3);
    assert_eq!(policy.spd.entries().len(), 3);
    assert_eq!(c.peers().len(), 4);
    assert_eq!(
        c.listener_latches,
        [endpoint::ThreeTuple::new(
            17,
            "0.0.0.0:9999".parse().unwrap()
        )]
    );
}

#[test]
fn example_without_its_files_names_the_key() {
    let dir = tempdir("nofiles");
    let e = parse(EXAMPLE, "latchkey.toml", &dir).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::File);
    assert_eq!(e.field.as_deref(), Some("psk_file"));
    let line = EXAMPLE
        .lines()
        .position(|l| l.starts_with("psk_file"))
        .unwrap()
        + 1;
    assert_eq!(e.line, line);
    assert!(
        e.to_string().starts_with(&format!(
            "latchkey.toml:{line}:12: field \"psk_file\": reading pre-shared key "
        )),
        "{e}"
    );
}

#[test]
fn defaults_and_tun() {
    let c = ok("[daemon]\nlisten = \"127.0.0.1\"\n[daemon.tun]\naddresses = [\"10.98.0.1/24\", \"fd00::1/64\"]\nroutes = false\n");
    assert_eq!(c.ike_addr, "127.0.0.1:500".parse().unwrap());
    assert_eq!(c.natt_port, 4500);
    assert!(c.policy.is_none());
    let t = c.tun.unwrap();
    assert_eq!(t.name, "latchkey0");
    assert_eq!(t.mtu, 1400);
    assert_eq!(t.addresses.len(), 2);
    assert_eq!(t.addresses[1].1, 64);
    assert!(!t.routes);
    let c = ok("[[connection]]\nname = \"x\"\nauth = \"null\"\n");
    let p = &c.connections[0].peer;
    assert_eq!(p.local_id, Identity::Null);
    assert_eq!(
        p.child.local_ts,
        ["0.0.0.0/0".parse::<endpoint::TrafficSelector>().unwrap()]
    );
    assert_eq!(p.ike_rekey_after, None);
    assert_eq!(c.connections[0].start, StartAction::None);
}

/// The example's commented `[daemon.tun]` block and `allow_key_export`,
/// switched on, parse to what they say.
#[test]
fn shipped_example_tun_block_parses() {
    let dir = tempdir("example-tun");
    example_files(&dir);
    let mut src = String::new();
    let mut in_tun = false;
    for line in EXAMPLE.lines() {
        if line.starts_with("# [daemon.tun]") {
            in_tun = true;
        } else if !line.starts_with('#') && !line.starts_with(' ') {
            in_tun = false;
        }
        let line = if line.starts_with("# allow_key_export = false") {
            line.replacen("# allow_key_export = false", "allow_key_export = true", 1)
        } else if in_tun && line.starts_with("# ") {
            line[2..].to_owned()
        } else {
            line.to_owned()
        };
        src.push_str(&line);
        src.push('\n');
    }
    let c = parse(&src, "latchkey.toml", &dir).unwrap();
    assert!(c.key_export);
    let t = c.tun.expect("the [daemon.tun] block");
    assert_eq!(t.name, "latchkey0");
    assert_eq!(t.mtu, 1400);
    assert_eq!(t.addresses, [("10.98.0.1".parse().unwrap(), 24)]);
    assert!(t.routes && !t.latch_flows && t.raw_esp && t.offload);
    assert_eq!(t.udp_idle, Duration::from_secs(60));
}

#[test]
fn tun_datapath_fields_and_key_export() {
    let c = ok("[daemon]\nallow_key_export = true\n[daemon.tun]\nname = \"lk9\"\nlatch_flows = true\nudp_idle = \"2m\"\nraw_esp = false\noffload = true\n");
    assert!(c.key_export);
    let t = c.tun.unwrap();
    assert_eq!(t.name, "lk9");
    assert!(t.latch_flows && !t.raw_esp && t.offload);
    assert_eq!(t.udp_idle, Duration::from_secs(120));
    // Defaults: the endpoint's, but offload on (the daemon's fast path).
    let d = ok("[daemon.tun]\n").tun.unwrap();
    assert_eq!(
        d,
        endpoint::TunConfig {
            offload: true,
            ..endpoint::TunConfig::default()
        }
    );
    assert!(!ok("[daemon.tun]\noffload = false\n").tun.unwrap().offload);
    assert!(!ok("[daemon]\n").key_export);
    assert_eq!(ok("[daemon]\n").pin_file, None);
    let pins = ok("[daemon]\npin_file = \"pins\"\n").pin_file.unwrap();
    assert!(
        pins.ends_with("pins") && pins != Path::new("pins"),
        "{}",
        pins.display()
    );
    assert_eq!(
        ok("[daemon]\npin_file = \"/var/lib/latchkey/pins\"\n").pin_file,
        Some("/var/lib/latchkey/pins".into())
    );

    let e = err("[daemon.tun]\nlatch_flows = true\nudp_idle = \"5q\"\n");
    assert_eq!(
        (e.line, e.column, e.field.as_deref()),
        (3, 12, Some("tun.udp_idle"))
    );
    assert_eq!(e.kind, ConfigErrorKind::Schema);
    let e = err("[daemon.tun]\nlatch_flows = true\nudp_idle = 0\n");
    assert_eq!((e.line, e.field.as_deref()), (3, Some("tun.udp_idle")));
    let e = err("[daemon.tun]\noffload = \"yes\"\n");
    assert_eq!((e.line, e.field.as_deref()), (2, Some("offload")));
    let e = err("[daemon]\nallow_key_export = 1\n");
    assert_eq!((e.line, e.field.as_deref()), (2, Some("allow_key_export")));
    let e = err("[daemon.tun]\nlatch_flow = true\n");
    assert!(e.message.contains("unknown field \"latch_flow\""), "{e}");
}

#[test]
fn schema_mistakes_say_where() {
    let e = err(
        "[[connection]]\nname = \"x\"\nauth = \"psk\"\npsk_file = \"k.psk\"\nremot = \"1.2.3.4\"\n",
    );
    assert_eq!(e.kind, ConfigErrorKind::Schema);
    assert_eq!((e.line, e.field.as_deref()), (5, Some("remot")));
    assert!(e.message.starts_with("unknown field \"remot\""), "{e}");

    let e = err("[[connection]]\nname = \"x\"\nauth = \"pks\"\n");
    assert_eq!(
        e.to_string(),
        "d.toml:3:8: field \"auth\": unknown auth method \"pks\" (expected psk, null, certificate or pubkey)"
    );

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nlocal_ts = [\"10.0.0.0/8\",\n  \"10.0.0.0/99\"]\n");
    assert_eq!(
        (e.line, e.column, e.field.as_deref()),
        (5, 3, Some("local_ts"))
    );

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\ndpd = \"30x\"\n");
    assert_eq!(e.to_string(), "d.toml:4:7: field \"dpd\": \"30x\" is not a duration (expected seconds, or a string like \"90s\", \"30m\", \"4h\", \"1d\")");
    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nike_rekey = 0\n");
    assert_eq!(e.field.as_deref(), Some("ike_rekey"));

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nike_proposals = \"aes128gcm16-prfsha256-x99\"\n");
    assert_eq!((e.line, e.field.as_deref()), (4, Some("ike_proposals")));

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nremote = \"somewhere\"\n");
    assert_eq!(
        e.to_string(),
        "d.toml:4:10: field \"remote\": \"somewhere\": expected ADDR or ADDR:PORT"
    );

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nlocal_id = \"word\"\n");
    assert_eq!((e.line, e.field.as_deref()), (4, Some("local_id")));

    let e = err("[daemon]\nlisten = \"127.0.0.1:600\"\nnatt_port = 600\n");
    assert_eq!((e.line, e.field.as_deref()), (3, Some("natt_port")));
    assert_eq!(e.kind, ConfigErrorKind::Inconsistent);
    let e = err("[daemon]\nlisten = \"127.0.0.1:4500\"\n");
    assert_eq!((e.line, e.field.as_deref()), (2, Some("listen")));

    let e = err("[daemon]\nnatt_port = 70000\n");
    assert_eq!((e.line, e.field.as_deref()), (2, Some("natt_port")));

    let e = err("[daemon]\nlisten = \"0.0.0.0:500\"\n[daemon.tun]\naddresses = [\"10.0.0.1\"]\n");
    assert_eq!((e.line, e.field.as_deref()), (4, Some("tun.addresses")));

    let e = err("[[connections]]\nname = \"x\"\n");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("unknown field \"connections\""), "{e}");

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
}

#[test]
fn inconsistent_connections() {
    let e = err("[[connection]]\nname = \"x\"\nauth = \"psk\"\n");
    assert_eq!(e.kind, ConfigErrorKind::Inconsistent);
    assert_eq!((e.line, e.field.as_deref()), (3, Some("auth")));
    assert!(e.message.contains("psk_file"));

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\npsk_file = \"k.psk\"\n");
    assert_eq!((e.line, e.field.as_deref()), (4, Some("psk_file")));

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\n\n[[connection]]\nname = \"x\"\nauth = \"null\"\n");
    assert_eq!(
        e.to_string(),
        "d.toml:6:8: field \"name\": two [[connection]] entries are named \"x\""
    );

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nstart = \"start\"\n");
    assert_eq!((e.line, e.field.as_deref()), (2, Some("name")));
    assert!(e.message.contains("needs remote"));

    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nclose_action = \"start\"\n");
    assert_eq!((e.line, e.field.as_deref()), (4, Some("close_action")));
    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nclose_action = \"restart\"\n");
    assert_eq!((e.kind, e.line), (ConfigErrorKind::Schema, 4));

    let e = err("[[connection]]\nname = \"x\"\nauth = \"certificate\"\n");
    assert_eq!(
        e.to_string(),
        "d.toml:3:8: field \"auth\": auth = certificate needs key = \"FILE\" (our private key)"
    );
    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\nkey = \"missing.key\"\n");
    assert_eq!(e.kind, ConfigErrorKind::File);
    assert_eq!((e.line, e.field.as_deref()), (4, Some("key")));
    assert!(e.message.contains("missing.key"), "{e}");

    let e = err("[daemon]\npolicy_file = \"p.toml\"\n[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"psk\"]\n");
    assert_eq!((e.line, e.field.as_deref()), (2, Some("policy_file")));
}

#[test]
fn policy_mistakes_come_from_pad_with_positions() {
    // Inline: the PAD parser reports against this file.
    let e = err("[[connection]]\nname = \"x\"\nauth = \"null\"\n\n[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"pks\"]\n");
    assert_eq!(
        (e.file.as_str(), e.line, e.field.as_deref()),
        ("d.toml", 8, Some("auth"))
    );
    // From policy_file: against that file.
    let dir = tempdir("policy");
    std::fs::write(
        dir.join("p.toml"),
        "[[policy]]\nname = \"p\"\naction = \"protct\"\n",
    )
    .unwrap();
    let e = parse("[daemon]\npolicy_file = \"p.toml\"\n", "d.toml", &dir).unwrap_err();
    assert!(e.file.ends_with("p.toml"), "{e}");
    assert_eq!((e.line, e.field.as_deref()), (3, Some("action")));
    std::fs::write(
        dir.join("p.toml"),
        "[[policy]]\nname = \"p\"\naction = \"bypass\"\n",
    )
    .unwrap();
    let c = parse("[daemon]\npolicy_file = \"p.toml\"\n", "d.toml", &dir).unwrap();
    assert_eq!(c.policy.unwrap().spd.entries().len(), 1);
    let e = parse("[daemon]\npolicy_file = \"nope.toml\"\n", "d.toml", &dir).unwrap_err();
    assert_eq!((e.kind, e.line), (ConfigErrorKind::File, 2));
}

#[test]
fn listener_latches() {
    let c = ok("[[listener_latch]]\nlocal = \"10.0.0.1:53\"\n[[listener_latch]]\nproto = \"tcp\"\nlocal = \"[::]:443\"\n");
    assert_eq!(c.listener_latches.len(), 2);
    assert_eq!(c.listener_latches[0].proto, 17);
    assert_eq!(c.listener_latches[1].proto, 6);
    let e = err("[[listener_latch]]\nproto = \"udpp\"\nlocal = \"0.0.0.0:1\"\n");
    assert_eq!((e.line, e.field.as_deref()), (2, Some("proto")));
    let e = err("[[listener_latch]]\nlocal = \"0.0.0.0\"\n");
    assert_eq!(
        e.to_string(),
        "d.toml:2:9: field \"local\": \"0.0.0.0\": expected ADDR:PORT (0.0.0.0:PORT for every local address)"
    );
    let e = err(
        "[[listener_latch]]\nlocal = \"0.0.0.0:1\"\n[[listener_latch]]\nlocal = \"0.0.0.0:1\"\n",
    );
    assert_eq!((e.kind, e.line), (ConfigErrorKind::Inconsistent, 4));
    let e = err("[[listener_latch]]\nport = 1\n");
    assert_eq!(e.field.as_deref(), Some("port"));
}

#[test]
fn restart_only_changes_are_named() {
    let a = ok("[daemon]\nlisten = \"127.0.0.1:500\"\n");
    let b = ok("[daemon]\nlisten = \"127.0.0.1:501\"\n[daemon.tun]\n");
    assert_eq!(b.restart_only_changes(&a), ["listen", "tun"]);
    let c = ok("[daemon]\nlisten = \"127.0.0.1:500\"\nallow_key_export = true\n[daemon.tun]\nlatch_flows = true\n");
    assert_eq!(c.restart_only_changes(&a), ["tun", "allow_key_export"]);
    assert!(a.restart_only_changes(&a).is_empty());
}

/// The compose example's two configurations parse and fit together:
/// `left` starts a connection to `right`'s address, both BTNS.
#[test]
fn docker_example_configs_parse() {
    let dir = tempdir("docker");
    let left = parse(
        include_str!("../../../dist/docker/left.toml"),
        "left.toml",
        &dir,
    )
    .unwrap();
    let right = parse(
        include_str!("../../../dist/docker/right.toml"),
        "right.toml",
        &dir,
    )
    .unwrap();
    let l = &left.connections[0];
    assert_eq!(l.start, StartAction::Start);
    assert_eq!(l.remote, Some("172.28.0.11:500".parse().unwrap()));
    let r = &right.connections[0];
    assert_eq!(r.remote, None);
    assert_eq!(l.peer.child.local_ts, r.peer.child.remote_ts);
    assert_eq!(l.peer.child.remote_ts, r.peer.child.local_ts);
    assert_eq!(
        (l.peer.local_auth, r.peer.remote_auth),
        (AuthMethod::Null, AuthMethod::Null)
    );
    let compose = include_str!("../../../dist/docker/compose.yaml");
    assert!(compose.contains("ipv4_address: 172.28.0.11"));
}
