"""CircuitBreaker: the seed's API over the native, lock-free BreakerCore."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from .._native import BreakerCore
from ._validate import (
    MAX_FAILURE_THRESHOLD,
    MAX_HALF_OPEN_CALLS,
    MAX_RECOVERY_TIMEOUT,
    check_count,
    check_seconds,
)
from .errors import CircuitBreakerOpenError

P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], float]


def native_clock(clock: Clock) -> Clock | None:
    """The native core reads CLOCK_MONOTONIC itself: skip the Python call for the default."""
    return None if clock is time.monotonic else clock


class CircuitBreaker:
    """Stops calling a failing dependency, then lets a few trial calls test its recovery.

    States: ``closed`` (calls pass; ``failure_threshold`` consecutive failures open it),
    ``open`` (calls are refused with :class:`CircuitBreakerOpenError`, for
    ``recovery_timeout`` seconds), ``half-open`` (up to ``half_open_max_calls`` trial calls at
    once; a success closes it, a failure opens it again).

    >>> cb = CircuitBreaker(failure_threshold=2, recovery_timeout=30)
    >>> cb.call(lambda x: x * 2, 21)
    42
    >>> cb.state
    'closed'
    """

    __slots__ = ("_core", "name")

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 60,
        *,
        half_open_max_calls: int = 1,
        clock: Clock = time.monotonic,
        name: str | None = None,
    ) -> None:
        check_count("failure_threshold", failure_threshold, maximum=MAX_FAILURE_THRESHOLD)
        check_seconds("recovery_timeout", recovery_timeout, maximum=MAX_RECOVERY_TIMEOUT)
        check_count("half_open_max_calls", half_open_max_calls, maximum=MAX_HALF_OPEN_CALLS)
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds")
        self.name = name
        self._core = BreakerCore(
            failure_threshold,
            float(recovery_timeout),
            half_open_max_calls,
            clock=native_clock(clock),
        )

    @property
    def core(self) -> BreakerCore:
        """The native state machine (permits: 0 rejected, 1 normal, 2 trial)."""
        return self._core

    def call(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Calls ``func`` under the breaker; its exceptions propagate unchanged."""
        core = self._core
        permit = core.acquire()
        if not permit:
            raise CircuitBreakerOpenError(self.name, core.retry_after())
        try:
            result = func(*args, **kwargs)
        except Exception:
            core.on_failure(permit)
            raise
        except BaseException:
            # Interrupted, not failed: give the permit back without a verdict.
            core.release(permit)
            raise
        core.on_success(permit)
        return result

    async def acall(self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Awaits ``func(*args, **kwargs)`` under the breaker."""
        core = self._core
        permit = core.acquire()
        if not permit:
            raise CircuitBreakerOpenError(self.name, core.retry_after())
        try:
            result = await func(*args, **kwargs)
        except Exception:
            core.on_failure(permit)
            raise
        except BaseException:
            core.release(permit)
            raise
        core.on_success(permit)
        return result

    @property
    def state(self) -> str:
        """``'closed'``, ``'open'`` or ``'half-open'``."""
        return self._core.state

    @property
    def failure_count(self) -> int:
        """Consecutive failures so far."""
        return self._core.failure_count

    @property
    def failure_threshold(self) -> int:
        return self._core.failure_threshold

    @property
    def recovery_timeout(self) -> float:
        return self._core.recovery_timeout

    @property
    def half_open_max_calls(self) -> int:
        return self._core.half_open_max_calls

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a trial call (0.0 when not open)."""
        return self._core.retry_after()

    def reset(self) -> None:
        """Closes the breaker and forgets its failures."""
        self._core.reset()

    def trip(self) -> None:
        """Opens the breaker now (an operator's kill switch)."""
        self._core.trip()

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(name={self.name!r}, state={self.state!r}, "
            f"failures={self.failure_count}/{self.failure_threshold})"
        )
