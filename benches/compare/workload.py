"""One implementation's side of the peer comparison, run in that implementation's own venv.

``python workload.py IMPL [--mode timing|memory|callgrind] [--quick]`` prints one JSON
object on stdout. IMPL is one of ``floor``, ``ours``, ``glued``, ``cachebox``, ``afw3012``
(the pure-Python agenticaiframework 3.0.12 from PyPI, same import name, own venv) or
``litellm`` (LiteLLM's Router with its in-memory cache and ``mock_response``, own venv).

Every implementation answers the same requests with the same local inference function,
which returns at once (``"ok"``). Timings are ``time.perf_counter_ns`` loops whose inner
iteration count is calibrated to a target duration; a path's figure is the median of a few
such loops. The driver (``run.py``) runs this script once per implementation per round,
interleaved, and turns the figures into ratios. Nothing here touches the network.

Only the standard library is imported at the top: each venv has only its own peer.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any

PROMPTS = {
    "32B": "Explain circuit breakers briefly.".ljust(32, ".")[:32],
    "4KB": ("lorem ipsum " * 400)[:4096],
    "1MB": ("x" * 1023 + "\n") * 1024,
}
KWARGS: dict[str, dict[str, Any]] = {
    "none": {},
    "two": {"temperature": 0.7, "max_tokens": 500},
    "nested": {
        "temperature": 0.7,
        "max_tokens": 500,
        "response_format": {"type": "json_schema", "schema": {"type": "object", "strict": True}},
    },
}
P32 = PROMPTS["32B"]
FANOUT_N = 10_000
FANOUT_DELAY = 0.01  # each fan-out request awaits this long, so all 10,000 are in flight
THREADS = (1, 2, 4)
CHUNK = 5_000  # fallback loops reset the failing model's breaker between chunks this long


# --------------------------------------------------------------------- the local models


def answer(prompt: str, kwargs: dict[str, Any]) -> str:
    return "ok"


def fails(prompt: str, kwargs: dict[str, Any]) -> str:
    raise ConnectionError("down")


async def aanswer(prompt: str, kwargs: dict[str, Any]) -> str:
    return "ok"


async def afails(prompt: str, kwargs: dict[str, Any]) -> str:
    raise ConnectionError("down")


async def aslow(prompt: str, kwargs: dict[str, Any]) -> str:
    await asyncio.sleep(FANOUT_DELAY)
    return "ok"


def no_sleep(_: float) -> None:
    return None


async def ano_sleep(_: float) -> None:
    return None


# --------------------------------------------------------------------- timing loops
# A path is (kind, fn, args, kwargs, reset): the loop calls fn(*args, **kwargs) n times.
# The loop bodies are spelled out per arity, so no *args unpacking is timed.


def _loop1(n: int, f: Any, a: Any, b: Any, kw: Any) -> None:
    for _ in repeat(None, n):
        f(a)


def _loop2(n: int, f: Any, a: Any, b: Any, kw: Any) -> None:
    for _ in repeat(None, n):
        f(a, b)


def _loop1kw(n: int, f: Any, a: Any, b: Any, kw: Any) -> None:
    for _ in repeat(None, n):
        f(a, **kw)


# The kwargs sets as a user's code writes them, literal keywords at the call site: a
# `**dict` splat would charge every implementation for unpacking a dict it never built.
_RF = KWARGS["nested"]["response_format"]


def _loop_two(n: int, f: Any, a: Any, b: Any, kw: Any) -> None:
    for _ in repeat(None, n):
        f(a, temperature=0.7, max_tokens=500)


def _loop_nested(n: int, f: Any, a: Any, b: Any, kw: Any, rf: Any = _RF) -> None:
    for _ in repeat(None, n):
        f(a, temperature=0.7, max_tokens=500, response_format=rf)


async def _aloop_two(n: int, f: Any, a: Any, b: Any, kw: Any) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, n):
        await f(a, temperature=0.7, max_tokens=500)
    return time.perf_counter_ns() - t0


async def _aloop1(n: int, f: Any, a: Any, b: Any, kw: Any) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, n):
        await f(a)
    return time.perf_counter_ns() - t0


async def _aloop2(n: int, f: Any, a: Any, b: Any, kw: Any) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, n):
        await f(a, b)
    return time.perf_counter_ns() - t0


async def _aloop1kw(n: int, f: Any, a: Any, b: Any, kw: Any) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, n):
        await f(a, **kw)
    return time.perf_counter_ns() - t0


class Path:
    """One hot path of one implementation, ready to be timed."""

    def __init__(
        self,
        fn: Callable[..., Any],
        a: Any,
        b: Any = None,
        kw: dict[str, Any] | None = None,
        *,
        arity: int = 1,
        is_async: bool = False,
        reset: Callable[[], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        note: str = "",
    ) -> None:
        self.fn, self.a, self.b, self.kw = fn, a, b, kw or {}
        self.is_async = is_async
        self.reset = reset
        self.loop = loop
        self.note = note
        if kw == KWARGS["two"]:
            body: Any = _aloop_two if is_async else _loop_two
        elif kw == KWARGS["nested"] and not is_async:
            body = _loop_nested
        elif kw:
            body = _aloop1kw if is_async else _loop1kw
        elif arity == 2:
            body = _aloop2 if is_async else _loop2
        else:
            body = _aloop1 if is_async else _loop1
        self.body = body

    def run(self, n: int) -> int:
        """Runs n calls; returns the ns they took (breaker resets between chunks untimed)."""
        total = 0
        left = n
        while left:
            step = min(left, CHUNK) if self.reset is not None else left
            if self.reset is not None:
                self.reset()
            if self.is_async:
                assert self.loop is not None
                total += self.loop.run_until_complete(
                    self.body(step, self.fn, self.a, self.b, self.kw)
                )
            else:
                t0 = time.perf_counter_ns()
                self.body(step, self.fn, self.a, self.b, self.kw)
                total += time.perf_counter_ns() - t0
            left -= step
        return total


def calibrate(path: Path, target_ns: int) -> int:
    """The inner iteration count whose loop takes about target_ns."""
    n = 1
    while True:
        t = path.run(n)
        if t >= target_ns // 2 or n >= 50_000_000:
            return max(1, int(n * target_ns / max(t, 1)))
        n = n * 10 if t < target_ns // 100 else max(n + 1, int(n * target_ns / max(t, 1)))


def measure(path: Path, target_ns: int, reps: int) -> dict[str, Any]:
    gc.collect()
    n = calibrate(path, target_ns)
    per_call = []
    for _ in range(reps):
        per_call.append(path.run(n) / n)
    per_call.sort()
    return {"ns": per_call[len(per_call) // 2], "reps": per_call, "n": n}


# --------------------------------------------------------------------- helpers


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def glue_key(model: str, prompt: str, kwargs: dict[str, Any]) -> bytes:
    """The hand-glued stack's cache key: a hash of (model, prompt, sorted kwargs)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(model.encode())
    h.update(b"\x00")
    h.update(prompt.encode())
    if kwargs:
        h.update(b"\x00")
        h.update(json.dumps(kwargs, sort_keys=True, default=repr).encode())
    return h.digest()


