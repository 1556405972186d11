//! `latchkey demo`: two endpoints in one process, on loopback, no root.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use endpoint::{AuthMethod, Endpoint, EndpointConfig, EspProposal, IkeProposal, TrafficSelector};
use serde::Serialize;

/// Options of `latchkey demo`; every one has a working default.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Authentication for both endpoints: `null` (BTNS, RFC 7619) or `psk`
    /// (a random key made for the run).
    #[arg(long, default_value = "null")]
    auth: AuthMethod,
    /// IKE proposal of the initiator, strongSwan syntax.
    #[arg(long, default_value = "aes128gcm16-prfsha256-x25519")]
    ike_proposal: String,
    /// ESP proposal of the initiator, strongSwan syntax.
    #[arg(long, default_value = "aes128gcm16")]
    esp_proposal: String,
    /// Datagrams to send each way.
    #[arg(long, default_value_t = 3)]
    count: u32,
    /// Address of the initiating endpoint ("left").
    #[arg(long, default_value = "127.0.0.1")]
    left: IpAddr,
    /// Address of the responding endpoint ("right").
    #[arg(long, default_value = "127.0.0.1")]
    right: IpAddr,
    /// IKE port of both endpoints (0: any free port; 500 needs root and
    /// distinct --left/--right addresses).
    #[arg(long, default_value_t = 0)]
    ike_port: u16,
    /// NAT-T port of both endpoints (0: any free port).
    #[arg(long, default_value_t = 0)]
    natt_port: u16,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Side {
    ike_addr: SocketAddr,
    natt_addr: SocketAddr,
    ike_sa: endpoint::IkeSummary,
    child_sa: endpoint::ChildSummary,
    traffic: endpoint::Traffic,
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    auth: AuthMethod,
    setup_ms: f64,
    datagrams_each_way: u32,
    left: Side,
    right: Side,
    /// What `latchkey inquire` returns for the latched connection (R2, R7).
    latch: endpoint::LatchInfo,
}

const LEFT_INNER: &str = "10.0.0.1";
const RIGHT_INNER: &str = "10.0.0.2";

fn ts(s: &str) -> Result<TrafficSelector> {
    s.parse().with_context(|| format!("traffic selector {s}"))
}

