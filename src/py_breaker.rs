//! `BreakerCore`: the Python face of the atomic circuit-breaker state machine.

use crate::breaker::{
    Breaker, Config, Permit, State, MAX_FAILURE_THRESHOLD, MAX_HALF_OPEN_CALLS, MAX_TIMEOUT_MS,
    TIME_MASK,
};
use crate::py_clock::Clock;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pub const PERMIT_REJECTED: u8 = 0;
pub const PERMIT_NORMAL: u8 = 1;
pub const PERMIT_TRIAL: u8 = 2;

pub fn permit_to_int(p: Permit) -> u8 {
    match p {
        Permit::Rejected => PERMIT_REJECTED,
        Permit::Normal => PERMIT_NORMAL,
        Permit::Trial => PERMIT_TRIAL,
    }
}

pub fn permit_from_int(p: u8) -> PyResult<Permit> {
    match p {
        PERMIT_NORMAL => Ok(Permit::Normal),
        PERMIT_TRIAL => Ok(Permit::Trial),
        PERMIT_REJECTED => Ok(Permit::Rejected),
        _ => Err(PyValueError::new_err(format!(
            "permit must be 0, 1 or 2 (as returned by acquire()), got {p}"
        ))),
    }
}

pub fn validate(
    failure_threshold: i64,
    recovery_timeout: f64,
    half_open_max_calls: i64,
) -> PyResult<Config> {
    if !(1..=MAX_FAILURE_THRESHOLD as i64).contains(&failure_threshold) {
        return Err(PyValueError::new_err(format!(
            "failure_threshold must be between 1 and {MAX_FAILURE_THRESHOLD}, got {failure_threshold}"
        )));
    }
    let max_timeout = MAX_TIMEOUT_MS as f64 / 1000.0;
    if !(recovery_timeout.is_finite() && (0.0..=max_timeout).contains(&recovery_timeout)) {
        return Err(PyValueError::new_err(format!(
            "recovery_timeout must be a finite number of seconds between 0 and {max_timeout}, got {recovery_timeout}"
        )));
    }
    if !(1..=MAX_HALF_OPEN_CALLS as i64).contains(&half_open_max_calls) {
        return Err(PyValueError::new_err(format!(
            "half_open_max_calls must be between 1 and {MAX_HALF_OPEN_CALLS}, got {half_open_max_calls}"
        )));
    }
    Ok(Config {
        failure_threshold: failure_threshold as u64,
        recovery_timeout_ms: (recovery_timeout * 1000.0).round() as u64,
        half_open_max_calls: half_open_max_calls as u64,
    })
}

/// A circuit breaker's state in one atomic word. Thread-safe; no lock, no Python callback
/// except the clock (when one was given).
///
/// >>> b = BreakerCore(failure_threshold=2, recovery_timeout=30.0)
/// >>> p = b.acquire(); b.on_failure(p); b.on_failure(b.acquire())
/// >>> b.state, b.acquire()
/// ('open', 0)
#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct BreakerCore {
    core: Breaker,
    clock: Clock,
    origin: f64,
}

impl BreakerCore {
    pub fn build(py: Python<'_>, cfg: Config, clock: Clock) -> PyResult<Self> {
        let origin = clock.now(py)?;
        Ok(BreakerCore {
            core: Breaker::new(cfg),
            clock,
            origin,
        })
    }

    /// Seconds on the clock to wrapping millisecond ticks.
    fn tick(&self, py: Python<'_>) -> PyResult<u64> {
        let now = self.clock.now(py)?;
        // Rounded, not floored: a clock in whole milliseconds must map to exact ticks despite
        // float error in the subtraction.
        let ms = ((now - self.origin) * 1000.0).round() as i64;
        Ok((ms as u64) & TIME_MASK)
    }

    pub fn core(&self) -> &Breaker {
        &self.core
    }

