"""One Prometheus scrape (collect + generate_latest) of a manager with 100 models that
have traffic, against the floor: generate_latest of a registry of plain prometheus_client
metrics holding the same series (same names, labels, buckets), interleaved in one process.

    .venv/bin/python benches/bench_prometheus.py [--rounds 9] [--models 100]

Reports the median milliseconds per scrape over the rounds, and each figure as a ratio to
the floor: the whole scrape; our collect() alone (snapshots read and families built); the
native snapshots alone (the part that reads the counters); a HostCollector scrape of 4
workers' snapshot files of the same size; and one SnapshotWriter write (a worker's
background tick, every ``interval`` seconds). A benchmark, not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

from agenticaiframework.llms import LLMManager
from agenticaiframework.llms.prometheus import (
    DEFAULT_BUCKETS,
    STATES,
    HostCollector,
    LLMCollector,
    SnapshotWriter,
)


class Model:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        return f"{self.name}: {prompt}"

    def stream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        yield f"{self.name}: "
        yield prompt


def manager(models: int) -> LLMManager:
    llm = LLMManager(sleep=lambda s: None)
    for i in range(models):
        name = f"model-{i:03d}"
        llm.register_model(name, Model(name), {"cost_per_1k_tokens": 0.001 * i})
        llm.set_active_model(name)
        for j in range(20):
            llm.generate(f"prompt {j}")
        for j in range(3):
            "".join(llm.stream(f"streamed {j}"))
    return llm


def floor_registry(llm: LLMManager) -> CollectorRegistry:
    """The same series as plain prometheus_client metrics (values set once), without the
    ``_created`` series that ours do not have."""
    disable_created_metrics()
    r = CollectorRegistry()
    ns = "agenticai"
    req = Counter(f"{ns}_requests", "", ["outcome"], registry=r)
    for o in ("success", "failure", "cancelled"):
        req.labels(o).inc(1)
    Gauge(f"{ns}_requests_in_flight", "", registry=r).set(0)
    for name in ("cache_hits", "cache_misses"):
        c = Counter(f"{ns}_{name}", "", ["tier"], registry=r)
        for t in ("l1", "l2"):
            c.labels(t).inc(1)
    Gauge(f"{ns}_cache_entries", "", registry=r).set(1)
    for name in ("retries", "fallbacks", "coalesced_requests", "fleet_errors"):
        Counter(f"{ns}_{name}", "", registry=r).inc(1)
    attempts = Counter(f"{ns}_model_attempts", "", ["model", "outcome"], registry=r)
    retries = Counter(f"{ns}_model_retries", "", ["model"], registry=r)
    short = Counter(f"{ns}_model_short_circuits", "", ["model"], registry=r)
    tokens = Counter(f"{ns}_tokens", "", ["model", "type"], registry=r)
    cost = Counter(f"{ns}_cost_usd", "", ["model"], registry=r)
    state = Gauge(f"{ns}_circuit_breaker_state", "", ["model", "state"], registry=r)
    lat = Histogram(
        f"{ns}_attempt_latency_seconds", "", ["model"], buckets=DEFAULT_BUCKETS, registry=r
    )
    ttfc = Histogram(
        f"{ns}_time_to_first_chunk_seconds", "", ["model"], buckets=DEFAULT_BUCKETS, registry=r
    )
    for name in llm.list_models():
        for o in ("success", "failure", "cancelled"):
            attempts.labels(name, o).inc(1)
        retries.labels(name).inc(1)
        short.labels(name).inc(1)
        for t in ("prompt", "completion"):
            tokens.labels(name, t).inc(1)
        cost.labels(name).inc(1)
        for s in STATES:
            state.labels(name, s).set(1)
        lat.labels(name).observe(0.001)
        ttfc.labels(name).observe(0.001)
    return r


def series(text: str) -> int:
    return sum(len(f.samples) for f in text_string_to_metric_families(text))


def per_call(f: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--models", type=int, default=100)
    p.add_argument("--n", type=int, default=20, help="scrapes per round and side")
    args = p.parse_args()

    llm = manager(args.models)
    ours = CollectorRegistry()
    collector = LLMCollector(llm)
    ours.register(collector)
    floor = floor_registry(llm)
    with tempfile.TemporaryDirectory() as d:
        writers = [SnapshotWriter(llm, directory=d, interval=3600) for _ in range(4)]
        host = CollectorRegistry()
        host.register(HostCollector(d))
        ours_text, floor_text = generate_latest(ours).decode(), generate_latest(floor).decode()
        sides: dict[str, Callable[[], object]] = {
            "floor: generate_latest, plain metrics": lambda: generate_latest(floor),
            "scrape: LLMCollector + generate_latest": lambda: generate_latest(ours),
            "collect() alone": lambda: list(collector.collect()),
            "native snapshots alone": collector.snapshot,
            "scrape: HostCollector, 4 workers' files": lambda: generate_latest(host),
            "SnapshotWriter.write() (a worker's tick)": writers[0].write,
        }
        times: dict[str, list[float]] = {k: [] for k in sides}
        for f in sides.values():
            f()  # warm
        for _ in range(args.rounds):
            for k, f in sides.items():
                times[k].append(per_call(f, args.n))
        for w in writers:
            w.close()
    print(
        f"{args.models} models; series (samples) per scrape: ours {series(ours_text)}, "
        f"floor {series(floor_text)}; exposition {len(ours_text) / 1024:.0f} KiB; "
        f"median of {args.rounds} rounds x {args.n} scrapes"
    )
    base = statistics.median(times["floor: generate_latest, plain metrics"])
    print(f"{'':<42} {'ms/scrape':>10} {'x floor':>8}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:<42} {med:>10.3f} {med / base:>8.2f}")


if __name__ == "__main__":
    main()
