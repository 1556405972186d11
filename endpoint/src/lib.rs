//! latchkey's embeddable IPsec endpoint.
//!
//! A tokio driver that owns the UDP sockets, the clock and the randomness,
//! runs the sans-IO [`ike`] state machine, installs the child SAs it
//! negotiates into the [`esp`] SAD, and gives the embedding program
//! [`Channel`]s: datagrams that travel, protected by ESP in UDP
//! (RFC 3948), between an inner address of ours and one of the peer's.
//!
//! Invariants:
//! - One task (the driver) owns `ike::Ike` and `esp::Sad`; the API talks to it
//!   through a command channel, so no lock is held across I/O.
//! - Every datagram handed to a [`Channel`] came out of ESP decapsulation and
//!   carries the SPI and SA tag that protected it ([`Datagram::spi`],
//!   [`Datagram::sa`]): nothing unprotected is ever delivered.
//! - Runs without root: ports are configurable (0 = any free port).
//! - TUN mode ([`EndpointConfig::tun`], root): the OS stack's traffic goes
//!   through a TUN device; every packet read from it leaves only under a
//!   child SA whose selectors cover it (and that matches its latch, R6),
//!   never in the clear; every decapsulated packet that passes the latch
//!   check is written back to it. [`Channel`]s remain the handles of the
//!   SAs. R18: [`TunConfig::latch_flows`] latches the OS stack's TCP and
//!   UDP flows by watching them.
//!
//! ```no_run
//! # async fn run() -> Result<(), endpoint::Error> {
//! use endpoint::{btns_peer, Endpoint, EndpointConfig};
//! let ep = Endpoint::bind(EndpointConfig::loopback(), vec![]).await?;
//! let peer = btns_peer("peer", "10.0.0.1/32".parse().unwrap(), "10.0.0.2/32".parse().unwrap());
//! let mut ch = ep.connect(peer, "127.0.0.1:50500".parse().unwrap()).await?;
//! ch.send("10.0.0.1:1000".parse().unwrap(), "10.0.0.2:2000".parse().unwrap(), b"hello").await?;
//! let reply = ch.recv().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod dns;
mod driver;
mod flows;
mod inbox;
mod keys;
mod latching;
mod os;
mod packet;
mod pinfile;

/// Entry points for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use std::time::{Duration, Instant};

    /// Parse each packet of `data` (one per 2-octet big-endian length
    /// prefix) as the TUN datapath does, and feed those that parse to an R18 flow watcher,
    /// alternating directions. Must never panic. Returns how many parsed.
    pub fn tun_packets(data: &[u8]) -> usize {
        let mut parsed = 0;
        let mut watcher = crate::flows::FlowWatcher::new(Duration::from_secs(1));
        let start = Instant::now();
        let mut rest = data;
        let mut i = 0u64;
        while let [a, b, tail @ ..] = rest {
            let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
            let (pkt, next) = tail.split_at(n);
            rest = next;
            i += 1;
            let now = start + Duration::from_millis(i * 300);
            if let Ok(info) = crate::packet::parse(pkt) {
                parsed += 1;
                let (way, five) = if i.is_multiple_of(2) {
                    (crate::flows::Way::Out, info.outbound_five())
                } else {
                    (crate::flows::Way::In, info.inbound_five())
                };
                let _ = watcher.observe(way, &info, five, now);
            }
            let mut out = Vec::new();
            watcher.handle_timeout(now, &mut out);
        }
        parsed
    }

    /// Plan the TUN writes of the packets of `data` (one per 2-octet
    /// big-endian length prefix, laid one after the other as in a UDP GRO
    /// read) as the offload datapath does (our GRO), and make them into a
    /// sink. Must never panic; never more writes than packets, and no
    /// bytes invented but the writes' virtio-net headers. Returns how
    /// many packets there were.
    pub fn tun_gro(data: &[u8]) -> usize {
        let mut buf = Vec::with_capacity(data.len());
        let mut at = Vec::new();
        let mut rest = data;
        while let [a, b, tail @ ..] = rest {
            let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
            let (pkt, next) = tail.split_at(n);
            rest = next;
            at.push(buf.len()..buf.len() + n);
            buf.extend_from_slice(pkt);
        }
        for udp in [false, true] {
            let mut g = crate::driver::gro::Gro::new(udp);
            for r in &at {
                g.push(buf.get(r.clone()).unwrap_or_default(), r.start);
            }
            let mut bytes = 0;
            let done = g.write(&buf, |iov| {
                let n = iov.iter().map(|s| s.len()).sum();
                bytes += n;
                Ok(n)
            });
            assert!(done.writes <= at.len() && done.failed == 0);
            assert!(at.is_empty() || done.writes > 0);
            // Nothing is invented but the virtio-net headers (a merged
            // write drops its later segments' headers).
            assert!(bytes <= buf.len() + done.writes * crate::driver::gro::VNET_LEN);
        }
        at.len()
    }

    /// Take `data` as one read of the TUN device with offload on (the
    /// virtio-net header, then the packet) and cut it as the datapath
    /// does (`tso`): every segment is written, as long as announced, and
    /// the segments carry the payload once over. Must never panic.
    /// Returns how many segments there were (0 for a refused read, 1 for
    /// one packet).
    pub fn tun_tso(data: &[u8]) -> usize {
        use crate::driver::tso::{read, Read};
        let mut buf = data.to_vec();
        match read(&mut buf) {
            Err(_) => 0,
            Ok(Read::One(p)) => {
                assert!(p.len() < data.len());
                1
            }
            Ok(Read::Segments(t)) => {
                let mut out = vec![0u8; u16::MAX as usize];
                let mut bytes = 0;
                for i in 0..t.count() {
                    let n = t.seg_len(i);
                    assert!(n <= out.len());
                    let seg = out.get_mut(..n).unwrap_or_default();
                    assert!(t.write(i, seg));
                    bytes += n;
                }
                // The headers once per segment, the payload once.
                assert_eq!(bytes, t.packet().len() + (t.count() - 1) * t.header_len());
                t.count()
            }
        }
    }
}

