"""Issue 8, faults from models: inference functions that raise unprintable or booby-trapped
exceptions, return garbage, call back into the manager, hang, raise BaseExceptions or fail
from threads of their own, and clocks that jump by hours.

After every fault the manager keeps serving and its metrics add up: every request has
exactly one outcome (successful, failed or cancelled) and every model attempt too. No test
sleeps for real to wait out a backoff (``sleep``/``async_sleep``/``clock`` are injected);
the few real waits are bounded hand-offs between threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenticaiframework.llms import (
    AllModelsFailedError,
    CircuitBreaker,
    CircuitBreakerOpenError,
    InvalidResponseError,
    LLMManager,
    LLMResponse,
)

LOGGER = "agenticaiframework.llms"
HOUR = 3600.0
# Bounded waits for hand-offs between threads: generous, never reached when things work.
HANDOFF = 30.0


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Env:
    """A manager with a primary model ``a`` (the one under test) and a healthy ``backup``
    behind it; sleeps are recorded, time is a fake clock."""

    def __init__(self, fn: Callable[..., Any], **kw: Any) -> None:
        self.waits: list[float] = []
        self.clock = FakeClock()

        async def async_sleep(seconds: float) -> None:
            self.waits.append(seconds)

        kw.setdefault("max_retries", 3)
        kw.setdefault("sleep", self.waits.append)
        kw.setdefault("async_sleep", async_sleep)
        kw.setdefault("clock", self.clock)
        self.m = LLMManager(**kw)
        self.m.register_model("a", fn)
        self.m.register_model("backup", lambda p, k: "backup")
        self.m.set_active_model("a")
        self.m.set_fallback_chain(["backup"])
        self.n = 0

    def healthy(self, timeout: float | None = None) -> None:
        """The manager still serves a fresh request, and the metrics add up. With a
        timeout, through agenerate (for models that hang)."""
        self.n += 1
        if timeout is None:
            out = self.m.generate(f"fresh {self.n}", use_cache=False)
        else:
            out = asyncio.run(self.m.agenerate(f"fresh {self.n}", False, timeout=timeout))
        assert isinstance(out, str), out
        assert_metrics_add_up(self.m)


def assert_metrics_add_up(m: LLMManager) -> None:
    s = m.get_metrics()
    outcomes = s["successful_requests"] + s["failed_requests"] + s["cancelled_requests"]
    assert s["total_requests"] == outcomes, s
    assert s["cache_hits"] + s["cache_misses"] <= s["total_requests"], s
    for name in m.list_models():
        st_ = m.get_model_info(name)["stats"]
        assert st_["requests"] == st_["successes"] + st_["failures"] + st_["cancelled"], (
            name,
            st_,
        )


def raising(exc: BaseException) -> Callable[[str, dict[str, Any]], Any]:
    def fn(prompt: str, kwargs: dict[str, Any]) -> Any:
        raise exc

    return fn


def once(exc: BaseException, times: int = 1) -> Callable[[str, dict[str, Any]], Any]:
    """Raises ``exc`` on the first ``times`` calls, then answers "ok"."""
    left = [times]

    def fn(prompt: str, kwargs: dict[str, Any]) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise exc
        return "ok"

    return fn


def returning(value: Any) -> Callable[[str, dict[str, Any]], Any]:
    return lambda prompt, kwargs: value


@pytest.fixture
def debug_logs(caplog: Any) -> Any:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


# ---------------------------------------------------------------- exceptions


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


class StrReturnsBytes(Exception):
    def __str__(self) -> Any:
        return b"not text"


class ReprAndStrRaise(Exception):
    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise ValueError("no repr")


class StrRecurses(Exception):
    def __str__(self) -> str:
        return str(self)


class EqHashRaise(Exception):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        raise RuntimeError("hash")


class HugeMessage(Exception):
    pass


class CauseCycle(Exception):
    pass


def cause_cycle() -> Exception:
    a, b = CauseCycle("a"), CauseCycle("b")
    a.__cause__, b.__cause__ = b, a
    a.__context__ = b
    return a


EXCEPTIONS = [
    StrRaises(),
    StrReturnsBytes(),
    ReprAndStrRaise(),
    StrRecurses(),
    EqHashRaise("eq"),
    HugeMessage("x" * (5 * 1024 * 1024)),
    cause_cycle(),
    ConnectionError("\udcff lone surrogate \x00 NUL"),
]


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_unprintable_exceptions_are_retried_and_fall_back(exc: Exception, debug_logs: Any) -> None:
    env = Env(raising(exc))
    assert env.m.generate("p") == "backup"
    assert env.waits == [1.0, 2.0]
    assert env.m.get_model_info("a")["stats"]["failures"] == 3
    # Everything that renders the failure works: the logs at DEBUG, the error text.
    assert "failed attempt" in debug_logs.text
    env.m.set_fallback_chain([])
    with pytest.raises(AllModelsFailedError) as ei:
        env.m.generate("q")
    assert type(exc).__name__ in str(ei.value)
    assert ei.value.errors[-1][1] is exc
    env.m.set_fallback_chain(["backup"])
    env.healthy()


class StatusProperty(Exception):
    """An SDK error whose status is read from a response that is not there."""

    @property
    def status_code(self) -> int:
        raise RuntimeError("no response attached")


class GetattrRaises(Exception):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # even Python's traceback module needs these
            raise AttributeError(name)
        raise RuntimeError(f"no attribute {name} (and not an AttributeError)")


class _BrokenHeaders:
    def get(self, name: str) -> Any:
        raise RuntimeError("headers are gone")


class _Response:
    def __init__(self, headers: Any) -> None:
        self.headers = headers


class BrokenHeaders(Exception):
    response = _Response(_BrokenHeaders())


class HugeRetryAfter(Exception):
    retry_after = 10**400


class HugeRetryAfterMs(Exception):
    response = _Response({"retry-after-ms": 10**400})


@pytest.mark.parametrize(
    "exc",
    [StatusProperty(), GetattrRaises(), BrokenHeaders(), HugeRetryAfter(), HugeRetryAfterMs()],
    ids=lambda e: type(e).__name__,
)
def test_exceptions_with_booby_trapped_attributes_still_fall_back(exc: Exception) -> None:
    env = Env(raising(exc))
    assert env.m.generate("p") == "backup"
    env.healthy()
    assert env.m.get_metrics()["cancelled_requests"] == 0


def test_odd_retry_after_values_are_ignored() -> None:
    class Odd(Exception):
        def __init__(self, v: Any) -> None:
            super().__init__("odd")
            self.retry_after = v

    for v in (float("nan"), float("inf"), -5, "soon", True, None, [1]):
        env = Env(raising(Odd(v)), max_retries=2)
        assert env.m.generate("p") == "backup"
        assert all(0 <= w <= 60 for w in env.waits), (v, env.waits)
        env.healthy()


# ---------------------------------------------------------------- bad return values


async def _coroutine() -> str:
    return "never awaited"


BAD_RETURNS: list[Any] = [
    None,
    b"bytes",
    bytearray(b"ba"),
    42,
    4.2,
    True,
    object(),
    ["a", "b"],
    {"text": "t"},
    ("t",),
    iter(["t"]),
    LLMResponse(None),  # type: ignore[arg-type]
    LLMResponse(b"t"),  # type: ignore[arg-type]
    LLMResponse(42),  # type: ignore[arg-type]
    LLMResponse("t", prompt_tokens=float("nan")),  # type: ignore[arg-type]
    LLMResponse("t", prompt_tokens="many"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("bad", BAD_RETURNS, ids=lambda b: type(b).__name__)
def test_bad_return_values_fall_back(bad: Any) -> None:
    env = Env(returning(bad))
    assert env.m.generate("p") == "backup"
    assert env.m.get_metrics()["cache_size"] == 1  # the backup's answer, not the garbage
    assert env.m.generate("p") == "backup"
    env.healthy()


def test_returned_coroutine_from_a_sync_function_falls_back() -> None:
    coro = _coroutine()
    try:
        env = Env(returning(coro))
        assert env.m.generate("p") == "backup"
        errors = env.m.generate_response("q").errors
        assert isinstance(errors[0][1], InvalidResponseError)
        env.healthy()
    finally:
        coro.close()


def test_invalid_response_is_not_retried() -> None:
    calls = []

    def fn(prompt: str, kwargs: dict[str, Any]) -> Any:
        calls.append(prompt)
        return None

    env = Env(fn)
    assert env.m.generate("p") == "backup"
    assert len(calls) == 1
    assert env.waits == []


def test_odd_but_usable_responses_are_served() -> None:
    class Text(str):
        pass

    # An empty answer is not usable: tests/test_stream_endings.py (issue 12).
    cases: list[tuple[Any, str]] = [
        (Text("sub"), "sub"),
        (LLMResponse("r", prompt_tokens=-5, completion_tokens=-1), "r"),
        (LLMResponse("r2", prompt_tokens=1.9, completion_tokens=True), "r2"),  # type: ignore[arg-type]
        (LLMResponse("r3", prompt_tokens="7"), "r3"),  # type: ignore[arg-type]
    ]
    for value, text in cases:
        env = Env(returning(value))
        assert env.m.generate("p") == text
        assert env.m.generate("p") == text
        assert env.m.get_model_info("a")["stats"]["requests"] == 1
        env.healthy()


def test_fifty_megabytes_of_text() -> None:
    big = "t" * (50 * 1024 * 1024)
    # Few entries, so one shard holds the whole byte bound (see the test below).
    env = Env(returning(big), cache_max_entries=32, cache_max_bytes=100 * 1024 * 1024)
    assert env.m.generate("p") is big
    assert env.m.generate("p") is big  # a hit hands back the same object
    assert env.m.get_model_info("a")["stats"]["requests"] == 1
    assert env.m.get_metrics()["total_tokens"] >= len(big) // 4
    env.healthy()


def test_answer_well_under_the_byte_bound_is_cached() -> None:
    big = "t" * (8 * 1024 * 1024)
    env = Env(returning(big), cache_max_bytes=100 * 1024 * 1024)
    env.m.generate("p")
    env.m.generate("p")
    assert env.m.get_model_info("a")["stats"]["requests"] == 1


def test_answer_larger_than_the_byte_bound_is_served_not_cached() -> None:
    big = "t" * (2 * 1024 * 1024)
    env = Env(returning(big), cache_max_bytes=1024 * 1024)
    assert env.m.generate("p") is big
    assert env.m.generate("p") is big
    assert env.m.get_model_info("a")["stats"]["requests"] == 2
    assert env.m.get_metrics()["cache_size"] == 0
    env.healthy()


@pytest.mark.parametrize(
    "response",
    [
        LLMResponse("t", prompt_tokens=2**63, completion_tokens=1),
        LLMResponse("t", prompt_tokens=2**62, completion_tokens=2**62),
        LLMResponse("t", prompt_tokens=10**30),
    ],
    ids=["prompt-2^63", "sum-2^63", "10^30"],
)
def test_absurd_token_counts_do_not_lose_the_answer(response: LLMResponse) -> None:
    env = Env(returning(response))
    assert env.m.generate("p") == "t"
    env.healthy()


def test_absurd_token_counts_do_not_wedge_a_half_open_breaker() -> None:
    answers: list[Any] = [ConnectionError("down"), LLMResponse("t", prompt_tokens=2**63)]

    def fn(prompt: str, kwargs: dict[str, Any]) -> Any:
        step = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(step, BaseException):
            raise step
        return step

    env = Env(fn, max_retries=1, failure_threshold=1, recovery_timeout=10)
    assert env.m.generate("p") == "backup"
    env.clock.advance(10)
    try:
        env.m.generate("q")  # the trial call
    except OverflowError:
        pass
    answers[:] = ["fine"]
    env.clock.advance(10)
    assert env.m.generate("r") == "fine", env.m._models["a"].breaker.core.trials_outstanding


# ---------------------------------------------------------------- re-entrancy


def test_model_calling_back_into_the_manager() -> None:
    env: Env

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        m = env.m
        m.get_metrics()
        m.get_model_info("a")
        m.clear_cache()
        m.reset_circuit_breaker("a")
        inner = m.generate(f"inner {prompt}", use_cache=False) if "inner" not in prompt else ""
        m.generate_response("other", use_cache=True)
        m.set_fallback_chain(["backup"])
        return f"outer({inner})"

    env = Env(fn)
    assert env.m.generate("p") == "outer(outer())"
    env.healthy()


def test_model_calling_the_same_request_recursively_does_not_deadlock() -> None:
    depth = 0

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal depth
        depth += 1
        if depth < 4:
            return "via " + env.m.generate(prompt, **kwargs)
        return "bottom"

    env = Env(fn)
    assert env.m.generate("same", t=1) == "via via via bottom"
    env.healthy()


def test_sync_model_under_agenerate_calls_generate_for_the_same_request() -> None:
    depth = 0

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal depth
        depth += 1
        if depth == 1:
            # In the worker thread agenerate runs it in: same request, synchronously.
            return "outer " + env.m.generate(prompt)
        return "inner"

    env = Env(fn)
    assert asyncio.run(env.m.agenerate("same")) == "outer inner"
    env.healthy()


def test_async_model_awaiting_the_same_request_in_a_new_task() -> None:
    depth = 0

    async def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal depth
        depth += 1
        if depth == 1:
            inner = await asyncio.create_task(env.m.agenerate(prompt))
            return "outer " + inner
        return "inner"

    env = Env(fn)
    assert asyncio.run(env.m.agenerate("same")) == "outer inner"
    env.healthy()


def test_model_thread_with_a_copied_context_may_repeat_the_request() -> None:
    """A worker thread that carries the caller's context is part of the same request."""

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        if kwargs.get("inner"):
            return "inner"
        ctx = contextvars.copy_context()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(ctx.run, env.m.generate, prompt, use_cache=True)
            return "outer " + fut.result(timeout=HANDOFF)

    calls = 0

    def counted(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        return fn(prompt, {"inner": calls > 1})

    env = Env(counted)
    assert env.m.generate("same") == "outer inner"
    env.healthy()


def test_model_thread_repeating_the_request_with_its_context() -> None:
    """A documented limit (README, single-flight): a thread a model starts itself does not
    inherit contextvars, so the identical request made from it would join the flight its
    own leader leads and wait for it. Carried into the thread (``copy_context().run``, as
    ``asyncio.to_thread`` does), the context marks it re-entrant and it runs."""

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        if kwargs.get("inner"):
            return "inner"
        out: list[str] = []
        ctx = contextvars.copy_context()
        t = threading.Thread(
            target=ctx.run, args=(lambda: out.append(env.m.generate(prompt, inner=False)),)
        )
        t.start()
        t.join(timeout=30)
        assert not t.is_alive()
        return "outer " + out[0]

    calls = 0

    def counted(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        return fn(prompt, {"inner": calls > 1})

    env = Env(counted)
    assert env.m.generate("same", inner=False) == "outer inner"


# ---------------------------------------------------------------- hangs


def test_async_timeout_bounds_a_hung_async_model() -> None:
    async def hang(prompt: str, kwargs: dict[str, Any]) -> str:
        await asyncio.Event().wait()
        return "never"

    env = Env(hang, max_retries=2)
    assert asyncio.run(env.m.agenerate("p", timeout=0.01)) == "backup"
    stats = env.m.get_model_info("a")["stats"]
    assert stats["failures"] == 2
    assert env.waits == [1.0]  # the retry wait went through the injected async_sleep
    env.healthy(timeout=0.01)


def test_async_timeout_bounds_a_hung_sync_model_and_the_thread_is_released() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def hang(prompt: str, kwargs: dict[str, Any]) -> str:
        entered.release()
        assert release.wait(HANDOFF)
        return "late"

    env = Env(hang, max_retries=1)
    env.m.register_model("a", hang, {"timeout": 0.01})
    env.m.set_active_model("a")

    async def main() -> None:
        # One loop for the whole test: asyncio.run() would wait at its end for the worker
        # thread the hung model still occupies.
        try:
            assert await env.m.agenerate("p") == "backup"
            assert entered.acquire(timeout=HANDOFF)
            assert env.m.get_model_info("a")["stats"]["failures"] == 1
            assert await env.m.agenerate("fresh", use_cache=False) == "backup"
            assert_metrics_add_up(env.m)
        finally:
            release.set()

    asyncio.run(main())
    env.healthy()


def test_metadata_timeout_bounds_an_async_model_under_sync_generate() -> None:
    release = threading.Event()

    async def hang(prompt: str, kwargs: dict[str, Any]) -> str:
        while not release.is_set():  # hangs until the test lets go
            await asyncio.sleep(0.005)
        return "late"

    env = Env(hang, max_retries=1)
    env.m.register_model("a", hang, {"timeout": 0.01})
    env.m.set_active_model("a")
    out: list[str] = []
    caller = threading.Thread(target=lambda: out.append(env.m.generate("p")), daemon=True)
    caller.start()
    caller.join(2.0)  # bounded: a hang fails the test instead of the suite
    finished = not caller.is_alive()
    release.set()
    caller.join(HANDOFF)
    assert finished and out == ["backup"]


def test_sync_generate_waits_for_a_hung_model_as_documented() -> None:
    """README: a synchronous model cannot be interrupted; under generate() a hung model
    hangs its caller (metadata['timeout'] bounds agenerate only). It holds no lock while
    it hangs: a second caller reaches the model too."""
    release = threading.Event()
    entered = threading.Semaphore(0)

    def hang(prompt: str, kwargs: dict[str, Any]) -> str:
        entered.release()
        assert release.wait(HANDOFF)
        return "late but fine"

    env = Env(hang)
    env.m.register_model("a", hang, {"timeout": 0.001})
    env.m.set_active_model("a")
    out: list[str] = []
    callers = [
        threading.Thread(target=lambda p=p: out.append(env.m.generate(p))) for p in ("x", "y")
    ]
    for c in callers:
        c.start()
    try:
        assert entered.acquire(timeout=HANDOFF) and entered.acquire(timeout=HANDOFF)
        assert all(c.is_alive() for c in callers) and out == []  # no timeout under generate
    finally:
        release.set()
        for c in callers:
            c.join(HANDOFF)
    assert out == ["late but fine"] * 2
    env.healthy()


# ---------------------------------------------------------------- BaseExceptions


class CustomBase(BaseException):
    pass


BASE_EXCEPTIONS = [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), CustomBase()]


@pytest.mark.parametrize("exc", BASE_EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_base_exceptions_propagate_and_count_as_cancelled(exc: BaseException) -> None:
    env = Env(once(exc))
    with pytest.raises(type(exc)):
        env.m.generate("p")
    s = env.m.get_metrics()
    assert s["cancelled_requests"] == 1 and s["failed_requests"] == 0
    stats = env.m.get_model_info("a")["stats"]
    assert stats["cancelled"] == 1 and stats["failures"] == 0
    assert env.m.get_model_info("a")["circuit_breaker_state"] == "closed"
    assert env.waits == []
    env.healthy()


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), CustomBase()], ids=lambda e: type(e).__name__)
def test_base_exception_from_a_half_open_trial_gives_the_permit_back(exc: BaseException) -> None:
    script: list[Any] = [ConnectionError("down"), exc, "recovered"]

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        step = script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return str(step)

    env = Env(fn, max_retries=1, failure_threshold=1, recovery_timeout=5)
    assert env.m.generate("p") == "backup"
    env.clock.advance(5)
    with pytest.raises(type(exc)):
        env.m.generate("trial")
    # The trial slot came back: the next call is a trial again, and it closes the breaker.
    assert env.m.generate("trial 2") == "recovered"
    assert env.m.get_model_info("a")["circuit_breaker_state"] == "closed"
    env.healthy()


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), CustomBase()], ids=lambda e: type(e).__name__)
def test_base_exception_from_the_retry_sleep(exc: BaseException) -> None:
    def sleep(seconds: float) -> None:
        raise exc

    env = Env(raising(ConnectionError("down")), sleep=sleep)
    with pytest.raises(type(exc)):
        env.m.generate("p")
    assert env.m.get_metrics()["cancelled_requests"] == 1
    env.m._sleep = lambda s: None
    env.healthy()


