//! Rate limits as GCRA (the generic cell rate algorithm) on one atomic word per limit,
//! moved only by compare-and-swap, on a caller-supplied nanosecond clock.
//!
//! A limit is `amount` units per `window` ns (rpm: requests per 60 s; tpm: tokens per
//! 60 s) with a `burst` (default: the window's whole amount). Each unit costs an
//! emission interval `T = ceil(window / amount)` ns (rounded up, so the effective rate is
//! never above the nominal one; for amounts up to 1e9 per minute the rounding is below
//! 1/60 of one unit per window, and zero whenever the amount divides the window). The
//! state is the theoretical arrival time `tat`: the instant at which the limit would be
//! back to full capacity. Admitting `n` units at `now` sets
//! `tat' = max(tat, now) + n*T`, and is allowed only if `tat' - now <= burst*T`. So over
//! any span of `d` ns the units admitted (net of refunds) are at most
//! `burst + d / T`: the whole burst at once, then the sustained rate.
//!
//! Times are `u64` ns from an arbitrary origin (the Python face adds a bias so a clock
//! read before its origin is still positive). Arithmetic saturates; nothing wraps or
//! panics on any input.
//!
//! A clock that goes backwards (an injected one; the native clock is monotonic) only
//! makes the limit stricter: `tat - now` grows by the jump, so admissions wait until the
//! clock is back where it was; a burst is never admitted because of a jump. The price is
//! that a jump back of `j` ns delays admissions by up to `j` (there is no way to tell a
//! jump from debt charged by `settle`, so the limiter does not re-anchor).
//!
//! Settlement: a reservation carries the end of its slot on the `tat` timeline. Giving
//! back `g` units moves `tat` back by at most the part of that slot still in the future
//! (`min(g*T, end - now, tat - now)`): capacity that has already refilled is never handed
//! out twice. Charging `c` more units pushes `tat` forward by `c*T` unconditionally (the
//! usage happened): later admissions wait, the limit holds on real usage over time.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest accepted amount per window, per minute-equivalent (1e9 per 60 s: T >= 60 ns).
pub const MAX_PER_MINUTE: f64 = 1e9;
/// One minute in ns: the window of rpm and tpm.
pub const MINUTE_NS: u64 = 60_000_000_000;

/// Why a limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Could be admitted after this many ns (if nothing else is admitted meanwhile).
    Wait(u64),
    /// Never: the cost is larger than the burst.
    Never,
}

impl Refusal {
    /// The later of two refusals (Never is the latest).
    fn max(self, other: Refusal) -> Refusal {
        match (self, other) {
            (Refusal::Wait(a), Refusal::Wait(b)) => Refusal::Wait(a.max(b)),
            _ => Refusal::Never,
        }
    }
}

/// A bad limit: which parameter, and why (the Python face turns it into a ValueError).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub param: &'static str,
    pub message: String,
}

/// One GCRA limit: `burst` units at once, then one unit per `interval` ns.
pub struct Gcra {
    tat: AtomicU64,
    interval: u64,
    burst: u64,
    /// `burst * interval`: how far ahead of now `tat` may be after an admission.
    cap: u64,
}