/// What the benches need of the datapath (not a stable API).
#[doc(hidden)]
pub mod benching {
    pub use crate::driver::gro::{Gro, Written, VNET_LEN};
    pub use crate::driver::tso::{read as tso_read, Read, Tso};
    pub use crate::latching::{BurstLatch, MEMO};
}

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use dns::{lookup_ipseckey, peer_keys_from_dns, reverse_name, DnsError, DnsPeerKeys};
pub use ike::{
    ChildConfig, ChildSaId, Credentials, IkeSaId, PeerConfig as IkePeerConfig, PeerCredential,
};
pub use keys::{EspSaKeys, IkeSaKeyRecord, IkeSaKeys, SessionKeys};
pub use latch::{
    Alert, ConnectionRequest, FiveTuple, LatchConfig, LatchError, LatchId, LatchInfo, LatchState,
    ListenerRequest, NatInfo, PeerAuth, PeerIdentity, RequestedProtection, RestartPolicy,
    ThreeTuple,
};
pub use latching::{default_policy, Direction, LatchDropCount};
pub use pad::{
    AuthMethod, EspProposal, Identity, IkeProposal, Mode, PolicyConfig, TrafficSelector,
};
pub use pinfile::PinFileError;

/// What went wrong, precisely enough for a CLI to say so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket could not be opened or used.
    #[error("socket {addr}: {source}")]
    Io {
        /// The address involved.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// IKE failed (the peer refused, authentication failed, no proposal, timeout ...).
    #[error("IKE with {peer} failed: {error}")]
    Ike {
        /// The peer's address.
        peer: SocketAddr,
        /// The IKE error.
        error: ike::Error,
    },
    /// The child SA could not be set up although the IKE SA was.
    #[error("child SA with {peer} failed: {error}")]
    Child {
        /// The peer's address.
        peer: SocketAddr,
        /// The IKE error.
        error: ike::Error,
    },
    /// The SA could not be installed into the ESP datapath.
    #[error("cannot install SA: {0}")]
    Install(String),
    /// A datagram could not be sent (no SA, too large, sequence exhausted ...).
    #[error("cannot send: {0}")]
    Send(String),
    /// The endpoint's driver has stopped.
    #[error("the endpoint has shut down")]
    Closed,
    /// Nothing happened in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A latched flow's datagram was not sent: no SA matching the latch
    /// exists now, or the latch is not Established (R5, R6). This is packet
    /// loss (R9): nothing left unprotected; the application retries as it
    /// would after any loss, or treats a FAILED/CLOSED latch as a reset.
    #[error("datagram of {latch} dropped: {reason}")]
    Dropped {
        /// The latch.
        latch: LatchId,
        /// Why (a [`latch::DropReason`] name).
        reason: String,
    },
    /// A latch request was refused; policy refusals name the PAD or SPD
    /// entry (R3, R14, R19).
    #[error("latch refused: {0}")]
    Latch(#[from] LatchError),
    /// The TUN device could not be opened, configured or used.
    #[error("TUN device {name}: {reason}")]
    Tun {
        /// The interface name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// Keys cannot be exported (key export is off).
    #[error("key export: {0}")]
    KeyExport(String),
    /// The pin file ([`EndpointConfig::pin_file`]) could not be read.
    #[error(transparent)]
    PinFile(#[from] PinFileError),
}

/// Where an endpoint listens.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Address for IKE (UDP 500 in production; port 0 picks a free port).
    pub ike_addr: SocketAddr,
    /// Address for NAT-T: IKE after the move and ESP in UDP (UDP 4500).
    pub natt_addr: SocketAddr,
    /// Half-open IKE SAs before a COOKIE is demanded (RFC 7296 2.6).
    pub cookie_threshold: usize,
    /// Hard bound on half-open IKE SAs.
    pub max_half_open: usize,
    /// How long `connect` waits for the IKE SA and first child SA.
    pub connect_timeout: Duration,
    /// The PAD and SPD the latch table starts with (`None`:
    /// [`default_policy`]: any peer by PSK or NULL, PROTECT everything).
    /// Replace it later with [`Endpoint::set_policy`].
    pub policy: Option<PolicyConfig>,
    /// Latch table switches: latching on/off (R14), Larval timeout (R9),
    /// narrow or refuse (R13).
    pub latching: LatchConfig,
    /// Harness only (a misbehaving peer): send through channels outside the
    /// negotiated traffic selectors and ignoring latches, and accept every
    /// child SA without asking the latch table. Never set it in production.
    pub misbehave: bool,
    /// The TUN datapath: when set, the endpoint opens this TUN device,
    /// routes the remote traffic selectors of every child SA into it,
    /// protects what the OS stack sends there and writes what it decrypts
    /// back (needs CAP_NET_ADMIN). `None`: channels only.
    pub tun: Option<TunConfig>,
    /// Keep the keys of every IKE and child SA for
    /// [`Endpoint::session_keys`] (Wireshark decryption tables). Off by
    /// default; turning it on hands SECRET keys to whoever can call the
    /// API (a warning is logged at bind and at every export).
    pub key_export: bool,
    /// Where the BTNS pin store lives (SSH `known_hosts` style: one
    /// `ADDRESS sha256:HEX` line per peer address whose key was pinned, for
    /// peers with [`ike::Credentials::pinning`]). Read at bind (a missing
    /// file is an empty store), rewritten atomically with mode 0600 when a
    /// pin is added (at most once a second) and at shutdown. `None`: pins
    /// live in memory only and are forgotten when the endpoint stops.
    pub pin_file: Option<std::path::PathBuf>,
    /// One receive queue for the whole endpoint: the datagrams of every
    /// channel arrive through [`Endpoint::recv_any`] (each names its
    /// channel, [`Datagram::channel`]), answers go out with
    /// [`Endpoint::send_on`], and [`Channel::recv`] returns `None` at once.
    /// For a server with many peers: it keeps no task, future or queue per
    /// channel (about 0.4 KiB per SA held; docs/performance.md, memory
    /// per SA), and it need not even keep the [`Channel`] handles. Off by
    /// default.
    pub shared_receive: bool,
}

/// A TUN device for the OS-stack datapath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (`latchkey0` by default).
    pub name: String,
    /// Interface MTU (inner packets; leave room for ESP-in-UDP overhead).
    pub mtu: u16,
    /// Addresses with prefix lengths to put on the interface.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Add a route into the device for each remote traffic selector of an
    /// installed child SA, and remove it when the SA goes.
    pub routes: bool,
    /// R18 non-native latching: latch the OS stack's flows through the
    /// device by watching them (a TCP SYN or a UDP flow's first packet
    /// creates a connection latch bound to the SA carrying it; RST, FIN
    /// from both sides, or `udp_idle` without a packet releases it).
    pub latch_flows: bool,
    /// How long a watched UDP flow may be idle before its latch is released.
    pub udp_idle: Duration,
    /// Open a raw ESP socket (IP protocol 50, of the address family of
    /// `natt_addr`) for child SAs without UDP encapsulation (needs
    /// CAP_NET_RAW). Without it such SAs cannot carry TUN traffic (counted
    /// drops).
    pub raw_esp: bool,
    /// Linux TUN offload (IFF_VNET_HDR with TSO/checksum offload): the OS
    /// stack hands over TCP segments of up to 64 KiB, split into packets
    /// of the MTU in userspace (by tun-rs) before ESP: far fewer reads
    /// and less kernel work per octet; decapsulated TCP segments are
    /// coalesced on the way back (GRO). Off by default here (the daemon
    /// turns it on); if the kernel refuses it, the device opens without it
    /// and a warning is logged.
    pub offload: bool,
}

impl Default for TunConfig {
    fn default() -> Self {
        Self {
            name: "latchkey0".into(),
            mtu: 1400,
            addresses: Vec::new(),
            routes: true,
            latch_flows: false,
            udp_idle: Duration::from_secs(60),
            raw_esp: true,
            offload: false,
        }
    }
}

impl EndpointConfig {
    /// Loopback, any free ports.
    pub fn loopback() -> Self {
        Self::on(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 0)
    }

    /// The given address with the given ports (0 = any free port).
    pub fn on(addr: IpAddr, ike_port: u16, natt_port: u16) -> Self {
        Self {
            ike_addr: SocketAddr::new(addr, ike_port),
            natt_addr: SocketAddr::new(addr, natt_port),
            cookie_threshold: 64,
            max_half_open: 4096,
            connect_timeout: Duration::from_secs(30),
            policy: None,
            latching: LatchConfig::default(),
            misbehave: false,
            tun: None,
            key_export: false,
            pin_file: None,
            shared_receive: false,
        }
    }
}

/// Datagrams the one receive queue of [`EndpointConfig::shared_receive`]
/// holds before it drops (a channel's own queue holds 1024).
const SHARED_RECEIVE_QUEUE: usize = 16 * 1024;

/// A peer as the endpoint sees it: IKE's peer configuration.
pub type PeerConfig = ike::PeerConfig;

/// A BTNS peer (RFC 5386): NULL authentication both ways (RFC 7619),
/// default proposals, tunnel mode, the given traffic selectors.
pub fn btns_peer(name: &str, local_ts: TrafficSelector, remote_ts: TrafficSelector) -> PeerConfig {
    peer_config(name, AuthMethod::Null, None, local_ts, remote_ts)
}

/// A peer configuration with default proposals, lifetimes and tunnel mode.
pub fn peer_config(
    name: &str,
    auth: AuthMethod,
    psk: Option<certs::Psk>,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
) -> PeerConfig {
    let local_id = match auth {
        AuthMethod::Null => Identity::Null,
        _ => Identity::Fqdn("latchkey.invalid".to_owned()),
    };
    PeerConfig {
        name: name.to_owned(),
        local_id,
        remote_id: None,
        local_auth: auth,
        remote_auth: auth,
        psk,
        credentials: Default::default(),
        ike_proposals: IkeProposal::defaults(),
        child: ChildConfig {
            esp_proposals: EspProposal::defaults(),
            local_ts: vec![local_ts],
            remote_ts: vec![remote_ts],
            mode: Mode::Tunnel,
            rekey_after: None,
            replay_window: 1024,
        },
        ike_rekey_after: None,
        dpd_interval: None,
        force_encap: true,
        remote_natt_port: 4500,
    }
}

/// A datagram that came through a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Inner source address and port (the peer's side).
    pub src: SocketAddr,
    /// Inner destination address and port (our side).
    pub dst: SocketAddr,
    /// The UDP payload.
    pub data: Vec<u8>,
    /// SPI of the inbound SA that protected it (R17).
    pub spi: u32,
    /// Tag of that SA in the SAD (our child SA id).
    pub sa: u64,
    /// The channel it came through ([`Channel::channel_id`]; what
    /// [`Endpoint::send_on`] takes to answer).
    pub channel: u64,
    /// The connection latch the datagram's flow is latched to, if any: the
    /// SA above matched it (R6, R17).
    pub latch: Option<LatchId>,
    /// The latch table's state version when the datagram was decapsulated
    /// and checked (R16); [`Channel::recv`] checks it again if the table
    /// changed since.
    pub latch_version: u64,
}

