"""The open-loop load benchmark (benches/compare/load.py) in its quick mode, so that its code
never rots: the bare call and ours, every shape and scenario, at one low rate, one round.
The figures come from ``make bench-load``; here only what every run must satisfy is checked:
no request failed, every request of a run that kept up was answered, the cache's repeats
hit. Whether a run kept up (saturated) depends on the machine's load: not asserted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent / "compare"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_load", HERE / "load.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_load_quick(monkeypatch: pytest.MonkeyPatch, benchmark: Any) -> None:
    load = _load()
    monkeypatch.setenv("OURS_PYTHON", sys.executable)  # the interpreter running the tests
    monkeypatch.setattr(
        sys,
        "argv",
        ["load.py", "--quick", "--rates", "200", "--span", "0.2", "--out", "/dev/null"],
    )
    ap_args: dict[str, Any] = {}
    real_run = load.run

    def run(a: Any) -> Any:
        res = real_run(a)
        ap_args["res"] = res
        return res

    monkeypatch.setattr(load, "run", run)
    benchmark.pedantic(load.main, rounds=1, iterations=1)  # exits non-zero on any failure
    res = ap_args["res"]
    rows = load.summarize(res)
    seen = {(r["shape"], r["side"], r["scenario"]) for r in rows}
    for shape, scenarios in load.SCENARIOS.items():
        assert (shape, "bare", "first_try") in seen
        assert {(shape, "ours", s) for s in scenarios} <= seen
    for r in rows:
        assert r["errors"] == 0, r
    for run_ in res["runs"]:
        out = run_["out"]
        for sc, x in out["scenarios"].items():
            assert x["completed"] > 0, (run_["shape"], run_["side"], sc, x)
            if x["saturated"]:
                continue  # stopped early: what was cancelled is not an answer
            assert x["completed"] == x["offered"], (run_["shape"], run_["side"], sc, x)
            if run_["side"] == "ours" and sc == "cache30":
                # 200 warm prompts + 100 warm-up requests miss; then ~30% of the run hits.
                hits = x["check"]["cache_hits"]
                assert 0.15 * x["offered"] <= hits <= 0.45 * x["offered"], (hits, x["offered"])
    table = load.section(res)
    assert load.BEGIN in table and load.END in table