_MISS = object()


class Impl:
    """What every implementation provides; a path it lacks is left out (reported n/a)."""

    name = ""
    version = ""

    def hit(self, prompt: str, kw: dict[str, Any]) -> Path | None:
        return None

    def first_try(self) -> Path | None:
        return None

    def fallback(self) -> Path | None:
        return None

    def breaker_skip(self) -> Path | None:
        return None

    def ahit(self, loop: asyncio.AbstractEventLoop, kw: dict[str, Any]) -> Path | None:
        return None

    def afirst_try(self, loop: asyncio.AbstractEventLoop) -> Path | None:
        return None

    def afallback(self, loop: asyncio.AbstractEventLoop) -> Path | None:
        return None

    def abreaker_skip(self, loop: asyncio.AbstractEventLoop) -> Path | None:
        return None

    def fanout(self) -> Callable[[int, int], Any] | None:
        """An async callable (round, n) running n concurrent requests on distinct prompts."""
        return None

    def hit_caller(self) -> Callable[[], Any] | None:
        """A zero-argument callable making one cache hit (for threads and memory)."""
        return None

    def bounded(self, max_entries: int) -> Callable[[str], Any] | None:
        """generate(prompt) through a cache bounded at max_entries (None: no bound)."""
        return None

    bound_note = ""


# --------------------------------------------------------------------- the floor