impl Datagram {
    /// The datagram's connection as this host sees it (UDP, local = its
    /// destination, remote = its source): what latches and inquiries use.
    pub fn five_tuple(&self) -> FiveTuple {
        FiveTuple::new(17, self.dst, self.src)
    }
}

/// Negotiated parameters of a child SA, for display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildSummary {
    /// Local child SA id.
    pub id: u64,
    /// The IKE SA it was negotiated under ([`IkeSummary::id`]; in
    /// [`Endpoint::status`], the one it belongs to now, after IKE rekeys).
    pub ike_sa: u64,
    /// Inbound SPI (ours).
    pub inbound_spi: u32,
    /// Outbound SPI (the peer's).
    pub outbound_spi: u32,
    /// ESP proposal as chosen, strongSwan syntax.
    pub suite: String,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Local traffic selectors.
    pub local_ts: Vec<String>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<String>,
    /// Whether ESP is carried in UDP (RFC 3948).
    pub udp_encap: bool,
    /// Anti-replay window in packets.
    pub replay_window: u32,
}

/// Negotiated parameters of an IKE SA, for display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IkeSummary {
    /// Local IKE SA id.
    pub id: u64,
    /// Peer configuration name.
    pub name: String,
    /// Whether we initiated it.
    pub initiator: bool,
    /// Initiator SPI, hex.
    pub spi_i: String,
    /// Responder SPI, hex.
    pub spi_r: String,
    /// Local outer address.
    pub local: SocketAddr,
    /// Remote outer address.
    pub remote: SocketAddr,
    /// Our identity.
    pub local_id: String,
    /// The peer's identity as asserted and authenticated.
    pub peer_id: String,
    /// How the peer authenticated.
    pub peer_auth: AuthMethod,
    /// IKE proposal as chosen, strongSwan syntax.
    pub suite: String,
    /// Whether we are behind a NAT.
    pub nat_local: bool,
    /// Whether the peer is behind a NAT.
    pub nat_remote: bool,
    /// Whether established.
    pub established: bool,
}

