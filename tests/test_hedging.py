"""Hedged requests (issue 18, hedging.py): when an attempt has not answered after its
delay, the same request starts on the next deployment or model; the first success wins,
the others are cancelled. Virtual time: the manager's clock and ``async_sleep`` and the
scripted models' latencies are one fake timeline that each test moves by hand, so no test
waits for real and every start time is exact.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenticaiframework.llms import LLMError, LLMManager
from agenticaiframework.llms.events import AttemptEnded, AttemptStarted, Event
from agenticaiframework.llms.hedging import P95_FLOOR, P95_SAMPLES, HedgePolicy


def aio(f: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A test run in an event loop of its own (as the other async tests run theirs)."""

    @functools.wraps(f)
    def test() -> None:
        asyncio.run(f())

    return test


class Timeline:
    """A fake clock, and sleeps that end when the test moves the clock past them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[tuple[float, float, asyncio.Future[None]]] = []  # (due, asked, ..)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.sleeps.append((self.now + seconds, seconds, fut))
        await fut

    def asked(self) -> list[float]:
        """The delays asked for so far (the manager's hedge timers and the models')."""
        return [s for _, s, _ in self.sleeps]

    async def to(self, t: float) -> None:
        """Moves the clock to ``t``, waking each sleep due by then, in order."""
        await settle()
        while True:
            due = [x for x in self.sleeps if x[0] <= t and not x[2].done()]
            if not due:
                break
            first = min(due, key=lambda x: x[0])
            self.now = first[0]
            for x in due:
                if x[0] == first[0]:
                    x[2].set_result(None)
            await settle()
        self.now = t
        await settle()


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class Scripted:
    """An async model: each call takes the next (seconds, answer or exception) step on
    the timeline, and records when it started and whether it was cancelled."""

    def __init__(self, tl: Timeline, *steps: tuple[float, Any]) -> None:
        self.tl = tl
        self.steps = list(steps)
        self.started: list[float] = []
        self.timeouts: list[Any] = []
        self.cancelled = 0

    async def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.started.append(self.tl.now)
        self.timeouts.append(kwargs.get("timeout"))
        seconds, out = self.steps.pop(0) if self.steps else (0.0, "ok")
        try:
            await self.tl.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if isinstance(out, BaseException):
            raise out
        return str(out)


class Streaming(Scripted):
    """Streams: its first chunk after the step's seconds, then "!"; counts closes."""

    def __init__(self, tl: Timeline, *steps: tuple[float, Any]) -> None:
        super().__init__(tl, *steps)
        self.closed = 0

    def astream(self, prompt: str, kwargs: dict[str, Any]) -> AsyncIterator[str]:
        return self._chunks(prompt, kwargs)

    async def _chunks(self, prompt: str, kwargs: dict[str, Any]) -> AsyncIterator[str]:
        try:
            yield await self(prompt, kwargs)
            yield "!"
        finally:
            self.closed += 1


def manager(tl: Timeline, **kw: Any) -> LLMManager:
    kw.setdefault("enable_caching", False)
    kw.setdefault("max_retries", 1)
    return LLMManager(clock=tl.clock, async_sleep=tl.sleep, **kw)


def route(m: LLMManager, **models: Any) -> None:
    for name, fn in models.items():
        m.register_model(name, fn)
    names = list(models)
    m.set_active_model(names[0])
    m.set_fallback_chain(names[1:])


def stats(m: LLMManager, name: str) -> dict[str, Any]:
    s: dict[str, Any] = dict(m.get_model_info(name)["stats"])
    return s


KEYS = ("requests", "successes", "failures", "cancelled", "hedged_requests", "hedge_wins")


def counts(m: LLMManager, name: str) -> tuple[int, ...]:
    s = stats(m, name)
    # Every attempt ended exactly once: nothing in flight, nothing booked twice.
    assert s["requests"] == s["successes"] + s["failures"] + s["cancelled"], s
    return tuple(s[k] for k in KEYS)


@aio
async def test_the_hedge_starts_exactly_at_its_delay() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    a, b = Scripted(tl, (5.0, "A")), Scripted(tl, (0.1, "B"))
    route(m, a=a, b=b)
    task = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(0.79)
    assert a.started == [0.0] and b.started == []
    await tl.to(0.8)
    assert b.started == [0.8]
    await tl.to(0.9)
    assert await task == "B"
    # The loser was cancelled: no failure of 'a', its permit back; 'b' counted the hedge.
    assert a.cancelled == 1
    assert counts(m, "a") == (1, 0, 0, 1, 0, 0)
    assert counts(m, "b") == (1, 1, 0, 0, 1, 1)
    assert m.get_metrics()["breaker_states"]["a"] == "closed"
    mt = m.get_metrics()
    assert (mt["successful_requests"], mt["failed_requests"], mt["cancelled_requests"]) == (1, 0, 0)
    assert mt["fallbacks"] == 1  # the hedge moved to the next model of the route


