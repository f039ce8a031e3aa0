"""A registered model (its callable, breaker, counters and pool) and what its answers
become: the cache ``Record`` every path books and stores."""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from .._native import ManagerStats, ModelCore, ModelStats, Record
from ._validate import check_count, check_seconds
from .circuit_breaker import CircuitBreaker
from .errors import InvalidResponseError
from .response import MEANT_TO_END, GenerationResult, LLMResponse, Usage, estimate_tokens
from .workers import SyncPool

MAX_DEPLOYMENTS = 64  # per model: the native Picker's bitmasks are 64 bits

_WATCH_LOCK = threading.Lock()  # watch() is rare (a policy's transitions): one lock will do

InferenceFn: TypeAlias = Callable[[str, dict[str, Any]], Any]

MAX_WORKERS = 4096
# Reported token counts are clamped: the native counters take 64-bit ints, and an absurd
# (but numeric) count must not lose an answer the model already gave. A count that is not
# a number at all (NaN, "many") makes the response invalid, like a text that is not str.
MAX_TOKENS = (1 << 32) - 1  # Record keeps u32 counts


class Model:
    """One registered model. ``core`` is its native ModelCore (breaker permit, counters,
    one call per attempt outcome); ``breaker`` the CircuitBreaker it was given."""

    __slots__ = (
        "bit",
        "breaker",
        "core",
        "cost_in",
        "cost_out",
        "deployment",
        "direct_async",
        "direct_sync",
        "fn",
        "gates",
        "group",
        "hedge",
        "inline_async",
        "inline_sync",
        "is_async",
        "key",
        "limiter",
        "metadata",
        "name",
        "observers",
        "policy",
        "pool",
        "serial",
        "stats",
        "timeout",
        "watchers",
        "weight",
        "workers",
    )

    def __init__(
        self,
        name: str,
        fn: InferenceFn,
        metadata: dict[str, Any],
        breaker: CircuitBreaker,
        serial: int,
        policy: Callable[[BaseException], bool],
        manager_stats: ManagerStats,
        workers: int,
    ) -> None:
        self.name = name
        self.policy = policy
        self.fn = fn
        self.is_async = is_async_callable(fn)
        self.metadata = metadata
        self.breaker = breaker
        self.stats = ModelStats()
        self.core = ModelCore(breaker.core, self.stats, name, manager_stats)
        self.serial = serial
        self.timeout = check_seconds(
            "metadata['timeout']", metadata.get("timeout"), allow_none=True
        )
        # A sync model's calls under agenerate() run on a pool of its own, made when first
        # needed: a hung model fills only its own pool.
        self.workers = check_count(
            "metadata['sync_workers']", metadata.get("sync_workers", workers), maximum=MAX_WORKERS
        )
        self.pool: SyncPool | None = None
        # The manager's admission gates and observers (gates.py), kept here: the walk
        # reads them per attempt, and a slot is the cheapest read.
        self.gates: tuple[Any, ...] = ()
        self.observers: tuple[Any, ...] = ()
        # Whether the walk may call it directly, with nothing around the call; and whether
        # the first try may be made inline, in front of the walk (not while a policy
        # watches the model: see watch()).
        self.direct_sync = self.inline_sync = not self.is_async
        self.direct_async = self.inline_async = self.is_async and self.timeout is None
        self.watchers = 0  # see watch()
        # Deployments (deployments.py): this model's group when it has more than one; its
        # label and its breaker's key fleet-wide (name@label; the name for the first).
        self.group: Any = None
        self.deployment: str | None = None
        self.key = name
        self.bit = 1  # 1 << its index among its model's deployments
        self.weight = _weight(metadata.get("weight", 1.0))
        self.limiter: Any = None  # its RateLimiter (ratelimit.py), set by the manager
        self.hedge: Any = None  # its HedgePolicy (hedging.py), set by the manager
        both = _price("cost_per_1k_tokens", metadata.get("cost_per_1k_tokens"))
        self.cost_in = _price("cost_per_1k_input_tokens", metadata.get("cost_per_1k_input_tokens"))
        self.cost_out = _price(
            "cost_per_1k_output_tokens", metadata.get("cost_per_1k_output_tokens")
        )
        if self.cost_in is None:
            self.cost_in = both
        if self.cost_out is None:
            self.cost_out = both

    def watch(self, on: bool) -> None:
        """One watcher more (``on``) or fewer. While watched, every attempt goes through
        the walk (its gates are asked, its observers told, its events told), the first try
        included; unwatched, the first try is made inline, which asks no gate. A policy
        watches a model while its gates may refuse it or its observers need each outcome
        (fleet_breakers.py: while the fleet counts failures of it; events.py: while the
        manager has subscribers). Each watcher's calls must balance."""
        with _WATCH_LOCK:
            self.set_watchers(self.watchers + (1 if on else -1))

    def hedged(self) -> None:
        """Its manager hedges (hedging.py): its async attempts are made by the hedged
        driver, never inline or directly (sync ones as before: they do not hedge)."""
        self.direct_async = False
        self.set_watchers(self.watchers)

    def set_watchers(self, n: int) -> None:
        self.watchers = w = max(0, n)
        # Attribute writes: a request reads the old value or the new one.
        self.inline_sync = self.direct_sync and not w
        self.inline_async = self.direct_async and not w

    def sync_pool(self) -> SyncPool:
        pool = self.pool
        if pool is None:
            # Two racing first calls may each make one; the loser's pool has no threads
            # yet and is dropped. Cheaper than a lock on every call.
            pool = self.pool = SyncPool(self.workers, self.name)
        return pool


