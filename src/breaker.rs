//! The circuit breaker's state machine in one atomic word, moved only by compare-and-swap.
//!
//! Word layout (low to high bits):
//! - 2 bits: state (closed, open, half-open)
//! - 14 bits: consecutive failures (saturating)
//! - 10 bits: trial permits outstanding (granted in half-open, not yet reported)
//! - 38 bits: the time the breaker opened, in milliseconds, wrapping
//!
//! Time is a caller-supplied millisecond tick that wraps at 2^38 (8.7 years). Elapsed time is
//! the wrapped difference; a difference in the upper half of the range means the clock went
//! backwards, and the breaker then re-anchors its open time to now, so a clock jump in
//! either direction can delay recovery by at most one `recovery_timeout`, never wedge it.
//!
//! Trial permits stay counted until their own report (success, failure or release) arrives,
//! whatever transitions happen meanwhile, so at no instant are more than
//! `half_open_max_calls` trial calls running.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

const STATE_BITS: u32 = 2;
const FAIL_BITS: u32 = 14;
const TRIAL_BITS: u32 = 10;
const TIME_BITS: u32 = 38;

const FAIL_SHIFT: u32 = STATE_BITS;
const TRIAL_SHIFT: u32 = FAIL_SHIFT + FAIL_BITS;
const TIME_SHIFT: u32 = TRIAL_SHIFT + TRIAL_BITS;

const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const FAIL_MAX: u64 = (1 << FAIL_BITS) - 1;
const TRIAL_MAX: u64 = (1 << TRIAL_BITS) - 1;
/// Ticks wrap at this modulus.
pub const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const TIME_HALF: u64 = 1 << (TIME_BITS - 1);

/// The largest accepted `failure_threshold`.
pub const MAX_FAILURE_THRESHOLD: u64 = FAIL_MAX;
/// The largest accepted `half_open_max_calls`.
pub const MAX_HALF_OPEN_CALLS: u64 = TRIAL_MAX;
/// The largest accepted `recovery_timeout`, in ticks (about 4.3 years).
pub const MAX_TIMEOUT_MS: u64 = TIME_HALF - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// What `acquire` granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Open (or half-open with every trial slot taken): do not call.
    Rejected,
    /// Closed: call normally.
    Normal,
    /// Half-open: this call is a trial; its report decides the state.
    Trial,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Word {
    state: State,
    failures: u64,
    trials: u64,
    opened_at: u64,
}

impl Word {
    fn unpack(w: u64) -> Self {
        let state = match w & STATE_MASK {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        };
        Word {
            state,
            failures: (w >> FAIL_SHIFT) & FAIL_MAX,
            trials: (w >> TRIAL_SHIFT) & TRIAL_MAX,
            opened_at: (w >> TIME_SHIFT) & TIME_MASK,
        }
    }

    fn pack(self) -> u64 {
        let s = match self.state {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        };
        s | (self.failures.min(FAIL_MAX) << FAIL_SHIFT)
            | (self.trials.min(TRIAL_MAX) << TRIAL_SHIFT)
            | ((self.opened_at & TIME_MASK) << TIME_SHIFT)
    }
}

/// Elapsed ticks since `since`, or None when the clock went backwards.
fn elapsed(now: u64, since: u64) -> Option<u64> {
    let d = now.wrapping_sub(since) & TIME_MASK;
    if d >= TIME_HALF {
        None
    } else {
        Some(d)
    }
}

/// Configuration, validated by the caller (see the MAX_ constants).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub failure_threshold: u64,
    pub recovery_timeout_ms: u64,
    pub half_open_max_calls: u64,
}

pub struct Breaker {
    word: AtomicU64,
    cfg: Config,
}

impl Breaker {
    pub fn new(cfg: Config) -> Self {
        let cfg = Config {
            failure_threshold: cfg.failure_threshold.clamp(1, FAIL_MAX),
            recovery_timeout_ms: cfg.recovery_timeout_ms.min(MAX_TIMEOUT_MS),
            half_open_max_calls: cfg.half_open_max_calls.clamp(1, TRIAL_MAX),
        };
        Breaker {
            word: AtomicU64::new(0),
            cfg,
        }
    }

