"""One side of the Redis-tier comparison (fleet.py), run in that side's own venv.

``python fleet_workload.py ours|litellm --port P [--flip] [--target-ms 250] [--reps 5]``
prints one JSON object on stdout: per path, the median ns per call over ``--reps``
calibrated loops, and what Redis saw per call (INFO commandstats / stats deltas).

Both sides run the same two paths, paired in this one process (the loops alternate, their
order flipped with ``--flip``), against one redis-server the driver started:

- ``get`` / ``aget``: the floor, a bare redis-py ``GET`` (``redis.Redis`` /
  ``redis.asyncio.Redis``, default options) of exactly the key the side's hit reads, so the
  same value;
- ``hit`` / ``ahit``: the side's cache hit answered by Redis. Its in-process layer holds one
  entry and two prompts alternate, so every request misses it and reads Redis (then
  backfills it, evicting the other prompt). ours: ``LLMManager(redis=url,
  cache_max_entries=1)``; LiteLLM: ``Router(cache_responses=True, redis_host, redis_port)``
  with its DualCache's in-memory layer (``caching_handler.in_memory_cache_obj``) bounded to
  one entry.

Before timing, each hit is checked to be one: the model (ours) or ``mock_completion``
(LiteLLM) is counted and must not run again after the two warming misses, LiteLLM's
``cache_hit`` must be set, and Redis must have served a GET hit (``keyspace_hits``) for
every request; the counters are checked again after timing.

Only the standard library is imported at the top: each venv has only its own side.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

PROMPTS = ("first prompt of the two", "second prompt of the two")
ANSWER = "x" * 200  # what the model (mock) answers; both sides store it
VERIFY = 20  # checked requests per path before timing


# --------------------------------------------------------------------- Redis bookkeeping


class Stats:
    """INFO deltas: what the server did between two snapshots (INFO itself left out)."""

    def __init__(self, ctl: Any) -> None:
        self.ctl = ctl

    def snap(self) -> dict[str, int]:
        out = {
            k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in self.ctl.info("commandstats").items()
            if k != "cmdstat_info"
        }
        s = self.ctl.info("stats")
        out["keyspace_hits"] = int(s["keyspace_hits"])
        out["keyspace_misses"] = int(s["keyspace_misses"])
        return out

    @staticmethod
    def delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: b[k] - a.get(k, 0) for k in b if b[k] != a.get(k, 0)}


def new_value_key(ctl: Any, before: set[bytes]) -> bytes:
    """The one string key written since ``before`` whose value holds the answer."""
    found = [
        k
        for k in set(ctl.keys("*")) - before
        if ctl.type(k) == b"string" and ANSWER.encode() in (ctl.get(k) or b"")
    ]
    assert len(found) == 1, found
    return found[0]  # type: ignore[no-any-return]


# --------------------------------------------------------------------- the sides


class Side:
    """Sets a side up; gives the hit callables and the keys their values live under."""

    name = ""
    version = ""
    model_calls: Callable[[], int]
    sync_keys: list[bytes]
    async_keys: list[bytes]

    def hit(self, prompt: str) -> Any:
        raise NotImplementedError

    async def ahit(self, prompt: str) -> Any:
        raise NotImplementedError

    def hits_seen(self) -> int | None:
        """The side's own count of L2 hits, where it keeps one."""
        return None

    def check(self, resp: Any) -> None:
        assert resp == ANSWER, resp


class Ours(Side):
    name = "ours"

    def __init__(self, url: str, ctl: Any, loop: asyncio.AbstractEventLoop) -> None:
        import agenticaiframework
        from agenticaiframework.llms import LLMManager
        from agenticaiframework.llms.fleet import Fleet

        self.version = "working tree"
        self.where = os.path.dirname(agenticaiframework.__file__)
        calls = [0]

        def model(prompt: str, kwargs: dict[str, Any]) -> str:
            calls[0] += 1
            return ANSWER

        self.model_calls = lambda: calls[0]
        # The sockets' timeout is LiteLLM RedisCache's default (5 s; ours: 0.1 s), so that
        # on a loaded machine neither side turns a slow GET into a miss (the same code
        # path either way: redis-py with a socket timeout set).
        fleet = Fleet.from_url(url, "bench", connect_timeout=5.0, timeout=5.0)
        m = LLMManager(redis=fleet, cache_max_entries=1)
        m.register_model("m", model)
        m.set_active_model("m")
        self.m = m
        self.generate = m.generate
        self.agenerate = m.agenerate
        keys = []
        for p in PROMPTS:  # two misses: the model answers, Redis is written
            before = set(ctl.keys("*"))
            assert m.generate(p) == ANSWER
            keys.append(new_value_key(ctl, before))
        assert calls[0] == 2, calls
        self.sync_keys = self.async_keys = keys  # ours keys a request the same either way

    def hit(self, prompt: str) -> Any:
        return self.generate(prompt)

    async def ahit(self, prompt: str) -> Any:
        return await self.agenerate(prompt)

    def hits_seen(self) -> int:
        return int(self.m.get_metrics()["l2_hits"])


