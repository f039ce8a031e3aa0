//! `Picker`: which deployment of a model an attempt goes to, in one native call.
//!
//! A model may have several deployments (API keys, regions), each a `ModelCore` with its
//! own breaker and counters. `pick(avoid, exclude)` chooses among those not in the bitmask
//! `exclude` whose breaker would admit an attempt now, preferring those not in `avoid`
//! (the deployments this request already tried): by weight at random (`weighted`), the fewest attempts in
//! flight (`least-busy`, ties by weight at random), the lowest latency average
//! (`latency`, with a share of weighted picks so that a deployment that was slow, or has
//! no samples yet, is tried again), the most headroom under its rate limits (`usage`). A
//! deployment whose rate limiter has no headroom (out of quota, or cooling down after a
//! 429) is not picked. -1 when none would admit.
//!
//! Random numbers: SplitMix64 over one atomic counter, so every pick draws its own value
//! without a lock (seedable for tests).

use crate::py_limiter::RateLimiter;
use crate::py_model::ModelCore;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most deployments a model may have: `avoid` is a 64-bit mask.
pub const MAX_DEPLOYMENTS: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Strategy {
    Weighted,
    LeastBusy,
    Latency,
    Usage,
}

impl Strategy {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "weighted" => Some(Strategy::Weighted),
            "least-busy" => Some(Strategy::LeastBusy),
            "latency" => Some(Strategy::Latency),
            "usage" => Some(Strategy::Usage),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Strategy::Weighted => "weighted",
            Strategy::LeastBusy => "least-busy",
            Strategy::Latency => "latency",
            Strategy::Usage => "usage",
        }
    }
}

