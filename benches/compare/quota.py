# ruff: noqa: RUF001 - the report is typeset: its multiplication signs and dashes are meant
"""Usage-based routing under a provider's quota (issue "Deployments, load balancing and
rate limits"): the same open-loop workload through ours (``LLMManager(routing="usage")``,
``rpm`` per deployment) and LiteLLM Router (``usage-based-routing-v2``, ``rpm`` per
deployment, in-memory usage), against one simulated OpenAI-compatible provider whose two
deployments each enforce the quota and answer 429 with a Retry-After when over it.

    .venv/bin/python benches/compare/quota.py [--span 150] [--write]

Run by ``make bench-quota-compare``. The provider runs here (a ThreadingHTTPServer on a
free loopback port; paths ``/a/v1/...`` and ``/b/v1/...`` are the two deployments); one
subprocess per side (quota_workload.py), the order alternating run by run: ours in .venv
(the working tree), LiteLLM in .bench-venvs/litellm. The provider's state is reset
before each run.

Time is not scaled: LiteLLM's usage counters are keyed by the wall-clock minute
(``strftime("%H-%M")`` of UTC now), which cannot be shortened without patching it, so
both sides and the provider run on real minutes. Each run starts at a wall-clock minute
boundary (the same phase for every side) and offers ``--rate`` requests per second
(Poisson, same seed on every side) for ``--span`` seconds.

The provider's quota, per deployment (``--window``):

- ``sliding``: at most ``rpm`` requests answered in any 60 s (a sliding log); a request
  over it gets 429 with ``Retry-After`` / ``retry-after-ms`` = when the oldest answered
  request of the window leaves it;
- ``gcra``: ``rpm`` per minute as GCRA with a burst of ``rpm`` (a token bucket of
  ``rpm`` refilled continuously), Retry-After = when the next unit is free.

A 429 is not counted against the quota. ``--write`` replaces the marked section of
BENCHMARKS.md (``make bench-compare`` keeps it) and writes quota_results.json.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings
import sections

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENVS = Path(os.environ.get("BENCH_VENVS", REPO / ".bench-venvs"))
WORKLOAD = HERE / "quota_workload.py"
DOC = REPO / "BENCHMARKS.md"
OUT = HERE / "quota_results.json"
COMMAND = "make bench-quota-compare"
BEGIN = "<!-- bench-quota-compare: begin -->"
END = "<!-- bench-quota-compare: end -->"
DEPLOYMENTS = ("a", "b")
WINDOW = 60.0  # the provider's minute: a real one (see the docstring)


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


# --------------------------------------------------------------------- the provider


class Quota:
    """One deployment's quota on the provider's own clock (time.monotonic)."""

    def __init__(self, rpm: int, kind: str) -> None:
        self.rpm, self.kind = rpm, kind
        self.log: collections.deque[float] = collections.deque()  # sliding: answered
        self.tat = 0.0  # gcra: theoretical arrival time
        self.interval = WINDOW / rpm

    def take(self, now: float) -> float:
        """0.0 when admitted (and counted); else the seconds until it would be."""
        if self.kind == "sliding":
            while self.log and self.log[0] <= now - WINDOW:
                self.log.popleft()
            if len(self.log) < self.rpm:
                self.log.append(now)
                return 0.0
            return self.log[0] + WINDOW - now
        tat = max(self.tat, now) + self.interval
        if tat - now <= self.rpm * self.interval + 1e-9:
            self.tat = tat
            return 0.0
        return tat - now - self.rpm * self.interval


def completion() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    ).encode()


class Provider:
    """Two deployments behind one loopback HTTP server; every request is logged as
    (deployment, monotonic time, status)."""

    def __init__(self, rpm: int, kind: str, delay: float) -> None:
        self.rpm, self.kind, self.delay = rpm, kind, delay
        self.lock = threading.Lock()
        self.reset()
        provider = self
        body_ok = completion()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                self.rfile.read(n)
                dep = self.path.strip("/").split("/", 1)[0]
                if dep not in DEPLOYMENTS or not self.path.endswith("/chat/completions"):
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with provider.lock:
                    now = time.monotonic()
                    wait = provider.quotas[dep].take(now)
                    provider.log.append((dep, now, 200 if wait == 0 else 429))
                if wait == 0:
                    if provider.delay:
                        time.sleep(provider.delay)
                    body, status, extra = body_ok, 200, {}
                else:
                    err = {
                        "message": f"Rate limit reached for requests on deployment {dep}: "
                        f"limit {provider.rpm} per minute",
                        "type": "requests",
                        "param": None,
                        "code": "rate_limit_exceeded",
                    }
                    body, status = json.dumps({"error": err}).encode(), 429
                    extra = {
                        "retry-after": str(max(1, math.ceil(wait))),
                        "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
                    }
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.quotas = {d: Quota(self.rpm, self.kind) for d in DEPLOYMENTS}
            self.log: list[tuple[str, float, int]] = []

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def max_in_window(ts: list[float], width: float = WINDOW) -> int:
    """The most of ``ts`` (sorted) in any half-open window of ``width`` seconds."""
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def provider_figures(log: list[tuple[str, float, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in DEPLOYMENTS:
        got = sorted(t for dd, t, _ in log if dd == d)
        ok = sorted(t for dd, t, s in log if dd == d and s == 200)
        out[d] = {
            "received": len(got),
            "answered": len(ok),
            "429": len(got) - len(ok),
            "max_received_per_60s": max_in_window(got),
            "max_answered_per_60s": max_in_window(ok),
        }
    return out


# --------------------------------------------------------------------- the run


def worker(side: str, url: str, start_at: float, args: argparse.Namespace, log: Path) -> Any:
    cmd = [str(python_of(side)), str(WORKLOAD), side, "--url", url]
    cmd += ["--start-at", f"{start_at:.3f}", "--rate", str(args.rate), "--span", str(args.span)]
    cmd += ["--seed", str(args.seed), "--rpm", str(args.rpm)]
    with open(log, "a") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        proc = subprocess.run(
            cmd, env=env_of(side), stdout=subprocess.PIPE, stderr=err, text=True, check=False
        )
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout)


def next_minute(lead: float) -> float:
    """The first wall-clock minute boundary at least ``lead`` seconds away."""
    t = time.time() + lead
    return math.ceil(t / 60.0) * 60.0


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return math.nan
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# Raised by a library without an HTTP call: a local refusal (a run recorded before the
# workload knew RouterRateLimitError counted it as an error; it is recounted here).
LOCAL_REFUSALS = ("RouterRateLimitError:", "RateLimitError:", "QuotaExhaustedError:")


def client_figures(recs: list[dict[str, Any]]) -> dict[str, Any]:
    for r in recs:
        if r["outcome"] == "error" and not r["sends"] and r["error"].startswith(LOCAL_REFUSALS):
            r["outcome"] = "local"
    c = collections.Counter(r["outcome"] for r in recs)
    ok = [r for r in recs if r["outcome"] == "ok"]
    over = [(r["latency"] - r["http"]) * 1e3 for r in ok]
    local = [r["latency"] * 1e3 for r in recs if r["outcome"] == "local"]
    e429 = [(r["latency"] - r["http"]) * 1e3 for r in recs if r["outcome"] == "429"]
    errors = collections.Counter(r["error"] for r in recs if r["outcome"] == "error")
    return {
        "offered": len(recs),
        "ok": c["ok"],
        "local": c["local"],
        "429": c["429"],
        "error": c["error"] + c["bad"],
        "errors": dict(errors.most_common(5)),
        "sends": sum(r["sends"] for r in recs),
        "max_sends_per_request": max((r["sends"] for r in recs), default=0),
        "overhead_ms_p50": pct(over, 0.5),
        "overhead_ms_p90": pct(over, 0.9),
        "overhead_429_ms_p50": pct(e429, 0.5),
        "http_ms_p50": pct([r["http"] * 1e3 for r in ok], 0.5),
        "latency_ms_p50": pct([r["latency"] * 1e3 for r in ok], 0.5),
        "refusal_ms_p50": pct(local, 0.5),
        "refusal_ms_p90": pct(local, 0.9),
        "lag_ms_max": max((r["lag"] for r in recs), default=0.0) * 1e3,
    }


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


# --------------------------------------------------------------------- the report

LABELS = {
    "ours": 'ours: `LLMManager(routing="usage")`',
    "litellm": 'LiteLLM Router: `"usage-based-routing-v2"`',
    "litellm-v1": 'LiteLLM Router: `"usage-based-routing"`',
}


def fmt_ms(x: float) -> str:
    if x != x:  # nan
        return "–"
    return f"{x * 1e3:,.0f} µs" if x < 1 else f"{x:,.2f} ms"


def via(run: dict[str, Any]) -> str:
    return ", ".join(f"`{k}.AsyncClient` {v}" for k, v in run["sends_by_module"].items())


def section(res: dict[str, Any]) -> str:
    m = res["machine"]
    rows = []
    for run in res["runs"]:
        run["client"] = c = client_figures(run["requests"])
        p = run["provider"]
        label = LABELS[run["side"]]
        if run["side"] == "ours" and run["mode"].startswith("stand-in"):
            label = "ours: **stand-in** (see below)"
        sent = sum(p[d]["received"] for d in DEPLOYMENTS)
        n429 = sum(p[d]["429"] for d in DEPLOYMENTS)
        mx = " / ".join(
            f"{p[d]['max_received_per_60s']} ({p[d]['max_answered_per_60s']})" for d in DEPLOYMENTS
        )
        rows.append(
            f"| {run['window']} | {label} | {c['offered']} | {sent} | **{n429}** | {c['ok']} | "
            f"{c['local']} | {c['error']} | {mx} | {fmt_ms(c['overhead_ms_p50'])} "
            f"({fmt_ms(c['overhead_ms_p90'])}) | {fmt_ms(c['http_ms_p50'])} | "
            f"{fmt_ms(c['refusal_ms_p50'])} |"
        )
    o = next(r for r in res["runs"] if r["side"] == "ours")
    lt = next(r for r in res["runs"] if r["side"] != "ours")
    quota = 2 * res["rpm"] * res["span"] / WINDOW
    lines = [
        BEGIN,
        "## Usage-based routing under a provider's quota: ours beside LiteLLM Router",
        "",
        f"Generated by `{COMMAND}` (benches/compare/quota.py → quota_workload.py → "
        f"quota_results.json) on {m['date']}; `make bench-compare` keeps this section as "
        "it is.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; load average "
        f"{m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end",
        f"- ours: the working tree at {m['commit']}, {o['mode']}, CPython {o['python']}, "
        f"openai {o['openai']} (sends through: {via(o)}), in .venv",
        f"- LiteLLM {lt['version']}, CPython {lt['python']}, openai {lt['openai']} (sends "
        f"through: {via(lt)}), in .bench-venvs/litellm "
        "(benches/compare/requirements-litellm.txt)",
        f"- the provider: one loopback HTTP server (stdlib `ThreadingHTTPServer`, in the "
        f"driver's process) speaking OpenAI chat completions, two deployments (`/a/v1`, "
        f"`/b/v1`), each {res['rpm']} requests per minute on its own clock, a 429 with "
        "`Retry-After` and `retry-after-ms` over it (429s do not count against the quota); "
        f"an answer after {res['delay'] * 1e3:.0f} ms. Window `sliding`: at most "
        f"{res['rpm']} answered in any 60 s; `gcra`: GCRA, {res['rpm']}/min with a burst "
        f"of {res['rpm']}. Its state is reset before each run.",
        f"- load: open loop, Poisson arrivals at {res['rate']:g}/s "
        f"({res['rate'] * 60:.0f} rpm, {res['rate'] * 60 / (2 * res['rpm']):.1f}× the "
        f"combined {2 * res['rpm']} rpm) for {res['span']:g} s (seed {res['seed']}, the "
        "same arrivals on every side), each request a task of one asyncio loop started at "
        "its arrival time; each run starts on a wall-clock minute boundary. Real minutes on "
        "every side (LiteLLM keys its counters by the UTC minute, `%H-%M`, which cannot be "
        f"scaled without patching it). No retries: ours `max_retries=1`, LiteLLM "
        f"`num_retries=0`. {res['seconds']:.0f} s in all.",
        "",
        f"Over {res['span']:g} s the two quotas allow at most about {quota:.0f} answers "
        "(a 60 s window admits 100 per deployment; how many more fit depends on the "
        "window and when the first minute's requests age out).",
        "",
        "| provider window | side | offered | sent to the provider | 429s received | "
        "answered | refused locally | other errors | max received (answered) in any 60 s, "
        "a / b | overhead per answered request, p50 (p90) | HTTP round trip, p50 | local "
        "refusal, p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "How each figure is taken:",
        "",
        "- *sent*, *429s*, *max in any 60 s*: the provider's own log (every request it "
        "received, by deployment, with the time it arrived and the status it answered). "
        "The max is over sliding 60 s windows of every request received (in parentheses: "
        "those answered 200).",
        "- *answered*, *refused locally*, *other errors*: the client's count. A request is "
        "refused locally when the library raised without making an HTTP call (ours: "
        "`QuotaExhaustedError`; LiteLLM: its `RateLimitError` from the routing/pre-call "
        'rpm check, "No deployments available", and its `RouterRateLimitError` when '
        '"every deployment is in cooldown" after a 429). A provider 429 on either side fails the '
        "request (no retries).",
        "- *overhead*: per answered request, its latency (`await` of `agenerate` / "
        "`router.acompletion` until the text is read) minus the time spent inside "
        "`httpx.AsyncClient.send` for it (wrapped the same way on both sides: the HTTP "
        "round trip, body read included). Both sides call through the openai SDK's "
        "`AsyncOpenAI`; what is left is the library: routing, the usage bookkeeping, "
        "building the request (the openai SDK's request building counts here, on both "
        "sides), parsing the answer, and, for LiteLLM, the logging it runs before "
        "returning. Ours sends through the SDK's own `httpx2.AsyncClient`, LiteLLM through "
        "the `httpx.AsyncClient` (httpx 0.28) it hands the SDK (its transport was not "
        "checked): that difference is in the HTTP column, not the overhead.",
        "- *local refusal*: the latency of a request refused locally.",
        "",
        "Caveats:",
        "",
        "- One run per side and window; the 429 counts depend on how each limiter's window "
        "lines up with the provider's, so they are exact for this schedule, not a "
        "distribution.",
        "- LiteLLM's usage-based-routing-v2 counts a request at its pre-call check, in "
        "fixed windows of the wall-clock minute, and (in the pick) passes over a deployment "
        "whose count + 1 reaches its rpm. Ours is GCRA per deployment "
        "(`_native.RateLimiter(rpm=100)`, burst = 100 by default): the whole minute's "
        "amount at once, then one request per 0.6 s; a provider 429 cools that deployment "
        "for its Retry-After.",
        "- The `gcra` window is the same algorithm and burst as ours' limiter, so ours "
        "keeping to it (one 429: the client admits at its clock, the provider counts at "
        "arrival, a few ms apart, with requests in flight) is close to by construction; "
        "the `sliding` window is the strict reading of 100 per minute, and GCRA's burst "
        "of 100 followed by the rate overruns it after the first 100. LiteLLM's fixed "
        "windows keep to GCRA but overrun a sliding window after each minute boundary.",
        "- *answered* beyond ~500 under `gcra` is the provider's allowance (burst + rate), "
        "not a side sending over its quota.",
    ]
    if o["mode"].startswith("stand-in"):
        lines += [
            '- **ours is a stand-in in this run**: the tree had no `routing="usage"` '
            "wiring yet, so quota_workload.py built the same semantics from public pieces: "
            "one `LLMManager(enable_caching=False, max_retries=1)` per deployment, a native "
            "`RateLimiter(rpm=100)` each, the pick = the deployment with the most headroom "
            "whose limiter admits, none = fail fast, a provider 429 = `cool_down(Retry-After)` "
            "on that deployment's limiter. Its overhead is that wrapper's plus LLMManager's, "
            "not the wired routing's; rerun the target after the merge.",
        ]
    lines.append(END)
    return "\n".join(lines)


def write_section(text: str) -> None:
    sections.write(DOC, BEGIN, END, text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--span", type=float, default=150.0, help="seconds of arrivals per run")
    ap.add_argument("--rate", type=float, default=5.0, help="arrivals per second (5 = 300 rpm)")
    ap.add_argument("--rpm", type=int, default=100, help="quota per deployment")
    ap.add_argument("--delay", type=float, default=0.02, help="provider answer delay, s")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--windows", default="sliding,gcra")
    ap.add_argument("--sides", default="ours,litellm")
    ap.add_argument("--no-align", action="store_true", help="start at once (smoke runs)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md and the json")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", type=Path, help="only rewrite the section from a results file")
    args = ap.parse_args()
    if args.render is not None:
        write_section(section(json.loads(args.render.read_text())))
        return
    sides = args.sides.split(",")
    for side in sides:
        if not python_of(side).exists():
            raise SystemExit(f"{python_of(side)} missing: run `{COMMAND}`")
    log = Path(tempfile.gettempdir()) / "bench-quota-compare.log"
    log.write_text("")
    t_start = time.monotonic()
    res: dict[str, Any] = {
        "machine": machine(),
        "span": args.span,
        "rate": args.rate,
        "rpm": args.rpm,
        "delay": args.delay,
        "seed": args.seed,
        "runs": [],
    }
    k = 0
    for window in args.windows.split(","):
        provider = Provider(args.rpm, window, args.delay)
        try:
            for side in sides if k % 2 == 0 else sides[::-1]:
                provider.reset()
                start_at = time.time() + 8 if args.no_align else next_minute(15)
                out = worker(side, provider.url, start_at, args, log)
                recs = out.pop("requests")
                run = {
                    **out,
                    "window": window,
                    "start_at": start_at,
                    "client": client_figures(recs),
                    "provider": provider_figures(list(provider.log)),
                    "requests": recs,
                }
                res["runs"].append(run)
                c, p = run["client"], run["provider"]
                print(
                    f"{window:8s} {side:10s} offered {c['offered']} ok {c['ok']} "
                    f"local {c['local']} 429 {c['429']} err {c['error']} | provider "
                    + "  ".join(
                        f"{d}: {p[d]['received']} recv {p[d]['429']} 429 "
                        f"max60 {p[d]['max_received_per_60s']}/{p[d]['max_answered_per_60s']}"
                        for d in DEPLOYMENTS
                    )
                    + f" | overhead p50 {c['overhead_ms_p50']:.3f} ms "
                    f"http p50 {c['http_ms_p50']:.3f} ms  {out['mode']}",
                    flush=True,
                )
                if c["errors"]:
                    print("   errors:", c["errors"], flush=True)
                k += 1
        finally:
            provider.close()
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["seconds"] = round(time.monotonic() - t_start, 1)
    if args.write:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        write_section(section(res))
        print(f"wrote {args.out} and the section of {DOC}; worker stderr in {log}")


if __name__ == "__main__":
    main()
