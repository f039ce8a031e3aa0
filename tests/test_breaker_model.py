"""BreakerCore against a plain Python reference state machine, on a fake clock."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agenticaiframework._native import BreakerCore

REJECTED, NORMAL, TRIAL = 0, 1, 2


class FakeClock:
    """Whole milliseconds, so the native ms ticks and the model agree exactly."""

    def __init__(self, ms: int = 0) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


class Reference:
    """The state machine of src/breaker.rs, written plainly."""

    def __init__(self, threshold: int, timeout_ms: int, max_trials: int, now: int) -> None:
        self.threshold, self.timeout, self.max = threshold, timeout_ms, max_trials
        self.state = "closed"
        self.failures = 0
        self.trials = 0
        self.opened_at = 0
        self.origin = now

    def observed(self, now: int) -> str:
        if self.state == "open":
            elapsed = now - self.opened_at
            if elapsed >= 0 and elapsed >= self.timeout:
                return "half-open"
        return self.state

    def acquire(self, now: int) -> int:
        if self.state == "closed":
            return NORMAL
        if self.state == "open":
            elapsed = now - self.opened_at
            if elapsed < 0:  # the clock went back: re-anchor
                self.opened_at = now
                return REJECTED
            if elapsed < self.timeout or self.trials >= self.max:
                return REJECTED
            self.state = "half-open"
            self.trials += 1
            return TRIAL
        if self.trials >= self.max:
            return REJECTED
        self.trials += 1
        return TRIAL

    def success(self, permit: int) -> None:
        if permit == TRIAL:
            self.trials = max(0, self.trials - 1)
            if self.state == "half-open":
                self.state, self.failures = "closed", 0
                return
        if self.state == "closed":
            self.failures = 0

    def failure(self, permit: int, now: int) -> None:
        if permit == TRIAL:
            self.trials = max(0, self.trials - 1)
            if self.state == "half-open":
                self.state, self.opened_at = "open", now
                self.failures += 1
                return
        if self.state == "closed":
            self.failures += 1
            if self.failures >= self.threshold:
                self.state, self.opened_at = "open", now

    def release(self, permit: int) -> None:
        if permit == TRIAL:
            self.trials = max(0, self.trials - 1)

    def reset(self) -> None:
        self.state, self.failures, self.opened_at = "closed", 0, 0

    def retry_after_ms(self, now: int) -> int:
        if self.state != "open":
            return 0
        elapsed = now - self.opened_at
        return self.timeout if elapsed < 0 else max(0, self.timeout - elapsed)


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        threshold=st.integers(1, 4),
        timeout_ms=st.integers(0, 50),
        max_trials=st.integers(1, 3),
        start=st.integers(-10_000, 10_000),
    )
    def setup(self, threshold: int, timeout_ms: int, max_trials: int, start: int) -> None:
        self.clock = FakeClock(start)
        self.core = BreakerCore(threshold, timeout_ms / 1000, max_trials, clock=self.clock)
        self.ref = Reference(threshold, timeout_ms, max_trials, start)
        self.permits: list[int] = []

    def now(self) -> int:
        # The native measures from its origin in rounded milliseconds; so does the reference.
        return self.clock.ms - self.ref.origin

    @rule()
    def acquire(self) -> None:
        got = self.core.acquire()
        assert got == self.ref.acquire(self.now())
        if got:
            self.permits.append(got)

    @rule(data=st.data(), outcome=st.sampled_from(["success", "failure", "release"]))
    def report(self, data: st.DataObject, outcome: str) -> None:
        if not self.permits:
            return
        permit = self.permits.pop(data.draw(st.integers(0, len(self.permits) - 1)))
        if outcome == "success":
            self.core.on_success(permit)
            self.ref.success(permit)
        elif outcome == "failure":
            self.core.on_failure(permit)
            self.ref.failure(permit, self.now())
        else:
            self.core.release(permit)
            self.ref.release(permit)

    @rule(dt=st.integers(-30, 80))
    def advance(self, dt: int) -> None:
        self.clock.ms += dt

    @rule()
    def reset(self) -> None:
        self.core.reset()
        self.ref.reset()

    @invariant()
    def agrees(self) -> None:
        now = self.now()
        assert self.core.state == self.ref.observed(now)
        assert self.core.failure_count == self.ref.failures
        assert self.core.trials_outstanding == self.ref.trials
        assert self.core.trials_outstanding <= self.ref.max
        assert math.isclose(self.core.retry_after(), self.ref.retry_after_ms(now) / 1000)


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)


@pytest.mark.parametrize(
    "args",
    [
        (0, 60.0, 1),
        (5, -1.0, 1),
        (5, float("nan"), 1),
        (5, float("inf"), 1),
        (5, 60.0, 0),
        (10**6, 60.0, 1),
    ],
)
def test_bad_configuration_is_a_value_error(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        BreakerCore(*args)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        BreakerCore("5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BreakerCore(clock=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BreakerCore().on_success(7)


def test_clock_errors_surface_only_when_time_matters() -> None:
    state = {"broken": False}

    def clock() -> float:
        if state["broken"]:
            raise RuntimeError("clock broke")
        return 0.0

    b = BreakerCore(1, 1.0, clock=clock)
    state["broken"] = True
    assert b.acquire() == NORMAL  # closed: no clock read
    state["broken"] = False
    b.on_failure(b.acquire())
    state["broken"] = True
    with pytest.raises(RuntimeError, match="clock broke"):
        b.acquire()
    with pytest.raises(ValueError, match="non-finite"):
        BreakerCore(1, 1.0, clock=lambda: float("nan"))
