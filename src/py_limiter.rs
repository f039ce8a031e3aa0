//! `RateLimiter` and `Reservation`: the Python face of the GCRA limits (src/limiter.rs).
//!
//! `try_acquire` returns a bare float (0.0: admitted; otherwise the seconds to wait;
//! `inf`: the cost can never fit): the cheapest answer to build (a float from the free
//! list, no tuple, no object of ours) for the hot path, and the one a caller needs
//! anyway. `reserve` returns a `Reservation` to settle later with the tokens really
//! used (it carries the slot's end, which settling needs to stay exact).

use crate::clock;
use crate::limiter::{ConfigError, Limiter, Refusal, Reservation as Core, MAX_PER_MINUTE};
use crate::py_clock::Clock;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt};

/// Times on the limiter's u64 timeline are ns since the clock's origin plus this bias,
/// so a Python clock read before its origin (a jump back) is still positive.
const BIAS: u64 = 1 << 62;
/// The longest accepted cool-down, in seconds (about 31 years).
const MAX_COOL_DOWN: f64 = 1e9;

fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.message)
}

/// A limit argument: None, or an int or float (not a bool).
fn rate(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<f64>> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if o.is_instance_of::<PyBool>()
        || !(o.is_instance_of::<PyInt>() || o.is_instance_of::<PyFloat>())
    {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number per minute or None, not {}",
            o.get_type().name()?
        )));
    }
    // A huge int does not fit a float: as far beyond the limit as it gets.
    Ok(Some(o.extract::<f64>().unwrap_or(f64::INFINITY)))
}

/// A burst argument: None or an int >= 1 (range checked by the core).
fn count(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<u64>> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if o.is_instance_of::<PyBool>() || !o.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int or None, not {}",
            o.get_type().name()?
        )));
    }
    match o.extract::<i64>() {
        Ok(v) if v >= 0 => Ok(Some(v as u64)),
        Ok(v) => Err(PyValueError::new_err(format!(
            "{name} must be between 1 and {MAX_PER_MINUTE:e}, got {v}"
        ))),
        Err(_) => Err(PyValueError::new_err(format!(
            "{name} must be between 1 and {MAX_PER_MINUTE:e}, got {o}"
        ))),
    }
}

fn tokens_arg(tokens: i64) -> PyResult<u64> {
    u64::try_from(tokens)
        .map_err(|_| PyValueError::new_err(format!("tokens must be >= 0, got {tokens}")))
}

fn seconds(r: Refusal) -> f64 {
    match r {
        Refusal::Wait(ns) => ns as f64 / 1e9,
        Refusal::Never => f64::INFINITY,
    }
}

/// What `RateLimiter.reserve` granted: settle it with `RateLimiter.settle(r, actual)`.
#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct Reservation {
    core: Core,
    retry_after: f64,
    admitted: bool,
}

#[pymethods]
impl Reservation {
    /// True when the request was admitted (and its tokens reserved).
    #[getter]
    fn admitted(&self) -> bool {
        self.admitted
    }

    /// Seconds until it could be admitted (0.0 when admitted; inf: never fits).
    #[getter]
    fn retry_after(&self) -> f64 {
        self.retry_after
    }

    /// Tokens reserved.
    #[getter]
    fn tokens(&self) -> u64 {
        self.core.tokens
    }

    fn __bool__(&self) -> bool {
        self.admitted
    }

    fn __repr__(&self) -> String {
        format!(
            "Reservation(admitted={}, tokens={}, retry_after={:?})",
            if self.admitted { "True" } else { "False" },
            self.core.tokens,
            self.retry_after
        )
    }
}

