"""``demo --fleet N``: N worker processes over one prompt stream, sharing answers, flights
and breakers through a local redis-server (started here on a free port, no persistence,
or the one ``--redis URL`` names). Ends with the fleet-wide table: upstream calls per
distinct prompt, the hit rate of each tier, and when each worker saw the outage's breaker
open."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from .errors import LLMError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def local_redis() -> Iterator[str | None]:
    """A redis-server of this demo's own, or None when none is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="afw-demo-redis-") as d:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", d]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(500):  # up to ~5 s for the server to answer
                if _answers(port):
                    break
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _counted(fn: Callable[[str, dict[str, Any]], Any], calls: Counter[str]) -> Any:
    def call(prompt: str, kwargs: dict[str, Any]) -> Any:
        out = fn(prompt, kwargs)
        calls[prompt] += 1  # an answer that came from upstream (failures are not counted)
        return out

    return call


def _worker(
    w: int, url: str, namespace: str, stream: Sequence[str], seed: int, scale: float, out: Any
) -> None:
    from .__main__ import build_manager

    llm = build_manager(seed + w, scale, deployments=False, redis=url, namespace=namespace)
    calls: Counter[str] = Counter()
    for name in llm.list_models():  # count each upstream call, per prompt
        m = llm._models[name]
        llm.register_model(name, _counted(m.fn, calls), m.metadata)
    llm.set_active_model("gpt-4")
    llm.set_fallback_chain(["gpt-4", "claude-opus", "local-llama"])
    t0, opened = time.perf_counter(), None
    for prompt in stream:
        try:
            llm.generate(prompt, temperature=0.2)
        except LLMError:
            pass  # counted in the metrics; the demo keeps serving
        if opened is None and llm.get_model_info("gpt-4")["circuit_breaker_state"] == "open":
            opened = time.perf_counter() - t0
    out.put((w, dict(calls), llm.get_metrics(), opened))


def run_fleet(
    workers: int, stream: Sequence[str], seed: int, scale: float, url: str | None, out: TextIO
) -> int:
    with local_redis() if url is None else _given(url) as redis_url:
        if redis_url is None:
            print(
                "demo --fleet needs a redis-server: `make redis-server` (Debian's package), "
                "or pass --redis URL",
                file=out,
            )
            return 2
        namespace = f"demo-{os.getpid()}-{time.time_ns()}"
        print(
            f"agenticaiframework fleet demo: {workers} worker processes over {len(stream)} "
            f"prompts ({len(set(stream))} distinct), sharing through Redis; gpt-4 has an "
            f"outage from {0.4 * scale:.1f}s to {1.4 * scale:.1f}s",
            file=out,
            flush=True,
        )
        ctx = multiprocessing.get_context("spawn")
        q: Any = ctx.Queue()
        procs = [
            ctx.Process(
                target=_worker,
                args=(w, redis_url, namespace, stream[w::workers], seed, scale, q),
            )
            for w in range(workers)
        ]
        for p in procs:
            p.start()
        results = sorted(q.get(timeout=600) for _ in procs)
        for p in procs:
            p.join(60)
    report_fleet(results, stream, out)
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def report_fleet(results: list[Any], stream: Sequence[str], out: TextIO) -> None:
    calls: Counter[str] = Counter()
    print(
        f"\n  {'worker':<7} {'requests':>8} {'L1 hits':>8} {'L2 hits':>8} {'coalesced':>9} "
        f"{'answers':>8} {'failed':>6}  gpt-4 open at",
        file=out,
    )
    tot = Counter[str]()
    for w, wcalls, m, opened in results:
        calls.update(wcalls)
        row = {
            "requests": m["total_requests"],
            "l1": m["cache_hits"],
            "l2": m["l2_hits"],
            "coalesced": m["coalesced_requests"],
            "upstream": sum(wcalls.values()),
            "failed": m["failed_requests"],
        }
        tot.update(row)
        seen = "never" if opened is None else f"{opened:.2f}s"
        print(
            f"  {w + 1:<7} {row['requests']:>8} {row['l1']:>8} {row['l2']:>8} "
            f"{row['coalesced']:>9} {row['upstream']:>8} {row['failed']:>6}  {seen}",
            file=out,
        )
    print(
        f"  {'fleet':<7} {tot['requests']:>8} {tot['l1']:>8} {tot['l2']:>8} "
        f"{tot['coalesced']:>9} {tot['upstream']:>8} {tot['failed']:>6}",
        file=out,
    )
    distinct = len(set(stream))
    req = max(tot["requests"], 1)
    print(
        f"\n  upstream answers per distinct prompt: "
        f"{sum(calls.values()) / max(distinct, 1):.2f} ({sum(calls.values())} answers for "
        f"{distinct} prompts, fleet-wide; {tot['failed']} requests failed)",
        file=out,
    )
    print(
        f"  hit rate: L1 {tot['l1'] / req:.1%}, L2 {tot['l2'] / req:.1%}, "
        f"coalesced {tot['coalesced'] / req:.1%}",
        file=out,
    )