class LiteLLM(Side):
    name = "litellm"

    def __init__(self, url: str, ctl: Any, loop: asyncio.AbstractEventLoop) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        from importlib.metadata import version

        import litellm
        import litellm.main
        from litellm.caching.caching_handler import in_memory_cache_obj
        from litellm.caching.redis_cache import RedisCache

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.version = version("litellm")
        calls = [0]
        mock = litellm.main.mock_completion

        def counted(*a: Any, **k: Any) -> Any:  # main.completion calls it by module name
            calls[0] += 1
            return mock(*a, **k)

        litellm.main.mock_completion = counted
        self.model_calls = lambda: calls[0]
        litellm.cache = None
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        router = litellm.Router(
            model_list=[
                {
                    "model_name": "primary",
                    "litellm_params": {
                        "model": "openai/gpt-4o",
                        "api_key": "sk-local",
                        "mock_response": ANSWER,
                    },
                }
            ],
            cache_responses=True,
            redis_host="127.0.0.1",
            redis_port=port,
            num_retries=0,
            disable_cooldowns=True,
        )
        # Router(cache_responses=True, redis_host, redis_port) sets the process's response
        # cache to Cache(type="redis"): a RedisCache, read through a DualCache whose memory
        # layer is this process-wide InMemoryCache (200 entries by default): one entry
        # here, so the alternating prompts always miss it.
        assert isinstance(litellm.cache, litellm.Cache), litellm.cache
        assert isinstance(litellm.cache.cache, RedisCache), litellm.cache.cache
        in_memory_cache_obj.max_size_in_memory = 1
        self.router = router

        # Two misses per mode (the sync and async requests are keyed apart); the async
        # write is a background task, given time to land.
        self.sync_keys = []
        for p in PROMPTS:
            before = set(ctl.keys("*"))
            self._check_resp(self.call(p), hit=False)
            self.sync_keys.append(new_value_key(ctl, before))
        self.async_keys = []
        for p in PROMPTS:
            before = set(ctl.keys("*"))

            async def miss(p: str = p) -> Any:
                r = await self.acall(p)
                await asyncio.sleep(0.3)
                return r

            self._check_resp(loop.run_until_complete(miss()), hit=False)
            self.async_keys.append(new_value_key(ctl, before))
        assert calls[0] == 4, calls

    def call(self, prompt: str) -> Any:
        return self.router.completion(
            model="primary", messages=[{"role": "user", "content": prompt}]
        )

    async def acall(self, prompt: str) -> Any:
        return await self.router.acompletion(
            model="primary", messages=[{"role": "user", "content": prompt}]
        )

    @staticmethod
    def _check_resp(resp: Any, *, hit: bool) -> None:
        assert resp.choices[0].message.content == ANSWER
        assert bool(resp._hidden_params.get("cache_hit")) is hit, resp._hidden_params

    def hit(self, prompt: str) -> Any:
        return self.call(prompt).choices[0].message.content

    async def ahit(self, prompt: str) -> Any:
        return (await self.acall(prompt)).choices[0].message.content

    def verify(self, loop: asyncio.AbstractEventLoop) -> None:
        for i in range(VERIFY):
            self._check_resp(self.call(PROMPTS[i % 2]), hit=True)

        async def averify() -> None:
            for i in range(VERIFY):
                self._check_resp(await self.acall(PROMPTS[i % 2]), hit=True)

        loop.run_until_complete(averify())


# --------------------------------------------------------------------- timing


