"""LLMManager against issue 4: configuration, routing, retries, backoff, fallback, breakers,
errors, results, metrics, logging and the async paths.

No test sleeps: every manager gets a recording ``sleep``/``async_sleep`` and a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from agenticaiframework.llms import (
    AllModelsFailedError,
    CircuitBreaker,
    CircuitBreakerOpenError,
    LLMError,
    LLMManager,
    LLMResponse,
    NoModelConfiguredError,
    NonRetryableError,
    UnknownModelError,
)

LOGGER = "agenticaiframework.llms"


# ---------------------------------------------------------------- helpers


class FakeClock:
    """Monotonic seconds that move only when a test advances them."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Model:
    """An inference function answering from a script (the last step repeats).

    A step that is an exception instance is raised; anything else is returned.
    """

    def __init__(self, *script: Any) -> None:
        self.script = list(script) or ["ok"]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((prompt, dict(kwargs)))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step

    @property
    def count(self) -> int:
        return len(self.calls)


class Env:
    def __init__(self, **kw: Any) -> None:
        self.waits: list[float] = []
        self.async_waits: list[float] = []
        self.clock = FakeClock()

        async def async_sleep(seconds: float) -> None:
            self.async_waits.append(seconds)

        kw.setdefault("sleep", self.waits.append)
        kw.setdefault("async_sleep", async_sleep)
        kw.setdefault("clock", self.clock)
        self.m = LLMManager(**kw)


@pytest.fixture
def make() -> Callable[..., Env]:
    return Env


def boom(msg: str = "boom") -> RuntimeError:
    return RuntimeError(msg)


# ---------------------------------------------------------------- public names


def test_public_names_and_error_hierarchy() -> None:
    import agenticaiframework
    import agenticaiframework.llms as llms

    assert agenticaiframework.Agent is not None
    for name in (
        "LLMManager",
        "CircuitBreaker",
        "LLMError",
        "CircuitBreakerOpenError",
        "AllModelsFailedError",
        "NonRetryableError",
        "UnknownModelError",
        "NoModelConfiguredError",
    ):
        assert hasattr(llms, name), name
    for cls in (
        CircuitBreakerOpenError,
        AllModelsFailedError,
        NonRetryableError,
        UnknownModelError,
        NoModelConfiguredError,
    ):
        assert issubclass(cls, LLMError)
    assert issubclass(LLMError, Exception)
    assert issubclass(UnknownModelError, KeyError)


# ---------------------------------------------------------------- constructor


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": 0},
        {"max_retries": -1},
        {"cache_max_entries": 0},
        {"failure_threshold": 0},
        {"recovery_timeout": -1},
        {"backoff_base": -0.5},
        {"backoff_max": -1.0},
        {"cache_ttl": -5},
    ],
)
def test_constructor_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LLMManager(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": "3"},
        {"max_retries": 2.5},
        {"cache_max_entries": "10"},
        {"failure_threshold": None},
        {"recovery_timeout": "60"},
        {"backoff_base": "1"},
        {"backoff_max": [60]},
        {"cache_ttl": "10"},
        {"enable_caching": "yes"},
        {"sleep": 5},
        {"async_sleep": "no"},
        {"clock": 0.0},
    ],
)
def test_constructor_wrong_types_raise_type_error_naming_parameter(
    kwargs: dict[str, Any],
) -> None:
    with pytest.raises(TypeError) as ei:
        LLMManager(**kwargs)
    assert next(iter(kwargs)) in str(ei.value)


def test_constructor_defaults_work() -> None:
    m = LLMManager()
    m.register_model("a", Model("x"))
    m.set_active_model("a")
    assert m.generate("p") == "x"


# ---------------------------------------------------------------- registration


