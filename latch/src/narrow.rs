//! Narrowing child-SA traffic selectors around latched 5-tuples (R13).
//!
//! An SA carries the cross product TSi x TSr. To keep a latched 5-tuple out
//! of it, we remove the latch's remote point (protocol, remote address,
//! remote port) from every remote selector: the remaining product cannot
//! carry the latched flow whatever the local selectors are, and stays a
//! valid cross product. Cutting a point out of a selector gives up to four
//! selectors: the addresses below and above it (any protocol and ports the
//! selector had), and at its address the ports below and above it (for the
//! latched protocol only: a selector can name one protocol, so the point's
//! address loses its other protocols. Narrowing only needs a subset).
//! When nothing of the remote side is left (the proposal's remote selector
//! was the latched point itself), the local side is narrowed the same way
//! instead.

use pad::{FiveTuple, IpRange, TrafficSelector};
use std::net::SocketAddr;

use pad::{addr_from_u128 as from_u128, addr_to_u128 as to_u128};

/// Whether the SA `local` x `remote` could carry `t`.
pub(crate) fn product_covers(
    local: &[TrafficSelector],
    remote: &[TrafficSelector],
    t: &FiveTuple,
) -> bool {
    local
        .iter()
        .any(|s| s.matches(t.proto, t.local.ip(), t.local.port()))
        && remote
            .iter()
            .any(|s| s.matches(t.proto, t.remote.ip(), t.remote.port()))
}

/// `s` without the point (`proto`, `a`): up to four selectors.
pub(crate) fn exclude_point(s: &TrafficSelector, proto: u8, a: SocketAddr) -> Vec<TrafficSelector> {
    if !s.matches(proto, a.ip(), a.port()) {
        return vec![*s];
    }
    let v4 = s.addr.is_ipv4();
    let (lo, hi, x) = (to_u128(s.addr.start), to_u128(s.addr.end), to_u128(a.ip()));
    let mut out = Vec::with_capacity(4);
    if x > lo {
        out.push(TrafficSelector {
            addr: IpRange {
                start: s.addr.start,
                end: from_u128(v4, x - 1),
            },
            ..*s
        });
    }
    if x < hi {
        out.push(TrafficSelector {
            addr: IpRange {
                start: from_u128(v4, x + 1),
                end: s.addr.end,
            },
            ..*s
        });
    }
    if proto != 0 {
        let at = TrafficSelector {
            ip_proto: proto,
            addr: IpRange::host(a.ip()),
            ..*s
        };
        let p = a.port();
        if p > s.start_port {
            out.push(TrafficSelector {
                end_port: p - 1,
                ..at
            });
        }
        if p < s.end_port {
            out.push(TrafficSelector {
                start_port: p + 1,
                ..at
            });
        }
    }
    out
}

/// The remote selectors narrowed so that `local` x result carries none of
/// `points`.
pub(crate) fn narrow_remote(
    remote: &[TrafficSelector],
    points: &[FiveTuple],
) -> Vec<TrafficSelector> {
    narrow_side(remote, points, |t| t.remote)
}

/// The local selectors narrowed so that result x `remote` carries none of
/// `points` (the fallback when nothing of the remote side would be left).
pub(crate) fn narrow_local(
    local: &[TrafficSelector],
    points: &[FiveTuple],
) -> Vec<TrafficSelector> {
    narrow_side(local, points, |t| t.local)
}

fn narrow_side(
    side: &[TrafficSelector],
    points: &[FiveTuple],
    end: impl Fn(&FiveTuple) -> SocketAddr,
) -> Vec<TrafficSelector> {
    let mut cur = side.to_vec();
    for t in points {
        cur = cur
            .iter()
            .flat_map(|s| exclude_point(s, t.proto, end(t)))
            .collect();
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    #[test]
    fn point_cut_out_of_range() {
        let out = exclude_point(&ts("10.0.0.0/24"), 6, "10.0.0.9:5000".parse().unwrap());
        assert_eq!(
            out,
            [
                ts("10.0.0.0-10.0.0.8"),
                ts("10.0.0.10-10.0.0.255"),
                ts("10.0.0.9[6/0-4999]"),
                ts("10.0.0.9[6/5001-65535]"),
            ]
        );
        for s in &out {
            assert!(!s.matches(6, "10.0.0.9".parse().unwrap(), 5000));
        }
        assert!(out
            .iter()
            .any(|s| s.matches(6, "10.0.0.9".parse().unwrap(), 5001)));
        assert!(out
            .iter()
            .any(|s| s.matches(17, "10.0.0.8".parse().unwrap(), 5000)));
    }

    #[test]
    fn edges_give_fewer_pieces() {
        assert!(exclude_point(
            &ts("10.0.0.9[tcp/5000]"),
            6,
            "10.0.0.9:5000".parse().unwrap()
        )
        .is_empty());
        assert_eq!(
            exclude_point(
                &ts("10.0.0.9[tcp/5000-5001]"),
                6,
                "10.0.0.9:5000".parse().unwrap()
            ),
            [ts("10.0.0.9[tcp/5001]")]
        );
        let v6 = exclude_point(&ts("::/0"), 17, "[2001:db8::1]:53".parse().unwrap());
        assert_eq!(v6.len(), 4);
        // Points outside leave the selector alone.
        assert_eq!(
            exclude_point(&ts("10.0.0.0/24[udp]"), 6, "10.0.0.9:5000".parse().unwrap()),
            [ts("10.0.0.0/24[udp]")]
        );
    }
}
