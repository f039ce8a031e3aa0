"""Prometheus metrics of LLM managers, read from the native counters at scrape time (the
``prometheus`` extra: ``pip install 'agenticaiframework[prometheus]'``).

Nothing is counted twice: a scrape reads the same native snapshots ``get_metrics()`` and
``get_model_info()`` read, so the request path does no work for Prometheus. The module
imports ``prometheus_client``; nothing else in the package does.

One process::

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> from agenticaiframework.llms import LLMManager
    >>> from agenticaiframework.llms.prometheus import LLMCollector
    >>> llm = LLMManager()
    >>> llm.register_model("echo", lambda prompt, kwargs: prompt)
    >>> llm.set_active_model("echo")
    >>> llm.generate("hi")
    'hi'
    >>> registry = CollectorRegistry()
    >>> registry.register(LLMCollector(llm))
    >>> b'agenticai_requests_total{outcome="success"} 1.0' in generate_latest(registry)
    True

Several worker processes on one host (uvicorn ``--workers``, gunicorn): each worker runs a
:class:`SnapshotWriter` (a background thread writes its snapshot to a file of its own in a
shared directory every ``interval`` seconds and at exit), and whichever process serves
``/metrics`` registers a :class:`HostCollector` over that directory, which sums them. The
README's Prometheus section compares this with the alternatives.

Labels are bounded: ``model`` (registered names), ``outcome``, ``tier``, ``type``,
``state``. No prompt, kwarg or metadata value ever becomes a label.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .._native import ModelStats
from . import _fork
from .manager import LLMManager

logger = logging.getLogger("agenticaiframework.llms")

#: Upper bounds (seconds) of the latency histograms: LLM calls run from milliseconds (a
#: local model, a cached provider) to minutes (long generations).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

#: A breaker's states, as ``get_model_info()["circuit_breaker_state"]`` names them.
STATES = ("closed", "open", "half-open")
OUTCOMES = ("success", "failure", "cancelled")
TIERS = ("l1", "l2")
TOKEN_TYPES = ("prompt", "completion")

# A snapshot is plain data (JSON as written by SnapshotWriter): "counters" and each model's
# counters and histograms are summed across managers and processes; "gauges" and each
# model's "states" are summed across live ones only.
Snapshot = dict[str, Any]
_VERSION = 1


def _check_buckets(name: str, buckets: Iterable[float]) -> tuple[float, ...]:
    out = tuple(float(b) for b in buckets)
    if not out:
        raise ValueError(f"{name} must hold at least one bound")
    ModelStats().latency_buckets(out)  # the native rule: finite, >= 0, increasing
    return out


def take(
    managers: Sequence[LLMManager], buckets: Sequence[float], ttfc_buckets: Sequence[float]
) -> Snapshot:
    """One snapshot of ``managers`` (summed), with histograms at these bounds."""
    snaps = [_take_one(m, buckets, ttfc_buckets) for m in managers]
    out = snaps[0]
    for s in snaps[1:]:
        out = _merge(out, s)
    return out


def _take_one(llm: LLMManager, buckets: Sequence[float], ttfc: Sequence[float]) -> Snapshot:
    m = llm.get_metrics()
    done = m["successful_requests"] + m["failed_requests"] + m["cancelled_requests"]
    models: dict[str, Any] = {}
    for model in list(llm._models.values()):
        s = model.stats.snapshot()
        cost = None
        if model.cost_in is not None or model.cost_out is not None:
            # As get_model_info() computes it: prices are per 1,000 tokens.
            cost = (
                s["prompt_tokens"] * (model.cost_in or 0.0)
                + s["completion_tokens"] * (model.cost_out or 0.0)
            ) / 1000.0
        state = model.breaker.state
        models[model.name] = {
            "attempts": {
                "success": s["successes"],
                "failure": s["failures"],
                "cancelled": s["cancelled"],
            },
            "retries": s["retries"],
            "short_circuits": s["short_circuits"],
            "hedged": s["hedged_requests"],
            "hedge_wins": s["hedge_wins"],
            "tokens": {"prompt": s["prompt_tokens"], "completion": s["completion_tokens"]},
            "cost": cost,
            "latency": list(model.stats.latency_buckets(buckets)),
            "ttfc": list(model.stats.ttfc_buckets(ttfc)),
            "states": {st: int(st == state) for st in STATES},
        }
    return {
        "v": _VERSION,
        "buckets": list(buckets),
        "ttfc_buckets": list(ttfc),
        "counters": {
            "requests": {
                "success": m["successful_requests"],
                "failure": m["failed_requests"],
                "cancelled": m["cancelled_requests"],
            },
            "cache_hits": {"l1": m["cache_hits"], "l2": m["l2_hits"]},
            "cache_misses": {"l1": m["cache_misses"], "l2": m["l2_misses"]},
            "retries": m["total_retries"],
            "retries_denied": m["retries_denied"],
            "fallbacks": m["fallbacks"],
            "coalesced": m["coalesced_requests"],
            "fleet_errors": m["fleet_errors"],
        },
        "gauges": {
            # Outcomes are read before starts (src/metrics.rs), so this is never negative.
            "in_flight": m["total_requests"] - done,
            "cache_entries": m["cache_size"],
        },
        "models": models,
    }


def _merge(a: Snapshot, b: Snapshot) -> Snapshot:
    """Two snapshots' figures summed (the bounds are ``a``'s: the caller checked them)."""
    out = dict(a)
    for key in ("counters", "gauges", "models"):
        v = _add(a.get(key), b.get(key))
        if v is None:
            out.pop(key, None)
        else:
            out[key] = v
    return out


def _add(a: Any, b: Any) -> Any:
    """Sums two snapshots' figures: numbers, dicts by key, lists (histograms) by index."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _add(out.get(k), v)
        return out
    if isinstance(a, list):
        return [_add(x, y) for x, y in zip(a, b, strict=True)]
    return a + b


