"""examples/fastapi_server.py under a real ASGI server (uvicorn) on loopback: concurrent
requests answered, /metrics scraped, the per-request deadline answering 504."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(**env: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.fastapi_server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"uvicorn did not start: {out}")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def post(url: str, prompt: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(
        f"{url}/generate",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def test_concurrent_requests_metrics_and_stats() -> None:
    with server(TIME_SCALE="0.1") as url:
        prompts = [f"question {i % 6}" for i in range(24)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda p: post(url, p), prompts))
        assert all(code == 200 and body["text"] for code, body in results), results
        stats = json.loads(get(f"{url}/stats"))
        assert stats["total_requests"] == 24 and stats["successful_requests"] == 24
        assert stats["cache_hits"] + stats["cache_misses"] == 24
        assert stats["breaker_states"] == {"gpt-4o": "closed", "claude": "closed"}
        text = get(f"{url}/metrics")
        assert 'agenticai_requests_total{outcome="success"} 24.0' in text
        assert "agenticai_attempt_latency_seconds_bucket" in text


def test_deadline_bounds_the_request() -> None:
    # Simulated latencies of 20-30 s against a 0.2 s deadline.
    with server(TIME_SCALE="1000", REQUEST_DEADLINE="0.2") as url:
        t0 = time.monotonic()
        code, body = post(url, "slow")
        assert code == 504 and "in time" in str(body["detail"])
        assert time.monotonic() - t0 < 5
        stats = json.loads(get(f"{url}/stats"))
        assert stats["deadline_exceeded"] == 1 and stats["failed_requests"] == 1