/// Requests and tokens per minute for one deployment, as GCRA on atomics: thread-safe,
/// no lock, no Python callback except the clock (when one was given).
///
/// `rpm`: requests per minute, a burst of `burst` (default: the whole minute's amount);
/// `tpm`: tokens per minute, burst `token_burst` (default: `tpm`). Either may be None.
///
/// >>> lim = RateLimiter(rpm=2)
/// >>> lim.try_acquire(), lim.try_acquire(), lim.try_acquire()
/// (0.0, 0.0, 30.0)
#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct RateLimiter {
    core: Limiter,
    clock: Clock,
    origin: f64,
    rpm: Option<f64>,
    tpm: Option<f64>,
}

// Without an injected clock the limiter reads the coarse monotonic clock (clock.rs): a
// few ns where the precise one costs ~35 on this kind of VM, which was most of an
// admission's cost. Its tick (a few ms) only coarsens when capacity refills: the GCRA
// bound holds, per tick, over every window.
impl RateLimiter {
    /// `headroom()` for native callers (the deployment picker).
    pub fn headroom_native(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.core.headroom(self.now(py)?))
    }

    /// Now on the limiter's timeline (ns, biased).
    #[inline]
    fn now(&self, py: Python<'_>) -> PyResult<u64> {
        match &self.clock {
            Clock::Native => Ok(clock::coarse_ns().saturating_add(BIAS)),
            c => {
                // Rounded: a clock in whole ms or µs maps to exact ns despite float error.
                // `as` saturates on huge values; the bias keeps a clock read before the
                // origin positive.
                let ns = ((c.now(py)? - self.origin) * 1e9).round() as i64;
                Ok((BIAS as i64).saturating_add(ns).max(0) as u64)
            }
        }
    }
}

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (rpm=None, tpm=None, *, burst=None, token_burst=None, clock=None))]
    fn new(
        py: Python<'_>,
        rpm: Option<Bound<'_, PyAny>>,
        tpm: Option<Bound<'_, PyAny>>,
        burst: Option<Bound<'_, PyAny>>,
        token_burst: Option<Bound<'_, PyAny>>,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (rpm, tpm) = (rate(rpm.as_ref(), "rpm")?, rate(tpm.as_ref(), "tpm")?);
        let burst = count(burst.as_ref(), "burst")?;
        let token_burst = count(token_burst.as_ref(), "token_burst")?;
        let core = Limiter::new(rpm, tpm, burst, token_burst).map_err(config_error)?;
        let clock = Clock::from_py(clock)?;
        let origin = match clock {
            Clock::Native => 0.0,
            ref c => c.now(py)?,
        };
        Ok(RateLimiter {
            core,
            clock,
            origin,
            rpm,
            tpm,
        })
    }

    /// Admits one request costing `tokens` now: 0.0, or the seconds until it could be
    /// admitted (inf: more tokens than `token_burst`, never). Nothing is taken when it
    /// refuses. Use `reserve` instead to settle the real usage afterwards.
    #[pyo3(signature = (tokens=0))]
    fn try_acquire(&self, py: Python<'_>, tokens: i64) -> PyResult<f64> {
        let t = tokens_arg(tokens)?;
        match self.core.try_acquire(t, self.now(py)?) {
            Ok(_) => Ok(0.0),
            Err(r) => Ok(seconds(r)),
        }
    }

    /// Like `try_acquire`, returning a `Reservation` to settle with the tokens really
    /// used (prompt estimate + max_tokens reserved before the call; usage after).
    #[pyo3(signature = (tokens=0))]
    fn reserve(&self, py: Python<'_>, tokens: i64) -> PyResult<Reservation> {
        let t = tokens_arg(tokens)?;
        Ok(match self.core.try_acquire(t, self.now(py)?) {
            Ok(core) => Reservation {
                core,
                retry_after: 0.0,
                admitted: true,
            },
            Err(r) => Reservation {
                core: Core {
                    tokens: 0,
                    end: 0,
                    req_end: 0,
                },
                retry_after: seconds(r),
                admitted: false,
            },
        })
    }

    /// Seconds until one request costing `tokens` could be admitted (0.0: now; inf:
    /// never), taking nothing.
    #[pyo3(signature = (tokens=0))]
    fn retry_after(&self, py: Python<'_>, tokens: i64) -> PyResult<f64> {
        let t = tokens_arg(tokens)?;
        Ok(seconds(self.core.wait(t, self.now(py)?)))
    }

    /// Settles an admitted reservation with the tokens really used: the difference is
    /// given back (only what has not refilled yet) or charged (later admissions wait).
    /// Returns the tokens given back (negative) or charged. A refused reservation
    /// settles to 0.
    fn settle(&self, py: Python<'_>, reservation: &Reservation, actual: i64) -> PyResult<i64> {
        let actual = u64::try_from(actual)
            .map_err(|_| PyValueError::new_err(format!("actual must be >= 0, got {actual}")))?;
        if !reservation.admitted {
            return Ok(0);
        }
        Ok(self.core.settle(reservation.core, actual, self.now(py)?))
    }

    /// Gives an admitted reservation back whole (the call was never made): its request
    /// slot and its tokens, at most what has not refilled yet.
    fn release(&self, py: Python<'_>, reservation: &Reservation) -> PyResult<()> {
        if reservation.admitted {
            self.core.release(reservation.core, self.now(py)?);
        }
        Ok(())
    }

    /// Refuses every request for `seconds` from now (a 429's Retry-After); a shorter
    /// cool-down than the one running changes nothing.
    fn cool_down(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        if !(seconds.is_finite() && (0.0..=MAX_COOL_DOWN).contains(&seconds)) {
            return Err(PyValueError::new_err(format!(
                "seconds must be a finite number >= 0 and <= {MAX_COOL_DOWN:e}, got {seconds}"
            )));
        }
        let now = self.now(py)?;
        self.core
            .cool_down(now.saturating_add((seconds * 1e9).round() as u64));
        Ok(())
    }

    /// The fraction of capacity left now, 0.0 to 1.0: the tighter of rpm and tpm, 0.0
    /// while cooling down, 1.0 with no limit.
    fn headroom(&self, py: Python<'_>) -> PyResult<f64> {
        self.headroom_native(py)
    }

    /// Counts since creation and the current levels (available requests and tokens:
    /// negative when settled usage ran into debt; None without that limit).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let now = self.now(py)?;
        let (admitted, refused, settled) = self.core.counts();
        let d = PyDict::new(py);
        d.set_item("admitted", admitted)?;
        d.set_item("refused", refused)?;
        d.set_item("settled", settled)?;
        d.set_item(
            "requests_available",
            self.core.requests().map(|g| g.available(now)),
        )?;
        d.set_item(
            "tokens_available",
            self.core.tokens().map(|g| g.available(now)),
        )?;
        d.set_item(
            "cooldown_remaining",
            self.core.cooldown_remaining(now) as f64 / 1e9,
        )?;
        d.set_item("headroom", self.core.headroom(now))?;
        Ok(d)
    }

    #[getter]
    fn rpm(&self) -> Option<f64> {
        self.rpm
    }

    #[getter]
    fn tpm(&self) -> Option<f64> {
        self.tpm
    }

    #[getter]
    fn burst(&self) -> Option<u64> {
        self.core.requests().map(|g| g.burst())
    }

    #[getter]
    fn token_burst(&self) -> Option<u64> {
        self.core.tokens().map(|g| g.burst())
    }

    #[getter]
    fn clock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.clock.to_py(py)
    }

    fn __repr__(&self) -> String {
        fn show<T: std::fmt::Display>(v: Option<T>) -> String {
            v.map_or_else(|| "None".to_string(), |v| v.to_string())
        }
        format!(
            "RateLimiter(rpm={}, tpm={}, burst={}, token_burst={})",
            show(self.rpm),
            show(self.tpm),
            show(self.burst()),
            show(self.token_burst())
        )
    }
}
