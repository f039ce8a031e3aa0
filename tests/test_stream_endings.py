"""How a provider's stream ends (issue 12), through the official SDK clients against the
scripted local server: the connection closed cleanly after N events, a complete HTTP body
that leaves the final event out, or the final event present. Neither SDK complains about
the first two; the adapters must, so a cut stream is never a success and never cached.
Also: empty answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from provider_server import (
    ProviderServer,
    Step,
    anthropic_ok,
    anthropic_stream,
    openai_ok,
    openai_stream,
)

from agenticaiframework.llms import (
    AllModelsFailedError,
    InvalidResponseError,
    LLMManager,
    LLMResponse,
    ProviderConnectionError,
    StreamInterruptedError,
    Usage,
)
from agenticaiframework.llms.providers import anthropic_messages, openai_chat

KEY = "sk-test-endings-0123456789abcdef"
OPENAI, ANTHROPIC = "/v1/chat/completions", "/v1/messages"


@pytest.fixture
def srv() -> Iterator[ProviderServer]:
    with ProviderServer() as s:
        yield s


@pytest.fixture(autouse=True)
def offline(monkeypatch: Any) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def adapter(wire: str, srv: ProviderServer, asynchronous: bool) -> Any:
    if wire == "openai":
        return openai_chat(
            "gpt-test", api_key=KEY, base_url=srv.url + "/v1", asynchronous=asynchronous
        )
    return anthropic_messages(
        "claude-test", api_key=KEY, base_url=srv.url, asynchronous=asynchronous
    )


def path(wire: str) -> str:
    return OPENAI if wire == "openai" else ANTHROPIC


def stream_step(wire: str, chunks: list[str], **kw: Any) -> Step:
    return (openai_stream if wire == "openai" else anthropic_stream)(chunks, (9, 3), **kw)


def text_events(wire: str, n: int) -> int:
    """How many events come before and with the n-th text chunk."""
    return (1 if wire == "openai" else 2) + n


def cut(wire: str, chunks: list[str], after_chunks: int, how: str) -> Step:
    return stream_step(wire, chunks, **{how: text_events(wire, after_chunks)})


async def _no_wait(_: float) -> None:
    return None


def manager(waits: list[float], **kw: Any) -> LLMManager:
    async def asleep(s: float) -> None:
        waits.append(s)

    return LLMManager(sleep=waits.append, async_sleep=asleep, **kw)


def drain(m: LLMManager, asynchronous: bool, got: list[str], prompt: str = "hi") -> None:
    async def adrain() -> None:
        async for c in m.astream(prompt):
            got.append(c)

    if asynchronous:
        asyncio.run(adrain())
    else:
        for c in m.stream(prompt):
            got.append(c)


def items_of(fn: Any, asynchronous: bool) -> list[Any]:
    async def collect() -> list[Any]:
        return [x async for x in fn.astream("hi", {})]

    got: list[Any] = []
    if asynchronous:
        return asyncio.run(collect())
    for x in fn.stream("hi", {}):
        got.append(x)
    return got


WIRES = ["openai", "anthropic"]
ENDINGS = ["end_after", "close_after"]  # complete body without the last events; clean close
MODES = [False, True]


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
@pytest.mark.parametrize("how", ENDINGS)
@pytest.mark.parametrize("wire", WIRES)
def test_adapter_stream_without_its_final_event_is_a_connection_error(
    wire: str, how: str, asynchronous: bool, srv: ProviderServer
) -> None:
    srv.script(path(wire), cut(wire, ["par", "tial"], 2, how))
    fn = adapter(wire, srv, asynchronous)
    got: list[Any] = []

    async def adrain() -> None:
        async for x in fn.astream("hi", {}):
            got.append(x)

    with pytest.raises(ProviderConnectionError, match="cut short") as ei:
        if asynchronous:
            asyncio.run(adrain())
        else:
            for x in fn.stream("hi", {}):
                got.append(x)
    assert got == ["par", "tial"]  # the text, and no Usage: the stream never finished
    assert ei.value.__context__ is None


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
@pytest.mark.parametrize("wire", WIRES)
def test_adapter_stream_with_its_final_event_ends_with_usage(
    wire: str, asynchronous: bool, srv: ProviderServer
) -> None:
    srv.script(path(wire), stream_step(wire, ["a", "b"]))
    items = items_of(adapter(wire, srv, asynchronous), asynchronous)
    assert items == ["a", "b", Usage(9, 3)]
    assert items[-1].finish_reason == ("stop" if wire == "openai" else "end_turn")


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
def test_openai_finish_without_the_usage_chunk_is_whole(
    asynchronous: bool, srv: ProviderServer
) -> None:
    """The finish_reason came; only the trailing usage chunk is missing: the text is whole,
    the counts are estimated."""
    srv.script(OPENAI, stream_step("openai", ["a", "b"], end_after=text_events("openai", 2) + 1))
    items = items_of(adapter("openai", srv, asynchronous), asynchronous)
    assert items[:2] == ["a", "b"]
    assert items[2].estimated and items[2].finish_reason == "stop"


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
def test_anthropic_message_delta_without_message_stop_is_cut(
    asynchronous: bool, srv: ProviderServer
) -> None:
    events = len(anthropic_stream(["a"]).events or [])
    srv.script(ANTHROPIC, stream_step("anthropic", ["a"], end_after=events - 1))
    with pytest.raises(ProviderConnectionError, match="message_stop"):
        items_of(adapter("anthropic", srv, asynchronous), asynchronous)


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
@pytest.mark.parametrize("how", ENDINGS)
@pytest.mark.parametrize("wire", WIRES)
def test_cut_after_the_first_chunk_is_interrupted_and_never_cached(
    wire: str, how: str, asynchronous: bool, srv: ProviderServer
) -> None:
    srv.script(path(wire), cut(wire, ["par", "tial", "lost"], 2, how), stream_step(wire, ["ok"]))
    waits: list[float] = []
    m = manager(waits, max_retries=3)
    m.register_model("p", adapter(wire, srv, asynchronous))
    m.set_active_model("p")
    got: list[str] = []
    after: list[str] = []

    async def both() -> None:  # one loop: the async client's connections stay usable
        with pytest.raises(StreamInterruptedError) as ei:
            async for c in m.astream("hi"):
                got.append(c)
        check(ei.value)
        after.append("".join([c async for c in m.astream("hi")]))

    def check(err: StreamInterruptedError) -> None:
        assert got == ["par", "tial"] and err.partial == "partial"
        assert isinstance(err.__cause__, ProviderConnectionError)
        assert len(srv.requests()) == 1 and waits == []  # no retry once text was seen
        s = m.get_metrics()
        assert (s["successful_requests"], s["failed_requests"], s["cache_size"]) == (0, 1, 0)

    if asynchronous:
        asyncio.run(both())
    else:
        with pytest.raises(StreamInterruptedError) as ei:
            for c in m.stream("hi"):
                got.append(c)
        check(ei.value)
        after.append("".join(m.stream("hi")))
    # Nothing partial was cached: the next request went to the provider.
    assert after == ["ok"] and len(srv.requests()) == 2


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
@pytest.mark.parametrize("how", ENDINGS)
@pytest.mark.parametrize("wire", WIRES)
def test_cut_before_the_first_chunk_is_retried(
    wire: str, how: str, asynchronous: bool, srv: ProviderServer
) -> None:
    srv.script(path(wire), cut(wire, ["never"], 0, how), stream_step(wire, ["He", "llo"]))
    waits: list[float] = []
    m = manager(waits, max_retries=2)
    m.register_model("p", adapter(wire, srv, asynchronous))
    m.set_active_model("p")
    got: list[str] = []
    drain(m, asynchronous, got)
    assert got == ["He", "llo"] and waits == [1.0] and len(srv.requests()) == 2
    stats = m.get_model_info("p")["stats"]
    assert (stats["failures"], stats["successes"]) == (1, 1)
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (9, 3)  # reported, whole
    assert m.generate("hi") == "Hello"  # the whole answer was cached
    assert len(srv.requests()) == 2


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
@pytest.mark.parametrize("how", ENDINGS)
@pytest.mark.parametrize("wire", WIRES)
def test_cut_before_the_first_chunk_falls_back(
    wire: str, how: str, asynchronous: bool, srv: ProviderServer
) -> None:
    srv.script(path(wire), cut(wire, ["never"], 0, how))
    m = manager([], max_retries=1)
    m.register_model("p", adapter(wire, srv, asynchronous))
    m.register_model("backup", lambda p, k: "backup answer")
    m.set_active_model("p")
    m.set_fallback_chain(["backup"])
    got: list[str] = []
    drain(m, asynchronous, got)
    assert got == ["backup answer"]
    assert m.get_metrics()["fallbacks"] == 1


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
@pytest.mark.parametrize("how", ENDINGS)
@pytest.mark.parametrize("wire", WIRES)
def test_generate_over_a_streaming_call(
    wire: str, how: str, asynchronous: bool, srv: ProviderServer
) -> None:
    """``generate(..., stream=True)``: the adapter reads the whole stream; a cut one is a
    retryable connection error, never a short answer."""
    srv.script(path(wire), cut(wire, ["cut"], 1, how), stream_step(wire, ["who", "le"]))
    waits: list[float] = []
    m = manager(waits, max_retries=2)
    m.register_model("p", adapter(wire, srv, asynchronous))
    m.set_active_model("p")
    if asynchronous:
        text = asyncio.run(m.agenerate("hi", stream=True))
    else:
        text = m.generate("hi", stream=True)
    assert text == "whole" and waits == [1.0] and len(srv.requests()) == 2
    assert all(r.body["stream"] is True for r in srv.requests())
    stats = m.get_model_info("p")["stats"]
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (9, 3)
    assert m.generate("hi", stream=True) == "whole"  # cached whole
    assert len(srv.requests()) == 2


# ------------------------------------------------------------------- empty answers


def test_empty_str_is_a_failed_attempt_and_never_cached() -> None:
    calls: list[str] = []

    def empty(p: str, k: dict[str, Any]) -> str:
        calls.append(p)
        return ""

    m = manager([], max_retries=3)
    m.register_model("e", empty)
    m.register_model("b", lambda p, k: "backup")
    m.set_active_model("e")
    m.set_fallback_chain(["b"])
    assert m.generate("q") == "backup"
    assert calls == ["q"]  # InvalidResponseError is not retried on the same model
    r = m.generate_response("q2")
    assert r.model == "b" and isinstance(r.errors[0][1], InvalidResponseError)
    assert "returned no text" in str(r.errors[0][1])
    assert m.get_model_info("e")["stats"]["failures"] == 2


def test_empty_answers_through_agenerate() -> None:
    async def empty(p: str, k: dict[str, Any]) -> str:
        return ""

    m = manager([])
    m.register_model("e", empty)
    m.set_active_model("e")
    with pytest.raises(AllModelsFailedError) as ei:
        asyncio.run(m.agenerate("q"))
    assert isinstance(ei.value.errors[0][1], InvalidResponseError)
    assert m.get_metrics()["cache_size"] == 0


@pytest.mark.parametrize("reason", ["stop", "end_turn", "stop_sequence"])
def test_empty_with_a_normal_finish_is_meant(reason: str) -> None:
    m = manager([])
    m.register_model("e", lambda p, k: LLMResponse("", finish_reason=reason))
    m.set_active_model("e")
    assert m.generate("q") == ""
    assert m.generate_response("q").cached  # a real answer, so cached


@pytest.mark.parametrize("reason", [None, "length", "content_filter", "tool_calls"])
def test_empty_with_another_ending_is_invalid(reason: str | None) -> None:
    m = manager([])
    m.register_model("e", lambda p, k: LLMResponse("", finish_reason=reason))
    m.set_active_model("e")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("q")
    err = ei.value.errors[0][1]
    assert isinstance(err, InvalidResponseError)
    assert reason is None or repr(reason) in str(err)


def test_allow_empty_restores_empty_answers() -> None:
    m = manager([], allow_empty=True)
    m.register_model("e", lambda p, k: "")
    m.set_active_model("e")
    assert m.generate("q") == "" and m.generate_response("q").cached
    with pytest.raises(TypeError, match="allow_empty"):
        LLMManager(allow_empty=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("asynchronous", MODES, ids=["sync", "async"])
@pytest.mark.parametrize("wire", WIRES)
def test_provider_empty_answers(wire: str, asynchronous: bool, srv: ProviderServer) -> None:
    """A JSON answer with no text and a 'length' ending falls back; a stream with no text
    that ended normally is the model's empty answer."""
    if wire == "openai":
        empty_cut = openai_ok("")
        empty_cut.body["choices"][0]["finish_reason"] = "length"
    else:
        empty_cut = anthropic_ok("")
        empty_cut.body["stop_reason"] = "max_tokens"
    srv.script(path(wire), empty_cut, stream_step(wire, []))
    m = manager([], enable_caching=False)
    m.register_model("p", adapter(wire, srv, asynchronous))
    m.register_model("b", lambda p, k: "backup")
    m.set_active_model("p")
    m.set_fallback_chain(["b"])
    call = m.agenerate_response("hi") if asynchronous else None
    r = asyncio.run(call) if call is not None else m.generate_response("hi")
    assert r.model == "b" and isinstance(r.errors[0][1], InvalidResponseError)
    got: list[str] = []
    drain(m, asynchronous, got)
    assert got == [] and m.get_model_info("p")["stats"]["successes"] == 1
