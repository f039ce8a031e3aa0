"""The Prometheus collectors (llms/prometheus.py), through prometheus_client itself: a real
registry, its text exposition parsed back, every figure checked against get_metrics() and
get_model_info() after a known workload; 8 threads; several worker processes."""

from __future__ import annotations

import doctest
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from agenticaiframework.llms import (  # noqa: E402
    AllModelsFailedError,
    LLMManager,
    ProviderTimeoutError,
    Usage,
)
from agenticaiframework.llms import prometheus as prom  # noqa: E402
from agenticaiframework.llms.prometheus import (  # noqa: E402
    DEFAULT_BUCKETS,
    HostCollector,
    LLMCollector,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
WORKER = Path(__file__).with_name("prom_worker.py")


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def scrape(collector: Any) -> tuple[str, Samples]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return text, parse(text)


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


class Streamer:
    """A model with ``stream``: chunks, then usage."""

    def __init__(self, fail_first: set[str]) -> None:
        self.fail_first = fail_first
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def _fails(self, prompt: str) -> bool:
        with self.lock:
            self.seen[prompt] = n = self.seen.get(prompt, 0) + 1
        return prompt.startswith("down") or (
            any(prompt.startswith(p) for p in self.fail_first) and n == 1
        )

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        if prompt.startswith("slow"):
            time.sleep(0.05)
        if self._fails(prompt):
            raise ProviderTimeoutError("timed out")
        return f"answer to {prompt}"

    def stream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        if self._fails(prompt):
            raise ProviderTimeoutError("timed out")
        yield "chunk one "
        yield "chunk two"
        yield Usage(prompt_tokens=7, completion_tokens=2)


def build() -> LLMManager:
    llm = LLMManager(max_retries=2, failure_threshold=3, sleep=lambda s: None)
    llm.register_model(
        "primary",
        Streamer({"once"}),
        {"cost_per_1k_input_tokens": 0.01, "cost_per_1k_output_tokens": 0.03},
    )

    def backup(prompt: str, kwargs: dict[str, Any]) -> str:
        if prompt.startswith("down-all"):
            raise ProviderTimeoutError("backup timed out too")
        return f"backup: {prompt}"

    llm.register_model("backup", backup, {"api_key": "sk-meta-secret-123"})
    llm.set_active_model("primary")
    llm.set_fallback_chain(["primary", "backup"])
    return llm


def check_against_manager(llm: LLMManager, samples: Samples) -> None:
    """Every series against get_metrics() / get_model_info(), read at the same moment."""
    m = llm.get_metrics()
    assert get(samples, "agenticai_requests_total", outcome="success") == m["successful_requests"]
    assert get(samples, "agenticai_requests_total", outcome="failure") == m["failed_requests"]
    assert get(samples, "agenticai_requests_total", outcome="cancelled") == m["cancelled_requests"]
    done = m["successful_requests"] + m["failed_requests"] + m["cancelled_requests"]
    assert get(samples, "agenticai_requests_in_flight") == m["total_requests"] - done
    assert get(samples, "agenticai_cache_hits_total", tier="l1") == m["cache_hits"]
    assert get(samples, "agenticai_cache_misses_total", tier="l1") == m["cache_misses"]
    assert get(samples, "agenticai_cache_hits_total", tier="l2") == m["l2_hits"]
    assert get(samples, "agenticai_cache_misses_total", tier="l2") == m["l2_misses"]
    assert get(samples, "agenticai_cache_entries") == m["cache_size"]
    assert get(samples, "agenticai_retries_total") == m["total_retries"]
    assert get(samples, "agenticai_fallbacks_total") == m["fallbacks"]
    assert get(samples, "agenticai_retries_denied_total") == m["retries_denied"]
    assert get(samples, "agenticai_coalesced_requests_total") == m["coalesced_requests"]
    assert get(samples, "agenticai_fleet_errors_total") == m["fleet_errors"]
    for name in llm.list_models():
        info = llm.get_model_info(name)
        s = info["stats"]
        for outcome, key in (("success", "successes"), ("failure", "failures")):
            v = get(samples, "agenticai_model_attempts_total", model=name, outcome=outcome)
            assert v == s[key]
        assert (
            get(samples, "agenticai_model_attempts_total", model=name, outcome="cancelled")
            == s["cancelled"]
        )
        assert get(samples, "agenticai_model_retries_total", model=name) == s["retries"]
        assert (
            get(samples, "agenticai_model_short_circuits_total", model=name) == s["short_circuits"]
        )
        for family, key in (("hedged_requests", "hedged_requests"), ("hedge_wins", "hedge_wins")):
            assert get(samples, f"agenticai_model_{family}_total", model=name) == s[key]
        assert (
            get(samples, "agenticai_tokens_total", model=name, type="prompt")
            == (s["prompt_tokens"])
        )
        assert (
            get(samples, "agenticai_tokens_total", model=name, type="completion")
            == (s["completion_tokens"])
        )
        if "cost" in s:
            assert get(samples, "agenticai_cost_usd_total", model=name) == pytest.approx(
                s["cost"], rel=1e-12
            )
        else:
            assert ("agenticai_cost_usd_total", frozenset({("model", name)})) not in samples
        for state in prom.STATES:
            want = int(state == info["circuit_breaker_state"])
            assert get(samples, "agenticai_circuit_breaker_state", model=name, state=state) == want
        stats = llm._models[name].stats
        for family, native, count in (
            ("agenticai_attempt_latency_seconds", stats.latency_buckets, None),
            ("agenticai_time_to_first_chunk_seconds", stats.ttfc_buckets, s["streams"]),
        ):
            cumulative, n, total = native(DEFAULT_BUCKETS)
            les = [prom._go(b) for b in DEFAULT_BUCKETS] + ["+Inf"]
            got = [get(samples, f"{family}_bucket", model=name, le=le) for le in les]
            assert got == [*cumulative, n]
            assert got == sorted(got)
            assert get(samples, f"{family}_count", model=name) == n
            assert get(samples, f"{family}_sum", model=name) == pytest.approx(total, rel=1e-12)
            if count is not None:
                assert n == count
        # Attempts that ended (successes and failures) are the latency histogram's count.
        assert get(samples, "agenticai_attempt_latency_seconds_count", model=name) == (
            s["successes"] + s["failures"]
        )


def run_workload(llm: LLMManager, tag: str = "") -> None:
    """Hits, first tries, a retry, fallbacks, an open breaker, a stream, a failure."""
    for i in range(4):
        llm.generate(f"hello {tag}{i}")
    for i in range(4):
        llm.generate(f"hello {tag}{i}")  # hits
    llm.generate(f"once {tag}")  # fails once, answered by its retry
    llm.generate(f"slow {tag}")  # a 50 ms first try
    assert "".join(llm.stream(f"stream {tag}")) == "chunk one chunk two"


def test_known_workload_single_process() -> None:
    llm = build()
    run_workload(llm)
    # primary fails twice (max_retries=2 attempts), backup answers: a fallback.
    assert llm.generate("down 1").startswith("backup")
    # The third consecutive failure opens primary's breaker; backup answers.
    assert llm.generate("down 2").startswith("backup")
    assert llm.get_model_info("primary")["circuit_breaker_state"] == "open"
    llm.generate("after the outage")  # primary short-circuited
    with pytest.raises(AllModelsFailedError):
        llm.generate("down-all")
    _, samples = scrape(LLMCollector(llm))
    check_against_manager(llm, samples)
    # And the figures are the ones this workload makes.
    # run_workload: 8 generate (4 of them hits), once, slow, a stream; then 3 answered.
    assert get(samples, "agenticai_requests_total", outcome="success") == 11 + 3
    assert get(samples, "agenticai_requests_total", outcome="failure") == 1
    assert get(samples, "agenticai_cache_hits_total", tier="l1") == 4
    assert get(samples, "agenticai_retries_total") >= 2
    # down 1, down 2, after the outage, down-all (a failed request's moves count too).
    assert get(samples, "agenticai_fallbacks_total") == 4
    assert get(samples, "agenticai_circuit_breaker_state", model="primary", state="open") == 1
    assert get(samples, "agenticai_circuit_breaker_state", model="backup", state="closed") == 1
    assert get(samples, "agenticai_model_short_circuits_total", model="primary") == 2
    assert get(samples, "agenticai_time_to_first_chunk_seconds_count", model="primary") == 1
    assert get(samples, "agenticai_tokens_total", model="primary", type="prompt") >= 7
    # The 50 ms attempt is above the 25 ms bucket (more than 1/64 above it) and below 1 s.
    le = get(samples, "agenticai_attempt_latency_seconds_bucket", model="primary", le="0.025")
    n = get(samples, "agenticai_attempt_latency_seconds_count", model="primary")
    assert le <= n - 1
    assert ("agenticai_cost_usd_total", frozenset({("model", "backup")})) not in samples
    assert get(samples, "agenticai_cost_usd_total", model="primary") > 0


def test_labels_never_hold_prompts_kwargs_or_metadata() -> None:
    llm = build()
    secret_prompt = "my confidential prompt about project nightingale"
    llm.generate(secret_prompt, api_key="sk-kwarg-secret-456", user="alice@example.com")
    with pytest.raises(AllModelsFailedError):
        llm.generate("down-all with a secret", api_key="sk-kwarg-secret-456")
    text, samples = scrape(LLMCollector(llm))
    for leak in ("nightingale", "confidential", "sk-kwarg", "alice", "sk-meta", "secret"):
        assert leak not in text
    labels = {k for _, ls in samples for k, _ in ls}
    assert labels <= {"model", "outcome", "tier", "type", "state", "le"}
    values = {v for _, ls in samples for k, v in ls if k == "model"}
    assert values == {"primary", "backup"}


def test_eight_threads_exact_once_idle_and_monotonic_while_running() -> None:
    llm = build()
    collector = LLMCollector(llm)
    stop = threading.Event()
    scrapes: list[Samples] = []

    def scraper() -> None:
        while not stop.is_set():
            scrapes.append(scrape(collector)[1])

    def worker(t: int) -> None:
        for r in range(10):
            run_workload(llm, f"t{t}r{r} ")
            llm.generate("shared prompt")  # hits or coalesced, across threads

    s = threading.Thread(target=scraper)
    s.start()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    s.join()
    _, final = scrape(collector)
    check_against_manager(llm, final)
    requests = 8 * 10 * (8 + 1 + 1 + 1 + 1)
    done = sum(get(final, "agenticai_requests_total", outcome=o) for o in ("success", "failure"))
    assert done == requests == llm.get_metrics()["total_requests"]
    assert get(final, "agenticai_requests_in_flight") == 0
    # Scrapes taken while the threads ran: counters never went backwards, and every
    # histogram was cumulative with +Inf equal to its count.
    scrapes.append(final)
    assert len(scrapes) >= 2
    for before, after in itertools.pairwise(scrapes):
        for key, v in before.items():
            name = key[0]
            if name.endswith(("_total", "_bucket", "_count")):
                assert after[key] >= v, key
    for samples in scrapes:
        for model in ("primary", "backup"):
            les = [prom._go(b) for b in DEFAULT_BUCKETS] + ["+Inf"]
            fam = "agenticai_attempt_latency_seconds"
            got = [get(samples, f"{fam}_bucket", model=model, le=le) for le in les]
            assert got == sorted(got)
            assert got[-1] == get(samples, f"{fam}_count", model=model)


def test_several_managers_are_summed() -> None:
    a, b = build(), build()
    run_workload(a, "a")
    run_workload(b, "b")
    run_workload(b, "c")
    _, samples = scrape(LLMCollector(a, b))
    _, sa = scrape(LLMCollector(a))
    _, sb = scrape(LLMCollector(b))
    assert set(samples) == set(sa) == set(sb)
    for key, v in samples.items():
        assert v == pytest.approx(sa[key] + sb[key], rel=1e-12), key


def test_collector_validation_and_describe() -> None:
    llm = build()
    with pytest.raises(TypeError):
        LLMCollector(object())  # type: ignore[arg-type]
    for bad in ([], [1.0, 0.5], [float("nan")], [-1.0], [float("inf")]):
        with pytest.raises(ValueError):
            LLMCollector(llm, buckets=bad)
    with pytest.raises(ValueError):
        LLMCollector(llm, namespace="")
    registry = CollectorRegistry()
    registry.register(LLMCollector(llm))
    with pytest.raises(ValueError):  # describe() names the families: a clash is seen
        registry.register(LLMCollector(llm))
    c = LLMCollector(llm, namespace="svc", buckets=[0.1, 1], ttfc_buckets=[0.01])
    _, samples = scrape(c)
    assert ("svc_requests_total", frozenset({("outcome", "success")})) in samples
    assert any(k[0] == "svc_time_to_first_chunk_seconds_bucket" for k in samples)


def test_module_doctests() -> None:
    failed, tried = doctest.testmod(prom)
    assert tried > 0 and failed == 0


def test_serve_exposes_the_collector() -> None:
    llm = build()
    llm.generate("hello")
    server, _ = prom.serve(llm, 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            samples = parse(r.read().decode())
        check_against_manager(llm, samples)
    finally:
        server.shutdown()
        server.server_close()


def test_demo_prometheus_option() -> None:
    """``demo --prometheus 0``: /metrics served while the demo runs (and --hold after)."""
    from agenticaiframework.llms.__main__ import main

    out = io.StringIO()
    args = ["demo", "--requests", "300", "--time-scale", "0.02", "--prometheus", "0"]
    t = threading.Thread(target=main, args=([*args, "--hold", "2"], out))
    t.start()
    try:
        url = None
        for _ in range(1000):
            url = next((w for w in out.getvalue().split() if w.endswith("/metrics")), None)
            if url:
                break
            time.sleep(0.01)
        assert url, out.getvalue()
        for _ in range(1000):  # until the run has finished (then --hold keeps serving)
            if "Metrics" in out.getvalue():
                break
            time.sleep(0.02)
        with urllib.request.urlopen(url, timeout=10) as r:
            samples = parse(r.read().decode())
        ok = get(samples, "agenticai_requests_total", outcome="success")
        failed = get(samples, "agenticai_requests_total", outcome="failure")
        assert ok + failed == 300
        assert get(samples, "agenticai_model_attempts_total", model="gpt-4", outcome="success") > 0
    finally:
        t.join(60)
    assert not t.is_alive()


# ----------------------------------------------------------------- several processes


def spawn(directory: Path, index: int, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(directory), str(index), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def expected(reports: list[dict[str, Any]], live: list[bool]) -> Samples:
    """What a host scrape must show: counters summed over every worker, gauges over live."""
    out: Samples = {}

    def add(name: str, v: float, **labels: str) -> None:
        key = (name, frozenset(labels.items()))
        out[key] = out.get(key, 0) + v

    for rep, alive in zip(reports, live, strict=True):
        m = rep["metrics"]
        add("agenticai_requests_total", m["successful_requests"], outcome="success")
        add("agenticai_requests_total", m["failed_requests"], outcome="failure")
        add("agenticai_requests_total", m["cancelled_requests"], outcome="cancelled")
        add("agenticai_cache_hits_total", m["cache_hits"], tier="l1")
        add("agenticai_cache_misses_total", m["cache_misses"], tier="l1")
        add("agenticai_retries_total", m["total_retries"])
        add("agenticai_fallbacks_total", m["fallbacks"])
        add("agenticai_cache_entries", m["cache_size"] if alive else 0)
        for name, model in rep["models"].items():
            s = model["info"]["stats"]
            add("agenticai_model_attempts_total", s["successes"], model=name, outcome="success")
            add("agenticai_model_attempts_total", s["failures"], model=name, outcome="failure")
            add("agenticai_model_short_circuits_total", s["short_circuits"], model=name)
            add("agenticai_tokens_total", s["prompt_tokens"], model=name, type="prompt")
            add("agenticai_tokens_total", s["completion_tokens"], model=name, type="completion")
            if "cost" in s:
                add("agenticai_cost_usd_total", s["cost"], model=name)
            state = model["info"]["circuit_breaker_state"]
            for st in prom.STATES:
                add(
                    "agenticai_circuit_breaker_state",
                    int(alive and st == state),
                    model=name,
                    state=st,
                )
            les = [prom._go(b) for b in DEFAULT_BUCKETS] + ["+Inf"]
            for family, key in (
                ("agenticai_attempt_latency_seconds", "latency"),
                ("agenticai_time_to_first_chunk_seconds", "ttfc"),
            ):
                cumulative, n, _ = model[key]
                for le, v in zip(les, [*cumulative, n], strict=True):
                    add(f"{family}_bucket", v, model=name, le=le)
                add(f"{family}_count", n, model=name)
    add("agenticai_worker_processes", sum(live), state="live")
    add("agenticai_worker_processes", len(live) - sum(live), state="exited")
    return out


def wait_for(collector: HostCollector, want: Samples, timeout: float = 30.0) -> Samples:
    """Scrapes until the host's figures are the expected ones (the writers' interval)."""
    deadline = time.monotonic() + timeout
    while True:
        _, samples = scrape(collector)
        diff = {
            k: (samples.get(k), v) for k, v in want.items() if samples.get(k) != pytest.approx(v)
        }
        if not diff:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"host scrape differs: {diff}")
        time.sleep(0.05)


def test_host_collector_sums_worker_processes(tmp_path: Path) -> None:
    """Three worker processes, each with its own manager and workload; the parent's
    HostCollector scrape equals their sum. One exits cleanly, one is SIGKILLed, one stays
    up then exits: counters never go backwards, gauges follow the live workers."""
    procs = [spawn(tmp_path, 0, "exit"), spawn(tmp_path, 1, "wait"), spawn(tmp_path, 2, "wait")]
    try:
        reports = []
        for p in procs:
            assert p.stdout is not None
            reports.append(json.loads(p.stdout.readline()))
        assert procs[0].wait(30) == 0
        collector = HostCollector(tmp_path)
        samples = wait_for(collector, expected(reports, [False, True, True]))
        # The workloads differ, so the sum is not a multiple of one of them.
        assert get(samples, "agenticai_requests_total", outcome="success") == sum(
            r["metrics"]["successful_requests"] for r in reports
        )
        assert get(samples, "agenticai_requests_total", outcome="failure") == 1
        # Killed: no final snapshot; its counters stay, its gauges go with its pid.
        procs[2].send_signal(signal.SIGKILL)
        procs[2].wait(30)
        wait_for(collector, expected(reports, [False, True, False]))
        # A clean exit of the last one: everything exited, the totals unchanged.
        assert procs[1].stdin is not None
        procs[1].stdin.close()
        assert procs[1].wait(30) == 0
        wait_for(collector, expected(reports, [False, False, False]))
        files = sorted(p.name for p in tmp_path.iterdir())
        assert len(files) == 3 and all(f.endswith(".json") for f in files)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)


def test_host_collector_empty_and_foreign_files(tmp_path: Path) -> None:
    collector = HostCollector(tmp_path / "missing")
    _, samples = scrape(collector)
    assert get(samples, "agenticai_worker_processes", state="live") == 0
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"v": 99}))
    llm = build()
    llm.generate("hello")
    w = prom.SnapshotWriter(llm, directory=tmp_path, interval=60, buckets=[0.5, 5.0])
    try:
        _, samples = scrape(HostCollector(tmp_path))  # other bounds: no histograms
        assert get(samples, "agenticai_requests_total", outcome="success") == 1
        assert not any(k[0].endswith("_bucket") for k in samples)
        assert get(samples, "agenticai_worker_processes", state="live") == 1
        _, samples = scrape(HostCollector(tmp_path, buckets=[0.5, 5.0]))
        assert get(samples, "agenticai_attempt_latency_seconds_count", model="primary") == 1
    finally:
        w.close()
    _, samples = scrape(HostCollector(tmp_path))
    assert get(samples, "agenticai_worker_processes", state="exited") == 1
    assert get(samples, "agenticai_cache_entries") == 0