def _weight(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 1e6):
        raise ValueError(f"metadata['weight'] must be a number > 0 and <= 1e6, not {v!r}")
    return float(v)


def _price(name: str, v: object) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"metadata[{name!r}] must be a number, not {type(v).__name__}")
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"metadata[{name!r}] must be a finite number >= 0, got {v!r}")
    return float(v)


def is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


# ------------------------------------------------------------------------ answers


def estimated(text: str, model: str, prompt: str) -> Record:
    """The record of an answer whose usage the model did not report: about four
    characters a token (the native ``ModelCore.answered`` makes the same estimate)."""
    return Record(text, model, estimate_tokens(prompt), estimate_tokens(text), True)


def tokens(v: object, model: str) -> int:
    if v is None:
        return 0
    try:
        n: int = int(v)  # type: ignore[call-overload]
    except Exception:
        raise InvalidResponseError(
            f"model {model!r} reported a token count that is not a number"
        ) from None
    return min(max(0, n), MAX_TOKENS)


def empty(model: str, how: str, reason: str | None) -> InvalidResponseError:
    why = "" if reason is None else f" (finish reason {reason!r})"
    return InvalidResponseError(f"model {model!r} {how} no text{why}")


def record_of(out: object, prompt: str, model: str, allow_empty: bool) -> Record:
    """A str or LLMResponse from the inference function, as a cache record. An empty text
    is a failed attempt unless the model said it ended normally (or ``allow_empty``)."""
    if type(out) is str or isinstance(out, str):
        text = str(out)
        if not text and not allow_empty:
            raise empty(model, "returned", None)
        return estimated(text, model, prompt)
    if isinstance(out, LLMResponse):
        if not isinstance(out.text, str):
            raise InvalidResponseError(
                f"model {model!r} returned LLMResponse.text of type {type(out.text).__name__}"
            )
        if not out.text and not allow_empty and out.finish_reason not in MEANT_TO_END:
            raise empty(model, "returned", out.finish_reason)
        pt, ct = out.prompt_tokens, out.completion_tokens
        if pt is None and ct is None:
            return estimated(out.text, model, prompt)
        return Record(out.text, model, tokens(pt, model), tokens(ct, model), False)
    if inspect.iscoroutine(out):
        out.close()  # a sync function returned a coroutine: never awaited, so close it quietly
    raise InvalidResponseError(
        f"model {model!r} returned {type(out).__name__}; expected str or LLMResponse"
    )


def streamed(text: str, model: str, prompt: str, usage: Usage | None) -> Record:
    """The record of a whole stream, from the usage it reported (if any)."""
    if usage is None or (usage.estimated and not usage.prompt_tokens + usage.completion_tokens):
        # No counts reported (a Usage may tell only how the stream ended).
        return estimated(text, model, prompt)
    try:
        pt = tokens(usage.prompt_tokens, model)
        ct = tokens(usage.completion_tokens, model)
    except InvalidResponseError:
        # The text arrived whole: a garbled usage report costs only the counts.
        return estimated(text, model, prompt)
    return Record(text, model, pt, ct, usage.estimated is True)


def usage_of(rec: Record) -> Usage | None:
    """The usage a model reported, or None when it was estimated."""
    return None if rec.estimated else Usage(rec.prompt_tokens, rec.completion_tokens)


def check_prompt(prompt: object) -> None:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")


def chunk_of(item: object, model: str) -> str | None:
    """A streamed item as text, or None for a Usage report."""
    if isinstance(item, str):
        return str(item)
    if isinstance(item, Usage):
        return None
    raise InvalidResponseError(
        f"model {model!r} streamed {type(item).__name__}; expected str or Usage"
    )


def result_of(
    record: Record,
    cached: bool,
    attempts: int,
    latency: float,
    errors: Sequence[tuple[str, BaseException]],
) -> GenerationResult:
    return GenerationResult(
        text=record.text,
        model=record.model,
        cached=cached,
        attempts=attempts,
        latency=latency,
        usage=Usage(record.prompt_tokens, record.completion_tokens, record.estimated),
        errors=tuple(errors),
    )
