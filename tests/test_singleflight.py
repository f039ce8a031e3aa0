"""Single-flight: concurrent identical cacheable requests make one upstream call."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agenticaiframework.llms import AllModelsFailedError, LLMManager


async def _no_wait(_: float) -> None:
    return None


def make(fn: Any, **kw: Any) -> LLMManager:
    m = LLMManager(sleep=lambda _: None, async_sleep=_no_wait, **kw)
    m.register_model("m", fn)
    m.set_active_model("m")
    return m


def test_thousand_tasks_one_upstream_call() -> None:
    calls = 0
    gate: dict[str, asyncio.Event] = {}

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        await gate["go"].wait()
        return "answer"

    m = make(model)

    async def run() -> list[str]:
        gate["go"] = asyncio.Event()
        tasks = [asyncio.create_task(m.agenerate("same", temperature=0)) for _ in range(1000)]
        for _ in range(3):
            await asyncio.sleep(0)
        gate["go"].set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(run()) == ["answer"] * 1000
    assert calls == 1
    metrics = m.get_metrics()
    assert metrics["total_requests"] == 1000
    assert metrics["successful_requests"] == 1000
    assert metrics["coalesced_requests"] == 999
    assert metrics["cache_misses"] == 1000


def test_leader_error_reaches_every_follower() -> None:
    calls = 0
    gate: dict[str, asyncio.Event] = {}

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        await gate["go"].wait()
        raise ConnectionError("provider down")

    m = make(model, max_retries=1)

    async def run() -> list[Any]:
        gate["go"] = asyncio.Event()
        tasks = [asyncio.create_task(m.agenerate("p")) for _ in range(50)]
        await asyncio.sleep(0)
        gate["go"].set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(run())
    assert calls == 1
    assert all(isinstance(r, AllModelsFailedError) for r in results)
    assert len({id(r) for r in results}) == 1  # the same error object
    metrics = m.get_metrics()
    assert metrics["failed_requests"] == 50
    assert metrics["cache_size"] == 0  # failures are never cached


def test_cancelled_leader_hands_over_to_a_follower() -> None:
    """The leader does the work in its own task: cancelling it cancels its call, and the
    waiting followers try again, one of them as the new leader (one more upstream call)."""
    calls = 0
    gate: dict[str, asyncio.Event] = {}

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        gate["in"].set()
        await gate["go"].wait()
        return "shared"

    m = make(model)

    async def run() -> list[str]:
        gate["in"], gate["go"] = asyncio.Event(), asyncio.Event()
        leader = asyncio.create_task(m.agenerate("p"))
        await gate["in"].wait()
        followers = [asyncio.create_task(m.agenerate("p")) for _ in range(5)]
        await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        gate["go"].set()
        return await asyncio.gather(*followers)

    assert asyncio.run(run()) == ["shared"] * 5
    assert calls == 2
    metrics = m.get_metrics()
    assert metrics["cancelled_requests"] == 1
    assert metrics["successful_requests"] == 5
    assert metrics["total_requests"] == 6
    assert m.generate("p") == "shared"  # the shared result was cached


def test_cancelled_follower_does_not_cancel_the_shared_call() -> None:
    calls = 0
    gate: dict[str, asyncio.Event] = {}

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        gate["in"].set()
        await gate["go"].wait()
        return "shared"

    m = make(model)

    async def run() -> list[str]:
        gate["in"], gate["go"] = asyncio.Event(), asyncio.Event()
        leader = asyncio.create_task(m.agenerate("p"))
        await gate["in"].wait()
        followers = [asyncio.create_task(m.agenerate("p")) for _ in range(3)]
        await asyncio.sleep(0)
        followers[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await followers[0]
        gate["go"].set()
        return await asyncio.gather(leader, *followers[1:])

    assert asyncio.run(run()) == ["shared"] * 3
    assert calls == 1
    metrics = m.get_metrics()
    assert (metrics["cancelled_requests"], metrics["successful_requests"]) == (1, 3)
    assert metrics["coalesced_requests"] == 2


class Abort(BaseException):
    """Stands in for a KeyboardInterrupt in the leader's thread."""


