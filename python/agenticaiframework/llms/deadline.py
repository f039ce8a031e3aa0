"""The deadline stage: the walk of a request given ``deadline=`` (issue 19).

``Timed`` is the route walk with one time budget around its steps: it never starts an
attempt once the deadline has passed, gives each attempt what is left (as its time limit,
and to the model as ``kwargs["timeout"]``, which the adapters hand to the SDK), books an
attempt cut at the deadline as no outcome of the model's, turns a wait (backoff,
Retry-After, capacity) that would outlast the deadline into a move to the next model at
once, and ends in ``DeadlineExceededError`` when the budget ran out. The drivers build a
``Timed`` only for a request with a deadline (``m._Timed``), so a walk without one pays
nothing for these checks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import AllModelsFailedError, DeadlineExceededError
from .walk import Walk, remaining

if TYPE_CHECKING:
    from .manager import LLMManager
    from .models import Model

logger = logging.getLogger("agenticaiframework.llms")


class Timed(Walk):
    """The walk of a request with a deadline (``dl``: its budget in seconds, and when it
    ends on the manager's clock)."""

    __slots__ = ()
    timed = True

    def __init__(
        self,
        m: LLMManager,
        plan: tuple[Model, ...],
        kwargs: dict[str, Any],
        first: int = -1,
        prompt: str = "",
        dl: tuple[float, float] | None = None,
    ) -> None:
        if dl is None:
            raise ValueError("a Timed walk needs its deadline")
        self.budget, self.deadline = dl
        self.expired = False
        super().__init__(m, plan, kwargs, first, prompt, dl)

    def next(self) -> Model | None:
        if self.expired or self.past():
            self.expired = True
            return None
        model = super().next()
        if model is not None:
            # What is left reaches the model: the adapters pass it to the SDK.
            left = self.left()
            t = self.kwargs.get("timeout")
            if isinstance(t, (int, float)) and not isinstance(t, bool):
                left = min(float(t), left)
            self.kwargs["timeout"] = left
        return model

    def failed(self, exc: Exception) -> float | None:
        if isinstance(exc, TimeoutError) and self.past():
            # Cut at the request's deadline, not the model's failure: no breaker count.
            model, token = self.model, self.token
            self.token = 0
            self.errors.append((model.name, exc))
            self.cut(model, token)
            self.expired = True
            return None
        return super().failed(exc)  # which turns a wait past the deadline into a move on

    def past(self) -> bool:
        return self.m._clock() >= self.deadline

    def left(self) -> float:
        """Seconds left of the request's deadline (a tiny positive value at the least: an
        attempt limit of 0 would mean none)."""
        return remaining(self.m, self.deadline)

    def limit(self, timeout: float | None, model: Model) -> float | None:
        """An attempt's time limit: its own (``timeout``, else the model's), cut to what
        is left of the deadline."""
        own: float | None = model.timeout if timeout is None else timeout
        left = self.left()
        return left if own is None else min(own, left)

    def queued(self) -> float | None:
        return None if self.expired else super().queued()

    def exhausted(self) -> AllModelsFailedError | DeadlineExceededError:
        if not self.expired:
            return super().exhausted()
        self._failed_request()
        self.m._mstats.record_deadline_exceeded()
        errors = self.errors
        late = DeadlineExceededError(errors, self.budget)
        if errors:
            late.__cause__ = errors[-1][1]
        logger.error("%s", str(late))
        return late


__all__ = ["Timed"]
