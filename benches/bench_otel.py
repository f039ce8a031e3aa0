"""What OpenTelemetry (llms/otel.py) adds to a first-try call, beside the floor: a bare OTel
span around a bare function call, with the same SDK, interleaved in one process.

    .venv/bin/python benches/bench_otel.py [--rounds 9] [--n 3000]

Every side is timed once per round, the order rotating; the table gives the median
microseconds per call over the rounds. The sides:

- ``plain``: ``generate(prompt, use_cache=False)`` on a manager without subscribers (each
  call is a first try: the model is called and booked, nothing is cached).
- ``events``: the same with one subscriber that does nothing (the event hook's own cost).
- ``otel``: the same with ``instrument()``: an SDK ``TracerProvider`` whose one span
  processor drops every span, a ``MeterProvider`` with an in-memory reader (never
  collected while timing). Two spans (request, attempt) and four histogram records a call.
- ``floor``: ``with tracer.start_as_current_span("x"): f()``, same provider, ``f`` a bare
  function.

The added cost is ``otel - plain``; its ratio to the floor says how many bare spans it is
worth. ``agenerate`` sides run the same way on one event loop. A benchmark, not a test:
nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from agenticaiframework.llms import LLMManager
from agenticaiframework.llms.otel import instrument


class Drop(SpanProcessor):
    """Ends every span into nothing: the SDK's full span path, no export."""

    def on_end(self, span: ReadableSpan) -> None:
        return None


def per_call(f: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e6


async def aper_call(f: Callable[[], Awaitable[Any]], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await f()
    return (time.perf_counter() - t0) / n * 1e6


def answer(p: str, k: dict[str, Any]) -> str:
    return "an answer"


async def aanswer(p: str, k: dict[str, Any]) -> str:
    return "an answer"


def bare() -> str:
    return "an answer"


def manager() -> LLMManager:
    m = LLMManager()
    m.register_model("m", answer)
    m.register_model("am", aanswer)
    m.set_active_model("m")
    return m


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    rounds, n = args.rounds, args.n

    tp = TracerProvider()
    tp.add_span_processor(Drop())
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer = tp.get_tracer("bench")

    plain, events, traced = manager(), manager(), manager()
    events.subscribe(lambda e: None)
    instrument(traced, tracer_provider=tp, meter_provider=mp)

    def floor() -> None:
        with tracer.start_as_current_span("x"):
            bare()

    sync: dict[str, Callable[[], Any]] = {
        "plain": lambda: plain.generate("p", False),
        "events": lambda: events.generate("p", False),
        "otel": lambda: traced.generate("p", False),
        "floor": floor,
    }
    for m in (plain, events, traced):
        m.set_active_model("am")

    async def afloor() -> None:
        with tracer.start_as_current_span("x"):
            await aanswer("p", {})

    asyn: dict[str, Callable[[], Awaitable[Any]]] = {
        "plain": lambda: plain.agenerate("p", False),
        "events": lambda: events.agenerate("p", False),
        "otel": lambda: traced.agenerate("p", False),
        "floor": afloor,
    }

    def run_sync() -> dict[str, list[float]]:
        for m in (plain, events, traced):
            m.set_active_model("m")
        out: dict[str, list[float]] = {k: [] for k in sync}
        names = list(sync)
        for f in sync.values():
            per_call(f, n // 10)  # warm
        for r in range(rounds):
            for k in names[r % len(names) :] + names[: r % len(names)]:
                out[k].append(per_call(sync[k], n))
        return out

    async def run_async() -> dict[str, list[float]]:
        for m in (plain, events, traced):
            m.set_active_model("am")
        out: dict[str, list[float]] = {k: [] for k in asyn}
        names = list(asyn)
        for f in asyn.values():
            await aper_call(f, n // 10)
        for r in range(rounds):
            for k in names[r % len(names) :] + names[: r % len(names)]:
                out[k].append(await aper_call(asyn[k], n))
        return out

    print(f"{rounds} rounds of {n} calls, medians, microseconds per call")
    for title, res in (
        ("generate (sync model)", run_sync()),
        ("agenerate (async model)", asyncio.run(run_async())),
    ):
        med = {k: statistics.median(v) for k, v in res.items()}
        added, hook = med["otel"] - med["plain"], med["events"] - med["plain"]
        print(f"\n{title}")
        print("| side | us/call |")
        print("|---|---:|")
        for k in ("plain", "events", "otel", "floor"):
            print(f"| {k} | {med[k]:.2f} |")
        print(f"| otel - plain (added by OTel) | {added:.2f} |")
        print(f"| events - plain (the hook alone) | {hook:.2f} |")
        print(f"| added / floor | {added / med['floor']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
