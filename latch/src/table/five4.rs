//! The latch table's map of IPv4 connection latches by packed 5-tuple: our
//! own open-addressing table (linear probing, at most half full, deletion by
//! backward shift, no tombstones), not hashbrown's, for two reasons the
//! per-packet check has:
//!
//! - a hit is one keyed hash, one masked index and one entry: the key, the
//!   latch and its gate side by side (hashbrown also reads a control-byte
//!   group elsewhere in memory first: at 1M latches that is a second cache
//!   and TLB miss per cold lookup);
//! - the entry a key would be found at is known from the hash alone, so a
//!   receive burst can touch all its flows' entries in one tight pass
//!   ([`Five4Map::touch_all`]) before checking them one by one: the cache misses
//!   of a burst of different flows overlap instead of following each other.
//!
//! The hash is foldhash's `quality` variant with a random seed per map, as
//! before: the 5-tuples are partly chosen by the peers, so where a key lands
//! must not be predictable (HashDoS). At most half full, a search for a key
//! that is absent (an unlatched flow) reads 2.5 entries on average, one that
//! is present 1.5.

use super::{Gate, MixState as Seed, PackedV4, Slot};
use crate::types::LatchId;
use std::hash::BuildHasher;

/// One entry: a key and its value side by side. Empty: the key is
/// [`PackedV4::NONE`] (which no 5-tuple packs to) and the value a
/// placeholder nobody reads.
///
/// `repr(C)`: the key comes first, so an entry's last octet and the next
/// entry's key share a cache line; a touch reads both keys and so every
/// line of an entry (48 octets: half of them straddle two lines).
#[derive(Debug, Clone)]
#[repr(C)]
struct Entry {
    key: PackedV4,
    slot: Slot,
}

impl Entry {
    fn empty() -> Self {
        Self {
            key: PackedV4::NONE,
            slot: Slot {
                id: LatchId(0),
                gate: Gate::Closed,
            },
        }
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.key == PackedV4::NONE
    }
}

/// IPv4 connection latches by packed 5-tuple (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Five4Map {
    /// Empty, or a power of two of entries, at most half of them used.
    entries: Vec<Entry>,
    len: usize,
    seed: Seed,
}

impl Five4Map {
    /// An empty map: nothing allocated until the first insert.
    pub(super) fn new() -> Self {
        Self {
            entries: Vec::new(),
            len: 0,
            seed: Seed::default(),
        }
    }

    /// How many keys it holds.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The entry `k` is looked for first (`entries` not empty).
    #[inline(always)]
    fn home(&self, k: PackedV4) -> usize {
        // Truncating the hash to the pointer width is fine: only its low
        // bits are used.
        (self.seed.hash_one(k) as usize) & self.entries.len().wrapping_sub(1)
    }