@aio
async def test_no_hedge_when_the_first_attempt_answers_before_the_delay() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    a, b = Scripted(tl, (0.79, "A")), Scripted(tl, (0.1, "B"))
    route(m, a=a, b=b)
    task = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(0.79)
    assert await task == "A"
    await tl.to(5.0)
    assert b.started == []
    assert counts(m, "a") == (1, 1, 0, 0, 0, 0)
    assert counts(m, "b") == (0, 0, 0, 0, 0, 0)
    assert m.get_metrics()["fallbacks"] == 0
    # The hedge timer was asked for 0.8 s and then cancelled with the request's end.
    assert 0.8 in tl.asked()
    assert all(f.cancelled() for due, s, f in tl.sleeps if s == 0.8)


@aio
async def test_the_first_attempt_wins_after_the_hedge_started() -> None:
    """Exactly once: the winner's success, the hedge's cancel, the request's success."""
    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    a, b = Scripted(tl, (1.0, "A")), Scripted(tl, (5.0, "B"))
    route(m, a=a, b=b)
    r = asyncio.ensure_future(m.agenerate_response("p"))
    await tl.to(1.0)
    res = await r
    assert (res.text, res.model, res.attempts) == ("A", "a", 2)
    assert b.started == [0.8] and b.cancelled == 1
    assert counts(m, "a") == (1, 1, 0, 0, 0, 0)
    assert counts(m, "b") == (1, 0, 0, 1, 1, 0)
    mt = m.get_metrics()
    assert (mt["successful_requests"], mt["failed_requests"], mt["cancelled_requests"]) == (1, 0, 0)
    assert mt["total_tokens"] == stats(m, "a")["tokens"] > 0


@aio
async def test_an_error_while_another_attempt_runs_does_not_fail_the_request() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8, max_retries=3)
    a, b = Scripted(tl, (1.0, ConnectionError("a down"))), Scripted(tl, (0.7, "B"))
    route(m, a=a, b=b)
    r = asyncio.ensure_future(m.agenerate_response("p"))
    await tl.to(1.0)
    assert not r.done()
    assert len(a.started) == 1  # not retried: the hedge still runs
    await tl.to(1.5)
    res = await r
    assert res.text == "B" and [type(e).__name__ for _, e in res.errors] == ["ConnectionError"]
    assert counts(m, "a") == (1, 0, 1, 0, 0, 0)
    assert counts(m, "b") == (1, 1, 0, 0, 1, 1)
    assert m.get_metrics()["failed_requests"] == 0


@aio
async def test_when_every_attempt_fails_the_walk_goes_on_as_after_the_last_failure() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8, max_retries=1)
    a = Scripted(tl, (1.0, ConnectionError("a")))
    b = Scripted(tl, (0.1, ConnectionError("b")))
    c = Scripted(tl, (0.1, "C"))
    route(m, a=a, b=b, c=c)
    r = asyncio.ensure_future(m.agenerate_response("p"))
    await tl.to(0.9)  # 'b' (the hedge) failed at 0.9: booked; 'a' still runs
    assert c.started == []
    await tl.to(1.0)  # 'a' failed last, out of retries: on to the next model
    await tl.to(1.1)
    res = await r
    assert res.text == "C" and c.started == [1.0]
    assert counts(m, "a")[:4] == (1, 0, 1, 0)
    assert counts(m, "b") == (1, 0, 1, 0, 1, 0)
    assert counts(m, "c")[:2] == (1, 1)


@aio
async def test_two_attempts_ending_together_both_count_their_tokens() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    a, b = Scripted(tl, (1.0, "AAAA")), Scripted(tl, (0.2, "BBBBBBBB"))
    route(m, a=a, b=b)
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(1.0)
    assert await r == "AAAA"  # the first started wins a tie
    sa, sb = stats(m, "a"), stats(m, "b")
    assert (sa["successes"], sb["successes"], sb["cancelled"], sb["hedge_wins"]) == (1, 1, 0, 0)
    assert sb["tokens"] > 0 and sa["tokens"] > 0
    assert m.get_metrics()["successful_requests"] == 1


