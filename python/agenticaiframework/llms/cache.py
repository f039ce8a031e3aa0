"""The response cache tiers behind a request.

The native L1 (``ResponseCache``: sharded LRU, 128-bit keys, per process) answers a hit
inside ManagerCore's one native call, before any Python runs: that lookup is not here.
What is stored after an answer, and where a request looks when it becomes a flight's
leader, is: a second tier (a fleet's shared store) plugs in at :meth:`Tiers.store` and
:meth:`Tiers.landed` (and, when it exists, the miss path), and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._native import Record, ResponseCache


class Tiers:
    """The cache tiers of one manager (today: the native L1, or none)."""

    __slots__ = ("_peek", "_put")

    def __init__(self, l1: ResponseCache | None) -> None:
        self._put: Callable[..., bool] | None = None if l1 is None else l1.put
        self._peek: Callable[[bytes], Any] | None = None if l1 is None else l1.peek

    def store(self, key: bytes, record: Record) -> None:
        put = self._put
        if put is not None:
            # Sized by text length: the byte bound tracks what responses weigh.
            put(key, record, len(record.text) + 64)

    def landed(self, key: bytes) -> Record | None:
        """A second look, uncounted: the answer a twin stored after this request's miss."""
        peek = self._peek
        if peek is None:
            return None
        try:
            rec: Record | None = peek(key)
        except Exception:  # a clock that raised: no second look, the request goes on
            return None
        return rec
