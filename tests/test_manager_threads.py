"""The manager under many threads: exact counters, bounded half-open trials, no lock around
user code."""

from __future__ import annotations

import threading
from typing import Any

from agenticaiframework.llms import AllModelsFailedError, CircuitBreakerOpenError, LLMManager

THREADS = 8
CALLS = 10_000


def test_counters_are_exact_under_threads() -> None:
    upstream = 0
    lock = threading.Lock()

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal upstream
        with lock:
            upstream += 1
        if prompt.endswith("7"):
            raise ValueError("prompts ending in 7 always fail")
        return prompt.upper()

    m = LLMManager(max_retries=1, failure_threshold=10**4, sleep=lambda _: None)
    m.register_model("m", model)
    m.set_active_model("m")
    failures = [0] * THREADS

    def worker(t: int) -> None:
        for i in range(CALLS):
            prompt = f"p{(i * 7 + t) % 40}"
            try:
                assert m.generate(prompt, use_cache=i % 3 != 0) == prompt.upper()
            except AllModelsFailedError:
                failures[t] += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    metrics = m.get_metrics()
    total = THREADS * CALLS
    assert metrics["total_requests"] == total
    assert metrics["failed_requests"] == sum(failures)
    assert metrics["successful_requests"] == total - sum(failures)
    assert metrics["cancelled_requests"] == 0
    # Every request either hit, missed, or skipped the cache (use_cache=False).
    no_cache = sum(1 for i in range(CALLS) if i % 3 == 0) * THREADS
    assert metrics["cache_hits"] + metrics["cache_misses"] == total - no_cache
    stats = m.get_model_info("m")["stats"]
    assert stats["requests"] == upstream
    assert stats["successes"] + stats["failures"] == upstream
    # Followers of a flight never called upstream.
    assert upstream == no_cache + metrics["cache_misses"] - metrics["coalesced_requests"]


def test_half_open_admits_at_most_max_trials_across_threads() -> None:
    clock = [0.0]
    inside = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()
    done = threading.Condition()
    finished = 0

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        nonlocal inside, peak
        if prompt == "break":
            raise ConnectionError("down")
        with lock:
            inside += 1
            peak = max(peak, inside)
        assert release.wait(timeout=30)
        with lock:
            inside -= 1
        return "recovered"

    m = LLMManager(
        max_retries=1,
        failure_threshold=1,
        recovery_timeout=5,
        half_open_max_calls=3,
        clock=lambda: clock[0],
        sleep=lambda _: None,
    )
    m.register_model("m", model)
    m.set_active_model("m")
    try:
        m.generate("break")
    except AllModelsFailedError:
        pass
    assert m.get_model_info("m")["circuit_breaker_state"] == "open"
    clock[0] = 5.0
    assert m.get_model_info("m")["circuit_breaker_state"] == "half-open"

    outcomes: list[Any] = []

    def worker() -> None:
        nonlocal finished
        try:
            outcomes.append(m.generate("probe", use_cache=False))
        except AllModelsFailedError as e:
            outcomes.append(e)
        with done:
            finished += 1
            done.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    with done:
        # The threads refused a trial slot finish on their own; the trials are parked.
        assert done.wait_for(lambda: finished == THREADS - 3, timeout=30)
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert peak == 3
    rejected = [o for o in outcomes if isinstance(o, AllModelsFailedError)]
    assert len(rejected) == THREADS - 3
    assert all(isinstance(e.errors[0][1], CircuitBreakerOpenError) for e in rejected)
    assert outcomes.count("recovered") == 3
    assert m.get_model_info("m")["circuit_breaker_state"] == "closed"
    assert m.get_model_info("m")["stats"]["short_circuits"] == THREADS - 3


def test_user_code_may_call_back_into_the_manager() -> None:
    m = LLMManager(sleep=lambda _: None)

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        # Each of these would deadlock if a lock were held around the call.
        m.get_metrics()
        m.get_model_info("m")
        m.clear_cache()
        m.register_model("other", lambda p, k: "other")
        m.set_fallback_chain(["other"])
        return "fine"

    m.register_model("m", model)
    m.set_active_model("m")
    assert m.generate("x") == "fine"
    assert m.fallback_chain == ["other"]
