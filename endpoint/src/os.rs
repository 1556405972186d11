//! The OS module: the only place with OS-specific code (Linux). It holds
//! no `unsafe`: the TUN device comes from the `tun-rs` crate, the raw ESP
//! socket from `socket2` behind tokio's `AsyncFd`.
//!
//! - [`open_tun`]: create the TUN device (IFF_NO_PI; with
//!   `TunConfig::offload`, IFF_VNET_HDR and TSO/checksum offload), set its
//!   MTU and addresses and bring it up. Needs CAP_NET_ADMIN.
//! - [`Routes`]: routes into the device for the remote traffic selectors of
//!   installed child SAs, reference-counted per prefix (a rekeyed SA and
//!   the one it replaces share their routes; the route goes with the last
//!   SA needing it).
//! - [`RawEsp`]: an IPv4 raw socket of IP protocol 50 (RFC 4303) for peers
//!   that do not encapsulate ESP in UDP.
//! - UDP segmentation offload on the ESP-in-UDP socket: [`send_gso`] (one
//!   `sendmsg` with `UDP_SEGMENT` for a train of equal-size datagrams,
//!   since Linux 4.18) and [`enable_udp_gro`]/[`recv_gro`] (`UDP_GRO`,
//!   since Linux 5.0: one `recvmsg` returns several datagrams of one flow
//!   at a stride). Through `nix`'s safe `sendmsg`/`recvmsg` wrappers.
//! - Batched receive on the IKE socket: [`recv_batch`] (`recvmmsg`, through
//!   `nix`'s safe wrapper: up to [`IKE_BATCH`] datagrams per system call
//!   under an IKE_SA_INIT flood). The IKE socket keeps the default
//!   buffer sizes: larger ones (1 MiB, 4 MiB) were measured and made the
//!   legitimate handshake under a flood slower (docs/performance.md).
//!
//! Addresses, links and routes are set by running iproute2's `ip`
//! (`ip address replace`, `ip link set`, `ip route replace/del`) rather
//! than speaking rtnetlink ourselves: it is present wherever a TUN device
//! can be configured, it needs no extra crates (netlink crates would bring
//! their own async runtime glue), its errors are readable, and the
//! commands appear verbatim in the logs. They are never run on the
//! datapath's task: addresses at bind time (awaited once), routes by a
//! separate task fed through a channel, in order, so the driver never
//! blocks on a process.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{
    recvmmsg, recvmsg, sendmmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned,
    MsgFlags, MultiHeaders, SockaddrStorage,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::sync::mpsc;

use crate::{Error, TunConfig};

/// IP protocol number of ESP (RFC 4303 2).
const IPPROTO_ESP: i32 = 50;

/// Run `ip ARGS...`, returning its standard error as the failure reason.
async fn ip(args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        tracing::debug!(cmd = %args.join(" "), "ip");
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// Create and configure the TUN device described by `cfg`. Returns the
/// device and whether offload is on: asked for but refused by the kernel,
/// the device is opened without it and a warning says so.
pub(crate) async fn open_tun(cfg: &TunConfig) -> Result<(Arc<tun_rs::AsyncDevice>, bool), Error> {
    let fail = |reason: String| Error::Tun {
        name: cfg.name.clone(),
        reason,
    };
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
            .name(&cfg.name)
            .mtu(cfg.mtu)
            .offload(offload)
            .tx_queue_len(TUN_TX_QUEUE_LEN)
            .build_async()
    };
    let (dev, offload) = match build(cfg.offload) {
        Ok(d) => (d, cfg.offload),
        Err(e) if cfg.offload => {
            tracing::warn!(device = %cfg.name, error = %e,
                "TUN offload refused by the kernel: opening the device without it (slower)");
            let d = build(false).map_err(|e| fail(format!("cannot create the device: {e}")))?;
            (d, false)
        }
        Err(e) => return Err(fail(format!("cannot create the device: {e}"))),
    };
    // The kernel may have picked another name (a pattern like "lk%d").
    let name = dev.name().unwrap_or_else(|_| cfg.name.clone());
    for (addr, prefix) in &cfg.addresses {
        ip(&strings(&[
            "address",
            "replace",
            &format!("{addr}/{prefix}"),
            "dev",
            &name,
        ]))
        .await
        .map_err(fail)?;
    }
    ip(&strings(&[
        "link",
        "set",
        "dev",
        &name,
        "mtu",
        &cfg.mtu.to_string(),
        "up",
    ]))
    .await
    .map_err(fail)?;
    tracing::info!(device = %name, mtu = cfg.mtu, addresses = ?cfg.addresses, offload, "TUN device up");
    Ok((Arc::new(dev), offload))
}

