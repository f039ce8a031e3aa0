"""agenerate: the same semantics as generate, on asyncio, with timeouts and clean cancellation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agenticaiframework.llms import (
    AllModelsFailedError,
    LLMManager,
    LLMResponse,
    NonRetryableError,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def manager(**kw: Any) -> tuple[LLMManager, list[float]]:
    waits: list[float] = []

    async def fake_sleep(d: float) -> None:
        waits.append(d)

    kw.setdefault("sleep", waits.append)
    return LLMManager(async_sleep=fake_sleep, **kw), waits


def test_async_model_is_awaited_and_cached() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def model(prompt: str, kwargs: dict[str, Any]) -> LLMResponse:
        calls.append((prompt, kwargs))
        await asyncio.sleep(0)
        return LLMResponse("async:" + prompt, prompt_tokens=2, completion_tokens=3)

    m, _ = manager()
    m.register_model("a", model)
    m.set_active_model("a")

    async def run() -> None:
        assert await m.agenerate("hi", temperature=0.5) == "async:hi"
        assert await m.agenerate("hi", temperature=0.5) == "async:hi"
        r = await m.agenerate_response("hi", temperature=0.5)
        assert r.cached and r.model == "a" and r.attempts == 0

    asyncio.run(run())
    assert calls == [("hi", {"temperature": 0.5})]
    metrics = m.get_metrics()
    assert metrics["total_requests"] == 3
    assert metrics["cache_hits"] == 2
    assert metrics["successful_requests"] == 3
    assert metrics["total_tokens"] == 5


def test_retries_wait_through_async_sleep_then_fall_back() -> None:
    attempts: list[str] = []

    async def bad(prompt: str, kwargs: dict[str, Any]) -> str:
        attempts.append("bad")
        raise ConnectionError("down")

    def good(prompt: str, kwargs: dict[str, Any]) -> str:
        attempts.append("good")
        return "ok"

    m, waits = manager(max_retries=3)
    m.register_model("bad", bad)
    m.register_model("good", good)
    m.set_active_model("bad")
    m.set_fallback_chain(["good"])
    r = asyncio.run(m.agenerate_response("p"))
    assert r.text == "ok" and r.model == "good" and r.attempts == 4
    assert attempts == ["bad", "bad", "bad", "good"]
    assert waits == [1.0, 2.0]
    assert [name for name, _ in r.errors] == ["bad"] * 3
    metrics = m.get_metrics()
    assert metrics["total_retries"] == 2 and metrics["fallbacks"] == 1


def test_all_failed_and_non_retryable() -> None:
    async def refuse(prompt: str, kwargs: dict[str, Any]) -> str:
        raise NonRetryableError("bad request")

    m, waits = manager()
    m.register_model("a", refuse)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        asyncio.run(m.agenerate("p"))
    assert len(ei.value.errors) == 1
    assert isinstance(ei.value.__cause__, NonRetryableError)
    assert waits == []
    assert m.get_metrics()["failed_requests"] == 1


def test_sync_model_runs_off_the_loop() -> None:
    """A blocking sync model must not stop other tasks from running."""
    release = threading.Event()
    ticks: list[int] = []

    def blocking(prompt: str, kwargs: dict[str, Any]) -> str:
        # Blocks its worker thread until the loop, still running, lets it go.
        assert release.wait(timeout=30)
        return "done"

    m, _ = manager()
    m.register_model("s", blocking)
    m.set_active_model("s")

    async def ticker() -> None:
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0)
        release.set()

    async def run() -> str:
        result, _ = await asyncio.gather(m.agenerate("p"), ticker())
        return result

    assert asyncio.run(run()) == "done"
    assert ticks == [0, 1, 2, 3, 4]


# On 3.10 too (found by `make py-versions`): asyncio's TimeoutError is not the builtin
# there, and the library raises the builtin (llms/_compat.py).
def test_timeout_from_metadata_is_a_failed_attempt() -> None:
    never = asyncio.Event

    async def hangs(prompt: str, kwargs: dict[str, Any]) -> str:
        await never().wait()
        return "unreachable"

    clock = FakeClock()
    m, waits = manager(max_retries=2, failure_threshold=2, clock=clock)
    # A zero timeout expires at once: no real waiting in the test.
    m.register_model("slow", hangs, {"timeout": 0})
    m.register_model("fast", lambda p, k: "fast")
    m.set_active_model("slow")
    m.set_fallback_chain(["fast"])
    r = asyncio.run(m.agenerate_response("p"))
    assert r.text == "fast"
    assert [type(e) for _, e in r.errors] == [TimeoutError, TimeoutError]
    assert waits == [1.0]
    info = m.get_model_info("slow")
    assert info["stats"]["failures"] == 2
    assert info["circuit_breaker_state"] == "open"


def test_per_call_timeout_overrides_metadata_and_is_not_forwarded() -> None:
    seen: list[dict[str, Any]] = []

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        seen.append(kwargs)
        await asyncio.sleep(0)
        return "ok"

    m, _ = manager(max_retries=1)
    m.register_model("a", model, {"timeout": 0})
    m.set_active_model("a")
    assert asyncio.run(m.agenerate("p", timeout=30, temperature=1)) == "ok"
    assert seen == [{"temperature": 1}]
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(m.agenerate("q", timeout=-1))


def test_cancellation_releases_the_trial_permit() -> None:
    """A cancelled half-open trial gives its permit back; counters stay consistent."""
    clock = FakeClock()
    started = asyncio.Event

    m, _ = manager(max_retries=1, failure_threshold=1, recovery_timeout=10, clock=clock)
    state = {"fail": True}
    gate: dict[str, asyncio.Event] = {}

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        if state["fail"]:
            raise ConnectionError("down")
        gate["started"].set()
        await asyncio.Event().wait()  # hangs until cancelled
        return "never"

    m.register_model("a", model)
    m.set_active_model("a")

    async def run() -> None:
        with pytest.raises(AllModelsFailedError):
            await m.agenerate("p", use_cache=False)
        assert m.get_model_info("a")["circuit_breaker_state"] == "open"
        clock.t += 10
        state["fail"] = False
        gate["started"] = started()
        task = asyncio.create_task(m.agenerate("p", use_cache=False))
        await gate["started"].wait()
        breaker = m._models["a"].breaker.core
        assert breaker.trials_outstanding == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.trials_outstanding == 0
        assert m.get_model_info("a")["circuit_breaker_state"] == "half-open"

    asyncio.run(run())
    metrics = m.get_metrics()
    assert metrics["total_requests"] == 2
    assert metrics["failed_requests"] == 1
    assert metrics["cancelled_requests"] == 1
    stats = m.get_model_info("a")["stats"]
    assert stats["cancelled"] == 1 and stats["failures"] == 1


def test_route_is_fixed_when_the_request_starts() -> None:
    gate: dict[str, asyncio.Event] = {}

    async def first(prompt: str, kwargs: dict[str, Any]) -> str:
        gate["in"].set()
        await gate["go"].wait()
        raise ConnectionError("first fails")

    m, _ = manager(max_retries=1)
    m.register_model("first", first)
    m.register_model("old-fallback", lambda p, k: "old")
    m.register_model("new-fallback", lambda p, k: "new")
    m.set_active_model("first")
    m.set_fallback_chain(["old-fallback"])

    async def run() -> str:
        gate["in"], gate["go"] = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(m.agenerate("p"))
        await gate["in"].wait()
        m.set_fallback_chain(["new-fallback"])  # reconfigure mid-request
        gate["go"].set()
        return await task

    assert asyncio.run(run()) == "old"
