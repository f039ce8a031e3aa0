"""LLMManager's hot paths beside the floor (a bare call, a functools.lru_cache hit)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from benches.conftest import (
    KWARGS_2,
    KWARGS_NESTED,
    PROMPT_32,
    aanswer,
    answer,
    fails,
    make_manager,
)

PROMPTS = {
    "32B": PROMPT_32,
    "4KB": ("lorem ipsum " * 400)[:4096],
    "1MB": ("x" * 1023 + "\n") * 1024,
}
KWARGS = {"none": {}, "two": KWARGS_2, "nested": KWARGS_NESTED}


def test_floor_bare_call(benchmark: Any) -> None:
    benchmark(answer, PROMPT_32, {})


def test_floor_lru_cache_hit(benchmark: Any) -> None:
    cached = functools.lru_cache(maxsize=None)(lambda p: "ok")
    cached(PROMPT_32)
    benchmark(cached, PROMPT_32)


@pytest.mark.parametrize("kw", list(KWARGS), ids=lambda k: f"kwargs-{k}")
@pytest.mark.parametrize("size", list(PROMPTS))
def test_generate_cache_hit(benchmark: Any, size: str, kw: str) -> None:
    m = make_manager()
    prompt, kwargs = PROMPTS[size], KWARGS[kw]
    m.generate(prompt, **kwargs)
    assert benchmark(m.generate, prompt, **kwargs) == "ok"
    assert m.get_metrics()["cache_misses"] == 1


def test_generate_first_try_no_cache(benchmark: Any) -> None:
    m = make_manager(enable_caching=False)
    assert benchmark(m.generate, PROMPT_32) == "ok"


def test_generate_fallback(benchmark: Any) -> None:
    m = make_manager(fails, enable_caching=False, max_retries=1, failure_threshold=10**4)
    m.register_model("backup", answer)
    m.set_fallback_chain(["backup"])
    # The breaker would open after 10^4 failures; reset it between rounds.
    benchmark.pedantic(
        m.generate,
        args=(PROMPT_32,),
        setup=lambda: m.reset_circuit_breaker("primary"),
        rounds=200,
        iterations=1,
    )


def test_generate_open_breaker_skip(benchmark: Any) -> None:
    m = make_manager(fails, enable_caching=False, max_retries=1, failure_threshold=1)
    m.register_model("backup", answer)
    m.set_fallback_chain(["backup"])
    m.generate(PROMPT_32)
    assert m.get_model_info("primary")["circuit_breaker_state"] == "open"
    assert benchmark(m.generate, PROMPT_32) == "ok"


def _run_batch(loop: asyncio.AbstractEventLoop, coro_fn: Any, n: int = 100) -> None:
    async def batch() -> None:
        for _ in range(n):
            await coro_fn()

    loop.run_until_complete(batch())


def test_floor_async_bare_await_x100(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    benchmark(_run_batch, loop, lambda: aanswer(PROMPT_32, {}))


def test_agenerate_cache_hit_x100(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    m = make_manager(aanswer)
    loop.run_until_complete(m.agenerate(PROMPT_32))
    benchmark(_run_batch, loop, lambda: m.agenerate(PROMPT_32))


def test_agenerate_first_try_no_cache_x100(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    m = make_manager(aanswer, enable_caching=False)
    benchmark(_run_batch, loop, lambda: m.agenerate(PROMPT_32))


def test_agenerate_open_breaker_skip_x100(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    async def afails(prompt: str, kwargs: dict[str, Any]) -> str:
        raise ConnectionError("down")

    m = make_manager(afails, enable_caching=False, max_retries=1, failure_threshold=1)
    m.register_model("backup", aanswer)
    m.set_fallback_chain(["backup"])
    loop.run_until_complete(m.agenerate(PROMPT_32))
    benchmark(_run_batch, loop, lambda: m.agenerate(PROMPT_32))