/// Packets the kernel queues for us to read from the device. A full queue
/// drops (the TUN driver does not push back on the OS stack), and the
/// default of 500 overflows while the driver encrypts a burst (iperf3 TCP
/// saw thousands of retransmits).
const TUN_TX_QUEUE_LEN: u32 = 4096;

/// Socket buffers of the datapath's sockets in TUN mode: the OS stack
/// sends in bursts far larger than the default 208 KiB absorb (INTEROP-NOTES:
/// receive-buffer drops under iperf3). The kernel caps the request at
/// `net.core.rmem_max`/`wmem_max`.
pub(crate) const DATAPATH_SOCKET_BUFFER: usize = 4 << 20;

/// Ask for [`DATAPATH_SOCKET_BUFFER`] on a UDP socket (best effort: a
/// smaller buffer only costs throughput).
pub(crate) fn grow_socket_buffers(sock: &tokio::net::UdpSocket) {
    let s = socket2::SockRef::from(sock);
    if let Err(e) = s.set_recv_buffer_size(DATAPATH_SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot grow the receive buffer");
    }
    if let Err(e) = s.set_send_buffer_size(DATAPATH_SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot grow the send buffer");
    }
}

/// Most datagrams one [`recv_batch`] reads.
pub(crate) const IKE_BATCH: usize = 32;

/// One datagram of a [`recv_batch`]: its slot, its length there and its
/// source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) slot: usize,
    pub(crate) len: usize,
    pub(crate) from: SocketAddr,
}

/// Receive without waiting up to `buf.len() / slot` (at most
/// [`IKE_BATCH`]) datagrams with one `recvmmsg`, datagram `i` into
/// `buf[i * slot..]`, their slots, lengths and sources into `got` (cleared
/// first); returns how many were read. `WouldBlock` if none is queued. A
/// datagram longer than `slot` or without an IP source is read (counted)
/// but left out of `got`.
///
/// The message headers are made per call (nix's `MultiHeaders` holds raw
/// pointers, so it cannot live in the driver, which moves between
/// threads): two small allocations per batch, none per datagram.
pub(crate) fn recv_batch(
    sock: &tokio::net::UdpSocket,
    buf: &mut [u8],
    slot: usize,
    got: &mut Vec<Received>,
) -> io::Result<usize> {
    got.clear();
    let n = buf.len().checked_div(slot).unwrap_or(0).min(IKE_BATCH);
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no room for a datagram",
        ));
    }
    sock.try_io(Interest::READABLE, || {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, None);
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = buf
            .chunks_mut(slot)
            .take(n)
            .map(|c| [IoSliceMut::new(c)])
            .collect();
        let results = recvmmsg(
            sock.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        let mut read = 0;
        for (slot, r) in results.enumerate() {
            read += 1;
            if r.flags.contains(MsgFlags::MSG_TRUNC) {
                continue;
            }
            let from = r.address.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|s| SocketAddr::from(*s))
                    .or_else(|| a.as_sockaddr_in6().map(|s| SocketAddr::from(*s)))
            });
            if let Some(from) = from {
                got.push(Received {
                    slot,
                    len: r.bytes,
                    from,
                });
            }
        }
        Ok(read)
    })
}

