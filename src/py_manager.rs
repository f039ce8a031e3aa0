//! `ManagerCore`: the native base of `LLMManager`, so a cache hit is one trip into Rust.
//!
//! `generate` checks the prompt, hashes (route, prompt, kwargs) once, looks the key up and
//! counts the request; on a hit it returns the cached text and nothing else runs. Anything
//! else (a miss, caching off, an uncacheable kwarg, no route) is handed to the Python
//! subclass's `_generate_slow` with the key already computed and the route snapshot the
//! request started with.

use crate::key::{Key, Secret};
use crate::py_cache::ResponseCache;
use crate::py_key::{key_for, key_for_pairs, key_to_py, route_digest, Items};
use crate::py_metrics::ManagerStats;
use crate::py_record::Record;
use arc_swap::ArcSwap;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};
use pyo3::PyTraverseError;
use std::sync::Arc;

struct Route {
    digest: Key,
    /// The Python plan (a tuple of model entries), handed to the slow path as is; None
    /// when no model is configured (or the collector cleared it).
    plan: Option<Py<PyAny>>,
}

/// A request's keyword arguments: a dict (the Python paths) or the pairs of a vectorcall.
enum Kw<'a, 'py> {
    Dict(Option<&'a Bound<'py, PyDict>>),
    Pairs(&'a [(Bound<'py, PyAny>, Bound<'py, PyAny>)]),
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
    fn enter<'py>(
        &self,
        py: Python<'py>,
        prompt: &Bound<'py, PyAny>,
        use_cache: bool,
        kwargs: Kw<'_, 'py>,
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
        if use_cache && route.plan.is_some() {
            if let Some(cache) = self.cache(py) {
                let hashed = match kwargs {
                    Kw::Dict(d) => key_for(cache.secret(), route.digest, text, d),
                    Kw::Pairs(p) => key_for_pairs(cache.secret(), route.digest, text, p),
                };
                if let Ok(k) = hashed {
                    let found = cache.get_native(py, k).inspect_err(|_| {
                        // The request was counted: it must be finished (a clock that raised).
                        stats.c.finish(crate::py_metrics::m::FAILURES, 1);
                    })?;
                    if let Some(record) = found {
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
                plan: None,
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
        let plan = (!plan.is_none(py)).then_some(plan);
        self.route.store(Arc::new(Route { digest, plan }));
        Ok(())
    }

    #[getter]
    fn _stats(&self, py: Python<'_>) -> Py<ManagerStats> {
        self.stats.clone_ref(py)
    }

    /// The route's plan holds the models, and a model may hold its manager (a closure, an
    /// Agent): the collector must see that edge to free such a cycle.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(plan) = &self.route.load().plan {
            visit.call(plan)?;
        }
        visit.call(&self.stats)?;
        Ok(())
    }

    fn __clear__(&self) {
        self.route.store(Arc::new(Route {
            digest: 0,
            plan: None,
        }));
    }

    #[getter]
    fn _cache(&self, py: Python<'_>) -> Option<Py<ResponseCache>> {
        self.cache
            .get(py)
            .and_then(|c| c.as_ref().map(|c| c.clone_ref(py)))
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
        match self.enter(py, prompt, use_cache, Kw::Dict(kwargs))? {
            Entry::Hit(record) => Ok((true, record, py.None())),
            Entry::Miss { key, route } => Ok((
                false,
                key.map_or_else(|| py.None(), |k| key_to_py(py, k).into_any().unbind()),
                plan_of(py, &route),
            )),
        }
    }
}

fn plan_of(py: Python<'_>, route: &Route) -> Py<PyAny> {
    route
        .plan
        .as_ref()
        .map_or_else(|| py.None(), |p| p.clone_ref(py))
}

// What `help(LLMManager.generate)` shows: written for the user. (Inside: a cache hit is
// answered here; the rest goes to the subclass's `_generate_slow`.)
const GENERATE_DOC: &std::ffi::CStr = c"generate($self, prompt, use_cache=True, **kwargs)\n--\n\n\
Generates text for `prompt` (a str) and returns it (a str).\n\n\
Tries the active model, then the fallback chain: up to max_retries attempts per model \
with exponential backoff, skipping a model whose circuit breaker is open. Answers are \
cached by (route, prompt, kwargs); use_cache=False neither reads nor writes the cache. \
Every other keyword argument (temperature=0.2, max_tokens=...) goes to the model, in the \
kwargs dict its inference function receives, except deadline= (seconds: the whole \
request's time budget, see the README's deadline section).\n\n\
Raises:\n\
  NoModelConfiguredError: no active model and no fallback chain.\n\
  AllModelsFailedError: every model failed or was skipped; .errors lists each \
(model, exception) in order (QuotaExhaustedError when rate limits refused every model).\n\
  DeadlineExceededError: the deadline passed first (a TimeoutError too).\n\
  TypeError: prompt is not a str.\n\n\
Example:\n\
  >>> llm.register_model('echo', lambda prompt, kwargs: prompt.upper())\n\
  >>> llm.set_active_model('echo')\n\
  >>> llm.generate('hi', temperature=0.2)\n\
  'HI'";

/// Installs `ManagerCore.generate` as a METH_FASTCALL | METH_KEYWORDS method. PyO3 gives a
/// `**kwargs` method the tuple-and-dict convention, which builds two dicts per call; read
/// straight from the vectorcall stack, a cache hit with kwargs builds none.
pub fn install_fast_generate(py: Python<'_>) -> PyResult<()> {
    // The method table entry must outlive the type: one small leak per module init.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"generate".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: generate_fast,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: GENERATE_DOC.as_ptr(),
    }));
    let ty = py.get_type::<ManagerCore>();
    // SAFETY: `ty` is a live type object and `def` a 'static method definition.
    let descr =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def)) }?;
    ty.setattr(intern!(py, "generate"), descr)
}

