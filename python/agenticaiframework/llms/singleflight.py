"""Single-flight: concurrent identical requests share one upstream call.

A flight is keyed by the request's cache key. The first caller leads (does the work); the
others, threads or asyncio tasks in any event loop, wait for its outcome and get the same
result or the same exception. The registry's lock guards only dicts and lists: it is never
held while user code, a wait or a wake-up runs.

Waiters are woken in their own terms: a threading.Event for a thread (created only when a
thread waits), an asyncio future resolved on the waiter's own loop for a task (directly
when the work finishes on that loop, through ``call_soon_threadsafe`` otherwise).

If the leader dies with a BaseException (KeyboardInterrupt in its thread, its task
cancelled), its waiters are told with :class:`LeaderAborted` and try again, one of them
as the new leader: a follower's wait never outlives the leader's outcome.
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar
from typing import Any, Generic, TypeAlias, TypeVar

from .._native import FlightTable
from . import _fork
from ._compat import wait_for

T = TypeVar("T")

# Keys this context is computing as a leader: a re-entrant call for the same key (an
# inference function that calls the manager again) must not wait on itself.
# A chain rather than a set, and the key itself when it is the only one: what a leader
# keeps alive while it waits on its model are the context's new mapping, nothing else
# (no tuple, no Token), which the GC of a server holding thousands of requests in flight
# would otherwise walk. The chain is as deep as the re-entrant calls.
_Chain: TypeAlias = "bytes | tuple[bytes, _Chain] | None"
_leading: ContextVar[_Chain] = ContextVar("agenticai_leading", default=None)


class LeaderAborted(Exception):
    """The leader ended without an outcome; followers should try again."""


class Flight(Generic[T]):
    __slots__ = ("done", "error", "event", "loop", "result", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.event: threading.Event | None = None
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        # The loop whose task does the work (None: a thread does). A sync follower on that
        # loop's own thread must not block it.
        self.loop = loop

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# What the registry holds for a flight nobody waits on yet: the leader's loop, or this
# marker for a thread. A Flight object is made only when a first follower arrives, so a
# request with no twin pays for a table slot, not an object the GC must track.
THREAD = object()

# Tables inherited across a fork (see SingleFlight._after_fork): a few entries each.
_FORSAKEN: list[FlightTable] = []


class SingleFlight(Generic[T]):
    """The registry of flights in progress, by key (16 bytes).

    The map from key to flight is native (``FlightTable``: lead-or-find, replace-if-
    unchanged and retire, each one call under a short native lock), so a request that
    leads and retires its flight with no twin takes no Python lock. The lock here guards
    only a Flight's own fields (its outcome, its waiters) between its leader and followers.
    """

    # A thread leader's mark, for the drivers, which lead through the table itself.
    thread = THREAD

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.table = FlightTable()
        _fork.register(self)

    def _after_fork(self) -> None:
        # In a forked child: the leaders of these flights are threads and tasks of the
        # parent, and either lock may have been held by one of them at the fork. The old
        # table is kept, never touched again: without the GIL a parent thread may have
        # been inside it, so even dropping it could read a torn map.
        self._lock = threading.Lock()
        _FORSAKEN.append(self.table)
        self.table = FlightTable()

    def __len__(self) -> int:
        return len(self.table)

    def join(self, key: bytes, loop: asyncio.AbstractEventLoop | None = None) -> Flight[T] | None:
        """None when the caller leads ``key`` (it must then :meth:`finish` it); else the
        flight to wait on. A leader's mark in the table is ``loop``, or THREAD."""
        table = self.table
        mark = THREAD if loop is None else loop
        while True:
            v = table.join(key, mark)
            if v is None:
                return None
            if type(v) is Flight:
                return v
            # The first follower: a flight in place of the leader's mark, unless the
            # leader retired it meanwhile (then look again: lead, or follow a newer one).
            flight: Flight[T] = Flight(None if v is THREAD else v)
            if table.replace(key, v, flight):
                return flight

    def finish(
        self, key: bytes, result: T | None = None, error: BaseException | None = None
    ) -> None:
        """Records the leader's outcome, retires the flight, then wakes its waiters."""
        self.settle(self.table.pop(key), result, error)

    def settle(
        self, flight: Flight[T], result: T | None = None, error: BaseException | None = None
    ) -> None:
        """The rest of :meth:`finish` once the flight is out of the table: its outcome
        recorded, its waiters woken."""
        if type(flight) is not Flight:
            return
        with self._lock:
            flight.result, flight.error, flight.done = result, error, True
            waiters, flight.waiters = flight.waiters, []
            event = flight.event
        if event is not None:
            event.set()
        if not waiters:
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, fut in waiters:
            if loop is here:
                _wake(fut)
            else:
                try:
                    loop.call_soon_threadsafe(_wake, fut)
                except RuntimeError:
                    pass  # that loop is closed: its waiter is gone

    def wait(self, flight: Flight[T], timeout: float | None = None) -> T:
        """Blocks this thread until the flight's outcome, then returns or raises it;
        ``TimeoutError`` after ``timeout`` seconds (the shared call goes on)."""
        with self._lock:
            if not flight.done and flight.event is None:
                flight.event = threading.Event()
            event = flight.event
        if event is not None and not event.wait(timeout):
            raise TimeoutError("gave up waiting for an identical request's answer")
        return flight.outcome()

    async def wait_async(self, flight: Flight[T], timeout: float | None = None) -> T:
        """Awaits the flight's outcome from any loop. Cancelling a waiter never cancels
        the shared work (cancelling the leader does: its waiters then try again), nor
        does its ``timeout`` (``TimeoutError``)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if flight.done:
                fut = None
            else:
                fut = loop.create_future()
                flight.waiters.append((loop, fut))
        if fut is not None:
            await (fut if timeout is None else wait_for(fut, timeout))
        return flight.outcome()


def leading(key: bytes) -> bool:
    """Whether this context is already leading ``key`` (a re-entrant call)."""
    return in_chain(_leading.get(), key)


def in_chain(chain: _Chain, key: bytes) -> bool:
    """Whether ``key`` is in a chain read from the context (see :func:`leading`)."""
    while chain is not None:
        if not isinstance(chain, tuple):
            return chain == key
        if chain[0] == key:
            return True
        chain = chain[1]
    return False


def lead(key: bytes) -> _Chain:
    """Marks ``key`` as led by this context; pass what it returns to :func:`unlead`."""
    prev = _leading.get()
    _leading.set(key if prev is None else (key, prev))
    return prev


def unlead(prev: _Chain) -> None:
    # set, not reset(token): a Token kept for the reset would live as long as the call.
    _leading.set(prev)


def blocks_own_loop(flight: Flight[Any]) -> bool:
    """Whether a blocking wait here would stall the loop that does the flight's work."""
    if flight.loop is None:
        return False
    try:
        return asyncio.get_running_loop() is flight.loop
    except RuntimeError:
        return False
