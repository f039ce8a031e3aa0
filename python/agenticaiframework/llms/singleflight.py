"""Single-flight: concurrent identical requests share one upstream call.

A flight is a ``concurrent.futures.Future`` keyed by the request's cache key. The first
caller leads (runs the route); everyone else, thread or asyncio task, in any event loop,
waits on the same future and gets the same result or the same exception. The registry's
lock guards a dict and is never held while user code, a wait or a callback runs.

If the leader dies with a BaseException (KeyboardInterrupt in its thread, a cancelled
shared task), its followers are woken with :class:`LeaderAborted` and try again, one of
them as the new leader: a follower's wait never outlives the leader's outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Keys this context is computing as a leader: a re-entrant call for the same key (an
# inference function that calls the manager again) must not wait on itself.
_leading: ContextVar[frozenset[bytes]] = ContextVar("agenticai_leading", default=frozenset())


class LeaderAborted(Exception):
    """The leader ended without an outcome; followers should try again."""


class Flight(Generic[T]):
    __slots__ = ("future", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        # The loop whose task does the work (None: a thread does). A sync follower on that
        # loop's own thread must not block it.
        self.loop = loop
        self.task: asyncio.Task[None] | None = None


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
        """Retires the flight, then wakes its followers (outside the lock)."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        if error is None:
            flight.future.set_result(result)  # type: ignore[arg-type]
        else:
            flight.future.set_exception(error)


def leading(key: bytes) -> bool:
    """Whether this context is already leading ``key`` (a re-entrant call)."""
    return key in _leading.get()


def lead(key: bytes) -> Any:
    """Marks ``key`` as led by this context; pass the token to :func:`unlead`."""
    return _leading.set(_leading.get() | {key})


def unlead(token: Any) -> None:
    _leading.reset(token)


def _consume(fut: asyncio.Future[Any]) -> None:
    # A waiter was cancelled: still retrieve the outcome so asyncio does not log it.
    if not fut.cancelled():
        fut.exception()


async def wait_async(flight: Flight[T]) -> T:
    """Awaits the flight from any event loop. Cancelling the waiter never cancels the
    shared work."""
    inner = asyncio.wrap_future(flight.future)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        inner.add_done_callback(_consume)
        raise


def blocks_own_loop(flight: Flight[Any]) -> bool:
    """Whether a blocking wait here would stall the loop that does the flight's work."""
    if flight.loop is None:
        return False
    try:
        return asyncio.get_running_loop() is flight.loop
    except RuntimeError:
        return False
