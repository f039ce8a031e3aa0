"""Issue 8, memory and leaks: a full cache keeps the process flat, cached values are freed
when they leave the cache, and no call leaves references or Python allocations behind.

RSS is read from /proc (Linux only). No timing assertions. For the figures in the issue
(peak RSS, bytes per entry over 1,000,000 prompts) run this file as a script:

    .venv/bin/python tests/test_memory.py [--prompts 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from agenticaiframework.llms import AllModelsFailedError, LLMManager, LLMResponse

LINUX = sys.platform.startswith("linux")
MiB = 1024 * 1024


def rss() -> int:
    """Resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def reset_peak() -> bool:
    """Resets VmHWM (peak RSS) to the current RSS, where the kernel allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


async def _no_wait(seconds: float) -> None:
    return None


def manager(fn: Callable[[str, dict[str, Any]], Any] | None = None, **kw: Any) -> LLMManager:
    kw.setdefault("sleep", lambda seconds: None)
    kw.setdefault("async_sleep", _no_wait)
    m = LLMManager(**kw)
    m.register_model("m", fn if fn is not None else (lambda p, k: "answer to " + p))
    m.set_active_model("m")
    return m


@pytest.fixture
def quiet_logs() -> Any:
    """The library logs nothing meanwhile: pytest's capture keeps every record and, through
    its args, every error, traceback, frame and kwarg (it even attaches its handlers to the
    library's logger, so propagate=False is not enough)."""
    logger = logging.getLogger("agenticaiframework.llms")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    yield
    logger.setLevel(level)


def settle() -> None:
    gc.collect()
    gc.collect()


# ---------------------------------------------------------------- a full cache stays flat


def run_distinct_prompts(
    n: int, *, entries: int = 10_000, max_bytes: int | None = 512 * 1024, fill: int = 30_000
) -> dict[str, float]:
    """Sends ``n`` distinct prompts through one manager; returns RSS figures in bytes."""
    m = manager(cache_max_entries=entries, cache_max_bytes=max_bytes)
    settle()
    has_peak = reset_peak()
    start = rss()
    for i in range(fill):
        m.generate(f"distinct prompt number {i}")
    settle()
    full = rss()
    for i in range(fill, n):
        m.generate(f"distinct prompt number {i}")
    settle()
    end = rss()
    stats = m._cache.stats() if m._cache is not None else {}
    metrics = m.get_metrics()
    assert metrics["total_requests"] == n == metrics["cache_misses"]
    assert stats["entries"] <= entries
    if max_bytes is not None:
        assert stats["bytes"] <= max_bytes
    return {
        "start": start,
        "full": full,
        "end": end,
        "peak": peak() if has_peak else 0,
        "entries": stats["entries"],
        "cache_bytes": stats["bytes"],
        "growth_after_full": end - full,
        "per_entry": (full - start) / max(1, stats["entries"]),
    }


@pytest.mark.skipif(not LINUX, reason="reads RSS from /proc")
def test_a_million_distinct_prompts_keep_rss_flat() -> None:
    """cache_max_entries=10_000 and a byte bound that binds first (about 5,500 entries):
    once full, 970,000 more prompts must not grow the process."""
    r = run_distinct_prompts(1_000_000)
    assert 1000 < r["entries"] < 10_000  # the byte bound binds
    assert r["growth_after_full"] < 16 * MiB, r


@pytest.mark.skipif(not LINUX, reason="reads RSS from /proc")
def test_entry_bound_alone_keeps_rss_flat() -> None:
    r = run_distinct_prompts(200_000, max_bytes=None)
    assert r["entries"] == 10_000
    assert r["growth_after_full"] < 16 * MiB, r


@pytest.mark.skipif(not LINUX, reason="reads RSS from /proc")
def test_bytes_per_cached_entry() -> None:
    """Short answers (~40 chars): what one entry costs, Python record and native node
    together. Generous bound; the script mode prints the figure."""
    # Twice the entries needed: each shard is a bounded LRU of its own, and keys do not
    # spread perfectly evenly over them.
    m = manager(cache_max_entries=400_000)
    settle()
    before = rss()
    for i in range(200_000):
        m.generate(f"distinct prompt number {i}")
    settle()
    per_entry = (rss() - before) / 200_000
    assert m.get_metrics()["cache_size"] == 200_000
    assert per_entry < 1024, per_entry
    m.clear_cache()


# ---------------------------------------------------------------- values leave the cache


class Tracked(str):
    """A str that reports its own death (str instances cannot be weakly referenced)."""

    freed: ClassVar[list[str]] = []

    def __del__(self) -> None:
        Tracked.freed.append(str.__str__(self))


def tracked_model(prompt: str, kwargs: dict[str, Any]) -> LLMResponse:
    return LLMResponse(Tracked("answer " + prompt), prompt_tokens=1, completion_tokens=1)


def test_clear_cache_frees_cached_values() -> None:
    Tracked.freed.clear()
    m = manager(tracked_model)
    for i in range(100):
        m.generate(f"p{i}")  # the answer is dropped at once: only the cache holds it
    settle()
    assert Tracked.freed == []
    assert m.clear_cache() == 100
    # Freed by reference counting alone, before any collection.
    assert len(Tracked.freed) == 100
    assert m.get_metrics()["cache_size"] == 0


def test_evicted_values_are_freed() -> None:
    Tracked.freed.clear()
    m = manager(tracked_model, cache_max_entries=10)
    for i in range(100):
        m.generate(f"p{i}")
    assert len(Tracked.freed) == 90
    m.clear_cache()
    assert len(Tracked.freed) == 100


def test_expired_values_are_freed_when_read() -> None:
    now = [0.0]
    Tracked.freed.clear()
    m = manager(tracked_model, cache_ttl=10, clock=lambda: now[0])
    m.generate("p")
    now[0] = 11
    m.generate("p")  # expired: dropped and fetched again
    assert len(Tracked.freed) == 1


def test_refcounts_across_the_native_cache() -> None:
    texts = [f"unique answer {i}" * 3 for i in range(50)]
    by_prompt = {f"p{i}": t for i, t in enumerate(texts)}
    m = manager(lambda p, k: by_prompt[p])
    base = [sys.getrefcount(t) for t in texts]
    for p in by_prompt:
        m.generate(p)
    # The cache's record holds each text once.
    assert [sys.getrefcount(t) for t in texts] == [b + 1 for b in base]
    # Hits hand out references and take none: 10,000 of them change nothing.
    for _ in range(200):
        for p in by_prompt:
            m.generate(p)
            m.generate_response(p)
    assert [sys.getrefcount(t) for t in texts] == [b + 1 for b in base]
    m.clear_cache()
    assert [sys.getrefcount(t) for t in texts] == base


def test_prompts_and_kwargs_are_not_retained() -> None:
    prompt = "".join(["a prompt ", "built at run time"])
    messages = [{"role": "user", "content": "hi"}]
    p0, k0 = sys.getrefcount(prompt), sys.getrefcount(messages)
    m = manager()
    for use_cache in (True, True, False):  # miss, hit, uncached
        m.generate(prompt, use_cache, messages=messages)
    assert sys.getrefcount(prompt) == p0
    assert sys.getrefcount(messages) == k0


class Opaque:
    """An uncacheable kwarg value that can be weakly referenced."""


def test_uncacheable_kwargs_are_released_after_success_and_failure(quiet_logs: Any) -> None:
    m = manager()
    o = Opaque()
    ref = weakref.ref(o)
    m.generate("p", v=o)
    del o
    settle()
    assert ref() is None

    def down(prompt: str, kwargs: dict[str, Any]) -> str:
        raise ConnectionError(f"down ({len(kwargs)} kwargs)")

    f = manager(down, max_retries=2)
    o = Opaque()
    ref = weakref.ref(o)
    with pytest.raises(AllModelsFailedError) as ei:
        f.generate("p", v=o)
    del o, ei  # the error's traceback holds the frames, and through them the kwargs
    settle()
    assert ref() is None


def test_replaced_models_and_their_functions_are_released() -> None:
    class Fn:
        def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            return "x"

    m = manager()
    fn = Fn()
    ref = weakref.ref(fn)
    m.register_model("m", fn)
    m.set_active_model("m")
    m.generate("p")
    del fn
    m.register_model("m", lambda p, k: "y")  # replaces it, route and all
    settle()
    assert ref() is None
    assert m.generate("p") == "y"


def test_a_dropped_manager_is_freed() -> None:
    m = manager()
    m.generate("p")
    ref = weakref.ref(m)
    del m
    settle()
    assert ref() is None


def test_a_manager_whose_model_refers_back_to_it_is_freed() -> None:
    class Model:
        def __init__(self, m: LLMManager) -> None:
            self.m = m

        def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            return f"{len(self.m.list_models())} models"

    m = manager()
    m.register_model("m", Model(m))
    m.set_active_model("m")
    assert m.generate("p") == "1 models"
    ref = weakref.ref(m)
    del m
    settle()
    assert ref() is None


# ---------------------------------------------------------------- no growth per call


def mixed_calls(m: LLMManager, start: int, n: int) -> None:
    """Hits, misses that evict, uncacheable kwargs, failures with fallback, results."""
    opaque = Opaque()
    for i in range(start, start + n):
        m.generate(f"hot {i % 50}")
        m.generate(f"cold {i}", temperature=0.5)
        m.generate(f"odd {i % 7}", v=opaque)
        m.generate_response(f"hot {i % 50}")
        try:
            m.generate(f"fails {i}", use_cache=False, route="down")
        except AllModelsFailedError:
            pass


def leak_manager() -> LLMManager:
    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        if kwargs.get("route") == "down":
            raise ConnectionError("down")
        return "answer " + prompt

    return manager(fn, cache_max_entries=256, max_retries=2, failure_threshold=10_000)


def test_many_calls_leave_no_python_allocations_behind(quiet_logs: Any) -> None:
    m = leak_manager()
    mixed_calls(m, 0, 3_000)  # warm up: fill the cache, the caches of the interpreter
    settle()
    tracemalloc.start()
    try:
        settle()
        before = tracemalloc.get_traced_memory()[0]
        mixed_calls(m, 3_000, 5_000)
        settle()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 64 * 1024, growth
    assert len(m._flights) == 0


def test_many_async_calls_leave_no_python_allocations_behind(quiet_logs: Any) -> None:
    m = leak_manager()

    async def calls(start: int, n: int) -> None:
        for i in range(start, start + n):
            await m.agenerate(f"hot {i % 50}")
            await m.agenerate(f"cold {i}", temperature=0.5)
            await m.agenerate(f"cold t {i}", timeout=5)
            try:
                await m.agenerate(f"fails {i}", use_cache=False, route="down")
            except AllModelsFailedError:
                pass

    async def main() -> int:
        await calls(0, 1_500)
        settle()
        tracemalloc.start()
        try:
            settle()
            before = tracemalloc.get_traced_memory()[0]
            await calls(1_500, 1_500)
            settle()
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    growth = asyncio.run(main())
    assert growth < 64 * 1024, growth
    assert len(m._flights) == 0


def test_per_request_secrets_do_not_accumulate(quiet_logs: Any) -> None:
    def down(prompt: str, kwargs: dict[str, Any]) -> str:
        raise ConnectionError("down")

    m = manager(down, max_retries=1, failure_threshold=10_000)

    def burst(tag: str, n: int) -> None:
        for i in range(n):
            try:
                m.generate("p", use_cache=False, api_key=f"user-{tag}-key-{i:08d}")
            except AllModelsFailedError:
                pass

    burst("warm", 20)
    settle()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        burst("measured", 100)
        settle()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 256 * 1024, growth


# ---------------------------------------------------------------- the figures, as a script


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    for label, max_bytes in (("entries only", None), ("entries + 512 KiB", 512 * 1024)):
        r = run_distinct_prompts(args.prompts, max_bytes=max_bytes)
        print(
            f"{args.prompts:,} distinct prompts, cache_max_entries=10,000, {label}: "
            f"{r['entries']:,} entries ({r['cache_bytes']:,} bytes counted); RSS "
            f"start {r['start'] / MiB:.1f} MiB, full {r['full'] / MiB:.1f} MiB, "
            f"end {r['end'] / MiB:.1f} MiB (growth after full "
            f"{r['growth_after_full'] / MiB:+.2f} MiB), peak {r['peak'] / MiB:.1f} MiB"
        )
    n = 1_000_000
    m = manager(cache_max_entries=2 * n)
    settle()
    before = rss()
    for i in range(n):
        m.generate(f"distinct prompt number {i}")
    settle()
    total = (rss() - before) / n
    assert m.get_metrics()["cache_size"] == n
    m.clear_cache()
    del m
    settle()
    # The Python-allocated share (answer str and record object), on a smaller fill:
    # tracemalloc's own bookkeeping would distort the RSS figure above.
    k = 200_000
    m = manager(cache_max_entries=2 * k)
    tracemalloc.start()
    before_py = tracemalloc.get_traced_memory()[0]
    for i in range(k):
        m.generate(f"distinct prompt number {i}")
    settle()
    py = (tracemalloc.get_traced_memory()[0] - before_py) / k
    tracemalloc.stop()
    print(
        f"bytes per entry ({n:,} entries, ~40-char answers, by RSS): {total:.0f}, of which "
        f"Python objects (answer str, record) {py:.0f} and native {total - py:.0f} (LRU "
        f"node, map slot, spare capacity)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