class Floor(Impl):
    name = "floor"

    def __init__(self) -> None:
        self.version = platform.python_version()

    def hit(self, prompt: str, kw: dict[str, Any]) -> Path | None:
        cached = functools.lru_cache(maxsize=10_000)(answer_1)
        try:
            cached(prompt, **kw)
        except TypeError:  # an unhashable kwarg (the nested dict): lru_cache cannot
            return None
        return Path(cached, prompt, kw=kw, note="functools.lru_cache hit")

    def dict_hit(self, prompt: str) -> Path:
        d = {prompt: "ok"}
        return Path(d.__getitem__, prompt, note="dict lookup")

    def first_try(self) -> Path:
        return Path(answer, P32, {}, arity=2, note="bare call fn(prompt, kwargs)")

    def fallback(self) -> Path:
        return Path(bare_fallback, P32, {}, arity=2, note="try fails(); except: answer()")

    def breaker_skip(self) -> Path:
        return Path(answer, P32, {}, arity=2, note="bare call of the next model")

    def afirst_try(self, loop: asyncio.AbstractEventLoop) -> Path:
        return Path(aanswer, P32, {}, arity=2, is_async=True, loop=loop, note="bare await")

    def ahit(self, loop: asyncio.AbstractEventLoop, kw: dict[str, Any]) -> Path:
        return Path(aanswer, P32, {}, arity=2, is_async=True, loop=loop, note="bare await")

    def afallback(self, loop: asyncio.AbstractEventLoop) -> Path:
        return Path(
            abare_fallback, P32, {}, arity=2, is_async=True, loop=loop,
            note="try await fails(); except: await answer()",
        )  # fmt: skip

    def abreaker_skip(self, loop: asyncio.AbstractEventLoop) -> Path:
        return Path(
            aanswer, P32, {}, arity=2, is_async=True, loop=loop,
            note="bare await of the next model",
        )  # fmt: skip

    def fanout(self) -> Callable[[int, int], Any]:
        async def fan(r: int, n: int) -> None:
            await asyncio.gather(*(aslow(f"r{r}-p{i}", {}) for i in range(n)))

        return fan

    def hit_caller(self) -> Callable[[], Any]:
        cached = functools.lru_cache(maxsize=None)(answer_1)
        cached(P32)
        return functools.partial(cached, P32)

    def bounded(self, max_entries: int) -> Callable[[str], Any]:
        self.bound_note = "functools.lru_cache(maxsize)"
        return functools.lru_cache(maxsize=max_entries)(answer_1)


def answer_1(prompt: str, **kwargs: Any) -> str:
    return "ok"


def bare_fallback(prompt: str, kwargs: dict[str, Any]) -> str:
    try:
        return fails(prompt, kwargs)
    except Exception:
        return answer(prompt, kwargs)


async def abare_fallback(prompt: str, kwargs: dict[str, Any]) -> str:
    try:
        return await afails(prompt, kwargs)
    except Exception:
        return await aanswer(prompt, kwargs)


# --------------------------------------------------------------------- ours


def settle(m: Any) -> None:
    """Waits until a fleet manager's event listener has connected and subscribed: that
    start-up (imports, a connection) runs once, on its own thread, and would otherwise
    land in whichever of two measured runs lasts long enough to see it."""
    import redis

    fleet = m._fleet
    r = redis.Redis.from_url(fleet._url)
    for _ in range(2000):
        if r.pubsub_numsub(fleet.events_channel)[0][1] >= 1:
            break
        time.sleep(0.01)
    r.close()
    time.sleep(0.5)  # and gone back to waiting


class Ours(Impl):
    name = "ours"

    def __init__(self) -> None:
        import agenticaiframework
        from agenticaiframework.llms import LLMManager

        self.LLMManager = LLMManager
        self.version = "working tree"
        self.where = os.path.dirname(agenticaiframework.__file__)

    def make(self, fn: Any = answer, backup: Any = None, **kw: Any) -> Any:
        # Extra LLMManager options for every path, e.g. {"redis": URL} to measure the hot
        # paths of a fleet member (benches/paths_ir.py --manager-kw).
        extra = json.loads(os.environ.get("AFW_BENCH_MANAGER_KW") or "{}")
        kw.update(extra)
        if "redis" in extra:  # a namespace of its own: settle() counts its subscriber
            kw["namespace"] = f"{extra.get('namespace', 'bench')}-{os.getpid()}-{id(kw)}"
        m = self.LLMManager(sleep=no_sleep, async_sleep=ano_sleep, **kw)
        if "redis" in extra:
            settle(m)
        m.register_model("primary", fn)
        m.set_active_model("primary")
        if backup is not None:
            m.register_model("backup", backup)
            m.set_fallback_chain(["backup"])
        return m

    def hit(self, prompt: str, kw: dict[str, Any]) -> Path:
        m = self.make()
        assert m.generate(prompt, **kw) == "ok"
        assert m.generate(prompt, **kw) == "ok"
        assert m.get_metrics()["cache_hits"] == 1
        return Path(m.generate, prompt, kw=kw)

    def first_try(self) -> Path:
        m = self.make(enable_caching=False)
        return Path(m.generate, P32)

    def fallback(self) -> Path:
        m = self.make(fails, answer, max_retries=1, enable_caching=False, failure_threshold=16383)
        assert m.generate(P32) == "ok"
        return Path(m.generate, P32, reset=lambda: m.reset_circuit_breaker("primary"))

    def breaker_skip(self) -> Path:
        m = self.make(
            fails, answer, max_retries=1, enable_caching=False, failure_threshold=1,
            recovery_timeout=10**6,
        )  # fmt: skip
        m.generate(P32)
        assert m.get_model_info("primary")["circuit_breaker_state"] == "open"
        return Path(m.generate, P32)

    def ahit(self, loop: asyncio.AbstractEventLoop, kw: dict[str, Any]) -> Path:
        m = self.make(aanswer)
        loop.run_until_complete(m.agenerate(P32, **kw))
        return Path(m.agenerate, P32, kw=kw, is_async=True, loop=loop)

    def afirst_try(self, loop: asyncio.AbstractEventLoop) -> Path:
        m = self.make(aanswer, enable_caching=False)
        return Path(m.agenerate, P32, is_async=True, loop=loop)

    def afallback(self, loop: asyncio.AbstractEventLoop) -> Path:
        m = self.make(afails, aanswer, max_retries=1, enable_caching=False, failure_threshold=16383)
        assert loop.run_until_complete(m.agenerate(P32)) == "ok"
        return Path(
            m.agenerate,
            P32,
            is_async=True,
            loop=loop,
            reset=lambda: m.reset_circuit_breaker("primary"),
        )

    def abreaker_skip(self, loop: asyncio.AbstractEventLoop) -> Path:
        m = self.make(
            afails, aanswer, max_retries=1, enable_caching=False, failure_threshold=1,
            recovery_timeout=10**6,
        )  # fmt: skip
        loop.run_until_complete(m.agenerate(P32))
        assert m.get_model_info("primary")["circuit_breaker_state"] == "open"
        return Path(m.agenerate, P32, is_async=True, loop=loop)

    def fanout(self) -> Callable[[int, int], Any]:
        m = self.make(aslow, cache_max_entries=FANOUT_N)

        async def fan(r: int, n: int) -> None:
            g = m.agenerate
            await asyncio.gather(*(g(f"r{r}-p{i}") for i in range(n)))

        return fan

    def hit_caller(self) -> Callable[[], Any]:
        m = self.make()
        m.generate(P32)
        return functools.partial(m.generate, P32)

    def bounded(self, max_entries: int) -> Callable[[str], Any]:
        self.bound_note = "LLMManager(cache_max_entries)"
        return self.make(cache_max_entries=max_entries).generate  # type: ignore[no-any-return]


