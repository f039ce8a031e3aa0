"""The OpenAI and Anthropic adapters, with the official SDK clients talking to a scripted
local server (tests/provider_server.py): what the server saw, the waits (injected), the
fallback, the tokens, and that the API key shows nowhere."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import traceback
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
    Usage,
    _secrets,
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


SDK_LOGGERS = ("openai", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2")


@pytest.fixture(autouse=True)
def all_logs(caplog: Any) -> Any:
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx's included
    for name in SDK_LOGGERS:  # in case one was given a level of its own (OPENAI_LOG=...)
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture(autouse=True)
def offline(monkeypatch: Any) -> None:
    """Nothing may leave the machine: no proxy between the SDKs and 127.0.0.1, no base
    URL from the developer's environment."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def manager(waits: list[float], **kw: Any) -> LLMManager:
    async def asleep(s: float) -> None:
        waits.append(s)

    kw.setdefault("enable_caching", False)
    return LLMManager(sleep=waits.append, async_sleep=asleep, **kw)


def call(m: LLMManager, asynchronous: bool, prompt: str = "hi", **kw: Any) -> Any:
    if asynchronous:
        return asyncio.run(m.agenerate(prompt, **kw))
    return m.generate(prompt, **kw)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]
        todo += [x for _, x in getattr(e, "errors", ()) if isinstance(x, BaseException)]


def assert_no_key(*things: Any, caplog: Any) -> None:
    """Nowhere: str/repr of each thing (and of every exception it chains to, with the
    formatted traceback), nor any log record, message or formatted text (exc_info too)."""
    parts = [repr(t) + str(t) for t in things]
    for t in things:
        if isinstance(t, BaseException):
            parts += [repr(e) + str(e) for e in _chain(t)]
            parts.append("".join(traceback.format_exception(t)))
    parts += [r.getMessage() + repr(r.args) for r in caplog.records]
    parts.append(caplog.text)
    assert SENTINEL not in " ".join(parts)


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


def test_missing_sdk_names_the_extra(monkeypatch: Any) -> None:
    with pytest.raises(ImportError, match=r"agenticaiframework\[openai\]"):
        require("surely_not_an_installed_sdk", "openai")
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai -> ImportError
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ImportError, match=r"pip install 'agenticaiframework\[openai\]'"):
        openai_chat("m", api_key=SENTINEL)
    with pytest.raises(ImportError, match=r"pip install 'agenticaiframework\[anthropic\]'"):
        anthropic_messages("m", api_key=SENTINEL)