/// Most datagrams in one UDP GSO send (the kernel's `UDP_MAX_SEGMENTS`
/// was 64 before Linux 6.x raised it).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;
/// Most octets of UDP payload in one GSO send: what one IPv4 datagram can
/// carry (65535 - 20 - 8); the kernel refuses more.
pub(crate) const GSO_MAX_BYTES: usize = 65_507;
/// Receive buffer for one GRO read: the kernel coalesces at most 64
/// datagrams of at most 64 KiB in all; twice that, so a read is never cut.
pub(crate) const GRO_BUFFER: usize = 2 << 16;

/// Ask the kernel to coalesce received datagrams of one flow (`UDP_GRO`).
/// Then every read must go through [`recv_gro`], which reports the stride.
/// False if the kernel refuses (older than 5.0).
pub(crate) fn enable_udp_gro(sock: &tokio::net::UdpSocket) -> bool {
    match setsockopt(sock, sockopt::UdpGroSegment, &true) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "UDP_GRO refused");
            false
        }
    }
}

/// Send `data`, datagrams of `segment` octets back to back (the last may be
/// shorter), to `dst` with one `sendmsg` and `UDP_SEGMENT`: the kernel
/// (or the device) cuts them apart. `WouldBlock` if the socket is full;
/// `EIO`/`EINVAL` if segmentation is refused (no checksum offload on the
/// way out, a segment over the path MTU).
pub(crate) fn send_gso(
    sock: &tokio::net::UdpSocket,
    data: &[u8],
    segment: usize,
    dst: SocketAddr,
) -> io::Result<usize> {
    let seg = u16::try_from(segment)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "GSO segment over 64 KiB"))?;
    let iov = [IoSlice::new(data)];
    let cmsgs = [ControlMessage::UdpGsoSegments(&seg)];
    let addr = SockaddrStorage::from(dst);
    sock.try_io(Interest::WRITABLE, || {
        sendmsg(
            sock.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::empty(),
            Some(&addr),
        )
        .map_err(io::Error::from)
    })
}

/// One read of [`recv_gro`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroRead {
    /// Octets read.
    pub(crate) len: usize,
    /// Where they came from.
    pub(crate) from: SocketAddr,
    /// Size of each datagram in them (the last may be shorter); `len` if
    /// the kernel did not coalesce.
    pub(crate) stride: usize,
}

/// Space for the control message [`recv_gro`] reads.
pub(crate) fn gro_cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!(i32)
}

/// Receive without waiting: one datagram, or with `UDP_GRO` on, several
/// of one flow at a stride. A datagram cut short by a small buffer is
/// consumed and reported as `InvalidData`.
pub(crate) fn recv_gro(
    sock: &tokio::net::UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<GroRead> {
    sock.try_io(Interest::READABLE, || {
        let mut iov = [IoSliceMut::new(buf)];
        let r = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut *cmsg),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        if r.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram longer than the receive buffer",
            ));
        }
        let mut stride = r.bytes;
        if let Ok(cmsgs) = r.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::UdpGroSegments(s) = c {
                    stride = usize::try_from(s).unwrap_or(r.bytes);
                }
            }
        }
        let from = r
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|s| SocketAddr::from(*s))
                    .or_else(|| a.as_sockaddr_in6().map(|s| SocketAddr::from(*s)))
            })
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "datagram without an IP source")
            })?;
        Ok(GroRead {
            len: r.bytes,
            from,
            stride: if stride == 0 { r.bytes } else { stride },
        })
    })
}

/// One IP prefix.
pub(crate) type Prefix = (IpAddr, u8);

/// The smallest list of prefixes covering exactly `start..=end` (traffic
/// selectors are ranges, routes are prefixes): [`pad::IpRange::prefixes`].
pub(crate) fn range_to_prefixes(start: IpAddr, end: IpAddr) -> Vec<Prefix> {
    pad::IpRange { start, end }.prefixes()
}

fn prefix_contains((net, len): Prefix, a: IpAddr) -> bool {
    match (net, a) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let shift = 32 - u32::from(len.min(32));
            u32::from(n).checked_shr(shift).unwrap_or(0)
                == u32::from(a).checked_shr(shift).unwrap_or(0)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let shift = 128 - u32::from(len.min(128));
            u128::from(n).checked_shr(shift).unwrap_or(0)
                == u128::from(a).checked_shr(shift).unwrap_or(0)
        }
        _ => false,
    }
}