impl Gcra {
    /// `per_window` units every `window_ns`, with `burst` (None: the window's amount,
    /// rounded down, at least 1).
    ///
    /// ```
    /// use _native::limiter::{Gcra, MINUTE_NS};
    /// let rpm = Gcra::new("rpm", "burst", 60.0, MINUTE_NS, None).unwrap();
    /// assert_eq!(rpm.interval(), 1_000_000_000);
    /// assert_eq!(rpm.burst(), 60);
    /// ```
    pub fn new(
        param: &'static str,
        burst_param: &'static str,
        per_window: f64,
        window_ns: u64,
        burst: Option<u64>,
    ) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError { param, message };
        let max = MAX_PER_MINUTE * (window_ns as f64 / MINUTE_NS as f64);
        if !(per_window.is_finite() && per_window > 0.0 && per_window <= max) {
            return Err(err(format!(
                "{param} must be a finite number > 0 and <= {max:e}, got {per_window}"
            )));
        }
        // per_window <= max keeps the interval >= 60 ns; a tiny rate may give one beyond
        // u64 (the cast saturates), and all arithmetic on it saturates too.
        let interval = ((window_ns as f64 / per_window).ceil() as u64).max(1);
        let default_burst = (per_window.floor() as u64).max(1);
        let burst = match burst {
            None => default_burst,
            Some(b) if (1..=MAX_PER_MINUTE as u64).contains(&b) => b,
            Some(b) => {
                return Err(ConfigError {
                    param: burst_param,
                    message: format!(
                        "{burst_param} must be between 1 and {MAX_PER_MINUTE:e}, got {b}"
                    ),
                });
            }
        };
        Ok(Gcra {
            tat: AtomicU64::new(0),
            interval,
            burst,
            cap: burst.saturating_mul(interval),
        })
    }

    pub fn interval(&self) -> u64 {
        self.interval
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The theoretical arrival time (for tests and snapshots).
    pub fn tat(&self) -> u64 {
        self.tat.load(Ordering::Acquire)
    }

    fn cost_ns(&self, cost: u64) -> Option<u64> {
        if cost > self.burst {
            None
        } else {
            Some(cost.saturating_mul(self.interval))
        }
    }

    /// The wait before `cost` units could be admitted at `now` (0: now), without
    /// admitting them.
    pub fn wait(&self, cost: u64, now: u64) -> Result<u64, Refusal> {
        let Some(c) = self.cost_ns(cost) else {
            return Err(Refusal::Never);
        };
        let end = self.tat().max(now).saturating_add(c);
        Ok((end - now).saturating_sub(self.cap))
    }

    /// Admits `cost` units at `now`: the end of their slot (the new `tat`), or the wait.
    pub fn try_acquire(&self, cost: u64, now: u64) -> Result<u64, Refusal> {
        let Some(c) = self.cost_ns(cost) else {
            return Err(Refusal::Never);
        };
        let mut cur = self.tat.load(Ordering::Acquire);
        loop {
            let end = cur.max(now).saturating_add(c);
            let ahead = end - now;
            if ahead > self.cap {
                return Err(Refusal::Wait(ahead - self.cap));
            }
            match self
                .tat
                .compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(end),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back `units` of a reservation whose slot ends at `end`, at `now`: at most
    /// the part of the slot still in the future. Returns the ns given back.
    pub fn refund(&self, units: u64, end: u64, now: u64) -> u64 {
        let want = units
            .saturating_mul(self.interval)
            .min(end.saturating_sub(now));
        if want == 0 {
            return 0;
        }
        let mut cur = self.tat.load(Ordering::Acquire);
        loop {
            let back = want.min(cur.saturating_sub(now));
            if back == 0 {
                return 0;
            }
            match self.tat.compare_exchange_weak(
                cur,
                cur - back,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return back,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Charges `units` more (usage beyond the reservation), at `now`: debt later
    /// admissions wait for. Returns the ns charged.
    pub fn charge(&self, units: u64, now: u64) -> u64 {
        let c = units.saturating_mul(self.interval);
        if c == 0 {
            return 0;
        }
        let mut cur = self.tat.load(Ordering::Acquire);
        loop {
            let next = cur.max(now).saturating_add(c);
            match self
                .tat
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return c,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Units that could be admitted at `now` (negative: debt), as a float.
    pub fn available(&self, now: u64) -> f64 {
        let ahead = self.tat().saturating_sub(now);
        (self.cap as f64 - ahead as f64) / self.interval as f64
    }

    /// The fraction of the burst available at `now`, in [0, 1].
    pub fn headroom(&self, now: u64) -> f64 {
        (self.available(now) / self.burst as f64).clamp(0.0, 1.0)
    }

    pub fn reset(&self) {
        self.tat.store(0, Ordering::Release);
    }
}

/// What `Limiter::try_acquire` reserved; hand it back to `settle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Tokens reserved (0 when there is no token limit).
    pub tokens: u64,
    /// The end of the tokens' slot on the token limit's timeline.
    pub end: u64,
    /// The end of the request's slot on the request limit's timeline (0: none).
    pub req_end: u64,
}

/// Counters for snapshots; relaxed (they order nothing).
struct Counts {
    admitted: AtomicU64,
    refused: AtomicU64,
    settled: AtomicU64,
}

/// One deployment's limits: requests per minute and tokens per minute (either optional),
/// and a cool-down (a 429's Retry-After) that refuses everything until it ends.
///
/// ```
/// use _native::limiter::{Limiter, Refusal};
/// let l = Limiter::new(Some(2.0), Some(100.0), None, None).unwrap();
/// let r = l.try_acquire(60, 0).unwrap();
/// assert_eq!(l.try_acquire(60, 0), Err(Refusal::Wait(12_000_000_000)));
/// l.settle(r, 10, 0); // used 10 of the 60 reserved: 50 back
/// assert!(l.try_acquire(60, 0).is_ok());
/// ```
pub struct Limiter {
    requests: Option<Gcra>,
    tokens: Option<Gcra>,
    cooldown_until: AtomicU64,
    counts: Counts,
}

impl Limiter {
    pub fn new(
        rpm: Option<f64>,
        tpm: Option<f64>,
        burst: Option<u64>,
        token_burst: Option<u64>,
    ) -> Result<Self, ConfigError> {
        let requests = rpm
            .map(|r| Gcra::new("rpm", "burst", r, MINUTE_NS, burst))
            .transpose()?;
        let tokens = tpm
            .map(|t| Gcra::new("tpm", "token_burst", t, MINUTE_NS, token_burst))
            .transpose()?;
        if requests.is_none() && burst.is_some() {
            return Err(ConfigError {
                param: "burst",
                message: "burst needs rpm".into(),
            });
        }
        if tokens.is_none() && token_burst.is_some() {
            return Err(ConfigError {
                param: "token_burst",
                message: "token_burst needs tpm".into(),
            });
        }
        Ok(Limiter {
            requests,
            tokens,
            cooldown_until: AtomicU64::new(0),
            counts: Counts {
                admitted: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                settled: AtomicU64::new(0),
            },
        })
    }

    pub fn requests(&self) -> Option<&Gcra> {
        self.requests.as_ref()
    }

    pub fn tokens(&self) -> Option<&Gcra> {
        self.tokens.as_ref()
    }

    fn cooling(&self, now: u64) -> Option<u64> {
        let until = self.cooldown_until.load(Ordering::Acquire);
        (now < until).then(|| until - now)
    }

    fn refuse(&self, r: Refusal) -> Result<Reservation, Refusal> {
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
        Err(r)
    }

    /// Admits one request costing `tokens` at `now`, or says when it could be.
    ///
    /// Requests are reserved first, then tokens; when the token limit refuses, the
    /// request slot is given back (a refusal by one limit never consumes the other).
    /// Between the two steps another caller may find that request slot taken and be
    /// refused: a spurious refusal, never an over-admission. The wait reported covers
    /// both limits and the cool-down.
    pub fn try_acquire(&self, tokens: u64, now: u64) -> Result<Reservation, Refusal> {
        if let Some(w) = self.cooling(now) {
            return self.refuse(Refusal::Wait(w));
        }
        let req_end = match &self.requests {
            None => None,
            Some(g) => match g.try_acquire(1, now) {
                Ok(end) => Some(end),
                Err(r) => {
                    // Say when both limits would admit, not only this one.
                    let r = match &self.tokens {
                        Some(t) => r.max(t.wait(tokens, now).map_or_else(|n| n, Refusal::Wait)),
                        None => r,
                    };
                    return self.refuse(r);
                }
            },
        };
        let end = match &self.tokens {
            None => 0,
            Some(t) => match t.try_acquire(tokens, now) {
                Ok(end) => end,
                Err(r) => {
                    if let (Some(g), Some(e)) = (&self.requests, req_end) {
                        g.refund(1, e, now);
                    }
                    return self.refuse(r);
                }
            },
        };
        self.counts.admitted.fetch_add(1, Ordering::Relaxed);
        let tokens = if self.tokens.is_some() { tokens } else { 0 };
        Ok(Reservation {
            tokens,
            end,
            req_end: req_end.unwrap_or(0),
        })
    }

    /// The wait before one request costing `tokens` could be admitted at `now` (0:
    /// now), taking nothing: the cool-down and both limits.
    pub fn wait(&self, tokens: u64, now: u64) -> Refusal {
        let mut w = Refusal::Wait(self.cooldown_remaining(now));
        if let Some(g) = &self.requests {
            w = w.max(g.wait(1, now).map_or_else(|n| n, Refusal::Wait));
        }
        if let Some(t) = &self.tokens {
            w = w.max(t.wait(tokens, now).map_or_else(|n| n, Refusal::Wait));
        }
        w
    }

    /// Settles a reservation with the tokens really used, at `now`: the difference is
    /// given back (at most what has not refilled yet) or charged (later admissions
    /// wait). Returns the signed difference applied, in tokens (rounded toward zero).
    pub fn settle(&self, r: Reservation, actual: u64, now: u64) -> i64 {
        self.counts.settled.fetch_add(1, Ordering::Relaxed);
        let Some(t) = &self.tokens else { return 0 };
        if actual < r.tokens {
            let back = t.refund(r.tokens - actual, r.end, now);
            -((back / t.interval) as i64)
        } else {
            let c = t.charge(actual - r.tokens, now);
            i64::try_from(c / t.interval).unwrap_or(i64::MAX)
        }
    }

    /// Gives a reservation back whole (the call was never made, or cancelled before it
    /// reached the provider): its request slot and all its tokens, at most what has not
    /// refilled yet.
    pub fn release(&self, r: Reservation, now: u64) {
        if let Some(g) = &self.requests {
            g.refund(1, r.req_end, now);
        }
        self.settle(r, 0, now);
    }

    /// Refuses everything until `until` (a 429's Retry-After); a later cool-down
    /// extends it, an earlier one changes nothing.
    pub fn cool_down(&self, until: u64) {
        self.cooldown_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Ns of cool-down left at `now`.
    pub fn cooldown_remaining(&self, now: u64) -> u64 {
        self.cooling(now).unwrap_or(0)
    }

    /// The fraction of capacity left at `now`, in [0, 1]: the smaller of the limits'
    /// (1 with no limit), 0 while cooling down. For a "least used" routing strategy.
    pub fn headroom(&self, now: u64) -> f64 {
        if self.cooling(now).is_some() {
            return 0.0;
        }
        let r = self.requests.as_ref().map_or(1.0, |g| g.headroom(now));
        let t = self.tokens.as_ref().map_or(1.0, |g| g.headroom(now));
        r.min(t)
    }

    /// (admitted, refused, settled) since creation.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.counts.admitted.load(Ordering::Relaxed),
            self.counts.refused.load(Ordering::Relaxed),
            self.counts.settled.load(Ordering::Relaxed),
        )
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn lim(rpm: Option<f64>, tpm: Option<f64>) -> Limiter {
        Limiter::new(rpm, tpm, None, None).expect("valid")
    }

    #[test]
    fn burst_then_sustained_rate() {
        let l = lim(Some(60.0), None);
        for _ in 0..60 {
            assert!(l.try_acquire(0, 0).is_ok());
        }
        assert_eq!(l.try_acquire(0, 0), Err(Refusal::Wait(S)));
        assert_eq!(l.try_acquire(0, S - 1), Err(Refusal::Wait(1)));
        assert!(l.try_acquire(0, S).is_ok());
        assert!(l.try_acquire(0, S).is_err());
        assert_eq!(l.counts(), (61, 3, 0));
    }

    #[test]
    fn interval_rounds_up() {
        let g = Gcra::new("rpm", "burst", 7.0, MINUTE_NS, None).expect("valid");
        assert_eq!(g.interval(), 8_571_428_572);
        assert_eq!(g.burst(), 7);
        let g = Gcra::new("rpm", "burst", 0.5, MINUTE_NS, None).expect("valid");
        assert_eq!((g.interval(), g.burst()), (120 * S, 1));
    }

    #[test]
    fn bad_limits_name_their_parameter() {
        for v in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9 + 1.0, 1e300] {
            let e = Limiter::new(Some(v), None, None, None)
                .err()
                .expect("refused");
            assert_eq!(e.param, "rpm");
            let e = Limiter::new(None, Some(v), None, None)
                .err()
                .expect("refused");
            assert_eq!(e.param, "tpm");
        }
        assert_eq!(
            Limiter::new(Some(1.0), None, Some(0), None)
                .err()
                .map(|e| e.param),
            Some("burst")
        );
        assert_eq!(
            Limiter::new(None, Some(1.0), None, Some(2_000_000_000))
                .err()
                .map(|e| e.param),
            Some("token_burst")
        );
        assert_eq!(
            Limiter::new(None, None, Some(3), None)
                .err()
                .map(|e| e.param),
            Some("burst")
        );
        assert!(Limiter::new(Some(1e9), Some(1e9), None, None).is_ok());
    }

    #[test]
    fn a_token_refusal_does_not_consume_a_request() {
        let l = lim(Some(2.0), Some(100.0));
        assert!(l.try_acquire(90, 0).is_ok());
        // tpm refuses: the request slot taken for it goes back.
        assert!(matches!(l.try_acquire(20, 0), Err(Refusal::Wait(_))));
        assert_eq!(l.requests().map(|g| g.available(0)), Some(1.0));
        assert!(l.try_acquire(10, 0).is_ok());
        assert_eq!(l.wait(0, 0), Refusal::Wait(30 * S));
        assert_eq!(l.wait(101, 0), Refusal::Never);
    }

    #[test]
    fn too_big_never_fits() {
        let l = lim(Some(10.0), Some(100.0));
        assert_eq!(l.try_acquire(101, 0), Err(Refusal::Never));
        assert_eq!(l.requests().map(|g| g.available(0)), Some(10.0));
    }

    #[test]
    fn settle_gives_back_and_charges() {
        let l = lim(None, Some(600.0)); // 10 tokens per second, burst 600
        let r = l.try_acquire(500, 0).expect("fits");
        assert_eq!(l.settle(r, 100, 0), -400);
        assert_eq!(l.tokens().map(|g| g.available(0)), Some(500.0));
        let r = l.try_acquire(500, 0).expect("fits");
        assert_eq!(l.settle(r, 1500, 0), 1000);
        assert_eq!(l.tokens().map(|g| g.available(0)), Some(-1000.0));
        // In debt: even an empty request waits until the debt is paid.
        assert_eq!(l.try_acquire(0, 0), Err(Refusal::Wait(100 * S)));
        assert!(l.try_acquire(0, 100 * S).is_ok());
    }

    #[test]
    fn refilled_capacity_is_not_refunded_twice() {
        let l = lim(None, Some(60.0)); // 1 token/s, burst 60
        let a = l.try_acquire(60, 0).expect("fits");
        // 60 s later the bucket is full again; b takes all of it.
        let b = l.try_acquire(60, 60 * S).expect("fits");
        // a's slot elapsed long ago: its refund must not hand b's capacity out again.
        assert_eq!(l.settle(a, 0, 60 * S), 0);
        assert!(l.try_acquire(1, 60 * S).is_err());
        // b's slot is all in the future: its refund is whole.
        assert_eq!(l.settle(b, 0, 60 * S), -60);
        assert!(l.try_acquire(60, 60 * S).is_ok());
    }

    #[test]
    fn settle_never_underflows() {
        let l = lim(None, Some(60.0));
        let r = Reservation {
            tokens: u64::MAX,
            end: u64::MAX,
            req_end: u64::MAX,
        };
        l.settle(r, 0, 0);
        assert_eq!(l.tokens().map(|g| g.tat()), Some(0));
        let nothing = Reservation {
            tokens: 0,
            end: 0,
            req_end: 0,
        };
        l.settle(nothing, u64::MAX, S);
        assert_eq!(l.tokens().map(|g| g.tat()), Some(u64::MAX));
        assert!(matches!(l.try_acquire(0, 5 * S), Err(Refusal::Wait(_))));
        // At the end of time everything saturates; nothing panics.
        let _ = l.try_acquire(u64::MAX, u64::MAX);
    }

    #[test]
    fn release_gives_the_request_and_tokens_back() {
        let l = lim(Some(1.0), Some(100.0));
        let r = l.try_acquire(80, 0).expect("fits");
        assert!(l.try_acquire(0, 0).is_err());
        l.release(r, 0);
        assert_eq!(l.headroom(0), 1.0);
        assert!(l.try_acquire(80, 0).is_ok());
    }

    #[test]
    fn cool_down_refuses_until_then() {
        let l = lim(Some(100.0), None);
        l.cool_down(5 * S);
        l.cool_down(2 * S); // earlier: no change
        assert_eq!(l.try_acquire(0, S), Err(Refusal::Wait(4 * S)));
        assert_eq!(l.wait(0, S), Refusal::Wait(4 * S));
        assert_eq!(l.headroom(S), 0.0);
        assert!(l.try_acquire(0, 5 * S).is_ok());
        assert_eq!(l.cooldown_remaining(5 * S), 0);
    }

    #[test]
    fn clock_going_back_only_delays() {
        let l = lim(Some(60.0), None);
        let t = 10_000 * S;
        for _ in 0..60 {
            assert!(l.try_acquire(0, t).is_ok());
        }
        // Back an hour: no new burst; admissions resume as the clock returns.
        assert_eq!(l.try_acquire(0, t - 3600 * S), Err(Refusal::Wait(3601 * S)));
        assert!(l.try_acquire(0, t + S).is_ok());
        assert_eq!(l.try_acquire(0, 0), Err(Refusal::Wait(t + 2 * S)));
    }

    #[test]
    fn headroom_is_the_tighter_limit() {
        let l = lim(Some(10.0), Some(100.0));
        assert_eq!(l.headroom(0), 1.0);
        l.try_acquire(50, 0).expect("fits");
        assert_eq!(l.headroom(0), 0.5);
        assert_eq!(lim(None, None).headroom(0), 1.0);
    }

    #[test]
    fn threads_admit_exactly_the_burst() {
        use std::sync::Arc;
        let l = Arc::new(lim(Some(1000.0), Some(1e6)));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..500).filter(|_| l.try_acquire(7, 5 * S).is_ok()).count()
                })
            })
            .collect();
        let n: usize = hs.into_iter().map(|h| h.join().expect("thread")).sum();
        assert_eq!(n, 1000);
        assert_eq!(l.counts(), (1000, 3000, 0));
        assert_eq!(l.tokens().map(|g| g.available(5 * S)), Some(1e6 - 7000.0));
    }
}

