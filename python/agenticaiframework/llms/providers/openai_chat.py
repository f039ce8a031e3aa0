"""OpenAI-compatible chat completions through the official ``openai`` SDK: OpenAI itself,
and vLLM, Ollama, llama.cpp server, LM Studio and others through ``base_url``.

>>> fn = openai_chat("gpt-4o-mini")                    # doctest: +SKIP
>>> manager.register_model("gpt-4o-mini", fn, {"cost_per_1k_tokens": 0.0006})  # doctest: +SKIP
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

PROVIDER = "openai"


class _Base:
    """Settings and request building shared by the sync and async adapters."""

    def __init__(
        self,
        model: str,
        *,
        system_prompt: str | None,
        default_params: Mapping[str, Any] | None,
        stream_usage: bool,
        base_url: str | None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise TypeError("model must be a non-empty str")
        self.model = model
        self.system_prompt = system_prompt
        self.default_params = dict(default_params or {})
        self.stream_usage = stream_usage
        self.base_url = base_url

    def _request(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        params = {**self.default_params, **kwargs}
        messages = params.pop("messages", None)
        if messages is None:
            messages = [{"role": "user", "content": prompt}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
        params.pop("model", None)
        return {"model": self.model, "messages": messages, **params}

    def _streaming(self, req: dict[str, Any]) -> dict[str, Any]:
        req = {**req, "stream": True}
        if self.stream_usage:
            req.setdefault("stream_options", {"include_usage": True})
        return req

    @staticmethod
    def _answer(r: Any) -> LLMResponse:
        choice = r.choices[0] if r.choices else None
        text = (choice.message.content if choice is not None else None) or ""
        usage = getattr(r, "usage", None)
        return LLMResponse(
            text,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            model=getattr(r, "model", None),
            finish_reason=getattr(choice, "finish_reason", None),
        )

    @staticmethod
    def _pieces(chunk: Any, end: StreamEnd) -> Iterator[str]:
        """A chunk's text; its finish reason and usage are kept in ``end``."""
        for choice in getattr(chunk, "choices", None) or ():
            reason = getattr(choice, "finish_reason", None)
            if reason:
                end.reason = str(reason)
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if content:
                yield content
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            end.usage = (usage.prompt_tokens or 0, usage.completion_tokens or 0)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(model={self.model!r}{where})"


class OpenAIChat(_Base):
    """A sync inference function (with ``stream``) over ``client.chat.completions``."""

    def __init__(self, model: str, *, client: Any, **kw: Any) -> None:
        super().__init__(model, **kw)
        self._client = client

    def __call__(self, prompt: str, kwargs: Mapping[str, Any]) -> LLMResponse:
        if kwargs.get("stream"):
            # Asked for a streaming call: read the whole stream, with its ending checked.
            return gather(self.stream(prompt, kwargs))
        try:
            r = call_create(self._client.chat.completions.create, self._request(prompt, kwargs))
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            return self._answer(r)
        raise err  # outside the handler: no __context__ holding the SDK's request

    def stream(self, prompt: str, kwargs: Mapping[str, Any]) -> Iterator[str | Usage]:
        """Text chunks as they arrive, then a :class:`Usage` with the finish reason (and
        the token counts when the server reports them). A stream that ends without a
        chunk carrying a ``finish_reason`` was cut: :class:`ProviderConnectionError`.
        Closing the iterator early closes the HTTP response."""
        chunks = None
        end = StreamEnd(PROVIDER, "a chunk with a finish_reason")
        try:
            chunks = call_create(
                self._client.chat.completions.create, self._streaming(self._request(prompt, kwargs))
            )
            for chunk in chunks:
                yield from self._pieces(chunk, end)
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            yield end.usage_or_raise()
            return
        finally:
            close_quietly(chunks)
        raise err


class AsyncOpenAIChat(_Base):
    """The async twin (``async def __call__`` and ``astream``)."""

    def __init__(self, model: str, *, client: Any, **kw: Any) -> None:
        super().__init__(model, **kw)
        self._client = client

    async def __call__(self, prompt: str, kwargs: Mapping[str, Any]) -> LLMResponse:
        if kwargs.get("stream"):
            return await agather(self.astream(prompt, kwargs))
        try:
            r = await call_create(
                self._client.chat.completions.create, self._request(prompt, kwargs)
            )
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            return self._answer(r)
        raise err  # outside the handler: no __context__ holding the SDK's request

    async def astream(self, prompt: str, kwargs: Mapping[str, Any]) -> AsyncIterator[str | Usage]:
        """The async twin of :meth:`OpenAIChat.stream`."""
        chunks = None
        end = StreamEnd(PROVIDER, "a chunk with a finish_reason")
        try:
            chunks = await call_create(
                self._client.chat.completions.create, self._streaming(self._request(prompt, kwargs))
            )
            async for chunk in chunks:
                for piece in self._pieces(chunk, end):
                    yield piece
        except Exception as exc:
            err = translate(exc, PROVIDER)
        else:
            yield end.usage_or_raise()
            return
        finally:
            await aclose_quietly(chunks)
        raise err


def openai_chat(
    model: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
    organization: str | None = None,
    system_prompt: str | None = None,
    default_params: Mapping[str, Any] | None = None,
    stream_usage: bool = True,
    asynchronous: bool = False,
    client: Any = None,
) -> OpenAIChat | AsyncOpenAIChat:
    """An inference function for an OpenAI-compatible chat model.

    The key comes from ``api_key`` or ``OPENAI_API_KEY`` (a ``base_url`` server may need
    none) and is never shown. The SDK's own retries are off (``max_retries=0``): the
    manager's policy is the only one. Per-call kwargs (``temperature``, ``max_tokens``,
    ``stop``, ...) go to the API; ``messages=`` replaces the single user message built from
    the prompt. ``asynchronous=True`` gives an ``async def`` function for ``agenerate``.
    ``stream_usage`` asks for token usage in streams (turn it off for a server that
    rejects ``stream_options``). ``client``: a ready SDK client to use instead.
    """
    if client is None:
        sdk = require("openai", "openai")
        cls = sdk.AsyncOpenAI if asynchronous else sdk.OpenAI
        client = cls(
            api_key=api_key_of(api_key, base_url),
            base_url=base_url,
            timeout=timeout,
            organization=organization,
            max_retries=0,
        )
    kw: dict[str, Any] = {
        "system_prompt": system_prompt,
        "default_params": default_params,
        "stream_usage": stream_usage,
        "base_url": base_url,
    }
    if asynchronous:
        return AsyncOpenAIChat(model, client=client, **kw)
    return OpenAIChat(model, client=client, **kw)


def api_key_of(given: str | None, base_url: str | None) -> str:
    return api_key(given, "OPENAI_API_KEY", base_url)
