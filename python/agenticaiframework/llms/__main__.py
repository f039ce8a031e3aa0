"""The demo: simulated providers behind a manager with a fallback chain.

    python -m agenticaiframework.llms demo [--requests N] [--async] [--seed S] [--openai]
        [--prometheus PORT [--hold SECONDS]]

No API key and no network: three simulated models (one with an outage window) answer a
stream of prompts with repeats, and the demo prints progress, then the metrics, each
model's stats and its breaker state.

``--openai`` puts a real OpenAI-compatible endpoint first instead, from the environment:
``OPENAI_MODEL`` (required), ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` (for vLLM, Ollama,
llama.cpp server, ...), with the simulated local model as its fallback.

``--prometheus PORT`` serves ``/metrics`` (the ``prometheus`` extra) while the demo runs,
on 127.0.0.1 (port 0: a free one, printed), and ``--hold SECONDS`` longer after it ends.
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


def _states(llm: LLMManager) -> str:
    return " ".join(
        f"{name}={llm.get_model_info(name)['circuit_breaker_state']}" for name in llm.list_models()
    )


def _progress(llm: LLMManager, done: int, total: int, out: TextIO) -> None:
    m = llm.get_metrics()
    print(
        f"  [{done:5d}/{total}] ok={m['successful_requests']:5d} "
        f"failed={m['failed_requests']:3d} hits={m['cache_hits']:5d} "
        f"retries={m['total_retries']:4d} fallbacks={m['fallbacks']:4d} | {_states(llm)}",
        file=out,
        flush=True,
    )


def report(llm: LLMManager, elapsed: float, out: TextIO) -> None:
    m = llm.get_metrics()
    print("\nMetrics", file=out)
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
        print(f"  {key:<20} {m[key]}", file=out)
    print(f"  {'success_rate':<20} {m['success_rate']:.2%}", file=out)
    print(f"  {'cache_hit_rate':<20} {m['cache_hit_rate']:.2%}", file=out)
    print(f"  {'wall time':<20} {elapsed:.2f}s", file=out)
    print("\nModels", file=out)
    header = (
        f"  {'model':<12} {'breaker':<9} {'calls':>6} {'ok':>6} {'fail':>5} "
        f"{'skipped':>7} {'p50 ms':>7} {'p99 ms':>7} {'tokens':>7} {'cost $':>8}"
    )
    print(header, file=out)
    for name in llm.list_models():
        info = llm.get_model_info(name)
        s = info["stats"]
        print(
            f"  {name:<12} {info['circuit_breaker_state']:<9} {s['requests']:>6} "
            f"{s['successes']:>6} {s['failures']:>5} {s['short_circuits']:>7} "
            f"{s['p50_latency'] * 1e3:>7.2f} {s['p99_latency'] * 1e3:>7.2f} "
            f"{s['tokens']:>7} {s.get('cost', 0.0):>8.4f}",
            file=out,
        )
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


async def run_async(llm: LLMManager, stream: Sequence[str], out: TextIO, width: int) -> None:
    step = max(1, len(stream) // 10)
    done = 0

    async def one(prompt: str) -> None:
        nonlocal done
        try:
            await llm.agenerate(prompt, temperature=0.2)
        except LLMError:
            pass
        done += 1
        if done % step == 0 or done == len(stream):
            _progress(llm, done, len(stream), out)

    for start in range(0, len(stream), width):
        await asyncio.gather(*(one(p) for p in stream[start : start + width]))


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m agenticaiframework.llms")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run simulated models behind a fallback chain")
    demo.add_argument("--requests", type=int, default=None, help="1500 (20 with --openai)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--async", dest="use_async", action="store_true")
    demo.add_argument("--concurrency", type=int, default=50)
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
    args = parser.parse_args(argv)
    if args.prometheus is not None and (args.fleet or not 0 <= args.prometheus <= 65535):
        parser.error("--prometheus PORT takes a port in 0..65535, without --fleet")
    if args.hold < 0 or (args.hold and args.prometheus is None):
        parser.error("--hold SECONDS takes SECONDS >= 0, with --prometheus")
    if args.requests is None:
        args.requests = 20 if args.openai else 1500
    if args.requests < 1:
        parser.error("--requests must be >= 1")

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
    if args.openai:
        llm = build_openai_manager(args.seed, args.use_async, args.time_scale)
        route = [llm.active_model, *llm.fallback_chain]
        about = f"route {route[0]} -> {route[1:]} (a real endpoint, then a simulated one)"
    else:
        llm = build_manager(args.seed, args.time_scale)
        about = (
            f"route {llm.active_model} -> {llm.fallback_chain[1:]}; gpt-4 has an outage "
            f"from {0.4 * args.time_scale:.1f}s to {1.4 * args.time_scale:.1f}s"
        )
    stream = prompts(args.requests, args.seed)
    mode = f"asyncio, {args.concurrency} at a time" if args.use_async else "sync"
    print(
        f"agenticaiframework demo: {len(stream)} prompts ({len(set(stream))} distinct), "
        f"{mode}; {about}",
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
            asyncio.run(run_async(llm, stream, out, args.concurrency))
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