#[derive(Debug)]
enum RouteOp {
    Add(Prefix),
    Del(Prefix),
}

/// Routes into the TUN device, one per prefix of the remote traffic
/// selectors of the installed child SAs.
#[derive(Debug)]
pub(crate) struct Routes {
    tx: mpsc::UnboundedSender<RouteOp>,
    refs: HashMap<Prefix, usize>,
}

impl Routes {
    /// Start the route task for device `dev`.
    pub(crate) fn new(dev: String) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<RouteOp>();
        tokio::spawn(async move {
            while let Some(op) = rx.recv().await {
                let (verb, (net, len)) = match op {
                    RouteOp::Add(p) => ("replace", p),
                    RouteOp::Del(p) => ("del", p),
                };
                let args = strings(&["route", verb, &format!("{net}/{len}"), "dev", &dev]);
                match ip(&args).await {
                    Ok(()) => {
                        tracing::info!(route = %format!("{net}/{len}"), dev = %dev, verb, "route")
                    }
                    Err(e) => tracing::warn!(error = %e, "route change failed"),
                }
            }
        });
        Self {
            tx,
            refs: HashMap::new(),
        }
    }

    /// A child SA with these remote selectors was installed; `peer` is its
    /// outer address, which is never routed into the tunnel (IKE and ESP to
    /// the peer would loop).
    pub(crate) fn add(&mut self, remote_ts: &[pad::TrafficSelector], peer: IpAddr) {
        for p in Self::prefixes(remote_ts) {
            if prefix_contains(p, peer) {
                tracing::warn!(prefix = %format!("{}/{}", p.0, p.1), %peer, "remote selector covers the peer's outer address: not routed into the TUN device");
                continue;
            }
            let n = self.refs.entry(p).or_default();
            *n += 1;
            if *n == 1 {
                let _ = self.tx.send(RouteOp::Add(p));
            }
        }
    }

    /// A child SA with these remote selectors is gone.
    pub(crate) fn remove(&mut self, remote_ts: &[pad::TrafficSelector], peer: IpAddr) {
        for p in Self::prefixes(remote_ts) {
            if prefix_contains(p, peer) {
                continue;
            }
            if let Some(n) = self.refs.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(&p);
                    let _ = self.tx.send(RouteOp::Del(p));
                }
            }
        }
    }

    fn prefixes(ts: &[pad::TrafficSelector]) -> Vec<Prefix> {
        let mut v: Vec<Prefix> = ts
            .iter()
            .flat_map(|t| range_to_prefixes(t.addr.start, t.addr.end))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A raw socket for ESP (IP protocol 50) without UDP encapsulation, IPv4
/// or IPv6 (the family of the endpoint's addresses).
///
/// Opened with `socket2`, then handed to tokio as a `UdpSocket`: tokio's
/// type only wraps a datagram socket (`recvfrom`/`sendto` on the fd,
/// readiness from the reactor) and works unchanged for a raw one; this
/// avoids `AsyncFd` registration, which is `unsafe` in current tokio.
///
/// An IPv4 raw socket delivers each packet with its IPv4 header, which
/// [`strip_ipv4`] removes; an IPv6 raw socket delivers the payload only
/// (RFC 3542 3: the IPv6 header and extension headers are not passed).
#[derive(Debug)]
pub(crate) struct RawEsp {
    sock: tokio::net::UdpSocket,
    v6: bool,
}

impl RawEsp {
    /// Open it (needs CAP_NET_RAW). The socket receives every ESP packet
    /// addressed to this host.
    pub(crate) fn open(v6: bool) -> io::Result<Self> {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_ESP)))?;
        s.set_nonblocking(true)?;
        let std_sock: std::net::UdpSocket = s.into();
        let sock = tokio::net::UdpSocket::from_std(std_sock)?;
        grow_socket_buffers(&sock);
        Ok(Self { sock, v6 })
    }

    fn esp_range(
        &self,
        buf: &[u8],
        n: usize,
        from: SocketAddr,
    ) -> io::Result<(Range<usize>, IpAddr)> {
        if self.v6 {
            return Ok((0..n.min(buf.len()), from.ip()));
        }
        strip_ipv4(buf.get(..n).unwrap_or_default()).ok_or_else(malformed)
    }

    /// Receive one ESP packet into `buf`: returns the range of the ESP
    /// packet (any IPv4 header removed) and its source address.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<(Range<usize>, IpAddr)> {
        let (n, from) = self.sock.recv_from(buf).await?;
        self.esp_range(buf, n, from)
    }

    /// Try to receive without waiting (for draining bursts).
    pub(crate) fn try_recv(&self, buf: &mut [u8]) -> io::Result<(Range<usize>, IpAddr)> {
        let (n, from) = self.sock.try_recv_from(buf)?;
        self.esp_range(buf, n, from)
    }

    /// Send one ESP packet to `dst` (the kernel adds the IP header).
    pub(crate) fn try_send(&self, packet: &[u8], dst: IpAddr) -> io::Result<usize> {
        self.sock.try_send_to(packet, SocketAddr::new(dst, 0))
    }

    /// Send the ESP packets laid back to back in `data`, `segment` octets
    /// each (the last may be shorter), to `dst` with one `sendmmsg` (raw
    /// sockets have no segmentation offload: one system call for the lot
    /// instead of one each). Returns how many the kernel took, which may
    /// be fewer than all when its buffer fills; `WouldBlock` if none.
    /// The message headers are made per call, as in [`recv_batch`].
    pub(crate) fn try_send_batch(
        &self,
        data: &[u8],
        segment: usize,
        dst: IpAddr,
    ) -> io::Result<usize> {
        let seg = segment.max(1);
        let n = data.len().div_ceil(seg);
        if n == 0 {
            return Ok(0);
        }
        let addr = SockaddrStorage::from(SocketAddr::new(dst, 0));
        self.sock.try_io(Interest::WRITABLE, || {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, None);
            let iovs: Vec<[IoSlice<'_>; 1]> = data.chunks(seg).map(|c| [IoSlice::new(c)]).collect();
            let addrs = vec![Some(addr); n];
            let cmsgs: [ControlMessage<'_>; 0] = [];
            let sent = sendmmsg(
                self.sock.as_raw_fd(),
                &mut headers,
                &iovs,
                addrs,
                cmsgs,
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            Ok(sent.count())
        })
    }

    /// Whether this socket speaks IPv6.
    pub(crate) fn is_v6(&self) -> bool {
        self.v6
    }
}

fn malformed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "malformed IPv4 header on the raw ESP socket",
    )
}

