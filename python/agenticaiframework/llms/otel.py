"""OpenTelemetry spans and metrics for a manager, following the GenAI semantic conventions
(the ``otel`` extra: ``pip install agenticaiframework[otel]``, which brings
``opentelemetry-api`` only; bring your own SDK and exporter).

>>> from agenticaiframework.llms.otel import instrument
>>> inst = instrument(manager)  # doctest: +SKIP
>>> inst.uninstrument()  # doctest: +SKIP

Built on :meth:`LLMManager.subscribe` alone (events.py): each request is an INTERNAL span
named after its method (``generate``, ``agenerate``, ``stream``, ``astream``), a child of
whatever span is current when it starts (your web framework's), and current itself until
it ends (not a stream's: its steps run in the consumer's context); each call to a model is a
CLIENT span ``"{gen_ai.operation.name} {gen_ai.request.model}"`` under it, and it is the
current span while the model runs, so the model's own instrumentation (httpx, an SDK)
nests under it, on a worker thread too (the pools copy the context at submission). A
cache hit is a request span with ``agenticai.cache.tier`` and no attempt span. Fallbacks
and breaker moves are span events on the request span.

Which conventions: the GenAI conventions as published in OpenTelemetry semantic
conventions v1.41.0, the last release that carried them (from v1.42.0 they live in the
semantic-conventions-genai repository); the names are those that
``opentelemetry-semantic-conventions`` 0.66b2 still defines (``gen_ai.provider.name``, not
the older ``gen_ai.system``).

Content (the prompt and the answer, as ``gen_ai.input.messages`` and
``gen_ai.output.messages``) is recorded only when asked: ``capture_content=True``, or the
environment variable ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (the switch
the OpenTelemetry GenAI instrumentations read). Even then it passes through the library's
secret scrubbing, and request kwargs are never recorded: only the named sampling
parameters (temperature, max_tokens, ...) and only when they are numbers or strings.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "agenticaiframework.llms.otel needs opentelemetry-api: "
        "pip install 'agenticaiframework[otel]'"
    ) from exc

from . import _secrets
from .events import (
    AttemptEnded,
    AttemptStarted,
    BreakerStateChanged,
    Event,
    FallbackTaken,
    RequestEnded,
    RequestStarted,
    StreamFirstChunk,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from .events import Subscription
    from .manager import LLMManager

# The conventions followed (see the module's docstring) and this instrumentation's name.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
SCOPE = "agenticaiframework.llms"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# ``gen_ai.operation.name``: a prompt string in, a text out is the conventions'
# ``text_completion`` (``chat`` is for a list of messages); override it per instrument().
TEXT_COMPLETION = "text_completion"

# The conventions' advised bucket boundaries (gen-ai-metrics.md, v1.41.0).
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: tuple[int, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

# Request kwargs recorded as ``gen_ai.request.*`` (by value type); nothing else is read.
_PARAMS: dict[str, tuple[str, tuple[type, ...]]] = {
    "temperature": ("gen_ai.request.temperature", (int, float)),
    "top_p": ("gen_ai.request.top_p", (int, float)),
    "top_k": ("gen_ai.request.top_k", (int, float)),
    "max_tokens": ("gen_ai.request.max_tokens", (int,)),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", (int, float)),
    "presence_penalty": ("gen_ai.request.presence_penalty", (int, float)),
    "seed": ("gen_ai.request.seed", (int,)),
}
_STREAMS = frozenset(("stream", "astream"))


def _env_capture() -> bool:
    v = os.environ.get(CAPTURE_ENV, "").strip().lower()
    # "true" is the switch; the newer values name where content goes (we record on spans).
    return v in ("1", "true", "yes", "on", "span_only", "span_and_event")


def _params(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not kwargs:
        return out
    for name, (attr, types) in _PARAMS.items():
        v = kwargs.get(name)
        if isinstance(v, types) and not isinstance(v, bool):
            out[attr] = v
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        out["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        out["gen_ai.request.stop_sequences"] = tuple(stop)
    return out


def _input_messages(prompt: str) -> str:
    msg = [{"role": "user", "parts": [{"type": "text", "content": _secrets.redact_text(prompt)}]}]
    return json.dumps(msg, ensure_ascii=False)


def _output_messages(text: str) -> str:
    # The schema requires a finish_reason; the events do not carry the provider's, and an
    # answer that came back whole is the conventions' "stop".
    part = {"type": "text", "content": _secrets.redact_text(text)}
    return json.dumps([{"role": "assistant", "parts": [part], "finish_reason": "stop"}])


class _Request:
    """One request's spans, from its RequestStarted to its RequestEnded."""

    __slots__ = (
        "attempt",
        "ctx",
        "hedged",
        "kwargs",
        "operation",
        "own",
        "prompt",
        "span",
        "token",
    )

    def __init__(self, span: Span, ev: RequestStarted) -> None:
        self.span = span
        self.operation = ev.operation
        self.prompt = ev.prompt
        self.kwargs = ev.kwargs
        self.ctx: Any = None  # the request span's context, made at its first attempt
        self.attempt: _Attempt | None = None
        # Attempts still open beside a later one (hedged requests, hedging.py): not the
        # current context any more (their task copied it), ended by their AttemptEnded.
        self.hedged: dict[tuple[Any, ...], _Attempt] | None = None
        self.token: object = None  # the attached attempt context, detached at its end
        self.own: object = None  # the attached request context (not a stream's)


