"""LLMManager: the facade. Configuration, the model registry, the public methods, and
``get_model_info`` / ``get_metrics``; every request goes through the drivers and the walk.

How a request flows (docs/architecture.md has the diagram and the counting table):

- ``generate``: the native ``ManagerCore.generate`` hashes the key and answers a cache hit
  in one call; a miss goes to ``_generate_slow`` (``_drive_sync.py``, generated from
  ``_drive_async.py``), which makes the first try inline and hands anything else to the
  route walk (``walk.py``: every decision and count, no I/O).
- ``agenerate`` / ``stream`` / ``astream`` / ``generate_response``: the same drivers.
- Seams for new policies, a file each: ``gates.py`` (admission before the breaker),
  ``retry.py`` (the retry decision), ``cache.py`` (the tiers behind the native L1),
  ``singleflight.py`` (the flight registry), ``workers.py`` (sync models' pools).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast

from .._native import ManagerCore, Record, ResponseCache
from . import _drive_async, _drive_sync, _fork, _secrets
from ._validate import (
    MAX_ENTRIES,
    MAX_FAILURE_THRESHOLD,
    MAX_HALF_OPEN_CALLS,
    MAX_RECOVERY_TIMEOUT,
    check_count,
    check_deadline,
    check_seconds,
)
from .cache import Tiers
from .circuit_breaker import CircuitBreaker, native_clock
from .classify import Classifier, default_retryable, make_policy, remember_code
from .deadline import Timed
from .deployments import ROUTINGS, Group
from .errors import LLMError, NoModelConfiguredError, UnknownModelError
from .events import (
    OBSERVED,
    Callback,
    Hub,
    ObservedTimed,
    ObservedWalk,
    Subscription,
    answered_by,
    observed_methods,
)
from .gates import Gate, Observer, watchers
from .hedging import HedgePolicy, check_max, policy_of
from .models import MAX_DEPLOYMENTS, MAX_WORKERS, Model, check_prompt
from .ratelimit import limiter_of
from .reports import BreakerState, InferenceFn, Metrics, ModelInfo
from .retry import Backoff, Jitter
from .retry_budget import Budget
from .retry_budget import build as build_budget
from .singleflight import SingleFlight
from .walk import Walk
from .workers import DEFAULT_WORKERS

if TYPE_CHECKING:
    from .fleet import Fleet

logger = logging.getLogger("agenticaiframework.llms")


def _deadlines(kwargs: dict[str, Any]) -> tuple[float | None, float | None]:
    """A stream's ``deadline`` (to its first chunk) and ``stream_deadline`` (the whole
    stream), taken out of its kwargs and checked."""
    d, e = kwargs.pop("deadline", None), kwargs.pop("stream_deadline", None)
    return (
        None if d is None else check_deadline(d),
        None if e is None else check_deadline(e),
    )


def _cost(m: Model, stats: Mapping[str, Any]) -> float | None:
    if m.cost_in is None and m.cost_out is None:
        return None
    return (
        float(
            stats["prompt_tokens"] * (m.cost_in or 0.0)
            + stats["completion_tokens"] * (m.cost_out or 0.0)
        )
        / 1000.0
    )


def _state(m: Model) -> BreakerState:
    """A model's breaker state; with several deployments: closed if any is, else
    half-open if any is, else open."""
    if m.group is None:
        return cast(BreakerState, m.breaker.state)
    states = {d.breaker.state for d in m.group.members}
    return "closed" if "closed" in states else "half-open" if "half-open" in states else "open"


def _documented(fn: Any, doc: str) -> Any:
    """``fn`` (a driver function installed as a method) with the user's docstring."""
    fn.__doc__ = doc
    return fn


def _info(m: Model) -> dict[str, Any]:
    stats: dict[str, Any] = m.stats.snapshot()
    cost = _cost(m, stats)
    if cost is not None:
        stats["cost"] = cost
    return {
        "name": m.name,
        "metadata": _secrets.redact_mapping(m.metadata),
        "stats": stats,
        "circuit_breaker_state": m.breaker.state,
        "failure_count": m.breaker.failure_count,
        "is_async": m.is_async,
    }


_SLOWEST = ("p50_latency", "p95_latency", "p99_latency")
_SLOWEST_TTFC = ("p50_time_to_first_chunk", "p95_time_to_first_chunk")


