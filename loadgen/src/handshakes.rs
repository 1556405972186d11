//! `handshakes`: keep N IKEv2 handshakes in flight against one responder.
//!
//! The initiators are `ike::Ike` instances ("shards"), each with its own
//! identity (`@<prefix>-<k>.loadgen.invalid`) so that the INITIAL_CONTACT
//! a shard sends with its first IKE SA (RFC 7296 2.4) never makes the
//! responder drop the SAs of another shard. Replies are routed to their
//! shard by the initiator SPI. One thread, two UDP sockets (IKE and NAT-T,
//! the non-ESP marker on the latter, RFC 3948).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdp};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ike::{AcceptAll, ChildConfig, Config, Event, Ike, IkeSaId, PeerConfig, RetransmitConfig};
use pad::{AuthMethod, EspProposal, Identity, IkeProposal, Mode, TrafficSelector};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::net::UdpSocket;

use crate::util;

/// Non-ESP marker of IKE on the NAT-T port (RFC 3948 2.2).
const MARKER: [u8; 4] = [0; 4];

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The responder's IKE address and port.
    #[arg(long)]
    target: SocketAddr,
    /// The pre-shared key file (`0x...` is hex, as in strongSwan).
    #[arg(long, value_name = "FILE")]
    psk_file: PathBuf,
    /// Handshakes kept in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to start handshakes for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop starting handshakes after this many (with --hold: SAs to hold).
    #[arg(long)]
    count: Option<u64>,
    /// IKE proposal (strongSwan syntax).
    #[arg(long, default_value = "aes128gcm16-prfsha256-x25519")]
    ike: String,
    /// ESP proposal (strongSwan syntax).
    #[arg(long, default_value = "aes128gcm16")]
    esp: String,
    /// Keep the SAs (the default deletes each IKE SA once its child SA is
    /// up). The SAs are left on the responder when the generator exits.
    #[arg(long)]
    hold: bool,
    /// With --hold: once each child SA is up, send one UDP datagram
    /// through it (ESP in UDP to the responder's NAT-T port, RFC 3948; this
    /// asks for UDP encapsulation, `force_encap`) and count the answers
    /// that come back through the SA, checked and decrypted (an echoing
    /// responder such as `latchkey listen --echo` answers every one). The
    /// SAs then hold both directions' expanded keys, as SAs carrying
    /// traffic do.
    #[arg(long, requires = "hold")]
    ping: bool,
    /// Our address (default: the one the kernel picks toward --target).
    #[arg(long)]
    local: Option<IpAddr>,
    /// Our IKE port.
    #[arg(long, default_value_t = 500)]
    ike_port: u16,
    /// Our NAT-T port (IKE after a NAT-T move).
    #[arg(long, default_value_t = 4500)]
    natt_port: u16,
    /// The responder's NAT-T port.
    #[arg(long, default_value_t = 4500)]
    remote_natt_port: u16,
    /// Our traffic selector (TSi).
    #[arg(long, default_value = "10.98.0.0/24")]
    local_ts: TrafficSelector,
    /// The responder's traffic selector (TSr).
    #[arg(long, default_value = "10.99.0.0/24")]
    remote_ts: TrafficSelector,
    /// `ike::Ike` instances (each with its own identity).
    #[arg(long, default_value_t = 16)]
    shards: usize,
    /// Identity prefix: shard k is `@PREFIX-k.loadgen.invalid`.
    #[arg(long, default_value = "lg")]
    id_prefix: String,
    /// Seconds to wait after the last start for handshakes and deletes
    /// still under way.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// First retransmission timeout in milliseconds (doubling, 5 tries).
    #[arg(long, default_value_t = 1000)]
    retransmit_ms: u64,
    /// RNG seed (default: from the OS).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

struct Shard {
    ike: Ike,
    peer: PeerConfig,
    /// IKE SAs being set up: when they were started.
    pending: HashMap<IkeSaId, Instant>,
    /// Our SPI of every IKE SA we still hold (for routing; removed on delete).
    spis: HashMap<IkeSaId, u64>,
    deleting: HashSet<IkeSaId>,
}

