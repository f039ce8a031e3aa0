"""Atheris fuzz target for the native key canonicaliser and response cache (issue 8).

Each input is decoded into a request (a prompt of any code points, lone surrogates
included, and kwargs nested from every builtin type plus hostile objects) and a short
program of cache operations. Checked on every input:

- ``ResponseCache.key`` never raises for a str prompt and dict kwargs; it returns None
  (uncacheable) or 16 bytes, the same bytes on every call and for a deep copy;
- a value stored under a key is returned by ``get`` and ``lookup`` (by reference) until
  evicted, invalidated or cleared; the entry and byte bounds always hold;
- ``LLMManager.generate`` serves the request, and the second identical call is a cache hit
  exactly when the key exists; its metrics add up.

Run (libFuzzer flags pass through):

    mkdir -p target/fuzz/corpus target/fuzz/artifacts
    .venv/bin/python fuzz/fuzz_keys.py -max_total_time=600 \
        -artifact_prefix=target/fuzz/artifacts/ target/fuzz/corpus

Python code (the manager, the harness's value builder) is coverage-instrumented; the Rust
extension is a normal release build, so inside it the search is guided by the behaviour
Python can see only. A crash, panic or hang in native code still stops the run with the
input saved.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from agenticaiframework._native import ResponseCache
    from agenticaiframework.llms import LLMManager

MAX_DEPTH = 80  # past the canonicaliser's own limit, so both sides of it are reached
MAX_ITEMS = 6


class Hostile:
    """Every dunder the canonicaliser must never call raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __deepcopy__(self, memo: Any) -> Any:
        return self


class OddStr(str):
    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __deepcopy__(self, memo: Any) -> Any:
        return self


class OddInt(int):
    def __index__(self) -> int:
        raise RuntimeError("index")

    def __deepcopy__(self, memo: Any) -> Any:
        return self


@atheris.instrument_func
def text(fdp: atheris.FuzzedDataProvider, n: int) -> str:
    """Any code points, lone surrogates included."""
    return "".join(chr(fdp.ConsumeIntInRange(0, 0x10FFFF)) for _ in range(n))


@atheris.instrument_func
def scalar(fdp: atheris.FuzzedDataProvider) -> Any:
    kind = fdp.ConsumeIntInRange(0, 12)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(8)
    if kind == 3:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(9, 40))  # beyond i64
    if kind == 4:
        return fdp.ConsumeRegularFloat()
    if kind == 5:
        return fdp.PickValueInList([math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0])
    if kind == 6:
        return text(fdp, fdp.ConsumeIntInRange(0, 12))
    if kind == 7:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12))
    if kind == 8:
        return bytearray(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6)))
    if kind == 9:
        return OddStr(text(fdp, 3))
    if kind == 10:
        return OddInt(fdp.ConsumeInt(4))
    if kind == 11:
        return Hostile()
    return fdp.ConsumeUnicode(8)


