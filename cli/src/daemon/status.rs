//! `latchkey status`: the endpoint's [`endpoint::Status`] regrouped, child
//! SAs under their IKE SA, in a JSON shape kept stable for scripts (the
//! interop harness compares it with strongSwan's `swanctl --list-sas`):
//! IKE SPIs as 16 hex digits (`spi_i`, `spi_r`), child SPIs as 8
//! (`spi_in`, `spi_out`), suites in strongSwan's proposal syntax.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use endpoint::{AuthMethod, LatchDropCount, LatchInfo, Mode, Status};
use serde::Serialize;

use super::ConnectionView;

/// The whole status.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusView {
    /// Our IKE socket.
    pub(crate) ike_addr: Option<SocketAddr>,
    /// Our NAT-T socket.
    pub(crate) natt_addr: Option<SocketAddr>,
    /// The configured connections.
    pub(crate) connections: Vec<ConnectionView>,
    /// IKE SAs with their child SAs.
    pub(crate) ike_sas: Vec<IkeSaView>,
    /// Child SAs whose IKE SA was not found (should stay empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) unattached_child_sas: Vec<ChildSaView>,
    /// Connection latches (RFC 5660 ENUMERATE).
    pub(crate) latches: Vec<LatchInfo>,
    /// The latch table's state version (R16).
    pub(crate) latch_version: u64,
    /// Datagrams dropped before IKE or ESP took them, by reason.
    pub(crate) drops: BTreeMap<String, u64>,
    /// ESP packets dropped by the SAD, by reason.
    pub(crate) esp_drops: BTreeMap<String, u64>,
    /// Packets dropped by latch checks (R5, R6, R9, R16).
    pub(crate) latch_drops: Vec<LatchDropCount>,
}

/// One IKE SA.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IkeSaView {
    /// Local id.
    pub(crate) id: u64,
    /// Its connection (peer configuration) name.
    pub(crate) name: String,
    /// `ESTABLISHED` or `CONNECTING` (strongSwan's words).
    pub(crate) state: &'static str,
    /// Whether we initiated it.
    pub(crate) initiator: bool,
    /// Initiator SPI, 16 hex digits.
    pub(crate) spi_i: String,
    /// Responder SPI, 16 hex digits.
    pub(crate) spi_r: String,
    /// Our outer address.
    pub(crate) local: SocketAddr,
    /// The peer's outer address.
    pub(crate) remote: SocketAddr,
    /// Our identity.
    pub(crate) local_id: String,
    /// The peer's identity, as authenticated.
    pub(crate) remote_id: String,
    /// How the peer authenticated.
    pub(crate) remote_auth: AuthMethod,
    /// The IKE proposal chosen, strongSwan syntax.
    pub(crate) suite: String,
    /// We are behind a NAT.
    pub(crate) nat_local: bool,
    /// The peer is behind a NAT.
    pub(crate) nat_remote: bool,
    /// Its child SAs.
    pub(crate) child_sas: Vec<ChildSaView>,
}

/// One child SA.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChildSaView {
    /// Local id.
    pub(crate) id: u64,
    /// The IKE SA it belongs to.
    pub(crate) ike_sa: u64,
    /// `INSTALLED` (strongSwan's word).
    pub(crate) state: &'static str,
    /// Our inbound SPI, 8 hex digits.
    pub(crate) spi_in: String,
    /// The outbound SPI (the peer's), 8 hex digits.
    pub(crate) spi_out: String,
    /// The ESP proposal chosen, strongSwan syntax.
    pub(crate) suite: String,
    /// Tunnel or transport.
    pub(crate) mode: Mode,
    /// Extended sequence numbers.
    pub(crate) esn: bool,
    /// ESP in UDP (RFC 3948).
    pub(crate) encap: bool,
    /// Anti-replay window.
    pub(crate) replay_window: u32,
    /// Our traffic selectors.
    pub(crate) local_ts: Vec<String>,
    /// The peer's traffic selectors.
    pub(crate) remote_ts: Vec<String>,
    /// Packets in (decapsulated and accepted).
    pub(crate) packets_in: u64,
    /// Payload octets in.
    pub(crate) bytes_in: u64,
    /// Packets out.
    pub(crate) packets_out: u64,
    /// Payload octets out.
    pub(crate) bytes_out: u64,
}

