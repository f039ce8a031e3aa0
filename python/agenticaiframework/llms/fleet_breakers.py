"""Breakers shared by a fleet: an admission gate (gates.py) over the fleet breaker of
fleet.py, so an outage one process discovers is skipped by all of them.

No Redis on the admission path: ``admit`` reads a local table of models the fleet has
opened. A failed attempt is reported at once (one round trip, on a path that has just
spent a failed call; successes go to a background thread): the fleet breaker's script
counts failures fleet-wide, opens at ``failure_threshold`` failures not broken by a
reported success, and publishes the opening; a listening thread in every process hears
it within a round trip. On an opening, the local breaker of that model is tripped
too: the inline first try (which asks no gate) skips it, and its own recovery timeout
brings it back to a half-open trial.

What is reported: every failed attempt, and the success of an attempt the walk made
(after a failure, or on a fallback model); a first-try success is not (it would cost a
Redis write per request), so the fleet counts failures until a request that walked
succeeds. Half-open trials are each process's own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _fork
from .fleet import Fleet, parse_event
from .gates import Rejected

if TYPE_CHECKING:
    from .models import Model

logger = logging.getLogger("agenticaiframework.llms")


class FleetBreakers:
    """The gate; ``observe`` is the walk's report of an attempt's outcome."""

    def __init__(
        self,
        fleet: Fleet,
        models: Callable[[str], Model | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fleet = fleet
        self._models = models  # the manager's model by name (None: not registered)
        self._clock = clock
        self._open: dict[str, float] = {}  # model -> open until, on the local clock
        self._reports: queue.SimpleQueue[tuple[str, bool, int, float]] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()
        _fork.register(self)
        # Listening from the start: an opening published before this process's first
        # failure still reaches it (a forked child starts its own at its first report).
        self._start()

    # ------------------------------------------------------------------ the gate

    def admit(self, model: Model, retry: bool) -> Rejected | None:
        until = self._open.get(model.name)
        if until is None:
            return None
        left = until - self._clock()
        if left <= 0:
            self._open.pop(model.name, None)
            return None
        return Rejected("circuit breaker open fleet-wide", retry_after=left)

    def observe(self, model: Model, ok: bool) -> None:
        """An attempt on ``model`` ended (``ok``: it answered)."""
        self._start()
        b = model.breaker  # the fleet opens at this model's own threshold, for its timeout
        report = (model.name, ok, b.failure_threshold, b.recovery_timeout or 0.001)
        if ok:
            self._reports.put(report)  # a success can wait for the background thread
        else:
            # A failure is reported here and now (one round trip, on a path that has just
            # spent a failed call): the opening then reaches the fleet before this
            # process's next attempt. A slow Redis costs one socket timeout, then none
            # (fleet.py leaves it alone for a cooldown).
            self._handle(*report)

    # ------------------------------------------------------------------ the threads

    def _start(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
            # The threads hold this gate weakly: they end once its manager is gone.
            ref = weakref.ref(self)
            for target, args, name in (
                (_report_loop, (ref, self._reports), "reports"),
                (_listen_loop, (ref, self.fleet), "events"),
            ):
                threading.Thread(
                    target=target, args=args, name=f"agenticai-fleet-{name}", daemon=True
                ).start()

    def opened(self, name: str, retry_after: float) -> None:
        """The fleet opened ``name``: skip it here until ``retry_after`` has passed."""
        self._open[name] = self._clock() + retry_after
        model = self._models(name)
        if model is not None and model.core.breaker.state == "closed":
            model.core.breaker.trip()
            logger.warning("circuit breaker for %r opened fleet-wide", name)

    def _handle(self, name: str, ok: bool, threshold: int, recovery: float) -> None:
        try:
            if ok:
                self.fleet.record_success(name)
            elif self.fleet.record_failure(name, threshold, recovery):
                self.opened(name, recovery)
            else:
                # Opened before this process listened? Then learn it now: at most one
                # failed call per process on a model the fleet already skips.
                state = self.fleet.breaker_state(name)
                if state is not None and state["state"] == "open":
                    self.opened(name, float(state["retry_after"]))
        except Exception:  # a report never fails the request nor kills the thread
            logger.debug("fleet report for %r failed", name, exc_info=True)

    def _event(self, data: object) -> None:
        event = parse_event(data)
        if event is not None and event.event == "open":
            self.opened(event.model, event.retry_after)
        elif event is not None and event.event == "closed":
            self._open.pop(event.model, None)

    def _after_fork(self) -> None:
        self._reports = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False  # the threads are the parent's


def _report_loop(ref: weakref.ref[FleetBreakers], reports: queue.SimpleQueue[Any]) -> None:
    while True:
        try:
            item = reports.get(timeout=1.0)
        except queue.Empty:
            if ref() is None:
                return
            continue
        owner = ref()
        if owner is None:
            return
        owner._handle(*item)
        del owner


def _listen_loop(ref: weakref.ref[FleetBreakers], fleet: Fleet) -> None:
    sub: Any = None
    while ref() is not None:
        try:
            if sub is None:
                client: Any = fleet._new_subscriber()  # one server, or one cluster node
                sub = client.pubsub(ignore_subscribe_messages=True)
                sub.subscribe(fleet.events_channel)
            msg = sub.get_message(timeout=1.0)
            owner = ref()
            if msg is not None and owner is not None:
                owner._event(msg.get("data"))
            del owner
        except Exception:
            # Redis is out: fleet.py has said so once; listen again after a pause.
            _closed(sub)
            sub = None
            time.sleep(1.0)
    _closed(sub)


def _closed(sub: Any) -> None:
    if sub is not None:
        try:
            sub.close()
        except Exception:
            pass
