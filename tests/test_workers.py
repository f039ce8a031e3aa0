"""A server's process life (issue 13): hung sync models, shutdown, loops, counts.

Sync models called through ``agenerate`` run on pools the library owns, one per model,
daemon threads: a hung call never blocks ``asyncio.run()`` or interpreter exit, never makes
a healthy model's calls queue, and a call that waits for a free worker is not the model's
failure. Attempt timeouts here are real but tiny (10 ms), as in test_hardening_faults.py;
nothing waits out a backoff (the sleeps are injected).
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import warnings
from typing import Any

import pytest

from agenticaiframework._native import BreakerCore, ModelCore, ModelStats
from agenticaiframework.llms import AllModelsFailedError, LLMManager
from agenticaiframework.llms.workers import SyncPool, WorkersBusyError

HANDOFF = 30.0  # bounded waits for threads the test itself releases


async def _no_wait(_: float) -> None:
    return None


def manager(**kw: Any) -> LLMManager:
    return LLMManager(sleep=lambda _: None, async_sleep=_no_wait, **kw)


def add_up(m: LLMManager) -> None:
    s = m.get_metrics()
    assert s["total_requests"] == (
        s["successful_requests"] + s["failed_requests"] + s["cancelled_requests"]
    ), s


class Hung:
    """A sync model that blocks until released; counts entries."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = 0

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.calls += 1
        self.entered.release()
        self.release.wait(HANDOFF)
        return "late"


def test_hung_calls_fill_only_their_own_models_pool() -> None:
    """Before: asyncio's shared default executor; once hung calls filled it, a healthy
    sync model's calls queued behind them, timed out in the queue and opened its breaker."""
    hung = Hung()
    m = manager(max_retries=1, failure_threshold=3, sync_workers=2)
    m.register_model("hung", hung, {"timeout": 0.01})
    m.register_model("ok", lambda p, k: "ok:" + p, {"timeout": 0.01})
    m.set_active_model("hung")
    m.set_fallback_chain(["ok"])

    async def main() -> None:
        try:
            # Two calls hang (and time out): the hung model's two workers stay busy.
            for i in range(2):
                assert await m.agenerate(f"p{i}", use_cache=False) == f"ok:p{i}"
                assert hung.entered.acquire(timeout=HANDOFF)
            assert m._models["hung"].pool is not None and m._models["hung"].pool.busy == 2
            # The healthy model answers through its own pool, many times over.
            results = await asyncio.gather(
                *(m.agenerate(f"q{i}", use_cache=False) for i in range(50))
            )
            assert results == [f"ok:q{i}" for i in range(50)]
            ok = m.get_model_info("ok")
            assert ok["stats"]["failures"] == 0 and ok["circuit_breaker_state"] == "closed"
            # A third call to the hung model waits for a worker for its whole timeout:
            # not started, so not the model's failure; the next model answers.
            before = m.get_model_info("hung")["stats"]["failures"]
            r = await m.agenerate_response("p2", use_cache=False)
            assert r.model == "ok" and isinstance(r.errors[0][1], WorkersBusyError)
            assert "2 sync workers of model 'hung' are busy" in str(r.errors[0][1])
            info = m.get_model_info("hung")
            assert info["stats"]["failures"] == before == 2
            assert info["failure_count"] == 2  # the breaker did not move either
            assert hung.calls == 2
            add_up(m)
        finally:
            hung.release.set()

    asyncio.run(main())


