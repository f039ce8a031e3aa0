"""RateLimiter (src/limiter.rs) against a plain Python GCRA on a fake clock, under
threads and tasks, with bad input; and the limits in the walk (metadata rpm/tpm,
ratelimit.py): skipped models, fail fast or queue, token settlement, a 429's cool-down,
usage routing."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agenticaiframework._native import RateLimiter, Reservation
from agenticaiframework.llms import (
    AllModelsFailedError,
    LLMManager,
    LLMResponse,
    QuotaExhaustedError,
)
from agenticaiframework.llms.errors import (
    AdmissionRejectedError,
    RateLimitedError,
    RateLimitError,
)
from agenticaiframework.llms.ratelimit import capacity_returns

MINUTE_NS = 60_000_000_000
BIAS = (
    1 << 62
)  # the native timeline's origin (src/py_limiter.rs): ns from the clock's origin + this


class FakeClock:
    """Whole milliseconds, so the native ns and the model's agree exactly."""

    def __init__(self, ms: int = 0) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


class Gcra:
    """One limit of src/limiter.rs, written plainly (ints, ns)."""

    def __init__(self, per_minute: float, burst: int | None) -> None:
        self.t = math.ceil(MINUTE_NS / per_minute)
        self.burst = burst if burst is not None else max(1, math.floor(per_minute))
        self.cap = self.burst * self.t
        self.tat = 0

    def wait(self, cost: int, now: int) -> float:
        if cost > self.burst:
            return math.inf
        end = max(self.tat, now) + cost * self.t
        return max(0, end - now - self.cap)

    def acquire(self, cost: int, now: int) -> int | float:
        """The slot's end, or the wait (ns; inf)."""
        w = self.wait(cost, now)
        if w:
            return -w if w != math.inf else -math.inf
        self.tat = max(self.tat, now) + cost * self.t
        return self.tat

    def refund(self, units: int, end: int, now: int) -> int:
        back = min(units * self.t, max(0, end - now), max(0, self.tat - now))
        self.tat -= back
        return back

    def charge(self, units: int, now: int) -> None:
        if units:
            self.tat = max(self.tat, now) + units * self.t

    def available(self, now: int) -> float:
        return (self.cap - max(0, self.tat - now)) / self.t


class Held:
    """A reservation the model holds, and what it has counted against each limit."""

    def __init__(self, native: Reservation, tokens: int, req_end: int, end: int, t: int) -> None:
        self.native, self.tokens, self.req_end, self.end, self.t = native, tokens, req_end, end, t
        self.req_ns = 0  # ns of request capacity counted for it (net of refunds)
        self.tok_ns = 0


