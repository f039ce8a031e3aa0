"""What the provider adapters share: loading an optional SDK, reading the key, and
translating SDK exceptions into the library's error types."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from .. import _secrets
from ..classify import parse_retry_after
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RetryableProviderError,
)
from ..response import LLMResponse, Usage

# Phrases providers use for a prompt that does not fit the context window.
_CONTEXT_PHRASES = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "reduce the length",
    "context limit",  # Anthropic: "input length and `max_tokens` exceed context limit"
    "context size",  # llama.cpp server: "exceeds the available context size"
)

# The error types providers name in a body, as the status they stand for: an error that
# arrives inside a successful response (an SSE ``error`` event midway through a stream)
# is classified by its type.
_KIND_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def require(module: str, extra: str) -> ModuleType:
    """Imports an optional SDK, or says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the {module!r} package is needed for this adapter: "
            f"pip install 'agenticaiframework[{extra}]'"
        ) from exc


def api_key(given: str | None, env: str, base_url: str | None) -> str:
    """The key from the argument or the environment; registered so it is scrubbed from
    any text the library emits. A local server (``base_url``) may need none."""
    key = given if given is not None else os.environ.get(env)
    if not key:
        if base_url is None:
            raise ValueError(f"no API key: pass api_key= or set {env}")
        # OpenAI-compatible local servers ignore it, the SDK wants one. Not a secret: it
        # is not remembered (the word would be masked from every text otherwise).
        return "unused"
    _secrets.remember(key)
    return key


@functools.lru_cache(maxsize=32)
def _accepted(create: Any) -> frozenset[str] | None:
    """The keyword names an SDK method takes (None: it takes any)."""
    try:
        params = inspect.signature(create).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


def call_create(create: Any, request: dict[str, Any]) -> Any:
    """Calls an SDK ``create`` with the request; parameters this SDK version does not name
    (``top_k`` for vLLM, ``temperature`` where an SDK dropped it) travel in ``extra_body``,
    so per-call kwargs always reach the server."""
    names = _accepted(getattr(create, "__func__", create))
    if names is None:
        return create(**request)
    known = {k: v for k, v in request.items() if k in names}
    extra = {k: v for k, v in request.items() if k not in names}
    if extra:
        known["extra_body"] = {**extra, **(known.get("extra_body") or {})}
    return create(**known)


def _message(exc: BaseException) -> str:
    """The provider's own message: the error body's, else the SDK's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    msg = getattr(exc, "message", None)
    if isinstance(msg, str):
        return msg
    try:
        return str(exc)
    except Exception:
        return type(exc).__name__


def _code(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("code") or err.get("type") or "")
    return str(getattr(exc, "code", "") or "")


def _kind(exc: BaseException) -> str:
    """The error type a body names (``overloaded_error``, ``server_error``, ...)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("type") or err.get("code") or "")
    return ""


def translate(exc: Exception, provider: str) -> Exception:
    """The library's error for an SDK exception (anything else is returned unchanged).

    Timeouts, connection errors, 408, 409, 429 and 5xx are retryable (429 and any status
    carry the ``Retry-After`` the provider sent); 401/403 are AuthenticationError, a
    context-length error is ContextLengthError, other 4xx BadRequestError: not retried on
    that model, the fallback chain still applies. An error inside a successful response
    (an SSE ``error`` event in a stream) is classified by the type its body names, and is
    retryable when the type is unknown; its ``status`` is None.
    """
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    status = status if type(status) is int else None
    body = getattr(exc, "body", None)
    if status is None and not isinstance(body, dict):
        if "Timeout" in name:
            return ProviderTimeoutError(_message(exc), provider=provider)
        # The SDKs' connection errors, and the HTTP stack's own (a stream cut midway
        # surfaces as the transport's error, not the SDK's).
        transport = type(exc).__module__.split(".")[0].startswith(("httpx", "httpcore"))
        if "Connection" in name or transport:
            return ProviderConnectionError(_message(exc), provider=provider)
        if not type(exc).__module__.startswith(("openai", "anthropic")):
            return exc  # not the SDK's: a bug is not a provider error
        return RetryableProviderError(_message(exc), provider=provider)
    msg = _message(exc)
    if status is not None and status >= 400:
        effective, shown = status, status
        wait = parse_retry_after(getattr(getattr(exc, "response", None), "headers", None))
    else:
        # In-band: the HTTP status said 200; the body names what went wrong.
        effective, shown, wait = _KIND_STATUS.get(_kind(exc), 500), None, None
    kw: dict[str, Any] = {"status": shown, "provider": provider, "retry_after": wait}
    if effective == 429:
        return RateLimitError(msg, **kw)
    if effective in (408, 409) or effective >= 500:
        return RetryableProviderError(msg, **kw)
    if effective in (401, 403):
        return AuthenticationError(msg, **kw)
    text = f"{_code(exc)} {msg}".lower()
    if any(p in text for p in _CONTEXT_PHRASES):
        return ContextLengthError(msg, **kw)
    return BadRequestError(msg, **kw)


class StreamEnd:
    """One stream's reading state: the base of each provider's stream reader. Neither SDK
    complains when the last event is missing (the connection closed after a few chunks, or
    a complete body left it out), so the reader checks: a stream without its final event
    is a cut one, never a whole answer."""

    what = "its final event"  # the event that should have come, for the error message

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.reason: str | None = None  # the finish (stop) reason, once it came
        self.usage: tuple[int, int] | None = None

    def feed(self, event: Any) -> Iterator[str]:
        """The text of one SDK stream event; other facts are kept on ``self``."""
        raise NotImplementedError

    def end(self) -> Usage:
        """The stream's last item: the usage (estimated if the provider sent none) and the
        finish reason; a ProviderConnectionError if the stream never said it finished."""
        if self.reason is None:
            raise ProviderConnectionError(
                f"the stream ended without {self.what}: the response was cut short",
                provider=self.provider,
            )
        if self.usage is None:
            return Usage(estimated=True, finish_reason=self.reason)
        return Usage(*self.usage, finish_reason=self.reason)


class Wire:
    """A provider's wire format as pure functions: the request to send, the answer and the
    stream events it sends back. No I/O: ``_adapter_async.py`` (and its generated sync
    twin) does the calls, for every provider alike."""

    provider = ""

    def __init__(self, model: str, base_url: str | None) -> None:
        if not isinstance(model, str) or not model:
            raise TypeError("model must be a non-empty str")
        self.model = model
        self.base_url = base_url

    def create(self, client: Any) -> Any:
        """The SDK method that makes the request."""
        raise NotImplementedError

    def request(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def streaming(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def answer(self, r: Any) -> LLMResponse:
        raise NotImplementedError

    def reader(self) -> StreamEnd:
        raise NotImplementedError


def response_of(parts: list[str], usage: Usage | None) -> LLMResponse:
    """A whole stream as one response."""
    if usage is None or usage.estimated:
        return LLMResponse("".join(parts), finish_reason=getattr(usage, "finish_reason", None))
    return LLMResponse(
        "".join(parts),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        finish_reason=usage.finish_reason,
    )