/// Counters of one child SA's ESP traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Packets sent (encapsulated).
    pub packets_out: u64,
    /// Octets of payload sent.
    pub bytes_out: u64,
    /// Packets received and accepted (decapsulated).
    pub packets_in: u64,
    /// Octets of payload received.
    pub bytes_in: u64,
}

/// The endpoint's state, for `status` and the demo.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Our IKE socket.
    pub ike_addr: Option<SocketAddr>,
    /// Our NAT-T socket.
    pub natt_addr: Option<SocketAddr>,
    /// IKE SAs.
    pub ike_sas: Vec<IkeSummary>,
    /// Child SAs with their traffic.
    pub child_sas: Vec<(ChildSummary, Traffic)>,
    /// Datagrams dropped before IKE or ESP accepted them, by reason.
    pub drops: Vec<(String, u64)>,
    /// ESP packets dropped by the SAD (ICV, replay, selector mismatch ...),
    /// by reason.
    pub esp_drops: Vec<(String, u64)>,
    /// Packets dropped by latch checks, by direction and reason (R5, R6,
    /// R9, R16).
    pub latch_drops: Vec<LatchDropCount>,
    /// The latch table's state version (R16).
    pub latch_version: u64,
    /// Latches in the table.
    pub latches: usize,
    /// ESP-in-UDP batches the kernel refused to segment (`UDP_SEGMENT`,
    /// `EIO`/`EINVAL`): each went out one datagram per send instead.
    pub gso_refused: u64,
    /// TUN offload: device writes our GRO made of several packets of one
    /// UDP GRO read (one GSO packet for the kernel each).
    pub tun_merged_writes: u64,
    /// The packets those writes carried.
    pub tun_merged_packets: u64,
    /// TUN offload: reads the OS stack left for us to cut (TSO, USO),
    /// each cut into segments written straight into the ESP send buffer.
    pub tun_cut_reads: u64,
    /// The segments those reads were cut into.
    pub tun_cut_segments: u64,
}

impl Status {
    /// Latch drops in one direction for one reason (`"SaMismatch"` ...).
    pub fn latch_drops_for(&self, direction: Direction, reason: &str) -> u64 {
        self.latch_drops
            .iter()
            .filter(|c| c.direction == direction && c.reason == reason)
            .map(|c| c.count)
            .sum()
    }

    /// All latch drops in one direction.
    pub fn latch_drops_total(&self, direction: Direction) -> u64 {
        self.latch_drops
            .iter()
            .filter(|c| c.direction == direction)
            .map(|c| c.count)
            .sum()
    }