#[derive(Default)]
struct Counts {
    started: u64,
    completed: u64,
    completed_in_window: u64,
    failed: u64,
    deleted: u64,
    unroutable: u64,
    esp_in: u64,
    /// --ping: datagrams sent, one per child SA.
    pings: u64,
    /// --ping: answers decrypted by the child SA's inbound SA, with the
    /// payload sent.
    answers: u64,
    /// --ping: ESP that did not decapsulate, or an answer that was not ours.
    bad_answers: u64,
    failures: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
}

pub(crate) fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(drive(a))
}

fn peer_config(a: &Args, shard: usize, psk: &certs::Psk) -> Result<PeerConfig> {
    Ok(PeerConfig {
        name: format!("{}-{shard}", a.id_prefix),
        local_id: Identity::Fqdn(format!("{}-{shard}.loadgen.invalid", a.id_prefix)),
        remote_id: None,
        local_auth: AuthMethod::Psk,
        remote_auth: AuthMethod::Psk,
        psk: Some(psk.clone()),
        credentials: Default::default(),
        ike_proposals: IkeProposal::parse_list(&a.ike).map_err(|e| anyhow!("--ike: {e}"))?,
        child: ChildConfig {
            esp_proposals: EspProposal::parse_list(&a.esp).map_err(|e| anyhow!("--esp: {e}"))?,
            local_ts: vec![a.local_ts],
            remote_ts: vec![a.remote_ts],
            mode: Mode::Tunnel,
            rekey_after: None,
            replay_window: 1024,
        },
        ike_rekey_after: None,
        dpd_interval: None,
        force_encap: a.ping,
        remote_natt_port: a.remote_natt_port,
    })
}

fn local_toward(target: SocketAddr) -> Result<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = StdUdp::bind(any)?;
    s.connect(target)?;
    Ok(s.local_addr()?.ip())
}