    /// Where `k` is, if present.
    #[inline(always)]
    fn find(&self, k: PackedV4) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(k);
        // Ends: at most half the entries are used, so an empty one comes.
        loop {
            let e = self.entries.get(i)?;
            if e.key == k {
                return Some(i);
            }
            if e.is_empty() {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The value of `k`.
    #[inline(always)]
    pub(super) fn get(&self, k: &PackedV4) -> Option<&Slot> {
        let i = self.find(*k)?;
        self.entries.get(i).map(|e| &e.slot)
    }

    /// The value of `k`, to change it.
    pub(super) fn get_mut(&mut self, k: &PackedV4) -> Option<&mut Slot> {
        let i = self.find(*k)?;
        self.entries.get_mut(i).map(|e| &mut e.slot)
    }

    /// Reads (and so brings into the cache) the entries where lookups of
    /// `keys` start, returning a word of them for the caller to fold into
    /// a `black_box`; changes nothing; absent keys are fine. Two passes per
    /// 32 keys: first every entry's index (the hashes: arithmetic only),
    /// then the reads alone, a few instructions each, so the processor has
    /// many of their cache misses in flight at once (a pass that hashed and
    /// read in turn would fill its reorder window with hashing after two or
    /// three reads).
    #[inline]
    pub(super) fn touch_all(&self, keys: impl IntoIterator<Item = PackedV4>) -> u64 {
        if self.entries.is_empty() {
            return 0;
        }
        let mut sink = 0;
        let mut at = [0usize; 32];
        let mut n = 0;
        for k in keys {
            if let Some(a) = at.get_mut(n) {
                *a = self.home(k);
                n += 1;
            }
            if n == at.len() {
                sink ^= self.read_at(&at);
                n = 0;
            }
        }
        sink ^ self.read_at(at.get(..n).unwrap_or_default())
    }

    /// The reads of a touch: the key of the entry at each index and of
    /// the one after it (see [`Entry`]: every cache line of the entry).
    #[inline(always)]
    fn read_at(&self, at: &[usize]) -> u64 {
        let mask = self.entries.len().wrapping_sub(1);
        let mut sink = 0;
        for &i in at {
            let first = self.entries.get(i).map_or(0, |e| e.key.0);
            let next = self.entries.get((i + 1) & mask).map_or(0, |e| e.key.0);
            sink ^= first ^ next;
        }
        sink
    }

    /// Insert or replace; the old value if there was one.
    pub(super) fn insert(&mut self, k: PackedV4, slot: Slot) -> Option<Slot> {
        debug_assert!(k != PackedV4::NONE, "no 5-tuple packs to NONE");
        if let Some(e) = self.find(k).and_then(|i| self.entries.get_mut(i)) {
            return Some(std::mem::replace(&mut e.slot, slot));
        }
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place(Entry { key: k, slot });
        self.len += 1;
        None
    }

    /// Put an entry whose key is absent into the first empty entry from its
    /// home (there is one: at most half are used).
    fn place(&mut self, e: Entry) {
        let mask = self.entries.len() - 1;
        let mut i = self.home(e.key);
        while self.entries.get(i).is_some_and(|x| !x.is_empty()) {
            i = (i + 1) & mask;
        }
        if let Some(x) = self.entries.get_mut(i) {
            *x = e;
        }
    }

    /// Twice the entries (8 at first), everything placed again.
    fn grow(&mut self) {
        let cap = (self.entries.len() * 2).max(8);
        let old = std::mem::replace(&mut self.entries, vec![Entry::empty(); cap]);
        for e in old {
            if !e.is_empty() {
                self.place(e);
            }
        }
    }

    /// Remove `k`; its value if it was there. The entries after it in its
    /// run that may move back into the hole do (backward shift), so every
    /// key stays reachable from its home without tombstones.
    pub(super) fn remove(&mut self, k: &PackedV4) -> Option<Slot> {
        let mut hole = self.find(*k)?;
        let removed = std::mem::replace(self.entries.get_mut(hole)?, Entry::empty());
        self.len -= 1;
        let mask = self.entries.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(key) = self.entries.get(j).filter(|e| !e.is_empty()).map(|e| e.key) else {
                break;
            };
            // The entry at `j` may fill the hole unless its home lies
            // (cyclically) after the hole and at or before `j`: then the
            // hole is before its home and it would not be found.
            let h = self.home(key);
            let stays = if hole <= j {
                hole < h && h <= j
            } else {
                hole < h || h <= j
            };
            if !stays {
                self.entries.swap(hole, j);
                hole = j;
            }
        }
        Some(removed.slot)
    }

    /// How many entries are allocated (tests: the load stays at most half).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Every key is reachable from its home through used entries, and the
    /// count is right (tests).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let used = self.entries.iter().filter(|e| !e.is_empty()).count();
        assert_eq!(used, self.len);
        assert!(self.entries.is_empty() || self.len * 2 <= self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            if !e.is_empty() {
                assert_eq!(self.find(e.key), Some(i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn slot(id: u64) -> Slot {
        Slot {
            id: LatchId(id),
            gate: Gate::Larval,
        }
    }

    /// Keys that look like 5-tuples of one host pair (ports differ).
    fn key(i: u64) -> PackedV4 {
        PackedV4(0x0a00_0001_0a00_0002, ((i % 65_536) << 24) | (443 << 8) | 6)
    }

    #[test]
    fn agrees_with_a_hash_map_under_random_inserts_and_removes() {
        // A small key space, so runs, wrap-arounds and backward shifts
        // happen all the time; invariants checked after every step.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20u64 {
            let mut m = Five4Map::new();
            let mut model: HashMap<(u64, u64), u64> = HashMap::new();
            let space = 8 + round * 13;
            for step in 0..2_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = key(x % space);
                let kk = (k.0, k.1);
                if x.is_multiple_of(3) {
                    let got = m.remove(&k).map(|s| s.id.0);
                    assert_eq!(got, model.remove(&kk), "remove, step {step}");
                } else {
                    let got = m.insert(k, slot(step)).map(|s| s.id.0);
                    assert_eq!(got, model.insert(kk, step), "insert, step {step}");
                }
                m.check_invariants();
                assert_eq!(m.len(), model.len());
            }
            for i in 0..space {
                let k = key(i);
                assert_eq!(m.get(&k).map(|s| s.id.0), model.get(&(k.0, k.1)).copied());
            }
        }
    }

    #[test]
    fn empty_map_allocates_nothing_and_finds_nothing() {
        let mut m = Five4Map::new();
        assert_eq!(m.capacity(), 0);
        assert!(m.get(&key(1)).is_none());
        assert!(m.get_mut(&key(1)).is_none());
        assert!(m.remove(&key(1)).is_none());
        assert_eq!(m.touch_all([key(1)]), 0);
        m.check_invariants();
    }

    #[test]
    fn stays_at_most_half_full_and_changes_in_place() {
        let mut m = Five4Map::new();
        for i in 0..1_000 {
            assert!(m.insert(key(i), slot(i)).is_none());
            assert!(m.len() * 2 <= m.capacity());
        }
        assert_eq!(m.capacity(), 2_048);
        m.get_mut(&key(7)).unwrap().id = LatchId(70);
        assert_eq!(m.get(&key(7)).unwrap().id, LatchId(70));
        assert_eq!(m.insert(key(7), slot(77)).unwrap().id, LatchId(70));
        assert_eq!(m.len(), 1_000);
        for i in 0..1_000 {
            assert!(m.remove(&key(i)).is_some());
        }
        assert_eq!(m.len(), 0);
        m.check_invariants();
        // A touch reads the entry a lookup starts at: the key's own when
        // it is at home.
        let mut n = Five4Map::new();
        n.insert(key(3), slot(9));
        assert_eq!(n.touch_all([key(3)]), key(3).0 ^ PackedV4::NONE.0);
    }

    #[test]
    fn neighbouring_flows_spread_over_the_entries() {
        // Ports in a row (what a peer choosing source ports produces):
        // with a random seed each time, no long runs form. Expected
        // longest run at half load is a few dozen at most; 100 would mean
        // the hash clusters these keys.
        for _ in 0..20 {
            let mut m = Five4Map::new();
            for i in 0..30_000 {
                m.insert(key(i), slot(i));
            }
            let mut longest = 0;
            let mut run = 0;
            for e in &m.entries {
                run = if e.is_empty() { 0 } else { run + 1 };
                longest = longest.max(run);
            }
            assert!(longest < 100, "a run of {longest} entries");
        }
    }
}
