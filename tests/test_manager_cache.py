"""The response cache of LLMManager: keys (route, prompt, kwargs), use_cache, enable_caching,
failures, LRU bound, TTL on the injected clock, and how hits are counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agenticaiframework.llms import (
    AllModelsFailedError,
    LLMManager,
    NonRetryableError,
)


class FakeClock:
    def __init__(self, start: float = 5_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Model:
    """Answers ``f"{tag}#{n}:{prompt}"`` (n counts calls), so a cached answer is visible."""

    def __init__(self, tag: str, fail_first: int = 0) -> None:
        self.tag = tag
        self.fail_first = fail_first
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.calls.append((prompt, dict(kwargs)))
        if len(self.calls) <= self.fail_first:
            raise NonRetryableError(f"{self.tag} failure {len(self.calls)}")
        return f"{self.tag}#{len(self.calls)}:{prompt}"

    @property
    def count(self) -> int:
        return len(self.calls)

    def prompts(self) -> list[str]:
        return [p for p, _ in self.calls]


def make(**kw: Any) -> tuple[LLMManager, FakeClock]:
    clock = FakeClock()
    kw.setdefault("sleep", lambda seconds: None)
    kw.setdefault("clock", clock)
    return LLMManager(**kw), clock


def single(**kw: Any) -> tuple[LLMManager, Model, FakeClock]:
    m, clock = make(**kw)
    a = Model("a")
    m.register_model("a", a)
    m.set_active_model("a")
    return m, a, clock


# ---------------------------------------------------------------- hits and misses


def test_repeated_prompt_is_served_from_cache() -> None:
    m, a, _ = single()
    first = m.generate("What is AI?", use_cache=True)
    second = m.generate("What is AI?", use_cache=True)
    assert first == second == "a#1:What is AI?"
    assert a.count == 1
    s = m.get_metrics()
    assert s["cache_hits"] == 1
    assert s["cache_misses"] == 1
    assert s["cache_hit_rate"] == pytest.approx(0.5)


def test_different_prompts_miss() -> None:
    m, a, _ = single()
    assert m.generate("one") == "a#1:one"
    assert m.generate("two") == "a#2:two"
    assert m.generate("one ") == "a#3:one "
    assert a.count == 3


def test_kwargs_order_hits_same_entry() -> None:
    m, a, _ = single()
    r1 = m.generate("p", temperature=0.7, max_tokens=500, stop=["\n"])
    r2 = m.generate("p", max_tokens=500, stop=["\n"], temperature=0.7)
    r3 = m.generate("p", stop=["\n"], temperature=0.7, max_tokens=500)
    assert r1 == r2 == r3
    assert a.count == 1


@pytest.mark.parametrize(
    "other",
    [
        {"temperature": 0.8, "max_tokens": 500},
        {"temperature": 0.7, "max_tokens": 501},
        {"temperature": 0.7},
        {"temperature": 0.7, "max_tokens": 500, "top_p": 1.0},
        {"temperature": "0.7", "max_tokens": 500},
        {},
    ],
)
def test_different_kwargs_miss(other: dict[str, Any]) -> None:
    m, a, _ = single()
    m.generate("p", temperature=0.7, max_tokens=500)
    m.generate("p", **other)
    assert a.count == 2
    assert a.calls[1][1] == other


def test_kwargs_values_by_content() -> None:
    m, a, _ = single()
    m.generate("p", messages=[{"role": "user", "content": "hi"}])
    m.generate("p", messages=[{"role": "user", "content": "hi"}])
    assert a.count == 1
    m.generate("p", messages=[{"role": "user", "content": "bye"}])
    assert a.count == 2


def test_uncommon_kwarg_values_do_not_crash() -> None:
    m, a, _ = single()

    class Tool:
        pass

    tool = Tool()
    assert m.generate("p", tool=tool).startswith("a#")
    assert m.generate("p", tool=tool).startswith("a#")
    assert a.calls[0][1]["tool"] is tool


def test_clear_cache() -> None:
    m, a, _ = single()
    m.generate("p")
    m.generate("p")
    assert a.count == 1
    m.clear_cache()
    assert m.generate("p") == "a#2:p"
    assert a.count == 2
    assert m.generate("p") == "a#2:p"


# ---------------------------------------------------------------- keyed by route


def test_bug_cache_keyed_by_model_switching_active_model_misses() -> None:
    m, _ = make()
    a, b = Model("a"), Model("b")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    assert m.generate("same prompt") == "a#1:same prompt"
    m.set_active_model("b")
    assert m.generate("same prompt") == "b#1:same prompt"
    assert (a.count, b.count) == (1, 1)
    # Switching back finds a's entry again.
    m.set_active_model("a")
    assert m.generate("same prompt") == "a#1:same prompt"
    m.set_active_model("b")
    assert m.generate("same prompt") == "b#1:same prompt"
    assert (a.count, b.count) == (1, 1)


def test_fallback_answer_cached_under_route_asked_for() -> None:
    m, _ = make(max_retries=1)
    a, b = Model("a", fail_first=1), Model("b")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("p") == "b#1:p"
    res = m.generate_response("p")
    assert res.cached is True and res.text == "b#1:p" and res.model == "b"
    assert (a.count, b.count) == (1, 1)
    # Asking b directly is another route: b's own answer, not the entry above.
    m.set_active_model("b")
    m.set_fallback_chain([])
    assert m.generate("p") == "b#2:p"


def test_changing_fallback_chain_changes_route() -> None:
    m, _ = make()
    a, b = Model("a"), Model("b")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.generate("p")
    m.set_fallback_chain(["b"])
    m.generate("p")
    assert a.count == 2


def test_reregistering_model_does_not_serve_old_answers() -> None:
    m, _ = make()
    old, new = Model("old"), Model("new")
    m.register_model("a", old)
    m.set_active_model("a")
    assert m.generate("p") == "old#1:p"
    m.register_model("a", new)
    assert m.generate("p") == "new#1:p"


# ---------------------------------------------------------------- use_cache / enable_caching


def test_bug_use_cache_false_neither_reads_nor_writes() -> None:
    m, a, _ = single()
    # Does not write: a later cached call misses.
    assert m.generate("q", use_cache=False) == "a#1:q"
    assert m.generate("q") == "a#2:q"
    # Does not read: the entry exists, but use_cache=False calls the model ...
    assert m.generate("q", use_cache=False) == "a#3:q"
    # ... and does not overwrite it either.
    assert m.generate("q") == "a#2:q"
    assert a.count == 3
    assert m.get_metrics()["cache_hits"] == 1


def test_use_cache_false_positional() -> None:
    m, a, _ = single()
    assert a.count == 0
    m.generate("q")
    assert m.generate("q", False) == "a#2:q"
    assert a.count == 2


def test_enable_caching_false_never_caches() -> None:
    m, a, _ = single(enable_caching=False)
    assert a.count == 0
    assert m.generate("p") == "a#1:p"
    assert m.generate("p") == "a#2:p"
    assert m.generate("p", use_cache=True) == "a#3:p"
    res = m.generate_response("p")
    assert res.cached is False and res.attempts == 1
    s = m.get_metrics()
    assert s["cache_hits"] == 0
    assert s["cache_hit_rate"] == 0.0
    assert s["successful_requests"] == 4
    assert a.count == 4


def test_failures_are_never_cached() -> None:
    m, _ = make(max_retries=1)
    a = Model("a", fail_first=1)
    m.register_model("a", a)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert m.generate("p") == "a#2:p"
    assert m.generate("p") == "a#2:p"
    assert a.count == 2


# ---------------------------------------------------------------- bound and TTL


def test_bug_cache_is_bounded() -> None:
    m, a, _ = single(cache_max_entries=3)
    prompts = [f"prompt {i}" for i in range(50)]
    for p in prompts:
        m.generate(p)
    assert a.count == 50
    for p in prompts:
        m.generate(p)
    # At most 3 of the 50 answers can still have been cached.
    assert a.count >= 97


def test_lru_evicts_least_recently_used() -> None:
    m, a, _ = single(cache_max_entries=2)
    m.generate("x")
    m.generate("y")
    m.generate("x")  # hit: x is now the most recently used
    m.generate("z")  # evicts y
    assert a.count == 3
    assert m.generate("x") == "a#1:x"  # still cached
    assert m.generate("z") == "a#3:z"  # still cached
    assert a.count == 3
    assert m.generate("y") == "a#4:y"  # was evicted


def test_cache_ttl_follows_injected_clock() -> None:
    m, a, clock = single(cache_ttl=10)
    assert m.generate("p") == "a#1:p"
    clock.advance(9)
    assert m.generate("p") == "a#1:p"
    clock.advance(2)  # 11 s after it was written
    assert m.generate("p") == "a#2:p"
    clock.advance(9)
    assert m.generate("p") == "a#2:p"
    clock.advance(5)
    assert m.generate("p") == "a#3:p"
    assert a.count == 3


def test_cache_ttl_survives_a_clock_jumping_back() -> None:
    """A wall clock stepped back a year must not keep an answer for a year plus its TTL:
    entries stored after the time jumped to are recomputed, then live one TTL."""
    m, a, clock = single(cache_ttl=10)
    clock.advance(365 * 86400)
    assert m.generate("p") == "a#1:p"
    clock.advance(-365 * 86400)
    assert m.generate("p") == "a#2:p"
    clock.advance(9)
    assert m.generate("p") == "a#2:p"
    clock.advance(1)
    assert m.generate("p") == "a#3:p"
    assert a.count == 3


def test_cache_without_ttl_does_not_expire() -> None:
    m, a, clock = single()
    m.generate("p")
    clock.advance(10**7)
    m.generate("p")
    assert a.count == 1


# ---------------------------------------------------------------- counting hits


def test_bug_hits_counted_as_successful_requests() -> None:
    m, _, _ = single()
    for _ in range(4):
        m.generate("p")
    s = m.get_metrics()
    assert s["total_requests"] == 4
    assert s["successful_requests"] == 4
    assert s["cache_hits"] == 3
    assert s["cache_misses"] == 1
    assert s["success_rate"] == 1.0
    assert s["cache_hit_rate"] == pytest.approx(0.75)


def test_generate_response_on_hit() -> None:
    m, a, _ = single()
    miss = m.generate_response("p", temperature=0)
    hit = m.generate_response("p", temperature=0)
    assert miss.cached is False and miss.attempts == 1
    assert hit.cached is True
    assert hit.attempts == 0
    assert hit.text == miss.text and hit.model == "a"
    assert a.count == 1
    # generate() and generate_response() share entries.
    assert m.generate("p", temperature=0) == miss.text
    assert a.count == 1


def test_hits_do_not_count_model_attempts() -> None:
    m, _, _ = single()
    m.generate("p")
    m.generate("p")
    m.generate("p")
    stats = m.get_model_info("a")["stats"]
    assert stats["requests"] == 1
    assert stats["successes"] == 1


def test_agenerate_response_on_hit() -> None:
    async def asleep(seconds: float) -> None:
        return None

    m, a, _ = single(async_sleep=asleep)

    async def main() -> Any:
        await m.agenerate("p")
        return await m.agenerate_response("p")

    res = asyncio.run(main())
    assert res.cached is True and res.attempts == 0
    assert a.count == 1


# ---------------------------------------------------------------- lone surrogates


def test_bug_lone_surrogate_prompts_are_cached_and_distinct() -> None:
    m, a, _ = single()
    assert m.generate("\udcff") == "a#1:\udcff"
    assert m.generate("\udcff") == "a#1:\udcff"
    assert m.generate("\udcfe") == "a#2:\udcfe"
    # Not confused with any valid string of similar bytes.
    assert m.generate("\xff") == "a#3:\xff"
    assert m.generate("\ufffd") == "a#4:\ufffd"
    assert m.generate("p", stop="\udcff") == "a#5:p"
    assert m.generate("p", stop="\udcff") == "a#5:p"
    assert m.generate("p", stop="\udcfe") == "a#6:p"
    assert a.count == 6
