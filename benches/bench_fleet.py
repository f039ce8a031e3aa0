"""L2 hit (L1 miss, Redis has the answer) against a bare redis-py GET of the same value,
sync and async, interleaved in one process against a local redis-server (issue 15).

    .venv/bin/python benches/bench_fleet.py [--rounds 7] [--n 2000]

The manager's L1 holds one entry and two prompts alternate, so every request misses L1
and is answered by Redis (then stored in L1, evicting the other). Reports the median
microseconds per call of each side over the rounds and their ratio (the goal: within
1.5x a bare GET). A benchmark, not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import redis
import redis.asyncio
from redis_server import RedisServer, redis_binary

from agenticaiframework.llms import LLMManager


def per_call(f: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e6


async def aper_call(f: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await f()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    binary = redis_binary()
    if binary is None:
        print("no redis-server: make redis-server", file=sys.stderr)
        return 1
    srv = RedisServer(binary)
    srv.start()
    try:
        return run(srv, args.rounds, args.n)
    finally:
        srv.cleanup()


def run(srv: RedisServer, rounds: int, n: int) -> int:
    m = LLMManager(redis=srv.url, namespace="bench", cache_max_entries=1)
    m.register_model("m", lambda p, k: "x" * 200)
    m.set_active_model("m")
    prompts = ["first prompt of the two", "second prompt of the two"]
    keys = [m._enter(p, True, None)[1] for p in prompts]  # misses: their keys
    for p in prompts:
        m.generate(p)  # now in Redis
    bare = redis.Redis.from_url(srv.url)
    rkeys = [f"bench:r:{{{k.hex()}}}" for k in keys]
    assert all(bare.get(k) for k in rkeys)
    i = [1]  # ours: the prompt not in L1 now (prompts[1] was stored last)
    j = [0]

    def l2_hit() -> None:
        i[0] ^= 1
        m.generate(prompts[i[0]])

    def get() -> None:
        j[0] ^= 1
        bare.get(rkeys[j[0]])

    async def async_side() -> tuple[list[float], list[float]]:
        client = redis.asyncio.Redis.from_url(srv.url)

        async def al2() -> None:
            i[0] ^= 1
            await m.agenerate(prompts[i[0]])

        async def aget() -> None:
            j[0] ^= 1
            await client.get(rkeys[j[0]])

        ours, theirs = [], []
        for r in range(rounds):
            pair = [(ours, al2), (theirs, aget)]
            for out, f in pair if r % 2 == 0 else pair[::-1]:
                out.append(await aper_call(f, n))
        await client.aclose()
        return ours, theirs

    before = m.get_metrics()["l2_hits"]
    ours, theirs = [], []
    for r in range(rounds):
        pair = [(ours, l2_hit), (theirs, get)]
        for out, f in pair if r % 2 == 0 else pair[::-1]:
            out.append(per_call(f, n))
    aours, atheirs = asyncio.run(async_side())
    hits = m.get_metrics()["l2_hits"] - before
    assert hits == 2 * rounds * n, hits  # every request was an L2 hit
    for name, a, b in (("sync", ours, theirs), ("async", aours, atheirs)):
        ma, mb = statistics.median(a), statistics.median(b)
        ratios = sorted(x / y for x, y in zip(a, b, strict=True))
        print(
            f"{name:5s} L2 hit {ma:7.1f} us   bare GET {mb:7.1f} us   ratio {ma / mb:.2f} "
            f"(per-round {ratios[0]:.2f}-{ratios[-1]:.2f}, {rounds} rounds x {n})"
        )
    bare.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
