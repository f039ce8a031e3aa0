"""Every example of the seed document runs as a script, and the demo runs end to end."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from agenticaiframework.llms.__main__ import main

# The server example serves until stopped: tests/test_server_example.py runs it under uvicorn.
EXAMPLES = sorted(
    p
    for p in (Path(__file__).parent.parent / "examples").glob("*.py")
    if p.stem != "fastapi_server"
)


def test_every_seed_section_has_an_example() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {
        "basic_usage",
        "fallback_chain",
        "response_caching",
        "circuit_breaker",
        "performance_monitoring",
        "retry_backoff",
        "agent_integration",
        "multi_model_fallback",
        "best_practices",
    } <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(script: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_example_output_hides_the_api_key() -> None:
    script = next(p for p in EXAMPLES if p.stem == "multi_model_fallback")
    env_key = "sk-SENTINEL-0123456789abcdef"
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OPENAI_API_KEY": env_key, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert env_key not in proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", [[], ["--async", "--concurrency", "20"]], ids=["sync", "async"])
def test_demo_runs_and_reports(mode: list[str]) -> None:
    out = io.StringIO()
    # A tiny time scale keeps the simulated latencies in microseconds.
    code = main(["demo", "--requests", "300", "--time-scale", "0.01", *mode], out=out)
    text = out.getvalue()
    assert code == 0
    assert "[300/300]" in text
    for needle in ("Metrics", "total_requests       300", "gpt-4", "claude-opus", "local-llama"):
        assert needle in text


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_demo_fits_80_columns_when_piped(mode: list[str]) -> None:
    out = io.StringIO()
    assert main(["demo", "--requests", "300", "--time-scale", "0.01", *mode], out=out) == 0
    text = out.getvalue()
    assert "\r" not in text  # piped: plain lines, one per step
    widths = [len(line) for line in text.splitlines()]
    assert max(widths) <= 80, [line for line in text.splitlines() if len(line) > 80]
    assert "route: gpt-4 → claude-opus → local-llama" in text
    assert "['" not in text  # no list reprs
    assert "coalesced" in text


def test_hedging_demo_reports_each_policy_within_80_columns() -> None:
    out = io.StringIO()
    assert main(["demo", "--hedging", "--requests", "200", "--time-scale", "0.02"], out=out) == 0
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, [x for x in lines if len(x) > 80]
    rows = [line.split() for line in lines if line.split()[:1] in (["off"], ["2"], ["p95"])]
    assert [r[0] for r in rows] == ["off", "2", "p95"]  # off, "2 ms" (0.1 s x 0.02), p95
    assert rows[0][-3:] == ["0.0%", "0", "0"]  # no hedging: no extra call, no hedge


def test_demo_redraws_progress_in_place_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    assert main(["demo", "--requests", "100", "--time-scale", "0.01"], out=out) == 0
    text = out.getvalue()
    progress = [line for line in text.split("\n") if "[" in line and "/100]" in line]
    assert len(progress) == 1 and progress[0].count("\r") == 10  # ten redraws, one line
    assert all(len(part) <= 80 for part in progress[0].split("\r"))


def test_async_demo_spans_its_outage() -> None:
    import time

    out = io.StringIO()
    t0 = time.perf_counter()
    main(["demo", "--async", "--requests", "200", "--time-scale", "0.25"], out=out)
    # Arrivals are spread over the scenario's 2 s x 0.25: the outage (0.1-0.35 s) is inside.
    assert time.perf_counter() - t0 >= 0.5 * 0.99


def test_retry_budget_demo_shows_the_budget_bounding_the_outage() -> None:
    out = io.StringIO()
    assert main(["demo", "--retry-budget"], out=out) == 0
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("no ", "retry_"))}
    off, on = rows["no"], rows["retry_budget=0.2,"]
    # Without it, every request of the outage tries the primary max_retries (3) times.
    assert float(off[-2]) == pytest.approx(3.0, abs=0.02) and off[-1] == "0"
    # With it, about 1.2 (20% of the requests), plus the floor (10/s of ~400/s) and the
    # share of the healthy requests still in the window at its start; the rest denied.
    assert 1.0 < float(on[-2]) <= 1.35 and int(on[-1].replace(",", "")) > 0
    assert float(off[-3]) == float(on[-3]) == 1.0  # healthy: one attempt each


def test_bare_invocation_prints_usage_and_help_has_defaults() -> None:
    out = io.StringIO()
    assert main([], out=out) == 0
    assert "usage: python -m agenticaiframework.llms" in out.getvalue()
    proc = subprocess.run(
        [sys.executable, "-m", "agenticaiframework.llms", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0
    for needle in ("--seed SEED", "(default: 7)", "--concurrency", "(default: 50)", "--async"):
        assert needle in proc.stdout, proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "agenticaiframework.llms"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "usage:" in proc.stdout and not proc.stderr