pub(crate) async fn run(a: DemoArgs) -> Result<()> {
    let psk = match a.auth {
        AuthMethod::Psk => {
            let mut key = [0u8; 32];
            rand_key(&mut key)?;
            Some(certs::Psk::new(&key).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        _ => None,
    };
    // The responder allows only its own inner address: the initiator's wider
    // request (10.0.0.0/24) is narrowed to it (RFC 7296 2.9).
    let mut right_peer = endpoint::peer_config(
        "left",
        a.auth,
        psk.clone(),
        ts(&format!("{RIGHT_INNER}/32"))?,
        ts(&format!("{LEFT_INNER}/32"))?,
    );
    if a.auth != AuthMethod::Null {
        right_peer.local_id = endpoint::Identity::Fqdn("right.latchkey.invalid".into());
    }
    let right = Endpoint::bind(
        EndpointConfig::on(a.right, a.ike_port, a.natt_port),
        vec![right_peer],
    )
    .await
    .context("starting the right endpoint")?;
    let left = Endpoint::bind(EndpointConfig::on(a.left, a.ike_port, a.natt_port), vec![])
        .await
        .context("starting the left endpoint")?;
    let mut peer = endpoint::peer_config(
        "right",
        a.auth,
        psk,
        ts(&format!("{LEFT_INNER}/32"))?,
        ts("10.0.0.0/24")?,
    );
    peer.ike_proposals = IkeProposal::parse_list(&a.ike_proposal).context("--ike-proposal")?;
    peer.child.esp_proposals =
        EspProposal::parse_list(&a.esp_proposal).context("--esp-proposal")?;
    peer.remote_natt_port = right.natt_addr().port();
    if a.auth != AuthMethod::Null {
        peer.local_id = endpoint::Identity::Fqdn("left.latchkey.invalid".into());
    }

    let t0 = Instant::now();
    let accept = async {
        tokio::time::timeout(Duration::from_secs(30), right.accept())
            .await
            .ok()
            .flatten()
    };
    let (lch, rch) = tokio::join!(left.connect(peer, right.ike_addr()), accept);
    let mut lch = lch.context("left could not connect to right")?;
    let Some(mut rch) = rch else {
        bail!("right endpoint saw no channel");
    };
    let setup = t0.elapsed();

    let lsrc: SocketAddr = format!("{LEFT_INNER}:1000").parse()?;
    let rsrc: SocketAddr = format!("{RIGHT_INNER}:2000").parse()?;
    for i in 0..a.count {
        let msg = format!("ping {i} from left");
        lch.send(lsrc, rsrc, msg.as_bytes()).await?;
        let d = recv(&mut rch).await?;
        ensure!(
            d.data == msg.as_bytes(),
            "right got {:?}, expected {msg:?}",
            d.data
        );
        ensure!(
            d.src == lsrc && d.dst == rsrc,
            "right got {} -> {}",
            d.src,
            d.dst
        );
        ensure!(
            d.spi == rch.child_sa().inbound_spi,
            "right got it under SPI {:08x}",
            d.spi
        );
        let reply = format!("pong {i} from right");
        rch.send(rsrc, lsrc, reply.as_bytes()).await?;
        let d = recv(&mut lch).await?;
        ensure!(
            d.data == reply.as_bytes(),
            "left got {:?}, expected {reply:?}",
            d.data
        );
        ensure!(
            d.spi == lch.child_sa().inbound_spi,
            "left got it under SPI {:08x}",
            d.spi
        );
    }

    // A latched channel (R12, R15): the responder latches the connection
    // it serves; the channel's SA binds it at once (Established), and
    // every datagram of the flow says so.
    let flow = rch
        .latch(rsrc, lsrc)
        .await
        .context("latching the connection")?;
    lch.send(lsrc, rsrc, b"latched ping").await?;
    let d = recv(&mut rch).await?;
    ensure!(
        d.latch == Some(flow.id()),
        "the latched datagram came under {:?}, expected {}",
        d.latch,
        flow.id()
    );
    rch.send(rsrc, lsrc, b"latched pong").await?;
    recv(&mut lch).await?;
    let latch_info = right
        .inquire(&endpoint::FiveTuple::new(17, rsrc, lsrc))
        .context("inquiry found no latch")?;
    ensure!(
        latch_info.state == endpoint::LatchState::Established,
        "latch is {}",
        latch_info.state
    );

    let side = |ep: &Endpoint, ch: &endpoint::Channel, st: &endpoint::Status| Side {
        ike_addr: ep.ike_addr(),
        natt_addr: ep.natt_addr(),
        ike_sa: ch.ike_sa().clone(),
        child_sa: ch.child_sa().clone(),
        traffic: st
            .child_sas
            .iter()
            .find(|(c, _)| c.id == ch.child_sa().id)
            .map(|(_, t)| *t)
            .unwrap_or_default(),
    };
    let lst = left.status().await?;
    let rst = right.status().await?;
    let report = Report {
        ok: true,
        auth: a.auth,
        setup_ms: setup.as_secs_f64() * 1000.0,
        datagrams_each_way: a.count,
        left: side(&left, &lch, &lst),
        right: side(&right, &rch, &rst),
        latch: latch_info,
    };
    flow.release().await.context("releasing the latch")?;
    ensure!(
        report.left.child_sa.outbound_spi == report.right.child_sa.inbound_spi
            && report.right.child_sa.outbound_spi == report.left.child_sa.inbound_spi,
        "SPIs do not cross over"
    );
    lch.close().await.context("closing the channel")?;
    left.shutdown().await?;
    right.shutdown().await?;

    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn recv(ch: &mut endpoint::Channel) -> Result<endpoint::Datagram> {
    match tokio::time::timeout(Duration::from_secs(5), ch.recv()).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => bail!("channel closed while waiting for a datagram"),
        Err(_) => bail!("no datagram within 5 s"),
    }
}

fn rand_key(key: &mut [u8]) -> Result<()> {
    use rand_core::RngCore;
    rand_core::OsRng
        .try_fill_bytes(key)
        .map_err(|e| anyhow::anyhow!("random source: {e}"))
}

fn print_report(r: &Report) {
    println!(
        "latchkey demo: two endpoints on loopback, {} authentication",
        r.auth
    );
    for (name, s) in [
        ("left (initiator)", &r.left),
        ("right (responder)", &r.right),
    ] {
        println!("{name}: IKE {}  NAT-T {}", s.ike_addr, s.natt_addr);
        println!(
            "  IKE SA    {}  SPIs {}_i {}_r  peer ID {} authenticated by {}",
            s.ike_sa.suite, s.ike_sa.spi_i, s.ike_sa.spi_r, s.ike_sa.peer_id, s.ike_sa.peer_auth
        );
        println!(
            "  child SA  {} {}{}  SPI in {:08x} out {:08x}  {} === {}",
            s.child_sa.suite,
            s.child_sa.mode,
            if s.child_sa.udp_encap {
                " ESP-in-UDP"
            } else {
                ""
            },
            s.child_sa.inbound_spi,
            s.child_sa.outbound_spi,
            s.child_sa.local_ts.join(","),
            s.child_sa.remote_ts.join(",")
        );
        println!(
            "  protected out {} packets / {} octets, in {} packets / {} octets",
            s.traffic.packets_out, s.traffic.bytes_out, s.traffic.packets_in, s.traffic.bytes_in
        );
    }
    println!(
        "set up in {:.1} ms; {} datagrams each way through ESP: OK",
        r.setup_ms, r.datagrams_each_way
    );
    println!("latched channel on the right; `latchkey inquire` says:");
    print!("{}", render_inquiry(&r.latch, "  "));
}

/// What `latchkey inquire` prints for one latch (R2, R7): state, peer ID
/// and how it authenticated, key fingerprint or anonymous, suites and key
/// lengths, mode, replay window, NAT information, SPIs.
pub(crate) fn render_inquiry(i: &endpoint::LatchInfo, indent: &str) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "{indent}{} on {}: {}", i.id, i.tuple, i.state);
    let _ = writeln!(
        o,
        "{indent}  SPD entry {}; last change: {}",
        i.spd_entry, i.last_reason
    );
    let Some(p) = &i.params else {
        let _ = writeln!(o, "{indent}  not bound to any SA yet");
        return o;
    };
    if p.is_bypass() {
        let _ = writeln!(o, "{indent}  latched to BYPASS: no protection (R19)");
        return o;
    }
    if let Some(peer) = p.peer() {
        let _ = writeln!(
            o,
            "{indent}  peer      {peer}  asserted ID {}  authenticated ID {}  PAD entry {}",
            peer.asserted,
            peer.authenticated
                .as_ref()
                .map_or("none (unauthenticated)".to_owned(), ToString::to_string),
            peer.pad_entry
        );
        let how = match &peer.auth {
            endpoint::PeerAuth::Null { anonymous_peer } => {
                format!(
                    "NULL authentication (RFC 7619): anonymous BTNS peer #{anonymous_peer}, no key"
                )
            }
            endpoint::PeerAuth::Psk => "pre-shared key".to_owned(),
            endpoint::PeerAuth::Btns { fingerprint, .. } => {
                format!("BTNS public key, SHA-256 {fingerprint}")
            }
            endpoint::PeerAuth::RawPublicKey { fingerprint, .. } => {
                format!("raw public key, SHA-256 {fingerprint}")
            }
            endpoint::PeerAuth::Certificate { trust_anchor, .. } => {
                format!(
                    "certificate, validated to trust anchor {}",
                    trust_anchor.name
                )
            }
            other => format!("{other:?}"),
        };
        let _ = writeln!(o, "{indent}  auth      {how}");
    }
    if let Some(q) = p.qop() {
        let _ = writeln!(
            o,
            "{indent}  QoP       {} ({}, {}-bit keys)  mode {}  ESN {}  replay window {}",
            q,
            q.services(),
            q.key_bits(),
            q.mode,
            if q.esn { "on" } else { "off" },
            q.replay_window
        );
    }
    if let Some(n) = p.nat() {
        let _ = writeln!(
            o,
            "{indent}  NAT       peer behind NAT: {}  we behind NAT: {}  peer outer {}  peer inner {}",
            yes(n.peer_behind_nat),
            yes(n.local_behind_nat),
            n.peer_outer.map_or("-".to_owned(), |a| a.to_string()),
            n.peer_inner.map_or("-".to_owned(), |a| a.to_string())
        );
    }
    if let Some((i_spi, o_spi)) = p.spis() {
        let _ = writeln!(
            o,
            "{indent}  SPIs      in {i_spi:08x} out {o_spi:08x} (SA the latch was bound with)"
        );
    }
    let _ = writeln!(o, "{indent}  SAs now   {:x?}", i.current_sas);
    o
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
