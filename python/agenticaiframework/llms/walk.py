"""The route walk: every decision and every count of one request, and no I/O.

A driver (``_drive_async.py``, and ``_drive_sync.py`` generated from it) calls or awaits
the models, sleeps and pulls chunks; between those it asks the walk what to do and tells
it what happened::

    walk = Walk(manager, plan, kwargs)
    while (model := walk.next()) is not None:     # admission gates, then the breaker
        try:
            out = call(model)                       # the driver's only job
        except Exception as exc:
            wait = walk.failed(exc)                 # None: next() moves on to the next model
            if wait is not None:
                sleep(wait)
            continue
        return walk.succeeded(record_of(out))
    raise walk.exhausted()
    # and on any BaseException: walk.abandon(); raise

What is counted when (model counters are native, per model; request counters are the
manager's; ``total_requests`` and the cache hit/miss are counted before any walk, by the
native entry):

==========================  ==================================  =========================
event                       model (``get_model_info``)          request (``get_metrics``)
==========================  ==================================  =========================
``next()``: gate refuses    --                                  -- (an error is recorded)
``next()``: breaker open    ``short_circuits`` +1               -- (an error is recorded)
``next()``: permit          ``requests`` +1 (``retries`` +1     --
                            on a retry)
``failed(exc)``             ``failures`` +1, latency; breaker   --
                            failure (may open it)
``failed(WorkersBusy)``     ``cancelled`` +1, permit back       --
``failed``: budget denies   (as ``failed``)                     ``retries_denied`` +1
``first_chunk()``           time to first chunk                 --
``succeeded(record)``,      ``successes`` +1, latency, tokens;  ``successful`` +1,
``answered(prompt, text)``
                            breaker success                     tokens, retries, fallbacks
``broken(exc, parts)``      ``failures`` +1 (after a chunk)     ``failed`` +1, ...
``exhausted()``             --                                  ``failed`` +1, retries,
                                                                fallbacks
``abandon()``               ``cancelled`` +1 if an attempt      ``cancelled`` +1, ... (once;
                            was open, permit back               nothing if already ended)
==========================  ==================================  =========================

Hedging (hedging.py, driven by ``_drive_hedged.py``) keeps several attempts open: each is
detached into an :class:`Attempt` handle and booked by attaching it again, exactly once:
``hedge(after)`` opens the next one (``hedged_requests`` +1 for its model, ``requests``
+1; a move to the next model is a fallback); ``lost(exc)`` books a failure while another
attempt runs (as ``failed`` does, with no retry or move); ``spare(record)`` a success
that lost the race (the model's success and tokens, not the request's); ``drop()`` a
loser cancelled (``cancelled`` +1, permit and reservation back, no failure). The
winner's ``succeeded`` counts ``hedge_wins`` +1 when it was a hedge (the driver does).

``retries`` are attempts after a model's first; ``fallbacks`` the moves to a next model
of the route (moving past the last one is not a fallback). Single-flight followers and
requests answered by a twin are counted by the drivers (``coalesced`` +1 and their own
outcome); they never walk.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from . import _secrets, ratelimit, retry_budget
from .deployments import decide_deployment
from .errors import (
    AllModelsFailedError,
    CircuitBreakerOpenError,
    QuotaExhaustedError,
    RateLimitedError,
    StreamInterruptedError,
    describe,
)
from .retry import decide
from .workers import WorkersBusyError

if TYPE_CHECKING:
    from .._native import Record, Reservation
    from .deployments import Group
    from .errors import DeadlineExceededError
    from .manager import LLMManager
    from .models import Model

logger = logging.getLogger("agenticaiframework.llms")

Errors = list[tuple[str, BaseException]]


def remaining(m: LLMManager, deadline: float) -> float:
    """Seconds left before ``deadline`` on ``m``'s clock; a tiny positive amount at the
    least (a limit of 0 would mean none)."""
    return max(deadline - m._clock(), 1e-6)


class Attempt:
    """An open attempt of a walk, detached (``Walk.detach``) so that others can be open
    beside it (hedging.py): its model, permit token, rate-limit reservation, and its
    place on the route (``i``, the attempts at that place, the deployment masks)."""

    __slots__ = ("attempt", "hedge", "i", "model", "refused", "reservation", "t", "token", "tried")

    def __init__(self, w: Walk) -> None:
        self.model, self.token, self.reservation = w.model, w.token, w.reservation
        self.i, self.attempt, self.tried, self.refused = w.i, w.attempt, w.tried, w.refused
        self.hedge = False  # a hedge (not the walk's own attempt): its win is counted
        self.t = 0.0  # when it started, for an observing walk (events.py)


class Walk:
    """One request's walk along its route (the active model, then the fallback chain).

    A request with a deadline walks as ``deadline.Timed``, this walk with the deadline's
    checks around its steps; a walk without one pays nothing for them."""

    __slots__ = (
        "attempt",
        "attempts",
        "budget",
        "deadline",
        "errors",
        "expired",
        "fallbacks",
        "finished",
        "i",
        "kwargs",
        "m",
        "model",
        "plan",
        "prompt",
        "refused",
        "reservation",
        "retries",
        "since",
        "t0",
        "token",
        "tried",
    )

    # Whether this walk is a ``deadline.Timed`` (the drivers' fast branch asks): a class
    # attribute, so a walk without a deadline sets nothing for it. The deadline's slots
    # ("budget", "deadline", "expired") live here, unset, so that Timed and ObservedWalk
    # combine (events.ObservedTimed).
    timed = False
    budget: float
    deadline: float
    expired: bool

    def __init__(
        self,
        m: LLMManager,
        plan: tuple[Model, ...],
        kwargs: dict[str, Any],
        first: int = -1,
        prompt: str = "",
        dl: tuple[float, float] | None = None,
    ) -> None:
        """``first``: the token of the first attempt when a driver already made it inline
        (the fast path), 0 if its breaker refused it, -1 (default) if it was not made.
        ``prompt``: for the rate limits' token estimate (ratelimit.py); a walk whose first
        try was inline never meets a limit (a model with one is watched). ``dl``: the
        request's deadline, ``(seconds it was given, when it ends on the manager's
        clock)``, or None: read by ``deadline.Timed``, the walk of a request with one."""
        self.m = m
        self.plan = plan
        self.kwargs = kwargs
        self.prompt = prompt
        self.reservation: Reservation | None = None  # the open attempt's (ratelimit.py)
        self.since: float | None = None  # when the walk first waited for capacity
        self.i = 0  # the model being tried
        self.model = plan[0]
        self.errors: Errors = []
        self.retries = self.fallbacks = 0
        self.tried = self.refused = 0  # deployments of the current model (bitmasks)
        self.finished = False
        if first > 0:
            # The first attempt's token: the request's start, for its latency.
            self.token, self.attempt, self.attempts, self.t0 = first, 1, 1, first
            return
        self.t0 = 0
        self.token = 0  # the open attempt's permit token (0: none open)
        self.attempt = self.attempts = 0  # attempts on the current model; in all
        if first == 0:
            self._short_circuit()

    # ------------------------------------------------------------------ decisions

    def next(self) -> Model | None:
        """The model to call now, its permit taken; None when the route is exhausted."""
        plan = self.plan
        while self.i < len(plan):
            model = self.model = plan[self.i]
            group = model.group
            if group is not None:
                # Several deployments: the routing stage picks one (deployments.py).
                model = group.pick(self.tried, self.refused)
                if model is None:
                    self._unavailable(group)
                    continue
                self.model = model
            retry = self.attempt > 0
            refused = None
            for gate in model.gates:
                refused = gate.admit(model, retry)
                if refused is not None:
                    break
            if refused is not None:
                self.errors.append((model.name, refused.error(model.name)))
                logger.debug("skipping %r: %s", model.key, refused.reason)
                if group is not None:
                    self.refused |= model.bit  # another deployment may admit
                    continue
                self._move_on()
                continue
            if model.limiter is not None:
                held = ratelimit.admit(model, self.prompt, self.kwargs)
                if type(held) is RateLimitedError:
                    self.errors.append((model.name, held))
                    logger.debug("skipping %r: %s", model.key, held)
                    if group is not None:
                        self.refused |= model.bit
                        continue
                    self._move_on()
                    continue
                self.reservation = held  # type: ignore[assignment]
            token = model.core.begin(retry)
            if not token:
                self._release()
                if group is not None:
                    self.refused |= model.bit  # opened since the pick
                    continue
                self._short_circuit()
                continue
            self.token = token
            if retry:
                self.retries += 1
            elif not self.attempts:
                self.t0 = token  # the walk's first attempt starts the request's clock
            self.attempt += 1
            self.attempts += 1
            return model
        return None

    def failed(self, exc: Exception) -> float | None:
        """Books the failure of the open attempt; the wait before the same model is tried
        again, or None: ``next()`` moves on to the next model."""
        model, token = self.model, self.token
        self.token = 0
        self.errors.append((model.name, exc))
        if isinstance(exc, WorkersBusyError):
            # Never started: not the model's failure. Its permit goes back; next model.
            self.cut(model, token)
            logger.warning("%s", str(exc))
            if model.group is not None:
                self.refused |= model.bit  # another deployment's workers may be free
            else:
                self._move_on()
            return None
        opened = model.core.failure(token)
        for o in model.observers:
            o.observe(model, False)
        if self.reservation is not None:
            ratelimit.ended(model, self.reservation, False, None, exc)
            self.reservation = None
        if self.kwargs:
            # Secret kwargs may echo back in error text: scrub them there.
            _secrets.remember_from(self.kwargs)
        self._log_failure(exc, opened)
        m = self.m
        group = model.group
        if group is None:
            wait = decide(model, exc, self.attempt, m.max_retries, opened, m.backoff)
        else:
            self.tried |= model.bit
            wait = decide_deployment(
                model,
                group,
                exc,
                self.attempt,
                m.max_retries,
                opened,
                m.backoff,
                self.tried,
                self.refused,
            )
        if wait is not None and self.timed and wait >= self.left():
            wait = None  # a wait past the deadline (deadline.Timed): the next model, at once
        if wait is not None and m._retry_budget is not None:
            # A retry (or a move to another deployment) the budget denies: the next model.
            if not retry_budget.allow(m, model, m._retry_budget):
                wait = None
        if wait is None:
            self._move_on()
        return wait

    def cut(self, model: Model, token: int) -> None:
        """The open attempt ended without an outcome of the model's (cut short, never
        started): its permit and reservation go back, no breaker count."""
        model.core.cancel(token)
        for o in model.observers:
            o.observe(model, None)
        self._release()

    def left(self) -> float:
        """Seconds left of the request's deadline: none here (``deadline.Timed``)."""
        return math.inf

    def past(self) -> bool:
        """Whether the request's deadline has passed: never here (``deadline.Timed``)."""
        return False

    def limit(self, timeout: float | None, model: Model) -> float | None:
        """An attempt's time limit: its own (``timeout``), else the model's."""
        return model.timeout if timeout is None else timeout

    def restart(self) -> None:
        """The open attempt really starts now (it waited for a worker)."""
        self.token = self.model.core.restart(self.token)

    def first_chunk(self) -> None:
        self.model.core.first_chunk(self.token)

    # ------------------------------------------------------------------ endings

    def succeeded(self, record: Record) -> Record:
        pt, ct = record.prompt_tokens, record.completion_tokens
        self.model.core.success(self.token, pt, ct)
        for o in self.model.observers:
            o.observe(self.model, True)
        if self.reservation is not None:
            ratelimit.ended(self.model, self.reservation, True, record)
            self.reservation = None
        self.token = 0
        self.finished = True
        stats = self.m._mstats
        stats.record_success(pt + ct, self.retries, self.fallbacks)
        if self.t0:
            stats.record_request_since(self.t0)
        return record

    def answered(self, prompt: str, text: str) -> Record:
        """``succeeded`` for a plain str answer: the usage estimate, the model's, breaker's
        and request's counts and the record, in one native call."""
        m = self.model
        # The request's latency too, from its first attempt's token (t0).
        rec = m.core.answered_after(self.token, prompt, text, self.retries, self.fallbacks, self.t0)
        for o in m.observers:
            o.observe(m, True)
        if self.reservation is not None:
            ratelimit.ended(m, self.reservation, True, rec)
            self.reservation = None
        self.token = 0
        self.finished = True
        return rec

    def broken(self, exc: Exception, parts: list[str]) -> StreamInterruptedError:
        """A stream failed after its first chunk: no retry (the caller has seen text)."""
        model = self.model
        opened = model.core.failure(self.token)
        for o in model.observers:
            o.observe(model, False)
        self.reservation = None  # a cut stream used its tokens: the estimate stands
        self.token = 0
        self._log_failure(exc, opened)
        self.finished = True
        self.m._mstats.record_failure(self.retries, self.fallbacks)
        if self.t0:
            self.m._mstats.record_request_since(self.t0)
        err = StreamInterruptedError(model.name, "".join(parts), exc)
        logger.error("%s", str(err))  # text only: a kept record must not pin the traceback
        return err

    def queued(self) -> float | None:
        """After ``next()`` gave None: the wait before walking the route again, when
        every model was refused by its rate limits and the manager's ``max_queue_wait``
        leaves room for that wait; else None (``exhausted()`` follows)."""
        m = self.m
        budget = m.max_queue_wait
        if not budget and self.errors and ratelimit.pending(self.errors):
            budget = ratelimit.PENDING_WAIT
        if not budget:
            return None
        wait = ratelimit.capacity_returns(self.errors)
        if wait is None or wait >= self.left():
            return None
        now = m._clock()
        if self.since is None:
            self.since = now
        if now + wait > self.since + budget:
            return None
        self.errors = []
        self.i, self.attempt, self.tried, self.refused = 0, 0, 0, 0
        return wait

    def exhausted(self) -> AllModelsFailedError | DeadlineExceededError:
        self._failed_request()
        errors = self.errors
        soonest = ratelimit.capacity_returns(errors)
        err = (
            AllModelsFailedError(errors)
            if soonest is None
            else QuotaExhaustedError(errors, soonest)
        )
        if errors:
            err.__cause__ = errors[-1][1]
        logger.error("%s", str(err))  # text only: a kept record must not pin the traceback
        return err

    def _failed_request(self) -> None:
        self.finished = True
        self.m._mstats.record_failure(self.retries, self.fallbacks)
        if self.t0:
            self.m._mstats.record_request_since(self.t0)

    def abandon(self) -> None:
        """A BaseException (cancellation, KeyboardInterrupt, an abandoned stream): the
        open attempt's permit goes back, and the request is counted cancelled, once."""
        if self.token:
            token, self.token = self.token, 0
            self.cut(self.model, token)
        if not self.finished:
            self.finished = True
            self.m._mstats.record_cancelled(self.retries, self.fallbacks)

    # ------------------------------------------------------------------ hedging

    def detach(self) -> Attempt:
        """The open attempt, as a handle: the walk holds none open after this, so
        ``next()`` or ``hedge()`` may open another while this one runs (hedging.py)."""
        a = Attempt(self)
        self.token = 0
        self.reservation = None
        return a

    def attach(self, a: Attempt) -> None:
        """Makes ``a`` the walk's open attempt again, and its place on the route the
        walk's: what follows books its outcome (``failed``, ``succeeded``, ``lost``,
        ``spare``, ``drop``) as for a plain attempt."""
        self.model, self.token, self.reservation = a.model, a.token, a.reservation
        self.i, self.attempt, self.tried, self.refused = a.i, a.attempt, a.tried, a.refused

    def hedge(self, after: Attempt) -> Attempt | None:
        """Opens a hedge of ``after`` (still running): the same request on the next
        deployment of its model that would admit, else on the next model of the route
        (a fallback); None when there is none (the walk's place is ``after``'s then).
        The hedge is no retry: it is the first attempt at its place."""
        self.attach(after)
        self.token, self.reservation = 0, None  # ``after`` stays open, in its handle
        model = self.model
        group = model.group
        sibling = group is not None and group.picker.pick(0, self.refused | model.bit) >= 0
        if not sibling and self.i + 1 >= len(self.plan):
            return None
        if not retry_budget.withdraw(self.m):
            return None  # an extra upstream call, like a retry: the budget has no room
        fallbacks = self.fallbacks
        if sibling:
            self.refused |= model.bit  # the running deployment is not picked again
            self.attempt = 0
        else:
            self._move_on()
        if self.next() is None:
            self.attach(after)
            self.token, self.reservation = 0, None
            self.fallbacks = fallbacks  # no hedge opened: no move was made
            return None
        a = self.detach()
        a.hedge = True
        a.model.stats.record_hedge()
        return a

    def lost(self, exc: Exception) -> None:
        """Books the failure of the open attempt while another attempt of the request
        still runs: the model's failure (breaker, counters) as ``failed`` books it, and
        no retry or move: the walk goes on with the others."""
        model, token = self.model, self.token
        self.token = 0
        self.errors.append((model.name, exc))
        late = isinstance(exc, TimeoutError) and self.past()
        if late or isinstance(exc, WorkersBusyError):
            # Cut at the deadline, or never started: not the model's failure.
            self.cut(model, token)
            if late:
                self.expired = True
            return
        # failed()'s booking, written again rather than shared: there it is inline on the
        # fallback path, where a helper call would cost every failed attempt.
        opened = model.core.failure(token)
        for o in model.observers:
            o.observe(model, False)
        if self.reservation is not None:
            ratelimit.ended(model, self.reservation, False, None, exc)
            self.reservation = None
        if self.kwargs:
            _secrets.remember_from(self.kwargs)
        self._log_failure(exc, opened)

    def spare(self, record: Record) -> None:
        """Books a success that lost the race (another attempt answered first): the
        model's (latency, tokens, breaker success), not the request's."""
        model = self.model
        model.core.success(self.token, record.prompt_tokens, record.completion_tokens)
        self.token = 0
        for o in model.observers:
            o.observe(model, True)
        if self.reservation is not None:
            ratelimit.ended(model, self.reservation, True, record)
            self.reservation = None

    def drop(self) -> None:
        """The open attempt ends without an outcome (a hedge's loser, cancelled): its
        permit and reservation go back, ``cancelled`` +1 for its model, no failure."""
        if self.token:
            token, self.token = self.token, 0
            self.cut(self.model, token)

    # ------------------------------------------------------------------ helpers

    def _move_on(self) -> None:
        self.i += 1
        self.attempt = 0
        self.tried = self.refused = 0
        if self.i < len(self.plan):
            self.fallbacks += 1

    def _release(self) -> None:
        # The open attempt's reservation goes back whole: no call was made, or it ended
        # without an outcome.
        r = self.reservation
        if r is not None:
            self.reservation = None
            self.model.limiter.release(r)

    def _unavailable(self, group: Group) -> None:
        # No deployment of the model would admit: skipped like an open breaker.
        first = group.members[0]
        err = group.unavailable()
        if type(err) is CircuitBreakerOpenError:
            first.stats.record_short_circuit()
        self.errors.append((first.name, err))
        logger.debug("skipping %r: no deployment would admit", first.name)
        self._move_on()

    def _short_circuit(self) -> None:
        # ModelCore.begin() has counted the short-circuit.
        model = self.model
        err = CircuitBreakerOpenError(model.name, model.core.breaker.retry_after())
        self.errors.append((model.name, err))
        logger.debug("skipping %r: circuit breaker open", model.name)
        self.i += 1  # _move_on(), inline: the open-breaker skip is a hot failure path
        self.attempt = 0  # (the masks are 0: a model with deployments never comes here)
        if self.i < len(self.plan):
            self.fallbacks += 1

    def _log_failure(self, exc: BaseException, opened: bool) -> None:
        # A failed attempt is routine (it is retried or falls back): INFO, so the default
        # WARNING level pays nothing for it. A breaker opening is worth a WARNING.
        model = self.model
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "model %r failed attempt %d/%d: %s",
                model.name,
                self.attempt,
                self.m.max_retries,
                describe(exc),
            )
        if opened and logger.isEnabledFor(logging.WARNING):
            logger.warning("circuit breaker for %r opened", model.name)


__all__ = ["Attempt", "Walk"]