# --------------------------------------------------------------------- the hand-glued stack


class Glued(Impl):
    """cachetools.LRUCache (behind a lock: it is not thread-safe) keyed by glue_key,
    pybreaker per model, tenacity retries (its decorator, as people write it)."""

    name = "glued"

    def __init__(self, cache_factory: Callable[[int], Any] | None = None) -> None:
        import cachetools
        import pybreaker
        import tenacity

        self.cachetools, self.pybreaker, self.tenacity = cachetools, pybreaker, tenacity
        self.cache_factory = cache_factory or cachetools.LRUCache
        self.locked = cache_factory is None
        from importlib.metadata import version

        self.version = (
            f"cachetools {version('cachetools')}, pybreaker {version('pybreaker')}, "
            f"tenacity {version('tenacity')}"
        )

    def make(
        self,
        fn: Any = answer,
        backup: Any = None,
        *,
        max_retries: int = 1,
        caching: bool = True,
        maxsize: int = 10_000,
        fail_max: int = 5,
        reset_timeout: float = 60,
    ) -> Any:
        pb, tn = self.pybreaker, self.tenacity
        route = [("primary", fn)] + ([("backup", backup)] if backup is not None else [])
        breakers = [
            (name, f, pb.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout))
            for name, f in route
        ]
        cache = self.cache_factory(maxsize) if caching else None
        lock = threading.Lock() if self.locked else None
        head = route[0][0]
        retry_kw = {
            "stop": tn.stop_after_attempt(max_retries),
            "wait": tn.wait_exponential(multiplier=1, max=60),
            "retry": tn.retry_if_not_exception_type(pb.CircuitBreakerError),
            "reraise": True,
        }

        @tn.retry(sleep=no_sleep, **retry_kw)
        def attempt(breaker: Any, f: Any, prompt: str, kwargs: dict[str, Any]) -> Any:
            return breaker.call(f, prompt, kwargs)

        @tn.retry(sleep=ano_sleep, **retry_kw)
        async def aattempt(breaker: Any, f: Any, prompt: str, kwargs: dict[str, Any]) -> Any:
            with breaker.calling():
                return await f(prompt, kwargs)

        def lookup(key: bytes) -> Any:
            if lock is None:
                return cache.get(key, _MISS)
            with lock:
                return cache.get(key, _MISS)

        def store(key: bytes, out: Any) -> None:
            if lock is None:
                cache[key] = out
            else:
                with lock:
                    cache[key] = out

        def generate(prompt: str, **kwargs: Any) -> Any:
            key = None
            if cache is not None:
                key = glue_key(head, prompt, kwargs)
                out = lookup(key)
                if out is not _MISS:
                    return out
            errors = []
            for name, f, breaker in breakers:
                try:
                    out = attempt(breaker, f, prompt, kwargs)
                except Exception as exc:  # CircuitBreakerError included: skip the model
                    errors.append((name, exc))
                    continue
                if key is not None:
                    store(key, out)
                return out
            raise RuntimeError(f"all models failed: {errors}")

        async def agenerate(prompt: str, **kwargs: Any) -> Any:
            key = None
            if cache is not None:
                key = glue_key(head, prompt, kwargs)
                out = lookup(key)
                if out is not _MISS:
                    return out
            errors = []
            for name, f, breaker in breakers:
                try:
                    out = await aattempt(breaker, f, prompt, kwargs)
                except Exception as exc:
                    errors.append((name, exc))
                    continue
                if key is not None:
                    store(key, out)
                return out
            raise RuntimeError(f"all models failed: {errors}")

        generate.breakers = breakers  # type: ignore[attr-defined]
        generate.agenerate = agenerate  # type: ignore[attr-defined]
        return generate

    def hit(self, prompt: str, kw: dict[str, Any]) -> Path:
        g = self.make()
        assert g(prompt, **kw) == "ok" and g(prompt, **kw) == "ok"
        return Path(g, prompt, kw=kw)

    def first_try(self) -> Path:
        return Path(self.make(caching=False), P32)

    def fallback(self) -> Path:
        g = self.make(fails, answer, caching=False, fail_max=10**9)
        assert g(P32) == "ok"
        return Path(g, P32)

    def breaker_skip(self) -> Path:
        g = self.make(fails, answer, caching=False, fail_max=1, reset_timeout=10**6)
        g(P32)
        assert g.breakers[0][2].current_state == "open"
        return Path(g, P32)

    def ahit(self, loop: asyncio.AbstractEventLoop, kw: dict[str, Any]) -> Path:
        a = self.make(aanswer).agenerate
        loop.run_until_complete(a(P32, **kw))
        return Path(a, P32, kw=kw, is_async=True, loop=loop)

    def afirst_try(self, loop: asyncio.AbstractEventLoop) -> Path:
        return Path(self.make(aanswer, caching=False).agenerate, P32, is_async=True, loop=loop)

    def afallback(self, loop: asyncio.AbstractEventLoop) -> Path:
        a = self.make(afails, aanswer, caching=False, fail_max=10**9).agenerate
        assert loop.run_until_complete(a(P32)) == "ok"
        return Path(a, P32, is_async=True, loop=loop)

    def abreaker_skip(self, loop: asyncio.AbstractEventLoop) -> Path:
        g = self.make(afails, aanswer, caching=False, fail_max=1, reset_timeout=10**6)
        loop.run_until_complete(g.agenerate(P32))
        assert g.breakers[0][2].current_state == "open"
        return Path(g.agenerate, P32, is_async=True, loop=loop)

    def fanout(self) -> Callable[[int, int], Any]:
        a = self.make(aslow, maxsize=FANOUT_N).agenerate

        async def fan(r: int, n: int) -> None:
            await asyncio.gather(*(a(f"r{r}-p{i}") for i in range(n)))

        return fan

    def hit_caller(self) -> Callable[[], Any]:
        g = self.make()
        g(P32)
        return functools.partial(g, P32)

    def bounded(self, max_entries: int) -> Callable[[str], Any]:
        self.bound_note = f"{self.cache_factory.__module__}.LRUCache(maxsize)"
        return self.make(maxsize=max_entries)  # type: ignore[no-any-return]


