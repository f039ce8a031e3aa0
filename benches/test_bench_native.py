"""The native primitives beside the floor: a dict lookup and a plain function call."""

from __future__ import annotations

from typing import Any

import pytest

from agenticaiframework._native import (
    BreakerCore,
    ModelCore,
    ModelStats,
    RateLimiter,
    ResponseCache,
)
from benches.conftest import PROMPT_32


def plain(x: Any) -> Any:
    return x


def test_floor_dict_lookup(benchmark: Any) -> None:
    d = {PROMPT_32: "ok"}
    benchmark(d.__getitem__, PROMPT_32)


def test_floor_function_call(benchmark: Any) -> None:
    benchmark(plain, PROMPT_32)


def test_cache_get_hit(benchmark: Any) -> None:
    cache = ResponseCache(1000)
    key = cache.key(("m",), PROMPT_32)
    assert key is not None
    cache.put(key, "ok")
    assert benchmark(cache.get, key) == "ok"


def test_cache_lookup_hit_with_hashing(benchmark: Any) -> None:
    cache = ResponseCache(1000)
    key = cache.key("m", PROMPT_32)
    assert key is not None
    cache.put(key, "ok")
    assert benchmark(cache.lookup, "m", PROMPT_32) == (True, "ok")


def test_breaker_acquire_closed(benchmark: Any) -> None:
    b = BreakerCore()
    assert benchmark(b.acquire) == 1


def test_breaker_acquire_open(benchmark: Any) -> None:
    b = BreakerCore(1, 60.0)
    b.on_failure(b.acquire())
    assert benchmark(b.acquire) == 0


def test_model_core_attempt(benchmark: Any) -> None:
    rt = ModelCore(BreakerCore(), ModelStats())

    def attempt() -> None:
        rt.success(rt.begin(), 1, 1)

    benchmark(attempt)


def test_limiter_try_acquire(benchmark: Any) -> None:
    """One admission on the native clock, never refused (the goal: within 2x of
    test_floor_dict_lookup; benches/limiter_ratio.py measures both in one loop)."""
    lim = RateLimiter(rpm=1e9)
    assert benchmark(lim.try_acquire) == 0.0


def test_limiter_try_acquire_tokens(benchmark: Any) -> None:
    lim = RateLimiter(rpm=1e9, tpm=1e9)
    assert benchmark(lim.try_acquire, 0) == 0.0


def _picker(strategy: str) -> Any:
    from agenticaiframework._native import BreakerCore, ModelCore, ModelStats, Picker

    cores = [ModelCore(BreakerCore(5, 60.0), ModelStats()) for _ in range(8)]
    for c in cores:  # some latency samples, so that "latency" compares averages
        c.stats.record_success(0.1)
    return Picker(strategy, cores, [1.0] * 8, seed=1)


@pytest.mark.parametrize("strategy", ["weighted", "least-busy", "latency", "usage"])
def test_picker_among_eight(benchmark: Any, strategy: str) -> None:
    """One routing pick among 8 deployments (issue 17's goal: under 300 ns)."""
    pick = _picker(strategy).pick
    benchmark(pick)
