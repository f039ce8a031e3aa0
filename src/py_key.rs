//! Walks Python values into the canonical key encoding, without calling Python code.
//!
//! Exact builtin types (and their subclasses, read by value) are encoded; anything else,
//! nesting deeper than `MAX_DEPTH` (which also catches self-referencing containers), or an
//! int subclass too big for i64 makes the request uncacheable: `Err(Uncacheable)`.

use crate::key::{begin_request, tag, write_unordered, Key, KeyBuilder, Secret};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple,
};
use smallvec::SmallVec;
use std::cell::RefCell;

/// Deeper nesting than this is not hashed: the request is served without the cache.
pub const MAX_DEPTH: u32 = 64;
/// Prompts at least this long are hashed with the interpreter released.
const DETACH_AT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uncacheable;

type R = Result<(), Uncacheable>;

/// A str's bytes: borrowed UTF-8, or an owned `surrogatepass` encoding for lone surrogates.
enum StrBytes<'a, 'py> {
    Utf8(&'a [u8]),
    Surrogates(Bound<'py, PyBytes>),
}

impl StrBytes<'_, '_> {
    fn bytes(&self) -> &[u8] {
        match self {
            StrBytes::Utf8(b) => b,
            StrBytes::Surrogates(b) => b.as_bytes(),
        }
    }

    fn tag(&self) -> u8 {
        match self {
            StrBytes::Utf8(_) => tag::STR,
            StrBytes::Surrogates(_) => tag::STR_SURROGATES,
        }
    }
}

fn str_bytes<'a, 'py>(s: &'a Bound<'py, PyString>) -> Result<StrBytes<'a, 'py>, Uncacheable> {
    // Zero-copy for ASCII; other strs keep a cached UTF-8 copy inside the object.
    if let Ok(text) = s.to_str() {
        return Ok(StrBytes::Utf8(text.as_bytes()));
    }
    // Lone surrogates: surrogatepass is injective and its output is never valid UTF-8, so
    // it cannot meet the encoding of any other str.
    let py = s.py();
    // SAFETY: `s` is a live str; the call returns a new reference or NULL with an error set.
    let raw = unsafe {
        ffi::PyUnicode_AsEncodedString(s.as_ptr(), c"utf-8".as_ptr(), c"surrogatepass".as_ptr())
    };
    // SAFETY: `raw` is a new reference (or NULL, which becomes the fetched error).
    match unsafe { Bound::from_owned_ptr_or_err(py, raw) } {
        Ok(obj) => obj
            .cast_into::<PyBytes>()
            .map(StrBytes::Surrogates)
            .map_err(|_| Uncacheable),
        Err(_) => Err(Uncacheable),
    }
}

fn write_str(b: &mut KeyBuilder, s: &Bound<'_, PyString>) -> R {
    let sb = str_bytes(s)?;
    b.sized(sb.tag(), sb.bytes());
    Ok(())
}

/// The prompt: hashed with the interpreter released when it is large, so other threads run.
pub fn write_prompt(b: &mut KeyBuilder, s: &Bound<'_, PyString>) -> R {
    let sb = str_bytes(s)?;
    let data = sb.bytes();
    if data.len() >= DETACH_AT {
        let t = sb.tag();
        // The str (and its UTF-8 buffer) outlives this call: the caller holds a reference.
        s.py().detach(|| b.sized(t, data));
    } else {
        b.sized(sb.tag(), data);
    }
    Ok(())
}

fn write_int(b: &mut KeyBuilder, obj: &Bound<'_, PyAny>, exact: bool) -> R {
    match obj.extract::<i64>() {
        Ok(v) => {
            b.int(v);
            Ok(())
        }
        // A subclass's str() could be user code: only exact ints are read as decimal text.
        Err(_) if exact => {
            let text = obj.str().map_err(|_| Uncacheable)?;
            let t = text.to_str().map_err(|_| Uncacheable)?;
            b.big_int(t.as_bytes());
            Ok(())
        }
        Err(_) => Err(Uncacheable),
    }
}

fn write_seq<'py>(
    b: &mut KeyBuilder,
    secret: &Secret,
    t: u8,
    items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
    depth: u32,
) -> R {
    b.tag(t);
    b.len(items.len());
    for item in items {
        write_value(b, secret, &item, depth + 1)?;
    }
    Ok(())
}

/// Kwargs dicts are small: their pairs stay on the stack.
pub type Items<'py> = SmallVec<[(Bound<'py, PyAny>, Bound<'py, PyAny>); 8]>;

fn dict_items<'py>(d: &Bound<'py, PyDict>) -> Result<Items<'py>, Uncacheable> {
    let items = RefCell::new(Items::new());
    // The closure only collects references, so no Python code runs while iterating.
    d.locked_for_each(|k, v| {
        items
            .try_borrow_mut()
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("re-entered"))?
            .push((k, v));
        Ok(())
    })
    .map_err(|_| Uncacheable)?;
    Ok(items.into_inner())
}

