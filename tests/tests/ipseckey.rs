//! IPSECKEY (RFC 4025) through a real DNS server, RFC 4322 style: the
//! initiator has no key configured for its peer, looks the key up in DNS
//! and authenticates the responder with it.
//!
//! The DNS server is NSD (Debian package `nsd`, installed by
//! interop/setup.sh) on loopback, on a free high port, serving zones the
//! test writes into a temporary directory, and killed (with its children)
//! when the test ends, whatever happens. Without the `nsd` binary the
//! tests print why and pass without checking anything.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: failing loudly is the point"
)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::{Gateway, IpsecKey, KeyAlgorithm, PrivateKey};
use endpoint::{
    peer_config, peer_keys_from_dns, AuthMethod, DnsError, Endpoint, EndpointConfig, PeerCredential,
};
use rand_core::SeedableRng;

const ZONE: &str = "latchkey.test";

/// Where `nsd` is, if installed (`LATCHKEY_NSD` overrides; a path that
/// is not a file there means "absent", to try the skip).
fn nsd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LATCHKEY_NSD") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nsd"))
        .find(|p| p.is_file())
}

/// A running NSD; dropping it stops the process group and removes the
/// directory.
struct Nsd {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (xfrd, server children).
        signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for the DNS server");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Start NSD serving `latchkey.test` (the given extra lines) and
/// `0.0.127.in-addr.arpa` (the given reverse lines). `None` (with the
/// reason printed) when NSD is not installed.
async fn start_nsd(records: &str, reverse: &str) -> Option<Nsd> {
    let Some(bin) = nsd_binary() else {
        eprintln!(
            "SKIPPED: the DNS server binary `nsd` is not installed \
             (Debian package nsd; interop/setup.sh installs it)"
        );
        return None;
    };
    let dir = std::env::temp_dir().join(format!(
        "latchkey-nsd-{}-{}",
        std::process::id(),
        rand_core::RngCore::next_u64(&mut rand_core::OsRng)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let soa = |origin: &str| {
        format!(
            "$ORIGIN {origin}.\n$TTL 60\n\
             @ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60\n\
             @ IN NS ns.{ZONE}.\n"
        )
    };
    write(
        &dir.join("forward.zone"),
        &format!("{}ns IN A 127.0.0.1\n{records}", soa(ZONE)),
    );
    write(
        &dir.join("reverse.zone"),
        &format!("{}{reverse}", soa("0.0.127.in-addr.arpa")),
    );
    let d = dir.display();
    write(
        &dir.join("nsd.conf"),
        &format!(
            "server:\n\
             \x20 ip-address: 127.0.0.1@{port}\n\
             \x20 port: {port}\n\
             \x20 username: \"\"\n\
             \x20 chroot: \"\"\n\
             \x20 zonesdir: \"{d}\"\n\
             \x20 database: \"\"\n\
             \x20 pidfile: \"{d}/nsd.pid\"\n\
             \x20 xfrdfile: \"{d}/xfrd.state\"\n\
             \x20 zonelistfile: \"{d}/zone.list\"\n\
             \x20 xfrdir: \"{d}\"\n\
             \x20 logfile: \"{d}/nsd.log\"\n\
             \x20 server-count: 1\n\
             \x20 verbosity: 1\n\
             remote-control:\n\
             \x20 control-enable: no\n\
             zone:\n\
             \x20 name: \"{ZONE}\"\n\
             \x20 zonefile: \"forward.zone\"\n\
             zone:\n\
             \x20 name: \"0.0.127.in-addr.arpa\"\n\
             \x20 zonefile: \"reverse.zone\"\n"
        ),
    );
    use std::os::unix::process::CommandExt as _;
    let child = Command::new(&bin)
        .arg("-d")
        .arg("-c")
        .arg(dir.join("nsd.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut nsd = Nsd {
        child,
        dir,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    };
    // Ready when it answers (NOERROR without IPSECKEY for ns.latchkey.test).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = nsd.child.try_wait() {
            let log = std::fs::read_to_string(nsd.dir.join("nsd.log")).unwrap_or_default();
            panic!("nsd exited ({status}):\n{log}");
        }
        match peer_keys_from_dns(nsd.addr, &format!("ns.{ZONE}"), Duration::from_millis(300)).await
        {
            Err(DnsError::NoRecord { .. }) => break,
            other if Instant::now() > deadline => {
                let log = std::fs::read_to_string(nsd.dir.join("nsd.log")).unwrap_or_default();
                panic!("nsd did not answer in time ({other:?}):\n{log}");
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Some(nsd)
}

fn ts(s: &str) -> pad::TrafficSelector {
    s.parse().unwrap()
}

fn raw_key_peer(
    name: &str,
    own: &Arc<PrivateKey>,
    peers: Vec<certs::PublicKey>,
) -> endpoint::PeerConfig {
    let mut p = peer_config(
        name,
        AuthMethod::RawPublicKey,
        None,
        ts("10.0.0.0/24"),
        ts("10.0.0.0/24"),
    );
    p.credentials = endpoint::Credentials {
        private_key: Some(own.clone()),
        peer_keys: peers,
        ..Default::default()
    };
    p
}

struct Setup {
    responder: Endpoint,
    initiator: Endpoint,
    responder_key: Arc<PrivateKey>,
    initiator_key: Arc<PrivateKey>,
    mallory_key: Arc<PrivateKey>,
}

/// A responder on loopback with an Ed25519 raw key, accepting the
/// initiator's key; an initiator endpoint; a third key nobody holds here.
async fn endpoints() -> Setup {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4322);
    let responder_key = Arc::new(PrivateKey::generate(KeyAlgorithm::Ed25519, &mut rng).unwrap());
    let initiator_key = Arc::new(PrivateKey::generate(KeyAlgorithm::EcdsaP256, &mut rng).unwrap());
    let mallory_key = Arc::new(PrivateKey::generate(KeyAlgorithm::EcdsaP256, &mut rng).unwrap());
    let responder = Endpoint::bind(
        EndpointConfig::loopback(),
        vec![raw_key_peer(
            "initiator",
            &responder_key,
            vec![initiator_key.public_key().clone()],
        )],
    )
    .await
    .unwrap();
    let mut cfg = EndpointConfig::loopback();
    cfg.connect_timeout = Duration::from_secs(10);
    let initiator = Endpoint::bind(cfg, vec![]).await.unwrap();
    Setup {
        responder,
        initiator,
        responder_key,
        initiator_key,
        mallory_key,
    }
}

/// The zone lines: `right` holds the responder's key (with 127.0.0.1 as
/// gateway), `wrong` holds another key, and the reverse name of 127.0.0.1
/// the responder's key again.
fn zone_lines(s: &Setup) -> (String, String) {
    let right = IpsecKey::from_public_key(
        10,
        Gateway::Ipv4(Ipv4Addr::LOCALHOST),
        s.responder_key.public_key(),
    )
    .unwrap();
    let wrong = IpsecKey::from_public_key(10, Gateway::None, s.mallory_key.public_key()).unwrap();
    let reverse =
        IpsecKey::from_public_key(10, Gateway::None, s.responder_key.public_key()).unwrap();
    // `big`: six RSA records of 2048-bit moduli (RFC 3110 form, synthetic
    // octets), about 1.6 kB: more than the 1232 octets we accept over UDP,
    // so the answer comes truncated and is asked again over TCP.
    let mut big = String::new();
    for i in 0..6u8 {
        let mut key = vec![3, 1, 0, 1];
        key.extend((0..256u16).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i) | 0x80));
        let rec = IpsecKey {
            precedence: 20 - i,
            gateway: Gateway::None,
            algorithm: certs::ipseckey::algorithm::RSA,
            public_key: key,
        };
        big.push_str(&format!("big IN IPSECKEY {rec}\n"));
    }
    (
        format!("right IN IPSECKEY {right}\nwrong IN IPSECKEY {wrong}\n{big}"),
        format!("1 IN IPSECKEY {reverse}\n"),
    )
}

#[tokio::test]
async fn large_answer_is_truncated_over_udp_and_read_over_tcp() {
    let s = endpoints().await;
    let (fwd, rev) = zone_lines(&s);
    let Some(nsd) = start_nsd(&fwd, &rev).await else {
        return;
    };
    let records =
        endpoint::lookup_ipseckey(nsd.addr, &format!("big.{ZONE}"), Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(records.len(), 6);
    // In precedence order, lowest first (RFC 4025 2.2).
    let precedences: Vec<u8> = records.iter().map(|r| r.precedence).collect();
    assert_eq!(precedences, [15, 16, 17, 18, 19, 20]);
    assert!(records.iter().all(|r| r.public_key.len() == 260));
    drop(nsd);
}

#[tokio::test]
async fn peer_authenticated_with_its_key_from_dns() {
    let s = endpoints().await;
    let (fwd, rev) = zone_lines(&s);
    let Some(nsd) = start_nsd(&fwd, &rev).await else {
        return;
    };
    // The initiator has no key for the responder: DNS supplies it.
    let dns = peer_keys_from_dns(nsd.addr, &format!("right.{ZONE}"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(dns.keys, vec![s.responder_key.public_key().clone()]);
    assert_eq!(dns.gateways, vec![Gateway::Ipv4(Ipv4Addr::LOCALHOST)]);
    assert_eq!(dns.name, format!("right.{ZONE}."));
    // The reverse name of the responder's address gives the same key.
    let by_addr = peer_keys_from_dns(
        nsd.addr,
        &endpoint::reverse_name(s.responder.ike_addr().ip()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(by_addr.keys, dns.keys);

    let mut peer = raw_key_peer("responder", &s.initiator_key, vec![]);
    peer.credentials = dns.credentials(peer.credentials);
    peer.remote_natt_port = s.responder.natt_addr().port();
    let accept = async {
        tokio::time::timeout(Duration::from_secs(10), s.responder.accept())
            .await
            .ok()
            .flatten()
    };
    let (ch, acc) = tokio::join!(s.initiator.connect(peer, s.responder.ike_addr()), accept);
    let ch = ch.unwrap();
    let _rch = acc.expect("the responder accepted a channel");
    assert_eq!(ch.ike_sa().peer_auth, AuthMethod::RawPublicKey);
    match ch.peer_credential() {
        PeerCredential::RawPublicKey(k) => assert_eq!(k, s.responder_key.public_key()),
        other => panic!("expected the responder's raw key, got {other:?}"),
    }
    drop(nsd);
}

#[tokio::test]
async fn missing_record_is_a_clean_error_naming_name_and_server() {
    let s = endpoints().await;
    let (fwd, rev) = zone_lines(&s);
    let Some(nsd) = start_nsd(&fwd, &rev).await else {
        return;
    };
    // NXDOMAIN.
    let err = peer_keys_from_dns(nsd.addr, &format!("absent.{ZONE}"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NoRecord { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("absent.{ZONE}")), "{text}");
    assert!(text.contains(&nsd.addr.to_string()), "{text}");
    assert!(text.contains("NXDOMAIN"), "{text}");
    // The name exists, but without IPSECKEY (NODATA).
    let err = peer_keys_from_dns(nsd.addr, &format!("ns.{ZONE}"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NoRecord { .. }), "{err:?}");
    assert!(err.to_string().contains(&nsd.addr.to_string()));
    // A server that is not there: an error naming it, within the timeout.
    drop(nsd);
    let gone = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let t0 = Instant::now();
    let err = peer_keys_from_dns(gone, &format!("right.{ZONE}"), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains(&gone.to_string()), "{err}");
}

#[tokio::test]
async fn key_in_dns_not_the_peers_fails_authentication() {
    let s = endpoints().await;
    let (fwd, rev) = zone_lines(&s);
    let Some(nsd) = start_nsd(&fwd, &rev).await else {
        return;
    };
    let dns = peer_keys_from_dns(nsd.addr, &format!("wrong.{ZONE}"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(dns.keys, vec![s.mallory_key.public_key().clone()]);
    assert!(dns.gateways.is_empty());
    let mut peer = raw_key_peer("responder", &s.initiator_key, vec![]);
    peer.credentials = dns.credentials(peer.credentials);
    peer.remote_natt_port = s.responder.natt_addr().port();
    let err = s
        .initiator
        .connect(peer, s.responder.ike_addr())
        .await
        .unwrap_err();
    match &err {
        endpoint::Error::Ike {
            error: ike::Error::AuthenticationFailed { .. },
            ..
        } => {}
        other => panic!("AUTHENTICATION_FAILED expected, got {other}"),
    }
    drop(nsd);
}
