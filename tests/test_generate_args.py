"""generate() reads its arguments straight from the call: the same rules as a Python
signature ``generate(prompt, use_cache=True, **kwargs)``, and the same cache keys as the
dict-based paths (generate_response, agenerate)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenticaiframework.llms import LLMManager


def make() -> tuple[LLMManager, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        seen.append(dict(kwargs))
        return f"{prompt}:{sorted(kwargs)}"

    m = LLMManager()
    m.register_model("a", fn)
    m.set_active_model("a")
    return m, seen


def test_signature_is_introspectable() -> None:
    sig = inspect.signature(LLMManager().generate)
    assert str(sig) == "(prompt, use_cache=True, **kwargs)"


def test_positional_and_keyword_forms() -> None:
    m, seen = make()
    assert m.generate("p") == "p:[]"
    assert m.generate(prompt="p") == "p:[]"
    assert m.generate("p", False) == "p:[]"
    assert m.generate("p", use_cache=False, t=1) == "p:['t']"
    assert m.generate(use_cache=True, prompt="q", a=None) == "q:['a']"
    # the function sees exactly the extra kwargs, never prompt/use_cache
    assert seen == [{}, {}, {"t": 1}, {"a": None}]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.generate(), "missing 1 required positional argument: 'prompt'"),
        (lambda m: m.generate(use_cache=True), "missing 1 required"),
        (lambda m: m.generate("p", True, 3), "at most 2 positional arguments"),
        (lambda m: m.generate("p", prompt="q"), "multiple values for argument 'prompt'"),
        (lambda m: m.generate("p", True, use_cache=False), "multiple values"),
        (lambda m: m.generate("p", use_cache=1), "use_cache must be a bool, not int"),
        (lambda m: m.generate(b"p"), "prompt must be str, not bytes"),
    ],
)
def test_bad_arguments_are_type_errors_and_count_nothing(call: Any, message: str) -> None:
    m, seen = make()
    with pytest.raises(TypeError, match=message):
        call(m)
    assert m.get_metrics()["total_requests"] == 0 and seen == []


def test_kwargs_order_never_matters_and_paths_share_keys() -> None:
    m, seen = make()
    m.generate("p", a=1, b=[1, 2], c={"x": 1.5})
    assert m.generate("p", c={"x": 1.5}, b=[1, 2], a=1) == "p:['a', 'b', 'c']"
    assert m.generate_response("p", b=[1, 2], a=1, c={"x": 1.5}).cached
    assert asyncio.run(m.agenerate_response("p", c={"x": 1.5}, a=1, b=[1, 2])).cached
    assert len(seen) == 1


def test_uncacheable_kwarg_is_served_and_passed_through() -> None:
    m, seen = make()
    obj = object()
    assert m.generate("p", o=obj) == "p:['o']"
    assert m.generate("p", o=obj) == "p:['o']"
    assert len(seen) == 2 and seen[0]["o"] is obj


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(), kids, max_size=3),
    max_leaves=8,
)
names = st.text(min_size=1, max_size=8).filter(lambda s: s not in ("prompt", "use_cache"))


@given(st.dictionaries(names, values, max_size=5), st.text(max_size=20))
def test_vectorcall_and_dict_paths_agree_on_keys(kwargs: dict[str, Any], prompt: str) -> None:
    m, seen = make()
    m.generate_response(prompt, **kwargs)  # stores through the dict-keyed path
    assert m.generate(prompt, **dict(reversed(list(kwargs.items()))))
    assert len(seen) == 1
