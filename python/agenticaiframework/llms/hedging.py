"""Hedged requests (issue 18): when an attempt has not answered after a delay, the same
request starts on the next deployment of the model (else the next model of the route);
the first success wins and the others are cancelled.

The policy is ``hedge_after`` (seconds, or ``"p95"``: the model's own p95 attempt latency
from its native histogram, :data:`P95_FLOOR` until it holds :data:`P95_SAMPLES` samples)
and ``max_hedges`` (default 1), per model (``metadata``) or for every model
(``LLMManager(hedge_after=..., max_hedges=...)``; a model's metadata wins).

What the walk does for it (walk.py): an open attempt is *detached* into an
:class:`~.walk.Attempt` handle, so several can be open at once; ``Walk.hedge(after)``
opens the next one past ``after``'s place on the route; each handle is settled by
attaching it (``attach``) and booking its outcome as a plain walk would, except that an
attempt that fails while another still runs is only booked (``Walk.lost``): no retry, no
move. The async driver that races them is ``_drive_hedged.py``.

Sync ``generate`` and ``stream`` do not hedge (README, "Hedged requests"): a sync call
cannot be cancelled, so a losing attempt would hold its worker thread (and its HTTP
connection) until the provider answers, which is the straggler hedging exists to leave.

Counted (native, per model, ``get_model_info(name)["stats"]``): ``hedged_requests`` on the
model a hedge starts on, ``hedge_wins`` when that hedge answers first. Every attempt that
completes is booked as any attempt is (tokens, latency, breaker); a cancelled loser is
``cancelled``, never a failure, and its rate-limit reservation goes back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .models import Model

P95 = "p95"
P95_SAMPLES = 20  # samples of the model's histogram before its p95 is trusted
P95_FLOOR = 1.0  # seconds: the delay of a "p95" policy until then
MAX_HEDGES = 16


class HedgePolicy:
    """When a request hedges (``after``: seconds, or ``"p95"``) and how often
    (``max_hedges``: hedges per attempt of the walk, beside the attempt itself)."""

    __slots__ = ("after", "max_hedges")

    def __init__(self, after: float | str, max_hedges: int = 1) -> None:
        self.after = check_after(after)
        self.max_hedges = check_max(max_hedges)

    def delay(self, model: Model) -> float:
        """Seconds after an attempt on ``model`` starts before it is hedged."""
        after = self.after
        if after != P95:
            return after  # type: ignore[return-value]
        stats = model.stats
        if stats.latency_count() < P95_SAMPLES:
            return P95_FLOOR
        q = stats.quantile(0.95)
        return P95_FLOOR if q is None else q

    def __repr__(self) -> str:
        return f"HedgePolicy(after={self.after!r}, max_hedges={self.max_hedges})"


def check_after(v: object) -> float | str:
    if v == P95 and isinstance(v, str):
        return P95
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"hedge_after must be a number of seconds or 'p95', not {v!r}")
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"hedge_after must be a finite number of seconds > 0, got {v!r}")
    return float(v)


def check_max(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"max_hedges must be an int, not {type(v).__name__}")
    if not 1 <= v <= MAX_HEDGES:
        raise ValueError(f"max_hedges must be between 1 and {MAX_HEDGES}, got {v}")
    return v


def policy_of(meta: Mapping[str, Any], default: HedgePolicy | None) -> HedgePolicy | None:
    """A model's policy: its metadata's ``hedge_after`` / ``max_hedges`` over the
    manager's ``default`` (None: it does not hedge)."""
    after = meta.get("hedge_after")
    n = meta.get("max_hedges")
    if after is None and n is None:
        return default
    if after is None:
        if default is None:
            raise ValueError("metadata['max_hedges'] needs hedge_after (the model's or manager's)")
        after = default.after
    if n is None:
        n = 1 if default is None else default.max_hedges
    try:
        return HedgePolicy(after, n)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"metadata: {exc}") from None


__all__ = ["P95", "P95_FLOOR", "P95_SAMPLES", "HedgePolicy", "policy_of"]
