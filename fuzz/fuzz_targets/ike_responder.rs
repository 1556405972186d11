//! The IKE responder fed arbitrary datagrams: it must never panic, and its
//! state must stay bounded (half-open SAs, queued transmits and events).
//!
//! Input: a sequence of `[len_hi, len_lo, flags, data...]` records. Flag
//! bit 0 replaces the datagram's responder SPI with the one of the last
//! IKE_SA_INIT response, so inputs reach the per-SA paths (message IDs,
//! decryption, caches); bit 1 sends it to the NAT-T port; bit 2 advances
//! the clock by a minute (timers, half-open expiry).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ike::{AcceptAll, ChildConfig, Config, Ike, PeerConfig, RetransmitConfig};
use libfuzzer_sys::fuzz_target;
use pad::{AuthMethod, EspProposal, Identity, IkeProposal, Mode};

#[path = "common/rng.rs"]
mod rng;
use rng::FuzzRng;

const MAX_HALF_OPEN: usize = 8;

fn config() -> Config {
    let peer = PeerConfig {
        name: "any".into(),
        local_id: Identity::Null,
        remote_id: None,
        local_auth: AuthMethod::Null,
        remote_auth: AuthMethod::Null,
        psk: None,
        credentials: Default::default(),
        ike_proposals: IkeProposal::defaults(),
        child: ChildConfig {
            esp_proposals: EspProposal::defaults(),
            local_ts: vec!["10.0.0.0/8".parse().unwrap()],
            remote_ts: vec!["0.0.0.0/0".parse().unwrap()],
            mode: Mode::Tunnel,
            rekey_after: None,
            replay_window: 64,
        },
        ike_rekey_after: None,
        dpd_interval: None,
        force_encap: false,
        remote_natt_port: 4500,
    };
    Config {
        ike_port: 500,
        natt_port: 4500,
        peers: vec![peer],
        cookie_threshold: 4,
        max_half_open: MAX_HALF_OPEN,
        retransmit: RetransmitConfig::default(),
        fragmentation: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ike = Ike::new(
        config(),
        Box::new(FuzzRng(0x9e37_79b9_7f4a_7c15)),
        Box::new(AcceptAll),
    );
    let mut now = Instant::now();
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 500);
    let mut last_spi_r = [0u8; 8];
    let mut rest = data;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 2048;
        let flags = rest[2];
        rest = &rest[3..];
        let take = len.min(rest.len());
        let mut dgram = rest[..take].to_vec();
        rest = &rest[take..];
        if flags & 1 != 0 && dgram.len() >= 16 {
            dgram[8..16].copy_from_slice(&last_spi_r);
        }
        let port = if flags & 2 != 0 { 4500 } else { 500 };
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port);
        if flags & 4 != 0 {
            now += Duration::from_secs(60);
        }
        ike.handle_datagram(now, local, remote, &dgram);
        if ike.poll_timeout().is_some_and(|t| t <= now) {
            ike.handle_timeout(now);
        }
        while let Some(t) = ike.poll_transmit() {
            if t.data.len() >= 16 && t.data[8..16] != [0; 8] {
                last_spi_r.copy_from_slice(&t.data[8..16]);
            }
        }
        while ike.poll_event().is_some() {}
        // Bounded state: no SA is established without authentication, so
        // every SA held is half-open.
        assert!(ike.ike_sa_count() <= MAX_HALF_OPEN);
    }
});