def _without_gauges(snap: Snapshot) -> Snapshot:
    """An exited worker's snapshot: its counters and histograms, none of its gauges."""
    out = {k: v for k, v in snap.items() if k != "gauges"}
    out["models"] = {
        name: {k: v for k, v in m.items() if k != "states"}
        for name, m in snap.get("models", {}).items()
    }
    return out


def _go(b: float) -> str:
    """An ``le`` label as prometheus_client's own histograms write it."""
    return str(floatToGoString(b))  # type: ignore[no-untyped-call]


class _Families:
    """Turns a snapshot into metric families; the names are fixed at construction."""

    def __init__(self, namespace: str, buckets: Sequence[float], ttfc: Sequence[float]) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("namespace must be a non-empty str")
        self.ns = namespace
        self.buckets = tuple(buckets)
        self.ttfc = tuple(ttfc)
        self._le = [_go(b) for b in self.buckets] + ["+Inf"]
        self._ttfc_le = [_go(b) for b in self.ttfc] + ["+Inf"]

    def build(self, snap: Snapshot | None) -> list[Metric]:
        ns = self.ns
        req = CounterMetricFamily(
            f"{ns}_requests",
            "Requests finished, by outcome (a cache hit is a success).",
            labels=["outcome"],
        )
        in_flight = GaugeMetricFamily(
            f"{ns}_requests_in_flight", "Requests begun and not yet finished."
        )
        hits = CounterMetricFamily(
            f"{ns}_cache_hits",
            "Cache hits by tier (l1: in process, l2: the fleet's Redis).",
            labels=["tier"],
        )
        misses = CounterMetricFamily(
            f"{ns}_cache_misses",
            "Cache misses by tier (l1: in process, l2: the fleet's Redis).",
            labels=["tier"],
        )
        entries = GaugeMetricFamily(f"{ns}_cache_entries", "Answers held in the L1 cache.")
        retries = CounterMetricFamily(
            f"{ns}_retries", "Attempts after a model's first, over finished requests."
        )
        denied = CounterMetricFamily(
            f"{ns}_retries_denied",
            "Retries the retry budget refused (the request moved to its next model).",
        )
        fallbacks = CounterMetricFamily(
            f"{ns}_fallbacks", "Moves to the next model of a route, over finished requests."
        )
        coalesced = CounterMetricFamily(
            f"{ns}_coalesced_requests",
            "Requests answered by an identical request in flight (single-flight).",
        )
        fleet_errors = CounterMetricFamily(
            f"{ns}_fleet_errors", "Failed round trips to the fleet's Redis."
        )
        attempts = CounterMetricFamily(
            f"{ns}_model_attempts",
            "Attempts on a model that ended, by outcome.",
            labels=["model", "outcome"],
        )
        m_retries = CounterMetricFamily(
            f"{ns}_model_retries", "Attempts on a model that were retries.", labels=["model"]
        )
        short = CounterMetricFamily(
            f"{ns}_model_short_circuits",
            "Times a model was skipped because its breaker was open.",
            labels=["model"],
        )
        hedged = CounterMetricFamily(
            f"{ns}_model_hedged_requests",
            "Hedges started on a model (the request's other attempt had not answered).",
            labels=["model"],
        )
        hedge_wins = CounterMetricFamily(
            f"{ns}_model_hedge_wins",
            "Hedges on a model that answered first.",
            labels=["model"],
        )
        tokens = CounterMetricFamily(
            f"{ns}_tokens",
            "Tokens of a model's answered attempts, by type (prompt, completion).",
            labels=["model", "type"],
        )
        cost = CounterMetricFamily(
            f"{ns}_cost_usd",
            "Cost in USD of a priced model's tokens (metadata cost_per_1k_*tokens).",
            labels=["model"],
        )
        breaker = GaugeMetricFamily(
            f"{ns}_circuit_breaker_state",
            "Breakers of a model in each state: 1 for the current state and 0 for the "
            "others in one process; summed over live workers by HostCollector.",
            labels=["model", "state"],
        )
        latency = HistogramMetricFamily(
            f"{ns}_attempt_latency_seconds",
            "Latency of a model's attempts that ended in success or failure.",
            labels=["model"],
        )
        ttfc = HistogramMetricFamily(
            f"{ns}_time_to_first_chunk_seconds",
            "Time to the first chunk of a model's streamed attempts.",
            labels=["model"],
        )
        out: list[Metric] = [req, in_flight, hits, misses, entries, retries, fallbacks]
        out += [coalesced, fleet_errors, attempts, m_retries, short, tokens, cost, breaker]
        out += [latency, ttfc, denied, hedged, hedge_wins]
        if snap is None:
            return out  # describe(): names only
        c = snap["counters"]
        for o in OUTCOMES:
            req.add_metric([o], c["requests"][o])
        for t in TIERS:
            hits.add_metric([t], c["cache_hits"][t])
            misses.add_metric([t], c["cache_misses"][t])
        retries.add_metric([], c["retries"])
        denied.add_metric([], c.get("retries_denied", 0))  # absent in older workers' files
        fallbacks.add_metric([], c["fallbacks"])
        coalesced.add_metric([], c["coalesced"])
        fleet_errors.add_metric([], c["fleet_errors"])
        g = snap.get("gauges")
        if g is not None:
            in_flight.add_metric([], g["in_flight"])
            entries.add_metric([], g["cache_entries"])
        same_buckets = list(self.buckets) == snap["buckets"]
        same_ttfc = list(self.ttfc) == snap["ttfc_buckets"]
        for name, m in snap["models"].items():
            for o in OUTCOMES:
                attempts.add_metric([name, o], m["attempts"][o])
            m_retries.add_metric([name], m["retries"])
            short.add_metric([name], m["short_circuits"])
            hedged.add_metric([name], m.get("hedged", 0))  # absent in older workers' files
            hedge_wins.add_metric([name], m.get("hedge_wins", 0))
            for t in TOKEN_TYPES:
                tokens.add_metric([name, t], m["tokens"][t])
            if m["cost"] is not None:
                cost.add_metric([name], m["cost"])
            # A model seen only in exited workers' files has no breaker anywhere: zeros.
            states = m.get("states") or {}
            for st in STATES:
                breaker.add_metric([name, st], states.get(st, 0))
            if same_buckets and "latency" in m:
                _histogram(latency, name, self._le, m["latency"])
            if same_ttfc and "ttfc" in m:
                _histogram(ttfc, name, self._ttfc_le, m["ttfc"])
        return out


