"""A forked child works (issue 13): gunicorn --preload, multiprocessing with fork, Celery
prefork. The parent forks while 1, 4 or 8 threads (and tasks) are mid-call; the child must
answer the very prompt the parent had in flight, new prompts, async models through
generate() and agenerate(), and exit. Every wait on a child is bounded: a hung child is
killed and counted, and the count must be 0.

What a child inherits and must not: the single-flight registry (flights whose leader
threads do not exist there, its lock possibly held), the per-thread event loops kept for
sync calls of async models (their epoll instance and self-pipe are shared with the parent),
the sync-model worker pools (their threads are gone), and the configuration lock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agenticaiframework.llms import AllModelsFailedError, LLMManager

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

REPS = 12
# Seconds; a healthy child takes milliseconds.
CHILD_TIMEOUT = float(os.environ.get("AFW_FORK_CHILD_TIMEOUT", "15"))


@pytest.fixture(autouse=True)
def quiet_fork_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        # 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks":
        # exactly the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def wait_child(pid: int) -> int | None:
    """The child's exit status, or None if it hung (it is then killed)."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def in_child(body: Callable[[], None]) -> int | None:
    """Forks; the child runs ``body`` and exits 0, or 1 if it raised."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            body()
            code = 0
        except BaseException as exc:
            try:
                os.write(2, f"child failed: {exc!r}\n".encode())
            except Exception:
                pass
        finally:
            os._exit(code)
    return wait_child(pid)


class Parent:
    """A manager whose models block in the parent until released, and answer at once in
    a child."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

        def sync_model(prompt: str, kwargs: dict[str, Any]) -> str:
            if os.getpid() == self.pid and prompt.startswith("slow"):
                self.entered.release()
                self.release.wait(CHILD_TIMEOUT)
            return "sync:" + prompt

        async def async_model(prompt: str, kwargs: dict[str, Any]) -> str:
            if os.getpid() == self.pid and prompt.startswith("slow"):
                self.entered.release()
                while not self.release.is_set():
                    await asyncio.sleep(0.001)
            return "async:" + prompt

        self.m = LLMManager(sleep=lambda _: None)
        self.m.register_model("s", sync_model)
        self.m.register_model("a", async_model)
        self.m.set_active_model("s")
        self.sync_model = sync_model
        self.async_model = async_model


def hammer(m: LLMManager, stop: threading.Event, tag: str) -> None:
    """Cacheable requests, as fast as they go, so the registry lock is often held."""
    i = 0
    while not stop.is_set():
        m.generate(f"{tag}-{i % 50}")
        i += 1


def child_checks(p: Parent) -> None:
    m = p.m
    assert m.generate("slow") == "sync:slow"  # the prompt in flight in the parent
    assert m.generate("fresh") == "sync:fresh"
    assert m.generate_response("slow").cached
    assert asyncio.run(m.agenerate("slow-2")) == "sync:slow-2"  # sync model, worker pool
    m.set_active_model("a")
    assert m.generate("slow-3") == "async:slow-3"  # async model under generate()
    assert asyncio.run(m.agenerate("slow-4")) == "async:slow-4"
    m.register_model("new", lambda p, k: "new")  # the configuration lock is usable
    s = m.get_metrics()
    assert s["total_requests"] == s["successful_requests"] + s["failed_requests"]


@pytest.mark.parametrize("busy", [1, 4, 8])
def test_fork_while_threads_are_mid_call(busy: int) -> None:
    hung = failed = 0
    for _ in range(REPS):
        p = Parent()
        # The async model has been used through generate() on this thread: its loop exists.
        p.m.set_active_model("a")
        assert p.m.generate("warm") == "async:warm"
        p.m.set_active_model("s")
        stop = threading.Event()
        threads = [threading.Thread(target=p.m.generate, args=("slow",))]
        threads += [
            threading.Thread(target=hammer, args=(p.m, stop, f"h{i}")) for i in range(busy - 1)
        ]
        for t in threads:
            t.start()
        assert p.entered.acquire(timeout=CHILD_TIMEOUT)  # the leader is inside the model
        time.sleep(0.001 * (_ % 4))  # vary where the hammering threads are
        code = in_child(lambda p=p: child_checks(p))
        stop.set()
        p.release.set()
        for t in threads:
            t.join(CHILD_TIMEOUT)
        hung += code is None
        failed += code not in (None, 0)
    assert (hung, failed) == (0, 0)


