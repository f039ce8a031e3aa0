"""10,000 concurrent agenerate calls on distinct prompts against an async model that awaits
10 ms, beside the same fan-out of bare ``await fn()`` calls."""

from __future__ import annotations

import asyncio
from typing import Any

from benches.conftest import make_manager

N = 10_000


async def model(prompt: str, kwargs: dict[str, Any]) -> str:
    await asyncio.sleep(0.01)
    return "ok"


def test_fanout_bare(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    async def fan() -> None:
        await asyncio.gather(*(model(f"p{i}", {}) for i in range(N)))

    benchmark.pedantic(lambda: loop.run_until_complete(fan()), rounds=3, iterations=1)


def test_fanout_agenerate(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    m = make_manager(model, cache_max_entries=N)
    rnd = [0]

    async def fan() -> None:
        r = rnd[0] = rnd[0] + 1
        await asyncio.gather(*(m.agenerate(f"r{r}-p{i}") for i in range(N)))

    benchmark.pedantic(lambda: loop.run_until_complete(fan()), rounds=3, iterations=1)


def test_fanout_agenerate_without_single_flight(
    benchmark: Any, loop: asyncio.AbstractEventLoop
) -> None:
    m = make_manager(model, cache_max_entries=N, single_flight=False)
    rnd = [0]

    async def fan() -> None:
        r = rnd[0] = rnd[0] + 1
        await asyncio.gather(*(m.agenerate(f"r{r}-p{i}") for i in range(N)))

    benchmark.pedantic(lambda: loop.run_until_complete(fan()), rounds=3, iterations=1)