    pub fn acquire_native(&self, py: Python<'_>) -> PyResult<Permit> {
        // Closed is the common case: no clock read needed.
        if self.core.state_is_closed() {
            return Ok(Permit::Normal);
        }
        Ok(self.core.acquire(self.tick(py)?))
    }

    /// Whether `acquire` would give a permit now, taking none: closed, or half-open with
    /// a trial free. A racing caller may take that trial first.
    pub fn admits_native(&self, py: Python<'_>) -> PyResult<bool> {
        if self.core.state_is_closed() {
            return Ok(true);
        }
        Ok(match self.core.state(self.tick(py)?) {
            State::Closed => true,
            State::HalfOpen => {
                self.core.trials_outstanding() < self.core.config().half_open_max_calls
            }
            State::Open => false,
        })
    }

    pub fn failure_native(&self, py: Python<'_>, p: Permit) -> PyResult<bool> {
        Ok(self.core.on_failure(p, self.tick(py)?))
    }
}

#[pymethods]
impl BreakerCore {
    #[new]
    #[pyo3(signature = (failure_threshold=5, recovery_timeout=60.0, half_open_max_calls=1, *, clock=None))]
    fn new(
        py: Python<'_>,
        failure_threshold: i64,
        recovery_timeout: f64,
        half_open_max_calls: i64,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let cfg = validate(failure_threshold, recovery_timeout, half_open_max_calls)?;
        Self::build(py, cfg, Clock::from_py(clock)?)
    }

    /// Asks to make a call: 0 rejected (open), 1 normal call, 2 half-open trial call.
    /// Report the outcome with `on_success`/`on_failure`, or `release` if no call was made.
    fn acquire(&self, py: Python<'_>) -> PyResult<u8> {
        Ok(permit_to_int(self.acquire_native(py)?))
    }

    #[pyo3(signature = (permit=1))]
    fn on_success(&self, permit: u8) -> PyResult<()> {
        self.core.on_success(permit_from_int(permit)?);
        Ok(())
    }

    /// Reports a failed call; true when this report opened the breaker.
    #[pyo3(signature = (permit=1))]
    fn on_failure(&self, py: Python<'_>, permit: u8) -> PyResult<bool> {
        self.failure_native(py, permit_from_int(permit)?)
    }

    /// Returns a permit without an outcome (the call was cancelled or never made).
    fn release(&self, permit: u8) -> PyResult<()> {
        self.core.release(permit_from_int(permit)?);
        Ok(())
    }

    /// Seconds until an open breaker admits a trial call; 0.0 when not open.
    fn retry_after(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.core.remaining(self.tick(py)?) as f64 / 1000.0)
    }

    /// 'closed', 'open' or 'half-open' (an open breaker whose timeout elapsed reads
    /// 'half-open' before any call).
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(self.core.state(self.tick(py)?).as_str())
    }

    #[getter]
    fn failure_count(&self) -> u64 {
        self.core.failure_count()
    }

    #[getter]
    fn trials_outstanding(&self) -> u64 {
        self.core.trials_outstanding()
    }

    #[getter]
    fn failure_threshold(&self) -> u64 {
        self.core.config().failure_threshold
    }

    #[getter]
    fn recovery_timeout(&self) -> f64 {
        self.core.config().recovery_timeout_ms as f64 / 1000.0
    }

    #[getter]
    fn half_open_max_calls(&self) -> u64 {
        self.core.config().half_open_max_calls
    }

    #[getter]
    fn clock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.clock.to_py(py)
    }

    /// Closes the breaker and forgets its failures.
    fn reset(&self) {
        self.core.reset();
    }

    /// Forces the breaker open now.
    fn trip(&self, py: Python<'_>) -> PyResult<()> {
        self.core.trip(self.tick(py)?);
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = self.state(py).unwrap_or("unknown");
        format!(
            "BreakerCore(state={state:?}, failures={}, failure_threshold={}, recovery_timeout={})",
            self.core.failure_count(),
            self.failure_threshold(),
            self.recovery_timeout()
        )
    }
}
