//! `ManagerCore`: the native base of `LLMManager`, so a cache hit is one trip into Rust.
//!
//! `generate` checks the prompt, hashes (route, prompt, kwargs) once, looks the key up and
//! counts the request; on a hit it returns the cached text and nothing else runs. Anything
//! else (a miss, caching off, an uncacheable kwarg, no route) is handed to the Python
//! subclass's `_generate_slow` with the key already computed and the route snapshot the
//! request started with.

use crate::key::{Key, Secret};
use crate::py_cache::ResponseCache;
use crate::py_key::{key_for, key_to_py, route_digest};
use crate::py_metrics::ManagerStats;
use arc_swap::ArcSwap;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::sync::Arc;

struct Route {
    digest: Key,
    /// The Python plan (a tuple of model entries), handed to the slow path as is.
    plan: Py<PyAny>,
}

/// What one request resolved to on entry.
enum Entry {
    Hit(Py<PyAny>),
    Miss { key: Option<Key>, route: Arc<Route> },
}

#[pyclass(subclass, frozen, module = "agenticaiframework._native")]
pub struct ManagerCore {
    cache: PyOnceLock<Option<Py<ResponseCache>>>,
    stats: Py<ManagerStats>,
    route: ArcSwap<Route>,
    secret: PyOnceLock<Secret>,
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

impl ManagerCore {
    fn cache<'a>(&'a self, py: Python<'_>) -> Option<&'a ResponseCache> {
        self.cache.get(py).and_then(|c| c.as_ref()).map(|c| c.get())
    }

    fn secret(&self, py: Python<'_>) -> Secret {
        match self.cache(py) {
            Some(c) => *c.secret(),
            None => *self.secret.get_or_init(py, Secret::random),
        }
    }

    /// The whole native entry: type check, one hash, one lookup, the counters.
    fn enter(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        use_cache: bool,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Entry> {
        let Ok(text) = prompt.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "prompt must be str, not {}",
                type_name(prompt)
            )));
        };
        let route = self.route.load_full();
        let stats = self.stats.get();
        stats.c.start(crate::py_metrics::m::REQUESTS, 1);
        let mut key = None;
        if use_cache && !route.plan.is_none(py) {
            if let Some(cache) = self.cache(py) {
                if let Ok(k) = key_for(cache.secret(), route.digest, text, kwargs) {
                    if let Some(record) = cache.get_native(py, k)? {
                        stats.c.finish(crate::py_metrics::m::HITS, 1);
                        stats.c.finish(crate::py_metrics::m::SUCCESSES, 1);
                        return Ok(Entry::Hit(record));
                    }
                    stats.c.finish(crate::py_metrics::m::MISSES, 1);
                    key = Some(k);
                }
            }
        }
        Ok(Entry::Miss { key, route })
    }
}

#[pymethods]
impl ManagerCore {
    /// Accepts (and ignores) the subclass's constructor arguments: `__init__` configures.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Ok(ManagerCore {
            cache: PyOnceLock::new(),
            stats: Py::new(py, ManagerStats::default())?,
            route: ArcSwap::from_pointee(Route {
                digest: 0,
                plan: py.None(),
            }),
            secret: PyOnceLock::new(),
        })
    }

    /// Attaches the response cache (or None for no caching). Once per manager.
    fn _attach_cache(&self, py: Python<'_>, cache: Option<Py<ResponseCache>>) -> PyResult<()> {
        self.cache
            .set(py, cache)
            .map_err(|_| PyRuntimeError::new_err("the cache is already attached"))
    }

    /// Publishes a new route: `identity` (hashable by value: names and registration serials)
    /// keys the cache; `plan` is what the slow path receives. None `plan`: no route.
    fn _set_route(
        &self,
        py: Python<'_>,
        identity: &Bound<'_, PyAny>,
        plan: Py<PyAny>,
    ) -> PyResult<()> {
        let digest = route_digest(&self.secret(py), identity)
            .map_err(|_| PyTypeError::new_err("route identity must be hashable by value"))?;
        self.route.store(Arc::new(Route { digest, plan }));
        Ok(())
    }

    #[getter]
    fn _stats(&self, py: Python<'_>) -> Py<ManagerStats> {
        self.stats.clone_ref(py)
    }

    #[getter]
    fn _cache(&self, py: Python<'_>) -> Option<Py<ResponseCache>> {
        self.cache
            .get(py)
            .and_then(|c| c.as_ref().map(|c| c.clone_ref(py)))
    }

    /// Generates text for `prompt`: a cache hit is answered here; the rest goes to
    /// `_generate_slow(prompt, use_cache, kwargs, key, plan)`.
    #[pyo3(signature = (prompt, use_cache=true, **kwargs))]
    fn generate(
        slf: &Bound<'_, Self>,
        prompt: &Bound<'_, PyAny>,
        use_cache: bool,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match slf.get().enter(py, prompt, use_cache, kwargs)? {
            // Records are (text, model, prompt_tokens, completion_tokens).
            Entry::Hit(record) => Ok(record.bind(py).get_item(0)?.unbind()),
            Entry::Miss { key, route } => {
                let key = key.map(|k| key_to_py(py, k));
                Ok(slf
                    .call_method1(
                        intern!(py, "_generate_slow"),
                        (prompt, use_cache, kwargs, key, route.plan.clone_ref(py)),
                    )?
                    .unbind())
            }
        }
    }

    /// The entry alone, for the Python paths (async, result objects): `(True, record, None)`
    /// on a hit, `(False, key or None, plan)` otherwise. Counts like `generate`.
    #[pyo3(signature = (prompt, use_cache=true, kwargs=None))]
    fn _enter<'py>(
        &self,
        py: Python<'py>,
        prompt: &Bound<'py, PyAny>,
        use_cache: bool,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(bool, Py<PyAny>, Py<PyAny>)> {
        match self.enter(py, prompt, use_cache, kwargs)? {
            Entry::Hit(record) => Ok((true, record, py.None())),
            Entry::Miss { key, route } => Ok((
                false,
                key.map_or_else(|| py.None(), |k| key_to_py(py, k).into_any().unbind()),
                route.plan.clone_ref(py),
            )),
        }
    }
}
