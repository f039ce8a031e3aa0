//! Atomic counters and log-linear latency histograms.
//!
//! Writers bump the "started" counter first and outcome counters after it with Release;
//! readers load outcomes with Acquire before the started counter. So every snapshot keeps
//! the invariants `successes + failures <= requests` and `hits + misses <= requests`, even
//! while other threads are writing, and is exact once they stop.
//!
//! A histogram's buckets come in chunks of one exponent band each, allocated on the first
//! record into that band: an idle histogram is a few hundred bytes, a busy one holds only
//! the bands its latencies fall in (a few), not all 2,368 buckets (18.5 KB).

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

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

/// Buckets per chunk: one exponent band (the first chunk is the exact band 0..64 ns).
const CHUNK: usize = SUB as usize;
const CHUNKS: usize = BUCKETS / CHUNK;
const _: () = assert!(CHUNKS * CHUNK == BUCKETS);

type Chunk = [AtomicU64; CHUNK];

pub struct Histogram {
    /// Null until the first record into the chunk; then never freed before the histogram
    /// itself (a recorder may hold a reference to it), so `reset` zeroes instead.
    chunks: [AtomicPtr<Chunk>; CHUNKS],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Histogram {
    fn drop(&mut self) {
        for c in &self.chunks {
            let p = c.swap(std::ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` in `alloc_chunk` and was published
                // once; `&mut self` means no recorder can still reach it.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// The chunk `c`, or None before anything was recorded into it.
    fn chunk(&self, c: usize) -> Option<&Chunk> {
        // Acquire pairs with the publishing compare_exchange: the zeroed buckets are seen.
        let p = self.chunks[c].load(Ordering::Acquire);
        // SAFETY: a non-null pointer is a published chunk, alive as long as `self`.
        unsafe { p.as_ref() }
    }

    /// Allocates chunk `c` if no one has yet. Lock-free: racing recorders each allocate,
    /// one publishes by compare_exchange, the others free theirs and use the winner's.
    #[cold]
    fn alloc_chunk(&self, c: usize) -> &Chunk {
        let fresh: *mut Chunk = Box::into_raw(Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        match self.chunks[c].compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: just published; freed only by `Drop`.
            Ok(_) => unsafe { &*fresh },
            Err(winner) => {
                // SAFETY: `fresh` was never published, so this thread owns it alone; the
                // winner is published and alive as long as `self`.
                drop(unsafe { Box::from_raw(fresh) });
                unsafe { &*winner }
            }
        }
    }

    pub fn record(&self, ns: u64) {
        let b = bucket_of(ns);
        let (c, i) = (b / CHUNK, b % CHUNK);
        let chunk = match self.chunk(c) {
            Some(chunk) => chunk,
            None => self.alloc_chunk(c),
        };
        chunk[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Release);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Ordering::Relaxed)
    }

    /// Bytes allocated for buckets (the chunks recorded into so far).
    pub fn heap_bytes(&self) -> usize {
        (0..CHUNKS).filter(|&c| self.chunk(c).is_some()).count() * std::mem::size_of::<Chunk>()
    }

    /// (first bucket index, counts) of each allocated chunk, in bucket order: one copy, so
    /// every figure computed from it agrees with the others.
    fn copy(&self) -> Vec<(usize, [u64; CHUNK])> {
        (0..CHUNKS)
            .filter_map(|c| {
                let chunk = self.chunk(c)?;
                Some((
                    c * CHUNK,
                    std::array::from_fn(|i| chunk[i].load(Ordering::Relaxed)),
                ))
            })
            .collect()
    }

    /// Prometheus-style cumulative counts: for each upper bound (nanoseconds, in
    /// non-decreasing order) the number of values in buckets up to and including the one
    /// the bound falls in, and the total of all buckets (the `+Inf` count), from one copy.
    ///
    /// A bucket that straddles a bound is counted wholly under it, so the count at bound
    /// `b` includes every value `<= b` and may include values of `b`'s own bucket above
    /// it: at most `b / 64` above `b` (exact below 64 ns, and when `b` is a bucket's last
    /// nanosecond). Values above `MAX_NS` were clamped into the top bucket when recorded.
    pub fn cumulative(&self, bounds_ns: &[u64]) -> (Vec<u64>, u64) {
        let limits: Vec<usize> = bounds_ns.iter().map(|&b| bucket_of(b)).collect();
        let mut out = Vec::with_capacity(limits.len());
        let mut seen = 0u64;
        for (base, cs) in self.copy() {
            for (i, &c) in cs.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                // Bounds whose bucket lies before this one are complete.
                while out.len() < limits.len() && limits[out.len()] < base + i {
                    out.push(seen);
                }
                seen += c;
            }
        }
        out.resize(limits.len(), seen);
        (out, seen)
    }

    /// Nearest-rank quantiles (each `q` in [0, 1]) in nanoseconds, in one pass over a copy
    /// of the buckets. None when nothing was recorded.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let counts = self.copy();
        let total: u64 = counts.iter().flat_map(|(_, cs)| cs.iter()).sum();
        qs.iter()
            .map(|&q| {
                if total == 0 {
                    return None;
                }
                let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
                let mut seen = 0;
                for (base, cs) in &counts {
                    for (i, c) in cs.iter().enumerate() {
                        seen += c;
                        if seen >= rank {
                            return Some(bucket_value(base + i));
                        }
                    }
                }
                None
            })
            .collect()
    }

    /// Zeroes the buckets but keeps the chunks: a concurrent recorder may be holding one.
    pub fn reset(&self) {
        for c in 0..CHUNKS {
            if let Some(chunk) = self.chunk(c) {
                for b in chunk {
                    b.store(0, Ordering::Relaxed);
                }
            }
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

    /// One counter (Acquire, as `snapshot` reads it).
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        self.c[i].load(Ordering::Acquire)
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

    /// Nearest-rank over a dense bucket array: what the histogram computed before chunks.
    fn dense_quantile(xs: &[u64], q: f64) -> f64 {
        let mut counts = vec![0u64; BUCKETS];
        for &x in xs {
            counts[bucket_of(x)] += 1;
        }
        let rank = ((q * xs.len() as f64).ceil() as u64).clamp(1, xs.len() as u64);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(i);
            }
        }
        unreachable!("rank <= total")
    }

    #[test]
    fn chunks_are_allocated_on_first_record_only() {
        let chunk = std::mem::size_of::<Chunk>();
        let h = Histogram::new();
        assert_eq!(h.heap_bytes(), 0);
        // The whole idle histogram: the chunk pointers and two counters, no buckets.
        assert!(std::mem::size_of::<Histogram>() <= 320);
        h.record(1_500_000); // 1.5 ms
        h.record(1_600_000); // same band
        assert_eq!(h.heap_bytes(), chunk);
        h.record(3_000_000); // the next band
        h.record(7); // the exact band
        h.record(u64::MAX); // the top band
        assert_eq!(h.heap_bytes(), 4 * chunk);
        h.reset();
        assert_eq!(h.heap_bytes(), 4 * chunk, "reset zeroes, it does not free");
        assert_eq!(h.quantiles(&[0.5]), vec![None]);
        assert_eq!(h.count(), 0);
        h.record(7);
        assert_eq!(h.quantiles(&[0.0, 1.0]), vec![Some(7.0), Some(7.0)]);
    }

    #[test]
    fn quantiles_match_the_dense_histogram() {
        // Values over every band, in a scrambled order.
        let xs: Vec<u64> = (0..20_000u64)
            .map(|i| {
                let r = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
                r >> (r % 64)
            })
            .collect();
        let h = Histogram::new();
        for &x in &xs {
            h.record(x);
        }
        let qs: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
        let got = h.quantiles(&qs);
        for (q, g) in qs.iter().zip(got) {
            assert_eq!(g, Some(dense_quantile(&xs, *q)), "q={q}");
        }
    }

    /// The cumulative counts a dense bucket array gives, counted value by value.
    fn dense_cumulative(xs: &[u64], bounds: &[u64]) -> Vec<u64> {
        bounds
            .iter()
            .map(|&b| xs.iter().filter(|&&x| bucket_of(x) <= bucket_of(b)).count() as u64)
            .collect()
    }

    #[test]
    fn cumulative_matches_the_dense_histogram() {
        let xs: Vec<u64> = (0..5_000u64)
            .map(|i| {
                let r = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23);
                r >> (r % 64)
            })
            .collect();
        let h = Histogram::new();
        for &x in &xs {
            h.record(x);
        }
        let mut bounds: Vec<u64> = vec![0, 1, 63, 64, 65, 1_000, 5_000_000, 1 << 40];
        bounds.extend([MAX_NS, u64::MAX]);
        let (got, total) = h.cumulative(&bounds);
        assert_eq!(got, dense_cumulative(&xs, &bounds));
        assert_eq!(total, xs.len() as u64);
        assert_eq!(
            got.last(),
            Some(&total),
            "the top bucket holds the clamped values"
        );
    }

    #[test]
    fn cumulative_brackets_the_exact_counts() {
        // Every value <= a bound is counted; nothing more than 1/64 above it is.
        let xs: Vec<u64> = (1..=20_000u64).map(|i| i * 997).collect();
        let h = Histogram::new();
        for &x in &xs {
            h.record(x);
        }
        let bounds: Vec<u64> = (1..200u64).map(|i| i * 99_991).collect();
        let (got, _) = h.cumulative(&bounds);
        for (&b, &n) in bounds.iter().zip(&got) {
            let at_most = xs.iter().filter(|&&x| x <= b).count() as u64;
            let within = xs.iter().filter(|&&x| x <= b + b / 64).count() as u64;
            assert!(
                at_most <= n && n <= within,
                "bound {b}: {at_most} <= {n} <= {within}"
            );
        }
    }

    #[test]
    fn cumulative_is_exact_on_bucket_edges_and_empty_when_idle() {
        let h = Histogram::new();
        assert_eq!(h.cumulative(&[0, 10, u64::MAX]), (vec![0, 0, 0], 0));
        assert_eq!(h.cumulative(&[]), (vec![], 0));
        // 1 ms..2 ms: bucket width 2^14 ns. The last nanosecond of a bucket is exact.
        let lo = 1u64 << 20;
        let width = 1u64 << 14;
        for x in [lo, lo + width - 1, lo + width, lo + 5 * width] {
            h.record(x);
        }
        let (got, total) = h.cumulative(&[lo - 1, lo + width - 1, lo + width, lo + 4 * width]);
        assert_eq!((got, total), (vec![0, 2, 3, 3], 4));
    }

    #[test]
    fn racing_first_records_lose_nothing() {
        use std::sync::{Arc, Barrier};
        const THREADS: usize = 8;
        let xs: Vec<u64> = (0..2_000u64).map(|i| (i * 7919) << (i % 40)).collect();
        for _ in 0..20 {
            // A fresh histogram each round: every thread races to allocate every chunk.
            let h = Arc::new(Histogram::new());
            let start = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (h, start, xs) = (h.clone(), start.clone(), xs.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        for &x in &xs {
                            h.record(x);
                        }
                    })
                })
                .collect();
            for t in handles {
                t.join().expect("recorder thread");
            }
            assert_eq!(h.count(), (THREADS * xs.len()) as u64);
            let all: Vec<u64> = xs
                .iter()
                .copied()
                .cycle()
                .take(THREADS * xs.len())
                .collect();
            let qs = [0.0, 0.01, 0.5, 0.95, 0.99, 1.0];
            let want: Vec<_> = qs.iter().map(|&q| Some(dense_quantile(&all, q))).collect();
            assert_eq!(h.quantiles(&qs), want);
            let bands: std::collections::HashSet<usize> =
                xs.iter().map(|&x| bucket_of(x) / CHUNK).collect();
            assert_eq!(h.heap_bytes(), bands.len() * std::mem::size_of::<Chunk>());
        }
    }
}