fn splitmix(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform float in [0, 1) from 53 random bits.
fn unit(state: &AtomicU64) -> f64 {
    (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64
}

#[pyclass(frozen, module = "agenticaiframework._native")]
pub struct Picker {
    strategy: Strategy,
    cores: Vec<Py<ModelCore>>,
    weights: Vec<f64>,
    /// Each deployment's rate limiter, if it has one: one without headroom (out of quota,
    /// or cooling down after a 429) is not picked.
    limiters: Vec<Option<Py<RateLimiter>>>,
    /// The share of `latency` picks made by weight instead (exploration).
    explore: f64,
    rng: AtomicU64,
}

/// A few deployment indices, on the stack (a pick allocates nothing).
struct Set {
    idx: [u8; MAX_DEPLOYMENTS],
    n: usize,
}

impl Set {
    fn new() -> Self {
        Set {
            idx: [0; MAX_DEPLOYMENTS],
            n: 0,
        }
    }

    fn push(&mut self, i: usize) {
        // Callers push at most MAX_DEPLOYMENTS distinct indices below it (checked at new()).
        if self.n < MAX_DEPLOYMENTS {
            self.idx[self.n] = i as u8;
            self.n += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.idx[..self.n].iter().map(|&i| usize::from(i))
    }

    fn filtered(&self, keep: impl Fn(usize) -> bool) -> Set {
        let mut out = Set::new();
        for i in self.iter().filter(|&i| keep(i)) {
            out.push(i);
        }
        out
    }
}

impl Picker {
    /// Deployments not in `exclude` that would admit now, preferring those not in `avoid`.
    fn candidates(&self, py: Python<'_>, avoid: u64, exclude: u64) -> PyResult<Set> {
        let mut ok = Set::new();
        for (i, c) in self.cores.iter().enumerate() {
            if exclude & (1u64 << i) == 0 && c.get().admits(py)? && self.headroom(py, i)? > 0.0 {
                ok.push(i);
            }
        }
        let fresh = ok.filtered(|i| avoid & (1u64 << i) == 0);
        Ok(if fresh.n == 0 { ok } else { fresh })
    }

    fn headroom(&self, py: Python<'_>, i: usize) -> PyResult<f64> {
        match &self.limiters[i] {
            Some(l) => l.get().headroom_native(py),
            None => Ok(1.0),
        }
    }

    fn by_weight(&self, among: &Set) -> usize {
        let total: f64 = among.iter().map(|i| self.weights[i]).sum();
        let mut r = unit(&self.rng) * total;
        let mut last = 0;
        for i in among.iter() {
            r -= self.weights[i];
            if r < 0.0 {
                return i;
            }
            last = i;
        }
        last // float rounding left r at 0: the last one
    }
}

#[pymethods]
impl Picker {
    #[new]
    #[pyo3(signature = (strategy, cores, weights, limiters=None, *, explore=0.05, seed=None))]
    fn new(
        strategy: &str,
        cores: Vec<Py<ModelCore>>,
        weights: Vec<f64>,
        limiters: Option<Vec<Option<Py<RateLimiter>>>>,
        explore: f64,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let strategy = Strategy::parse(strategy).ok_or_else(|| {
            PyValueError::new_err(format!(
                "routing must be 'weighted', 'least-busy', 'latency' or 'usage', not {strategy:?}"
            ))
        })?;
        if cores.is_empty() || cores.len() > MAX_DEPLOYMENTS {
            return Err(PyValueError::new_err(format!(
                "a model has 1 to {MAX_DEPLOYMENTS} deployments, not {}",
                cores.len()
            )));
        }
        if weights.len() != cores.len() {
            return Err(PyTypeError::new_err(
                "weights must have one entry per deployment",
            ));
        }
        let limiters = limiters.unwrap_or_else(|| cores.iter().map(|_| None).collect());
        if limiters.len() != cores.len() {
            return Err(PyTypeError::new_err(
                "limiters must have one entry per deployment",
            ));
        }
        if let Some(w) = weights
            .iter()
            .find(|w| !(w.is_finite() && **w > 0.0 && **w <= 1e6))
        {
            return Err(PyValueError::new_err(format!(
                "weight must be a number > 0 and <= 1e6, not {w}"
            )));
        }
        if !(0.0..=1.0).contains(&explore) {
            return Err(PyValueError::new_err(format!(
                "explore must be in [0, 1], not {explore}"
            )));
        }
        let seed = seed.unwrap_or_else(|| {
            // Distinct per picker and per process without a syscall: the address and time.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (cores.as_ptr() as u64).rotate_left(32)
        });
        Ok(Picker {
            strategy,
            cores,
            weights,
            limiters,
            explore,
            rng: AtomicU64::new(seed),
        })
    }

    /// The index of the deployment to try now, or -1 when none would admit an attempt.
    /// Bitmasks of deployment indices: ``avoid``, passed over while others would admit
    /// (those a request already tried); ``exclude``, never picked (those that refused).
    #[pyo3(signature = (avoid=0, exclude=0))]
    fn pick(&self, py: Python<'_>, avoid: u64, exclude: u64) -> PyResult<i64> {
        let among = self.candidates(py, avoid, exclude)?;
        match among.n {
            0 => return Ok(-1),
            1 => return Ok(among.idx[0] as i64),
            _ => {}
        }
        let i = match self.strategy {
            Strategy::Weighted => self.by_weight(&among),
            Strategy::LeastBusy => {
                let busy = |i: usize| self.cores[i].get().stats_ref().in_flight();
                let least = among.iter().map(busy).min().unwrap_or(0);
                self.by_weight(&among.filtered(|i| busy(i) == least))
            }
            Strategy::Latency => {
                let avg = |i: usize| {
                    self.cores[i]
                        .get()
                        .stats_ref()
                        .ewma_ns
                        .load(Ordering::Relaxed)
                };
                // A deployment with no sample yet is tried first; some picks go by weight.
                let unknown = among.filtered(|i| avg(i) == 0);
                if unknown.n > 0 {
                    self.by_weight(&unknown)
                } else if unit(&self.rng) < self.explore {
                    self.by_weight(&among)
                } else {
                    among.iter().min_by_key(|&i| avg(i)).unwrap_or(0)
                }
            }
            Strategy::Usage => {
                // The most headroom under its limits (ties, e.g. no limits: by weight).
                let mut best = f64::NEG_INFINITY;
                let mut room = [0.0f64; MAX_DEPLOYMENTS];
                for i in among.iter() {
                    room[i] = self.headroom(py, i)?;
                    best = best.max(room[i]);
                }
                self.by_weight(&among.filtered(|i| room[i] >= best))
            }
        };
        Ok(i as i64)
    }

    #[getter]
    fn strategy(&self) -> &'static str {
        self.strategy.as_str()
    }

    fn __len__(&self) -> usize {
        self.cores.len()
    }
}