def test_asyncio_run_and_exit_do_not_wait_for_a_hung_sync_call() -> None:
    """Before: the timed-out call's thread sat in asyncio's default executor, which
    asyncio.run() shuts down and joins: the script never ended."""
    script = textwrap.dedent(
        """
        import asyncio, threading
        from agenticaiframework.llms import LLMManager

        never = threading.Event()

        def hung(prompt, kwargs):
            never.wait()  # for ever
            return "never"

        async def no_wait(_):
            return None

        m = LLMManager(max_retries=1, async_sleep=no_wait)
        m.register_model("hung", hung)
        m.register_model("ok", lambda p, k: "ok")
        m.set_active_model("hung")
        m.set_fallback_chain(["ok"])
        print(asyncio.run(m.agenerate("p", timeout=0.01)), flush=True)
        print(asyncio.run(m.agenerate("q", timeout=0.01)), flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "ok"]


def test_a_queued_call_runs_when_a_worker_frees_and_keeps_its_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    gate = threading.Event()

    def slow(prompt: str, kwargs: dict[str, Any]) -> str:
        if prompt == "first":
            gate.wait(HANDOFF)
        return f"{prompt}:{var.get()}"

    m = manager(sync_workers=1)
    m.register_model("s", slow)
    m.set_active_model("s")

    async def main() -> list[str]:
        var.set("mine")
        first = asyncio.ensure_future(m.agenerate("first"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(m.agenerate("second"))  # queued: one worker
        await asyncio.sleep(0)
        gate.set()
        return [await first, await second]

    assert asyncio.run(main()) == ["first:mine", "second:mine"]
    assert m.get_model_info("s")["stats"]["successes"] == 2
    add_up(m)


def test_cancelling_a_queued_call_never_runs_it() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def slow(prompt: str, kwargs: dict[str, Any]) -> str:
        ran.append(prompt)
        if prompt == "first":
            gate.wait(HANDOFF)
        return prompt

    m = manager(sync_workers=1)
    m.register_model("s", slow)
    m.set_active_model("s")

    async def main() -> None:
        first = asyncio.ensure_future(m.agenerate("first"))
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(m.agenerate("queued"))
        for _ in range(3):
            await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.set()
        assert await first == "first"
        assert await m.agenerate("third") == "third"

    asyncio.run(main())
    assert ran == ["first", "third"]
    s = m.get_metrics()
    assert (s["successful_requests"], s["cancelled_requests"]) == (2, 1)
    add_up(m)


def test_sync_streams_under_astream_use_the_models_pool() -> None:
    class Streamer:
        def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            return "whole"

        def stream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
            yield threading.current_thread().name
            yield "!"

    m = manager(sync_workers=3)
    m.register_model("s", Streamer())
    m.set_active_model("s")

    async def main() -> list[str]:
        return [c async for c in m.astream("p")]

    chunks = asyncio.run(main())
    assert chunks[0] == "agenticai-sync-s" and chunks[1] == "!"


def test_sync_workers_are_validated() -> None:
    with pytest.raises(ValueError, match="sync_workers"):
        LLMManager(sync_workers=0)
    with pytest.raises(TypeError, match="sync_workers"):
        LLMManager(sync_workers=2.5)  # type: ignore[arg-type]
    m = LLMManager()
    with pytest.raises(ValueError, match=r"metadata\['sync_workers'\]"):
        m.register_model("x", lambda p, k: "x", {"sync_workers": -1})


def test_pool_runs_and_reports_exceptions() -> None:
    pool = SyncPool(2, "t")

    def boom() -> None:
        raise KeyError("inside")

    async def main() -> None:
        assert await pool.run(lambda a, b: a + b, (2, 3), None) == 5
        with pytest.raises(KeyError, match="inside"):
            await pool.run(boom, (), 1.0)
        got = await asyncio.gather(*(pool.run(lambda i=i: i, (), None) for i in range(20)))
        assert got == list(range(20))

    asyncio.run(main())
    assert pool.busy == 0


def test_pool_busy_error_when_no_worker_frees_in_time() -> None:
    gate = threading.Event()
    pool = SyncPool(1, "one")

    async def main() -> None:
        holder = asyncio.ensure_future(pool.run(gate.wait, (HANDOFF,), None))
        await asyncio.sleep(0)
        with pytest.raises(WorkersBusyError):
            await pool.run(lambda: "never", (), 0.01)
        gate.set()
        assert await holder is True
        assert await pool.run(lambda: "next", (), 1.0) == "next"

    asyncio.run(main())


def test_restart_keeps_the_permit_and_moves_the_start() -> None:
    core = BreakerCore(1, 10.0, 1)
    rt = ModelCore(core, ModelStats(), "m")
    token = rt.begin()
    again = rt.restart(token)
    assert again & 3 == token & 3 and again >= token
    rt.success(again)
    with pytest.raises(ValueError):
        rt.restart(0)


# ------------------------------------------------------------------ event loops


def test_a_threads_loop_is_closed_when_the_thread_ends() -> None:
    """Before: each thread that ran an async model through generate() left an event loop
    that was never closed ('unclosed event loop' ResourceWarning when collected)."""

    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        return "a:" + prompt

    m = manager()
    m.register_model("a", model)
    m.set_active_model("a")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        for i in range(4):
            t = threading.Thread(target=m.generate, args=(f"p{i}",))
            t.start()
            t.join(HANDOFF)
        gc.collect()
    assert [w for w in seen if "unclosed event loop" in str(w.message)] == []


# ------------------------------------------------------------------ counts add up


def test_a_clock_that_raises_during_the_lookup_finishes_the_request() -> None:
    """Before: total_requests = 3 with 1 success, 0 failures, 0 cancelled."""
    fail = [False]

    def clock() -> float:
        if fail[0]:
            raise RuntimeError("clock broke")
        return 0.0

    m = LLMManager(cache_ttl=60, clock=clock, sleep=lambda _: None)
    m.register_model("m", lambda p, k: "x")
    m.set_active_model("m")
    assert m.generate("p") == "x"
    fail[0] = True
    for _ in range(2):
        with pytest.raises(RuntimeError, match="clock broke"):
            m.generate("q")
    s = m.get_metrics()
    assert (s["total_requests"], s["successful_requests"], s["failed_requests"]) == (3, 1, 2)
    add_up(m)


def test_agenerate_outside_asyncio_finishes_the_request() -> None:
    """A coroutine driven by something that is not asyncio (trio, a bare send()): there
    is no running asyncio loop. Before: the request stayed counted and never finished."""
    m = manager()
    m.register_model("m", lambda p, k: "x")
    m.set_active_model("m")
    coro = m.agenerate("p")
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        coro.send(None)
    s = m.get_metrics()
    assert (s["total_requests"], s["failed_requests"]) == (1, 1)
    add_up(m)


def test_workers_busy_is_counted_once_and_the_request_fails_cleanly() -> None:
    hung = Hung()
    m = manager(max_retries=3, sync_workers=1)
    m.register_model("hung", hung, {"timeout": 0.01})
    m.set_active_model("hung")

    async def main() -> None:
        try:
            with pytest.raises(AllModelsFailedError):
                await m.agenerate("a", use_cache=False)  # hangs, times out x3... one worker
            assert hung.entered.acquire(timeout=HANDOFF)
            with pytest.raises(AllModelsFailedError) as ei:
                await m.agenerate("b", use_cache=False)
            assert isinstance(ei.value.errors[-1][1], WorkersBusyError)
            add_up(m)
        finally:
            hung.release.set()

    asyncio.run(main())
