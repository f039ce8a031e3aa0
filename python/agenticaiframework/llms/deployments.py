"""Deployments: several upstreams (API keys, regions, an Azure deployment) under one
model name, and the pick of one per attempt (the walk's routing stage).

A model registered with ``register_model`` is its own first deployment;
``LLMManager.add_deployment(name, fn, metadata)`` adds more. Each deployment is a
:class:`~.models.Model` of its own (its breaker, counters, latency histogram, worker
pool, fleet breaker key ``name@deployment``); the route holds the first, whose
``group`` is a :class:`Group`. The walk (``walk.py``) asks the group for a deployment at
each attempt on that model:

- the native :class:`~.._native.Picker` chooses among the deployments whose breaker would
  admit now, by the manager's ``routing``: ``weighted`` (random by ``weight``),
  ``least-busy`` (fewest attempts in flight), ``latency`` (lowest moving average of
  successful latency, with a share of weighted picks so that a slow or new deployment is
  tried again), ``usage`` (the most headroom under its rate limits, ratelimit.py); a
  deployment out of quota, or cooling down after a 429, is not picked; it passes over
  those this request already tried while others would do;
- a deployment a gate or its breaker refuses is excluded for this request's next picks,
  so the next deployment is tried at once;
- a failed attempt is retried (within ``max_retries``) on another deployment at once,
  with no backoff, when the failure is retryable and another would admit; the backoff
  and a Retry-After apply when only the failed one is left;
- when none would admit, the walk moves on to the next model of the route, with a
  :class:`CircuitBreakerOpenError` for the model (``retry_after``: the soonest any of
  its deployments reopens), or a :class:`RateLimitedError` when it is their limits that
  refuse (``retry_after``: the soonest capacity).

A model with more than one deployment is watched (``Model.watch``): its first try goes
through the walk, which picks; a model with one deployment keeps its inline first try.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._native import Picker
from .errors import CircuitBreakerOpenError, RateLimitedError
from .retry import Backoff, decide, retryable

if TYPE_CHECKING:
    from .models import Model

ROUTINGS = ("weighted", "least-busy", "latency", "usage")


class Group:
    """A model's deployments (``members[0]`` is the model on the route) and their picker."""

    __slots__ = ("members", "picker")

    def __init__(self, members: tuple[Model, ...], routing: str, seed: int | None = None) -> None:
        self.members = members
        # The picker reads each deployment's native limiter: a FleetLimiter's local one
        # (fleet_limits.py; its headroom does not see the fleet's allowance).
        limiters = [getattr(m.limiter, "local", m.limiter) for m in members]
        self.picker = Picker(
            routing,
            [m.core for m in members],
            [m.weight for m in members],
            limiters if any(x is not None for x in limiters) else None,
            seed=seed,
        )

    def pick(self, avoid: int, exclude: int) -> Model | None:
        i = self.picker.pick(avoid, exclude)
        return self.members[i] if i >= 0 else None

    def unavailable(self) -> CircuitBreakerOpenError | RateLimitedError:
        """Why no deployment would admit: a RateLimitedError when some breaker admits
        and only limits refuse (``retry_after``: the soonest capacity), else a
        CircuitBreakerOpenError (the soonest reopening)."""
        name = self.members[0].name
        limited = [
            m.limiter.retry_after()
            for m in self.members
            if m.limiter is not None and m.core.breaker.state != "open"
        ]
        if limited:
            return RateLimitedError(name, min(limited))
        return CircuitBreakerOpenError(
            name, min(m.core.breaker.retry_after() for m in self.members)
        )


def decide_deployment(
    model: Model,
    group: Group,
    exc: Exception,
    attempt: int,
    max_retries: int,
    opened: bool,
    backoff: Backoff,
    tried: int,
    refused: int,
) -> float | None:
    """``retry.decide`` for a deployment: another deployment that would admit is tried at
    once (0.0); with none, the model's own decision (its backoff, or move on)."""
    if attempt >= max_retries:
        return None
    if group.picker.pick(0, tried | refused) >= 0:
        return 0.0 if retryable(model, exc) else None
    return decide(model, exc, attempt, max_retries, opened, backoff)  # classifies it


__all__ = ["ROUTINGS", "Group", "decide_deployment"]
