"""LLMManager, CircuitBreaker and Agent: the seed's API with exact semantics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agenticaiframework import Agent
from agenticaiframework.llms import (
    AllModelsFailedError,
    CircuitBreaker,
    CircuitBreakerOpenError,
    InvalidResponseError,
    LLMError,
    LLMManager,
    LLMResponse,
    NoModelConfiguredError,
    NonRetryableError,
    UnknownModelError,
)

SENTINEL = "sk-SENTINEL-1234567890abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    """An inference function that answers from a script and records its calls."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((prompt, dict(kwargs)))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step


def make(**kw: Any) -> tuple[LLMManager, list[float], FakeClock]:
    waits: list[float] = []
    clock = FakeClock()
    kw.setdefault("sleep", waits.append)
    kw.setdefault("clock", clock)
    return LLMManager(**kw), waits, clock


# ---------------------------------------------------------------- configuration


def test_error_hierarchy() -> None:
    for cls in (
        CircuitBreakerOpenError,
        AllModelsFailedError,
        NonRetryableError,
        UnknownModelError,
        NoModelConfiguredError,
    ):
        assert issubclass(cls, LLMError)
    assert issubclass(UnknownModelError, KeyError)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_retries": 0}, ValueError),
        ({"cache_max_entries": 0}, ValueError),
        ({"failure_threshold": 0}, ValueError),
        ({"recovery_timeout": -1}, ValueError),
        ({"backoff_base": -0.5}, ValueError),
        ({"backoff_max": float("nan")}, ValueError),
        ({"cache_ttl": -1}, ValueError),
        ({"max_retries": "3"}, TypeError),
        ({"max_retries": True}, TypeError),
        ({"sleep": 5}, TypeError),
        ({"jitter": "sometimes"}, ValueError),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as ei:
        LLMManager(**kwargs)
    assert next(iter(kwargs)) in str(ei.value)


