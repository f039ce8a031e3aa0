"""An outage, simulated on a virtual clock: the retry budget's proof (issue 18).

``clients`` concurrent clients (asyncio tasks) send requests one after another through
one manager whose route is ``primary -> fallback``. The primary fails every call (a 503
after ``fail_latency`` s) from ``outage[0]`` to ``outage[1]`` and answers after
``latency`` s otherwise; the fallback answers after ``fallback_latency`` s. A client
waits an exponential time of mean ``think`` between its requests (seeded). The event
loop's clock is virtual (a sleep advances it, nothing waits for real), and the manager
runs on it (``clock=``; its backoff sleeps are the loop's). The breaker is kept out of
the way (its threshold at the maximum, 16,383 failures in a row, and reset every
simulated second, so it never opens): what is measured is what retries do
to a provider that is down before, or without, a breaker opening.

Counted per request, by the second it started in: its upstream attempts on the primary,
and in all. Used by ``benches/retry_budget_sim.py`` (the figures and the plot in
BENCHMARKS.md) and ``python -m agenticaiframework.llms demo --retry-budget``.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from dataclasses import dataclass, field
from typing import Any, TextIO

from ._validate import MAX_FAILURE_THRESHOLD
from .errors import ProviderError
from .manager import LLMManager


class _Selector(selectors.DefaultSelector):
    """A selector that never blocks: the time it would have waited is added to the
    loop's virtual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self.now += timeout
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``asyncio.sleep(10)`` takes no real time."""

    def __init__(self) -> None:
        self._vsel = _Selector()
        super().__init__(self._vsel)

    def time(self) -> float:
        return self._vsel.now


@dataclass
class Scenario:
    clients: int = 1000
    duration: float = 60.0
    outage: tuple[float, float] = (10.0, 40.0)
    latency: float = 0.1
    fail_latency: float = 0.02
    fallback_latency: float = 0.08
    think: float = 0.4  # mean seconds a client waits between its requests (exponential)
    seed: int = 1
    max_retries: int = 3
    backoff_base: float = 0.05
    backoff_max: float = 1.0


@dataclass
class Run:
    """Per second of request start: requests, attempts on the primary, attempts in all;
    and the manager's final metrics."""

    label: str
    requests: list[int] = field(default_factory=list)
    primary: list[int] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def per_request(self, lo: float, hi: float, of: str = "primary") -> float:
        """Attempts per request (on the primary, or ``of="attempts"`` in all) of the
        requests that started in seconds [lo, hi)."""
        col = self.primary if of == "primary" else self.attempts
        n = sum(self.requests[int(lo) : int(hi)])
        return sum(col[int(lo) : int(hi)]) / n if n else 0.0


def simulate(s: Scenario, label: str, **budget: Any) -> Run:
    """One run of ``s``; ``budget``: the manager's ``retry_budget=`` and
    ``min_retries_per_second=`` (none: no budget)."""
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(_run(s, label, loop, budget))
    finally:
        loop.close()


async def _run(s: Scenario, label: str, loop: VirtualLoop, budget: dict[str, Any]) -> Run:
    n = int(s.duration) + 1
    run = Run(label, [0] * n, [0] * n, [0] * n)
    m = LLMManager(
        max_retries=s.max_retries,
        enable_caching=False,
        clock=loop.time,
        # The breaker out of the way: reset every simulated second (_keep_closed), it
        # never reaches its threshold of failures in a row.
        failure_threshold=MAX_FAILURE_THRESHOLD,
        backoff_base=s.backoff_base,
        backoff_max=s.backoff_max,
        jitter="full",
        **budget,
    )
    lo, hi = s.outage

    async def primary(prompt: str, kw: dict[str, Any]) -> str:
        sec = kw["sec"]
        run.primary[sec] += 1
        run.attempts[sec] += 1
        now = loop.time()
        if lo <= now < hi:
            await asyncio.sleep(s.fail_latency)
            raise ProviderError("503 service unavailable", status=503)
        await asyncio.sleep(s.latency)
        return "ok"

    async def fallback(prompt: str, kw: dict[str, Any]) -> str:
        run.attempts[kw["sec"]] += 1
        await asyncio.sleep(s.fallback_latency)
        return "ok"

    m.register_model("primary", primary)
    m.register_model("fallback", fallback)
    m.set_active_model("primary")
    m.set_fallback_chain(["fallback"])

    rng = random.Random(s.seed)

    async def client(c: int) -> None:
        # Clients start spread over the first second, not in one instant.
        await asyncio.sleep(c / s.clients)
        i = 0
        while (now := loop.time()) < s.duration:
            sec = int(now)
            run.requests[sec] += 1
            try:
                await m.agenerate(f"{c}:{i}", sec=sec)
            except Exception:
                pass  # counted in the metrics
            i += 1
            if s.think:
                await asyncio.sleep(rng.expovariate(1.0 / s.think))

    async def keep_closed() -> None:
        while loop.time() < s.duration:
            m.reset_circuit_breaker("primary")
            await asyncio.sleep(1.0)

    await asyncio.gather(keep_closed(), *(client(c) for c in range(s.clients)))
    run.metrics = dict(m.get_metrics())
    return run


def compare(s: Scenario, share: float = 0.2, floor: float = 10.0) -> tuple[Run, Run]:
    """The scenario without a budget, then with ``retry_budget=share``,
    ``min_retries_per_second=floor``."""
    off = simulate(s, "no budget")
    on = simulate(
        s,
        f"retry_budget={share:g}, min_retries_per_second={floor:g}",
        retry_budget=share,
        min_retries_per_second=floor,
    )
    return off, on


def run_demo(clients: int, seed: int, out: TextIO) -> int:
    """``demo --retry-budget``: a short outage, with and without the budget, as a table
    within 80 columns."""
    s = Scenario(clients=clients, duration=25.0, outage=(5.0, 20.0), seed=seed)
    lo, hi = s.outage
    print(
        f"agenticaiframework demo --retry-budget: {clients} clients on a virtual clock\n"
        f"  route: primary -> fallback; the primary fails every call from {lo:g} s to "
        f"{hi:g} s\n  max_retries={s.max_retries}; the breaker kept out of the way\n",
        file=out,
        flush=True,
    )
    runs = compare(s)
    print(f"{'':<44}{'primary attempts per request':>30}", file=out)
    print(f"{'run':<44}{'healthy':>10}{'outage':>10}{'denied':>10}", file=out)
    for r in runs:
        print(
            f"{r.label:<44}{r.per_request(0, lo):>10.2f}{r.per_request(lo, hi):>10.2f}"
            f"{r.metrics['retries_denied']:>10,}",
            file=out,
        )
    print(
        "\nwith the budget, retries add at most 20% of the last 10 s' requests (plus\n"
        "10/s); a denied retry goes to the fallback at once (retries_denied).",
        file=out,
    )
    return 0


__all__ = ["Run", "Scenario", "VirtualLoop", "compare", "run_demo", "simulate"]
