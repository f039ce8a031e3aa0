"""One deadline per request (issue 19): retries, waits and fallbacks spend from one budget,
on the manager's clock; what is left reaches the model (and the SDK); the budget spent
is a DeadlineExceededError. Fake clock and sleep: no test waits for real, except the
async cancellation, which is bounded by a 20 ms deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from provider_server import ProviderServer, Step, openai_ok

from agenticaiframework.llms import (
    DeadlineExceededError,
    LLMError,
    LLMManager,
    RateLimitError,
)
from agenticaiframework.llms.providers import anthropic_messages, openai_chat


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Script:
    """A model: each call records (time, kwargs['timeout']) and runs the next step: an
    exception to raise, seconds of (fake) time to take, or text to answer."""

    def __init__(self, clock: Clock, *steps: Any) -> None:
        self.clock = clock
        self.steps = list(steps)
        self.seen: list[tuple[float, Any]] = []

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.seen.append((self.clock.t, kwargs.get("timeout")))
        step = self.steps.pop(0) if self.steps else "ok"
        while isinstance(step, (int, float)):
            self.clock.t += step
            step = self.steps.pop(0) if self.steps else "ok"
        if isinstance(step, BaseException):
            raise step
        return str(step)


def manager(clock: Clock, **kw: Any) -> tuple[LLMManager, list[float]]:
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.t += s

    kw.setdefault("max_retries", 3)
    kw.setdefault("failure_threshold", 100)
    m = LLMManager(clock=clock, sleep=sleep, enable_caching=False, backoff_base=1.0, **kw)
    return m, slept


def test_the_schedule_of_a_worked_example() -> None:
    """deadline=5: 'a' fails at t=0 (wait 1), t=1 (wait 2), t=3; its next wait (4 s)
    would end past the deadline, so 'b' is tried at once, at t=3, with 2 s left."""
    clock = Clock()
    m, slept = manager(clock)
    a = Script(clock, ConnectionError("a1"), ConnectionError("a2"), ConnectionError("a3"))
    b = Script(clock, "b")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    r = m.generate_response("p", deadline=5)
    assert r.text == "b" and r.attempts == 4
    assert slept == [1.0, 2.0]
    assert [t for t, _ in a.seen] == [0.0, 1.0, 3.0] and [t for t, _ in b.seen] == [3.0]
    # What was left reached each attempt as kwargs['timeout'].
    assert [left for _, left in a.seen + b.seen] == [5.0, 4.0, 2.0, 2.0]
    # Without a deadline: the same failures, the backoff waited in full, no timeout kwarg.
    clock2 = Clock()
    m2, slept2 = manager(clock2)
    a2 = Script(clock2, *(ConnectionError(f"a{i}") for i in range(3)))
    m2.register_model("a", a2)
    m2.register_model("b", Script(clock2, "b"))
    m2.set_active_model("a")
    m2.set_fallback_chain(["b"])
    assert m2.generate("p") == "b" and slept2 == [1.0, 2.0] and a2.seen[0][1] is None


def test_a_retry_after_longer_than_what_is_left_moves_on_at_once() -> None:
    clock = Clock()
    m, slept = manager(clock, backoff_max=60)
    m.register_model("a", Script(clock, RateLimitError("slow", status=429, retry_after=30)))
    m.register_model("b", Script(clock, "b"))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("p", deadline=10) == "b" and slept == []
    assert m.generate("q") == "ok"  # no deadline: 'a' answers this time (its next step)


def test_the_budget_spent_is_a_deadline_error_with_the_attempts() -> None:
    clock = Clock()
    m, slept = manager(clock)
    m.register_model("a", Script(clock, 1.5, ConnectionError("slow fail")))
    m.register_model("b", Script(clock, 1.5, ConnectionError("slow fail too")))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(DeadlineExceededError) as info:
        m.generate("p", deadline=2.5)
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, LLMError)
    assert err.deadline == 2.5 and [n for n, _ in err.errors] == ["a", "b"]
    # 'a' failed at t=1.5; its 1 s wait would end at the deadline: 'b' at once, which
    # failed at t=3.0, past it (a sync model cannot be interrupted): nothing after that.
    assert slept == []
    met = m.get_metrics()
    assert met["deadline_exceeded"] == 1 and met["failed_requests"] == 1
    assert met["total_requests"] == 1
    # A deadline that has no room for anything fails without calling a model.
    m3, _ = manager(clock)
    never = Script(clock)
    m3.register_model("a", never)
    m3.set_active_model("a")
    with pytest.raises(ValueError, match="deadline"):
        m3.generate("p", deadline=0)
    with pytest.raises(ValueError, match="deadline"):
        m3.generate("p", deadline=-1)
    with pytest.raises(ValueError, match="deadline"):
        m3.generate("p", deadline="5")
    assert never.seen == [] and m3.get_metrics()["total_requests"] == 0


def test_default_deadline_applies_unless_a_request_gives_its_own() -> None:
    clock = Clock()
    m, _ = manager(clock, default_deadline=1.0)
    m.register_model("a", Script(clock, 2.0, ConnectionError("late"), 2.0, "late", "on time"))
    m.register_model("b", Script(clock, "b"))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(DeadlineExceededError):
        m.generate("p")  # 'a' took 2 s of a 1 s budget, then failed: 'b' is not tried
    # A sync model cannot be interrupted: one that overruns and answers is answered.
    assert m.generate("q") == "late"
    assert m.generate("r", deadline=60) == "on time"
    with pytest.raises(ValueError, match="deadline"):
        LLMManager(default_deadline=0)


def test_an_async_model_is_cancelled_at_the_deadline_and_its_breaker_untouched() -> None:
    m = LLMManager(failure_threshold=1, enable_caching=False)
    cancelled: list[bool] = []

    async def hangs(prompt: str, kwargs: dict[str, Any]) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    m.register_model("a", hangs)
    m.set_active_model("a")

    async def main() -> None:
        with pytest.raises(DeadlineExceededError):
            await m.agenerate("p", deadline=0.02)

    asyncio.run(main())
    assert cancelled == [True]
    info = m.get_model_info("a")
    assert info["circuit_breaker_state"] == "closed" and info["stats"]["failures"] == 0
    assert info["stats"]["cancelled"] == 1
    with pytest.raises(DeadlineExceededError):
        m.generate("p", deadline=0.02)  # an async model under generate: the same
    assert m.get_model_info("a")["circuit_breaker_state"] == "closed"


def test_followers_stop_at_their_own_deadline_and_a_leaders_lets_one_lead() -> None:
    async def main() -> None:
        go = asyncio.Event()
        calls: list[str] = []

        async def slow(prompt: str, kwargs: dict[str, Any]) -> str:
            calls.append("call")
            await go.wait()
            return "answer"

        m = LLMManager()
        m.register_model("s", slow)
        m.set_active_model("s")
        leader = asyncio.ensure_future(m.agenerate("same"))
        for _ in range(5):
            await asyncio.sleep(0)
        impatient = asyncio.ensure_future(m.agenerate("same", deadline=0.01))
        patient = asyncio.ensure_future(m.agenerate("same"))
        with pytest.raises(DeadlineExceededError):
            await impatient  # its own deadline; the shared call goes on
        go.set()
        assert await leader == "answer" and await patient == "answer"
        assert calls == ["call"]
        met = m.get_metrics()
        assert met["deadline_exceeded"] == 1 and met["coalesced_requests"] == 2
        # A leader with a short deadline: it gives up, a follower without one leads.
        go2 = asyncio.Event()

        async def slow2(prompt: str, kwargs: dict[str, Any]) -> str:
            calls.append("call")
            await go2.wait()
            return "answer"

        m.register_model("s", slow2)
        short = asyncio.ensure_future(m.agenerate("other", deadline=0.01))
        for _ in range(5):
            await asyncio.sleep(0)
        follower = asyncio.ensure_future(m.agenerate("other"))
        with pytest.raises(DeadlineExceededError):
            await short
        go2.set()
        assert await follower == "answer"
        assert len(calls) == 3  # the leader's cut call, and the follower's own

    asyncio.run(main())


def test_streams_deadline_to_the_first_chunk_and_over_the_whole() -> None:
    clock = Clock()
    m, _ = manager(clock)

    class Chunks:
        def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            return "whole"

        def stream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
            yield "one "
            clock.t += 5
            yield "two "
            clock.t += 5
            yield "three"

    m.register_model("a", Chunks())
    m.set_active_model("a")
    assert list(m.stream("p", deadline=1)) == ["one ", "two ", "three"]  # first chunk only
    from agenticaiframework.llms import StreamInterruptedError

    it = m.stream("q", stream_deadline=7)
    got = [next(it), next(it)]
    with pytest.raises(StreamInterruptedError) as info:
        next(it)
    assert got == ["one ", "two "] and info.value.partial == "one two "


def test_the_adapters_hand_what_is_left_to_the_sdk() -> None:
    # The SDKs are in the development set, not in the other interpreters' smoke set.
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    with ProviderServer() as srv:
        srv.script("/v1/chat/completions", openai_ok("hi"))
        m = LLMManager(enable_caching=False)
        m.register_model("o", openai_chat("gpt-test", api_key="sk-x", base_url=srv.url + "/v1"))
        m.set_active_model("o")
        assert m.generate("q", deadline=2.5) == "hi"
        sent = float(srv.seen[-1].headers["x-stainless-read-timeout"])
        assert 2.0 < sent <= 2.5  # the SDK's read timeout is what was left
        assert "timeout" not in srv.seen[-1].body  # an SDK option, not a model parameter
        # A provider slower than the budget: the SDK gives up at it, and so does the walk.
        srv.replace("/v1/chat/completions", Step(body={}, delay=1.0))
        with pytest.raises(DeadlineExceededError):
            m.generate("slow", deadline=0.2)

    with ProviderServer() as srv:
        srv.script(
            "/v1/messages",
            Step(
                body={
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-test",
                    "content": [{"type": "text", "text": "hey"}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": 3, "output_tokens": 1},
                }
            ),
        )
        a = LLMManager(enable_caching=False)
        a.register_model("c", anthropic_messages("claude-test", api_key="sk-x", base_url=srv.url))
        a.set_active_model("c")
        assert a.generate("q", deadline=3.0) == "hey"
        sent = float(srv.seen[-1].headers["x-stainless-read-timeout"])
        assert 2.5 < sent <= 3.0