@aio
async def test_a_streams_loser_is_cancelled_and_closed() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.5)
    a, b = Streaming(tl, (3.0, "A")), Streaming(tl, (0.2, "B"))
    route(m, a=a, b=b)

    async def read() -> list[str]:
        return [c async for c in m.astream("p")]

    r = asyncio.ensure_future(read())
    await tl.to(0.7)
    assert await r == ["B", "!"]
    assert b.started == [0.5]
    assert (a.cancelled, a.closed, b.closed) == (1, 1, 1)
    assert counts(m, "a") == (1, 0, 0, 1, 0, 0)
    assert counts(m, "b") == (1, 1, 0, 0, 1, 1)


@aio
async def test_a_stream_hedges_only_until_its_first_chunk() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.5)
    a, b = Streaming(tl, (0.1, "A")), Streaming(tl, (0.1, "B"))
    route(m, a=a, b=b)
    it = m.astream("p").__aiter__()
    first = asyncio.ensure_future(it.__anext__())
    await tl.to(0.1)
    assert await first == "A"
    await tl.to(5.0)  # a slow reader: no hedge once the first chunk came
    assert [c async for c in it] == ["!"]
    assert b.started == []


@aio
async def test_cancelling_the_request_cancels_every_hedge() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.5, max_hedges=2)
    a, b, c = (Scripted(tl, (9.0, x)) for x in "ABC")
    route(m, a=a, b=b, c=c)
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(1.0)
    assert (a.started, b.started, c.started) == ([0.0], [0.5], [1.0])
    r.cancel()
    with pytest.raises(asyncio.CancelledError):
        await r
    assert (a.cancelled, b.cancelled, c.cancelled) == (1, 1, 1)
    for name in "abc":
        s = stats(m, name)
        assert (s["cancelled"], s["failures"], s["successes"]) == (1, 0, 0)
        assert m.get_metrics()["breaker_states"][name] == "closed"
    assert m.get_metrics()["cancelled_requests"] == 1


@aio
async def test_cancelling_books_a_hedges_failure_that_came_first() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.5)
    a, b = Scripted(tl, (9.0, "A")), Scripted(tl, (0.1, ConnectionError("b")))
    route(m, a=a, b=b)
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(0.6)  # the hedge failed; 'a' runs on
    assert not r.done()
    r.cancel()
    with pytest.raises(asyncio.CancelledError):
        await r
    assert counts(m, "a") == (1, 0, 0, 1, 0, 0)
    assert counts(m, "b") == (1, 0, 1, 0, 1, 0)
    assert m.get_metrics()["cancelled_requests"] == 1


@aio
async def test_hedging_and_single_flight_followers_get_the_winner() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.5, enable_caching=True)
    a, b = Scripted(tl, (5.0, "A")), Scripted(tl, (0.2, "B"))
    route(m, a=a, b=b)
    lead = asyncio.ensure_future(m.agenerate("same"))
    await settle()
    follow = asyncio.ensure_future(m.agenerate("same"))
    await tl.to(0.7)
    assert (await lead, await follow) == ("B", "B")
    assert (len(a.started), len(b.started)) == (1, 1)
    mt = m.get_metrics()
    assert (mt["coalesced_requests"], mt["successful_requests"]) == (1, 2)
    assert stats(m, "b")["hedge_wins"] == 1


@aio
async def test_a_hedge_spends_from_the_deadline() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    a, b = Scripted(tl, (5.0, "A")), Scripted(tl, (0.1, "B"))
    route(m, a=a, b=b)
    r = asyncio.ensure_future(m.agenerate("p", deadline=1.0))
    await tl.to(0.9)
    assert await r == "B"
    # Each attempt was given what was left of the one budget.
    assert a.timeouts == [1.0] and b.timeouts == [pytest.approx(0.2)]


@aio
async def test_no_hedge_past_the_deadline() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    a, b = Scripted(tl, (0.6, "A")), Scripted(tl, (0.1, "B"))
    route(m, a=a, b=b)
    r = asyncio.ensure_future(m.agenerate("p", deadline=0.7))
    await tl.to(0.6)
    assert await r == "A"
    assert b.started == [] and 0.8 not in tl.asked()


@aio
async def test_a_hedge_goes_to_another_deployment_first() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.5)
    a1, a2, b = Scripted(tl, (5.0, "A1")), Scripted(tl, (5.0, "A2")), Scripted(tl, (0.1, "B"))
    route(m, a=a1, b=b)
    m.add_deployment("a", a2, {"deployment": "two"})
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(0.5)
    # One deployment first, the other as the hedge (whichever the weighted pick chose).
    assert sorted(a1.started + a2.started) == [0.0, 0.5] and b.started == []
    await tl.to(1.0)  # max_hedges=1: no hedge onto 'b'
    assert b.started == []
    await tl.to(5.0)
    assert await r in ("A1", "A2")
    s = stats(m, "a")
    assert (s["requests"], s["successes"], s["cancelled"], s["hedged_requests"]) == (2, 1, 1, 1)


