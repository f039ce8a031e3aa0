# ruff: noqa: RUF001 - the report is typeset: its multiplication signs and dashes are meant
"""The Redis tier beside LiteLLM's (issue 15): our L2 hit and LiteLLM Router's Redis cache
hit, each as a ratio to a bare redis-py GET of the same value in the same process.

    .venv/bin/python benches/compare/fleet.py [--rounds 7] [--write]

Run by ``make bench-fleet-compare``. Starts one redis-server for the run (a free loopback
port, no persistence: ``--save '' --appendonly no``), then per round one subprocess per side
(fleet_workload.py), the order alternating round by round: ours in .venv (the working
tree, as ``make build`` left it), LiteLLM in .bench-venvs/litellm. Each subprocess measures
its floor (bare GET) and its hit, sync and async, in paired loops. A ratio is hit/GET of one
process; the table gives the median over rounds of those ratios (min-max). ``--write``
replaces the marked section at the end of BENCHMARKS.md and writes fleet_results.json;
the rest of BENCHMARKS.md is left as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings
import sections

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENVS = Path(os.environ.get("BENCH_VENVS", REPO / ".bench-venvs"))
WORKLOAD = HERE / "fleet_workload.py"
DOC = REPO / "BENCHMARKS.md"
OUT = HERE / "fleet_results.json"
COMMAND = "make bench-fleet-compare"
BEGIN = "<!-- bench-fleet-compare: begin -->"
END = "<!-- bench-fleet-compare: end -->"
SIDES = ("ours", "litellm")
PATHS = (("hit", "get", "sync"), ("ahit", "aget", "async"))


def python_of(side: str) -> Path:
    if side == "ours":
        return Path(os.environ.get("OURS_PYTHON", REPO / ".venv" / "bin" / "python"))
    return VENVS / "litellm" / "bin" / "python"


def env_of(side: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONHASHSEED"] = "0"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_TELEMETRY"] = "False"
    if side == "ours":
        env["PYTHONPATH"] = str(REPO / "python")
    return env


# --------------------------------------------------------------------- redis-server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _send(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
        s.sendall(command + b"\r\n")
        return s.recv(4096)


@contextlib.contextmanager
def redis_server(binary: str) -> Any:
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="bench-fleet-redis-"))
    args = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(d),
        "--daemonize", "no",
        "--logfile", str(d / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"redis-server exited ({proc.returncode}); see {d}/redis.log")
            with contextlib.suppress(OSError):
                if _send(port, b"PING").startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not answer PING")
            time.sleep(0.01)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


def server_version(port: int) -> str:
    info = _send(port, b"INFO server").decode(errors="replace")
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


# --------------------------------------------------------------------- the run


def worker(side: str, port: int, flip: bool, args: argparse.Namespace, log: Path) -> Any:
    cmd = [str(python_of(side)), str(WORKLOAD), side, "--port", str(port)]
    cmd += ["--target-ms", str(args.target_ms), "--reps", str(args.reps)]
    cmd += ["--flip"] if flip else []
    with open(log, "a") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(
            cmd, env=env_of(side), stdout=subprocess.PIPE, stderr=err, text=True, check=False
        )
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *a], capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "python", "src")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD")
        + (" + uncommitted changes under python/ or src/" if dirty else ""),
        "loadavg_start": os.getloadavg(),
    }


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Per side and mode: medians over rounds of the ns figures and of the ratios."""
    out: dict[str, Any] = {}
    for side in SIDES:
        rounds = res["rounds_data"][side]
        for hit, floor, mode in PATHS:
            h = [r["paths"][hit]["ns"] for r in rounds]
            f = [r["paths"][floor]["ns"] for r in rounds]
            ratios = [a / b for a, b in zip(h, f, strict=True)]
            rpc = rounds[-1]["paths"][hit]["redis_per_call"]
            out[f"{side}/{mode}"] = {
                "hit_ns": statistics.median(h),
                "get_ns": statistics.median(f),
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "ratios": ratios,
                "redis_per_call": {
                    k: statistics.median(
                        r["paths"][hit]["redis_per_call"].get(k, 0.0) for r in rounds
                    )
                    for k in rpc
                },
            }
    return out


def fmt_ns(ns: float) -> str:
    return f"{ns / 1e3:,.1f} µs" if ns < 1e6 else f"{ns / 1e6:,.2f} ms"


def fmt_cmds(rpc: dict[str, float]) -> str:
    parts = []
    for k in ("get", "mget"):
        if rpc.get(k):
            parts.append(f"{rpc[k]:.2f} {k.upper()}")
    parts.append(f"{rpc.get('keyspace_hits', 0):.2f} hit")
    if rpc.get("keyspace_misses"):
        parts.append(f"{rpc['keyspace_misses']:.2f} miss")
    return ", ".join(parts)


