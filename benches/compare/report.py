# ruff: noqa: RUF001 - the report is typeset: its multiplication signs and dashes are meant
"""Turns benches/compare/results.json into BENCHMARKS.md and the hot-path chart.

    python benches/compare/report.py [results.json]

Ratios are the headline: every ratio is taken round by round (both sides measured in the
same round) and reported as the median over rounds with its min-max; per-call times appear
only beside their floor, in the appendix.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DOC = REPO / "BENCHMARKS.md"
CHART = HERE / "hot_paths.png"
COMMAND = "make bench-compare"

PEERS = ["ours", "glued", "cachebox", "afw3012", "litellm"]
LABEL = {
    "floor": "floor",
    "ours": "ours",
    "glued": "glued stack",
    "cachebox": "cachebox",
    "afw3012": "afw 3.0.12",
    "litellm": "LiteLLM Router",
}
SIZES = {"32B": "32 B", "4KB": "4 KB", "1MB": "1 MB"}
KWN = {"none": "no kwargs", "two": "temperature, max_tokens", "nested": "+ nested dict"}
MB_PROMPT_BYTES = 1024 * 1024


def hit_rows() -> list[tuple[str, str, str]]:
    """(path, label, floor path) for the cache-hit rows."""
    rows = []
    for s in SIZES:
        for k in KWN:
            floor = f"hit/{s}/{k}" if k != "nested" else f"hit/{s}/none"
            mark = " †" if k == "nested" else ""
            rows.append((f"hit/{s}/{k}", f"cache hit, {SIZES[s]}, {KWN[k]}{mark}", floor))
    return rows


SYNC_ROWS = [
    *hit_rows(),
    ("first_try", "first-try success, caching off", "first_try"),
    ("fallback", "fallback: active raises, next answers", "fallback"),
    ("breaker_skip", "open breaker skipped, next answers", "breaker_skip"),
]
ASYNC_ROWS = [
    ("ahit/32B/none", "agenerate cache hit, 32 B, no kwargs", "ahit/32B/none"),
    ("ahit/32B/two", "agenerate cache hit, 32 B, temperature, max_tokens", "ahit/32B/two"),
    ("afirst_try", "agenerate first-try, caching off", "afirst_try"),
    ("afallback", "agenerate fallback", "afallback"),
    ("abreaker_skip", "agenerate open breaker skipped", "abreaker_skip"),
]


# --------------------------------------------------------------------- statistics


def series(res: dict[str, Any], impl: str, path: str) -> list[float] | None:
    p = res["impls"].get(impl, {}).get("paths", {}).get(path)
    return None if p is None else list(p["ns"])


def ratio_series(a: list[float] | None, b: list[float] | None) -> list[float] | None:
    """a/b round by round."""
    if not a or not b:
        return None
    n = min(len(a), len(b))
    return [a[i] / b[i] for i in range(n)]


def spread(xs: list[float] | None) -> tuple[float, float, float] | None:
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def fmt_x(xs: list[float] | None, digits: int | None = None) -> str:
    s = spread(xs)
    if s is None:
        return "n/a"
    med, lo, hi = s

    def f(v: float) -> str:
        if digits is not None:
            return f"{v:.{digits}f}"
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"

    return f"{f(med)}× ({f(lo)}–{f(hi)})"


def fmt_ns(xs: list[float] | None) -> str:
    s = spread(xs)
    if s is None:
        return "n/a"
    med, lo, hi = s

    def f(v: float) -> str:
        if v >= 1e6:
            return f"{v / 1e6:.2f} ms"
        if v >= 1e3:
            return f"{v / 1e3:.2f} µs"
        return f"{v:.0f} ns"

    return f"{f(med)} [{f(lo)}–{f(hi)}]"


def med(xs: list[float] | None) -> float | None:
    return None if not xs else statistics.median(xs)


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v < 0.1:
        return f"1/{1 / v:,.0f}"
    return f"{v:.2f}×"


# --------------------------------------------------------------------- sections


def cg_per_call(res: dict[str, Any]) -> dict[tuple[str, str], float]:
    cg = res.get("callgrind")
    if not cg:
        return {}
    dn = cg["n2"] - cg["n1"]
    return {(c["impl"], c["path"]): (c["ir_n2"] - c["ir_n1"]) / dn for c in cg["counts"]}


def goals(res: dict[str, Any]) -> tuple[list[str], list[tuple[str, ...]]]:
    rows: list[tuple[str, ...]] = []
    ours = "ours"
    cg = cg_per_call(res)

    def verdict(xs: list[float] | None, ok: Any) -> str:
        """Judged on the median; says so when some rounds fall on the other side."""
        if not xs:
            return "n/a"
        v = "**met**" if ok(statistics.median(xs)) else "**not met**"
        hits = sum(1 for x in xs if ok(x))
        if 0 < hits < len(xs):
            v += f" (in {hits} of {len(xs)} rounds)"
        return v

    def cg_ratio(a: tuple[str, str], b: tuple[str, str]) -> str:
        return f"{cg[a] / cg[b]:.1f}×" if a in cg and b in cg else ""

    r = ratio_series(series(res, ours, "hit/32B/none"), series(res, "floor", "hit/32B/none"))
    rows.append(
        (
            "cache hit, 32-char prompt, vs `functools.lru_cache` hit",
            "≤ 4×",
            fmt_x(r),
            cg_ratio(("ours", "hit"), ("floor", "hit")),
            verdict(r, lambda v: v <= 4),
        )
    )
    for kw, label, cgp in (
        ("none", "no kwargs", "hit"),
        ("two", "temperature=0.7, max_tokens=500", "hit:two"),
    ):
        r = ratio_series(
            series(res, "afw3012", f"hit/32B/{kw}"), series(res, ours, f"hit/32B/{kw}")
        )
        rows.append(
            (
                f"cache hit vs agenticaiframework 3.0.12 hit, {label}",
                "≥ 10× faster",
                fmt_x(r) + " faster" if r else "n/a",
                cg_ratio(("afw3012", cgp), ("ours", cgp)),
                verdict(r, lambda v: v >= 10),
            )
        )
    r = ratio_series(series(res, "litellm", "hit/32B/none"), series(res, ours, "hit/32B/none"))
    rows.append(
        (
            "cache hit vs LiteLLM Router cache hit (32-char, no kwargs)",
            "≥ 1000× faster",
            fmt_x(r) + " faster" if r else "n/a",
            "",
            verdict(r, lambda v: v >= 1000),
        )
    )
    a, b = series(res, ours, "first_try"), series(res, "floor", "first_try")
    if a and b:
        d = [a[i] - b[i] for i in range(min(len(a), len(b)))]
        s = spread(d)
        assert s is not None
        extra = ""
        if ("ours", "first_try") in cg and ("floor", "first_try") in cg:
            extra = f"+{cg[('ours', 'first_try')] - cg[('floor', 'first_try')]:,.0f} instr."
        rows.append(
            (
                "first-try success (caching off) over a bare call of the same function",
                "≤ +1 µs",
                f"+{s[0]:.0f} ns ({s[1]:.0f}–{s[2]:.0f})",
                extra,
                verdict(d, lambda v: v <= 1000),
            )
        )
    mb = series(res, ours, "hit/1MB/none")
    if mb:
        gbs = [MB_PROMPT_BYTES / ns for ns in mb]  # bytes per ns = GB/s
        s = spread(gbs)
        assert s is not None
        rows.append(
            (
                "cache hit, 1 MB prompt (1,048,576 bytes hashed per hit)",
                "≥ 2 GB/s",
                f"{s[0]:.2f} GB/s ({s[1]:.2f}–{s[2]:.2f})",
                "",
                verdict(gbs, lambda v: v >= 2),
            )
        )
    fr = fanout_ratios(res, ours)
    rows.append(
        (
            "10,000 concurrent `agenerate` (distinct prompts) vs the same fan-out of bare "
            "`await fn()`: wall time",
            "≤ 1.10×",
            fmt_x(fr, 3),
            "",
            verdict(fr, lambda v: v <= 1.10).replace("rounds)", "pairs)"),
        )
    )
    mem = res["impls"].get(ours, {}).get("memory")
    if mem:
        rows.append(
            (
                f"memory per cached entry beyond the value ({mem['entries']:,} entries, RSS)",
                "≤ 200 B",
                f"{mem['bytes_per_entry']:.0f} B",
                "",
                verdict([mem["bytes_per_entry"]], lambda v: v <= 200),
            )
        )
        grow = flat_growth(mem)
        rows.append(
            (
                f"RSS through {mem['total']:,} distinct prompts, cache bounded at "
                f"{mem['bound']:,}: growth after the cache is full",
                "flat",
                f"{grow / 2**20:+.2f} MiB from {2 * mem['bound']:,} to {mem['total']:,} "
                f"requests; peak RSS {mem['peak_rss'] / 2**20:.1f} MiB",
                "",
                verdict([abs(grow)], lambda v: v <= 2**20),
            )
        )
    lines = [
        "| goal | target | ours: median (min–max over rounds) | callgrind cross-check | |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines, rows


def flat_growth(mem: dict[str, Any]) -> int:
    at = mem["rss_at"]
    return int(at[str(mem["total"])]) - int(at[str(2 * mem["bound"])])


def fanout_ratios(res: dict[str, Any], impl: str) -> list[float] | None:
    runs = res["impls"].get(impl, {}).get("fanout") or []
    xs = [i / b for run in runs for i, b in zip(run["impl"], run["bare"], strict=True)]
    return xs or None


def path_table(res: dict[str, Any], rows: list[tuple[str, str, str]], vs: str) -> list[str]:
    """vs='floor': each peer's time over the floor's; vs='ours': peer time over ours."""
    impls = [i for i in PEERS if i in res["impls"] and (vs != "ours" or i != "ours")]
    head = "| path | " + " | ".join(LABEL[i] for i in impls) + " |"
    lines = [head, "|---|" + "---|" * len(impls)]
    for path, label, floor_path in rows:
        cells = []
        for i in impls:
            if vs == "floor":
                r = ratio_series(series(res, i, path), series(res, "floor", floor_path))
            else:
                r = ratio_series(series(res, i, path), series(res, "ours", path))
            cells.append(fmt_x(r))
        if all(c == "n/a" for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


FLOOR_NOTE = {
    "afallback": "try await fails(); except: await answer()",
    "abreaker_skip": "bare await of the next model",
}


def raw_table(res: dict[str, Any], rows: list[tuple[str, str, str]]) -> list[str]:
    impls = ["floor", *[i for i in PEERS if i in res["impls"]]]
    lines = [
        "| path | floor used | " + " | ".join(LABEL[i] for i in impls) + " |",
        "|---|---|" + "---|" * len(impls),
    ]
    for path, label, floor_path in rows:
        fl = res["impls"].get("floor", {}).get("paths", {}).get(floor_path, {})
        note = fl.get("note") or FLOOR_NOTE.get(floor_path, "")
        cells = [fmt_ns(series(res, "floor", floor_path))]
        cells += [fmt_ns(series(res, i, path)) for i in impls[1:]]
        lines.append(f"| {label} | {note} | " + " | ".join(cells) + " |")
    return lines


def fanout_table(res: dict[str, Any]) -> list[str]:
    lines = [
        "| implementation | requests in flight | wall time vs bare fan-out | pairs |",
        "|---|---|---|---|",
    ]
    for i in PEERS:
        runs = res["impls"].get(i, {}).get("fanout") or []
        if not runs:
            continue
        xs = fanout_ratios(res, i)
        lines.append(f"| {LABEL[i]} | {runs[0]['n']:,} | {fmt_x(xs, 3)} | {len(xs or [])} |")
    return lines


def threads_table(res: dict[str, Any]) -> list[str]:
    ks = ["1", "2", "4"]
    lines = [
        "| implementation | 2 threads vs 1 | 4 threads vs 1 | throughput vs ours at 1 / 2 / 4 "
        "threads |",
        "|---|---|---|---|",
    ]
    ours = res["impls"].get("ours", {}).get("threads") or []
    for i in ["floor", *PEERS]:
        runs = res["impls"].get(i, {}).get("threads") or []
        if not runs:
            continue
        cps = {k: [r[k]["calls_per_s"] for r in runs] for k in ks}
        scal = {k: [cps[k][j] / cps["1"][j] for j in range(len(runs))] for k in ks}
        vs = []
        for k in ks:
            o = [r[k]["calls_per_s"] for r in ours]
            vs.append(fmt_ratio(med(ratio_series(cps[k], o))) if o else "n/a")
        name = LABEL[i] + (" (lru_cache hit)" if i == "floor" else "")
        lines.append(f"| {name} | {fmt_x(scal['2'])} | {fmt_x(scal['4'])} | {' / '.join(vs)} |")
    return lines


def memory_table(res: dict[str, Any]) -> list[str]:
    marks = sorted(
        {k for i in res["impls"].values() for k in (i.get("memory") or {}).get("rss_at", {})},
        key=int,
    )
    names = " / ".join(f"{int(k) // 1000:,}k" for k in marks)
    lines = [
        f"| implementation | bytes per entry | cache bound used | RSS after {names} requests, "
        "over the start | peak RSS of the process |",
        "|---|---|---|---|---|",
    ]
    for i in ["floor", *PEERS]:
        mem = res["impls"].get(i, {}).get("memory")
        if not mem:
            continue
        base = mem["rss_base"]
        at = " / ".join(
            f"{(mem['rss_at'][k] - base) / 2**20:+.1f}" for k in sorted(mem["rss_at"], key=int)
        )
        name = LABEL[i] + (" (lru_cache)" if i == "floor" else "")
        lines.append(
            f"| {name} | {mem['bytes_per_entry']:.0f} | {mem['bound_note']} | {at} MiB | "
            f"{mem['peak_rss'] / 2**20:.1f} MiB |"
        )
    return lines


CG_LABEL = {
    "hit": "cache hit, 32 B, no kwargs",
    "hit:two": "cache hit, 32 B, temperature, max_tokens",
    "hit:nested": "cache hit, 32 B, + nested dict",
    "dict": "dict lookup",
    "first_try": "first-try success, caching off",
    "fallback": "fallback",
    "breaker_skip": "open breaker skipped",
}


# What bounds the goals missed (or met only narrowly), from profiling; written by hand,
# so it cites no figure of a particular run.
BOUNDS = [
    "## What bounds the misses",
    "",
    "- **10,000-task fan-out (goal ≤ 1.10× the bare fan-out).** Per in-flight request the "
    "manager adds the `agenerate` coroutine (bare: task → model; ours: task → agenerate → "
    "model), one native entry (key hash, lookup, counters), the permit and the success "
    "report, the cache store and, with single-flight on (the default), the flight registry: "
    "a lock, a dict slot, and a context variable set and reset so that a model calling the "
    "manager again for the same prompt is recognised (also across `asyncio.to_thread`). "
    "`perf record` over 30 fan-outs shows CPython's eval loop and its garbage collector "
    "dominating both runs (the collector's share grows from about 16% to 24% of samples: "
    "10,000 live frames and their objects are traversed again and again); the native "
    "module is under 3% of samples. Two cuts were made from that profile: the first "
    "attempt runs inline in `agenerate` (one coroutine frame fewer per request) and a "
    "flight object is created only when a twin request arrives. What remains is the floor "
    "of any Python-level async wrapper: a minimal `async def` that only awaits the model and "
    "books the result measured 1.21× in the same set-up. Reaching 1.10× would take the "
    "awaitable itself into native code (an object implementing the coroutine protocol), "
    "which `asyncio.iscoroutine()` and `create_task()` reject, so it is not done. With "
    "`single_flight=False` (for workloads without concurrent duplicate prompts) the fan-out "
    "is about 1.2×.",
    "- **Cache hit with two kwargs vs agenticaiframework 3.0.12 (goal ≥ 10×).** Our hit "
    "with `temperature=0.7, max_tokens=500` costs the 32-char hit plus hashing the two "
    "pairs (sorted by name, type-tagged) — about 70 ns — once the kwargs are read straight "
    "from the call (`generate` is a METH_FASTCALL method; PyO3's `**kwargs` convention built "
    "two dicts per call and cost 180 ns more). 3.0.12's hit is an f-string of "
    "`sorted(kwargs.items())` and an md5: cheap enough that the ratio sits near 10×; "
    "callgrind gives the load-free instruction ratio.",
    "- **Bytes per entry.** A cached answer costs a 48-byte native `Record` (text, model, "
    "token counts; not tracked by the garbage collector) plus the LRU's node (48 bytes) and "
    "its hash-table slot (24 bytes at up to 7/8 load); node slabs never grow past their "
    "bound.",
]


def callgrind_table(res: dict[str, Any]) -> list[str]:
    per = cg_per_call(res)
    if not per:
        return ["(not run)"]
    lines = [
        "| implementation | path | instructions per call | vs floor | vs ours |",
        "|---|---|---|---|---|",
    ]
    floor_of = {
        "hit": "hit",
        "hit:two": "hit",
        "hit:nested": "hit",
        "first_try": "first_try",
        "fallback": "fallback",
        "breaker_skip": "first_try",
    }
    for (i, p), v in per.items():
        fl = per.get(("floor", floor_of.get(p, "first_try")))
        if i == "floor":
            fl = None
        o = per.get(("ours", p)) if i != "ours" else None
        vs_f = f"{v / fl:.1f}×" if fl else ""
        vs_o = f"{v / o:.1f}×" if o else ""
        notes = {"hit": "lru_cache hit", "first_try": "bare call", "fallback": "try/except"}
        note = notes.get(p, "") if i == "floor" else ""
        label = CG_LABEL.get(p, p) + (f" ({note})" if note else "")
        lines.append(f"| {LABEL[i]} | {label} | {v:,.0f} | {vs_f} | {vs_o} |")
    return lines


# --------------------------------------------------------------------- chart


def chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in SYNC_ROWS if "/4KB/" not in r[0] or r[0].endswith("none")]
    rows = [r for r in rows if not r[0].endswith("nested") or r[0].startswith("hit/32B")]
    rows += ASYNC_ROWS
    impls = ["floor", *[i for i in PEERS if i in res["impls"]]]
    colors = {
        "floor": "#7f7f7f",
        "ours": "#d62728",
        "glued": "#1f77b4",
        "cachebox": "#17becf",
        "afw3012": "#ff7f0e",
        "litellm": "#9467bd",
    }
    h = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(12, 0.62 * len(rows) * 1.0 + 2.2))
    missing = []
    for j, impl in enumerate(impls):
        ys, xs, lo, hi = [], [], [], []
        for k, (p, _label, floor_path) in enumerate(rows):
            s = spread(series(res, impl, floor_path if impl == "floor" else p))
            y = k + (j - (len(impls) - 1) / 2) * h
            if s is None:
                missing.append((y, colors[impl]))
                continue
            ys.append(y)
            xs.append(s[0])
            lo.append(s[0] - s[1])
            hi.append(s[2] - s[0])
        ax.barh(
            ys, xs, height=h, color=colors[impl], label=LABEL[impl], xerr=[lo, hi],
            error_kw={"elinewidth": 0.8, "capsize": 1.5},
        )  # fmt: skip
    ax.set_xscale("log")
    left = ax.get_xlim()[0]
    for y, color in missing:
        ax.text(left * 1.08, y, "n/a", va="center", fontsize=6, color=color)
    n_sync = sum(1 for r in rows if not r[0].startswith("a"))
    ax.axhline(n_sync - 0.5, color="#999", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[1].replace(" †", "") for r in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("time per call, ns (log scale; bars: median over rounds, whiskers: min–max)")
    ax.set_title(
        "LLM-layer hot paths: ours vs the floor and peers (local model answering at once)",
        fontsize=11,
        pad=26,
    )
    ax.grid(axis="x", which="major", alpha=0.4)
    ax.grid(axis="x", which="minor", alpha=0.12)
    ax.legend(
        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(impls), fontsize=9,
        frameon=False,
    )  # fmt: skip
    m = res["machine"]
    fig.text(
        0.01,
        0.005,
        f"{m['cpu']}, {m['cores']} cores, CPython {res['impls']['ours']['python']}, "
        f"{m['date']}, {res['rounds']} rounds; floor: lru_cache hit / bare call / bare await",
        fontsize=8,
        color="#555",
    )
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------- the document


def render(res: dict[str, Any]) -> None:
    chart(res, CHART)
    m = res["machine"]
    imp = res["impls"]
    goal_lines, _ = goals(res)
    native = m.get("native_start", "?")
    if m.get("native_end", native) != native:
        native += f" at the start, {m['native_end']} at the end (**rebuilt during the run**)"
    versions = [
        f"- ours: the working tree at {m['commit']} (`{imp['ours'].get('where', '')}`; "
        f"`_native` sha256 {native})"
    ]
    for i in ["glued", "cachebox", "afw3012", "litellm"]:
        if i in imp:
            versions.append(f"- {LABEL[i]}: {imp[i]['version']}")
    errors = [
        f"- {LABEL[i]} `{p}`: {e}" for i in imp for p, e in sorted(imp[i].get("errors", {}).items())
    ]
    lru32 = series(res, "floor", "hit/32B/none")
    dict32 = series(res, "floor", "hit/32B/none/dict")
    quick = " (**--quick: short loops, not for quoting**)" if res.get("quick") else ""
    busy = max(m["loadavg_start"][0], m["loadavg_end"][0])
    load_note = (
        f" Other processes were running (load average up to {busy:.1f} on {m['cores']} "
        "cores): the min–max spreads show it; callgrind's counts do not depend on it."
        if busy > 0.5
        else ""
    )
    out = [
        "# Benchmarks: the LLM layer beside its peers",
        "",
        f"Generated by `{COMMAND}` (benches/compare/run.py → results.json → report.py) "
        f"on {m['date']}{quick}. Do not edit by hand: re-run the command.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; load average "
        f"{m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end",
        f"- Python: CPython {imp['ours']['python']} for every implementation (one venv each)",
        *versions,
        f"- {res['rounds']} interleaved rounds (each round runs every implementation's "
        f"subprocess once, order rotated); {res['seconds']:.0f} s in all",
        "",
        "Every implementation answers with the same local inference function, which returns "
        '`"ok"` at once, so the figures are each library\'s own cost. Each figure is a '
        "`time.perf_counter_ns` loop whose iteration count is calibrated to ~20 ms (~100 ms "
        "for LiteLLM), median of 5 loops, one figure per round. **Ratios are the headline**: "
        "each is taken within a round and given as the median over rounds (min–max). "
        "Per-call times appear only in the appendix, beside their floor." + load_note,
        "",
        "![hot paths](benches/compare/hot_paths.png)",
        "",
        "## Goals (issue 6)",
        "",
        "Judged on the median over rounds (over fan-out pairs for the fan-out). The "
        "callgrind column gives the same ratio in instructions per call, which the "
        "machine's load cannot move.",
        "",
        *goal_lines,
        "",
        *BOUNDS,
        "",
        "## Hot paths, synchronous",
        "",
        "Time per call over the floor (floor: `functools.lru_cache` hit with the same prompt "
        "and kwargs for cache hits, a bare `fn(prompt, kwargs)` for first-try and open-breaker, "
        "`try: fails() except: answer()` for fallback):",
        "",
        *path_table(res, SYNC_ROWS, "floor"),
        "",
        "† `lru_cache` cannot hash a dict kwarg; these rows use its hit without kwargs.",
        "",
        "For scale, the other floors: a dict lookup takes "
        + fmt_x(ratio_series(series(res, "floor", "hit/32B/none/dict"), lru32))
        + " the time of the `lru_cache` hit, and ours' 32-char hit "
        + fmt_x(ratio_series(series(res, "ours", "hit/32B/none"), dict32))
        + " that of a dict lookup.",
        "",
        "Each peer's time over ours (above 1: ours is that many times faster):",
        "",
        *path_table(res, SYNC_ROWS, "ours"),
        "",
        "## Hot paths through asyncio",
        "",
        "Over the floor (a bare `await fn(prompt, kwargs)` of an `async def` model; fallback: "
        "the same try/except with awaits):",
        "",
        *path_table(res, ASYNC_ROWS, "floor"),
        "",
        "Each peer's time over ours:",
        "",
        *path_table(res, ASYNC_ROWS, "ours"),
        "",
        "Fan-out: 10,000 concurrent requests on distinct prompts (cache on, bounded at 10,000) "
        "against an `async def` model that awaits `asyncio.sleep(0.01)`, beside the same "
        "`asyncio.gather` of 10,000 bare `await fn()`; the two run alternately in one process "
        "and loop, and each pair gives one ratio.",
        "",
        *fanout_table(res),
        "",
        "## Threads: cache-hit throughput",
        "",
        "k threads each make n hits on one cached 32-char prompt; throughput is k·n over the "
        "wall time (best of 3). The machine has "
        f"{m['cores']} cores; CPython {imp['ours']['python']} has a GIL.",
        "",
        *threads_table(res),
        "",
        "## Memory",
        "",
        "Bytes per entry: RSS growth (from before the cache exists) over 100,000 distinct "
        '32-char prompts, each answered with the one shared `"ok"` string, so everything '
        "counted is overhead beyond the value; a cache that keeps the prompt as its key pays "
        "for it (ours keeps a 128-bit hash). Then, in another fresh process, 1,000,000 "
        "distinct prompts through a cache bounded at 10,000 entries, RSS from before the "
        "cache exists. RSS is read from /proc/self/statm after `gc.collect()`, the peak from "
        "`getrusage` (it includes the interpreter and the imports). LiteLLM is left out "
        "(~2 ms a request: a million would take over half an hour).",
        "",
        *memory_table(res),
        "",
        "## Instructions per call (callgrind)",
        "",
        "`valgrind --tool=callgrind` on `workload.py --mode callgrind`, which sets a path up "
        f"and calls it N times; each figure is (Ir at N={res.get('callgrind', {}).get('n2')} − "
        f"Ir at N={res.get('callgrind', {}).get('n1')}) / difference, so start-up and set-up "
        "cancel. Instruction counts do not depend on the machine's load: a second, stable "
        "measure beside the timings.",
        "",
        *callgrind_table(res),
        "",
        "## Appendix: time per call beside its floor",
        "",
        "Median over rounds [min–max], ns per call, on this machine only; read them as "
        "ratios to the floor column.",
        "",
        *raw_table(res, SYNC_ROWS + ASYNC_ROWS),
        "",
        "## What was measured, exactly",
        "",
        "- **ours**: `LLMManager(sleep=no-op, async_sleep=no-op, ...)`, model `primary` "
        "(fallback paths: `backup` in the chain). Fallback: `max_retries=1` (one attempt per "
        "model; no backoff wait arises), caching off, the primary's breaker reset between "
        "chunks of 5,000 calls (untimed) since it saturates at 16,383 consecutive failures. "
        "Open breaker: `failure_threshold=1`, `recovery_timeout=10**6`.",
        "- **glued stack**: `cachetools.LRUCache` behind a `threading.Lock` (it is not "
        "thread-safe), keyed by `blake2b(model, prompt, json.dumps(kwargs, sort_keys=True))`, "
        "a `pybreaker.CircuitBreaker` per model, `tenacity.retry` (decorator, as written by "
        "people; `stop_after_attempt(1)`, no-op sleep, breaker errors not retried); async: "
        "the same with `tenacity`'s async retry and `breaker.calling()`.",
        "- **cachebox**: the glued stack with `cachebox.LRUCache` (thread-safe itself, no "
        "lock); cache-hit path, threads and memory only.",
        "- **agenticaiframework 3.0.12** (PyPI, pure Python, own venv, same import name): "
        "`LLMManager(max_retries, enable_caching)` is all it takes; its cache is an unbounded "
        'dict keyed by `md5(f"{prompt}:{sorted(kwargs.items())}")`; breakers '
        "(threshold 5, timeout 60 s, built by `register_model`) were adjusted through their "
        "attributes (threshold 10¹² for fallback; 1 and 10⁶ s for the open-breaker path). A "
        "retry there sleeps `2**attempt` s with `time.sleep`, which cannot be injected; "
        "`max_retries=1` never reaches it. It has no async API (async rows: n/a).",
        "- **LiteLLM `Router`** (own venv; `LITELLM_LOCAL_MODEL_COST_MAP=True`, telemetry "
        "off; no network): deployments answer through `mock_response`, `cache_responses=True` "
        "(its in-memory cache), `num_retries=0`, `fallbacks=[{primary: [backup]}]`; the "
        'primary fails with `mock_response="litellm.InternalServerError"`; open breaker = '
        "its cooldown (`allowed_fails=0`, `cooldown_time=10**6`, checked active). Each call "
        "builds the one-message `messages` list and reads `choices[0].message.content`. Its "
        "10k fan-out (`mock_delay=0.01`) runs in the first round only (~40 s).",
        "- Every path is checked before it is timed: hits are hits (hit counters, or "
        "LiteLLM's `cache_hit`), fallbacks are answered by the backup, breakers are open.",
        *(["", "Paths a peer could not run:", "", *errors] if errors else []),
        "",
    ]
    DOC.write_text("\n".join(out) + kept_fleet_section())
    print(f"wrote {DOC} and {CHART}")


def kept_fleet_section() -> str:
    """Every section another make target writes (``<!-- NAME: begin -->`` to
    ``<!-- NAME: end -->``: fleet.py, quota.py, load.py, hedging_sim.py,
    retry_budget_sim.py), kept as it is, in the order found."""
    import re

    doc = DOC.read_text() if DOC.exists() else ""
    marked = re.compile(r"(<!-- ([\w-]+): begin -->.*?<!-- \2: end -->)", re.S)
    return "".join("\n" + m.group(1) + "\n" for m in marked.finditer(doc))


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    render(json.loads(src.read_text()))


if __name__ == "__main__":
    main()
