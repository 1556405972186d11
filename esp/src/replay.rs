//! Anti-replay window (RFC 4303 3.4.3) with ESN inference (RFC 4303
//! Appendix A2.2).
//!
//! A ring bitmap of `u64` words (the shape of boringtun's receiving counter
//! validator): bit `seq mod 2^k` (`2^k` bits, the window size rounded up to
//! a power of two) records whether `seq` was received, for the `size`
//! sequence numbers `top - size + 1 ..= top`. Advancing the window clears
//! the bits it skips, a word at a time. The size is fixed at SA setup (a
//! multiple of 64, at least [`crate::MIN_REPLAY_WINDOW`]); the words are
//! inline for the default size, allocated at setup otherwise, never per
//! packet. The words and the top are atomics so that the pre-check takes no
//! lock; one lock per accepted packet serialises the writers.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use crate::{DropReason, MIN_REPLAY_WINDOW};

/// Words of the smallest (and default) window, held inline.
const INLINE_WORDS: usize = (MIN_REPLAY_WINDOW / 64) as usize;

/// The bitmap: inline for the default window (no heap block, no pointer),
/// boxed for larger ones.
#[derive(Debug)]
enum Bits {
    Inline([AtomicU64; INLINE_WORDS]),
    Heap(Box<[AtomicU64]>),
}

impl Bits {
    fn words(&self) -> &[AtomicU64] {
        match self {
            Self::Inline(w) => w,
            Self::Heap(w) => w,
        }
    }
}

/// Packets and payload octets accepted on an SA: counted under the
/// window's writer lock, which every accepted packet takes anyway (no
/// atomic read-modify-write of its own).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

impl Tally {
    /// One accepted packet of `bytes` payload octets (`None`: an authentic
    /// packet a later check refused, not counted).
    fn count(&mut self, bytes: Option<usize>) {
        if let Some(b) = bytes {
            self.packets += 1;
            self.bytes += b as u64;
        }
    }
}

/// The receive window of one inbound SA.
///
/// Readers ([`Self::infer`], [`Self::check`]) take no lock: they load the
/// atomics and may see a window a little behind a concurrent writer's.
/// That is safe because the window only ever moves forward: a number found
/// too old or already received stays so, and a number that looks new is
/// checked again by the writer, [`Self::accept`] under `writer` (or
/// [`Self::accept_mut`], for an owner whose `&mut` already excludes every
/// other reader and writer).
#[derive(Debug)]
pub(crate) struct ReplayWindow {
    /// Highest sequence number accepted so far (0: none yet).
    top: AtomicU64,
    /// Window size in packets (a multiple of 64, at most
    /// [`crate::MAX_REPLAY_WINDOW`] rounded up).
    size: u32,
    /// The bitmap holds `mask + 1` bits, a power of two at least `size`
    /// (equal for the default window), so that a bit's position is
    /// `seq & mask` rather than a division.
    mask: u32,
    bits: Bits,
    /// Serialises writers; holds the SA's tally of accepted packets.
    writer: Mutex<Tally>,
}

impl ReplayWindow {
    /// A window of at least `min_size` packets, rounded up to whole words
    /// and raised to [`crate::MIN_REPLAY_WINDOW`].
    pub(crate) fn new(min_size: u32) -> Self {
        let words = min_size.max(MIN_REPLAY_WINDOW).div_ceil(64);
        let cap_words = words.next_power_of_two();
        let n = usize::try_from(cap_words).unwrap_or(usize::MAX / 64);
        let bits = if n == INLINE_WORDS {
            Bits::Inline(Default::default())
        } else {
            Bits::Heap((0..n).map(|_| AtomicU64::new(0)).collect())
        };
        Self {
            top: AtomicU64::new(0),
            size: words.saturating_mul(64),
            mask: cap_words.saturating_mul(64).saturating_sub(1),
            bits,
            writer: Mutex::new(Tally::default()),
        }
    }

