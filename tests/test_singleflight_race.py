"""Single-flight exactly once under a 1 us switch interval (issue 12).

The window these tests hunt: a request misses the cache, its twin (the leader) stores the
answer and retires the flight, and only then does the request look for a flight. It finds
none and would lead a second upstream call. With caching on, each distinct request must
reach a model exactly once while it stays cached: threads, tasks on several loops, and both
together, 100 repetitions each.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from agenticaiframework.llms import LLMManager

REPS = 100
PROMPTS = 50


@pytest.fixture(autouse=True)
def tight_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class Upstream:
    """Counts calls per prompt, from any thread."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def sync(self, prompt: str, kwargs: dict[str, Any]) -> str:
        with self.lock:
            self.calls[prompt] += 1
        return "answer to " + prompt

    async def coro(self, prompt: str, kwargs: dict[str, Any]) -> str:
        with self.lock:
            self.calls[prompt] += 1
        await asyncio.sleep(0)
        return "answer to " + prompt


def manager(fn: Any) -> LLMManager:
    async def no_wait(_: float) -> None:
        return None

    m = LLMManager(sleep=lambda _: None, async_sleep=no_wait)
    m.register_model("m", fn)
    m.set_active_model("m")
    return m


def prompt_of(worker: int, i: int) -> str:
    return f"p{(i * 7 + worker) % PROMPTS}"


def check(m: LLMManager, up: Upstream, requests: int) -> None:
    assert sum(up.calls.values()) == PROMPTS, up.calls.most_common(3)
    assert set(up.calls.values()) == {1}
    s = m.get_metrics()
    assert s["total_requests"] == requests
    assert s["successful_requests"] == requests
    assert s["failed_requests"] == 0
    # Every request is a hit, a coalesced one, or the one that called.
    assert s["cache_hits"] + s["coalesced_requests"] + PROMPTS == requests


def thread_worker(m: LLMManager, worker: int, n: int, out: list[str]) -> None:
    for i in range(n):
        p = prompt_of(worker, i)
        text = m.generate(p)
        if text != "answer to " + p:
            out.append(text)


def loop_worker(m: LLMManager, worker: int, n: int, out: list[str]) -> None:
    async def one(i: int) -> None:
        p = prompt_of(worker, i)
        text = await m.agenerate(p)
        if text != "answer to " + p:
            out.append(text)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(main())


def run_workers(targets: list[Any], m: LLMManager, n: int) -> list[str]:
    wrong: list[str] = []
    threads = [threading.Thread(target=t, args=(m, w, n, wrong)) for w, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wrong


@pytest.mark.parametrize("rep", range(REPS))
def test_threads_reach_the_model_exactly_once(rep: int) -> None:
    up = Upstream()
    m = manager(up.sync)
    assert run_workers([thread_worker] * 8, m, 250) == []
    check(m, up, 8 * 250)


@pytest.mark.parametrize("rep", range(REPS))
def test_tasks_on_four_loops_reach_the_model_exactly_once(rep: int) -> None:
    up = Upstream()
    m = manager(up.coro)
    assert run_workers([loop_worker] * 4, m, 250) == []
    check(m, up, 4 * 250)


@pytest.mark.parametrize("rep", range(REPS))
def test_threads_and_tasks_together_reach_the_model_exactly_once(rep: int) -> None:
    up = Upstream()
    m = manager(up.coro)
    # Plain threads run the async model on their own loops through generate().
    assert run_workers([thread_worker, loop_worker] * 4, m, 125) == []
    check(m, up, 8 * 125)


@pytest.mark.parametrize("rep", range(REPS))
def test_sync_model_from_threads_and_tasks(rep: int) -> None:
    up = Upstream()
    m = manager(up.sync)
    assert run_workers([thread_worker, loop_worker] * 4, m, 125) == []
    check(m, up, 8 * 125)


def test_generate_response_of_a_request_whose_twin_just_landed() -> None:
    """The second look, made deterministic: the answer lands between the miss and the
    join. The request makes no call and is counted as coalesced."""
    up = Upstream()
    m = manager(up.sync)
    key = m._enter("q", True, None)[1]  # counted: a request and a miss
    assert m.generate("q") == "answer to q"  # the twin: leads, stores, retires
    assert m._landed(key) is not None
    assert up.calls["q"] == 1
    assert len(m._flights) == 0
    s = m.get_metrics()
    assert (s["total_requests"], s["successful_requests"], s["coalesced_requests"]) == (2, 2, 1)
