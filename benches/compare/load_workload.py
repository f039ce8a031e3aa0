"""One side of the open-loop load benchmark (load.py), at one rate, in that side's own venv.

``python load_workload.py bare|ours|litellm --shape async|sync8|sync32 --rate R
[--span S] [--delay D] [--scenarios first_try,cache30,...] [--seed N]``
prints one JSON object on stdout: per scenario, the latency percentiles, the achieved
throughput, CPU per request and whether the run saturated.

Open loop: the arrival times are drawn before the run (Poisson at ``--rate``, the same
seed on every side), and request i starts at its arrival time whether or not earlier
requests have finished. Its latency is measured from its *scheduled* arrival, so time
spent waiting to be started (the event loop or the thread pool busy) counts: coordinated
omission cannot hide queueing.

The model, on every side: ``async def model(prompt)`` that awaits ``asyncio.sleep(delay)``
(the simulated network) and answers ``"ok"``; in the sync shapes ``def model(prompt)``
with ``time.sleep(delay)``. The shapes:

- ``async``: one event loop; request i is a task started at its arrival;
- ``sync8`` / ``sync32``: a server's thread pool (``ThreadPoolExecutor`` of 8 / 32
  workers); the main thread submits request i at its arrival.

The scenarios (``bare`` has only the bare call, which every scenario is compared with):

- ``first_try``: caching off, every prompt new: one model call per request;
- ``cache30``: caching on; 30% of the requests repeat one of 200 prompts answered (and
  so cached) before the run, the other 70% are new prompts;
- ``fallback``: the primary fails at once (``ConnectionError``; for LiteLLM its custom
  provider raises), the backup answers after the delay; one attempt per model, the
  primary's breaker kept closed;
- ``breaker``: the primary's breaker is open (LiteLLM: the primary deployment cooled
  down), so every request skips it and the backup answers.

A run saturates when its generator falls more than ``ABORT_LAG`` behind its schedule (it
stops starting requests and cancels those in flight), when its requests are not all
answered within ``DRAIN`` after the last arrival, or when it answered under ``BEHIND`` of
the offered rate; it reports ``saturated`` and what it achieved until then.

Only the standard library is imported at the top: each venv has only its own side.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

ABORT_LAG = 0.25  # s behind the schedule: the side cannot keep up at this rate
DRAIN = 2.0  # s after the last arrival for the stragglers
BEHIND = 0.9  # answered under this share of the offered rate: saturated too
WARM_PROMPTS = 200  # cached before a cache30 run
REPEAT = 0.3
WARMUP = 100  # requests, closed loop, before each timed run


def arrivals(rate: float, span: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= span:
            return out
        out.append(t)


def prompts_for(scenario: str, n: int, seed: int) -> list[str]:
    """Distinct prompts; for cache30, 30% of them drawn from the warm set instead."""
    rng = random.Random(seed + 1)
    tag = f"{os.getpid()}-{scenario}"
    if scenario != "cache30":
        return [f"{tag} request {i}" for i in range(n)]
    return [
        f"warm {rng.randrange(WARM_PROMPTS)}" if rng.random() < REPEAT else f"{tag} request {i}"
        for i in range(n)
    ]


def percentile(xs: list[float], q: float) -> float:
    """Nearest rank on the sorted list."""
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))
    return xs[k]


def summary(
    lat: list[float | None], t0: float, t_end: float, cpu: float, sat: bool, rate: float
) -> Any:
    done = sorted(x for x in lat if x is not None)
    n = len(done)
    throughput = n / (t_end - t0) if t_end > t0 else 0.0
    sat = sat or throughput < BEHIND * rate
    return {
        "offered": len(lat),
        "completed": n,
        "saturated": sat,
        "throughput": throughput,
        "cpu_us_per_request": cpu / n * 1e6 if n else float("nan"),
        **{f"p{q}": percentile(done, q) * 1e6 for q in (50, 90, 99, 99.9)},
        "max": done[-1] * 1e6 if done else float("nan"),
        "mean": sum(done) / n * 1e6 if n else float("nan"),
    }


# --------------------------------------------------------------------- the models


def make_models(delay: float) -> dict[str, Any]:
    async def amodel(prompt: str, kwargs: dict[str, Any] | None = None) -> str:
        await asyncio.sleep(delay)
        return "ok"

    async def afails(prompt: str, kwargs: dict[str, Any] | None = None) -> str:
        raise ConnectionError("primary down")

    def model(prompt: str, kwargs: dict[str, Any] | None = None) -> str:
        time.sleep(delay)
        return "ok"

    def fails(prompt: str, kwargs: dict[str, Any] | None = None) -> str:
        raise ConnectionError("primary down")

    return {"amodel": amodel, "afails": afails, "model": model, "fails": fails}


# --------------------------------------------------------------------- the sides
# Each side's setup(scenario, is_async) returns the call: prompt -> text (a coroutine in
# the async shape), checked once to answer "ok" before the run.


class Bare:
    name = "bare"
    version = ""

    def __init__(self, delay: float) -> None:
        self.models = make_models(delay)

    def setup(self, scenario: str, is_async: bool) -> Callable[[str], Any]:
        return self.models["amodel"] if is_async else self.models["model"]  # type: ignore[no-any-return]


class Ours:
    name = "ours"

    def __init__(self, delay: float) -> None:
        import agenticaiframework
        from agenticaiframework.llms import LLMManager

        self.LLMManager = LLMManager
        self.version = "working tree"
        self.where = os.path.dirname(agenticaiframework.__file__)
        self.models = make_models(delay)
        self.reset: Callable[[], None] | None = None

    def setup(self, scenario: str, is_async: bool) -> Callable[[str], Any]:
        ok = self.models["amodel" if is_async else "model"]
        bad = self.models["afails" if is_async else "fails"]
        kw: dict[str, Any] = {}
        self.reset = None
        if scenario == "first_try":
            m = self.LLMManager(enable_caching=False, **kw)
            m.register_model("primary", ok)
        elif scenario == "cache30":
            m = self.LLMManager(cache_max_entries=1_000_000, **kw)
            m.register_model("primary", ok)
        else:
            threshold = 1 if scenario == "breaker" else 16383
            m = self.LLMManager(
                max_retries=1, enable_caching=False, failure_threshold=threshold,
                recovery_timeout=10**6, **kw,
            )  # fmt: skip
            m.register_model("primary", bad)
            m.register_model("backup", ok)
            m.set_fallback_chain(["backup"])
            if scenario == "fallback":  # consecutive failures must stay under the threshold
                self.reset = lambda: m.reset_circuit_breaker("primary")
        m.set_active_model("primary")
        self.m = m
        return m.agenerate if is_async else m.generate

    def check(self, scenario: str) -> dict[str, Any]:
        met = self.m.get_metrics()
        if scenario == "breaker":
            assert self.m.get_model_info("primary")["circuit_breaker_state"] == "open"
        return {k: met[k] for k in ("cache_hits", "total_requests") if k in met}


class LiteLLM:
    name = "litellm"

    def __init__(self, delay: float) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        from importlib.metadata import version

        import litellm
        from litellm import CustomLLM
        from litellm.llms.custom_llm import CustomLLMError

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.litellm = litellm
        self.version = version("litellm")
        models = make_models(delay)

        # The same model behind LiteLLM's documented custom-provider interface: its
        # acompletion/completion await (call) the model and fill the ModelResponse.
        class Bench(CustomLLM):
            def completion(self, *a: Any, **k: Any) -> Any:
                if k["model"] == "fail":
                    raise CustomLLMError(status_code=500, message="primary down")
                resp = k["model_response"]
                resp.choices[0].message.content = models["model"](k["messages"][0]["content"])
                return resp

            async def acompletion(self, *a: Any, **k: Any) -> Any:
                if k["model"] == "fail":
                    raise CustomLLMError(status_code=500, message="primary down")
                resp = k["model_response"]
                text = await models["amodel"](k["messages"][0]["content"])
                resp.choices[0].message.content = text
                return resp

        litellm.custom_provider_map = [{"provider": "bench", "custom_handler": Bench()}]

    def setup(self, scenario: str, is_async: bool) -> Callable[[str], Any]:
        lt = self.litellm
        lt.cache = None  # global: a router with cache_responses=True sets it again
        primary = "bench/fail" if scenario in ("fallback", "breaker") else "bench/ok"
        model_list = [
            {"model_name": "primary", "litellm_params": {"model": primary}},
            {"model_name": "backup", "litellm_params": {"model": "bench/ok"}},
        ]
        extra: dict[str, Any] = (
            {"allowed_fails": 0, "cooldown_time": 10**6}
            if scenario == "breaker"
            else {"disable_cooldowns": True}
        )
        r = lt.Router(
            model_list=model_list,
            cache_responses=scenario == "cache30",
            num_retries=0,
            fallbacks=[{"primary": ["backup"]}],
            **extra,
        )
        self.router = r

        def msgs(prompt: str) -> list[dict[str, str]]:
            return [{"role": "user", "content": prompt}]

        if is_async:

            async def acall(prompt: str) -> str:
                resp = await r.acompletion(model="primary", messages=msgs(prompt))
                return resp.choices[0].message.content  # type: ignore[no-any-return]

            return acall

        def call(prompt: str) -> str:
            resp = r.completion(model="primary", messages=msgs(prompt))
            return resp.choices[0].message.content  # type: ignore[no-any-return]

        return call

    def check(self, scenario: str) -> dict[str, Any]:
        if scenario == "breaker":
            r = self.router
            ids = [
                d["model_info"]["id"] for d in r.get_model_list() if d["model_name"] == "primary"
            ]
            assert r.health().cooldowns.get_active_cooldowns(ids, None), "primary not cooled"
        return {}


SIDES: dict[str, Callable[[float], Any]] = {
    "bare": Bare, "ours": Ours, "litellm": LiteLLM, "paired": lambda d: Paired(d)
}  # fmt: skip


# --------------------------------------------------------------------- the generators


async def schedule(
    times: list[float],
    start: Callable[[int, float], list[Coroutine[Any, Any, None]]],
    reset: Callable[[], None] | None,
) -> tuple[bool, int, float, float]:
    """The open-loop generator: at arrival i, ``start(i, scheduled time)``'s coroutines
    become tasks; then the drain. Returns (saturated, arrivals started, the time base,
    CPU seconds)."""
    loop = asyncio.get_running_loop()
    clock = time.perf_counter
    n = len(times)
    tasks = set()
    sat = False
    cpu0 = time.process_time()
    base = clock() + 0.01
    i = 0
    while i < n:
        now = clock()
        while i < n and base + times[i] <= now:
            for c in start(i, base + times[i]):
                t = loop.create_task(c)
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            i += 1
            if reset is not None and i % 4096 == 0:
                reset()
        if i and now - (base + times[i - 1]) > ABORT_LAG:
            sat = True
            break
        if i < n:
            await asyncio.sleep(max(0.0, base + times[i] - clock()))
    if tasks:
        # Saturated: what is queued would only measure the backlog; cancelled after a moment.
        _, pending = await asyncio.wait(set(tasks), timeout=0.2 if sat else DRAIN)
        if pending:
            sat = True
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    return sat, i, base, time.process_time() - cpu0


async def run_async(side: Any, call: Any, prompts: list[str], times: list[float]) -> Any:
    n = len(times)
    lat: list[float | None] = [None] * n
    clock = time.perf_counter
    reset = getattr(side, "reset", None)

    async def one(i: int, t_s: float, p: str) -> None:
        try:
            text = await call(p)
        except Exception as e:  # counted: a run with errors is reported as such
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")
            return
        if text == "ok":
            lat[i] = clock() - t_s
        else:
            errors.append(f"answer {text!r}")

    errors: list[str] = []
    sat, i, base, cpu = await schedule(times, lambda i, t_s: [one(i, t_s, prompts[i])], reset)
    ends = [base + times[k] + x for k, x in enumerate(lat) if x is not None]
    rate = n / times[-1] if n and times[-1] > 0 else 0.0
    res = summary(lat[:i] if sat else lat, base, max(ends, default=base), cpu, sat, rate)
    res["errors"] = len(errors)
    res["first_errors"] = errors[:3]
    return res


def run_sync(side: Any, call: Any, prompts: list[str], times: list[float], workers: int) -> Any:
    n = len(times)
    lat: list[float | None] = [None] * n
    clock = time.perf_counter
    errors: list[str] = []
    reset = getattr(side, "reset", None)

    def one(i: int, t_s: float, p: str) -> None:
        try:
            text = call(p)
        except Exception as e:  # counted
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")
            return
        if text == "ok":
            lat[i] = clock() - t_s
        else:
            errors.append(f"answer {text!r}")

    sat = False
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for _ in range(workers * 2):  # the workers exist before the clock starts
            pool.submit(time.sleep, 0.001)
        time.sleep(0.05)
        cpu0 = time.process_time()
        base = clock() + 0.01
        futs = []
        i = 0
        while i < n:
            now = clock()
            while i < n and base + times[i] <= now:
                futs.append(pool.submit(one, i, base + times[i], prompts[i]))
                i += 1
                if reset is not None and i % 4096 == 0:
                    reset()
            # The pool's queue: requests started late are still timed from their arrival,
            # but past ABORT_LAG of backlog the side cannot keep up at this rate.
            if i and pool._work_queue.qsize() > 0:
                oldest = i - pool._work_queue.qsize()
                if now - (base + times[oldest]) > ABORT_LAG:
                    sat = True
                    break
            if i < n:
                time.sleep(max(0.0, base + times[i] - clock()))
        if sat:
            for f in futs:
                f.cancel()
        concurrent.futures.wait(futs, timeout=0.2 if sat else DRAIN)
        cpu = time.process_time() - cpu0
    ends = [base + times[k] + x for k, x in enumerate(lat) if x is not None]
    rate = n / times[-1] if n and times[-1] > 0 else 0.0
    res = summary(lat[:i] if sat else lat, base, max(ends, default=base), cpu, sat, rate)
    res["errors"] = len(errors)
    res["first_errors"] = errors[:3]
    return res


async def run_paired(
    pair: Paired, calls: tuple[Any, Any], prompts: list[str], times: list[float]
) -> Any:
    """The paired run: one event loop, one schedule, and at each arrival two requests, twins:
    one to the bare call, one to ours, started together in an order drawn by a seeded
    coin. The twins see the same loop at the same moment (its lag, its GC pauses, the load
    of both sides), so what differs between their latencies is what the layer adds. Per
    request it also times the layer's own part: from the call to the model's entry plus
    from the model's return to the answer (the whole request, for a cache hit)."""
    n = len(times)
    lat: list[float | None] = [None] * (2 * n)  # 2i: the bare twin, 2i + 1: ours
    own: list[float | None] = [None] * (2 * n)
    rng = random.Random(n)
    first = [rng.random() < 0.5 for _ in range(n)]  # True: ours starts first
    clock = time.perf_counter
    enter, leave = pair.enter, pair.leave
    enter.clear()  # the warm-up's
    leave.clear()
    reset = pair.ours.reset
    errors: list[str] = []

    async def one(k: int, t_s: float, p: str, call: Any) -> None:
        t_call = clock()
        try:
            text = await call(p)
        except Exception as e:  # counted: a run with errors is reported as such
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")
            return
        t_done = clock()
        if text != "ok":
            errors.append(f"answer {text!r}")
            return
        lat[k] = t_done - t_s
        t_in = enter.pop(p, None)
        t_out = leave.pop(p, None)
        spent = t_done - t_call
        own[k] = spent if t_in is None or t_out is None else spent - (t_out - t_in)

    def twins(i: int, t_s: float) -> list[Coroutine[Any, Any, None]]:
        # The bare twin's prompt is its own: the model's stamps are kept by prompt.
        both = [one(2 * i, t_s, f"bare {i}", calls[0]), one(2 * i + 1, t_s, prompts[i], calls[1])]
        return both[::-1] if first[i] else both

    sat, i, base, cpu = await schedule(times, twins, reset)
    m = 2 * i if sat else 2 * n
    ends = [base + times[k // 2] + x for k, x in enumerate(lat[:m]) if x is not None]
    span = times[-1] if n else 0.0
    rate = 2 * n / span if span > 0 else 0.0
    res = summary(lat[:m], base, max(ends, default=base), cpu, sat, rate)
    for name, side in (("bare", 0), ("ours", 1)):
        done = sorted(x for x in lat[side:m:2] if x is not None)
        mine = sorted(x for x in own[side:m:2] if x is not None)
        res[name] = {
            "completed": len(done),
            **{f"p{q}": percentile(done, q) * 1e6 for q in (50, 90, 99, 99.9)},
            **{f"own_p{q}": percentile(mine, q) * 1e6 for q in (50, 90, 99, 99.9)},
            "own_max": mine[-1] * 1e6 if mine else float("nan"),
        }
    res["errors"] = len(errors)
    res["first_errors"] = errors[:3]
    return res


class Paired:
    """``paired``: the bare call and ours in one process (see run_paired). The model is the
    same ``async def``, stamping its entry and return by prompt."""

    name = "paired"

    def __init__(self, delay: float) -> None:
        self.enter: dict[str, float] = {}
        self.leave: dict[str, float] = {}
        enter, leave, clock = self.enter, self.leave, time.perf_counter

        async def amodel(prompt: str, kwargs: dict[str, Any] | None = None) -> str:
            enter[prompt] = clock()
            await asyncio.sleep(delay)
            leave[prompt] = clock()
            return "ok"

        self.ours = Ours(delay)
        self.ours.models["amodel"] = amodel
        self.bare = amodel
        self.version = self.ours.version
        self.where = self.ours.where

    def setup(self, scenario: str, is_async: bool) -> tuple[Any, Any]:
        if not is_async:
            raise SystemExit("paired: the async shape only")
        return self.bare, self.ours.setup(scenario, is_async)

    def check(self, scenario: str) -> dict[str, Any]:
        return self.ours.check(scenario)


def warm(call: Any, is_async: bool, loop: asyncio.AbstractEventLoop, prompts: list[str]) -> None:
    if is_async:

        async def go() -> None:
            for k in range(0, len(prompts), 50):
                res = await asyncio.gather(*(call(p) for p in prompts[k : k + 50]))
                assert all(r == "ok" for r in res), res[:3]

        loop.run_until_complete(go())
    else:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert all(r == "ok" for r in pool.map(call, prompts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=list(SIDES))
    ap.add_argument("--shape", choices=["async", "sync8", "sync32"], default="async")
    ap.add_argument("--rate", type=float, required=True, help="arrivals per second")
    ap.add_argument("--span", type=float, default=2.0, help="seconds of arrivals")
    ap.add_argument("--delay", type=float, default=0.01, help="the model's simulated network")
    ap.add_argument("--scenarios", default="first_try")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    side = SIDES[args.side](args.delay)
    is_async = args.shape == "async"
    workers = 0 if is_async else int(args.shape.removeprefix("sync"))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # paired: --rate counts both twins, so the arrivals come at half of it.
    times = arrivals(args.rate / (2 if args.side == "paired" else 1), args.span, args.seed)
    out: dict[str, Any] = {
        "side": args.side,
        "version": side.version,
        "shape": args.shape,
        "rate": args.rate,
        "span": args.span,
        "delay": args.delay,
        "python": platform.python_version(),
        "executable": sys.executable,
        "threads_at_start": threading.active_count(),
        "scenarios": {},
    }
    if args.side in ("ours", "paired"):
        out["where"] = side.where
    for scenario in args.scenarios.split(","):
        call = side.setup(scenario, is_async)
        each = call if args.side == "paired" else (call,)
        for c in each:
            if scenario == "cache30":
                warm(c, is_async, loop, [f"warm {k}" for k in range(WARM_PROMPTS)])
            warm(c, is_async, loop, [f"warmup {scenario} {k}" for k in range(WARMUP)])
        prompts = prompts_for(scenario, len(times), args.seed)
        gc.collect()
        if args.side == "paired":
            res = loop.run_until_complete(run_paired(side, call, prompts, times))
        elif is_async:
            res = loop.run_until_complete(run_async(side, call, prompts, times))
        else:
            res = run_sync(side, call, prompts, times, workers)
        if hasattr(side, "check"):
            res["check"] = side.check(scenario)
        out["scenarios"][scenario] = res
    loop.run_until_complete(asyncio.sleep(0.2))  # LiteLLM's background logging lands
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
