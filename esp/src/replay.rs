//! Anti-replay window (RFC 4303 3.4.3) with ESN inference (RFC 4303
//! Appendix A2.2).
//!
//! A ring bitmap of `u64` words (the shape of boringtun's receiving counter
//! validator): bit `seq % size` records whether `seq` was received, for the
//! `size` sequence numbers `top - size + 1 ..= top`. Advancing the window
//! clears the bits it skips, a word at a time. The size is fixed at SA setup
//! (a multiple of 64, at least [`crate::MIN_REPLAY_WINDOW`]); the words are
//! allocated then, never per packet.

use crate::DropReason;

/// The receive window of one inbound SA.
#[derive(Debug)]
pub(crate) struct ReplayWindow {
    /// Highest sequence number accepted so far (0: none yet).
    top: u64,
    /// `size / 64` words.
    bits: Box<[u64]>,
    /// Window size in packets (multiple of 64).
    size: u64,
}

impl ReplayWindow {
    /// A window of at least `min_size` packets, rounded up to whole words
    /// and raised to [`crate::MIN_REPLAY_WINDOW`].
    pub(crate) fn new(min_size: u32) -> Self {
        let size = min_size.max(crate::MIN_REPLAY_WINDOW).div_ceil(64);
        let words = usize::try_from(size).unwrap_or(usize::MAX / 64);
        Self {
            top: 0,
            bits: vec![0u64; words].into_boxed_slice(),
            size: u64::from(size) * 64,
        }
    }