def _histogram(family: HistogramMetricFamily, model: str, le: list[str], h: list[Any]) -> None:
    cumulative, count, total = h
    family.add_metric([model], list(zip(le, [*cumulative, count], strict=True)), sum_value=total)


class LLMCollector(Collector):
    """A ``prometheus_client`` collector of one or more managers in this process, read
    at scrape time (figures of several managers are summed, by model name for the
    per-model ones). Register it: ``registry.register(LLMCollector(llm))``.

    ``buckets`` are the latency histograms' upper bounds in seconds (``ttfc_buckets``
    those of time to first chunk; by default the same). The native histogram has 64
    sub-buckets per power of two; one that straddles a bound is counted under it, so a
    bucket ``le=b`` holds every attempt of at most ``b`` seconds and possibly some of
    ``b``'s own native bucket above it (at most ``b / 64`` above ``b``, 1.6%).

    >>> llm = LLMManager()
    >>> [f.name for f in LLMCollector(llm).describe()][:2]
    ['agenticai_requests', 'agenticai_requests_in_flight']
    """

    def __init__(
        self,
        manager: LLMManager,
        *more: LLMManager,
        namespace: str = "agenticai",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        ttfc_buckets: Iterable[float] | None = None,
    ) -> None:
        managers = (manager, *more)
        for m in managers:
            if not isinstance(m, LLMManager):
                raise TypeError(f"expected an LLMManager, not {type(m).__name__}")
        self.managers = managers
        self.buckets = _check_buckets("buckets", buckets)
        self.ttfc_buckets = (
            self.buckets if ttfc_buckets is None else _check_buckets("ttfc_buckets", ttfc_buckets)
        )
        self._families = _Families(namespace, self.buckets, self.ttfc_buckets)

    def snapshot(self) -> Snapshot:
        """The figures a scrape now reports, as plain data (what SnapshotWriter writes)."""
        return take(self.managers, self.buckets, self.ttfc_buckets)

    def describe(self) -> Iterable[Metric]:
        return self._families.build(None)

    def collect(self) -> Iterable[Metric]:
        return self._families.build(self.snapshot())


