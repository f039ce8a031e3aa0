"""Admission gates: the seam where a policy may refuse an attempt before the breaker is
asked for a permit (a per-model rate limit, a retry budget, a fleet-wide breaker).

A refusal is data, as in Polly v8: ``admit`` returns a :class:`Rejected` (or None to
admit), never raises. The walk (``walk.py``) asks each gate in order, then the breaker;
a refused model is skipped like one whose breaker is open, and the refusal is one of the
request's errors (:class:`AdmissionRejectedError`). Gates run on every attempt, so they
stay synchronous and cheap: a gate that needs I/O keeps its state where a lookup is
local (the native core, or a cache refreshed off the request path).

The first try is made inline, in front of the walk, where no gate is asked, only while
no gate watches the model (``Model.watch``). A gate watches every model unless it has a
``watches(name)`` method: then it watches a model only while that says True, and calls
``Model.watch`` itself when the answer changes (fleet_breakers.py: a model is watched
while the fleet counts failures of it; a clean model's first try stays inline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .errors import AdmissionRejectedError

if TYPE_CHECKING:
    from .models import Model


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a gate refused, and when it expects to admit again (seconds, 0 if unknown)."""

    reason: str
    retry_after: float = 0.0

    def error(self, model: str) -> AdmissionRejectedError:
        return AdmissionRejectedError(model, self.reason, self.retry_after)


class Gate(Protocol):
    """Asked before each attempt on ``model`` (``retry``: not its first on this model in
    this request)."""

    def admit(self, model: Model, retry: bool) -> Rejected | None: ...


class Observer(Protocol):
    """Told each outcome of an attempt the walk made (``ok``: it answered; None: it ended
    without an outcome, cancelled or never started), e.g. to count failures fleet-wide.
    Called on the request's thread: keep it to a queue put."""

    def observe(self, model: Model, ok: bool | None) -> None: ...


def watchers(gates: tuple[Gate, ...], name: str) -> int:
    """How many of ``gates`` watch the model ``name`` now."""
    n = 0
    for g in gates:
        watches = getattr(g, "watches", None)
        n += watches is None or bool(watches(name))
    return n


__all__ = ["Gate", "Observer", "Rejected", "watchers"]