    /// Window size in packets.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Highest sequence number accepted so far (0 if none).
    pub(crate) fn top(&self) -> u64 {
        self.top
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
        // The window size is at most MAX_REPLAY_WINDOW, far below 2^32.
        let w_minus_1 = u32::try_from(self.size.saturating_sub(1)).unwrap_or(u32::MAX);
        let tl = self.top as u32; // low-order 32 bits, truncation intended
        let th = (self.top >> 32) as u32;
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

    fn locate(&self, seq: u64) -> (usize, u64) {
        let idx = seq % self.size;
        // idx / 64 < bits.len(), which fits in usize.
        (
            usize::try_from(idx / 64).unwrap_or(usize::MAX),
            1u64 << (idx % 64),
        )
    }

    fn is_set(&self, seq: u64) -> bool {
        let (word, mask) = self.locate(seq);
        self.bits.get(word).is_some_and(|w| w & mask != 0)
    }

    /// The pre-integrity check: may a packet with this (full) sequence
    /// number be new?
    pub(crate) fn check(&self, seq: u64) -> Result<(), DropReason> {
        if seq == 0 {
            // The first packet of an SA carries 1 (RFC 4303 3.3.3).
            return Err(DropReason::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(DropReason::TooOld);
        }
        if self.is_set(seq) {
            return Err(DropReason::Replayed);
        }
        Ok(())
    }

    /// Record an authenticated packet (only after its ICV was verified).
    /// Checks again, since another thread may have accepted the same number
    /// while this one was decrypting.
    pub(crate) fn update(&mut self, seq: u64) -> Result<(), DropReason> {
        self.check(seq)?;
        if seq > self.top {
            let gap = seq - self.top;
            if gap >= self.size {
                self.bits.fill(0);
            } else {
                // Clear the bits of top+1 ..= seq-1 (seq itself is set below).
                let mut s = self.top + 1;
                while s < seq {
                    let (word, mask) = self.locate(s);
                    if s & 63 == 0 && seq - s >= 64 {
                        if let Some(w) = self.bits.get_mut(word) {
                            *w = 0;
                        }
                        s += 64;
                    } else {
                        if let Some(w) = self.bits.get_mut(word) {
                            *w &= !mask;
                        }
                        s += 1;
                    }
                }
            }
            self.top = seq;
        }
        let (word, mask) = self.locate(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= mask;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, seq: u64) -> Result<(), DropReason> {
        w.check(seq)?;
        w.update(seq)
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
        let mut w = ReplayWindow::new(1024);
        assert_eq!(accept(&mut w, 0), Err(DropReason::TooOld));
        for s in 1..=100 {
            accept(&mut w, s).unwrap();
        }
        assert_eq!(accept(&mut w, 50), Err(DropReason::Replayed));
        assert_eq!(accept(&mut w, 100), Err(DropReason::Replayed));
        // Out of order inside the window.
        accept(&mut w, 300).unwrap();
        accept(&mut w, 200).unwrap();
        assert_eq!(accept(&mut w, 200), Err(DropReason::Replayed));
        accept(&mut w, 101).unwrap();
        // 300 - 1024 < 1: everything from 1 is still inside.
        assert_eq!(accept(&mut w, 1), Err(DropReason::Replayed));
        accept(&mut w, 2000).unwrap();
        // Window is now 977..=2000.
        assert_eq!(accept(&mut w, 976), Err(DropReason::TooOld));
        accept(&mut w, 977).unwrap();
        assert_eq!(accept(&mut w, 977), Err(DropReason::Replayed));
        // 300 is out of the window now (it was received, but is too old).
        assert_eq!(accept(&mut w, 300), Err(DropReason::TooOld));
        // Bits of numbers skipped over were cleared: 1500 is new.
        accept(&mut w, 1500).unwrap();
    }

    #[test]
    fn far_ahead_jump_clears_everything() {
        let mut w = ReplayWindow::new(1024);
        for s in 1..=2048 {
            accept(&mut w, s).unwrap();
        }
        accept(&mut w, 1_000_000).unwrap();
        for s in (1_000_000 - 1023)..1_000_000 {
            assert_eq!(w.check(s), Ok(()), "{s}");
        }
        assert_eq!(w.check(1_000_000 - 1024), Err(DropReason::TooOld));
        // A jump of exactly the window size, and one just under it.
        accept(&mut w, 1_001_024).unwrap();
        assert_eq!(w.check(1_000_000), Err(DropReason::TooOld));
        accept(&mut w, 1_002_047).unwrap();
        assert_eq!(w.check(1_001_024), Err(DropReason::Replayed));
        assert_eq!(w.check(1_001_025), Ok(()));
    }

    #[test]
    fn word_boundaries() {
        // Every gap length across word boundaries against a reference model.
        let mut w = ReplayWindow::new(1024);
        let mut seen = std::collections::BTreeSet::new();
        let mut s = 1u64;
        for step in 1..300u64 {
            s += 1 + step % 131;
            accept(&mut w, s).unwrap();
            seen.insert(s);
            // Occasionally back-fill an older number.
            let back = s.saturating_sub(step * 7 % 1500);
            let expect = if back == 0 || s - back >= 1024 {
                Err(DropReason::TooOld)
            } else if seen.contains(&back) {
                Err(DropReason::Replayed)
            } else {
                Ok(())
            };
            assert_eq!(accept(&mut w, back), expect, "s={s} back={back}");
            if expect.is_ok() {
                seen.insert(back);
            }
        }
    }

    #[test]
    fn esn_inference_case_a_and_b() {
        let mut w = ReplayWindow::new(1024);
        // Fresh window: top 0, case B with Th = 0.
        assert_eq!(w.infer(1, true), Some(1));
        assert_eq!(w.infer(u32::MAX, true), None);
        // Move to near the end of the first subspace.
        accept(&mut w, 0xFFFF_FF00).unwrap();
        assert_eq!(w.infer(0xFFFF_FF01, true), Some(0xFFFF_FF01));
        // Low bits wrapped: inferred to be in the next subspace.
        assert_eq!(w.infer(5, true), Some(0x1_0000_0005));
        accept(&mut w, 0x1_0000_0005).unwrap();
        // Now case B (Tl = 5 < W - 1): late packets of the old subspace.
        assert_eq!(w.infer(0xFFFF_FFF0, true), Some(0xFFFF_FFF0));
        accept(&mut w, 0xFFFF_FFF0).unwrap();
        let again = w.infer(0xFFFF_FFF0, true).unwrap();
        assert_eq!(accept(&mut w, again), Err(DropReason::Replayed));
        assert_eq!(w.infer(6, true), Some(0x1_0000_0006));
        // Without ESN the number is taken as is.
        assert_eq!(w.infer(6, false), Some(6));
    }
}