impl StatusView {
    pub(crate) fn new(
        s: Status,
        connections: Vec<ConnectionView>,
        latches: Vec<LatchInfo>,
    ) -> Self {
        let mut ike_sas: Vec<IkeSaView> = s
            .ike_sas
            .iter()
            .map(|i| IkeSaView {
                id: i.id,
                name: i.name.clone(),
                state: if i.established {
                    "ESTABLISHED"
                } else {
                    "CONNECTING"
                },
                initiator: i.initiator,
                spi_i: i.spi_i.clone(),
                spi_r: i.spi_r.clone(),
                local: i.local,
                remote: i.remote,
                local_id: i.local_id.clone(),
                remote_id: i.peer_id.clone(),
                remote_auth: i.peer_auth,
                suite: i.suite.clone(),
                nat_local: i.nat_local,
                nat_remote: i.nat_remote,
                child_sas: Vec::new(),
            })
            .collect();
        let mut unattached = Vec::new();
        for (c, t) in &s.child_sas {
            let v = ChildSaView {
                id: c.id,
                ike_sa: c.ike_sa,
                state: "INSTALLED",
                spi_in: format!("{:08x}", c.inbound_spi),
                spi_out: format!("{:08x}", c.outbound_spi),
                suite: c.suite.clone(),
                mode: c.mode,
                esn: c.esn,
                encap: c.udp_encap,
                replay_window: c.replay_window,
                local_ts: c.local_ts.clone(),
                remote_ts: c.remote_ts.clone(),
                packets_in: t.packets_in,
                bytes_in: t.bytes_in,
                packets_out: t.packets_out,
                bytes_out: t.bytes_out,
            };
            match ike_sas.iter_mut().find(|i| i.id == c.ike_sa) {
                Some(i) => i.child_sas.push(v),
                None => unattached.push(v),
            }
        }
        Self {
            ike_addr: s.ike_addr,
            natt_addr: s.natt_addr,
            connections,
            ike_sas,
            unattached_child_sas: unattached,
            latches,
            latch_version: s.latch_version,
            drops: s.drops.iter().cloned().collect(),
            esp_drops: s.esp_drops.iter().cloned().collect(),
            latch_drops: s.latch_drops,
        }
    }

    /// The human rendering.
    pub(crate) fn text(&self) -> String {
        let mut o = String::new();
        let addr = |a: Option<SocketAddr>| a.map_or("-".to_owned(), |a| a.to_string());
        let _ = writeln!(
            o,
            "latchkey daemon: IKE {}, NAT-T {}",
            addr(self.ike_addr),
            addr(self.natt_addr)
        );
        let _ = writeln!(o, "connections:");
        if self.connections.is_empty() {
            let _ = writeln!(o, "  (none configured)");
        }
        for c in &self.connections {
            let _ = writeln!(
                o,
                "  {:<16} {:<10} remote {}  start {}",
                c.name,
                c.state,
                c.remote
                    .map_or("(responder only)".to_owned(), |r| r.to_string()),
                match c.start {
                    super::StartAction::None => "none",
                    super::StartAction::Start => "start",
                }
            );
        }
        let _ = writeln!(o, "IKE SAs: {}", self.ike_sas.len());
        for i in &self.ike_sas {
            let _ = writeln!(
                o,
                "  {}[{}]: {} {}, {} <-> {}",
                i.name,
                i.id,
                i.state,
                if i.initiator {
                    "initiator"
                } else {
                    "responder"
                },
                i.local,
                i.remote
            );
            let _ = writeln!(
                o,
                "    {} === {}  peer auth {}  {}  SPIs {}_i {}_r{}",
                i.local_id,
                i.remote_id,
                i.remote_auth,
                i.suite,
                i.spi_i,
                i.spi_r,
                match (i.nat_local, i.nat_remote) {
                    (false, false) => "",
                    (true, false) => "  NAT: us",
                    (false, true) => "  NAT: peer",
                    (true, true) => "  NAT: both",
                }
            );
            for c in &i.child_sas {
                child_text(&mut o, c);
            }
        }
        for c in &self.unattached_child_sas {
            child_text(&mut o, c);
        }
        let _ = writeln!(o, "latches: {}", self.latches.len());
        for l in &self.latches {
            let peer = l
                .params
                .as_ref()
                .and_then(|p| p.peer())
                .map_or("-".to_owned(), ToString::to_string);
            let _ = writeln!(o, "  {}  {}  {}  peer {}", l.id, l.state, l.tuple, peer);
        }
        let counters = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(o, "drops: {}", counters(&self.drops));
        let _ = writeln!(o, "ESP drops: {}", counters(&self.esp_drops));
        let latch: BTreeMap<String, u64> = self
            .latch_drops
            .iter()
            .map(|c| (format!("{:?} {}", c.direction, c.reason), c.count))
            .collect();
        let _ = writeln!(o, "latch drops: {}", counters(&latch));
        o
    }
}

fn child_text(o: &mut String, c: &ChildSaView) {
    let _ = writeln!(
        o,
        "    child[{}]: {} {}{}{}  SPIs in {} out {}  {}",
        c.id,
        c.state,
        c.mode,
        if c.encap { " udp-encap" } else { "" },
        if c.esn { " esn" } else { "" },
        c.spi_in,
        c.spi_out,
        c.suite
    );
    let _ = writeln!(
        o,
        "      {} === {}",
        c.local_ts.join(","),
        c.remote_ts.join(",")
    );
    let _ = writeln!(
        o,
        "      in {} packets {} bytes, out {} packets {} bytes",
        c.packets_in, c.bytes_in, c.packets_out, c.bytes_out
    );
}
