"""OpenTelemetry (llms/otel.py) against the real SDK: the in-memory span exporter and metric
reader; names, attributes, parentage and counts for each way a request can go."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
from opentelemetry.trace import SpanKind, StatusCode

from agenticaiframework.llms import LLMManager, LLMResponse
from agenticaiframework.llms.otel import (
    CAPTURE_ENV,
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    Instrumentation,
    instrument,
)


class Otel:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tp = TracerProvider()
        self.tp.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.mp = MeterProvider(metric_readers=[self.reader])
        self.user = self.tp.get_tracer("user-app")

    def instrument(self, m: LLMManager, **kw: Any) -> Instrumentation:
        return instrument(m, tracer_provider=self.tp, meter_provider=self.mp, **kw)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def requests(self) -> list[ReadableSpan]:
        return [s for s in self.ours() if s.kind is SpanKind.INTERNAL]

    def ours(self) -> list[ReadableSpan]:
        scope = "agenticaiframework.llms"
        return [
            s
            for s in self.spans()
            if s.instrumentation_scope and s.instrumentation_scope.name == scope
        ]

    def attempts(self, request: ReadableSpan | None = None) -> list[ReadableSpan]:
        out = [s for s in self.spans() if s.kind is SpanKind.CLIENT]
        if request is not None:
            out = [s for s in out if s.parent and s.parent.span_id == request.context.span_id]
        return sorted(out, key=lambda s: s.start_time or 0)

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture
def otel(caplog: pytest.LogCaptureFixture) -> Iterator[Otel]:
    o = Otel()
    yield o
    # An attach and detach that did not pair up is logged by the API ("Failed to detach").
    bad = [r for r in caplog.records if r.name.startswith("opentelemetry") and r.levelno >= 40]
    assert not bad, [r.getMessage() for r in bad]


async def _no_sleep(_: float) -> None:
    return None


def manager(**kw: Any) -> LLMManager:
    kw.setdefault("sleep", lambda _: None)
    kw.setdefault("async_sleep", _no_sleep)
    return LLMManager(**kw)


def answer(text: str = "ok", pt: int = 3, ct: int = 5) -> Any:
    return lambda p, k: LLMResponse(text, prompt_tokens=pt, completion_tokens=ct)


def failing(p: str, k: dict[str, Any]) -> str:
    raise ConnectionError("down")


class Flaky:
    """Fails its first ``n`` calls."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, p: str, k: dict[str, Any]) -> Any:
        if self.n > 0:
            self.n -= 1
            raise ConnectionError("down")
        return LLMResponse("ok", prompt_tokens=2, completion_tokens=4)


class Streamer:
    def __init__(self, parts: tuple[str, ...] = ("he", "llo")) -> None:
        self.parts = parts
        self.seen: list[Any] = []

    def __call__(self, p: str, k: dict[str, Any]) -> str:
        return "".join(self.parts)

    def stream(self, p: str, k: dict[str, Any]) -> Iterator[str]:
        self.seen.append(trace.get_current_span().get_span_context())
        yield from self.parts


def one(m: LLMManager, name: str, fn: Any, *fallbacks: tuple[str, Any]) -> LLMManager:
    m.register_model(name, fn)
    for n, f in fallbacks:
        m.register_model(n, f)
    m.set_active_model(name)
    if fallbacks:
        m.set_fallback_chain([n for n, _ in fallbacks])
    return m


# ------------------------------------------------------------------------ the names