def test_register_model_validation(make: Callable[..., Env]) -> None:
    m = make().m
    with pytest.raises(TypeError):
        m.register_model(42, Model())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        m.register_model(None, Model())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.register_model("", Model())
    with pytest.raises(TypeError):
        m.register_model("a", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        m.register_model("a", None)  # type: ignore[arg-type]
    assert m.list_models() == []


def test_list_models_in_registration_order(make: Callable[..., Env]) -> None:
    m = make().m
    for name in ("zeta", "alpha", "mid"):
        m.register_model(name, Model(name))
    assert m.list_models() == ["zeta", "alpha", "mid"]


def test_inference_fn_called_with_prompt_and_kwargs_dict(make: Callable[..., Env]) -> None:
    m = make().m
    a = Model("answer")
    m.register_model("a", a)
    m.set_active_model("a")
    assert m.generate("the prompt", temperature=0.7, max_tokens=500) == "answer"
    assert a.calls == [("the prompt", {"temperature": 0.7, "max_tokens": 500})]
    m.generate("no kwargs")
    prompt, kw = a.calls[-1]
    assert prompt == "no kwargs"
    assert isinstance(kw, dict) and kw == {}


def test_llm_response_return_gives_text_and_usage(make: Callable[..., Env]) -> None:
    m = make().m
    m.register_model("a", Model(LLMResponse("hello", prompt_tokens=7, completion_tokens=5)))
    m.set_active_model("a")
    assert m.generate("p1") == "hello"
    assert m.get_metrics()["total_tokens"] == 12
    res = m.generate_response("p2")
    assert res.text == "hello"
    assert res.usage.prompt_tokens == 7
    assert res.usage.completion_tokens == 5
    assert res.usage.total_tokens == 12
    assert m.get_metrics()["total_tokens"] == 24
    assert m.get_model_info("a")["stats"]["tokens"] == 24


# ---------------------------------------------------------------- configuration errors


def test_set_active_model_unknown_leaves_configuration(make: Callable[..., Env]) -> None:
    m = make().m
    a, b = Model("A"), Model("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(UnknownModelError) as ei:
        m.set_active_model("nope")
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, LLMError)
    assert m.get_metrics()["active_model"] == "a"
    assert m.get_metrics()["fallback_chain"] == ["b"]
    assert m.generate("p") == "A"


def test_set_fallback_chain_unknown_leaves_configuration(make: Callable[..., Env]) -> None:
    m = make().m
    a, b = Model(NonRetryableError("x")), Model("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(UnknownModelError):
        m.set_fallback_chain(["b", "ghost"])
    assert m.get_metrics()["fallback_chain"] == ["b"]
    assert m.generate("p") == "B"
    # No partial update either: the chain did not become ["b"] + something or empty.
    with pytest.raises(UnknownModelError):
        m.set_fallback_chain(["ghost"])
    assert m.get_metrics()["fallback_chain"] == ["b"]


def test_unknown_model_in_info_and_reset(make: Callable[..., Env]) -> None:
    m = make().m
    with pytest.raises(UnknownModelError):
        m.get_model_info("nope")
    with pytest.raises(UnknownModelError):
        m.reset_circuit_breaker("nope")


# ---------------------------------------------------------------- generate: routing


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["p"], 1.5])
def test_prompt_must_be_str(make: Callable[..., Env], bad: Any) -> None:
    m = make().m
    a = Model("x")
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(TypeError):
        m.generate(bad)
    with pytest.raises(TypeError):
        m.generate_response(bad)
    assert a.count == 0


def test_no_model_configured(make: Callable[..., Env]) -> None:
    m = make().m
    with pytest.raises(NoModelConfiguredError):
        m.generate("p")
    m.register_model("a", Model())
    with pytest.raises(NoModelConfiguredError) as ei:
        m.generate("p")
    assert isinstance(ei.value, LLMError)


def test_try_order_active_then_chain_duplicates_skipped(make: Callable[..., Env]) -> None:
    env = make()
    m = env.m
    order: list[str] = []

    def failing(name: str) -> Callable[[str, dict[str, Any]], str]:
        def fn(prompt: str, kwargs: dict[str, Any]) -> str:
            order.append(name)
            raise NonRetryableError(name)

        return fn

    for name in ("a", "b", "c"):
        m.register_model(name, failing(name))
    m.set_active_model("b")
    m.set_fallback_chain(["a", "b", "c", "a", "c"])
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert order == ["b", "a", "c"]
    assert [name for name, _ in ei.value.errors] == ["b", "a", "c"]
    assert env.waits == []


