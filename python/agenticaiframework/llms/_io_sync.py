"""The I/O of the sync drivers (``_drive_sync.py``, generated from ``_drive_async.py``):
the twin of ``_io_async.py``, same names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._compat import wait_for
from .errors import NonRetryableError
from .singleflight import Flight, blocks_own_loop
from .workers import run_blocking

if TYPE_CHECKING:
    from .manager import LLMManager
    from .models import Model

T = TypeVar("T")


def call(
    m: LLMManager,
    model: Model,
    prompt: str,
    kwargs: dict[str, Any],
    limit: float | None = None,
    walk: object = None,
) -> Any:
    """One attempt: a sync model is called here (it cannot be interrupted), an async one
    on this thread's loop, within ``limit`` (its metadata timeout, cut to the request's
    deadline)."""
    if not model.is_async:
        return model.fn(prompt, kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        coro = model.fn(prompt, kwargs)
        if limit is None:
            limit = model.timeout
        return run_blocking(coro if limit is None else wait_for(coro, limit))
    raise NonRetryableError(
        f"model {model.name!r} is async: inside an event loop, call agenerate()"
    )


def sleep(m: LLMManager, seconds: float) -> None:
    m._sleep(seconds)


END = object()  # what pull() gives at the end of a stream


def pull(m: LLMManager, it: Iterator[Any], ends: float | None) -> Any:
    """A stream's next item, or END; ``TimeoutError`` once the stream's deadline
    (``ends``, on the manager's clock) has passed. A sync stream cannot be interrupted:
    the deadline is checked before each item is asked for and when it comes."""
    if ends is not None and m._clock() >= ends:
        raise TimeoutError("the stream's deadline passed")
    item = next(it, END)
    if ends is not None and item is not END and m._clock() > ends:
        raise TimeoutError("the stream's deadline passed")
    return item


def bounded(opened: T, limit: float | None) -> T:
    """A sync stream cannot be interrupted: it was opened already."""
    return opened


def items(model: Model, prompt: str, kw: dict[str, Any]) -> Iterator[Any] | None:
    """The model's ``stream``; None for a model that answers in one piece."""
    opener = getattr(model.fn, "stream", None)
    return iter(opener(prompt, kw)) if callable(opener) else None


def nothing() -> Iterator[Any]:
    return iter(())


def close_quietly(it: object) -> None:
    """Closes a stream that is done with or abandoned; its own error cannot matter then."""
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


def current_loop(m: LLMManager) -> asyncio.AbstractEventLoop | None:
    return None  # a thread waits on its own terms (singleflight.py)


def own_call_needed(flight: Flight[Any]) -> bool:
    """Called synchronously on the very loop doing the work: waiting would deadlock it,
    so this request makes its own call."""
    return blocks_own_loop(flight)