/// Pairs with str keys (kwargs, JSON-like data): in key byte order, hashed in one stream.
/// A dict and the same pairs given as keyword arguments meet here, so they share a key.
fn write_str_pairs<'py>(
    b: &mut KeyBuilder,
    secret: &Secret,
    items: &[(Bound<'py, PyAny>, Bound<'py, PyAny>)],
    depth: u32,
) -> R {
    let mut keyed: SmallVec<[(StrBytes<'_, '_>, &Bound<'_, PyAny>); 8]> = SmallVec::new();
    for (k, v) in items {
        let ks = k.cast::<PyString>().map_err(|_| Uncacheable)?;
        keyed.push((str_bytes(ks)?, v));
    }
    keyed.sort_unstable_by(|a, c| a.0.bytes().cmp(c.0.bytes()));
    b.tag(tag::DICT_STR);
    b.len(keyed.len());
    for (k, v) in &keyed {
        b.sized(k.tag(), k.bytes());
        write_value(b, secret, v, depth + 1)?;
    }
    Ok(())
}

fn write_dict(b: &mut KeyBuilder, secret: &Secret, d: &Bound<'_, PyDict>, depth: u32) -> R {
    let items = dict_items(d)?;
    if items.iter().all(|(k, _)| k.is_instance_of::<PyString>()) {
        return write_str_pairs(b, secret, &items, depth);
    }
    let mut digests = Vec::with_capacity(items.len());
    for (k, v) in &items {
        let mut sub = KeyBuilder::new(secret);
        sub.tag(tag::PAIR);
        write_value(&mut sub, secret, k, depth + 1)?;
        write_value(&mut sub, secret, v, depth + 1)?;
        digests.push(sub.finish());
    }
    write_unordered(b, tag::DICT_ANY, &mut digests);
    Ok(())
}

fn write_set<'py>(
    b: &mut KeyBuilder,
    secret: &Secret,
    t: u8,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: u32,
) -> R {
    let mut digests = Vec::new();
    for item in items {
        let mut sub = KeyBuilder::new(secret);
        sub.tag(tag::ELEMENT);
        write_value(&mut sub, secret, &item, depth + 1)?;
        digests.push(sub.finish());
    }
    write_unordered(b, t, &mut digests);
    Ok(())
}

/// Encodes one value. Exact builtin types are tried first: they are the common case.
pub fn write_value(b: &mut KeyBuilder, secret: &Secret, obj: &Bound<'_, PyAny>, depth: u32) -> R {
    if depth > MAX_DEPTH {
        return Err(Uncacheable);
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return write_str(b, s);
    }
    if obj.is_none() {
        b.none();
        return Ok(());
    }
    if let Ok(v) = obj.cast_exact::<PyBool>() {
        b.bool(v.is_true());
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyInt>() {
        return write_int(b, obj, true);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        b.float(f.value());
        return Ok(());
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return write_dict(b, secret, d, depth);
    }
    if let Ok(l) = obj.cast::<PyList>() {
        // Indexing (not an iterator) so a list that changes under us fails cleanly.
        let n = l.len();
        b.tag(tag::LIST);
        b.len(n);
        for i in 0..n {
            let item = l.get_item(i).map_err(|_| Uncacheable)?;
            write_value(b, secret, &item, depth + 1)?;
        }
        return Ok(());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return write_seq(b, secret, tag::TUPLE, t.iter(), depth);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return write_str(b, s);
    }
    if obj.is_instance_of::<PyInt>() {
        return write_int(b, obj, false);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        b.float(f.value());
        return Ok(());
    }
    if let Ok(by) = obj.cast::<PyBytes>() {
        b.sized(tag::BYTES, by.as_bytes());
        return Ok(());
    }
    if let Ok(ba) = obj.cast::<PyByteArray>() {
        b.sized(tag::BYTEARRAY, &ba.to_vec());
        return Ok(());
    }
    if let Ok(s) = obj.cast::<PyFrozenSet>() {
        return write_set(b, secret, tag::FROZENSET, s.iter(), depth);
    }
    if let Ok(s) = obj.cast::<PySet>() {
        let items: Vec<_> = s.iter().collect();
        return write_set(b, secret, tag::SET, items.into_iter(), depth);
    }
    Err(Uncacheable)
}

/// The digest of a route (any encodable value; in practice a tuple of model names).
pub fn route_digest(secret: &Secret, route: &Bound<'_, PyAny>) -> Result<Key, Uncacheable> {
    let mut b = KeyBuilder::new(secret);
    b.tag(tag::ROUTE_DEF);
    write_value(&mut b, secret, route, 0)?;
    Ok(b.finish())
}

/// The key of (route, prompt, kwargs); None kwargs and an empty dict are the same request.
pub fn key_for(
    secret: &Secret,
    route: Key,
    prompt: &Bound<'_, PyString>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> Result<Key, Uncacheable> {
    let mut b = begin_request(secret, route);
    write_prompt(&mut b, prompt)?;
    b.kwargs();
    match kwargs {
        Some(d) if !d.is_empty() => write_dict(&mut b, secret, d, 0)?,
        _ => {
            b.tag(tag::DICT_STR);
            b.len(0);
        }
    }
    Ok(b.finish())
}

/// `key_for` with the kwargs as (name, value) pairs straight from a vectorcall: the same
/// key a dict of those pairs gives, without building the dict.
pub fn key_for_pairs<'py>(
    secret: &Secret,
    route: Key,
    prompt: &Bound<'py, PyString>,
    pairs: &[(Bound<'py, PyAny>, Bound<'py, PyAny>)],
) -> Result<Key, Uncacheable> {
    let mut b = begin_request(secret, route);
    write_prompt(&mut b, prompt)?;
    b.kwargs();
    write_str_pairs(&mut b, secret, pairs, 0)?;
    Ok(b.finish())
}

/// Keys cross into Python as 16 big-endian bytes: hashable, comparable, and a ready-made
/// key for a shared second tier.
pub fn key_to_py<'py>(py: Python<'py>, key: Key) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &key.to_be_bytes())
}

pub fn key_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Key> {
    let b = obj.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "key must be bytes of length 16, not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let arr: [u8; 16] = b.as_bytes().try_into().map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "key must be 16 bytes long, got {}",
            b.as_bytes().len()
        ))
    })?;
    Ok(Key::from_be_bytes(arr))
}

/// A secret from Python: None for a random one, or exactly 16 bytes.
pub fn secret_from_py(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Secret> {
    match obj {
        None => Ok(Secret::random()),
        Some(o) if o.is_none() => Ok(Secret::random()),
        Some(o) => {
            let b = o.cast::<PyBytes>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err("secret must be bytes of length 16 or None")
            })?;
            let arr: [u8; 16] = b.as_bytes().try_into().map_err(|_| {
                pyo3::exceptions::PyValueError::new_err("secret must be exactly 16 bytes")
            })?;
            Ok(Secret::from_bytes(arr))
        }
    }
}