class Cachebox(Glued):
    """The glued stack with cachebox.LRUCache (thread-safe itself: no Python lock);
    measured on the cache-hit path."""

    name = "cachebox"

    def __init__(self) -> None:
        import cachebox

        super().__init__(cachebox.LRUCache)
        from importlib.metadata import version

        self.version = f"cachebox {version('cachebox')}"

    def first_try(self) -> None:
        return None

    def fallback(self) -> None:
        return None

    def breaker_skip(self) -> None:
        return None

    def ahit(self, loop: asyncio.AbstractEventLoop, kw: dict[str, Any]) -> None:
        return None

    def afirst_try(self, loop: asyncio.AbstractEventLoop) -> None:
        return None

    def afallback(self, loop: asyncio.AbstractEventLoop) -> None:
        return None

    def abreaker_skip(self, loop: asyncio.AbstractEventLoop) -> None:
        return None

    def fanout(self) -> None:
        return None


# --------------------------------------------------------------------- agenticaiframework 3.0.12


class Afw3012(Impl):
    """The original pure-Python LLMManager: (max_retries, enable_caching) only; the cache
    is an unbounded dict keyed by md5(f"{prompt}:{sorted(kwargs.items())}"); breakers are
    built by register_model with failure_threshold=5, recovery_timeout=60 (set through
    their attributes here); a retry sleeps 2**attempt with time.sleep, which max_retries=1
    never reaches. No async API."""

    name = "afw3012"

    def __init__(self) -> None:
        from importlib.metadata import version

        from agenticaiframework.llms import LLMManager

        self.LLMManager = LLMManager
        self.version = version("agenticaiframework")
        assert self.version == "3.0.12", self.version

    def make(self, fn: Any = answer, backup: Any = None, **kw: Any) -> Any:
        m = self.LLMManager(**kw)
        m.register_model("primary", fn)
        m.set_active_model("primary")
        if backup is not None:
            m.register_model("backup", backup)
            m.set_fallback_chain(["backup"])
        return m

    def hit(self, prompt: str, kw: dict[str, Any]) -> Path:
        m = self.make()
        assert m.generate(prompt, **kw) == "ok" and m.generate(prompt, **kw) == "ok"
        assert m.get_metrics()["cache_hits"] == 1
        return Path(m.generate, prompt, kw=kw)

    def first_try(self) -> Path:
        return Path(self.make(enable_caching=False).generate, P32)

    def fallback(self) -> Path:
        m = self.make(fails, answer, max_retries=1, enable_caching=False)
        m.circuit_breakers["primary"].failure_threshold = 10**12
        assert m.generate(P32) == "ok"
        return Path(m.generate, P32)

    def breaker_skip(self) -> Path:
        m = self.make(fails, answer, max_retries=1, enable_caching=False)
        b = m.circuit_breakers["primary"]
        b.failure_threshold, b.recovery_timeout = 1, 10**6
        assert m.generate(P32) == "ok"
        assert b.state == "open"
        return Path(m.generate, P32)

    def hit_caller(self) -> Callable[[], Any]:
        m = self.make()
        m.generate(P32)
        return functools.partial(m.generate, P32)

    def bounded(self, max_entries: int) -> Callable[[str], Any]:
        self.bound_note = "unbounded dict (3.0.12 has no size limit)"
        return self.make().generate  # type: ignore[no-any-return]


