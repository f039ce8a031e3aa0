//! Loom model of the counters' snapshot protocol in `src/metrics.rs` (the real file, with
//! loom's atomics: see build.rs). Run with `make rust-loom`.

#[cfg(test)]
#[allow(dead_code)]
mod metrics {
    include!(concat!(env!("OUT_DIR"), "/metrics.rs"));
}

#[cfg(test)]
mod tests {
    use super::metrics::Counters;
    use loom::sync::Arc;

    /// Slots as `ManagerStats` uses them: one "started" counter, outcomes after it.
    const REQUESTS: usize = 0;
    const SUCCESSES: usize = 1;
    const FAILURES: usize = 2;
    const HITS: usize = 3;
    /// Outcomes before starts, as `py_metrics` reads them.
    const ORDER: [usize; 4] = [SUCCESSES, FAILURES, HITS, REQUESTS];
    /// The wrong order: the started counter first.
    const STARTS_FIRST: [usize; 4] = [REQUESTS, SUCCESSES, FAILURES, HITS];

    fn model<F: Fn() + Sync + Send + 'static>(f: F) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(3);
        }
        b.check(f);
    }

    /// Two writers (a hit that succeeds, a miss that fails) and a reader taking snapshots
    /// while they write; `order` is the order the reader loads the counters in.
    fn writers_and_reader(order: [usize; 4]) {
        let c = Arc::new(Counters::<4>::default());
        let hit = {
            let c = c.clone();
            loom::thread::spawn(move || {
                c.start(REQUESTS, 1);
                c.finish(HITS, 1);
                c.finish(SUCCESSES, 1);
            })
        };
        let fail = {
            let c = c.clone();
            loom::thread::spawn(move || {
                c.start(REQUESTS, 1);
                c.finish(FAILURES, 1);
            })
        };
        for _ in 0..2 {
            let s = c.snapshot(&order);
            assert!(
                s[SUCCESSES] + s[FAILURES] <= s[REQUESTS] && s[HITS] <= s[REQUESTS],
                "outcomes exceed requests: {s:?}"
            );
        }
        hit.join().unwrap();
        fail.join().unwrap();
        assert_eq!(c.snapshot(&order), [2, 1, 1, 1], "exact once writers stop");
    }

    /// Every snapshot taken during writes keeps `successes + failures <= requests` and
    /// `hits <= requests`, and the totals are exact once the writers stop.
    #[test]
    fn snapshots_never_show_more_outcomes_than_requests() {
        model(|| writers_and_reader(ORDER));
    }

    /// The control: reading the started counter first can show an outcome without its
    /// request, so the test above is not passing vacuously.
    #[test]
    #[should_panic(expected = "outcomes exceed requests")]
    fn reading_starts_first_would_break_the_invariant() {
        model(|| writers_and_reader(STARTS_FIRST));
    }
}
