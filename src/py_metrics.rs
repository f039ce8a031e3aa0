//! Counters for the manager and for each model, exposed to Python.

use crate::metrics::{Counters, Histogram};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicU64, Ordering};

/// Manager counter slots.
pub mod m {
    pub const REQUESTS: usize = 0;
    pub const SUCCESSES: usize = 1;
    pub const FAILURES: usize = 2;
    pub const CANCELLED: usize = 3;
    pub const HITS: usize = 4;
    pub const MISSES: usize = 5;
    pub const RETRIES: usize = 6;
    pub const TOKENS: usize = 7;
    pub const FALLBACKS: usize = 8;
    pub const COALESCED: usize = 9;
    pub const DEADLINE: usize = 10;
    pub const DENIED: usize = 11;
    pub const N: usize = 12;
    /// Outcomes before starts (see `metrics`).
    pub const ORDER: [usize; N] = [
        SUCCESSES, FAILURES, CANCELLED, HITS, MISSES, RETRIES, TOKENS, FALLBACKS, COALESCED,
        DEADLINE, DENIED, REQUESTS,
    ];
    pub const NAMES: [&str; N] = [
        "total_requests",
        "successful_requests",
        "failed_requests",
        "cancelled_requests",
        "cache_hits",
        "cache_misses",
        "total_retries",
        "total_tokens",
        "fallbacks",
        "coalesced_requests",
        "deadline_exceeded",
        "retries_denied",
    ];
}

/// Per-model counter slots.
pub mod c {
    pub const ATTEMPTS: usize = 0;
    pub const SUCCESSES: usize = 1;
    pub const FAILURES: usize = 2;
    pub const SHORT_CIRCUITS: usize = 3;
    pub const RETRIES: usize = 4;
    pub const PROMPT_TOKENS: usize = 5;
    pub const COMPLETION_TOKENS: usize = 6;
    pub const TOKENS: usize = 7;
    pub const CANCELLED: usize = 8;
    // Hedged requests (llms/hedging.py): hedges started on this model, and hedges of this
    // model that answered first.
    pub const HEDGED: usize = 9;
    pub const HEDGE_WINS: usize = 10;
    pub const N: usize = 11;
    pub const ORDER: [usize; N] = [
        HEDGE_WINS,
        SUCCESSES,
        FAILURES,
        CANCELLED,
        SHORT_CIRCUITS,
        RETRIES,
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
        TOKENS,
        HEDGED,
        ATTEMPTS,
    ];
    pub const NAMES: [&str; N] = [
        "requests",
        "successes",
        "failures",
        "short_circuits",
        "retries",
        "prompt_tokens",
        "completion_tokens",
        "tokens",
        "cancelled",
        "hedged_requests",
        "hedge_wins",
    ];
}

pub fn count(n: i64, what: &str) -> PyResult<u64> {
    u64::try_from(n).map_err(|_| PyValueError::new_err(format!("{what} must be >= 0, got {n}")))
}

fn latency_ns(seconds: f64) -> PyResult<u64> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "latency must be a non-negative number of seconds, got {seconds}"
        )));
    }
    // Saturating cast: absurd latencies land in the top bucket.
    Ok((seconds * 1e9) as u64)
}

/// Histogram upper bounds in seconds -> nanoseconds, converted as `latency_ns` converts a
/// recorded latency (so a value equal to a bound lands at or below it). Each bound must be
/// finite, `>= 0` and greater than the one before.
fn bounds_ns(bounds: &[f64]) -> PyResult<Vec<u64>> {
    let mut out = Vec::with_capacity(bounds.len());
    let mut last = f64::NEG_INFINITY;
    for (i, &b) in bounds.iter().enumerate() {
        if !b.is_finite() || b < 0.0 {
            return Err(PyValueError::new_err(format!(
                "bounds must be finite numbers of seconds >= 0, got {b} at index {i}"
            )));
        }
        if b <= last {
            return Err(PyValueError::new_err(format!(
                "bounds must be strictly increasing, got {b} after {last} at index {i}"
            )));
        }
        last = b;
        out.push(latency_ns(b)?);
    }
    Ok(out)
}