def test_the_names_are_the_pinned_conventions() -> None:
    # Those the module writes as literals, checked against opentelemetry-semantic-conventions.
    assert ga.GEN_AI_OPERATION_NAME == "gen_ai.operation.name"
    assert ga.GEN_AI_PROVIDER_NAME == "gen_ai.provider.name"
    assert ga.GEN_AI_REQUEST_MODEL == "gen_ai.request.model"
    assert ga.GEN_AI_RESPONSE_MODEL == "gen_ai.response.model"
    assert ga.GEN_AI_USAGE_INPUT_TOKENS == "gen_ai.usage.input_tokens"
    assert ga.GEN_AI_USAGE_OUTPUT_TOKENS == "gen_ai.usage.output_tokens"
    assert ga.GEN_AI_TOKEN_TYPE == "gen_ai.token.type"
    assert ga.GEN_AI_INPUT_MESSAGES == "gen_ai.input.messages"
    assert ga.GEN_AI_OUTPUT_MESSAGES == "gen_ai.output.messages"
    assert ga.GEN_AI_REQUEST_STREAM == "gen_ai.request.stream"
    assert ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK == "gen_ai.response.time_to_first_chunk"
    assert gm.GEN_AI_CLIENT_OPERATION_DURATION == "gen_ai.client.operation.duration"
    assert gm.GEN_AI_CLIENT_TOKEN_USAGE == "gen_ai.client.token.usage"
    assert (
        gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK
        == "gen_ai.client.operation.time_to_first_chunk"
    )
    assert ga.GenAiOperationNameValues.TEXT_COMPLETION.value == "text_completion"


# ------------------------------------------------------------------------ first try


def test_first_try(otel: Otel) -> None:
    m = one(manager(), "m", answer())
    otel.instrument(m, provider="openai")
    assert m.generate("p", temperature=0.5, max_tokens=10) == "ok"
    (req,) = otel.requests()
    assert req.name == "generate" and req.parent is None
    assert req.attributes is not None
    assert req.attributes["agenticai.cache.tier"] == "model"
    assert req.attributes["agenticai.attempts"] == 1
    assert req.status.status_code is StatusCode.UNSET
    (att,) = otel.attempts(req)
    assert att.name == "text_completion m" and att.kind is SpanKind.CLIENT
    assert dict(att.attributes or {}) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m",
        "gen_ai.response.model": "m",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 10,
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 5,
        "agenticai.model": "m",
        "agenticai.attempt": 1,
        "agenticai.route.position": 0,
        "agenticai.breaker.state": "closed",
        "agenticai.outcome": "success",
    }
    (d,) = otel.points("gen_ai.client.operation.duration")
    assert d.count == 1 and tuple(d.explicit_bounds) == DURATION_BUCKETS
    assert dict(d.attributes) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m",
        "gen_ai.response.model": "m",
    }
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")
    }
    assert set(tokens) == {"input", "output"}
    assert tokens["input"].sum == 3 and tokens["output"].sum == 5
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS


def test_first_try_async(otel: Otel) -> None:
    m = one(manager(), "m", answer())
    otel.instrument(m)
    assert asyncio.run(m.agenerate("p")) == "ok"
    (req,) = otel.requests()
    assert req.name == "agenerate"
    (att,) = otel.attempts(req)
    assert att.name == "text_completion m"
    assert att.attributes is not None and "gen_ai.provider.name" not in att.attributes
    assert att.attributes["gen_ai.usage.output_tokens"] == 5
    assert otel.points("gen_ai.client.operation.duration")[0].count == 1


def test_model_metadata_names_the_model_and_provider(otel: Otel) -> None:
    m = manager()
    m.register_model("fast", answer(), {"model": "gpt-4o-mini", "provider": "openai"})
    m.set_active_model("fast")
    otel.instrument(m, provider="other")
    m.generate("p")
    (att,) = otel.attempts()
    assert att.name == "text_completion gpt-4o-mini"
    assert att.attributes is not None
    assert att.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert att.attributes["gen_ai.provider.name"] == "openai"
    assert att.attributes["agenticai.model"] == "fast"