class LimiterMachine(RuleBasedStateMachine):
    @initialize(
        rpm=st.one_of(st.none(), st.sampled_from([1, 2, 3, 7, 60, 0.5])),
        tpm=st.one_of(st.none(), st.sampled_from([10, 60, 100, 1000, 7])),
        burst=st.one_of(st.none(), st.integers(1, 4)),
        token_burst=st.one_of(st.none(), st.integers(1, 50)),
        start=st.integers(-10_000, 10_000),
    )
    def setup(
        self,
        rpm: float | None,
        tpm: float | None,
        burst: int | None,
        token_burst: int | None,
        start: int,
    ) -> None:
        burst = burst if rpm is not None else None
        token_burst = token_burst if tpm is not None else None
        self.clock = FakeClock(start)
        self.origin = start
        self.lim = RateLimiter(rpm, tpm, burst=burst, token_burst=token_burst, clock=self.clock)
        self.req = Gcra(rpm, burst) if rpm is not None else None
        self.tok = Gcra(tpm, token_burst) if tpm is not None else None
        self.cool_until = 0
        self.held: list[Held] = []
        self.events: list[Held] = []
        self.counts = {"admitted": 0, "refused": 0, "settled": 0}

    def now(self) -> int:
        return BIAS + (self.clock.ms - self.origin) * 1_000_000

    def model_acquire(self, tokens: int, now: int) -> tuple[float, int, int]:
        """(wait s, request end, token end), taking what the native takes."""
        if now < self.cool_until:
            return (self.cool_until - now) / 1e9, 0, 0
        req_end = 0
        if self.req is not None:
            got = self.req.acquire(1, now)
            if got <= 0:
                w = -got
                if self.tok is not None:
                    w = max(w, self.tok.wait(tokens, now))
                return (w / 1e9 if w != math.inf else math.inf), 0, 0
            req_end = int(got)
        end = 0
        if self.tok is not None:
            got = self.tok.acquire(tokens, now)
            if got <= 0:
                if self.req is not None:
                    self.req.refund(1, req_end, now)
                return (-got / 1e9 if got != -math.inf else math.inf), 0, 0
            end = int(got)
        return 0.0, req_end, end

    @rule(tokens=st.integers(0, 60))
    def acquire(self, tokens: int) -> None:
        now = self.now()
        r = self.lim.reserve(tokens)
        wait, req_end, end = self.model_acquire(tokens, now)
        assert r.retry_after == wait
        assert r.admitted == (wait == 0.0)
        if not r.admitted:
            self.counts["refused"] += 1
            return
        self.counts["admitted"] += 1
        h = Held(r, tokens if self.tok else 0, req_end, end, now)
        h.req_ns = self.req.t if self.req else 0
        h.tok_ns = h.tokens * self.tok.t if self.tok else 0
        self.held.append(h)
        self.events.append(h)

    @rule(data=st.data(), actual=st.integers(0, 80), release=st.booleans())
    def settle(self, data: st.DataObject, actual: int, release: bool) -> None:
        if not self.held:
            return
        h = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        now = self.now()
        self.counts["settled"] += 1
        if release:
            self.lim.release(h.native)
            if self.req is not None:
                h.req_ns -= self.req.refund(1, h.req_end, now)
            actual = 0
        else:
            got = self.lim.settle(h.native, actual)
        expected = 0
        if self.tok is not None:
            if actual < h.tokens:
                back = self.tok.refund(h.tokens - actual, h.end, now)
                h.tok_ns -= back
                expected = -(back // self.tok.t)
            else:
                self.tok.charge(actual - h.tokens, now)
                expected = actual - h.tokens
        if not release:
            assert got == expected

    @rule(ms=st.integers(0, 200_000))
    def cool_down(self, ms: int) -> None:
        self.lim.cool_down(ms / 1000)
        self.cool_until = max(self.cool_until, self.now() + ms * 1_000_000)

    @rule(dt=st.integers(-5_000, 20_000))
    def advance(self, dt: int) -> None:
        self.clock.ms += dt

    @rule(back=st.integers(1, 600_000))
    def jump_back(self, back: int) -> None:
        self.clock.ms -= back

    @invariant()
    def agrees(self) -> None:
        now = self.now()
        snap = self.lim.snapshot()
        assert {k: snap[k] for k in self.counts} == self.counts
        assert snap["requests_available"] == (self.req.available(now) if self.req else None)
        assert snap["tokens_available"] == (self.tok.available(now) if self.tok else None)
        assert snap["cooldown_remaining"] == max(0, self.cool_until - now) / 1e9

    def teardown(self) -> None:
        """Never more than burst + rate * span over any span of the recorded admission
        times (net of refunds; usage charged beyond a reservation is debt, not checked
        here), even across a clock that jumped back."""
        for gcra, attr in ((self.req, "req_ns"), (self.tok, "tok_ns")):
            if gcra is None:
                continue
            ev = sorted((h.t, getattr(h, attr)) for h in self.events)
            for i, (ti, _) in enumerate(ev):
                total = 0
                for tj, c in ev[i:]:
                    total += c
                    assert total <= gcra.cap + (tj - ti), (attr, ti, tj, total, gcra.cap)


TestLimiterMachine = LimiterMachine.TestCase
TestLimiterMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


def test_threads_admit_exactly_the_burst() -> None:
    clock = FakeClock(0)
    lim = RateLimiter(rpm=1000, tpm=100_000, clock=clock)
    admitted = [0] * 8
    go = threading.Barrier(8)

    def worker(i: int) -> None:
        go.wait()
        for _ in range(1000):
            if lim.try_acquire(10) == 0.0:
                admitted[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sum(admitted) == 1000
    snap = lim.snapshot()
    assert (snap["admitted"], snap["refused"]) == (1000, 7000)
    assert (snap["requests_available"], snap["tokens_available"]) == (0.0, 90_000.0)


def test_a_thousand_tasks_admit_exactly_the_burst() -> None:
    clock = FakeClock(0)
    lim = RateLimiter(rpm=300, clock=clock)

    async def task() -> bool:
        await asyncio.sleep(0)
        return lim.try_acquire() == 0.0

    async def run() -> list[bool]:
        return await asyncio.gather(*(task() for _ in range(1000)))

    assert sum(asyncio.run(run())) == 300
    clock.ms += 1000  # one second: rpm 300 refills five
    assert sum(lim.try_acquire() == 0.0 for _ in range(10)) == 5


def test_settle_gives_back_only_what_has_not_refilled() -> None:
    clock = FakeClock(0)
    lim = RateLimiter(tpm=60, clock=clock)  # one token a second, burst 60
    a = lim.reserve(60)
    clock.ms += 60_000
    b = lim.reserve(60)
    assert a.admitted and b.admitted
    assert lim.settle(a, 0) == 0  # a's capacity came back long ago
    assert lim.try_acquire(1) == 1.0
    assert lim.settle(b, 20) == -40
    assert lim.try_acquire(40) == 0.0
    assert lim.settle(lim.reserve(100), 5) == 0  # refused: nothing to settle
    assert lim.reserve(100).retry_after == math.inf


def test_usage_over_the_reservation_is_debt() -> None:
    clock = FakeClock(0)
    lim = RateLimiter(rpm=100, tpm=600, clock=clock)  # 10 tokens a second
    r = lim.reserve(100)
    assert lim.settle(r, 1100) == 1000
    assert lim.snapshot()["tokens_available"] == -500.0
    assert lim.try_acquire() == 50.0  # even a request with no tokens waits
    assert lim.retry_after() == 50.0
    clock.ms += 50_000
    assert lim.try_acquire() == 0.0


def test_cool_down_and_headroom() -> None:
    clock = FakeClock(0)
    lim = RateLimiter(rpm=10, tpm=1000, clock=clock)
    assert lim.headroom() == 1.0
    lim.try_acquire(500)
    assert lim.headroom() == 0.5
    lim.cool_down(2.5)
    assert lim.try_acquire() == 2.5 and lim.headroom() == 0.0
    clock.ms += 2500
    assert lim.try_acquire() == 0.0
    assert RateLimiter().try_acquire(10**12) == 0.0  # no limits: always admitted


def test_native_clock() -> None:
    lim = RateLimiter(rpm=2)
    assert (lim.try_acquire(), lim.try_acquire()) == (0.0, 0.0)
    assert 29.0 < lim.try_acquire() <= 30.0
    assert lim.clock is None and lim.rpm == 2.0 and lim.burst == 2
    assert "rpm=2" in repr(lim)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rpm": -1}, "rpm"),
        ({"rpm": math.nan}, "rpm"),
        ({"rpm": math.inf}, "rpm"),
        ({"rpm": 1e9 + 1}, "rpm"),
        ({"rpm": 10**400}, "rpm"),
        ({"tpm": -5.5}, "tpm"),
        ({"tpm": 2e9}, "tpm"),
        ({"rpm": 10, "burst": 0}, "burst"),
        ({"rpm": 10, "burst": -1}, "burst"),
        ({"rpm": 10, "burst": 10**12}, "burst"),
        ({"tpm": 10, "token_burst": 0}, "token_burst"),
        ({"burst": 5}, "burst"),
        ({"token_burst": 5}, "token_burst"),
    ],
)
def test_bad_limits_are_value_errors_naming_the_parameter(
    kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{param} "):
        RateLimiter(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"rpm": "10"}, "rpm"), ({"tpm": True}, "tpm"), ({"rpm": 1, "burst": 2.0}, "burst")],
)
def test_wrong_types_are_type_errors(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(TypeError, match=rf"^{param} "):
        RateLimiter(**kwargs)


def test_bad_call_arguments() -> None:
    lim = RateLimiter(rpm=10, tpm=100)
    with pytest.raises(ValueError, match=r"^tokens "):
        lim.try_acquire(-1)
    with pytest.raises(ValueError, match=r"^actual "):
        lim.settle(lim.reserve(1), -1)
    for s in (-1.0, math.nan, math.inf, 1e10):
        with pytest.raises(ValueError, match=r"^seconds "):
            lim.cool_down(s)
    with pytest.raises(TypeError):
        RateLimiter(clock=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-finite"):
        RateLimiter(rpm=1, clock=lambda: math.nan)


# ---------------------------------------------------------------- the limits in the walk


async def _no_wait(_: float) -> None:
    return None


def limited(clock: FakeClock, **kw: Any) -> LLMManager:
    m = LLMManager(sleep=lambda _: None, async_sleep=_no_wait, clock=clock, **kw)
    m.register_model("a", lambda p, k: "a", {"rpm": 2})
    m.register_model("b", lambda p, k: "b")
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    return m


def test_a_model_over_its_rpm_is_skipped_and_the_request_falls_back() -> None:
    clock = FakeClock(0)
    m = limited(clock)
    assert not m._models["a"].inline_sync  # a limited model's first try walks
    assert [m.generate(f"p{i}", use_cache=False) for i in range(3)] == ["a", "a", "b"]
    r = m.generate_response("q", use_cache=False)
    assert r.model == "b"
    err = r.errors[-1][1]
    assert isinstance(err, RateLimitedError) and isinstance(err, AdmissionRejectedError)
    assert err.model == "a" and err.retry_after == 30.0
    assert capacity_returns(r.errors) == 30.0
    assert asyncio.run(m.agenerate("r", use_cache=False, timeout=5)) == "b"
    assert list(m.stream("t", use_cache=False)) == ["b"]
    clock.ms += 30_000  # one request's worth refilled
    assert m.generate("s", use_cache=False) == "a"
    assert m.get_model_info("a")["stats"]["requests"] == 3
    snap = m._models["a"].limiter.snapshot()
    assert snap["admitted"] == 3 and snap["refused"] == 4


def test_everything_out_fails_fast_or_waits_up_to_max_queue_wait() -> None:
    clock = FakeClock(0)
    m = LLMManager(clock=clock, sleep=lambda s: None)
    m.register_model("a", lambda p, k: "a", {"rpm": 1})
    m.set_active_model("a")
    assert m.generate("1", use_cache=False) == "a"
    with pytest.raises(QuotaExhaustedError) as info:
        m.generate("2", use_cache=False)
    assert isinstance(info.value, AllModelsFailedError) and info.value.retry_after == 60.0
    assert "capacity returns in 60.000s" in str(info.value)
    # With a queue wait the request sleeps (on the injected sleep) until capacity returns.
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.ms += round(s * 1000)

    q = LLMManager(clock=clock, sleep=sleep, max_queue_wait=90)
    q.register_model("a", lambda p, k: "a", {"rpm": 1})
    q.set_active_model("a")
    assert q.generate("1", use_cache=False) == "a"
    assert q.generate("2", use_cache=False) == "a" and slept == [60.0]
    assert q.generate("3", use_cache=False) == "a" and slept == [60.0, 60.0]
    # A wait longer than the budget fails fast.
    q2 = LLMManager(clock=clock, sleep=sleep, max_queue_wait=30)
    q2.register_model("a", lambda p, k: "a", {"rpm": 1})
    q2.set_active_model("a")
    q2.generate("1", use_cache=False)
    with pytest.raises(QuotaExhaustedError):
        q2.generate("2", use_cache=False)
    m2 = q.get_metrics()
    assert m2["successful_requests"] == 3 and m2["failed_requests"] == 0
    with pytest.raises(ValueError, match="max_queue_wait"):
        LLMManager(max_queue_wait=-1)


def test_async_requests_queue_too() -> None:
    clock = FakeClock(0)
    slept: list[float] = []

    async def asleep(s: float) -> None:
        slept.append(s)
        clock.ms += round(s * 1000)

    q = LLMManager(clock=clock, async_sleep=asleep, max_queue_wait=90)

    async def model(p: str, k: dict[str, Any]) -> str:
        return "a"

    q.register_model("a", model, {"rpm": 1})
    q.set_active_model("a")

    async def main() -> list[str]:
        return [await q.agenerate(f"p{i}", use_cache=False) for i in range(2)]

    assert asyncio.run(main()) == ["a", "a"] and slept == [60.0]


def test_tokens_are_reserved_then_settled_on_real_usage() -> None:
    clock = FakeClock(0)
    m = LLMManager(clock=clock)
    m.register_model(
        "a", lambda p, k: LLMResponse("x", prompt_tokens=10, completion_tokens=20), {"tpm": 100}
    )
    m.set_active_model("a")
    lim = m._models["a"].limiter
    # 40 characters: 10 tokens reserved (max_tokens on top when given), 30 really used.
    assert m.generate("p" * 40, use_cache=False) == "x"
    assert lim.snapshot()["tokens_available"] == 70  # settled on 30 used
    with pytest.raises(QuotaExhaustedError):
        m.generate("p" * 40, use_cache=False, max_tokens=100)  # 10 + 100 > 70
    assert m.generate("p" * 40, use_cache=False, max_tokens=40) == "x"
    assert lim.snapshot()["tokens_available"] == 40


def test_a_429_cools_that_deployment_only() -> None:
    clock = FakeClock(0)
    calls: list[str] = []

    def quota(tag: str) -> Any:
        def fn(p: str, k: dict[str, Any]) -> str:
            calls.append(tag)
            if tag == "a":
                raise RateLimitError("slow down", status=429, retry_after=7.0)
            return tag

        return fn

    m = LLMManager(clock=clock, routing="usage", sleep=lambda s: None)
    m.register_model("gpt", quota("a"), {"rpm": 1000})
    m.add_deployment("gpt", quota("b"), {"rpm": 1000})
    m.set_active_model("gpt")
    answers = [m.generate(f"p{i}", use_cache=False) for i in range(20)]
    assert answers == ["b"] * 20 and calls.count("a") <= 1  # cooled at its first 429
    a = m._models["gpt"].limiter
    assert a.headroom() == 0.0 and a.retry_after() == 7.0
    clock.ms += 7_000
    assert a.headroom() > 0


def test_usage_routing_keeps_each_deployment_under_its_quota() -> None:
    clock = FakeClock(0)
    m = LLMManager(clock=clock, routing="usage")
    seen: dict[str, int] = {"a": 0, "b": 0}

    def up(tag: str) -> Any:
        def fn(p: str, k: dict[str, Any]) -> str:
            seen[tag] += 1
            return tag

        return fn

    m.register_model("gpt", up("a"), {"rpm": 30})
    m.add_deployment("gpt", up("b"), {"rpm": 60})
    m.set_active_model("gpt")
    ok = 0
    for i in range(200):
        try:
            m.generate(f"p{i}", use_cache=False)
            ok += 1
        except QuotaExhaustedError as e:
            assert e.retry_after > 0
    assert seen == {"a": 30, "b": 60} and ok == 90  # each burst, not one more
    info = m.get_model_info("gpt")
    assert info["stats"]["requests"] == 90 and info["stats"]["short_circuits"] == 0


def test_bad_limits_in_metadata_name_their_key() -> None:
    m = LLMManager()
    for meta, key in (
        ({"rpm": -1}, "rpm"),
        ({"tpm": 0}, "tpm"),
        ({"rpm": float("nan")}, "rpm"),
        ({"rpm": 1e12}, "rpm"),
        ({"burst": 5}, "burst"),
    ):
        with pytest.raises(ValueError, match=key):
            m.register_model("x", lambda p, k: "x", meta)
    with pytest.raises(TypeError):
        m.register_model("x", lambda p, k: "x", {"rpm": "100"})


def test_capacity_returns_only_when_every_error_is_a_rate_limit() -> None:
    assert (
        capacity_returns([("a", RateLimitedError("a", 3.0)), ("b", RateLimitedError("b", 1.0))])
        == 1.0
    )
    assert capacity_returns([("a", RateLimitedError("a", 3.0)), ("b", ValueError())]) is None
