"""The demo: simulated providers behind a manager with a fallback chain.

    python -m agenticaiframework.llms demo [--requests N] [--async] [--seed S] [--openai]
        [--prometheus PORT [--hold SECONDS]] [--hedging] [--retry-budget]

No API key and no network: three simulated models (one with an outage window) answer a
stream of prompts with repeats, and the demo prints progress, then the metrics, each
model's stats and its breaker state.

``--openai`` puts a real OpenAI-compatible endpoint first instead, from the environment:
``OPENAI_MODEL`` (required), ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` (for vLLM, Ollama,
llama.cpp server, ...), with the simulated local model as its fallback.

``--prometheus PORT`` serves ``/metrics`` (the ``prometheus`` extra) while the demo runs,
on 127.0.0.1 (port 0: a free one, printed), and ``--hold SECONDS`` longer after it ends.

``--retry-budget`` simulates an outage on a virtual clock instead (``_outage_sim.py``):
200 clients, the primary down for 15 simulated seconds, primary attempts per request
with and without ``retry_budget=0.2``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .errors import LLMError
from .manager import LLMManager
from .providers.simulated import SimulatedModel

TOPICS = [
    "quantum computing",
    "circuit breakers",
    "exponential backoff",
    "vector databases",
    "transformers",
    "rate limits",
    "caching strategies",
    "agent planning",
    "tokenizers",
    "prompt injection",
]


# gpt-4's two deployments: each provider key's own quota (per second, burst), which the
# manager is told as rpm and burst so that it spreads the load before the provider 429s.
QUOTAS = {"us": (60.0, 5), "eu": (40.0, 3)}


def build_manager(seed: int, scale: float, deployments: bool = True, **fleet: Any) -> LLMManager:
    """Three simulated providers; the primary has an outage early in the run and, with
    ``deployments``, two deployments with quotas (the outage hits "us" only). ``fleet``:
    ``redis=`` and ``namespace=`` for the fleet demo."""
    llm = LLMManager(
        **fleet,
        max_retries=3,
        enable_caching=True,
        failure_threshold=4,
        recovery_timeout=0.5 * scale,
        backoff_base=0.005 * scale,
        backoff_max=0.05 * scale,
        jitter="equal",
        routing="usage",
    )
    meta = {"provider": "openai", "max_tokens": 8192, "cost_per_1k_tokens": 0.03}
    us_rate, us_burst = QUOTAS["us"]
    llm.register_model(
        "gpt-4",
        SimulatedModel(
            "gpt-4",
            latency=0.004 * scale,
            failure_rate=0.05,
            outage=(0.4 * scale, 1.4 * scale),
            seed=seed,
            quota=(us_rate / scale, us_burst) if deployments else None,
        ),
        {**meta, "deployment": "us", "rpm": us_rate * 60 / scale, "burst": us_burst}
        if deployments
        else meta,
    )
    if deployments:
        eu_rate, eu_burst = QUOTAS["eu"]
        llm.add_deployment(
            "gpt-4",
            SimulatedModel(
                "gpt-4",
                latency=0.005 * scale,
                failure_rate=0.05,
                seed=seed + 3,
                quota=(eu_rate / scale, eu_burst),
            ),
            {**meta, "deployment": "eu", "rpm": eu_rate * 60 / scale, "burst": eu_burst},
        )
    llm.register_model(
        "claude-opus",
        SimulatedModel("claude-opus", latency=0.006 * scale, failure_rate=0.10, seed=seed + 1),
        {"provider": "anthropic", "max_tokens": 4096, "cost_per_1k_tokens": 0.015},
    )
    llm.register_model(
        "local-llama",
        SimulatedModel("local-llama", latency=0.01 * scale, failure_rate=0.0, seed=seed + 2),
        {"provider": "local", "cost_per_1k_tokens": 0.0},
    )
    llm.set_active_model("gpt-4")
    llm.set_fallback_chain(["gpt-4", "claude-opus", "local-llama"])
    return llm


def build_openai_manager(seed: int, asynchronous: bool, scale: float = 1.0) -> LLMManager:
    """A real OpenAI-compatible endpoint (from the environment) before a simulated one;
    ``scale`` scales the backoff and the breaker's recovery time."""
    from .providers.openai_chat import openai_chat

    model = os.environ.get("OPENAI_MODEL")
    if not model:
        raise SystemExit("--openai needs OPENAI_MODEL (and OPENAI_API_KEY or OPENAI_BASE_URL)")
    llm = LLMManager(
        max_retries=3,
        failure_threshold=4,
        recovery_timeout=30.0 * scale,
        backoff_base=1.0 * scale,
        backoff_max=8.0 * scale,
    )
    try:
        fn = openai_chat(
            model,
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            timeout=30.0,
            asynchronous=asynchronous,
            default_params={"max_tokens": 64},
        )
    except (ImportError, ValueError) as exc:  # no SDK, or no key for api.openai.com
        raise SystemExit(f"--openai: {exc}") from None
    llm.register_model(model, fn, {"provider": "openai-compatible"})
    llm.register_model(
        "local-llama",
        SimulatedModel("local-llama", latency=0.0, failure_rate=0.0, seed=seed),
        {"provider": "simulated"},
    )
    llm.set_active_model(model)
    llm.set_fallback_chain(["local-llama"])
    return llm