def test_sync_leader_dying_with_base_exception_does_not_hang_followers() -> None:
    first_in = threading.Event()
    release = threading.Event()
    calls = 0
    lock = threading.Lock()

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        with lock:
            calls += 1
            n = calls
        if n == 1:
            first_in.set()
            assert release.wait(timeout=30)
            raise Abort()
        return "second try"

    m = make(model)
    results: list[Any] = []

    def leader() -> None:
        try:
            m.generate("p")
        except Abort:
            results.append("aborted")

    def follower() -> None:
        results.append(m.generate("p"))

    t0 = threading.Thread(target=leader)
    t0.start()
    assert first_in.wait(timeout=30)
    followers = [threading.Thread(target=follower) for _ in range(4)]
    for t in followers:
        t.start()
    # Followers are parked on the flight (or about to be); let the leader die.
    release.set()
    for t in [t0, *followers]:
        t.join(timeout=30)
        assert not t.is_alive()
    assert sorted(map(str, results)) == ["aborted"] + ["second try"] * 4
    metrics = m.get_metrics()
    assert metrics["cancelled_requests"] == 1
    assert metrics["successful_requests"] == 4


def test_threads_and_tasks_share_one_flight() -> None:
    release = threading.Event()
    entered = threading.Event()
    calls = 0

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        entered.set()
        assert release.wait(timeout=30)
        return "both"

    m = make(model)
    thread_results: list[str] = []
    leader = threading.Thread(target=lambda: thread_results.append(m.generate("k")))
    leader.start()
    assert entered.wait(timeout=30)

    async def run() -> list[str]:
        tasks = [asyncio.create_task(m.agenerate("k")) for _ in range(10)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(run()) == ["both"] * 10
    leader.join(timeout=30)
    assert thread_results == ["both"]
    assert calls == 1
    assert m.get_metrics()["coalesced_requests"] == 10


def test_reentrant_call_for_the_same_prompt_does_not_deadlock() -> None:
    m = LLMManager(sleep=lambda _: None)
    depth = 0

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal depth
        depth += 1
        if depth == 1:
            # The model asks the same manager the same question: it must not wait on itself.
            return "outer(" + m.generate(prompt) + ")"
        return "inner"

    m.register_model("m", model)
    m.set_active_model("m")
    assert m.generate("same") == "outer(inner)"


@pytest.mark.parametrize("how", ["sync", "async model", "sync model under agenerate"])
def test_nested_reentrant_calls_see_every_key_their_context_leads(how: str) -> None:
    """a's model asks for b, b's model asks for a again: the context leads both keys (a chain
    of two), so the inner a is re-entrant and runs; afterwards the context leads nothing."""
    from agenticaiframework.llms import singleflight

    calls: list[str] = []
    m = LLMManager(sleep=lambda _: None)

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        calls.append(prompt)
        if prompt == "a" and calls.count("a") == 1:
            return "a(" + m.generate("b") + ")"
        if prompt == "b":
            return "b(" + m.generate("a") + ")"
        return "inner"

    async def amodel(prompt: str, kwargs: dict[str, Any]) -> str:
        calls.append(prompt)
        if prompt == "a" and calls.count("a") == 1:
            return "a(" + await m.agenerate("b") + ")"
        if prompt == "b":
            return "b(" + await m.agenerate("a") + ")"
        return "inner"

    m.register_model("m", amodel if how == "async model" else model)
    m.set_active_model("m")
    if how == "sync":
        assert m.generate("a") == "a(b(inner))"
    else:

        async def go() -> str:
            out = await m.agenerate("a")
            assert singleflight._leading.get() is None  # restored in this task too
            return out

        assert asyncio.run(go()) == "a(b(inner))"
    assert calls == ["a", "b", "a"]
    assert singleflight._leading.get() is None


def test_distinct_prompts_are_not_coalesced() -> None:
    calls: list[str] = []

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        calls.append(prompt)
        await asyncio.sleep(0)
        return prompt

    m = make(model)

    async def run() -> list[str]:
        return await asyncio.gather(*(m.agenerate(f"p{i}") for i in range(100)))

    assert asyncio.run(run()) == [f"p{i}" for i in range(100)]
    assert sorted(calls) == sorted(f"p{i}" for i in range(100))
    assert m.get_metrics()["coalesced_requests"] == 0


def test_single_flight_can_be_turned_off() -> None:
    calls = 0

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return "x"

    m = make(model, single_flight=False)

    async def run() -> None:
        await asyncio.gather(*(m.agenerate("same") for _ in range(10)))

    asyncio.run(run())
    assert calls == 10