async fn drive(a: Args) -> Result<()> {
    if a.concurrency == 0 || a.shards == 0 {
        bail!("--concurrency and --shards must be at least 1");
    }
    let text =
        std::fs::read(&a.psk_file).with_context(|| format!("reading {}", a.psk_file.display()))?;
    let psk = certs::Psk::from_text(&text).map_err(|e| anyhow!("pre-shared key: {e}"))?;
    let local = match a.local {
        Some(l) => l,
        None => local_toward(a.target)?,
    };
    let ike_sock = UdpSocket::from_std(util::udp_socket(SocketAddr::new(local, a.ike_port))?)?;
    let natt_sock = UdpSocket::from_std(util::udp_socket(SocketAddr::new(local, a.natt_port))?)?;
    let ike_addr = ike_sock.local_addr()?;
    let natt_addr = natt_sock.local_addr()?;

    let mut seeder = match a.seed {
        Some(s) => ChaCha20Rng::seed_from_u64(s),
        None => {
            ChaCha20Rng::from_rng(rand_core::OsRng).map_err(|e| anyhow!("OS randomness: {e}"))?
        }
    };
    let mut shards = Vec::with_capacity(a.shards);
    for k in 0..a.shards {
        let config = Config {
            ike_port: ike_addr.port(),
            natt_port: natt_addr.port(),
            peers: vec![],
            cookie_threshold: usize::MAX,
            max_half_open: usize::MAX,
            retransmit: RetransmitConfig {
                initial: Duration::from_millis(a.retransmit_ms),
                ..RetransmitConfig::default()
            },
            fragmentation: Default::default(),
        };
        let rng = ChaCha20Rng::seed_from_u64(seeder.next_u64());
        let mut ike = Ike::new(config, Box::new(rng), Box::new(AcceptAll));
        // The generator shares the CPU with the responder under test: its
        // IKE_SA_INIT key exchange through ring's faster X25519 (the
        // largest part of its cost per handshake) leaves more to the
        // responder, whichever it is.
        ike.set_x25519_source(ike::crypto::X25519Source::System);
        shards.push(Shard {
            ike,
            peer: peer_config(&a, k, &psk)?,
            pending: HashMap::new(),
            spis: HashMap::new(),
            deleting: HashSet::new(),
        });
    }
    // Our SPI -> shard.
    let mut route: HashMap<u64, usize> = HashMap::new();
    let mut c = Counts::default();
    let start = Instant::now();
    let window_end = start + Duration::from_secs_f64(a.duration);
    let hard_end = window_end + Duration::from_secs_f64(a.drain);
    let mut next_shard = 0usize;
    let mut in_flight = 0usize;
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(2048);
    let mut last_completion = start;
    let sockets = Sockets {
        ike: &ike_sock,
        natt: &natt_sock,
        ike_addr,
        natt_addr,
    };
    // Transmits the sockets refused (`WouldBlock`), sent with a wait.
    let mut later: Vec<(bool, Vec<u8>, SocketAddr)> = Vec::new();
    // --ping: the children's SAs, each direction only as long as needed
    // (outbound: one packet; inbound: until the answer).
    let mut sad = esp::Sad::new();
    let mut to_ping: Vec<ike::ChildSaInfo> = Vec::new();
    let drain = Duration::from_secs_f64(a.drain);
    let mut last_ping = start;

    loop {
        let now = Instant::now();
        let starting = now < window_end && a.count.is_none_or(|n| c.started < n);
        // Keep N in flight.
        while starting && in_flight < a.concurrency && a.count.is_none_or(|n| c.started < n) {
            let k = next_shard;
            next_shard = (next_shard + 1) % shards.len();
            let s = &mut shards[k];
            let id = s.ike.initiate(now, s.peer.clone(), ike_addr, a.target);
            if let Some(info) = s.ike.ike_sa(id) {
                route.insert(info.spi_i, k);
                s.spis.insert(id, info.spi_i);
            }
            s.pending.insert(id, now);
            in_flight += 1;
            c.started += 1;
        }
        // Timers, transmits, events.
        for (k, s) in shards.iter_mut().enumerate() {
            if s.ike.poll_timeout().is_some_and(|t| t <= now) {
                s.ike.handle_timeout(now);
            }
            loop {
                let mut progressed = sockets.send_now(s, k, &mut route, &mut later);
                for (natt, data, to) in later.drain(..) {
                    let sock = if natt { &natt_sock } else { &ike_sock };
                    let _ = sock.send_to(&data, to).await;
                }
                while let Some(ev) = s.ike.poll_event() {
                    progressed = true;
                    let before = c.completed;
                    let held = on_event(
                        s,
                        ev,
                        now,
                        window_end,
                        a.hold,
                        &mut c,
                        &mut in_flight,
                        &mut route,
                    );
                    if let Some(info) = held.filter(|_| a.ping) {
                        to_ping.push(info);
                    }
                    if c.completed > before {
                        last_completion = now;
                    }
                }
                if !progressed {
                    break;
                }
            }
        }
        for info in to_ping.drain(..) {
            match ping(&mut sad, &info, &mut out) {
                Ok(()) => {
                    c.pings += 1;
                    last_ping = Instant::now();
                    match natt_sock.try_send_to(&out, info.remote) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            let _ = natt_sock.send_to(&out, info.remote).await;
                        }
                        Err(_) => {}
                    }
                }
                Err(e) => {
                    *c.failures.entry(format!("ping: {e}")).or_default() += 1;
                }
            }
        }
        let deleting: usize = shards.iter().map(|s| s.deleting.len()).sum();
        // --ping: answers still due, for at most --drain after the last ping.
        let answering = c.pings > c.answers && now < last_ping + drain;
        if !starting && in_flight == 0 && deleting == 0 && !answering {
            break;
        }
        if now >= hard_end {
            break;
        }
        if starting && in_flight < a.concurrency && a.count.is_none_or(|n| c.started < n) {
            // Completions freed slots: refill before waiting.
            continue;
        }
        // Wait for a datagram or the next deadline.
        let mut deadline = hard_end;
        if starting {
            deadline = deadline.min(window_end);
        }
        if answering {
            deadline = deadline.min(last_ping + drain);
        }
        for s in &shards {
            if let Some(t) = s.ike.poll_timeout() {
                deadline = deadline.min(t);
            }
        }
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            _ = ike_sock.readable() => {}
            _ = natt_sock.readable() => {}
            () = sleep => {}
        }
        let now = Instant::now();
        for _ in 0..256 {
            let mut got = false;
            if let Ok((n, from)) = ike_sock.try_recv_from(&mut buf) {
                got = true;
                // The shard's next request leaves now, while the responder
                // may still be busy with the rest of what it sent: neither
                // side then waits for the other's whole burst.
                if let Some(k) =
                    dispatch(&mut shards, &route, now, ike_addr, from, &buf[..n], &mut c)
                {
                    sockets.send_now(&mut shards[k], k, &mut route, &mut later);
                }
            }
            if let Ok((n, from)) = natt_sock.try_recv_from(&mut buf) {
                got = true;
                match buf.get(..n) {
                    Some(d) if d.len() > 4 && d[..4] == MARKER => {
                        if let Some(k) =
                            dispatch(&mut shards, &route, now, natt_addr, from, &d[4..], &mut c)
                        {
                            sockets.send_now(&mut shards[k], k, &mut route, &mut later);
                        }
                    }
                    Some([0xff]) => {}
                    Some(d) if a.ping => {
                        c.esp_in += 1;
                        let mut d = d.to_vec();
                        if answer(&mut sad, &mut d) {
                            c.answers += 1;
                        } else {
                            c.bad_answers += 1;
                        }
                    }
                    _ => c.esp_in += 1,
                }
            }
            if !got {
                break;
            }
        }
    }
    // With --count the window ends with the last completion.
    let end = if a.count.is_some() {
        last_completion.min(window_end)
    } else {
        window_end
    };
    report(&a, &shards, c, start, end)
}

