"""Rate limits: the walk's stage for a model's (a deployment's) own requests- and
tokens-per-minute, so that traffic is spread before the provider says 429.

``metadata={"rpm": 3000, "tpm": 450_000}`` (optionally ``burst`` / ``token_burst``; by
default a whole minute's amount may go at once after an idle spell) gives a model, or a
deployment (``add_deployment``), a native ``RateLimiter`` (GCRA on atomics, exact under
threads, on the manager's clock; ``src/limiter.rs``). The walk (``walk.py``) calls this
file at three points of each attempt on such a model:

- ``admit``, after the admission gates and before the breaker: one request, and an
  estimate of its tokens (the prompt's, at about four characters a token, plus
  ``max_tokens`` when the request gives it) are reserved. Refused, the attempt is not
  made: the model (or that deployment: the next one is picked) is skipped like an open
  breaker, with a :class:`RateLimitedError` saying when capacity returns;
- ``ended``, with the attempt's outcome: an answer settles the reservation on the usage
  it reports (the difference given back, or charged, so the limit holds on real usage);
  a failure gives the tokens back (a failed call is not billed) and keeps the request;
  a provider's 429 (:class:`RateLimitError`) also cools that model or deployment alone,
  for its Retry-After (1 s without one); an attempt without an outcome (cancelled, or
  never started) gives both back.

When every model of the route was refused by its limits, the request fails fast with a
:class:`QuotaExhaustedError` (``retry_after``: when the first could admit it), or, with
``LLMManager(max_queue_wait=s)``, waits for capacity (``Walk.queued``) and walks the
route again, as long as the wait fits in ``s`` seconds since the request began.

A model with a limit is watched (``Model.watch``): its first try goes through the walk.

With a fleet (``LLMManager(redis=...)``) a limited model's limiter is a
:class:`~.fleet_limits.FleetLimiter` instead, with the same face (``reserve``,
``settle``, ``release``, ``cool_down``, ``retry_after``, ``tpm``): the limit is then the
fleet's, and this file does not tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._native import RateLimiter, Reservation
from .errors import RateLimitedError, RateLimitError

if TYPE_CHECKING:
    from .._native import Record
    from .models import Model

# Seconds a 429 without a Retry-After cools its model.
DEFAULT_COOL_DOWN = 1.0

# The metadata keys that configure a limit, and RateLimiter's names for them.
KEYS = ("rpm", "tpm", "burst", "token_burst")


def limiter_of(metadata: dict[str, Any], clock: Any) -> RateLimiter | None:
    """The limiter ``metadata`` asks for (None without ``rpm`` or ``tpm``). Bad values
    are the native limiter's ValueError/TypeError, naming the key."""
    given = {k: metadata[k] for k in KEYS if metadata.get(k) is not None}
    if "rpm" not in given and "tpm" not in given:
        if given:
            raise ValueError(f"metadata[{next(iter(given))!r}] needs 'rpm' or 'tpm'")
        return None
    return RateLimiter(**given, clock=clock)


def estimate(prompt: str, kwargs: dict[str, Any]) -> int:
    """Tokens to reserve for a request: the prompt's estimate plus ``max_tokens``."""
    n = (len(prompt) + 3) // 4
    mt = kwargs.get("max_tokens") if kwargs else None
    if type(mt) is int and mt > 0:
        n += mt
    return n


def admit(model: Model, prompt: str, kwargs: dict[str, Any]) -> Reservation | RateLimitedError:
    """Reserves the attempt on ``model``'s limiter: the reservation, or the refusal."""
    lim: RateLimiter = model.limiter
    r = lim.reserve(estimate(prompt, kwargs) if lim.tpm is not None else 0)
    if r.admitted:
        return r
    err = RateLimitedError(model.name, r.retry_after)
    err.pending = getattr(r, "pending", False)
    return err


def ended(
    model: Model,
    r: Reservation,
    ok: bool | None,
    record: Record | None = None,
    exc: BaseException | None = None,
) -> None:
    """The attempt holding ``r`` ended (``ok``: answered; None: no outcome)."""
    lim: RateLimiter = model.limiter
    if ok is None:
        lim.release(r)
        return
    if ok:
        if record is not None and lim.tpm is not None:
            lim.settle(r, record.prompt_tokens + record.completion_tokens)
        return
    if lim.tpm is not None:
        lim.settle(r, 0)
    if isinstance(exc, RateLimitError):
        wait = exc.retry_after
        if wait is None or not (0 <= wait < math.inf):
            wait = DEFAULT_COOL_DOWN
        lim.cool_down(min(wait, 1e9))


# How long a request may wait, without max_queue_wait, when every refusal is a fleet
# allowance being refilled (fleet_limits.py): the shared limit may well have room.
PENDING_WAIT = 0.1


def pending(errors: Iterable[tuple[str, BaseException]]) -> bool:
    """Whether every refusal is an allowance being refilled, not the limit itself."""
    return all(getattr(e, "pending", False) for _, e in errors)


def capacity_returns(errors: Iterable[tuple[str, BaseException]]) -> float | None:
    """When every error of a request is a rate-limit refusal: the seconds until the
    first model could admit it; else None."""
    soonest: float | None = None
    for _, exc in errors:
        if not isinstance(exc, RateLimitedError):
            return None
        soonest = exc.retry_after if soonest is None else min(soonest, exc.retry_after)
    return soonest


__all__ = ["admit", "capacity_returns", "ended", "estimate", "limiter_of"]
