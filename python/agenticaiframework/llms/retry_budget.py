"""The retry budget: the walk's stage asked before each retry (Finagle's RetryBudget).

``LLMManager(retry_budget=0.2, min_retries_per_second=10)``: over a sliding window of
10 s, retries may add at most 20% of the requests made in it, plus 10 retries per second
(so a manager with little traffic can still retry). When the budget is spent, a failed
attempt that would have been retried moves to the next model of the route at once,
counted in ``get_metrics()["retries_denied"]``; it is not an error of its own. During an
outage every client retrying ``max_retries`` times multiplies the load on a provider
that is already down; with the budget, the extra load is at most that share.

What withdraws from it (each is an extra upstream attempt of one request):

- a retry of the same model after a retryable failure (``retry.decide``);
- a move to another deployment of the same model after a failure
  (``deployments.decide_deployment``): another upstream call the request would not
  have made had the first answered;
- extra attempts a caller starts on its own (hedged requests): ``withdraw(m)``.

A move to the next model of the route (a fallback) does not: it is how a denied retry
ends, and the route's next model is another provider. The requests it budgets against
are the manager's native counters, ``total_requests - cache_hits`` (a cache hit makes
no upstream call to retry), read when a retry asks, so a request's first try pays
nothing for the budget. ``reset_metrics()`` empties the window's requests (until it
slides past the reset), never fills it.

With ``redis=``, the budget is the fleet's (``fleet_budget.py``): each process's window
counts are published to Redis and the others' added to its decisions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from .._native import ManagerStats, RetryBudget

if TYPE_CHECKING:
    from collections.abc import Callable

    from .fleet import Fleet
    from .manager import LLMManager
    from .models import Model

logger = logging.getLogger("agenticaiframework.llms")


class Budget(Protocol):
    """What the walk asks: the native :class:`RetryBudget`, or the fleet's."""

    def try_withdraw(self) -> bool: ...


def build(
    retry_budget: object,
    min_retries_per_second: object,
    stats: ManagerStats,
    clock: Callable[[], float] | None,
    fleet: Fleet | None = None,
) -> Budget | None:
    """The manager's budget (None: off). Checks both parameters (TypeError, ValueError
    naming the parameter)."""
    if retry_budget is None:
        if min_retries_per_second is not None:
            raise ValueError("min_retries_per_second needs retry_budget (the share of requests)")
        return None
    native = RetryBudget(retry_budget, min_retries_per_second, stats=stats, clock=clock)  # type: ignore[arg-type]
    if fleet is None:
        return native
    from .fleet_budget import FleetBudget

    return FleetBudget(fleet, native)


def allow(m: LLMManager, model: Model, budget: Budget) -> bool:
    """Whether the walk may retry ``model`` now (its failure is booked); a denial is
    counted in ``retries_denied``."""
    if budget.try_withdraw():
        return True
    m._mstats.record_retry_denied()
    logger.debug("retry of %r denied by the retry budget: next model", model.name)
    return False


def withdraw(m: LLMManager) -> bool:
    """For an extra attempt a caller makes of its own accord (a hedge): True, counted in
    the budget, if it has room (or there is none); False if it is spent. Not counted in
    ``retries_denied``: that counts retries."""
    budget = m._retry_budget
    return True if budget is None else budget.try_withdraw()


__all__ = ["Budget", "allow", "build", "withdraw"]
