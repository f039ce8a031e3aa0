"""The retry budget of a fleet: one budget over every process of a namespace
(``LLMManager(redis=..., retry_budget=...)``), with no Redis round trip on the request
path.

Each process keeps its native :class:`~.._native.RetryBudget` (retry_budget.py) and a
background thread that, every :data:`FLUSH` seconds, publishes its window counts
(requests, retries) to Redis (fleet.py's ``BUDGET`` script, hash ``{ns}:rb``, one member
per process, standing :data:`STAND` seconds) and reads back the other live members'
sums. A retry is decided locally, on the local window plus those last sums: the budget
is the fleet's share of the fleet's requests.

Bounds: the others' counts are at most ``FLUSH`` (plus a round trip) old, so the fleet
may overshoot by the retries the other processes allowed in that time, at most their
budget's rate over ``FLUSH`` seconds.

Redis out (fleet.py's outage handling: one WARNING, a cooldown, one INFO when back): the
sums are dropped at once, each process budgets alone on its own window (stricter for a
process with few requests, never failing a request), and the next answer rejoins.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

from .._native import RetryBudget
from . import _fork
from .fleet import Fleet

logger = logging.getLogger("agenticaiframework.llms")

# Seconds between publications of the window counts.
FLUSH = 0.5
# Seconds a member's published counts stand (a process that stopped drops out then).
STAND = 3.0


class FleetBudget:
    """``local``, the process's native budget, with the fleet's other members' counts
    added to each decision."""

    def __init__(self, fleet: Fleet, local: RetryBudget) -> None:
        self.fleet = fleet
        self.local = local
        self._reset()
        self.refresh()  # the fleet's counts from the start
        _fork.register(self)
        self._start()

    def _reset(self) -> None:
        self._id = os.urandom(8).hex()  # this process's member
        self._others = (0, 0)  # the other members' (requests, retries); one tuple: atomic
        self._degraded = False
        self._wake = threading.Event()
        self._started = False

    def _after_fork(self) -> None:
        # The parent's counts are the parent's: the child is a member of its own.
        self._reset()
        self._start()

    def try_withdraw(self) -> bool:
        """One retry, decided on the local window and the fleet's last counts."""
        r, t = self._others
        return self.local.try_withdraw(r, t)

    @property
    def degraded(self) -> bool:
        """Whether this process budgets alone for now (Redis out)."""
        return self._degraded

    def others(self) -> tuple[int, int]:
        """The other members' (requests, retries), as last read."""
        return self._others

    def refresh(self) -> bool:
        """One publication and read-back (what the thread does every FLUSH seconds):
        True if Redis answered."""
        req, ret = self.local.window_counts()
        got = self.fleet.budget_share(self._id, req, ret, STAND)
        if got is None:
            self._others = (0, 0)
            if not self._degraded:
                self._degraded = True
                # fleet.py has logged the outage (once): this is its consequence here.
                logger.debug("fleet retry budget: this process budgets alone")
            return False
        self._others = got
        if self._degraded:
            self._degraded = False
            logger.debug("fleet retry budget: shared again")
        return True

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        threading.Thread(
            target=_flush_loop,
            args=(weakref.ref(self), self._wake),
            name="agenticai-fleet-budget",
            daemon=True,
        ).start()

    def __repr__(self) -> str:
        return f"FleetBudget({self.fleet!r}, {self.local!r})"


def _flush_loop(ref: weakref.ref[FleetBudget], wake: threading.Event) -> None:
    while True:
        wake.wait(FLUSH)
        owner = ref()
        if owner is None or owner._wake is not wake:  # gone, or forked anew
            return
        try:
            owner.refresh()
        except Exception:  # a publication never kills the thread
            logger.debug("fleet retry budget: publication failed", exc_info=True)
        del owner


__all__ = ["FLUSH", "STAND", "FleetBudget"]
