//! `ResponseCache`: sharded LRU of Python objects under 128-bit keys.
//!
//! Each shard is a short `parking_lot` mutex around an `Lru`. The lock is never held while
//! Python code runs: keys are computed before locking, and values leaving the cache are
//! dropped (possibly running `__del__`) only after the lock is released.

use crate::key::{Key, Secret};
use crate::lru::{Lookup, Lru};
use crate::metrics::Counters;
use crate::py_clock::Clock;
use crate::py_key::{key_for, key_from_py, key_to_py, route_digest, secret_from_py};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

mod s {
    pub const HITS: usize = 0;
    pub const MISSES: usize = 1;
    pub const INSERTS: usize = 2;
    pub const EVICTIONS: usize = 3;
    pub const EXPIRATIONS: usize = 4;
    pub const REJECTIONS: usize = 5;
    pub const N: usize = 6;
    pub const ORDER: [usize; N] = [0, 1, 2, 3, 4, 5];
    pub const NAMES: [&str; N] = [
        "hits",
        "misses",
        "inserts",
        "evictions",
        "expirations",
        "rejections",
    ];
}

/// Keeps each shard's lock on its own cache line, so threads on different shards do not
/// contend through false sharing.
#[repr(align(128))]
struct Padded<T>(T);

type Shard = Padded<Mutex<Lru<Py<PyAny>>>>;

const MAX_SHARDS: usize = 1024;

#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct ResponseCache {
    shards: Box<[Shard]>,
    shard_bits: u32,
    secret: Secret,
    ttl: Option<f64>,
    clock: Clock,
    max_entries: usize,
    max_bytes: Option<u64>,
    stats: Counters<{ s::N }>,
}

fn split(total: u64, n: usize, i: usize) -> u64 {
    total / n as u64 + u64::from((i as u64) < total % n as u64)
}

