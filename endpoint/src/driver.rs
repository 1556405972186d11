//! The driver task: owns the sockets, `ike::Ike` and `esp::Sad` (and, in
//! TUN mode, the TUN device and the raw ESP socket: [`tun`]).

mod esp_out;
pub(crate) mod gro;
mod ike_tx;
pub(crate) mod tso;
mod tun;

pub(crate) use tun::TunSetup;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use latch::{
    Alert, ConnectionRequest, FiveTuple, Flow, LatchError, LatchId, ListenerRequest, NatInfo,
    Outbound, PassKind, RestartPolicy, Verdict,
};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::latching::{self, lock, BurstLatch, Direction, LatchPolicy, Shared, SharedRef};
use crate::{Channel, ChildSummary, Datagram, Error, IkeSummary, Status, Traffic};

/// Maps keyed by child SA: looked up for every packet (traffic counters,
/// `spd_clean`), with keys this endpoint assigns, not the network, so a
/// fast seeded hash (foldhash) instead of SipHash.
pub(crate) type ChildMap<V> = HashMap<ike::ChildSaId, V, foldhash::fast::RandomState>;

/// Largest datagram we read or build.
pub(crate) const MAX_DATAGRAM: usize = 65_535;

/// Requests from the API to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Connect {
        peer: Box<ike::PeerConfig>,
        remote: SocketAddr,
        reply: oneshot::Sender<Result<Channel, Error>>,
    },
    Send {
        channel: u64,
        src: SocketAddr,
        dst: SocketAddr,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        channel: u64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    CloseIke {
        ike_sa: u64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    ConnectChild {
        ike_sa: u64,
        child: Box<ike::ChildConfig>,
        reply: oneshot::Sender<Result<Channel, Error>>,
    },
    CloseChild {
        channel: u64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    CreateConnection {
        req: Box<ConnectionRequest>,
        reply: oneshot::Sender<Result<LatchId, LatchError>>,
    },
    CreateListener {
        req: Box<ListenerRequest>,
        reply: oneshot::Sender<Result<LatchId, LatchError>>,
    },
    Release {
        id: LatchId,
        reply: Option<oneshot::Sender<Result<(), LatchError>>>,
    },
    SetPolicy {
        policy: Box<pad::PolicyConfig>,
        reply: oneshot::Sender<()>,
    },
    Restart {
        policy: RestartPolicy,
        reply: oneshot::Sender<()>,
    },
    SetPeers {
        peers: Vec<ike::PeerConfig>,
        reply: oneshot::Sender<()>,
    },
    SessionKeys {
        reply: oneshot::Sender<Result<crate::SessionKeys, Error>>,
    },
}

/// What the driver knows of a child SA: typed, no strings. The
/// [`ChildSummary`] the API shows is built from it on demand
/// ([`ChildState::summary`]): one is kept per SA held, so every string
/// here would be paid 100 000 times by a busy responder
/// (docs/performance.md, memory per SA).
struct ChildState {
    id: ike::ChildSaId,
    encr: pad::alg::Encr,
    integ: Option<pad::alg::Integ>,
    pfs: Option<pad::alg::DhGroup>,
    esn: bool,
    mode: pad::Mode,
    replay_window: u32,
    ike_sa: ike::IkeSaId,
    outbound_spi: u32,
    inbound_spi: u32,
    remote: SocketAddr,
    udp_encap: bool,
    local_ts: pad::TsList,
    remote_ts: pad::TsList,
    /// RFC 4301 5.1, 5.2: the SPD admits every packet the SA's selectors
    /// allow (`Spd::admits_all_protected`), so its packets need no SPD
    /// lookup of their own. Set at installation and on every policy change.
    spd_clean: bool,
    traffic: Traffic,
}

impl ChildState {
    /// The SA's quality of protection, as the SPD and latches see it.
    fn qop(&self) -> pad::SaQop {
        latching::qop(
            self.mode,
            self.encr,
            self.integ,
            self.esn,
            self.replay_window,
        )
    }

    /// Whether the SPD admits all the SA may carry (see `spd_clean`).
    fn spd_admits_all(&self, spd: &pad::Spd) -> bool {
        spd.admits_all_protected(&self.local_ts, &self.remote_ts, &self.qop())
    }

    /// RFC 4301 5.1, 5.2: why `spd` refuses a packet of `five` under this
    /// SA, if it does; no lookup when the SA is `spd_clean`.
    fn spd_refusal(&self, spd: &pad::Spd, five: &FiveTuple) -> Option<&'static str> {
        if self.spd_clean {
            return None;
        }
        spd.admits_protected(five, &self.qop())
            .err()
            .map(pad::SpdRefusal::reason)
    }

    fn summary(&self) -> ChildSummary {
        ChildSummary {
            id: self.id.0,
            ike_sa: self.ike_sa.0,
            inbound_spi: self.inbound_spi,
            outbound_spi: self.outbound_spi,
            suite: esp_suite(self.encr, self.integ, self.pfs, self.esn),
            mode: self.mode,
            esn: self.esn,
            local_ts: self.local_ts.iter().map(ToString::to_string).collect(),
            remote_ts: self.remote_ts.iter().map(ToString::to_string).collect(),
            udp_encap: self.udp_encap,
            replay_window: self.replay_window,
        }
    }
}

/// A channel: follows its child SA across rekeys.
struct ChannelState {
    /// The newest child SA of the channel: the one it sends on. Older
    /// ones it replaced still deliver to it until they are deleted (see
    /// `Driver::child_channel`).
    child: ike::ChildSaId,
    /// Boxed datagrams in a queue that allocates nothing before the first
    /// one (`crate::inbox`): one queue per SA held (docs/performance.md,
    /// memory per SA). `None`: the endpoint's one queue
    /// (`Driver::shared_receive`).
    tx: Option<crate::inbox::InboxSender<Box<Datagram>>>,
}

/// How many deleted child SAs remember their channel (`Driver::retired`).
const RETIRED_CHILDREN: usize = 64;
/// Batches of [`crate::os::IKE_BATCH`] datagrams read from the IKE socket
/// per wakeup (see `Driver::on_ike_ready`): without cookies demanded, and
/// while they are (RFC 7296 2.6: under an IKE_SA_INIT flood the driver
/// keeps draining, ~1000 datagrams, before it polls again).
const IKE_DRAIN_BATCHES: usize = 2;
const IKE_DRAIN_BATCHES_FLOOD: usize = 32;

/// The IKE socket's receive side (see `Driver::on_ike_ready`): a
/// preallocated batch and one reused buffer for stateless COOKIE answers.
struct IkeRx {
    /// [`crate::os::IKE_BATCH`] slots of [`MAX_DATAGRAM`] octets (zeroed
    /// by the allocator: only the pages datagrams reach become resident).
    buf: Vec<u8>,
    got: Vec<crate::os::Received>,
    reply: Vec<u8>,
    /// COOKIE answers the socket refused (`WouldBlock`: send buffer
    /// full), sent by the run loop, which waits until it is writable; at
    /// most one batch's worth.
    backlog: std::collections::VecDeque<(SocketAddr, Vec<u8>)>,
}

impl IkeRx {
    fn new() -> Self {
        Self {
            buf: vec![0; crate::os::IKE_BATCH * MAX_DATAGRAM],
            got: Vec::with_capacity(crate::os::IKE_BATCH),
            reply: Vec::with_capacity(128),
            backlog: std::collections::VecDeque::new(),
        }
    }

    fn datagram(&self, r: crate::os::Received) -> &[u8] {
        Self::slot(&self.buf, r)
    }

    /// Datagram `r` of the batch in `buf` (a borrow of the buffer alone,
    /// for a caller that writes `reply` meanwhile).
    fn slot(buf: &[u8], r: crate::os::Received) -> &[u8] {
        let start = r.slot * MAX_DATAGRAM;
        buf.get(start..start + r.len).unwrap_or_default()
    }
}

pub(crate) struct Driver {
    ike: ike::Ike,
    ike_config: ike::Config,
    shared: SharedRef,
    alerts: broadcast::Sender<Alert>,
    /// Harness only: send outside the traffic selectors and the latches.
    ignore_ts: bool,
    sad: esp::Sad,
    ike_sock: UdpSocket,
    natt_sock: UdpSocket,
    ike_addr: SocketAddr,
    natt_addr: SocketAddr,
    cmd_tx: mpsc::WeakSender<Command>,
    accept_tx: mpsc::Sender<Channel>,
    pending_connect: HashMap<ike::IkeSaId, (SocketAddr, oneshot::Sender<Result<Channel, Error>>)>,
    pending_close: HashMap<ike::IkeSaId, Vec<oneshot::Sender<Result<(), Error>>>>,
    /// The IKE SAs up (their summaries come from `ike` when asked for: a
    /// copy of each here would cost about 0.5 KiB per SA held).
    ike_sas: std::collections::HashSet<ike::IkeSaId>,
    /// Boxed: the map's spare slots hold a pointer, not a whole state.
    children: ChildMap<Box<ChildState>>,
    /// (IKE SA, child SA) of every entry of `children`: an IKE SA's child
    /// SAs without walking them all (deleting, rekeying or moving an IKE SA
    /// among 100 000 read every child's boxed state before). An ordered
    /// set: one entry a child, no allocation of its own per IKE SA.
    children_by_ike: BTreeSet<(ike::IkeSaId, ike::ChildSaId)>,
    channels: HashMap<u64, ChannelState>,
    /// Every installed child SA of a channel, the ones a rekey replaced
    /// included: the peer may still send on an old SA until its Delete
    /// (RFC 7296 1.3.3, 2.8), and a rekey collision (2.8.1) makes two
    /// children that replace the same one.
    child_channel: HashMap<ike::ChildSaId, u64>,
    /// `EndpointConfig::shared_receive`: every channel's datagrams go here.
    shared_receive: Option<crate::inbox::InboxSender<Box<Datagram>>>,
    /// Child SAs a peer's rekey made whose outbound half we do not use
    /// yet, and the SA they replaced, which still carries their packets
    /// (RFC 7296 2.8, see `Driver::sending_sa`). Empty but for the moment
    /// between a rekey we answered and the peer's first packet on the new
    /// SA or its Delete of the old one.
    outbound_held: HashMap<ike::ChildSaId, ike::ChildSaId>,
    /// Recently deleted child SAs and the channel they belonged to, so a
    /// child SA that replaces one already deleted (a collision's second
    /// child after a reordered Delete) still finds its channel.
    retired: std::collections::VecDeque<(ike::ChildSaId, u64)>,
    next_channel: u64,
    drops: HashMap<&'static str, u64>,
    /// IKE messages the socket refused mid-burst (`WouldBlock`), sent in
    /// order by [`Self::flush`] before anything newer.
    ike_tx_backlog: std::collections::VecDeque<ike::Transmit>,
    /// R9: latched flows for which a child SA is being acquired, and when
    /// the acquisition started (one CREATE_CHILD_SA per flow at a time).
    acquiring: HashMap<FiveTuple, (ike::IkeSaId, Instant)>,
    /// Output buffer for encapsulation.
    out: Vec<u8>,
    /// The TUN datapath, when on.
    tun: Option<tun::TunState>,
    /// ESP-in-UDP packets of a TUN burst waiting for one GSO send.
    esp_batch: esp_out::EspBatch,
    /// `UDP_GRO` is on for the NAT-T socket (TUN mode).
    natt_gro: bool,
    /// Key export (opt-in): the keys of the SAs up now.
    keys: Option<crate::keys::KeyStore>,
    /// The BTNS pin store's file, if the pins are kept on disk.
    pin_file: Option<crate::pinfile::PinFile>,
}

fn hex64(x: u64) -> String {
    format!("{x:016x}")
}

fn esp_suite(
    encr: pad::alg::Encr,
    integ: Option<pad::alg::Integ>,
    pfs: Option<pad::alg::DhGroup>,
    esn: bool,
) -> String {
    let mut s = encr.name().to_owned();
    if let Some(i) = integ {
        s.push('-');
        s.push_str(i.name());
    }
    if let Some(g) = pfs {
        s.push('-');
        s.push_str(g.name());
    }
    if esn {
        s.push_str("-esn");
    }
    s
}

fn ike_summary(info: &ike::IkeSaInfo) -> IkeSummary {
    let s = &info.suite;
    let mut suite = s.encr.name().to_owned();
    if let Some(i) = s.integ {
        suite.push('-');
        suite.push_str(i.name());
    }
    suite.push('-');
    suite.push_str(s.prf.name());
    suite.push('-');
    suite.push_str(s.dh.name());
    IkeSummary {
        id: info.id.0,
        name: info.name.clone(),
        initiator: info.initiator,
        spi_i: hex64(info.spi_i),
        spi_r: hex64(info.spi_r),
        local: info.local,
        remote: info.remote,
        local_id: info.local_id.to_string(),
        peer_id: info.peer_id.to_string(),
        peer_auth: info.peer_auth,
        suite,
        nat_local: info.nat_local,
        nat_remote: info.nat_remote,
        established: info.established,
    }
}

impl Driver {
    #[allow(
        clippy::too_many_arguments,
        reason = "private constructor, called once"
    )]
    pub(crate) fn new(
        config: ike::Config,
        ike_sock: UdpSocket,
        natt_sock: UdpSocket,
        ike_addr: SocketAddr,
        natt_addr: SocketAddr,
        cmd_tx: mpsc::WeakSender<Command>,
        accept_tx: mpsc::Sender<Channel>,
        shared: SharedRef,
        alerts: broadcast::Sender<Alert>,
        ignore_ts: bool,
        tun: Option<TunSetup>,
    ) -> Self {
        Self {
            ike: new_ike(&config, &shared),
            ike_config: config,
            shared,
            alerts,
            ignore_ts,
            sad: esp::Sad::new(),
            ike_sock,
            natt_sock,
            ike_addr,
            natt_addr,
            cmd_tx,
            accept_tx,
            pending_connect: HashMap::new(),
            pending_close: HashMap::new(),
            ike_sas: std::collections::HashSet::new(),
            children: ChildMap::default(),
            children_by_ike: BTreeSet::new(),
            channels: HashMap::new(),
            child_channel: HashMap::new(),
            shared_receive: None,
            outbound_held: HashMap::new(),
            retired: std::collections::VecDeque::new(),
            next_channel: 1,
            drops: HashMap::new(),
            ike_tx_backlog: std::collections::VecDeque::new(),
            acquiring: HashMap::new(),
            out: vec![0; MAX_DATAGRAM],
            tun: tun.map(tun::TunState::new),
            esp_batch: esp_out::EspBatch::default(),
            natt_gro: false,
            keys: None,
            pin_file: None,
        }
    }

    /// Start from the pins read from `path`, and write them back there
    /// when they change ([`crate::EndpointConfig::pin_file`]).
    pub(crate) fn with_pin_file(
        mut self,
        path: std::path::PathBuf,
        mut pins: ike::PinStore,
    ) -> Self {
        pins.policy = self.ike.pins().policy;
        pins.max_entries = self.ike.pins().max_entries;
        *self.ike.pins_mut() = pins;
        self.pin_file = Some(crate::pinfile::PinFile::new(path));
        self
    }

    /// Write the pin file if a pin was added and the last write is old
    /// enough (or always, at shutdown).
    fn flush_pins(&mut self, force: bool) {
        if let Some(f) = &mut self.pin_file {
            f.flush(self.ike.pins(), Instant::now(), force);
        }
    }

    /// Deliver every channel's datagrams to one queue
    /// (`EndpointConfig::shared_receive`).
    pub(crate) fn with_shared_receive(
        mut self,
        tx: crate::inbox::InboxSender<Box<Datagram>>,
    ) -> Self {
        self.shared_receive = Some(tx);
        self
    }

    /// Keep the SAs' keys for [`crate::Endpoint::session_keys`].
    pub(crate) fn export_keys(mut self) -> Self {
        self.keys = Some(crate::keys::KeyStore::default());
        self
    }

    /// TUN mode: ESP in UDP carries the OS stack's bursts: larger socket
    /// buffers, and UDP GRO (several datagrams of one flow per read).
    fn tune_sockets(&mut self) {
        if self.tun.is_some() {
            crate::os::grow_socket_buffers(&self.natt_sock);
            self.natt_gro = crate::os::enable_udp_gro(&self.natt_sock);
        }
    }

    fn drop_counted(&mut self, reason: &'static str) {
        self.drops_counted(reason, 1);
    }

    /// `n` packets dropped for one reason (the segments of one TUN read).
    fn drops_counted(&mut self, reason: &'static str, n: u64) {
        *self.drops.entry(reason).or_default() += n;
        tracing::debug!(reason, n, "datagram dropped");
    }

    pub(crate) async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>) {
        self.tune_sockets();
        let mut ike_rx = IkeRx::new();
        let tun_on = self.tun.is_some();
        let mut natt_buf = vec![
            0u8;
            if self.natt_gro {
                crate::os::GRO_BUFFER
            } else {
                MAX_DATAGRAM
            }
        ];
        let mut natt_cmsg = crate::os::gro_cmsg_buffer();
        let mut tun_bufs = tun::TunBufs::new(self.tun.as_ref());
        let mut raw_buf = if tun_on {
            vec![0u8; MAX_DATAGRAM]
        } else {
            Vec::new()
        };
        let mut shutdown: Option<(oneshot::Sender<()>, tokio::time::Instant)> = None;
        // The latch table (never replaced), for the receive bursts' locks.
        let shared = self.shared.clone();
        loop {
            self.flush_esp();
            self.flush_tun_writes();
            while let Some((to, answer)) = ike_rx.backlog.pop_front() {
                if let Err(e) = self.ike_sock.send_to(&answer, to).await {
                    tracing::debug!(error = %e, "COOKIE answer not sent");
                    self.drop_counted("COOKIE answer not sent");
                }
            }
            self.flush().await;
            self.flush_pins(false);
            if let Some((_, deadline)) = &shutdown {
                if self.ike_sas.is_empty() || tokio::time::Instant::now() >= *deadline {
                    self.flush_pins(true);
                    if let Some((reply, _)) = shutdown.take() {
                        let _ = reply.send(());
                    }
                    return;
                }
            }
            let latch_timeout = lock(&self.shared).table.poll_timeout();
            let timeout = [
                self.ike.poll_timeout(),
                latch_timeout,
                self.tun_poll_timeout(),
                self.pin_file
                    .as_ref()
                    .and_then(crate::pinfile::PinFile::deadline),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
            let shutdown_deadline = shutdown.as_ref().map(|(_, d)| *d);
            let wake = match (timeout, shutdown_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                r = self.ike_sock.readable() => match r {
                    Ok(()) => self.on_ike_ready(&mut ike_rx),
                    Err(e) => tracing::warn!(error = %e, "IKE socket receive failed"),
                },
                r = self.natt_sock.readable() => match r {
                    // TUN mode: drain a burst of ESP before polling again.
                    Ok(()) => {
                        let mut held = BurstLatch::new(&shared);
                        self.drain_natt(&mut natt_buf, &mut natt_cmsg, if tun_on { tun::BURST } else { 1 }, &mut held);
                        held.release();
                        self.flush_tun_writes();
                    }
                    Err(e) => tracing::warn!(error = %e, "NAT-T socket receive failed"),
                },
                r = tun::tun_recv(self.tun.as_ref().filter(|t| t.reading).map(|t| &*t.dev), &mut tun_bufs) => {
                    let dev = self.tun.as_ref().map(|t| t.dev.clone());
                    let mut r = r;
                    for _ in 0..tun::BURST {
                        match r {
                            Ok(n) => {
                                if let Some(t) = self.tun.as_mut() {
                                    t.read_errors = 0;
                                }
                                if let Some(read) = tun_bufs.buf.get_mut(..n) {
                                    self.on_tun_read(read);
                                }
                            }
                            Err(e) => {
                                if e.kind() != std::io::ErrorKind::WouldBlock {
                                    self.tun_read_failed(&e);
                                }
                                break;
                            }
                        }
                        let Some(dev) = dev.as_deref() else { break };
                        r = tun::tun_try_recv(dev, &mut tun_bufs);
                    }
                    self.flush_esp();
                },
                r = tun::raw_recv(self.tun.as_ref().and_then(|t| t.raw.as_deref()), &mut raw_buf) => {
                    let mut r = r;
                    let raw = self.tun.as_ref().and_then(|t| t.raw.clone());
                    // One lock of the latch table for the burst's checks.
                    let mut held = BurstLatch::new(&shared);
                    for _ in 0..tun::BURST {
                        match r {
                            Ok((range, _src)) => {
                                if let Some(esp) = raw_buf.get_mut(range) {
                                    self.on_esp(esp, &mut held);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                                self.drop_counted("raw ESP: malformed IPv4 packet");
                            }
                            Err(e) => {
                                if e.kind() != std::io::ErrorKind::WouldBlock {
                                    tracing::warn!(error = %e, "raw ESP socket receive failed");
                                }
                                break;
                            }
                        }
                        let Some(raw) = raw.as_ref() else { break };
                        r = raw.try_recv(&mut raw_buf);
                    }
                    held.release();
                    self.flush_tun_writes();
                },
                () = sleep_until(wake) => {
                    let now = Instant::now();
                    self.ike.handle_timeout(now);
                    // R9: Larval latches past their deadline fail.
                    lock(&self.shared).table.handle_timeout(now);
                    // R18: idle watched flows release their latches.
                    self.tun_timeout(now);
                }
                c = cmd_rx.recv() => match c {
                    Some(Command::Shutdown { reply }) => {
                        let now = Instant::now();
                        let ids: Vec<_> = self.ike_sas.iter().copied().collect();
                        for id in ids {
                            let _ = self.ike.delete_ike(now, id);
                        }
                        shutdown = Some((reply, tokio::time::Instant::now() + Duration::from_secs(2)));
                    }
                    Some(c) => self.on_command(c),
                    None => {
                        self.flush_pins(true);
                        return;
                    }
                },
            }
        }
    }

    /// The IKE socket is readable: read it in batches (`recvmmsg`), up to
    /// [`IKE_DRAIN_BATCHES`] of them, [`IKE_DRAIN_BATCHES_FLOOD`] while
    /// cookies are demanded, before the loop polls again.
    ///
    /// Under an IKE_SA_INIT flood (RFC 7296 2.6, RFC 8019) the answers are
    /// ordered so that a legitimate initiator gets through:
    /// 1. first everything but new IKE_SA_INIT requests: requests that
    ///    return a COOKIE (RFC 8019: the initiator has shown it receives
    ///    at its address), and messages of existing SAs;
    /// 2. then the new requests, each answered with a COOKIE from `ike`'s
    ///    stateless path (no SA, no allocation: the answer is written into
    ///    one reused buffer and sent at once).
    ///
    /// Nothing is shed here: the kernel drops what overflows the socket.
    /// (Shedding a share of the new requests in here, to keep the socket
    /// from overflowing, was measured and reverted: it drops the
    /// legitimate first request with the flood's probability, where the
    /// full socket drops it only if it arrives while the socket is full;
    /// see docs/performance.md, 2026-11-28 flood section.)
    fn on_ike_ready(&mut self, rx: &mut IkeRx) {
        let mut batches = 0;
        let mut flood = false;
        loop {
            let read =
                match crate::os::recv_batch(&self.ike_sock, &mut rx.buf, MAX_DATAGRAM, &mut rx.got)
                {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "IKE socket receive failed");
                        return;
                    }
                };
            batches += 1;
            let now = Instant::now();
            let cookies = self.ike.cookies_on();
            flood |= cookies;
            for i in 0..rx.got.len() {
                let Some(&r) = rx.got.get(i) else { break };
                let data = rx.datagram(r);
                if cookies && ike::Ike::is_plain_init(data) {
                    continue;
                }
                self.ike.handle_datagram(now, self.ike_addr, r.from, data);
                self.flush_now();
            }
            if cookies {
                for i in 0..rx.got.len() {
                    let Some(&r) = rx.got.get(i) else { break };
                    if !ike::Ike::is_plain_init(rx.datagram(r)) {
                        continue;
                    }
                    let data = IkeRx::slot(&rx.buf, r);
                    if self
                        .ike
                        .answer_with_cookie(now, r.from, data, &mut rx.reply)
                    {
                        if !rx.backlog.is_empty() {
                            rx.backlog.push_back((r.from, rx.reply.clone()));
                            continue;
                        }
                        match self.ike_sock.try_send_to(&rx.reply, r.from) {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                rx.backlog.push_back((r.from, rx.reply.clone()));
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "COOKIE answer not sent");
                                self.drop_counted("COOKIE answer not sent");
                            }
                        }
                    } else {
                        self.ike.handle_datagram(now, self.ike_addr, r.from, data);
                        self.flush_now();
                    }
                }
            }
            let max = if flood {
                IKE_DRAIN_BATCHES_FLOOD
            } else {
                IKE_DRAIN_BATCHES
            };
            // A full send buffer: stop reading until the backlog is out
            // (the run loop waits for the socket to be writable).
            if read < crate::os::IKE_BATCH || batches >= max || !rx.backlog.is_empty() {
                return;
            }
        }
    }

    /// Send everything IKE wants sent and act on its events: what the
    /// socket refused mid-burst first, waiting until it takes it.
    async fn flush(&mut self) {
        loop {
            while let Some(t) = self.ike_tx_backlog.pop_front() {
                let (sock, data) = self.ike_wire(&t);
                if let Err(e) = sock.send_to(&data, t.remote).await {
                    tracing::warn!(remote = %t.remote, error = %e, "IKE send failed");
                }
            }
            self.flush_now();
            if self.ike_tx_backlog.is_empty() {
                return;
            }
        }
    }

    /// [`Self::flush`] without waiting: what the socket will not take now
    /// waits in `ike_tx_backlog`. Called after each datagram of an IKE
    /// receive burst (IKE socket, or IKE on the NAT-T socket), so that
    /// answers leave while the rest of the burst is handled: an initiator
    /// with many exchanges in flight then works on the first answers while
    /// we work on the later requests, instead of the two taking turns a
    /// whole burst at a time.
    fn flush_now(&mut self) {
        loop {
            let mut progressed = false;
            let mut backlog = std::mem::take(&mut self.ike_tx_backlog);
            while let Some(t) = self.ike.poll_transmit() {
                progressed = true;
                let remote = t.remote;
                let r = ike_tx::send_or_queue(&mut backlog, t, |t| {
                    let (sock, data) = self.ike_wire(t);
                    sock.try_send_to(&data, t.remote)
                });
                if let Err(e) = r {
                    tracing::warn!(%remote, error = %e, "IKE send failed");
                }
            }
            self.ike_tx_backlog = backlog;
            while let Some(ev) = self.ike.poll_event() {
                progressed = true;
                self.on_event(ev);
            }
            self.flush_alerts();
            if !progressed {
                return;
            }
        }
    }

    /// The socket an IKE message leaves from and its octets on the wire.
    fn ike_wire<'t>(&self, t: &'t ike::Transmit) -> (&UdpSocket, std::borrow::Cow<'t, [u8]>) {
        if t.local.port() == self.natt_addr.port() && self.natt_addr.port() != self.ike_addr.port()
        {
            // RFC 3948 2.2: IKE on the NAT-T port carries the non-ESP marker.
            let mut buf = Vec::with_capacity(t.data.len() + 4);
            buf.extend_from_slice(&esp::udp::NON_ESP_MARKER);
            buf.extend_from_slice(&t.data);
            (&self.natt_sock, std::borrow::Cow::Owned(buf))
        } else {
            (&self.ike_sock, std::borrow::Cow::Borrowed(&t.data[..]))
        }
    }

    /// Read up to `max` times from the ready NAT-T socket (a read may hold
    /// several datagrams with UDP GRO) and handle every datagram; the ESP
    /// packets' latch checks share the lock `held` (the reads are
    /// non-blocking, so it is held for at most one burst of reads and
    /// decapsulations; it is released before anything that takes it or
    /// writes).
    fn drain_natt(
        &mut self,
        buf: &mut [u8],
        cmsg: &mut [u8],
        max: usize,
        held: &mut BurstLatch<'_, Shared>,
    ) {
        for _ in 0..max {
            let r = if self.natt_gro {
                crate::os::recv_gro(&self.natt_sock, buf, cmsg)
            } else {
                self.natt_sock
                    .try_recv_from(buf)
                    .map(|(len, from)| crate::os::GroRead {
                        len,
                        from,
                        stride: len,
                    })
            };
            match r {
                Ok(read) => {
                    let data = buf.get_mut(..read.len).unwrap_or_default();
                    let stride = read.stride.max(1);
                    if self.tun.is_some() && data.len() > stride {
                        // Several datagrams (UDP GRO): decapsulated together,
                        // then checked together.
                        self.on_natt_gro(data, stride, read.from, held);
                    } else {
                        for datagram in data.chunks_mut(stride) {
                            self.on_natt(datagram, read.from, held);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::debug!(error = %e, "NAT-T datagram dropped");
                    self.drop_counted("NAT-T datagram cut short or without a source");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "NAT-T socket receive failed");
                    return;
                }
            }
        }
    }

    fn on_natt(
        &mut self,
        datagram: &mut [u8],
        from: SocketAddr,
        held: &mut BurstLatch<'_, Shared>,
    ) {
        match esp::udp::classify(datagram) {
            esp::udp::Natt::Keepalive => {}
            esp::udp::Natt::Invalid => self.drop_counted("invalid NAT-T datagram"),
            esp::udp::Natt::Ike(msg) => {
                // IKE's child-SA policy hook takes the lock.
                held.release();
                let msg = msg.to_vec();
                self.ike
                    .handle_datagram(Instant::now(), self.natt_addr, from, &msg);
                // Its answer leaves now, not after the rest of the burst.
                self.flush_now();
            }
            esp::udp::Natt::Esp(_) => self.on_esp(datagram, held),
        }
    }

    /// RFC 5660 ALERTs to the subscribers (none listening is fine).
    fn flush_alerts(&mut self) {
        let mut s = lock(&self.shared);
        while let Some(a) = s.table.poll_alert() {
            tracing::debug!(latch = %a.latch, tuple = %a.tuple, to = %a.to, reason = %a.reason, "latch ALERT");
            let _ = self.alerts.send(a);
        }
    }

    /// Decapsulate one ESP packet in place: the decrypted inner IP packet,
    /// or `None` (dropped: counted by the SAD, or here). The first packet
    /// on a new SA of a rekey we answered releases the held outbound SA.
    fn decapsulate<'p>(&mut self, packet: &'p mut [u8]) -> Option<esp::Decapsulated<'p>> {
        // The driver owns its SAD: no replay-window lock (`decapsulate_mut`).
        let d = match self.sad.decapsulate_mut(packet) {
            Ok(d) => d,
            Err(reason) => {
                tracing::debug!(%reason, "ESP packet dropped");
                return None;
            }
        };
        if !self.outbound_held.is_empty() {
            // RFC 7296 2.8 (1): an authenticated packet on a new SA of a
            // rekey we answered: the peer has installed it, send on it.
            self.release_held(ike::ChildSaId(d.tag), "first packet received on it");
        }
        if d.next_header != 4 && d.next_header != 41 {
            self.drop_counted("ESP payload is not an inner IP packet");
            return None;
        }
        Some(d)
    }

    /// One ESP packet; its latch check runs under the burst's lock `held`.
    fn on_esp(&mut self, packet: &mut [u8], held: &mut BurstLatch<'_, Shared>) {
        let Some(d) = self.decapsulate(packet) else {
            return;
        };
        let (tag, spi, len) = (d.tag, d.spi, d.payload.len());
        if self.tun.is_some() {
            // TUN mode: every inner packet goes to the OS stack.
            self.on_esp_tun(tag, d.payload, held);
            return;
        }
        let Ok(inner) = esp::inner::parse(d.payload) else {
            self.drop_counted("malformed inner packet");
            return;
        };
        let Some(data) = inner.udp_payload(d.payload) else {
            self.drop_counted("inner packet is not UDP");
            return;
        };
        let src = SocketAddr::new(inner.src, inner.src_port);
        let dst = SocketAddr::new(inner.dst, inner.dst_port);
        // R5, R6, R17: the latch check right after decapsulation, with the
        // tag of the SA that protected the packet; the version it was
        // checked at travels with it to delivery (R16).
        let five = FiveTuple::new(inner.protocol, dst, src);
        let Some((latch, latch_version)) = Self::inbound_latch_check(held, five, tag) else {
            return;
        };
        let child = ike::ChildSaId(tag);
        // RFC 4301 5.2: a flow no latch decided is the SPD's to decide.
        if latch.is_none() {
            if let Some(reason) = self.spd_refuses_held(held, child, &five) {
                tracing::debug!(%five, sa = tag, reason, "inbound packet dropped by the SPD");
                self.drop_counted(reason);
                return;
            }
        }
        if let Some(c) = self.children.get_mut(&child) {
            c.traffic.packets_in += 1;
            c.traffic.bytes_in += len as u64;
        }
        let Some((&channel, ch)) = self
            .child_channel
            .get(&child)
            .and_then(|id| self.channels.get_key_value(id))
        else {
            self.drop_counted("no channel for child SA");
            return;
        };
        let Some(tx) = ch.tx.as_ref().or(self.shared_receive.as_ref()) else {
            self.drop_counted("no channel for child SA");
            return;
        };
        let dg = Datagram {
            src,
            dst,
            data: data.to_vec(),
            spi,
            sa: tag,
            channel,
            latch,
            latch_version,
        };
        if tx.try_send(Box::new(dg)).is_err() {
            self.drop_counted("channel receive queue full");
        }
    }

    /// RFC 4301 5.1 (outbound), 5.2 (inbound): the SPD's word on a packet
    /// of `five` (local/remote orientation) under child SA `sa`, for flows
    /// no latch decided (a latch was admitted by the SPD when it was made,
    /// R3, and keeps its parameters across a policy change, R8): the reason
    /// to drop it, or `None`. No lookup for an SA whose selectors the SPD
    /// admits as a whole (`ChildState::spd_clean`, the usual case).
    /// Takes the table's lock (when a lookup is needed): not for a receive
    /// burst that holds it (`spd_refuses_held`).
    fn spd_refuses(&self, sa: ike::ChildSaId, five: &FiveTuple) -> Option<&'static str> {
        let c = self.children.get(&sa)?;
        if c.spd_clean {
            return None;
        }
        c.spd_refusal(lock(&self.shared).table.spd(), five)
    }

    /// [`Self::spd_refuses`] under a receive burst's lock.
    fn spd_refuses_held(
        &self,
        held: &mut BurstLatch<'_, Shared>,
        sa: ike::ChildSaId,
        five: &FiveTuple,
    ) -> Option<&'static str> {
        let c = self.children.get(&sa)?;
        if c.spd_clean {
            return None;
        }
        c.spd_refusal(held.table().spd(), five)
    }

    /// R5, R6, R12, R17: the inbound latch check of a decapsulated packet
    /// of `five` under the SA tagged `tag`, under the burst's lock `held`
    /// (taken here if not held yet); a packet opening a connection under a
    /// listener latch creates and binds that connection's latch. `None`:
    /// dropped (counted). Otherwise the latch the flow is latched to, if
    /// any, and the table version the check ran at (R16).
    fn inbound_latch_check(
        held: &mut BurstLatch<'_, Shared>,
        five: FiveTuple,
        tag: u64,
    ) -> Option<(Option<LatchId>, u64)> {
        let (verdict, version) = held.check_inbound(&five, Some(tag));
        let latch = match verdict {
            Verdict::Pass(PassKind::Latched(id)) => Some(id),
            Verdict::Pass(PassKind::Listener(l)) => {
                // R12, R15: the first packet of a connection under a
                // listener latch creates (and binds) its connection
                // latch; if that fails the packet is dropped.
                let s = held.get_mut();
                return match s.table.accept(l, five, Some(tag), Instant::now()) {
                    Ok(id) => Some((Some(id), s.table.version())),
                    Err(e) => {
                        tracing::debug!(%five, error = %e, "listener latch refused the connection");
                        s.count(Direction::Inbound, latch::DropReason::SaMismatch);
                        None
                    }
                };
            }
            Verdict::Pass(_) => None,
            Verdict::Drop { latch, reason } => {
                held.get_mut().count(Direction::Inbound, reason);
                tracing::debug!(%five, %latch, ?reason, sa = tag, "inbound packet dropped by latch");
                return None;
            }
            _ => return None,
        };
        Some((latch, version))
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Connect {
                peer,
                remote,
                reply,
            } => {
                let local = if remote.is_ipv4() == self.ike_addr.is_ipv4() {
                    self.ike_addr
                } else {
                    let _ = reply.send(Err(Error::Send(format!(
                        "peer {remote} is of another address family than our socket {}",
                        self.ike_addr
                    ))));
                    return;
                };
                let id = self.ike.initiate(Instant::now(), *peer, local, remote);
                self.pending_connect.insert(id, (remote, reply));
            }
            Command::Send {
                channel,
                src,
                dst,
                data,
                reply,
            } => {
                let _ = reply.send(self.send(channel, src, dst, &data));
            }
            Command::Close { channel, reply } => {
                let Some(ike_sa) = self
                    .channels
                    .get(&channel)
                    .and_then(|c| self.children.get(&c.child))
                    .map(|c| c.ike_sa)
                else {
                    let _ = reply.send(Ok(()));
                    return;
                };
                match self.ike.delete_ike(Instant::now(), ike_sa) {
                    Ok(()) => self.pending_close.entry(ike_sa).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(Error::Send(e.to_string())));
                    }
                }
            }
            Command::CloseChild { channel, reply } => {
                let Some((child, ike_sa)) = self
                    .channels
                    .get(&channel)
                    .and_then(|c| self.children.get(&c.child).map(|s| (c.child, s.ike_sa)))
                else {
                    let _ = reply.send(Ok(()));
                    return;
                };
                let r = self
                    .ike
                    .delete_child(Instant::now(), ike_sa, child)
                    .map_err(|e| Error::Send(e.to_string()));
                let _ = reply.send(r);
            }
            Command::CloseIke { ike_sa, reply } => {
                let ike_sa = ike::IkeSaId(ike_sa);
                if !self.ike.ike_sas().iter().any(|i| i.id == ike_sa) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                match self.ike.delete_ike(Instant::now(), ike_sa) {
                    Ok(()) => self.pending_close.entry(ike_sa).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(Error::Send(e.to_string())));
                    }
                }
            }
            Command::ConnectChild {
                ike_sa,
                child,
                reply,
            } => {
                let ike_sa = ike::IkeSaId(ike_sa);
                let Some(remote) = self
                    .ike
                    .ike_sa(ike_sa)
                    .filter(|i| i.established)
                    .map(|i| i.remote)
                else {
                    let _ = reply.send(Err(Error::Send(format!(
                        "no established IKE SA {} to create a child SA under",
                        ike_sa.0
                    ))));
                    return;
                };
                if self.pending_connect.contains_key(&ike_sa) {
                    let _ = reply.send(Err(Error::Send(format!(
                        "IKE SA {} is already setting up a child SA for a connect",
                        ike_sa.0
                    ))));
                    return;
                }
                // RFC 7296 1.3.1: CREATE_CHILD_SA under the IKE SA; the
                // channel is handed over when the child SA is installed
                // (`on_child_up`), the failure when it is refused
                // (`ChildSaFailed`).
                match self.ike.create_child(Instant::now(), ike_sa, *child) {
                    Ok(()) => {
                        self.pending_connect.insert(ike_sa, (remote, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Child {
                            peer: remote,
                            error: e,
                        }));
                    }
                }
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Shutdown { .. } => {}
            Command::CreateConnection { req, reply } => {
                let r = lock(&self.shared)
                    .table
                    .create_connection(*req, Instant::now());
                let _ = reply.send(r);
            }
            Command::CreateListener { req, reply } => {
                let r = lock(&self.shared)
                    .table
                    .create_listener(*req, Instant::now());
                let _ = reply.send(r);
            }
            Command::Release { id, reply } => {
                let r = lock(&self.shared).table.destroy(id);
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::SetPolicy { policy, reply } => {
                // R8: latches keep their state and parameters.
                let mut s = lock(&self.shared);
                s.table.set_policy(policy.pad, policy.spd);
                // The new SPD decides the installed SAs' packets too.
                for c in self.children.values_mut() {
                    c.spd_clean = c.spd_admits_all(s.table.spd());
                }
                drop(s);
                let _ = reply.send(());
            }
            Command::Restart { policy, reply } => {
                self.restart_key_manager(policy);
                let _ = reply.send(());
            }
            Command::SetPeers { peers, reply } => {
                self.ike_config.peers.clone_from(&peers);
                self.ike.set_peers(peers);
                let _ = reply.send(());
            }
            Command::SessionKeys { reply } => {
                let r = match &self.keys {
                    Some(k) => {
                        tracing::warn!("exporting SA keys (key export is on)");
                        Ok(k.snapshot())
                    }
                    None => Err(Error::KeyExport(
                        "key export is off (EndpointConfig::key_export; `latchkey listen --allow-key-export`)".into(),
                    )),
                };
                let _ = reply.send(r);
            }
        }
    }

    /// R10: forget every IKE SA, child SA and channel as a crashed key
    /// manager would (nothing is sent), start a fresh `ike::Ike`, and tell
    /// the latch table.
    fn restart_key_manager(&mut self, policy: RestartPolicy) {
        // The pins are the user's trust memory (as `known_hosts`), not
        // SA state: they survive the restart, as they would on disk.
        let pins = self.ike.pins().clone();
        self.ike = new_ike(&self.ike_config, &self.shared);
        *self.ike.pins_mut() = pins;
        for c in self.children.values() {
            self.sad.remove_inbound(c.inbound_spi);
            self.sad.remove_outbound(c.inbound_spi);
            if let Some(t) = self.tun.as_mut() {
                t.child_removed(c);
            }
        }
        self.children.clear();
        self.children_by_ike.clear();
        self.channels.clear();
        self.child_channel.clear();
        self.outbound_held.clear();
        self.retired.clear();
        self.ike_sas.clear();
        if let Some(k) = &mut self.keys {
            k.clear();
        }
        for (_, (_, reply)) in self.pending_connect.drain() {
            let _ = reply.send(Err(Error::Closed));
        }
        for (_, replies) in self.pending_close.drain() {
            for r in replies {
                let _ = r.send(Ok(()));
            }
        }
        let mut s = lock(&self.shared);
        s.table.key_manager_restarted(policy);
        s.restarted();
        tracing::warn!(?policy, "key manager restarted");
    }

    fn send(
        &mut self,
        channel: u64,
        src: SocketAddr,
        dst: SocketAddr,
        data: &[u8],
    ) -> Result<(), Error> {
        let ch = self
            .channels
            .get(&channel)
            .ok_or_else(|| Error::Send("channel is closed".into()))?;
        let (sa, spd_decides) = if self.ignore_ts {
            (ch.child, false)
        } else {
            let five = FiveTuple::new(17, src, dst);
            match self.select_outbound(ch.child, five) {
                Ok(sa) => sa,
                Err(e) => {
                    if let Error::Dropped { reason, .. } = &e {
                        if reason == "NotEstablished" || reason == "NoMatchingSa" {
                            self.acquire(ch.child, five);
                        }
                    }
                    return Err(e);
                }
            }
        };
        // RFC 4301 5.1: a flow no latch decided is the SPD's to decide.
        if spd_decides {
            if let Some(reason) = self.spd_refuses(sa, &FiveTuple::new(17, src, dst)) {
                self.drop_counted(reason);
                return Err(Error::Send(format!("{src} -> {dst}: {reason}")));
            }
        }
        let child = self
            .children
            .get(&sa)
            .ok_or_else(|| Error::Send("channel has no child SA".into()))?;
        // RFC 4301 5.1: only traffic inside the negotiated selectors may use the SA.
        if !self.ignore_ts
            && (!child
                .local_ts
                .iter()
                .any(|t| t.matches(17, src.ip(), src.port()))
                || !child
                    .remote_ts
                    .iter()
                    .any(|t| t.matches(17, dst.ip(), dst.port())))
        {
            return Err(Error::Send(format!(
                "{src} -> {dst} is outside the child SA's traffic selectors ({} === {})",
                join(&child.local_ts),
                join(&child.remote_ts)
            )));
        }
        let remote = child.remote;
        let next_header = if src.is_ipv4() { 4 } else { 41 };
        // ESP in UDP, or raw ESP through the TUN datapath's raw socket; the
        // inner packet is built where it is sealed.
        let inner = esp_out::UdpInner::new(src, dst, data);
        let r = self.esp_out(sa, next_header, &inner, false);
        r.map_err(|e| match e.error {
            esp_out::EspOutError::ChildGone => Error::Send("channel has no child SA".into()),
            esp_out::EspOutError::Encap(esp::EncapError::BufferTooSmall { needed }) => {
                Error::Send(format!(
                    "datagram of {} octets too large: its ESP packet would be {needed} octets, more than one IP packet holds",
                    data.len()
                ))
            }
            esp_out::EspOutError::Encap(e) => Error::Send(format!("ESP: {e}")),
            esp_out::EspOutError::NoRawSocket => Error::Send(
                "ESP without UDP encapsulation needs a raw socket, which this endpoint does not open; enable force_encap".into(),
            ),
            esp_out::EspOutError::Family => Error::Send(format!(
                "raw ESP to {remote}: the raw ESP socket is of the other address family"
            )),
            esp_out::EspOutError::Io(e) => Error::Send(format!("ESP to {remote}: {e}")),
            esp_out::EspOutError::Inner => match inner.error() {
                Some(e) => Error::Send(format!("cannot build inner packet: {e}")),
                None => Error::Send("the inner packet could not be put in the ESP buffer".into()),
            },
        })
    }

    /// R9: a packet of a latched flow was dropped for want of a matching
    /// SA. If no child SA of the channel's IKE SA covers the flow, ask for
    /// one (CREATE_CHILD_SA, RFC 7296 1.3.1) with traffic selectors narrowed
    /// to the flow and the channel's suite; the latch binds when it comes up
    /// (or times out, R9). At most one acquisition per flow per 10 s.
    fn acquire(&mut self, channel_sa: ike::ChildSaId, five: FiveTuple) {
        let now = Instant::now();
        if self
            .acquiring
            .get(&five)
            .is_some_and(|(_, t)| now.duration_since(*t) < Duration::from_secs(10))
        {
            return;
        }
        let Some(c) = self.children.get(&channel_sa) else {
            return;
        };
        let ike_sa = c.ike_sa;
        let covered = self.children_of(ike_sa).iter().any(|id| {
            self.children.get(id).is_some_and(|o| {
                o.local_ts
                    .iter()
                    .any(|t| t.matches(five.proto, five.local.ip(), five.local.port()))
                    && o.remote_ts
                        .iter()
                        .any(|t| t.matches(five.proto, five.remote.ip(), five.remote.port()))
            })
        });
        if covered {
            // An SA covers the flow but does not fit the latch (another
            // protection): the same suite again would not either.
            return;
        }
        let host = |a: SocketAddr| pad::TrafficSelector {
            ip_proto: five.proto,
            start_port: a.port(),
            end_port: a.port(),
            addr: pad::IpRange::host(a.ip()),
        };
        let child = ike::ChildConfig {
            esp_proposals: pad::EspProposal::parse_list(&esp_suite(c.encr, c.integ, c.pfs, c.esn))
                .unwrap_or_else(|_| pad::EspProposal::defaults()),
            local_ts: vec![host(five.local)],
            remote_ts: vec![host(five.remote)],
            mode: c.mode,
            rekey_after: None,
            replay_window: c.replay_window,
        };
        match self.ike.create_child(now, ike_sa, child) {
            Ok(()) => {
                tracing::info!(%five, ike_sa = ike_sa.0, "acquiring a child SA for a latched flow (R9)");
                self.acquiring.insert(five, (ike_sa, now));
            }
            Err(e) => tracing::debug!(%five, error = %e, "cannot acquire a child SA"),
        }
    }

    /// Whether the SPD admits everything child SA `tag` may carry
    /// (`ChildState::spd_clean`).
    fn spd_clean(&self, tag: u64) -> bool {
        self.children
            .get(&ike::ChildSaId(tag))
            .is_some_and(|c| c.spd_clean)
    }

    /// R5, R6, R9, R17: the SA an outbound packet of `five` must leave
    /// under. A latched flow leaves only under an SA matching its latch
    /// (whichever channel sends it); without one the packet is dropped,
    /// counted, and reported as packet loss. O(1).
    fn select_outbound(
        &self,
        channel_sa: ike::ChildSaId,
        five: FiveTuple,
    ) -> Result<(ike::ChildSaId, bool), Error> {
        let mut s = lock(&self.shared);
        // R5, R6: every latch the channel's SA covers is bound to its peer
        // and protection (and no listener may take its traffic), so it may
        // carry this flow, latched or not (`LatchTable::sa_admits`); and
        // the SPD admits all it carries. Nothing is read per flow.
        if s.table.sa_admits(Flow::new(&five), channel_sa.0) && self.spd_clean(channel_sa.0) {
            return Ok((channel_sa, false));
        }
        let (latch, reason) = match s.table.select_outbound_sa(&five) {
            Outbound::Use { sa, .. } => return Ok((ike::ChildSaId(sa), false)),
            Outbound::NotLatched => match s.table.check_outbound(&five, Some(channel_sa.0)) {
                // No latch decided: the SPD does (`spd_refuses`).
                Verdict::Pass(kind) => {
                    return Ok((channel_sa, matches!(kind, PassKind::NotLatched)))
                }
                Verdict::Drop { latch, reason } => (latch, reason),
                _ => return Err(Error::Send(format!("{five}: no outbound decision"))),
            },
            // This endpoint has no clear-text path: a flow latched to
            // BYPASS cannot go through a channel (R19).
            Outbound::Bypass(latch) => (latch, latch::DropReason::ProtectedOnBypass),
            Outbound::Drop { latch, reason } => (latch, reason),
            _ => return Err(Error::Send(format!("{five}: no outbound decision"))),
        };
        s.count(Direction::Outbound, reason);
        tracing::debug!(%five, %latch, ?reason, "outbound packet dropped by latch");
        Err(Error::Dropped {
            latch,
            reason: format!("{reason:?}"),
        })
    }

    fn status(&self) -> Status {
        // Tests: the index of child SAs by IKE SA is in step.
        debug_assert!(
            self.children_by_ike.len() == self.children.len()
                && self
                    .children
                    .iter()
                    .all(|(id, c)| self.children_by_ike.contains(&(c.ike_sa, *id))),
            "children_by_ike out of step with children"
        );
        let mut ike_sas: Vec<_> = self.ike.ike_sas().iter().map(ike_summary).collect();
        ike_sas.sort_by_key(|s| s.id);
        let mut child_sas: Vec<_> = self
            .children
            .values()
            .map(|c| (c.summary(), c.traffic))
            .collect();
        child_sas.sort_by_key(|(s, _)| s.id);
        let mut drops: Vec<_> = self
            .drops
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        drops.sort();
        let esp_drops = self
            .sad
            .stats()
            .drop_counts()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (format!("{r:?}"), n))
            .collect();
        let s = lock(&self.shared);
        Status {
            ike_addr: Some(self.ike_addr),
            natt_addr: Some(self.natt_addr),
            ike_sas,
            child_sas,
            drops,
            esp_drops,
            latch_drops: s.drop_counts(),
            latch_version: s.table.version(),
            latches: s.table.len(),
            gso_refused: self.esp_batch.refused,
            tun_merged_writes: self.tun.as_ref().map_or(0, |t| t.merged_writes),
            tun_merged_packets: self.tun.as_ref().map_or(0, |t| t.merged_packets),
            tun_cut_reads: self.tun.as_ref().map_or(0, |t| t.cut_reads),
            tun_cut_segments: self.tun.as_ref().map_or(0, |t| t.cut_segments),
        }
    }

    fn on_event(&mut self, ev: ike::Event) {
        match ev {
            ike::Event::IkeSaEstablished(info) => {
                tracing::info!(sa = info.id.0, peer = %info.remote, peer_id = %info.peer_id, "IKE SA established");
                lock(&self.shared).ike_up(info.id, info.peer_credential.clone());
                self.ike_sas.insert(info.id);
                if let Some(k) = &mut self.keys {
                    k.ike_up(&self.ike, info.id);
                }
            }
            ike::Event::ChildSaEstablished(info) => self.on_child_up(&info),
            ike::Event::ChildSaDeleted {
                child,
                inbound_spi,
                outbound_spi,
                ..
            } => {
                tracing::info!(
                    child = child.0,
                    inbound_spi,
                    outbound_spi,
                    "child SA deleted"
                );
                self.sad.remove_inbound(inbound_spi);
                // Filed under the inbound SPI (`on_child_up`).
                self.sad.remove_outbound(inbound_spi);
                if let Some(c) = self.remove_child(child) {
                    if let Some(t) = self.tun.as_mut() {
                        t.child_removed(&c);
                    }
                }
                if let Some(k) = &mut self.keys {
                    k.child_gone(child);
                }
                lock(&self.shared).table.sa_removed(child.0);
                self.child_gone(child);
            }
            ike::Event::IkeSaDeleted { sa } => {
                tracing::info!(sa = sa.0, "IKE SA deleted");
                self.ike_sas.remove(&sa);
                if let Some(k) = &mut self.keys {
                    k.ike_gone(sa);
                }
                self.forget_children_of(sa);
                lock(&self.shared).ike_gone(sa);
                for r in self.pending_close.remove(&sa).unwrap_or_default() {
                    let _ = r.send(Ok(()));
                }
            }
            ike::Event::IkeSaFailed { sa, error } => {
                tracing::warn!(sa = sa.0, %error, "IKE SA failed");
                self.ike_sas.remove(&sa);
                if let Some(k) = &mut self.keys {
                    k.ike_gone(sa);
                }
                self.forget_children_of(sa);
                lock(&self.shared).ike_gone(sa);
                if let Some((peer, reply)) = self.pending_connect.remove(&sa) {
                    let _ = reply.send(Err(Error::Ike { peer, error }));
                }
                for r in self.pending_close.remove(&sa).unwrap_or_default() {
                    let _ = r.send(Ok(()));
                }
            }
            ike::Event::ChildSaFailed { ike_sa, error } => {
                self.acquiring.retain(|_, (sa, _)| *sa != ike_sa);
                tracing::warn!(sa = ike_sa.0, %error, "child SA failed");
                if let Some((peer, reply)) = self.pending_connect.remove(&ike_sa) {
                    let _ = reply.send(Err(Error::Child { peer, error }));
                }
            }
            ike::Event::IkeSaRekeyed { old, new } => {
                tracing::info!(old = old.0, new = new.0, "IKE SA rekeyed");
                if self.ike_sas.remove(&old) {
                    self.ike_sas.insert(new);
                }
                lock(&self.shared).ike_rekeyed(old, new);
                if let Some(k) = &mut self.keys {
                    k.ike_rekeyed(&self.ike, old, new);
                }
                for id in self.children_of(old) {
                    if let Some(c) = self.children.get_mut(&id) {
                        c.ike_sa = new;
                    }
                    self.children_by_ike.remove(&(old, id));
                    self.children_by_ike.insert((new, id));
                }
            }
            ike::Event::PeerAddressChanged { sa, local, remote } => {
                tracing::info!(sa = sa.0, %local, %remote, "peer address changed");
                if let Some(k) = &mut self.keys {
                    k.moved(sa, local, remote);
                }
                // RFC 7296 2.23: the ESP of the IKE SA's child SAs follows
                // the peer's new address too (its NAT rebound the mapping);
                // the TUN routes that keep the peer's outer address out of
                // the tunnel move with it.
                // R7: the latch table's record of those child SAs says
                // where the peer is now (an inquiry's `current_nat`); what
                // latches were established with stays (R8).
                let ike_info = self.ike.ike_sa(sa);
                {
                    let mut s = lock(&self.shared);
                    for id in self.children_of(sa) {
                        if let Some(nat) = s.table.sa_nat_mut(id.0) {
                            nat.peer_outer = Some(remote);
                            if let Some(i) = &ike_info {
                                nat.peer_behind_nat = i.nat_remote;
                                nat.local_behind_nat = i.nat_local;
                            }
                        }
                    }
                }
                for id in self.children_of(sa) {
                    let Some(c) = self.children.get_mut(&id) else {
                        continue;
                    };
                    if c.remote != remote {
                        if let Some(t) = self.tun.as_mut() {
                            t.child_removed(c);
                        }
                        c.remote = remote;
                        if let Some(t) = self.tun.as_mut() {
                            t.child_added(c);
                        }
                    }
                }
            }
            ike::Event::PeerKeyPinned {
                sa,
                address,
                fingerprint,
            } => {
                tracing::info!(sa = sa.0, %address, key = %fingerprint, "peer key pinned");
                if let Some(f) = &mut self.pin_file {
                    f.changed();
                }
            }
            #[allow(unreachable_patterns, reason = "ike::Event is non_exhaustive")]
            other => tracing::debug!(?other, "IKE event not handled"),
        }
    }

    /// The child SAs of IKE SA `sa`, in id order (`children_by_ike`).
    fn children_of(&self, sa: ike::IkeSaId) -> Vec<ike::ChildSaId> {
        self.children_by_ike
            .range((sa, ike::ChildSaId(0))..=(sa, ike::ChildSaId(u64::MAX)))
            .map(|e| e.1)
            .collect()
    }

    /// Remove child SA `id` from `children` (and `children_by_ike`).
    fn remove_child(&mut self, id: ike::ChildSaId) -> Option<Box<ChildState>> {
        let c = self.children.remove(&id)?;
        self.children_by_ike.remove(&(c.ike_sa, id));
        Some(c)
    }

    fn forget_children_of(&mut self, sa: ike::IkeSaId) {
        for id in self.children_of(sa) {
            if let Some(c) = self.remove_child(id) {
                self.sad.remove_inbound(c.inbound_spi);
                self.sad.remove_outbound(c.inbound_spi);
                if let Some(t) = self.tun.as_mut() {
                    t.child_removed(&c);
                }
            }
            lock(&self.shared).table.sa_removed(id.0);
            self.child_gone(id);
        }
    }

    /// A child SA is gone: it no longer delivers to its channel. The
    /// channel moves to its newest child SA still up, and closes only when
    /// it has none: the Delete of an SA a rekey replaced (or of the loser
    /// of a rekey collision) leaves the channel alone.
    fn child_gone(&mut self, child: ike::ChildSaId) {
        if !self.outbound_held.is_empty() {
            // RFC 7296 2.8 (2): the SA a peer's rekey replaced is deleted
            // (by the peer's Delete or by ours): its successors send now.
            self.outbound_held.remove(&child);
            let successors: Vec<_> = self
                .outbound_held
                .iter()
                .filter(|&(_, old)| *old == child)
                .map(|(new, _)| *new)
                .collect();
            for new in successors {
                self.release_held(new, "the SA it replaced is deleted");
            }
        }
        let Some(ch) = self.child_channel.remove(&child) else {
            return;
        };
        let newest = self
            .child_channel
            .iter()
            .filter(|&(_, c)| *c == ch)
            .map(|(id, _)| *id)
            .max_by_key(|id| id.0);
        match newest {
            Some(n) => {
                if let Some(c) = self.channels.get_mut(&ch) {
                    if c.child == child || c.child.0 < n.0 {
                        c.child = n;
                    }
                }
                if self.retired.len() >= RETIRED_CHILDREN {
                    self.retired.pop_front();
                }
                self.retired.push_back((child, ch));
            }
            None => {
                self.channels.remove(&ch);
                self.retired.retain(|(_, c)| *c != ch);
            }
        }
    }

    /// The SA a packet for which `sa` was chosen leaves under (RFC 7296
    /// 2.8). The channel, the TUN lookup and the latch table choose the
    /// newest child SA; when that one comes from a rekey the peer initiated,
    /// the peer may not have installed it yet ("The responder can be
    /// assured that the initiator is prepared to receive messages on an SA
    /// if either (1) it has received a cryptographically valid message on
    /// the other half of the SA pair, or (2) the new SA rekeys an existing
    /// SA and it receives an IKE request to close the replaced SA"), so
    /// until then its packets leave under the SA it replaced, still
    /// installed on both sides. strongSwan, as the responder of a rekey,
    /// also installs the new outbound SA only then. Free when no rekey is
    /// pending.
    pub(super) fn sending_sa(&self, mut sa: ike::ChildSaId) -> ike::ChildSaId {
        if self.outbound_held.is_empty() {
            return sa;
        }
        // A chain (a held SA rekeyed again by the peer) is followed to the
        // newest SA we may send on; bounded by the map's size.
        for _ in 0..self.outbound_held.len() {
            match self.outbound_held.get(&sa) {
                Some(old) if self.children.contains_key(old) => sa = *old,
                _ => break,
            }
        }
        sa
    }

    /// The outbound half of `new` is used from now on.
    fn release_held(&mut self, new: ike::ChildSaId, why: &'static str) {
        if let Some(old) = self.outbound_held.remove(&new) {
            tracing::debug!(
                child = new.0,
                old = old.0,
                why,
                "sending on the child SA the peer's rekey made"
            );
        }
    }

    /// The channel of `old` (up or recently deleted), if it is still open.
    fn channel_of(&self, old: ike::ChildSaId) -> Option<u64> {
        self.child_channel
            .get(&old)
            .copied()
            .or_else(|| {
                self.retired
                    .iter()
                    .rev()
                    .find(|(id, _)| *id == old)
                    .map(|(_, ch)| *ch)
            })
            .filter(|ch| self.channels.contains_key(ch))
    }

    /// R13, R16: announce an installed child SA to the latch table, after
    /// checking it once more with its real protection under the same lock
    /// (the `authorize` call IKE made ran in this same synchronous stretch
    /// of the driver, so no latch changed in between). Returns false if the
    /// SA must not be used.
    fn latch_sa_added(&mut self, info: &ike::ChildSaInfo) -> bool {
        let ike_info = self.ike.ike_sa(info.ike_sa);
        let nat = NatInfo {
            peer_behind_nat: ike_info.as_ref().is_some_and(|i| i.nat_remote),
            local_behind_nat: ike_info.as_ref().is_some_and(|i| i.nat_local),
            peer_outer: Some(info.remote),
            peer_inner: match &info.remote_ts[..] {
                [t] if t.addr.start == t.addr.end => Some(t.addr.start),
                _ => None,
            },
        };
        let mut s = lock(&self.shared);
        let latching::PeerLookup::Peer(peer) = s.peer_identity(
            info.ike_sa,
            &info.peer_id,
            info.peer_auth,
            Some(&info.peer_credential),
        ) else {
            tracing::warn!(child = info.id.0, peer = %info.peer_id, "no PAD entry allows the peer: child SA not used");
            return false;
        };
        let desc = latching::descriptor(info, peer, nat);
        if s.authorize {
            let v = s.table.authorize_child_sa(
                &desc.peer,
                &desc.protection,
                &desc.local_ts,
                &desc.remote_ts,
            );
            if v != latch::ChildSaVerdict::Accept {
                tracing::warn!(child = info.id.0, verdict = ?v, "installed child SA would cover a latched connection of another peer or protection: deleted (R13)");
                return false;
            }
        }
        if let Err(e) = s.table.sa_added(desc, Instant::now()) {
            tracing::warn!(child = info.id.0, error = %e, "latch table refused the child SA");
            return false;
        }
        true
    }

    fn on_child_up(&mut self, info: &ike::ChildSaInfo) {
        let install = |sad: &mut esp::Sad, inbound: bool| {
            let (spi, ek, ik, own_ts, peer_ts) = if inbound {
                (
                    info.inbound_spi,
                    &info.inbound_encr_key,
                    &info.inbound_integ_key,
                    &info.local_ts,
                    &info.remote_ts,
                )
            } else {
                (
                    info.outbound_spi,
                    &info.outbound_encr_key,
                    &info.outbound_integ_key,
                    &info.local_ts,
                    &info.remote_ts,
                )
            };
            let cfg = esp::SaConfig {
                spi,
                encr: info.encr,
                integ: info.integ,
                encr_key: ek,
                integ_key: ik,
                esn: info.esn,
                replay_window: info.replay_window.max(1024),
                mode: info.mode,
                local_ts: own_ts.to_vec(),
                remote_ts: peer_ts.to_vec(),
                tag: info.id.0,
            };
            if inbound {
                sad.add_inbound(cfg)
            } else {
                // The peer chose the outbound SPI; another peer may have
                // chosen the same one (RFC 4301 4.1). The outbound SA is
                // filed under our inbound SPI of the same child SA, unique
                // here: the driver finds it by that (`esp_out`).
                sad.add_outbound_keyed(info.inbound_spi, cfg)
            }
        };
        if let Err(e) = install(&mut self.sad, true).and_then(|()| install(&mut self.sad, false)) {
            tracing::warn!(error = %e, child = info.id.0, "cannot install child SA");
            self.sad.remove_inbound(info.inbound_spi);
            if let Some((peer, reply)) = self.pending_connect.remove(&info.ike_sa) {
                let _ = peer;
                let _ = reply.send(Err(Error::Install(e.to_string())));
            }
            return;
        }
        if !self.latch_sa_added(info) {
            self.sad.remove_inbound(info.inbound_spi);
            self.sad.remove_outbound(info.inbound_spi);
            let _ = self.ike.delete_child(Instant::now(), info.ike_sa, info.id);
            if let Some((peer, reply)) = self.pending_connect.remove(&info.ike_sa) {
                let _ = reply.send(Err(Error::Child {
                    peer,
                    error: ike::Error::TsUnacceptable,
                }));
            }
            return;
        }
        if let Some(k) = &mut self.keys {
            k.child_up(info);
        }
        let mut state = ChildState {
            id: info.id,
            encr: info.encr,
            integ: info.integ,
            pfs: info.pfs,
            esn: info.esn,
            mode: info.mode,
            replay_window: info.replay_window.max(1024),
            ike_sa: info.ike_sa,
            outbound_spi: info.outbound_spi,
            inbound_spi: info.inbound_spi,
            remote: info.remote,
            udp_encap: info.udp_encap,
            local_ts: info.local_ts.clone(),
            remote_ts: info.remote_ts.clone(),
            spd_clean: false,
            traffic: Traffic::default(),
        };
        state.spd_clean = state.spd_admits_all(lock(&self.shared).table.spd());
        tracing::info!(
            child = info.id.0,
            inbound_spi = format_args!("{:08x}", info.inbound_spi),
            outbound_spi = format_args!("{:08x}", info.outbound_spi),
            suite = %esp_suite(info.encr, info.integ, info.pfs, info.esn),
            "child SA installed"
        );
        let replaced = info.replaces.and_then(|old| self.children.get(&old));
        let traffic = replaced.map(|c| c.traffic).unwrap_or_default();
        // RFC 7296 2.8: the responder of a rekey keeps sending on the old
        // SA until the peer shows it has the new one (`Self::sending_sa`);
        // its initiator sends on the new one now. Only an SA the old one
        // can stand in for is held: same protection, selectors and peer
        // address (RFC 7296 2.8: a rekey SHOULD NOT change them).
        if let Some(old) = replaced.filter(|o| !info.initiator && same_shape(o, &state)) {
            tracing::debug!(
                child = info.id.0,
                old = old.id.0,
                "rekey answered: sending on the old SA until the peer uses the new one or deletes the old"
            );
            self.outbound_held.insert(info.id, old.id);
        }
        let ike_sa = state.ike_sa;
        self.children_by_ike.insert((ike_sa, info.id));
        let before = self
            .children
            .insert(info.id, Box::new(ChildState { traffic, ..state }));
        if let Some(b) = before.filter(|b| b.ike_sa != ike_sa) {
            self.children_by_ike.remove(&(b.ike_sa, info.id));
        }
        if let (Some(t), Some(c)) = (self.tun.as_mut(), self.children.get(&info.id)) {
            t.child_added(c);
        }
        // A rekeyed child SA: the channel moves to the new SA (RFC 7296
        // 2.8; as the rekey's responder its packets still leave under the
        // old SA for a while, `Self::sending_sa`) and keeps receiving on
        // the old one until its Delete: the peer may have sent on it
        // before it saw the rekey complete.
        if let Some(ch) = info.replaces.and_then(|old| self.channel_of(old)) {
            if let Some(c) = self.channels.get_mut(&ch) {
                if c.child.0 < info.id.0 {
                    c.child = info.id;
                }
            }
            self.child_channel.insert(info.id, ch);
            return;
        }
        // A child SA we acquired for latched flows (R9): it serves those
        // flows through the existing channels, it is not a new channel.
        let before = self.acquiring.len();
        self.acquiring.retain(|f, (sa, _)| {
            *sa != info.ike_sa
                || !(info
                    .local_ts
                    .iter()
                    .any(|t| t.matches(f.proto, f.local.ip(), f.local.port()))
                    && info
                        .remote_ts
                        .iter()
                        .any(|t| t.matches(f.proto, f.remote.ip(), f.remote.port())))
        });
        if self.acquiring.len() != before {
            return;
        }
        // The IKE SA is gone already when its Delete came in the same
        // batch of events as this child SA: no channel then (the child SA
        // goes with it).
        let Some(ike) = self.ike.ike_sa(info.ike_sa).map(|i| ike_summary(&i)) else {
            if let Some((_, reply)) = self.pending_connect.remove(&info.ike_sa) {
                let _ = reply.send(Err(Error::Closed));
            }
            return;
        };
        let Some(summary) = self.children.get(&info.id).map(|c| c.summary()) else {
            return;
        };
        let Some(cmd) = self.cmd_tx.upgrade() else {
            return;
        };
        let (tx, rx) = if self.shared_receive.is_some() {
            (None, None)
        } else {
            let (tx, rx) = crate::inbox::inbox(1024);
            (Some(tx), Some(rx))
        };
        let id = self.next_channel;
        self.next_channel += 1;
        self.channels
            .insert(id, ChannelState { child: info.id, tx });
        self.child_channel.insert(info.id, id);
        let channel = Channel {
            id,
            info: Some(Box::new(crate::ChannelInfo {
                ike,
                child: summary,
                peer_credential: info.peer_credential.clone(),
            })),
            cmd,
            rx,
            shared: self.shared.clone(),
        };
        if let Some((_, reply)) = self.pending_connect.remove(&info.ike_sa) {
            let _ = reply.send(Ok(channel));
        } else if self.accept_tx.try_send(channel).is_err() {
            tracing::warn!(child = info.id.0, "accept queue full; channel dropped");
        }
    }
}