def test_register_validation_and_order() -> None:
    m, _, _ = make()
    with pytest.raises(TypeError):
        m.register_model(42, lambda p, k: "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.register_model("", lambda p, k: "x")
    with pytest.raises(TypeError):
        m.register_model("a", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        m.register_model("a", lambda p, k: "x", metadata=[1])  # type: ignore[arg-type]
    for name in ("c", "a", "b"):
        m.register_model(name, lambda p, k, n=name: n)
    assert m.list_models() == ["c", "a", "b"]


def test_unknown_names_leave_configuration_unchanged() -> None:
    m, _, _ = make()
    m.register_model("a", lambda p, k: "a")
    m.set_active_model("a")
    m.set_fallback_chain(["a"])
    with pytest.raises(UnknownModelError):
        m.set_active_model("nope")
    with pytest.raises(UnknownModelError):
        m.set_fallback_chain(["a", "nope"])
    with pytest.raises(UnknownModelError):
        m.get_model_info("nope")
    with pytest.raises(UnknownModelError):
        m.reset_circuit_breaker("nope")
    assert m.active_model == "a" and m.fallback_chain == ["a"]
    with pytest.raises(TypeError):
        m.set_fallback_chain("a")


# ---------------------------------------------------------------- routing and retries


def test_prompt_must_be_str() -> None:
    m, _, _ = make()
    m.register_model("a", lambda p, k: "a")
    m.set_active_model("a")
    for bad in (None, 42, b"bytes", ["p"]):
        with pytest.raises(TypeError):
            m.generate(bad)  # type: ignore[arg-type]
    assert m.get_metrics()["total_requests"] == 0


def test_no_model_configured() -> None:
    m, _, _ = make()
    with pytest.raises(NoModelConfiguredError):
        m.generate("p")
    assert m.get_metrics()["failed_requests"] == 1


def test_try_order_dedup_and_backoff() -> None:
    a = Recorder(ConnectionError("a down"))
    b = Recorder(TimeoutError("b slow"))
    c = Recorder("from c")
    m, waits, _ = make(max_retries=3)
    for name, fn in (("a", a), ("b", b), ("c", c)):
        m.register_model(name, fn)
    m.set_active_model("a")
    m.set_fallback_chain(["b", "a", "c", "b"])
    r = m.generate_response("p", temperature=0.1)
    assert r.text == "from c" and r.model == "c" and r.attempts == 7 and not r.cached
    assert len(a.calls) == 3 and len(b.calls) == 3 and len(c.calls) == 1
    # waits between attempts of one model only: none after a model's last attempt
    assert waits == [1.0, 2.0, 1.0, 2.0]
    assert a.calls[0] == ("p", {"temperature": 0.1})
    metrics = m.get_metrics()
    assert metrics["total_retries"] == 4 and metrics["fallbacks"] == 2


def test_chain_without_active_model() -> None:
    m, _, _ = make()
    m.register_model("x", lambda p, k: "x")
    m.set_fallback_chain(["x"])
    assert m.generate("p") == "x"


def test_backoff_is_capped_and_jitter_optional() -> None:
    m, waits, _ = make(max_retries=6, backoff_base=1.0, backoff_max=5.0, failure_threshold=10)
    m.register_model("a", Recorder(ConnectionError()))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    j, jwaits, _ = make(max_retries=3, jitter="full")
    j.register_model("a", Recorder(ConnectionError()))
    j.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        j.generate("p")
    assert len(jwaits) == 2 and 0 <= jwaits[0] <= 1.0 and 0 <= jwaits[1] <= 2.0


def test_non_retryable_stops_that_model_but_falls_back() -> None:
    bad = Recorder(NonRetryableError("400 bad request"))
    m, waits, _ = make()
    m.register_model("bad", bad)
    m.register_model("good", Recorder("ok"))
    m.set_active_model("bad")
    m.set_fallback_chain(["good"])
    assert m.generate("p") == "ok"
    assert len(bad.calls) == 1 and waits == []


def test_base_exceptions_propagate_at_once() -> None:
    for exc in (KeyboardInterrupt(), SystemExit(3)):
        fn = Recorder(exc)
        backup = Recorder("backup")
        m, waits, _ = make()
        m.register_model("a", fn)
        m.register_model("b", backup)
        m.set_active_model("a")
        m.set_fallback_chain(["b"])
        with pytest.raises(type(exc)):
            m.generate("p")
        assert len(fn.calls) == 1 and backup.calls == [] and waits == []
        metrics = m.get_metrics()
        assert metrics["cancelled_requests"] == 1 and metrics["failed_requests"] == 0
        assert m.get_model_info("a")["stats"]["cancelled"] == 1


def test_all_failed_error_lists_every_failure_in_order() -> None:
    e1, e2 = ConnectionError("one"), NonRetryableError("two")
    m, _, _ = make(max_retries=2)
    m.register_model("a", Recorder(e1))
    m.register_model("b", Recorder(e2))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert ei.value.errors == [("a", e1), ("a", e1), ("b", e2)]
    assert ei.value.__cause__ is e2


def test_open_breaker_skips_without_calling() -> None:
    a = Recorder(ConnectionError("down"))
    m, _, clock = make(max_retries=1, failure_threshold=2, recovery_timeout=30)
    m.register_model("a", a)
    m.register_model("b", Recorder("b"))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    m.generate("p1")
    m.generate("p2")
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"
    calls = len(a.calls)
    r = m.generate_response("p3")
    assert r.model == "b" and len(a.calls) == calls
    assert isinstance(r.errors[0][1], CircuitBreakerOpenError)
    assert m.get_model_info("a")["stats"]["short_circuits"] == 1
    clock.t += 30  # recovery follows the injected clock, not the wall clock
    assert m.get_model_info("a")["circuit_breaker_state"] == "half-open"
    m.reset_circuit_breaker("a")
    assert m.get_model_info("a")["circuit_breaker_state"] == "closed"


def test_response_objects_and_bad_returns() -> None:
    m, _, _ = make()
    m.register_model("resp", lambda p, k: LLMResponse("text", prompt_tokens=7, completion_tokens=3))
    m.register_model("none", lambda p, k: None)
    m.set_active_model("resp")
    r = m.generate_response("p")
    assert r.text == "text" and r.usage.total_tokens == 10 and not r.usage.estimated
    m.set_active_model("none")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("q")
    assert isinstance(ei.value.errors[0][1], InvalidResponseError)
    assert len(ei.value.errors) == 1  # an invalid return is not retried


def test_async_model_under_sync_generate() -> None:
    async def amodel(prompt: str, kwargs: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return "async answer"

    m, _, _ = make()
    m.register_model("a", amodel)
    m.set_active_model("a")
    assert m.generate("p") == "async answer"
    assert m.get_model_info("a")["is_async"] is True


# ---------------------------------------------------------------- the cache


def test_cache_is_keyed_by_route_prompt_and_kwargs() -> None:
    a, b = Recorder("from a"), Recorder("from b")
    m, _, _ = make()
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    assert m.generate("p", x=1, y=2) == "from a"
    assert m.generate("p", y=2, x=1) == "from a"
    assert len(a.calls) == 1
    m.generate("p", x=1, y=3)
    assert len(a.calls) == 2
    m.set_active_model("b")  # another model must not serve a's answers
    assert m.generate("p", x=1, y=2) == "from b"


def test_use_cache_false_neither_reads_nor_writes() -> None:
    fn = Recorder("x")
    m, _, _ = make()
    m.register_model("a", fn)
    m.set_active_model("a")
    m.generate("p", use_cache=False)
    assert m.get_metrics()["cache_size"] == 0
    m.generate("p")
    m.generate("p", use_cache=False)
    assert len(fn.calls) == 3
    assert m.get_metrics()["cache_hits"] == 0


def test_caching_disabled_and_failures_not_cached() -> None:
    fn = Recorder(ConnectionError("x"), "ok")
    m, _, _ = make(max_retries=1)
    m.register_model("a", fn)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert m.generate("p") == "ok"
    off, _, _ = make(enable_caching=False)
    g = Recorder("y")
    off.register_model("a", g)
    off.set_active_model("a")
    off.generate("p")
    off.generate("p")
    assert len(g.calls) == 2 and off.get_metrics()["cache_hits"] == 0


def test_cache_is_bounded_lru_with_ttl_on_the_clock() -> None:
    fn = Recorder("v")
    m, _, clock = make(cache_max_entries=2, cache_ttl=10)
    m.register_model("a", fn)
    m.set_active_model("a")
    for p in ("p1", "p2", "p3"):
        m.generate(p)
    assert m.get_metrics()["cache_size"] == 2
    m.generate("p1")  # evicted, called again
    assert len(fn.calls) == 4
    m.generate("p1")
    assert len(fn.calls) == 4
    clock.t += 10
    m.generate("p1")
    assert len(fn.calls) == 5
    assert m.clear_cache() == 2
    assert m.get_metrics()["cache_size"] == 0


def test_reregistering_a_model_invalidates_its_answers() -> None:
    m, _, _ = make()
    m.register_model("a", lambda p, k: "old")
    m.set_active_model("a")
    assert m.generate("p") == "old"
    m.register_model("a", lambda p, k: "new")
    assert m.generate("p") == "new"


def test_lone_surrogates_work() -> None:
    m, _, _ = make()
    m.register_model("a", lambda p, k: p)
    m.set_active_model("a")
    assert m.generate("bad \udcff text") == "bad \udcff text"
    assert m.generate("bad \udcff text") == "bad \udcff text"
    assert m.get_metrics()["cache_hits"] == 1


def test_uncacheable_kwargs_still_work() -> None:
    m, _, _ = make()
    fn = Recorder("ok")
    m.register_model("a", fn)
    m.set_active_model("a")
    handle = object()
    assert m.generate("p", handle=handle) == "ok"
    assert m.generate("p", handle=handle) == "ok"
    assert len(fn.calls) == 2 and fn.calls[0][1]["handle"] is handle


# ---------------------------------------------------------------- metrics


def test_metrics_add_up() -> None:
    m, _, _ = make(max_retries=2)
    m.register_model(
        "a",
        Recorder(ConnectionError(), LLMResponse("ok", 5, 5)),
        {"cost_per_1k_tokens": 2.0},
    )
    m.set_active_model("a")
    m.generate("p")  # one failed attempt, then success
    m.generate("p")  # hit
    metrics = m.get_metrics()
    assert metrics["total_requests"] == 2
    assert metrics["successful_requests"] == 2  # hits count as successes
    assert metrics["cache_hits"] == 1 and metrics["cache_misses"] == 1
    assert metrics["total_retries"] == 1
    assert metrics["total_tokens"] == 10
    assert metrics["success_rate"] == 1.0 and metrics["cache_hit_rate"] == 0.5
    assert metrics["active_model"] == "a" and metrics["fallback_chain"] == []
    info = m.get_model_info("a")
    assert info["name"] == "a"
    stats = info["stats"]
    assert stats["requests"] == 2 and stats["successes"] == 1 and stats["failures"] == 1
    assert stats["tokens"] == 10 and stats["cost"] == pytest.approx(0.02)
    for q in ("avg_latency", "p50_latency", "p95_latency", "p99_latency"):
        assert stats[q] >= 0.0
    assert info["circuit_breaker_state"] in {"closed", "open", "half-open"}


def test_estimated_tokens_and_empty_rates() -> None:
    m, _, _ = make()
    assert m.get_metrics()["success_rate"] == 0.0
    assert m.get_metrics()["cache_hit_rate"] == 0.0
    m.register_model("a", lambda p, k: "some text")
    m.set_active_model("a")
    m.generate("a prompt")
    assert m.get_metrics()["total_tokens"] > 0


# ---------------------------------------------------------------- CircuitBreaker


def test_circuit_breaker_call() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(failure_threshold=2, recovery_timeout=10, clock=clock)
    assert cb.call(lambda x, y=1: x + y, 1, y=2) == 3
    err = ValueError("boom")

    def fail() -> None:
        raise err

    for _ in range(2):
        with pytest.raises(ValueError) as ei:
            cb.call(fail)
        assert ei.value is err
    assert cb.state == "open" and cb.failure_count == 2
    called: list[int] = []
    with pytest.raises(CircuitBreakerOpenError) as oe:
        cb.call(called.append, 1)
    assert called == [] and oe.value.retry_after == pytest.approx(10.0)
    clock.t += 10
    assert cb.state == "half-open"
    assert cb.call(lambda: "ok") == "ok"
    assert cb.state == "closed" and cb.failure_count == 0


def test_circuit_breaker_success_resets_failures_and_one_trial_by_default() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(failure_threshold=3, recovery_timeout=5, clock=clock)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            cb.call(lambda: 1 / 0)
    cb.call(lambda: None)
    assert cb.failure_count == 0
    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            cb.call(lambda: 1 / 0)
    clock.t += 5
    inner: list[str] = []

    def trial() -> str:
        # While this trial runs, a second call must be refused.
        with pytest.raises(CircuitBreakerOpenError):
            cb.call(lambda: inner.append("second"))
        return "trial"

    assert cb.call(trial) == "trial"
    assert inner == []
    cb.reset()
    assert cb.state == "closed"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"recovery_timeout": -1},
        {"half_open_max_calls": 0},
    ],
)
def test_circuit_breaker_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)