def test_estimated_tokens_are_not_reported_as_usage(otel: Otel) -> None:
    m = one(manager(), "m", lambda p, k: "plain text")
    otel.instrument(m)
    m.generate("p")
    (att,) = otel.attempts()
    assert att.attributes is not None
    assert "gen_ai.usage.input_tokens" not in att.attributes
    assert att.attributes["agenticai.usage.estimated"] is True
    assert otel.points("gen_ai.client.token.usage") == []
    assert otel.points("gen_ai.client.operation.duration")[0].count == 1


def test_operation_name_is_configurable(otel: Otel) -> None:
    m = one(manager(), "m", answer())
    otel.instrument(m, operation_name="chat")
    m.generate("p")
    (att,) = otel.attempts()
    assert att.name == "chat m"


# ------------------------------------------------------------------------ cache hit


@pytest.mark.parametrize("run", ["sync", "async"])
def test_cache_hit_is_a_request_span_without_attempts(otel: Otel, run: str) -> None:
    m = one(manager(), "m", answer())
    otel.instrument(m)
    if run == "sync":
        m.generate("p")
        m.generate("p")
    else:
        asyncio.run(m.agenerate("p"))
        asyncio.run(m.agenerate("p"))
    first, hit = sorted(otel.requests(), key=lambda s: s.start_time or 0)
    assert hit.attributes is not None
    assert hit.attributes["agenticai.cache.tier"] == "l1"
    assert hit.attributes["agenticai.attempts"] == 0
    assert otel.attempts(hit) == [] and len(otel.attempts(first)) == 1
    assert otel.points("gen_ai.client.operation.duration")[0].count == 1
    tiers = {
        p.attributes["agenticai.cache.tier"]: p.count
        for p in otel.points("agenticai.client.request.duration")
    }
    assert tiers == {"model": 1, "l1": 1}


# ------------------------------------------------------------------------ retry, fallback


@pytest.mark.parametrize("run", ["sync", "async"])
def test_retry(otel: Otel, run: str) -> None:
    m = one(manager(max_retries=2), "m", Flaky(1))
    otel.instrument(m)
    out = m.generate("p") if run == "sync" else asyncio.run(m.agenerate("p"))
    assert out == "ok"
    (req,) = otel.requests()
    a1, a2 = otel.attempts(req)
    assert a1.name == a2.name == "text_completion m"
    assert a1.attributes is not None and a2.attributes is not None
    assert a1.attributes["agenticai.attempt"] == 1 and a2.attributes["agenticai.attempt"] == 2
    assert a1.attributes["error.type"] == "ConnectionError"
    assert a1.status.status_code is StatusCode.ERROR
    assert a2.status.status_code is StatusCode.UNSET and "error.type" not in a2.attributes
    assert req.attributes is not None and req.attributes["agenticai.retries"] == 1
    by_error = {
        p.attributes.get("error.type"): p.count
        for p in otel.points("gen_ai.client.operation.duration")
    }
    assert by_error == {"ConnectionError": 1, None: 1}


@pytest.mark.parametrize("run", ["sync", "async"])
def test_fallback(otel: Otel, run: str) -> None:
    m = one(manager(max_retries=1), "a", failing, ("b", answer("from b")))
    otel.instrument(m)
    out = m.generate("p") if run == "sync" else asyncio.run(m.agenerate("p"))
    assert out == "from b"
    (req,) = otel.requests()
    a, b = otel.attempts(req)
    assert (a.name, b.name) == ("text_completion a", "text_completion b")
    assert a.attributes is not None and b.attributes is not None
    assert a.attributes["agenticai.route.position"] == 0
    assert b.attributes["agenticai.route.position"] == 1
    assert a.status.status_code is StatusCode.ERROR
    assert req.attributes is not None
    assert req.attributes["agenticai.fallbacks"] == 1 and req.attributes["agenticai.model"] == "b"
    (ev,) = [e for e in req.events if e.name == "agenticai.fallback"]
    assert dict(ev.attributes or {}) == {
        "agenticai.fallback.from": "a",
        "agenticai.fallback.to": "b",
        "agenticai.fallback.reason": "ConnectionError",
    }


