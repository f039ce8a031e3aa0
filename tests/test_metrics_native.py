"""Native counters and latency histograms; the cache and breaker under 8 threads."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenticaiframework._native import (
    BreakerCore,
    ManagerStats,
    ModelCore,
    ModelStats,
    ResponseCache,
)


@settings(max_examples=200, deadline=None)
@given(
    latencies=st.lists(st.floats(1e-6, 1000.0), min_size=1, max_size=300),
    q=st.sampled_from([0.5, 0.95, 0.99, 0.0, 1.0]),
)
def test_quantiles_within_one_percent(latencies: list[float], q: float) -> None:
    stats = ModelStats()
    for s in latencies:
        stats.record_success(s)
    ordered = sorted(latencies)
    rank = min(max(math.ceil(q * len(ordered)), 1), len(ordered))
    exact = ordered[rank - 1]
    got = stats.quantile(q)
    assert got is not None
    # The histogram counts whole nanoseconds: allow that truncation beside the 1%.
    assert abs(got - exact) <= exact * 0.01 + 2e-9


def test_model_snapshot() -> None:
    stats = ModelStats()
    assert stats.quantile(0.5) is None
    stats.record_attempt()
    stats.record_success(0.5, 10, 5)
    stats.record_attempt(retry=True)
    stats.record_failure(1.5)
    stats.record_short_circuit()
    snap = stats.snapshot()
    assert snap["requests"] == 2 and snap["retries"] == 1
    assert snap["successes"] == 1 and snap["failures"] == 1
    assert snap["short_circuits"] == 1
    assert snap["tokens"] == 15 and snap["prompt_tokens"] == 10
    assert snap["avg_latency"] == pytest.approx(1.0)
    assert snap["p99_latency"] == pytest.approx(1.5, rel=0.01)
    assert (snap["hedged_requests"], snap["hedge_wins"], stats.latency_count()) == (0, 0, 2)
    stats.record_hedge()
    stats.record_hedge()
    stats.record_hedge_win()
    snap = stats.snapshot()
    assert (snap["hedged_requests"], snap["hedge_wins"]) == (2, 1)
    stats.reset()
    snap = stats.snapshot()
    assert snap["requests"] == snap["hedged_requests"] == stats.latency_count() == 0


def test_invalid_records() -> None:
    stats = ModelStats()
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError):
            stats.record_success(bad)
    with pytest.raises(ValueError):
        stats.record_success(0.1, -1)
    with pytest.raises(ValueError):
        ManagerStats().record_success(tokens=-5)
    rt = ModelCore(BreakerCore(), ModelStats())
    for token in (0, -1, 3):
        with pytest.raises(ValueError):
            rt.success(token)


def test_model_core_counts_one_attempt() -> None:
    breaker, stats = BreakerCore(1, 10.0), ModelStats()
    rt = ModelCore(breaker, stats)
    token = rt.begin()
    assert token
    rt.failure(token)
    assert breaker.state == "open"
    assert rt.begin(retry=True) == 0  # rejected: counted as a short-circuit
    snap = stats.snapshot()
    assert snap["requests"] == 1 and snap["failures"] == 1 and snap["short_circuits"] == 1


def run_threads(n: int, fn: object) -> None:
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_manager_stats_exact_under_threads_with_consistent_snapshots() -> None:
    stats = ManagerStats()
    stop = threading.Event()
    bad: list[dict[str, int]] = []

    def reader() -> None:
        while not stop.is_set():
            s = stats.snapshot()
            if s["successful_requests"] + s["failed_requests"] > s["total_requests"]:
                bad.append(s)

    r = threading.Thread(target=reader)
    r.start()

    def writer(i: int) -> None:
        for j in range(10_000):
            stats.record_request()
            if j % 10 == 0:
                stats.record_failure(retries=1)
            else:
                stats.record_success(tokens=2)

    run_threads(8, writer)
    stop.set()
    r.join()
    s = stats.snapshot()
    assert s["total_requests"] == 80_000
    assert s["failed_requests"] == 8_000 and s["successful_requests"] == 72_000
    assert s["total_tokens"] == 144_000 and s["total_retries"] == 8_000
    assert bad == []


def test_cache_stats_exact_under_threads() -> None:
    cache = ResponseCache(64, shards=4)
    keys = [bytes([i]) * 16 for i in range(100)]
    gets = [0] * 8
    puts = [0] * 8

    def worker(i: int) -> None:
        for j in range(5_000):
            k = keys[(i * 31 + j * 7) % len(keys)]
            if j % 3 == 0:
                cache.put(k, j)
                puts[i] += 1
            elif j % 11 == 0:
                cache.invalidate(k)
            else:
                cache.get(k)
                gets[i] += 1

    run_threads(8, worker)
    s = cache.stats()
    assert s["hits"] + s["misses"] == sum(gets)
    assert s["inserts"] + s["rejections"] == sum(puts)
    assert len(cache) <= 64


def test_breaker_trial_limit_under_threads() -> None:
    clock = [0.0]
    breaker = BreakerCore(1, 1.0, 3, clock=lambda: clock[0])
    breaker.on_failure(breaker.acquire())
    clock[0] = 2.0
    lock = threading.Lock()
    held = 0
    peak = 0

    def worker(i: int) -> None:
        nonlocal held, peak
        for j in range(2_000):
            permit = breaker.acquire()
            if permit == 2:
                with lock:
                    held += 1
                    peak = max(peak, held)
                    assert breaker.trials_outstanding <= 3
                    held -= 1
                if (i + j) % 2:
                    breaker.on_failure(permit)
                    clock[0] += 1.0  # let the next trial in
                else:
                    breaker.release(permit)
            elif permit == 1:
                breaker.on_failure(permit)

    run_threads(8, worker)
    assert peak <= 3
    assert breaker.trials_outstanding == 0


def _bucket_of(ns: int) -> int:
    """src/metrics.rs ``bucket_of``, in Python: 64 sub-buckets per power of two."""
    v = min(ns, (1 << 42) - 1)
    if v < 64:
        return v
    e = v.bit_length() - 1
    return 64 + (e - 6) * 64 + ((v >> (e - 6)) - 64)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)  # the native conversion: truncated nanoseconds


_bounds = st.lists(
    st.floats(0.0, 5000.0, allow_nan=False, allow_infinity=False), max_size=20, unique=True
).map(sorted)


@settings(max_examples=300, deadline=None)
@given(latencies=st.lists(st.floats(0.0, 5000.0), max_size=300), bounds=_bounds)
def test_latency_buckets_match_a_plain_model(latencies: list[float], bounds: list[float]) -> None:
    """Prometheus cumulative counts from the native buckets, against counting the values:
    exactly the model's bucket rule, and within one native bucket of the exact count."""
    stats = ModelStats()
    for i, s in enumerate(latencies):
        (stats.record_success if i % 2 else stats.record_failure)(s)
    cumulative, count, total = stats.latency_buckets(bounds)
    assert count == len(latencies)
    assert total == sum(_ns(s) for s in latencies) / 1e9
    assert len(cumulative) == len(bounds)
    for b, got in zip(bounds, cumulative, strict=True):
        model = sum(1 for s in latencies if _bucket_of(_ns(s)) <= _bucket_of(_ns(b)))
        assert got == model
        # Every value <= b is counted, and none more than one bucket (b/64) above b
        # (values past 2^42 ns, about 73 minutes, are clamped into the top bucket).
        assert sum(1 for s in latencies if s <= b) <= got
        top = (1 << 42) - 1
        assert got <= sum(1 for s in latencies if min(_ns(s), top) <= _ns(b) + _ns(b) // 64)
    assert cumulative == sorted(cumulative)


def test_latency_buckets_reject_bad_bounds() -> None:
    stats = ModelStats()
    stats.record_success(0.5)
    for bad in ([1.0, 1.0], [2.0, 1.0], [float("nan")], [float("inf")], [-0.5]):
        with pytest.raises(ValueError):
            stats.latency_buckets(bad)
        with pytest.raises(ValueError):
            stats.ttfc_buckets(bad)
    for wrong in ("0.1", None, [object()]):
        with pytest.raises(TypeError):
            stats.latency_buckets(wrong)  # type: ignore[arg-type]
    assert stats.latency_buckets([]) == ([], 1, 0.5)
    assert stats.ttfc_buckets([0.1]) == ([0], 0, 0.0)