def test_the_providers_package_imports_no_sdk() -> None:
    code = (
        "import sys, agenticaiframework.llms.providers as p; "
        "assert p.openai_chat and p.anthropic_messages; "
        "assert not {'openai', 'anthropic', 'httpx', 'httpx2'} & set(sys.modules), "
        "sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


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
    argv = ["demo", "--openai", "--requests", "6", "--time-scale", "0.001"]
    argv += ["--async"] if asynchronous else []
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


# ------------------------------------------------------------------ more of the mapping


def test_context_length_by_openai_code_alone(srv: ProviderServer) -> None:
    srv.script(
        "/v1/chat/completions", openai_error(400, "Input is too big.", "context_length_exceeded")
    )
    with pytest.raises(ContextLengthError) as ei:
        _openai(srv)("hi", {})
    assert ei.value.status == 400 and "Input is too big." in str(ei.value)


def test_anthropic_context_limit_wording(srv: ProviderServer) -> None:
    msg = "input length and `max_tokens` exceed context limit: 197337 + 8192 > 200000"
    srv.script("/v1/messages", anthropic_error(400, msg))
    with pytest.raises(ContextLengthError):
        _anthropic(srv)("hi", {})


def test_forbidden_is_an_authentication_error(wire: Wire, srv: ProviderServer) -> None:
    srv.script(
        wire.path,
        wire.error(403, "not allowed"),
    )
    with pytest.raises(AuthenticationError) as ei:
        wire.make(srv)("hi", {})
    assert ei.value.status == 403 and ei.value.provider == wire.name


def test_overloaded_529_is_retried(srv: ProviderServer) -> None:
    srv.script(
        "/v1/messages",
        anthropic_error(529, "Overloaded", "overloaded_error", headers={"retry-after": "2"}),
        anthropic_ok("ok"),
    )
    waits: list[float] = []
    m = manager(waits, max_retries=2)
    m.register_model("p", _anthropic(srv))
    m.set_active_model("p")
    r = m.generate_response("hi")
    assert r.text == "ok" and waits == [2.0] and len(srv.requests()) == 2
    err = r.errors[0][1]
    assert type(err) is RetryableProviderError and err.status == 529


def test_retry_after_ms_is_read(srv: ProviderServer) -> None:
    srv.script(
        "/v1/chat/completions",
        openai_error(429, "slow down", headers={"retry-after-ms": "1500", "retry-after": "9"}),
        openai_ok("ok"),
    )
    waits: list[float] = []
    m = manager(waits, max_retries=2)
    m.register_model("p", _openai(srv))
    m.set_active_model("p")
    assert m.generate("hi") == "ok" and waits == [1.5]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_translated_errors_hold_no_sdk_exception(
    wire: Wire, srv: ProviderServer, asynchronous: bool, all_logs: Any
) -> None:
    """The SDK's exception keeps the request (its headers carry the key): the translated
    error neither chains to it nor keeps it as context."""
    srv.script(wire.path, wire.error(401, "bad key"))
    fn = wire.make(srv, asynchronous=asynchronous)
    with pytest.raises(AuthenticationError) as ei:
        if asynchronous:
            asyncio.run(fn("hi", {}))
        else:
            fn("hi", {})
    err = ei.value
    assert err.__cause__ is None and err.__context__ is None
    assert "bad key" in str(err) and f"{wire.name} HTTP 401" in str(err)
    assert_no_key(err, fn, caplog=all_logs)
    # the check above saw the SDKs' own DEBUG records: it was not vacuous
    assert any(r.name.split(".")[0] in SDK_LOGGERS for r in all_logs.records)


# ------------------------------------------------------------------ the adapters' streams


def _collect(it: Any) -> list[Any]:
    if hasattr(it, "__aiter__"):

        async def go() -> list[Any]:
            return [x async for x in it]

        return asyncio.run(go())
    return list(it)


def _stream_of(fn: Any, prompt: str = "hi", kwargs: dict[str, Any] | None = None) -> Any:
    opener = getattr(fn, "astream", None) or fn.stream
    return opener(prompt, kwargs or {})


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_adapter_stream_yields_chunks_then_usage(
    wire: Wire, srv: ProviderServer, asynchronous: bool
) -> None:
    srv.script(wire.path, wire.stream(["Hel", "lo", "!"], (9, 3)))
    fn = wire.make(srv, asynchronous=asynchronous)
    assert hasattr(fn, "astream" if asynchronous else "stream")
    items = _collect(_stream_of(fn, "hi", {"temperature": 0.5}))
    assert items == ["Hel", "lo", "!", Usage(9, 3)]
    body = srv.requests()[0].body
    assert body["stream"] is True and body["temperature"] == 0.5
    if wire.name == "openai":
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_adapter_stream_broken_midway_raises_a_translated_error(
    wire: Wire, srv: ProviderServer, asynchronous: bool, all_logs: Any
) -> None:
    srv.script(wire.path, wire.stream(["par", "tial", "never"], break_after=4))
    fn = wire.make(srv, asynchronous=asynchronous)
    got: list[Any] = []

    async def adrain() -> None:
        async for x in fn.astream("hi", {}):
            got.append(x)

    with pytest.raises(ProviderConnectionError) as ei:
        if asynchronous:
            asyncio.run(adrain())
        else:
            for x in fn.stream("hi", {}):
                got.append(x)
    assert got and all(isinstance(x, str) for x in got)
    assert ei.value.__context__ is None and ei.value.__cause__ is None
    assert_no_key(ei.value, caplog=all_logs)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_in_band_stream_errors_are_classified_by_type(
    wire: Wire, srv: ProviderServer, asynchronous: bool
) -> None:
    """An error event inside a 200 stream: overloaded/server errors are retryable (status
    None), an invalid request is not."""
    kind = "overloaded_error" if wire.name == "anthropic" else "server_error"
    srv.script(
        wire.path,
        wire.stream(["x"], fail=(kind, "try later")),
        wire.stream([], fail=("invalid_request_error", "bad field")),
    )
    fn = wire.make(srv, asynchronous=asynchronous)
    with pytest.raises(RetryableProviderError) as ei:
        _collect(_stream_of(fn))
    assert ei.value.status is None and "try later" in str(ei.value)
    with pytest.raises(BadRequestError, match="bad field"):
        _collect(_stream_of(fn))


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_in_band_error_before_the_first_chunk_is_retried_by_the_manager(
    wire: Wire, srv: ProviderServer, asynchronous: bool
) -> None:
    kind = "overloaded_error" if wire.name == "anthropic" else "server_error"
    srv.script(wire.path, wire.stream([], fail=(kind, "busy")), wire.stream(["a", "b"]))
    waits: list[float] = []
    m = manager(waits, max_retries=2)
    m.register_model("p", wire.make(srv, asynchronous=asynchronous))
    m.set_active_model("p")
    chunks = _collect(m.astream("hi") if asynchronous else m.stream("hi"))
    assert chunks == ["a", "b"] and waits == [1.0] and len(srv.requests()) == 2


def test_async_stream_broken_midway_through_the_manager(wire: Wire, srv: ProviderServer) -> None:
    srv.script(wire.path, wire.stream(["par", "tial", "never"], break_after=4))
    m = manager([], max_retries=3)
    m.register_model("p", wire.make(srv, asynchronous=True))
    m.set_active_model("p")
    got: list[str] = []

    async def drain() -> None:
        async for c in m.astream("hi"):
            got.append(c)

    with pytest.raises(StreamInterruptedError) as ei:
        asyncio.run(drain())
    assert got and ei.value.partial == "".join(got)
    assert isinstance(ei.value.__cause__, ProviderConnectionError)
    assert len(srv.requests()) == 1


def test_closing_a_stream_early_closes_the_response(wire: Wire, srv: ProviderServer) -> None:
    """A consumer that stops reading (the manager closes the iterator) frees the HTTP
    response at once, not when the garbage collector gets to it."""
    srv.script(wire.path, wire.stream(["a", "b", "c"]))
    opened: list[Any] = []
    base = wire.make(srv)
    client = base._client
    resource = client.chat.completions if wire.name == "openai" else client.messages
    real = resource.create

    def spy(**kw: Any) -> Any:
        s = real(**kw)
        opened.append(s)
        return s

    resource.create = spy
    fn = (openai_chat if wire.name == "openai" else anthropic_messages)("m", client=client)
    it = fn.stream("hi", {})
    assert next(it) == "a"
    assert not opened[0].response.is_closed
    it.close()
    assert opened[0].response.is_closed


# ------------------------------------------------------------------ keys


def test_placeholder_key_for_keyless_local_servers_is_not_a_secret(
    monkeypatch: Any, srv: ProviderServer
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_chat("m", base_url=srv.url + "/v1")
    assert _secrets.redact_text("an unused variable") == "an unused variable"


def test_key_never_in_metrics_info_or_cache(wire: Wire, srv: ProviderServer, all_logs: Any) -> None:
    srv.script(wire.path, wire.ok("cached answer"))
    m = manager([], enable_caching=True)
    fn = wire.make(srv)
    m.register_model("p", fn, {"cost_per_1k_tokens": 0.5, "provider": wire.name})
    m.set_active_model("p")
    assert m.generate("hi", temperature=0.1) == "cached answer"
    assert m.generate("hi", temperature=0.1) == "cached answer"  # a hit
    assert len(srv.requests()) == 1
    assert m.get_metrics()["cache_hits"] == 1
    assert_no_key(fn, m, m.get_metrics(), m.get_model_info("p"), caplog=all_logs)


# ------------------------------------------------------------------ the demo, as a user runs it


def test_demo_subprocess_against_the_local_server(srv: ProviderServer) -> None:
    srv.script("/v1/chat/completions", openai_ok("real answer"))
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper() and "OPENAI" not in k}
    env.update(
        OPENAI_MODEL="served-model",
        OPENAI_API_KEY=SENTINEL,
        OPENAI_BASE_URL=srv.url + "/v1",
        NO_PROXY="127.0.0.1,localhost",
    )
    cmd = [sys.executable, "-m", "agenticaiframework.llms", "demo", "--openai", "--requests", "3"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "served-model" in p.stdout and "successful_requests  3" in p.stdout
    assert SENTINEL not in p.stdout + p.stderr
    # one request per distinct prompt (repeats are cache hits)
    distinct = int(p.stdout.split(" prompts (")[1].split(" distinct")[0])
    assert len(srv.requests()) == distinct
    assert all(s.headers["authorization"] == f"Bearer {SENTINEL}" for s in srv.requests())


def test_demo_openai_without_key_or_base_url_says_so(monkeypatch: Any) -> None:
    from agenticaiframework.llms.__main__ import main

    monkeypatch.setenv("OPENAI_MODEL", "m")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="OPENAI_API_KEY"):
        main(["demo", "--openai"])