class SnapshotWriter:
    """Writes this process's snapshot of ``managers`` to ``directory/<pid>-<token>.json``
    from a daemon thread every ``interval`` seconds, and once more at exit (atexit, or
    :meth:`close`), for a :class:`HostCollector` in another process to sum. Nothing runs
    on the request path. Each write is atomic (a temporary file, then ``os.replace``).

    Start it in each worker (a forked child starts its own: a new file, counters from
    zero). A worker that dies without ``close`` leaves its last periodic snapshot: its
    counters stay in the host's sums (up to ``interval`` seconds of them are lost), its
    gauges leave with its pid.

    >>> import tempfile
    >>> w = SnapshotWriter(LLMManager(), directory=tempfile.mkdtemp(), interval=60)
    >>> w.close()
    """

    def __init__(
        self,
        manager: LLMManager,
        *more: LLMManager,
        directory: str | os.PathLike[str],
        interval: float = 5.0,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        ttfc_buckets: Iterable[float] | None = None,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise TypeError("interval must be a number of seconds")
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a finite number of seconds > 0, got {interval}")
        self._collector = LLMCollector(manager, *more, buckets=buckets, ttfc_buckets=ttfc_buckets)
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.interval = float(interval)
        self._lock = threading.Lock()
        self._closed = False
        self._start()
        _fork.register(self)
        atexit.register(self.close)

    def _start(self) -> None:
        self.path = os.path.join(self.directory, f"{os.getpid()}-{secrets.token_hex(4)}.json")
        self._stop = threading.Event()
        self.write()
        self._thread = threading.Thread(
            target=self._run, name="agenticai-prometheus-snapshots", daemon=True
        )
        self._thread.start()

    def _after_fork(self) -> None:
        """A forked child: a file of its own and a thread of its own (the parent's thread
        does not exist here; the manager's counters were reset)."""
        self._lock = threading.Lock()
        if not self._closed:
            self._start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            try:
                self.write()
            except Exception:  # a full disk must not end the thread
                logger.exception("writing the Prometheus snapshot %s failed", self.path)

    def write(self, final: bool = False) -> None:
        """Writes the snapshot now (``final``: this process is done; gauges are dropped)."""
        snap = self._collector.snapshot()
        snap["pid"] = os.getpid()
        snap["written"] = time.time()
        snap["final"] = final
        data = json.dumps(snap, separators=(",", ":"))  # one write, not json.dump's many
        with self._lock:
            tmp = os.path.join(self.directory, f".{os.path.basename(self.path)}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, self.path)

    def close(self) -> None:
        """Stops the thread and writes the final snapshot (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.interval + 5)
        try:
            self.write(final=True)
        except Exception:
            logger.exception("writing the final Prometheus snapshot %s failed", self.path)
        atexit.unregister(self.close)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


class HostCollector(Collector):
    """Sums the snapshots that :class:`SnapshotWriter` s write into ``directory``: one
    scrape sees every worker of the host. Counters and histograms are summed over every
    file, exited workers' included (so they never go backwards); gauges (breaker states,
    cache entries, requests in flight) over live workers only: a file not marked final
    whose pid exists. Also reports ``<namespace>_worker_processes{state="live"|"exited"}``.

    Clear the directory when the server (re)starts: files of exited workers are kept
    (their counts are part of the host's totals) until then. Histograms of a file written
    with other bounds are left out (its counters are not).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        namespace: str = "agenticai",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        ttfc_buckets: Iterable[float] | None = None,
    ) -> None:
        self.directory = os.fspath(directory)
        self.buckets = _check_buckets("buckets", buckets)
        self.ttfc_buckets = (
            self.buckets if ttfc_buckets is None else _check_buckets("ttfc_buckets", ttfc_buckets)
        )
        self._families = _Families(namespace, self.buckets, self.ttfc_buckets)
        self._warned: set[str] = set()

    def _files(self) -> Iterator[Snapshot]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as f:
                    snap = json.load(f)
            except (OSError, ValueError):
                if name not in self._warned:
                    self._warned.add(name)
                    logger.warning("skipping unreadable Prometheus snapshot %s", name)
                continue
            if not isinstance(snap, dict) or snap.get("v") != _VERSION:
                continue
            yield snap

    def snapshot(self) -> tuple[Snapshot | None, int, int]:
        """The host's sum, and how many workers are live and exited."""
        total: Snapshot | None = None
        live = exited = 0
        for snap in self._files():
            if not snap.get("final") and _alive(int(snap.get("pid", 0))):
                live += 1
            else:
                exited += 1
                snap = _without_gauges(snap)
            if snap["buckets"] != list(self.buckets) or (
                snap["ttfc_buckets"] != list(self.ttfc_buckets)
            ):
                snap = _other_bounds(snap)
            total = snap if total is None else _merge(total, snap)
        if total is not None:
            total["buckets"], total["ttfc_buckets"] = list(self.buckets), list(self.ttfc_buckets)
            total.setdefault("gauges", {"in_flight": 0, "cache_entries": 0})
        return total, live, exited

    def describe(self) -> Iterable[Metric]:
        return [*self._families.build(None), self._workers(0, 0)]

    def collect(self) -> Iterable[Metric]:
        total, live, exited = self.snapshot()
        if total is None:
            return [self._workers(0, 0)]
        return [*self._families.build(total), self._workers(live, exited)]

    def _workers(self, live: int, exited: int) -> Metric:
        g = GaugeMetricFamily(
            f"{self._families.ns}_worker_processes",
            "Worker processes whose snapshots are summed, live or exited.",
            labels=["state"],
        )
        g.add_metric(["live"], live)
        g.add_metric(["exited"], exited)
        return g


def _other_bounds(snap: Snapshot) -> Snapshot:
    """A snapshot whose histograms cannot be summed with ours: without them."""
    models = {}
    for name, m in snap["models"].items():
        m = dict(m)
        m.pop("latency", None)
        m.pop("ttfc", None)
        models[name] = m
    return {**snap, "models": models}


def serve(
    source: LLMManager | Collector,
    port: int,
    addr: str = "127.0.0.1",
) -> tuple[Any, threading.Thread]:
    """Serves ``/metrics`` of a manager (or of any collector, e.g. a HostCollector) on a
    daemon thread; returns ``(server, thread)`` (``server.shutdown()`` stops it, and
    ``server.server_port`` is the port when 0 was asked for). A registry of its own, so
    nothing else registered in the process is exposed."""
    registry = CollectorRegistry()
    registry.register(LLMCollector(source) if isinstance(source, LLMManager) else source)
    server, thread = start_http_server(port, addr, registry=registry)
    return server, thread


__all__ = [
    "DEFAULT_BUCKETS",
    "HostCollector",
    "LLMCollector",
    "SnapshotWriter",
    "serve",
]
