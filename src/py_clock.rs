//! Time for TTLs and breakers: the native monotonic clock, or a Python callable the caller
//! supplies (tests pass a fake one, so no test waits for real). The native one counts from
//! `clock::origin`, like attempt tokens.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

pub enum Clock {
    Native,
    Py(Py<PyAny>),
}

impl Clock {
    /// None means the native clock; anything else must be a callable returning seconds.
    pub fn from_py(obj: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        match obj {
            None => Ok(Clock::Native),
            Some(o) if o.is_none() => Ok(Clock::Native),
            Some(o) if o.is_callable() => Ok(Clock::Py(o.unbind())),
            Some(_) => Err(PyTypeError::new_err(
                "clock must be a callable returning seconds as a float, or None",
            )),
        }
    }

    /// Seconds on this clock. A Python clock that raises, returns a non-number or a
    /// non-finite value gives a clear error instead of a corrupt state.
    pub fn now(&self, py: Python<'_>) -> PyResult<f64> {
        match self {
            Clock::Native => Ok(crate::clock::now_secs()),
            Clock::Py(f) => {
                let v: f64 =
                    f.bind(py).call0()?.extract().map_err(|_| {
                        PyTypeError::new_err("clock() must return a number of seconds")
                    })?;
                if v.is_finite() {
                    Ok(v)
                } else {
                    Err(PyValueError::new_err("clock() returned a non-finite time"))
                }
            }
        }
    }

    pub fn to_py(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match self {
            Clock::Native => None,
            Clock::Py(f) => Some(f.clone_ref(py)),
        }
    }
}
