//! A retry budget (Finagle's `RetryBudget`): over a sliding window, retries may add at
//! most `percent` of the requests made in it, plus a floor of `reserve` retries. A retry
//! is allowed iff `retries_in_window + 1 <= percent * requests_in_window + reserve`.
//!
//! Lock-free, on atomics, on a caller-supplied nanosecond clock. The window is a ring of
//! `SLOTS` time slots of `window / SLOTS` ns each. A slot is two words:
//!
//! - `word`: `stamp << 24 | retries` (`stamp`: the slot's number + 1, 0 for never used;
//!   `retries`: those withdrawn in it, at most 2^24 - 1: a slot that full denies).
//!   Moved only by compare-and-swap: a retry is counted only if the decision it was
//!   allowed on still holds (the CAS fails if another retry landed meanwhile), so
//!   concurrent withdrawals in one slot never overshoot the budget. Withdrawals racing
//!   across a slot boundary (each deciding in its own slot) may overshoot by one each,
//!   once per slot: a few retries per second at most.
//! - `base`: `tag << 40 | requests` — the requests counter (the manager's
//!   `total_requests`, mod 2^40) when the slot was first used, `tag` the low 24 bits of
//!   the stamp it belongs to (a reader that sees a new stamp before its base treats the
//!   slot as having no sample).
//!
//! The requests are not counted here: the caller passes its running total at each
//! withdrawal (the manager counts every request already, natively), so a request's first
//! try pays nothing. The requests in the window are that total minus the sample at the
//! window's start; when no slot holds that sample (no retry asked for a while), the gap
//! is interpolated from the newest older sample (or the one taken at construction), at
//! the average rate between it and the next sample. Exact whenever every slot of the
//! window was sampled (steady failures), an estimate at the onset of failures.
//!
//! A clock that goes back never frees budget: the ring's newest stamp is "now" until the
//! clock passes it again. Nothing panics or wraps on any input; arithmetic saturates,
//! counts mod 2^40 are compared by wrapping difference.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots in the window's ring.
pub const SLOTS: usize = 10;
const RETRY_BITS: u32 = 24;
const RETRY_MAX: u64 = (1 << RETRY_BITS) - 1;
const STAMP_MAX: u64 = (1 << 40) - 1;
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << 24) - 1;
/// Parts per million: the budget's share, and the reserve, in integer arithmetic.
const PPM: u128 = 1_000_000;

struct Slot {
    word: AtomicU64,
    base: AtomicU64,
}

/// The window's counts at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Requests in the window (exact, or interpolated: see the module's notes).
    pub requests: u64,
    /// Retries withdrawn in the window.
    pub retries: u64,
}

pub struct Budget {
    ring: [Slot; SLOTS],
    width_ns: u64,
    percent_ppm: u64,
    reserve_ppm: u64,
    /// The sample taken at construction: (stamp, requests total).
    origin: (u64, u64),
}

fn stamp_of(w: u64) -> u64 {
    w >> RETRY_BITS
}

fn retries_of(w: u64) -> u64 {
    w & RETRY_MAX
}

/// `a - b` for counts mod 2^40; 0 when `a` is behind `b` (a difference past 2^39: the
/// counter was reset, or read a moment lower than a sample), never a huge count.
fn diff(a: u64, b: u64) -> u64 {
    let d = a.wrapping_sub(b) & COUNT_MASK;
    if d >= 1 << (COUNT_BITS - 1) {
        0
    } else {
        d
    }
}