@atheris.instrument_func
def hashable(fdp: atheris.FuzzedDataProvider, depth: int) -> Any:
    kind = fdp.ConsumeIntInRange(0, 3)
    if depth > 3 or kind == 0:
        v = scalar(fdp)
        return v if type(v) in (type(None), bool, int, float, str, bytes) else 0
    if kind == 1:
        return tuple(hashable(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    if kind == 2:
        return frozenset(hashable(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    return text(fdp, 2)


@atheris.instrument_func
def value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    if depth >= MAX_DEPTH or fdp.remaining_bytes() == 0:
        return scalar(fdp)
    kind = fdp.ConsumeIntInRange(0, 9)
    n = fdp.ConsumeIntInRange(0, MAX_ITEMS)
    if kind == 0:
        return [value(fdp, depth + 1) for _ in range(n)]
    if kind == 1:
        return tuple(value(fdp, depth + 1) for _ in range(n))
    if kind == 2:
        return {text(fdp, 3): value(fdp, depth + 1) for _ in range(n)}
    if kind == 3:
        return {hashable(fdp, 0): value(fdp, depth + 1) for _ in range(n)}
    if kind == 4:
        return {hashable(fdp, 0) for _ in range(n)}
    if kind == 5:
        return frozenset(hashable(fdp, 0) for _ in range(n))
    if kind == 6:  # a chain deeper than any limit, in one step
        v: Any = scalar(fdp)
        for _ in range(fdp.ConsumeIntInRange(0, 300)):
            v = [v]
        return v
    if kind == 7:  # self-reference
        loop: list[Any] = [scalar(fdp)]
        loop.append(loop)
        return loop
    return scalar(fdp)


@atheris.instrument_func
def check_key(cache: ResponseCache, route: Any, prompt: str, kwargs: dict[str, Any]) -> Any:
    k = cache.key(route, prompt, kwargs)
    assert k is None or (type(k) is bytes and len(k) == 16), k
    assert cache.key(route, prompt, kwargs) == k
    try:
        twin = copy.deepcopy(kwargs)
    except (RecursionError, TypeError, RuntimeError):
        return k
    assert cache.key(route, prompt, twin) == k
    return k


@atheris.instrument_func
def check_cache(fdp: atheris.FuzzedDataProvider, key: bytes | None) -> None:
    entries = fdp.ConsumeIntInRange(1, 8)
    shards = fdp.PickValueInList([s for s in (1, 2, 4, 8) if s <= entries])
    max_bytes = fdp.PickValueInList([None, 1, 10, 100])
    cache = ResponseCache(entries, max_bytes=max_bytes, shards=shards)
    keys = [bytes([i]) * 16 for i in range(10)] + ([key] if key is not None else [])
    stored: dict[bytes, object] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 30)):
        op = fdp.ConsumeIntInRange(0, 4)
        k = fdp.PickValueInList(keys)
        if op == 0:
            v = object()
            size = fdp.ConsumeIntInRange(0, 120)
            if cache.put(k, v, size):
                assert cache.get(k) is v
                stored[k] = v
            else:
                assert max_bytes is not None and size > 0
        elif op == 1:
            got = cache.get(k)
            assert got is None or got is stored.get(k)
        elif op == 2:
            cache.invalidate(k)
            assert k not in cache
        elif op == 3:
            cache.clear()
            assert len(cache) == 0
        else:
            hit, v = cache.lookup(("r",), "p", {"k": k})
            assert hit or v is None or len(v) == 16
        stats = cache.stats()
        assert stats["entries"] == len(cache) <= entries
        if max_bytes is not None:
            assert stats["bytes"] <= max_bytes


@atheris.instrument_func
def check_manager(prompt: str, kwargs: dict[str, Any], cacheable: bool) -> None:
    calls = [0]

    def model(p: str, kw: dict[str, Any]) -> str:
        calls[0] += 1
        return "answer"

    m = LLMManager(max_retries=1, sleep=lambda s: None)
    m.register_model("m", model)
    m.set_active_model("m")
    assert m.generate(prompt, **kwargs) == "answer"
    assert m.generate(prompt, **kwargs) == "answer"
    assert calls[0] == (1 if cacheable else 2), (calls, cacheable)
    s = m.get_metrics()
    assert s["total_requests"] == 2 == s["successful_requests"]


CACHE = ResponseCache(16, secret=b"fuzz-the-keys!!!")


@atheris.instrument_func
def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    prompt = text(fdp, fdp.ConsumeIntInRange(0, 40))
    kwargs = {text(fdp, 4): value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))}
    k = check_key(CACHE, ("m",), prompt, kwargs)
    check_cache(fdp, k)
    # **kwargs needs str names; a deep kwarg would not survive the call frame's own limits.
    check_manager(prompt, kwargs, k is not None)


def main(argv: list[str]) -> None:
    sys.setrecursionlimit(10_000)
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
