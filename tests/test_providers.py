"""The OpenAI and Anthropic adapters, with the official SDK clients talking to a scripted
local server (tests/provider_server.py): what the server saw, the waits (injected), the
fallback, the tokens, and that the API key shows nowhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from provider_server import (
    ProviderServer,
    Step,
    anthropic_error,
    anthropic_ok,
    anthropic_stream,
    openai_error,
    openai_ok,
    openai_stream,
)

from agenticaiframework.llms import (
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    LLMManager,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    RetryableProviderError,
    StreamInterruptedError,
)
from agenticaiframework.llms.providers import anthropic_messages, openai_chat
from agenticaiframework.llms.providers._common import require

SENTINEL = "sk-test-SENTINEL-0123456789abcdef"


@dataclass
class Wire:
    """One provider's wire format and adapter factory."""

    name: str
    path: str
    ok: Callable[..., Step]
    stream: Callable[..., Step]
    error: Callable[..., Step]
    make: Callable[..., Any]


def _openai(srv: ProviderServer, **kw: Any) -> Any:
    return openai_chat("gpt-test", api_key=SENTINEL, base_url=srv.url + "/v1", **kw)


def _anthropic(srv: ProviderServer, **kw: Any) -> Any:
    return anthropic_messages("claude-test", api_key=SENTINEL, base_url=srv.url, **kw)


WIRES = {
    "openai": Wire(
        "openai", "/v1/chat/completions", openai_ok, openai_stream, openai_error, _openai
    ),
    "anthropic": Wire(
        "anthropic", "/v1/messages", anthropic_ok, anthropic_stream, anthropic_error, _anthropic
    ),
}


@pytest.fixture(params=list(WIRES))
def wire(request: Any) -> Wire:
    return WIRES[request.param]


@pytest.fixture
def srv() -> Iterator[ProviderServer]:
    with ProviderServer() as s:
        yield s


@pytest.fixture(autouse=True)
def all_logs(caplog: Any) -> Any:
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx's included
    return caplog


def manager(waits: list[float], **kw: Any) -> LLMManager:
    async def asleep(s: float) -> None:
        waits.append(s)

    kw.setdefault("enable_caching", False)
    return LLMManager(sleep=waits.append, async_sleep=asleep, **kw)


def call(m: LLMManager, asynchronous: bool, prompt: str = "hi", **kw: Any) -> Any:
    if asynchronous:
        return asyncio.run(m.agenerate(prompt, **kw))
    return m.generate(prompt, **kw)


def assert_no_key(*things: Any, caplog: Any) -> None:
    text = " ".join(repr(t) + str(t) for t in things)
    text += " ".join(r.getMessage() for r in caplog.records)
    assert SENTINEL not in text


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_rate_limit_waits_what_the_provider_asked(
    wire: Wire, srv: ProviderServer, asynchronous: bool, all_logs: Any
) -> None:
    srv.script(
        wire.path, wire.error(429, "slow down", headers={"retry-after": "3"}), wire.ok("fine")
    )
    waits: list[float] = []
    m = manager(waits, max_retries=3)
    m.register_model("p", wire.make(srv, asynchronous=asynchronous))
    m.set_active_model("p")
    assert call(m, asynchronous) == "fine"
    assert waits == [3.0]  # backoff said 1 s; the provider asked for 3
    assert len(srv.requests(wire.path)) == 2
    assert_no_key(m.get_metrics(), m.get_model_info("p"), caplog=all_logs)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_server_errors_retry_with_one_request_per_attempt(
    wire: Wire, srv: ProviderServer, asynchronous: bool
) -> None:
    srv.script(wire.path, wire.error(500, "boom"), wire.error(503, "busy"), wire.ok("up"))
    waits: list[float] = []
    m = manager(waits, max_retries=3)
    m.register_model("p", wire.make(srv, asynchronous=asynchronous))
    m.set_active_model("p")
    assert call(m, asynchronous) == "up"
    assert len(srv.requests()) == 3  # the SDK's own retries are off: 3 attempts, 3 requests
    assert waits == [1.0, 2.0]
    assert all(s.headers.get("x-stainless-retry-count", "0") == "0" for s in srv.requests())


