# ruff: noqa: RUF001 - the report is typeset: its multiplication signs and dashes are meant
"""Open-loop load (issue 20): what the layer adds to a request's latency at a given rate,
and where it saturates, beside the bare ``await model()`` and LiteLLM Router, in one
process per side per rate.

    .bench-venvs/ours/bin/python benches/compare/load.py [--rounds 3] [--write]
    .venv/bin/python benches/compare/load.py --quick   # a smoke run: bare and ours only

Run by ``make bench-load``. Per round, per shape (``async``: one event loop; ``sync8`` /
``sync32``: ``generate`` from a thread pool of 8 / 32 workers), per rate of the ladder,
one subprocess per side (load_workload.py), the order of the sides rotated round by
round: ``bare`` and ``ours`` in .venv (the working tree, as ``make build`` left it),
``litellm`` in .bench-venvs/litellm. A subprocess runs every scenario of its side at its
rate, each on a fresh manager / Router. Once a side saturates a scenario at a rate (see
load_workload.py), that rate and the higher ones are not run again for it.

The overhead of a side at a percentile is, within one round, the side's percentile minus
the bare call's at the same rate and shape (each over its own requests, from their
scheduled arrival to the answer), then the median over rounds. ``--write`` replaces the
marked section of BENCHMARKS.md (``make bench-compare`` keeps it), writes
load_results.json and the plot load.png.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
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
WORKLOAD = HERE / "load_workload.py"
DOC = REPO / "BENCHMARKS.md"
OUT = HERE / "load_results.json"
CHART = HERE / "load.png"
COMMAND = "make bench-load"
BEGIN = "<!-- bench-load: begin -->"
END = "<!-- bench-load: end -->"
SIDES = ("bare", "ours", "litellm")
SCENARIOS = {
    "async": ("first_try", "cache30", "fallback", "breaker"),
    "sync8": ("first_try",),
    "sync32": ("first_try", "cache30"),
}
LADDER = {
    "async": (25, 50, 300, 1000, 2000, 3000, 4000, 6000, 10000, 15000, 20000, 25000, 30000),
    "sync8": (25, 50, 300, 600, 1000),
    "sync32": (50, 300, 1000, 2000, 3000),
}
# LiteLLM's own ladder: it saturates this machine below 100/s (~10 ms of CPU a request
# here), and each of its processes pays ~20 s of imports. Not run with 32 threads: its
# ceiling is its CPU, which 8 threads already reach. Ours starts at 50/s.
LITELLM_LADDER = {"async": (25, 50), "sync8": (25, 50), "sync32": ()}
OURS_FROM = 50
# The paired runs (load_workload.py paired): requests per second, both twins counted.
PAIRED_LADDER = (2000, 4000, 8000, 12000, 16000, 20000, 24000, 28000, 32000)
PAIRED_SPAN = 2.0
MIN_REQUESTS = 150  # per run: low rates run longer so that p99 has some requests behind it
LABEL = {"bare": "bare call", "ours": "ours", "litellm": "LiteLLM Router"}
SC_LABEL = {
    "first_try": "first try, no cache",
    "cache30": "cache on, 30% repeats",
    "fallback": "failing primary → fallback",
    "breaker": "open breaker → fallback",
}


def python_of(side: str) -> Path:
    if side == "litellm":
        return VENVS / "litellm" / "bin" / "python"
    return Path(os.environ.get("OURS_PYTHON", REPO / ".venv" / "bin" / "python"))


def env_of(side: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONHASHSEED"] = "0"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_TELEMETRY"] = "False"
    if side != "litellm":
        env["PYTHONPATH"] = str(REPO / "python")
    return env


def span_of(rate: float, span: float) -> float:
    return max(span, MIN_REQUESTS / rate)


def worker(side: str, shape: str, rate: float, scenarios: list[str], a: Any, log: Path) -> Any:
    cmd = [str(python_of(side)), str(WORKLOAD), side, "--shape", shape, "--rate", str(rate)]
    span = span_of(rate, a.paired_span if side == "paired" else a.span)
    cmd += ["--span", f"{span:.3f}", "--delay", str(a.delay)]
    cmd += ["--scenarios", ",".join(scenarios), "--seed", str(a.seed)]
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


# --------------------------------------------------------------------- the figures

PCTS = ("p50", "p99", "p99.9")


def med(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def summarize(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (shape, rate, side, scenario): medians over the rounds that ran it."""
    runs = res["runs"]
    bare: dict[tuple[str, float, int], Any] = {
        (r["shape"], r["rate"], r["round"]): r["out"]["scenarios"]["first_try"]
        for r in runs
        if r["side"] == "bare"
    }
    acc: dict[tuple[str, float, str, str], list[tuple[Any, Any]]] = {}
    for r in runs:
        if r["side"] == "paired":
            continue
        for sc, x in r["out"]["scenarios"].items():
            key = (r["shape"], r["rate"], r["side"], sc)
            acc.setdefault(key, []).append((x, bare.get((r["shape"], r["rate"], r["round"]))))
    rows = []
    for (shape, rate, side, sc), xs in sorted(acc.items()):
        row: dict[str, Any] = {
            "shape": shape, "rate": rate, "side": side, "scenario": sc, "rounds": len(xs),
            "saturated": sum(1 for x, _ in xs if x["saturated"]),
            "errors": sum(x["errors"] for x, _ in xs),
            "throughput": med([x["throughput"] for x, _ in xs]),
            "cpu_us": med([x["cpu_us_per_request"] for x, _ in xs]),
        }  # fmt: skip
        for p in PCTS:
            row[p] = med([x[p] for x, _ in xs])
            paired = [x[p] - b[p] for x, b in xs if b is not None and not b["saturated"]]
            row[f"over_{p}"] = med(paired) if paired else float("nan")
        row["cpu_over_us"] = med(
            [x["cpu_us_per_request"] - b["cpu_us_per_request"] for x, b in xs if b is not None]
        )
        rows.append(row)
    return rows


