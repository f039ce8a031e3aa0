"""The async adapter over any provider's wire (``_common.Wire``): the one text of the
adapters' calls. ``scripts/unasync.py`` generates its sync twin, ``_adapter_sync.py``."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from .._io_async import close_quietly
from ..response import LLMResponse, Usage
from ._common import Wire, call_create, response_of, translate


class AsyncAdapter:
    """An inference function for agenerate(): ``async def __call__`` and ``astream``."""  # sync-only: """An inference function: ``__call__`` and ``stream``."""  # noqa: E501

    def __init__(self, wire: Wire, client: Any) -> None:
        self.wire = wire
        self.model = wire.model
        self.base_url = wire.base_url
        self._client = client

    async def __call__(self, prompt: str, kwargs: Mapping[str, Any]) -> LLMResponse:
        if kwargs.get("stream"):
            # Asked for a streaming call: read the whole stream, with its ending checked.
            return await agather(self.astream(prompt, kwargs))
        wire = self.wire
        try:
            r = await call_create(wire.create(self._client), wire.request(prompt, kwargs))
        except Exception as exc:
            err = translate(exc, wire.provider)
        else:
            return wire.answer(r)
        raise err  # outside the handler: no __context__ holding the SDK's request

    async def astream(self, prompt: str, kwargs: Mapping[str, Any]) -> AsyncIterator[str | Usage]:
        """Text chunks as they arrive, then a :class:`Usage` with the finish reason (and the
        token counts when the provider reports them). A stream that ends without its final
        event was cut: ProviderConnectionError. Closing the iterator early closes the HTTP
        response."""
        wire = self.wire
        reader = wire.reader()
        events = None
        try:
            events = await call_create(wire.create(self._client), wire.streaming(prompt, kwargs))
            async for event in events:
                for piece in reader.feed(event):
                    yield piece
        except Exception as exc:
            err = translate(exc, wire.provider)
        else:
            yield reader.end()
            return
        finally:
            await close_quietly(events)
        raise err

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(model={self.model!r}{where})"


async def agather(items: AsyncIterable[str | Usage]) -> LLMResponse:
    """A whole stream as one response (``generate()`` with ``stream=True``)."""
    parts: list[str] = []
    usage: Usage | None = None
    async for item in items:
        if isinstance(item, Usage):
            usage = item
        else:
            parts.append(item)
    return response_of(parts, usage)