/// Whether child SA `a` can carry the packets chosen for `b`: the same
/// protection (as the latch table sees it), selectors and peer address.
fn same_shape(a: &ChildState, b: &ChildState) -> bool {
    a.encr == b.encr
        && a.integ == b.integ
        && a.esn == b.esn
        && a.mode == b.mode
        && a.replay_window == b.replay_window
        && a.remote == b.remote
        && a.udp_encap == b.udp_encap
        && a.local_ts == b.local_ts
        && a.remote_ts == b.remote_ts
}

fn new_ike(config: &ike::Config, shared: &SharedRef) -> ike::Ike {
    let rng: Box<dyn rand_core::CryptoRngCore + Send> = Box::new(rand_core::OsRng);
    let mut ike = ike::Ike::new(
        config.clone(),
        rng,
        Box::new(LatchPolicy {
            shared: shared.clone(),
        }),
    );
    // Certificate validity needs calendar time (RFC 5280 4.1.2.5); the
    // state machine maps its `Instant`s onto it from this pair.
    ike.set_wall_clock(Instant::now(), std::time::SystemTime::now());
    // The RNG is the OS's anyway: a responder's X25519 through ring is
    // about twice as fast as through x25519-dalek (the largest cost of an
    // IKE_SA_INIT; see docs/performance.md).
    ike.set_x25519_source(ike::crypto::X25519Source::System);
    ike
}

fn join(ts: &[pad::TrafficSelector]) -> String {
    ts.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
