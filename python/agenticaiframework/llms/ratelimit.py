"""Per-model rate limits as an admission gate and observer (gates.py): a model out of
quota is skipped like one whose breaker is open, and the request falls back.

The limits themselves are native (``_native.RateLimiter``: GCRA on atomics, see
``src/limiter.rs``); this file maps model names to them. Install it with
``LLMManager._use_gates((gate,), (gate,))``.

What today's protocols let it do: ``admit`` takes one request slot (and refuses while
the model's tokens are in debt or it cools down after a 429); ``observe(model, None)``
(an attempt that never started or was cancelled) gives that slot back. What they do not
pass yet, and token settlement needs, is written in ``RateLimitGate``'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._native import RateLimiter, Reservation
from .errors import RateLimitedError, RateLimitError
from .gates import Rejected

if TYPE_CHECKING:
    from .models import Model

# The reservation each model's open attempt holds, per request (a request runs in one
# thread or one task, and the walk admits and observes an attempt there, in turn).
_held: ContextVar[dict[str, Reservation] | None] = ContextVar("_held", default=None)


@dataclass(frozen=True, slots=True)
class RateLimited(Rejected):
    """A refusal by a model's rate limit; its error is a :class:`RateLimitedError`."""

    def error(self, model: str) -> RateLimitedError:
        return RateLimitedError(model, self.retry_after, self.reason)


class RateLimitGate:
    """A gate and an observer mapping model names to their ``RateLimiter``; a model
    without one is never refused.

    >>> gate = RateLimitGate({"gpt-4": RateLimiter(rpm=500, tpm=30_000)})

    Wiring token limits needs two things the walk does not pass today:

    - ``admit`` needs the request (its prompt and kwargs) to reserve an estimate,
      ``prompt tokens (estimated) + kwargs["max_tokens"]``: ``reserve(name, tokens)``
      here does it given the number;
    - the observer needs the attempt's usage and its exception:
      ``observe(model, ok, record, exc)``, where ``record`` (the native ``Record``)
      gives ``prompt_tokens + completion_tokens`` to ``settle(name, reservation,
      actual)`` and ``exc`` a provider 429 (``RateLimitError``, with ``retry_after``
      from Retry-After) for ``failed(name, exc)``, which cools that model only.
    """

    __slots__ = ("_limits", "default_cool_down")

    def __init__(
        self, limits: Mapping[str, RateLimiter], *, default_cool_down: float = 1.0
    ) -> None:
        for name, lim in limits.items():
            if not isinstance(lim, RateLimiter):
                raise TypeError(f"limits[{name!r}] must be a RateLimiter, not {type(lim).__name__}")
        if not (isinstance(default_cool_down, (int, float)) and 0 <= default_cool_down < math.inf):
            raise ValueError(f"default_cool_down must be seconds >= 0, got {default_cool_down!r}")
        self._limits = dict(limits)
        self.default_cool_down = float(default_cool_down)

    def limiter(self, name: str) -> RateLimiter | None:
        return self._limits.get(name)

    # ------------------------------------------------------------------ the protocols

    def admit(self, model: Model, retry: bool) -> Rejected | None:
        lim = self._limits.get(model.name)
        if lim is None:
            return None
        r = lim.reserve()
        if not r.admitted:
            return RateLimited("rate limited", r.retry_after)
        held = _held.get()
        if held is None:
            _held.set(held := {})
        held[model.name] = r
        return None

    def observe(self, model: Model, ok: bool | None) -> None:
        held = _held.get()
        r = held.pop(model.name, None) if held else None
        if r is not None and ok is None:
            lim = self._limits.get(model.name)
            if lim is not None:
                lim.release(r)  # never started or cancelled: its slot goes back

    # ------------------------------------------------------------------ for the wiring

    def reserve(self, name: str, tokens: int) -> Reservation | None:
        """Reserves a request and ``tokens`` (the estimate) on ``name``'s limit; None
        when ``name`` has no limit. Check ``.admitted`` / ``.retry_after``."""
        lim = self._limits.get(name)
        return None if lim is None else lim.reserve(tokens)

    def settle(self, name: str, reservation: Reservation, actual: int) -> int:
        """Settles with the tokens really used; returns the tokens given back (< 0)
        or charged (> 0)."""
        lim = self._limits.get(name)
        return 0 if lim is None else lim.settle(reservation, actual)

    def failed(self, name: str, exc: BaseException) -> None:
        """A provider's 429 cools ``name`` (only) for its Retry-After, or
        ``default_cool_down`` seconds when it gave none."""
        lim = self._limits.get(name)
        if lim is None or not isinstance(exc, RateLimitError):
            return
        wait = exc.retry_after
        if wait is None or not (0 <= wait < math.inf):
            wait = self.default_cool_down
        lim.cool_down(min(wait, 1e9))

    def headroom(self, name: str) -> float:
        """The fraction of ``name``'s capacity left (1.0 without a limit)."""
        lim = self._limits.get(name)
        return 1.0 if lim is None else lim.headroom()

    def soonest(self, names: Iterable[str]) -> float:
        """Seconds until the first of ``names`` could admit a request (0.0 if one can
        now; inf if none has a limit that will ever admit): the ``retry_after`` of a
        fail-fast error, or how long a ``max_queue_wait`` caller would wait."""
        best = math.inf
        for n in names:
            lim = self._limits.get(n)
            if lim is None:
                return 0.0
            best = min(best, lim.retry_after())
        return best


def capacity_returns(errors: Iterable[tuple[str, BaseException]]) -> float | None:
    """When every error of a request is a rate-limit refusal: the seconds until the
    first model could admit it (the fail-fast error's ``retry_after``); else None."""
    soonest: float | None = None
    for _, exc in errors:
        if not isinstance(exc, RateLimitedError):
            return None
        soonest = exc.retry_after if soonest is None else min(soonest, exc.retry_after)
    return soonest


__all__ = ["RateLimitGate", "RateLimited", "capacity_returns"]
