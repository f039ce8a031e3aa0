"""The async drivers: they await the models, sleep and pull chunks; the walk (``walk.py``)
decides everything else.

This file is the one text of both drivers: ``scripts/unasync.py`` generates
``_drive_sync.py`` from it (``await`` and ``async`` dropped, ``_io_async`` read as
``_io_sync``, a line marked ``# async-only`` left out, a line marked ``# sync-only: CODE``
written as CODE), and ``make lint`` checks that the generated file is current. Edit this
one, then run ``make unasync``.

The first try is made inline, in front of the walk (``agenerate`` here, the native
``generate``'s ``_generate_slow`` in the sync twin): lead the flight if there is one, call
the first model, book a success in one native call. Anything else hands over to the walk
with the attempt already booked, so nothing is re-raised or counted twice.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeAlias

from .._native import Record
from ._drive_hedged import hedged, hedged_open  # async-only
from ._io_async import (
    END,
    bounded,
    call,
    close_quietly,
    current_loop,
    items,
    nothing,
    own_call_needed,
    pull,
)
from ._io_async import sleep as pause
from ._validate import check_deadline
from ._validate import check_seconds as check_timeout  # async-only
from .errors import DeadlineExceededError
from .events import answered_by
from .models import chunk_of, empty, record_of, result_of, streamed, usage_of
from .response import MEANT_TO_END, GenerationResult, Usage
from .singleflight import LeaderAborted, _leading, in_chain, lead, leading, unlead
from .walk import Walk, remaining

if TYPE_CHECKING:
    from .fleet import CacheValue, Fleet
    from .manager import LLMManager
    from .models import Model

# A request's outcome: the record, the attempts made, the failures before it.
Outcome: TypeAlias = tuple[Record, int, Sequence[tuple[str, BaseException]]]


async def agenerate(  # sync-only: def generate_slow(
    self: LLMManager,
    prompt: str,
    use_cache: bool = True,  # sync-only: use_cache: bool,
    *,  # async-only
    timeout: float | None = None,  # async-only
    **kwargs: Any,  # async-only
    # sync-only: kwargs: dict[str, Any] | None, value: Any, plan: tuple[Model, ...] | None,
) -> str:
    """The async twin of generate()."""  # sync-only: """generate() after its cache miss."""
    if timeout is not None:  # async-only
        # Before the request is counted: a bad value leaves the metrics adding up.  # async-only
        check_timeout("timeout", timeout)  # async-only
    # A deadline is taken from kwargs (a keyword-only parameter costs a dict lookup on every
    # call) by the general path, agenerate_response's; the native generate sends a request
    # with one to _generate_timed. Either way this path pays nothing for it.
    if kwargs and "deadline" in kwargs:  # async-only
        slow = agenerate_response  # async-only
        return (await slow(self, prompt, use_cache, timeout=timeout, **kwargs)).text  # async-only
    hit, value, plan = self._enter(prompt, use_cache, kwargs)  # async-only
    if hit:  # async-only
        text: str = value.text  # async-only
        return text  # async-only
    # sync-only: if plan is None or not plan[0].inline_sync:
    if plan is None or timeout is not None or not plan[0].inline_async:  # async-only
        # sync-only: return complete(self, prompt, kwargs, value, plan, None)[0].text
        return (await complete(self, prompt, kwargs, value, plan, timeout))[0].text  # async-only
    kw = kwargs  # sync-only: kw = {} if kwargs is None else kwargs
    # The common case, inline: every frame saved here is saved on each of the thousands
    # of requests a server keeps in flight. Lead the flight (if any), make the first
    # attempt right here, hand anything but a first-try success to the walk.
    led: bytes | None = None  # the key this request leads a flight for
    if value is not None:
        if self._fleet is not None:
            # A cacheable request of a fleet: the shared tier and the fleet's flight.
            return (await complete(self, prompt, kw, value, plan, None))[0].text
        if self.single_flight:
            # singleflight.py's join, lead and unlead written out: one native call to lead,
            # one context variable read and set, no Python frames for them.
            chain = _leading.get()
            mark = current_loop(self)  # async-only
            # sync-only: mark = self._flights.thread
            if (chain is not None and in_chain(chain, value)) or self._flights.table.join(
                value, mark
            ) is not None:
                # Re-entrant, or a twin is already in flight: the general path.
                return (await complete(self, prompt, kw, value, plan, None))[0].text
            landed = self._landed(value)
            if landed is not None:
                return landed.text
            led = value
            _leading.set(value if chain is None else (value, chain))
    model = plan[0]
    try:
        token = model.core.begin(False)
        if not token:
            # Its breaker refused the first attempt: the walk books that and goes on.
            record = await run(self, Walk(self, plan, kw, 0), prompt, None)
        else:
            try:
                out = await model.fn(prompt, kw)
                if type(out) is not str or not out:
                    record = record_of(out, prompt, model.name, self.allow_empty)
            except Exception as exc:
                # Handed over with its attempt booked: nothing is re-raised.
                record = await run(self, Walk(self, plan, kw, token), prompt, None, exc)
            except BaseException:
                model.core.cancel(token)
                self._mstats.record_cancelled(0, 0)
                raise
            else:
                if type(out) is str and out:
                    # Success, usage, breaker, manager counters and the record: one call.
                    record = model.core.answered(token, prompt, out)
                else:
                    pt, ct = record.prompt_tokens, record.completion_tokens
                    model.core.success(token, pt, ct)
                    self._mstats.record_success(pt + ct, 0, 0)
                    self._mstats.record_request_since(token)
    except Exception as exc:
        if led is not None:
            self._flights.finish(led, error=exc)
        raise
    except BaseException:
        if led is not None:
            self._flights.finish(led, error=LeaderAborted())
        raise
    finally:
        if led is not None:
            _leading.set(chain)
    if value is not None:
        try:
            self._store(value, record)  # may raise: a cache's injected clock
        finally:
            if led is not None:
                flight = self._flights.table.pop(led)
                if flight is not mark:  # a follower came: its flight took the mark's place
                    self._flights.settle(flight, result=(record, 1, ()))
    return record.text


async def agenerate_response(  # sync-only: def generate_response(
    self: LLMManager,
    prompt: str,
    use_cache: bool = True,
    *,  # async-only
    timeout: float | None = None,  # async-only
    **kwargs: Any,
) -> GenerationResult:
    """The async twin of generate_response()."""  # sync-only: """The text, and how it came."""
    if timeout is not None:  # async-only
        check_timeout("timeout", timeout)  # async-only
    # sync-only: timeout = None
    deadline = kwargs.pop("deadline", None)
    if deadline is not None:
        check_deadline(deadline)
    t0 = perf_counter()
    hit, value, plan = self._enter(prompt, use_cache, kwargs)
    if hit:
        return result_of(value, True, 0, perf_counter() - t0, ())
    record, attempts, errors = await complete(self, prompt, kwargs, value, plan, timeout, deadline)
    return result_of(record, False, attempts, perf_counter() - t0, errors)


async def complete(
    m: LLMManager,
    prompt: str,
    kwargs: dict[str, Any] | None,
    key: bytes | None,
    plan: tuple[Model, ...] | None,
    timeout: float | None,
    deadline: float | None = None,
) -> Outcome:
    """A request after its cache miss: single-flight (lead, follow, or find the answer
    that landed), then the walk. ``deadline``: its budget in seconds, from now."""
    if plan is None:
        m._no_route()
    kw = {} if kwargs is None else kwargs
    dl = None if deadline is None else (deadline, m._clock() + deadline)
    if key is None or not m.single_flight or leading(key):
        return await walked(m, prompt, kw, key, plan, timeout, dl)
    flights, stats = m._flights, m._mstats
    while True:
        flight = flights.join(key, current_loop(m))
        if flight is None:
            landed = m._landed(key)
            if landed is not None:
                return landed, 0, ()
            token = lead(key)
            try:
                result = await walked(m, prompt, kw, key, plan, timeout, dl)
            except DeadlineExceededError:
                # This leader's budget ran out, not its followers': one of them leads now.
                flights.finish(key, error=LeaderAborted())
                raise
            except Exception as exc:
                flights.finish(key, error=exc)
                raise
            except BaseException:
                flights.finish(key, error=LeaderAborted())
                raise
            finally:
                unlead(token)
            flights.finish(key, result=result)
            return result
        if own_call_needed(flight):
            return await walked(m, prompt, kw, key, plan, timeout, dl)
        try:
            record = (await flights.wait_async(flight, left_of(m, dl)))[0]
        except LeaderAborted:
            continue  # the leader died without an outcome: try again, maybe as leader
        except TimeoutError:
            # This follower's own deadline: it stops waiting; the shared call goes on.
            stats.record_coalesced()
            stats.record_failure()
            stats.record_deadline_exceeded()
            assert dl is not None
            raise DeadlineExceededError([], dl[0]) from None
        except Exception:
            stats.record_coalesced()
            stats.record_failure()
            if m._hub is not None:
                answered_by("model", None, coalesced=True)
            raise
        except BaseException:
            stats.record_cancelled()
            raise
        stats.record_coalesced()
        stats.record_success()
        if m._hub is not None:
            answered_by("model", record, coalesced=True)
        return record, 0, ()


async def walked(
    m: LLMManager,
    prompt: str,
    kw: dict[str, Any],
    key: bytes | None,
    plan: tuple[Model, ...],
    timeout: float | None,
    dl: tuple[float, float] | None = None,
) -> Outcome:
    if key is not None and m._fleet is not None:
        return await shared(m, m._fleet, prompt, kw, key, plan, timeout, dl)
    walk = (m._Walk if dl is None else m._Timed)(m, plan, kw, -1, prompt, dl)
    drive = hedged if m._hedged else run  # async-only
    # sync-only: drive = run
    record = await drive(m, walk, prompt, timeout)
    if key is not None:
        m._store(key, record)
    return record, walk.attempts, walk.errors


async def shared(
    m: LLMManager,
    fleet: Fleet,
    prompt: str,
    kw: dict[str, Any],
    key: bytes,
    plan: tuple[Model, ...],
    timeout: float | None,
    dl: tuple[float, float] | None = None,
) -> Outcome:
    """A cacheable request of a fleet, once it leads its key in this process: the shared
    tier (Redis), then one call fleet-wide. The process holding the key's fleet lease
    calls; the others wait (at most ``fleet_wait``) for its answer; a leader that dies
    lets its lease expire and one waiter takes over; a wait that runs out calls itself.
    Redis out: every fleet step answers "no fleet" at once, and the request goes on."""
    found = await fleet.aget(key)
    led = found is None and await fleet.alead(key, m.fleet_lease)
    waited = 0
    while found is None and not led and waited < 2:
        waited += 1
        found = await fleet.aawait_answer(key, min(m.fleet_wait, left_of(m, dl) or math.inf))
        if found is None:
            led = await fleet.alead(key, m.fleet_lease)  # the leader is gone: take over
        else:
            m._mstats.record_coalesced()
    if led:
        # The lease may be free because a leader just finished: its answer landed between
        # this process's miss and its lead (issue 12's window, fleet-wide). Look again.
        found = await fleet.alanded(key)
        if found is not None:
            await fleet.afinish(key)
    if found is not None:
        record = Record(*found)
        m._store(key, record)
        m._mstats.record_success()
        if m._hub is not None:
            answered_by("l2", record, coalesced=waited > 0)
        return record, 0, ()
    walk = (m._Walk if dl is None else m._Timed)(m, plan, kw, -1, prompt, dl)
    drive = hedged if m._hedged else run  # async-only
    # sync-only: drive = run
    try:
        record = await drive(m, walk, prompt, timeout)
    except BaseException:
        if led:
            await fleet.afinish(key)  # let a waiter take over now
        raise
    m._store(key, record)
    entry = entry_of(record)
    if led:
        await fleet.afinish(key, entry, m._cache_ttl)  # stores and lets go: one trip
    else:
        await fleet.aput(key, entry, m._cache_ttl)
    return record, walk.attempts, walk.errors


def left_of(m: LLMManager, dl: tuple[float, float] | None) -> float | None:
    """Seconds left of a deadline (None: none)."""
    return None if dl is None else remaining(m, dl[1])


def entry_of(r: Record) -> CacheValue:
    """A record as the shared tier keeps it."""
    return (r.text, r.model, r.prompt_tokens, r.completion_tokens, r.estimated)


async def run(
    m: LLMManager,
    walk: Walk,
    prompt: str,
    timeout: float | None,
    pending: Exception | None = None,
) -> Record:
    """Drives the walk to an answer (or raises its final error)."""
    kwargs = walk.kwargs
    plain = timeout is None and not walk.timed  # async-only
    try:
        if pending is not None:
            wait = walk.failed(pending)
            if wait is not None:
                await pause(m, wait)
        while True:
            model = walk.next()
            if model is None:
                wait = walk.queued()  # refused by rate limits alone: wait for capacity?
                if wait is None:
                    raise walk.exhausted()
                await pause(m, wait)
                continue
            try:
                if model.direct_async and plain:  # sync-only: if model.direct_sync:
                    out = await model.fn(prompt, kwargs)
                else:
                    out = await call(m, model, prompt, kwargs, walk.limit(timeout, model), walk)
                if type(out) is not str or not out:
                    record = record_of(out, prompt, model.name, m.allow_empty)
            except Exception as exc:
                wait = walk.failed(exc)
                if wait is not None:
                    await pause(m, wait)
                continue
            if type(out) is str and out:
                return walk.answered(prompt, out)  # the common case: one native call
            return walk.succeeded(record)
    except BaseException:
        walk.abandon()
        raise


# ------------------------------------------------------------------------ streaming


async def astream_route(  # sync-only: def stream_route(
    m: LLMManager,
    prompt: str,
    use_cache: bool,
    kwargs: dict[str, Any],
    timeout: float | None,
    deadline: float | None = None,
    stream_deadline: float | None = None,
) -> AsyncIterator[str]:
    """A streamed request: the cache, then the walk until the first chunk; after it, a
    failure is a StreamInterruptedError with the partial text. ``deadline`` bounds the
    time to the first chunk, ``stream_deadline`` the whole stream (seconds from now)."""
    hit, key, plan = m._enter(prompt, use_cache, kwargs)
    if hit:
        yield key.text
        return
    if plan is None:
        m._no_route()
    fleet = m._fleet if key is not None else None
    if fleet is not None:
        # The shared tier answers a stream as it answers a call: the text in one chunk.
        # Streams do not wait on the fleet's single-flight: a follower would see no
        # text before the leader's last chunk.
        found = await fleet.aget(key)
        if found is not None:
            record = Record(*found)
            m._store(key, record)
            m._mstats.record_success()
            if m._hub is not None:
                answered_by("l2", record)
            yield record.text
            return
    dl = None if deadline is None else (deadline, m._clock() + deadline)
    ends = None if stream_deadline is None else m._clock() + stream_deadline
    walk = (m._Walk if dl is None else m._Timed)(m, plan, kwargs, -1, prompt, dl)
    try:
        while True:
            model = walk.next()
            if model is None:
                wait = walk.queued()
                if wait is None:
                    break
                await pause(m, wait)
                continue
            limit = walk.limit(timeout, model)
            try:
                opening = hedged_open if m._hedged else plain_open  # async-only
                # sync-only: opening = plain_open
                it, first, usage = await opening(m, walk, model, prompt, kwargs, timeout, limit)
            except Exception as exc:
                wait = walk.failed(exc)
                if wait is not None:
                    await pause(m, wait)
                continue
            parts = [first] if first else []
            try:
                if first:
                    walk.first_chunk()
                    yield first
                while (item := await pull(m, it, ends)) is not END:
                    chunk = chunk_of(item, model.name)
                    if chunk is None:
                        usage = item if isinstance(item, Usage) else usage
                    elif chunk:
                        parts.append(chunk)
                        yield chunk
            except Exception as exc:
                raise walk.broken(exc, parts) from exc
            finally:
                await close_quietly(it)
            record = walk.succeeded(streamed("".join(parts), model.name, prompt, usage))
            if key is not None:
                m._store(key, record)
                if fleet is not None:
                    await fleet.aput(key, entry_of(record), m._cache_ttl)
            return
        raise walk.exhausted()
    except BaseException:
        walk.abandon()
        raise


async def plain_open(
    m: LLMManager,
    walk: Walk,
    model: Model,
    prompt: str,
    kw: dict[str, Any],
    timeout: float | None,
    limit: float | None,
) -> tuple[AsyncIterator[Any], str, Usage | None]:
    """A stream's opening (``opened``) within the attempt's limit; ``hedged_open``
    (_drive_hedged.py) is the hedged twin."""
    return await bounded(opened(m, model, prompt, kw, walk), limit)


async def opened(
    m: LLMManager, model: Model, prompt: str, kw: dict[str, Any], walk: Walk | None
) -> tuple[AsyncIterator[Any], str, Usage | None]:
    """Starts a stream and reads up to its first text chunk ("" if it ends without one,
    which is the model's answer only if it said it ended normally)."""
    it = items(model, prompt, kw)
    if it is None:
        out = await call(m, model, prompt, kw, None, walk)
        rec = record_of(out, prompt, model.name, m.allow_empty)
        return nothing(), rec.text, usage_of(rec)
    usage: Usage | None = None
    try:
        async for item in it:
            chunk = chunk_of(item, model.name)
            if chunk is None:
                usage = item
            elif chunk:
                return it, chunk, usage
    except BaseException:
        await close_quietly(it)
        raise
    reason = None if usage is None else usage.finish_reason
    if not m.allow_empty and reason not in MEANT_TO_END:
        raise empty(model.name, "streamed", reason)
    return it, "", usage
