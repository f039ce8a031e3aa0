"""The route walk (walk.py) on its own, and the admission-gate seam (gates.py): a policy
that refuses like an open breaker is one object, and the drivers never learn of it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agenticaiframework.llms import (
    AllModelsFailedError,
    CircuitBreakerOpenError,
    LLMManager,
    NonRetryableError,
)
from agenticaiframework.llms.errors import AdmissionRejectedError
from agenticaiframework.llms.gates import Gate, Rejected
from agenticaiframework.llms.models import Model
from agenticaiframework.llms.walk import Walk


async def _no_wait(_: float) -> None:
    return None


def manager(**kw: Any) -> LLMManager:
    return LLMManager(sleep=lambda _: None, async_sleep=_no_wait, **kw)


def two_models(m: LLMManager) -> None:
    m.register_model("a", lambda p, k: "a")
    m.register_model("b", lambda p, k: "b")
    m.set_active_model("a")
    m.set_fallback_chain(["b"])


def plan_of(m: LLMManager) -> tuple[Model, ...]:
    return tuple(m._models[n] for n in ("a", "b"))


def test_walk_decides_without_calling_anything() -> None:
    """The schedule of one request, driven by hand: two failures and a wait on 'a', then
    'b' answers. The walk never calls a model or sleeps."""
    m = manager(max_retries=2)
    two_models(m)
    walk = Walk(m, plan_of(m), {})
    assert walk.next() is m._models["a"]
    assert walk.failed(ConnectionError("1")) == 1.0  # retryable: wait, same model
    assert walk.next() is m._models["a"]
    assert walk.failed(ConnectionError("2")) is None  # out of attempts: move on
    model = walk.next()
    assert model is m._models["b"]
    from agenticaiframework._native import Record

    rec = walk.succeeded(Record("b", "b", 1, 1, True))
    assert rec.text == "b" and walk.attempts == 3 and [n for n, _ in walk.errors] == ["a", "a"]
    s = m.get_metrics()
    assert (s["successful_requests"], s["total_retries"], s["fallbacks"]) == (1, 1, 1)
    assert m.get_model_info("a")["stats"]["failures"] == 2


def test_non_retryable_moves_on_and_exhaustion_is_counted_once() -> None:
    m = manager(max_retries=3)
    two_models(m)
    walk = Walk(m, plan_of(m), {})
    walk.next()
    assert walk.failed(NonRetryableError("no")) is None
    walk.next()
    assert walk.failed(NonRetryableError("no")) is None
    assert walk.next() is None
    err = walk.exhausted()
    assert isinstance(err, AllModelsFailedError) and len(err.errors) == 2
    walk.abandon()  # already ended: nothing more is counted
    s = m.get_metrics()
    assert (s["failed_requests"], s["cancelled_requests"], s["fallbacks"]) == (1, 0, 1)


def test_abandon_gives_the_permit_back_and_counts_once() -> None:
    m = manager(failure_threshold=1, recovery_timeout=10)
    two_models(m)
    m._models["a"].breaker.trip()
    walk = Walk(m, plan_of(m), {})
    assert walk.next() is m._models["b"]  # 'a' skipped: its breaker is open
    assert isinstance(walk.errors[0][1], CircuitBreakerOpenError)
    walk.abandon()
    walk.abandon()
    s = m.get_metrics()
    assert s["cancelled_requests"] == 1
    assert m.get_model_info("b")["stats"]["cancelled"] == 1
    assert m.get_model_info("a")["stats"]["short_circuits"] == 1


class Quota:
    """A toy per-model admission gate: refuses a model after n admissions."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.left = name, n
        self.asked: list[tuple[str, bool]] = []

    def admit(self, model: Model, retry: bool) -> Rejected | None:
        self.asked.append((model.name, retry))
        if model.name != self.name:
            return None
        if self.left <= 0:
            return Rejected("quota spent", retry_after=2.5)
        self.left -= 1
        return None


def test_a_gate_refuses_like_an_open_breaker_on_every_path() -> None:
    m = manager()
    two_models(m)
    gate = Quota("a", 1)
    m._use_gates((gate,), ())
    g: Gate = gate  # the protocol is all a gate needs
    assert g is gate
    # A gate without watches() watches every model: the first try goes through the walk
    # too, so the gate is asked for it (gates.py).
    assert not m._models["a"].inline_sync and not m._models["b"].inline_async
    state = {"fail": True}

    def flaky(p: str, k: dict[str, Any]) -> str:
        if state["fail"]:
            raise ConnectionError("down")
        return "a"

    m.register_model("a", flaky)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    r = m.generate_response("p", use_cache=False)  # walk: 'a' admitted once, fails, ...
    assert gate.asked[:2] == [("a", False), ("a", True)]
    assert r.model == "b"
    kinds = [type(e).__name__ for _, e in r.errors]
    assert kinds[-1] == "AdmissionRejectedError"
    err = r.errors[-1][1]
    assert isinstance(err, AdmissionRejectedError) and err.retry_after == 2.5
    assert "quota spent" in str(err)
    # The same through agenerate, stream and astream: the drivers never learned of it.
    assert asyncio.run(m.agenerate("q", use_cache=False, timeout=5)) == "b"
    assert list(m.stream("s", use_cache=False)) == ["b"]

    async def astream() -> list[str]:
        return [c async for c in m.astream("t", use_cache=False)]

    assert asyncio.run(astream()) == ["b"]
    assert all(retry in (False, True) for _, retry in gate.asked)


def test_streamed_failure_logs_its_attempt_number(caplog: Any) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="agenticaiframework.llms")
    calls = {"n": 0}

    class Streamer:
        def __call__(self, p: str, k: dict[str, Any]) -> str:
            return "x"

        def stream(self, p: str, k: dict[str, Any]) -> Any:
            calls["n"] += 1
            if calls["n"] < 3:
                raise ConnectionError("not yet")
            yield "ok"

    m = manager(max_retries=3)
    m.register_model("s", Streamer())
    m.set_active_model("s")
    assert list(m.stream("p")) == ["ok"]
    attempts = [r.getMessage() for r in caplog.records if "failed attempt" in r.getMessage()]
    assert [a.split("attempt ")[1].split(":")[0] for a in attempts] == ["1/3", "2/3"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_drivers_agree_on_a_retry_then_fallback_schedule(asynchronous: bool) -> None:
    waits: list[float] = []

    async def asleep(s: float) -> None:
        waits.append(s)

    m = LLMManager(max_retries=3, sleep=waits.append, async_sleep=asleep)
    calls: list[str] = []

    def bad(p: str, k: dict[str, Any]) -> str:
        calls.append("bad")
        raise ConnectionError("x")

    m.register_model("bad", bad)
    m.register_model("good", lambda p, k: "good")
    m.set_active_model("bad")
    m.set_fallback_chain(["good"])
    if asynchronous:
        r = asyncio.run(m.agenerate_response("p"))
    else:
        r = m.generate_response("p")
    assert (r.text, r.attempts, waits, calls) == ("good", 4, [1.0, 2.0], ["bad"] * 3)
    s = m.get_metrics()
    assert (s["total_retries"], s["fallbacks"], s["successful_requests"]) == (2, 1, 1)
