//! The seam between `ModelCore` and its breaker: `Admission` is what a model needs from
//! one (a permit per attempt, the attempt's outcome back), and `BreakerKind` lists the
//! breakers that can stand behind it. Today that is the process-local `BreakerCore` alone;
//! a shared (fleet-wide, e.g. Redis-backed) breaker becomes one more variant with its own
//! `Admission` impl, and `ModelCore`'s methods do not change.
//!
//! An enum, not `Box<dyn Admission>`: dispatch is a match the compiler sees through (with
//! one variant, no branch at all), so `begin`/`success`/`failure` stay as fast as calls
//! on the concrete breaker.
//!
//! Every method takes the GIL token and may fail, though the local breaker fails only in a
//! Python clock: a shared one would do I/O on every report.

use crate::breaker::Permit;
use crate::py_breaker::BreakerCore;
use pyo3::prelude::*;

/// Called by full path on `BreakerCore` (`Admission::acquire(b, py)`): its Python methods
/// of the same names take precedence.
pub trait Admission {
    /// A permit for one call; `Permit::Rejected` when the breaker is open.
    fn acquire(&self, py: Python<'_>) -> PyResult<Permit>;
    /// The call made under `permit` succeeded.
    fn on_success(&self, py: Python<'_>, permit: Permit) -> PyResult<()>;
    /// The call made under `permit` failed; true when this report opened the breaker.
    fn on_failure(&self, py: Python<'_>, permit: Permit) -> PyResult<bool>;
    /// `permit` goes back without an outcome (the call was cancelled or never made).
    fn release(&self, py: Python<'_>, permit: Permit) -> PyResult<()>;
}

impl Admission for BreakerCore {
    #[inline]
    fn acquire(&self, py: Python<'_>) -> PyResult<Permit> {
        self.acquire_native(py)
    }

    #[inline]
    fn on_success(&self, _py: Python<'_>, permit: Permit) -> PyResult<()> {
        self.core().on_success(permit);
        Ok(())
    }

    #[inline]
    fn on_failure(&self, py: Python<'_>, permit: Permit) -> PyResult<bool> {
        self.failure_native(py, permit)
    }

    #[inline]
    fn release(&self, _py: Python<'_>, permit: Permit) -> PyResult<()> {
        self.core().release(permit);
        Ok(())
    }
}

/// The breaker a `ModelCore` holds.
pub enum BreakerKind {
    /// This process's own lock-free breaker.
    Local(Py<BreakerCore>),
}

impl Admission for BreakerKind {
    #[inline]
    fn acquire(&self, py: Python<'_>) -> PyResult<Permit> {
        match self {
            BreakerKind::Local(b) => Admission::acquire(b.get(), py),
        }
    }

    #[inline]
    fn on_success(&self, py: Python<'_>, permit: Permit) -> PyResult<()> {
        match self {
            BreakerKind::Local(b) => Admission::on_success(b.get(), py, permit),
        }
    }

    #[inline]
    fn on_failure(&self, py: Python<'_>, permit: Permit) -> PyResult<bool> {
        match self {
            BreakerKind::Local(b) => Admission::on_failure(b.get(), py, permit),
        }
    }

    #[inline]
    fn release(&self, py: Python<'_>, permit: Permit) -> PyResult<()> {
        match self {
            BreakerKind::Local(b) => Admission::release(b.get(), py, permit),
        }
    }
}