    /// ESP drops for one reason (the `Debug` name of `esp::DropReason`,
    /// e.g. `"SelectorMismatch"`).
    pub fn esp_drops_for(&self, reason: &str) -> u64 {
        self.esp_drops
            .iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// An established channel: a child SA and the datagrams it carries.
#[derive(Debug)]
pub struct Channel {
    id: u64,
    /// Boxed: read only through the getters, while the handle itself is
    /// kept (and moved into tasks and futures) once per peer: a responder
    /// holding many channels keeps a pointer, not about 0.4 KiB inline,
    /// in each (docs/performance.md, memory per SA). `None` after
    /// [`Channel::forget_summaries`].
    info: Option<Box<ChannelInfo>>,
    cmd: mpsc::Sender<driver::Command>,
    /// `None` with [`EndpointConfig::shared_receive`]: the datagrams go to
    /// the endpoint's one queue.
    rx: Option<inbox::Inbox<Box<Datagram>>>,
    shared: latching::SharedRef,
}

/// What [`Channel`]'s getters return.
#[derive(Debug)]
pub(crate) struct ChannelInfo {
    pub(crate) ike: IkeSummary,
    pub(crate) child: ChildSummary,
    pub(crate) peer_credential: PeerCredential,
}

/// What the getters of a [`Channel`] return after
/// [`Channel::forget_summaries`]: ids 0, empty strings, unspecified
/// addresses.
static FORGOTTEN: std::sync::LazyLock<ChannelInfo> = std::sync::LazyLock::new(|| {
    let nowhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    ChannelInfo {
        ike: IkeSummary {
            id: 0,
            name: String::new(),
            initiator: false,
            spi_i: String::new(),
            spi_r: String::new(),
            local: nowhere,
            remote: nowhere,
            local_id: String::new(),
            peer_id: String::new(),
            peer_auth: AuthMethod::Null,
            suite: String::new(),
            nat_local: false,
            nat_remote: false,
            established: false,
        },
        child: ChildSummary {
            id: 0,
            ike_sa: 0,
            inbound_spi: 0,
            outbound_spi: 0,
            suite: String::new(),
            mode: Mode::Tunnel,
            esn: false,
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            udp_encap: false,
            replay_window: 0,
        },
        peer_credential: PeerCredential::default(),
    }
});

impl Channel {
    fn info(&self) -> &ChannelInfo {
        self.info.as_deref().unwrap_or(&FORGOTTEN)
    }

    /// Frees the channel's summaries (what [`Channel::ike_sa`],
    /// [`Channel::child_sa`] and [`Channel::peer_credential`] return, about
    /// 0.9 KiB) for a responder that holds many channels and has shown them
    /// already (`latchkey listen`: docs/performance.md, memory per SA).
    /// Afterwards those getters return placeholders: ids 0, empty strings,
    /// unspecified addresses. [`Endpoint::status`] still has the SAs.
    pub fn forget_summaries(&mut self) {
        self.info = None;
    }

    /// The IKE SA this channel runs under, as negotiated.
    pub fn ike_sa(&self) -> &IkeSummary {
        &self.info().ike
    }

    /// How the peer proved who it is (R7): anonymous (NULL), the shared
    /// key, its certificate with the trust anchor it chained to, or its raw
    /// public key.
    pub fn peer_credential(&self) -> &PeerCredential {
        &self.info().peer_credential
    }

    /// The child SA, as negotiated when the channel came up.
    pub fn child_sa(&self) -> &ChildSummary {
        &self.info().child
    }

    /// Send one UDP datagram from inner address `src` to inner address `dst`
    /// through the channel's child SA (tunnel mode: an inner IP/UDP packet
    /// in ESP). Fails if the addresses are outside the negotiated traffic
    /// selectors or the SA cannot send.
    pub async fn send(&self, src: SocketAddr, dst: SocketAddr, data: &[u8]) -> Result<(), Error> {
        send_on(&self.cmd, self.id, src, dst, data).await
    }

    /// The channel's id: what [`Datagram::channel`] names and
    /// [`Endpoint::send_on`] takes.
    pub fn channel_id(&self) -> u64 {
        self.id
    }

    /// The next datagram that arrived through the channel; `None` once the
    /// channel is closed, and always with
    /// [`EndpointConfig::shared_receive`] (use [`Endpoint::recv_any`]).
    ///
    /// R16: each datagram was checked against the latch table at
    /// decapsulation; if the table changed since (its version moved), it is
    /// checked again here and dropped (counted as [`Direction::Delivery`])
    /// if its latch no longer admits it.
    pub async fn recv(&mut self) -> Option<Datagram> {
        let rx = self.rx.as_mut()?;
        loop {
            let dg = rx.recv().await?;
            if deliverable(&self.shared, &dg) {
                return Some(*dg);
            }
        }
    }

    /// Latch the UDP connection `local` (our inner address) <-> `remote`
    /// (the peer's) that this channel carries (R12 "latch on connect", R15),
    /// with the protection of system policy. When the channel's SA covers
    /// the connection and fits the policy the latch is Established at once,
    /// bound to this channel's peer and protection; it stays so for its
    /// lifetime (R8). Dropping the returned [`LatchedFlow`] releases it.
    pub async fn latch(&self, local: SocketAddr, remote: SocketAddr) -> Result<LatchedFlow, Error> {
        self.latch_with(ConnectionRequest::new(FiveTuple::new(17, local, remote)))
            .await
    }

    /// [`Channel::latch`] with a full request: protection wanted, expected
    /// peer, privilege (R3, R19).
    pub async fn latch_with(&self, req: ConnectionRequest) -> Result<LatchedFlow, Error> {
        create_connection_latch(&self.cmd, &self.shared, req).await
    }

    /// Delete only this channel's child SA (INFORMATIONAL with its Delete
    /// payload, RFC 7296 1.4.1); the IKE SA stays. Returns once the Delete
    /// is queued; the channel ends ([`Channel::recv`] gives `None`) when
    /// the child SA is gone.
    pub async fn close_child(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::CloseChild {
                channel: self.id,
                reply: tx,
            })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Tear the channel down: delete the child SA and its IKE SA
    /// (INFORMATIONAL with Delete payloads, RFC 7296 1.4).
    pub async fn close(self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::Close {
                channel: self.id,
                reply: tx,
            })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

async fn create_connection_latch(
    cmd: &mpsc::Sender<driver::Command>,
    shared: &latching::SharedRef,
    req: ConnectionRequest,
) -> Result<LatchedFlow, Error> {
    let five = req.five;
    let (tx, rx) = oneshot::channel();
    cmd.send(driver::Command::CreateConnection {
        req: Box::new(req),
        reply: tx,
    })
    .await
    .map_err(|_| Error::Closed)?;
    let id = rx.await.map_err(|_| Error::Closed)??;
    Ok(LatchedFlow {
        id,
        five,
        cmd: cmd.clone(),
        shared: shared.clone(),
        released: false,
    })
}

/// A connection latch held by the application (R12, R15): a 5-tuple bound,
/// once Established, to one peer and one protection for its lifetime.
/// Datagrams of the flow go through any [`Channel`] with
/// [`Channel::send`]; they leave only under an SA matching the latch and
/// arrive only if protected by one ([`Datagram::latch`] names it).
/// Dropping it releases the latch (R15); [`LatchedFlow::release`] does so
/// and waits for it.
#[derive(Debug)]
pub struct LatchedFlow {
    id: LatchId,
    five: FiveTuple,
    cmd: mpsc::Sender<driver::Command>,
    shared: latching::SharedRef,
    released: bool,
}

impl LatchedFlow {
    /// The latch's handle.
    pub fn id(&self) -> LatchId {
        self.id
    }

    /// The connection latched.
    pub fn five_tuple(&self) -> FiveTuple {
        self.five
    }

    /// R2, R7: the latch's state and latched parameters now.
    pub fn inquire(&self) -> Option<LatchInfo> {
        latching::lock(&self.shared).table.info(self.id)
    }

    /// R15: destroy the latch (teardown of the connection).
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        release(&self.cmd, self.id).await
    }
}

impl Drop for LatchedFlow {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.cmd.try_send(driver::Command::Release {
                id: self.id,
                reply: None,
            });
        }
    }
}

