"""Backoff between attempts on one model."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "equal"] | None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: the wait after failed attempt ``n`` (1-based) is
    ``min(max, base * 2**(n-1))``: 1, 2, 4, 8 s by default.

    ``jitter="full"`` waits a uniform time in ``[0, d]``, ``"equal"`` in ``[d/2, d]`` (the
    AWS architecture note's schemes), so many clients' retries do not arrive together.

    >>> Backoff(1.0, 60.0).delay(3)
    4.0
    """

    base: float = 1.0
    max: float = 60.0
    jitter: Jitter = None
    rng: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        # Cap the exponent: 2**1100 would overflow a float long before any real use.
        d = min(self.max, self.base * 2.0 ** min(attempt - 1, 1000))
        if self.jitter == "full":
            return d * self.rng()
        if self.jitter == "equal":
            return d / 2 + d / 2 * self.rng()
        return d
