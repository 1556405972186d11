//! The child SAs by the remote addresses of their selectors: the SAs that
//! may cover a flow, found without walking every SA. Creating a connection
//! latch, changing its gate (`LatchTable::gate_changed`) and installing an
//! SA over waiting latches (`covering_sas`) ask it; with one SA per peer
//! host (a BTNS gateway's usual state) each of those walked all SAs
//! before (docs/performance.md, `cargo bench -p latch --bench churn`).
//!
//! A candidate is not yet a covering SA: its local selectors, protocol and
//! ports are the caller's to check (`SaDesc::covers`). The index only
//! promises that no SA whose remote selectors hold the address is left
//! out. A query costs one ordered-set lookup per prefix length in use
//! (one or two on a usual table), not a walk of the SAs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::types::SaTag;
use pad::IpRange;

/// See the module docs. Each remote range is kept as the prefixes that
/// make it up ([`IpRange::prefixes`]: one for a subnet or a host), so that
/// a query is one lookup per prefix length in use, whatever the SAs'
/// ranges. Addresses as `u128`, IPv4 ones IPv4-mapped (their prefix
/// lengths + 96): an IPv6 selector over the mapped block then names IPv4
/// flows' SAs too, which the caller's check drops (a superset is all that
/// is promised).
#[derive(Debug, Clone)]
pub(super) struct SaIndex {
    /// (prefix length, prefix's high and low halves, SA) for every prefix
    /// of every remote range of every SA: an ordered set, so that the SAs
    /// of one prefix are one range of it, and a host SA costs one entry
    /// and no allocation of its own. The prefix in two `u64`s: 32 octets
    /// an entry, where a `u128`'s alignment made it 48.
    prefixes: BTreeSet<Entry>,
    /// How many entries of `prefixes` have each length (0..=128).
    lengths: [u32; 129],
    /// The lengths whose count is not zero, in order: those a query looks
    /// up.
    in_use: Vec<u8>,
}

impl Default for SaIndex {
    fn default() -> Self {
        Self {
            prefixes: BTreeSet::new(),
            lengths: [0; 129],
            in_use: Vec::new(),
        }
    }
}

/// The prefixes of `r`, as (length, prefix) in the IPv4-mapped space.
fn mapped(r: &IpRange) -> impl Iterator<Item = (u8, u128)> {
    r.prefixes().into_iter().map(|(a, len)| match a {
        IpAddr::V4(_) => (len.saturating_add(96), key(a)),
        IpAddr::V6(_) => (len, key(a)),
    })
}

/// See [`SaIndex::prefixes`].
type Entry = (u8, u64, u64, SaTag);

/// The entry of (`len`, `prefix`, `tag`).
fn entry(len: u8, prefix: u128, tag: SaTag) -> Entry {
    // The high and the low 64 bits: the casts cut on purpose.
    let [hi, lo] = [(prefix >> 64) as u64, prefix as u64];
    (len, hi, lo, tag)
}

fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `k`'s first `len` bits (the rest zero).
fn masked(k: u128, len: u8) -> u128 {
    match 128u32.checked_sub(u32::from(len)) {
        Some(host) if host < 128 => k & !((1u128 << host) - 1),
        _ => 0,
    }
}

impl SaIndex {
    /// SA `tag` with these remote ranges.
    pub(super) fn insert(&mut self, tag: SaTag, ranges: &[IpRange]) {
        for (len, prefix) in ranges.iter().flat_map(mapped) {
            if self.prefixes.insert(entry(len, prefix, tag)) {
                if let Some(n) = self.lengths.get_mut(usize::from(len)) {
                    *n += 1;
                    if *n == 1 {
                        if let Err(at) = self.in_use.binary_search(&len) {
                            self.in_use.insert(at, len);
                        }
                    }
                }
            }
        }
    }

