//! `Record`: what the response cache stores for one answer.
//!
//! A frozen native object instead of a 5-tuple: 48 bytes against 80, never tracked by the
//! garbage collector (it can only point at strs), and the cache-hit path reads its text
//! as a struct field.

use pyo3::prelude::*;
use pyo3::types::PyString;

/// A str's length in code points, read from the object itself: unlike `len()`, no
/// `__len__` of a str subclass (user code, which may raise) runs.
pub fn code_points(s: &Bound<'_, PyString>) -> PyResult<usize> {
    // SAFETY: `s` is a live str object; the call returns -1 with an error set on failure.
    let n = unsafe { pyo3::ffi::PyUnicode_GetLength(s.as_ptr()) };
    usize::try_from(n).map_err(|_| PyErr::fetch(s.py()))
}

#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct Record {
    text: Py<PyString>,
    model: Py<PyString>,
    prompt_tokens: u32,
    completion_tokens: u32,
    estimated: bool,
}

impl Record {
    pub fn build(
        text: Py<PyString>,
        model: Py<PyString>,
        prompt_tokens: u32,
        completion_tokens: u32,
        estimated: bool,
    ) -> Self {
        Record {
            text,
            model,
            prompt_tokens,
            completion_tokens,
            estimated,
        }
    }

    pub fn text_ref<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.text.bind(py).clone()
    }
}

#[pymethods]
impl Record {
    #[new]
    #[pyo3(signature = (text, model, prompt_tokens=0, completion_tokens=0, estimated=false))]
    fn new(
        text: Bound<'_, PyString>,
        model: Bound<'_, PyString>,
        prompt_tokens: u32,
        completion_tokens: u32,
        estimated: bool,
    ) -> Self {
        Record {
            text: text.unbind(),
            model: model.unbind(),
            prompt_tokens,
            completion_tokens,
            estimated,
        }
    }

    #[getter]
    fn text(&self, py: Python<'_>) -> Py<PyString> {
        self.text.clone_ref(py)
    }

    #[getter]
    fn model(&self, py: Python<'_>) -> Py<PyString> {
        self.model.clone_ref(py)
    }

    #[getter]
    fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    #[getter]
    fn completion_tokens(&self) -> u32 {
        self.completion_tokens
    }

    #[getter]
    fn estimated(&self) -> bool {
        self.estimated
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Record(text=<{} chars>, model={}, prompt_tokens={}, completion_tokens={}, estimated={})",
            code_points(self.text.bind(py))?,
            self.model.bind(py).repr()?,
            self.prompt_tokens,
            self.completion_tokens,
            if self.estimated { "True" } else { "False" }
        ))
    }
}