impl Budget {
    /// `percent`: retries per request (0.2: 20%); `reserve`: retries allowed per window
    /// on top (Finagle's `min_retries_per_second * window`); `window_ns` > 0 (rounded up
    /// to a multiple of `SLOTS` ns); `now_ns` and `requests`: the clock and the requests
    /// counter now. Shares and reserves are kept in millionths.
    pub fn new(percent: f64, reserve: f64, window_ns: u64, now_ns: u64, requests: u64) -> Self {
        let ppm = |x: f64| (x.max(0.0) * 1e6).round().min(u64::MAX as f64) as u64;
        let width_ns = window_ns.div_ceil(SLOTS as u64).max(1);
        Budget {
            ring: std::array::from_fn(|_| Slot {
                word: AtomicU64::new(0),
                base: AtomicU64::new(0),
            }),
            width_ns,
            percent_ppm: ppm(percent),
            reserve_ppm: ppm(reserve),
            origin: (Self::stamp_at(width_ns, now_ns), requests & COUNT_MASK),
        }
    }

    fn stamp_at(width_ns: u64, now_ns: u64) -> u64 {
        (now_ns / width_ns).saturating_add(1).min(STAMP_MAX)
    }

    /// One slot's width in ns.
    pub fn slot_ns(&self) -> u64 {
        self.width_ns
    }

    /// Asks for one retry at `now_ns`, `requests` the caller's running total of requests:
    /// true (counted) if the budget has room, false (nothing counted) if not.
    pub fn try_withdraw(&self, now_ns: u64, requests: u64) -> bool {
        self.withdraw(now_ns, requests, 0, 0)
    }

    /// `try_withdraw` with `others`' requests and retries (the rest of a fleet, over the
    /// same window) added to the decision; only this budget's own retry is counted.
    pub fn withdraw(&self, now_ns: u64, requests: u64, others_req: u64, others_ret: u64) -> bool {
        let requests = requests & COUNT_MASK;
        loop {
            let (stamp, idx) = self.claim(now_ns, requests);
            let cur = self.ring[idx].word.load(Ordering::Acquire);
            if stamp_of(cur) != stamp {
                continue; // the slot rolled on meanwhile: decide again in the new one
            }
            let w = self.window_at(stamp, requests);
            let retries = w.retries.saturating_add(others_ret);
            let reqs = w.requests.saturating_add(others_req);
            let need = (u128::from(retries) + 1) * PPM;
            let room =
                u128::from(self.percent_ppm) * u128::from(reqs) + u128::from(self.reserve_ppm);
            if need > room || retries_of(cur) == RETRY_MAX {
                return false;
            }
            if self.ring[idx]
                .word
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
            // Another retry (or a roll-over) landed between the read and the CAS: the
            // decision is re-made on what is there now.
        }
    }

    /// The window's counts now (also samples the requests counter in this slot).
    pub fn window(&self, now_ns: u64, requests: u64) -> Window {
        let requests = requests & COUNT_MASK;
        let (stamp, _) = self.claim(now_ns, requests);
        self.window_at(stamp, requests)
    }

