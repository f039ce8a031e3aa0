"""Every example of the seed document runs as a script, and the demo runs end to end."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from agenticaiframework.llms.__main__ import main

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


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
    assert "[  300/300]" in text
    for needle in ("Metrics", "total_requests       300", "gpt-4", "claude-opus", "local-llama"):
        assert needle in text
