"""Fleet breakers through the manager (issue 15), on a real redis-server: failures counted
fleet-wide are consecutive ones (a success anywhere, a first try included, breaks the run),
half-open trials are leased fleet-wide, and a trial that ends without an outcome gives its
lease back. Two managers in one process stand for two processes; each has its own
injected clock (the local open table), while the fleet breaker runs on Redis's clock with
a recovery timeout of a millisecond.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from redis_server import RedisServer
from redis_server import until as _until

pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")

from agenticaiframework.llms import LLMManager


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Model:
    """A model whose behaviour the test sets: 'ok', 'fail', or 'hold' (blocks until let go)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = Counter[str]()
        self.entered = threading.Event()
        self.go = threading.Event()

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.calls[self.mode] += 1
        if self.mode == "fail":
            raise ConnectionError("provider down")
        if self.mode == "hold":
            self.entered.set()
            assert self.go.wait(10)
        return "primary"


def make(url: str, model: Model, clock: Clock, ns: str, **kw: Any) -> LLMManager:
    kw.setdefault("failure_threshold", 1)
    m = LLMManager(
        redis=url,
        namespace=ns,
        recovery_timeout=0.001,  # of Redis's time for the fleet; the local clock is ours
        max_retries=1,
        enable_caching=False,
        sleep=lambda _: None,
        clock=clock,
        **kw,
    )
    m.register_model("m", model)
    m.register_model("backup", lambda p, k: "backup")
    m.set_active_model("m")
    m.set_fallback_chain(["backup"])
    return m


def listening(*managers: LLMManager) -> None:
    """Waits until every manager's event listener is subscribed: a message published
    before that is not heard (the newcomer learns at its first failure, tested apart)."""
    import redis

    fleet = managers[0]._fleet
    assert fleet is not None
    r = redis.Redis.from_url(fleet.url)
    channel = fleet.events_channel

    def subscribed() -> int:
        return int(r.pubsub_numsub(channel)[0][1])

    assert _until(lambda: subscribed() >= len(managers))
    r.close()


def state(m: LLMManager) -> str:
    return str(m.get_model_info("m")["circuit_breaker_state"])


def fleet_state(m: LLMManager) -> dict[str, Any]:
    fleet = m._fleet
    assert fleet is not None
    st = fleet.breaker_state("m")
    assert st is not None
    return st


def test_a_clean_model_is_not_watched_and_a_failing_one_is(redis_srv: RedisServer) -> None:
    pa, pb = Model(), Model()
    ca, cb = Clock(), Clock()
    a = make(redis_srv.url, pa, ca, "w", failure_threshold=3)
    b = make(redis_srv.url, pb, cb, "w", failure_threshold=3)
    listening(a, b)
    # The steady state: the first try is inline (asks no gate, reports nothing).
    assert a._models["m"].inline_sync and b._models["m"].inline_sync
    assert a.generate("x") == b.generate("y") == "primary"
    pa.mode = "fail"
    assert a.generate("a1") == "backup"  # the fleet's first failure: 'failing' published
    assert _until(lambda: not b._models["m"].inline_sync)  # b watches it now
    assert not a._models["m"].inline_sync
    assert a.generate("a2") == "backup"
    assert fleet_state(a)["failures"] == 2
    # b's first try (through the walk, since it is watched) answers: the run is broken.
    assert b.generate("b1") == "primary"
    assert _until(lambda: fleet_state(a)["failures"] == 0)
    assert _until(lambda: a._models["m"].inline_sync and b._models["m"].inline_sync)
    # Two more of a's failures make a run of two, not four: still closed everywhere.
    assert a.generate("a3") == "backup"
    assert a.generate("a4") == "backup"
    st = fleet_state(b)
    assert st["state"] == "closed" and st["failures"] == 2
    assert state(a) == state(b) == "closed"
    # The third in a row opens it fleet-wide.
    assert a.generate("a5") == "backup"
    assert _until(lambda: state(b) == "open")
    assert pb.calls["ok"] == 2  # "y" and "b1"; nothing since the opening
    assert b.generate("b2") == "backup" and pb.calls["ok"] == 2


