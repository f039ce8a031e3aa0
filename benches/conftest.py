"""Shared set-up for the benchmark suites: managers whose models return at once, so the
figures are the library's own cost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agenticaiframework.llms import LLMManager

PROMPT_32 = "Explain circuit breakers briefly."[:32].ljust(32, ".")
KWARGS_2 = {"temperature": 0.7, "max_tokens": 500}
KWARGS_NESTED = {
    "temperature": 0.7,
    "max_tokens": 500,
    "response_format": {"type": "json_schema", "schema": {"type": "object", "strict": True}},
}


def answer(prompt: str, kwargs: dict[str, Any]) -> str:
    return "ok"


async def aanswer(prompt: str, kwargs: dict[str, Any]) -> str:
    return "ok"


def fails(prompt: str, kwargs: dict[str, Any]) -> str:
    raise ConnectionError("down")


async def _no_wait(_: float) -> None:
    return None


def make_manager(fn: Any = answer, **kw: Any) -> LLMManager:
    m = LLMManager(sleep=lambda _: None, async_sleep=_no_wait, **kw)
    m.register_model("primary", fn)
    m.set_active_model("primary")
    return m


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()
