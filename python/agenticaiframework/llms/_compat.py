"""What differs between the CPython versions the wheel supports (3.10 and later)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):
    # asyncio.TimeoutError is the builtin TimeoutError from 3.11 on: nothing to wrap.
    wait_for = asyncio.wait_for
else:

    async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
        """``asyncio.wait_for``, raising the builtin ``TimeoutError`` (on 3.10 asyncio's
        is another class, which the walk would not read as a timeout)."""
        try:
            return await asyncio.wait_for(aw, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError from None


__all__ = ["wait_for"]
