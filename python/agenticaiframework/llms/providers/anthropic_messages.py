"""Anthropic Messages through the official ``anthropic`` SDK.

>>> fn = anthropic_messages("claude-sonnet-4-5", max_tokens=1024)   # doctest: +SKIP
>>> manager.register_model("claude", fn)                            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from .._io_async import close_quietly as aclose_quietly
from .._io_sync import close_quietly
from ..response import LLMResponse, Usage
from ._common import (
    StreamEnd,
    agather,
    api_key,
    call_create,
    gather,
    require,
    translate,
)

PROVIDER = "anthropic"


class _Base:
    def __init__(
        self,
        model: str,
        *,
        max_tokens: int,
        system_prompt: str | None,
        default_params: Mapping[str, Any] | None,
        base_url: str | None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise TypeError("model must be a non-empty str")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        self.model = model
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.default_params = dict(default_params or {})
        self.base_url = base_url

    def _request(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        params = {"max_tokens": self.max_tokens, **self.default_params, **kwargs}
        messages = params.pop("messages", None) or [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            params.setdefault("system", self.system_prompt)
        params.pop("model", None)
        return {"model": self.model, "messages": messages, **params}

    @staticmethod
    def _answer(r: Any) -> LLMResponse:
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

    @staticmethod
    def _pieces(event: Any, seen: list[Any], end: StreamEnd) -> Iterator[str]:
        """Text deltas. ``seen`` keeps the input tokens (from the message's start), the
        output tokens and the stop reason (from its last delta); only ``message_stop``
        says the message is whole, and records them in ``end``."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            usage = getattr(getattr(event, "message", None), "usage", None)
            seen[0] = getattr(usage, "input_tokens", 0) or 0
        elif kind == "content_block_delta":
            text = getattr(getattr(event, "delta", None), "text", None)
            if text:
                yield text
        elif kind == "message_delta":
            usage = getattr(event, "usage", None)
            seen[1] = getattr(usage, "output_tokens", 0) or 0
            seen[2] = getattr(getattr(event, "delta", None), "stop_reason", None)
        elif kind == "message_stop":
            end.reason = str(seen[2] or "end_turn")
            end.usage = (seen[0], seen[1])

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(model={self.model!r}{where})"


class AnthropicMessages(_Base):
    """A sync inference function (with ``stream``) over ``client.messages``."""

    def __init__(self, model: str, *, client: Any, **kw: Any) -> None:
        super().__init__(model, **kw)
        self._client = client

    def __call__(self, prompt: str, kwargs: Mapping[str, Any]) -> LLMResponse:
        if kwargs.get("stream"):
            # Asked for a streaming call: read the whole stream, with its ending checked.
            return gather(self.stream(prompt, kwargs))
        try:
            r = call_create(self._client.messages.create, self._request(prompt, kwargs))
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            return self._answer(r)
        raise err  # outside the handler: no __context__ holding the SDK's request

    def stream(self, prompt: str, kwargs: Mapping[str, Any]) -> Iterator[str | Usage]:
        """Text deltas as they arrive, then a :class:`Usage` (with the stop reason) at
        ``message_stop``. A stream that ends without ``message_stop`` was cut:
        :class:`ProviderConnectionError`. Closing the iterator early closes the HTTP
        response."""
        seen: list[Any] = [0, 0, None]
        end = StreamEnd(PROVIDER, "message_stop")
        events = None
        try:
            events = call_create(
                self._client.messages.create, {**self._request(prompt, kwargs), "stream": True}
            )
            for event in events:
                yield from self._pieces(event, seen, end)
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            yield end.usage_or_raise()
            return
        finally:
            close_quietly(events)
        raise err


class AsyncAnthropicMessages(_Base):
    """The async twin (``async def __call__`` and ``astream``)."""

    def __init__(self, model: str, *, client: Any, **kw: Any) -> None:
        super().__init__(model, **kw)
        self._client = client

    async def __call__(self, prompt: str, kwargs: Mapping[str, Any]) -> LLMResponse:
        if kwargs.get("stream"):
            return await agather(self.astream(prompt, kwargs))
        try:
            r = await call_create(self._client.messages.create, self._request(prompt, kwargs))
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            return self._answer(r)
        raise err  # outside the handler: no __context__ holding the SDK's request

    async def astream(self, prompt: str, kwargs: Mapping[str, Any]) -> AsyncIterator[str | Usage]:
        """The async twin of :meth:`AnthropicMessages.stream`."""
        seen: list[Any] = [0, 0, None]
        end = StreamEnd(PROVIDER, "message_stop")
        events = None
        try:
            events = await call_create(
                self._client.messages.create, {**self._request(prompt, kwargs), "stream": True}
            )
            async for event in events:
                for piece in self._pieces(event, seen, end):
                    yield piece
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            yield end.usage_or_raise()
            return
        finally:
            await aclose_quietly(events)
        raise err


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
    kw: dict[str, Any] = {
        "max_tokens": max_tokens,
        "system_prompt": system_prompt,
        "default_params": default_params,
        "base_url": base_url,
    }
    if asynchronous:
        return AsyncAnthropicMessages(model, client=client, **kw)
    return AnthropicMessages(model, client=client, **kw)


def api_key_of(given: str | None, base_url: str | None) -> str:
    # Unlike OpenAI-compatible servers, Anthropic always wants a key.
    return api_key(given, "ANTHROPIC_API_KEY", None)
