"""The async driver of hedged requests (hedging.py): ``run()`` of ``_drive_async.py`` with
each attempt raced against its hedges. Async only: sync requests do not hedge.

:func:`race` runs the attempt the walk just opened as an asyncio task, and each hedge the
walk opens (``Walk.hedge``) when the policy's delay passes with no answer (a timer on the
manager's ``async_sleep``, so a fake one drives it in tests). The walk books every
outcome, each attempt by its handle: the first success wins; a failure while another
attempt runs is only booked (``Walk.lost``); a success that lost is booked for its model
(``Walk.spare``); the others are cancelled (their streams closed) and dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._io_async import bounded, call, close_quietly
from ._io_async import sleep as pause
from .models import record_of

if TYPE_CHECKING:
    from .._native import Record
    from ..llms.response import Usage
    from .manager import LLMManager
    from .models import Model
    from .walk import Attempt, Walk

T = TypeVar("T")
Opened = tuple[AsyncIterator[Any], str, "Usage | None"]


async def hedged(m: LLMManager, walk: Walk, prompt: str, timeout: float | None) -> Record:
    """``run()`` with hedges: drives the walk to an answer (or raises its final error)."""
    kwargs = walk.kwargs

    async def attempt(model: Model) -> Record:
        out = await call(m, model, prompt, kwargs, walk.limit(timeout, model), None)
        return record_of(out, prompt, model.name, m.allow_empty)

    try:
        while True:
            model = walk.next()
            if model is None:
                wait = walk.queued()
                if wait is None:
                    raise walk.exhausted()
                await pause(m, wait)
                continue
            try:
                record = await race(m, walk, model, attempt, spare_record)
            except Exception as exc:
                wait = walk.failed(exc)
                if wait is not None:
                    await pause(m, wait)
                continue
            return walk.succeeded(record)
    except BaseException:
        walk.abandon()
        raise


async def spare_record(walk: Walk, record: Record) -> None:
    walk.spare(record)


async def spare_stream(walk: Walk, opened: Opened) -> None:
    # An opened stream that lost: it did not complete, so it is closed and dropped.
    await close_quietly(opened[0])
    walk.drop()


async def hedged_open(
    m: LLMManager,
    walk: Walk,
    model: Model,
    prompt: str,
    kw: dict[str, Any],
    timeout: float | None,
    limit: float | None,
) -> Opened:
    """A hedged ``astream``'s opening: the streams race up to their first chunk."""
    from ._drive_async import opened  # (a cycle at import time otherwise)

    def start(model: Model) -> Coroutine[Any, Any, Opened]:
        return bounded(opened(m, model, prompt, kw, None), walk.limit(timeout, model))

    return await race(m, walk, model, start, spare_stream)


async def race(
    m: LLMManager,
    walk: Walk,
    model: Model,
    start: Callable[[Model], Coroutine[Any, Any, T]],
    spare: Callable[[Walk, T], Coroutine[Any, Any, None]],
) -> T:
    """The attempt the walk just opened on ``model`` (``start(model)``), hedged by its
    model's policy. Returns the first success, its attempt attached to the walk and not
    yet booked; or raises the last failure, likewise (the caller books either as a
    plain attempt's). Every other attempt is booked or dropped here, exactly once."""
    latest = walk.detach()
    loop = asyncio.get_running_loop()
    running: dict[asyncio.Future[T], Attempt] = {loop.create_task(start(model)): latest}
    hedges = 0
    timer: asyncio.Future[Any] | None = None
    winner: Attempt | None = None
    # The latest attempt's failure, booked once it is known whether the walk goes on
    # from it (every attempt failed: the caller books it) or not (``lost``).
    pending: tuple[Exception, Attempt] | None = None
    value: Any = None
    policy = model.hedge  # the hedged model's: how often, and its delay on each model
    try:
        while True:
            if timer is None and policy is not None and hedges < policy.max_hedges:
                delay = policy.delay(latest.model)
                if delay < walk.left():  # a hedge never starts past the deadline
                    timer = _timer(m, loop, delay)
            waiting: set[asyncio.Future[Any]] = set(running)
            if timer is not None:
                waiting.add(timer)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if timer is not None and timer in done:
                timer = None
                hedges += 1
                a = None if walk.past() else walk.hedge(latest)
                if a is None:
                    hedges = 1 << 30  # nowhere to hedge to: none more for this attempt
                else:
                    running[loop.create_task(start(a.model))] = latest = a
                    _lost(walk, pending)
                    pending = None
            for task in [t for t in running if t in done]:  # in the order they started
                a = running.pop(task)
                walk.attach(a)
                if task.cancelled():  # from inside the model: as a plain attempt's
                    walk.drop()
                    raise asyncio.CancelledError
                exc = task.exception()
                if exc is None:
                    if winner is None:
                        winner, value = a, task.result()
                    else:
                        await spare(walk, task.result())
                elif not isinstance(exc, Exception):
                    walk.drop()  # a KeyboardInterrupt, SystemExit: the request's end
                    raise exc
                elif a is latest:
                    pending = (exc, a)
                else:
                    walk.lost(exc)  # another attempt still runs: booked, nothing more
            if winner is not None:
                _lost(walk, pending)
                pending = None
                break
            if not running:
                break
    except BaseException:
        _lost(walk, pending)  # the request ends here: no one else will book it
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if running:
            await _cancel(walk, running, spare)
    if winner is not None:
        walk.attach(winner)
        if winner.hedge:
            winner.model.stats.record_hedge_win()
        result: T = value
        return result
    # Every attempt failed: the walk goes on from the latest one's place, as after a
    # plain attempt's failure.
    assert pending is not None
    walk.attach(pending[1])
    raise pending[0]


def _timer(m: LLMManager, loop: asyncio.AbstractEventLoop, delay: float) -> asyncio.Future[Any]:
    """A future done after ``delay`` seconds of the manager's ``async_sleep``: a plain
    timer handle for asyncio's own (a task per hedge timer costs a few times more)."""
    if m._async_sleep is asyncio.sleep:
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(delay, _fire, fut)
        fut.add_done_callback(lambda f: handle.cancel())
        return fut
    return asyncio.ensure_future(m._async_sleep(delay))


def _fire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _lost(walk: Walk, pending: tuple[Exception, Attempt] | None) -> None:
    if pending is not None:
        walk.attach(pending[1])
        walk.lost(pending[0])


async def _cancel(
    walk: Walk,
    running: dict[asyncio.Future[T], Attempt],
    spare: Callable[[Walk, T], Coroutine[Any, Any, None]],
) -> None:
    """Cancels the attempts still running and books each: dropped (its stream closed, by
    ``opened``'s own cleanup), or, if it ended before the cancel reached it, as it
    ended."""
    for task in running:
        task.cancel()
    try:
        await asyncio.wait(running)
    finally:
        for task, a in running.items():
            walk.attach(a)
            if not task.done() or task.cancelled():
                walk.drop()
                continue
            exc = task.exception()
            if exc is None:
                await spare(walk, task.result())
            elif isinstance(exc, Exception):
                walk.lost(exc)
            else:
                walk.drop()
        running.clear()
