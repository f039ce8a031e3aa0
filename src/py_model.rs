//! `ModelCore`: one model's breaker and counters behind two native calls per attempt.
//!
//! `begin` asks the breaker for a permit and counts the attempt (or the short-circuit),
//! and stamps the start time; the returned token carries both, so `success`/`failure`
//! report the outcome and the latency in one more call. Concurrent attempts on the same
//! model each hold their own token: nothing per-attempt is stored here.

use crate::breaker::Permit;
use crate::clock::now_ns;
use crate::py_admission::{Admission, BreakerKind};
use crate::py_breaker::BreakerCore;
use crate::py_metrics::{count, ManagerStats, ModelStats};
use crate::py_record::{code_points, Record};
use crate::token::{self, TokenError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// A token from Python back to its permit and start time (layout in `token`), with the
/// errors Python has always seen.
fn split(token: i64) -> PyResult<(Permit, u64)> {
    token::decode(token).map_err(|e| match e {
        TokenError::Negative => PyValueError::new_err("token must come from ModelCore.begin()"),
        TokenError::Rejected => {
            PyValueError::new_err("a rejected attempt (token 0) has no outcome to report")
        }
        TokenError::BadPermit(p) => PyValueError::new_err(format!(
            "permit must be 0, 1 or 2 (as returned by acquire()), got {p}"
        )),
    })
}

/// Nanoseconds since `start` (a decoded token's start time).
#[inline]
fn since(start: u64) -> u64 {
    token::elapsed_ns(start, now_ns())
}

#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct ModelCore {
    /// Reached only through `Admission` (see py_admission.rs), so another kind of breaker
    /// can stand in without a change here.
    breaker: BreakerKind,
    stats: Py<ModelStats>,
    /// For `answered`: the model's name (records carry it) and its manager's counters.
    name: Option<Py<PyString>>,
    manager: Option<Py<ManagerStats>>,
}