def test_authentication_error_is_not_retried_and_falls_back(
    wire: Wire, srv: ProviderServer, all_logs: Any
) -> None:
    srv.script(wire.path, wire.error(401, f"Incorrect API key provided: {SENTINEL}"))
    waits: list[float] = []
    m = manager(waits, max_retries=3)
    m.register_model("p", wire.make(srv))
    m.register_model("backup", lambda p, k: "backup")
    m.set_active_model("p")
    m.set_fallback_chain(["backup"])
    r = m.generate_response("hi")
    assert r.text == "backup" and waits == [] and len(srv.requests()) == 1
    ((name, err),) = r.errors
    assert name == "p" and isinstance(err, AuthenticationError) and err.status == 401
    assert_no_key(err, r, m.get_metrics(), m.get_model_info("p"), caplog=all_logs)
    # the server did get the key: the adapter sent it, nothing else showed it
    seen = srv.requests()[0].headers
    assert SENTINEL in (seen.get("authorization", "") + seen.get("x-api-key", ""))


def test_context_length_is_its_own_error(wire: Wire, srv: ProviderServer) -> None:
    too_long = (
        "This model's maximum context length is 8192 tokens"
        if wire.name == "openai"
        else "prompt is too long: 300000 tokens > 200000 maximum"
    )
    srv.script(wire.path, wire.error(400, too_long))
    m = manager([], max_retries=3)
    m.register_model("p", wire.make(srv))
    m.set_active_model("p")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("hi")
    ((_, err),) = ei.value.errors
    assert isinstance(err, ContextLengthError) and isinstance(err, BadRequestError)
    assert len(srv.requests()) == 1


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_client_errors_are_not_retried(srv: ProviderServer, status: int) -> None:
    srv.script("/v1/chat/completions", openai_error(status, "nope"))
    m = manager([], max_retries=3)
    m.register_model("p", _openai(srv))
    m.set_active_model("p")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("hi")
    assert type(ei.value.errors[0][1]) is BadRequestError
    assert len(srv.requests()) == 1


@pytest.mark.parametrize("status", [408, 409])
def test_timeout_and_conflict_statuses_are_retried(srv: ProviderServer, status: int) -> None:
    srv.script("/v1/chat/completions", openai_error(status, "again"), openai_ok("ok"))
    m = manager([], max_retries=2)
    m.register_model("p", _openai(srv))
    m.set_active_model("p")
    r = m.generate_response("hi")
    assert r.text == "ok" and type(r.errors[0][1]) is RetryableProviderError
    assert len(srv.requests()) == 2


def test_retry_after_beyond_backoff_max_moves_on(srv: ProviderServer) -> None:
    srv.script("/v1/chat/completions", openai_error(429, "later", headers={"retry-after": "600"}))
    waits: list[float] = []
    m = manager(waits, max_retries=3, backoff_max=30)
    m.register_model("p", _openai(srv))
    m.register_model("backup", lambda p, k: "backup")
    m.set_active_model("p")
    m.set_fallback_chain(["backup"])
    r = m.generate_response("hi")
    assert r.text == "backup" and waits == [] and len(srv.requests()) == 1
    assert isinstance(r.errors[0][1], RateLimitError) and r.errors[0][1].retry_after == 600


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_slow_response_times_out_and_is_retried(
    wire: Wire, srv: ProviderServer, asynchronous: bool
) -> None:
    slow = wire.ok("late")
    slow.delay = 1.0
    srv.script(wire.path, slow, wire.ok("quick"))
    m = manager([], max_retries=2)
    m.register_model("p", wire.make(srv, asynchronous=asynchronous, timeout=0.2))
    m.set_active_model("p")
    r = asyncio.run(m.agenerate_response("hi")) if asynchronous else m.generate_response("hi")
    assert r.text == "quick"
    assert isinstance(r.errors[0][1], ProviderTimeoutError)


def test_connection_refused_is_retryable(wire: Wire) -> None:
    with ProviderServer() as dead:
        url = dead.url
    fn = (
        openai_chat("m", api_key=SENTINEL, base_url=url + "/v1", timeout=1)
        if wire.name == "openai"
        else anthropic_messages("m", api_key=SENTINEL, base_url=url, timeout=1)
    )
    with pytest.raises(ProviderConnectionError):
        fn("hi", {})


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_tokens_and_cost_reach_the_metrics(
    wire: Wire, srv: ProviderServer, asynchronous: bool
) -> None:
    srv.script(wire.path, wire.ok("answer", 120, 30))
    m = manager([])
    m.register_model(
        "p",
        wire.make(srv, asynchronous=asynchronous),
        {"cost_per_1k_input_tokens": 1.0, "cost_per_1k_output_tokens": 2.0},
    )
    m.set_active_model("p")
    r = asyncio.run(m.agenerate_response("hi")) if asynchronous else m.generate_response("hi")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.estimated) == (
        120,
        30,
        False,
    )
    stats = m.get_model_info("p")["stats"]
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (120, 30)
    assert stats["cost"] == pytest.approx(0.12 + 0.06)
    assert m.get_metrics()["total_tokens"] == 150