def section(res: dict[str, Any]) -> str:
    s, m = res["summary"], res["machine"]
    o, lt = res["rounds_data"]["ours"][0], res["rounds_data"]["litellm"][0]
    rows = []
    for side, label in (("ours", "ours: L2 hit"), ("litellm", "LiteLLM Router: Redis cache hit")):
        for mode, call in (("sync", "sync"), ("async", "async")):
            x = s[f"{side}/{mode}"]
            what = {
                ("ours", "sync"): "`generate`",
                ("ours", "async"): "`agenerate`",
                ("litellm", "sync"): "`router.completion`",
                ("litellm", "async"): "`router.acompletion`",
            }[(side, mode)]
            rows.append(
                f"| {label}, {call} ({what}) | **{x['ratio']:.2f}×** "
                f"({x['ratio_min']:.2f}–{x['ratio_max']:.2f}) | {fmt_ns(x['hit_ns'])} | "
                f"{fmt_ns(x['get_ns'])} | {fmt_cmds(x['redis_per_call'])} |"
            )
    goal = [
        f"{mode} {s[f'ours/{mode}']['ratio']:.2f}× "
        f"({'met' if s[f'ours/{mode}']['ratio'] <= 1.5 else 'not met'})"
        for mode in ("sync", "async")
    ]
    vb_o, vb_l = o["value_bytes"], lt["value_bytes"]
    lines = [
        BEGIN,
        "## Redis tier: L2 hit beside LiteLLM Router's Redis cache hit (issue 15)",
        "",
        f"Generated by `{COMMAND}` (benches/compare/fleet.py → fleet_workload.py → "
        f"fleet_results.json) on {m['date']}; `make bench-compare` keeps this section as "
        "it is.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; load average "
        f"{m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end",
        f"- one redis-server {res['redis_version']} for the run, on a free loopback port, "
        "no persistence (`--save '' --appendonly no`)",
        f"- ours: the working tree at {m['commit']} (`{o.get('where', '')}`), CPython "
        f"{o['python']}, redis-py {o['redis_py']} (hiredis: {'yes' if o['hiredis'] else 'no'}), "
        "in .venv",
        f"- LiteLLM {lt['version']}, CPython {lt['python']}, redis-py {lt['redis_py']} "
        f"(hiredis: {'yes' if lt['hiredis'] else 'no'}), in .bench-venvs/litellm "
        "(benches/compare/requirements-litellm.txt)",
        f"- {res['rounds']} rounds; each round runs one subprocess per side, the order "
        f"alternating; each subprocess times its bare GET and its hit in loops calibrated to "
        f"~{res['target_ms']:.0f} ms, alternated (order flipped each round), median of "
        f"{res['reps']} loops; {res['seconds']} s in all",
        "",
        "**Ratios are the headline**: each is the hit over the bare redis-py `GET` of the "
        "same value measured in the same process, median over rounds (min–max). Absolute "
        "times are this machine's, medians over rounds, for scale only. The goal, ours "
        f"within 1.5× a bare GET: {', '.join(goal)}.",
        "",
        "| per call | ratio to bare GET | hit | bare GET | Redis per request |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "What each side does per request, exactly (the floor is `redis.Redis.get(key)` / "
        "`await redis.asyncio.Redis.get(key)`, default options, alternating the two keys the "
        "hit reads, in the same process):",
        "",
        '- **ours**: `LLMManager(redis=Fleet.from_url(url, "bench", connect_timeout=5.0, '
        "timeout=5.0), cache_max_entries=1)` (socket timeouts raised from ours' 0.1 s to "
        "LiteLLM RedisCache's 5 s default, so that a GET slowed by the machine's load is "
        "not taken as an outage and answered by the model), one "
        "model (a local function answering 200 `x`); two prompts alternate, so each request "
        "misses the one-entry L1 (native: key hash, lookup), reads Redis with one `GET`, "
        "decodes the stored entry, stores it in L1 (evicting the other prompt) and returns "
        f"the text. Value: {vb_o['sync'][0]} bytes. Checked: the model ran only for the two "
        "warming misses; `l2_hits` counts every request.",
        "- **LiteLLM Router**: `Router(model_list=[openai/gpt-4o with mock_response=200 x], "
        "cache_responses=True, redis_host, redis_port, num_retries=0, disable_cooldowns=True)`"
        ", the Router's documented Redis caching (it sets `litellm.cache = "
        'Cache(type="redis", host, port)`, a `RedisCache`); each call builds the one-message '
        "`messages` list and reads `choices[0].message.content`. Per request LiteLLM routes "
        "(deployment pick), builds the request's cache key (the request's parameters into a "
        "string, SHA-256), reads it through a `DualCache` — its process-wide in-memory layer "
        "(`litellm.caching.caching_handler.in_memory_cache_obj`, 200 entries by default) "
        "bounded here to one entry so the alternating prompts always miss it — then Redis "
        "`GET`, `json.loads` of the stored `{timestamp, response}` and of the response "
        "string, rebuilds a `ModelResponse` (pydantic), backfills the memory layer and runs "
        "its success logging (threads in sync, tasks in async). Sync and async requests are "
        f"keyed apart (values: {vb_l['sync'][0]} and {vb_l['async'][0]} bytes). Checked: "
        "`mock_completion` (counted) ran only for the four warming misses, `cache_hit` is set.",
        "- **Redis per request** (INFO commandstats and keyspace deltas over the timed loops "
        "/ requests): every request of every side reads its value with one `GET` that hits, "
        "so each hit was answered by Redis. LiteLLM's sync path sends one more `GET`: the "
        "Router looks its deployment's SDK client up in its routing `DualCache` "
        "(`<id>_client`, not `local_only` on the sync path) and, given `redis_host`, that "
        "misses memory (no SDK client is held there for this `mock_response` deployment) and "
        "goes to Redis, where it misses too; the occasional `MGET` is its cooldown check. "
        "Its async path looks the client up in memory only.",
        "- The 2-core machine also runs LiteLLM's background logging within its loops; "
        "50 ms of idle between loops (untimed, both sides) lets it finish before the next.",
        "- The floors differ between the processes: bare sync GET per round "
        f"{floor_range(res, 'ours', 'get')} in ours' processes, "
        f"{floor_range(res, 'litellm', 'get')} in LiteLLM's (async: "
        f"{floor_range(res, 'ours', 'aget')} and {floor_range(res, 'litellm', 'aget')}). "
        "Where LiteLLM's floor is the higher, its process (besides the main thread it runs "
        "`litellm-logging_0`, an executor worker, and `Dummy-1`, a thread not started by "
        "`threading`) or the machine's load slowed its GETs too, and its "
        "ratio to its own floor reads lower than against an undisturbed GET; the cause was "
        "not isolated.",
        END,
    ]
    return "\n".join(lines)


def floor_range(res: dict[str, Any], side: str, path: str) -> str:
    ns = [r["paths"][path]["ns"] for r in res["rounds_data"][side]]
    return f"{fmt_ns(min(ns))}–{fmt_ns(max(ns))}"


def write_section(text: str) -> None:
    sections.write(DOC, BEGIN, END, text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--target-ms", type=float, default=250.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md and the json")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", type=Path, help="only rewrite the section from a results file")
    args = ap.parse_args()
    if args.render is not None:
        write_section(section(json.loads(args.render.read_text())))
        return
    for side in SIDES:
        if not python_of(side).exists():
            raise SystemExit(f"{python_of(side)} missing: run `{COMMAND}`")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH: make redis-server")
    log = Path(tempfile.gettempdir()) / "bench-fleet-compare.log"
    log.write_text("")
    t_start = time.monotonic()
    res: dict[str, Any] = {
        "machine": machine(),
        "rounds": args.rounds,
        "target_ms": args.target_ms,
        "reps": args.reps,
        "rounds_data": {s: [] for s in SIDES},
    }
    with redis_server(binary) as port:
        res["redis_version"] = server_version(port)
        for r in range(args.rounds):
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            for side in order:
                t0 = time.monotonic()
                out = worker(side, port, r % 2 == 1, args, log)
                res["rounds_data"][side].append(out)
                p = out["paths"]
                print(
                    f"round {r + 1}/{args.rounds} {side:8s} {time.monotonic() - t0:5.1f}s  "
                    f"sync {p['hit']['ns'] / p['get']['ns']:6.2f}x  "
                    f"async {p['ahit']['ns'] / p['aget']['ns']:6.2f}x",
                    flush=True,
                )
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["seconds"] = round(time.monotonic() - t_start, 1)
    res["summary"] = summarize(res)
    print()
    for key, x in res["summary"].items():
        print(
            f"{key:14s} ratio {x['ratio']:7.2f}x ({x['ratio_min']:.2f}-{x['ratio_max']:.2f})  "
            f"hit {fmt_ns(x['hit_ns']):>10s}  GET {fmt_ns(x['get_ns']):>10s}  "
            f"{fmt_cmds(x['redis_per_call'])}"
        )
    if args.write:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        write_section(section(res))
        print(f"wrote {args.out} and the section of {DOC}; worker stderr in {log}")


if __name__ == "__main__":
    main()