fn dispatch(
    shards: &mut [Shard],
    route: &HashMap<u64, usize>,
    now: Instant,
    local: SocketAddr,
    from: SocketAddr,
    data: &[u8],
    c: &mut Counts,
) -> Option<usize> {
    let Some(spi) = data.get(..8) else {
        c.unroutable += 1;
        return None;
    };
    let spi = u64::from_be_bytes(spi.try_into().unwrap_or_default());
    let k = route.get(&spi).copied();
    match k.and_then(|k| shards.get_mut(k)) {
        Some(s) => s.ike.handle_datagram(now, local, from, data),
        None => c.unroutable += 1,
    }
    k
}

/// The generator's two sockets and their addresses.
struct Sockets<'a> {
    ike: &'a UdpSocket,
    natt: &'a UdpSocket,
    ike_addr: SocketAddr,
    natt_addr: SocketAddr,
}

impl Sockets<'_> {
    /// Send what shard `k` has to send without waiting; what a socket
    /// refuses (or what would overtake something in `later`) goes to
    /// `later` as (NAT-T socket?, octets, to). True if there was anything.
    fn send_now(
        &self,
        s: &mut Shard,
        k: usize,
        route: &mut HashMap<u64, usize>,
        later: &mut Vec<(bool, Vec<u8>, SocketAddr)>,
    ) -> bool {
        let mut any = false;
        while let Some(t) = s.ike.poll_transmit() {
            any = true;
            if let Some(spi) = t.data.get(..8) {
                let spi = u64::from_be_bytes(spi.try_into().unwrap_or_default());
                route.entry(spi).or_insert(k);
            }
            let natt = t.local.port() == self.natt_addr.port()
                && self.natt_addr.port() != self.ike_addr.port();
            let data = if natt {
                let mut d = Vec::with_capacity(t.data.len() + MARKER.len());
                d.extend_from_slice(&MARKER);
                d.extend_from_slice(&t.data);
                d
            } else {
                t.data
            };
            if !later.is_empty() {
                later.push((natt, data, t.remote));
                continue;
            }
            let sock = if natt { self.natt } else { self.ike };
            match sock.try_send_to(&data, t.remote) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => later.push((natt, data, t.remote)),
                _ => {}
            }
        }
        any
    }
}