def test_kwargs_reach_the_api_and_messages_can_be_given(wire: Wire, srv: ProviderServer) -> None:
    srv.script(wire.path, wire.ok("ok"))
    fn = wire.make(srv, system_prompt="be brief")
    fn("the prompt", {"temperature": 0.25, "max_tokens": 7})
    body = srv.requests()[0].body
    assert body["temperature"] == 0.25 and body["max_tokens"] == 7
    assert body["messages"][-1] == {"role": "user", "content": "the prompt"}
    if wire.name == "openai":
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
    else:
        assert body["system"] == "be brief"
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    fn("ignored", {"messages": msgs})
    assert srv.requests()[1].body["messages"][-2:] == msgs


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_streams_through_the_manager(wire: Wire, srv: ProviderServer, asynchronous: bool) -> None:
    srv.script(wire.path, wire.error(500, "cold start"), wire.stream(["Hel", "lo", "!"], (9, 3)))
    waits: list[float] = []
    m = manager(waits, max_retries=2, enable_caching=True)
    m.register_model("p", wire.make(srv, asynchronous=asynchronous))
    m.set_active_model("p")

    async def collect() -> list[str]:
        return [c async for c in m.astream("hi")]

    chunks = asyncio.run(collect()) if asynchronous else list(m.stream("hi"))
    assert chunks == ["Hel", "lo", "!"] and waits == [1.0]
    stats = m.get_model_info("p")["stats"]
    assert (stats["prompt_tokens"], stats["completion_tokens"], stats["streams"]) == (9, 3, 1)
    assert m.generate("hi") == "Hello!"  # cached whole when the stream completed
    assert len(srv.requests()) == 2


def test_stream_broken_midway_keeps_the_partial_text(wire: Wire, srv: ProviderServer) -> None:
    srv.script(wire.path, wire.stream(["par", "tial", "never"], break_after=4))
    m = manager([], max_retries=3)
    m.register_model("p", wire.make(srv))
    m.register_model("backup", lambda p, k: "backup")
    m.set_active_model("p")
    m.set_fallback_chain(["backup"])
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as ei:
        for c in m.stream("hi"):
            got.append(c)
    assert got and ei.value.partial == "".join(got)
    assert isinstance(ei.value.__cause__, ProviderConnectionError)
    assert len(srv.requests()) == 1  # no retry after text was seen


def test_missing_sdk_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"agenticaiframework\[openai\]"):
        require("surely_not_an_installed_sdk", "openai")


def test_key_from_env_and_missing_key(monkeypatch: Any, srv: ProviderServer) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        openai_chat("m")
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        anthropic_messages("m")
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    srv.script("/v1/chat/completions", openai_ok("env"))
    fn = openai_chat("m", base_url=srv.url + "/v1")
    assert fn("hi", {}).text == "env"
    assert srv.requests()[0].headers["authorization"] == f"Bearer {SENTINEL}"
    assert SENTINEL not in repr(fn)
    # a local OpenAI-compatible server needs no key at all
    monkeypatch.delenv("OPENAI_API_KEY")
    srv.replace("/v1/chat/completions", openai_ok("local"))
    assert openai_chat("m", base_url=srv.url + "/v1")("hi", {}).text == "local"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_demo_against_an_openai_compatible_endpoint(
    srv: ProviderServer, monkeypatch: Any, asynchronous: bool, all_logs: Any
) -> None:
    import io

    from agenticaiframework.llms.__main__ import main

    srv.script("/v1/chat/completions", openai_error(503, "warming up"), openai_ok("real answer"))
    monkeypatch.setenv("OPENAI_MODEL", "served-model")
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/v1")
    out = io.StringIO()
    argv = ["demo", "--openai", "--requests", "6"] + (["--async"] if asynchronous else [])
    assert main(argv, out=out) == 0
    text = out.getvalue()
    assert "served-model" in text and SENTINEL not in text
    bodies = [s.body for s in srv.requests()]
    assert bodies and all(b["model"] == "served-model" for b in bodies)
    assert_no_key(caplog=all_logs)


def test_demo_openai_switch_needs_a_model(monkeypatch: Any) -> None:
    from agenticaiframework.llms.__main__ import main

    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(SystemExit, match="OPENAI_MODEL"):
        main(["demo", "--openai"])
