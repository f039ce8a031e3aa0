"""Issue 8, hostile input: prompts, kwargs and configuration that try to break the manager.

Every case ends in one of two ways: a stable cache key (the same request hits) or an
uncacheable request (served, never cached). Never a crash, a hang, a panic or an error that
blames the model for the caller's input; and the metrics still add up afterwards.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agenticaiframework._native import ResponseCache
from agenticaiframework.llms import CircuitBreaker, LLMManager

ROUTE = ("m",)
CACHE = ResponseCache(16, secret=b"hardening-input!")


# ---------------------------------------------------------------- helpers


class Counting:
    """An inference function that answers ``ok:<prompt length>`` and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[tuple[Any, dict[str, Any]]] = []
        self.keep = False

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.calls += 1
        if self.keep:
            self.seen.append((prompt, kwargs))
        return f"ok:{str.__len__(prompt)}"


async def _no_wait(seconds: float) -> None:
    return None


def manager(fn: Callable[[str, dict[str, Any]], Any] | None = None, **kw: Any) -> LLMManager:
    kw.setdefault("sleep", lambda seconds: None)
    kw.setdefault("async_sleep", _no_wait)
    kw.setdefault("clock", lambda: 0.0)
    m = LLMManager(**kw)
    m.register_model("m", fn if fn is not None else Counting())
    m.set_active_model("m")
    return m


def model_of(m: LLMManager) -> Counting:
    fn = m._models["m"].fn
    assert isinstance(fn, Counting)
    return fn


def assert_metrics_add_up(m: LLMManager) -> None:
    """Once no call is running: every request has exactly one outcome, every attempt too."""
    s = m.get_metrics()
    outcomes = s["successful_requests"] + s["failed_requests"] + s["cancelled_requests"]
    assert s["total_requests"] == outcomes, s
    assert s["cache_hits"] + s["cache_misses"] <= s["total_requests"], s
    for name in m.list_models():
        st_ = m.get_model_info(name)["stats"]
        assert st_["requests"] == st_["successes"] + st_["failures"] + st_["cancelled"], st_


def key(kwargs: dict[str, Any] | None, prompt: str = "p") -> bytes | None:
    return CACHE.key(ROUTE, prompt, kwargs)


