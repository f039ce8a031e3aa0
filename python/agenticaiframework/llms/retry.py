"""The retry decision: whether a failed attempt is tried again on the same model, and
after what wait (backoff, Retry-After)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .classify import default_retryable, retry_after_of
from .errors import describe

if TYPE_CHECKING:
    from .models import Model

logger = logging.getLogger("agenticaiframework.llms")

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


def retryable(model: Model, exc: Exception) -> bool:
    """Whether ``model``'s policy retries ``exc``."""
    try:
        return bool(model.policy(exc))
    except Exception as bad:
        # A broken classifier (or an exception whose attributes raise when read) must
        # not lose the request: the default policy decides, and if even that cannot
        # read the exception, it is retried like any failure we know nothing about.
        logger.warning("classifying %r's failure raised %s", model.name, describe(bad))
        try:
            return default_retryable(exc)
        except Exception:
            return True


def decide(
    model: Model,
    exc: Exception,
    attempt: int,
    max_retries: int,
    opened: bool,
    backoff: Backoff,
) -> float | None:
    """The retry decision after a failed attempt (already booked): the wait before trying
    the same model again, or None to move on to the next model. Pure: reads the model's
    policy, its breaker's state and the exception's Retry-After."""
    if attempt >= max_retries or opened:
        return None
    if not retryable(model, exc):
        return None
    if model.core.breaker.state != "closed":
        # Opened by a concurrent caller: the next permit would be refused, go on now.
        return None
    delay = backoff.delay(attempt)
    asked = retry_after_of(exc)
    if asked is not None:
        if asked > backoff.max:
            # The provider wants longer than we would ever wait: use the next model.
            return None
        delay = max(delay, asked)
    return delay