    pub fn config(&self) -> Config {
        self.cfg
    }

    fn load(&self) -> Word {
        Word::unpack(self.word.load(Ordering::Acquire))
    }

    /// Applies `f` to the word until a CAS succeeds; `f` returning None leaves it unchanged.
    fn update<R>(&self, mut f: impl FnMut(Word) -> (Option<Word>, R)) -> R {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let (next, r) = f(Word::unpack(cur));
            let Some(next) = next else { return r };
            let packed = next.pack();
            if packed == cur {
                return r;
            }
            match self
                .word
                .compare_exchange_weak(cur, packed, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return r,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The state as a caller sees it at `now`: an open breaker whose timeout has elapsed
    /// reads half-open before any call is made.
    pub fn state(&self, now: u64) -> State {
        let w = self.load();
        match w.state {
            State::Open => match elapsed(now, w.opened_at) {
                Some(e) if e >= self.cfg.recovery_timeout_ms => State::HalfOpen,
                _ => State::Open,
            },
            s => s,
        }
    }

    /// One atomic load: whether the breaker is closed (callers skip the clock then).
    pub fn state_is_closed(&self) -> bool {
        self.word.load(Ordering::Acquire) & STATE_MASK == 0
    }

    pub fn failure_count(&self) -> u64 {
        self.load().failures
    }

    pub fn trials_outstanding(&self) -> u64 {
        self.load().trials
    }

    /// Ticks left until an open breaker admits a trial call (0 when it would now).
    pub fn remaining(&self, now: u64) -> u64 {
        let w = self.load();
        if w.state != State::Open {
            return 0;
        }
        match elapsed(now, w.opened_at) {
            Some(e) => self.cfg.recovery_timeout_ms.saturating_sub(e),
            None => self.cfg.recovery_timeout_ms,
        }
    }

    /// Asks to make a call at `now`.
    pub fn acquire(&self, now: u64) -> Permit {
        // The common case, closed, is one atomic load and no write.
        let cur = self.word.load(Ordering::Acquire);
        if cur & STATE_MASK == 0 {
            return Permit::Normal;
        }
        let max = self.cfg.half_open_max_calls;
        let timeout = self.cfg.recovery_timeout_ms;
        self.update(|w| match w.state {
            State::Closed => (None, Permit::Normal),
            State::Open => match elapsed(now, w.opened_at) {
                None => (
                    Some(Word {
                        opened_at: now,
                        ..w
                    }),
                    Permit::Rejected,
                ),
                Some(e) if e < timeout => (None, Permit::Rejected),
                Some(_) if w.trials >= max => (None, Permit::Rejected),
                Some(_) => (
                    Some(Word {
                        state: State::HalfOpen,
                        trials: w.trials + 1,
                        ..w
                    }),
                    Permit::Trial,
                ),
            },
            State::HalfOpen if w.trials >= max => (None, Permit::Rejected),
            State::HalfOpen => (
                Some(Word {
                    trials: w.trials + 1,
                    ..w
                }),
                Permit::Trial,
            ),
        })
    }

    /// Reports a successful call made under `permit`.
    pub fn on_success(&self, permit: Permit) {
        let trial = permit == Permit::Trial;
        if !trial {
            // Skip the write when there is nothing to reset: keeps the hot path read-only.
            let w = self.load();
            if w.state != State::Closed || w.failures == 0 {
                return;
            }
        }
        self.update(|w| {
            let trials = if trial {
                w.trials.saturating_sub(1)
            } else {
                w.trials
            };
            let next = match w.state {
                State::HalfOpen if trial => Word {
                    state: State::Closed,
                    failures: 0,
                    trials,
                    opened_at: w.opened_at,
                },
                State::Closed => Word {
                    failures: 0,
                    trials,
                    ..w
                },
                _ => Word { trials, ..w },
            };
            (Some(next), ())
        })
    }

    /// Reports a failed call made under `permit`, at `now`; true when this report is
    /// the one that opened the breaker (so the caller logs it once and stops retrying).
    pub fn on_failure(&self, permit: Permit, now: u64) -> bool {
        let trial = permit == Permit::Trial;
        let threshold = self.cfg.failure_threshold;
        self.update(|w| {
            let trials = if trial {
                w.trials.saturating_sub(1)
            } else {
                w.trials
            };
            let next = match w.state {
                State::HalfOpen if trial => Word {
                    state: State::Open,
                    failures: (w.failures + 1).min(FAIL_MAX),
                    trials,
                    opened_at: now,
                },
                State::Closed => {
                    let failures = (w.failures + 1).min(FAIL_MAX);
                    if failures >= threshold {
                        Word {
                            state: State::Open,
                            failures,
                            trials,
                            opened_at: now,
                        }
                    } else {
                        Word {
                            failures,
                            trials,
                            ..w
                        }
                    }
                }
                // A report from a call granted before the breaker opened changes nothing.
                _ => Word { trials, ..w },
            };
            let opened = next.state == State::Open && w.state != State::Open;
            (Some(next), opened)
        })
    }

    /// Gives a permit back without an outcome (the call was cancelled or never made).
    pub fn release(&self, permit: Permit) {
        if permit != Permit::Trial {
            return;
        }
        self.update(|w| {
            (
                Some(Word {
                    trials: w.trials.saturating_sub(1),
                    ..w
                }),
                (),
            )
        })
    }

    /// Closes the breaker and forgets its failures. Outstanding trials stay counted until
    /// they report, so a reset never lets extra trials through.
    pub fn reset(&self) {
        self.update(|w| {
            (
                Some(Word {
                    state: State::Closed,
                    failures: 0,
                    trials: w.trials,
                    opened_at: 0,
                }),
                (),
            )
        })
    }

    /// Forces the breaker open at `now` (operators' kill switch, and tests).
    pub fn trip(&self, now: u64) {
        self.update(|w| {
            (
                Some(Word {
                    state: State::Open,
                    opened_at: now,
                    ..w
                }),
                (),
            )
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn b(threshold: u64, timeout: u64, max: u64) -> Breaker {
        Breaker::new(Config {
            failure_threshold: threshold,
            recovery_timeout_ms: timeout,
            half_open_max_calls: max,
        })
    }

    #[test]
    fn word_round_trips() {
        let w = Word {
            state: State::HalfOpen,
            failures: 1234,
            trials: 1000,
            opened_at: TIME_MASK - 5,
        };
        assert_eq!(Word::unpack(w.pack()), w);
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let br = b(3, 1000, 1);
        for _ in 0..2 {
            assert_eq!(br.acquire(0), Permit::Normal);
            br.on_failure(Permit::Normal, 0);
        }
        br.on_success(Permit::Normal); // success resets the streak
        assert_eq!(br.failure_count(), 0);
        for _ in 0..3 {
            br.on_failure(Permit::Normal, 10);
        }
        assert_eq!(br.state(10), State::Open);
        assert_eq!(br.acquire(500), Permit::Rejected);
        assert_eq!(br.remaining(500), 510);
    }

    #[test]
    fn reads_half_open_after_timeout_and_admits_limited_trials() {
        let br = b(1, 1000, 2);
        br.on_failure(Permit::Normal, 0);
        assert_eq!(br.state(999), State::Open);
        assert_eq!(br.state(1000), State::HalfOpen);
        assert_eq!(br.acquire(1000), Permit::Trial);
        assert_eq!(br.acquire(1000), Permit::Trial);
        assert_eq!(br.acquire(1000), Permit::Rejected);
        br.on_success(Permit::Trial);
        assert_eq!(br.state(1000), State::Closed);
        // the second trial is still outstanding
        assert_eq!(br.trials_outstanding(), 1);
        br.release(Permit::Trial);
        assert_eq!(br.trials_outstanding(), 0);
    }

    #[test]
    fn failed_trial_reopens() {
        let br = b(1, 100, 1);
        assert!(
            br.on_failure(Permit::Normal, 0),
            "the first failure opens it"
        );
        assert!(
            !br.on_failure(Permit::Normal, 0),
            "already open: no new opening"
        );
        assert_eq!(br.acquire(100), Permit::Trial);
        assert!(
            br.on_failure(Permit::Trial, 150),
            "a failed trial re-opens it"
        );
        assert_eq!(br.state(200), State::Open);
        assert_eq!(br.state(250), State::HalfOpen);
    }

    #[test]
    fn outstanding_trial_blocks_new_trials_across_reopen() {
        let br = b(1, 100, 1);
        br.on_failure(Permit::Normal, 0);
        assert_eq!(br.acquire(100), Permit::Trial);
        br.trip(120);
        assert_eq!(br.acquire(300), Permit::Rejected); // slot still taken
        br.release(Permit::Trial);
        assert_eq!(br.acquire(300), Permit::Trial);
    }

    #[test]
    fn stale_reports_do_not_move_an_open_breaker() {
        let br = b(1, 100, 1);
        br.on_failure(Permit::Normal, 0);
        br.on_success(Permit::Normal);
        assert_eq!(br.state(50), State::Open);
        br.on_failure(Permit::Normal, 60);
        assert_eq!(br.remaining(60), 40);
    }

    #[test]
    fn clock_going_backwards_re_anchors() {
        let br = b(1, 100, 1);
        br.on_failure(Permit::Normal, 5_000);
        let back = 1_000;
        assert_eq!(br.state(back), State::Open);
        assert_eq!(br.acquire(back), Permit::Rejected);
        assert_eq!(br.acquire(back + 99), Permit::Rejected);
        assert_eq!(br.acquire(back + 100), Permit::Trial);
    }

    #[test]
    fn clock_wrap_is_harmless() {
        let br = b(1, 100, 1);
        let t = TIME_MASK - 10;
        br.on_failure(Permit::Normal, t);
        assert_eq!(br.state((t + 50) & TIME_MASK), State::Open);
        assert_eq!(br.state((t + 100) & TIME_MASK), State::HalfOpen);
    }

    #[test]
    fn reset_closes() {
        let br = b(1, 100, 1);
        br.on_failure(Permit::Normal, 0);
        br.reset();
        assert_eq!(br.state(1), State::Closed);
        assert_eq!(br.failure_count(), 0);
        assert_eq!(br.acquire(1), Permit::Normal);
    }

    #[test]
    fn failures_saturate() {
        let br = b(MAX_FAILURE_THRESHOLD, 100, 1);
        for _ in 0..(FAIL_MAX + 10) {
            br.on_failure(Permit::Normal, 0);
        }
        assert_eq!(br.state(0), State::Open);
        assert_eq!(br.failure_count(), FAIL_MAX);
    }

    #[test]
    fn threads_never_exceed_trial_limit() {
        use std::sync::atomic::AtomicI64;
        use std::sync::Arc;
        let br = Arc::new(b(1, 0, 3));
        br.on_failure(Permit::Normal, 0);
        let running = Arc::new(AtomicI64::new(0));
        let peak = Arc::new(AtomicI64::new(0));
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let (br, running, peak) = (br.clone(), running.clone(), peak.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let p = br.acquire(i);
                        if p == Permit::Trial {
                            let r = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(r, Ordering::SeqCst);
                            running.fetch_sub(1, Ordering::SeqCst);
                            if (i + t) % 2 == 0 {
                                br.on_failure(p, i);
                            } else {
                                br.release(p);
                            }
                        } else if p == Permit::Normal {
                            br.on_failure(p, i);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("thread");
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(br.trials_outstanding(), 0);
    }
}

#[cfg(loom)]
mod loom_tests {
    //! Model-checked with loom: every interleaving (and every value a load may see under
    //! the C11 memory model) of 2-3 threads doing permit, success, failure, release,
    //! reset and trip, at times before and after the recovery timeout.
    //!
    //! Run with `make rust-loom`. The search is bounded to `LOOM_MAX_PREEMPTIONS`
    //! preemptions per execution (3 unless the environment says otherwise); unbounded,
    //! the three-thread models take many minutes each.
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;

    /// The preemption bound when `LOOM_MAX_PREEMPTIONS` is not set.
    const DEFAULT_PREEMPTIONS: usize = 3;

    fn model<F: Fn() + Sync + Send + 'static>(f: F) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(DEFAULT_PREEMPTIONS);
        }
        b.check(f);
    }

    fn breaker(threshold: u64, timeout: u64, max: u64) -> Arc<Breaker> {
        Arc::new(Breaker::new(Config {
            failure_threshold: threshold,
            recovery_timeout_ms: timeout,
            half_open_max_calls: max,
        }))
    }

    /// Counts trial calls in progress; panics past `max`.
    struct Trials {
        running: AtomicUsize,
        max: usize,
    }

    impl Trials {
        fn new(max: usize) -> Arc<Self> {
            Arc::new(Trials {
                running: AtomicUsize::new(0),
                max,
            })
        }

        fn enter(&self) {
            let r = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(r <= self.max, "{r} trials at once, max {}", self.max);
        }

        fn leave(&self) {
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Three threads race for one trial slot, at times before and after the timeout, and
    /// report success, failure or nothing: never two trials at once, no trial before the
    /// timeout, and every slot comes back.
    #[test]
    fn half_open_admits_at_most_max_trials() {
        model(|| {
            let br = breaker(1, 10, 1);
            assert!(br.on_failure(Permit::Normal, 0));
            let trials = Trials::new(1);
            let hs: Vec<_> = (0..3u64)
                .map(|t| {
                    let (br, trials) = (br.clone(), trials.clone());
                    loom::thread::spawn(move || {
                        // Thread 2 asks before the timeout (relative to the first opening).
                        let now = [10, 15, 5][t as usize];
                        let p = br.acquire(now);
                        match p {
                            Permit::Trial => {
                                assert_ne!(t, 2, "a trial before the recovery timeout");
                                trials.enter();
                                trials.leave();
                                match t {
                                    0 => br.on_success(p),
                                    _ => {
                                        br.on_failure(p, now);
                                    }
                                }
                            }
                            Permit::Normal => br.on_success(p),
                            Permit::Rejected => {}
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(br.trials_outstanding(), 0);
        });
    }

    /// Two trial slots, three threads each taking one and giving it back (success,
    /// failure, release): at most two at once, and all slots return.
    #[test]
    fn two_slots_never_three_trials() {
        model(|| {
            let br = breaker(1, 0, 2);
            br.on_failure(Permit::Normal, 0);
            let trials = Trials::new(2);
            let hs: Vec<_> = (0..3)
                .map(|t| {
                    let (br, trials) = (br.clone(), trials.clone());
                    loom::thread::spawn(move || {
                        let p = br.acquire(1);
                        if p == Permit::Trial {
                            trials.enter();
                            trials.leave();
                            match t {
                                0 => br.on_success(p),
                                1 => {
                                    br.on_failure(p, 1);
                                }
                                _ => br.release(p),
                            }
                        } else if p == Permit::Normal {
                            br.on_success(p);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(br.trials_outstanding(), 0);
        });
    }

    /// No lost transition: racing failure reports on a closed breaker (threshold 2) and a
    /// success. Exactly one report says it opened the breaker iff it ends open, and two
    /// failures with no success after them always open it.
    #[test]
    fn concurrent_failures_open_exactly_once() {
        model(|| {
            let br = breaker(2, 100, 1);
            let opened = Arc::new(AtomicUsize::new(0));
            let succeeded_last = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..3)
                .map(|t| {
                    let (br, opened, succeeded_last) =
                        (br.clone(), opened.clone(), succeeded_last.clone());
                    loom::thread::spawn(move || {
                        let p = br.acquire(0);
                        if t < 2 {
                            if p != Permit::Rejected && br.on_failure(p, 0) {
                                opened.fetch_add(1, Ordering::SeqCst);
                            }
                        } else if p == Permit::Normal {
                            br.on_success(p);
                            succeeded_last.store(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let n = opened.load(Ordering::SeqCst);
            assert!(n <= 1, "opened {n} times");
            let is_open = br.state(0) == State::Open;
            assert_eq!(n == 1, is_open, "an opening was lost or invented");
            if succeeded_last.load(Ordering::SeqCst) == 0 {
                assert!(is_open, "two failures and no success must open it");
            }
        });
    }

    /// No permit while open: once the report that opened the breaker is visible to a
    /// thread, that thread is refused until the timeout, and a stale success (a call
    /// granted before the opening) does not close it.
    #[test]
    fn no_permit_granted_while_open() {
        model(|| {
            let br = breaker(1, 10, 1);
            let seen = Arc::new(AtomicUsize::new(0));
            let first = br.acquire(0);
            assert_eq!(first, Permit::Normal);
            let opener = {
                let (br, seen) = (br.clone(), seen.clone());
                loom::thread::spawn(move || {
                    assert!(br.on_failure(Permit::Normal, 0));
                    seen.store(1, Ordering::Release);
                })
            };
            let stale = {
                let br = br.clone();
                loom::thread::spawn(move || br.on_success(first))
            };
            let asker = {
                let (br, seen) = (br.clone(), seen.clone());
                loom::thread::spawn(move || {
                    if seen.load(Ordering::Acquire) == 1 {
                        assert_eq!(br.acquire(5), Permit::Rejected, "a permit while open");
                    }
                })
            };
            for h in [opener, stale, asker] {
                h.join().unwrap();
            }
            assert_eq!(br.state(5), State::Open);
            assert_eq!(br.acquire(5), Permit::Rejected);
            assert_eq!(br.acquire(10), Permit::Trial);
        });
    }

    /// Operators' reset and trip racing a trial: outstanding trials stay counted, so a
    /// trip right after a reset never lets a second trial in while the first runs.
    #[test]
    fn reset_and_trip_never_over_admit() {
        model(|| {
            let br = breaker(1, 10, 1);
            br.on_failure(Permit::Normal, 0);
            let trials = Trials::new(1);
            let holder = {
                let (br, trials) = (br.clone(), trials.clone());
                loom::thread::spawn(move || {
                    let p = br.acquire(10);
                    if p == Permit::Trial {
                        trials.enter();
                        trials.leave();
                        br.release(p);
                    }
                })
            };
            let operator = {
                let br = br.clone();
                loom::thread::spawn(move || {
                    br.reset();
                    br.trip(20);
                })
            };
            let late = {
                let (br, trials) = (br.clone(), trials.clone());
                loom::thread::spawn(move || {
                    let p = br.acquire(30);
                    if p == Permit::Trial {
                        trials.enter();
                        trials.leave();
                        br.on_failure(p, 30);
                    }
                })
            };
            for h in [holder, operator, late] {
                h.join().unwrap();
            }
            assert_eq!(br.trials_outstanding(), 0);
        });
    }

    /// A clock that jumps backwards (one thread asks at an earlier time than the opening)
    /// re-anchors the timeout and never wedges the breaker: one timeout after the latest
    /// anchor, a trial is admitted.
    #[test]
    fn clock_jump_back_does_not_wedge() {
        model(|| {
            let br = breaker(1, 10, 1);
            br.on_failure(Permit::Normal, 100);
            let hs: Vec<_> = [5u64, 110]
                .into_iter()
                .map(|now| {
                    let br = br.clone();
                    loom::thread::spawn(move || {
                        // At 5 a trial is only possible once the other thread's trial
                        // made it half-open and gave its slot back.
                        let p = br.acquire(now);
                        if p == Permit::Trial {
                            br.release(p);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(br.trials_outstanding(), 0);
            // The anchor is 100 or 5: either way, by 110 a trial is due.
            assert_eq!(br.acquire(110), Permit::Trial);
        });
    }
}
