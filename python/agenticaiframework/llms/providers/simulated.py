"""A simulated model: latency, random failures and an outage window, no network."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import RateLimitError
from ..response import LLMResponse, estimate_tokens


class SimulatedOutage(ConnectionError):
    """The simulated provider is down."""


class SimulatedRateLimit(RuntimeError):
    """The simulated provider answered 429."""


class SimulatedModel:
    """An inference function that behaves like a flaky provider.

    ``latency`` seconds per call (real sleep, scaled by ``jitter``), ``failure_rate`` the
    chance a call raises, ``outage`` a ``(start, end)`` window in seconds after creation
    during which every call fails. Deterministic for a given ``seed`` and call order.

    >>> fn = SimulatedModel("sim", latency=0.0, failure_rate=0.0)
    >>> fn("Hello", {}).text
    '[sim] answer to: Hello'
    """

    def __init__(
        self,
        name: str,
        *,
        latency: float = 0.01,
        jitter: float = 0.5,
        failure_rate: float = 0.0,
        outage: tuple[float, float] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        quota: tuple[float, int] | None = None,
    ) -> None:
        """``quota``: ``(per_second, burst)``, the provider's own rate limit (a token
        bucket): a call over it raises :class:`RateLimitError` (a 429 with Retry-After),
        counted in ``rejected``."""
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        if quota is not None and not (quota[0] > 0 and quota[1] >= 1):
            raise ValueError("quota must be (per_second > 0, burst >= 1)")
        self.quota = quota
        self.rejected = 0
        self._tokens = float(quota[1]) if quota else 0.0
        self._last = clock()
        self.name = name
        self.latency = latency
        self.jitter = jitter
        self.failure_rate = failure_rate
        self.outage = outage
        self.calls = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._born = clock()

    def _over_quota(self) -> float:
        """Under the lock: 0 if the call fits the provider's quota, else the seconds
        until it would (the Retry-After)."""
        if self.quota is None:
            return 0.0
        rate, burst = self.quota
        now = self._clock()
        self._tokens = min(float(burst), self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        self.rejected += 1
        return (1.0 - self._tokens) / rate

    def _plan(self) -> tuple[float, BaseException | None]:
        with self._lock:
            self.calls += 1
            delay = self.latency * (1 + self.jitter * (2 * self._rng.random() - 1))
            roll = self._rng.random()
            over = self._over_quota()
        if over:
            return 0.0, RateLimitError(
                f"{self.name}: 429 quota exceeded", status=429, retry_after=over
            )
        if self.outage is not None:
            t = self._clock() - self._born
            if self.outage[0] <= t < self.outage[1]:
                return delay / 4, SimulatedOutage(f"{self.name} is unavailable")
        if roll < self.failure_rate:
            return delay, SimulatedRateLimit(f"{self.name}: 429 too many requests")
        return delay, None

    def _answer(self, prompt: str) -> LLMResponse:
        text = f"[{self.name}] answer to: {prompt[:60]}"
        return LLMResponse(text, estimate_tokens(prompt), estimate_tokens(text), model=self.name)

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> LLMResponse:
        delay, err = self._plan()
        if delay > 0:
            self._sleep(delay)
        if err is not None:
            raise err
        return self._answer(prompt)

    def as_async(self) -> Callable[[str, dict[str, Any]], Any]:
        """The same model as an ``async def`` inference function."""

        async def infer(prompt: str, kwargs: dict[str, Any]) -> LLMResponse:
            delay, err = self._plan()
            if delay > 0:
                await asyncio.sleep(delay)
            if err is not None:
                raise err
            return self._answer(prompt)

        return infer
