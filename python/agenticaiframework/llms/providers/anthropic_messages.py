"""Anthropic Messages through the official ``anthropic`` SDK.

>>> fn = anthropic_messages("claude-sonnet-4-5", max_tokens=1024)   # doctest: +SKIP
>>> manager.register_model("claude", fn)                            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..response import LLMResponse
from ._adapter_async import AsyncAdapter
from ._adapter_sync import Adapter
from ._common import StreamEnd, Wire, api_key, require

PROVIDER = "anthropic"


class AnthropicWire(Wire):
    """Messages: the request, the answer, the stream's events."""

    provider = PROVIDER

    def __init__(
        self,
        model: str,
        *,
        max_tokens: int,
        system_prompt: str | None,
        default_params: Mapping[str, Any] | None,
        base_url: str | None,
    ) -> None:
        super().__init__(model, base_url)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.default_params = dict(default_params or {})

    def create(self, client: Any) -> Any:
        return client.messages.create

    def request(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        params = {"max_tokens": self.max_tokens, **self.default_params, **kwargs}
        messages = params.pop("messages", None) or [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            params.setdefault("system", self.system_prompt)
        params.pop("model", None)
        return {"model": self.model, "messages": messages, **params}

    def streaming(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.request(prompt, kwargs), "stream": True}

    def answer(self, r: Any) -> LLMResponse:
        text = "".join(
            getattr(block, "text", "") or ""
            for block in (getattr(r, "content", None) or ())
            if getattr(block, "type", None) == "text"
        )
        usage = getattr(r, "usage", None)
        return LLMResponse(
            text,
            prompt_tokens=getattr(usage, "input_tokens", None),
            completion_tokens=getattr(usage, "output_tokens", None),
            model=getattr(r, "model", None),
            finish_reason=getattr(r, "stop_reason", None),
        )

    def reader(self) -> StreamEnd:
        return _Events(PROVIDER)


class _Events(StreamEnd):
    """A messages stream: input tokens at its start, output tokens and the stop reason
    with its last delta; only ``message_stop`` says the message is whole."""

    what = "message_stop"

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self.input_tokens = self.output_tokens = 0
        self.stop: str | None = None

    def feed(self, event: Any) -> Iterator[str]:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            usage = getattr(getattr(event, "message", None), "usage", None)
            self.input_tokens = getattr(usage, "input_tokens", 0) or 0
        elif kind == "content_block_delta":
            text = getattr(getattr(event, "delta", None), "text", None)
            if text:
                yield text
        elif kind == "message_delta":
            usage = getattr(event, "usage", None)
            self.output_tokens = getattr(usage, "output_tokens", 0) or 0
            self.stop = getattr(getattr(event, "delta", None), "stop_reason", None)
        elif kind == "message_stop":
            self.reason = str(self.stop or "end_turn")
            self.usage = (self.input_tokens, self.output_tokens)


class AnthropicMessages(Adapter):
    """A sync inference function (with ``stream``) over ``client.messages``."""


class AsyncAnthropicMessages(AsyncAdapter):
    """The async twin (``async def __call__`` and ``astream``)."""


def anthropic_messages(
    model: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
    max_tokens: int = 1024,
    system_prompt: str | None = None,
    default_params: Mapping[str, Any] | None = None,
    asynchronous: bool = False,
    client: Any = None,
) -> AnthropicMessages | AsyncAnthropicMessages:
    """An inference function for an Anthropic model (Messages API).

    The key comes from ``api_key`` or ``ANTHROPIC_API_KEY`` and is never shown; the SDK's
    retries are off (``max_retries=0``). Per-call kwargs go to the API (``max_tokens``
    overrides the default); ``messages=`` replaces the single user message.
    """
    if client is None:
        sdk = require("anthropic", "anthropic")
        cls = sdk.AsyncAnthropic if asynchronous else sdk.Anthropic
        client = cls(
            api_key=api_key_of(api_key, base_url),
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
        )
    wire = AnthropicWire(
        model,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        default_params=default_params,
        base_url=base_url,
    )
    return (AsyncAnthropicMessages if asynchronous else AnthropicMessages)(wire, client)


def api_key_of(given: str | None, base_url: str | None) -> str:
    # Unlike OpenAI-compatible servers, Anthropic always wants a key.
    return api_key(given, "ANTHROPIC_API_KEY", None)