impl ResponseCache {
    pub fn build(
        max_entries: i64,
        max_bytes: Option<i64>,
        ttl: Option<f64>,
        clock: Clock,
        shards: Option<i64>,
        secret: Secret,
    ) -> PyResult<Self> {
        if max_entries < 1 {
            return Err(PyValueError::new_err(format!(
                "max_entries must be >= 1, got {max_entries}"
            )));
        }
        let max_entries = max_entries as usize;
        let max_bytes = match max_bytes {
            None => None,
            Some(b) if b >= 1 => Some(b as u64),
            Some(b) => {
                return Err(PyValueError::new_err(format!(
                    "max_bytes must be >= 1 or None, got {b}"
                )))
            }
        };
        if let Some(t) = ttl {
            if !(t.is_finite() && t > 0.0) {
                return Err(PyValueError::new_err(format!(
                    "ttl must be a finite number of seconds > 0 or None, got {t}"
                )));
            }
        }
        let n = match shards {
            // A byte bound is split across shards, which would cap one answer at a shard's
            // share: byte-bounded caches default to one shard, so the bound is exact and
            // any answer up to `max_bytes` fits. (Under the GIL shards buy nothing anyway.)
            None if max_bytes.is_some() => 1,
            // Small caches get few shards so their eviction order stays close to one LRU.
            None => {
                let want = (max_entries / 64).clamp(1, 16);
                if want.is_power_of_two() {
                    want
                } else {
                    want.next_power_of_two() / 2
                }
            }
            Some(n) if n >= 1 && (n as u64).is_power_of_two() && n as usize <= MAX_SHARDS => {
                n as usize
            }
            Some(n) => {
                return Err(PyValueError::new_err(format!(
                    "shards must be a power of two between 1 and {MAX_SHARDS}, got {n}"
                )))
            }
        };
        if n > max_entries {
            return Err(PyValueError::new_err(format!(
                "shards ({n}) must not exceed max_entries ({max_entries})"
            )));
        }
        let shards = (0..n)
            .map(|i| {
                let entries = split(max_entries as u64, n, i) as usize;
                let bytes = max_bytes.map_or(u64::MAX, |b| split(b, n, i));
                Padded(Mutex::new(Lru::new(
                    entries,
                    bytes,
                    ttl.unwrap_or(f64::INFINITY),
                )))
            })
            .collect();
        Ok(ResponseCache {
            shards,
            shard_bits: n.trailing_zeros(),
            secret,
            ttl,
            clock,
            max_entries,
            max_bytes,
            stats: Counters::default(),
        })
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    fn shard_index(&self, key: Key) -> usize {
        if self.shard_bits == 0 {
            0
        } else {
            (key >> (128 - self.shard_bits)) as usize
        }
    }

    fn shard(&self, key: Key) -> &Mutex<Lru<Py<PyAny>>> {
        &self.shards[self.shard_index(key)].0
    }

    fn now(&self, py: Python<'_>) -> PyResult<f64> {
        if self.ttl.is_some() {
            self.clock.now(py)
        } else {
            Ok(0.0)
        }
    }

    /// Looks a key up, counting the hit or miss.
    pub fn get_native(&self, py: Python<'_>, key: Key) -> PyResult<Option<Py<PyAny>>> {
        let now = self.now(py)?;
        let found = self.shard(key).lock().get(key, now, |v| v.clone_ref(py));
        match found {
            Lookup::Hit(v) => {
                self.stats.finish(s::HITS, 1);
                Ok(Some(v))
            }
            Lookup::Miss => {
                self.stats.finish(s::MISSES, 1);
                Ok(None)
            }
            Lookup::Expired(old) => {
                self.stats.finish(s::EXPIRATIONS, 1);
                self.stats.finish(s::MISSES, 1);
                drop(old); // after the lock: may run __del__
                Ok(None)
            }
        }
    }

    /// Looks a key up without counting a hit or a miss: a second look by a request whose
    /// first one (already counted) missed, as when a single-flight leader checks whether
    /// its twin's answer landed in between.
    pub fn peek_native(&self, py: Python<'_>, key: Key) -> PyResult<Option<Py<PyAny>>> {
        let now = self.now(py)?;
        let found = self.shard(key).lock().get(key, now, |v| v.clone_ref(py));
        match found {
            Lookup::Hit(v) => Ok(Some(v)),
            Lookup::Miss => Ok(None),
            Lookup::Expired(old) => {
                self.stats.finish(s::EXPIRATIONS, 1);
                drop(old); // after the lock: may run __del__
                Ok(None)
            }
        }
    }

    /// Stores a value; returns whether it was stored (false: larger than the byte bound).
    pub fn put_native(
        &self,
        py: Python<'_>,
        key: Key,
        value: Py<PyAny>,
        size: u64,
    ) -> PyResult<bool> {
        // Read before locking: a Python clock runs Python code.
        let now = self.now(py)?;
        let mut dropped = Vec::new();
        let outcome = self
            .shard(key)
            .lock()
            .insert(key, value, size, now, &mut dropped);
        if outcome.inserted {
            self.stats.finish(s::INSERTS, 1);
        } else {
            self.stats.finish(s::REJECTIONS, 1);
        }
        if outcome.evicted > 0 {
            self.stats.finish(s::EVICTIONS, outcome.evicted);
        }
        drop(dropped); // after the lock
        Ok(outcome.inserted)
    }

    pub fn size_of(&self, value: &Bound<'_, PyAny>, size: Option<i64>) -> PyResult<u64> {
        match size {
            Some(n) if n >= 0 => Ok(n as u64),
            Some(n) => Err(PyValueError::new_err(format!("size must be >= 0, got {n}"))),
            // Sizes only matter under a byte bound: skip the call otherwise.
            None if self.max_bytes.is_none() => Ok(0),
            None => value.call_method0("__sizeof__")?.extract::<u64>(),
        }
    }

    pub fn key_native(
        &self,
        route: &Bound<'_, PyAny>,
        prompt: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Option<Key>> {
        let prompt = prompt.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "prompt must be str, not {}",
                prompt
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let Ok(r) = route_digest(&self.secret, route) else {
            return Err(PyTypeError::new_err(
                "route must be built from str, int, float, bool, None, bytes, tuple, list or dict",
            ));
        };
        Ok(key_for(&self.secret, r, prompt, kwargs).ok())
    }
}

#[pymethods]
impl ResponseCache {
    #[new]
    #[pyo3(signature = (max_entries=10_000, *, max_bytes=None, ttl=None, clock=None, shards=None, secret=None))]
    fn new(
        max_entries: i64,
        max_bytes: Option<i64>,
        ttl: Option<f64>,
        clock: Option<Bound<'_, PyAny>>,
        shards: Option<i64>,
        secret: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Self::build(
            max_entries,
            max_bytes,
            ttl,
            Clock::from_py(clock)?,
            shards,
            secret_from_py(secret.as_ref())?,
        )
    }

    /// The key of (route, prompt, kwargs) as 16 bytes, or None when a kwarg cannot be
    /// hashed by value (the request is then served without the cache).
    #[pyo3(signature = (route, prompt, kwargs=None))]
    fn key<'py>(
        &self,
        py: Python<'py>,
        route: &Bound<'py, PyAny>,
        prompt: &Bound<'py, PyAny>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self
            .key_native(route, prompt, kwargs)?
            .map(|k| key_to_py(py, k)))
    }

