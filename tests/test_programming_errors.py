"""A bug in an inference function (a wrong signature, an AttributeError or NameError raised
by its own code) is not retried: the fallback runs at once, with no backoff. Raised deeper
(an SDK, a helper), the same types are retried as before; ``retry_on`` opts back in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agenticaiframework.llms import AllModelsFailedError, LLMManager


def make(**kw: Any) -> tuple[LLMManager, list[float]]:
    waits: list[float] = []

    async def asleep(s: float) -> None:
        waits.append(s)

    m = LLMManager(sleep=waits.append, async_sleep=asleep, **kw)
    m.register_model("backup", lambda prompt, kwargs: "from backup")
    return m, waits


class Counting:
    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        self.calls += 1
        return self.fn(prompt, kwargs)


def wrong_signature(prompt: str) -> str:  # registered models take (prompt, kwargs)
    return prompt


def own_attribute_error(prompt: str, kwargs: dict[str, Any]) -> str:
    return prompt.no_such_method()  # type: ignore[attr-defined, no-any-return]


def own_name_error(prompt: str, kwargs: dict[str, Any]) -> str:
    return undefined_name  # type: ignore[name-defined, no-any-return]  # noqa: F821


def _helper(obj: Any) -> Any:
    return obj.text  # raised here: below the inference function's own frame


calls = {"deep": 0}


def deep_attribute_error(prompt: str, kwargs: dict[str, Any]) -> str:
    calls["deep"] += 1
    return str(_helper(None))


@pytest.mark.parametrize(
    "fn", [wrong_signature, own_attribute_error, own_name_error], ids=lambda f: f.__name__
)
def test_own_bug_falls_back_without_retry(fn: Any) -> None:
    m, waits = make(max_retries=3)
    m.register_model("buggy", fn)
    m.set_active_model("buggy")
    m.set_fallback_chain(["backup"])
    assert m.generate("p") == "from backup"
    assert waits == []  # no backoff
    s = m.get_model_info("buggy")["stats"]
    assert s["requests"] == 1 and s["failures"] == 1 and s["retries"] == 0


def test_lambda_with_wrong_arity_and_async_path() -> None:
    m, waits = make(max_retries=3)
    m.register_model("buggy", lambda prompt: prompt)  # type: ignore[arg-type, misc]

    async def bad_async(prompt: str) -> str:
        return prompt

    m.register_model("buggy_async", bad_async)  # type: ignore[arg-type]
    m.set_active_model("buggy")
    m.set_fallback_chain(["buggy_async", "backup"])
    assert asyncio.run(m.agenerate("p")) == "from backup"
    assert m.generate("q") == "from backup"
    assert waits == []
    for name in ("buggy", "buggy_async"):
        assert m.get_model_info(name)["stats"]["retries"] == 0


def test_only_bug_in_route_fails_at_once_with_one_error() -> None:
    m, waits = make(max_retries=3)
    m.register_model("buggy", own_attribute_error)
    m.set_active_model("buggy")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert len(ei.value.errors) == 1 and isinstance(ei.value.errors[0][1], AttributeError)
    assert waits == []
    assert m.get_model_info("buggy")["circuit_breaker_state"] == "closed"


def test_error_raised_deeper_is_still_retried() -> None:
    m, waits = make(max_retries=3, backoff_base=1.0)
    calls["deep"] = 0
    m.register_model("sdk", deep_attribute_error)
    m.set_active_model("sdk")
    m.set_fallback_chain(["backup"])
    assert m.generate("p") == "from backup"
    assert calls["deep"] == 3 and waits == [1.0, 2.0]


@pytest.mark.parametrize("where", ["manager", "model"])
def test_retry_on_opts_out(where: str) -> None:
    kw: dict[str, Any] = {"retry_on": (AttributeError,)}
    m, waits = make(max_retries=3, **(kw if where == "manager" else {}))
    fn = Counting(own_attribute_error)
    m.register_model("buggy", fn, **(kw if where == "model" else {}))
    m.set_active_model("buggy")
    m.set_fallback_chain(["backup"])
    assert m.generate("p") == "from backup"
    assert fn.calls == 3 and waits == [1.0, 2.0]


def test_callable_object_and_partial() -> None:
    import functools

    class Client:
        def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            return self.missing  # type: ignore[attr-defined, no-any-return]

    def two(prompt: str, kwargs: dict[str, Any], extra: int) -> str:
        return prompt.nope  # type: ignore[attr-defined, no-any-return]

    m, waits = make(max_retries=3)
    m.register_model("obj", Client())
    m.register_model("part", functools.partial(two, extra=1))
    m.set_active_model("obj")
    m.set_fallback_chain(["part", "backup"])
    assert m.generate("p") == "from backup"
    assert waits == []