#[allow(clippy::too_many_arguments, reason = "one call site; the loop's state")]
fn on_event(
    s: &mut Shard,
    ev: Event,
    now: Instant,
    window_end: Instant,
    hold: bool,
    c: &mut Counts,
    in_flight: &mut usize,
    route: &mut HashMap<u64, usize>,
) -> Option<ike::ChildSaInfo> {
    match ev {
        Event::ChildSaEstablished(info) => {
            if let Some(t0) = s.pending.remove(&info.ike_sa) {
                *in_flight -= 1;
                c.completed += 1;
                if now <= window_end {
                    c.completed_in_window += 1;
                }
                let us = now.duration_since(t0).as_micros();
                c.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                if !hold && s.ike.delete_ike(now, info.ike_sa).is_ok() {
                    s.deleting.insert(info.ike_sa);
                }
                if hold {
                    return Some(info);
                }
            }
        }
        Event::IkeSaFailed { sa, error } => {
            fail(s, sa, error.to_string(), c, in_flight, route);
        }
        Event::ChildSaFailed { ike_sa, error } if s.pending.contains_key(&ike_sa) => {
            let _ = s.ike.delete_ike(now, ike_sa);
            fail(s, ike_sa, format!("child SA: {error}"), c, in_flight, route);
        }
        Event::IkeSaDeleted { sa } => {
            if s.deleting.remove(&sa) {
                c.deleted += 1;
            }
            if s.pending.remove(&sa).is_some() {
                *in_flight -= 1;
                c.failed += 1;
                *c.failures.entry("deleted by peer".into()).or_default() += 1;
            }
            if let Some(spi) = s.spis.remove(&sa) {
                route.remove(&spi);
            }
        }
        _ => {}
    }
    None
}

/// The UDP payload of every ping (and, echoed, of every answer).
const PING: &[u8] = b"latchkey-loadgen ping";

/// The inner addresses of a ping: the first address and port of the first
/// selector of each side (the answer comes back with them swapped).
fn ping_ends(info: &ike::ChildSaInfo) -> Option<(SocketAddr, SocketAddr)> {
    let l = info.local_ts.first()?;
    let r = info.remote_ts.first()?;
    let port = |t: &TrafficSelector| t.start_port.max(1).min(t.end_port);
    Some((
        SocketAddr::new(l.addr.start, port(l)),
        SocketAddr::new(r.addr.start, port(r)),
    ))
}

/// Encapsulate one ping into `out` through the child SA's outbound SA
/// (installed for that packet and removed again), and install its inbound
/// SA for the answer.
fn ping(sad: &mut esp::Sad, info: &ike::ChildSaInfo, out: &mut Vec<u8>) -> Result<()> {
    let (src, dst) = ping_ends(info).ok_or_else(|| anyhow!("child SA without selectors"))?;
    let cfg = |inbound: bool| esp::SaConfig {
        spi: if inbound {
            info.inbound_spi
        } else {
            info.outbound_spi
        },
        encr: info.encr,
        integ: info.integ,
        encr_key: if inbound {
            &info.inbound_encr_key
        } else {
            &info.outbound_encr_key
        },
        integ_key: if inbound {
            &info.inbound_integ_key
        } else {
            &info.outbound_integ_key
        },
        esn: info.esn,
        replay_window: info.replay_window,
        mode: info.mode,
        local_ts: info.local_ts.to_vec(),
        remote_ts: info.remote_ts.to_vec(),
        tag: info.id.0,
    };
    let mut inner = vec![0u8; esp::inner::udp_packet_len(src.is_ipv4(), PING.len())];
    let n = esp::inner::build_udp(src, dst, PING, &mut inner)?;
    let next_header = if src.is_ipv4() {
        esp::NEXT_HEADER_IPV4
    } else {
        esp::NEXT_HEADER_IPV6
    };
    sad.add_outbound(cfg(false))?;
    let sealed = sad.encapsulated_len(info.outbound_spi, n).and_then(|len| {
        out.clear();
        out.resize(len, 0);
        sad.encapsulate(info.outbound_spi, next_header, &inner[..n], out)
    });
    sad.remove_outbound(info.outbound_spi);
    out.truncate(sealed?);
    sad.add_inbound(cfg(true))?;
    Ok(())
}

