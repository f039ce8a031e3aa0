"""manager.stream() / astream(): chunks, retries before the first chunk only, caching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agenticaiframework.llms import (
    AllModelsFailedError,
    InvalidResponseError,
    LLMManager,
    StreamInterruptedError,
    Usage,
)


class Streamer:
    """An inference function with ``stream``/``astream``; each call plays the next script.

    A script is a list of items: str chunks, Usage, or an exception to raise there.
    """

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts = list(scripts)
        self.calls = 0
        self.closed = 0

    def _next(self) -> list[Any]:
        self.calls += 1
        return self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        out = []
        for item in self._next():
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, str):
                out.append(item)
        return "".join(out)

    def stream(self, prompt: str, kwargs: dict[str, Any]) -> Iterator[Any]:
        script = self._next()
        try:
            for item in script:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed += 1


class AsyncStreamer(Streamer):
    async def astream(self, prompt: str, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        script = self._next()
        try:
            for item in script:
                await asyncio.sleep(0)
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed += 1


def make(**kw: Any) -> tuple[LLMManager, list[float]]:
    waits: list[float] = []

    async def asleep(s: float) -> None:
        waits.append(s)

    kw.setdefault("sleep", waits.append)
    kw.setdefault("async_sleep", asleep)
    return LLMManager(**kw), waits


def test_chunks_in_order_usage_and_cache() -> None:
    m, _ = make()
    s = Streamer(["Hel", "", Usage(5, 7), "lo", " world"])
    m.register_model("a", s)
    m.set_active_model("a")
    assert list(m.stream("p", temperature=0.1)) == ["Hel", "lo", " world"]
    info = m.get_model_info("a")["stats"]
    assert (info["prompt_tokens"], info["completion_tokens"]) == (5, 7)
    assert info["streams"] == 1
    assert info["p50_time_to_first_chunk"] >= 0.0
    assert s.closed == 1
    # the whole text is cached: generate and stream both hit it
    assert m.generate("p", temperature=0.1) == "Hello world"
    assert list(m.stream("p", temperature=0.1)) == ["Hello world"]
    assert s.calls == 1
    met = m.get_metrics()
    assert (met["total_requests"], met["successful_requests"], met["cache_hits"]) == (3, 3, 2)
    assert met["total_tokens"] == 12


def test_nothing_happens_until_iterated() -> None:
    m, _ = make()
    s = Streamer(["x"])
    m.register_model("a", s)
    m.set_active_model("a")
    it = m.stream("p")
    assert s.calls == 0 and m.get_metrics()["total_requests"] == 0
    assert next(it) == "x"
    with pytest.raises(TypeError, match="prompt"):
        m.stream(42)  # type: ignore[arg-type]


def test_retry_and_fallback_before_first_chunk() -> None:
    m, waits = make(max_retries=2)
    a = Streamer([ConnectionError("down")])
    b = Streamer([TimeoutError("slow")], ["B1", "B2"])
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert list(m.stream("p")) == ["B1", "B2"]
    assert (a.calls, b.calls, waits) == (2, 2, [1.0, 1.0])
    met = m.get_metrics()
    assert (met["successful_requests"], met["total_retries"], met["fallbacks"]) == (1, 2, 1)


def test_failure_after_first_chunk_is_not_retried_and_keeps_partial() -> None:
    m, waits = make(max_retries=3)
    a = Streamer(["par", "tial", ConnectionError("reset")], ["never"])
    b = Streamer(["B"])
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as ei:
        for chunk in m.stream("p"):
            seen.append(chunk)
    assert seen == ["par", "tial"]
    assert ei.value.partial == "partial" and ei.value.model == "a"
    assert isinstance(ei.value.__cause__, ConnectionError)
    assert (a.calls, b.calls, waits) == (1, 0, [])
    met = m.get_metrics()
    assert (met["total_requests"], met["failed_requests"], met["cache_size"]) == (1, 1, 0)
    assert m.get_model_info("a")["failure_count"] == 1


def test_consumer_stopping_early_cancels_and_caches_nothing() -> None:
    m, _ = make()
    s = Streamer(["a", "b", "c"])
    m.register_model("a", s)
    m.set_active_model("a")
    it = m.stream("p")
    assert next(it) == "a"
    it.close()  # type: ignore[attr-defined]
    assert s.closed == 1
    met = m.get_metrics()
    assert (met["cancelled_requests"], met["cache_size"]) == (1, 0)
    assert m.get_model_info("a")["stats"]["cancelled"] == 1


def test_all_fail_before_first_chunk() -> None:
    m, _ = make(max_retries=1)
    m.register_model("a", Streamer([ValueError("x")]))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        list(m.stream("p"))
    assert m.get_metrics()["failed_requests"] == 1


def test_plain_model_streams_one_chunk_and_bad_items_are_rejected() -> None:
    m, _ = make(max_retries=1)
    m.register_model("plain", lambda p, k: "whole")
    m.set_active_model("plain")
    assert list(m.stream("p")) == ["whole"]
    bad = Streamer([42])
    m.register_model("bad", bad)
    m.set_active_model("bad")
    with pytest.raises(AllModelsFailedError) as ei:
        list(m.stream("q"))
    assert isinstance(ei.value.errors[0][1], InvalidResponseError)


def test_empty_stream_is_a_failed_attempt_unless_it_ended_normally() -> None:
    """Issue 12: a stream that yields no text is not an answer (the next model is tried,
    nothing is cached) unless its last Usage says it ended normally."""
    m, _ = make()
    m.register_model("a", Streamer([Usage(1, 0)]))
    m.register_model("b", Streamer([Usage(1, 0, finish_reason="stop")]))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        list(m.stream("p"))
    assert isinstance(ei.value.errors[0][1], InvalidResponseError)
    assert "streamed no text" in str(ei.value.errors[0][1])
    assert len(m._cache or ()) == 0
    m.set_active_model("b")
    assert list(m.stream("p")) == []
    assert m.generate("p") == ""  # meant, so cached


def test_astream_async_model() -> None:
    async def main() -> None:
        m, waits = make(max_retries=2)
        s = AsyncStreamer([RuntimeError("x")], ["x", Usage(2, 3), "y"])
        m.register_model("a", s)
        m.set_active_model("a")
        got = [c async for c in m.astream("p")]
        assert got == ["x", "y"] and waits == [1.0]
        assert [c async for c in m.astream("p")] == ["xy"]
        assert m.get_model_info("a")["stats"]["completion_tokens"] == 3

        broken = AsyncStreamer(["a", ValueError("mid")])
        m.register_model("b", broken)
        m.set_active_model("b")
        with pytest.raises(StreamInterruptedError) as ei:
            async for _ in m.astream("q"):
                pass
        assert ei.value.partial == "a"

    asyncio.run(main())


def test_astream_drives_a_sync_stream_in_a_thread_and_times_out_first_chunk() -> None:
    async def main() -> None:
        m, _ = make(max_retries=1)
        m.register_model("a", Streamer(["s1", "s2"]))
        m.set_active_model("a")
        assert [c async for c in m.astream("p")] == ["s1", "s2"]

        class Hangs:
            def __call__(self, p: str, k: dict[str, Any]) -> str:
                return "unused"

            async def astream(self, p: str, k: dict[str, Any]) -> AsyncIterator[str]:
                await asyncio.Event().wait()
                yield "never"

        m.register_model("h", Hangs())
        m.register_model("ok", lambda p, k: "fallback")
        m.set_active_model("h")
        m.set_fallback_chain(["ok"])
        assert [c async for c in m.astream("q", timeout=0.01)] == ["fallback"]
        assert m.get_model_info("h")["stats"]["failures"] == 1

    asyncio.run(main())


def test_astream_consumer_breaks_early() -> None:
    async def main() -> None:
        m, _ = make()
        s = AsyncStreamer(["a", "b", "c"])
        m.register_model("a", s)
        m.set_active_model("a")
        agen = m.astream("p")
        async for _ in agen:
            break
        await agen.aclose()  # type: ignore[attr-defined]
        assert s.closed == 1
        assert m.get_metrics()["cancelled_requests"] == 1

    asyncio.run(main())
