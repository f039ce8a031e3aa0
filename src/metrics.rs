//! Atomic counters and log-linear latency histograms.
//!
//! Writers bump the "started" counter first and outcome counters after it with Release;
//! readers load outcomes with Acquire before the started counter. So every snapshot keeps
//! the invariants `successes + failures <= requests` and `hits + misses <= requests`, even
//! while other threads are writing, and is exact once they stop.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: bucket width is at most 1/64 of its lower bound, so the
/// bucket midpoint is within 0.79% of any value in it.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Latencies are recorded in nanoseconds and clamped below 2^42 ns (about 73 minutes).
const MAX_EXP: u32 = 41;
const BUCKETS: usize = (SUB + (MAX_EXP as u64 + 1 - SUB_BITS as u64) * SUB) as usize;
const MAX_NS: u64 = (1 << (MAX_EXP + 1)) - 1;

fn bucket_of(ns: u64) -> usize {
    let v = ns.min(MAX_NS);
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let m = (v >> (e - SUB_BITS)) - SUB;
    (SUB + (e - SUB_BITS) as u64 * SUB + m) as usize
}

/// The value a bucket stands for: exact below 64 ns, else the bucket's midpoint.
fn bucket_value(i: usize) -> f64 {
    let i = i as u64;
    if i < SUB {
        return i as f64;
    }
    let e = (i - SUB) / SUB + SUB_BITS as u64;
    let m = (i - SUB) % SUB;
    let width = 1u64 << (e - SUB_BITS as u64);
    let lo = (SUB + m) * width;
    lo as f64 + (width as f64 - 1.0) / 2.0
}

pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn record(&self, ns: u64) {
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Release);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Ordering::Relaxed)
    }

    /// Nearest-rank quantiles (each `q` in [0, 1]) in nanoseconds, in one pass over a copy
    /// of the buckets. None when nothing was recorded.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        qs.iter()
            .map(|&q| {
                if total == 0 {
                    return None;
                }
                let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
                let mut seen = 0;
                for (i, c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        return Some(bucket_value(i));
                    }
                }
                None
            })
            .collect()
    }

    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        self.sum_ns.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Release);
    }
}

/// A fixed set of named counters.
pub struct Counters<const N: usize> {
    c: [AtomicU64; N],
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters {
            c: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl<const N: usize> Counters<N> {
    /// Counters that open an operation (requests, attempts): written before the outcome.
    #[inline]
    pub fn start(&self, i: usize, n: u64) {
        self.c[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Counters that close one: Release, so a reader that sees them sees the start too.
    #[inline]
    pub fn finish(&self, i: usize, n: u64) {
        self.c[i].fetch_add(n, Ordering::Release);
    }

    /// Reads outcome counters (listed in `order`, outcomes first) before the starts.
    pub fn snapshot(&self, order: &[usize; N]) -> [u64; N] {
        let mut out = [0; N];
        for &i in order {
            out[i] = self.c[i].load(Ordering::Acquire);
        }
        out
    }

    pub fn reset(&self) {
        for c in &self.c {
            c.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 30, (1 << 30) + 12_345, MAX_NS, u64::MAX]) {
            let b = bucket_of(ns);
            assert!(b < BUCKETS);
            assert!(b >= last || ns >= 1 << 30);
            last = b;
            let v = bucket_value(b);
            let exact = ns.min(MAX_NS) as f64;
            assert!((v - exact).abs() <= exact * 0.008 + 0.5, "{ns} -> {v}");
        }
    }

    #[test]
    fn quantiles_within_one_percent() {
        let h = Histogram::new();
        let mut xs: Vec<u64> = (1..=10_000u64).map(|i| i * i * 37 + 1000).collect();
        for &x in &xs {
            h.record(x);
        }
        xs.sort_unstable();
        let qs = [0.5, 0.95, 0.99, 1.0, 0.0];
        let got = h.quantiles(&qs);
        for (q, g) in qs.iter().zip(got) {
            let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
            let exact = xs[rank - 1] as f64;
            let g = g.expect("recorded");
            assert!((g - exact).abs() / exact < 0.01, "q={q} {g} vs {exact}");
        }
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        assert_eq!(Histogram::new().quantiles(&[0.5]), vec![None]);
    }
}