    /// The current slot's (stamp, index), the slot taken over (retries 0, base sampled
    /// from `requests`) if it still held an older slot. "Now" is never before the ring's
    /// newest stamp (a clock that went back).
    fn claim(&self, now_ns: u64, requests: u64) -> (u64, usize) {
        let mut stamp = Self::stamp_at(self.width_ns, now_ns);
        for s in &self.ring {
            stamp = stamp.max(stamp_of(s.word.load(Ordering::Acquire)));
        }
        let idx = (stamp % SLOTS as u64) as usize;
        let slot = &self.ring[idx];
        let mut w = slot.word.load(Ordering::Acquire);
        while stamp_of(w) < stamp {
            match slot.word.compare_exchange(
                w,
                stamp << RETRY_BITS,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    slot.base.store(
                        ((stamp & TAG_MASK) << COUNT_BITS) | requests,
                        Ordering::Release,
                    );
                    break;
                }
                Err(seen) => w = seen,
            }
        }
        (stamp_of(slot.word.load(Ordering::Acquire)).max(stamp), idx)
    }

    fn window_at(&self, stamp: u64, requests: u64) -> Window {
        let first = stamp.saturating_sub(SLOTS as u64 - 1); // the window's oldest stamp
        let mut retries = 0u64;
        // The oldest sample in the window, and the newest before it: (stamp, base).
        let mut inside: Option<(u64, u64)> = None;
        let mut before: Option<(u64, u64)> = None;
        // Of two samples in one slot the older is the one more requests have come since:
        // the oldest inside the window, the newest before it.
        let mut note = |st: u64, base: u64| {
            let age = diff(requests, base);
            if st >= first {
                if inside.is_none_or(|(s, b)| st < s || (st == s && age > diff(requests, b))) {
                    inside = Some((st, base));
                }
            } else if before.is_none_or(|(s, b)| st > s || (st == s && age < diff(requests, b))) {
                before = Some((st, base));
            }
        };
        note(self.origin.0, self.origin.1);
        for s in &self.ring {
            let w = s.word.load(Ordering::Acquire);
            let st = stamp_of(w);
            if st == 0 || st > stamp {
                continue;
            }
            if st >= first {
                retries = retries.saturating_add(retries_of(w));
            }
            let b = s.base.load(Ordering::Acquire);
            if b >> COUNT_BITS == st & TAG_MASK {
                note(st, b & COUNT_MASK);
            }
        }
        let requests = match (inside, before) {
            (Some((j, bj)), Some((i, bi))) if j > first => {
                // The window's start was not sampled: the gap at the average rate
                // between the samples around it.
                let gap = u128::from(diff(bj, bi)) * u128::from(j - first) / u128::from(j - i);
                diff(requests, bj).saturating_add(u64::try_from(gap).unwrap_or(u64::MAX))
            }
            (Some((_, bj)), _) => diff(requests, bj),
            (None, Some((i, bi))) => {
                let span = stamp.saturating_sub(i).max(1);
                let all = u128::from(diff(requests, bi));
                let part = all * (SLOTS as u128).min(u128::from(span)) / u128::from(span);
                u64::try_from(part).unwrap_or(u64::MAX)
            }
            (None, None) => 0,
        };
        Window { requests, retries }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn budget(percent: f64, reserve: f64) -> Budget {
        Budget::new(percent, reserve, 10 * S, 0, 0)
    }

    #[test]
    fn allows_exactly_its_share_of_requests() {
        let b = budget(0.2, 0.0);
        // 4 requests: 0.8 of a retry, none allowed; the 5th makes one.
        assert!(!b.try_withdraw(0, 4));
        assert!(b.try_withdraw(0, 5));
        assert!(!b.try_withdraw(0, 9));
        assert!(b.try_withdraw(0, 10));
        let got = (0..100).filter(|_| b.try_withdraw(S, 100)).count();
        assert_eq!(got, 18, "20 of 100 requests, 2 already spent");
        assert_eq!(
            b.window(S, 100),
            Window {
                requests: 100,
                retries: 20
            }
        );
    }

    #[test]
    fn the_reserve_is_a_floor() {
        let b = budget(0.0, 3.0);
        assert_eq!((0..10).filter(|_| b.try_withdraw(0, 0)).count(), 3);
    }

    #[test]
    fn the_window_slides() {
        let b = budget(0.0, 2.0);
        assert!(b.try_withdraw(0, 0) && b.try_withdraw(5 * S, 0));
        assert!(!b.try_withdraw(9 * S, 0));
        // At 10 s the first slot has left the window: one retry is free again.
        assert!(b.try_withdraw(10 * S, 0));
        assert!(!b.try_withdraw(10 * S + 1, 0));
        assert!(b.try_withdraw(15 * S, 0));
    }

    #[test]
    fn requests_leave_the_window_too() {
        let b = budget(0.5, 0.0);
        assert_eq!(b.window(0, 0).requests, 0);
        assert_eq!(b.window(3 * S, 10).requests, 10);
        assert_eq!(b.window(12 * S, 30).requests, 30 - 10);
        // Sampled at 3 s (10) and 12 s (30): at 14 s the window [5 s, 14 s] starts two
        // slots after 3 s: 20 requests over 9 slots, 7 of them inside, interpolated.
        let w = b.window(14 * S, 40);
        assert_eq!(w.requests, 40 - 30 + 20 * 7 / 9);
    }

    #[test]
    fn a_long_quiet_spell_is_extrapolated() {
        let b = budget(0.2, 0.0);
        // Sampled at 0 (0 requests); 100 s later, 1000: the 9 slots before this one at the
        // average rate (this slot's sample is now).
        assert_eq!(b.window(100 * S, 1000).requests, 90);
    }

    #[test]
    fn a_clock_going_back_frees_nothing() {
        let b = budget(0.0, 1.0);
        assert!(b.try_withdraw(20 * S, 0));
        assert!(!b.try_withdraw(0, 0));
        assert!(!b.try_withdraw(25 * S, 0));
        assert!(b.try_withdraw(30 * S, 0));
    }

    #[test]
    fn a_counter_going_back_counts_no_requests() {
        let b = budget(0.5, 0.0);
        assert_eq!(b.window(0, 100).requests, 100);
        assert!(b.try_withdraw(0, 100));
        // reset_metrics(): the total restarts from 0. The window counts the 3 since the
        // sample before it (the construction's), not 2^40 - 97 from the one of 100.
        assert_eq!(b.window(S, 3).requests, 3);
        assert!(
            !b.try_withdraw(S, 3),
            "1 retry spent; 0.5 of 3 leaves no room"
        );
    }

    #[test]
    fn others_count_in_the_decision() {
        let b = budget(0.2, 0.0);
        assert!(!b.withdraw(0, 5, 0, 1));
        assert!(b.withdraw(0, 5, 5, 1));
        assert!(!b.withdraw(0, 5, 5, 1));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        for (p, r) in [
            (0.0, 0.0),
            (1e300, 1e300),
            (f64::NAN, f64::INFINITY),
            (-1.0, -1.0),
        ] {
            let b = Budget::new(p, r, 0, u64::MAX, u64::MAX);
            for now in [0, 1, u64::MAX / 2, u64::MAX] {
                b.try_withdraw(now, u64::MAX);
                b.withdraw(now, 0, u64::MAX, u64::MAX);
                b.window(now, 7);
            }
        }
    }
}