@pytest.mark.parametrize("run", ["sync", "async"])
def test_open_breaker(otel: Otel, run: str) -> None:
    m = one(manager(max_retries=1, failure_threshold=1), "a", failing, ("b", answer()))
    otel.instrument(m)
    go = (lambda p: m.generate(p)) if run == "sync" else (lambda p: asyncio.run(m.agenerate(p)))
    go("p1")  # opens a's breaker
    go("p2")  # skips a
    first, second = sorted(otel.requests(), key=lambda s: s.start_time or 0)
    (changed,) = [e for e in first.events if e.name == "agenticai.breaker.changed"]
    assert dict(changed.attributes or {}) == {
        "agenticai.model": "a",
        "agenticai.breaker.from": "closed",
        "agenticai.breaker.state": "open",
    }
    (b,) = otel.attempts(second)  # no attempt span for the skipped model
    assert b.name == "text_completion b"
    (fb,) = [e for e in second.events if e.name == "agenticai.fallback"]
    assert fb.attributes is not None
    assert fb.attributes["agenticai.fallback.reason"] == "CircuitBreakerOpenError"


# ------------------------------------------------------------------------ failure


@pytest.mark.parametrize("run", ["sync", "async"])
def test_every_model_fails(otel: Otel, run: str) -> None:
    m = one(manager(max_retries=2), "a", failing, ("b", failing))
    otel.instrument(m)
    with pytest.raises(Exception) as info:
        m.generate("p") if run == "sync" else asyncio.run(m.agenerate("p"))
    (req,) = otel.requests()
    assert req.status.status_code is StatusCode.ERROR
    assert req.attributes is not None
    assert req.attributes["error.type"] == type(info.value).__name__ == "AllModelsFailedError"
    assert req.attributes["agenticai.outcome"] == "failure"
    assert "agenticai.cache.tier" not in req.attributes
    atts = otel.attempts(req)
    assert len(atts) == 4
    assert all(a.status.status_code is StatusCode.ERROR for a in atts)
    assert sum(p.count for p in otel.points("gen_ai.client.operation.duration")) == 4
    (r,) = otel.points("agenticai.client.request.duration")
    assert r.attributes["error.type"] == "AllModelsFailedError"


# ------------------------------------------------------------------------ streams


def test_stream(otel: Otel) -> None:
    s = Streamer()
    m = one(manager(), "m", s)
    otel.instrument(m)
    assert "".join(m.stream("p")) == "hello"
    (req,) = otel.requests()
    assert req.name == "stream"
    (att,) = otel.attempts(req)
    assert att.attributes is not None
    assert att.attributes["gen_ai.request.stream"] is True
    assert att.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert s.seen == [att.context]  # the model's iterator ran under the attempt span
    assert otel.points("gen_ai.client.operation.time_to_first_chunk")[0].count == 1
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached


def test_astream_with_a_sync_stream_on_a_worker(otel: Otel) -> None:
    s = Streamer()
    m = one(manager(), "m", s)
    otel.instrument(m)

    async def run() -> str:
        with otel.user.start_as_current_span("user"):
            out = [c async for c in m.astream("p")]
        assert trace.get_current_span() is trace.INVALID_SPAN
        return "".join(out)

    assert asyncio.run(run()) == "hello"
    (req,) = otel.requests()
    assert req.name == "astream"
    (user,) = [x for x in otel.spans() if x.name == "user"]
    assert req.parent is not None and req.parent.span_id == user.context.span_id
    (att,) = otel.attempts(req)
    assert s.seen == [att.context]