def test_chain_used_when_no_active_model(make: Callable[..., Env]) -> None:
    m = make().m
    a, b, c = Model(NonRetryableError("a down")), Model("B"), Model("C")
    m.register_model("a", a)
    m.register_model("b", b)
    m.register_model("c", c)
    m.set_fallback_chain(["a", "b", "c"])
    assert m.generate("p") == "B"
    assert (a.count, b.count, c.count) == (1, 1, 0)


def test_active_model_first_then_fallback(make: Callable[..., Env]) -> None:
    env = make(max_retries=3)
    m = env.m
    a, b = Model(boom()), Model("from b")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["a", "b"])
    assert m.generate("p") == "from b"
    assert a.count == 3 and b.count == 1
    assert env.waits == [1.0, 2.0]


# ---------------------------------------------------------------- retries and backoff


def test_default_backoff_sequence(make: Callable[..., Env]) -> None:
    env = make(max_retries=5, failure_threshold=100)
    m = env.m
    a = Model(boom())
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert a.count == 5
    assert env.waits == [1.0, 2.0, 4.0, 8.0]


def test_success_after_retries(make: Callable[..., Env]) -> None:
    env = make(max_retries=3)
    m = env.m
    a = Model(boom(), boom(), "third time lucky")
    m.register_model("a", a)
    m.set_active_model("a")
    assert m.generate("p") == "third time lucky"
    assert a.count == 3
    assert env.waits == [1.0, 2.0]


def test_no_wait_after_last_attempt_nor_before_next_model(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, failure_threshold=100)
    m = env.m
    a, b = Model(boom()), Model(boom())
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert (a.count, b.count) == (3, 3)
    assert env.waits == [1.0, 2.0, 1.0, 2.0]


def test_max_retries_one_means_single_attempt_no_wait(make: Callable[..., Env]) -> None:
    env = make(max_retries=1)
    m = env.m
    a = Model(boom())
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert a.count == 1 and env.waits == []


def test_backoff_base_and_cap(make: Callable[..., Env]) -> None:
    env = make(max_retries=6, backoff_base=0.5, backoff_max=3.0, failure_threshold=100)
    m = env.m
    m.register_model("a", Model(boom()))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert env.waits == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_default_backoff_cap_is_60(make: Callable[..., Env]) -> None:
    env = make(max_retries=9, failure_threshold=100)
    m = env.m
    m.register_model("a", Model(boom()))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert env.waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


@pytest.mark.parametrize("jitter", ["full", "equal"])
def test_jitter_waits_stay_within_bounds(make: Callable[..., Env], jitter: str) -> None:
    env = make(max_retries=5, failure_threshold=100, jitter=jitter)
    m = env.m
    m.register_model("a", Model(boom()))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert len(env.waits) == 4
    for wait, d in zip(env.waits, [1.0, 2.0, 4.0, 8.0], strict=True):
        low = 0.0 if jitter == "full" else d / 2
        assert low <= wait <= d


def test_invalid_jitter_rejected() -> None:
    with pytest.raises(ValueError):
        LLMManager(jitter="sometimes")