def _summed(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """A model's stats from its deployments': counts and cost summed, the average
    weighted by requests, percentiles the largest."""
    out: dict[str, Any] = {}
    for k in parts[0]:
        vals = [p.get(k, 0) for p in parts]
        if k in _SLOWEST or k in _SLOWEST_TTFC:
            out[k] = max(vals)
        elif k == "avg_latency":
            n = sum(p["successes"] + p["failures"] for p in parts)
            out[k] = sum(p[k] * (p["successes"] + p["failures"]) for p in parts) / n if n else 0.0
        else:
            out[k] = sum(vals)
    return out


class _Settings:
    """The manager's settings that no request path reads per attempt."""

    __slots__ = (
        "default_deadline",
        "failure_threshold",
        "fleet_lease",
        "fleet_wait",
        "half_open_max_calls",
        "hedge",
        "max_queue_wait",
        "policy",
        "recovery_timeout",
        "route_names",
        "routing",
        "sync_workers",
    )

    default_deadline: float | None
    policy: Callable[[BaseException], bool]
    route_names: tuple[str, ...]

    failure_threshold: int
    fleet_lease: float
    fleet_wait: float
    half_open_max_calls: int
    hedge: HedgePolicy | None
    max_queue_wait: float | None
    recovery_timeout: float | None
    routing: str
    sync_workers: int


def _setting(name: str, doc: str) -> Any:
    return property(lambda self: getattr(self._settings, name), doc=doc)


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
        redis: str | Fleet | None = None,
        namespace: str = "agenticai",
        fleet_wait: float = 30.0,
        fleet_lease: float = 60.0,
        routing: str = "weighted",
        max_queue_wait: float = 0.0,
        default_deadline: float | None = None,
        hedge_after: float | str | None = None,
        max_hedges: int = 1,
        retry_budget: float | None = None,
        min_retries_per_second: float | None = None,
    ) -> None:
        # Settings read off the request path live in one object: an instance past 30
        # attributes loses CPython's shared-key dict, and every ``self.x`` read on the
        # request path gets slower (seen as +3-5% instructions on the walk's paths).
        self._settings = conf = _Settings()
        conf.policy = make_policy(classify, retry_on, no_retry_on, default_retryable)
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}; not {routing!r}")
        conf.routing = routing
        # How long a request refused by every model's rate limits may wait for capacity
        # (0: it fails fast with QuotaExhaustedError).
        conf.max_queue_wait = check_seconds("max_queue_wait", max_queue_wait)
        # Every request's time budget unless it gives its own (``deadline=``): retries,
        # waits and fallbacks all spend from it (walk.py).
        conf.default_deadline = (
            None if default_deadline is None else check_deadline(default_deadline)
        )
        # Hedged requests for every model (hedging.py); a model's metadata may set its own.
        check_max(max_hedges)
        conf.hedge = None if hedge_after is None else HedgePolicy(hedge_after, max_hedges)
        if not isinstance(allow_empty, bool):
            raise TypeError(f"allow_empty must be a bool, not {type(allow_empty).__name__}")
        # An empty answer is a failed attempt (InvalidResponseError: the next model is
        # tried, nothing is cached) unless the model said it ended normally, or this is set.
        self.allow_empty = allow_empty
        conf.sync_workers = check_count("sync_workers", sync_workers, maximum=MAX_WORKERS)
        self.max_retries = check_count("max_retries", max_retries)
        if not isinstance(enable_caching, bool):
            raise TypeError("enable_caching must be a bool")
        check_count("cache_max_entries", cache_max_entries, maximum=MAX_ENTRIES)
        if cache_max_bytes is not None:
            check_count("cache_max_bytes", cache_max_bytes)
        ttl = check_seconds("cache_ttl", cache_ttl, allow_none=True)
        if ttl == 0:
            raise ValueError("cache_ttl must be > 0 or None")
        conf.failure_threshold = check_count(
            "failure_threshold", failure_threshold, maximum=MAX_FAILURE_THRESHOLD
        )
        conf.recovery_timeout = check_seconds(
            "recovery_timeout", recovery_timeout, maximum=MAX_RECOVERY_TIMEOUT
        )
        conf.half_open_max_calls = check_count(
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
        # The fleet (fleet.py): Redis as the second cache tier and the fleet's flights.
        # Imported only when asked for, so redis-py is an optional extra.
        self._fleet: Fleet | None = None
        wait = check_seconds("fleet_wait", fleet_wait)
        lease = check_seconds("fleet_lease", fleet_lease)
        assert wait is not None and lease is not None
        if lease == 0:
            raise ValueError("fleet_lease must be > 0")
        conf.fleet_wait = wait
        conf.fleet_lease = lease
        if redis is not None:
            from .fleet import Fleet as _Fleet

            if isinstance(redis, _Fleet):
                self._fleet = redis
            elif isinstance(redis, str):
                self._fleet = _Fleet.from_url(redis, namespace)
            else:
                raise TypeError(f"redis must be a URL or a Fleet, not {type(redis).__name__}")
            if hash_secret is None and enable_caching:
                # Equal keys across the fleet need one secret: made once in Redis. Without
                # Redis at start-up, this process keeps a secret of its own (no sharing).
                hash_secret = self._fleet.shared_secret()
                if hash_secret is None:
                    logger.warning(
                        "fleet at %s unreachable at start-up: this process caches alone",
                        self._fleet.url,
                    )
        self._cache_ttl = ttl
        self._flights: SingleFlight[Any] = SingleFlight()
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
        # Off unless asked for (retry_budget.py): set on the instance only then, so a
        # manager without it keeps the class's None and one attribute fewer.
        budget = build_budget(
            retry_budget, min_retries_per_second, self._mstats, native_clock(clock), self._fleet
        )
        if budget is not None:
            self._retry_budget = budget
        self._tiers = Tiers(self._cache)
        self._store = self._tiers.store  # bound once: the first try calls it
        # Admission gates asked before each breaker permit, and observers told of each
        # attempt the walk makes (gates.py); none without a fleet.
        self._gates: tuple[Gate, ...] = ()
        self._observers: tuple[Observer, ...] = ()
        if self._fleet is not None:
            from .fleet_breakers import FleetBreakers

            shared = FleetBreakers(
                self._fleet, lambda key: self._by_key.get(key), clock, self.fleet_lease
            )
            self._gates, self._observers = (shared,), (shared,)
        # Serialises configuration writers only; requests read a published snapshot.
        self._config_lock = threading.Lock()
        self._models: dict[str, Model] = {}
        self._by_key: dict[str, Model] = {}  # every deployment by its breaker key
        self._serial = 0
        self._active: str | None = None
        self._chain: tuple[str, ...] = ()
        self._publish()
        _fork.register(self)
        if conf.default_deadline is not None:
            self._bind_deadline()

    def _after_fork(self) -> None:
        """In a forked child (see ``_fork``): a fresh configuration lock (the registry
        resets itself); counters start at zero, so summing the workers' metrics never
        counts the parent's requests twice; cached answers and breaker states are kept
        (still true of the providers), except trial permits held by threads that do not
        exist here, which are given back."""
        self._config_lock = threading.Lock()
        self._mstats.reset()
        for m in list(self._by_key.values()):
            m.stats.reset()
            core = m.breaker.core
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
        """Registers (or replaces) the model ``name``.

        ``inference_fn(prompt, kwargs)`` is called with the prompt and a dict of the
        request's keyword arguments, and returns a str or an :class:`LLMResponse` (with
        token counts); it may be ``async def`` (see :class:`~.reports.SyncInferenceFn`).
        Raise :class:`NonRetryableError` from it to stop retries on this model; a
        ``TypeError``/``AttributeError``/``NameError`` from its own code is a bug and is
        not retried either (the fallback still runs). Replacing a model gives it fresh
        counters and a fresh breaker, and its old cached answers are not served.

        ``metadata`` may carry ``cost_per_1k_tokens`` (or ``cost_per_1k_prompt_tokens`` /
        ``cost_per_1k_completion_tokens``), ``timeout`` (seconds per attempt under
        ``agenerate``), ``sync_workers``, ``rpm``/``tpm`` rate limits, ``weight`` and
        ``deployment`` (see :meth:`add_deployment`); secret-looking values are masked in
        :meth:`get_model_info`. ``breaker`` replaces the model's own
        :class:`CircuitBreaker`. ``classify`` (exc -> True, False or None), ``retry_on``
        and ``no_retry_on`` decide which of its failures are retried, before the manager's
        policy. Registering does not make the model active: call
        :meth:`set_active_model`.

        Raises ``TypeError`` (a name that is not a str, an ``inference_fn`` that is not
        callable, metadata that is not a mapping) and ``ValueError`` (an empty name, bad
        metadata values).

        >>> m = LLMManager()
        >>> m.register_model("echo", lambda prompt, kwargs: prompt, {"cost_per_1k_tokens": 0.01})
        >>> m.list_models()
        ['echo']
        """
        with self._config_lock:
            self._serial += 1
            model = self._new_model(
                name, inference_fn, metadata, breaker, classify, retry_on, no_retry_on
            )
            old = self._models.get(name)
            if old is not None:
                for d in old.group.members if old.group is not None else (old,):
                    self._by_key.pop(d.key, None)
            self._models[name] = self._by_key[name] = model
            self._publish()
        logger.info("registered model %r", name)

    def add_deployment(
        self,
        name: str,
        inference_fn: InferenceFn,
        metadata: Mapping[str, Any] | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        classify: Classifier | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        no_retry_on: tuple[type[BaseException], ...] = (),
    ) -> str:
        """Adds another upstream (an API key, a region, an Azure deployment) under the
        registered model ``name``; returns its label (``metadata['deployment']``, else
        its position, e.g. ``"1"``). Each deployment has its own breaker, counters and
        latency histogram (``get_model_info(name)['deployments']``); an attempt on the
        model goes to one of them, picked by the manager's ``routing`` (deployments.py).
        ``metadata['weight']`` (default 1) weighs the ``weighted`` pick. Answers are the
        model's: they carry its name and share its cache entries.

        Raises :class:`UnknownModelError` (``name`` not registered), ``ValueError`` (a
        label already used, more than 64 deployments) and ``TypeError`` (a label that is
        not a non-empty str).

        >>> m = LLMManager()
        >>> m.register_model("gpt-4o", lambda prompt, kwargs: "us")
        >>> m.add_deployment("gpt-4o", lambda prompt, kwargs: "eu", {"deployment": "eu"})
        'eu'
        """
        with self._config_lock:
            model = self._model(name)
            group = model.group
            members: tuple[Model, ...] = group.members if group is not None else (model,)
            if len(members) >= MAX_DEPLOYMENTS:
                raise ValueError(f"model {name!r} has {MAX_DEPLOYMENTS} deployments already")
            label = (metadata or {}).get("deployment", str(len(members)))
            if not isinstance(label, str) or not label:
                raise TypeError("metadata['deployment'] must be a non-empty str")
            if model.deployment is None:
                first = model.metadata.get("deployment", "0")
                model.deployment = first if isinstance(first, str) and first else "0"
            if any(d.deployment == label for d in members):
                raise ValueError(f"model {name!r} has a deployment {label!r} already")
            dep = self._new_model(
                name,
                inference_fn,
                metadata,
                breaker,
                classify,
                retry_on,
                no_retry_on,
                key=f"{name}@{label}",
            )
            dep.deployment, dep.key, dep.bit = label, f"{name}@{label}", 1 << len(members)
            dep.serial = model.serial  # the model's answers, the model's cache entries
            members = (*members, dep)
            new = Group(members, self.routing)
            for d in members:
                d.group = new
            self._by_key[dep.key] = dep
            if group is None:
                model.watch(True)  # its first try now goes through the walk, which picks
        logger.info("added deployment %r to model %r", label, name)
        return label

    def _new_model(
        self,
        name: str,
        inference_fn: InferenceFn,
        metadata: Mapping[str, Any] | None,
        breaker: CircuitBreaker | None,
        classify: Classifier | None,
        retry_on: tuple[type[BaseException], ...],
        no_retry_on: tuple[type[BaseException], ...],
        key: str | None = None,
    ) -> Model:
        """A new model (``key``: its deployment key, when it is not the first)."""
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
        policy = make_policy(classify, retry_on, no_retry_on, self._settings.policy)
        remember_code(inference_fn)
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
        model = Model(
            name,
            inference_fn,
            meta,
            breaker,
            self._serial,
            policy,
            self._mstats,
            self.sync_workers,
        )
        model.limiter = limiter_of(meta, native_clock(self._clock))
        if model.limiter is not None and self._fleet is not None:
            # The provider's quota is per API key, not per process: shared by the fleet
            # (fleet_limits.py), over the native limiter (which the picker reads).
            from .fleet_limits import FleetLimiter

            model.limiter = FleetLimiter(model.limiter, self._fleet, key or name)
        model.gates, model.observers = self._gates, self._observers
        model.hedge = policy_of(meta, self._settings.hedge)
        if model.hedge is not None and not self._hedged:
            self._hedged = True  # its async requests go through the hedged driver
            for other in self._by_key.values():
                other.hedged()
        if self._hedged:
            model.hedged()
        model.set_watchers(self._watchers_of(model))
        return model

    def _watchers_of(self, model: Model) -> int:
        """Who watches ``model`` by configuration (see Model.watch): the gates that do,
        the event hook's subscribers, its own rate limit, its several deployments."""
        n = watchers(self._gates, model.key) + (self._hub is not None)
        n += model.limiter is not None
        return n + (model.group is not None and model.group.members[0] is model)

    def _use_gates(self, gates: tuple[Gate, ...], observers: tuple[Observer, ...]) -> None:
        """Admission gates and observers (gates.py) for every model, now and later."""
        with self._config_lock:
            self._gates, self._observers = tuple(gates), tuple(observers)
            for m in self._by_key.values():
                m.gates, m.observers = self._gates, self._observers
                m.set_watchers(self._watchers_of(m))

    def set_active_model(self, name: str | None) -> None:
        """Makes ``name`` the first model tried (None: only the fallback chain). Requests
        already running keep the route they started with.

        Raises ``TypeError`` (neither a str nor None) and :class:`UnknownModelError` (a
        name never registered: call :meth:`register_model` first).

        >>> m = LLMManager()
        >>> m.register_model("echo", lambda prompt, kwargs: prompt)
        >>> m.set_active_model("echo")
        >>> m.active_model
        'echo'
        """
        if name is not None and not isinstance(name, str):
            raise TypeError(f"model name must be a str or None, not {type(name).__name__}")
        with self._config_lock:
            if name is not None and name not in self._models:
                raise UnknownModelError(name)
            self._active = name
            self._publish()

    def set_fallback_chain(self, model_names: list[str] | tuple[str, ...]) -> None:
        """Sets the models tried, in order, after the active one (duplicates are skipped;
        the active model may be listed too). Replaces the previous chain; ``[]`` clears it.

        Raises ``TypeError`` for a bare str (a str is not a list of names: write
        ``["primary"]``) or a name that is not a str, and :class:`UnknownModelError` for
        a name never registered (the chain is then left as it was).

        >>> m = LLMManager()
        >>> m.register_model("a", lambda prompt, kwargs: "A")
        >>> m.register_model("b", lambda prompt, kwargs: "B")
        >>> m.set_fallback_chain(["a", "b"])
        >>> m.fallback_chain
        ['a', 'b']
        """
        if isinstance(model_names, (str, bytes)):
            raise TypeError(
                f"set_fallback_chain(model_names) takes a list of names, not a bare "
                f"{type(model_names).__name__}: write [{model_names!r}]"
            )
        if not isinstance(model_names, Iterable):
            raise TypeError(
                f"set_fallback_chain(model_names) takes a list of names, not "
                f"{type(model_names).__name__}"
            )
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
        self._settings.route_names = tuple(order)  # what an event says the route is
        if plan:
            self._set_route(tuple((m.name, m.serial) for m in plan), plan)
        else:
            self._set_route((), None)

    @property
    def active_model(self) -> str | None:
        """The model tried first (:meth:`set_active_model`), or None."""
        return self._active

    @property
    def fallback_chain(self) -> list[str]:
        """A copy of the models tried after the active one (:meth:`set_fallback_chain`)."""
        return list(self._chain)

    def list_models(self) -> list[str]:
        """Returns the registered model names, in registration order.

        >>> m = LLMManager()
        >>> m.register_model("a", lambda prompt, kwargs: "A")
        >>> m.list_models()
        ['a']
        """
        return list(self._models)

    def _model(self, name: str) -> Model:
        if not isinstance(name, str):
            raise TypeError(f"model_name must be a str, not {type(name).__name__}")
        try:
            return self._models[name]
        except (KeyError, TypeError):
            raise UnknownModelError(name) from None

    # ----------------------------------------------------------------- requests

    routing: str = _setting("routing", "How a deployment is picked (deployments.py).")
    max_queue_wait: float | None = _setting(
        "max_queue_wait", "Seconds a request refused by every rate limit may wait."
    )
    sync_workers: int = _setting("sync_workers", "Default worker threads per sync model.")
    failure_threshold: int = _setting("failure_threshold", "Failures that open a breaker.")
    recovery_timeout: float | None = _setting(
        "recovery_timeout", "Seconds an open breaker waits before a trial."
    )
    half_open_max_calls: int = _setting("half_open_max_calls", "Trials a half-open breaker admits.")
    fleet_wait: float = _setting("fleet_wait", "Seconds a fleet follower waits for its leader.")
    fleet_lease: float = _setting("fleet_lease", "Seconds a fleet leader's lease lasts.")
    default_deadline: float | None = _setting(
        "default_deadline", "The deadline of a request that gives none (seconds)."
    )
    _route_names: tuple[str, ...] = _setting("route_names", "The route's model names.")

    # The walk the drivers run past the first try: an events.ObservedWalk on this
    # instance while it has subscribers.
    _Walk: type[Walk] = Walk
    _Timed: type[Walk] = Timed  # a request with a deadline walks this (deadline.py)
    _retry_budget: Budget | None = None
    _hub: Hub | None = None
    # Whether any model hedges (hedging.py): then every async request of this instance
    # walks (no inline first try) and the walk is driven by _drive_hedged.hedged.
    _hedged: bool = False

    if TYPE_CHECKING:
        # The native base answers it (ManagerCore.generate, src/py_manager.rs, whose
        # docstring help() shows); declared here so that type checkers name LLMManager.
        def generate(self, prompt: str, use_cache: bool = True, **kwargs: Any) -> str:
            """Generates text for ``prompt`` (see ManagerCore.generate)."""
            ...

    _generate_slow = _drive_sync.generate_slow

    def _generate_timed(
        self,
        prompt: str,
        use_cache: bool,
        kwargs: dict[str, Any] | None,
        key: bytes | None,
        plan: tuple[Model, ...] | None,
        deadline: float | None,
    ) -> str:
        """generate(deadline=) after its cache miss (the native generate sends it here, so
        that a request without one pays nothing for it)."""
        if deadline is None:
            return self._generate_slow(prompt, use_cache, kwargs, key, plan)
        return _drive_sync.complete(self, prompt, kwargs, key, plan, None, deadline)[0].text

    generate_response = _documented(
        _drive_sync.generate_response,
        """Like :meth:`generate`, but returns a :class:`GenerationResult`: the text and how
        it came (``model`` that answered, ``cached``, ``attempts``, ``errors`` before the
        answer, ``latency`` in seconds). Takes and raises what :meth:`generate` does.

        >>> m = LLMManager()
        >>> m.register_model("echo", lambda prompt, kwargs: prompt)
        >>> m.set_active_model("echo")
        >>> r = m.generate_response("hi")
        >>> r.text, r.model, r.attempts
        ('hi', 'echo', 1)
        """,
    )
    agenerate = _documented(
        _drive_async.agenerate,
        """Generates text for ``prompt`` on the running asyncio loop: the semantics of
        :meth:`generate` (cache, retries with backoff, breakers, fallback, single-flight),
        with ``async def`` models awaited and plain ones run on the model's worker pool, so
        the loop never blocks.

        Parameters: ``prompt`` (str); ``use_cache`` (False: neither read nor write the
        cache); ``timeout`` (seconds, keyword-only) bounds each attempt, and a timed-out
        attempt is a failed one; every other keyword (``temperature=0.2``,
        ``max_tokens=...``) goes to the model in its ``kwargs`` dict and is part of the
        cache key. To bound the whole request (retries and backoff included), wrap the
        call: ``async with asyncio.timeout(5): await llm.agenerate(...)``.

        Returns the text (str). Raises :class:`NoModelConfiguredError` (no active model
        or fallback chain), :class:`AllModelsFailedError` (``.errors`` lists every
        ``(model, exception)``; :class:`QuotaExhaustedError` when rate limits refused
        all), ``TypeError`` (a prompt that is not a str), ``RuntimeError`` (no running
        asyncio loop). A cancelled call is counted in ``cancelled_requests``.

        >>> import asyncio
        >>> m = LLMManager()
        >>> async def echo(prompt, kwargs):
        ...     return prompt.upper()
        >>> m.register_model("echo", echo)
        >>> m.set_active_model("echo")
        >>> asyncio.run(m.agenerate("hi", temperature=0.2))
        'HI'
        """,
    )
    agenerate_response = _documented(
        _drive_async.agenerate_response,
        """The async twin of :meth:`generate_response`: takes and raises what
        :meth:`agenerate` does, returns a :class:`GenerationResult`.""",
    )

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
        rec = self._tiers.landed(key)
        if rec is None:
            return None
        if self._hub is not None:
            answered_by("l1", rec, coalesced=True)
        self._flights.finish(key, result=(rec, 0, ()))
        self._mstats.record_coalesced()
        self._mstats.record_success()
        return rec

    def _no_route(self) -> NoReturn:
        self._mstats.record_failure()
        names = list(self._models)
        if not names:
            why = (
                "no model registered: call register_model(name, fn) first, then "
                "set_active_model(name)"
            )
        else:
            listed = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
            why = (
                f"no active model or fallback chain: registered {listed}; call "
                f"set_active_model({names[0]!r}) or set_fallback_chain([...])"
            )
        raise NoModelConfiguredError(why)

    def stream(self, prompt: str, use_cache: bool = True, **kwargs: Any) -> Iterator[str]:
        """Yields the answer in text chunks as the model produces them.

        Retries and fallback apply until the first chunk; a failure after it raises
        :class:`StreamInterruptedError` carrying the partial text. The whole text is cached
        when the stream completes, and a cache hit is one chunk. A model streams through
        its inference function's ``stream(prompt, kwargs)`` method (the provider adapters
        have one); a model without it answers in one chunk. Nothing is called, and the
        request is not counted, until the first ``next()``. Keyword arguments go to the
        model as for :meth:`generate`; the errors are :meth:`generate`'s, raised from the
        iterator.

        >>> m = LLMManager()
        >>> m.register_model("echo", lambda prompt, kwargs: prompt)
        >>> m.set_active_model("echo")
        >>> list(m.stream("hi"))
        ['hi']
        """
        check_prompt(prompt)
        deadline, ends = _deadlines(kwargs)
        return _drive_sync.stream_route(self, prompt, use_cache, kwargs, None, deadline, ends)

    def astream(self, prompt: str, use_cache: bool = True, **kwargs: Any) -> AsyncIterator[str]:
        """The async twin of :meth:`stream`: uses the model's ``astream`` method, else its
        ``stream`` method driven from a worker thread, else one chunk. ``timeout`` (a
        keyword, seconds) bounds the wait for each attempt's first chunk."""
        check_prompt(prompt)
        timeout = kwargs.pop("timeout", None)
        if timeout is not None:
            check_seconds("timeout", timeout)
        deadline, ends = _deadlines(kwargs)
        return _drive_async.astream_route(self, prompt, use_cache, kwargs, timeout, deadline, ends)

    # ----------------------------------------------------------------- events

    def subscribe(self, callback: Callback) -> Subscription:
        """Calls ``callback(event)`` for each step of every request from now on: the typed
        events of ``agenticaiframework.llms.events`` (RequestStarted, AttemptStarted,
        AttemptEnded, FallbackTaken, BreakerStateChanged, StreamFirstChunk,
        RequestEnded). It runs on the thread or event loop of the request, at the moment
        of the step; if it raises, the request goes on (the error is logged). Returns a
        :class:`~.events.Subscription`: ``unsubscribe()`` it, or use it as a context
        manager. Without subscribers, nothing is paid for any of this."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._config_lock:
            hub = self._hub
            if hub is None:
                hub = self._hub = Hub()
                for d in self._by_key.values():
                    hub.states[d.key] = d.core.breaker.state
                for m in self._models.values():
                    m.watch(True)
                self._Walk, self._Timed = ObservedWalk, ObservedTimed
                self.__dict__.update(observed_methods(self, hub))
            hub.callbacks = (*hub.callbacks, callback)
        return Subscription(self, callback)

    def _bind_deadline(self) -> None:
        """With ``default_deadline``, the request methods of this instance carry it (a
        request's own ``deadline=`` still wins): the class's methods, and so every
        manager without one, pay nothing for it."""
        cls, d = type(self), self._settings.default_deadline
        for name in OBSERVED:
            self.__dict__[name] = functools.partial(getattr(cls, name), self, deadline=d)

    def _unsubscribe(self, callback: Callback) -> None:
        with self._config_lock:
            hub = self._hub
            if hub is None:
                return
            cbs = list(hub.callbacks)
            for i, cb in enumerate(cbs):
                if cb is callback:
                    del cbs[i]
                    break
            hub.callbacks = tuple(cbs)
            if cbs:
                return
            # The last one left: the plain paths again, as if nobody had ever listened.
            for name in OBSERVED:
                self.__dict__.pop(name, None)
            self.__dict__.pop("_Walk", None)
            self.__dict__.pop("_Timed", None)
            self.__dict__.pop("_hub", None)
            if self._settings.default_deadline is not None:
                self._bind_deadline()
            for m in self._models.values():
                m.watch(False)

    # ----------------------------------------------------------------- operations

    def clear_cache(self) -> int:
        """Drops every cached response (L1, this process); returns how many there were."""
        cache = self._cache
        return cache.clear() if cache is not None else 0

    def reset_circuit_breaker(self, model_name: str) -> None:
        """Closes ``model_name``'s breaker (each of its deployments') and forgets its
        failures, e.g. after a provider's incident is over. Raises
        :class:`UnknownModelError` for a name never registered."""
        model = self._model(model_name)
        for d in model.group.members if model.group is not None else (model,):
            d.breaker.reset()
        logger.info("circuit breaker for %r reset", model_name)

    def get_model_info(self, model_name: str) -> ModelInfo:
        """Returns one model's figures (a :class:`~.reports.ModelInfo` typed dict):

        - ``name``, ``metadata`` (secret-looking values masked), ``is_async``;
        - ``stats``: ``requests`` (attempts, retries included), ``successes``,
          ``failures``, ``cancelled``, ``retries``, ``short_circuits`` (refused by the open
          breaker), ``streams``, ``prompt_tokens``, ``completion_tokens``, ``tokens``,
          ``avg_latency`` and ``p50/p95/p99_latency`` (seconds, per attempt),
          ``p50/p95_time_to_first_chunk``, and ``cost`` (USD) for a priced model;
        - ``circuit_breaker_state`` (``"closed"``, ``"open"``, ``"half-open"``) and
          ``failure_count`` (consecutive failures counted by the breaker);
        - with several deployments: ``deployments`` (each one's own figures),
          ``routing``, and ``stats`` their sums.

        Raises :class:`UnknownModelError` for a name never registered.

        >>> m = LLMManager()
        >>> m.register_model("echo", lambda prompt, kwargs: prompt)
        >>> m.get_model_info("echo")["circuit_breaker_state"]
        'closed'
        """
        m = self._model(model_name)
        info = _info(m)
        if m.group is not None:
            # Each deployment's own figures; the model's are their sums (latency
            # percentiles: the slowest deployment's, as histograms are not merged).
            deps = [
                _info(d) | {"deployment": d.deployment, "weight": d.weight} for d in m.group.members
            ]
            for d in deps:
                del d["name"], d["is_async"]
            info["stats"] = _summed([d["stats"] for d in deps])
            info["deployments"] = deps
            info["routing"] = self.routing
            states = {d["circuit_breaker_state"] for d in deps}
            info["circuit_breaker_state"] = (
                "closed" if "closed" in states else "half-open" if "half-open" in states else "open"
            )
            info["failure_count"] = sum(d["failure_count"] for d in deps)
        return cast(ModelInfo, info)

    def get_metrics(self) -> Metrics:
        """Returns the manager's request-level totals (a :class:`~.reports.Metrics` typed
        dict). A cache hit counts as a request and a success; once every call has
        finished, ``total_requests == successful_requests + failed_requests +
        cancelled_requests``.

        Keys: ``total_requests``, ``successful_requests``, ``failed_requests``,
        ``cancelled_requests``, ``cache_hits``, ``cache_misses`` (twins that waited for
        one upstream call each count a miss: see ``coalesced_requests``),
        ``coalesced_requests``, ``total_retries``, ``fallbacks``, ``total_tokens``,
        ``deadline_exceeded`` (failed requests whose deadline ran out), ``retries_denied``
        (retries the retry budget refused: those requests moved on), ``success_rate``,
        ``cache_hit_rate``, ``cache_size``, ``active_model``,
        ``fallback_chain``, ``l2_hits``, ``l2_misses``, ``fleet_errors`` (the fleet
        tier; 0 without ``redis=``), ``total_cost`` (USD, over the priced models) and
        ``breaker_states`` (model name to ``"closed"``, ``"open"`` or ``"half-open"``).
        ``p50_request_latency``, ``p95_request_latency`` and ``p99_request_latency``:
        whole requests, in seconds, backoff, retries and fallbacks included, of those that
        reached a model (cache hits and coalesced twins are not timed); per-attempt
        latency is per model (:meth:`get_model_info`).

        >>> m = LLMManager()
        >>> m.register_model("echo", lambda prompt, kwargs: prompt)
        >>> m.set_active_model("echo")
        >>> _ = m.generate("hi"), m.generate("hi")
        >>> m.get_metrics()["cache_hits"], m.get_metrics()["breaker_states"]
        (1, {'echo': 'closed'})
        """
        s: dict[str, Any] = self._mstats.snapshot()
        total = s["total_requests"]
        s["success_rate"] = s["successful_requests"] / total if total else 0.0
        s["cache_hit_rate"] = s["cache_hits"] / total if total else 0.0
        s["active_model"] = self._active
        s["fallback_chain"] = list(self._chain)
        cache = self._cache
        s["cache_size"] = len(cache) if cache is not None else 0
        fleet = self._fleet
        f = fleet.stats() if fleet is not None else {}
        for name in ("l2_hits", "l2_misses", "fleet_errors"):
            s[name] = f.get(name, 0)
        cost = 0.0
        for d in list(self._by_key.values()):
            c = _cost(d, d.stats.snapshot()) if d.cost_in or d.cost_out else None
            cost += c or 0.0
        s["total_cost"] = cost
        states: dict[str, BreakerState] = {}
        for n, m in list(self._models.items()):
            try:
                states[n] = _state(m)
            except Exception:  # an injected clock that raises: metrics still answer
                continue
        s["breaker_states"] = states
        return cast(Metrics, s)

    def reset_metrics(self) -> None:
        """Zeroes the manager's and every model's counters (not the cache, not the
        breakers)."""
        self._mstats.reset()
        for m in list(self._by_key.values()):
            m.stats.reset()

    def __repr__(self) -> str:
        return (
            f"LLMManager(models={self.list_models()!r}, active={self._active!r}, "
            f"chain={list(self._chain)!r}, caching={self.enable_caching})"
        )


__all__ = ["LLMError", "LLMManager"]
