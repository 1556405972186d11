//! A site-to-site gateway on a TUN device: the OS stack's traffic between
//! two inner networks goes through latchkey's userspace ESP.
//!
//! Root only (it creates a TUN device, routes and a raw ESP socket).
//! Answers IKE for the given peer (responder) and, with `--connect`, also
//! initiates to it. Runs until SIGTERM or SIGINT, then deletes its SAs.
//!
//! ```sh
//! tun_gateway --local 192.0.2.1 --tun-addr 10.98.0.1/24 \
//!     --local-ts 10.98.0.0/24 --remote-ts 10.99.0.0/24 \
//!     [--connect 192.0.2.2] [--psk-file FILE | (NULL auth)] [--no-encap] \
//!     [--latch-flows] [--udp-idle SECS] [--offload] [--tun NAME] [--mtu N] \
//!     [--id ID] [--remote-id ID] [--ike-proposal P] [--esp-proposal P] \
//!     [--status-file FILE]
//! ```
//!
//! `--local-ts`/`--remote-ts` take comma-separated selectors; `--tun-addr`
//! may be repeated (an IPv4 and an IPv6 address, say).
//!
//! `--status-file` is rewritten every half second with the endpoint's
//! status as JSON plus its latches (what the self-test reads).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an example: argument errors end it"
)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use endpoint::{
    peer_config, AuthMethod, Endpoint, EndpointConfig, EspProposal, Identity, IkeProposal,
    TunConfig,
};

#[derive(Default)]
struct Args {
    local: Option<IpAddr>,
    connect: Option<IpAddr>,
    tun: TunConfig,
    local_ts: Option<String>,
    remote_ts: Option<String>,
    psk_file: Option<String>,
    no_encap: bool,
    id: Option<String>,
    remote_id: Option<String>,
    ike_proposal: Option<String>,
    esp_proposal: Option<String>,
    status_file: Option<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!("tun_gateway: {msg}");
    eprintln!("usage: tun_gateway --local IP --tun-addr IP/LEN --local-ts NET --remote-ts NET [--connect IP] [--psk-file F] [--no-encap] [--latch-flows] [--udp-idle S] [--offload] [--tun NAME] [--mtu N] [--id ID] [--remote-id ID] [--ike-proposal P] [--esp-proposal P] [--status-file F]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--local" => a.local = Some(val().parse().unwrap_or_else(|_| usage("bad --local"))),
            "--connect" => {
                a.connect = Some(val().parse().unwrap_or_else(|_| usage("bad --connect")))
            }
            "--tun" => a.tun.name = val(),
            "--mtu" => a.tun.mtu = val().parse().unwrap_or_else(|_| usage("bad --mtu")),
            "--tun-addr" => {
                let v = val();
                let (ip, len) = v
                    .split_once('/')
                    .unwrap_or_else(|| usage("--tun-addr IP/LEN"));
                a.tun.addresses.push((
                    ip.parse().unwrap_or_else(|_| usage("bad --tun-addr")),
                    len.parse().unwrap_or_else(|_| usage("bad --tun-addr")),
                ));
            }
            "--local-ts" => a.local_ts = Some(val()),
            "--remote-ts" => a.remote_ts = Some(val()),
            "--psk-file" => a.psk_file = Some(val()),
            "--no-encap" => a.no_encap = true,
            "--latch-flows" => a.tun.latch_flows = true,
            "--offload" => a.tun.offload = true,
            "--udp-idle" => {
                a.tun.udp_idle = Duration::from_secs_f64(
                    val().parse().unwrap_or_else(|_| usage("bad --udp-idle")),
                );
            }
            "--id" => a.id = Some(val()),
            "--remote-id" => a.remote_id = Some(val()),
            "--ike-proposal" => a.ike_proposal = Some(val()),
            "--esp-proposal" => a.esp_proposal = Some(val()),
            "--status-file" => a.status_file = Some(val()),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    a
}

fn identity(s: &str) -> Identity {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Identity::Ipv4(a),
        Ok(IpAddr::V6(a)) => Identity::Ipv6(a),
        Err(_) => Identity::Fqdn(s.to_owned()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = parse_args();
    let local = a.local.unwrap_or_else(|| usage("--local is required"));
    // Selectors: comma-separated lists (e.g. "10.98.0.0/24,fd98::/64").
    let ts = |s: &Option<String>, what: &str| -> Vec<endpoint::TrafficSelector> {
        s.as_deref()
            .unwrap_or_else(|| usage(&format!("{what} is required")))
            .split(',')
            .map(|t| {
                t.trim()
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("bad {what} {t}: {e}")))
            })
            .collect()
    };
    let (local_ts, remote_ts) = (
        ts(&a.local_ts, "--local-ts"),
        ts(&a.remote_ts, "--remote-ts"),
    );
    let (auth, psk) = match &a.psk_file {
        Some(f) => (
            AuthMethod::Psk,
            Some(certs::Psk::from_text(&std::fs::read(f)?).map_err(|e| format!("{f}: {e}"))?),
        ),
        None => (AuthMethod::Null, None),
    };
    let mut peer = peer_config("peer", auth, psk, local_ts[0], remote_ts[0]);
    peer.child.local_ts = local_ts;
    peer.child.remote_ts = remote_ts;
    if let Some(id) = &a.id {
        peer.local_id = identity(id);
    }
    peer.remote_id = a.remote_id.as_deref().map(identity);
    if let Some(p) = &a.ike_proposal {
        peer.ike_proposals = IkeProposal::parse_list(p).map_err(|e| format!("{p}: {e}"))?;
    }
    if let Some(p) = &a.esp_proposal {
        peer.child.esp_proposals = EspProposal::parse_list(p).map_err(|e| format!("{p}: {e}"))?;
    }
    peer.force_encap = !a.no_encap;

    let mut config = EndpointConfig::on(local, 500, 4500);
    config.tun = Some(a.tun.clone());
    let ep = std::sync::Arc::new(Endpoint::bind(config, vec![peer.clone()]).await?);
    eprintln!("tun_gateway: listening on {local}, TUN {}", a.tun.name);

    // Channels are the handles of the SAs; traffic goes through the TUN
    // device. Keep them while running.
    let accepted = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let mut chans = Vec::new();
            while let Some(ch) = ep.accept().await {
                eprintln!("tun_gateway: accepted child SA {}", ch.child_sa().suite);
                chans.push(ch);
            }
        })
    };
    let mut mine = None;
    if let Some(remote) = a.connect {
        let ch = ep.connect(peer, SocketAddr::new(remote, 500)).await?;
        eprintln!(
            "tun_gateway: connected: {} child SA {} {:?} === {:?} udp_encap={}",
            ch.ike_sa().suite,
            ch.child_sa().suite,
            ch.child_sa().local_ts,
            ch.child_sa().remote_ts,
            ch.child_sa().udp_encap
        );
        mine = Some(ch);
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                if let Some(f) = &a.status_file {
                    let status = ep.status().await?;
                    let latches: Vec<String> = ep
                        .latches()
                        .iter()
                        .map(|l| format!("{} {}", l.tuple, l.state))
                        .collect();
                    let json = serde_json::json!({ "status": status, "latches": latches });
                    let tmp = format!("{f}.tmp");
                    std::fs::write(&tmp, serde_json::to_vec_pretty(&json)?)?;
                    std::fs::rename(&tmp, f)?;
                }
            }
        }
    }
    let status = ep.status().await?;
    eprintln!("tun_gateway: stopping; drops {:?}", status.drops);
    drop(mine);
    accepted.abort();
    ep.shutdown().await?;
    Ok(())
}
