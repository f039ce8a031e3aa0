"""LLMManager: registration, routing, retry and fallback over the native core.

Python decides, Rust remembers: every decision that calls user code (the inference
function, waiting, awaiting) is here; the state touched on every request (cache, breakers,
counters) is native. A cache hit never reaches this file: ``ManagerCore.generate`` answers
it in Rust and hands everything else to ``_generate_slow`` with the key already computed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from time import perf_counter
from typing import Any, NoReturn, TypeAlias

from .._native import (
    ManagerCore,
    ManagerStats,
    ModelCore,
    ModelStats,
    Record,
    ResponseCache,
)
from . import _fork, _secrets
from ._validate import (
    MAX_ENTRIES,
    MAX_FAILURE_THRESHOLD,
    MAX_HALF_OPEN_CALLS,
    MAX_RECOVERY_TIMEOUT,
    check_count,
    check_seconds,
)
from .circuit_breaker import CircuitBreaker, native_clock
from .classify import Classifier, default_retryable, make_policy, retry_after_of
from .errors import (
    AllModelsFailedError,
    CircuitBreakerOpenError,
    InvalidResponseError,
    LLMError,
    NoModelConfiguredError,
    NonRetryableError,
    StreamInterruptedError,
    UnknownModelError,
    describe,
)
from .response import MEANT_TO_END, GenerationResult, LLMResponse, Usage, estimate_tokens
from .retry import Backoff, Jitter
from .singleflight import (
    LeaderAborted,
    SingleFlight,
    blocks_own_loop,
    lead,
    leading,
    unlead,
)
from .workers import DEFAULT_WORKERS, SyncPool, WorkersBusyError, run_blocking

logger = logging.getLogger("agenticaiframework.llms")

InferenceFn: TypeAlias = Callable[[str, dict[str, Any]], Any]
Errors: TypeAlias = list[tuple[str, BaseException]]
# What a route run produces: the record, the attempts made, the failures before it.
Outcome: TypeAlias = tuple[Record, int, Sequence[tuple[str, BaseException]]]


class _Model:
    """One registered model: its callable, breaker and counters."""

    __slots__ = (
        "breaker",
        "core",
        "cost_in",
        "cost_out",
        "fn",
        "is_async",
        "metadata",
        "name",
        "policy",
        "pool",
        "rt",
        "serial",
        "stats",
        "timeout",
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
        self.is_async = _is_async_callable(fn)
        self.metadata = metadata
        self.breaker = breaker
        self.core = breaker.core
        self.stats = ModelStats()
        self.rt = ModelCore(self.core, self.stats, name, manager_stats)
        self.serial = serial
        self.timeout = check_seconds(
            "metadata['timeout']", metadata.get("timeout"), allow_none=True
        )
        # A sync model's calls under agenerate() run on a pool of its own, made when first
        # needed: a hung model fills only its own pool.
        self.workers = check_count(
            "metadata['sync_workers']",
            metadata.get("sync_workers", workers),
            maximum=MAX_WORKERS,
        )
        self.pool: SyncPool | None = None
        both = _price("cost_per_1k_tokens", metadata.get("cost_per_1k_tokens"))
        self.cost_in = _price("cost_per_1k_input_tokens", metadata.get("cost_per_1k_input_tokens"))
        self.cost_out = _price(
            "cost_per_1k_output_tokens", metadata.get("cost_per_1k_output_tokens")
        )
        if self.cost_in is None:
            self.cost_in = both
        if self.cost_out is None:
            self.cost_out = both

    def sync_pool(self) -> SyncPool:
        pool = self.pool
        if pool is None:
            # Two racing first calls may each make one; the loser's pool has no threads
            # yet and is dropped. Cheaper than a lock on every call.
            pool = self.pool = SyncPool(self.workers, self.name)
        return pool


MAX_WORKERS = 4096


def _price(name: str, v: object) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"metadata[{name!r}] must be a number, not {type(v).__name__}")
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"metadata[{name!r}] must be a finite number >= 0, got {v!r}")
    return float(v)


def _is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


# The base str length: a str subclass's own __len__ (user code, may raise) is never called
# on the caller's prompt.
_plen = str.__len__


# Reported token counts are clamped: the native counters take 64-bit ints, and an absurd
# (but numeric) count must not lose an answer the model already gave. A count that is not
# a number at all (NaN, "many") makes the response invalid, like a text that is not str.
MAX_TOKENS = (1 << 32) - 1  # Record keeps u32 counts


def _tokens(v: object, model: str) -> int:
    if v is None:
        return 0
    try:
        n: int = int(v)  # type: ignore[call-overload]
    except Exception:
        raise InvalidResponseError(
            f"model {model!r} reported a token count that is not a number"
        ) from None
    return min(max(0, n), MAX_TOKENS)


def _empty(model: str, how: str, reason: str | None) -> InvalidResponseError:
    why = "" if reason is None else f" (finish reason {reason!r})"
    return InvalidResponseError(f"model {model!r} {how} no text{why}")


def _normalise(out: object, prompt: str, model: str, allow_empty: bool = False) -> Record:
    """A str or LLMResponse from the inference function, as a cache record. An empty text
    is a failed attempt unless the model said it ended normally (or ``allow_empty``)."""
    if type(out) is str or isinstance(out, str):
        text = str(out)
        if not text and not allow_empty:
            raise _empty(model, "returned", None)
        return Record(text, model, (_plen(prompt) + 3) >> 2, estimate_tokens(text), True)
    if isinstance(out, LLMResponse):
        if not isinstance(out.text, str):
            raise InvalidResponseError(
                f"model {model!r} returned LLMResponse.text of type {type(out.text).__name__}"
            )
        if not out.text and not allow_empty and out.finish_reason not in MEANT_TO_END:
            raise _empty(model, "returned", out.finish_reason)
        pt, ct = out.prompt_tokens, out.completion_tokens
        if pt is None and ct is None:
            return Record(
                out.text, model, (_plen(prompt) + 3) >> 2, estimate_tokens(out.text), True
            )
        return Record(out.text, model, _tokens(pt, model), _tokens(ct, model), False)
    if inspect.iscoroutine(out):
        out.close()  # a sync function returned a coroutine: never awaited, so close it quietly
    raise InvalidResponseError(
        f"model {model!r} returned {type(out).__name__}; expected str or LLMResponse"
    )


class LLMManager(ManagerCore):
    """Routes prompts to registered models with retries, circuit breakers, fallback and a
    response cache, and keeps exact metrics.

    >>> m = LLMManager(max_retries=2)
    >>> m.register_model("echo", lambda prompt, kwargs: prompt.upper())
    >>> m.set_active_model("echo")
    >>> m.generate("hi")
    'HI'
    >>> m.get_metrics()["total_requests"]
    1
    """

    def __init__(
        self,
        max_retries: int = 3,
        enable_caching: bool = True,
        *,
        cache_max_entries: int = 10_000,
        cache_max_bytes: int | None = None,
        cache_ttl: float | None = None,
        failure_threshold: int = 5,
        recovery_timeout: float = 60,
        half_open_max_calls: int = 1,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        jitter: Jitter = None,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        hash_secret: bytes | None = None,
        single_flight: bool = True,
        classify: Classifier | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        no_retry_on: tuple[type[BaseException], ...] = (),
        allow_empty: bool = False,
        sync_workers: int = DEFAULT_WORKERS,
    ) -> None:
        self._policy = make_policy(classify, retry_on, no_retry_on, default_retryable)
        if not isinstance(allow_empty, bool):
            raise TypeError(f"allow_empty must be a bool, not {type(allow_empty).__name__}")
        # An empty answer is a failed attempt (InvalidResponseError: the next model is
        # tried, nothing is cached) unless the model said it ended normally, or this is set.
        self.allow_empty = allow_empty
        self.sync_workers = check_count("sync_workers", sync_workers, maximum=MAX_WORKERS)
        self.max_retries = check_count("max_retries", max_retries)
        if not isinstance(enable_caching, bool):
            raise TypeError("enable_caching must be a bool")
        check_count("cache_max_entries", cache_max_entries, maximum=MAX_ENTRIES)
        if cache_max_bytes is not None:
            check_count("cache_max_bytes", cache_max_bytes)
        ttl = check_seconds("cache_ttl", cache_ttl, allow_none=True)
        if ttl == 0:
            raise ValueError("cache_ttl must be > 0 or None")
        self.failure_threshold = check_count(
            "failure_threshold", failure_threshold, maximum=MAX_FAILURE_THRESHOLD
        )
        self.recovery_timeout = check_seconds(
            "recovery_timeout", recovery_timeout, maximum=MAX_RECOVERY_TIMEOUT
        )
        self.half_open_max_calls = check_count(
            "half_open_max_calls", half_open_max_calls, maximum=MAX_HALF_OPEN_CALLS
        )
        base = check_seconds("backoff_base", backoff_base)
        cap = check_seconds("backoff_max", backoff_max)
        if jitter not in (None, "full", "equal"):
            raise ValueError(f"jitter must be None, 'full' or 'equal', got {jitter!r}")
        for name, f in (("sleep", sleep), ("async_sleep", async_sleep), ("clock", clock)):
            if not callable(f):
                raise TypeError(f"{name} must be callable")
        assert base is not None and cap is not None
        self.backoff = Backoff(base, cap, jitter)
        self.enable_caching = enable_caching
        if not isinstance(single_flight, bool):
            raise TypeError(f"single_flight must be a bool, not {type(single_flight).__name__}")
        if hash_secret is not None and (
            not isinstance(hash_secret, bytes) or len(hash_secret) != 16
        ):
            raise (ValueError if isinstance(hash_secret, bytes) else TypeError)(
                "hash_secret must be 16 bytes or None"
            )
        self.single_flight = single_flight
        self._flights: SingleFlight[Outcome] = SingleFlight()
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock
        self._attach_cache(
            ResponseCache(
                cache_max_entries,
                max_bytes=cache_max_bytes,
                ttl=ttl,
                clock=native_clock(clock),
                secret=hash_secret,
            )
            if enable_caching
            else None
        )
        self._mstats = self._stats
        cache = self._cache
        self._peek: Callable[[bytes], Any] | None = cache.peek if cache is not None else None
        # Serialises configuration writers only; requests read a published snapshot.
        self._config_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._serial = 0
        self._active: str | None = None
        self._chain: tuple[str, ...] = ()
        self._publish()
        _fork.register(self)

    def _after_fork(self) -> None:
        """In a forked child (see ``_fork``): a fresh configuration lock (the registry
        resets itself); counters start at zero, so summing the workers' metrics never
        counts the parent's requests twice; cached answers and breaker states are kept
        (still true of the providers), except trial permits held by threads that do not
        exist here, which are given back."""
        self._config_lock = threading.Lock()
        self._mstats.reset()
        for m in list(self._models.values()):
            m.stats.reset()
            core = m.core
            for _ in range(core.trials_outstanding):
                core.release(2)

    # ----------------------------------------------------------------- configuration

    def register_model(
        self,
        name: str,
        inference_fn: InferenceFn,
        metadata: Mapping[str, Any] | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        classify: Classifier | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        no_retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Registers (or replaces) a model. ``inference_fn(prompt, kwargs_dict)`` returns a
        str or an :class:`LLMResponse`, and may be ``async def``. Replacing a model gives it
        fresh counters and a fresh breaker, and its old cached answers are not served.

        ``classify`` (exc -> True/False/None), ``retry_on`` and ``no_retry_on`` decide which
        of this model's failures are retried; undecided ones go to the manager's policy."""
        if not isinstance(name, str):
            raise TypeError(f"model name must be a str, not {type(name).__name__}")
        if not name:
            raise ValueError("model name must not be empty")
        if not callable(inference_fn):
            raise TypeError(f"inference_fn must be callable, not {type(inference_fn).__name__}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, not {type(metadata).__name__}")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError("breaker must be a CircuitBreaker")
        policy = make_policy(classify, retry_on, no_retry_on, self._policy)
        meta = dict(metadata or {})
        _secrets.remember_from(meta)
        if breaker is None:
            breaker = CircuitBreaker(
                self.failure_threshold,
                self.recovery_timeout or 0.0,
                half_open_max_calls=self.half_open_max_calls,
                clock=self._clock,
                name=name,
            )
        with self._config_lock:
            self._serial += 1
            self._models[name] = _Model(
                name,
                inference_fn,
                meta,
                breaker,
                self._serial,
                policy,
                self._mstats,
                self.sync_workers,
            )
            self._publish()
        logger.info("registered model %r", name)

    def set_active_model(self, name: str | None) -> None:
        """Makes ``name`` the first model tried (None: only the fallback chain)."""
        if name is not None and not isinstance(name, str):
            raise TypeError(f"model name must be a str or None, not {type(name).__name__}")
        with self._config_lock:
            if name is not None and name not in self._models:
                raise UnknownModelError(name)
            self._active = name
            self._publish()

    def set_fallback_chain(self, model_names: Iterable[str]) -> None:
        """Models tried, in order, after the active one (duplicates are skipped)."""
        if isinstance(model_names, (str, bytes)) or not isinstance(model_names, Iterable):
            raise TypeError("model_names must be a list of model names")
        names = tuple(model_names)
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"model names must be str, not {type(n).__name__}")
        with self._config_lock:
            for n in names:
                if n not in self._models:
                    raise UnknownModelError(n)
            self._chain = names
            self._publish()

    def _publish(self) -> None:
        """Recomputes the route once per configuration change, never per request."""
        order: list[str] = []
        for n in ((self._active,) if self._active else ()) + self._chain:
            if n not in order:
                order.append(n)
        plan = tuple(self._models[n] for n in order)
        if plan:
            self._set_route(tuple((m.name, m.serial) for m in plan), plan)
        else:
            self._set_route((), None)

    @property
    def active_model(self) -> str | None:
        return self._active

    @property
    def fallback_chain(self) -> list[str]:
        return list(self._chain)

    def list_models(self) -> list[str]:
        """Registered model names, in registration order."""
        return list(self._models)

    def _model(self, name: str) -> _Model:
        if not isinstance(name, str):
            raise TypeError(f"model_name must be a str, not {type(name).__name__}")
        try:
            return self._models[name]
        except (KeyError, TypeError):
            raise UnknownModelError(name) from None

    # ----------------------------------------------------------------- the sync path

    def _generate_slow(
        self,
        prompt: str,
        use_cache: bool,
        kwargs: dict[str, Any] | None,
        key: bytes | None,
        plan: tuple[_Model, ...] | None,
    ) -> str:
        if plan is None or plan[0].is_async:
            return self._complete(prompt, kwargs, key, plan)[0].text
        # The common case, inline (as in agenerate): lead the flight if there is one, make
        # the first attempt here, hand anything but a first-try success to the route walk.
        kw = {} if kwargs is None else kwargs
        led: bytes | None = None  # the key this request leads a flight for
        if key is not None and self.single_flight:
            if leading(key) or self._flights.join(key):
                return self._complete(prompt, kw, key, plan)[0].text
            landed = self._landed(key)
            if landed is not None:
                return landed.text
            led, lead_token = key, lead(key)
        model = plan[0]
        try:
            token = model.rt.begin(False)
            if not token:
                record = self._route_sync(prompt, kw, plan, True, (0, None))[0]
            else:
                try:
                    out = model.fn(prompt, kw)
                    if type(out) is not str or not out:
                        record = _normalise(out, prompt, model.name, self.allow_empty)
                except Exception as exc:
                    record = self._route_sync(prompt, kw, plan, True, (token, exc))[0]
                except BaseException:
                    model.rt.cancel(token)
                    self._mstats.record_cancelled(0, 0)
                    raise
                else:
                    if type(out) is str and out:
                        # Success, usage, breaker, manager counters and the record: one call.
                        record = model.rt.answered(token, prompt, out)
                    else:
                        pt, ct = record.prompt_tokens, record.completion_tokens
                        model.rt.success(token, pt, ct)
                        self._mstats.record_success(pt + ct, 0, 0)
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
                unlead(lead_token)
        if key is not None:
            self._store(key, record)
            if led is not None:
                self._flights.finish(led, result=(record, 1, ()))
        return record.text

    def _complete(
        self,
        prompt: str,
        kwargs: dict[str, Any] | None,
        key: bytes | None,
        plan: tuple[_Model, ...] | None,
    ) -> Outcome:
        if plan is None:
            self._no_route()
        kw = {} if kwargs is None else kwargs
        if key is None or not self.single_flight or leading(key):
            result = self._route_sync(prompt, kw, plan, True)
            if key is not None:
                self._store(key, result[0])
            return result
        return self._complete_shared(prompt, kw, key, plan)

    def _complete_shared(
        self, prompt: str, kw: dict[str, Any], key: bytes, plan: tuple[_Model, ...]
    ) -> Outcome:
        """Single-flight for threads: one leader calls, followers wait for its outcome."""
        stats = self._mstats
        while True:
            flight = self._flights.join(key)
            if flight is None:
                landed = self._landed(key)
                if landed is not None:
                    return landed, 0, []
                token = lead(key)
                try:
                    result = self._route_sync(prompt, kw, plan, True)
                except Exception as exc:
                    self._flights.finish(key, error=exc)
                    raise
                except BaseException:
                    self._flights.finish(key, error=LeaderAborted())
                    raise
                finally:
                    unlead(token)
                self._store(key, result[0])
                self._flights.finish(key, result=result)
                return result
            if blocks_own_loop(flight):
                # Called synchronously on the very loop doing the work: waiting would
                # deadlock it, so this request makes its own call.
                result = self._route_sync(prompt, kw, plan, True)
                self._store(key, result[0])
                return result
            try:
                record = self._flights.wait(flight)[0]
            except LeaderAborted:
                continue
            except Exception:
                stats.record_coalesced()
                stats.record_failure()
                raise
            except BaseException:
                stats.record_cancelled()
                raise
            stats.record_coalesced()
            stats.record_success()
            return record, 0, []

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop agenerate() runs on. Under another event loop (trio) there is
        none: the request, already counted, is finished as failed before the error."""
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            self._mstats.record_failure()
            raise RuntimeError(
                "agenerate() needs a running asyncio event loop (under trio, run generate() "
                "in a worker thread, or use trio-asyncio)"
            ) from None

    def _landed(self, key: bytes) -> Record | None:
        """Asked by a request that has just become the leader of ``key``: the answer a twin
        stored (retiring its flight) between this request's cache miss and its join. Without
        this second look that request would make a second upstream call. Found, it is the
        request's answer, counted as coalesced, and the flight just opened is retired with
        it (a follower that joined meanwhile gets it too)."""
        peek = self._peek
        try:
            rec = peek(key) if peek is not None else None
        except Exception:  # a clock that raised: no second look, the request goes on
            return None
        if rec is None:
            return None
        self._flights.finish(key, result=(rec, 0, ()))
        self._mstats.record_coalesced()
        self._mstats.record_success()
        return rec  # type: ignore[no-any-return]

    def _no_route(self) -> NoReturn:
        self._mstats.record_failure()
        raise NoModelConfiguredError(
            "no model configured: call set_active_model() or set_fallback_chain()"
        )

    def _store(self, key: bytes, record: Record) -> None:
        cache = self._cache
        if cache is not None:
            # Sized by text length: the byte bound tracks what responses weigh.
            cache.put(key, record, len(record.text) + 64)

    def _call_sync(self, model: _Model, prompt: str, kwargs: dict[str, Any]) -> Any:
        if not model.is_async:
            return model.fn(prompt, kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            call = model.fn(prompt, kwargs)
            if model.timeout is not None:
                # An async model can be interrupted: its metadata timeout holds here too.
                call = asyncio.wait_for(call, model.timeout)
            return run_blocking(call)
        raise NonRetryableError(
            f"model {model.name!r} is async: inside an event loop, call agenerate()"
        )

    def _route_sync(
        self,
        prompt: str,
        kwargs: dict[str, Any],
        plan: tuple[_Model, ...],
        outcome: bool,
        first: tuple[int, Exception | None] | None = None,
    ) -> Outcome:
        """Walks the route for one request. ``outcome``: also count the request's success
        or failure (False when the work is shared and each waiter counts its own).
        ``first``: the first model's first attempt was already made inline by the caller,
        as (its token, 0 if refused, and the exception it failed with)."""
        # Made on the first failure: a first-try success allocates no list.
        errors: Errors | None = None
        retries = fallbacks = attempts = 0
        finished = False
        try:
            for model in plan:
                rt = model.rt
                attempt = 0
                while True:
                    pending: Exception | None = None
                    if first is None:
                        token = rt.begin(attempt > 0)
                    else:
                        (token, pending), first = first, None
                    if not token:
                        if errors is None:
                            errors = []
                        self._short_circuit(model, errors)
                        break
                    if attempt:
                        retries += 1
                    attempt += 1
                    attempts += 1
                    try:
                        if pending is not None:
                            raise pending
                        out = (
                            self._call_sync(model, prompt, kwargs)
                            if model.is_async
                            else model.fn(prompt, kwargs)
                        )
                        if type(out) is str and out:
                            # The common case, inlined: a plain str answer, usage estimated.
                            record: Record = Record(
                                out,
                                model.name,
                                (_plen(prompt) + 3) >> 2,
                                (len(out) + 3) >> 2,
                                True,
                            )
                        else:
                            record = _normalise(out, prompt, model.name, self.allow_empty)
                    except Exception as exc:
                        if errors is None:
                            errors = []
                        wait = self._failed(model, token, exc, attempt, errors, kwargs)
                        if wait is None:
                            break
                        self._sleep(wait)
                        continue
                    except BaseException:
                        rt.cancel(token)
                        raise
                    rt.success(token, record.prompt_tokens, record.completion_tokens)
                    finished = True
                    if outcome:
                        self._mstats.record_success(
                            record.prompt_tokens + record.completion_tokens, retries, fallbacks
                        )
                    else:
                        self._mstats.record_work(
                            record.prompt_tokens + record.completion_tokens, retries, fallbacks
                        )
                    return record, attempts, errors or ()
                fallbacks += 1
            finished = True
            self._count_unanswered(outcome, False, retries, fallbacks - 1)
            raise self._all_failed(errors or [])
        except BaseException:
            if not finished:
                self._count_unanswered(outcome, True, retries, fallbacks)
            raise

    def _failed(
        self,
        model: _Model,
        token: int,
        exc: Exception,
        attempt: int,
        errors: Errors,
        kwargs: dict[str, Any],
    ) -> float | None:
        """Books a failed attempt; returns the wait before retrying the same model, or
        None to move on to the next one."""
        if isinstance(exc, WorkersBusyError):
            # Never started: not the model's failure. Its permit goes back; next model.
            model.rt.cancel(token)
            errors.append((model.name, exc))
            logger.warning("%s", str(exc))
            return None
        opened = model.rt.failure(token)
        errors.append((model.name, exc))
        if kwargs:
            # Secret kwargs may echo back in error text: scrub them there.
            _secrets.remember_from(kwargs)
        self._log_failure(model, attempt, exc, opened)
        if attempt >= self.max_retries or opened:
            return None
        try:
            retry = bool(model.policy(exc))
        except Exception as bad:
            # A broken classifier (or an exception whose attributes raise when read) must
            # not lose the request: the default policy decides, and if even that cannot
            # read the exception, it is retried like any failure we know nothing about.
            logger.warning("classifying %r's failure raised %s", model.name, describe(bad))
            try:
                retry = default_retryable(exc)
            except Exception:
                retry = True
        if not retry:
            return None
        if model.core.state != "closed":
            # Opened by a concurrent caller: the next permit would be refused, go on now.
            return None
        delay = self.backoff.delay(attempt)
        asked = retry_after_of(exc)
        if asked is not None:
            if asked > self.backoff.max:
                # The provider wants longer than we would ever wait: use the next model.
                return None
            delay = max(delay, asked)
        return delay

    def _count_unanswered(
        self, outcome: bool, cancelled: bool, retries: int, fallbacks: int
    ) -> None:
        """Counts a route that ended without an answer (all failed, or interrupted)."""
        if not outcome:
            self._mstats.record_work(0, retries, fallbacks)
        elif cancelled:
            self._mstats.record_cancelled(retries, fallbacks)
        else:
            self._mstats.record_failure(retries, fallbacks)

    def _short_circuit(self, model: _Model, errors: Errors) -> None:
        # ModelCore.begin() has counted the short-circuit.
        errors.append((model.name, CircuitBreakerOpenError(model.name, model.core.retry_after())))
        logger.debug("skipping %r: circuit breaker open", model.name)

    def _log_failure(self, model: _Model, attempt: int, exc: BaseException, opened: bool) -> None:
        # A failed attempt is routine (it is retried or falls back): INFO, so the default
        # WARNING level pays nothing for it. A breaker opening is worth a WARNING.
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "model %r failed attempt %d/%d: %s",
                model.name,
                attempt,
                self.max_retries,
                describe(exc),
            )
        if opened and logger.isEnabledFor(logging.WARNING):
            logger.warning("circuit breaker for %r opened", model.name)

    @staticmethod
    def _all_failed(errors: Errors) -> AllModelsFailedError:
        err = AllModelsFailedError(errors)
        if errors:
            err.__cause__ = errors[-1][1]
        logger.error("%s", str(err))  # text only: a kept record must not pin the traceback
        return err

    def generate_response(
        self, prompt: str, use_cache: bool = True, **kwargs: Any
    ) -> GenerationResult:
        """Like :meth:`generate`, returning the text with the model that answered, whether
        it came from the cache, the attempts made, the latency and the token usage."""
        t0 = perf_counter()
        hit, value, plan = self._enter(prompt, use_cache, kwargs)
        if hit:
            return _result(value, True, 0, perf_counter() - t0, [])
        record, attempts, errors = self._complete(prompt, kwargs, value, plan)
        return _result(record, False, attempts, perf_counter() - t0, errors)

    # ----------------------------------------------------------------- the async path

    async def agenerate(
        self, prompt: str, use_cache: bool = True, *, timeout: float | None = None, **kwargs: Any
    ) -> str:
        """The async twin of :meth:`generate`. ``async def`` models are awaited; plain ones
        run in a worker thread so the loop never blocks. ``timeout`` (seconds) bounds each
        attempt, overriding the model's ``metadata['timeout']``; it is not passed on."""
        if timeout is not None:
            # Before the request is counted, so a bad value leaves the metrics adding up.
            check_seconds("timeout", timeout)
        hit, value, plan = self._enter(prompt, use_cache, kwargs)
        if hit:
            text: str = value.text
            return text
        if plan is None or timeout is not None or not plan[0].is_async or plan[0].timeout:
            return (await self._acomplete(prompt, kwargs, value, plan, timeout))[0].text
        # The common case, inline: every frame saved here is saved on each of the
        # thousands of requests a server keeps in flight. Lead the flight (if any), make
        # the first attempt right here, and hand anything but a first-try success to the
        # route walk.
        led: bytes | None = None  # the key this request leads a flight for
        if value is not None and self.single_flight:
            if leading(value) or self._flights.join(value, self._running_loop()):
                # Re-entrant, or a twin is already in flight: the general path.
                return (await self._acomplete(prompt, kwargs, value, plan, None))[0].text
            landed = self._landed(value)
            if landed is not None:
                return landed.text
            led, lead_token = value, lead(value)
        model = plan[0]
        try:
            token = model.rt.begin(False)
            if not token:
                record = (await self._route_async(prompt, kwargs, plan, None, True, (0, None)))[0]
            else:
                try:
                    out = await model.fn(prompt, kwargs)
                    if type(out) is not str or not out:
                        record = _normalise(out, prompt, model.name, self.allow_empty)
                except Exception as exc:
                    record = (
                        await self._route_async(prompt, kwargs, plan, None, True, (token, exc))
                    )[0]
                except BaseException:
                    model.rt.cancel(token)
                    self._mstats.record_cancelled(0, 0)
                    raise
                else:
                    if type(out) is str and out:
                        record = model.rt.answered(token, prompt, out)
                    else:
                        pt, ct = record.prompt_tokens, record.completion_tokens
                        model.rt.success(token, pt, ct)
                        self._mstats.record_success(pt + ct, 0, 0)
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
                unlead(lead_token)
        if value is not None:
            self._store(value, record)
            if led is not None:
                self._flights.finish(led, result=(record, 1, ()))
        return record.text

    async def agenerate_response(
        self, prompt: str, use_cache: bool = True, *, timeout: float | None = None, **kwargs: Any
    ) -> GenerationResult:
        """The async twin of :meth:`generate_response`."""
        if timeout is not None:
            check_seconds("timeout", timeout)
        t0 = perf_counter()
        hit, value, plan = self._enter(prompt, use_cache, kwargs)
        if hit:
            return _result(value, True, 0, perf_counter() - t0, [])
        record, attempts, errors = await self._acomplete(prompt, kwargs, value, plan, timeout)
        return _result(record, False, attempts, perf_counter() - t0, errors)

    async def _acomplete(
        self,
        prompt: str,
        kwargs: dict[str, Any] | None,
        key: bytes | None,
        plan: tuple[_Model, ...] | None,
        timeout: float | None,
    ) -> Outcome:
        if plan is None:
            self._no_route()
        kw = {} if kwargs is None else kwargs
        if key is None or not self.single_flight or leading(key):
            result = await self._route_async(prompt, kw, plan, timeout, True)
            if key is not None:
                self._store(key, result[0])
            return result
        stats = self._mstats
        flights = self._flights
        while True:
            flight = flights.join(key, self._running_loop())
            if flight is None:
                landed = self._landed(key)
                if landed is not None:
                    return landed, 0, []
                # The leader does the work in its own task, as the sync path does: no task
                # of its own per request. If it is cancelled, its followers try again.
                token = lead(key)
                try:
                    result = await self._route_async(prompt, kw, plan, timeout, True)
                except Exception as exc:
                    flights.finish(key, error=exc)
                    raise
                except BaseException:
                    flights.finish(key, error=LeaderAborted())
                    raise
                finally:
                    unlead(token)
                self._store(key, result[0])
                flights.finish(key, result=result)
                return result
            try:
                record = (await flights.wait_async(flight))[0]
            except LeaderAborted:
                continue
            except Exception:
                stats.record_coalesced()
                stats.record_failure()
                raise
            except BaseException:
                stats.record_cancelled()
                raise
            stats.record_coalesced()
            stats.record_success()
            return record, 0, []

    async def _call_async(
        self,
        model: _Model,
        prompt: str,
        kwargs: dict[str, Any],
        timeout: float | None,
        held: list[int] | None = None,
    ) -> Any:
        """One attempt from async code. A sync model runs on its own pool; if the call had
        to wait for a worker, the attempt ``held[0]`` is restarted when it gets one (the
        wait is not the model's latency)."""
        limit = model.timeout if timeout is None else timeout
        if not model.is_async:

            def started() -> None:
                if held is not None:
                    held[0] = model.rt.restart(held[0])

            return await model.sync_pool().run(model.fn, (prompt, kwargs), limit, started)
        call = model.fn(prompt, kwargs)
        if limit is None:
            return await call
        return await asyncio.wait_for(call, limit)

    async def _route_async(
        self,
        prompt: str,
        kwargs: dict[str, Any],
        plan: tuple[_Model, ...],
        timeout: float | None,
        outcome: bool,
        first: tuple[int, Exception | None] | None = None,
    ) -> Outcome:
        """The async twin of :meth:`_route_sync`."""
        # Made on the first failure: a first-try success allocates no list.
        errors: Errors | None = None
        retries = fallbacks = attempts = 0
        finished = False
        try:
            for model in plan:
                rt = model.rt
                attempt = 0
                while True:
                    pending: Exception | None = None
                    if first is None:
                        token = rt.begin(attempt > 0)
                    else:
                        (token, pending), first = first, None
                    if not token:
                        if errors is None:
                            errors = []
                        self._short_circuit(model, errors)
                        break
                    if attempt:
                        retries += 1
                    attempt += 1
                    attempts += 1
                    try:
                        if pending is not None:
                            raise pending
                        if model.is_async and timeout is None and model.timeout is None:
                            # The common case without the extra coroutine frame.
                            out = await model.fn(prompt, kwargs)
                        else:
                            held = [token]
                            try:
                                out = await self._call_async(model, prompt, kwargs, timeout, held)
                            finally:
                                token = held[0]
                        if type(out) is str and out:
                            record = Record(
                                out,
                                model.name,
                                (_plen(prompt) + 3) >> 2,
                                (len(out) + 3) >> 2,
                                True,
                            )
                        else:
                            record = _normalise(out, prompt, model.name, self.allow_empty)
                    except Exception as exc:
                        if errors is None:
                            errors = []
                        wait = self._failed(model, token, exc, attempt, errors, kwargs)
                        if wait is None:
                            break
                        await self._async_sleep(wait)
                        continue
                    except BaseException:
                        rt.cancel(token)
                        raise
                    rt.success(token, record.prompt_tokens, record.completion_tokens)
                    finished = True
                    if outcome:
                        self._mstats.record_success(
                            record.prompt_tokens + record.completion_tokens, retries, fallbacks
                        )
                    else:
                        self._mstats.record_work(
                            record.prompt_tokens + record.completion_tokens, retries, fallbacks
                        )
                    return record, attempts, errors or ()
                fallbacks += 1
            finished = True
            self._count_unanswered(outcome, False, retries, fallbacks - 1)
            raise self._all_failed(errors or [])
        except BaseException:
            if not finished:
                self._count_unanswered(outcome, True, retries, fallbacks)
            raise

    # ----------------------------------------------------------------- streaming

    def stream(self, prompt: str, use_cache: bool = True, **kwargs: Any) -> Iterator[str]:
        """Yields the answer in text chunks as the model produces them.

        Retries and fallback apply until the first chunk; a failure after it raises
        :class:`StreamInterruptedError` carrying the partial text. The whole text is cached
        when the stream completes, and a cache hit is one chunk. A model streams through
        its inference function's ``stream(prompt, kwargs)`` method (the provider adapters
        have one); a model without it answers in one chunk. Nothing is called, and the
        request is not counted, until the first ``next()``.
        """
        _check_prompt(prompt)
        return self._stream_sync(prompt, use_cache, kwargs)

    def astream(self, prompt: str, use_cache: bool = True, **kwargs: Any) -> AsyncIterator[str]:
        """The async twin of :meth:`stream`: uses the model's ``astream`` method, else its
        ``stream`` method driven from a worker thread, else one chunk. ``timeout`` (a
        keyword, seconds) bounds the wait for each attempt's first chunk."""
        _check_prompt(prompt)
        timeout = kwargs.pop("timeout", None)
        if timeout is not None:
            check_seconds("timeout", timeout)
        return self._stream_async(prompt, use_cache, kwargs, timeout)

    def _stream_sync(self, prompt: str, use_cache: bool, kwargs: dict[str, Any]) -> Iterator[str]:
        hit, key, plan = self._enter(prompt, use_cache, kwargs)
        if hit:
            yield key.text
            return
        if plan is None:
            self._no_route()
        run = _StreamRun(self)
        try:
            for model in plan:
                attempt = 0
                while True:
                    token = model.rt.begin(attempt > 0)
                    if not token:
                        self._short_circuit(model, run.errors)
                        break
                    attempt = run.attempt(attempt)
                    try:
                        it, first, usage = _open_sync(self, model, prompt, kwargs)
                    except Exception as exc:
                        wait = self._failed(model, token, exc, attempt, run.errors, kwargs)
                        if wait is None:
                            break
                        self._sleep(wait)
                        continue
                    except BaseException:
                        model.rt.cancel(token)
                        raise
                    parts = [first] if first else []
                    try:
                        if first:
                            model.rt.first_chunk(token)
                            yield first
                        for item in it:
                            chunk = _chunk(item, model.name)
                            if chunk is None:
                                usage = item if isinstance(item, Usage) else usage
                            elif chunk:
                                parts.append(chunk)
                                yield chunk
                    except Exception as exc:
                        raise run.broken(model, token, parts, exc) from exc
                    except BaseException:
                        run.cancelled(model, token)
                        raise
                    finally:
                        _close_quietly(it)
                    run.done(model, token, prompt, parts, usage, key)
                    return
                run.fallbacks += 1
            run.exhausted()
        except BaseException:
            run.abandon()
            raise

    async def _stream_async(
        self,
        prompt: str,
        use_cache: bool,
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> AsyncIterator[str]:
        hit, key, plan = self._enter(prompt, use_cache, kwargs)
        if hit:
            yield key.text
            return
        if plan is None:
            self._no_route()
        run = _StreamRun(self)
        try:
            for model in plan:
                attempt = 0
                while True:
                    token = model.rt.begin(attempt > 0)
                    if not token:
                        self._short_circuit(model, run.errors)
                        break
                    attempt = run.attempt(attempt)
                    limit = model.timeout if timeout is None else timeout
                    try:
                        opening = _open_async(self, model, prompt, kwargs)
                        it, first, usage = await (
                            opening if limit is None else asyncio.wait_for(opening, limit)
                        )
                    except Exception as exc:
                        wait = self._failed(model, token, exc, attempt, run.errors, kwargs)
                        if wait is None:
                            break
                        await self._async_sleep(wait)
                        continue
                    except BaseException:
                        model.rt.cancel(token)
                        raise
                    parts = [first] if first else []
                    try:
                        if first:
                            model.rt.first_chunk(token)
                            yield first
                        async for item in it:
                            chunk = _chunk(item, model.name)
                            if chunk is None:
                                usage = item if isinstance(item, Usage) else usage
                            elif chunk:
                                parts.append(chunk)
                                yield chunk
                    except Exception as exc:
                        raise run.broken(model, token, parts, exc) from exc
                    except BaseException:
                        run.cancelled(model, token)
                        raise
                    finally:
                        await _aclose_quietly(it)
                    run.done(model, token, prompt, parts, usage, key)
                    return
                run.fallbacks += 1
            run.exhausted()
        except BaseException:
            run.abandon()
            raise

    # ----------------------------------------------------------------- operations

    def clear_cache(self) -> int:
        """Drops every cached response; returns how many there were."""
        cache = self._cache
        return cache.clear() if cache is not None else 0

    def reset_circuit_breaker(self, model_name: str) -> None:
        """Closes ``model_name``'s breaker and forgets its failures."""
        self._model(model_name).breaker.reset()
        logger.info("circuit breaker for %r reset", model_name)

    def get_model_info(self, model_name: str) -> dict[str, Any]:
        """Name, metadata (secrets masked), stats and circuit breaker state of a model."""
        m = self._model(model_name)
        stats: dict[str, Any] = m.stats.snapshot()
        if m.cost_in is not None or m.cost_out is not None:
            stats["cost"] = (
                stats["prompt_tokens"] * (m.cost_in or 0.0)
                + stats["completion_tokens"] * (m.cost_out or 0.0)
            ) / 1000.0
        return {
            "name": m.name,
            "metadata": _secrets.redact_mapping(m.metadata),
            "stats": stats,
            "circuit_breaker_state": m.breaker.state,
            "failure_count": m.breaker.failure_count,
            "is_async": m.is_async,
        }

    def get_metrics(self) -> dict[str, Any]:
        """Request-level totals. A cache hit counts as a request and a success."""
        s: dict[str, Any] = self._mstats.snapshot()
        total = s["total_requests"]
        s["success_rate"] = s["successful_requests"] / total if total else 0.0
        s["cache_hit_rate"] = s["cache_hits"] / total if total else 0.0
        s["active_model"] = self._active
        s["fallback_chain"] = list(self._chain)
        cache = self._cache
        s["cache_size"] = len(cache) if cache is not None else 0
        return s

    def reset_metrics(self) -> None:
        """Zeroes the manager's and every model's counters."""
        self._mstats.reset()
        for m in list(self._models.values()):
            m.stats.reset()

    def __repr__(self) -> str:
        return (
            f"LLMManager(models={self.list_models()!r}, active={self._active!r}, "
            f"chain={list(self._chain)!r}, caching={self.enable_caching})"
        )


def _result(
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


def _usage_of(rec: Record) -> Usage | None:
    """The usage a model reported, or None when it was estimated."""
    return None if rec.estimated else Usage(rec.prompt_tokens, rec.completion_tokens)


__all__ = ["LLMError", "LLMManager"]


# --------------------------------------------------------------------- streaming helpers


def _check_prompt(prompt: object) -> None:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")


def _chunk(item: object, model: str) -> str | None:
    """A streamed item as text, or None for a Usage report."""
    if isinstance(item, str):
        return str(item)
    if isinstance(item, Usage):
        return None
    raise InvalidResponseError(
        f"model {model!r} streamed {type(item).__name__}; expected str or Usage"
    )


def _close_quietly(it: object) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # the stream is being abandoned; its own error cannot matter
            logger.debug("closing a stream raised", exc_info=False)


async def _aclose_quietly(it: object) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            logger.debug("closing a stream raised", exc_info=False)


def _open_sync(
    m: LLMManager, model: _Model, prompt: str, kw: dict[str, Any]
) -> tuple[Iterator[Any], str, Usage | None]:
    """Starts a stream and reads up to its first text chunk ("" if it ends without one)."""
    opener = getattr(model.fn, "stream", None)
    if not callable(opener):
        rec = _normalise(m._call_sync(model, prompt, kw), prompt, model.name, m.allow_empty)
        return iter(()), rec.text, _usage_of(rec)
    it = iter(opener(prompt, kw))
    usage: Usage | None = None
    try:
        for item in it:
            chunk = _chunk(item, model.name)
            if chunk is None:
                usage = item
            elif chunk:
                return it, chunk, usage
    except BaseException:
        _close_quietly(it)
        raise
    _check_empty(m, model, usage)
    return it, "", usage


def _check_empty(m: LLMManager, model: _Model, usage: Usage | None) -> None:
    """A stream that ended without any text: the model's meaning only if it said it ended
    normally; otherwise a failed attempt, so the next one is made before any chunk."""
    reason = None if usage is None else usage.finish_reason
    if not m.allow_empty and reason not in MEANT_TO_END:
        raise _empty(model.name, "streamed", reason)


_END = object()


async def _threaded(
    pool: SyncPool, opener: Callable[..., Any], prompt: str, kw: dict[str, Any]
) -> Any:
    """A sync stream driven from the model's worker pool, so the loop never blocks on it."""
    it = await pool.run(lambda: iter(opener(prompt, kw)), (), None)
    try:
        while True:
            item = await pool.run(next, (it, _END), None)
            if item is _END:
                return
            yield item
    finally:
        _close_quietly(it)


async def _nothing() -> Any:
    return
    yield  # an async generator that yields nothing


async def _open_async(
    m: LLMManager, model: _Model, prompt: str, kw: dict[str, Any]
) -> tuple[AsyncIterator[Any], str, Usage | None]:
    opener = getattr(model.fn, "astream", None)
    if callable(opener):
        it: AsyncIterator[Any] = opener(prompt, kw).__aiter__()
    elif callable(sync_opener := getattr(model.fn, "stream", None)):
        it = _threaded(model.sync_pool(), sync_opener, prompt, kw)
    else:
        rec = _normalise(
            await m._call_async(model, prompt, kw, None), prompt, model.name, m.allow_empty
        )
        return _nothing(), rec.text, _usage_of(rec)
    usage: Usage | None = None
    try:
        async for item in it:
            chunk = _chunk(item, model.name)
            if chunk is None:
                usage = item
            elif chunk:
                return it, chunk, usage
    except BaseException:
        await _aclose_quietly(it)
        raise
    _check_empty(m, model, usage)
    return it, "", usage


class _StreamRun:
    """The bookkeeping of one streamed request, shared by the sync and async walks."""

    __slots__ = ("attempts", "errors", "fallbacks", "finished", "m", "retries")

    def __init__(self, m: LLMManager) -> None:
        self.m = m
        self.errors: Errors = []
        self.retries = self.fallbacks = self.attempts = 0
        self.finished = False

    def attempt(self, attempt: int) -> int:
        if attempt:
            self.retries += 1
        self.attempts += 1
        return attempt + 1

    def broken(
        self, model: _Model, token: int, parts: list[str], exc: Exception
    ) -> StreamInterruptedError:
        """A failure after the first chunk: no retry (the caller has seen text)."""
        opened = model.rt.failure(token)
        self.m._log_failure(model, 1, exc, opened)
        self.finished = True
        self.m._mstats.record_failure(self.retries, self.fallbacks)
        err = StreamInterruptedError(model.name, "".join(parts), exc)
        logger.error("%s", str(err))  # text only: a kept record must not pin the traceback
        return err

    def cancelled(self, model: _Model, token: int) -> None:
        model.rt.cancel(token)
        self.finished = True
        self.m._count_unanswered(True, True, self.retries, self.fallbacks)

    def done(
        self,
        model: _Model,
        token: int,
        prompt: str,
        parts: list[str],
        usage: Usage | None,
        key: bytes | None,
    ) -> None:
        text = "".join(parts)
        if usage is None or (usage.estimated and not usage.prompt_tokens + usage.completion_tokens):
            # No counts reported (a Usage may tell only how the stream ended).
            pt, ct, est = (_plen(prompt) + 3) >> 2, estimate_tokens(text), True
        else:
            try:
                pt = _tokens(usage.prompt_tokens, model.name)
                ct = _tokens(usage.completion_tokens, model.name)
                est = usage.estimated is True
            except InvalidResponseError:
                # The text arrived whole: a garbled usage report costs only the counts.
                pt, ct, est = (_plen(prompt) + 3) >> 2, estimate_tokens(text), True
        model.rt.success(token, pt, ct)
        self.finished = True
        self.m._mstats.record_success(pt + ct, self.retries, self.fallbacks)
        if key is not None:
            self.m._store(key, Record(text, model.name, pt, ct, est))

    def exhausted(self) -> NoReturn:
        self.finished = True
        self.m._count_unanswered(True, False, self.retries, self.fallbacks - 1)
        raise self.m._all_failed(self.errors)

    def abandon(self) -> None:
        if not self.finished:
            self.m._count_unanswered(True, True, self.retries, self.fallbacks)