@aio
async def test_max_hedges_and_a_models_own_metadata() -> None:
    tl = Timeline()
    m = manager(tl)
    a, b, c = Scripted(tl, (9.0, "A")), Scripted(tl, (9.0, "B")), Scripted(tl, (0.1, "C"))
    m.register_model("a", a, {"hedge_after": 0.3, "max_hedges": 2})
    m.register_model("b", b, {"hedge_after": 0.4})
    m.register_model("c", c)
    m.set_active_model("a")
    m.set_fallback_chain(["b", "c"])
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(1.0)
    # a's policy (b's own is for requests that start on b): b at 0.3, c at 0.6.
    assert (b.started, c.started) == ([0.3], [0.6])
    assert await r == "C"
    assert stats(m, "c")["hedge_wins"] == 1


@aio
async def test_p95_hedges_at_the_floor_until_enough_samples() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after="p95")
    a, b = Scripted(tl, (9.0, "A"), (9.0, "A")), Scripted(tl, (0.1, "B"), (0.1, "B"))
    route(m, a=a, b=b)
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(P95_FLOOR + 0.1)
    assert await r == "B" and b.started == [P95_FLOOR]
    native = m._models["a"].stats
    for _ in range(P95_SAMPLES):
        native.record_success(0.25)
    t = tl.now
    r = asyncio.ensure_future(m.agenerate("q"))
    await tl.to(t + 0.4)
    assert await r == "B"
    assert b.started[1] - t == pytest.approx(0.25, rel=0.02)  # the native p95


def test_the_p95_policy_reads_the_models_histogram() -> None:
    m = LLMManager()
    m.register_model("a", lambda p, k: "x")
    model = m._models["a"]
    pol = HedgePolicy("p95")
    assert pol.delay(model) == P95_FLOOR
    for i in range(100):
        model.stats.record_success(0.01 * (i + 1))
    assert pol.delay(model) == pytest.approx(0.95, rel=0.02)
    assert HedgePolicy(0.3).delay(model) == 0.3


@aio
async def test_sync_models_hedge_under_agenerate() -> None:
    """A sync model's attempt runs on its worker pool; the loser's thread is left to
    finish (it cannot be stopped) but the request does not wait for it."""
    import threading

    tl = Timeline()
    m = manager(tl, hedge_after=0.5)
    gate = threading.Event()

    def slow(prompt: str, kwargs: dict[str, Any]) -> str:
        gate.wait(10)
        return "A"

    b = Scripted(tl, (0.1, "B"))
    route(m, a=slow, b=b)
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(0.6)
    assert await r == "B"
    gate.set()
    assert stats(m, "a")["cancelled"] == 1


def test_sync_generate_does_not_hedge() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.01)
    calls: list[str] = []

    def a(prompt: str, kwargs: dict[str, Any]) -> str:
        calls.append("a")
        return "A"

    def b(prompt: str, kwargs: dict[str, Any]) -> str:
        calls.append("b")
        return "B"

    route(m, a=a, b=b)
    assert m.generate("p") == "A" and [*m.stream("q")] == ["A"] and calls == ["a", "a"]
    assert stats(m, "b")["hedged_requests"] == 0


@aio
async def test_a_hedged_request_tells_consistent_events() -> None:
    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    a, b = Scripted(tl, (5.0, "A")), Scripted(tl, (0.1, "B"))
    route(m, a=a, b=b)
    events: list[Event] = []
    m.subscribe(events.append)
    r = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(0.9)
    assert await r == "B"
    started = [(e.model, e.position) for e in events if isinstance(e, AttemptStarted)]
    ended = [(e.model, e.outcome) for e in events if isinstance(e, AttemptEnded)]
    assert started == [("a", 0), ("b", 1)]
    assert sorted(ended) == [("a", "cancelled"), ("b", "success")]


@pytest.mark.parametrize(
    ("kw", "err"),
    [
        ({"hedge_after": 0}, ValueError),
        ({"hedge_after": -1.0}, ValueError),
        ({"hedge_after": float("inf")}, ValueError),
        ({"hedge_after": "p99"}, TypeError),
        ({"hedge_after": True}, TypeError),
        ({"hedge_after": 1.0, "max_hedges": 0}, ValueError),
        ({"hedge_after": 1.0, "max_hedges": 1.5}, TypeError),
        ({"max_hedges": 99}, ValueError),
    ],
)
def test_bad_settings_are_refused_clearly(kw: dict[str, Any], err: type[Exception]) -> None:
    with pytest.raises(err, match="hedge"):
        LLMManager(**kw)
    m = LLMManager()
    with pytest.raises(err, match="hedge"):
        m.register_model("a", lambda p, k: "x", kw)