@pytest.mark.parametrize("busy", [1, 4, 8])
def test_fork_while_tasks_are_mid_call(busy: int) -> None:
    """Tasks on a loop in another thread lead flights (async and sync models) at fork."""
    hung = failed = 0
    for _ in range(REPS):
        p = Parent()
        loop = asyncio.new_event_loop()
        runner = threading.Thread(target=loop.run_forever, daemon=True)
        runner.start()
        futs = []
        # The first four are exactly the child's requests (child_checks), in flight here.
        inflight = [("a", "slow-3"), ("s", "slow"), ("a", "slow-4"), ("s", "slow-2")]
        inflight += [("a" if i % 2 else "s", f"slow-t{i}") for i in range(4, busy)]
        for model, prompt in inflight[:busy]:
            p.m.set_active_model(model)
            futs.append(asyncio.run_coroutine_threadsafe(p.m.agenerate(prompt), loop))
            assert p.entered.acquire(timeout=CHILD_TIMEOUT)
        p.m.set_active_model("s")
        code = in_child(lambda p=p: child_checks(p))
        p.release.set()
        for f in futs:
            f.result(CHILD_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(CHILD_TIMEOUT)
        loop.close()
        hung += code is None
        failed += code not in (None, 0)
    assert (hung, failed) == (0, 0)


def test_child_counts_start_at_zero_and_keeps_the_cache() -> None:
    m = LLMManager()
    m.register_model("m", lambda p, k: "answer " + p)
    m.set_active_model("m")
    m.generate("cached")
    before = m.get_metrics()

    def body() -> None:
        s = m.get_metrics()
        assert s["total_requests"] == 0 and s["cache_size"] == 1
        assert m.get_model_info("m")["stats"]["requests"] == 0
        assert m.generate_response("cached").cached  # the parent's answers stay valid
        assert m.get_metrics()["cache_hits"] == 1

    assert in_child(body) == 0
    assert m.get_metrics() == before  # the parent's own counts are untouched


def test_parent_loop_survives_a_child_using_its_copy() -> None:
    """The child never closes the parent's per-thread loop (closing it would unregister
    the self-pipe from the epoll instance both share)."""

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return "a:" + prompt

    m = LLMManager()
    m.register_model("a", model)
    m.set_active_model("a")
    assert m.generate("one") == "a:one"

    def body() -> None:
        assert m.generate("two") == "a:two"
        assert m.generate("three", use_cache=False) == "a:three"

    for _ in range(5):
        assert in_child(body) == 0
        assert m.generate("four", use_cache=False) == "a:four"  # the parent's loop works


def test_half_open_trial_of_a_vanished_thread_is_released_in_the_child() -> None:
    t = [0.0]
    m = LLMManager(failure_threshold=1, recovery_timeout=10, clock=lambda: t[0])
    pid = os.getpid()
    gate = threading.Event()
    entered = threading.Event()

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        if prompt == "boom":
            raise RuntimeError("down")
        if os.getpid() == pid:
            entered.set()
            gate.wait(CHILD_TIMEOUT)
        return "ok"

    m.register_model("m", model)
    m.set_active_model("m")
    with pytest.raises(AllModelsFailedError):
        m.generate("boom")
    t[0] = 11.0  # past the recovery timeout: the next call is the half-open trial
    trial = threading.Thread(target=m.generate, args=("trial",))
    trial.start()
    assert entered.wait(CHILD_TIMEOUT)
    assert m.get_model_info("m")["circuit_breaker_state"] == "half-open"

    def body() -> None:
        assert m.generate("child") == "ok"  # not refused: the trial's permit was released
        assert m.get_model_info("m")["circuit_breaker_state"] == "closed"

    try:
        assert in_child(body) == 0
    finally:
        gate.set()
        trial.join(CHILD_TIMEOUT)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
