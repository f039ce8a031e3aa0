"""A fast smoke test of the quota comparison's simulated provider (benches/compare/quota.py):
its two windows count and refuse as documented, and a 429 carries Retry-After. No timing
is asserted; the comparison itself runs by ``make bench-quota-compare``."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "compare"))
import quota


def test_sliding_window_admits_rpm_in_any_60s() -> None:
    q = quota.Quota(3, "sliding")
    assert [q.take(t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert q.take(30.0) == pytest.approx(30.0)  # the request at 0 leaves at 60
    assert q.take(60.0) == 0.0


def test_gcra_admits_the_burst_then_the_rate() -> None:
    q = quota.Quota(3, "gcra")  # 1 per 20 s, burst 3
    assert [q.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert q.take(0.0) == pytest.approx(20.0)
    assert q.take(20.0) == 0.0


def test_max_in_window() -> None:
    assert quota.max_in_window([0.0, 10.0, 59.9, 60.0, 61.0]) == 4  # (1, 61]
    assert quota.max_in_window([]) == 0


def test_provider_answers_then_429s_with_retry_after() -> None:
    p = quota.Provider(2, "sliding", 0.0)
    try:

        def post(dep: str) -> tuple[int, dict[str, str], object]:
            req = urllib.request.Request(
                f"{p.url}/{dep}/v1/chat/completions", data=b"{}", method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, dict(r.headers), json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, dict(e.headers), json.loads(e.read())

        assert post("a")[0] == post("a")[0] == 200
        status, headers, _ = post("a")
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert int(headers["retry-after-ms"]) > 0
        assert post("b")[0] == 200  # the other deployment has its own quota
        figs = quota.provider_figures(p.log)
        assert figs["a"] == {
            "received": 3,
            "answered": 2,
            "429": 1,
            "max_received_per_60s": 3,
            "max_answered_per_60s": 2,
        }
        assert figs["b"]["answered"] == 1
    finally:
        p.close()
