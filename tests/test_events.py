"""The event hook (issue 16): LLMManager.subscribe(callback). What each path tells, in
order; where callbacks run; a raising subscriber never fails a request; nothing is
installed without subscribers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any

import pytest

from agenticaiframework.llms import LLMManager
from agenticaiframework.llms.events import (
    AttemptEnded,
    AttemptStarted,
    BreakerStateChanged,
    Event,
    FallbackTaken,
    ObservedWalk,
    RequestEnded,
    RequestStarted,
    StreamFirstChunk,
    Subscription,
)
from agenticaiframework.llms.walk import Walk


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Flaky:
    """Fails while ``fail`` is set; streams two chunks through ``stream``."""

    def __init__(self, text: str = "a") -> None:
        self.fail = False
        self.text = text

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        if self.fail:
            raise ConnectionError("down")
        return self.text

    def stream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        if self.fail:
            raise ConnectionError("down")
        yield self.text
        yield "!"


def make(**kw: Any) -> tuple[LLMManager, Flaky, list[Event]]:
    kw.setdefault("max_retries", 2)
    kw.setdefault("failure_threshold", 2)
    m = LLMManager(sleep=lambda _: None, async_sleep=_no_sleep, **kw)
    a = Flaky("a")
    m.register_model("a", a)
    m.register_model("b", lambda p, k: "b")
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    events: list[Event] = []
    m.subscribe(events.append)
    return m, a, events


async def _no_sleep(_: float) -> None:
    return None


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def ended(events: list[Event]) -> RequestEnded:
    e = events[-1]
    assert isinstance(e, RequestEnded)
    return e


def test_nothing_is_installed_without_subscribers() -> None:
    m = LLMManager()
    m.register_model("a", lambda p, k: "a")
    m.set_active_model("a")
    plain = {name: getattr(type(m), name) for name in ("generate", "agenerate", "stream")}
    assert m._Walk is Walk and m._hub is None and m._models["a"].inline_sync
    sub = m.subscribe(lambda e: None)
    assert isinstance(sub, Subscription) and sub.active
    assert "generate" in m.__dict__ and m._Walk is ObservedWalk
    assert not m._models["a"].inline_sync and m._models["a"].watchers == 1
    m.register_model("late", lambda p, k: "late")  # registered while observed: watched
    assert m._models["late"].watchers == 1
    sub.unsubscribe()
    sub.unsubscribe()  # idempotent
    assert not sub.active
    for name, f in plain.items():
        assert name not in m.__dict__ and getattr(type(m), name) is f
    assert m._Walk is Walk and m._hub is None
    assert all(x.inline_sync and x.watchers == 0 for x in m._models.values())
    with pytest.raises(TypeError):
        m.subscribe("not callable")  # type: ignore[arg-type]


def test_a_first_try_and_a_hit() -> None:
    m, _, ev = make()
    assert m.generate("p") == "a"
    assert kinds(ev) == ["RequestStarted", "AttemptStarted", "AttemptEnded", "RequestEnded"]
    start, att, end, req = ev
    assert isinstance(start, RequestStarted) and start.route == ("a", "b")
    assert start.operation == "generate"
    assert att == AttemptStarted(start.request_id, "a", 1, 0)
    assert isinstance(end, AttemptEnded) and end.outcome == "success"
    assert (end.prompt_tokens, end.completion_tokens, end.error_type) == (1, 1, None)
    assert end.latency >= 0
    assert isinstance(req, RequestEnded)
    assert (req.outcome, req.tier, req.model, req.attempts, req.coalesced) == (
        "success",
        "model",
        "a",
        1,
        False,
    )
    ev.clear()
    assert m.generate_response("p").cached
    assert kinds(ev) == ["RequestStarted", "RequestEnded"]
    assert (ended(ev).tier, ended(ev).outcome, ended(ev).attempts) == ("l1", "success", 0)
    assert ev[0].request_id == ev[1].request_id != start.request_id


def test_retries_a_breaker_opening_and_a_fallback_in_order() -> None:
    m, a, ev = make()
    a.fail = True
    assert m.generate("p") == "b"
    assert kinds(ev) == [
        "RequestStarted",
        "AttemptStarted",
        "AttemptEnded",
        "AttemptStarted",
        "AttemptEnded",
        "BreakerStateChanged",
        "FallbackTaken",
        "AttemptStarted",
        "AttemptEnded",
        "RequestEnded",
    ]
    rid = ev[0].request_id
    assert all(e.request_id == rid for e in ev)
    fails = [e for e in ev if isinstance(e, AttemptEnded) and e.outcome == "failure"]
    assert [(e.model, e.attempt, e.error_type) for e in fails] == [
        ("a", 1, "ConnectionError"),
        ("a", 2, "ConnectionError"),
    ]
    assert ev[5] == BreakerStateChanged(rid, "a", "closed", "open")
    assert ev[6] == FallbackTaken(rid, "a", "b", "ConnectionError")
    assert ev[7] == AttemptStarted(rid, "b", 1, 1)
    req = ended(ev)
    assert (req.model, req.attempts, req.retries, req.fallbacks) == ("b", 3, 1, 1)
    # The next request skips the open breaker: no attempt on 'a'.
    ev.clear()
    assert m.generate("q") == "b"
    assert kinds(ev) == [
        "RequestStarted",
        "FallbackTaken",
        "AttemptStarted",
        "AttemptEnded",
        "RequestEnded",
    ]
    assert ev[1] == FallbackTaken(ev[0].request_id, "a", "b", "CircuitBreakerOpenError")


def test_the_breaker_moves_by_time_and_closes_on_a_trial() -> None:
    clock = Clock()
    m, a, ev = make(clock=clock, recovery_timeout=10)
    a.fail = True
    m.generate("open it")
    a.fail = False
    clock.t += 11
    ev.clear()
    assert m.generate("trial") == "a"
    moves = [(e.from_state, e.to_state) for e in ev if isinstance(e, BreakerStateChanged)]
    assert moves == [("open", "half-open"), ("half-open", "closed")]


def test_a_failed_request() -> None:
    m, a, ev = make()
    a.fail = True
    m.register_model("b", Flaky("b"))
    m._models["b"].fn.fail = True
    with pytest.raises(Exception) as info:
        m.generate("p")
    req = ended(ev)
    assert (req.outcome, req.tier, req.error_type) == ("failure", None, type(info.value).__name__)
    assert req.error_type == "AllModelsFailedError" and req.attempts == 4


def test_streams_tell_their_first_chunk_and_their_end() -> None:
    m, _, ev = make()
    assert list(m.stream("s")) == ["a", "!"]
    assert kinds(ev) == [
        "RequestStarted",
        "AttemptStarted",
        "StreamFirstChunk",
        "AttemptEnded",
        "RequestEnded",
    ]
    assert isinstance(ev[2], StreamFirstChunk) and ev[2].model == "a"
    assert ev[0].operation == "stream" and ended(ev).tier == "model"
    # Abandoned after its first chunk: the attempt and the request end cancelled.
    ev.clear()
    it = m.stream("t")
    assert next(it) == "a"
    it.close()
    assert kinds(ev)[-2:] == ["AttemptEnded", "RequestEnded"]
    assert ev[-2].outcome == "cancelled"  # type: ignore[union-attr]
    assert (ended(ev).outcome, ended(ev).error_type) == ("cancelled", "GeneratorExit")
    # A cached stream: one chunk, the l1 tier.
    ev.clear()
    assert list(m.stream("s")) == ["a!"]
    assert kinds(ev) == ["RequestStarted", "RequestEnded"] and ended(ev).tier == "l1"


def test_async_paths_tell_inside_the_request_task() -> None:
    m, _, ev = make()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")
    seen: list[str] = []
    m.subscribe(lambda e: seen.append(var.get()))

    async def one(tag: str, prompt: str) -> str:
        var.set(tag)
        return await m.agenerate(prompt)

    async def main() -> None:
        assert await asyncio.gather(one("t1", "x"), one("t2", "y")) == ["a", "a"]
        chunks = [c async for c in m.astream("z")]
        assert chunks == ["a", "!"]

    asyncio.run(main())
    ops = [e.operation for e in ev if isinstance(e, RequestStarted)]
    assert ops == ["agenerate", "agenerate", "astream"]
    by_request: dict[int, set[str]] = {}
    for e, who in zip(ev, seen, strict=True):
        by_request.setdefault(e.request_id, set()).add(who)
    tags = sorted(tuple(v) for v in by_request.values())
    assert tags == [("nobody",), ("t1",), ("t2",)]  # each request's own context
    assert any(isinstance(e, StreamFirstChunk) for e in ev)


def test_sync_callbacks_run_on_the_callers_thread() -> None:
    m, _, _ = make()
    threads: list[int] = []
    m.subscribe(lambda e: threads.append(threading.get_ident()))
    done: list[int] = []
    alive = threading.Barrier(4)  # all four alive at once: four distinct idents

    def work() -> None:
        alive.wait(10)
        m.generate(f"p{threading.get_ident()}")
        done.append(threading.get_ident())
        alive.wait(10)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(set(threads)) == sorted(done) and len(set(done)) == 4


def test_a_raising_subscriber_fails_nothing(caplog: Any) -> None:
    m, a, ev = make()

    def bad(e: Event) -> None:
        raise RuntimeError("subscriber bug")

    m.subscribe(bad)
    after: list[Event] = []
    m.subscribe(after.append)
    a.fail = True
    with caplog.at_level(logging.DEBUG, logger="agenticaiframework.llms"):
        assert m.generate("p") == "b"
        assert m.generate("q") == "b"
    assert len(after) == len(ev) > 10
    warned = [r for r in caplog.records if "subscriber" in r.getMessage()]
    assert [r.levelname for r in warned].count("WARNING") == 1
    assert m.get_metrics()["successful_requests"] == 2


def test_counters_are_the_same_with_and_without_subscribers() -> None:
    def workload(m: LLMManager, a: Flaky) -> dict[str, Any]:
        m.generate("p")
        m.generate("p")
        a.fail = True
        m.generate("q")
        m.generate("r")
        list(m.stream("s"))
        asyncio.run(m.agenerate("t"))
        s = m.get_metrics()
        return {k: s[k] for k in s if k != "success_rate" and "latency" not in k} | {
            n: m.get_model_info(n)["stats"] | {"lat": None} for n in ("a", "b")
        }

    m1, a1, _ = make()
    m2 = LLMManager(sleep=lambda _: None, async_sleep=_no_sleep, max_retries=2, failure_threshold=2)
    a2 = Flaky("a")
    m2.register_model("a", a2)
    m2.register_model("b", lambda p, k: "b")
    m2.set_active_model("a")
    m2.set_fallback_chain(["b"])
    w1, w2 = workload(m1, a1), workload(m2, a2)
    strip = ("avg_latency", "p50_latency", "p95_latency", "p99_latency")
    for w in (w1, w2):
        for n in ("a", "b"):
            for k in (*strip, "p50_time_to_first_chunk", "p95_time_to_first_chunk"):
                w[n].pop(k)
    assert w1 == w2


def test_coalesced_followers_say_so() -> None:
    async def main() -> None:
        go = asyncio.Event()

        async def slow(prompt: str, kwargs: dict[str, Any]) -> str:
            await go.wait()
            return "slow"

        m = LLMManager()
        m.register_model("s", slow)
        m.set_active_model("s")
        ev: list[Event] = []
        m.subscribe(ev.append)
        tasks = [asyncio.ensure_future(m.agenerate("same")) for _ in range(3)]
        for _ in range(10):  # the leader reaches the model; the others join its flight
            await asyncio.sleep(0)
        go.set()
        assert await asyncio.gather(*tasks) == ["slow"] * 3
        ends = sorted((e.coalesced, e.tier, e.model) for e in ev if isinstance(e, RequestEnded))
        assert ends == [(False, "model", "s"), (True, "model", "s"), (True, "model", "s")]
        assert sum(isinstance(e, AttemptStarted) for e in ev) == 1

    asyncio.run(main())


def test_the_fleet_tier_is_told(redis_srv: Any) -> None:
    pytest.importorskip("redis")
    a = LLMManager(redis=redis_srv.url, namespace="ev")
    b = LLMManager(redis=redis_srv.url, namespace="ev")
    for m in (a, b):
        m.register_model("m", lambda p, k: "answer")
        m.set_active_model("m")
    ev: list[Event] = []
    b.subscribe(ev.append)
    assert a.generate("q") == "answer"
    assert b.generate("q") == "answer"  # b's L1 misses, Redis has it
    assert (ended(ev).tier, ended(ev).model, ended(ev).attempts) == ("l2", "m", 0)
    assert b.generate("q") == "answer" and ended(ev).tier == "l1"
    assert list(b.stream("q2")) == ["answer"] and ended(ev).tier == "model"
    c = LLMManager(redis=redis_srv.url, namespace="ev")
    c.register_model("m", lambda p, k: "other")
    c.set_active_model("m")
    cev: list[Event] = []
    c.subscribe(cev.append)
    assert list(c.stream("q2")) == ["answer"] and ended(cev).tier == "l2"