class _Attempt:
    __slots__ = ("attrs", "key", "span")

    def __init__(self, span: Span, attrs: dict[str, Any], key: tuple[Any, ...]) -> None:
        self.span = span
        self.attrs = attrs  # the metric attributes known at the start
        self.key = key  # (model, deployment, attempt, position): which AttemptEnded is its


class Instrumentation:
    """What :func:`instrument` returns: ``uninstrument()`` stops the spans and metrics
    (idempotent); open requests' spans are ended then, marked incomplete."""

    def __init__(
        self,
        manager: LLMManager,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        capture_content: bool | None,
        provider: str | Mapping[str, str] | None,
        operation_name: str,
    ) -> None:
        self.manager = manager
        self.capture_content = _env_capture() if capture_content is None else capture_content
        self.operation_name = operation_name
        self._provider = provider
        self._tracer = trace.get_tracer(
            SCOPE, tracer_provider=tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider, schema_url=SCHEMA_URL)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk in a streaming response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._requests = meter.create_histogram(
            "agenticai.client.request.duration",
            unit="s",
            description="Request duration, retries, fallbacks and cache hits included.",
            explicit_bucket_boundaries_advisory=(0.0001, 0.001, *DURATION_BUCKETS),
        )
        self._open: dict[int, _Request] = {}
        self._lock = threading.Lock()
        self._handlers = {
            RequestStarted: self._request_started,
            AttemptStarted: self._attempt_started,
            AttemptEnded: self._attempt_ended,
            StreamFirstChunk: self._first_chunk,
            FallbackTaken: self._fallback,
            BreakerStateChanged: self._breaker,
            RequestEnded: self._request_ended,
        }
        self._subscription: Subscription | None = manager.subscribe(self._on_event)

    @property
    def active(self) -> bool:
        return self._subscription is not None

    def uninstrument(self) -> None:
        with self._lock:
            sub, self._subscription = self._subscription, None
        if sub is None:
            return
        sub.unsubscribe()
        for r in list(self._open.values()):  # their RequestEnded will not be told now
            if r.attempt is not None:
                r.attempt.span.set_attribute("agenticai.incomplete", True)
                r.attempt.span.end()
            r.span.set_attribute("agenticai.incomplete", True)
            r.span.end()
        self._open.clear()

    def __repr__(self) -> str:
        return f"<Instrumentation {'active' if self.active else 'ended'} of {self.manager!r}>"

    # ------------------------------------------------------------------ the events

    def _on_event(self, ev: Event) -> None:
        self._handlers[type(ev)](ev)  # type: ignore[operator]

    def _request_started(self, ev: RequestStarted) -> None:
        attrs: dict[str, Any] = {"agenticai.operation": ev.operation, "agenticai.route": ev.route}
        # The parent: whatever is current here, on the request's thread or in its task.
        span = self._tracer.start_span(ev.operation, kind=SpanKind.INTERNAL, attributes=attrs)
        r = _Request(span, ev)
        if ev.operation not in _STREAMS:
            # Current until its RequestEnded, told in the same thread or task, so what
            # runs between attempts (a Redis lookup, a backoff sleep) is under it too. A
            # stream's steps run inside the consumer's next() calls, its context between.
            r.ctx = trace.set_span_in_context(span)
            r.own = otel_context.attach(r.ctx)
        self._open[ev.request_id] = r

    def _model_attrs(self, name: str) -> tuple[str, str | None]:
        """The model's name for ``gen_ai.request.model`` and its provider, if known: the
        model's metadata ``model`` and ``provider``, else instrument()'s ``provider``."""
        m = self.manager._models.get(name)
        meta: Mapping[str, Any] = m.metadata if m is not None else {}
        model = meta.get("model")
        prov = meta.get("provider")
        if not isinstance(prov, str):
            p = self._provider
            prov = p.get(name) if isinstance(p, Mapping) else p
        return (model if isinstance(model, str) and model else name), prov

    def _attempt_started(self, ev: AttemptStarted) -> None:
        r = self._open.get(ev.request_id)
        if r is None:
            return  # started before we subscribed
        if r.attempt is not None:
            # A hedge while an attempt runs: that one leaves the current context (its
            # task has its own copy) and ends by its own AttemptEnded.
            self._detach(r)
            if r.hedged is None:
                r.hedged = {}
            r.hedged[r.attempt.key] = r.attempt
        model, prov = self._model_attrs(ev.model)
        metric: dict[str, Any] = {
            "gen_ai.operation.name": self.operation_name,
            "gen_ai.request.model": model,
        }
        if prov is not None:
            metric["gen_ai.provider.name"] = prov
        attrs = dict(metric)
        attrs["agenticai.model"] = ev.model
        attrs["agenticai.attempt"] = ev.attempt
        attrs["agenticai.route.position"] = ev.position
        m = self.manager._models.get(ev.model)
        if m is not None:
            attrs["agenticai.breaker.state"] = m.core.breaker.state
        if r.operation in _STREAMS:
            attrs["gen_ai.request.stream"] = True
        if r.kwargs:
            attrs.update(_params(r.kwargs))
        if self.capture_content and r.prompt is not None:
            attrs["gen_ai.input.messages"] = _input_messages(r.prompt)
        if r.ctx is None:
            r.ctx = trace.set_span_in_context(r.span)
        span = self._tracer.start_span(
            f"{self.operation_name} {model}", context=r.ctx, kind=SpanKind.CLIENT, attributes=attrs
        )
        r.attempt = _Attempt(span, metric, (ev.model, ev.deployment, ev.attempt, ev.position))
        # Current while the model runs (events come on the request's thread or task, so
        # the attach and its detach pair up); a worker thread copies it at submission.
        r.token = otel_context.attach(trace.set_span_in_context(span, r.ctx))

    def _detach(self, r: _Request) -> None:
        token, r.token = r.token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def _first_chunk(self, ev: StreamFirstChunk) -> None:
        r = self._open.get(ev.request_id)
        if r is not None and r.hedged and (r.attempt is None or r.attempt.key[0] != ev.model):
            # A hedged stream whose earlier attempt answered first: that one is the stream.
            for key, a in r.hedged.items():
                if key[0] == ev.model:
                    self._detach(r)
                    if r.attempt is not None:
                        r.hedged[r.attempt.key] = r.attempt
                    del r.hedged[key]
                    r.attempt = a
                    break
        if r is None or r.attempt is None:
            return
        # The chunks now go to the consumer, whose context between them is its own.
        self._detach(r)
        r.attempt.span.set_attribute("gen_ai.response.time_to_first_chunk", ev.time_to_first_chunk)
        self._ttfc.record(ev.time_to_first_chunk, r.attempt.attrs)

    def _attempt_ended(self, ev: AttemptEnded) -> None:
        r = self._open.get(ev.request_id)
        if r is None:
            return
        a: _Attempt | None
        if r.hedged and (key := (ev.model, ev.deployment, ev.attempt, ev.position)) in r.hedged:
            a = r.hedged.pop(key)  # an attempt beside a hedge: no longer attached
        else:
            if r.attempt is None:
                return
            self._detach(r)
            a, r.attempt = r.attempt, None
        span, metric = a.span, a.attrs
        attrs: dict[str, Any] = {"agenticai.outcome": ev.outcome}
        if ev.outcome == "success":
            attrs["gen_ai.response.model"] = metric["gen_ai.response.model"] = metric[
                "gen_ai.request.model"
            ]
            tokens = not ev.usage_estimated
            if tokens:
                attrs["gen_ai.usage.input_tokens"] = ev.prompt_tokens
                attrs["gen_ai.usage.output_tokens"] = ev.completion_tokens
            else:
                attrs["agenticai.usage.estimated"] = True
            if self.capture_content and ev.text is not None:
                attrs["gen_ai.output.messages"] = _output_messages(ev.text)
        else:
            attrs["error.type"] = metric["error.type"] = ev.error_type or ev.outcome
            span.set_status(Status(StatusCode.ERROR))
            tokens = False
        span.set_attributes(attrs)  # one lock and one pass, not one per attribute
        span.end()
        self._duration.record(ev.latency, metric)
        if tokens:
            self._tokens.record(ev.prompt_tokens, {**metric, "gen_ai.token.type": "input"})
            self._tokens.record(ev.completion_tokens, {**metric, "gen_ai.token.type": "output"})

    def _fallback(self, ev: FallbackTaken) -> None:
        r = self._open.get(ev.request_id)
        if r is not None:
            attrs = {"agenticai.fallback.from": ev.from_model, "agenticai.fallback.to": ev.to_model}
            if ev.reason is not None:
                attrs["agenticai.fallback.reason"] = ev.reason
            r.span.add_event("agenticai.fallback", attrs)

    def _breaker(self, ev: BreakerStateChanged) -> None:
        r = self._open.get(ev.request_id)
        if r is not None:
            attrs = {
                "agenticai.model": ev.model,
                "agenticai.breaker.from": ev.from_state,
                "agenticai.breaker.state": ev.to_state,
            }
            r.span.add_event("agenticai.breaker.changed", attrs)

    def _request_ended(self, ev: RequestEnded) -> None:
        r = self._open.pop(ev.request_id, None)
        if r is None:
            return
        if r.attempt is not None:  # not told to end (the hub lost it): end it here
            self._detach(r)
            r.attempt.span.set_attribute("agenticai.incomplete", True)
            r.attempt.span.end()
            r.attempt = None
        for a in (r.hedged or {}).values():
            a.span.set_attribute("agenticai.incomplete", True)
            a.span.end()
        own, r.own = r.own, None
        if own is not None:
            otel_context.detach(own)  # type: ignore[arg-type]
        span = r.span
        attrs: dict[str, Any] = {
            "agenticai.outcome": ev.outcome,
            "agenticai.coalesced": ev.coalesced,
            "agenticai.attempts": ev.attempts,
            "agenticai.retries": ev.retries,
            "agenticai.fallbacks": ev.fallbacks,
        }
        metric: dict[str, Any] = {
            "agenticai.operation": ev.operation,
            "agenticai.outcome": ev.outcome,
        }
        if ev.tier is not None:
            attrs["agenticai.cache.tier"] = metric["agenticai.cache.tier"] = ev.tier
        if ev.model is not None:
            attrs["agenticai.model"] = ev.model
        if ev.error_type is not None:
            attrs["error.type"] = metric["error.type"] = ev.error_type
            span.set_status(Status(StatusCode.ERROR))
        if self.capture_content and ev.tier in ("l1", "l2") and not ev.attempts:
            # Answered without a model call: the content goes on the request span.
            if r.prompt is not None:
                attrs["gen_ai.input.messages"] = _input_messages(r.prompt)
            if ev.text is not None:
                attrs["gen_ai.output.messages"] = _output_messages(ev.text)
        span.set_attributes(attrs)
        span.end()
        self._requests.record(ev.latency, metric)


def instrument(
    manager: LLMManager,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool | None = None,
    provider: str | Mapping[str, str] | None = None,
    operation_name: str = TEXT_COMPLETION,
) -> Instrumentation:
    """Traces and measures every request of ``manager`` from now on (spans and metrics of
    the GenAI semantic conventions; the module's docstring says which).

    ``tracer_provider`` / ``meter_provider``: the global ones when None. ``capture_content``:
    record prompts and answers (None: as ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
    says; off when unset). ``provider``: ``gen_ai.provider.name`` (``"openai"``, ...), one
    for all models or a mapping by model name; a model's ``metadata["provider"]`` wins, and
    a model's ``metadata["model"]`` is its ``gen_ai.request.model`` (else its name).

    >>> inst = instrument(manager, provider="openai")  # doctest: +SKIP
    >>> manager.generate("hi")  # doctest: +SKIP
    >>> inst.uninstrument()  # doctest: +SKIP
    """
    return Instrumentation(
        manager, tracer_provider, meter_provider, capture_content, provider, operation_name
    )


__all__ = [
    "CAPTURE_ENV",
    "DURATION_BUCKETS",
    "SCHEMA_URL",
    "TOKEN_BUCKETS",
    "Instrumentation",
    "instrument",
]