/// Send one datagram through channel `channel` (see [`Channel::send`]).
async fn send_on(
    cmd: &mpsc::Sender<driver::Command>,
    channel: u64,
    src: SocketAddr,
    dst: SocketAddr,
    data: &[u8],
) -> Result<(), Error> {
    let (tx, rx) = oneshot::channel();
    cmd.send(driver::Command::Send {
        channel,
        src,
        dst,
        data: data.to_vec(),
        reply: tx,
    })
    .await
    .map_err(|_| Error::Closed)?;
    rx.await.map_err(|_| Error::Closed)?
}

/// R16: a datagram checked at decapsulation under table version
/// `dg.latch_version` is checked again if the table changed since; a drop
/// is counted as [`Direction::Delivery`].
fn deliverable(shared: &latching::SharedRef, dg: &Datagram) -> bool {
    let verdict = {
        let mut s = latching::lock(shared);
        let d = s
            .table
            .check_delivery(dg.latch_version, &dg.five_tuple(), Some(dg.sa));
        if let latch::Delivery::Drop { reason, .. } = d {
            s.count(Direction::Delivery, reason);
        }
        d
    };
    match verdict {
        latch::Delivery::Deliver => true,
        other => {
            tracing::debug!(five = %dg.five_tuple(), ?other, "datagram dropped at delivery (R16)");
            false
        }
    }
}

async fn release(cmd: &mpsc::Sender<driver::Command>, id: LatchId) -> Result<(), Error> {
    let (tx, rx) = oneshot::channel();
    cmd.send(driver::Command::Release {
        id,
        reply: Some(tx),
    })
    .await
    .map_err(|_| Error::Closed)?;
    Ok(rx.await.map_err(|_| Error::Closed)??)
}

/// A running endpoint. Dropping it stops the driver (without deleting SAs;
/// call [`Endpoint::shutdown`] for an orderly exit).
#[derive(Debug)]
pub struct Endpoint {
    cmd: mpsc::Sender<driver::Command>,
    accept: tokio::sync::Mutex<mpsc::Receiver<Channel>>,
    /// The one receive queue ([`EndpointConfig::shared_receive`]).
    any: Option<tokio::sync::Mutex<inbox::Inbox<Box<Datagram>>>>,
    ike_addr: SocketAddr,
    natt_addr: SocketAddr,
    connect_timeout: Duration,
    shared: latching::SharedRef,
    alerts: broadcast::Sender<Alert>,
}