def test_custom_base_exception_under_agenerate_sync_and_async_models() -> None:
    async def abad(prompt: str, kwargs: dict[str, Any]) -> str:
        raise CustomBase()

    calls = 0

    async def abad_once(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await abad(prompt, kwargs)
        return "ok"

    for fn in (once(CustomBase()), abad_once):
        env = Env(fn)
        with pytest.raises(CustomBase):
            asyncio.run(env.m.agenerate("p"))
        assert env.m.get_metrics()["cancelled_requests"] == 1
        env.healthy()


def test_cancelled_error_raised_by_a_sync_model() -> None:
    env = Env(once(asyncio.CancelledError(), times=2))
    with pytest.raises(asyncio.CancelledError):
        env.m.generate("p")
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(env.m.agenerate("q"))
    assert env.m.get_metrics()["cancelled_requests"] == 2
    env.healthy()


# ---------------------------------------------------------------- threads of their own


def test_exception_from_the_models_own_worker_thread() -> None:
    pool = concurrent.futures.ThreadPoolExecutor(2)

    def work() -> str:
        raise ConnectionError("from a worker thread")

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        return pool.submit(work).result(timeout=HANDOFF)

    try:
        env = Env(fn, failure_threshold=100)
        assert env.m.generate("p") == "backup"
        err = env.m.generate_response("q").errors[0][1]
        assert isinstance(err, ConnectionError)
        assert env.m.get_model_info("a")["stats"]["failures"] == 6
        env.healthy()
    finally:
        pool.shutdown()


def test_async_model_failing_in_an_executor() -> None:
    async def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, raising(TimeoutError("in executor")), prompt, {})

    env = Env(fn)
    assert asyncio.run(env.m.agenerate("p")) == "backup"
    assert env.m.get_model_info("a")["stats"]["failures"] == 3
    env.healthy()