def nested_list(depth: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(depth):
        v = [v]
    return v


def nested_dict(depth: int) -> dict[str, Any]:
    v: dict[str, Any] = {}
    for _ in range(depth):
        v = {"n": v}
    return v


def nested_tuple(depth: int) -> tuple[Any, ...]:
    v: tuple[Any, ...] = ()
    for _ in range(depth):
        v = (v,)
    return v


def nested_frozenset(depth: int) -> frozenset[Any]:
    v: frozenset[Any] = frozenset()
    for _ in range(depth):
        v = frozenset([v])
    return v


def nested_mixed(depth: int) -> Any:
    v: Any = 0
    for i in range(depth):
        v = [v] if i % 3 == 0 else {"k": v} if i % 3 == 1 else (v, i)
    return v


class Raising:
    """An object whose every dunder a key could use raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __iter__(self) -> Any:
        raise RuntimeError("iter")

    def __getstate__(self) -> Any:
        raise RuntimeError("getstate")


class OddStr(str):
    """A str whose hashing, comparison and printing all raise: read by value only."""

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("ne")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("lt")

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("format")

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("encode")


class LyingStr(str):
    """A str that claims to equal everything and hashes to a constant."""

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False


class OddInt(int):
    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __index__(self) -> int:
        raise RuntimeError("index")

    def __int__(self) -> int:
        raise RuntimeError("int")


class OddFloat(float):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __float__(self) -> float:
        raise RuntimeError("float")


class OddList(list[Any]):
    def __iter__(self) -> Any:
        raise RuntimeError("iter")

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __getitem__(self, i: Any) -> Any:
        raise RuntimeError("getitem")


class OddDict(dict[str, Any]):
    def __iter__(self) -> Any:
        raise RuntimeError("iter")

    def items(self) -> Any:
        raise RuntimeError("items")

    def __getitem__(self, k: Any) -> Any:
        raise RuntimeError("getitem")


# ---------------------------------------------------------------- prompts

PROMPTS = [
    "",
    "\x00",
    "a\x00b\x00",
    "\ud800",
    "\udfff",
    "a\udcff",
    "\udc00\ud800",  # reversed pair: two lone surrogates
    "\ud800\udc00",  # a pair of surrogate code points, not one astral char
    "\U00010000",
    "\U0010ffff",
    "\ufeff",
    "\ufffe\uffff",
    "é",
    "e\u0301",  # the same text as "é" after NFC, a different request before it
    "\u202e" + "right to left",
    "\r\n\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    "😀" * 1000,
    "x" * 70_000,  # above the size at which the prompt is hashed without the GIL
]


@pytest.mark.parametrize("prompt", PROMPTS, ids=range(len(PROMPTS)))
def test_every_prompt_is_served_and_cached_by_value(prompt: str) -> None:
    m = manager()
    assert m.generate(prompt) == f"ok:{len(prompt)}"
    # An equal str built anew (not the same object) is the same request.
    again = "".join(list(prompt))
    assert m.generate(again) == f"ok:{len(prompt)}"
    assert model_of(m).calls == 1
    assert m.get_metrics()["cache_hits"] == 1
    assert_metrics_add_up(m)


def test_prompts_differing_anywhere_are_different_requests() -> None:
    m = manager()
    for p in PROMPTS:
        m.generate(p)
    assert model_of(m).calls == len(set(PROMPTS))
    assert len({key(None, p) for p in PROMPTS}) == len(set(PROMPTS))


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_any_str_prompt_round_trips_through_the_manager(prompt: str) -> None:
    # exclude_categories=() lets lone surrogates (category Cs) in.
    m = manager()
    fn = model_of(m)
    fn.keep = True
    assert m.generate(prompt) == f"ok:{len(prompt)}"
    assert m.generate(prompt) == f"ok:{len(prompt)}"
    assert fn.calls == 1
    assert fn.seen[0][0] == prompt  # the model got the prompt unchanged
    assert_metrics_add_up(m)


def test_hundred_megabyte_prompt() -> None:
    big = "x" * (100 * 1024 * 1024)
    m = manager()
    fn = model_of(m)
    fn.keep = True
    assert m.generate(big) == f"ok:{len(big)}"
    assert fn.seen[0][0] is big  # handed over, not copied
    assert m.generate(big) == f"ok:{len(big)}"  # a hit
    assert fn.calls == 1
    assert m.generate(big[:-1] + "y") == f"ok:{len(big)}"  # differs in the last byte
    assert fn.calls == 2
    assert m.get_metrics()["total_tokens"] > 2 * len(big) // 4
    assert_metrics_add_up(m)


def test_large_prompt_with_a_lone_surrogate_at_the_end() -> None:
    big = "y" * (16 * 1024 * 1024)
    a, b = big + "\udcff", big + "\udcfe"
    m = manager()
    assert m.generate(a) == m.generate(a + "")
    assert model_of(m).calls == 1
    m.generate(b)
    assert model_of(m).calls == 2


BAD_PROMPTS = [b"bytes", bytearray(b"ba"), 42, 4.2, None, ["p"], ("p",), {"p": 1}, Raising()]


@pytest.mark.parametrize("bad", BAD_PROMPTS, ids=lambda b: type(b).__name__)
def test_non_str_prompts_are_type_errors_everywhere_and_not_counted(bad: Any) -> None:
    m = manager()

    async def both_async() -> None:
        with pytest.raises(TypeError, match="prompt"):
            await m.agenerate(bad)
        with pytest.raises(TypeError, match="prompt"):
            await m.agenerate_response(bad)
        with pytest.raises(TypeError, match="prompt"):
            m.astream(bad)

    with pytest.raises(TypeError, match="prompt"):
        m.generate(bad)
    with pytest.raises(TypeError, match="prompt"):
        m.generate_response(bad)
    with pytest.raises(TypeError, match="prompt"):
        m.stream(bad)
    asyncio.run(both_async())
    assert model_of(m).calls == 0
    assert m.get_metrics()["total_requests"] == 0
    assert m.generate("fine") == "ok:4"  # still serving


def test_str_subclass_with_raising_dunders_is_read_by_value() -> None:
    m = manager()
    fn = model_of(m)
    fn.keep = True
    odd = OddStr("hello")
    assert m.generate(odd) == "ok:5"
    assert fn.seen[0][0] is odd  # the model gets the caller's object
    assert m.generate("hello") == "ok:5"  # and a plain str is the same request
    assert fn.calls == 1
    assert key(None, odd) == key(None, "hello")
    # ... in kwargs too, as values and as dict keys.
    assert key({"k": OddStr("v")}) == key({"k": "v"})
    d: dict[Any, Any] = {}
    dict.__setitem__(d, LyingStr("a"), 1)
    dict.__setitem__(d, LyingStr("b"), 2)  # constant hash, "equal": both stay (by identity)
    assert key({"d": d}) is not None
    assert key({"k": LyingStr("v")}) == key({"k": "v"}) != key({"k": "w"})
    assert_metrics_add_up(m)


def test_str_subclass_whose_len_raises_does_not_fail_the_model() -> None:
    class NoLen(str):
        def __len__(self) -> int:
            raise RuntimeError("len")

    m = manager(max_retries=3)
    assert m.generate(NoLen("hello")) == "ok:5"
    assert model_of(m).calls == 1


# ---------------------------------------------------------------- kwargs: key properties

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats()  # NaN, inf, -0.0 included
    | st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
    | st.binary(max_size=8)
    | st.binary(max_size=8).map(bytearray)
)
hashables = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=20,
)
# The request methods' own parameter names are not model kwargs ("prompt" passed twice is
# Python's TypeError; a hypothesis draw found {"prompt": None}).
RESERVED = {"prompt", "use_cache", "timeout", "deadline", "stream_deadline"}
kwargs_st = st.dictionaries(
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=6).filter(
        lambda k: k not in RESERVED
    ),
    values,
    max_size=5,
)
ODD_FACTORIES: list[Callable[[], Any]] = [
    Raising,
    object,
    lambda: OddList([1]),
    lambda: OddDict(a=1),
    lambda: OddStr("s"),
    lambda: OddInt(7),
    lambda: OddFloat(1.5),
    lambda: len,
    lambda: type,
    lambda: ...,
    lambda: NotImplemented,
    lambda: 1j,
    lambda: range(3),
    lambda: memoryview(b"ab"),
]
# Indexes, not the objects: hypothesis hashes what it samples, and these refuse.
odd_values = st.integers(0, len(ODD_FACTORIES) - 1).map(lambda i: ODD_FACTORIES[i]())
hostile_kwargs = st.dictionaries(
    st.text(max_size=4).filter(lambda k: k not in RESERVED),
    values | odd_values | st.lists(odd_values, max_size=2),
    max_size=4,
)


@given(kwargs=hostile_kwargs)
@settings(max_examples=300)
def test_key_is_total_and_stable(kwargs: dict[str, Any]) -> None:
    k = key(kwargs)
    assert k is None or (isinstance(k, bytes) and len(k) == 16)
    assert key(kwargs) == k
    try:
        twin = copy.deepcopy(kwargs)
    except Exception:
        return  # some odd values refuse to be copied; stability on the original suffices
    assert key(twin) == k


@given(kwargs=kwargs_st)
@settings(max_examples=300)
def test_builtin_values_always_have_a_key(kwargs: dict[str, Any]) -> None:
    k = key(kwargs)
    assert k is not None
    assert key(copy.deepcopy(kwargs)) == k


@given(
    items=st.lists(hashables, min_size=1, max_size=6, unique_by=repr),
    seed=st.randoms(use_true_random=False),
)
@settings(max_examples=200)
def test_sets_and_non_str_dicts_ignore_order(items: list[Any], seed: Any) -> None:
    # Items equal but of different types (False and 0) make the set keep whichever came
    # first, and keys tell False from 0 on purpose: such lists are not this property's.
    assume(len(set(items)) == len(items))
    shuffled = list(items)
    seed.shuffle(shuffled)
    assert key({"s": set(items)}) == key({"s": set(shuffled)})
    assert key({"f": frozenset(items)}) == key({"f": frozenset(shuffled)})
    d1 = {x: i for i, x in enumerate(items)}
    d2 = {x: d1[x] for x in shuffled}
    if len(d1) == len(items):  # 1 == 1.0 == True: equal keys collapse
        assert key({"d": d1}) == key({"d": d2})


def test_nan_and_signed_zero() -> None:
    nan = float("nan")
    assert key({"t": nan}) == key({"t": float("nan")}) == key({"t": -nan})
    assert key({"t": 0.0}) == key({"t": -0.0})
    assert key({"t": math.inf}) != key({"t": -math.inf})
    assert key({"t": [nan, -0.0]}) == key({"t": [float("nan"), 0.0]})
    m = manager()
    m.generate("p", t=nan)
    m.generate("p", t=float("nan"))  # nan != nan, yet the same request
    m.generate("p", t=0.0)
    m.generate("p", t=-0.0)
    assert model_of(m).calls == 2
    assert_metrics_add_up(m)


# ---------------------------------------------------------------- kwargs: hostile shapes

DEEP = 10_000


@pytest.mark.parametrize(
    "make",
    [nested_list, nested_dict, nested_tuple, nested_frozenset, nested_mixed],
    ids=["list", "dict", "tuple", "frozenset", "mixed"],
)
def test_ten_thousand_levels_are_uncacheable_not_a_crash(make: Callable[[int], Any]) -> None:
    deep = make(DEEP)
    assert key({"v": deep}) is None
    m = manager()
    assert m.generate("p", v=deep) == "ok:1"
    assert m.generate("p", v=deep) == "ok:1"
    assert model_of(m).calls == 2  # served, never cached
    assert m.get_metrics()["cache_size"] == 0
    assert_metrics_add_up(m)


@pytest.mark.parametrize(
    "make", [nested_list, nested_dict, nested_tuple, nested_frozenset], ids=str
)
def test_moderate_nesting_is_cached(make: Callable[[int], Any]) -> None:
    assert key({"v": make(32)}) is not None
    assert key({"v": make(32)}) == key({"v": make(32)})
    assert key({"v": make(32)}) != key({"v": make(31)})


def self_referencing() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    mutual_a: list[Any] = []
    mutual_b: dict[str, Any] = {"a": mutual_a}
    mutual_a.append(mutual_b)
    return [loop, d, mutual_a, [loop, d], {"x": (loop,)}]


@pytest.mark.parametrize(
    "value", self_referencing(), ids=["list", "dict", "mutual", "in-list", "in-tuple"]
)
def test_self_referencing_kwargs_are_uncacheable_not_a_crash(value: Any) -> None:
    assert key({"v": value}) is None
    m = manager()
    assert m.generate("p", v=value) == "ok:1"
    assert m.generate("p", v=value) == "ok:1"
    assert model_of(m).calls == 2
    assert_metrics_add_up(m)


@pytest.mark.parametrize("which", ["self-referencing", "deep"])
def test_failure_with_self_referencing_or_deep_dict_kwargs_falls_back(which: str) -> None:
    d: dict[str, Any] = {}
    d["self"] = d
    value = d if which == "self-referencing" else nested_dict(DEEP)

    def down(prompt: str, kwargs: dict[str, Any]) -> str:
        raise ConnectionError("down")

    m = manager(down, max_retries=2)
    m.register_model("backup", lambda p, k: "backup")
    m.set_fallback_chain(["backup"])
    assert m.generate("p", v=value) == "backup"
    assert_metrics_add_up(m)
    assert m.get_metrics()["cancelled_requests"] == 0


def test_self_referencing_metadata_registers() -> None:
    meta: dict[str, Any] = {"provider": "x"}
    meta["self"] = meta
    m = manager()
    m.register_model("n", lambda p, k: "x", meta)
    assert m.get_model_info("n")["name"] == "n"


def test_huge_collections() -> None:
    big_list = list(range(1_000_000))
    big_dict = {f"k{i}": i for i in range(100_000)}
    big_set = set(range(100_000))
    big_bytes = b"\x00" * (10 * 1024 * 1024)
    m = manager()
    for kw in ({"l": big_list}, {"d": big_dict}, {"s": big_set}, {"b": big_bytes}):
        assert key(kw) is not None
        m.generate("p", **kw)
        m.generate("p", **copy.copy(kw))
    assert model_of(m).calls == 4
    assert m.get_metrics()["cache_hits"] == 4
    # A one-element change anywhere is a different request.
    big_list[654_321] = -1
    m.generate("p", l=big_list)
    assert model_of(m).calls == 5
    assert_metrics_add_up(m)


def test_many_kwargs() -> None:
    kw = {f"arg{i}": i for i in range(10_000)}
    m = manager()
    m.generate("p", **kw)
    m.generate("p", **dict(reversed(list(kw.items()))))
    assert model_of(m).calls == 1


@pytest.mark.parametrize(
    "value",
    [
        Raising(),
        [1, Raising()],
        {"a": Raising()},
        (Raising(),),
        OddList([1, 2]),
        OddDict(a=1),
        OddInt(3),
        OddFloat(2.5),
        memoryview(b"x"),
        1j,
        range(2),
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_whose_dunders_raise(value: Any) -> None:
    """Either read by value without calling Python code (subclasses of builtins) or
    uncacheable; never does the key call __repr__, __hash__, __eq__ or __iter__."""
    k = key({"v": value})
    assert k is None or k == key({"v": value})
    m = manager()
    assert m.generate("p", v=value) == "ok:1"
    assert m.generate("p", v=value) == "ok:1"
    assert model_of(m).calls == (2 if k is None else 1)
    assert_metrics_add_up(m)


def test_subclasses_of_builtins_are_read_by_value() -> None:
    assert key({"v": OddInt(3)}) == key({"v": 3})
    assert key({"v": OddFloat(2.5)}) == key({"v": 2.5})
    assert key({"v": OddList([1, 2])}) == key({"v": [1, 2]})
    assert key({"v": OddDict(a=1)}) == key({"v": {"a": 1}})


def test_dict_keys_whose_eq_raises() -> None:
    class K:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("eq")

    d = {K(): 1}
    assert key({"d": d}) is None
    m = manager()
    assert m.generate("p", d=d) == "ok:1"


def test_mutating_a_kwarg_after_the_call() -> None:
    m = manager()
    history = [{"role": "user", "content": "hi"}]
    m.generate("p", messages=history)
    history.append({"role": "assistant", "content": "ok"})
    # The cache kept a key of what was asked, not a reference to the caller's list.
    m.generate("p", messages=history)
    assert model_of(m).calls == 2
    m.generate("p", messages=[{"role": "user", "content": "hi"}])
    assert model_of(m).calls == 2  # the original request still hits
    history.clear()
    m.generate("p", messages=[{"content": "hi", "role": "user"}])
    assert model_of(m).calls == 2
    assert_metrics_add_up(m)


def test_model_mutating_its_kwargs_does_not_change_the_stored_key() -> None:
    def mutator(prompt: str, kwargs: dict[str, Any]) -> str:
        kwargs["messages"].append("injected")
        kwargs["extra"] = object()
        return "answer"

    m = manager(mutator)
    msgs = ["hi"]
    assert m.generate("p", messages=msgs) == "answer"
    assert msgs == ["hi", "injected"]  # the model changed the caller's list
    assert m.generate("p", messages=["hi"]) == "answer"  # hit: keyed before the call
    assert m.get_metrics()["cache_hits"] == 1


def test_bytearray_kwarg_mutated_after_the_call() -> None:
    m = manager()
    buf = bytearray(b"abc")
    m.generate("p", b=buf)
    buf[0] = ord("z")
    m.generate("p", b=buf)
    m.generate("p", b=bytearray(b"abc"))
    assert model_of(m).calls == 2


def test_kwargs_named_like_generate_parameters() -> None:
    m = manager()
    fn = model_of(m)
    fn.keep = True
    m.generate("p", prompt_tokens=1, kwargs={"x": 1}, self=1)
    assert fn.seen[0][1] == {"prompt_tokens": 1, "kwargs": {"x": 1}, "self": 1}


# ---------------------------------------------------------------- the manager under hypothesis


@given(kwargs=hostile_kwargs, prompt=st.text(max_size=10), use_cache=st.booleans())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_manager_serves_any_kwargs(kwargs: dict[str, Any], prompt: str, use_cache: bool) -> None:
    m = manager()
    fn = model_of(m)
    assert m.generate(prompt, use_cache, **kwargs) == f"ok:{len(prompt)}"
    assert m.generate(prompt, use_cache, **kwargs) == f"ok:{len(prompt)}"
    cacheable = use_cache and key(kwargs, prompt) is not None
    assert fn.calls == (1 if cacheable else 2)
    s = m.get_metrics()
    assert s["cache_hits"] == (1 if cacheable else 0)
    assert s["cache_size"] == (1 if cacheable else 0)
    assert_metrics_add_up(m)


@given(kwargs=kwargs_st, prompt=st.text(max_size=10))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_async_and_sync_share_keys(kwargs: dict[str, Any], prompt: str) -> None:
    m = manager()
    fn = model_of(m)
    assert asyncio.run(m.agenerate(prompt, **kwargs)) == f"ok:{len(prompt)}"
    assert m.generate(prompt, **copy.deepcopy(kwargs)) == f"ok:{len(prompt)}"
    assert fn.calls == 1
    assert_metrics_add_up(m)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "name",
    ["generate", "generate_response", "agenerate", "agenerate_response", "stream", "astream"],
)
def test_use_cache_must_be_a_bool_everywhere(name: str) -> None:
    m = manager()

    def call() -> Any:
        out = getattr(m, name)("p", "yes")
        if name == "stream":
            return list(out)
        if name == "astream":

            async def drain() -> list[str]:
                return [c async for c in out]

            return asyncio.run(drain())
        if asyncio.iscoroutine(out):
            return asyncio.run(out)
        return out

    with pytest.raises(TypeError, match="use_cache"):
        call()
    assert model_of(m).calls == 0
    assert_metrics_add_up(m)


@pytest.mark.parametrize("timeout", [-1, math.nan, math.inf, "1", True])
@pytest.mark.parametrize("name", ["agenerate", "agenerate_response"])
def test_bad_timeout_is_a_typed_error_naming_it(name: str, timeout: Any) -> None:
    m = manager()
    with pytest.raises((TypeError, ValueError), match="timeout"):
        asyncio.run(getattr(m, name)("p", timeout=timeout))
    assert model_of(m).calls == 0
    assert m.generate("p") == "ok:1"  # still serving


@pytest.mark.parametrize("name", ["agenerate", "agenerate_response"])
def test_bad_timeout_leaves_the_metrics_adding_up(name: str) -> None:
    m = manager()
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(getattr(m, name)("p", timeout=-1))
    assert_metrics_add_up(m)


def test_astream_bad_timeout_is_rejected_at_once() -> None:
    m = manager()
    for bad in (-1, math.nan, "1"):
        with pytest.raises((TypeError, ValueError), match="timeout"):
            m.astream("p", timeout=bad)
    assert_metrics_add_up(m)


OUT_OF_RANGE = [
    pytest.param("failure_threshold", 10**6),
    pytest.param("failure_threshold", 2**70),
    pytest.param("half_open_max_calls", 10**6),
    pytest.param("recovery_timeout", 1e12),
    pytest.param("cache_max_entries", 2**70),
    pytest.param("cache_max_bytes", 2**70),
    pytest.param("max_retries", 2**70),
    pytest.param("backoff_base", 1e308),
    pytest.param("backoff_max", 1e308),
    pytest.param("cache_ttl", 1e308),
    pytest.param("cache_ttl", 1e-300),
    pytest.param("recovery_timeout", 1e-300),
]


@pytest.mark.parametrize(("name", "value"), OUT_OF_RANGE)
def test_out_of_range_configuration_fails_at_construction_or_works(name: str, value: Any) -> None:
    """Either the constructor rejects the value with a ValueError naming the parameter, or
    the manager it builds works: it registers a model and serves. Never a late error (at
    register_model) or one that does not say which parameter is wrong."""
    try:
        m = LLMManager(**{name: value}, sleep=lambda s: None, clock=lambda: 0.0)
    except ValueError as e:
        assert name in str(e), e
        return
    m.register_model("m", Counting())
    m.set_active_model("m")
    assert m.generate("p") == "ok:1"
    assert m.generate("p") == "ok:1"
    assert_metrics_add_up(m)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("failure_threshold", 2**70),
        ("half_open_max_calls", 2**70),
        ("failure_threshold", 10**6),
        ("half_open_max_calls", 10**6),
        ("recovery_timeout", 1e12),
    ],
)
def test_circuit_breaker_out_of_range_names_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        CircuitBreaker(**{name: value})


# ---------------------------------------------------------------- the fuzz target, briefly


def test_fuzz_target_runs_on_random_inputs() -> None:
    """fuzz/fuzz_keys.py's checks over a few hundred random inputs, so the harness stays
    in working order (the real run: see README, Fuzzing)."""
    pytest.importorskip("atheris")
    import importlib.util
    import pathlib
    import random

    path = pathlib.Path(__file__).parent.parent / "fuzz" / "fuzz_keys.py"
    spec = importlib.util.spec_from_file_location("fuzz_keys", path)
    assert spec is not None and spec.loader is not None
    target = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target)
    rng = random.Random(8)
    for _ in range(400):
        target.TestOneInput(rng.randbytes(rng.randrange(0, 800)))