    /// One trip for the whole read path: `(True, value)` on a hit, `(False, key)` on a miss
    /// (store under that key, no second hashing), `(False, None)` when uncacheable.
    #[pyo3(signature = (route, prompt, kwargs=None))]
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        route: &Bound<'py, PyAny>,
        prompt: &Bound<'py, PyAny>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(bool, Py<PyAny>)> {
        let Some(key) = self.key_native(route, prompt, kwargs)? else {
            return Ok((false, py.None()));
        };
        match self.get_native(py, key)? {
            Some(v) => Ok((true, v)),
            None => Ok((false, key_to_py(py, key).into_any().unbind())),
        }
    }

    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = key_from_py(key)?;
        Ok(self
            .get_native(py, k)?
            .or(default)
            .unwrap_or_else(|| py.None()))
    }

    /// Like `get`, but counts neither a hit nor a miss (see `peek_native`).
    fn peek(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let k = key_from_py(key)?;
        Ok(self.peek_native(py, k)?.unwrap_or_else(|| py.None()))
    }

    /// Stores `value` under `key`. `size` (bytes) counts toward `max_bytes`; by default the
    /// value's `__sizeof__()` when a byte bound is set.
    #[pyo3(signature = (key, value, size=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: Bound<'_, PyAny>,
        size: Option<i64>,
    ) -> PyResult<bool> {
        let k = key_from_py(key)?;
        let size = self.size_of(&value, size)?;
        self.put_native(py, k, value.unbind(), size)
    }

    /// Removes one entry; returns whether it was there.
    fn invalidate(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = key_from_py(key)?;
        let old = self.shard(k).lock().remove(k);
        Ok(old.is_some())
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = key_from_py(key)?;
        let now = self.now(py)?;
        Ok(self.shard(k).lock().contains(k, now))
    }

    /// Empties the cache; returns how many entries were dropped. Values are released
    /// after the locks, so their `__del__` may use the cache.
    fn clear(&self) -> usize {
        let mut dropped = Vec::new();
        let mut n = 0;
        for sh in self.shards.iter() {
            n += sh.0.lock().drain(&mut dropped);
        }
        drop(dropped);
        n
    }

    fn __len__(&self) -> usize {
        self.shards.iter().map(|sh| sh.0.lock().len()).sum()
    }

    /// hits, misses, inserts, evictions, expirations, rejections, entries, bytes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let v = self.stats.snapshot(&s::ORDER);
        let d = PyDict::new(py);
        for (name, x) in s::NAMES.iter().zip(v) {
            d.set_item(*name, x)?;
        }
        let (mut entries, mut bytes) = (0usize, 0u64);
        for sh in self.shards.iter() {
            let g = sh.0.lock();
            entries += g.len();
            bytes += g.bytes();
        }
        d.set_item("entries", entries)?;
        d.set_item("bytes", bytes)?;
        Ok(d)
    }

    fn reset_stats(&self) {
        self.stats.reset();
    }

    #[getter]
    fn max_entries(&self) -> usize {
        self.max_entries
    }

    #[getter]
    fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.ttl
    }

    #[getter]
    fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Which shard holds `key` (its top bits).
    fn shard_of(&self, key: &Bound<'_, PyAny>) -> PyResult<usize> {
        Ok(self.shard_index(key_from_py(key)?))
    }

    /// Each shard's entry bound; they add up to `max_entries`.
    fn shard_capacities(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|sh| sh.0.lock().max_entries())
            .collect()
    }

    /// A shard's keys from most to least recently used (for tests and debugging).
    fn shard_keys<'py>(&self, py: Python<'py>, shard: usize) -> PyResult<Bound<'py, PyList>> {
        let sh = self
            .shards
            .get(shard)
            .ok_or_else(|| PyValueError::new_err(format!("no shard {shard}")))?;
        let keys = sh.0.lock().keys_mru();
        PyList::new(py, keys.into_iter().map(|k| key_to_py(py, k)))
    }

    fn __repr__(&self) -> String {
        format!(
            "ResponseCache(max_entries={}, max_bytes={:?}, ttl={:?}, shards={})",
            self.max_entries,
            self.max_bytes,
            self.ttl,
            self.shards.len()
        )
    }
}