# --------------------------------------------------------------------- LiteLLM


class LiteLLM(Impl):
    """LiteLLM's Router: deployments answer through ``mock_response`` (no network),
    responses cached in its in-memory cache (``cache_responses=True``), ``num_retries=0``
    (one attempt per model, as max_retries=1 elsewhere), fallbacks primary -> backup. The
    open-breaker path is its cooldown (allowed_fails=0, cooldown_time=10**6)."""

    name = "litellm"

    def __init__(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        from importlib.metadata import version

        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.litellm = litellm
        self.version = version("litellm")

    def router(self, primary_mock: str = "ok", *, cache: bool, cooldown: bool = False) -> Any:
        lt = self.litellm
        lt.cache = None  # global: a router with cache_responses=True sets it again
        model_list = [
            {
                "model_name": "primary",
                "litellm_params": {
                    "model": "openai/gpt-4o",
                    "api_key": "sk-local",
                    "mock_response": primary_mock,
                },
            },
            {
                "model_name": "backup",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_key": "sk-local",
                    "mock_response": "ok",
                },
            },
        ]
        extra: dict[str, Any] = (
            {"allowed_fails": 0, "cooldown_time": 10**6}
            if cooldown
            else {"disable_cooldowns": True}
        )
        r = lt.Router(
            model_list=model_list,
            cache_responses=cache,
            num_retries=0,
            fallbacks=[{"primary": ["backup"]}],
            **extra,
        )
        if cache:
            assert lt.cache is not None
        return r

    @staticmethod
    def generator(r: Any) -> Callable[..., str]:
        def generate(prompt: str, **kwargs: Any) -> str:
            resp = r.completion(
                model="primary", messages=[{"role": "user", "content": prompt}], **kwargs
            )
            return resp.choices[0].message.content  # type: ignore[no-any-return]

        return generate

    @staticmethod
    def agenerator(r: Any) -> Callable[..., Any]:
        async def agenerate(prompt: str, **kwargs: Any) -> str:
            resp = await r.acompletion(
                model="primary", messages=[{"role": "user", "content": prompt}], **kwargs
            )
            return resp.choices[0].message.content  # type: ignore[no-any-return]

        return agenerate

    def _is_hit(self, r: Any, prompt: str, kw: dict[str, Any]) -> bool:
        resp = r.completion(model="primary", messages=[{"role": "user", "content": prompt}], **kw)
        return bool(resp._hidden_params.get("cache_hit"))

    def hit(self, prompt: str, kw: dict[str, Any]) -> Path:
        r = self.router(cache=True)
        g = self.generator(r)
        assert g(prompt, **kw) == "ok"
        assert self._is_hit(r, prompt, kw), "LiteLLM cache did not hit"
        return Path(g, prompt, kw=kw)

    def first_try(self) -> Path:
        return Path(self.generator(self.router(cache=False)), P32)

    def fallback(self) -> Path:
        r = self.router("litellm.InternalServerError", cache=False)
        resp = r.completion(model="primary", messages=[{"role": "user", "content": P32}])
        assert resp.choices[0].message.content == "ok"
        assert resp.model.startswith("gpt-4o-mini"), resp.model
        return Path(self.generator(r), P32)

    def _primary_cooled(self, r: Any) -> bool:
        ids = [d["model_info"]["id"] for d in r.get_model_list() if d["model_name"] == "primary"]
        return bool(r.health().cooldowns.get_active_cooldowns(ids, None))

    def breaker_skip(self) -> Path:
        r = self.router("litellm.InternalServerError", cache=False, cooldown=True)
        self.generator(r)(P32)
        assert self._primary_cooled(r), "LiteLLM did not cool the failing deployment down"
        return Path(self.generator(r), P32, note="Router cooldown")

    def ahit(self, loop: asyncio.AbstractEventLoop, kw: dict[str, Any]) -> Path:
        r = self.router(cache=True)
        a = self.agenerator(r)

        async def warm() -> bool:
            await a(P32, **kw)
            await asyncio.sleep(0.2)  # its cache write is a background task
            resp = await r.acompletion(
                model="primary", messages=[{"role": "user", "content": P32}], **kw
            )
            return bool(resp._hidden_params.get("cache_hit"))

        assert loop.run_until_complete(warm()), "LiteLLM async cache did not hit"
        return Path(a, P32, kw=kw, is_async=True, loop=loop)

    def afirst_try(self, loop: asyncio.AbstractEventLoop) -> Path:
        return Path(self.agenerator(self.router(cache=False)), P32, is_async=True, loop=loop)

    def afallback(self, loop: asyncio.AbstractEventLoop) -> Path:
        a = self.agenerator(self.router("litellm.InternalServerError", cache=False))
        assert loop.run_until_complete(a(P32)) == "ok"
        return Path(a, P32, is_async=True, loop=loop)

    def abreaker_skip(self, loop: asyncio.AbstractEventLoop) -> Path:
        r = self.router("litellm.InternalServerError", cache=False, cooldown=True)
        a = self.agenerator(r)
        loop.run_until_complete(a(P32))
        assert self._primary_cooled(r)
        return Path(a, P32, is_async=True, loop=loop)

    def fanout(self) -> Callable[[int, int], Any]:
        r = self.router(cache=True)

        async def fan(rnd: int, n: int) -> None:
            await asyncio.gather(
                *(
                    r.acompletion(
                        model="primary",
                        messages=[{"role": "user", "content": f"r{rnd}-p{i}"}],
                        mock_delay=FANOUT_DELAY,
                    )
                    for i in range(n)
                )
            )

        return fan

    def hit_caller(self) -> Callable[[], Any]:
        g = self.generator(self.router(cache=True))
        g(P32)
        return functools.partial(g, P32)


