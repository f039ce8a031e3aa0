"""OpenTelemetry: the spans of a retry, a fallback, an open breaker and a cache hit, from
the SDK's in-memory exporter, printed as a tree (pip install 'agenticaiframework[otel]'
opentelemetry-sdk)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agenticaiframework.llms import LLMManager, LLMResponse
from agenticaiframework.llms.otel import instrument

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

calls = {"primary": 0}


def primary(prompt: str, kwargs: dict) -> LLMResponse:
    calls["primary"] += 1
    raise ConnectionError("primary is down")


def backup(prompt: str, kwargs: dict) -> LLMResponse:
    return LLMResponse("Paris.", prompt_tokens=7, completion_tokens=2)


manager = LLMManager(max_retries=2, failure_threshold=2, sleep=lambda _: None)
manager.register_model("primary", primary, {"model": "gpt-4o", "provider": "openai"})
manager.register_model("backup", backup, {"model": "claude-sonnet-4", "provider": "anthropic"})
manager.set_active_model("primary")
manager.set_fallback_chain(["backup"])
otel = instrument(manager, tracer_provider=provider)

tracer = provider.get_tracer("my-web-app")
with tracer.start_as_current_span("GET /capital"):  # the web framework's span
    manager.generate("Capital of France?", temperature=0.0)  # retried, then fell back
    manager.generate("Capital of France?", temperature=0.0)  # a cache hit
    manager.generate("Capital of Italy?", temperature=0.0)  # primary's breaker is open
otel.uninstrument()

SHOWN = (
    "gen_ai.request.model",
    "gen_ai.provider.name",
    "agenticai.attempt",
    "error.type",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "agenticai.cache.tier",
)


def show(span: ReadableSpan, spans: list[ReadableSpan], depth: int = 0) -> None:
    attrs = span.attributes or {}
    kv = " ".join(f"{k}={attrs[k]}" for k in SHOWN if k in attrs)
    print(f"{'  ' * depth}{span.name} [{span.kind.name}] {kv}".rstrip())
    for event in span.events:
        ea = " ".join(f"{k.rsplit('.', 1)[1]}={v}" for k, v in (event.attributes or {}).items())
        print(f"{'  ' * depth}  * {event.name} {ea}")
    kids = [s for s in spans if s.parent and s.parent.span_id == span.context.span_id]
    for kid in sorted(kids, key=lambda s: s.start_time or 0):
        show(kid, spans, depth + 1)


spans = list(exporter.get_finished_spans())
for root in (s for s in spans if s.parent is None):
    show(root, spans)