#[cfg(loom)]
mod loom_tests {
    //! Model-checked with loom: concurrent withdrawals never overshoot the budget, in one
    //! slot and across a roll-over to the next.
    use super::*;
    use loom::sync::Arc;

    fn model<F: Fn() + Sync + Send + 'static>(f: F) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(3);
        }
        b.check(f);
    }

    #[test]
    fn two_withdrawals_one_retry_of_room() {
        model(|| {
            let b = Arc::new(Budget::new(0.0, 1.0, 10, 0, 0));
            let t = {
                let b = b.clone();
                loom::thread::spawn(move || b.try_withdraw(0, 0))
            };
            let mine = b.try_withdraw(0, 0);
            let theirs = t.join().unwrap();
            assert!(
                mine ^ theirs,
                "exactly one of two retries fits: {mine} {theirs}"
            );
            assert_eq!(b.window(0, 0).retries, 1);
        });
    }

    #[test]
    fn withdrawals_a_lap_apart() {
        model(|| {
            // Slots of 1 ns; stamps 2 and 12 share a ring slot: the later claim resets it,
            // an older one never overwrites a newer slot, and the newest window ends up
            // holding exactly its one retry.
            let b = Arc::new(Budget::new(0.0, 1.0, 10, 0, 0));
            let t = {
                let b = b.clone();
                loom::thread::spawn(move || b.try_withdraw(1, 0))
            };
            let late = b.try_withdraw(11, 0);
            let early = t.join().unwrap();
            assert!(late || early);
            assert_eq!(b.window(11, 0).retries, 1);
        });
    }
}
