//! R18 (draft section 2.3, non-native mode): connection latching for the
//! OS stack's traffic through the TUN device, by watching its flows.
//!
//! The OS stack knows nothing of latches, so the endpoint infers the
//! connection lifetime from the packets: a TCP SYN (without ACK, in either
//! direction) opens a connection, RST or a FIN from each side closes it; a
//! UDP flow opens with its first packet and closes after an idle timeout.
//! TCP flows that go quiet without FIN or RST (a host that vanished) are
//! closed after [`TCP_IDLE`]. Other protocols are not latched (no
//! connection to latch).
//!
//! Sans-IO: [`FlowWatcher::observe`] is a pure function of the packets it
//! is shown (and `now`), returning what to do; the driver carries the
//! actions out on the latch table and tells the watcher the latch it made
//! ([`FlowWatcher::latched`]) or that it made none ([`FlowWatcher::forget`]:
//! the watcher then never releases a latch it did not create).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use latch::{FiveTuple, LatchId};

use crate::packet::{PacketInfo, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Idle time after which a TCP connection without FIN or RST is taken as
/// gone (RFC 5382 REQ-5: an established idle timeout of no less than 2 h
/// 4 min).
pub(crate) const TCP_IDLE: Duration = Duration::from_secs(2 * 3600 + 4 * 60);

/// Flows followed at most; beyond, new flows are not latched (a warning
/// says so): the table must not grow without bound on a scan.
pub(crate) const MAX_FLOWS: usize = 65_536;

/// Which way a packet goes through the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// Read from the TUN device, leaving under ESP.
    Out,
    /// Decapsulated, written to the TUN device.
    In,
}

/// What the driver must do for a watched flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowAction {
    /// A connection begins: create its connection latch (R12) before the
    /// packet is checked, bound to the SA carrying it (R15 "latch on
    /// connect"/"accept").
    Latch(FiveTuple),
    /// The connection ended: release its latch (R15 "destroy on teardown"),
    /// after the packet went through.
    Release(FiveTuple, LatchId),
}

#[derive(Debug, Clone, Copy)]
struct Watched {
    latch: Option<LatchId>,
    last: Instant,
    fin_out: bool,
    fin_in: bool,
}

/// The flows the watcher follows.
#[derive(Debug)]
pub(crate) struct FlowWatcher {
    udp_idle: Duration,
    flows: HashMap<FiveTuple, Watched>,
    /// When idle flows are next looked for.
    next_sweep: Option<Instant>,
}

impl FlowWatcher {
    /// A watcher that closes UDP flows after `udp_idle` without a packet.
    pub(crate) fn new(udp_idle: Duration) -> Self {
        Self {
            udp_idle: udp_idle.max(Duration::from_millis(100)),
            flows: HashMap::new(),
            next_sweep: None,
        }
    }

    /// Flows followed now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// A packet of connection `five` (oriented as this host sees it) went
    /// `way`. Returns what to do, at most one action.
    pub(crate) fn observe(
        &mut self,
        way: Way,
        info: &PacketInfo,
        five: FiveTuple,
        now: Instant,
    ) -> Option<FlowAction> {
        match info.proto {
            PROTO_TCP => {
                let flags = info.tcp_flags;
                if let Some(w) = self.flows.get_mut(&five) {
                    w.last = now;
                    if flags & TCP_RST != 0 {
                        return self.end(five);
                    }
                    if flags & TCP_FIN != 0 {
                        match way {
                            Way::Out => w.fin_out = true,
                            Way::In => w.fin_in = true,
                        }
                        if w.fin_out && w.fin_in {
                            return self.end(five);
                        }
                    }
                    return None;
                }
                // Only an opening SYN starts following a connection: a
                // connection seen in the middle (after a restart) is not
                // latched, as its beginning was not seen under any SA.
                if flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN
                    && self.start(five, now)
                {
                    return Some(FlowAction::Latch(five));
                }
                None
            }
            PROTO_UDP => {
                if let Some(w) = self.flows.get_mut(&five) {
                    w.last = now;
                    return None;
                }
                self.start(five, now).then_some(FlowAction::Latch(five))
            }
            _ => None,
        }
    }