def test_half_open_trials_are_leased_fleet_wide(redis_srv: RedisServer) -> None:
    pa, pb = Model(), Model()
    ca, cb = Clock(), Clock()
    a, b = make(redis_srv.url, pa, ca, "h"), make(redis_srv.url, pb, cb, "h")
    listening(a, b)
    pa.mode = "fail"
    assert a.generate("open it") == "backup"
    assert _until(lambda: state(a) == "open" and state(b) == "open")
    assert b.generate("while open") == "backup" and sum(pb.calls.values()) == 0
    # Past the recovery timeout on every clock: half-open, one trial fleet-wide.
    ca.t += 1.0
    cb.t += 1.0
    assert _until(lambda: fleet_state(a)["state"] == "half-open")
    pa.mode = "hold"
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(a.generate("trial")))
    t.start()
    assert pa.entered.wait(10)  # a holds the fleet's only trial lease
    assert fleet_state(b)["trials"] == 1
    r = b.generate_response("not a trial")
    assert r.text == "backup" and sum(pb.calls.values()) == 0
    assert "half-open fleet-wide" in str(r.errors[0][1])
    pa.go.set()
    t.join(10)
    assert out == ["primary"]  # the trial answered: closed fleet-wide
    assert _until(lambda: state(b) == "closed")
    assert fleet_state(b) == {"state": "closed", "failures": 0, "retry_after": 0.0, "trials": 0}
    assert b.generate("after") == "primary" and pb.calls["ok"] == 1
    assert _until(lambda: b._models["m"].inline_sync)  # nobody watches a clean model


def test_a_failed_trial_reopens_for_everyone(redis_srv: RedisServer) -> None:
    pa, pb = Model(), Model()
    ca, cb = Clock(), Clock()
    a, b = make(redis_srv.url, pa, ca, "r"), make(redis_srv.url, pb, cb, "r")
    listening(a, b)
    pa.mode = "fail"
    assert a.generate("open it") == "backup"
    assert _until(lambda: state(b) == "open")
    ca.t += 1.0
    cb.t += 1.0
    assert _until(lambda: fleet_state(a)["state"] == "half-open")
    # b's trial fails: the fleet reopens and a hears it (its local breaker trips again).
    pb.mode = "fail"
    a.reset_circuit_breaker("m")  # so that seeing it open again means the event came
    assert b.generate("trial") == "backup" and pb.calls["fail"] == 1
    assert _until(lambda: state(a) == "open")
    st = fleet_state(a)  # reopened, for the millisecond of its recovery timeout
    assert st["failures"] == 2 and st["trials"] == 0
    assert a.generate("after") == "backup" and pa.calls["fail"] == 1


def test_a_trial_without_an_outcome_gives_its_lease_back(redis_srv: RedisServer) -> None:
    pa = Model()
    ca = Clock()
    a, b = make(redis_srv.url, pa, ca, "s"), make(redis_srv.url, Model(), Clock(), "s")
    listening(a, b)

    class Chunks:
        def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            return "one two"

        def stream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
            if pa.mode == "fail":
                raise ConnectionError("provider down")
            yield "one "
            yield "two"

    a.register_model("m", Chunks())
    pa.mode = "fail"
    assert list(a.stream("open it")) == ["backup"]
    assert _until(lambda: state(b) == "open")
    ca.t += 1.0
    assert _until(lambda: fleet_state(a)["state"] == "half-open")
    pa.mode = "ok"
    it = a.stream("trial")
    assert next(it) == "one "
    assert fleet_state(a)["trials"] == 1  # the stream's attempt holds the lease
    it.close()  # abandoned after its first chunk: no outcome
    assert _until(lambda: fleet_state(a)["trials"] == 0)
    assert fleet_state(a)["state"] == "half-open"  # neither closed nor reopened


def test_streams_read_and_write_the_shared_tier(redis_srv: RedisServer) -> None:
    calls = Counter[str]()

    class Chunks:
        def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            calls[prompt] += 1
            return "answer to " + prompt

        def stream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
            calls[prompt] += 1
            yield "answer "
            yield "to " + prompt

    def mk() -> LLMManager:
        m = LLMManager(redis=redis_srv.url, namespace="st")
        m.register_model("m", Chunks())
        m.set_active_model("m")
        return m

    a, b = mk(), mk()
    assert a.generate("q") == "answer to q"
    assert list(b.stream("q")) == ["answer to q"]  # b's L1 misses; Redis has it, in one chunk
    assert calls["q"] == 1 and b.get_metrics()["l2_hits"] == 1
    assert list(b.stream("new")) == ["answer ", "to new"]
    assert a.generate("new") == "answer to new" and calls["new"] == 1


def test_astream_reads_and_writes_the_shared_tier(redis_srv: RedisServer) -> None:
    import asyncio

    calls = Counter[str]()

    class Chunks:
        async def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
            return "answer to " + prompt

        async def astream(self, prompt: str, kwargs: dict[str, Any]) -> Any:
            calls[prompt] += 1
            yield "answer "
            yield "to " + prompt

    def mk() -> LLMManager:
        m = LLMManager(redis=redis_srv.url, namespace="ast")
        m.register_model("m", Chunks())
        m.set_active_model("m")
        return m

    a, b = mk(), mk()

    async def main() -> None:
        assert [c async for c in a.astream("q")] == ["answer ", "to q"]
        assert [c async for c in b.astream("q")] == ["answer to q"]
        assert calls["q"] == 1 and b.get_metrics()["l2_hits"] == 1

    asyncio.run(main())
