"""Single-flight: concurrent identical requests share one upstream call.

A flight is keyed by the request's cache key. The first caller leads (does the work); the
others, threads or asyncio tasks in any event loop, wait for its outcome and get the same
result or the same exception. The registry's lock guards only dicts and lists: it is never
held while user code, a wait or a wake-up runs.

Waiters are woken in their own terms: a threading.Event for a thread (created only when a
thread waits), an asyncio future resolved on the waiter's own loop for a task (directly
when the work finishes on that loop, through ``call_soon_threadsafe`` otherwise).

If the leader dies with a BaseException (KeyboardInterrupt in its thread, a cancelled
shared task), its waiters are told with :class:`LeaderAborted` and try again, one of them
as the new leader: a follower's wait never outlives the leader's outcome.
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar, Token
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Keys this context is computing as a leader: a re-entrant call for the same key (an
# inference function that calls the manager again) must not wait on itself.
_leading: ContextVar[frozenset[bytes]] = ContextVar("agenticai_leading", default=frozenset())


class LeaderAborted(Exception):
    """The leader ended without an outcome; followers should try again."""


class Flight(Generic[T]):
    __slots__ = ("done", "error", "event", "loop", "result", "task", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.event: threading.Event | None = None
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        # The loop whose task does the work (None: a thread does). A sync follower on that
        # loop's own thread must not block it.
        self.loop = loop
        # A strong reference: asyncio keeps only weak ones to running tasks.
        self.task: asyncio.Task[None] | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SingleFlight(Generic[T]):
    """The registry of flights in progress, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[bytes, Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(
        self, key: bytes, loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[Flight[T], bool]:
        """The flight for ``key`` and whether the caller leads it (it must then finish it)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = Flight(loop)
            self._flights[key] = flight
            return flight, True

    def finish(
        self,
        key: bytes,
        flight: Flight[T],
        result: T | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Records the outcome, retires the flight, then wakes its waiters."""
        with self._lock:
            flight.result, flight.error, flight.done = result, error, True
            if self._flights.get(key) is flight:
                del self._flights[key]
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

    def wait(self, flight: Flight[T]) -> T:
        """Blocks this thread until the flight's outcome, then returns or raises it."""
        with self._lock:
            if not flight.done and flight.event is None:
                flight.event = threading.Event()
            event = flight.event
        if event is not None:
            event.wait()
        return flight.outcome()

    async def wait_async(self, flight: Flight[T]) -> T:
        """Awaits the flight's outcome from any loop. Cancelling the waiter never cancels
        the shared work."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if flight.done:
                fut = None
            else:
                fut = loop.create_future()
                flight.waiters.append((loop, fut))
        if fut is not None:
            await fut
        return flight.outcome()


def leading(key: bytes) -> bool:
    """Whether this context is already leading ``key`` (a re-entrant call)."""
    return key in _leading.get()


def lead(key: bytes) -> Token[frozenset[bytes]]:
    """Marks ``key`` as led by this context; pass the token to :func:`unlead`."""
    return _leading.set(_leading.get() | {key})


def unlead(token: Token[frozenset[bytes]]) -> None:
    _leading.reset(token)


def blocks_own_loop(flight: Flight[Any]) -> bool:
    """Whether a blocking wait here would stall the loop that does the flight's work."""
    if flight.loop is None:
        return False
    try:
        return asyncio.get_running_loop() is flight.loop
    except RuntimeError:
        return False