def test_unhandled_error_in_a_thread_the_model_started(monkeypatch: Any) -> None:
    seen: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    threads: list[threading.Thread] = []

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        t = threading.Thread(target=raising(RuntimeError("stray")), args=(prompt, {}))
        threads.append(t)
        t.start()
        return "ok"

    env = Env(fn)
    assert env.m.generate("p") == "ok"
    for t in threads:
        t.join(HANDOFF)
    assert len(seen) == 1 and isinstance(seen[0], RuntimeError)
    env.healthy()


def test_model_thread_calling_the_manager_after_the_model_returned() -> None:
    done = threading.Event()
    late: list[str] = []

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        if prompt == "late":
            return "late answer"

        def later() -> None:
            late.append(env.m.generate("late"))
            done.set()

        threading.Thread(target=later).start()
        return "ok"

    env = Env(fn)
    assert env.m.generate("p") == "ok"
    assert done.wait(HANDOFF)
    assert late == ["late answer"]
    env.healthy()


# ---------------------------------------------------------------- clocks that jump


def breaker_env(**kw: Any) -> tuple[Env, list[Any]]:
    script: list[Any] = []

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        step = script.pop(0) if script else "ok"
        if isinstance(step, BaseException):
            raise step
        return str(step)

    kw.setdefault("max_retries", 1)
    kw.setdefault("failure_threshold", 2)
    kw.setdefault("recovery_timeout", 30)
    return Env(fn, **kw), script


