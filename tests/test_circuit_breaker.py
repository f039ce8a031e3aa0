"""CircuitBreaker on its own: call(), states, consecutive failures, recovery on the injected
clock, a single half-open trial by default, reset() and argument checks."""

from __future__ import annotations

from typing import Any

import pytest

from agenticaiframework.llms import CircuitBreaker, CircuitBreakerOpenError, LLMError


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("down")


def ok(value: Any = "ok") -> Any:
    return value


def trip(cb: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            cb.call(fail)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ---------------------------------------------------------------- construction


def test_defaults() -> None:
    cb = CircuitBreaker()
    assert cb.state == "closed"
    assert cb.failure_count == 0
    trip(cb, 4)
    assert cb.state == "closed"
    trip(cb, 1)
    assert cb.state == "open"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((0,), {}),
        ((-3,), {}),
        ((5, -1), {}),
        ((5, float("nan")), {}),
        ((), {"failure_threshold": 0}),
        ((), {"recovery_timeout": -0.5}),
        ((), {"half_open_max_calls": 0}),
        ((), {"half_open_max_calls": -1}),
    ],
)
def test_invalid_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(*args, **kwargs)


def test_positional_and_keyword_forms(clock: FakeClock) -> None:
    cb = CircuitBreaker(2, 30, half_open_max_calls=1, clock=clock)
    trip(cb, 2)
    assert cb.state == "open"


# ---------------------------------------------------------------- call


def test_call_returns_result_and_passes_arguments(clock: FakeClock) -> None:
    cb = CircuitBreaker(clock=clock)
    seen: list[Any] = []

    def f(a: int, b: int, *, c: int = 0) -> int:
        seen.append((a, b, c))
        return a + b + c

    assert cb.call(f, 1, 2, c=3) == 6
    assert seen == [(1, 2, 3)]
    assert cb.call(ok) == "ok"
    assert cb.call(ok, None) is None


def test_call_reraises_same_exception_object(clock: FakeClock) -> None:
    cb = CircuitBreaker(clock=clock)
    err = Boom("exact object")

    def f() -> None:
        raise err

    with pytest.raises(Boom) as ei:
        cb.call(f)
    assert ei.value is err
    assert cb.failure_count == 1


def test_open_breaker_refuses_without_calling(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=2, recovery_timeout=60, clock=clock)
    trip(cb, 2)
    assert cb.state == "open"
    calls: list[int] = []
    with pytest.raises(CircuitBreakerOpenError) as ei:
        cb.call(lambda: calls.append(1))
    assert calls == []
    assert isinstance(ei.value, LLMError)


# ---------------------------------------------------------------- consecutive semantics


def test_bug_failure_count_reset_on_success(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=3, clock=clock)
    for _ in range(5):
        trip(cb, 2)
        assert cb.failure_count == 2
        assert cb.call(ok) == "ok"
        assert cb.failure_count == 0
    assert cb.state == "closed"
    trip(cb, 3)
    assert cb.state == "open"


def test_failure_count_counts_consecutive_failures(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=10, clock=clock)
    for n in range(1, 6):
        trip(cb, 1)
        assert cb.failure_count == n


def test_base_exception_is_not_a_failure(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=1, clock=clock)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cb.call(interrupted)
    assert cb.state == "closed"
    assert cb.failure_count == 0


# ---------------------------------------------------------------- recovery


def test_bug_recovery_follows_injected_clock(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=60, clock=clock)
    trip(cb, 1)
    clock.advance(59)
    calls: list[int] = []
    with pytest.raises(CircuitBreakerOpenError):
        cb.call(lambda: calls.append(1))
    assert calls == []
    # 61 s on the injected clock; no real time passes.
    clock.advance(2)
    assert cb.call(lambda: calls.append(1) or "back") == "back"
    assert calls == [1]
    assert cb.state == "closed"
    assert cb.failure_count == 0


def test_clock_going_nowhere_keeps_breaker_open(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=0.5, clock=clock)
    trip(cb, 1)
    for _ in range(1000):
        with pytest.raises(CircuitBreakerOpenError):
            cb.call(ok)
    assert cb.state == "open"


def test_half_open_failure_reopens(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=2, recovery_timeout=10, clock=clock)
    trip(cb, 2)
    clock.advance(10)
    trip(cb, 1)  # the trial call fails
    assert cb.state == "open"
    with pytest.raises(CircuitBreakerOpenError):
        cb.call(ok)
    # The recovery timeout restarts from the failed trial.
    clock.advance(9)
    with pytest.raises(CircuitBreakerOpenError):
        cb.call(ok)
    clock.advance(1)
    assert cb.call(ok) == "ok"
    assert cb.state == "closed"


def test_state_during_trial_is_half_open(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=5, clock=clock)
    trip(cb, 1)
    clock.advance(5)
    seen: list[str] = []
    cb.call(lambda: seen.append(cb.state))
    assert seen == ["half-open"]
    assert cb.state == "closed"


def test_bug_only_one_half_open_trial_by_default(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=5, clock=clock)
    trip(cb, 1)
    clock.advance(5)
    inner_calls: list[int] = []
    refused: list[BaseException] = []

    def trial() -> str:
        # While this trial is running, every other call is refused.
        for _ in range(3):
            try:
                cb.call(lambda: inner_calls.append(1))
            except CircuitBreakerOpenError as exc:
                refused.append(exc)
        return "trial ok"

    assert cb.call(trial) == "trial ok"
    assert inner_calls == []
    assert len(refused) == 3
    assert cb.state == "closed"


def test_half_open_max_calls_two_allows_two_trials(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=1, recovery_timeout=5, half_open_max_calls=2, clock=clock)
    trip(cb, 1)
    clock.advance(5)
    calls: list[str] = []

    def second() -> str:
        calls.append("second")
        with pytest.raises(CircuitBreakerOpenError):
            cb.call(lambda: calls.append("third"))
        return "2"

    def first() -> str:
        calls.append("first")
        return cb.call(second)

    assert cb.call(first) == "2"
    assert calls == ["first", "second"]


# ---------------------------------------------------------------- reset


def test_reset_closes_and_forgets(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=2, recovery_timeout=1000, clock=clock)
    trip(cb, 2)
    assert cb.state == "open"
    cb.reset()
    assert cb.state == "closed"
    assert cb.failure_count == 0
    assert cb.call(ok) == "ok"
    trip(cb, 1)
    assert cb.state == "closed"  # counting starts again from zero


def test_reset_on_closed_breaker_clears_failures(clock: FakeClock) -> None:
    cb = CircuitBreaker(failure_threshold=3, clock=clock)
    trip(cb, 2)
    cb.reset()
    assert cb.failure_count == 0
    trip(cb, 2)
    assert cb.state == "closed"