/// `(cumulative counts at each bound, count, sum in seconds)` of one histogram.
fn buckets(h: &Histogram, bounds: Vec<f64>) -> PyResult<(Vec<u64>, u64, f64)> {
    let ns = bounds_ns(&bounds)?;
    let (cumulative, count) = h.cumulative(&ns);
    Ok((cumulative, count, h.sum_ns() as f64 / 1e9))
}

/// Request-level counters of one manager.
#[pyclass(frozen, module = "agenticaiframework._native")]
#[derive(Default)]
pub struct ManagerStats {
    pub c: Counters<{ m::N }>,
    /// Whole requests' latency (ns), backoff and fallbacks included: those that made a
    /// first try or walked a route (cache hits and coalesced twins are not timed).
    pub latency: Histogram,
}

impl ManagerStats {
    /// Adds the work counters: tokens spent, retries made, fallbacks taken.
    fn work(&self, tokens: i64, retries: i64, fallbacks: i64) -> PyResult<()> {
        let (t, r, f) = (
            count(tokens, "tokens")?,
            count(retries, "retries")?,
            count(fallbacks, "fallbacks")?,
        );
        self.c.finish(m::TOKENS, t);
        self.c.finish(m::RETRIES, r);
        self.c.finish(m::FALLBACKS, f);
        Ok(())
    }

    /// A request answered at the first try: its tokens and its success.
    pub fn first_try_success(&self, tokens: u64, ns: u64) {
        self.latency.record(ns); // the request was that one attempt
        self.c.finish(m::TOKENS, tokens);
        self.c.finish(m::SUCCESSES, 1);
    }

    /// A request answered after `retries` retries and `fallbacks` moves along its route.
    pub fn success_after(&self, tokens: u64, retries: u64, fallbacks: u64, ns: Option<u64>) {
        if let Some(ns) = ns {
            self.latency.record(ns);
        }
        self.c.finish(m::TOKENS, tokens);
        self.c.finish(m::RETRIES, retries);
        self.c.finish(m::FALLBACKS, fallbacks);
        self.c.finish(m::SUCCESSES, 1);
    }
}

#[pymethods]
impl ManagerStats {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// A request began.
    fn record_request(&self) {
        self.c.start(m::REQUESTS, 1);
    }

    #[pyo3(signature = (tokens=0, retries=0, fallbacks=0))]
    fn record_success(&self, tokens: i64, retries: i64, fallbacks: i64) -> PyResult<()> {
        self.work(tokens, retries, fallbacks)?;
        self.c.finish(m::SUCCESSES, 1);
        Ok(())
    }

    #[pyo3(signature = (retries=0, fallbacks=0))]
    fn record_failure(&self, retries: i64, fallbacks: i64) -> PyResult<()> {
        self.work(0, retries, fallbacks)?;
        self.c.finish(m::FAILURES, 1);
        Ok(())
    }

    /// A request that waited for an identical in-flight request instead of calling.
    fn record_coalesced(&self) {
        self.c.finish(m::COALESCED, 1);
    }

    /// A failed request (counted by `record_failure`) ran out of its deadline.
    fn record_deadline_exceeded(&self) {
        self.c.finish(m::DEADLINE, 1);
    }

    /// A retry the retry budget refused (the request moved to its next model instead).
    fn record_retry_denied(&self) {
        self.c.finish(m::DENIED, 1);
    }

    /// A request ended by a BaseException (cancellation, KeyboardInterrupt).
    #[pyo3(signature = (retries=0, fallbacks=0))]
    fn record_cancelled(&self, retries: i64, fallbacks: i64) -> PyResult<()> {
        self.work(0, retries, fallbacks)?;
        self.c.finish(m::CANCELLED, 1);
        Ok(())
    }

