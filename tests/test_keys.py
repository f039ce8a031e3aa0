"""Request keys: canonical (order-free, typed), keyed, and total on hostile input."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenticaiframework._native import ResponseCache

CACHE = ResponseCache(16, secret=b"0123456789abcdef")
ROUTE = ("gpt-4",)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
kwargs_st = st.dictionaries(st.text(max_size=8), values, max_size=5)


def key(prompt: str = "p", kwargs: dict[str, Any] | None = None, route: Any = ROUTE) -> bytes:
    k = CACHE.key(route, prompt, kwargs)
    assert k is not None
    return k


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with every dict's insertion order shuffled."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    if isinstance(value, tuple):
        return tuple(shuffled(v, rng) for v in value)
    return value


@settings(max_examples=300, deadline=None)
@given(kwargs=kwargs_st, seed=st.integers(0, 2**32))
def test_dict_order_does_not_matter(kwargs: dict[str, Any], seed: int) -> None:
    assert key(kwargs=kwargs) == key(kwargs=shuffled(kwargs, random.Random(seed)))


@settings(max_examples=300, deadline=None)
@given(a=kwargs_st, b=kwargs_st)
def test_unequal_kwargs_differ(a: dict[str, Any], b: dict[str, Any]) -> None:
    # Python equality mixes types (1 == 1.0 == True); the key does not, so compare by repr
    # of the canonical form instead: only truly identical requests may share a key.
    if repr(canon(a)) != repr(canon(b)):
        assert key(kwargs=a) != key(kwargs=b)


def canon(v: Any) -> Any:
    if isinstance(v, dict):
        return ("dict", sorted((k, canon(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [canon(x) for x in v])
    if isinstance(v, float) and v == 0.0:
        return ("float", 0.0)
    return (type(v).__name__, v)


@given(prompt=st.text())
def test_any_prompt_hashes(prompt: str) -> None:
    assert key(prompt) == key(prompt)


def test_type_tags_separate_look_alikes() -> None:
    looks = [{"x": v} for v in ("1", 1, 1.0, True, b"1", [1], (1,), None, {"1": 1})]
    assert len({key(kwargs=k) for k in looks}) == len(looks)
    assert key(kwargs={"x": [1, 2]}) != key(kwargs={"x": (1, 2)})
    assert key(kwargs={"x": [[1], 2]}) != key(kwargs={"x": [1, [2]]})


def test_floats_and_big_ints() -> None:
    assert key(kwargs={"t": 0.0}) == key(kwargs={"t": -0.0})
    assert key(kwargs={"t": float("nan")}) == key(kwargs={"t": -float("nan")})
    assert key(kwargs={"n": 2**64}) != key(kwargs={"n": 2**64 + 1})
    assert key(kwargs={"n": -(2**200)}) == key(kwargs={"n": -(2**200)})


def test_prompts_with_surrogates_nul_and_unicode() -> None:
    prompts = ["a\udcff", "a\udcfe", "a\x00", "a", "á", "a\ud800\udc00", "😀"]
    assert len({key(p) for p in prompts}) == len(prompts)


def test_large_prompt() -> None:
    big = "x" * (50 * 1024 * 1024)
    assert key(big) == key(big)
    assert key(big) != key(big[:-1])


def test_route_and_secret_are_part_of_the_key() -> None:
    assert key(route=("a",)) != key(route=("b",))
    same = ResponseCache(4, secret=b"0123456789abcdef")
    assert same.key(ROUTE, "p") == key()
    assert ResponseCache(4).key(ROUTE, "p") != ResponseCache(4).key(ROUTE, "p")


def test_empty_kwargs_equal_none() -> None:
    assert key(kwargs={}) == key(kwargs=None)


class Weird(str):
    def __hash__(self) -> int:
        raise RuntimeError("no hashing")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")


def test_str_subclasses_are_read_by_value() -> None:
    assert key(Weird("hello")) == key("hello")
    assert key(kwargs={"k": Weird("v")}) == key(kwargs={"k": "v"})


def nested(depth: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(depth):
        v = [v]
    return v


@pytest.mark.parametrize(
    "bad",
    [
        object(),
        lambda: None,
        nested(200),
        nested(10_000),
    ],
    ids=["object", "lambda", "depth-200", "depth-10000"],
)
def test_unhashable_values_make_the_request_uncacheable(bad: Any) -> None:
    assert CACHE.key(ROUTE, "p", {"v": bad}) is None


def test_self_referencing_containers_are_uncacheable() -> None:
    loop: list[Any] = []
    loop.append(loop)
    d: dict[str, Any] = {}
    d["self"] = d
    assert CACHE.key(ROUTE, "p", {"v": loop}) is None
    assert CACHE.key(ROUTE, "p", {"v": d}) is None


def test_non_str_prompt_is_a_type_error() -> None:
    for bad in (b"bytes", 42, None, ["p"]):
        with pytest.raises(TypeError, match="prompt must be str"):
            CACHE.key(ROUTE, bad)  # type: ignore[arg-type]
