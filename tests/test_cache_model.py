"""ResponseCache against a plain Python model: per-shard OrderedDict LRUs."""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agenticaiframework._native import ResponseCache

KEYS = [bytes([i]) * 16 for i in range(12)]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class ModelShard:
    """One shard of the model: an LRU by OrderedDict (last = most recent) of
    key -> (value, size, stored_at)."""

    def __init__(self, entries: int, max_bytes: int | None) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.items: OrderedDict[bytes, tuple[object, int, float]] = OrderedDict()

    def bytes(self) -> int:
        return sum(size for _, size, _ in self.items.values())


def split(total: int, n: int, i: int) -> int:
    return total // n + (1 if i < total % n else 0)


class CacheMachine(RuleBasedStateMachine):
    @initialize(
        max_entries=st.integers(1, 9),
        shards=st.sampled_from([1, 2, 4]),
        ttl=st.none() | st.sampled_from([1.0, 2.5]),
        max_bytes=st.none() | st.integers(4, 40),
    )
    def setup(
        self, max_entries: int, shards: int, ttl: float | None, max_bytes: int | None
    ) -> None:
        while shards > max_entries:  # shards must be a power of two <= max_entries
            shards //= 2
        self.clock = FakeClock()
        self.ttl = ttl
        self.cache = ResponseCache(
            max_entries, max_bytes=max_bytes, ttl=ttl, clock=self.clock, shards=shards
        )
        caps = self.cache.shard_capacities()
        assert sum(caps) == max_entries and len(caps) == shards
        self.shards = [
            ModelShard(caps[i], None if max_bytes is None else split(max_bytes, shards, i))
            for i in range(shards)
        ]
        self.stats = dict.fromkeys(
            ["hits", "misses", "inserts", "evictions", "expirations", "rejections"], 0
        )

    def expired(self, stored_at: float) -> bool:
        """A TTL has passed since the store, or the clock went back before it (the
        entry's age is then unknown)."""
        if self.ttl is None:
            return False
        t = self.clock.t
        return t >= stored_at + self.ttl or t < stored_at

    def shard(self, key: bytes) -> ModelShard:
        return self.shards[self.cache.shard_of(key)]

    @rule(key=st.sampled_from(KEYS), value=st.integers(), size=st.integers(0, 15))
    def put(self, key: bytes, value: int, size: int) -> None:
        sh = self.shard(key)
        stored = self.cache.put(key, value, size)
        limit = sh.max_bytes
        if limit is not None and size > limit:
            assert not stored
            sh.items.pop(key, None)
            self.stats["rejections"] += 1
            return
        assert stored
        sh.items.pop(key, None)
        sh.items[key] = (value, size, self.clock.t)
        self.stats["inserts"] += 1
        while len(sh.items) > sh.entries or (limit is not None and sh.bytes() > limit):
            if len(sh.items) == 1:
                break
            sh.items.popitem(last=False)
            self.stats["evictions"] += 1

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: bytes) -> None:
        sh = self.shard(key)
        got = self.cache.get(key, "MISS")
        entry = sh.items.get(key)
        if entry is None:
            assert got == "MISS"
            self.stats["misses"] += 1
        elif self.expired(entry[2]):
            assert got == "MISS"
            del sh.items[key]
            self.stats["misses"] += 1
            self.stats["expirations"] += 1
        else:
            assert got == entry[0]
            sh.items.move_to_end(key)
            self.stats["hits"] += 1

    @rule(key=st.sampled_from(KEYS))
    def invalidate(self, key: bytes) -> None:
        assert self.cache.invalidate(key) == (self.shard(key).items.pop(key, None) is not None)

    @rule()
    def clear(self) -> None:
        n = sum(len(sh.items) for sh in self.shards)
        assert self.cache.clear() == n
        for sh in self.shards:
            sh.items.clear()

    @precondition(lambda self: self.ttl is not None)
    @rule(dt=st.sampled_from([0.5, 1.0, 2.5, 3.0]))
    def advance(self, dt: float) -> None:
        self.clock.t += dt

    @precondition(lambda self: self.ttl is not None)
    @rule(dt=st.sampled_from([0.5, 1.0, 2.5, 1e9]))
    def rewind(self, dt: float) -> None:
        """The clock jumps back (a wall clock stepped by NTP, a VM restored)."""
        self.clock.t -= dt

    @rule(key=st.sampled_from(KEYS))
    def contains(self, key: bytes) -> None:
        entry = self.shard(key).items.get(key)
        assert (key in self.cache) == (entry is not None and not self.expired(entry[2]))

    @invariant()
    def matches_model(self) -> None:
        assert len(self.cache) == sum(len(sh.items) for sh in self.shards)
        for i, sh in enumerate(self.shards):
            assert self.cache.shard_keys(i) == list(reversed(sh.items))
        stats = self.cache.stats()
        for name, expected in self.stats.items():
            assert stats[name] == expected, name
        assert stats["bytes"] == sum(sh.bytes() for sh in self.shards)