impl Endpoint {
    /// Open the sockets and start the driver. `peers` are the peer
    /// configurations used when answering (responder role).
    ///
    /// With [`EndpointConfig::tun`] set, also creates and configures the
    /// TUN device and (with [`TunConfig::raw_esp`]) the raw ESP socket;
    /// fails with [`Error::Tun`] without CAP_NET_ADMIN / CAP_NET_RAW.
    pub async fn bind(config: EndpointConfig, peers: Vec<PeerConfig>) -> Result<Self, Error> {
        let ike_sock = UdpSocket::bind(config.ike_addr)
            .await
            .map_err(|source| Error::Io {
                addr: config.ike_addr,
                source,
            })?;
        let natt_sock = UdpSocket::bind(config.natt_addr)
            .await
            .map_err(|source| Error::Io {
                addr: config.natt_addr,
                source,
            })?;
        let io = |addr, source| Error::Io { addr, source };
        let ike_addr = ike_sock.local_addr().map_err(|e| io(config.ike_addr, e))?;
        let natt_addr = natt_sock
            .local_addr()
            .map_err(|e| io(config.natt_addr, e))?;
        // The TUN datapath: the device first (it fails without
        // CAP_NET_ADMIN), then the raw ESP socket.
        let tun = match &config.tun {
            Some(t) => Some(driver::TunSetup::open(t, config.natt_addr.is_ipv6()).await?),
            None => None,
        };
        let ike_config = ike::Config {
            ike_port: ike_addr.port(),
            natt_port: natt_addr.port(),
            peers,
            cookie_threshold: config.cookie_threshold,
            max_half_open: config.max_half_open,
            retransmit: ike::RetransmitConfig::default(),
            fragmentation: Default::default(),
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        // Channels of SAs the peers set up, not yet taken by `accept`: a
        // responder taking in thousands of SAs a second (and echoing on
        // them, `latchkey listen --echo`) fell behind 64 and dropped
        // channels; the queue's blocks are allocated only as it fills.
        let (accept_tx, accept_rx) = mpsc::channel(1024);
        let policy = config.policy.unwrap_or_else(default_policy);
        let table = latch::LatchTable::new(policy.pad, policy.spd, config.latching);
        let shared = Arc::new(Mutex::new(latching::Shared::new(table, !config.misbehave)));
        let (alerts, _) = broadcast::channel(1024);
        let drv = driver::Driver::new(
            ike_config,
            ike_sock,
            natt_sock,
            ike_addr,
            natt_addr,
            cmd_tx.downgrade(),
            accept_tx,
            shared.clone(),
            alerts.clone(),
            config.misbehave,
            tun,
        );
        let drv = match &config.pin_file {
            Some(path) => {
                let pins = pinfile::load(path, ike::PinPolicy::default())?;
                tracing::info!(path = %path.display(), pins = pins.len(), "pin file read");
                drv.with_pin_file(path.clone(), pins)
            }
            None => drv,
        };
        // Bounded like a channel's own queue, for the endpoint as a whole:
        // what the application has not read yet when it is full is
        // dropped and counted ("channel receive queue full").
        let (drv, any) = if config.shared_receive {
            let (tx, rx) = inbox::inbox(SHARED_RECEIVE_QUEUE);
            (
                drv.with_shared_receive(tx),
                Some(tokio::sync::Mutex::new(rx)),
            )
        } else {
            (drv, None)
        };
        let drv = if config.key_export {
            tracing::warn!(
                "key export is ON: the keys of every SA can be read through Endpoint::session_keys"
            );
            drv.export_keys()
        } else {
            drv
        };
        tokio::spawn(drv.run(cmd_rx));
        tracing::info!(%ike_addr, %natt_addr, "endpoint listening");
        Ok(Self {
            cmd: cmd_tx,
            accept: tokio::sync::Mutex::new(accept_rx),
            any,
            ike_addr,
            natt_addr,
            connect_timeout: config.connect_timeout,
            shared,
            alerts,
        })
    }

    /// Our IKE address (with the port actually bound).
    pub fn ike_addr(&self) -> SocketAddr {
        self.ike_addr
    }

    /// Our NAT-T address (with the port actually bound).
    pub fn natt_addr(&self) -> SocketAddr {
        self.natt_addr
    }

    /// Set up an IKE SA and its first child SA with `remote` (the peer's IKE
    /// address) and return the channel once both are established.
    pub async fn connect(&self, peer: PeerConfig, remote: SocketAddr) -> Result<Channel, Error> {
        self.ask_channel(|reply| driver::Command::Connect {
            peer: Box::new(peer),
            remote,
            reply,
        })
        .await
    }

    /// Send the driver a command that answers with a channel, and wait for
    /// it at most the connect timeout.
    async fn ask_channel(
        &self,
        cmd: impl FnOnce(oneshot::Sender<Result<Channel, Error>>) -> driver::Command,
    ) -> Result<Channel, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(cmd(tx)).await.map_err(|_| Error::Closed)?;
        match tokio::time::timeout(self.connect_timeout, rx).await {
            Ok(r) => r.map_err(|_| Error::Closed)?,
            Err(_) => Err(Error::Timeout(self.connect_timeout)),
        }
    }

    /// The next channel a peer set up with us (responder role).
    pub async fn accept(&self) -> Option<Channel> {
        self.accept.lock().await.recv().await
    }

    /// With [`EndpointConfig::shared_receive`]: the next datagram of any
    /// channel ([`Datagram::channel`] says which), R16-checked like
    /// [`Channel::recv`]. `None` once the endpoint stopped, and always
    /// without `shared_receive`. Channels that close are not announced
    /// here: their datagrams just stop.
    pub async fn recv_any(&self) -> Option<Datagram> {
        let mut rx = self.any.as_ref()?.lock().await;
        loop {
            let dg = rx.recv().await?;
            if deliverable(&self.shared, &dg) {
                return Some(*dg);
            }
        }
    }

    /// Send one datagram through the channel with id `channel`
    /// ([`Channel::channel_id`], [`Datagram::channel`]): what
    /// [`Channel::send`] does, for an application that keeps ids rather
    /// than [`Channel`] handles.
    pub async fn send_on(
        &self,
        channel: u64,
        src: SocketAddr,
        dst: SocketAddr,
        data: &[u8],
    ) -> Result<(), Error> {
        send_on(&self.cmd, channel, src, dst, data).await
    }

    /// [`Endpoint::connect`] for a latched connection (R12, R15, R5): the
    /// connection latch is created first (Larval: nothing of the flow passes
    /// yet), then the IKE and child SA are set up; the child SA binds the
    /// latch (Established) if it fits the request. Fails, and releases the
    /// latch, if the latch is refused or not Established once the channel
    /// is up.
    pub async fn connect_latched(
        &self,
        peer: PeerConfig,
        remote: SocketAddr,
        req: ConnectionRequest,
    ) -> Result<(Channel, LatchedFlow), Error> {
        let flow = self.create_connection_latch(req).await?;
        let ch = self.connect(peer, remote).await?;
        match flow.inquire().map(|i| i.state) {
            Some(LatchState::Established) => Ok((ch, flow)),
            state => {
                let id = flow.id();
                let _ = flow.release().await;
                Err(Error::Dropped {
                    latch: id,
                    reason: format!(
                        "the channel's SA did not establish the latch (state {})",
                        state.map_or("gone".to_owned(), |s| s.to_string())
                    ),
                })
            }
        }
    }

