"""Where sync and async meet: the event loops that run async models under ``generate()``,
and the worker pools that run sync models under ``agenerate()``.

Sync models run on pools the library owns, one per model, not on asyncio's default
executor: a hung call then fills only its own model's pool (healthy models never queue
behind it), the threads are daemons (``asyncio.run()`` and interpreter exit never wait for
a hung call), and the time a call waits for a free worker is neither the model's latency
nor its failure. A forked child starts with empty pools and fresh loops.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from . import _fork
from ._compat import wait_for
from .errors import LLMError

DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor size


class WorkersBusyError(LLMError):
    """Every worker of a sync model's pool stayed busy (hung or slow calls) for the whole
    attempt timeout: the call was never started. Not the model's failure: its breaker
    and failure counts do not move, and the next model is tried."""

    def __init__(self, model: str, workers: int) -> None:
        super().__init__(f"all {workers} sync workers of model {model!r} are busy")
        self.model = model
        self.workers = workers


# ------------------------------------------------------------------ loops under generate()


class _ThreadLoop:
    """This thread's event loop for async models called from sync code. Closed when the
    thread ends (its thread-local is freed), never in a forked child: there it is only
    dropped, since closing would unregister the self-pipe from the epoll instance the
    child shares with the parent."""

    __slots__ = ("generation", "loop")

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.generation = _fork.generation

    def __del__(self) -> None:
        try:
            if self.generation == _fork.generation and not self.loop.is_closed():
                self.loop.close()
        except Exception:  # the thread (or the interpreter) is ending: nothing to do
            pass


_thread_loops = threading.local()
# A forked child's inherited loops, kept for ever so they are never closed (see above).
_inherited: list[_ThreadLoop] = []


def run_blocking(coro: Awaitable[Any]) -> Any:
    """Runs an async inference function from sync generate(), on this thread's own loop."""
    held: _ThreadLoop | None = getattr(_thread_loops, "held", None)
    if held is None or held.generation != _fork.generation or held.loop.is_closed():
        if held is not None and held.generation != _fork.generation:
            _inherited.append(held)
        held = _ThreadLoop()
        _thread_loops.held = held
    return held.loop.run_until_complete(coro)


# ------------------------------------------------------------ pools under agenerate()


class _Job:
    __slots__ = ("args", "context", "done", "fn", "loop", "started", "state")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.done = done
        self.context = contextvars.copy_context()  # as asyncio.to_thread carries it
        self.started: asyncio.Future[None] | None = None  # made only when the job queues
        self.state = 0  # 0 queued, 1 running, 2 abandoned before it started


def _set(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return  # the awaiting side gave up (timeout, cancellation)
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class SyncPool:
    """At most ``size`` daemon threads running one model's sync calls. Threads start when
    work needs them and then stay, parked; a job waits in order for a free one."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        self._threads = 0
        self._idle = 0
        self._running = 0
        _fork.register(self)

    def _after_fork(self) -> None:
        # The workers do not exist here; the jobs they held belong to the parent's loops.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue = deque()
        self._threads = self._idle = self._running = 0

    @property
    def busy(self) -> int:
        """Workers running a call now (hung ones included)."""
        with self._lock:
            return self._running

    async def run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        limit: float | None,
        on_start: Callable[[], None] | None = None,
    ) -> Any:
        """``fn(*args)`` on a worker. ``limit`` bounds the wait for a free worker
        (:class:`WorkersBusyError` past it) and, separately, the call itself
        (``TimeoutError``; the worker stays with the call until it returns).
        ``on_start`` runs on this loop when a queued job gets its worker."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, loop, loop.create_future())
        with self._lock:
            if self._idle > len(self._queue):
                self._ready.notify()
            elif self._threads < self.size:
                self._spawn()
            else:
                job.started = loop.create_future()
            self._queue.append(job)
        if job.started is not None:
            await self._wait_start(job, limit)
            if on_start is not None:
                on_start()
        if limit is None:
            return await job.done
        return await wait_for(job.done, limit)

    async def _wait_start(self, job: _Job, limit: float | None) -> None:
        assert job.started is not None
        try:
            if limit is None:
                await job.started
            else:
                await wait_for(asyncio.shield(job.started), limit)
        except BaseException as exc:
            with self._lock:
                if job.state == 0:
                    job.state = 2  # never started: the worker that pops it skips it
                    if isinstance(exc, TimeoutError):
                        raise WorkersBusyError(self.name, self.size) from None
                    raise
            if not isinstance(exc, TimeoutError):
                raise
            # Started just as the wait ran out: it is running, so wait for it as usual.

    def _spawn(self) -> None:
        self._threads += 1
        t = threading.Thread(target=self._work, name=f"agenticai-sync-{self.name}", daemon=True)
        t.start()

    def _work(self) -> None:
        lock, ready = self._lock, self._ready
        while True:
            with lock:
                while not self._queue:
                    self._idle += 1
                    ready.wait()
                    self._idle -= 1
                job = self._queue.popleft()
                if job.state == 2:
                    continue
                job.state = 1
                self._running += 1
            result: Any = None
            ok = False
            try:
                if job.started is not None:
                    job.loop.call_soon_threadsafe(_set, job.started, True, None)
                try:
                    result, ok = job.context.run(job.fn, *job.args), True
                except BaseException as exc:  # delivered to the awaiting side
                    result = exc
            except RuntimeError:
                job.state = 2  # that loop is closed: nobody awaits this job any more
            with lock:
                self._running -= 1  # before the awaiting side hears of it
            if job.state == 1:
                try:
                    job.loop.call_soon_threadsafe(_set, job.done, ok, result)
                except RuntimeError:
                    pass
            del job, result


__all__ = ["DEFAULT_WORKERS", "SyncPool", "WorkersBusyError", "run_blocking"]
