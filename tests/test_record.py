"""Record (what the cache stores) and ModelCore.answered (the first-try success in one call)."""

from __future__ import annotations

import sys

import pytest

from agenticaiframework._native import BreakerCore, ManagerStats, ModelCore, ModelStats, Record


def test_record_fields_and_size() -> None:
    r = Record("hello", "gpt", 3, 2, True)
    assert (r.text, r.model, r.prompt_tokens, r.completion_tokens, r.estimated) == (
        "hello",
        "gpt",
        3,
        2,
        True,
    )
    assert "5 chars" in repr(r) and "hello" not in repr(r)  # answers stay out of reprs
    assert sys.getsizeof(r) < sys.getsizeof(("hello", "gpt", 3, 2, True))
    with pytest.raises(TypeError):
        Record(b"bytes", "gpt")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        Record("t", "m", -1)


def test_answered_books_everything_once() -> None:
    breaker, stats, manager = BreakerCore(1, 10.0), ModelStats(), ManagerStats()
    core = ModelCore(breaker, stats, "m", manager)

    class Prompt(str):
        def __len__(self) -> int:
            raise RuntimeError("user code must not run")

    token = core.begin()
    r = core.answered(token, Prompt("12345678"), "abcde")
    assert (r.model, r.prompt_tokens, r.completion_tokens, r.estimated) == ("m", 2, 2, True)
    s = stats.snapshot()
    assert (s["requests"], s["successes"], s["tokens"]) == (1, 1, 4)
    assert manager.snapshot()["successful_requests"] == 1
    assert manager.snapshot()["total_tokens"] == 4
    with pytest.raises(ValueError, match="name= and manager="):
        ModelCore(breaker, stats).answered(token, "p", "t")