def test_max_hedges_alone_in_metadata_needs_a_delay() -> None:
    m = LLMManager()
    with pytest.raises(ValueError, match="hedge_after"):
        m.register_model("a", lambda p, k: "x", {"max_hedges": 2})
    m = LLMManager(hedge_after=0.5)
    m.register_model("a", lambda p, k: "x", {"max_hedges": 2})
    assert m._models["a"].hedge.max_hedges == 2


step = st.tuples(
    st.sampled_from([0.1, 0.4, 0.6, 1.0, 3.0]),
    st.sampled_from(["ok", "fail"]),
)


@settings(max_examples=40, deadline=None)
@given(
    scripts=st.lists(st.lists(step, min_size=1, max_size=3), min_size=2, max_size=3),
    after=st.sampled_from([0.3, 0.5, 2.0]),
    hedges=st.integers(1, 2),
)
def test_any_script_books_every_attempt_once(
    scripts: list[list[tuple[float, str]]], after: float, hedges: int
) -> None:
    """Whatever the models do and when: each attempt ends once (success, failure or
    cancelled), the request once, and the answer is a model's."""

    async def main() -> None:
        tl = Timeline()
        m = manager(tl, hedge_after=after, max_hedges=hedges, max_retries=2)
        models = {
            name: Scripted(
                tl, *((t, ConnectionError(name) if out == "fail" else name) for t, out in script)
            )
            for name, script in zip("abc", scripts, strict=False)
        }
        route(m, **models)
        r = asyncio.ensure_future(m.agenerate("p"))
        await tl.to(1000.0)  # every sleep, in order (the backoffs' too)
        try:
            text = await r
        except LLMError:
            text = None
        assert text is None or text in models or text == "ok"  # (a script past its end)
        for name in models:
            s = counts(m, name)  # balanced: asserted inside
            assert s[5] <= s[4]  # wins <= hedges
        mt = m.get_metrics()
        assert mt["successful_requests"] + mt["failed_requests"] == 1
        assert mt["cancelled_requests"] == 0

    asyncio.run(main())


@aio
async def test_a_hedge_spends_from_the_retry_budget() -> None:
    """A hedge is an extra upstream call, as a retry is: without room in the retry
    budget none starts (and it is no denied retry); with room, it does."""
    tl = Timeline()
    m = manager(tl, hedge_after=0.8, retry_budget=0.01, min_retries_per_second=0)
    a, b = Scripted(tl, (5.0, "A")), Scripted(tl, (0.1, "B"))
    route(m, a=a, b=b)
    task = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(5.0)
    assert await task == "A"
    assert b.started == []
    assert counts(m, "b") == (0, 0, 0, 0, 0, 0)
    mt = m.get_metrics()
    assert (mt["fallbacks"], mt["retries_denied"]) == (0, 0)

    tl2 = Timeline()
    m2 = manager(tl2, hedge_after=0.8, retry_budget=0.2, min_retries_per_second=10)
    a2, b2 = Scripted(tl2, (5.0, "A")), Scripted(tl2, (0.1, "B"))
    route(m2, a=a2, b=b2)
    task2 = asyncio.ensure_future(m2.agenerate("p"))
    await tl2.to(0.9)
    assert await task2 == "B"
    assert b2.started == [0.8]


@aio
async def test_prometheus_exports_the_hedge_counters() -> None:
    # The prometheus extra is in the development set, not in the other interpreters'.
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from agenticaiframework.llms.prometheus import LLMCollector

    tl = Timeline()
    m = manager(tl, hedge_after=0.8)
    route(m, a=Scripted(tl, (5.0, "A")), b=Scripted(tl, (0.1, "B")))
    task = asyncio.ensure_future(m.agenerate("p"))
    await tl.to(0.9)
    assert await task == "B"
    registry = CollectorRegistry()
    registry.register(LLMCollector(m))
    got = {
        (s.name, s.labels.get("model")): s.value
        for fam in text_string_to_metric_families(generate_latest(registry).decode())
        for s in fam.samples
        if "hedge" in s.name
    }
    assert got == {
        ("agenticai_model_hedged_requests_total", "a"): 0,
        ("agenticai_model_hedged_requests_total", "b"): 1,
        ("agenticai_model_hedge_wins_total", "a"): 0,
        ("agenticai_model_hedge_wins_total", "b"): 1,
    }