IMPLS: dict[str, Callable[[], Impl]] = {
    "floor": Floor,
    "ours": Ours,
    "glued": Glued,
    "cachebox": Cachebox,
    "afw3012": Afw3012,
    "litellm": LiteLLM,
}


# --------------------------------------------------------------------- modes


def timing(impl: Impl, quick: bool, fanout_reps: int) -> dict[str, Any]:
    slow = impl.name == "litellm"
    target = (2 if quick else 20) * 1_000_000 * (5 if slow else 1)
    reps = 3 if quick else 5
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def take(name: str, make: Callable[[], Path | None]) -> None:
        try:
            path = make()
        except Exception as exc:  # a peer that cannot do a path: reported, not hidden
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
            return
        if path is None:
            return
        res = measure(path, target, reps)
        if path.note:
            res["note"] = path.note
        out[name] = res

    for size, prompt in PROMPTS.items():
        for kwn, kw in KWARGS.items():
            take(f"hit/{size}/{kwn}", lambda p=prompt, k=kw: impl.hit(p, k))
    if isinstance(impl, Floor):
        take("hit/32B/none/dict", lambda: impl.dict_hit(P32))
    take("first_try", impl.first_try)
    take("fallback", impl.fallback)
    take("breaker_skip", impl.breaker_skip)

    loop = asyncio.new_event_loop()
    try:
        take("ahit/32B/none", lambda: impl.ahit(loop, {}))
        take("ahit/32B/two", lambda: impl.ahit(loop, KWARGS["two"]))
        take("afirst_try", lambda: impl.afirst_try(loop))
        take("afallback", lambda: impl.afallback(loop))
        take("abreaker_skip", lambda: impl.abreaker_skip(loop))
    finally:
        loop.close()

    fan = {} if fanout_reps == 0 else fanout(impl, quick, fanout_reps)
    thr = threads(impl, quick)
    return {"paths": out, "errors": errors, "fanout": fan, "threads": thr}


def fanout(impl: Impl, quick: bool, reps: int) -> dict[str, Any]:
    """Wall time of n concurrent requests beside the same fan-out of bare awaits, paired
    (bare, impl, bare, impl, ...) in one process and one event loop."""
    make = impl.fanout()
    if make is None:
        return {}
    bare = Floor().fanout()
    n = 1_000 if quick else FANOUT_N
    loop = asyncio.new_event_loop()
    walls: dict[str, list[int]] = {"bare": [], "impl": []}
    try:
        loop.run_until_complete(bare(-1, 100))
        loop.run_until_complete(make(-1, 100))
        for r in range(reps):
            for label, f in (("bare", bare), ("impl", make)):
                gc.collect()
                t0 = time.perf_counter_ns()
                loop.run_until_complete(f(r, n))
                walls[label].append(time.perf_counter_ns() - t0)
    finally:
        loop.close()
    return {"n": n, "delay_s": FANOUT_DELAY, **walls}


