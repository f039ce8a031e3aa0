"""The retry budget (issue 18, retry_budget.py, src/budget.rs): retries may add at most a
share of the requests over a 10 s window, plus a floor; past it, a failure moves to the
next model at once, counted in ``retries_denied``. Fake clocks and scripted models: no
test waits for real (the Redis tests poll a real server, bounded).
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenticaiframework._native import ManagerStats, RetryBudget
from agenticaiframework.llms import LLMManager, NonRetryableError, retry_budget


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Script:
    """A model: each call records its time and runs the next step (an exception to raise,
    or text); past the steps, ``then``."""

    def __init__(self, clock: Clock, *steps: Any, then: Any = "ok") -> None:
        self.clock = clock
        self.steps = list(steps)
        self.then = then
        self.seen: list[float] = []

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.seen.append(self.clock.t)
        step = self.steps.pop(0) if self.steps else self.then
        if isinstance(step, BaseException):
            raise step
        return str(step)


def down(clock: Clock) -> Script:
    return Script(clock, then=ConnectionError("primary down"))


def manager(clock: Clock, **kw: Any) -> tuple[LLMManager, list[float]]:
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.t += s

    async def async_sleep(s: float) -> None:
        slept.append(s)

    kw.setdefault("max_retries", 2)  # two attempts per model: one retry each
    kw.setdefault("failure_threshold", 10_000)  # the breaker out of the way
    kw.setdefault("backoff_base", 0.0)  # retries at the same instant: one window
    m = LLMManager(clock=clock, sleep=sleep, async_sleep=async_sleep, enable_caching=False, **kw)
    return m, slept


def route(m: LLMManager, primary: Any, fallback: Any) -> None:
    m.register_model("primary", primary)
    m.register_model("fallback", fallback)
    m.set_active_model("primary")
    m.set_fallback_chain(["fallback"])


def counts(m: LLMManager) -> tuple[int, int, int]:
    met = m.get_metrics()
    return met["total_requests"], met["total_retries"], met["retries_denied"]


# ------------------------------------------------------------------ the share, exactly


def test_retries_add_at_most_their_share_of_the_requests() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.2, min_retries_per_second=0)
    primary, fallback = down(clock), Script(clock)
    route(m, primary, fallback)
    for i in range(100):
        assert m.generate(f"p{i}") == "ok"
    # The 5th request makes room for one retry (0.2 * 5), and so on: 20 of 100.
    assert counts(m) == (100, 20, 80)
    assert len(primary.seen) == 120 and len(fallback.seen) == 100
    assert m.get_metrics()["fallbacks"] == 100
    assert m.get_model_info("primary")["stats"]["retries"] == 20


def test_which_requests_retry() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.5, min_retries_per_second=0)
    primary = down(clock)
    route(m, primary, Script(clock))
    retried = []
    for i in range(6):
        before = len(primary.seen)
        m.generate(f"p{i}")
        retried.append(len(primary.seen) - before == 2)
    # Request k sees k requests: room for floor(k / 2) retries in all.
    assert retried == [False, True, False, True, False, True]


def test_the_floor_allows_retries_without_requests_to_pay_for_them() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.0, min_retries_per_second=1)
    route(m, down(clock), Script(clock))
    for i in range(30):
        m.generate(f"p{i}")
    assert counts(m) == (30, 10, 20)  # 1 per second over the 10 s window


def test_the_window_slides() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.0, min_retries_per_second=0.2)  # 2 per window
    route(m, down(clock), Script(clock))
    for t, retried in [(0.0, 1), (5.0, 2), (9.9, 2), (10.0, 3), (10.5, 3), (15.0, 4)]:
        clock.t = t
        m.generate(f"at {t}")
        assert counts(m)[1] == retried, t
    # At 10 s the retry of 0 s has left the window; at 15 s, the one of 5 s.


def test_old_requests_leave_the_window() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.5, min_retries_per_second=0)
    route(m, Script(clock, *(["ok"] * 10), then=ConnectionError("down")), Script(clock))
    for i in range(10):
        m.generate(f"ok {i}")
    m.generate("fails at 0")  # 11 requests in the window: room for 5
    assert counts(m) == (11, 1, 0)
    clock.t = 35.0
    m.generate("fails at 35")  # the window holds this one request alone
    assert counts(m) == (12, 1, 1)


def test_denials_reach_prometheus() -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest

    from agenticaiframework.llms.prometheus import LLMCollector

    clock = Clock()
    m, _ = manager(clock, retry_budget=0.0, min_retries_per_second=0)
    route(m, down(clock), Script(clock))
    for i in range(3):
        m.generate(f"p{i}")
    registry = CollectorRegistry()
    registry.register(LLMCollector(m))
    assert "agenticai_retries_denied_total 3.0" in generate_latest(registry).decode()


def test_cache_hits_are_not_requests_to_the_budget() -> None:
    clock = Clock()
    slept: list[float] = []
    m = LLMManager(
        clock=clock,
        sleep=slept.append,
        max_retries=2,
        backoff_base=0.0,
        retry_budget=0.5,
        min_retries_per_second=0,
    )
    route(m, Script(clock, "answer", then=ConnectionError("down")), Script(clock))
    for _ in range(10):
        m.generate("the same prompt")  # one miss, nine hits
    m.generate("fails 1")  # 2 requests reached a model: room for one retry
    m.generate("fails 2")  # 3: none more (the hits would have made room for 5)
    met = m.get_metrics()
    assert met["cache_hits"] == 9 and met["total_requests"] == 12
    assert (met["total_retries"], met["retries_denied"]) == (1, 1)


def test_a_denied_retry_moves_on_at_once() -> None:
    clock = Clock()
    m, slept = manager(clock, retry_budget=0.0, min_retries_per_second=0, backoff_base=1.0)
    primary, fallback = down(clock), Script(clock)
    route(m, primary, fallback)
    r = m.generate_response("p")
    assert r.text == "ok" and r.attempts == 2 and slept == [] and fallback.seen == [0.0]
    assert counts(m) == (1, 0, 1)
    # Without the budget the same route waits out the backoff before its retry.
    m2, slept2 = manager(Clock(), backoff_base=1.0)
    route(m2, down(clock), Script(clock))
    assert m2.generate_response("p").attempts == 3 and slept2 == [1.0]
    assert m2.get_metrics()["retries_denied"] == 0


def test_a_move_to_another_deployment_is_a_retry_for_the_budget() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.0, min_retries_per_second=0, max_retries=3)
    first, second, fallback = down(clock), down(clock), Script(clock)
    m.register_model("m", first)
    m.add_deployment("m", second)
    m.register_model("fallback", fallback)
    m.set_active_model("m")
    m.set_fallback_chain(["fallback"])
    for i in range(20):
        assert m.generate(f"p{i}") == "ok"
    # Each request's first pick fails; the move to the other deployment is denied.
    assert len(first.seen) + len(second.seen) == 20 and len(fallback.seen) == 20
    assert counts(m) == (20, 0, 20)
    # Without the budget, the other deployment is tried at once, then each is retried.
    m2, _ = manager(clock, max_retries=3)
    a, b = down(clock), down(clock)
    m2.register_model("m", a)
    m2.add_deployment("m", b)
    m2.register_model("fallback", Script(clock))
    m2.set_active_model("m")
    m2.set_fallback_chain(["fallback"])
    m2.generate("p")
    assert len(a.seen) + len(b.seen) == 3 and m2.get_metrics()["total_retries"] == 2


def test_a_failure_that_is_not_retried_asks_nothing() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.0, min_retries_per_second=0)
    route(m, Script(clock, then=NonRetryableError("not to be retried")), Script(clock))
    m.generate("p")
    assert counts(m) == (1, 0, 0)


def test_a_wait_past_the_deadline_spends_no_budget() -> None:
    clock = Clock()
    m, slept = manager(clock, retry_budget=0.0, min_retries_per_second=0.1, backoff_base=1.0)
    primary = down(clock)
    route(m, primary, Script(clock))
    # The backoff (1 s) would end past the deadline: the next model at once, no withdrawal.
    assert m.generate("p", deadline=0.5) == "ok"
    assert counts(m) == (1, 0, 0) and slept == []
    # So the window's one retry is still there for a request that can wait.
    m.generate("q")
    assert counts(m) == (2, 1, 0) and slept == [1.0]
    m.generate("r")
    assert counts(m) == (3, 1, 1)


def test_streams_are_budgeted_too() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.0, min_retries_per_second=0)
    route(m, down(clock), Script(clock, "streamed"))
    assert "".join(m.stream("p")) == "streamed"
    assert counts(m) == (1, 0, 1)


def test_async_requests_share_the_budget_exactly() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.2, min_retries_per_second=0)
    calls = {"primary": 0, "fallback": 0}

    async def primary(prompt: str, kwargs: dict[str, Any]) -> str:
        calls["primary"] += 1
        raise ConnectionError("down")

    async def fallback(prompt: str, kwargs: dict[str, Any]) -> str:
        calls["fallback"] += 1
        return "ok"

    route(m, primary, fallback)

    async def main() -> list[str]:
        return await asyncio.gather(*(m.agenerate(f"p{i}") for i in range(200)))

    assert asyncio.run(main()) == ["ok"] * 200
    assert counts(m) == (200, 40, 160)
    assert calls == {"primary": 240, "fallback": 200}


def test_threads_never_overshoot_the_budget() -> None:
    clock = Clock()  # never moves: one slot, where the CAS makes the bound exact
    m, _ = manager(clock, retry_budget=0.2, min_retries_per_second=0)
    route(m, down(clock), Script(clock))
    go = threading.Barrier(8)

    def worker(w: int) -> None:
        go.wait()
        for i in range(50):
            m.generate(f"{w}-{i}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total, retries, denied = counts(m)
    assert total == 400 and retries + denied == 400
    assert 0 < retries <= 80  # never past 0.2 of the requests
    assert m.get_metrics()["successful_requests"] == 400


def test_an_extra_attempt_withdraws_without_counting_a_denial() -> None:
    clock = Clock()
    m, _ = manager(clock, retry_budget=0.0, min_retries_per_second=0.1)  # 1 per window
    assert retry_budget.withdraw(m) is True
    assert retry_budget.withdraw(m) is False
    assert counts(m) == (0, 0, 0)
    assert retry_budget.withdraw(LLMManager()) is True  # no budget: always


def test_off_by_default() -> None:
    m = LLMManager()
    assert m._retry_budget is None and "_retry_budget" not in m.__dict__
    assert m.get_metrics()["retries_denied"] == 0


@pytest.mark.parametrize(
    ("kw", "error", "text"),
    [
        ({"retry_budget": True}, TypeError, "retry_budget must be a number"),
        ({"retry_budget": "0.2"}, TypeError, "retry_budget must be a number"),
        ({"retry_budget": -0.1}, ValueError, "retry_budget must be a finite number >= 0"),
        ({"retry_budget": math.nan}, ValueError, "retry_budget must be a finite"),
        ({"retry_budget": 1001}, ValueError, "<= 1000"),
        ({"min_retries_per_second": 10}, ValueError, "min_retries_per_second needs"),
        (
            {"retry_budget": 0.2, "min_retries_per_second": -1},
            ValueError,
            "min_retries_per_second must be a finite number >= 0",
        ),
        (
            {"retry_budget": 0.2, "min_retries_per_second": math.inf},
            ValueError,
            "min_retries_per_second must be a finite",
        ),
        ({"retry_budget": 0.2, "min_retries_per_second": False}, TypeError, "a number"),
    ],
)
def test_bad_parameters_are_typed_errors(
    kw: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        LLMManager(**kw)


def test_the_native_budget_checks_its_own_arguments() -> None:
    with pytest.raises(ValueError, match="window must be > 0"):
        RetryBudget(0.2, window=0)
    with pytest.raises(TypeError, match="clock must be a callable"):
        RetryBudget(0.2, clock=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deposit"):
        RetryBudget(0.2, stats=ManagerStats()).deposit()
    with pytest.raises(OverflowError):
        RetryBudget(0.2).try_withdraw(-1)
    b = RetryBudget(0.2)
    assert (b.retry_budget, b.min_retries_per_second, b.window) == (0.2, 10.0, 10.0)

    def broken() -> float:
        raise RuntimeError("clock broke")

    n = [0]

    def flaky() -> float:
        n[0] += 1  # construction reads the clock twice
        if n[0] > 2:
            raise RuntimeError("clock broke")
        return 0.0

    with pytest.raises(RuntimeError, match="clock broke"):
        RetryBudget(0.2, clock=broken)
    with pytest.raises(RuntimeError, match="clock broke"):
        RetryBudget(0.2, clock=flaky).try_withdraw()
    with pytest.raises(TypeError, match="must return a number"):
        RetryBudget(0.2, clock=lambda: "soon")  # type: ignore[arg-type,return-value]


# ------------------------------------------------------------------ against a plain model

SLOTS = 10
M40 = (1 << 40) - 1
BIAS = 1 << 62


def _diff(a: int, b: int) -> int:
    d = (a - b) & M40
    return 0 if d >= 1 << 39 else d


def _ppm(x: float) -> int:
    return math.floor(max(x, 0.0) * 1e6 + 0.5)


class PlainBudget:
    """The window as src/budget.rs documents it, one thread, in plain Python."""

    def __init__(self, share: float, floor: float, window: float) -> None:
        self.width = max(-(-round(window * 1e9) // SLOTS), 1)
        self.share, self.reserve = _ppm(share), _ppm(floor * window)
        self.ring = [[0, 0, 0] for _ in range(SLOTS)]  # stamp, retries, base
        self.bias = BIAS // self.width * self.width  # an injected clock's 0 starts a slot
        self.origin = (self.stamp_at(self.bias), 0)
        self.requests = 0

    def stamp_at(self, ns: int) -> int:
        return ns // self.width + 1

    def claim(self, ns: int) -> int:
        stamp = max([self.stamp_at(ns)] + [s[0] for s in self.ring])
        slot = self.ring[stamp % SLOTS]
        if slot[0] < stamp:
            slot[:] = [stamp, 0, self.requests & M40]
        return stamp

    def window(self, ns: int) -> tuple[int, int]:
        stamp = self.claim(ns)
        req = self.requests & M40
        first = max(stamp - (SLOTS - 1), 0)
        retries = 0
        inside: tuple[int, int] | None = None
        before: tuple[int, int] | None = None
        samples = [self.origin] + [(s[0], s[2]) for s in self.ring if 0 < s[0] <= stamp]
        for s in self.ring:
            if 0 < s[0] <= stamp and s[0] >= first:
                retries += s[1]
        for st_, base in samples:
            age = _diff(req, base)
            if st_ >= first:
                if (
                    inside is None
                    or st_ < inside[0]
                    or (st_ == inside[0] and age > _diff(req, inside[1]))
                ):
                    inside = (st_, base)
            elif (
                before is None
                or st_ > before[0]
                or (st_ == before[0] and age < _diff(req, before[1]))
            ):
                before = (st_, base)
        if inside is not None and before is not None and inside[0] > first:
            (j, bj), (i, bi) = inside, before
            n = _diff(req, bj) + _diff(bj, bi) * (j - first) // (j - i)
        elif inside is not None:
            n = _diff(req, inside[1])
        elif before is not None:
            span = max(stamp - before[0], 1)
            n = _diff(req, before[1]) * min(SLOTS, span) // span
        else:
            n = 0
        return n, retries

    def try_withdraw(self, ns: int) -> bool:
        stamp = self.claim(ns)
        n, retries = self.window(ns)
        if (retries + 1) * 1_000_000 > self.share * n + self.reserve:
            return False
        self.ring[stamp % SLOTS][1] += 1
        return True


ops = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(0, 4_000)),  # ms
        st.tuples(st.just("deposit"), st.integers(0, 30)),
        st.tuples(st.just("withdraw"), st.just(0)),
        st.tuples(st.just("counts"), st.just(0)),
    ),
    max_size=120,
)


@given(
    share=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 3.0]),
    floor=st.sampled_from([0.0, 0.1, 1.0, 10.0]),
    window=st.sampled_from([1.0, 2.5, 10.0]),
    steps=ops,
)
def test_the_native_window_matches_a_plain_model(
    share: float, floor: float, window: float, steps: list[tuple[str, int]]
) -> None:
    ms = [0]
    native = RetryBudget(share, floor, window=window, clock=lambda: ms[0] / 1000)
    plain = PlainBudget(share, floor, window)
    for op, n in steps:
        ns = plain.bias + round(ms[0] / 1000 * 1e9)
        if op == "tick":
            ms[0] += n
        elif op == "deposit":
            native.deposit(n)
            plain.requests += n
        elif op == "withdraw":
            assert native.try_withdraw() == plain.try_withdraw(ns)
        else:
            assert native.window_counts() == plain.window(ns)


# ------------------------------------------------------------------ fleet-wide (real Redis)


def fleet_manager(url: str, clock: Clock, ns: str) -> LLMManager:
    from agenticaiframework.llms.fleet import Fleet

    m, _ = manager(clock, redis=Fleet.from_url(url, ns), retry_budget=0.5, min_retries_per_second=0)
    return m


def test_managers_of_one_namespace_share_one_budget(redis_srv: Any) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")
    from agenticaiframework.llms.fleet_budget import FleetBudget

    clock = Clock()
    # A namespace per test: the managers of earlier tests may still publish to theirs.
    busy, failing = (fleet_manager(redis_srv.url, clock, "rb-share") for _ in range(2))
    alone = fleet_manager(redis_srv.url, clock, "rb-other")
    for m in (busy, failing, alone):
        assert isinstance(m._retry_budget, FleetBudget)
    route(busy, Script(clock), Script(clock))
    for i in range(10):
        busy.generate(f"ok {i}")
    shared = busy._retry_budget
    assert isinstance(shared, FleetBudget) and shared.refresh()
    budget = failing._retry_budget
    assert isinstance(budget, FleetBudget) and budget.refresh()
    assert budget.others() == (10, 0)  # the busy manager's requests, its window's
    # 4 failing requests: alone, room for 2 retries (0.5 of 4); with the fleet's 10
    # requests, for all 4.
    for m in (failing, alone):
        route(m, down(clock), Script(clock))
        for i in range(4):
            m.generate(f"fails {i}")
    assert counts(failing) == (4, 4, 0)
    assert counts(alone) == (4, 2, 2)
    # The busy manager now sees the failing one's retries in its own decisions.
    assert budget.refresh() and shared.refresh() and shared.others() == (4, 4)


def test_redis_out_budgets_alone_and_fails_no_request(redis_srv: Any) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")
    from agenticaiframework.llms.fleet_budget import FleetBudget

    clock = Clock()
    busy, failing = (fleet_manager(redis_srv.url, clock, "rb-out") for _ in range(2))
    route(busy, Script(clock), Script(clock))
    for i in range(10):
        busy.generate(f"ok {i}")
    shared, budget = busy._retry_budget, failing._retry_budget
    assert isinstance(shared, FleetBudget) and isinstance(budget, FleetBudget)
    assert shared.refresh() and budget.refresh() and budget.others() == (10, 0)
    from redis_server import until

    # Paused (answers nothing): the round trip ends at the socket timeout, alone.
    redis_srv.pause()
    assert not budget.refresh() and budget.degraded and budget.others() == (0, 0)
    redis_srv.resume()
    assert until(lambda: shared.refresh() and budget.refresh())
    assert budget.others() == (10, 0)
    redis_srv.stop()
    assert not budget.refresh() and budget.degraded and budget.others() == (0, 0)
    route(failing, down(clock), Script(clock))
    for i in range(4):
        assert failing.generate(f"fails {i}") == "ok"
    assert counts(failing) == (4, 2, 2)  # its own window alone
    redis_srv.start()
    # Back (after the fleet's outage cooldown): the sums are read again.
    assert until(lambda: shared.refresh() and budget.refresh())
    assert not budget.degraded and budget.others()[0] == 10