/// About four characters a token, as the providers' rules of thumb go.
fn estimate(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

#[pymethods]
impl ModelCore {
    #[new]
    #[pyo3(signature = (breaker, stats, name=None, manager=None))]
    fn new(
        breaker: Py<BreakerCore>,
        stats: Py<ModelStats>,
        name: Option<Py<PyString>>,
        manager: Option<Py<ManagerStats>>,
    ) -> Self {
        ModelCore {
            breaker: BreakerKind::Local(breaker),
            stats,
            name,
            manager,
        }
    }

    /// The common case in one call: the first attempt `token` answered `text` (a str) to
    /// `prompt`. Reports the success with estimated usage to the model, its breaker and
    /// the manager, and returns the cache record.
    fn answered(
        &self,
        py: Python<'_>,
        token: i64,
        prompt: &Bound<'_, PyString>,
        text: Bound<'_, PyString>,
    ) -> PyResult<Record> {
        self.book(py, token, prompt, text, (0, 0, 0))
    }

    /// `answered` for an attempt the route walk made (after a failure or a skipped
    /// model): the same booking in one call, with the request's retries and fallbacks,
    /// and the request's latency since `since` (its first attempt's token; 0: untimed).
    #[pyo3(signature = (token, prompt, text, retries, fallbacks, since=0))]
    #[allow(clippy::too_many_arguments)] // Python's positional call: one native call
    fn answered_after(
        &self,
        py: Python<'_>,
        token: i64,
        prompt: &Bound<'_, PyString>,
        text: Bound<'_, PyString>,
        retries: u64,
        fallbacks: u64,
        since: i64,
    ) -> PyResult<Record> {
        self.book(py, token, prompt, text, (retries, fallbacks, since))
    }

    /// Starts an attempt: 0 when the breaker rejects it (counted as a short-circuit),
    /// else a token for `success`/`failure`/`cancel`.
    #[pyo3(signature = (retry=false))]
    fn begin(&self, py: Python<'_>, retry: bool) -> PyResult<i64> {
        let permit = self.breaker.acquire(py)?;
        let stats = self.stats.get();
        if permit == Permit::Rejected {
            stats.c.finish(crate::py_metrics::c::SHORT_CIRCUITS, 1);
            return Ok(0);
        }
        stats.attempt(retry);
        Ok(token::encode(permit, now_ns()))
    }

    /// The attempt `token` really starts now (it waited for a worker first): the same
    /// permit, a new start time, so the wait is not the model's latency.
    fn restart(&self, token: i64) -> PyResult<i64> {
        let (permit, _) = split(token)?;
        Ok(token::encode(permit, now_ns()))
    }

    /// Reports success of the attempt `token`, with its token usage.
    #[pyo3(signature = (token, prompt_tokens=0, completion_tokens=0))]
    fn success(
        &self,
        py: Python<'_>,
        token: i64,
        prompt_tokens: i64,
        completion_tokens: i64,
    ) -> PyResult<()> {
        let (permit, start) = split(token)?;
        let (p, q) = (
            count(prompt_tokens, "prompt_tokens")?,
            count(completion_tokens, "completion_tokens")?,
        );
        self.stats.get().success(since(start), p, q);
        self.breaker.on_success(py, permit)
    }

    /// The streamed attempt `token` produced its first chunk: records time-to-first-chunk.
    fn first_chunk(&self, token: i64) -> PyResult<()> {
        let (_, start) = split(token)?;
        self.stats.get().ttfc.record(since(start));
        Ok(())
    }

    /// Reports failure of the attempt `token`; true when it opened the breaker.
    fn failure(&self, py: Python<'_>, token: i64) -> PyResult<bool> {
        let (permit, start) = split(token)?;
        self.stats.get().failure(since(start));
        self.breaker.on_failure(py, permit)
    }

    /// The attempt ended without an outcome (a BaseException): the permit is returned.
    fn cancel(&self, py: Python<'_>, token: i64) -> PyResult<()> {
        let (permit, _) = split(token)?;
        self.stats
            .get()
            .c
            .finish(crate::py_metrics::c::CANCELLED, 1);
        self.breaker.release(py, permit)
    }

    #[getter]
    fn breaker(&self, py: Python<'_>) -> Py<BreakerCore> {
        // A match, not a `let`: a new kind of breaker must decide what Python sees here.
        match &self.breaker {
            BreakerKind::Local(b) => b.clone_ref(py),
        }
    }

    #[getter]
    fn stats(&self, py: Python<'_>) -> Py<ModelStats> {
        self.stats.clone_ref(py)
    }
}

impl ModelCore {
    /// Whether the breaker would admit an attempt now (taking no permit).
    pub fn admits(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.breaker {
            BreakerKind::Local(b) => b.get().admits_native(py),
        }
    }

    pub fn stats_ref(&self) -> &ModelStats {
        self.stats.get()
    }

    /// A str answer to `prompt` for the attempt `token`: usage estimated, success booked to
    /// the model, its breaker and the manager, and the cache record built.
    #[inline]
    fn book(
        &self,
        py: Python<'_>,
        token: i64,
        prompt: &Bound<'_, PyString>,
        text: Bound<'_, PyString>,
        // The request's retries and fallbacks, and its first attempt's token (0: none).
        (retries, fallbacks, since): (u64, u64, i64),
    ) -> PyResult<Record> {
        let (Some(name), Some(manager)) = (&self.name, &self.manager) else {
            return Err(PyValueError::new_err(
                "answered() needs a ModelCore built with name= and manager=",
            ));
        };
        let (permit, start) = split(token)?;
        let (p, q) = (
            estimate(code_points(prompt)?),
            estimate(code_points(&text)?),
        );
        let now = now_ns();
        let ns = token::elapsed_ns(start, now);
        self.stats.get().success(ns, u64::from(p), u64::from(q));
        self.breaker.on_success(py, permit)?;
        let tokens = u64::from(p) + u64::from(q);
        if retries == 0 && fallbacks == 0 {
            manager.get().first_try_success(tokens, ns);
        } else {
            // The request began at its first attempt (`since`): one clock read for both.
            let request_ns = match since {
                0 => None,
                t => Some(token::elapsed_ns(split(t)?.1, now)),
            };
            manager
                .get()
                .success_after(tokens, retries, fallbacks, request_ns);
        }
        Ok(Record::build(text.unbind(), name.clone_ref(py), p, q, true))
    }
}
