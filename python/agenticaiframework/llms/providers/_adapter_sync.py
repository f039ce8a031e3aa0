# Generated from _adapter_async.py by scripts/unasync.py: do not edit; edit that file
# and run `make unasync` (`make lint` checks this file is current).
"""The sync adapter: the twin of ``_adapter_async.py``, generated from it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .._io_sync import close_quietly
from ..response import LLMResponse, Usage
from ._common import Wire, call_create, response_of, translate


class Adapter:
    """An inference function: ``__call__`` and ``stream``."""

    def __init__(self, wire: Wire, client: Any) -> None:
        self.wire = wire
        self.model = wire.model
        self.base_url = wire.base_url
        self._client = client

    def __call__(self, prompt: str, kwargs: Mapping[str, Any]) -> LLMResponse:
        if kwargs.get("stream"):
            # Asked for a streaming call: read the whole stream, with its ending checked.
            return gather(self.stream(prompt, kwargs))
        wire = self.wire
        try:
            r = call_create(wire.create(self._client), wire.request(prompt, kwargs))
        except Exception as exc:
            err = translate(exc, wire.provider)
        else:
            return wire.answer(r)
        raise err  # outside the handler: no __context__ holding the SDK's request

    def stream(self, prompt: str, kwargs: Mapping[str, Any]) -> Iterator[str | Usage]:
        """Text chunks as they arrive, then a :class:`Usage` with the finish reason (and the
        token counts when the provider reports them). A stream that ends without its final
        event was cut: ProviderConnectionError. Closing the iterator early closes the HTTP
        response."""
        wire = self.wire
        reader = wire.reader()
        events = None
        try:
            events = call_create(wire.create(self._client), wire.streaming(prompt, kwargs))
            for event in events:
                for piece in reader.feed(event):
                    yield piece
        except Exception as exc:
            err = translate(exc, wire.provider)
        else:
            yield reader.end()
            return
        finally:
            close_quietly(events)
        raise err

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(model={self.model!r}{where})"


def gather(items: Iterable[str | Usage]) -> LLMResponse:
    """A whole stream as one response (``generate()`` with ``stream=True``)."""
    parts: list[str] = []
    usage: Usage | None = None
    for item in items:
        if isinstance(item, Usage):
            usage = item
        else:
            parts.append(item)
    return response_of(parts, usage)