def state(env: Env) -> str:
    return str(env.m.get_model_info("a")["circuit_breaker_state"])


def open_it(env: Env, script: list[Any]) -> None:
    script[:] = [ConnectionError("down")] * 2
    env.m.generate("x1", use_cache=False)
    env.m.generate("x2", use_cache=False)
    assert state(env) == "open"


@pytest.mark.parametrize("jump", [-3 * HOUR, -1e-3, -10 * 24 * HOUR, -365 * 24 * HOUR])
def test_clock_jumping_back_delays_recovery_by_at_most_one_timeout(jump: float) -> None:
    env, script = breaker_env()
    open_it(env, script)
    env.clock.advance(jump)
    assert env.m.generate("y", use_cache=False) == "backup"  # still open
    env.clock.advance(30)
    assert env.m.generate("z", use_cache=False) == "ok"  # the trial, and it closes
    assert state(env) == "closed"
    env.healthy()


@pytest.mark.parametrize("jump", [3 * HOUR, 31, 10 * 24 * HOUR, 3 * 365 * 24 * HOUR])
def test_clock_jumping_forward_lets_the_trial_through(jump: float) -> None:
    env, script = breaker_env()
    open_it(env, script)
    env.clock.advance(jump)
    assert env.m.generate("y", use_cache=False) == "ok"
    assert state(env) == "closed"
    env.healthy()