/// The ESP packet inside an IPv4 packet from a raw socket, and its source:
/// all of the IPv4 header (with options) is removed, and the packet ends
/// where its total length says. `None` if malformed or not ESP.
pub(crate) fn strip_ipv4(p: &[u8]) -> Option<(Range<usize>, IpAddr)> {
    let first = *p.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
    if ihl < 20 || total < ihl || total > p.len() || i32::from(*p.get(9)?) != IPPROTO_ESP {
        return None;
    }
    let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
    Some((ihl..total, IpAddr::V4(Ipv4Addr::from(src))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn p(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `recv_batch` on loopback: several datagrams per call, each in its
    /// slot with its length and source, an oversize one consumed and left
    /// out, `WouldBlock` once the socket is empty.
    #[tokio::test]
    async fn recv_batch_reads_several_datagrams() {
        let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = rx.local_addr().unwrap();
        let tx1 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx2 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let slot = 64;
        let mut buf = vec![0u8; slot * 4];
        let mut got = Vec::new();
        assert_eq!(
            recv_batch(&rx, &mut buf, slot, &mut got)
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );
        tx1.send_to(b"first", to).unwrap();
        tx2.send_to(&[7u8; 64], to).unwrap();
        tx1.send_to(&[9u8; 65], to).unwrap(); // longer than a slot
        tx2.send_to(b"", to).unwrap();
        tx1.send_to(b"fifth", to).unwrap();
        rx.readable().await.unwrap();
        // All five are queued on loopback once the first is readable;
        // four slots: the first four read, the oversize one left out.
        assert_eq!(recv_batch(&rx, &mut buf, slot, &mut got).unwrap(), 4);
        let (a1, a2) = (tx1.local_addr().unwrap(), tx2.local_addr().unwrap());
        assert_eq!(
            got,
            vec![
                Received {
                    slot: 0,
                    len: 5,
                    from: a1
                },
                Received {
                    slot: 1,
                    len: 64,
                    from: a2
                },
                Received {
                    slot: 3,
                    len: 0,
                    from: a2
                },
            ]
        );
        assert_eq!(&buf[..5], b"first");
        assert_eq!(&buf[slot..2 * slot], &[7u8; 64][..]);
        assert_eq!(recv_batch(&rx, &mut buf, slot, &mut got).unwrap(), 1);
        assert_eq!(
            got,
            vec![Received {
                slot: 0,
                len: 5,
                from: a1
            }]
        );
        assert_eq!(&buf[..5], b"fifth");
        assert_eq!(
            recv_batch(&rx, &mut buf, slot, &mut got)
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(got.is_empty());
        let mut tiny = [0u8; 8];
        assert_eq!(
            recv_batch(&rx, &mut tiny, slot, &mut got)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn prefix_membership() {
        assert!(prefix_contains((p("0.0.0.0"), 0), p("192.0.2.2")));
        assert!(prefix_contains((p("10.99.0.0"), 24), p("10.99.0.7")));
        assert!(!prefix_contains((p("10.99.0.0"), 24), p("10.98.0.7")));
        assert!(!prefix_contains((p("10.99.0.0"), 24), p("::1")));
    }

    /// UDP GSO out, GRO in, on loopback: every datagram arrives whole and
    /// in order, whether the kernel coalesced them or not.
    #[tokio::test]
    async fn gso_send_and_gro_receive() {
        let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let gro = enable_udp_gro(&rx);
        let dst = rx.local_addr().unwrap();
        let sent: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![i; if i == 4 { 300 } else { 1000 }])
            .collect();
        let data = sent.concat();
        tx.writable().await.unwrap();
        assert_eq!(send_gso(&tx, &data, 1000, dst).unwrap(), data.len());
        let mut got = Vec::new();
        let mut buf = vec![0u8; GRO_BUFFER];
        let mut cmsg = gro_cmsg_buffer();
        while got.len() < sent.len() {
            rx.readable().await.unwrap();
            let r = match recv_gro(&rx, &mut buf, &mut cmsg) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(r.from, tx.local_addr().unwrap());
            if !gro {
                assert_eq!(r.stride, r.len);
            }
            got.extend(buf[..r.len].chunks(r.stride).map(<[u8]>::to_vec));
        }
        assert_eq!(got, sent);
        // A segment size that does not fit 16 bits is refused up front.
        assert!(send_gso(&tx, &data, 70_000, dst).is_err());
    }

    #[test]
    fn raw_ipv4_header_is_stripped() {
        let mut pkt = vec![
            0x46, 0, 0, 32, 0, 0, 0, 0, 64, 50, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1,
        ];
        pkt.extend_from_slice(&[1, 1, 1, 1]); // 4 octets of options (IHL 6)
        pkt.extend_from_slice(&[0xaa; 8]);
        pkt.extend_from_slice(&[0xee; 3]); // beyond the total length
        let (r, src) = strip_ipv4(&pkt).unwrap();
        assert_eq!(r, 24..32);
        assert_eq!(src, p("192.0.2.2"));
        pkt[9] = 17;
        assert_eq!(strip_ipv4(&pkt), None);
        for n in 0..pkt.len() {
            let _ = strip_ipv4(&pkt[..n]);
        }
        assert_eq!(strip_ipv4(&[0x45, 0, 0, 10]), None);
    }
}
