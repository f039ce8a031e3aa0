"""Breakers shared by a fleet: an admission gate (gates.py) over the fleet breaker of
fleet.py, so an outage one process discovers is skipped by all of them.

Closed and clean (the steady state): no Redis at all. The first try stays inline (this
gate does not watch the model, see ``Model.watch``), and ``admit`` reads a local table.

Failures are counted fleet-wide, consecutive ones: a failed attempt is reported at once
(one round trip, on a path that has just spent a failed call). The first failure of a
run is published (``failing``): from then on every process watches that model, so each
of its attempts goes through the walk and each success is reported (from a background
thread, at most one pending per model). The first success resets the count and
publishes ``clean``; the processes stop watching. A success made in the moment between
a first failure and its message is not reported: the count is consecutive to within one
pub/sub delivery.

At ``failure_threshold`` the script opens the breaker and publishes it; every process
skips the model (and trips its local breaker) for the recovery timeout. Then it is
half-open fleet-wide: an attempt is admitted only on one of ``half_open_max_calls``
trial leases held across the fleet. Asking for one is a round trip made by the request
that wants the trial, a blocking one under ``agenerate`` too (half-open only, bounded by
the socket timeout; a process refused asks again after ``TRIAL_POLL`` seconds and is
refused locally in between). The lease goes back with the attempt's outcome: a success
closes the breaker fleet-wide (``closed`` published), a failure reopens it, an attempt
that ends without an outcome gives the lease back. A crashed process's lease expires
after the model's timeout (or the manager's ``fleet_lease``), so it cannot wedge the
breaker.

Redis out: every fleet step answers "no fleet" (fleet.py), the local breakers carry on
alone, and the gate admits what they admit.
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

# How long a process refused a trial lease waits before it asks the fleet again.
TRIAL_POLL = 0.05

# A report for the background thread: (model, outcome, threshold, recovery, lease).
# outcome None: a trial lease to give back.
Report = tuple[str, bool | None, int, float, str | None]


class FleetBreakers:
    """The gate; ``observe`` is the walk's report of an attempt's outcome."""

    def __init__(
        self,
        fleet: Fleet,
        models: Callable[[str], Model | None],
        clock: Callable[[], float] = time.monotonic,
        lease: float = 60.0,
    ) -> None:
        self.fleet = fleet
        self._lease = lease  # a trial lease's life when its model has no timeout
        # The manager's model (a deployment) by its key (name, or name@deployment; None:
        # not registered): the fleet keeps a breaker per deployment.
        self._models = models
        self._clock = clock
        self._open: dict[str, float] = {}  # model -> open until, on the local clock
        self._half: dict[str, float] = {}  # half-open model -> when to ask for a trial
        self._openings: dict[str, int] = {}  # model -> the last opening applied
        self._leases: dict[str, list[str]] = {}  # model -> trial leases of open attempts
        self._watched: set[str] = set()
        self._gen: dict[str, int] = {}  # model -> 'failing' messages heard
        self._pending: set[str] = set()  # models with a success report queued
        self._reports: queue.SimpleQueue[Report] = queue.SimpleQueue()
        self._started = False
        self.listening = False  # subscribed to the events (tests wait for it)
        self._lock = threading.Lock()
        _fork.register(self)
        # Listening from the start: an opening published before this process's first
        # failure still reaches it (a forked child starts its own at its first report).
        self._start()

    # ------------------------------------------------------------------ the gate

    def watches(self, name: str) -> bool:
        return name in self._watched

    def admit(self, model: Model, retry: bool) -> Rejected | None:
        name = model.key
        until = self._open.get(name)
        if until is not None:
            left = until - self._clock()
            if left > 0:
                return Rejected("circuit breaker open fleet-wide", retry_after=left)
            self._open.pop(name, None)
            self._half[name] = 0.0  # past its recovery timeout: half-open, ask for a trial
        ask = self._half.get(name)
        if ask is None:
            return None
        return self._trial(model, ask)

    def _trial(self, model: Model, ask: float) -> Rejected | None:
        """Half-open: admitted only on a fleet trial lease."""
        name, now = model.key, self._clock()
        if now < ask:
            return Rejected("circuit breaker half-open fleet-wide, trials taken", ask - now)
        b = model.breaker
        got = self.fleet.admit(name, b.half_open_max_calls, self._lease_ttl(model))
        if not got.allowed:
            if got.retry_after > 0:  # reopened meanwhile (a trial elsewhere failed)
                self._half.pop(name, None)
                self._open[name] = now + got.retry_after
                return Rejected("circuit breaker open fleet-wide", retry_after=got.retry_after)
            self._half[name] = now + TRIAL_POLL
            return Rejected("circuit breaker half-open fleet-wide, trials taken", TRIAL_POLL)
        if not got.trial:
            # Closed fleet-wide (a trial elsewhere closed it), or Redis is out: the local
            # breaker decides from here.
            self._half.pop(name, None)
            return None
        assert got.lease is not None
        self._leases.setdefault(name, []).append(got.lease)
        # The fleet has chosen this attempt as a trial: the local breaker (tripped at the
        # opening) must let it through, and the outcome goes back to the fleet.
        if model.core.breaker.state != "closed":
            model.core.breaker.reset()
        return None

    def _lease_ttl(self, model: Model) -> float:
        # Long enough for the trial's call; a crashed holder's lease frees after it.
        return model.timeout or self._lease

    def observe(self, model: Model, ok: bool | None) -> None:
        """An attempt on ``model`` ended (``ok``: it answered; None: no outcome)."""
        name = model.key
        lease = None
        leases = self._leases.get(name)
        if leases:
            try:
                lease = leases.pop()
            except IndexError:  # another thread took the last one
                pass
        b = model.breaker  # the fleet opens at this model's own threshold, for its timeout
        report = (name, ok, b.failure_threshold, b.recovery_timeout or 0.001, lease)
        if ok is False:
            # A failure is reported here and now (one round trip, on a path that has just
            # spent a failed call): the opening then reaches the fleet before this
            # process's next attempt. A slow Redis costs one socket timeout, then none
            # (fleet.py leaves it alone for a cooldown).
            self._watch(name, True)
            self._handle(*report)
            return
        if ok is None and lease is None:
            return
        if lease is None:
            if name in self._pending:
                return  # one reset at a time is enough
            self._pending.add(name)
        self._start()
        self._reports.put(report)  # a success (or a lease back) can wait for the thread

    # ------------------------------------------------------------------ state

    def _watch(self, name: str, on: bool) -> None:
        if on:
            if name in self._watched:
                return
            self._watched.add(name)
        else:
            if name not in self._watched:
                return
            self._watched.discard(name)
        model = self._models(name)
        if model is not None:
            model.watch(on)

    def opened(self, name: str, retry_after: float, opening: int = 0) -> None:
        """The fleet opened ``name``: skip it here until ``retry_after`` has passed.
        ``opening``: the opening's id, so that one heard twice (the reporter, then its
        own message) is applied once."""
        if opening:
            if self._openings.get(name) == opening:
                return
            self._openings[name] = opening
        self._half.pop(name, None)
        self._open[name] = self._clock() + retry_after
        self._watch(name, True)
        model = self._models(name)
        if model is not None and model.core.breaker.state == "closed":
            model.core.breaker.trip()
            logger.warning("circuit breaker for %r opened fleet-wide", name)

    def closed(self, name: str) -> None:
        """The fleet closed ``name`` (a trial answered): back to normal here too."""
        self._open.pop(name, None)
        self._half.pop(name, None)
        self._watch(name, False)
        model = self._models(name)
        if model is not None and model.core.breaker.state != "closed":
            model.core.breaker.reset()
            logger.warning("circuit breaker for %r closed fleet-wide", name)

    def _clean(self, name: str) -> None:
        """A success broke the fleet's run of failures of ``name``."""
        if name not in self._open and name not in self._half:
            self._watch(name, False)
            # This process's own count of the run goes too: the failures it counted are no
            # longer consecutive. A local breaker that is open stays open.
            model = self._models(name)
            if model is not None:
                b = model.core.breaker
                if b.state == "closed" and b.failure_count:
                    b.reset()

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

    def _handle(
        self, name: str, ok: bool | None, threshold: int, recovery: float, lease: str | None
    ) -> None:
        try:
            fleet = self.fleet
            if ok is None:
                if lease is not None:
                    fleet.release_trial(name, lease)
            elif ok:
                if lease is None:
                    self._pending.discard(name)
                gen = self._gen.get(name, 0)
                if fleet.record_success(name, lease):
                    self.closed(name)
                elif fleet.up and self._gen.get(name, 0) == gen:
                    # Reset, and no failure was heard since: nothing left to report.
                    self._clean(name)
            elif opening := fleet.record_failure(name, threshold, recovery, lease):
                self.opened(name, recovery, opening)
            else:
                # Opened before this process listened? Then learn it now: at most one
                # failed call per process on a model the fleet already skips.
                state = fleet.breaker_state(name)
                if state is not None and state["state"] == "open":
                    self.opened(name, float(state["retry_after"]))
        except Exception:  # a report never fails the request nor kills the thread
            logger.debug("fleet report for %r failed", name, exc_info=True)

    def _event(self, data: object) -> None:
        event = parse_event(data)
        if event is None:
            return
        name = event.model
        if event.event == "open":
            self.opened(name, event.retry_after, event.opening)
        elif event.event == "closed":
            self.closed(name)
        elif event.event == "failing":
            self._gen[name] = self._gen.get(name, 0) + 1
            self._watch(name, True)
        elif event.event == "clean":
            self._clean(name)

    def _after_fork(self) -> None:
        self.listening = False
        self._reports = queue.SimpleQueue()
        self._pending = set()
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
                sub = client.pubsub()
                sub.subscribe(fleet.events_channel)
            msg = sub.get_message(timeout=1.0)
            owner = ref()
            if msg is not None and owner is not None:
                if msg.get("type") == "message":
                    owner._event(msg.get("data"))
                elif msg.get("type") == "subscribe":
                    owner.listening = True  # the server has it: every later event comes
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