OWN = ("own_p50", "own_p99", "own_p99.9")


def summarize_paired(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (rate, scenario) of the paired runs: medians over rounds of ours' and the
    bare twin's percentiles, of their in-run differences, and of each side's own time."""
    acc: dict[tuple[float, str], list[Any]] = {}
    for r in res["runs"]:
        if r["side"] == "paired":
            for sc, x in r["out"]["scenarios"].items():
                acc.setdefault((r["rate"], sc), []).append(x)
    rows = []
    for (rate, sc), xs in sorted(acc.items()):
        row: dict[str, Any] = {
            "rate": rate, "scenario": sc, "rounds": len(xs),
            "saturated": sum(1 for x in xs if x["saturated"]),
            "errors": sum(x["errors"] for x in xs),
            "throughput": med([x["throughput"] for x in xs]),
            "cpu_us": med([x["cpu_us_per_request"] for x in xs]),
        }  # fmt: skip
        for p in PCTS:
            row[f"bare_{p}"] = med([x["bare"][p] for x in xs])
            row[f"ours_{p}"] = med([x["ours"][p] for x in xs])
            row[f"over_{p}"] = med([x["ours"][p] - x["bare"][p] for x in xs])
            row[f"over_{p}_range"] = [
                min(x["ours"][p] - x["bare"][p] for x in xs),
                max(x["ours"][p] - x["bare"][p] for x in xs),
            ]
        for p in OWN:
            row[f"bare_{p}"] = med([x["bare"][p] for x in xs])
            row[f"ours_{p}"] = med([x["ours"][p] for x in xs])
        rows.append(row)
    return rows


def held(r: dict[str, Any], rounds: int) -> bool:
    """Sustained: every round ran the rate (none had saturated below it), none saturated
    there, none errored. Near the knee a rate can hold in one round and not in the next:
    that rate is not the one quoted."""
    return r["rounds"] == rounds and not r["saturated"] and not r["errors"]


def sustained(rows: list[dict[str, Any]], rounds: int, **match: str) -> Any:
    """The row of the highest rate every round sustained, among those whose fields are
    ``match``'s (paired rows have no shape or side)."""
    ok = [r for r in rows if all(r[k] == v for k, v in match.items()) and held(r, rounds)]
    return max(ok, key=lambda r: r["rate"], default=None)


def fmt_us(us: float) -> str:
    if math.isnan(us):
        return "–"
    if abs(us) >= 10_000:
        return f"{us / 1e3:,.1f} ms"
    if abs(us) >= 1_000:
        return f"{us / 1e3:,.2f} ms"
    return f"{us:,.0f} µs"


def fmt_over(us: float) -> str:
    return "–" if math.isnan(us) else ("+" if us >= 0 else "−") + fmt_us(abs(us))


# --------------------------------------------------------------------- chart

STYLES = {"first_try": "-", "cache30": "--", "fallback": "-.", "breaker": ":"}


def chart(res: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    colors = {"bare": "#7f7f7f", "ours": "#d62728", "litellm": "#9467bd"}
    fig, grid = plt.subplots(2, 2, figsize=(16, 12))
    axes = [grid[0][0], grid[1][0], grid[1][1]]
    paired_panel(grid[0][1], summarize_paired(res))
    for ax, shape in zip(axes, ("async", "sync8", "sync32"), strict=True):
        for side in SIDES:
            for sc in SCENARIOS[shape]:
                if side == "bare" and sc != "first_try":
                    continue
                pts = [
                    r
                    for r in rows
                    if (r["shape"], r["side"], r["scenario"]) == (shape, side, sc)
                    and not math.isnan(r["p99"])
                ]
                if not pts:
                    continue
                xs = [r["throughput"] for r in pts]
                ys = [r["p99"] / 1e3 for r in pts]
                label = LABEL[side] if side == "bare" else f"{LABEL[side]}: {SC_LABEL[sc]}"
                ax.plot(
                    xs, ys, STYLES[sc], marker="o", markersize=3, color=colors[side],
                    label=label, linewidth=1.2,
                )  # fmt: skip
                for r, x, y in zip(pts, xs, ys, strict=True):
                    if r["saturated"]:
                        ax.plot([x], [y], "x", color=colors[side], markersize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("achieved requests/s (log)")
        ax.set_ylabel("p99 latency from the scheduled arrival, ms (log)")
        title = {"async": "async: agenerate on one event loop", "sync8": "sync: 8 threads"}
        ax.set_title(title.get(shape, "sync: 32 threads"), fontsize=10)
        ax.axhline(res["delay"] * 1e3, color="#bbb", linewidth=0.8)
        ax.grid(which="major", alpha=0.4)
        ax.grid(which="minor", alpha=0.12)
        ax.xaxis.set_minor_formatter(NullFormatter())  # labels on minor ticks would overlap
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    m = res["machine"]
    fig.suptitle(
        f"Open-loop load: p99 latency vs achieved rate (model: {res['delay'] * 1e3:.0f} ms "
        "simulated network; × = saturated in a round)",
        fontsize=11,
    )
    fig.text(
        0.01, 0.005,
        f"{m['cpu']}, {m['cores']} cores, {m['date']}, {res['rounds']} rounds, medians over "
        f"rounds; load average {m['loadavg_start'][0]:.1f}–{m['loadavg_end'][0]:.1f}",
        fontsize=8, color="#555",
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def paired_panel(ax: Any, prows: list[dict[str, Any]]) -> None:
    """The paired runs: ours' p99 overhead over its bare twin, and ours' own time at p99,
    by rate (the cache's overhead is negative, its hits being faster: off this scale)."""
    for sc in SCENARIOS["async"]:
        pts = [r for r in prows if r["scenario"] == sc]
        if not pts:
            continue
        xs = [r["throughput"] for r in pts]
        if sc != "cache30":
            ax.plot(xs, [r["over_p99"] for r in pts], STYLES[sc], marker="o", markersize=3,
                    color="#d62728", label=f"p99 overhead: {SC_LABEL[sc]}")  # fmt: skip
        ax.plot(xs, [r["ours_own_p99"] for r in pts], STYLES[sc], marker="s", markersize=3,
                color="#1f77b4", label=f"own time p99: {SC_LABEL[sc]}")  # fmt: skip
        for r, x in zip(pts, xs, strict=True):
            if r["saturated"]:
                ax.plot([x], [r["ours_own_p99"]], "x", color="#1f77b4", markersize=8)
    ax.axhline(50, color="#2ca02c", linewidth=0.9, linestyle="--")
    ax.text(0.01, 52, "50 µs (the goal)", color="#2ca02c", fontsize=8,
            transform=ax.get_yaxis_transform())  # fmt: skip
    ax.axhline(0, color="#bbb", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_ylim(-40, 160)
    ax.set_xlabel("achieved requests/s, both twins (log)")
    ax.set_ylabel("µs")
    ax.set_title("async, paired: ours and its bare twin in one event loop", fontsize=10)
    ax.grid(which="major", alpha=0.4)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)


# --------------------------------------------------------------------- the section


def table(rows: list[dict[str, Any]], shape: str) -> list[str]:
    out = [
        "| rate offered | side: scenario | achieved /s | p50 | p99 | p99.9 | overhead p50 / "
        "p99 / p99.9 | CPU per request (over bare) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {s: k for k, s in enumerate(SIDES)}
    scs = {s: k for k, s in enumerate(SCENARIOS[shape])}
    sel = [r for r in rows if r["shape"] == shape]
    sel.sort(key=lambda r: (r["rate"], order[r["side"]], scs.get(r["scenario"], 9)))
    for r in sel:
        sat = f" **saturated** ({r['saturated']}/{r['rounds']})" if r["saturated"] else ""
        err = f" **{r['errors']} errors**" if r["errors"] else ""
        name = "bare `await model()`" if r["side"] == "bare" else LABEL[r["side"]]
        if r["side"] == "bare" and shape != "async":
            name = "bare `model()`"
        what = "" if r["side"] == "bare" else f": {SC_LABEL[r['scenario']]}"
        over = "" if r["side"] == "bare" else " / ".join(fmt_over(r[f"over_{p}"]) for p in PCTS)
        cpu = f"{r['cpu_us']:.0f} µs" + (
            "" if r["side"] == "bare" else f" ({fmt_over(r['cpu_over_us'])})"
        )
        out.append(
            f"| {r['rate']:,.0f}/s | {name}{what}{sat}{err} | {r['throughput']:,.0f} | "
            f"{fmt_us(r['p50'])} | {fmt_us(r['p99'])} | {fmt_us(r['p99.9'])} | {over} | {cpu} |"
        )
    return out


def headline(rows: list[dict[str, Any]], rounds: int) -> list[str]:
    lines = []
    for shape in SCENARIOS:
        for sc in SCENARIOS[shape]:
            parts = []
            for side in ("ours", "litellm"):
                r = sustained(rows, rounds, shape=shape, side=side, scenario=sc)
                if r is None:
                    continue
                parts.append(
                    f"{LABEL[side]} sustains {r['rate']:,.0f}/s (achieved "
                    f"{r['throughput']:,.0f}/s): p99 {fmt_us(r['p99'])}, overhead over the "
                    f"bare call p99 **{fmt_over(r['over_p99'])}** (p50 "
                    f"{fmt_over(r['over_p50'])})"
                )
            b = sustained(rows, rounds, shape=shape, side="bare", scenario="first_try")
            if parts:
                bare = (
                    f"; the bare call sustains {b['rate']:,.0f}/s, p99 {fmt_us(b['p99'])}"
                    if b
                    else ""
                )
                lines.append(f"- {shape}, {SC_LABEL[sc]}: " + "; ".join(parts) + bare)
    return lines


def paired_table(prows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| requests/s offered (both twins) | scenario | achieved /s | bare twin p50 / p99 / "
        "p99.9 | ours' overhead p50 / p99 / p99.9 | p99 overhead, rounds' range | ours' own "
        "time p50 / p99 / p99.9 | bare's own time p99 (the floor) | CPU per request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    scs = {s: k for k, s in enumerate(SCENARIOS["async"])}
    for r in sorted(prows, key=lambda r: (r["rate"], scs.get(r["scenario"], 9))):
        sat = f" **saturated** ({r['saturated']}/{r['rounds']})" if r["saturated"] else ""
        err = f" **{r['errors']} errors**" if r["errors"] else ""
        lo, hi = r["over_p99_range"]
        out.append(
            f"| {r['rate']:,.0f}/s | {SC_LABEL[r['scenario']]}{sat}{err} | "
            f"{r['throughput']:,.0f} | "
            + " / ".join(fmt_us(r[f"bare_{p}"]) for p in PCTS)
            + " | "
            + " / ".join(fmt_over(r[f"over_{p}"]) for p in PCTS)
            + f" | {fmt_over(lo)} … {fmt_over(hi)} | "
            + " / ".join(fmt_us(r[f"ours_{p}"]) for p in OWN)
            + f" | {fmt_us(r['bare_own_p99'])} | {r['cpu_us']:.0f} µs |"
        )
    return out


def paired_headline(prows: list[dict[str, Any]], rounds: int) -> list[str]:
    lines = []
    for sc in SCENARIOS["async"]:
        r = sustained(prows, rounds, scenario=sc)
        if r is None:
            continue
        lo, hi = r["over_p99_range"]
        lines.append(
            f"- {SC_LABEL[sc]}: at {r['rate']:,.0f} requests/s (achieved "
            f"{r['throughput']:,.0f}/s), ours' overhead over its bare twin p99 "
            f"**{fmt_over(r['over_p99'])}** (rounds {fmt_over(lo)} … {fmt_over(hi)}), p50 "
            f"{fmt_over(r['over_p50'])}, p99.9 "
            f"{fmt_over(r['over_p99.9'])}; the layer's own time per request p50 "
            f"{fmt_us(r['ours_own_p50'])}, p99 {fmt_us(r['ours_own_p99'])}, p99.9 "
            f"{fmt_us(r['ours_own_p99.9'])} (the bare twin's, the measurement's floor: p99 "
            f"{fmt_us(r['bare_own_p99'])})"
        )
    return lines


def section(res: dict[str, Any], notes: str = "") -> str:
    rows = summarize(res)
    prows = summarize_paired(res)
    m = res["machine"]
    o: dict[str, Any] = next((r["out"] for r in res["runs"] if r["side"] == "ours"), {})
    lt = next((r["out"] for r in res["runs"] if r["side"] == "litellm"), None)
    quick = " (**--quick: a smoke run, not for quoting**)" if res.get("quick") else ""
    versions = [
        f"- ours: the working tree at {m['commit']} (`{o.get('where', '')}`), CPython "
        f"{o.get('python', '?')}, in .venv; the bare call in the same venv",
    ]
    if lt is not None:
        versions.append(
            f"- LiteLLM {lt['version']}, CPython {lt['python']}, in .bench-venvs/litellm "
            "(benches/compare/requirements-litellm.txt)"
        )
    lines = [
        BEGIN,
        "## Under load: open-loop latency and saturation (issue 20)",
        "",
        f"Generated by `{COMMAND}` (benches/compare/load.py → load_workload.py → "
        f"load_results.json, load.png) on {m['date']}{quick}; `make bench-compare` keeps "
        "this section as it is.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; load average "
        f"{m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end",
        *versions,
        f"- {res['rounds']} rounds; per round, shape and rate one subprocess per side, the "
        "order of the sides rotated round by round; once a side saturates a scenario at a "
        "rate, that rate and those above are not run again for it (a saturated row is one "
        f"round's); {res['seconds']:.0f} s in all",
        "",
        "**The load.** Open loop: Poisson arrivals at the offered rate (seed "
        f"{res['seed']}, the same arrivals on every side) for max({res['span']:g} s, "
        f"{MIN_REQUESTS} requests); request i starts at its scheduled arrival whether or not "
        "earlier ones have finished (async: a task of one event loop; sync: submitted to a "
        "`ThreadPoolExecutor` of 8 or 32 workers, the server shape), and its latency runs "
        "from the *scheduled* arrival to the answer, so queueing in the event loop or the "
        "pool counts (no coordinated omission). Every side calls the same model: `async def "
        f"model(prompt)` that awaits `asyncio.sleep({res['delay']:g})` (the simulated "
        'network) and answers `"ok"` (sync: `time.sleep`). 100 untimed warm-up requests '
        "precede each run.",
        "",
        "**Overhead** at a percentile = the side's latency percentile minus the bare call's "
        "at the same rate and shape, both taken within one round (each over its own "
        "requests), then the median over rounds. It is a difference of two distributions' "
        "percentiles, not a per-request difference: at p99.9 over a few thousand requests it "
        "is noisy, and it can be negative. **CPU per request** = the process's CPU time "
        "(`time.process_time`) over the timed run / requests answered; it includes the "
        "generator and the model's own await, which the bare call pays too (in brackets: "
        "over the bare call). A run **saturates** when its generator falls more than 0.25 s "
        "behind the schedule (sync: the pool's oldest queued request is 0.25 s late; it "
        "stops there and cancels what is queued), when requests are left 2 s after the last "
        "arrival, or when it answered under 90% of the offered rate; it reports what it "
        "achieved. LiteLLM runs its own lower ladder (25 and 50/s; not with 32 threads): on "
        "this machine it needs 10–35 ms of CPU a request.",
        "",
        "Scenarios (each on a fresh manager / Router): **first try** — caching off, every "
        "prompt new, one model call per request (ours: `LLMManager(enable_caching=False)`; "
        "LiteLLM: `Router(cache_responses=False)`); **cache on, 30% repeats** — 30% of the "
        "requests repeat one of 200 prompts answered before the run (so they hit), 70% are "
        "new (ours: default cache; LiteLLM: `cache_responses=True`, its in-memory cache); "
        "**failing primary** — the primary raises at once, one attempt per model, the "
        "backup answers (ours: `max_retries=1`, the primary's breaker reset every 4,096 "
        "requests so it stays closed; LiteLLM: `num_retries=0`, `fallbacks=[{primary: "
        "[backup]}]`, cooldowns off); **open breaker** — the primary's breaker is open "
        "(ours: `failure_threshold=1`, checked open; LiteLLM: its cooldown, `allowed_fails=0`"
        ", checked active), so the backup answers. LiteLLM's model is the same function "
        "behind its documented custom-provider interface (`CustomLLM`, "
        "`litellm.custom_provider_map`), whose `acompletion` awaits it and fills the "
        "`ModelResponse` LiteLLM hands it. The bare call is compared with every scenario, "
        "so the cache's hits show as negative overhead at p50.",
        "",
        "![latency vs rate](benches/compare/load.png)",
        "",
        *(
            [
                "**Paired, in one event loop** (`load_workload.py paired`): at each arrival two "
                "requests start together, twins, one to the bare `await model()` and one to "
                "ours, in an order drawn by a seeded coin; the rate counts both. The twins see "
                "the same loop at the same moment (its lag, its GC pauses, both sides' load), "
                "so the difference of their latency percentiles within one run resolves what "
                "the layer adds far below the separate processes' ±100 µs. Each run also "
                "times, per request, the layer's **own time**: from the call to the model's "
                "entry plus from the model's return to the answer (for a cache hit, the "
                "whole request; on the fallback paths it includes the failing primary's "
                "call). The bare twin's own time is the measurement's floor. Arrivals for "
                f"max({res.get('paired_span', PAIRED_SPAN):g} s, {MIN_REQUESTS} requests) per "
                "run, medians over rounds. At the highest rate of the ladder that every round "
                "sustained:",
                "",
                *paired_headline(prows, res["rounds"]),
                "",
            ]
            if prows
            else []
        ),
        "**Separate processes, at the highest rate each side sustained** (in every round):",
        "",
        *headline(rows, res["rounds"]),
        "",
        *([notes, ""] if notes else []),
        *(
            [
                "### async, paired: ours and its bare twin in one event loop",
                "",
                *paired_table(prows),
                "",
            ]
            if prows
            else []
        ),
        "### async: `agenerate` on one event loop",
        "",
        *table(rows, "async"),
        "",
        "### sync: `generate` from a thread pool of 8 workers",
        "",
        *table(rows, "sync8"),
        "",
        "### sync: `generate` from a thread pool of 32 workers",
        "",
        *table(rows, "sync32"),
        END,
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    sections.write(DOC, BEGIN, END, text)


def run(a: argparse.Namespace) -> dict[str, Any]:
    sides = [s for s in a.sides.split(",") if s]
    shapes = [s for s in a.shapes.split(",") if s]
    log = Path(tempfile.gettempdir()) / "bench-load.log"
    log.write_text("")
    t_start = time.monotonic()
    res: dict[str, Any] = {
        "machine": machine(),
        "rounds": a.rounds,
        "span": a.span,
        "paired_span": a.paired_span,
        "delay": a.delay,
        "seed": a.seed,
        "quick": a.quick,
        "runs": [],
    }
    # (shape, side, scenario) -> the lowest rate it saturated at: that rate and those above
    # are not run again (the rate itself runs in the round that found it, not after).
    done: dict[tuple[str, str, str], float] = {}
    paired = "paired" in sides and "async" in shapes
    sides = [s for s in sides if s != "paired"]
    for rnd in range(a.rounds):
        k = rnd % len(sides)
        order = sides[k:] + sides[:k]
        for shape in shapes:
            ladder = [float(x) for x in a.rates.split(",")] if a.rates else LADDER[shape]
            for rate in ladder:
                for side in order:
                    scs = ["first_try"] if side == "bare" else list(SCENARIOS[shape])
                    if a.scenarios:
                        scs = [s for s in scs if s in a.scenarios.split(",") or side == "bare"]
                    # Saturated at a lower rate in an earlier round: not run higher.
                    scs = [s for s in scs if rate < done.get((shape, side, s), math.inf)]
                    if not a.rates and (
                        (side == "ours" and rate < OURS_FROM)
                        or (side == "litellm" and rate not in LITELLM_LADDER[shape])
                    ):
                        scs = []
                    if not scs:
                        continue
                    t0 = time.monotonic()
                    out = worker(side, shape, rate, scs, a, log)
                    res["runs"].append({"round": rnd, "shape": shape, "rate": rate,
                                        "side": side, "out": out})  # fmt: skip
                    for sc, x in out["scenarios"].items():
                        print(
                            f"round {rnd + 1}/{a.rounds} {shape:6s} {rate:7.0f}/s {side:8s} "
                            f"{sc:10s} got {x['throughput']:8.0f}/s p50 {fmt_us(x['p50']):>9s} "
                            f"p99 {fmt_us(x['p99']):>9s} cpu {x['cpu_us_per_request']:6.0f} µs"
                            f"{' SATURATED' if x['saturated'] else ''}"
                            f"{' ERRORS ' + str(x['errors']) if x['errors'] else ''}"
                            f"  ({time.monotonic() - t0:.1f}s)",
                            flush=True,
                        )
                        if x["saturated"]:
                            key = (shape, side, sc)
                            done[key] = min(rate, done.get(key, math.inf))
        if not paired:
            continue
        rates = [float(x) for x in a.rates.split(",")] if a.rates else PAIRED_LADDER
        for rate in rates:
            scs = [s for s in SCENARIOS["async"] if not a.scenarios or s in a.scenarios.split(",")]
            scs = [s for s in scs if rate < done.get(("async", "paired", s), math.inf)]
            if not scs:
                continue
            t0 = time.monotonic()
            out = worker("paired", "async", rate, scs, a, log)
            res["runs"].append({"round": rnd, "shape": "async", "rate": rate,
                                "side": "paired", "out": out})  # fmt: skip
            for sc, x in out["scenarios"].items():
                b, o = x["bare"], x["ours"]
                print(
                    f"round {rnd + 1}/{a.rounds} paired {rate:7.0f}/s {sc:10s} got "
                    f"{x['throughput']:8.0f}/s p99 bare {fmt_us(b['p99']):>9s} ours over "
                    f"p50/p99/p99.9 {fmt_over(o['p50'] - b['p50'])} / "
                    f"{fmt_over(o['p99'] - b['p99'])} / {fmt_over(o['p99.9'] - b['p99.9'])}, "
                    f"own p99 {fmt_us(o['own_p99'])}{' SATURATED' if x['saturated'] else ''}"
                    f"{' ERRORS ' + str(x['errors']) if x['errors'] else ''}"
                    f"  ({time.monotonic() - t0:.1f}s)",
                    flush=True,
                )
                if x["saturated"]:
                    key = ("async", "paired", sc)
                    done[key] = min(rate, done.get(key, math.inf))
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["seconds"] = round(time.monotonic() - t_start, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--span", type=float, default=1.0, help="seconds of arrivals per run")
    ap.add_argument("--delay", type=float, default=0.01, help="the model's simulated network")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sides", default=",".join((*SIDES, "paired")))
    ap.add_argument("--paired-span", type=float, default=PAIRED_SPAN)
    ap.add_argument("--shapes", default=",".join(SCENARIOS))
    ap.add_argument("--rates", default="", help="comma-separated; default: the ladders")
    ap.add_argument("--scenarios", default="", help="comma-separated; default: all")
    ap.add_argument("--quick", action="store_true", help="smoke: bare and ours, one low rate")
    ap.add_argument("--write", action="store_true", help="BENCHMARKS.md, the json, the plot")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--notes", type=Path, help="a file of prose put after the headline")
    ap.add_argument("--render", type=Path, help="only rewrite the section from a results file")
    a = ap.parse_args()
    notes = a.notes.read_text().strip() if a.notes else ""
    if a.render is not None:
        res = json.loads(a.render.read_text())
        chart(res, summarize(res), CHART)
        write_section(section(res, notes))
        return
    if a.quick:
        a.rounds, a.span, a.paired_span, a.sides = 1, 0.3, 0.3, "bare,ours,paired"
        a.rates = a.rates or "400"
    for side in a.sides.split(","):
        if side not in (*SIDES, "paired"):
            raise SystemExit(f"--sides: unknown {side!r}")
        if not python_of(side).exists():
            raise SystemExit(f"{python_of(side)} missing: run `{COMMAND}`")
    res = run(a)
    rows = summarize(res)
    print()
    print("\n".join(headline(rows, res["rounds"])))
    if a.write:
        a.out.write_text(json.dumps(res, indent=1) + "\n")
        chart(res, rows, CHART)
        write_section(section(res, notes))
        print(f"wrote {a.out}, {CHART} and the section of {DOC}; worker stderr in {log_path()}")
    elif a.quick:
        # Errors only: whether a run kept up is the machine's business, not the code's.
        bad = [(r["shape"], r["side"], r["scenario"]) for r in rows if r["errors"]]
        if bad:
            raise SystemExit(f"quick run: errors in {bad}")
    sys.stdout.flush()


def log_path() -> Path:
    return Path(tempfile.gettempdir()) / "bench-load.log"


if __name__ == "__main__":
    main()