    /// All counters at once; outcomes never exceed requests, even under concurrent writers.
    /// A request that walked its route ended: its latency since ``token``, the first
    /// attempt's (ModelCore.begin), whose start it carries.
    fn record_request_since(&self, token: i64) -> PyResult<()> {
        let (_, start) = crate::token::decode(token)
            .map_err(|_| PyValueError::new_err("token must come from ModelCore.begin()"))?;
        self.latency
            .record(crate::token::elapsed_ns(start, crate::clock::now_ns()));
        Ok(())
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let v = self.c.snapshot(&m::ORDER);
        let d = PyDict::new(py);
        for (name, x) in m::NAMES.iter().zip(v) {
            d.set_item(*name, x)?;
        }
        let qs = self.latency.quantiles(&[0.5, 0.95, 0.99]);
        for (name, q) in [
            "p50_request_latency",
            "p95_request_latency",
            "p99_request_latency",
        ]
        .iter()
        .zip(qs)
        {
            d.set_item(*name, q.unwrap_or(0.0) / 1e9)?;
        }
        Ok(d)
    }

    fn reset(&self) {
        self.c.reset();
        self.latency.reset();
    }
}

/// Attempt-level counters and a latency histogram for one model.
#[pyclass(frozen, module = "agenticaiframework._native")]
#[derive(Default)]
pub struct ModelStats {
    pub c: Counters<{ c::N }>,
    pub latency: Histogram,
    /// Time to first chunk of streamed attempts.
    pub ttfc: Histogram,
    /// An exponentially weighted moving average of successful attempts' latency (ns,
    /// weight 1/8; 0 before the first): what latency-based routing compares. A racing
    /// update may be lost, which an average of this kind can afford.
    pub ewma_ns: AtomicU64,
}

impl ModelStats {
    pub fn attempt(&self, retry: bool) {
        self.c.start(c::ATTEMPTS, 1);
        if retry {
            self.c.start(c::RETRIES, 1);
        }
    }

    pub fn success(&self, ns: u64, prompt_tokens: u64, completion_tokens: u64) {
        self.latency.record(ns);
        let old = self.ewma_ns.load(Ordering::Relaxed);
        // old * 7/8 + ns/8 in shifts (latencies are below 2^42 ns: no overflow); at least
        // 1, since 0 means "no sample yet".
        let new = if old == 0 {
            ns
        } else {
            old - (old >> 3) + (ns >> 3)
        };
        self.ewma_ns.store(new.max(1), Ordering::Relaxed);
        self.c.finish(c::PROMPT_TOKENS, prompt_tokens);
        self.c.finish(c::COMPLETION_TOKENS, completion_tokens);
        self.c
            .finish(c::TOKENS, prompt_tokens.saturating_add(completion_tokens));
        self.c.finish(c::SUCCESSES, 1);
    }

    pub fn failure(&self, ns: u64) {
        self.latency.record(ns);
        self.c.finish(c::FAILURES, 1);
    }

    /// Attempts begun and not yet ended (an outcome or a cancel). Outcomes are read
    /// first, so a racing attempt can only make this larger, never underflow.
    pub fn in_flight(&self) -> u64 {
        let done = self.c.get(c::SUCCESSES) + self.c.get(c::FAILURES) + self.c.get(c::CANCELLED);
        self.c.get(c::ATTEMPTS).saturating_sub(done)
    }
}

#[pymethods]
impl ModelStats {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// An attempt began; `retry` when it is not the model's first attempt for the request.
    #[pyo3(signature = (retry=false))]
    fn record_attempt(&self, retry: bool) {
        self.attempt(retry);
    }

    #[pyo3(signature = (latency, prompt_tokens=0, completion_tokens=0))]
    fn record_success(
        &self,
        latency: f64,
        prompt_tokens: i64,
        completion_tokens: i64,
    ) -> PyResult<()> {
        let ns = latency_ns(latency)?;
        let (p, q) = (
            count(prompt_tokens, "prompt_tokens")?,
            count(completion_tokens, "completion_tokens")?,
        );
        self.success(ns, p, q);
        Ok(())
    }

    fn record_failure(&self, latency: f64) -> PyResult<()> {
        self.failure(latency_ns(latency)?);
        Ok(())
    }

