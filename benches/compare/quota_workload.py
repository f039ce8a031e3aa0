"""One side of the quota comparison (benches/compare/quota.py), run in that side's venv:
an open-loop arrival schedule through the side's router to the simulated provider's two
deployments; prints one JSON document (per request: arrival, latency, time in HTTP,
outcome) on stdout.

    python quota_workload.py {ours,litellm,litellm-v1} --url URL --start-at EPOCH ...

Both sides call the provider through the openai SDK (AsyncOpenAI over httpx): ours with
its OpenAI adapter (``providers.openai_chat(..., asynchronous=True)``), LiteLLM with its
``openai/`` provider. ``httpx.AsyncClient.send`` is wrapped (the same wrapper on both
sides) to add the time spent in it to the request that made the call: a request's
*overhead* is its latency minus its time in ``send`` (the HTTP round trip, body read
included).

The arrival times are drawn from a seeded exponential distribution (Poisson arrivals),
the same draws on every side; each request is a task started at its arrival time,
whatever the earlier ones are doing (open loop). No retries on either side: a provider
429 fails that request, a local refusal fails it at once.

Only the standard library is imported at the top: each venv has only its own side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import platform
import random
import sys
import time
from typing import Any

PROMPT = "Say hello."
ANSWER = "hello"

# The HTTP time of the request running in this task (a list, so that a context copied
# into an executor or a child task still adds to the same one).
_http: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("_http", default=None)
SENDS: dict[str, int] = {}  # sends per HTTP client module, nested ones included
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("_inside", default=False)


def wrap_httpx_send() -> list[str]:
    """Wraps ``AsyncClient.send`` of httpx2 (the openai SDK 3.x's HTTP client) and of
    httpx (LiteLLM's own), whichever is installed; a send inside a send (one client over
    another) is counted once, the outermost."""
    import importlib

    wrapped = []
    for name in ("httpx2", "httpx"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        wrapped.append(f"{name} {getattr(mod, '__version__', '?')}")
        send = mod.AsyncClient.send

        async def timed_send(
            self: Any, *a: Any, _send: Any = send, _name: str = name, **k: Any
        ) -> Any:
            SENDS[_name] = SENDS.get(_name, 0) + 1
            acc = _http.get()
            if acc is None or _inside.get():
                return await _send(self, *a, **k)
            token = _inside.set(True)
            t0 = time.perf_counter()
            try:
                return await _send(self, *a, **k)
            finally:
                acc.append(time.perf_counter() - t0)
                _inside.reset(token)

        mod.AsyncClient.send = timed_send
    return wrapped


def arrivals(rate: float, span: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= span:
            return out
        out.append(t)


# --------------------------------------------------------------------- the sides
# Each side's call(prompt) returns the text, or raises; classify(exc) says what it was:
# "local" (refused by the library, no HTTP), "429" (the provider's), "error" (other).


class Ours:
    def __init__(self, url: str, rpm: int, timeout: float) -> None:
        import agenticaiframework
        from agenticaiframework.llms import LLMManager
        from agenticaiframework.llms.providers import openai_chat

        self.version = "working tree"
        self.where = os.path.dirname(agenticaiframework.__file__)

        def fn(dep: str) -> Any:
            return openai_chat(
                "gpt-test",
                api_key=f"sk-{dep}",
                base_url=f"{url}/{dep}/v1",
                asynchronous=True,
                timeout=timeout,
            )

        try:
            llm = LLMManager(routing="usage", enable_caching=False, max_retries=1)
        except (ValueError, TypeError) as e:  # the usage wiring is not in this tree yet
            self.mode = f"stand-in ({e})"
            self._standin(fn, rpm)
            return
        self.mode = 'LLMManager(routing="usage")'
        llm.register_model("gpt", fn("a"), {"rpm": rpm})
        llm.add_deployment("gpt", fn("b"), {"rpm": rpm, "deployment": "b"})
        llm.set_active_model("gpt")
        from agenticaiframework.llms import QuotaExhaustedError  # type: ignore[attr-defined]

        self.local_errors: tuple[type[BaseException], ...] = (QuotaExhaustedError,)
        self.call = llm.agenerate

    def _standin(self, fn: Any, rpm: int) -> None:
        """Until ``routing="usage"`` is wired: the same semantics from public pieces.
        One LLMManager per deployment (caching off, one attempt), a native
        ``RateLimiter(rpm=rpm)`` each (GCRA, burst = rpm, ours' default); the pick: the
        deployment with the most headroom whose limiter admits; none: fail fast; a
        provider 429 cools that deployment's limiter for its Retry-After."""
        from agenticaiframework._native import RateLimiter
        from agenticaiframework.llms import AllModelsFailedError, LLMManager, RateLimitError

        class StandInQuotaExhausted(AllModelsFailedError):
            def __init__(self, retry_after: float) -> None:
                super().__init__([])
                self.retry_after = retry_after

        deps = []
        for d in ("a", "b"):
            m = LLMManager(enable_caching=False, max_retries=1)
            m.register_model("gpt", fn(d))
            m.set_active_model("gpt")
            deps.append((m, RateLimiter(rpm=rpm)))
        self.local_errors = (StandInQuotaExhausted,)

        async def call(prompt: str) -> str:
            picked = None
            for dep in sorted(deps, key=lambda x: -x[1].headroom()):
                if dep[1].reserve().admitted:
                    picked = dep
                    break
            if picked is None:
                raise StandInQuotaExhausted(min(lim.retry_after() for _, lim in deps))
            m, lim = picked
            try:
                return await m.agenerate(prompt)
            except AllModelsFailedError as e:
                for _, exc in e.errors:
                    if isinstance(exc, RateLimitError):
                        lim.cool_down(exc.retry_after if exc.retry_after is not None else 1.0)
                raise

        self.call = call

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, self.local_errors):
            return "local"
        from agenticaiframework.llms import AllModelsFailedError, RateLimitError

        errs = exc.errors if isinstance(exc, AllModelsFailedError) else [("", exc)]
        if any(isinstance(e, RateLimitError) for _, e in errs):
            return "429"
        return "error"


class LiteLLM:
    def __init__(self, url: str, rpm: int, timeout: float, strategy: str) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        from importlib.metadata import version

        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.version = version("litellm")
        self.mode = f'Router(routing_strategy="{strategy}")'
        self.router = litellm.Router(
            model_list=[
                {
                    "model_name": "gpt",
                    "litellm_params": {
                        "model": "openai/gpt-test",
                        "api_key": f"sk-{d}",
                        "api_base": f"{url}/{d}/v1",
                        "rpm": rpm,
                        "timeout": timeout,
                    },
                }
                for d in ("a", "b")
            ],
            routing_strategy=strategy,
            num_retries=0,
        )
        self.litellm = litellm

    async def call(self, prompt: str) -> str:
        r = await self.router.acompletion(
            model="gpt", messages=[{"role": "user", "content": prompt}]
        )
        return str(r.choices[0].message.content)

    def classify(self, exc: BaseException) -> str:
        # A local refusal never reached HTTP: RateLimitError from the pre-call rpm check,
        # RouterRateLimitError when every deployment is over its rpm or cooling down
        # after 429s; a provider 429 is a RateLimitError after a send.
        from litellm.types.router import RouterRateLimitError

        if isinstance(exc, (self.litellm.RateLimitError, RouterRateLimitError)):
            return "429?"  # decided by whether send ran (see run())
        return "error"


# --------------------------------------------------------------------- the run


async def run(side: Any, times: list[float], start_at: float, timeout: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    recs: list[Any] = [None] * len(times)

    async def one(i: int, t_sched: float) -> None:
        acc: list[float] = []
        _http.set(acc)
        t0 = time.perf_counter()
        try:
            text = await asyncio.wait_for(side.call(PROMPT), timeout)
            out, err = ("ok" if text == ANSWER else "bad"), None
        except Exception as e:  # every outcome is counted
            out, err = side.classify(e), f"{type(e).__name__}: {str(e)[:160]}"
            if out == "429?":
                out = "429" if acc else "local"
            if out == "local" and acc:
                out = "error"  # a refusal that had made an HTTP call: not a local refusal
        t1 = time.perf_counter()
        recs[i] = {
            "t": round(t_sched, 4),
            "lag": round(t0 - t_sched_abs[i], 6),
            "latency": t1 - t0,
            "http": sum(acc),
            "sends": len(acc),
            "outcome": out,
            "error": err,
        }

    # Arrival i at start_at + times[i] (wall clock), mapped onto perf_counter once.
    base = time.perf_counter() + (start_at - time.time())
    t_sched_abs = [base + t for t in times]
    tasks = []
    for i, t in enumerate(times):
        delay = t_sched_abs[i] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(i, t)))
    await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)  # background logging (LiteLLM) lands before the exit
    return recs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["ours", "litellm", "litellm-v1"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--start-at", type=float, required=True, help="wall-clock epoch")
    ap.add_argument("--rate", type=float, required=True, help="arrivals per second")
    ap.add_argument("--span", type=float, required=True, help="seconds of arrivals")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rpm", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    wrapped = wrap_httpx_send()
    if args.side == "ours":
        side: Any = Ours(args.url, args.rpm, args.timeout)
    else:
        strategy = "usage-based-routing-v2" if args.side == "litellm" else "usage-based-routing"
        side = LiteLLM(args.url, args.rpm, args.timeout, strategy)
    times = arrivals(args.rate, args.span, args.seed)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    recs = loop.run_until_complete(run(side, times, args.start_at, args.timeout))
    from importlib.metadata import version

    out = {
        "side": args.side,
        "version": side.version,
        "mode": side.mode,
        "openai": version("openai"),
        "http_clients": wrapped,
        "sends_by_module": SENDS,
        "python": platform.python_version(),
        "executable": sys.executable,
        "requests": recs,
    }
    if isinstance(side, Ours):
        out["where"] = side.where
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
