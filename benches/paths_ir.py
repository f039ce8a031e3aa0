"""Instructions per call (callgrind) of LLMManager's hot paths, and an interleaved A/B timing.

    python benches/paths_ir.py --repo DIR [--json-out F] [--table-out F] [--baseline F]
    python benches/paths_ir.py --timing --repo A --repo-b B [--rounds 6] [--json-out F]

DIR is a checkout whose extension is built (``make build``): DIR/python/agenticaiframework
holds _native*.so and DIR/.venv/bin/python is its interpreter. Every measurement runs in a
subprocess of that interpreter with PYTHONPATH=DIR/python and PYTHONHASHSEED=0, with the
other PYTHON* and VIRTUAL_ENV variables dropped (as ``env_of`` in compare/run.py does) and
PYTHONDONTWRITEBYTECODE=1.

The paths are those of implementation ``ours`` in compare/workload.py (same set-up, same
loop bodies). By default the workload.py next to this script drives both sides of a
comparison (--workload to choose another), so only the package under test differs.

Callgrind: instructions per call = (Ir at N2 - Ir at N1) / (N2 - N1), as compare/run.py
computes it. Sync paths run through workload.py's own ``--mode callgrind``; workload.py's
callgrind mode cannot drive the async paths (it neither passes a loop nor awaits the loop
body), so those run through this script's child, which builds the same Path from
workload.py's ``Ours`` and runs its body inside one ``loop.run_until_complete``.
``--source own`` sends the sync paths through the child too (a cross-check). Each (path, N)
runs twice (--repeat); two runs disagreeing by over half an Ir per call get a third, and
the median is kept. The child also checks that the loop took the path it is named after
(hits counted, the fallback's breaker still closed, the skip's open).

Timing: for each path, rounds of one subprocess per side, order alternating; each
subprocess reports the median ns per call of a few calibrated perf_counter_ns loops
(workload.py's ``measure``). Reported: each side's median over rounds and B/A.

Only the standard library is imported here; the child imports workload.py and the package.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_WORKLOAD = HERE / "compare" / "workload.py"

# name -> (source for callgrind, n1, n2). "workload": workload.py --mode callgrind;
# "own": this script's child. Async paths cannot go through workload.py.
PATHS: dict[str, tuple[str, int, int]] = {
    "hit": ("workload", 1_000, 11_000),
    "hit:two": ("workload", 1_000, 11_000),
    "first_try": ("workload", 1_000, 11_000),
    "fallback": ("workload", 1_000, 11_000),
    "breaker_skip": ("workload", 1_000, 11_000),
    "ahit": ("own", 1_000, 11_000),
    "ahit:two": ("own", 1_000, 11_000),
    "afirst_try": ("own", 1_000, 11_000),
    "afallback": ("own", 1_000, 11_000),
    "abreaker_skip": ("own", 1_000, 11_000),
}
NOTES = {
    "hit": "cache hit, 32-char prompt, no kwargs",
    "hit:two": "cache hit, 32-char prompt, temperature=0.7, max_tokens=500",
    "first_try": "enable_caching=False, primary answers at once",
    "fallback": "caching off, max_retries=1: primary raises ConnectionError, backup answers",
    "breaker_skip": "caching off: primary's breaker open, skipped, backup answers",
}
for _k in list(NOTES):
    NOTES["a" + _k] = "agenerate: " + NOTES[_k]


# --------------------------------------------------------------------- the child side


def _load_workload(workload: str) -> Any:
    sys.path.insert(0, str(Path(workload).parent))
    import workload as wl  # type: ignore[import-not-found]

    return wl


def _make_path(wl: Any, impl: Any, name: str, loop: asyncio.AbstractEventLoop) -> Any:
    kind, _, kwn = name.partition(":")
    kw = wl.KWARGS[kwn or "none"]
    if kind == "hit":
        return impl.hit(wl.P32, kw)
    if kind == "ahit":
        return impl.ahit(loop, kw)
    if kind.startswith("a"):
        return getattr(impl, kind)(loop)
    return getattr(impl, kind)()


def _check_after(impl: Any, path: Any, name: str, n: int, before: dict[str, Any]) -> None:
    """After an untimed callgrind loop: did every call take the path it is named after?"""
    m = path.fn.__self__
    after = m.get_metrics()
    kind = name.partition(":")[0].lstrip("a")
    if kind == "hit":
        assert after["cache_hits"] - before["cache_hits"] == n, (before, after)
    elif kind in ("fallback", "breaker_skip"):
        state = m.get_model_info("primary")["circuit_breaker_state"]
        want = "closed" if kind == "fallback" else "open"
        assert state == want, f"{name}: primary's breaker is {state}, expected {want}"


def child_callgrind(workload: str, name: str, n: int) -> None:
    wl = _load_workload(workload)
    impl = wl.Ours()
    loop = asyncio.new_event_loop()
    path = _make_path(wl, impl, name, loop)
    before = path.fn.__self__.get_metrics()
    body = path.body(n, path.fn, path.a, path.b, path.kw)
    if path.is_async:
        loop.run_until_complete(body)
    _check_after(impl, path, name, n, before)
    loop.close()


def child_timing(workload: str, name: str, target_ms: float, reps: int) -> None:
    wl = _load_workload(workload)
    impl = wl.Ours()
    loop = asyncio.new_event_loop()
    path = _make_path(wl, impl, name, loop)
    res = wl.measure(path, int(target_ms * 1e6), reps)
    loop.close()
    res["where"] = impl.where
    json.dump(res, sys.stdout)


# --------------------------------------------------------------------- the driver side


def python_of(repo: Path) -> Path:
    return repo / ".venv" / "bin" / "python"


def env_of(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPATH"] = str(repo / "python")
    # Nothing written into the checkouts, and the N1 and N2 runs (concurrent) do the same
    # imports: a .pyc written by one and read by the other would skew the Ir difference.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def sha12(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()[:12]


def describe(repo: Path, workload: Path) -> dict[str, Any]:
    """Which checkout, build and driver were measured; warns of a stale extension."""
    pkg = repo / "python" / "agenticaiframework"
    sos = sorted(pkg.glob("_native*.so"))
    if not sos:
        raise SystemExit(f"{pkg}/_native*.so missing: run `make build` in {repo}")
    if not python_of(repo).exists():
        raise SystemExit(f"{python_of(repo)} missing: run `make build` in {repo}")

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *a], capture_output=True, text=True, check=False
        ).stdout.strip()

    so_mtime = min(so.stat().st_mtime for so in sos)
    newer = [
        str(f.relative_to(repo))
        for pat in ("src/**/*.rs", "Cargo.toml", "Cargo.lock")
        for f in repo.glob(pat)
        if f.stat().st_mtime > so_mtime
    ]
    if newer:
        print(
            f"WARNING: {len(newer)} native source file(s) newer than the extension in {repo} "
            f"(e.g. {newer[0]}): run `make build` there first",
            file=sys.stderr,
        )
    return {
        "repo": str(repo),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_python_src": git("status", "--porcelain", "--", "python", "src"),
        "native": {so.name: sha12(so) for so in sos},
        "native_older_than_sources": newer[:5],
        "python": str(python_of(repo)),
        "workload": str(workload),
        "workload_sha": sha12(workload),
        "manager_kw": os.environ.get("AFW_BENCH_MANAGER_KW", ""),
    }


def callgrind_count(
    repo: Path, workload: Path, name: str, source: str, n: int, tmp: Path, k: int = 0
) -> int:
    out = tmp / f"cg-{name.replace(':', '_')}-{source}-{n}-{k}.out"
    if source == "workload":
        argv = [str(workload), "ours", "--mode", "callgrind", "--path", name, "--n", str(n)]
    else:
        argv = [str(Path(__file__).resolve()), "--child-callgrind", name, "--n", str(n)]
        argv += ["--workload", str(workload)]
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [str(python_of(repo)), *argv]
    proc = subprocess.run(cmd, env=env_of(repo), capture_output=True, text=True, check=False)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"callgrind {name} (n={n}) failed:\n{proc.stderr[-3000:]}")
    out.unlink(missing_ok=True)
    return int(m.group(1))


def run_callgrind(args: argparse.Namespace) -> None:
    repo = Path(args.repo[0]).resolve()
    workload = Path(args.workload).resolve()
    info = describe(repo, workload)
    names = args.paths or list(PATHS)
    plan = []
    for name in names:
        source, n1, n2 = PATHS[name]
        if args.source == "own":
            source = "own"
        n1, n2 = args.n1 or n1, args.n2 or n2
        plan.append((name, source, n1, n2))
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(args.jobs) as pool:
        tmp = Path(d)
        jobs = {
            (name, n, k): pool.submit(callgrind_count, repo, workload, name, source, n, tmp, k)
            for name, source, n1, n2 in plan
            for n in (n1, n2)
            for k in range(args.repeat)
        }
        paths: dict[str, Any] = {}
        for name, source, n1, n2 in plan:
            counts = {}
            for n in (n1, n2):
                got = [jobs[(name, n, k)].result() for k in range(args.repeat)]
                # Identical runs agree to a few hundred Ir; more than half an Ir per call
                # of disagreement: one more run, and the median of the three is taken.
                if len(got) == 2 and abs(got[0] - got[1]) > (n2 - n1) / 2:
                    print(f"  {name} n={n}: runs disagree {got}, a third run", file=sys.stderr)
                    got.append(callgrind_count(repo, workload, name, source, n, tmp, 2))
                counts[n] = got
            a, b = statistics.median_low(counts[n1]), statistics.median_low(counts[n2])
            paths[name] = {
                "ir_per_call": (b - a) / (n2 - n1),
                "ir_n1": a,
                "ir_n2": b,
                "n1": n1,
                "n2": n2,
                "runs_n1": counts[n1],
                "runs_n2": counts[n2],
                "source": source,
                "note": NOTES[name],
            }
            print(f"  {name:14s} {paths[name]['ir_per_call']:10.1f} Ir/call", file=sys.stderr)
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    res = {
        "kind": "callgrind",
        **info,
        "valgrind": valgrind.stdout.strip(),
        "seconds": round(time.monotonic() - t0, 1),
        "paths": paths,
    }
    base = None
    if args.baseline:
        base = json.loads(Path(args.baseline).read_text())
        res["baseline"] = {"file": str(args.baseline), "repo": base.get("repo")}
    table = callgrind_table(res, base)
    emit(res, table, args)


def callgrind_table(res: dict[str, Any], base: dict[str, Any] | None) -> str:
    head = f"{res['repo']} @ {res['commit']}" + (" (dirty)" if res["dirty_python_src"] else "")
    lines = [f"Instructions per call (callgrind), {head}"]
    if base is None:
        lines.append(f"{'path':14s} {'Ir/call':>10s}  {'N1..N2':>13s}  {'via':8s}  what")
    else:
        lines.append(f"baseline: {base['repo']} @ {base['commit']}")
        lines.append(f"{'path':14s} {'before':>10s} {'after':>10s} {'delta':>9s} {'ratio':>7s}")
    for name, p in res["paths"].items():
        ir = p["ir_per_call"]
        if base is None:
            nn = f"{p['n1']}..{p['n2']}"
            lines.append(f"{name:14s} {ir:10.1f}  {nn:>13s}  {p['source']:8s}  {p['note']}")
        else:
            b = base["paths"].get(name)
            if b is None:
                lines.append(f"{name:14s} {'n/a':>10s} {ir:10.1f}")
                continue
            was = b["ir_per_call"]
            if (b["n1"], b["n2"]) != (p["n1"], p["n2"]):
                lines.append(
                    f"  (N differs: baseline {b['n1']}..{b['n2']}, now {p['n1']}..{p['n2']})"
                )
            lines.append(f"{name:14s} {was:10.1f} {ir:10.1f} {ir - was:+9.1f} {ir / was:7.3f}")
    return "\n".join(lines) + "\n"


def emit(res: dict[str, Any], table: str, args: argparse.Namespace) -> None:
    text = json.dumps(res, indent=1) + "\n"
    sys.stdout.write(text)
    sys.stdout.write("\n" + table)
    if args.json_out:
        Path(args.json_out).write_text(text)
    if args.table_out:
        Path(args.table_out).write_text(table)


def timing_once(repo: Path, workload: Path, name: str, args: argparse.Namespace) -> float:
    cmd = [str(python_of(repo)), str(Path(__file__).resolve()), "--child-timing", name]
    cmd += ["--workload", str(workload), "--target-ms", str(args.target_ms)]
    cmd += ["--reps", str(args.reps)]
    proc = subprocess.run(cmd, env=env_of(repo), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"timing {name} in {repo} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    want = str(repo / "python")
    if not out["where"].startswith(want):
        raise SystemExit(f"{repo}: imported {out['where']}, not the package under {want}")
    return float(out["ns"])


def run_timing(args: argparse.Namespace) -> None:
    if not args.repo_b:
        raise SystemExit("--timing needs --repo A and --repo-b B")
    a, b = Path(args.repo[0]).resolve(), Path(args.repo_b).resolve()
    workload = Path(args.workload).resolve()
    info = {"A": describe(a, workload), "B": describe(b, workload)}
    names = args.paths or list(PATHS)
    ns: dict[str, dict[str, list[float]]] = {n: {"A": [], "B": []} for n in names}
    order_log: dict[str, list[str]] = {n: [] for n in names}
    t0 = time.monotonic()
    for r in range(args.rounds):
        for i, name in enumerate(names):
            sides = [("A", a), ("B", b)]
            if (r + i) % 2:
                sides.reverse()
            order_log[name].append("".join(s for s, _ in sides))
            for side, repo in sides:
                ns[name][side].append(timing_once(repo, workload, name, args))
        print(
            f"round {r + 1}/{args.rounds} {time.monotonic() - t0:6.1f}s "
            f"load {os.getloadavg()[0]:.2f}",
            file=sys.stderr,
            flush=True,
        )
    paths = {}
    for name in names:
        ma, mb = statistics.median(ns[name]["A"]), statistics.median(ns[name]["B"])
        paired = sorted(y / x for x, y in zip(ns[name]["A"], ns[name]["B"], strict=True))
        paths[name] = {
            "A_ns_median": ma,
            "B_ns_median": mb,
            "B_over_A": mb / ma,
            "paired_ratio_median": statistics.median(paired),
            "paired_ratio_min": paired[0],
            "paired_ratio_max": paired[-1],
            "A_ns_min": min(ns[name]["A"]),
            "B_ns_min": min(ns[name]["B"]),
            "A_ns": ns[name]["A"],
            "B_ns": ns[name]["B"],
            "order": order_log[name],
            "note": NOTES[name],
        }
    res = {
        "kind": "timing",
        **info,
        "rounds": args.rounds,
        "target_ms": args.target_ms,
        "reps": args.reps,
        "seconds": round(time.monotonic() - t0, 1),
        "loadavg_end": os.getloadavg(),
        "paths": paths,
    }
    lines = [
        f"A = {info['A']['repo']} @ {info['A']['commit']}, "
        f"B = {info['B']['repo']} @ {info['B']['commit']}; "
        f"{args.rounds} rounds, median ns/call",
        f"{'path':14s} {'A ns':>9s} {'B ns':>9s} {'B/A':>7s}   paired B/A median [min..max]"
        f"   min-of-rounds B/A",
    ]
    for name, p in paths.items():
        lines.append(
            f"{name:14s} {p['A_ns_median']:9.1f} {p['B_ns_median']:9.1f} {p['B_over_A']:7.3f}"
            f"   {p['paired_ratio_median']:.3f} [{p['paired_ratio_min']:.3f}.."
            f"{p['paired_ratio_max']:.3f}]   {p['B_ns_min'] / p['A_ns_min']:.3f}"
        )
    emit(res, "\n".join(lines) + "\n", args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", action="append", help="checkout to measure (A for --timing)")
    ap.add_argument("--repo-b", help="with --timing: the B side")
    ap.add_argument("--timing", action="store_true", help="interleaved A/B timing")
    ap.add_argument("--paths", nargs="*", choices=list(PATHS), help="default: all")
    ap.add_argument("--workload", default=str(DEFAULT_WORKLOAD))
    ap.add_argument("--source", choices=["auto", "own"], default="auto")
    ap.add_argument("--n1", type=int, default=0, help="override every path's N1")
    ap.add_argument("--n2", type=int, default=0, help="override every path's N2")
    ap.add_argument("--jobs", type=int, default=2, help="callgrind runs in parallel")
    ap.add_argument("--repeat", type=int, default=2, help="callgrind runs per (path, N)")
    ap.add_argument("--baseline", help="callgrind JSON of an earlier run, to compare with")
    ap.add_argument("--rounds", type=int, default=6, help="timing rounds (>= 5)")
    ap.add_argument("--target-ms", type=float, default=20.0, help="timing loop length")
    ap.add_argument("--reps", type=int, default=5, help="timing loops per subprocess")
    ap.add_argument(
        "--manager-kw",
        help='JSON of extra LLMManager options for every path, e.g. \'{"redis": "redis://..."}\'',
    )
    ap.add_argument("--json-out")
    ap.add_argument("--table-out")
    ap.add_argument("--child-callgrind", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--child-timing", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.manager_kw:
        json.loads(args.manager_kw)  # a typo fails here, not in every child
        os.environ["AFW_BENCH_MANAGER_KW"] = args.manager_kw  # env_of passes it on
    if args.child_callgrind:
        child_callgrind(args.workload, args.child_callgrind, args.n)
    elif args.child_timing:
        child_timing(args.workload, args.child_timing, args.target_ms, args.reps)
    elif not args.repo:
        ap.error("--repo DIR is required")
    elif args.timing:
        run_timing(args)
    else:
        if len(args.repo) > 1:
            ap.error("callgrind takes one --repo (compare runs with --baseline)")
        run_callgrind(args)


if __name__ == "__main__":
    main()