    /// An attempt that ended by a BaseException: no outcome for the model.
    fn record_cancelled(&self) {
        self.c.finish(c::CANCELLED, 1);
    }

    /// The model was skipped because its breaker was open.
    fn record_short_circuit(&self) {
        self.c.finish(c::SHORT_CIRCUITS, 1);
    }

    /// A hedge (a second attempt of a request still waiting on another) started here.
    fn record_hedge(&self) {
        self.c.start(c::HEDGED, 1);
    }

    /// A hedge started here answered first.
    fn record_hedge_win(&self) {
        self.c.finish(c::HEDGE_WINS, 1);
    }

    /// Latency samples recorded (successes and failures since the last reset).
    fn latency_count(&self) -> u64 {
        self.latency.count()
    }

    /// The latency at quantile `q` in [0, 1], in seconds (None before any sample).
    fn quantile(&self, q: f64) -> Option<f64> {
        self.latency.quantiles(&[q])[0].map(|ns| ns / 1e9)
    }

    /// Attempt latency as a Prometheus histogram: `(cumulative, count, sum_seconds)`, where
    /// `cumulative[i]` counts the attempts up to `bounds[i]` seconds (finite, `>= 0`,
    /// strictly increasing; else ValueError) and `count` is the `+Inf` bucket, all from
    /// one copy of the native buckets. A native bucket (at most 1/64 of its lower edge
    /// wide) that straddles a bound is counted wholly under it: every value `<= bound` is
    /// counted, and a counted value is at most `bound / 64` above it. `sum_seconds` is
    /// read beside the copy, so under concurrent writers it may be a few records apart.
    ///
    /// >>> s = ModelStats(); s.record_success(0.2); s.record_failure(3.0)
    /// >>> s.latency_buckets([0.1, 1.0, 10.0])
    /// ([0, 1, 2], 2, 3.2)
    fn latency_buckets(&self, bounds: Vec<f64>) -> PyResult<(Vec<u64>, u64, f64)> {
        buckets(&self.latency, bounds)
    }

    /// Time to first chunk of streamed attempts, as `latency_buckets` gives latency.
    fn ttfc_buckets(&self, bounds: Vec<f64>) -> PyResult<(Vec<u64>, u64, f64)> {
        buckets(&self.ttfc, bounds)
    }

    /// Counters plus avg/p50/p95/p99 latency in seconds.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let v = self.c.snapshot(&c::ORDER);
        let d = PyDict::new(py);
        for (name, x) in c::NAMES.iter().zip(v) {
            d.set_item(*name, x)?;
        }
        let n = self.latency.count();
        let avg = if n == 0 {
            0.0
        } else {
            self.latency.sum_ns() as f64 / n as f64 / 1e9
        };
        d.set_item("avg_latency", avg)?;
        let qs = self.latency.quantiles(&[0.5, 0.95, 0.99]);
        for (name, q) in ["p50_latency", "p95_latency", "p99_latency"].iter().zip(qs) {
            d.set_item(*name, q.unwrap_or(0.0) / 1e9)?;
        }
        let streams = self.ttfc.count();
        d.set_item("streams", streams)?;
        let qs = self.ttfc.quantiles(&[0.5, 0.95]);
        for (name, q) in ["p50_time_to_first_chunk", "p95_time_to_first_chunk"]
            .iter()
            .zip(qs)
        {
            d.set_item(*name, q.unwrap_or(0.0) / 1e9)?;
        }
        Ok(d)
    }

    fn reset(&self) {
        self.c.reset();
        self.latency.reset();
        self.ttfc.reset();
        self.ewma_ns.store(0, Ordering::Relaxed);
    }

    /// The object plus the histogram chunks it has allocated, so `sys.getsizeof` shows
    /// what a model costs: a few hundred bytes idle, 512 more per latency band recorded.
    fn __sizeof__(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let base: usize = slf
            .get_type()
            .getattr(pyo3::intern!(slf.py(), "__basicsize__"))?
            .extract()?;
        let s = slf.get();
        Ok(base + s.latency.heap_bytes() + s.ttfc.heap_bytes())
    }
}