    /// SA `tag` is gone; `ranges` as it was inserted with.
    pub(super) fn remove(&mut self, tag: SaTag, ranges: &[IpRange]) {
        for (len, prefix) in ranges.iter().flat_map(mapped) {
            if self.prefixes.remove(&entry(len, prefix, tag)) {
                if let Some(n) = self.lengths.get_mut(usize::from(len)) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.in_use.retain(|l| *l != len);
                    }
                }
            }
        }
    }

    /// Into `out` (emptied first): every SA with a remote range holding
    /// `a`, each once, in tag order.
    pub(super) fn candidates(&self, a: IpAddr, out: &mut Vec<SaTag>) {
        out.clear();
        let k = key(a);
        for &len in &self.in_use {
            let p = masked(k, len);
            out.extend(
                self.prefixes
                    .range(entry(len, p, 0)..=entry(len, p, SaTag::MAX))
                    .map(|e| e.3),
            );
        }
        out.sort_unstable();
        out.dedup();
    }

    /// How many entries it holds (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// The counts and the lengths in use agree with the entries (tests).
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut counts = [0u32; 129];
        for e in &self.prefixes {
            counts[usize::from(e.0)] += 1;
        }
        assert_eq!(counts, self.lengths);
        let used: Vec<u8> = (0u8..=128)
            .filter(|l| counts[usize::from(*l)] > 0)
            .collect();
        assert_eq!(used, self.in_use);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn r(a: &str, b: &str) -> IpRange {
        IpRange {
            start: a.parse().unwrap(),
            end: b.parse().unwrap(),
        }
    }

    fn found(i: &SaIndex, a: &str) -> Vec<SaTag> {
        let mut v = vec![99];
        i.candidates(a.parse().unwrap(), &mut v);
        v
    }

    #[test]
    fn finds_exactly_the_sas_whose_ranges_hold_the_address() {
        let mut i = SaIndex::default();
        i.insert(1, &[r("10.0.0.1", "10.0.0.1")]);
        i.insert(2, &[r("10.0.0.2", "10.0.0.2"), r("10.0.0.1", "10.0.0.1")]);
        i.insert(3, &[r("10.0.0.0", "10.0.0.255")]);
        i.insert(4, &[r("2001:db8::1", "2001:db8::1")]);
        i.insert(5, &[r("0.0.0.0", "255.255.255.255")]);
        // Both ranges of SA 6 hold 10.0.0.7: named once.
        i.insert(6, &[r("10.0.0.0", "10.0.0.9"), r("10.0.0.7", "10.0.0.7")]);
        assert_eq!(found(&i, "10.0.0.1"), vec![1, 2, 3, 5, 6]);
        assert_eq!(found(&i, "10.0.0.2"), vec![2, 3, 5, 6]);
        assert_eq!(found(&i, "10.0.0.7"), vec![3, 5, 6]);
        assert_eq!(found(&i, "10.0.1.1"), vec![5]);
        assert_eq!(found(&i, "2001:db8::1"), vec![4]);
        assert_eq!(found(&i, "2001:db8::2"), Vec::<SaTag>::new());
        // The range's ends are in it.
        assert_eq!(found(&i, "10.0.0.255"), vec![3, 5]);
        assert_eq!(found(&i, "10.0.0.0"), vec![3, 5, 6]);
        i.remove(2, &[r("10.0.0.2", "10.0.0.2"), r("10.0.0.1", "10.0.0.1")]);
        i.remove(3, &[r("10.0.0.0", "10.0.0.255")]);
        i.remove(6, &[r("10.0.0.0", "10.0.0.9"), r("10.0.0.7", "10.0.0.7")]);
        assert_eq!(found(&i, "10.0.0.1"), vec![1, 5]);
        assert_eq!(found(&i, "10.0.0.7"), vec![5]);
        assert_eq!(i.len(), 3);
        // 10.0.0.0/24 (length 24 + 96) went with SA 3: no longer looked up.
        assert!(!i.in_use.contains(&120));
        i.check_invariants();
    }

    #[test]
    fn agrees_with_a_walk_of_every_sa() {
        // Random host and narrow ranges, IPv4 and IPv6, added and removed:
        // the index names exactly the SAs a walk finds.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let addr = |v6: bool, n: u64| -> IpAddr {
            if v6 {
                IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n)))
            } else {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | u32::try_from(n).unwrap()))
            }
        };
        let mut i = SaIndex::default();
        let mut all: Vec<(SaTag, Vec<IpRange>)> = Vec::new();
        for tag in 0..2_000u64 {
            if next() % 3 == 0 && !all.is_empty() {
                let k = usize::try_from(next() % all.len() as u64).unwrap();
                let (t, rs) = all.swap_remove(k);
                i.remove(t, &rs);
            }
            let v6 = next() % 2 == 0;
            let ranges: Vec<IpRange> = (0..1 + next() % 2)
                .map(|_| {
                    let a = next() % 64;
                    let span = if next() % 4 == 0 { next() % 8 } else { 0 };
                    IpRange {
                        start: addr(v6, a),
                        end: addr(v6, a + span),
                    }
                })
                .collect();
            i.insert(tag, &ranges);
            all.push((tag, ranges));
            let probe = addr(next() % 2 == 0, next() % 72);
            let mut want: Vec<SaTag> = all
                .iter()
                .filter(|(_, rs)| rs.iter().any(|r| r.contains(probe)))
                .map(|(t, _)| *t)
                .collect();
            want.sort_unstable();
            let mut got = Vec::new();
            i.candidates(probe, &mut got);
            assert_eq!(got, want, "probe {probe} after SA {tag}");
            i.check_invariants();
        }
    }
}