    /// R12, R3: create a connection latch for a 5-tuple with the
    /// protection and expected peer wanted; refusals name the PAD or SPD
    /// entry ([`Error::Latch`]). Larval until a fitting SA binds it
    /// (or Established at once when one already covers it).
    pub async fn create_connection_latch(
        &self,
        req: ConnectionRequest,
    ) -> Result<LatchedFlow, Error> {
        create_connection_latch(&self.cmd, &self.shared, req).await
    }

    /// R12, R3: create a listener latch for a 3-tuple (unique per
    /// 3-tuple). The first packet of each connection under it creates and
    /// binds that connection's latch. Release it with
    /// [`Endpoint::release_latch`].
    pub async fn create_listener_latch(&self, req: ListenerRequest) -> Result<LatchId, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::CreateListener {
                req: Box::new(req),
                reply: tx,
            })
            .await
            .map_err(|_| Error::Closed)?;
        Ok(rx.await.map_err(|_| Error::Closed)??)
    }

    /// R15: destroy a latch (listener or connection) by handle.
    pub async fn release_latch(&self, id: LatchId) -> Result<(), Error> {
        release(&self.cmd, id).await
    }

    /// R2, R7: the connection latch of a 5-tuple, its state and latched
    /// parameters (peer identity and authentication, QoP, NAT, SPIs).
    pub fn inquire(&self, five: &FiveTuple) -> Option<LatchInfo> {
        latching::lock(&self.shared).table.inquire(five)
    }

    /// A latch by handle.
    pub fn latch_info(&self, id: LatchId) -> Option<LatchInfo> {
        latching::lock(&self.shared).table.info(id)
    }

    /// RFC 5660 ENUMERATE: every latch.
    pub fn latches(&self) -> Vec<LatchInfo> {
        latching::lock(&self.shared).table.enumerate()
    }

    /// RFC 5660 ALERTs: every latch state change from now on. A receiver
    /// that falls more than 1024 alerts behind gets
    /// `RecvError::Lagged` and continues with the newest.
    pub fn alerts(&self) -> broadcast::Receiver<Alert> {
        self.alerts.subscribe()
    }

    /// Replace the PAD and SPD (a configuration reload). Established latches
    /// keep their peer and protection (R8); the new policy governs new
    /// latches and new child SAs.
    pub async fn set_policy(&self, policy: PolicyConfig) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::SetPolicy {
                policy: Box::new(policy),
                reply: tx,
            })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Replace the peer configurations used when answering (a configuration
    /// reload). Established IKE and child SAs are not disturbed.
    pub async fn set_peers(&self, peers: Vec<PeerConfig>) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::SetPeers { peers, reply: tx })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// R10: restart the key manager as after a crash: every IKE and child
    /// SA and every channel is forgotten (nothing is sent to the peers) and
    /// IKE starts afresh. Latches are reset (CLOSED) or survive with their
    /// bindings, per `policy`; a surviving latch is never re-bound to
    /// another peer (anonymous peers get new handles after a restart, so a
    /// NULL-authenticated peer coming back is not taken for the old one).
    pub async fn restart_key_manager(&self, policy: RestartPolicy) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::Restart { policy, reply: tx })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The keys of the IKE SAs and ESP SAs up now, with the outer
    /// addresses and SPIs that find their packets (for Wireshark's
    /// `ikev2_decryption_table` and `esp_sa`). SECRET: zeroized on drop,
    /// never log them. Fails with [`Error::KeyExport`] unless the endpoint
    /// was bound with [`EndpointConfig::key_export`].
    pub async fn session_keys(&self) -> Result<SessionKeys, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::SessionKeys { reply: tx })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Delete the IKE SA `id` ([`IkeSummary::id`], as [`Endpoint::status`]
    /// shows it) and with it all its child SAs (INFORMATIONAL Delete, RFC
    /// 7296 1.4.1); returns once the peer answered or gave up. Also for an
    /// IKE SA left without child SAs (the peer deleted them), which no
    /// [`Channel`] can close any more. `Ok` if there is no such IKE SA.
    pub async fn close_ike_sa(&self, id: u64) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::CloseIke {
                ike_sa: id,
                reply: tx,
            })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Another child SA under the established IKE SA `ike_sa`
    /// ([`IkeSummary::id`]): CREATE_CHILD_SA (RFC 7296 1.3.1) with `child`'s
    /// proposals and selectors, as a new [`Channel`]. For an IKE SA whose
    /// child SAs the peer deleted: no second IKE SA is needed. One such
    /// request per IKE SA at a time; waits at most the connect timeout. A
    /// child SA the peer happens to create under the same IKE SA while
    /// this waits may be the one handed back.
    pub async fn connect_child(&self, ike_sa: u64, child: ChildConfig) -> Result<Channel, Error> {
        self.ask_channel(|reply| driver::Command::ConnectChild {
            ike_sa,
            child: Box::new(child),
            reply,
        })
        .await
    }

    /// A snapshot of IKE SAs, child SAs and counters.
    pub async fn status(&self) -> Result<Status, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::Status { reply: tx })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Delete every IKE SA (INFORMATIONAL), wait briefly for the peers'
    /// answers, and stop the driver. Takes `&self` so an endpoint shared
    /// with other tasks (an `Arc`) can still be shut down in order.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(driver::Command::Shutdown { reply: tx })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }
}