def prompts(n: int, seed: int) -> list[str]:
    """A stream with repeats: a few popular questions and a long tail."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topic = TOPICS[min(int(rng.paretovariate(1.2)) - 1, len(TOPICS) - 1)]
        variant = rng.randrange(60)
        out.append(f"Explain {topic} in simple terms (variant {variant}).")
    return out


WIDTH = 80  # every line the demo prints fits a default terminal


def arrow(out: TextIO) -> str:
    """`` → `` where the output can encode it, else `` -> ``."""
    try:
        "→".encode(getattr(out, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return " -> "
    return " → "


def _states(llm: LLMManager) -> str:
    """The breakers that are not closed (the ones an operator looks for)."""
    states = llm.get_metrics()["breaker_states"]
    odd = [f"{name} {state}" for name, state in states.items() if state != "closed"]
    return ", ".join(odd) if odd else "all closed"


def _progress(llm: LLMManager, done: int, total: int, out: TextIO) -> None:
    """One progress line: redrawn in place on a terminal, one line per step when piped."""
    m = llm.get_metrics()
    w = len(str(total))
    line = (
        f"  [{done:{w}d}/{total}] ok {m['successful_requests']:<{w}d} "
        f"fail {m['failed_requests']:<2d} hit {m['cache_hits']:<{w}d} "
        f"retry {m['total_retries']:<3d} fallback {m['fallbacks']:<3d} | {_states(llm)}"
    )
    line = line if len(line) <= WIDTH - 1 else line[: WIDTH - 4] + "..."
    if _is_tty(out):
        end = "\n" if done == total else ""
        print(f"\r{line:<{WIDTH - 1}}", end=end, file=out, flush=True)
    else:
        print(line, file=out, flush=True)


def _is_tty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def report(llm: LLMManager, elapsed: float, out: TextIO) -> None:
    m = llm.get_metrics()
    print("\nMetrics", file=out)
    notes = {
        "cache_misses": f"(coalesced: {m['coalesced_requests']} twins waited on one call)",
        "fallbacks": "(moves to the next model of the route)",
    }
    for key in (
        "total_requests",
        "successful_requests",
        "failed_requests",
        "cache_hits",
        "cache_misses",
        "total_retries",
        "fallbacks",
        "total_tokens",
    ):
        print(f"  {key:<20} {m[key]:<6} {notes.get(key, '')}".rstrip(), file=out)
    print(f"  {'total_cost':<20} ${m['total_cost']:.4f}", file=out)
    print(f"  {'success_rate':<20} {m['success_rate']:.2%}", file=out)
    print(f"  {'cache_hit_rate':<20} {m['cache_hit_rate']:.2%}", file=out)
    print(f"  {'wall time':<20} {elapsed:.2f}s", file=out)
    print(
        "  cache_misses can exceed the distinct prompts: a prompt's twins that arrived\n"
        "  while its one upstream call was in flight each count a miss (coalesced).",
        file=out,
    )
    print("\nModels (latency per attempt)", file=out)
    header = (
        f"  {'model':<11} {'breaker':<9} {'calls':>5} {'ok':>5} {'fail':>4} "
        f"{'skip':>4} {'p50 ms':>6} {'p99 ms':>6} {'tokens':>6} {'cost $':>7}"
    )
    print(header, file=out)
    for name in llm.list_models():
        info = llm.get_model_info(name)
        s = info["stats"]
        print(
            f"  {name[:11]:<11} {info['circuit_breaker_state']:<9} {s['requests']:>5} "
            f"{s['successes']:>5} {s['failures']:>4} {s['short_circuits']:>4} "
            f"{s['p50_latency'] * 1e3:>6.2f} {s['p99_latency'] * 1e3:>6.2f} "
            f"{s['tokens']:>6} {s.get('cost', 0.0):>7.4f}",
            file=out,
        )
    print("  skip: attempts refused by an open breaker (no call made)", file=out)
    _deployments(llm, out)


def _deployments(llm: LLMManager, out: TextIO) -> None:
    """The split of each model with several deployments, and the 429s its limits saved."""
    for name in llm.list_models():
        group = llm._models[name].group
        if group is None:
            continue
        info = llm.get_model_info(name)
        total = max(1, info["stats"]["requests"])
        print(f"\nDeployments of {name} (routing={info['routing']})", file=out)
        print(
            f"  {'deployment':<10} {'breaker':<9} {'calls':>6} {'share':>6} "
            f"{'limit/s':>7} {'held back':>9} {'429s':>5}",
            file=out,
        )
        for d, m in zip(info["deployments"], group.members, strict=True):
            lim = m.limiter
            held = lim.snapshot()["refused"] if lim is not None else 0
            rate = f"{lim.rpm / 60:.0f}" if lim is not None and lim.rpm else "-"
            got_429 = getattr(m.fn, "rejected", 0)
            print(
                f"  {d['deployment']:<10} {d['circuit_breaker_state']:<9} "
                f"{d['stats']['requests']:>6} {d['stats']['requests'] / total:>6.0%} "
                f"{rate:>7} {held:>9} {got_429:>5}",
                file=out,
            )
        print(
            "  held back: attempts its own limit refused before any call (another\n"
            "  deployment or the next model took them); 429s: what its provider refused",
            file=out,
        )


def run_sync(llm: LLMManager, stream: Sequence[str], out: TextIO) -> None:
    step = max(1, len(stream) // 10)
    for i, prompt in enumerate(stream, 1):
        try:
            llm.generate(prompt, temperature=0.2)
        except LLMError:
            pass  # counted in the metrics; the demo keeps serving
        if i % step == 0 or i == len(stream):
            _progress(llm, i, len(stream), out)


async def run_async(
    llm: LLMManager, stream: Sequence[str], out: TextIO, width: int, duration: float = 0.0
) -> None:
    """Requests arrive as at a server: evenly over ``duration`` seconds (so the run spans
    the scenario, outage included), at most ``width`` in flight."""
    step = max(1, len(stream) // 10)
    done = 0
    room = asyncio.Semaphore(width)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(prompt: str) -> None:
        nonlocal done
        try:
            await llm.agenerate(prompt, temperature=0.2)
        except LLMError:
            pass
        finally:
            room.release()
        done += 1
        if done % step == 0 or done == len(stream):
            _progress(llm, done, len(stream), out)

    tasks = []
    for i, prompt in enumerate(stream):
        delay = t0 + duration * i / len(stream) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await room.acquire()
        tasks.append(asyncio.create_task(one(prompt)))
    await asyncio.gather(*tasks)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agenticaiframework.llms",
        description="agenticaiframework's LLM layer: a demo of retries, breakers, fallback "
        "and the cache, on simulated providers (no API key, no network).",
        epilog="example: python -m agenticaiframework.llms demo --async",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run simulated models behind a fallback chain",
        description="Simulated providers (gpt-4 with an outage, claude-opus, local-llama) "
        "behind one manager: progress, then the metrics and each model's figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument(
        "--requests",
        type=int,
        default=None,
        help="prompts to send (default: 1500; 20 with --openai)",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the prompts and the failures")
    demo.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="agenerate() on asyncio: requests arrive over the scenario's 2 s "
        "(times --time-scale), --concurrency at most in flight",
    )
    demo.add_argument(
        "--concurrency", type=int, default=50, help="with --async: requests in flight at most"
    )
    demo.add_argument(
        "--time-scale", type=float, default=1.0, help="scale every latency and timeout"
    )
    demo.add_argument(
        "--openai",
        action="store_true",
        help="a real OpenAI-compatible endpoint first (OPENAI_MODEL, OPENAI_API_KEY, "
        "OPENAI_BASE_URL)",
    )
    demo.add_argument(
        "--fleet",
        type=int,
        default=0,
        metavar="N",
        help="N worker processes sharing through a local redis-server",
    )
    demo.add_argument("--redis", default=None, help="with --fleet: this Redis instead")
    demo.add_argument(
        "--prometheus",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /metrics on 127.0.0.1:PORT while the demo runs (0: a free port)",
    )
    demo.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --prometheus: keep serving this long after the run",
    )
    demo.add_argument(
        "--hedging",
        action="store_true",
        help="hedged requests (agenerate) against a heavy-tailed provider: hedging off, "
        "after a fixed delay, and p95 (default --requests: 600)",
    )
    demo.add_argument(
        "--retry-budget",
        action="store_true",
        help="simulate an outage on a virtual clock: attempts per request with and "
        "without LLMManager(retry_budget=0.2)",
    )
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(out)
        return 0
    if args.retry_budget:
        if args.fleet or args.openai or args.use_async or args.prometheus is not None:
            parser.error("--retry-budget runs alone (no --fleet, --openai, --async, --prometheus)")
        from ._outage_sim import run_demo

        return run_demo(200, args.seed, out)
    if args.prometheus is not None and (args.fleet or not 0 <= args.prometheus <= 65535):
        parser.error("--prometheus PORT takes a port in 0..65535, without --fleet")
    if args.hold < 0 or (args.hold and args.prometheus is None):
        parser.error("--hold SECONDS takes SECONDS >= 0, with --prometheus")
    if args.requests is None:
        args.requests = 20 if args.openai else 600 if args.hedging else 1500
    if args.requests < 1:
        parser.error("--requests must be >= 1")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")

    if args.hedging:
        if args.fleet or args.openai or args.use_async:
            parser.error("--hedging runs alone (it is async itself)")
        from ._hedging_demo import run_hedging

        return run_hedging(out, args.requests, args.concurrency, args.seed, args.time_scale)
    if args.fleet:
        if args.fleet < 1 or args.openai or args.use_async:
            parser.error("--fleet N takes N >= 1, without --openai or --async")
        from ._fleet_demo import run_fleet

        return run_fleet(
            args.fleet,
            prompts(args.requests, args.seed),
            args.seed,
            args.time_scale,
            args.redis,
            out,
        )
    scale = args.time_scale
    if args.openai:
        llm = build_openai_manager(args.seed, args.use_async, scale)
        about = "a real endpoint, then a simulated one"
    else:
        llm = build_manager(args.seed, scale)
        about = f"gpt-4 (deployment us) is down from {0.4 * scale:.2g} s to {1.4 * scale:.2g} s"
    route = [n for n in [llm.active_model, *llm.fallback_chain] if n]
    stream = prompts(args.requests, args.seed)
    duration = 0.0 if args.openai else 2.0 * scale
    mode = (
        f"asyncio, arriving over {duration:.2g} s, {args.concurrency} in flight at most"
        if args.use_async
        else "sync, one after another"
    )
    print(
        f"agenticaiframework demo: {len(stream)} prompts ({len(set(stream))} distinct)\n"
        f"  {mode}\n"
        f"  route: {arrow(out).join(dict.fromkeys(route))}\n"
        f"  {about}",
        file=out,
    )
    server = None
    if args.prometheus is not None:
        try:
            from .prometheus import serve
        except ImportError as exc:
            raise SystemExit(
                f"--prometheus needs the prometheus extra (pip install "
                f"'agenticaiframework[prometheus]'): {exc}"
            ) from None
        server, _ = serve(llm, args.prometheus)
        print(f"serving http://127.0.0.1:{server.server_port}/metrics", file=out, flush=True)
    try:
        t0 = time.perf_counter()
        if args.use_async:
            asyncio.run(run_async(llm, stream, out, args.concurrency, duration))
        else:
            run_sync(llm, stream, out)
        report(llm, time.perf_counter() - t0, out)
        if server is not None and args.hold:
            print(f"\nserving /metrics for {args.hold:g}s more", file=out, flush=True)
            time.sleep(args.hold)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