def test_no_wait_when_breaker_opens_mid_retry(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, failure_threshold=2)
    m = env.m
    a, b = Model(boom()), Model("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("p") == "B"
    # a: attempt 1 fails, wait 1 s, attempt 2 fails and opens the breaker: that was a's
    # last attempt, so nothing more is waited before b answers.
    assert a.count == 2
    assert env.waits == [1.0]


def test_no_wait_after_failed_half_open_trial(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, failure_threshold=1, recovery_timeout=10, enable_caching=False)
    m = env.m
    a = Model(boom())
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    env.waits.clear()
    env.clock.advance(10)
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert a.count == 2
    assert env.waits == []
    assert [name for name, _ in ei.value.errors] == ["a"]


# ---------------------------------------------------------------- error kinds


def test_non_retryable_error_stops_that_model_and_falls_back(make: Callable[..., Env]) -> None:
    env = make(max_retries=5)
    m = env.m
    err = NonRetryableError("bad request")
    a, b = Model(err), Model("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    res = m.generate_response("p")
    assert res.text == "B" and res.model == "b"
    assert a.count == 1 and b.count == 1
    assert env.waits == []
    assert res.attempts == 2


def test_non_retryable_subclass_also_stops_retries(make: Callable[..., Env]) -> None:
    class BadRequest(NonRetryableError):
        pass

    env = make(max_retries=4)
    m = env.m
    a = Model(BadRequest("no"))
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert a.count == 1 and env.waits == []
    assert isinstance(ei.value.errors[0][1], BadRequest)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_unretried_without_fallback(
    make: Callable[..., Env], exc_type: type[BaseException]
) -> None:
    env = make(max_retries=3)
    m = env.m
    err = exc_type()
    a, b = Model(err), Model("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(exc_type) as ei:
        m.generate("p")
    assert ei.value is err
    assert a.count == 1 and b.count == 0
    assert env.waits == []
    # The interrupt is not a model failure: the breaker has not counted it.
    assert m.get_model_info("a")["stats"]["failures"] == 0


def test_all_models_failed_error_details(make: Callable[..., Env]) -> None:
    env = make(max_retries=2, failure_threshold=100)
    m = env.m
    a1, a2 = ValueError("a-1"), ValueError("a-2")
    b1 = NonRetryableError("b-1")
    m.register_model("a", Model(a1, a2))
    m.register_model("b", Model(b1))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    err = ei.value
    assert isinstance(err, LLMError)
    assert isinstance(err.errors, list)
    assert err.errors == [("a", a1), ("a", a2), ("b", b1)]
    assert err.errors[0][1] is a1 and err.errors[2][1] is b1
    assert err.__cause__ is b1
    assert "a" in str(err) and "b" in str(err)


def test_skipped_open_breaker_model_not_called(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=1, recovery_timeout=60)
    m = env.m
    a, b = Model(boom()), Model("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("p1") == "B"
    assert a.count == 1
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"
    assert m.generate("p2") == "B"
    assert a.count == 1  # skipped, not called
    assert b.count == 2


def test_all_skipped_raises_all_models_failed(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=1)
    m = env.m
    a = Model(boom())
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p1")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p2")
    assert a.count == 1
    assert [n for n, _ in ei.value.errors] == ["a"]
    assert isinstance(ei.value.errors[0][1], CircuitBreakerOpenError)
    assert ei.value.__cause__ is ei.value.errors[-1][1]


# ---------------------------------------------------------------- regression: None on failure


def test_bug_never_returns_none_on_failure(make: Callable[..., Env]) -> None:
    m = make(max_retries=2).m
    m.register_model("a", Model(boom()))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    with pytest.raises(AllModelsFailedError):
        m.generate_response("p")


def test_fn_returning_none_is_an_error_not_a_none_answer(make: Callable[..., Env]) -> None:
    m = make(max_retries=2).m
    m.register_model("a", Model(None))
    m.set_active_model("a")
    with pytest.raises(LLMError):
        m.generate("p")


# ---------------------------------------------------------------- circuit breakers via the manager


def test_bug_breaker_count_reset_on_success(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=3, enable_caching=False)
    m = env.m
    a = Model(boom(), boom(), "ok", boom(), boom(), "ok", boom(), boom())
    m.register_model("a", a)
    m.set_active_model("a")
    outcomes = []
    for _ in range(8):
        try:
            outcomes.append(m.generate("p"))
        except AllModelsFailedError:
            outcomes.append(None)
    assert outcomes == [None, None, "ok", None, None, "ok", None, None]
    assert a.count == 8  # never short-circuited: failures were never 3 in a row
    info = m.get_model_info("a")
    assert info["circuit_breaker_state"] == "closed"


def test_breaker_opens_after_threshold_consecutive_failures(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=3, enable_caching=False)
    m = env.m
    a = Model(boom())
    m.register_model("a", a)
    m.set_active_model("a")
    for _ in range(3):
        with pytest.raises(AllModelsFailedError):
            m.generate("p")
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert a.count == 3


def test_bug_breaker_recovery_follows_injected_clock(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=1, recovery_timeout=30, enable_caching=False)
    m = env.m
    a = Model(boom(), "recovered")
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    env.clock.advance(29)
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert a.count == 1
    env.clock.advance(2)  # 31 s on the injected clock, no real time at all
    assert m.generate("p") == "recovered"
    assert a.count == 2
    assert m.get_model_info("a")["circuit_breaker_state"] == "closed"


def test_bug_single_half_open_trial_call(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=1, recovery_timeout=10)
    m = env.m
    a_calls: list[str] = []
    inner: list[str] = []

    def a(prompt: str, kwargs: dict[str, Any]) -> str:
        a_calls.append(prompt)
        if len(a_calls) == 1:
            raise boom()
        if prompt == "trial":
            # A second request while the trial call is still running: a must be skipped.
            inner.append(m.generate("inner", use_cache=False))
        return "A"

    b = Model("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("first", use_cache=False) == "B"
    env.clock.advance(10)
    assert m.generate("trial", use_cache=False) == "A"
    assert inner == ["B"]
    assert a_calls == ["first", "trial"]
    assert m.get_model_info("a")["circuit_breaker_state"] == "closed"


def test_half_open_trial_failure_reopens(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, failure_threshold=1, recovery_timeout=10, enable_caching=False)
    m = env.m
    a = Model(boom())
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    env.clock.advance(10)
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert a.count == 2  # one trial call only, not max_retries attempts
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"


def test_reset_circuit_breaker(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=1, enable_caching=False)
    m = env.m
    a = Model(boom(), "ok")
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"
    m.reset_circuit_breaker("a")
    assert m.get_model_info("a")["circuit_breaker_state"] == "closed"
    assert m.generate("p") == "ok"


def test_register_model_with_custom_breaker(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=100, enable_caching=False)
    m = env.m
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=5, clock=env.clock)
    a, b = Model(boom(), "A"), Model("B")
    m.register_model("a", a, breaker=cb)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("p") == "B"
    assert cb.state == "open"
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"
    assert m.generate("p") == "B"
    assert a.count == 1
    env.clock.advance(5)
    assert m.generate("p") == "A"
    assert cb.state == "closed"
    a.script = [boom()]
    assert m.generate("p") == "B"
    assert cb.state == "open"
    m.reset_circuit_breaker("a")
    assert cb.state == "closed" and cb.failure_count == 0


# ---------------------------------------------------------------- generate_response


def test_generate_response_fields(make: Callable[..., Env]) -> None:
    env = make(max_retries=2, failure_threshold=100)
    m = env.m
    m.register_model("a", Model(boom()))
    m.register_model("b", Model("answer"))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    res = m.generate_response("prompt")
    assert res.text == "answer"
    assert res.model == "b"
    assert res.cached is False
    assert res.attempts == 3
    assert isinstance(res.latency, float) and res.latency >= 0.0
    assert res.usage.total_tokens > 0
    hit = m.generate_response("prompt")
    assert hit.cached is True
    assert hit.attempts == 0
    assert hit.text == "answer" and hit.model == "b"


# ---------------------------------------------------------------- get_model_info


def test_get_model_info_contents(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, enable_caching=False)
    m = env.m
    meta = {"provider": "openai", "max_tokens": 8192}
    m.register_model("a", Model(boom(), boom(), "ok"), meta)
    m.set_active_model("a")
    assert m.generate("p") == "ok"
    info = m.get_model_info("a")
    assert info["name"] == "a"
    assert info["metadata"] == meta
    stats = info["stats"]
    assert stats["requests"] == 3
    assert stats["successes"] == 1
    assert stats["failures"] == 2
    for key in ("avg_latency", "p50_latency", "p95_latency", "p99_latency"):
        assert isinstance(stats[key], float) and stats[key] >= 0.0
    assert stats["tokens"] > 0
    assert info["circuit_breaker_state"] == "closed"


def test_get_model_info_metadata_defaults_and_is_a_copy(make: Callable[..., Env]) -> None:
    m = make().m
    m.register_model("a", Model())
    assert m.get_model_info("a")["metadata"] == {}
    meta = {"provider": "x"}
    m.register_model("b", Model(), meta)
    meta["provider"] = "changed"
    m.get_model_info("b")["metadata"]["provider"] = "mutated"
    assert m.get_model_info("b")["metadata"] == {"provider": "x"}


def test_get_model_info_cost(make: Callable[..., Env]) -> None:
    m = make().m
    m.register_model(
        "a",
        Model(LLMResponse("t", prompt_tokens=600, completion_tokens=400)),
        {"cost_per_1k_tokens": 0.03},
    )
    m.set_active_model("a")
    m.generate("p")
    stats = m.get_model_info("a")["stats"]
    assert stats["tokens"] == 1000
    assert stats["cost"] == pytest.approx(0.03)


def test_circuit_breaker_state_values(make: Callable[..., Env]) -> None:
    env = make(max_retries=1, failure_threshold=1, recovery_timeout=10, enable_caching=False)
    m = env.m
    m.register_model("a", Model(boom()))
    m.set_active_model("a")
    assert m.get_model_info("a")["circuit_breaker_state"] == "closed"
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert m.get_model_info("a")["circuit_breaker_state"] == "open"
    env.clock.advance(10)
    assert m.get_model_info("a")["circuit_breaker_state"] in {"open", "half-open"}


# ---------------------------------------------------------------- get_metrics


def test_get_metrics_fresh_manager(make: Callable[..., Env]) -> None:
    m = make().m
    s = m.get_metrics()
    assert s["total_requests"] == 0
    assert s["successful_requests"] == 0
    assert s["failed_requests"] == 0
    assert s["cache_hits"] == 0
    assert s["cache_misses"] == 0
    assert s["total_retries"] == 0
    assert s["total_tokens"] == 0
    assert s["success_rate"] == 0.0
    assert s["cache_hit_rate"] == 0.0
    assert s["active_model"] is None
    assert s["fallback_chain"] == []


def test_get_metrics_counts(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, failure_threshold=100)
    m = env.m
    m.register_model("good", Model(boom(), "hello world"))
    m.register_model("bad", Model(boom()))
    m.set_active_model("good")
    m.set_fallback_chain(["bad"])
    assert m.generate("one") == "hello world"  # 1 retry
    s = m.get_metrics()
    assert s["total_tokens"] > 0
    assert m.generate("one") == "hello world"  # hit
    m.set_active_model("bad")
    m.set_fallback_chain([])
    with pytest.raises(AllModelsFailedError):
        m.generate("two")  # 2 retries
    s = m.get_metrics()
    assert s["total_requests"] == 3
    assert s["successful_requests"] == 2
    assert s["failed_requests"] == 1
    assert s["cache_hits"] == 1
    assert s["cache_misses"] == 2
    assert s["total_retries"] == 3
    assert s["success_rate"] == pytest.approx(2 / 3)
    assert s["cache_hit_rate"] == pytest.approx(1 / 3)
    assert s["active_model"] == "bad"
    assert s["fallback_chain"] == []


def test_total_retries_counted_per_model(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, failure_threshold=100)
    m = env.m
    m.register_model("a", Model(boom()))
    m.register_model("b", Model(boom()))
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    # 3 attempts on each model: 2 retries each, the move to b is not a retry.
    assert m.get_metrics()["total_retries"] == 4


def test_no_model_configured_counts_as_failed_request(make: Callable[..., Env]) -> None:
    m = make().m
    with pytest.raises(NoModelConfiguredError):
        m.generate("p")
    s = m.get_metrics()
    assert s["total_requests"] == 1
    assert s["successful_requests"] == 0
    assert s["success_rate"] == 0.0


def test_total_tokens_estimated_for_plain_text(make: Callable[..., Env]) -> None:
    m = make().m
    m.register_model("a", Model("some answer text"))
    m.set_active_model("a")
    res = m.generate_response("a prompt of some length")
    assert res.usage.total_tokens > 0
    assert m.get_metrics()["total_tokens"] == res.usage.total_tokens


# ---------------------------------------------------------------- lone surrogates


def test_bug_lone_surrogate_prompt(make: Callable[..., Env]) -> None:
    m = make().m
    a = Model("fine")
    m.register_model("a", a)
    m.set_active_model("a")
    assert m.generate("\udcff") == "fine"
    assert m.generate("bad \udcff bytes", use_cache=False) == "fine"
    res = m.generate_response("\ud800 alone", stop="\udcff")
    assert res.text == "fine"
    assert a.calls[0][0] == "\udcff"


def test_lone_surrogate_in_failure_message(make: Callable[..., Env], caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    m = make(max_retries=1).m
    m.register_model("a", Model(RuntimeError("bad \udcff text")))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("\udcff")
    # Neither the error text nor the log records choke on the surrogate.
    assert "bad" in str(ei.value)
    assert any("bad" in r.getMessage() for r in caplog.records)
    assert "bad" in caplog.text


# ---------------------------------------------------------------- logging


def test_logging_failed_attempts_breaker_open_and_all_failed(
    make: Callable[..., Env], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    env = make(max_retries=2, failure_threshold=2)
    m = env.m
    m.register_model("flaky-model", Model(boom("upstream 503")))
    m.set_active_model("flaky-model")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    records = [r for r in caplog.records if r.name.startswith(LOGGER)]
    messages = [r.getMessage() for r in records]
    failed = [msg for msg in messages if "flaky-model" in msg and "fail" in msg.lower()]
    assert len(failed) >= 2, messages
    assert any("upstream 503" in msg for msg in failed)
    opened = [
        r
        for r in records
        if "circuit breaker" in r.getMessage().lower() and "open" in r.getMessage().lower()
    ]
    assert opened and opened[0].levelno >= logging.WARNING
    assert "flaky-model" in opened[0].getMessage()
    final = [r for r in records if r.levelno >= logging.ERROR]
    assert final, messages
    assert "flaky-model" in final[-1].getMessage()


def test_logging_breaker_reopened_after_failed_trial(make: Callable[..., Env], caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    env = make(max_retries=1, failure_threshold=1, recovery_timeout=10, enable_caching=False)
    m = env.m
    m.register_model("flaky-model", Model(boom()))
    m.set_active_model("flaky-model")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert any("circuit breaker" in r.getMessage() for r in caplog.records)
    caplog.clear()
    env.clock.advance(10)
    with pytest.raises(AllModelsFailedError):
        m.generate("p")  # the trial call fails: the breaker opens again
    assert m.get_model_info("flaky-model")["circuit_breaker_state"] == "open"
    opened = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and "circuit breaker" in r.getMessage().lower()
        and "open" in r.getMessage().lower()
        and "flaky-model" in r.getMessage()
    ]
    assert opened, [r.getMessage() for r in caplog.records]


# ---------------------------------------------------------------- async models and agenerate


def test_sync_generate_with_async_model(make: Callable[..., Env]) -> None:
    m = make().m
    seen: list[tuple[str, dict[str, Any]]] = []

    async def amodel(prompt: str, kwargs: dict[str, Any]) -> str:
        seen.append((prompt, kwargs))
        await asyncio.sleep(0)
        return prompt[::-1]

    m.register_model("async", amodel)
    m.set_active_model("async")
    assert m.generate("abc", temperature=0.1) == "cba"
    assert seen == [("abc", {"temperature": 0.1})]
    assert m.generate_response("xyz").text == "zyx"


def test_sync_generate_with_async_model_retries_with_sync_sleep(
    make: Callable[..., Env],
) -> None:
    env = make(max_retries=3)
    m = env.m
    n = [0]

    async def amodel(prompt: str, kwargs: dict[str, Any]) -> str:
        n[0] += 1
        if n[0] < 3:
            raise boom()
        return "ok"

    m.register_model("a", amodel)
    m.set_active_model("a")
    assert m.generate("p") == "ok"
    assert env.waits == [1.0, 2.0]
    assert env.async_waits == []


def test_agenerate_success(make: Callable[..., Env]) -> None:
    env = make()
    m = env.m

    async def amodel(prompt: str, kwargs: dict[str, Any]) -> str:
        return f"async:{prompt}:{kwargs.get('t')}"

    m.register_model("a", amodel)
    m.register_model("s", Model("sync answer"))
    m.set_active_model("a")
    assert asyncio.run(m.agenerate("p", t=1)) == "async:p:1"
    m.set_active_model("s")
    assert asyncio.run(m.agenerate("p")) == "sync answer"


def test_agenerate_fallback_uses_async_sleep(make: Callable[..., Env]) -> None:
    env = make(max_retries=3, failure_threshold=100)
    m = env.m
    calls: list[str] = []

    async def bad(prompt: str, kwargs: dict[str, Any]) -> str:
        calls.append("a")
        raise boom()

    async def good(prompt: str, kwargs: dict[str, Any]) -> str:
        calls.append("b")
        return "B"

    m.register_model("a", bad)
    m.register_model("b", good)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert asyncio.run(m.agenerate("p")) == "B"
    assert calls == ["a", "a", "a", "b"]
    assert env.async_waits == [1.0, 2.0]
    assert env.waits == []


def test_agenerate_all_failed(make: Callable[..., Env]) -> None:
    env = make(max_retries=2)
    m = env.m
    err = NonRetryableError("nope")
    m.register_model("a", Model(err))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        asyncio.run(m.agenerate("p"))
    assert ei.value.errors == [("a", err)]
    assert ei.value.__cause__ is err
    assert env.async_waits == []


def test_agenerate_cache_hit(make: Callable[..., Env]) -> None:
    env = make()
    m = env.m
    n = [0]

    async def amodel(prompt: str, kwargs: dict[str, Any]) -> str:
        n[0] += 1
        return "cached?"

    m.register_model("a", amodel)
    m.set_active_model("a")

    async def main() -> tuple[str, str]:
        return await m.agenerate("p", k=1), await m.agenerate("p", k=1)

    assert asyncio.run(main()) == ("cached?", "cached?")
    assert n[0] == 1
    s = m.get_metrics()
    assert s["cache_hits"] == 1 and s["successful_requests"] == 2
    # The sync path shares the same cache.
    assert m.generate("p", k=1) == "cached?"
    assert n[0] == 1


def test_agenerate_lone_surrogate_prompt(make: Callable[..., Env]) -> None:
    m = make().m

    async def amodel(prompt: str, kwargs: dict[str, Any]) -> str:
        return "A" + prompt

    m.register_model("a", amodel)
    m.set_active_model("a")
    assert asyncio.run(m.agenerate("\udcff", stop="\udcfe")) == "A\udcff"
    assert asyncio.run(m.agenerate("\udcff", stop="\udcfe")) == "A\udcff"
    assert m.get_metrics()["cache_hits"] == 1


def test_agenerate_no_model_configured(make: Callable[..., Env]) -> None:
    m = make().m
    with pytest.raises(NoModelConfiguredError):
        asyncio.run(m.agenerate("p"))


def test_agenerate_prompt_type(make: Callable[..., Env]) -> None:
    m = make().m
    m.register_model("a", Model())
    m.set_active_model("a")
    with pytest.raises(TypeError):
        asyncio.run(m.agenerate(123))  # type: ignore[arg-type]
