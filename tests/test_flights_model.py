"""FlightTable (single-flight's native registry) against a plain dict of the same keys."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agenticaiframework._native import FlightTable

# Keys that share their low word (the table's hash) as well as distinct ones.
KEYS = [bytes([i]) * 16 for i in range(6)] + [bytes([i]) + bytes(15) for i in range(1, 4)]


class Value:
    """A distinct object per value: the table compares by identity."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Value({self.n})"


class TableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = FlightTable()
        self.model: dict[bytes, Value] = {}
        self.made: list[Value] = [Value(0)]

    def fresh(self) -> Value:
        v = Value(len(self.made))
        self.made.append(v)
        return v

    @rule(key=st.sampled_from(KEYS))
    def join(self, key: bytes) -> None:
        v = self.fresh()
        got = self.table.join(key, v)
        if key in self.model:
            assert got is self.model[key]
        else:
            assert got is None
            self.model[key] = v

    @rule(key=st.sampled_from(KEYS), pick=st.integers(0, 10_000), same=st.booleans())
    def replace(self, key: bytes, pick: int, same: bool) -> None:
        # old: what the model holds (when asked and present), else some other object.
        old = self.model[key] if same and key in self.model else self.made[pick % len(self.made)]
        new = self.fresh()
        ok = self.table.replace(key, old, new)
        assert ok == (key in self.model and self.model[key] is old)
        if ok:
            self.model[key] = new

    @rule(key=st.sampled_from(KEYS))
    def pop(self, key: bytes) -> None:
        assert self.table.pop(key) is self.model.pop(key, None)

    @rule()
    def clear(self) -> None:
        assert self.table.clear() == len(self.model)
        self.model.clear()

    @invariant()
    def same_size(self) -> None:
        assert len(self.table) == len(self.model)


TestTable = TableMachine.TestCase
TestTable.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("key", [b"", b"short", bytes(17), "a string", 16, None])
def test_a_key_that_is_not_16_bytes_is_a_typed_error(key: Any) -> None:
    t = FlightTable()
    for op in (
        lambda: t.join(key, 1),
        lambda: t.replace(key, 1, 2),
        lambda: t.pop(key),
    ):
        with pytest.raises((TypeError, ValueError), match="key must be"):
            op()
    assert len(t) == 0


def test_values_are_released_when_they_leave() -> None:
    t = FlightTable()
    a, b = Value(1), Value(2)
    ra, rb = weakref.ref(a), weakref.ref(b)
    k = bytes(16)
    assert t.join(k, a) is None
    assert t.replace(k, a, b)
    del a
    gc.collect()
    assert ra() is None  # replaced: dropped
    del b
    assert rb() is not None  # still in the table
    t.clear()
    gc.collect()
    assert rb() is None


def test_one_leader_per_key_across_threads() -> None:
    t = FlightTable()
    keys = [i.to_bytes(16, "big") for i in range(200)]
    leads: list[list[bytes]] = [[] for _ in range(4)]
    go = threading.Barrier(4)

    def work(n: int) -> None:
        go.wait()
        for k in keys:
            if t.join(k, n) is None:
                leads[n].append(k)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(k for led in leads for k in led) == keys  # each key led exactly once
    assert all(t.pop(k) in range(4) for k in keys)


def test_none_is_refused_as_a_value() -> None:
    """None is join's answer for "you lead": stored, every later caller would lead too."""
    t = FlightTable()
    k = bytes(16)
    with pytest.raises(TypeError, match="must not be None"):
        t.join(k, None)
    assert t.join(k, 1) is None
    with pytest.raises(TypeError, match="must not be None"):
        t.replace(k, 1, None)
    assert t.pop(k) == 1


def test_a_cycle_through_the_table_is_collected() -> None:
    """A value that leads back to the table (a leader's loop -> its task -> the manager ->
    the table) is freed by the collector: the table shows it its values."""

    class Holder:
        pass

    h = Holder()
    h.table = FlightTable()  # type: ignore[attr-defined]
    h.table.join(bytes(16), h)  # type: ignore[attr-defined]
    ref = weakref.ref(h)
    del h
    gc.collect()
    assert ref() is None
