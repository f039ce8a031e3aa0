"""Hedged requests against a simulated heavy-tailed provider: ``demo --hedging``, and the
scenario ``benches/hedging_sim.py`` measures (issue 18).

The provider takes a lognormal time per call (median, sigma), and a share of calls (the
stragglers) take ``factor`` times that. One model with two deployments of it (independent
draws), so a hedge goes to the other deployment. Clients send requests one after another
through ``agenerate``; a request's latency is the event loop's clock around it. Real
asyncio time: the ``p95`` policy reads the model's native latency histogram, which the
native core times on the process's monotonic clock (a virtual-time loop would leave it at
zero).
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from typing import Any, TextIO

from .manager import LLMManager


@dataclass(frozen=True)
class Scenario:
    requests: int = 3000
    concurrency: int = 32
    median: float = 0.05  # seconds
    sigma: float = 0.4
    stragglers: float = 0.05
    factor: float = 10.0
    seed: int = 1


class Provider:
    """A simulated upstream: lognormal latency, a share of stragglers at ``factor`` x."""

    def __init__(self, rng: random.Random, s: Scenario) -> None:
        self.rng = rng
        self.s = s
        self.calls = 0

    async def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.calls += 1
        s, rng = self.s, self.rng
        t = s.median * math.exp(s.sigma * rng.gauss(0.0, 1.0))
        if rng.random() < s.stragglers:
            t *= s.factor
        await asyncio.sleep(t)
        return "ok"


@dataclass
class Result:
    policy: str
    latencies: list[float] = field(repr=False)
    calls: int
    hedged: int
    wins: int

    def q(self, q: float) -> float:
        """Nearest-rank quantile of the request latencies, in seconds."""
        s = sorted(self.latencies)
        return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]

    @property
    def extra(self) -> float:
        """Upstream calls beyond one per request, as a share of the requests."""
        return (self.calls - len(self.latencies)) / len(self.latencies)


def label(hedge: float | str | None) -> str:
    if hedge is None:
        return "off"
    return hedge if isinstance(hedge, str) else f"{hedge * 1e3:g} ms"


async def scenario(s: Scenario, hedge: float | str | None) -> Result:
    m = LLMManager(enable_caching=False, hedge_after=hedge)
    p1, p2 = Provider(random.Random(s.seed), s), Provider(random.Random(s.seed + 1), s)
    m.register_model("m", p1)
    m.add_deployment("m", p2)
    m.set_active_model("m")
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    left = s.requests

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = loop.time()
            await m.agenerate("p")
            latencies.append(loop.time() - t0)

    await asyncio.gather(*(client() for _ in range(s.concurrency)))
    st = m.get_model_info("m")["stats"]
    return Result(
        label(hedge), latencies, p1.calls + p2.calls, st["hedged_requests"], st["hedge_wins"]
    )


def policies(s: Scenario, fixed: float) -> list[float | str | None]:
    return [None, fixed, "p95"]


def run_all(s: Scenario, fixed: float) -> list[Result]:
    return [asyncio.run(scenario(s, h)) for h in policies(s, fixed)]


def run_hedging(out: TextIO, requests: int, concurrency: int, seed: int, scale: float) -> int:
    """``demo --hedging``: the three policies, a table of 80 columns at most."""
    s = Scenario(requests, concurrency, 0.05 * scale, seed=seed)
    fixed = 0.1 * scale
    print(
        f"hedged requests: {requests} prompts, {concurrency} clients, agenerate\n"
        f"  provider: lognormal, median {s.median * 1e3:.3g} ms; {s.stragglers:.0%} "
        f"of calls take {s.factor:g}x\n"
        f"  one model, two deployments; hedging off, after {fixed * 1e3:.3g} ms, p95",
        file=out,
        flush=True,
    )
    res = run_all(s, fixed)
    off = res[0].q(0.99)
    print(
        f"\n{'hedging':<10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'p99/off':>9}"
        f"{'extra':>8}{'hedges':>8}{'won':>6}",
        file=out,
    )
    for r in res:
        print(
            f"{r.policy:<10}{r.q(0.5) * 1e3:>9.1f}{r.q(0.99) * 1e3:>9.1f}"
            f"{r.q(0.999) * 1e3:>10.1f}{r.q(0.99) / off:>9.2f}{r.extra:>8.1%}"
            f"{r.hedged:>8}{r.wins:>6}",
            file=out,
        )
    print(
        "\nextra: upstream calls beyond one per request; hedges: started (won:\n"
        "answered first). Figures: `make bench-hedging` (BENCHMARKS.md).",
        file=out,
    )
    return 0