def test_manager_accepts_a_breaker_of_its_own() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=99, clock=clock)
    m, _, _ = make(max_retries=1)
    m.register_model("a", Recorder(ConnectionError()), breaker=cb)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert cb.state == "open"
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"


# ---------------------------------------------------------------- Agent


def test_agent_runs_tasks() -> None:
    agent = Agent("helper", "assistant", ["chat"], {"llm_manager": None})
    assert agent.status == "initialized"
    with pytest.raises(RuntimeError):
        agent.execute_task(lambda: 1)
    agent.start()
    assert agent.status == "running"
    assert agent.execute_task(lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(KeyError):
        agent.execute_task(lambda: {}["missing"])
    agent.stop()
    assert agent.status == "stopped"


# ---------------------------------------------------------------- logs and secrets


def test_logs_and_errors_never_show_secrets(caplog: pytest.LogCaptureFixture) -> None:
    def leaky(prompt: str, kwargs: dict[str, Any]) -> str:
        raise PermissionError(f"401: key {kwargs['api_key']} rejected (meta {SENTINEL})")

    m, _, _ = make(max_retries=2)
    m.register_model("a", leaky, {"api_key": SENTINEL, "provider": "openai"})
    m.set_active_model("a")
    with caplog.at_level(logging.DEBUG, logger="agenticaiframework"):
        with pytest.raises(AllModelsFailedError) as ei:
            m.generate("p", api_key=SENTINEL + "-kw")
    assert "failed attempt 1/2" in caplog.text
    assert "no model answered" in caplog.text
    for text in (caplog.text, str(ei.value), repr(m.get_metrics()), repr(m.get_model_info("a"))):
        assert SENTINEL not in text
    assert m.get_model_info("a")["metadata"] == {"api_key": "***", "provider": "openai"}