TestCacheMachine = CacheMachine.TestCase
TestCacheMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_a_clock_jumping_back_bounds_an_entry_by_one_ttl() -> None:
    """Stored at t=1000, the clock back to t=0: the entry does not live on for the
    1000 s jump plus its TTL; it is expired (its age is unknown), and what is stored after
    the jump lives exactly one TTL."""
    clock = FakeClock()
    cache = ResponseCache(8, ttl=10.0, clock=clock)
    clock.t = 1000.0
    cache.put(KEYS[0], "stored at 1000")
    assert cache.get(KEYS[0]) == "stored at 1000"
    clock.t = 0.0
    assert KEYS[0] not in cache
    assert cache.get(KEYS[0], "MISS") == "MISS"
    assert cache.stats()["expirations"] == 1 and len(cache) == 0
    cache.put(KEYS[0], "stored at 0")
    for t in (0.0, 5.0, 9.999):
        clock.t = t
        assert cache.get(KEYS[0]) == "stored at 0"
    clock.t = 10.0
    assert cache.get(KEYS[0], "MISS") == "MISS"


def test_a_small_step_back_expires_only_what_was_stored_after_it() -> None:
    clock = FakeClock()
    cache = ResponseCache(8, ttl=60.0, clock=clock)
    clock.t = 100.0
    cache.put(KEYS[0], "early")
    clock.t = 100.5
    cache.put(KEYS[1], "late")
    clock.t = 100.25  # stepped back 0.25 s
    assert cache.get(KEYS[0]) == "early"
    assert cache.get(KEYS[1], "MISS") == "MISS"


def test_lookup_returns_key_then_value_by_reference() -> None:
    cache = ResponseCache(10)
    hit, key = cache.lookup(("m",), "prompt", {"t": 1})
    assert hit is False and isinstance(key, bytes) and len(key) == 16
    value = object()
    cache.put(key, value)
    hit, got = cache.lookup(("m",), "prompt", {"t": 1})
    assert hit is True and got is value


def test_uncacheable_lookup_returns_no_key() -> None:
    cache = ResponseCache(10)
    assert cache.lookup("m", "p", {"handle": object()}) == (False, None)


class Value:
    pass


def test_values_are_freed_on_eviction_and_clear() -> None:
    cache = ResponseCache(1)
    a, b = Value(), Value()
    ra, rb = weakref.ref(a), weakref.ref(b)
    cache.put(KEYS[0], a)
    cache.put(KEYS[1], b)  # evicts a
    del a, b
    gc.collect()
    assert ra() is None and rb() is not None
    cache.clear()
    gc.collect()
    assert rb() is None


class Reentrant:
    """A value whose finaliser uses the cache that is dropping it."""

    def __init__(self, cache: ResponseCache, log: list[Any]) -> None:
        self.cache, self.log = cache, log

    def __del__(self) -> None:
        self.log.append(len(self.cache))
        self.cache.put(KEYS[5], "from __del__")


def test_finaliser_may_use_the_cache_without_deadlock() -> None:
    cache = ResponseCache(1)
    log: list[Any] = []
    cache.put(KEYS[0], Reentrant(cache, log))
    cache.put(KEYS[1], "evicts the reentrant value")
    assert log == [1]
    cache.put(KEYS[2], Reentrant(cache, log))
    cache.clear()
    assert len(log) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_entries": 0},
        {"max_entries": 4, "ttl": 0.0},
        {"max_entries": 4, "ttl": float("nan")},
        {"max_entries": 4, "ttl": -1.0},
        {"max_entries": 4, "shards": 3},
        {"max_entries": 4, "shards": 8},
        {"max_entries": 4, "max_bytes": 0},
        {"max_entries": 4, "secret": b"short"},
    ],
)
def test_bad_configuration_is_a_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ResponseCache(**kwargs)


def test_bad_keys_and_types() -> None:
    cache = ResponseCache(4)
    with pytest.raises(ValueError):
        cache.get(b"too short")
    with pytest.raises(TypeError):
        cache.get("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache.put(1234, "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache.key("m", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ResponseCache(4, clock=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ResponseCache(4, secret="sixteen chars!!!")  # type: ignore[arg-type]


def test_broken_clock_surfaces_as_an_error() -> None:
    def bad() -> float:
        raise RuntimeError("clock broke")

    cache = ResponseCache(4, ttl=1.0, clock=bad)
    with pytest.raises(RuntimeError, match="clock broke"):
        cache.put(KEYS[0], "v")
    nan_cache = ResponseCache(4, ttl=1.0, clock=lambda: float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        nan_cache.get(KEYS[0])