#[cfg(loom)]
mod loom_tests {
    //! Model-checked with loom (`make rust-loom`): concurrent admissions never exceed
    //! the burst, a token refusal gives its request slot back, and settlements racing
    //! admissions never underflow or hand out more than the burst.
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;

    const DEFAULT_PREEMPTIONS: usize = 3;

    fn model<F: Fn() + Sync + Send + 'static>(f: F) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(DEFAULT_PREEMPTIONS);
        }
        b.check(f);
    }

    /// Three threads want one request each from a burst of two: exactly two admitted.
    #[test]
    fn concurrent_acquires_never_exceed_the_burst() {
        model(|| {
            let l = Arc::new(Limiter::new(Some(2.0), None, None, None).unwrap());
            let got = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let (l, got) = (l.clone(), got.clone());
                    loom::thread::spawn(move || {
                        if l.try_acquire(0, 0).is_ok() {
                            got.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(got.load(Ordering::SeqCst), 2);
            assert_eq!(l.counts(), (2, 1, 0));
        });
    }

    /// rpm 3, tpm 5; three threads want 3 tokens each: one fits the tokens, the other two
    /// are refused by tpm and give their request slots back, whatever the interleaving.
    #[test]
    fn a_token_refusal_never_consumes_a_request() {
        model(|| {
            let l = Arc::new(Limiter::new(Some(3.0), Some(5.0), None, None).unwrap());
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let l = l.clone();
                    loom::thread::spawn(move || l.try_acquire(3, 0).is_ok())
                })
                .collect();
            let admitted = hs.into_iter().map(|h| h.join().unwrap());
            assert_eq!(admitted.filter(|ok| *ok).count(), 1);
            let req = l.requests().unwrap();
            assert_eq!(req.available(0), 2.0);
        });
    }

    /// A reservation settled (refund) while two others race for the capacity: never
    /// more than the burst in use, and the state never goes below empty.
    #[test]
    fn settle_racing_acquires_never_over_admits() {
        model(|| {
            let l = Arc::new(Limiter::new(None, Some(4.0), None, None).unwrap());
            let first = l.try_acquire(4, 0).unwrap();
            let used = Arc::new(AtomicUsize::new(0));
            let settler = {
                let l = l.clone();
                loom::thread::spawn(move || {
                    l.settle(first, 1, 0);
                })
            };
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (l, used) = (l.clone(), used.clone());
                    loom::thread::spawn(move || {
                        if l.try_acquire(2, 0).is_ok() {
                            used.fetch_add(2, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            settler.join().unwrap();
            for h in hs {
                h.join().unwrap();
            }
            // 1 token really used by the first, at most 3 more fit the burst of 4.
            let extra = used.load(Ordering::SeqCst);
            assert!(extra <= 2, "{extra} tokens admitted beyond the settled one");
            let avail = l.tokens().unwrap().available(0);
            assert!((0.0..=4.0).contains(&avail), "available {avail}");
            assert_eq!(avail, 3.0 - extra as f64);
        });
    }
}
