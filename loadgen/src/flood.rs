//! `flood`: IKE_SA_INIT requests from many spoofed IPv4 source addresses,
//! written with IP_HDRINCL on a raw socket (IPPROTO_RAW), as fast as the
//! generator can (or at `--rate`). Every request is one real IKE_SA_INIT
//! (made by `ike::Ike`) with a fresh initiator SPI and a source address
//! walking through `--sources`.
//!
//! For network namespaces set up for it only (interop/bench/run.sh): the
//! sources (198.18.0.0/15 by default, RFC 2544 benchmarking space) are
//! routed back into the generator's namespace, where `--listen` binds the
//! IKE port to count what the responder answered: COOKIE notifications
//! (RFC 7296 2.6) versus full IKE_SA_INIT responses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ike::{AcceptAll, ChildConfig, Config, Ike, PeerConfig};
use pad::{AuthMethod, EspProposal, Identity, IkeProposal, Mode};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::util;

/// IPPROTO_RAW: sending implies IP_HDRINCL (raw(7)).
const IPPROTO_RAW: i32 = 255;
const NOTIFY: u8 = 41;
const SA: u8 = 33;
const COOKIE: u16 = 16390;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The responder's IKE address and port (IPv4).
    #[arg(long)]
    target: SocketAddrV4,
    /// Spoofed source addresses (IPv4 CIDR), walked in order.
    #[arg(long, default_value = "198.18.0.0/15")]
    sources: String,
    /// Source UDP port.
    #[arg(long, default_value_t = 500)]
    source_port: u16,
    /// Seconds to flood.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Requests per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// IKE proposal of the requests.
    #[arg(long, default_value = "aes128gcm16-prfsha256-x25519")]
    ike: String,
    /// Bind UDP 0.0.0.0:PORT and count the answers (cookies vs full
    /// responses); the sources must be routed to this namespace as local.
    #[arg(long, value_name = "PORT")]
    listen: Option<u16>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_cidr(s: &str) -> Result<(u32, u32)> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("--sources: want A.B.C.D/LEN"))?;
    let a: Ipv4Addr = a.parse().context("--sources address")?;
    let l: u32 = l.parse().context("--sources prefix length")?;
    if !(8..=32).contains(&l) {
        bail!("--sources: prefix length 8..=32");
    }
    let size = 1u32 << (32 - l);
    Ok((u32::from(a) & !(size - 1), size))
}

/// One IKE_SA_INIT request toward `target`, made by the real initiator.
fn template(a: &Args) -> Result<Vec<u8>> {
    let config = Config {
        ike_port: a.source_port,
        natt_port: 4500,
        peers: vec![],
        cookie_threshold: usize::MAX,
        max_half_open: usize::MAX,
        retransmit: Default::default(),
        fragmentation: Default::default(),
    };
    let mut ike = Ike::new(
        config,
        Box::new(ChaCha20Rng::from_rng(rand_core::OsRng).map_err(|e| anyhow!("{e}"))?),
        Box::new(AcceptAll),
    );
    let peer = PeerConfig {
        name: "flood".into(),
        local_id: Identity::Null,
        remote_id: None,
        local_auth: AuthMethod::Null,
        remote_auth: AuthMethod::Null,
        psk: None,
        credentials: Default::default(),
        ike_proposals: IkeProposal::parse_list(&a.ike).map_err(|e| anyhow!("--ike: {e}"))?,
        child: ChildConfig {
            esp_proposals: EspProposal::parse_list("aes128gcm16").map_err(|e| anyhow!("{e}"))?,
            local_ts: vec!["0.0.0.0/0".parse().map_err(|e| anyhow!("{e:?}"))?],
            remote_ts: vec!["0.0.0.0/0".parse().map_err(|e| anyhow!("{e:?}"))?],
            mode: Mode::Tunnel,
            rekey_after: None,
            replay_window: 1024,
        },
        ike_rekey_after: None,
        dpd_interval: None,
        force_encap: false,
        remote_natt_port: 4500,
    };
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), a.source_port);
    ike.initiate(Instant::now(), peer, local, SocketAddr::V4(a.target));
    let t = ike
        .poll_transmit()
        .ok_or_else(|| anyhow!("no IKE_SA_INIT made"))?;
    Ok(t.data)
}

/// IPv4 + UDP header in front of `ike`; checksums left to the kernel (IP)
/// and zero (UDP, allowed over IPv4).
fn packet(ike: &[u8], sport: u16, dst: SocketAddrV4) -> Result<Vec<u8>> {
    let udp_len = u16::try_from(8 + ike.len()).context("request too big")?;
    let total = udp_len + 20;
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&[0, 0, 0, 0]); // source, patched per packet
    p.extend_from_slice(&dst.ip().octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(ike);
    Ok(p)
}

#[derive(Default)]
struct Answers {
    cookies: AtomicU64,
    responses: AtomicU64,
    other: AtomicU64,
}

fn classify(d: &[u8], ans: &Answers) {
    let np = d.get(16).copied();
    let notify = d.get(34..36).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if np == Some(NOTIFY) && notify == Some(COOKIE) {
        ans.cookies.fetch_add(1, Ordering::Relaxed);
    } else if np == Some(SA) {
        ans.responses.fetch_add(1, Ordering::Relaxed);
    } else {
        ans.other.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn run(a: Args) -> Result<()> {
    let (base, size) = parse_cidr(&a.sources)?;
    let ike = template(&a)?;
    let mut pkt = packet(&ike, a.source_port, a.target)?;
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))
        .context("raw socket (needs root / CAP_NET_RAW)")?;
    let _ = sock.set_send_buffer_size(8 << 20);
    let dst = SockAddr::from(SocketAddrV4::new(*a.target.ip(), 0));

    let ans = Arc::new(Answers::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rx = match a.listen {
        Some(port) => {
            let s = util::udp_socket(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?;
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let (ans, stop) = (ans.clone(), stop.clone());
            Some(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, _)) = s.recv_from(&mut buf) {
                        classify(&buf[..n], &ans);
                    }
                }
            }))
        }
        None => None,
    };

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.duration);
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    let ike_off = 28;
    loop {
        if sent.is_multiple_of(64) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if a.rate > 0 {
                let due = (now.duration_since(start).as_secs_f64() * a.rate as f64) as u64;
                if sent >= due {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
            }
        }
        let src = base.wrapping_add((sent % u64::from(size)) as u32);
        pkt[12..16].copy_from_slice(&src.to_be_bytes());
        // A fresh initiator SPI per request (never zero).
        let spi = sent.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        pkt[ike_off..ike_off + 8].copy_from_slice(&spi.to_be_bytes());
        match sock.send_to(&pkt, &dst) {
            Ok(_) => sent += 1,
            Err(_) => {
                errors += 1;
                if errors.is_multiple_of(1024) {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Answers still on the way.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = rx {
        let _ = h.join();
    }
    let rate = sent as f64 / secs;
    let (ck, rs, ot) = (
        ans.cookies.load(Ordering::Relaxed),
        ans.responses.load(Ordering::Relaxed),
        ans.other.load(Ordering::Relaxed),
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "sent": sent, "seconds": secs, "rate_per_s": rate, "send_errors": errors,
                "answers": {"cookies": ck, "responses": rs, "other": ot},
            })
        );
    } else {
        println!("sent {sent} IKE_SA_INIT in {secs:.2} s: {rate:.0}/s ({errors} send errors)");
        if a.listen.is_some() {
            println!("answers: {ck} cookies, {rs} full responses, {ot} other");
        }
    }
    Ok(())
}