class Path:
    """n calls of fn over the alternating items, timed (sync, or async on one loop)."""

    def __init__(
        self, fn: Any, items: list[Any], *, is_async: bool, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.fn, self.items, self.is_async, self.loop = fn, items, is_async, loop

    def seq(self, n: int) -> list[Any]:
        return [self.items[i % 2] for i in range(n)]

    def run(self, n: int) -> int:
        seq, fn = self.seq(n), self.fn
        if self.is_async:

            async def body() -> int:
                t0 = time.perf_counter_ns()
                for x in seq:
                    await fn(x)
                return time.perf_counter_ns() - t0

            return self.loop.run_until_complete(body())
        t0 = time.perf_counter_ns()
        for x in seq:
            fn(x)
        return time.perf_counter_ns() - t0


def calibrate(path: Path, target_ns: int) -> int:
    """An even iteration count whose loop takes about target_ns."""
    n = 2
    while True:
        t = path.run(n)
        if t >= target_ns // 4:
            return max(2, int(n * target_ns / max(t, 1)) // 2 * 2)
        n *= 4


def settle() -> None:
    """Between loops, untimed: lets background work (LiteLLM's logging threads and
    tasks) finish before the next loop starts, whichever side it belongs to."""
    time.sleep(0.05)


def measure_pair(
    pair: list[tuple[str, Path]], target_ns: int, reps: int, flip: bool, stats: Stats
) -> dict[str, Any]:
    """The two paths' loops alternated rep by rep; Redis deltas summed over the loops."""
    gc.collect()
    ns = {name: calibrate(p, target_ns) for name, p in pair}
    per_call: dict[str, list[float]] = {name: [] for name, _ in pair}
    seen: dict[str, dict[str, int]] = {name: {} for name, _ in pair}
    calls = dict.fromkeys(per_call, 0)
    for r in range(reps):
        order = pair if (r % 2 == 0) != flip else pair[::-1]
        for name, p in order:
            settle()
            a = stats.snap()
            t = p.run(ns[name])
            d = Stats.delta(a, stats.snap())
            per_call[name].append(t / ns[name])
            calls[name] += ns[name]
            for k, v in d.items():
                seen[name][k] = seen[name].get(k, 0) + v
    return {
        name: {
            "ns": statistics.median(per_call[name]),
            "reps": per_call[name],
            "n": ns[name],
            "calls": calls[name],
            "redis_per_call": {k: v / calls[name] for k, v in sorted(seen[name].items())},
        }
        for name, _ in pair
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["ours", "litellm"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--flip", action="store_true", help="the hit's loop first in each pair")
    ap.add_argument("--target-ms", type=float, default=250.0)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    from importlib.metadata import version

    import redis
    import redis.asyncio

    url = f"redis://127.0.0.1:{args.port}/0"
    ctl = redis.Redis.from_url(url)  # bookkeeping only: INFO, KEYS, TYPE
    ctl.flushall()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    side: Side = (Ours if args.side == "ours" else LiteLLM)(url, ctl, loop)
    stats = Stats(ctl)

    bare = redis.Redis.from_url(url)
    abare = redis.asyncio.Redis.from_url(url)

    # The floor reads exactly what the hit reads: same keys, same values.
    for keys in (side.sync_keys, side.async_keys):
        assert all(bare.get(k) for k in keys)
    sizes = {
        "sync": [int(ctl.strlen(k)) for k in side.sync_keys],
        "async": [int(ctl.strlen(k)) for k in side.async_keys],
    }

    # Checked before timing: hits, the model not called, one GET hit per request.
    calls0 = side.model_calls()
    hits0 = side.hits_seen()
    a = stats.snap()
    if isinstance(side, LiteLLM):
        side.verify(loop)
    else:
        for i in range(VERIFY):
            side.check(side.hit(PROMPTS[i % 2]))

        async def averify() -> None:
            for i in range(VERIFY):
                side.check(await side.ahit(PROMPTS[i % 2]))

        loop.run_until_complete(averify())
    d = Stats.delta(a, stats.snap())
    assert side.model_calls() == calls0, "the model ran on a hit"
    assert d.get("keyspace_hits", 0) >= 2 * VERIFY, d  # Redis answered every request
    if hits0 is not None:
        assert side.hits_seen() - hits0 == 2 * VERIFY

    target = int(args.target_ms * 1e6)
    sync = measure_pair(
        [
            ("get", Path(bare.get, side.sync_keys, is_async=False, loop=loop)),
            ("hit", Path(side.hit, list(PROMPTS), is_async=False, loop=loop)),
        ],
        target,
        args.reps,
        args.flip,
        stats,
    )
    asy = measure_pair(
        [
            ("aget", Path(abare.get, side.async_keys, is_async=True, loop=loop)),
            ("ahit", Path(side.ahit, list(PROMPTS), is_async=True, loop=loop)),
        ],
        target,
        args.reps,
        args.flip,
        stats,
    )
    paths = {**sync, **asy}

    # Checked after timing: still no model call; every timed request was a Redis GET hit.
    assert side.model_calls() == calls0, "the model ran on a hit"
    for name, p in paths.items():
        assert p["redis_per_call"].get("keyspace_hits", 0) >= 1.0, (name, p["redis_per_call"])
    if hits0 is not None:
        timed = sum(p["calls"] for n, p in paths.items() if n in ("hit", "ahit"))
        assert side.hits_seen() - hits0 >= 2 * VERIFY + timed  # + calibration loops

    loop.run_until_complete(abare.aclose())
    bare.close()
    out = {
        "side": side.name,
        "version": side.version,
        "redis_py": version("redis"),
        "hiredis": _has("hiredis"),
        "python": platform.python_version(),
        "executable": sys.executable,
        "value_bytes": sizes,
        "model_calls": side.model_calls(),
        "paths": paths,
    }
    if isinstance(side, Ours):
        out["where"] = side.where
    json.dump(out, sys.stdout)


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


if __name__ == "__main__":
    main()