YEAR = 365 * 24 * HOUR


@pytest.mark.parametrize("jump", [6 * YEAR, -6 * YEAR, 100 * YEAR, -100 * YEAR, 1e15, -1e15])
def test_clock_jumps_past_the_tick_range_still_recover(jump: float) -> None:
    """Ticks wrap at 2^38 ms (~8.7 years): a jump of more than half of that reads as one
    in the other direction. Recovery may come one timeout early or late, but it comes."""
    env, script = breaker_env()
    open_it(env, script)
    env.clock.advance(jump)
    answers = [env.m.generate("y", use_cache=False)]
    # +1 s of slack: at 1e15 s a float clock has no millisecond resolution left.
    env.clock.advance(31)
    answers.append(env.m.generate("z", use_cache=False))
    assert answers[-1] == "ok", answers
    assert state(env) == "closed"


def test_clock_jumps_do_not_keep_a_breaker_closed() -> None:
    env, script = breaker_env(failure_threshold=3)
    for jump in (-HOUR, 5 * HOUR, -30 * HOUR):
        script[:] = [ConnectionError("down")]
        env.m.generate(f"f{jump}", use_cache=False)
        env.clock.advance(jump)
    assert state(env) == "open"


def test_clock_jump_back_during_a_trial() -> None:
    env, script = breaker_env()
    open_it(env, script)
    env.clock.advance(30)

    def trial(prompt: str, kwargs: dict[str, Any]) -> str:
        env.clock.advance(-6 * HOUR)
        return "trial ok"

    env.m._models["a"].fn = trial
    assert env.m.generate("t", use_cache=False) == "trial ok"
    assert state(env) == "closed"