/// One ESP datagram from the responder: an answer if its SA decrypts it
/// and it carries the ping back (UDP, ends swapped); the SA is then
/// removed (one answer per SA).
fn answer(sad: &mut esp::Sad, packet: &mut [u8]) -> bool {
    let Ok(d) = sad.decapsulate(packet) else {
        return false;
    };
    let spi = d.spi;
    let ok = esp::inner::parse(d.payload)
        .ok()
        .and_then(|p| p.udp_payload(d.payload).map(|u| u == PING))
        .unwrap_or(false);
    if ok {
        sad.remove_inbound(spi);
    }
    ok
}

fn fail(
    s: &mut Shard,
    sa: IkeSaId,
    why: String,
    c: &mut Counts,
    in_flight: &mut usize,
    route: &mut HashMap<u64, usize>,
) {
    s.deleting.remove(&sa);
    if s.pending.remove(&sa).is_some() {
        *in_flight -= 1;
        c.failed += 1;
        *c.failures.entry(why).or_default() += 1;
    }
    if let Some(spi) = s.spis.remove(&sa) {
        route.remove(&spi);
    }
}

fn report(
    a: &Args,
    shards: &[Shard],
    mut c: Counts,
    start: Instant,
    window_end: Instant,
) -> Result<()> {
    let window = window_end.min(Instant::now()).duration_since(start);
    // With --count the window ends when the last one completed.
    let secs = window.as_secs_f64().max(1e-9);
    let rate = c.completed_in_window as f64 / secs;
    c.latencies_us.sort_unstable();
    let l = &c.latencies_us;
    let ms = |q: f64| f64::from(util::quantile(l, q)) / 1000.0;
    let retransmits: u64 = shards.iter().map(|s| s.ike.stats().retransmits).sum();
    let unfinished: usize = shards.iter().map(|s| s.pending.len()).sum();
    let held: usize = shards.iter().map(|s| s.ike.ike_sa_count()).sum();
    if a.json {
        let v = serde_json::json!({
            "target": a.target.to_string(),
            "ike": a.ike, "esp": a.esp,
            "concurrency": a.concurrency,
            "window_s": secs,
            "started": c.started,
            "completed": c.completed,
            "completed_in_window": c.completed_in_window,
            "rate_per_s": rate,
            "failed": c.failed,
            "unfinished": unfinished,
            "failures": c.failures,
            "deleted": c.deleted,
            "held": if a.hold { held } else { 0 },
            "retransmits": retransmits,
            "unroutable": c.unroutable,
            "pings": c.pings,
            "answers": c.answers,
            "bad_answers": c.bad_answers,
            "esp_in": c.esp_in,
            "latency_ms": {
                "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": ms(1.0)
            },
        });
        println!("{v}");
    } else {
        println!(
            "{} handshakes against {} in {:.2} s: {:.0}/s (concurrency {})",
            c.completed_in_window, a.target, secs, rate, a.concurrency
        );
        println!(
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(1.0)
        );
        println!(
            "started {}  completed {}  failed {}  unfinished {}  deleted {}  held {}  retransmits {}",
            c.started,
            c.completed,
            c.failed,
            unfinished,
            c.deleted,
            if a.hold { held } else { 0 },
            retransmits
        );
        if a.ping {
            println!(
                "pings {}  answers {}  bad answers {}",
                c.pings, c.answers, c.bad_answers
            );
        }
        for (why, n) in &c.failures {
            println!("  failure x{n}: {why}");
        }
    }
    Ok(())
}
