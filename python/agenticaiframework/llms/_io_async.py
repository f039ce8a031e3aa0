"""The I/O of the async drivers: what ``_drive_async.py`` awaits. Its sync twin,
``_io_sync.py``, has the same names; the drivers are otherwise one text (see
``scripts/unasync.py``)."""

from __future__ import annotations

import asyncio
import inspect
from asyncio.events import _get_running_loop
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._compat import wait_for
from ._io_sync import close_quietly as close_sync
from .singleflight import Flight
from .workers import SyncPool

if TYPE_CHECKING:
    from .manager import LLMManager
    from .models import Model
    from .walk import Walk

T = TypeVar("T")


async def call(
    m: LLMManager,
    model: Model,
    prompt: str,
    kwargs: dict[str, Any],
    timeout: float | None,
    walk: Walk | None,
) -> Any:
    """One attempt. A sync model runs on its own pool; if the call waited for a worker,
    the walk's attempt restarts when it gets one (the wait is not the model's latency)."""
    limit = model.timeout if timeout is None else timeout
    if not model.is_async:
        started = None if walk is None else walk.restart
        return await model.sync_pool().run(model.fn, (prompt, kwargs), limit, started)
    coro = model.fn(prompt, kwargs)
    return await (coro if limit is None else wait_for(coro, limit))


async def sleep(m: LLMManager, seconds: float) -> None:
    await m._async_sleep(seconds)


END = object()  # what pull() gives at the end of a stream


async def pull(m: LLMManager, it: AsyncIterator[Any], ends: float | None) -> Any:
    """A stream's next item, or END; ``TimeoutError`` when none comes before ``ends``
    (the stream's deadline, on the manager's clock)."""
    try:
        if ends is None:
            return await it.__anext__()
        return await wait_for(it.__anext__(), max(ends - m._clock(), 1e-6))
    except StopAsyncIteration:
        return END


async def bounded(opening: Awaitable[T], limit: float | None) -> T:
    """Opening a stream (up to its first chunk) within the attempt's timeout."""
    return await (opening if limit is None else wait_for(opening, limit))


def items(model: Model, prompt: str, kw: dict[str, Any]) -> AsyncIterator[Any] | None:
    """The model's stream: its ``astream``, else its sync ``stream`` pulled through its
    worker pool; None for a model that answers in one piece."""
    opener = getattr(model.fn, "astream", None)
    if callable(opener):
        it: AsyncIterator[Any] = opener(prompt, kw).__aiter__()
        return it
    sync_opener = getattr(model.fn, "stream", None)
    if callable(sync_opener):
        return _pulled(model.sync_pool(), sync_opener, prompt, kw)
    return None


_END = object()


async def _pulled(
    pool: SyncPool, opener: Callable[..., Any], prompt: str, kw: dict[str, Any]
) -> AsyncIterator[Any]:
    it = await pool.run(lambda: iter(opener(prompt, kw)), (), None)
    try:
        while (item := await pool.run(next, (it, _END), None)) is not _END:
            yield item
    finally:
        close_sync(it)


async def nothing() -> AsyncIterator[Any]:
    return
    yield  # an async generator that yields nothing


async def close_quietly(it: object) -> None:
    """Closes a stream that is done with or abandoned (an async generator's ``aclose``,
    an SDK stream's ``close``, awaited if it is a coroutine); its own error cannot matter
    then."""
    close = getattr(it, "aclose", None) or getattr(it, "close", None)
    if close is not None:
        try:
            done = close()
            if inspect.isawaitable(done):
                await done
        except Exception:
            pass


def current_loop(m: LLMManager) -> asyncio.AbstractEventLoop:
    # asyncio's C getter first: the manager's method (a frame and a try) only for the error.
    loop = _get_running_loop()
    return m._running_loop() if loop is None else loop


def own_call_needed(flight: Flight[Any]) -> bool:
    """A task can always wait for a flight without blocking its leader."""
    return False