def test_circuit_breaker_alone_under_clock_jumps() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=60, clock=clock)
    with pytest.raises(ConnectionError):
        cb.call(raising(ConnectionError("down")), "p", {})
    clock.advance(-48 * HOUR)
    with pytest.raises(CircuitBreakerOpenError):
        cb.call(lambda: "x")
    assert 0 < cb.retry_after() <= 60
    clock.advance(60)
    assert cb.call(lambda: "x") == "x"
    assert cb.state == "closed"


@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["ok", "fail", "fail", "fail"]),
            st.one_of(
                st.floats(-10 * HOUR, 10 * HOUR, allow_nan=False),
                st.sampled_from([0.0, 29.999, 30.0, -30.0, 1e-3]),
            ),
        ),
        max_size=25,
    )
)
@settings(max_examples=150)
def test_no_clock_history_wedges_a_breaker(steps: list[tuple[str, float]]) -> None:
    env, script = breaker_env(failure_threshold=2, recovery_timeout=30)
    for outcome, jump in steps:
        script[:] = ["ok" if outcome == "ok" else ConnectionError("down")]
        env.m.generate("s", use_cache=False)
        env.clock.advance(jump)
    # Healthy from here on, time moving forward: within two timeouts it closes.
    script.clear()
    answers = []
    for _ in range(3):
        answers.append(env.m.generate("h", use_cache=False))
        env.clock.advance(30)
    assert answers[-1] == "ok", answers
    assert state(env) == "closed"
    assert env.m._models["a"].breaker.core.trials_outstanding == 0
    assert_metrics_add_up(env.m)
