//! `FlightTable`: single-flight's registry of the requests in flight, by 128-bit key.
//!
//! What a flight *is* (its waiters, its outcome) stays in Python (`llms/singleflight.py`);
//! this is only the map from key to the value a leader or its first follower put there,
//! with the three steps that must each be atomic: lead-or-find, replace-if-unchanged,
//! retire. Every cacheable request leads and retires one, so each is one native call
//! under a short lock instead of a Python lock and dict operations.
//!
//! The lock never wraps Python code: a value that leaves the map is either handed to the
//! caller or dropped after the lock is released (a drop may run `__del__`). The values are
//! visited by the collector: a leader's loop holds its scheduled handles, their task, its
//! frame, the manager and so this table, a cycle the GC must be able to free.

use crate::lru::{PassThrough, K};
use crate::py_key::key_from_py;
use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Keyed by the key's two words, hashed by the low one, as in lru.rs.
type Map = HashMap<K, Py<PyAny>, BuildHasherDefault<PassThrough>>;

/// The flights in progress, by key (16 bytes). Safe from any thread.
///
/// >>> t = FlightTable()
/// >>> k = bytes(16)
/// >>> t.join(k, "leader") is None        # absent: the caller leads
/// True
/// >>> t.join(k, "another")               # present: what is there
/// 'leader'
/// >>> t.replace(k, "stale", "x"), t.replace(k, t.join(k, "ignored"), "flight")
/// (False, True)
/// >>> t.pop(k), t.pop(k), len(t)
/// ('flight', None, 0)
#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct FlightTable {
    map: Mutex<Map>,
}

#[pymethods]
impl FlightTable {
    #[new]
    fn new() -> Self {
        FlightTable {
            map: Mutex::new(Map::default()),
        }
    }

    /// None, having stored `value` under `key`, when nothing was there (the caller leads);
    /// otherwise what is there, unchanged.
    fn join(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: Py<PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let k = K::from(key_from_py(key)?);
        not_none(py, &value)?;
        let mut map = self.map.lock();
        if let Some(v) = map.get(&k) {
            return Ok(Some(v.clone_ref(py)));
        }
        map.insert(k, value);
        Ok(None)
    }

    /// Puts `new` under `key` if `old` (the same object) is still there; whether it did.
    fn replace(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        old: &Bound<'_, PyAny>,
        new: Py<PyAny>,
    ) -> PyResult<bool> {
        let k = K::from(key_from_py(key)?);
        not_none(py, &new)?;
        let prev = {
            let mut map = self.map.lock();
            match map.get_mut(&k) {
                Some(v) if v.as_ptr() == old.as_ptr() => std::mem::replace(v, new),
                _ => return Ok(false),
            }
        };
        drop(prev); // after the lock: a drop may run Python code
        Ok(true)
    }

    /// Removes and returns what is under `key` (None if nothing).
    fn pop(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let k = K::from(key_from_py(key)?);
        Ok(self.map.lock().remove(&k))
    }

    /// Removes everything; returns how many entries there were.
    fn clear(&self) -> usize {
        let old = std::mem::take(&mut *self.map.lock());
        let n = old.len();
        drop(old);
        n
    }

    fn __len__(&self) -> usize {
        self.map.lock().len()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The lock is never held while Python runs, so it is free during a collection;
        // were it not, skipping the edges only keeps the values alive (the safe side).
        if let Some(map) = self.map.try_lock() {
            for v in map.values() {
                visit.call(v)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.clear();
    }
}

/// None is what `join` answers for "you lead": stored, it would make every caller a leader.
fn not_none(py: Python<'_>, v: &Py<PyAny>) -> PyResult<()> {
    if v.is_none(py) {
        return Err(PyTypeError::new_err(
            "a flight's value must not be None (None is join's answer for \"you lead\")",
        ));
    }
    Ok(())
}