unsafe extern "C" fn generate_fast(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the interpreter attached.
    let py = unsafe { Python::assume_attached() };
    let run = std::panic::AssertUnwindSafe(|| {
        // SAFETY: the vectorcall protocol: `args` holds `nargs` positionals followed by one
        // value per name in `kwnames` (a tuple of str, or NULL), all borrowed for the call.
        unsafe { generate_call(py, slf, args, nargs, kwnames) }
    });
    let result = match std::panic::catch_unwind(run) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in ManagerCore.generate".into());
            Err(PanicException::new_err(msg))
        }
    };
    match result {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// A `deadline=` keyword's value: seconds > 0, or None. Checked before the request is
/// counted, hit or miss: a bad value is the caller's.
fn check_deadline(d: &Bound<'_, PyAny>) -> PyResult<()> {
    let ok = d.is_none()
        || (!d.is_instance_of::<PyBool>()
            && d.extract::<f64>().is_ok_and(|v| v > 0.0 && v.is_finite()));
    if ok {
        return Ok(());
    }
    Err(pyo3::exceptions::PyValueError::new_err(format!(
        "deadline must be a number of seconds > 0 (or None), not {}",
        d.repr()?
    )))
}

unsafe fn generate_call<'py>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY (whole body): pointers as described in `generate_fast`.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
    let slf = slf.cast_into::<ManagerCore>()?;
    let names = unsafe { Bound::from_borrowed_ptr_or_opt(py, kwnames) }
        .map(|n| n.cast_into::<PyTuple>())
        .transpose()?;
    let npos = usize::try_from(nargs).unwrap_or(0);
    let nkw = names.as_ref().map_or(0, |n| n.len());
    if npos > 2 {
        return Err(PyTypeError::new_err(format!(
            "generate() takes at most 2 positional arguments ({npos} given)"
        )));
    }
    let arg = |i: usize| unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) };
    let mut prompt = (npos >= 1).then(|| arg(0));
    let mut use_cache = (npos == 2).then(|| arg(1));
    // The request's time budget (seconds): not a model kwarg, not part of the key; a hit
    // needs none. Held as its keyword's index (no reference to drop) and checked where it
    // is found, so a call without keywords pays nothing for it.
    let mut deadline: Option<usize> = None;
    let mut pairs = Items::new();
    if let Some(names) = &names {
        for i in 0..nkw {
            let name = names.get_item(i)?;
            let value = arg(npos + i);
            let slot = match name.cast::<PyString>().ok().and_then(|s| s.to_str().ok()) {
                Some("prompt") => &mut prompt,
                Some("use_cache") => &mut use_cache,
                Some("deadline") => {
                    if deadline.replace(npos + i).is_some() {
                        return Err(PyTypeError::new_err(
                            "generate() got multiple values for argument 'deadline'",
                        ));
                    }
                    check_deadline(&value)?;
                    continue;
                }
                _ => {
                    pairs.push((name, value));
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                return Err(PyTypeError::new_err(format!(
                    "generate() got multiple values for argument {}",
                    name.repr()?
                )));
            }
        }
    }
    let Some(prompt) = prompt else {
        return Err(PyTypeError::new_err(
            "generate() missing 1 required positional argument: 'prompt'",
        ));
    };
    let use_cache = match use_cache {
        None => true,
        Some(v) => v
            .cast::<PyBool>()
            .map_err(|_| {
                PyTypeError::new_err(format!("use_cache must be a bool, not {}", type_name(&v)))
            })?
            .is_true(),
    };
    match slf.get().enter(py, &prompt, use_cache, Kw::Pairs(&pairs))? {
        Entry::Hit(record) => {
            let record = record.into_bound(py);
            match record.cast::<Record>() {
                Ok(r) => Ok(r.get().text_ref(py).into_any()),
                // Only the manager stores records; anything else is read as a sequence.
                Err(_) => record.get_item(0),
            }
        }
        Entry::Miss { key, route } => {
            let kwargs = if pairs.is_empty() {
                None
            } else {
                let d = PyDict::new(py);
                for (k, v) in &pairs {
                    d.set_item(k, v)?;
                }
                Some(d)
            };
            let key = key.map(|k| key_to_py(py, k));
            let plan = plan_of(py, &route);
            match deadline {
                None => slf.call_method1(
                    intern!(py, "_generate_slow"),
                    (prompt, use_cache, kwargs, key, plan),
                ),
                // A request with a deadline has a method of its own: the first try's
                // path pays nothing for it.
                Some(i) => slf.call_method1(
                    intern!(py, "_generate_timed"),
                    (prompt, use_cache, kwargs, key, plan, arg(i)),
                ),
            }
        }
    }
}
