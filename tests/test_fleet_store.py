"""The fleet tier's Redis state (llms/fleet.py) against a real redis-server
(tests/redis_server.py): the L2 cache, the fleet breaker, fleet single-flight, and what
every method does while Redis is stopped, paused (SIGSTOP) or restarted empty.

Two Fleet objects on one server stand for two processes. Breaker times are Redis's own
(TIME), so recovery is tested with timeouts of a few milliseconds and bounded polls; the
cooldown around Redis itself runs on an injected clock. No test waits for a socket
timeout other than the fleet's own (50 ms); every call that could hang runs under
``bounded`` (a thread joined with a timeout), so a hang fails the test instead of the run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from redis_server import RedisServer, running_server

redis = pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")

from redis.crc import key_slot  # noqa: E402

from agenticaiframework.llms.fleet import (  # noqa: E402
    ADMITTED,
    Admission,
    BreakerEvent,
    Fleet,
    decode_value,
    encode_value,
    mask_url,
    parse_event,
)

T = TypeVar("T")

K1 = bytes(range(16))
K2 = bytes(range(16, 32))
V1 = ("first answer", "gpt-4", 12, 3, False)
V2 = ("second answer — ünïcödé", "claude", 0, 7, True)
HANG = 20.0  # seconds: far beyond any socket timeout here; reaching it is a hang


def bounded(fn: Callable[[], T], limit: float = HANG) -> T:
    """fn() in a thread; fails the test if it has not returned within ``limit``."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append((True, fn()))
        except BaseException as exc:
            out.append((False, exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"call did not return within {limit} s"
    ok, value = out[0]
    if not ok:
        raise value
    return value


def arun(coro_fn: Callable[[], Awaitable[T]], limit: float = HANG) -> T:
    """A coroutine on a fresh loop, under ``bounded``."""

    async def main() -> T:
        return await coro_fn()

    return bounded(lambda: asyncio.run(main()), limit)


def poll(cond: Callable[[], bool], within: float = 5.0) -> None:
    """Waits, in small steps, for ``cond`` (a Redis-side expiry to pass)."""
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


class Clock:
    """The injected clock of the cooldown around Redis."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_fleet(redis_srv: RedisServer, clock: Clock) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(namespace: str = "t", **kw: Any) -> Fleet:
        kw.setdefault("clock", clock)
        kw.setdefault("timeout", 0.05)
        kw.setdefault("connect_timeout", 0.05)
        kw.setdefault("cooldown", 1.0)
        f = Fleet.from_url(kw.pop("url", redis_srv.url), namespace, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def raw(redis_srv: RedisServer) -> Iterator[Any]:
    """A plain client, to look at and plant what is stored."""
    c = redis.Redis.from_url(redis_srv.url, socket_timeout=5)
    yield c
    c.close()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------ values


def test_values_round_trip(make_fleet: Callable[..., Fleet]) -> None:
    a, b = make_fleet(), make_fleet()
    assert a.get(K1) is None
    assert a.put(K1, V1, 60) and a.put(K2, V2, None)
    assert b.get(K1) == V1 and b.get(K2) == V2
    odd = ("lone \ud800 surrogate, \x00 nul, 🙂", "m", 2**40, 0, True)
    assert a.put(K1, odd, 60)
    assert b.get(K1) == odd
    assert a.stats()["l2_puts"] == 3 and a.stats()["l2_misses"] == 1
    s = b.stats()
    assert (s["l2_hits"], s["l2_misses"], s["fleet_errors"], s["available"]) == (3, 0, 0, True)


def test_value_format_is_versioned_json() -> None:
    data = encode_value(V1)
    assert data.startswith(b"v1\x00")
    assert b"first answer" in data and b"pickle" not in data
    assert decode_value(data) == V1
    for bad in (
        b"",
        b"v1",
        b"v1\x00",
        b"v1\x00not json",
        b"v1\x00[1,2,3]",
        b'v1\x00{"t":"x"}',
        b'v1\x00{"t":"x","m":"m","p":-1,"c":0,"e":false}',
        b'v1\x00{"t":"x","m":"m","p":true,"c":0,"e":false}',
        b'v1\x00{"t":"x","m":"m","p":1.5,"c":0,"e":false}',
        b'v1\x00{"t":1,"m":"m","p":0,"c":0,"e":false}',
        b'v1\x00{"t":"x","m":"m","p":0,"c":0,"e":0}',
        b'v2\x00{"t":"x","m":"m","p":0,"c":0,"e":false}',
        b"\x80\x04\x95 pickled",
        b"v1\x00\xff\xfe",
        "v1\x00{}",
        None,
        42,
    ):
        assert decode_value(bad) is None, bad


def test_garbage_under_the_namespace_is_a_miss(
    make_fleet: Callable[..., Fleet], raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    f = make_fleet()
    key = f"t:r:{{{K1.hex()}}}"
    for junk in (b"junk", b"v1\x00{broken", b'v1\x00{"t":"x"}', b"\x80\x04pickle", b""):
        raw.set(key, junk)
        assert f.get(K1) is None
    raw.delete(key)
    raw.rpush(key, b"a list, not a string")  # WRONGTYPE for GET
    assert f.get(K1) is None
    # Nothing of that is an error or an outage, and a put repairs the key.
    assert f.stats()["fleet_errors"] == 0 and f.stats()["available"]
    assert not warnings_of(caplog)
    assert f.put(K1, V1, 60) and f.get(K1) == V1


def test_namespaces_do_not_see_each_other(make_fleet: Callable[..., Fleet]) -> None:
    a, b = make_fleet("app-a"), make_fleet("app-b")
    a.put(K1, V1, 60)
    assert b.get(K1) is None and a.get(K1) == V1
    assert a.record_failure("m", 1, 60.0)
    assert not a.admit("m", 1, 5.0).allowed
    assert b.admit("m", 1, 5.0) == ADMITTED
    assert a.lead(K1, 5.0) and b.lead(K1, 5.0)


def test_keys_hold_no_prompt_and_share_hash_tags(
    make_fleet: Callable[..., Fleet], raw: Any
) -> None:
    f = make_fleet("ns")
    f.put(K1, V1, 60)
    f.lead(K1, 5.0)
    f.record_failure("we{ird}%model", 1, 60.0)
    f.admit("plain", 1, 5.0)
    keys = sorted(k.decode() for k in raw.keys("*"))
    assert keys == sorted(
        [f"ns:r:{{{K1.hex()}}}", f"ns:l:{{{K1.hex()}}}", "ns:b:{we%7Bird%7D%25model}"]
    )
    # The keys one script touches share a cluster slot.
    assert key_slot(f"ns:r:{{{K1.hex()}}}".encode()) == key_slot(f"ns:l:{{{K1.hex()}}}".encode())
    assert key_slot(b"ns:b:{gpt-4}") == key_slot(b"ns:t:{gpt-4}")
    assert key_slot(b"ns:b:{gpt-4}") != key_slot(b"ns:b:{claude}")


def test_ttl_of_l2_values(make_fleet: Callable[..., Fleet], raw: Any) -> None:
    f = make_fleet()
    key = f"t:r:{{{K1.hex()}}}"
    assert f.put(K1, V1, 30)
    assert 0 < raw.pttl(key) <= 30_000
    assert f.put(K1, V1, None)
    assert raw.pttl(key) == -1  # no expiry: Redis's eviction policy bounds it
    raw.delete(key)
    assert not f.put(K1, V1, 0) and not f.put(K1, V1, -1)
    assert raw.exists(key) == 0
    assert f.put(K1, V1, 0.005)  # 5 ms of Redis time
    poll(lambda: f.get(K1) is None)


def test_oversized_answers_are_not_shared(make_fleet: Callable[..., Fleet]) -> None:
    f = make_fleet(max_value_bytes=100)
    assert not f.put(K1, ("x" * 200, "m", 0, 0, False), 60)
    assert f.get(K1) is None
    assert f.put(K1, V1, 60)


def test_bad_arguments_raise_value_error(make_fleet: Callable[..., Fleet]) -> None:
    f = make_fleet()
    with pytest.raises(ValueError):
        f.get(b"short")
    with pytest.raises(ValueError):
        f.admit("", 1, 1.0)
    with pytest.raises(ValueError):
        f.admit("m", 0, 1.0)
    with pytest.raises(ValueError):
        f.record_failure("m", 0, 1.0)
    with pytest.raises(ValueError):
        f.record_failure("m", 1, float("nan"))
    with pytest.raises(ValueError):
        f.lead(K1, 0)
    for ns in ("", "a{b}", "with space"):
        with pytest.raises(ValueError):
            Fleet.from_url("redis://127.0.0.1:1/0", ns)


# ------------------------------------------------------------------------------ breaker


def test_breaker_opens_fleet_wide_after_consecutive_failures(
    make_fleet: Callable[..., Fleet], raw: Any
) -> None:
    p1, p2 = make_fleet(), make_fleet()
    assert not p1.record_failure("m", 3, 60.0)
    assert not p2.record_failure("m", 3, 60.0)
    assert p1.record_success("m") is False  # a success resets the count: not consecutive
    assert p1.breaker_state("m") == {
        "state": "closed",
        "failures": 0,
        "retry_after": 0.0,
        "trials": 0,
    }
    opened = [p1.record_failure("m", 3, 60.0), p2.record_failure("m", 3, 60.0)]
    assert opened == [False, False]
    assert p1.record_failure("m", 3, 60.0)  # the third in a row, from either process
    assert not p2.record_failure("m", 3, 60.0)  # a late report: already open
    for p in (p1, p2):
        a = p.admit("m", 2, 5.0)
        assert not a.allowed and not a.trial and a.lease is None
        assert 50.0 < a.retry_after <= 60.0
    st = p2.breaker_state("m")
    assert st is not None and st["state"] == "open" and st["failures"] == 3
    # A non-trial success while open (a call admitted before it opened) changes nothing.
    assert not p2.record_success("m")
    assert not p1.admit("m", 2, 5.0).allowed
    # The breaker's keys expire on their own: recovery + state_ttl after the last failure.
    assert raw.pttl("t:b:{m}") > 60_000
    assert p1.admit("other", 2, 5.0) == ADMITTED


def test_half_open_admits_at_most_max_trials_fleet_wide(make_fleet: Callable[..., Fleet]) -> None:
    p1, p2 = make_fleet(), make_fleet()
    assert p1.record_failure("m", 1, 0.001)  # open for 1 ms of Redis time
    poll(lambda: p2.admit("m", 2, 30.0).allowed)  # the first trial, once it passed
    st = p1.breaker_state("m")
    assert st is not None and st["state"] == "half-open" and st["trials"] == 1
    second = p1.admit("m", 2, 30.0)
    assert second.allowed and second.trial and second.lease
    for p in (p1, p2, p1):
        refused = p.admit("m", 2, 30.0)
        assert refused == Admission(False, False, 0.0, None)
    # A trial given back frees its slot at once.
    p1.release_trial("m", second.lease)
    third = p2.admit("m", 2, 30.0)
    assert third.trial and not p1.admit("m", 2, 30.0).allowed
    # The trial's success closes it for everyone.
    assert p2.record_success("m", third.lease)
    assert p1.admit("m", 2, 30.0) == ADMITTED and p2.admit("m", 2, 30.0) == ADMITTED


def test_a_failed_trial_reopens(make_fleet: Callable[..., Fleet]) -> None:
    p1, p2 = make_fleet(), make_fleet()
    assert p1.record_failure("m", 1, 0.001)
    trial: list[Admission] = []
    poll(lambda: trial.append(p2.admit("m", 1, 30.0)) or trial[-1].allowed)
    assert trial[-1].trial
    # A non-trial failure in half-open (admitted before the opening) changes nothing...
    assert not p1.record_failure("m", 1, 60.0)
    # ...the trial's failure reopens, for the recovery timeout it gives.
    assert p2.record_failure("m", 1, 60.0, trial[-1].lease)
    a = p1.admit("m", 1, 30.0)
    assert not a.allowed and a.retry_after > 50.0
    st = p1.breaker_state("m")
    assert st is not None and st["state"] == "open" and st["trials"] == 0


def test_a_crashed_trial_lease_expires(make_fleet: Callable[..., Fleet]) -> None:
    p1, p2 = make_fleet(), make_fleet()
    assert p1.record_failure("m", 1, 0.001)
    crashed: list[Admission] = []
    # p1 takes the only trial with a 5 ms lease and "dies" without reporting it.
    poll(lambda: crashed.append(p1.admit("m", 1, 0.005)) or crashed[-1].allowed)
    assert crashed[-1].trial
    # Until the lease expires nobody else gets one; then p2 does.
    poll(lambda: p2.admit("m", 1, 30.0).trial)
    assert not p1.admit("m", 1, 30.0).allowed
    # The dead process's late report, if it comes, is still a trial's outcome: it closes.
    assert p1.record_success("m", crashed[-1].lease)
    assert p1.admit("m", 1, 30.0) == ADMITTED


def test_breaker_events_are_published(make_fleet: Callable[..., Fleet], raw: Any) -> None:
    f = make_fleet("ev")
    assert f.events_channel == "ev:events"
    sub = raw.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(f.events_channel)
    poll(lambda: raw.pubsub_numsub(f.events_channel)[0][1] == 1)
    opening = f.record_failure("gpt-4", 1, 0.001)
    assert opening > 0  # names the opening, as its message does
    got: list[BreakerEvent] = []

    def take() -> bool:
        m = sub.get_message(timeout=0.01)
        if m is not None:
            ev = parse_event(m["data"])
            assert ev is not None
            got.append(ev)
        return len(got) >= 1

    poll(take)
    assert got[0] == BreakerEvent("open", "gpt-4", 0.001, opening)
    trial: list[Admission] = []
    poll(lambda: trial.append(f.admit("gpt-4", 1, 5.0)) or trial[-1].trial)
    assert f.record_success("gpt-4", trial[-1].lease)
    poll(lambda: take() and len(got) >= 2)
    assert got[1] == BreakerEvent("closed", "gpt-4", 0.0)
    assert parse_event(b"nonsense") is None and parse_event(b'{"v":2}') is None
    # A failing run's first failure, and the success that ends it, are published too.
    assert not f.record_failure("gpt-4", 3, 60.0)
    assert not f.record_failure("gpt-4", 3, 60.0)  # the second of the run: no message
    assert not f.record_success("gpt-4")
    assert not f.record_success("gpt-4")  # nothing to reset: no message
    poll(lambda: take() and len(got) >= 4)
    assert got[2:] == [BreakerEvent("failing", "gpt-4"), BreakerEvent("clean", "gpt-4")]
    sub.close()


def test_garbage_breaker_keys_read_as_closed_and_are_repaired(
    make_fleet: Callable[..., Fleet], raw: Any
) -> None:
    f = make_fleet()
    raw.set("t:b:{m}", b"not a hash")
    raw.set("t:t:{m}", b"not a zset")
    assert f.admit("m", 1, 5.0) == ADMITTED
    assert f.record_failure("m", 1, 0.001)  # the hash is replaced
    poll(lambda: f.admit("m", 1, 5.0).trial)  # and so is the zset
    raw.delete("t:b:{m}")
    raw.hset("t:b:{m}", mapping={"f": "many", "u": "soon"})  # fields that are not numbers
    assert f.admit("m", 1, 5.0) == ADMITTED
    assert not f.record_failure("m", 2, 60.0) and f.record_failure("m", 2, 60.0)
    assert f.stats()["fleet_errors"] == 0


def test_a_refusal_is_not_an_outage(
    make_fleet: Callable[..., Fleet], raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    f = make_fleet()
    assert f.put(K1, V1, 60)
    raw.config_set("maxmemory", "1")  # full, and no eviction: writes are refused (OOM)
    try:
        assert not f.put(K2, V2, 60)
        assert not f.record_failure("m", 1, 60.0)
        assert not f.put(K2, V2, 60)
        assert f.get(K1) == V1  # reads still answer: no cooldown
    finally:
        raw.config_set("maxmemory", "0")
    s = f.stats()
    assert (s["fleet_errors"], s["fleet_skipped"], s["outages"], s["available"]) == (3, 0, 0, True)
    warned = warnings_of(caplog)
    assert len(warned) == 1 and "refused put (OutOfMemoryError" in warned[0], warned
    assert f.put(K2, V2, 60) and f.record_failure("m", 1, 60.0)


# ------------------------------------------------------------------------------ single-flight


def test_single_flight_lead_await_finish(make_fleet: Callable[..., Fleet]) -> None:
    p1, p2, p3 = make_fleet(), make_fleet(), make_fleet()
    assert p1.lead(K1, 30.0)
    assert not p2.lead(K1, 30.0) and not p1.lead(K1, 30.0)
    assert p2.await_answer(K1, 0.01) is None  # the wait ran out
    got: list[Any] = []
    waiters = [
        threading.Thread(target=lambda p=p: got.append(p.await_answer(K1, HANG))) for p in (p2, p3)
    ]
    for w in waiters:
        w.start()
    assert p1.finish(K1, V1, 60)  # the answer and the lease's end, in one trip
    for w in waiters:
        w.join(HANG)
    assert got == [V1, V1]
    assert p3.get(K1) == V1
    assert p2.lead(K1, 30.0)  # the lease is gone: the next flight has a leader


def test_a_leader_that_finishes_without_an_answer_releases_its_waiters(
    make_fleet: Callable[..., Fleet],
) -> None:
    p1, p2 = make_fleet(), make_fleet()
    assert p1.lead(K1, 30.0)
    got: list[Any] = []
    w = threading.Thread(target=lambda: got.append(p2.await_answer(K1, HANG)))
    w.start()
    assert p1.finish(K1)  # failed: nothing stored
    w.join(HANG)
    assert got == [None] and p2.get(K1) is None


def test_an_expired_leader_lets_one_waiter_take_over(make_fleet: Callable[..., Fleet]) -> None:
    dead, p2, p3 = make_fleet(), make_fleet(), make_fleet()
    assert dead.lead(K1, 0.005)  # 5 ms lease, and its process dies
    assert bounded(lambda: p2.await_answer(K1, HANG)) is None  # returns once it expires
    assert bounded(lambda: p3.await_answer(K1, HANG)) is None
    leaders = [p2.lead(K1, 30.0), p3.lead(K1, 30.0)]
    assert sorted(leaders) == [False, True]
    new = p2 if leaders[0] else p3
    # The old leader coming back cannot end the new one's lease, but its answer lands.
    assert not dead.finish(K1, V2, 60)
    assert not make_fleet().lead(K1, 30.0)
    assert new.finish(K1, V1, 60) and new.get(K1) == V1


# ------------------------------------------------------------------------------ async twins


def test_async_twins(make_fleet: Callable[..., Fleet]) -> None:
    p1, p2 = make_fleet(), make_fleet()

    async def scenario() -> None:
        assert await p1.aget(K1) is None
        assert await p1.aput(K1, V1, 60)
        assert await p2.aget(K1) == V1
        assert not await p1.aput(K2, V1, 0)
        # breaker
        assert not await p1.arecord_failure("m", 2, 0.001)
        assert await p2.arecord_failure("m", 2, 0.001)
        st = await p1.abreaker_state("m")
        assert st is not None and st["failures"] == 2
        while not (a := await p1.aadmit("m", 1, 30.0)).allowed:
            await asyncio.sleep(0.002)
        assert a.trial and a.lease
        assert not (await p2.aadmit("m", 1, 30.0)).allowed
        await p1.arelease_trial("m", a.lease)
        b = await p2.aadmit("m", 1, 30.0)
        assert b.trial
        assert await p2.arecord_success("m", b.lease)
        assert await p1.aadmit("m", 1, 30.0) == ADMITTED
        assert await p1.arecord_failure("m", 1, 60.0)
        assert not (await p2.aadmit("m", 1, 30.0)).allowed
        # single-flight
        assert await p1.alead(K2, 30.0) and not await p2.alead(K2, 30.0)
        waiting = asyncio.ensure_future(p2.aawait_answer(K2, HANG))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert await p1.afinish(K2, V2, 60)
        assert await waiting == V2
        k3 = bytes(range(32, 48))
        assert await p1.alead(k3, 0.005)
        assert await p2.aawait_answer(k3, HANG) is None  # the leader's lease expired
        assert await p2.alead(k3, 30.0)
        await p1.aclose()
        await p2.aclose()

    arun(scenario)
    assert p1.stats()["fleet_errors"] == 0 and p2.stats()["fleet_errors"] == 0


def test_one_fleet_on_several_event_loops(make_fleet: Callable[..., Fleet]) -> None:
    f = make_fleet()
    f.put(K1, V1, 60)

    async def look() -> Any:
        try:
            return await f.aget(K1)
        finally:
            await f.aclose()  # this loop's client, before the loop ends

    # Loop after loop (each closed), and loops in threads at once: each gets its client.
    for _ in range(3):
        assert asyncio.run(look()) == V1
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(asyncio.run(look()))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert results == [V1] * 4 and f.stats()["fleet_errors"] == 0


# ------------------------------------------------------------------------------ degradation


def every_call(f: Fleet) -> dict[str, Any]:
    """Each method once; what it answered."""
    return {
        "get": f.get(K1),
        "put": f.put(K1, V1, 60),
        "admit": f.admit("m", 1, 5.0),
        "record_failure": f.record_failure("m", 1, 60.0),
        "record_success": f.record_success("m"),
        "release_trial": f.release_trial("m", "lease"),
        "breaker_state": f.breaker_state("m"),
        "lead": f.lead(K2, 5.0),
        "finish": f.finish(K2, V2, 60),
        "await_answer": f.await_answer(K2, 5.0),
    }


async def every_acall(f: Fleet) -> dict[str, Any]:
    out = {
        "get": await f.aget(K1),
        "put": await f.aput(K1, V1, 60),
        "admit": await f.aadmit("m", 1, 5.0),
        "record_failure": await f.arecord_failure("m", 1, 60.0),
        "record_success": await f.arecord_success("m"),
        "release_trial": await f.arelease_trial("m", "lease"),
        "breaker_state": await f.abreaker_state("m"),
        "lead": await f.alead(K2, 5.0),
        "finish": await f.afinish(K2, V2, 60),
        "await_answer": await f.aawait_answer(K2, 5.0),
    }
    await f.aclose()
    return out


NO_FLEET = {
    "get": None,
    "put": False,
    "admit": ADMITTED,
    "record_failure": False,
    "record_success": False,
    "release_trial": None,
    "breaker_state": None,
    "lead": False,
    "await_answer": None,
    "finish": False,
}


def check_sharing(a: Fleet, b: Fleet, key: bytes, model: str) -> None:
    assert a.put(key, V2, 60)
    assert b.get(key) == V2
    assert a.record_failure(model, 1, 60.0)
    assert not b.admit(model, 1, 5.0).allowed


@pytest.mark.parametrize("how", ["stopped", "paused"])
@pytest.mark.parametrize("side", ["sync", "async"])
def test_outage_answers_without_the_fleet_and_rejoins(
    how: str,
    side: str,
    redis_srv: RedisServer,
    make_fleet: Callable[..., Fleet],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agenticaiframework.llms")
    f, other = make_fleet(), make_fleet()
    k3 = bytes(range(32, 48))
    check_sharing(f, other, K1, "before")
    other.put(k3, V1, 60)

    def calls() -> dict[str, Any]:
        if side == "sync":
            return bounded(lambda: every_call(f))
        return arun(lambda: every_acall(f))

    redis_srv.stop() if how == "stopped" else redis_srv.pause()
    # The first call meets the outage (refused, or the 50 ms timeout); the rest are not
    # sent to Redis during the cooldown.
    assert calls() == NO_FLEET
    s = f.stats()
    assert s["fleet_errors"] == 1 and s["fleet_skipped"] == 9 and not s["available"]
    assert s["outages"] == 1 and s["l2_misses"] == 1
    # After the cooldown each call tries again (one error each), still one WARNING.
    for _ in range(2):
        clock.advance(1.5)
        assert calls() == NO_FLEET
    assert f.stats()["fleet_errors"] == 3
    warned = warnings_of(caplog)
    assert len(warned) == 1, warned
    assert redis_srv.url in warned[0] and "next try in 1.0 s" in warned[0]

    if how == "stopped":
        redis_srv.start()  # empty: scripts and values gone
    else:
        redis_srv.resume()
    clock.advance(1.5)
    # What was stored survived a pause and not a restart; no reply of a command that timed
    # out while paused is read as the answer of a later one (those connections are gone).
    want = (V2, V1) if how == "paused" else (None, None)
    assert bounded(lambda: (f.get(K1), f.get(k3))) == want
    assert f.stats()["available"]
    st = f.breaker_state("before")
    assert (st is not None and st["state"]) == ("open" if how == "paused" else "closed")
    # Sharing resumed (the scripts reloaded where the restart lost them), both ways.
    check_sharing(f, other, K2, "after")
    check_sharing(other, f, k3, "after-2")
    after = bounded(lambda: every_call(f))
    st = after.pop("breaker_state")
    assert st["state"] == "open" and st["failures"] == 1 and 50 < st["retry_after"] <= 60
    assert after.pop("record_failure") > 0  # it opened: the opening's id
    assert after == {
        "get": V2 if how == "paused" else None,
        "put": True,
        "admit": ADMITTED,
        "record_success": False,
        "release_trial": None,
        "lead": True,
        "finish": True,
        "await_answer": V2,
    }
    assert [r.levelname for r in caplog.records].count("WARNING") == 1
    assert any("answers again" in r.getMessage() for r in caplog.records)

    # A new outage is a new WARNING.
    redis_srv.stop()
    clock.advance(1.5)
    assert bounded(lambda: f.get(K1)) is None
    assert len(warnings_of(caplog)) == 2
    assert f.stats()["outages"] == 2


@pytest.mark.parametrize("side", ["sync", "async"])
def test_no_stale_reply_after_a_pause(
    side: str, redis_srv: RedisServer, make_fleet: Callable[..., Fleet], clock: Clock
) -> None:
    """A command that timed out while Redis was paused is answered when it resumes; that
    reply must never be read as the answer of the next command on the same client."""
    f = make_fleet()
    assert f.put(K1, V1, 60) and f.put(K2, V2, 60)

    async def scenario() -> list[Any]:
        seen = [await f.aget(K1)]
        redis_srv.pause()
        seen.append(await f.aget(K1))  # times out: a miss
        redis_srv.resume()
        clock.advance(5)
        seen += [await f.aget(K2), await f.aget(K1), await f.aget(K2)]
        await f.aclose()
        return seen

    def sync_scenario() -> list[Any]:
        seen = [f.get(K1)]
        redis_srv.pause()
        seen.append(f.get(K1))
        redis_srv.resume()
        clock.advance(5)
        return [*seen, f.get(K2), f.get(K1), f.get(K2)]

    got = bounded(sync_scenario) if side == "sync" else arun(scenario)
    assert got == [V1, None, V2, V1, V2]


def test_an_outage_while_waiting_for_an_answer_ends_the_wait(
    redis_srv: RedisServer, make_fleet: Callable[..., Fleet]
) -> None:
    p1, p2 = make_fleet(), make_fleet()
    assert p1.lead(K1, 30.0)
    got: list[Any] = []
    w = threading.Thread(target=lambda: got.append(p2.await_answer(K1, HANG)))
    w.start()
    time.sleep(0.01)
    redis_srv.pause()
    w.join(HANG)
    assert not w.is_alive() and got == [None]


def test_no_server_at_all(make_fleet: Callable[..., Fleet], clock: Clock) -> None:
    from redis_server import free_port

    f = make_fleet(url=f"redis://127.0.0.1:{free_port()}/0")
    assert bounded(lambda: every_call(f)) == NO_FLEET
    clock.advance(5)
    assert arun(lambda: every_acall(f)) == NO_FLEET
    assert f.stats()["fleet_errors"] == 2


# ------------------------------------------------------------------------------ secrets


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    caplog.set_level(logging.DEBUG, logger="agenticaiframework.llms")
    secret = "Hunter2-s3cret"
    with running_server("--requirepass", secret) as srv:
        url = f"redis://:{secret}@127.0.0.1:{srv.port}/0"
        f = Fleet.from_url(url, "pw", clock=clock, timeout=0.05, connect_timeout=0.05)
        assert f.put(K1, V1, 60) and f.get(K1) == V1
        shown = [repr(f), str(f), f.url, repr(f.stats())]
        assert f.url == f"redis://:***@127.0.0.1:{srv.port}/0"
        # A wrong password, a dead server: the warnings name the server, not the secret.
        wrong = Fleet.from_url(f"redis://user:{secret}X@127.0.0.1:{srv.port}/0", "pw")
        assert wrong.get(K1) is None
        shown.append(repr(wrong))
        srv.stop()
        clock.advance(10)
        assert f.get(K1) is None and f.admit("m", 1, 5.0) == ADMITTED
        f.close()
        wrong.close()
    query = Fleet.from_url(f"redis://127.0.0.1:1/0?password={secret}", "pw")
    shown.append(repr(query))
    with pytest.raises(ValueError) as bad:
        Fleet.from_url(f"nosuch://:{secret}@host/0", "pw")
    shown.append(str(bad.value))
    text = "\n".join(shown + [r.getMessage() for r in caplog.records])
    assert len(warnings_of(caplog)) >= 2
    assert secret not in text and "Hunter2" not in text
    assert "***" in text
    assert mask_url(f"rediss://alice:{secret}@h:6380/1?password={secret}&db=1") == (
        "rediss://alice:***@h:6380/1?password=***&db=1"
    )
    assert mask_url("redis://h:6379") == "redis://h:6379"


def test_the_package_does_not_import_redis_without_the_fleet() -> None:
    code = (
        "import sys, agenticaiframework.llms, agenticaiframework.llms.manager; "
        "assert 'redis' not in sys.modules, 'redis imported'; "
        "import agenticaiframework.llms.fleet; assert 'redis' in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_leases_and_clients(
    make_fleet: Callable[..., Fleet],
) -> None:
    f = make_fleet()
    assert f.lead(K1, 30.0) and f.get(K2) is None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new token (cannot end the parent's flight), fresh counters
        try:
            ok = (
                not f.finish(K1)
                and f.stats()["l2_misses"] == 0
                and f.put(K2, V1, 60)
                and f.get(K2) == V1
            )
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    os.waitpid(pid, 0)
    assert f.get(K2) == V1 and f.finish(K1)
