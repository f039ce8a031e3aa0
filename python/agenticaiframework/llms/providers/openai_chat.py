"""OpenAI-compatible chat completions through the official ``openai`` SDK: OpenAI itself,
and vLLM, Ollama, llama.cpp server, LM Studio and others through ``base_url``.

>>> fn = openai_chat("gpt-4o-mini")                    # doctest: +SKIP
>>> manager.register_model("gpt-4o-mini", fn, {"cost_per_1k_tokens": 0.0006})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..response import LLMResponse
from ._adapter_async import AsyncAdapter
from ._adapter_sync import Adapter
from ._common import StreamEnd, Wire, api_key, require

PROVIDER = "openai"


class OpenAIWire(Wire):
    """Chat completions: the request, the answer, the stream's chunks."""

    provider = PROVIDER

    def __init__(
        self,
        model: str,
        *,
        system_prompt: str | None,
        default_params: Mapping[str, Any] | None,
        stream_usage: bool,
        base_url: str | None,
    ) -> None:
        super().__init__(model, base_url)
        self.system_prompt = system_prompt
        self.default_params = dict(default_params or {})
        self.stream_usage = stream_usage

    def create(self, client: Any) -> Any:
        return client.chat.completions.create

    def request(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        params = {**self.default_params, **kwargs}
        messages = params.pop("messages", None)
        if messages is None:
            messages = [{"role": "user", "content": prompt}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
        params.pop("model", None)
        return {"model": self.model, "messages": messages, **params}

    def streaming(self, prompt: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        req = {**self.request(prompt, kwargs), "stream": True}
        if self.stream_usage:
            req.setdefault("stream_options", {"include_usage": True})
        return req

    def answer(self, r: Any) -> LLMResponse:
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

    def reader(self) -> StreamEnd:
        return _Chunks(PROVIDER)


class _Chunks(StreamEnd):
    """A chat-completions stream is whole once a chunk carries a ``finish_reason``; the
    usage chunk (when asked for) comes after it."""

    what = "a chunk with a finish_reason"

    def feed(self, chunk: Any) -> Iterator[str]:
        for choice in getattr(chunk, "choices", None) or ():
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self.reason = str(reason)
            content = getattr(getattr(choice, "delta", None), "content", None)
            if content:
                yield content
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = (usage.prompt_tokens or 0, usage.completion_tokens or 0)


class OpenAIChat(Adapter):
    """A sync inference function (with ``stream``) over ``client.chat.completions``."""


class AsyncOpenAIChat(AsyncAdapter):
    """The async twin (``async def __call__`` and ``astream``)."""


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
    wire = OpenAIWire(
        model,
        system_prompt=system_prompt,
        default_params=default_params,
        stream_usage=stream_usage,
        base_url=base_url,
    )
    return (AsyncOpenAIChat if asynchronous else OpenAIChat)(wire, client)


def api_key_of(given: str | None, base_url: str | None) -> str:
    return api_key(given, "OPENAI_API_KEY", base_url)