def threads(impl: Impl, quick: bool) -> dict[str, Any]:
    """Cache-hit throughput from 1, 2 and 4 threads, each making n hits on one prompt."""
    caller = impl.hit_caller()
    if caller is None:
        return {}
    target = (20 if quick else 200) * 1_000_000
    n = calibrate(Path(lambda _: caller(), None), target)
    if impl.name == "litellm":
        n = max(20, n // 4)
    res: dict[str, Any] = {"n_per_thread": n}
    for k in THREADS:
        best = None
        for _ in range(1 if quick else 3):
            barrier = threading.Barrier(k + 1)

            def work(barrier: threading.Barrier = barrier) -> None:
                c = caller
                barrier.wait()
                for _ in repeat(None, n):
                    c()

            ts = [threading.Thread(target=work) for _ in range(k)]
            for t in ts:
                t.start()
            barrier.wait()
            t0 = time.perf_counter_ns()
            for t in ts:
                t.join()
            wall = time.perf_counter_ns() - t0
            best = wall if best is None else min(best, wall)
        assert best is not None
        res[str(k)] = {"wall_ns": best, "calls_per_s": k * n / best * 1e9}
    return res


def memory_entry(impl: Impl, quick: bool) -> dict[str, Any]:
    """Bytes per cached entry: RSS growth, from before the cache exists, over per_n
    distinct 32-char prompts made on the fly, each answered with the one shared "ok" (so
    all of it is overhead beyond the value; what a cache keeps of the prompt counts).
    Run in a fresh process."""
    per_n = 20_000 if quick else 100_000
    gc.collect()
    r0 = rss_bytes()  # before the cache exists: a table allocated up front counts too
    big = impl.bounded(per_n)
    if big is None:
        return {}
    for i in range(per_n):
        big(f"entry {i:026d}")
    gc.collect()
    return {"entries": per_n, "bytes_per_entry": (rss_bytes() - r0) / per_n}


def memory_stream(impl: Impl, quick: bool) -> dict[str, Any]:
    """RSS through 1,000,000 distinct 32-char prompts with the cache bounded at 10,000
    entries, from before the cache exists; peak RSS of the process. Run in a fresh
    process."""
    total = 100_000 if quick else 1_000_000
    bound = 10_000
    gc.collect()
    base = rss_bytes()
    g = impl.bounded(bound)
    if g is None:
        return {}
    checkpoints = {}
    marks = {bound, 2 * bound, total // 10, total // 2, total}
    for i in range(1, total + 1):
        g(f"stream {i:025d}")
        if i in marks:
            gc.collect()
            checkpoints[str(i)] = rss_bytes()
    return {
        "bound_note": impl.bound_note,
        "total": total,
        "bound": bound,
        "rss_base": base,
        "rss_at": checkpoints,
        "peak_rss": max(peak_rss_bytes(), *checkpoints.values()),
    }


def callgrind_loop(impl: Impl, path_name: str, n: int) -> None:
    """For run.py under valgrind: set the path up, then call it n times untimed."""
    loop = asyncio.new_event_loop()
    kind, _, rest = path_name.partition(":")
    path: Path | None
    if kind == "hit":
        path = impl.hit(P32, KWARGS[rest or "none"])
    elif kind == "dict":
        assert isinstance(impl, Floor)
        path = impl.dict_hit(P32)
    else:
        path = getattr(impl, kind)()
    assert path is not None
    if n:
        path.body(n, path.fn, path.a, path.b, path.kw)
    loop.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("impl", choices=list(IMPLS))
    ap.add_argument(
        "--mode",
        choices=["timing", "memory-entry", "memory-stream", "callgrind"],
        default="timing",
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fanout-reps", type=int, default=3)
    ap.add_argument("--path", default="hit")
    ap.add_argument("--n", type=int, default=0)
    args = ap.parse_args()
    impl = IMPLS[args.impl]()
    if args.mode == "callgrind":
        callgrind_loop(impl, args.path, args.n)
        return
    info = {
        "impl": impl.name,
        "version": impl.version,
        "python": sys.version.split()[0],
        "executable": sys.executable,
    }
    if isinstance(impl, Ours):
        info["where"] = impl.where
    if args.mode == "timing":
        info.update(timing(impl, args.quick, args.fanout_reps))
    elif args.mode == "memory-entry":
        info["memory"] = memory_entry(impl, args.quick)
    else:
        info["memory"] = memory_stream(impl, args.quick)
    json.dump(info, sys.stdout)


if __name__ == "__main__":
    main()