def test_stream_fallback_before_the_first_chunk(otel: Otel) -> None:
    class Broken(Streamer):
        def stream(self, p: str, k: dict[str, Any]) -> Iterator[str]:
            raise ConnectionError("down")
            yield ""  # pragma: no cover

    s = Streamer()
    m = one(manager(max_retries=1), "a", Broken(), ("b", s))
    otel.instrument(m)
    with otel.user.start_as_current_span("user") as user_span:
        assert "".join(m.stream("p")) == "hello"
        assert trace.get_current_span() is user_span  # the attempt's context is gone
    (req,) = otel.requests()
    a, b = otel.attempts(req)
    assert a.status.status_code is StatusCode.ERROR and b.name == "text_completion b"
    assert s.seen == [b.context]


def test_cancelled_agenerate_ends_its_spans(otel: Otel) -> None:
    started = asyncio.Event()

    async def hang(p: str, k: dict[str, Any]) -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    m = one(manager(), "m", hang)
    inst = otel.instrument(m)

    async def run() -> None:
        task = asyncio.ensure_future(m.agenerate("p"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    (req,) = otel.requests()
    (att,) = otel.attempts(req)
    assert (req.attributes or {})["agenticai.outcome"] == "cancelled"
    assert (att.attributes or {})["agenticai.outcome"] == "cancelled"
    assert not inst._open


# ------------------------------------------------------------------------ parentage


def seen_span(m: LLMManager, name: str, is_async: bool = False) -> list[Any]:
    """Registers a model that notes the current span and its thread."""
    seen: list[Any] = []

    def fn(p: str, k: dict[str, Any]) -> str:
        seen.append((trace.get_current_span().get_span_context(), threading.get_ident()))
        return "ok"

    async def afn(p: str, k: dict[str, Any]) -> str:
        return fn(p, k)

    m.register_model(name, afn if is_async else fn)
    m.set_active_model(name)
    return seen


def parent_is(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return child.parent is not None and child.parent.span_id == parent.context.span_id


@pytest.mark.parametrize("model", ["sync", "async"])
def test_parentage_generate(otel: Otel, model: str) -> None:
    m = manager()
    seen = seen_span(m, "m", model == "async")
    otel.instrument(m)
    with otel.user.start_as_current_span("user") as user_span:
        m.generate("p")
        assert trace.get_current_span() is user_span
    (user,) = [x for x in otel.spans() if x.name == "user"]
    (req,) = otel.requests()
    (att,) = otel.attempts()
    assert parent_is(req, user) and parent_is(att, req)
    assert req.context.trace_id == user.context.trace_id == att.context.trace_id
    assert [ctx for ctx, _ in seen] == [att.context]


@pytest.mark.parametrize("run", ["sync", "async"])
def test_the_request_span_is_current_between_attempts(otel: Otel, run: str) -> None:
    seen: list[Any] = []

    def sleep(_: float) -> None:
        seen.append(trace.get_current_span().get_span_context())

    async def async_sleep(_: float) -> None:
        sleep(_)

    m = one(manager(max_retries=2, sleep=sleep, async_sleep=async_sleep), "m", Flaky(1))
    otel.instrument(m)
    with otel.user.start_as_current_span("user") as user_span:
        m.generate("p") if run == "sync" else asyncio.run(m.agenerate("p"))
        assert trace.get_current_span() is user_span
    (req,) = otel.requests()
    assert seen == [req.context]  # the backoff wait ran under the request span


def test_parentage_agenerate_with_a_sync_model_on_a_worker_thread(otel: Otel) -> None:
    m = manager()
    seen = seen_span(m, "m")
    otel.instrument(m)
    loop_thread: list[int] = []

    async def run() -> None:
        loop_thread.append(threading.get_ident())
        with otel.user.start_as_current_span("user") as user_span:
            await m.agenerate("p")
            assert trace.get_current_span() is user_span

    asyncio.run(run())
    (user,) = [x for x in otel.spans() if x.name == "user"]
    (req,) = otel.requests()
    (att,) = otel.attempts()
    assert parent_is(req, user) and parent_is(att, req)
    ((ctx, thread),) = seen
    assert ctx == att.context
    assert thread != loop_thread[0]  # it ran on a worker, under the attempt span


def test_parentage_agenerate_async_model(otel: Otel) -> None:
    m = manager()
    seen = seen_span(m, "m", is_async=True)
    otel.instrument(m)

    async def run() -> None:
        with otel.user.start_as_current_span("user"):
            await m.agenerate("p")

    asyncio.run(run())
    (att,) = otel.attempts()
    assert [ctx for ctx, _ in seen] == [att.context]


def test_concurrent_tasks_keep_their_own_parents(otel: Otel) -> None:
    m = manager()
    seen: list[Any] = []

    async def slow(p: str, k: dict[str, Any]) -> str:
        await asyncio.sleep(0.001 * (hash(p) % 5))
        seen.append((p, trace.get_current_span().get_span_context().span_id))
        return p

    m.register_model("m", slow)
    m.set_active_model("m")
    otel.instrument(m)

    async def one_request(i: int) -> None:
        with otel.user.start_as_current_span(f"user {i}"):
            await m.agenerate(f"p{i}")

    async def run() -> None:
        await asyncio.gather(*(one_request(i) for i in range(20)))

    asyncio.run(run())
    users = {s.name: s for s in otel.spans() if s.name.startswith("user ")}
    reqs = otel.requests()
    assert len(reqs) == 20
    for req in reqs:
        (att,) = otel.attempts(req)
        prompt = f"p{int(next(u for u in users if parent_is(req, users[u]))[5:])}"
        assert (prompt, att.context.span_id) in seen


def test_threads_keep_their_own_parents(otel: Otel) -> None:
    m = manager()
    seen = seen_span(m, "m")
    otel.instrument(m)

    def work(i: int) -> None:
        with otel.user.start_as_current_span(f"user {i}"):
            for j in range(5):
                m.generate(f"p{i}-{j}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    users = [s for s in otel.spans() if s.name.startswith("user ")]
    reqs = otel.requests()
    assert len(reqs) == 40 and len(otel.attempts()) == 40
    for req in reqs:
        assert sum(parent_is(req, u) for u in users) == 1
        (att,) = otel.attempts(req)
        assert att.context in [ctx for ctx, _ in seen]


# ------------------------------------------------------------------------ content


SECRET = "sk-live-0123456789abcdef"
PASSWORD = "correct-horse-battery"


def all_attribute_text(otel: Otel) -> str:
    parts: list[str] = []
    for s in otel.spans():
        parts.extend(f"{k}={v}" for k, v in (s.attributes or {}).items())
        for e in s.events:
            parts.extend(f"{k}={v}" for k, v in (e.attributes or {}).items())
    for name in (
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "agenticai.client.request.duration",
    ):
        for p in otel.points(name):
            parts.extend(f"{k}={v}" for k, v in p.attributes.items())
    return "\n".join(parts)


def content_run(otel: Otel, **kw: Any) -> str:
    m = one(manager(max_retries=1), "a", failing, ("b", lambda p, k: "the ANSWER-42"))
    otel.instrument(m, **kw)
    kwargs = {"api_key": SECRET, "password": PASSWORD, "temperature": 0.1}
    m.generate("the PROMPT-7", **kwargs)
    m.generate("the PROMPT-7", **kwargs)  # a hit
    asyncio.run(m.agenerate("another PROMPT-8", **kwargs))
    "".join(m.stream("streamed PROMPT-9", **kwargs))
    return all_attribute_text(otel)


def test_no_content_by_default(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CAPTURE_ENV, raising=False)
    text = content_run(otel)
    assert "PROMPT" not in text and "ANSWER" not in text
    assert SECRET not in text and PASSWORD not in text
    assert "gen_ai.input.messages" not in text and "gen_ai.output.messages" not in text
    assert "gen_ai.request.temperature=0.1" in text


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_content_when_opted_in_and_never_secrets(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "argument":
        monkeypatch.setenv(CAPTURE_ENV, "false")
        text = content_run(otel, capture_content=True)
    else:
        monkeypatch.setenv(CAPTURE_ENV, "true")
        text = content_run(otel)
    assert SECRET not in text and PASSWORD not in text
    for prompt in ("PROMPT-7", "PROMPT-8", "PROMPT-9"):
        assert prompt in text
    hit = next(
        s for s in otel.requests() if (s.attributes or {}).get("agenticai.cache.tier") == "l1"
    )
    assert hit.attributes is not None
    assert '"the ANSWER-42"' in str(hit.attributes["gen_ai.output.messages"])
    assert '"role": "user"' in str(hit.attributes["gen_ai.input.messages"])
    ok = [a for a in otel.attempts() if (a.attributes or {}).get("agenticai.outcome") == "success"]
    assert len(ok) == 3
    assert all("ANSWER-42" in str((a.attributes or {})["gen_ai.output.messages"]) for a in ok)


def test_key_shaped_text_in_content_is_scrubbed(otel: Otel) -> None:
    m = one(manager(), "m", lambda p, k: f"echo {p}")
    otel.instrument(m, capture_content=True)
    m.generate(f"my key is {SECRET}")
    assert SECRET not in all_attribute_text(otel)
    assert "my key is ***" in all_attribute_text(otel)


# ------------------------------------------------------------------------ uninstrument


def test_uninstrument_stops_spans_and_metrics(otel: Otel) -> None:
    m = one(manager(), "m", answer())
    inst = otel.instrument(m)
    assert inst.active
    m.generate("p1")
    inst.uninstrument()
    inst.uninstrument()  # idempotent
    assert not inst.active and "generate" not in m.__dict__
    m.generate("p2")
    asyncio.run(m.agenerate("p3"))
    assert len(otel.requests()) == 1 and len(otel.attempts()) == 1
    assert otel.points("gen_ai.client.operation.duration")[0].count == 1


def test_a_second_instrumentation_is_independent(otel: Otel) -> None:
    other = Otel()
    m = one(manager(), "m", answer())
    a = otel.instrument(m)
    b = other.instrument(m)
    m.generate("p1")
    a.uninstrument()
    m.generate("p2")
    b.uninstrument()
    assert len(otel.requests()) == 1 and len(other.requests()) == 2


def test_a_hedged_request_has_a_span_per_attempt_each_current_in_its_own_task(
    otel: Otel,
) -> None:
    from test_hedging import Scripted, Timeline

    class Seen(Scripted):
        """Records the span that was current when the call started."""

        def __init__(self, tl: Timeline, *steps: tuple[float, Any]) -> None:
            super().__init__(tl, *steps)
            self.spans: list[int] = []

        async def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            self.spans.append(trace.get_current_span().get_span_context().span_id)
            return await super().__call__(prompt, kwargs)

    async def main() -> None:
        tl = Timeline()
        m = LLMManager(clock=tl.clock, async_sleep=tl.sleep, enable_caching=False, hedge_after=0.5)
        a, b = Seen(tl, (5.0, "A")), Seen(tl, (0.1, "B"))
        m.register_model("a", a)
        m.register_model("b", b)
        m.set_active_model("a")
        m.set_fallback_chain(["b"])
        otel.instrument(m)
        r = asyncio.ensure_future(m.agenerate("p"))
        await tl.to(0.6)
        assert await r == "B"
        (req,) = otel.requests()
        spans = otel.attempts(req)
        assert [s.attributes["agenticai.model"] for s in spans] == ["a", "b"]  # type: ignore[index]
        outcome = [s.attributes["agenticai.outcome"] for s in spans]  # type: ignore[index]
        assert outcome == ["cancelled", "success"]
        assert a.spans == [spans[0].context.span_id] and b.spans == [spans[1].context.span_id]

    asyncio.run(main())
