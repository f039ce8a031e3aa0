//! Native hot-path state for `agenticaiframework.llms`.
//!
//! The pure-Rust core (`key`, `lru`, `breaker`, `budget`, `limiter`, `clock`, `metrics`, `token`)
//! knows nothing of Python and is tested with `cargo test --no-default-features`; the
//! `py_*` modules are its PyO3 face.
//! This file only registers the module.

pub mod breaker;
pub mod budget;
pub mod clock;
pub mod key;
pub mod limiter;
pub mod lru;
pub mod metrics;
pub mod token;

#[cfg(feature = "python")]
mod py_admission;
#[cfg(feature = "python")]
mod py_breaker;
#[cfg(feature = "python")]
mod py_budget;
#[cfg(feature = "python")]
mod py_cache;
#[cfg(feature = "python")]
mod py_clock;
#[cfg(feature = "python")]
mod py_flights;
#[cfg(feature = "python")]
mod py_key;
#[cfg(feature = "python")]
mod py_limiter;
#[cfg(feature = "python")]
mod py_manager;
#[cfg(feature = "python")]
mod py_metrics;
#[cfg(feature = "python")]
mod py_model;
#[cfg(feature = "python")]
mod py_record;
#[cfg(feature = "python")]
mod py_router;

/// Every structure is atomics or short `parking_lot` locks that never wrap Python code,
/// so the module is sound without the GIL (`gil_used = false`).
#[cfg(feature = "python")]
#[pyo3::pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use crate::py_breaker::BreakerCore;
    #[pymodule_export]
    use crate::py_budget::RetryBudget;
    #[pymodule_export]
    use crate::py_cache::ResponseCache;
    #[pymodule_export]
    use crate::py_flights::FlightTable;
    #[pymodule_export]
    use crate::py_limiter::{RateLimiter, Reservation};
    #[pymodule_export]
    use crate::py_manager::ManagerCore;
    #[pymodule_export]
    use crate::py_metrics::{ManagerStats, ModelStats};
    #[pymodule_export]
    use crate::py_model::ModelCore;
    #[pymodule_export]
    use crate::py_record::Record;
    #[pymodule_export]
    use crate::py_router::Picker;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        crate::py_manager::install_fast_generate(m.py())
    }
}
