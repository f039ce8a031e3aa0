"""The event hook: typed events of each request, attempt, fallback and breaker move, for
whoever subscribes (``LLMManager.subscribe``); the OpenTelemetry layer (otel.py) is one
such subscriber.

Nothing is paid without a subscriber: no event is built, the drivers run the plain
:class:`~.walk.Walk`, and a first try is made inline as always. The first subscriber
installs the observed paths on that manager alone: its request methods become wrappers
that time the request and say how it ended, every model is watched (``Model.watch``: each
attempt goes through the walk) and the walk is an :class:`ObservedWalk`, which tells each
step as it books it. The last one to leave takes them away again.

Where a callback runs: on the thread, or the event loop, that runs the request, at the
moment the step happens: a sync request on its caller's thread, an ``agenerate`` inside
its task (so ``contextvars``, e.g. OpenTelemetry's current span, are the request's), a
stream inside the ``next()`` that made the step. It should be quick: a slow callback slows
that request (and, under asyncio, its loop). One that raises never fails the request: the
error is logged (a WARNING the first time for each callback, then DEBUG) and the other
callbacks still run. A breaker moved by time (open to half-open) or by the fleet (another
process opened it) is told at the next attempt that sees it.

A request that was already running when the first callback subscribed is not told.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeAlias

from .deadline import Timed
from .walk import Attempt, Walk
from .workers import WorkersBusyError

if TYPE_CHECKING:
    from .._native import Record
    from .errors import AllModelsFailedError, DeadlineExceededError, StreamInterruptedError
    from .manager import LLMManager
    from .models import Model

logger = logging.getLogger("agenticaiframework.llms")

# ------------------------------------------------------------------------------ the events


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """A request began (``operation``: generate, agenerate, stream or astream; the
    ``*_response`` methods are generate and agenerate). ``route``: the models it may try,
    in order. ``prompt`` and ``kwargs``: the request's own (not copies; ``kwargs`` holds
    whatever the caller passed, secrets included: never show it whole)."""

    request_id: int
    operation: str
    route: tuple[str, ...]
    prompt: str | None = None
    kwargs: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """A call to ``model`` is about to be made: its ``attempt``-th in this request (1 is
    the first), ``position`` in the route (0: the active model)."""

    request_id: int
    model: str
    attempt: int
    position: int
    deployment: str | None = None  # which of the model's deployments (add_deployment)


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """That call ended. ``outcome``: success, failure, or cancelled (abandoned, or never
    started: its model's workers were all busy). ``latency``: seconds since
    :class:`AttemptStarted`. ``error_type``: the exception's class name on a failure.
    On a success, ``text``: the answer, and ``usage_estimated``: whether the token counts
    are the library's estimate (the model reported none)."""

    request_id: int
    model: str
    attempt: int
    position: int
    outcome: str
    latency: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_type: str | None = None
    text: str | None = None
    usage_estimated: bool = False
    deployment: str | None = None


@dataclass(frozen=True, slots=True)
class FallbackTaken:
    """The request moves from ``from_model`` to the next model of its route, ``to_model``.
    ``reason``: why ``from_model`` was left (the last error's class name, e.g.
    CircuitBreakerOpenError when it was skipped)."""

    request_id: int
    from_model: str
    to_model: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class BreakerStateChanged:
    """A model's breaker moved (states: closed, open, half-open), as seen by a request of
    this manager (``request_id``); ``deployment``: whose, for a model with several."""

    request_id: int
    model: str
    from_state: str
    to_state: str
    deployment: str | None = None


@dataclass(frozen=True, slots=True)
class StreamFirstChunk:
    """A stream's first text chunk came from ``model``, ``time_to_first_chunk`` seconds
    after its attempt started."""

    request_id: int
    model: str
    time_to_first_chunk: float


@dataclass(frozen=True, slots=True)
class RequestEnded:
    """The request ended. ``outcome``: success, failure or cancelled. ``tier``: what
    answered: ``l1`` (this process's cache), ``l2`` (the fleet's), ``model``, or None
    when nothing did. ``coalesced``: the answer was another request's (single-flight).
    ``model``: the model whose answer it is, when known. ``latency``: seconds.
    ``attempts``, ``retries``, ``fallbacks``: this request's own (0 when it walked no
    route). ``error_type``: the class name of what it raised. ``text``: the answer, when
    known (a stream served from the cache does not say it)."""

    request_id: int
    operation: str
    outcome: str
    tier: str | None
    coalesced: bool
    model: str | None
    latency: float
    attempts: int = 0
    retries: int = 0
    fallbacks: int = 0
    error_type: str | None = None
    text: str | None = None


Event: TypeAlias = (
    RequestStarted
    | AttemptStarted
    | AttemptEnded
    | FallbackTaken
    | BreakerStateChanged
    | StreamFirstChunk
    | RequestEnded
)
Callback: TypeAlias = Callable[[Event], object]

# ------------------------------------------------------------------------------ the hub


class Hub:
    """A manager's subscribers, and what the observed paths need of it."""

    __slots__ = ("_lock", "_warned", "callbacks", "states")

    def __init__(self) -> None:
        self.callbacks: tuple[Callback, ...] = ()
        self.states: dict[str, str] = {}  # model -> breaker state last told
        self._warned: set[int] = set()
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        for cb in self.callbacks:
            try:
                cb(event)
            except Exception:
                # The subscriber's problem: the request goes on, the others are told.
                first = id(cb) not in self._warned
                self._warned.add(id(cb))
                logger.log(
                    logging.WARNING if first else logging.DEBUG,
                    "event subscriber %r raised on %s (the request goes on)",
                    cb,
                    type(event).__name__,
                    exc_info=True,
                )

    def breaker_seen(self, request_id: int, model: Model) -> None:
        """Tells a breaker move since the last one told (one dict read when none)."""
        now = model.core.breaker.state
        key = model.key
        before = self.states.get(key)
        if before == now:
            return
        with self._lock:
            before = self.states.get(key)
            if before == now:
                return
            self.states[key] = now
        if before is not None:
            self.emit(BreakerStateChanged(request_id, model.name, before, now, model.deployment))
        elif now != "closed":  # first seen (a deployment added since): told from closed
            self.emit(BreakerStateChanged(request_id, model.name, "closed", now, model.deployment))


class Subscription:
    """What :meth:`LLMManager.subscribe` returns: ``unsubscribe()`` (or leave a ``with``
    block) to stop the callback; idempotent."""

    __slots__ = ("_callback", "_manager")

    def __init__(self, manager: LLMManager, callback: Callback) -> None:
        self._manager: LLMManager | None = manager
        self._callback = callback

    def unsubscribe(self) -> None:
        m, self._manager = self._manager, None
        if m is not None:
            m._unsubscribe(self._callback)

    @property
    def active(self) -> bool:
        return self._manager is not None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        return f"<Subscription {'active' if self.active else 'ended'} {self._callback!r}>"


# ------------------------------------------------------------------------------ a trace

_ids = itertools.count(1)


class Trace:
    """One observed request's facts, filled in as it goes (by the walk and the drivers)."""

    __slots__ = (
        "attempts",
        "coalesced",
        "fallbacks",
        "hub",
        "model",
        "operation",
        "request_id",
        "retries",
        "t0",
        "text",
        "tier",
    )

    def __init__(self, hub: Hub, operation: str) -> None:
        self.hub = hub
        self.operation = operation
        self.request_id = next(_ids)
        self.tier: str | None = None
        self.coalesced = False
        self.model: str | None = None
        self.attempts = self.retries = self.fallbacks = 0
        self.text: str | None = None
        self.t0 = perf_counter()

    def start(
        self,
        route: tuple[str, ...],
        prompt: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.hub.emit(RequestStarted(self.request_id, self.operation, route, prompt, kwargs))

    def end(self, exc: BaseException | None, out: object = None) -> None:
        text = self.text
        if exc is None:
            outcome, tier, error = "success", self.tier or "l1", None
            if out is not None:  # a str, or a response object with its text
                t = out if isinstance(out, str) else getattr(out, "text", None)
                text = t if isinstance(t, str) else text
        else:
            outcome = "failure" if isinstance(exc, Exception) else "cancelled"
            tier, error, text = None, type(exc).__name__, None
        self.hub.emit(
            RequestEnded(
                self.request_id,
                self.operation,
                outcome,
                tier,
                self.coalesced,
                self.model,
                perf_counter() - self.t0,
                self.attempts,
                self.retries,
                self.fallbacks,
                error,
                text,
            )
        )


# The observed request running in this context (thread, task, or a stream's next()).
CURRENT: ContextVar[Trace | None] = ContextVar("agenticai_trace", default=None)


def answered_by(tier: str, record: Record | None = None, coalesced: bool = False) -> None:
    """Told by a driver when something other than the walk answered (l2, or a twin's
    answer): called only when the manager has subscribers."""
    t = CURRENT.get()
    if t is not None:
        t.tier = tier
        t.coalesced = t.coalesced or coalesced
        if record is not None:
            t.model, t.text = record.model, record.text


# ------------------------------------------------------------------------------ the walk


class ObservedWalk(Walk):
    """The walk, telling each step it books (only while the manager has subscribers)."""

    __slots__ = ("t_attempt", "trace")

    def __init__(
        self,
        m: LLMManager,
        plan: tuple[Model, ...],
        kwargs: dict[str, Any],
        first: int = -1,
        prompt: str = "",
        dl: tuple[float, float] | None = None,
    ) -> None:
        trace = CURRENT.get()
        if trace is None or trace.hub is not m._hub:
            trace = Trace(m._hub or Hub(), "walk")  # not started by a wrapper: told alone
        self.trace = trace
        self.t_attempt = perf_counter()
        super().__init__(m, plan, kwargs, first, prompt, dl)

    def _done(self, model: Model, rec: Any = None) -> None:
        t = self.trace
        t.tier, t.model = "model", model.name
        if rec is not None:
            t.text = rec.text
        t.attempts, t.retries, t.fallbacks = self.attempts, self.retries, self.fallbacks

    def _ended(self, model: Model, outcome: str, exc: BaseException | None, rec: Any) -> None:
        t = self.trace
        hub = t.hub
        hub.emit(
            AttemptEnded(
                t.request_id,
                model.name,
                self.attempt,
                self.i,
                outcome,
                perf_counter() - self.t_attempt,
                rec.prompt_tokens if rec is not None else 0,
                rec.completion_tokens if rec is not None else 0,
                type(exc).__name__ if exc is not None else None,
                rec.text if rec is not None else None,
                rec.estimated if rec is not None else False,
                model.deployment,
            )
        )
        hub.breaker_seen(t.request_id, model)

    def next(self) -> Model | None:
        plan = self.plan
        if self.i < len(plan):
            self.trace.hub.breaker_seen(self.trace.request_id, plan[self.i])
        model = super().next()
        t = self.trace
        t.attempts, t.retries, t.fallbacks = self.attempts, self.retries, self.fallbacks
        if model is not None:
            t.hub.breaker_seen(t.request_id, model)
            self.t_attempt = perf_counter()
            t.hub.emit(
                AttemptStarted(t.request_id, model.name, self.attempt, self.i, model.deployment)
            )
        return model

    def failed(self, exc: Exception) -> float | None:
        if isinstance(exc, WorkersBusyError):  # never started: told before it moves on
            self._ended(self.model, "cancelled", exc, None)
        return super().failed(exc)

    def _log_failure(self, exc: BaseException, opened: bool) -> None:
        # Walk.failed() and broken() call this once the failure is booked and before
        # anything moves on: the attempt's end is told here, before any fallback.
        super()._log_failure(exc, opened)
        self._ended(self.model, "failure", exc, None)

    def first_chunk(self) -> None:
        super().first_chunk()
        t = self.trace
        ttfc = perf_counter() - self.t_attempt
        t.hub.emit(StreamFirstChunk(t.request_id, self.model.name, ttfc))

    def succeeded(self, record: Record) -> Record:
        model = self.model
        rec = super().succeeded(record)
        self._ended(model, "success", None, rec)
        self._done(model, rec)
        return rec

    def answered(self, prompt: str, text: str) -> Record:
        model = self.model
        rec = super().answered(prompt, text)
        self._ended(model, "success", None, rec)
        self._done(model, rec)
        return rec

    def broken(self, exc: Exception, parts: list[str]) -> StreamInterruptedError:
        model = self.model
        err = super().broken(exc, parts)
        self._done(model)
        self.trace.tier = None
        return err

    def exhausted(self) -> AllModelsFailedError | DeadlineExceededError:
        err = super().exhausted()
        t = self.trace
        t.attempts, t.retries, t.fallbacks = self.attempts, self.retries, self.fallbacks
        return err

    def abandon(self) -> None:
        model, open_attempt = self.model, bool(self.token)
        super().abandon()
        if open_attempt:
            self._ended(model, "cancelled", None, None)

    # Hedged attempts (hedging.py): each handle keeps its start; each ending is told.

    def detach(self) -> Attempt:
        a = super().detach()
        a.t = self.t_attempt
        return a

    def attach(self, a: Attempt) -> None:
        super().attach(a)
        self.t_attempt = a.t

    def lost(self, exc: Exception) -> None:
        if isinstance(exc, WorkersBusyError):  # as failed() tells it
            self._ended(self.model, "cancelled", exc, None)
        super().lost(exc)

    def spare(self, record: Record) -> None:
        model = self.model
        super().spare(record)
        self._ended(model, "success", None, record)

    def drop(self) -> None:
        model, open_attempt = self.model, bool(self.token)
        super().drop()
        if open_attempt:
            self._ended(model, "cancelled", None, None)

    def _move_on(self) -> None:
        left = self.plan[self.i]
        super()._move_on()
        self._told_move(left)

    def _short_circuit(self) -> None:
        left = self.model
        super()._short_circuit()
        self._told_move(left)

    def _told_move(self, left: Model) -> None:
        if self.i < len(self.plan):
            t = self.trace
            reason = type(self.errors[-1][1]).__name__ if self.errors else None
            t.hub.emit(FallbackTaken(t.request_id, left.name, self.plan[self.i].name, reason))


class ObservedTimed(Timed, ObservedWalk):
    """The walk of a request with a deadline, telling each step it books."""

    __slots__ = ()


# ------------------------------------------------------------------------------ wrappers


# The request methods a manager with subscribers has of its own (observed_methods).
OBSERVED = ("generate", "generate_response", "agenerate", "agenerate_response", "stream", "astream")


def observed_methods(m: LLMManager, hub: Hub) -> dict[str, Callable[..., Any]]:
    """The request methods of a manager with subscribers: each runs the manager's own
    method inside a :class:`Trace` and tells how it started and ended."""
    cls = type(m)
    default = m._settings.default_deadline  # what the plain methods' partials carried

    def generate(prompt: Any, use_cache: Any = True, **kwargs: Any) -> str:
        if default is not None:
            kwargs.setdefault("deadline", default)
        text: str = traced(m, hub, "generate", cls.generate, prompt, use_cache, kwargs)
        return text

    def generate_response(prompt: Any, use_cache: Any = True, **kwargs: Any) -> Any:
        if default is not None:
            kwargs.setdefault("deadline", default)
        return traced(m, hub, "generate", cls.generate_response, prompt, use_cache, kwargs)

    async def agenerate(prompt: Any, use_cache: Any = True, **kwargs: Any) -> str:
        if default is not None:
            kwargs.setdefault("deadline", default)
        text: str = await atraced(m, hub, "agenerate", cls.agenerate, prompt, use_cache, kwargs)
        return text

    async def agenerate_response(prompt: Any, use_cache: Any = True, **kwargs: Any) -> Any:
        if default is not None:
            kwargs.setdefault("deadline", default)
        return await atraced(m, hub, "agenerate", cls.agenerate_response, prompt, use_cache, kwargs)

    def stream(prompt: Any, use_cache: Any = True, **kwargs: Any) -> Iterator[str]:
        if default is not None:
            kwargs.setdefault("deadline", default)
        inner = cls.stream(m, prompt, use_cache, **kwargs)  # checks the prompt now
        return traced_stream(m, hub, inner, prompt, kwargs)

    def astream(prompt: Any, use_cache: Any = True, **kwargs: Any) -> AsyncIterator[str]:
        if default is not None:
            kwargs.setdefault("deadline", default)
        inner = cls.astream(m, prompt, use_cache, **kwargs)
        return atraced_stream(m, hub, inner, prompt, kwargs)

    for f, orig in (
        (generate, cls.generate),
        (generate_response, cls.generate_response),
        (agenerate, cls.agenerate),
        (agenerate_response, cls.agenerate_response),
        (stream, cls.stream),
        (astream, cls.astream),
    ):
        f.__doc__ = orig.__doc__
    return {
        "generate": generate,
        "generate_response": generate_response,
        "agenerate": agenerate,
        "agenerate_response": agenerate_response,
        "stream": stream,
        "astream": astream,
    }


def traced(
    m: LLMManager,
    hub: Hub,
    op: str,
    fn: Callable[..., Any],
    prompt: Any,
    use_cache: Any,
    kwargs: dict[str, Any],
) -> Any:
    t = Trace(hub, op)
    t.start(m._route_names, prompt, kwargs)
    token = CURRENT.set(t)
    try:
        out = fn(m, prompt, use_cache, **kwargs)
    except BaseException as exc:
        t.end(exc)
        raise
    finally:
        CURRENT.reset(token)
    t.end(None, out)
    return out


async def atraced(
    m: LLMManager,
    hub: Hub,
    op: str,
    fn: Callable[..., Any],
    prompt: Any,
    use_cache: Any,
    kwargs: dict[str, Any],
) -> Any:
    t = Trace(hub, op)
    t.start(m._route_names, prompt, kwargs)
    token = CURRENT.set(t)
    try:
        out = await fn(m, prompt, use_cache, **kwargs)
    except BaseException as exc:
        t.end(exc)
        raise
    finally:
        CURRENT.reset(token)
    t.end(None, out)
    return out


def traced_stream(
    m: LLMManager, hub: Hub, inner: Iterator[str], prompt: str, kwargs: dict[str, Any]
) -> Iterator[str]:
    # Started at the first next(), as the stream itself is; the trace is current only
    # inside each next(), since the consumer's context between chunks is its own.
    t = Trace(hub, "stream")
    t.start(m._route_names, prompt, kwargs)
    try:
        while True:
            token = CURRENT.set(t)
            try:
                chunk = next(inner)
            except StopIteration:
                break
            finally:
                CURRENT.reset(token)
            yield chunk
    except BaseException as exc:
        close = getattr(inner, "close", None)
        if close is not None:
            close()
        t.end(exc)
        raise
    t.end(None)


async def atraced_stream(
    m: LLMManager, hub: Hub, inner: AsyncIterator[str], prompt: str, kwargs: dict[str, Any]
) -> AsyncIterator[str]:
    t = Trace(hub, "astream")
    t.start(m._route_names, prompt, kwargs)
    try:
        while True:
            token = CURRENT.set(t)
            try:
                chunk = await inner.__anext__()
            except StopAsyncIteration:
                break
            finally:
                CURRENT.reset(token)
            yield chunk
    except BaseException as exc:
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()
        t.end(exc)
        raise
    t.end(None)


__all__ = [
    "AttemptEnded",
    "AttemptStarted",
    "BreakerStateChanged",
    "Callback",
    "Event",
    "FallbackTaken",
    "RequestEnded",
    "RequestStarted",
    "StreamFirstChunk",
    "Subscription",
]