    /// Follow a new flow; false when full.
    fn start(&mut self, five: FiveTuple, now: Instant) -> bool {
        if self.flows.len() >= MAX_FLOWS {
            tracing::warn!(%five, max = MAX_FLOWS, "too many watched flows: flow not latched (R18)");
            return false;
        }
        self.flows.insert(
            five,
            Watched {
                latch: None,
                last: now,
                fin_out: false,
                fin_in: false,
            },
        );
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.sweep_interval());
        }
        true
    }

    fn end(&mut self, five: FiveTuple) -> Option<FlowAction> {
        let w = self.flows.remove(&five)?;
        w.latch.map(|id| FlowAction::Release(five, id))
    }

    fn sweep_interval(&self) -> Duration {
        (self.udp_idle / 4).max(Duration::from_millis(50))
    }

    /// The driver created latch `id` for a [`FlowAction::Latch`].
    pub(crate) fn latched(&mut self, five: &FiveTuple, id: LatchId) {
        if let Some(w) = self.flows.get_mut(five) {
            w.latch = Some(id);
        }
    }

    /// The driver created no latch for the flow (refused, or someone
    /// else's latch exists): stop following it.
    pub(crate) fn forget(&mut self, five: &FiveTuple) {
        self.flows.remove(five);
    }

    /// When [`FlowWatcher::handle_timeout`] wants to run.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Release the latches of flows idle too long (UDP: the configured
    /// timeout; TCP: [`TCP_IDLE`]).
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<FlowAction>) {
        if self.next_sweep.is_none_or(|t| now < t) {
            return;
        }
        let udp_idle = self.udp_idle;
        self.flows.retain(|five, w| {
            let idle = if five.proto == PROTO_TCP {
                TCP_IDLE
            } else {
                udp_idle
            };
            let keep = now.saturating_duration_since(w.last) < idle;
            if !keep {
                if let Some(id) = w.latch {
                    out.push(FlowAction::Release(*five, id));
                }
            }
            keep
        });
        self.next_sweep = (!self.flows.is_empty()).then(|| now + self.sweep_interval());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::packet::PROTO_ICMP;
    use std::net::IpAddr;

    fn pkt(proto: u8, flags: u8) -> PacketInfo {
        PacketInfo {
            version: 4,
            proto,
            src: "10.98.0.1".parse::<IpAddr>().unwrap(),
            dst: "10.99.0.1".parse::<IpAddr>().unwrap(),
            sport: 40000,
            dport: 5001,
            selector_ports: Some((40000, 5001)),
            tcp_flags: flags,
            total_len: 40,
        }
    }

    fn five(p: &PacketInfo) -> FiveTuple {
        p.outbound_five()
    }

    #[test]
    fn tcp_syn_latches_and_both_fins_release() {
        let t0 = Instant::now();
        let mut w = FlowWatcher::new(Duration::from_secs(30));
        let syn = pkt(PROTO_TCP, TCP_SYN);
        let f = five(&syn);
        assert_eq!(w.observe(Way::Out, &syn, f, t0), Some(FlowAction::Latch(f)));
        w.latched(&f, LatchId(7));
        // SYN-ACK, data, a retransmitted SYN: nothing new.
        assert_eq!(
            w.observe(Way::In, &pkt(PROTO_TCP, TCP_SYN | TCP_ACK), f, t0),
            None
        );
        assert_eq!(w.observe(Way::Out, &pkt(PROTO_TCP, TCP_ACK), f, t0), None);
        assert_eq!(w.observe(Way::Out, &syn, f, t0), None);
        // One FIN is a half close: the connection goes on.
        assert_eq!(
            w.observe(Way::Out, &pkt(PROTO_TCP, TCP_FIN | TCP_ACK), f, t0),
            None
        );
        assert_eq!(w.observe(Way::In, &pkt(PROTO_TCP, TCP_ACK), f, t0), None);
        assert_eq!(
            w.observe(Way::In, &pkt(PROTO_TCP, TCP_FIN | TCP_ACK), f, t0),
            Some(FlowAction::Release(f, LatchId(7)))
        );
        assert_eq!(w.len(), 0);
        // The last ACK after the close does not latch again.
        assert_eq!(w.observe(Way::Out, &pkt(PROTO_TCP, TCP_ACK), f, t0), None);
    }

    #[test]
    fn inbound_syn_latches_and_rst_releases() {
        let t0 = Instant::now();
        let mut w = FlowWatcher::new(Duration::from_secs(30));
        let syn = pkt(PROTO_TCP, TCP_SYN);
        let f = syn.inbound_five();
        assert_eq!(w.observe(Way::In, &syn, f, t0), Some(FlowAction::Latch(f)));
        w.latched(&f, LatchId(1));
        assert_eq!(
            w.observe(Way::Out, &pkt(PROTO_TCP, TCP_RST), f, t0),
            Some(FlowAction::Release(f, LatchId(1)))
        );
    }

    #[test]
    fn tcp_seen_midway_is_not_latched() {
        let mut w = FlowWatcher::new(Duration::from_secs(30));
        let p = pkt(PROTO_TCP, TCP_ACK);
        assert_eq!(w.observe(Way::Out, &p, five(&p), Instant::now()), None);
        let p = pkt(PROTO_TCP, TCP_SYN | TCP_ACK);
        assert_eq!(w.observe(Way::Out, &p, five(&p), Instant::now()), None);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn udp_first_packet_latches_idle_releases() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(10);
        let mut w = FlowWatcher::new(idle);
        let p = pkt(PROTO_UDP, 0);
        let f = five(&p);
        assert_eq!(w.observe(Way::Out, &p, f, t0), Some(FlowAction::Latch(f)));
        w.latched(&f, LatchId(3));
        assert_eq!(w.observe(Way::In, &p, f, t0 + Duration::from_secs(5)), None);
        let mut out = Vec::new();
        // Not idle long enough yet (last packet at t0+5).
        w.handle_timeout(t0 + Duration::from_secs(12), &mut out);
        assert!(out.is_empty());
        let at = w.poll_timeout().unwrap();
        assert!(at > t0 + Duration::from_secs(12));
        w.handle_timeout(t0 + Duration::from_secs(16), &mut out);
        assert_eq!(out, vec![FlowAction::Release(f, LatchId(3))]);
        assert_eq!(w.poll_timeout(), None);
    }

    #[test]
    fn forgotten_flows_release_nothing() {
        let t0 = Instant::now();
        let mut w = FlowWatcher::new(Duration::from_secs(1));
        let p = pkt(PROTO_UDP, 0);
        let f = five(&p);
        assert_eq!(w.observe(Way::Out, &p, f, t0), Some(FlowAction::Latch(f)));
        w.forget(&f);
        let syn = pkt(PROTO_TCP, TCP_SYN);
        let g = five(&syn);
        assert_eq!(w.observe(Way::Out, &syn, g, t0), Some(FlowAction::Latch(g)));
        // No latch recorded (creation refused): RST releases nothing.
        assert_eq!(w.observe(Way::In, &pkt(PROTO_TCP, TCP_RST), g, t0), None);
        let mut out = Vec::new();
        w.handle_timeout(t0 + Duration::from_secs(3600 * 3), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn tcp_idle_timeout_is_long() {
        let t0 = Instant::now();
        let mut w = FlowWatcher::new(Duration::from_secs(1));
        let syn = pkt(PROTO_TCP, TCP_SYN);
        let f = five(&syn);
        w.observe(Way::Out, &syn, f, t0);
        w.latched(&f, LatchId(9));
        let mut out = Vec::new();
        w.handle_timeout(t0 + Duration::from_secs(60), &mut out);
        assert!(out.is_empty());
        w.handle_timeout(t0 + TCP_IDLE + Duration::from_secs(1), &mut out);
        assert_eq!(out, vec![FlowAction::Release(f, LatchId(9))]);
    }

    #[test]
    fn watched_flows_are_bounded() {
        let t0 = Instant::now();
        let mut w = FlowWatcher::new(Duration::from_secs(1));
        let mut p = pkt(PROTO_UDP, 0);
        for i in 0..MAX_FLOWS {
            p.sport = (i % 65_536) as u16;
            p.dport = (i / 65_536) as u16 + 1;
            assert!(w.observe(Way::Out, &p, five(&p), t0).is_some());
        }
        p.dport = 9999;
        assert_eq!(w.observe(Way::Out, &p, five(&p), t0), None);
        assert_eq!(w.len(), MAX_FLOWS);
    }

    #[test]
    fn other_protocols_are_not_watched() {
        let mut w = FlowWatcher::new(Duration::from_secs(1));
        let p = pkt(PROTO_ICMP, 0);
        assert_eq!(w.observe(Way::Out, &p, five(&p), Instant::now()), None);
        assert_eq!(w.len(), 0);
    }
}
