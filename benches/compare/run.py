"""Drives the peer comparison: interleaved rounds of one subprocess per implementation,
then one memory run each, then callgrind instruction counts; writes results.json, then
BENCHMARKS.md and the chart (report.py).

    python benches/compare/run.py [--rounds 5] [--quick] [--no-callgrind]

Run by ``make bench-compare``, which builds the venvs under .bench-venvs/ first. Each
implementation runs in its own venv's interpreter (all the same CPython): ours, the floor,
the hand-glued stack and cachebox in .bench-venvs/ours (our package from the working tree,
as built by ``make build``, through PYTHONPATH), agenticaiframework 3.0.12 and LiteLLM each
in their own (the former has our import name).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENVS = Path(os.environ.get("BENCH_VENVS", REPO / ".bench-venvs"))
WORKLOAD = HERE / "workload.py"

VENV_OF = {
    "floor": "ours",
    "ours": "ours",
    "glued": "ours",
    "cachebox": "ours",
    "afw3012": "afw3012",
    "litellm": "litellm",
}
ORDER = ["floor", "ours", "glued", "cachebox", "afw3012", "litellm"]

# (implementation, path) pairs counted under callgrind; "hit" is the 32-char prompt.
CALLGRIND = [
    ("floor", "hit"),
    ("floor", "dict"),
    ("floor", "first_try"),
    ("floor", "fallback"),
    ("ours", "hit"),
    ("ours", "hit:two"),
    ("ours", "hit:nested"),
    ("ours", "first_try"),
    ("ours", "fallback"),
    ("ours", "breaker_skip"),
    ("glued", "hit"),
    ("glued", "hit:two"),
    ("glued", "first_try"),
    ("cachebox", "hit"),
    ("afw3012", "hit"),
    ("afw3012", "hit:two"),
    ("afw3012", "first_try"),
]
CG_N1, CG_N2 = 1_000, 11_000


def python_of(impl: str) -> Path:
    return VENVS / VENV_OF[impl] / "bin" / "python"


def env_of(impl: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONHASHSEED"] = "0"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_TELEMETRY"] = "False"
    if VENV_OF[impl] == "ours":
        env["PYTHONPATH"] = str(REPO / "python")
    return env


def worker(impl: str, *args: str, log: Path) -> dict[str, Any]:
    cmd = [str(python_of(impl)), str(WORKLOAD), impl, *args]
    with open(log, "a") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(
            cmd, env=env_of(impl), stdout=subprocess.PIPE, stderr=err, text=True, check=False
        )
    if proc.returncode != 0:
        raise SystemExit(f"{impl} {args} failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def callgrind_count(impl: str, path: str, n: int, tmp: Path) -> int:
    out = tmp / f"cg-{impl}-{path.replace(':', '_')}-{n}.out"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        str(python_of(impl)),
        str(WORKLOAD),
        impl,
        "--mode",
        "callgrind",
        "--path",
        path,
        "--n",
        str(n),
    ]
    proc = subprocess.run(cmd, env=env_of(impl), capture_output=True, text=True, check=False)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"callgrind {impl} {path} failed:\n{proc.stderr[-2000:]}")
    out.unlink(missing_ok=True)
    return int(m.group(1))


def native_digest() -> str:
    """Which build of our extension was measured (others may rebuild it meanwhile)."""
    sos = sorted((REPO / "python" / "agenticaiframework").glob("_native*.so"))
    h = hashlib.sha256()
    for so in sos:
        h.update(so.read_bytes())
    return h.hexdigest()[:12] if sos else "missing"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "python", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git + (" + uncommitted changes under python/ or src/" if dirty else ""),
        "loadavg_start": os.getloadavg(),
        "native_start": native_digest(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="short loops, for trying the harness")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--only", nargs="*", default=ORDER)
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args()
    impls = [i for i in ORDER if i in args.only]
    for impl in impls:
        if not python_of(impl).exists():
            raise SystemExit(f"{python_of(impl)} missing: run `make bench-compare`")
    probe = subprocess.run(
        [str(python_of("ours")), "-c", "import agenticaiframework._native"],
        env=env_of("ours"),
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise SystemExit(
            f"our native module does not import; run `make build` first\n{probe.stderr}"
        )
    log = Path(tempfile.gettempdir()) / "bench-compare.log"
    log.write_text("")
    t_start = time.monotonic()
    res: dict[str, Any] = {"machine": machine(), "rounds": args.rounds, "quick": args.quick}
    res["impls"] = {}
    q = ["--quick"] if args.quick else []

    # Interleaved rounds: every implementation's subprocess once per round, the order
    # rotated each round so none always runs first or last.
    for r in range(args.rounds):
        order = impls[r % len(impls) :] + impls[: r % len(impls)]
        for impl in order:
            # The floor's fan-out is the bare one each worker pairs with its own. LiteLLM's
            # 10k fan-out takes ~40 s, so it runs in the first round only.
            reps = 0 if impl == "floor" else (1 if r == 0 else 0) if impl == "litellm" else 3
            t0 = time.monotonic()
            out = worker(impl, *q, "--fanout-reps", str(reps), log=log)
            print(
                f"round {r + 1}/{args.rounds} {impl:9s} {time.monotonic() - t0:6.1f}s",
                flush=True,
            )
            slot = res["impls"].setdefault(
                impl,
                {
                    "version": out["version"],
                    "python": out["python"],
                    "paths": {},
                    "errors": {},
                    "fanout": [],
                    "threads": [],
                },
            )
            if "where" in out:
                slot["where"] = out["where"]
            for path, v in out["paths"].items():
                p = slot["paths"].setdefault(path, {"ns": [], "note": v.get("note", "")})
                p["ns"].append(v["ns"])
            slot["errors"].update(out["errors"])
            if out["fanout"]:
                slot["fanout"].append(out["fanout"])
            if out["threads"]:
                slot["threads"].append(out["threads"])

    for impl in impls:
        if impl == "litellm":
            continue  # ~2 ms a request: 10^6 requests would take over half an hour
        t0 = time.monotonic()
        mem = worker(impl, *q, "--mode", "memory-stream", log=log)["memory"]
        mem.update(worker(impl, *q, "--mode", "memory-entry", log=log)["memory"])
        res["impls"][impl]["memory"] = mem
        print(f"memory    {impl:9s} {time.monotonic() - t0:6.1f}s", flush=True)

    if not args.no_callgrind:
        t0 = time.monotonic()
        pairs = [(i, p) for i, p in CALLGRIND if i in impls]
        with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(2) as pool:
            tmp = Path(d)
            jobs = {
                (i, p, n): pool.submit(callgrind_count, i, p, n, tmp)
                for i, p in pairs
                for n in (CG_N1, CG_N2)
            }
            res["callgrind"] = {
                "n1": CG_N1,
                "n2": CG_N2,
                "counts": [
                    {
                        "impl": i,
                        "path": p,
                        "ir_n1": jobs[(i, p, CG_N1)].result(),
                        "ir_n2": jobs[(i, p, CG_N2)].result(),
                    }
                    for i, p in pairs
                ],
            }
        print(f"callgrind {len(pairs)} paths {time.monotonic() - t0:6.1f}s", flush=True)

    res["machine"]["loadavg_end"] = os.getloadavg()
    res["machine"]["native_end"] = native_digest()
    res["seconds"] = round(time.monotonic() - t_start, 1)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out} ({res['seconds']} s); worker stderr in {log}")
    if not args.no_report:
        sys.path.insert(0, str(HERE))
        import report

        report.render(res)


if __name__ == "__main__":
    main()
