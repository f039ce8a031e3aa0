//! `RetryBudget`: the Python face of the retry budget (src/budget.rs).
//!
//! The requests it budgets against are read from a `ManagerStats`: `total_requests`
//! less `cache_hits` (the manager counts every request natively already: a first try
//! pays nothing for the budget), or, without one, from its own counter moved by
//! `deposit()`.

use crate::budget::Budget;
use crate::clock;
use crate::py_clock::Clock;
use crate::py_metrics::{m, ManagerStats};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};
use std::sync::atomic::{AtomicU64, Ordering};

/// Times are ns since the clock's origin plus about this bias (a clock read before its
/// origin is still positive), as in py_limiter.rs; rounded down to a whole number of
/// slots, so that an injected clock's 0 starts a slot.
const BIAS: u64 = 1 << 62;
/// The largest share: Finagle's bound (1000 retries per request).
const MAX_SHARE: f64 = 1000.0;
/// The largest floor, retries per second.
const MAX_FLOOR: f64 = 1e9;
/// The longest window, in seconds (a day).
const MAX_WINDOW: f64 = 86_400.0;

/// A number argument (an int or a float, not a bool) within `[lo, hi]`.
fn number(o: &Bound<'_, PyAny>, name: &str, lo: f64, hi: f64, what: &str) -> PyResult<f64> {
    if o.is_instance_of::<PyBool>()
        || !(o.is_instance_of::<PyInt>() || o.is_instance_of::<PyFloat>())
    {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number ({what}), not {}",
            o.get_type().name()?
        )));
    }
    let v = o.extract::<f64>().unwrap_or(f64::INFINITY);
    if !(v.is_finite() && lo <= v && v <= hi) {
        return Err(PyValueError::new_err(format!(
            "{name} must be a finite number >= {lo} and <= {hi} ({what}), got {o}"
        )));
    }
    Ok(v)
}

/// Retries may add at most `retry_budget` of the requests made over the last `window`
/// seconds, plus `min_retries_per_second * window` (Finagle's RetryBudget). Lock-free;
/// safe from any thread.
///
/// >>> b = RetryBudget(0.2, 0)
/// >>> b.deposit(10)
/// >>> [b.try_withdraw() for _ in range(3)]
/// [True, True, False]
#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct RetryBudget {
    core: Budget,
    clock: Clock,
    origin: f64,
    bias: u64,
    stats: Option<Py<ManagerStats>>,
    own: AtomicU64,
    share: f64,
    floor: f64,
    window: f64,
}

impl RetryBudget {
    #[inline]
    fn now(&self, py: Python<'_>) -> PyResult<u64> {
        match &self.clock {
            Clock::Native => Ok(clock::now_ns().saturating_add(self.bias)),
            c => {
                let ns = ((c.now(py)? - self.origin) * 1e9).round() as i64;
                Ok((self.bias as i64).saturating_add(ns).max(0) as u64)
            }
        }
    }

    #[inline]
    fn requests(&self) -> u64 {
        match &self.stats {
            Some(s) => {
                // Requests that missed the L1 cache: those a retry could be of. Hits read
                // first (a hit counts its request before its hit), so never above.
                let c = &s.get().c;
                let hits = c.get(m::HITS);
                c.get(m::REQUESTS).saturating_sub(hits)
            }
            None => self.own.load(Ordering::Acquire),
        }
    }
}

#[pymethods]
impl RetryBudget {
    #[new]
    #[pyo3(signature = (retry_budget, min_retries_per_second=None, *, window=None, stats=None, clock=None))]
    fn new(
        py: Python<'_>,
        retry_budget: Bound<'_, PyAny>,
        min_retries_per_second: Option<Bound<'_, PyAny>>,
        window: Option<Bound<'_, PyAny>>,
        stats: Option<Py<ManagerStats>>,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let share = number(
            &retry_budget,
            "retry_budget",
            0.0,
            MAX_SHARE,
            "retries per request",
        )?;
        // None: Finagle's defaults (10 retries per second, a 10 s window).
        let floor = match min_retries_per_second.filter(|o| !o.is_none()) {
            None => 10.0,
            Some(o) => number(
                &o,
                "min_retries_per_second",
                0.0,
                MAX_FLOOR,
                "retries per second",
            )?,
        };
        let window = match window.filter(|o| !o.is_none()) {
            None => 10.0,
            Some(o) => number(&o, "window", 0.0, MAX_WINDOW, "seconds")?,
        };
        if window == 0.0 {
            return Err(PyValueError::new_err("window must be > 0 seconds"));
        }
        let clock = Clock::from_py(clock)?;
        let origin = match clock {
            Clock::Native => 0.0,
            ref c => c.now(py)?,
        };
        let window_ns = (window * 1e9).round() as u64;
        let width = Budget::new(0.0, 0.0, window_ns, 0, 0).slot_ns();
        let mut b = RetryBudget {
            core: Budget::new(0.0, 0.0, 1, 0, 0),
            clock,
            origin,
            bias: BIAS / width * width,
            stats,
            own: AtomicU64::new(0),
            share,
            floor,
            window,
        };
        let now = b.now(py)?;
        b.core = Budget::new(share, floor * window, window_ns, now, b.requests());
        Ok(b)
    }

    /// Asks for one retry (or any extra attempt: a hedge): True, and it is counted, if
    /// the window has room for it; False (nothing counted) if not. ``others_requests``
    /// and ``others_retries``: the rest of a fleet's counts over the same window, added
    /// to the decision.
    #[pyo3(signature = (others_requests=0, others_retries=0))]
    fn try_withdraw(
        &self,
        py: Python<'_>,
        others_requests: u64,
        others_retries: u64,
    ) -> PyResult<bool> {
        let now = self.now(py)?;
        Ok(self
            .core
            .withdraw(now, self.requests(), others_requests, others_retries))
    }

    /// Counts `n` requests (only for a budget without `stats`: with them, the manager's
    /// `total_requests` are the requests).
    #[pyo3(signature = (n=1))]
    fn deposit(&self, n: u64) -> PyResult<()> {
        if self.stats.is_some() {
            return Err(PyValueError::new_err(
                "this budget reads its requests from ManagerStats: deposit() is not used",
            ));
        }
        self.own.fetch_add(n, Ordering::AcqRel);
        Ok(())
    }

    /// `(requests, retries)` in the window now (the requests exact once every slot of
    /// the window was sampled, interpolated before: see src/budget.rs).
    fn window_counts(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        let w = self.core.window(self.now(py)?, self.requests());
        Ok((w.requests, w.retries))
    }

    #[getter]
    fn retry_budget(&self) -> f64 {
        self.share
    }

    #[getter]
    fn min_retries_per_second(&self) -> f64 {
        self.floor
    }

    #[getter]
    fn window(&self) -> f64 {
        self.window
    }

    fn __repr__(&self) -> String {
        format!(
            "RetryBudget(retry_budget={}, min_retries_per_second={}, window={})",
            self.share, self.floor, self.window
        )
    }
}