    /// Window size in packets.
    pub(crate) fn size(&self) -> u64 {
        u64::from(self.size)
    }

    /// Highest sequence number accepted so far (0 if none).
    pub(crate) fn top(&self) -> u64 {
        self.top.load(Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // No code path panics while holding it; a poisoned lock (a panic
        // elsewhere in a test thread) is used as is.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Packets and octets accepted so far.
    pub(crate) fn tally(&self) -> Tally {
        *self.lock()
    }

    /// The full sequence number of a packet carrying `seq_lo`.
    ///
    /// Without ESN it is `seq_lo`. With ESN the high-order 32 bits are
    /// inferred from the window as RFC 4303 Appendix A2.2 does; `None` when
    /// the inferred number would be below 0 or above 2^64 - 1 (such a packet
    /// cannot be valid).
    pub(crate) fn infer(&self, seq_lo: u32, esn: bool) -> Option<u64> {
        if !esn {
            return Some(u64::from(seq_lo));
        }
        let top = self.top();
        // The window size is at most MAX_REPLAY_WINDOW, far below 2^32.
        let w_minus_1 = self.size.saturating_sub(1);
        let tl = top as u32; // low-order 32 bits, truncation intended
        let th = (top >> 32) as u32;
        let seq_hi = if tl >= w_minus_1 {
            // Case A: the window lies within one sequence number subspace.
            if seq_lo >= tl - w_minus_1 {
                th
            } else {
                th.checked_add(1)?
            }
        } else {
            // Case B: the window spans two subspaces.
            if seq_lo >= tl.wrapping_sub(w_minus_1) {
                th.checked_sub(1)?
            } else {
                th
            }
        };
        Some(u64::from(seq_hi) << 32 | u64::from(seq_lo))
    }

    fn word(&self, seq: u64) -> (Option<&AtomicU64>, u64) {
        let idx = seq & u64::from(self.mask);
        // idx / 64 < the number of words, which fits in usize.
        let w = usize::try_from(idx / 64).unwrap_or(usize::MAX);
        (self.bits.words().get(w), 1u64 << (idx % 64))
    }

    fn verdict(&self, top: u64, seq: u64) -> Result<(), DropReason> {
        if seq == 0 {
            // The first packet of an SA carries 1 (RFC 4303 3.3.3).
            return Err(DropReason::TooOld);
        }
        if seq > top {
            return Ok(());
        }
        if top - seq >= self.size() {
            return Err(DropReason::TooOld);
        }
        let (w, mask) = self.word(seq);
        if w.is_some_and(|w| w.load(Relaxed) & mask != 0) {
            return Err(DropReason::Replayed);
        }
        Ok(())
    }

    /// The pre-integrity check (RFC 4303 3.4.3): may a packet with this
    /// (full) sequence number be new? Takes no lock.
    pub(crate) fn check(&self, seq: u64) -> Result<(), DropReason> {
        self.verdict(self.top(), seq)
    }

    /// Record an authenticated packet (only after its ICV was verified,
    /// RFC 4303 3.4.3), checking again under the writer lock, since another
    /// thread may have accepted the same number while this one was
    /// decrypting. `bytes`: the packet's payload octets if it is to be
    /// counted as accepted (`None` for a packet that is authentic but
    /// dropped by a later check: it still moves the window).
    pub(crate) fn accept(&self, seq: u64, bytes: Option<usize>) -> Result<(), DropReason> {
        let mut tally = self.lock();
        self.advance(seq)?;
        tally.count(bytes);
        Ok(())
    }

    /// [`Self::accept`] by the window's owner: `&mut` excludes every other
    /// reader and writer, so the writer lock is not taken.
    pub(crate) fn accept_mut(&mut self, seq: u64, bytes: Option<usize>) -> Result<(), DropReason> {
        self.advance(seq)?;
        self.writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .count(bytes);
        Ok(())
    }

    /// The check again, then the window moved to hold `seq`: called only
    /// with `writer` held or the window borrowed exclusively.
    fn advance(&self, seq: u64) -> Result<(), DropReason> {
        let top = self.top();
        self.verdict(top, seq)?;
        if seq > top {
            let words = self.bits.words();
            if seq - top > u64::from(self.mask) {
                for w in words {
                    w.store(0, Relaxed);
                }
            } else {
                // Clear the bits of top+1 ..= seq-1 (seq itself is set below).
                let mut s = top + 1;
                while s < seq {
                    let (w, mask) = self.word(s);
                    if s & 63 == 0 && seq - s >= 64 {
                        if let Some(w) = w {
                            w.store(0, Relaxed);
                        }
                        s += 64;
                    } else {
                        if let Some(w) = w {
                            w.store(w.load(Relaxed) & !mask, Relaxed);
                        }
                        s += 1;
                    }
                }
            }
            self.top.store(seq, Relaxed);
        }
        let (w, mask) = self.word(seq);
        if let Some(w) = w {
            w.store(w.load(Relaxed) | mask, Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &ReplayWindow, seq: u64) -> Result<(), DropReason> {
        w.check(seq)?;
        w.accept(seq, Some(1))
    }

    #[test]
    fn size_is_rounded_up() {
        assert_eq!(ReplayWindow::new(0).size(), 1024);
        assert_eq!(ReplayWindow::new(1024).size(), 1024);
        assert_eq!(ReplayWindow::new(1025).size(), 1088);
        assert_eq!(ReplayWindow::new(4096).size(), 4096);
    }

    #[test]
    fn duplicates_and_old() {
        let w = ReplayWindow::new(1024);
        assert_eq!(accept(&w, 0), Err(DropReason::TooOld));
        for s in 1..=100 {
            accept(&w, s).unwrap();
        }
        assert_eq!(accept(&w, 50), Err(DropReason::Replayed));
        assert_eq!(accept(&w, 100), Err(DropReason::Replayed));
        // Out of order inside the window.
        accept(&w, 300).unwrap();
        accept(&w, 200).unwrap();
        assert_eq!(accept(&w, 200), Err(DropReason::Replayed));
        accept(&w, 101).unwrap();
        // 300 - 1024 < 1: everything from 1 is still inside.
        assert_eq!(accept(&w, 1), Err(DropReason::Replayed));
        accept(&w, 2000).unwrap();
        // Window is now 977..=2000.
        assert_eq!(accept(&w, 976), Err(DropReason::TooOld));
        accept(&w, 977).unwrap();
        assert_eq!(accept(&w, 977), Err(DropReason::Replayed));
        // 300 is out of the window now (it was received, but is too old).
        assert_eq!(accept(&w, 300), Err(DropReason::TooOld));
        // Bits of numbers skipped over were cleared: 1500 is new.
        accept(&w, 1500).unwrap();
    }

    #[test]
    fn far_ahead_jump_clears_everything() {
        let w = ReplayWindow::new(1024);
        for s in 1..=2048 {
            accept(&w, s).unwrap();
        }
        accept(&w, 1_000_000).unwrap();
        for s in (1_000_000 - 1023)..1_000_000 {
            assert_eq!(w.check(s), Ok(()), "{s}");
        }
        assert_eq!(w.check(1_000_000 - 1024), Err(DropReason::TooOld));
        // A jump of exactly the window size, and one just under it.
        accept(&w, 1_001_024).unwrap();
        assert_eq!(w.check(1_000_000), Err(DropReason::TooOld));
        accept(&w, 1_002_047).unwrap();
        assert_eq!(w.check(1_001_024), Err(DropReason::Replayed));
        assert_eq!(w.check(1_001_025), Ok(()));
    }

    #[test]
    fn word_boundaries() {
        // Every gap length across word boundaries against a reference
        // model, for the default window and for sizes whose bitmap is
        // larger than the window (1088 in 2048 bits, 3008 in 4096).
        for size in [1024u32, 1088, 3000] {
            let w = ReplayWindow::new(size);
            let size = w.size();
            let mut seen = std::collections::BTreeSet::new();
            let mut s = 1u64;
            for step in 1..600u64 {
                // Gaps up to 1.5 windows: some beyond the window but within
                // the bitmap.
                s += 1 + step * 37 % (size + size / 2);
                accept(&w, s).unwrap();
                seen.insert(s);
                // Occasionally back-fill an older number.
                let back = s.saturating_sub(step * 7 % (size + 500));
                let expect = if back == 0 || s - back >= size {
                    Err(DropReason::TooOld)
                } else if seen.contains(&back) {
                    Err(DropReason::Replayed)
                } else {
                    Ok(())
                };
                assert_eq!(accept(&w, back), expect, "size={size} s={s} back={back}");
                if expect.is_ok() {
                    seen.insert(back);
                }
                // Every number of the window agrees with the model.
                if step % 50 == 0 {
                    for q in s.saturating_sub(size - 1).max(1)..=s {
                        let want = if seen.contains(&q) {
                            Err(DropReason::Replayed)
                        } else {
                            Ok(())
                        };
                        assert_eq!(w.check(q), want, "size={size} top={s} q={q}");
                    }
                }
            }
        }
    }

    #[test]
    fn tally_counts_accepted_packets_only() {
        let w = ReplayWindow::new(1024);
        w.accept(1, Some(100)).unwrap();
        w.accept(2, None).unwrap(); // authentic, dropped later: not counted
        assert_eq!(w.accept(2, Some(100)), Err(DropReason::Replayed));
        w.accept(5, Some(20)).unwrap();
        let t = w.tally();
        assert_eq!((t.packets, t.bytes), (2, 120));
        assert_eq!(w.top(), 5);
    }

    /// Two threads accept the same numbers: each is accepted exactly once.
    #[test]
    fn concurrent_writers_accept_each_number_once() {
        let w = ReplayWindow::new(1024);
        let won: Vec<u64> = std::thread::scope(|sc| {
            let a = sc.spawn(|| {
                (1..=20_000u64)
                    .filter(|&s| w.accept(s, Some(1)).is_ok())
                    .count()
            });
            let b = sc.spawn(|| {
                (1..=20_000u64)
                    .filter(|&s| w.accept(s, Some(1)).is_ok())
                    .count()
            });
            vec![a.join().unwrap() as u64, b.join().unwrap() as u64]
        });
        assert_eq!(won.iter().sum::<u64>(), 20_000);
        assert_eq!(w.tally().packets, 20_000);
        assert_eq!(w.top(), 20_000);
    }

    #[test]
    fn esn_inference_case_a_and_b() {
        let w = ReplayWindow::new(1024);
        // Fresh window: top 0, case B with Th = 0.
        assert_eq!(w.infer(1, true), Some(1));
        assert_eq!(w.infer(u32::MAX, true), None);
        // Move to near the end of the first subspace.
        accept(&w, 0xFFFF_FF00).unwrap();
        assert_eq!(w.infer(0xFFFF_FF01, true), Some(0xFFFF_FF01));
        // Low bits wrapped: inferred to be in the next subspace.
        assert_eq!(w.infer(5, true), Some(0x1_0000_0005));
        accept(&w, 0x1_0000_0005).unwrap();
        // Now case B (Tl = 5 < W - 1): late packets of the old subspace.
        assert_eq!(w.infer(0xFFFF_FFF0, true), Some(0xFFFF_FFF0));
        accept(&w, 0xFFFF_FFF0).unwrap();
        let again = w.infer(0xFFFF_FFF0, true).unwrap();
        assert_eq!(accept(&w, again), Err(DropReason::Replayed));
        assert_eq!(w.infer(6, true), Some(0x1_0000_0006));
        // Without ESN the number is taken as is.
        assert_eq!(w.infer(6, false), Some(6));
    }
}
