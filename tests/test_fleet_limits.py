"""Rate limits shared by the fleet (fleet_limits.py) on a real redis-server
(tests/redis_server.py): two managers in one process stand for two processes; the last
test spawns 8. The limits are chosen so that a few hundred ms of real time suffice:
rpm=1 makes the rate negligible (the burst part is then exact), rpm=600 is 10/s.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest
from redis_server import RedisServer
from redis_server import until as _until

pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")

from agenticaiframework._native import RateLimiter
from agenticaiframework.llms import LLMManager
from agenticaiframework.llms.errors import (
    AllModelsFailedError,
    QuotaExhaustedError,
    RateLimitError,
)
from agenticaiframework.llms.fleet import Fleet
from agenticaiframework.llms.fleet_limits import FleetLimiter


class Upstream:
    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.times.append(time.time())
        return "ok"


def manager(
    url: str | Fleet, up: Any, meta: dict[str, Any], ns: str = "fl", **kw: Any
) -> LLMManager:
    fleet = url if isinstance(url, Fleet) else Fleet.from_url(url, ns)
    m = LLMManager(redis=fleet, enable_caching=False, sleep=lambda _: None, **kw)
    m.register_model("m", up, meta)
    m.set_active_model("m")
    return m


def limiter(m: LLMManager) -> FleetLimiter:
    lim = m._models["m"].limiter
    assert isinstance(lim, FleetLimiter)
    return lim


def _try(m: LLMManager, prompt: str) -> bool:
    try:
        return m.generate(prompt) == "ok"
    except QuotaExhaustedError as e:
        # A refused caller waits a little, as one queued would: the refill thread needs
        # the GIL, which a loop of refusals would keep.
        time.sleep(min(e.retry_after, 0.002))
        return False


def test_a_limited_model_gets_a_fleet_limiter_and_the_picker_its_local_one(
    redis_srv: RedisServer,
) -> None:
    m = manager(redis_srv.url, Upstream(), {"rpm": 600})
    lim = limiter(m)
    assert isinstance(lim.local, RateLimiter) and (lim.rpm, lim.tpm, lim.burst) == (600, None, 600)
    assert lim.snapshot()["fleet"]["requests_held"] >= 1  # leased at registration
    label = m.add_deployment("m", Upstream(), {"rpm": 60})
    dep = m._by_key[f"m@{label}"].limiter
    assert isinstance(dep, FleetLimiter) and dep.key == "m@1"
    m.register_model("free", Upstream())
    assert m._models["free"].limiter is None  # no limit: nothing shared
    plain = LLMManager()
    plain.register_model("m", Upstream(), {"rpm": 600})
    assert isinstance(plain._models["m"].limiter, RateLimiter)  # no fleet: per process
    assert m.generate("q") == "ok"


def test_two_managers_admit_the_shared_burst_exactly(redis_srv: RedisServer) -> None:
    # rpm=1: one unit a minute refills, so over this test the fleet admits the burst.
    up_a, up_b = Upstream(), Upstream()
    a = manager(redis_srv.url, up_a, {"rpm": 1, "burst": 50})
    b = manager(redis_srv.url, up_b, {"rpm": 1, "burst": 50})
    end = time.monotonic() + 1.5
    i = 0
    while time.monotonic() < end and len(up_a.times) + len(up_b.times) < 50:
        _try(a, f"a{i}")
        _try(b, f"b{i}")
        i += 1
    for k in range(20):  # more tries: none admitted
        assert not _try(a, f"more a{k}") and not _try(b, f"more b{k}")
    assert len(up_a.times) + len(up_b.times) == 50  # each alone would admit 50
    assert up_a.times and up_b.times
    fa, fb = limiter(a).snapshot()["fleet"], limiter(b).snapshot()["fleet"]
    assert fa["granted_requests"] + fb["granted_requests"] == 50
    assert fa["requests_held"] == fb["requests_held"] == 0
    with pytest.raises(QuotaExhaustedError) as e:
        b.generate("refused")
    assert e.value.retry_after > 0


def test_two_managers_share_the_rate(redis_srv: RedisServer) -> None:
    # rpm=600 is 10/s; a burst of 5. Over ~0.6 s the pair admits at most 5 + 10/s.
    t0 = time.time()  # before the first lease
    up_a, up_b = Upstream(), Upstream()
    a = manager(redis_srv.url, up_a, {"rpm": 600, "burst": 5})
    b = manager(redis_srv.url, up_b, {"rpm": 600, "burst": 5})
    end = time.monotonic() + 0.6
    i = 0
    while time.monotonic() < end:
        _try(a, f"a{i}")
        _try(b, f"b{i}")
        i += 1
        time.sleep(0.001)
    elapsed = time.time() - t0
    times = sorted(up_a.times + up_b.times)
    assert len(times) <= 5 + 10 * elapsed
    assert len(times) >= 5 + 10 * 0.6 * 0.5  # the rate is used, not only the burst
    assert up_a.times and up_b.times
    for m, up in ((a, up_a), (b, up_b)):
        f = limiter(m).snapshot()["fleet"]
        assert len(up.times) + f["requests_held"] == f["granted_requests"]  # one unit a call
    assert _max_excess(times, 5, 10.0) <= 2  # held at a span's start: one per process


def test_a_429_cools_the_deployment_fleet_wide(redis_srv: RedisServer) -> None:
    def quota(p: str, k: dict[str, Any]) -> str:
        raise RateLimitError("slow down", status=429, retry_after=0.6)

    up_b = Upstream()
    a = manager(redis_srv.url, quota, {"rpm": 600}, max_retries=1)
    b = manager(redis_srv.url, up_b, {"rpm": 600})
    assert b.generate("before") == "ok"
    with pytest.raises(AllModelsFailedError):  # the 429, then its own cool-down
        a.generate("429")
    probe = Fleet.from_url(redis_srv.url, "fl")
    assert _until(lambda: (probe.lease("m", (None, None), (0, 0)) or _NONE).cooling > 0.3)
    # b holds at most its target of units; spending them, it leases and hears the cooling.
    target = limiter(b).snapshot()["fleet"]["requests_target"]
    admitted = sum(_try(b, f"cooling {i}") for i in range(20))
    assert admitted <= target
    with pytest.raises(QuotaExhaustedError) as e:
        b.generate("still cooling")
    assert 0.1 < e.value.retry_after <= 0.6
    assert limiter(b).local.headroom() == 0.0  # its picker passes it over too
    assert _until(lambda: _try(b, "after"), 3.0)  # over: admitted again


class _NoLease:
    cooling = 0.0


_NONE = _NoLease()


def test_redis_stopped_paused_and_restarted_never_fails_a_request(
    redis_srv: RedisServer,
) -> None:
    fleet = Fleet.from_url(redis_srv.url, "fl", cooldown=0.1)
    up = Upstream()
    # max_queue_wait: a request the allowance cannot cover while the lease that finds
    # the outage is under way waits (PENDING at a time) instead of failing.
    m = manager(fleet, up, {"rpm": 600, "burst": 20}, max_queue_wait=2.0)
    other = manager(redis_srv.url, Upstream(), {"rpm": 600, "burst": 20})
    lim = limiter(m)
    assert m.generate("before") == "ok"
    redis_srv.stop()
    for i in range(5):
        assert m.generate(f"down {i}") == "ok"
    assert _until(lambda: lim.degraded, 3.0)
    # Alone, the local limit still holds: at most its burst and rate.
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 0.2:
        r = lim.reserve(0)
        n += r.admitted
    assert n <= 20 + 10 * (time.monotonic() - t0) + 1
    assert lim.snapshot()["fleet"]["admitted_alone"] >= n
    redis_srv.start()  # empty
    assert _until(lambda: not lim.degraded, 5.0)
    assert m.generate("back") == "ok"
    # Shared again: both managers lease from the one key.
    assert _until(lambda: fleet.lease("m", (None, None), (0, 0)) is not None)
    other_lim = limiter(other)
    assert _until(lambda: _try(other, "other back") and not other_lim.degraded, 5.0)
    before = lim.snapshot()["fleet"]["leases"]
    assert m.generate("back again") == "ok"
    assert _until(lambda: lim.snapshot()["fleet"]["leases"] > before, 3.0)
    redis_srv.pause()
    try:
        assert m.generate("paused") == "ok"  # bounded by the socket timeout
        assert asyncio.run(m.agenerate("paused async")) == "ok"
        assert _until(lambda: lim.degraded, 3.0)
    finally:
        redis_srv.resume()
    assert _until(lambda: not lim.degraded, 5.0)
    assert m.generate("after") == "ok"
    s = m.get_metrics()
    assert s["failed_requests"] == 0 and s["successful_requests"] == s["total_requests"]


def test_async_requests_use_the_shared_limit(redis_srv: RedisServer) -> None:
    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        return "ok"

    a = manager(redis_srv.url, model, {"rpm": 1, "burst": 6})
    b = manager(redis_srv.url, Upstream(), {"rpm": 1, "burst": 6})

    async def main() -> int:
        ok = 0
        for i in range(30):
            try:
                ok += await a.agenerate(f"p{i}") == "ok"
            except QuotaExhaustedError:
                await asyncio.sleep(0.002)
        return ok

    got_b = sum(_try(b, f"b{i}") for i in range(3))
    assert got_b >= 1
    got_a = asyncio.run(main())
    assert got_a >= 1

    def held() -> int:  # a lease may still be on its way back
        return sum(limiter(m).snapshot()["fleet"]["requests_held"] for m in (a, b))

    assert _until(lambda: got_a + got_b + held() == 6, 2.0)  # the rest is held, unspent


def test_tokens_are_leased_settled_and_given_back(redis_srv: RedisServer) -> None:
    m = manager(redis_srv.url, Upstream(), {"tpm": 6000, "token_burst": 1000})
    lim = limiter(m)
    # A big estimate (2 + 400): beyond the target, so leased on demand (the first try
    # is refused while it is), then mostly given back on the usage reported.
    assert _until(lambda: _try_kw(m, "q" * 8, max_tokens=400), 2.0)
    f = lim.snapshot()["fleet"]
    assert f["tokens_target"] >= 800 and f["granted_tokens"] >= 402
    assert f["tokens_held"] <= max(f["tokens_target"], 402)


def _try_kw(m: LLMManager, prompt: str, **kw: Any) -> bool:
    try:
        return m.generate(prompt, **kw) == "ok"
    except QuotaExhaustedError:
        return False


def _max_excess(times: list[float], burst: int, rate: float) -> float:
    """The most admissions over ``burst + rate * d`` in any span [t_i, t_j] (d = t_j - t_i)."""
    worst = -float(burst)
    for i in range(len(times)):
        for j in range(i, len(times)):
            worst = max(worst, (j - i + 1) - (burst + rate * (times[j] - times[i])))
    return worst


# ------------------------------------------------------------------ a fleet of processes

RPM, BURST, RUN = 6000, 20, 1.0  # 100/s, a burst of 20, hammered for 1 s


def _worker(url: str, worker: int, start: Any, out: Any) -> None:
    times: list[float] = []

    def model(prompt: str, kwargs: dict[str, Any]) -> str:
        times.append(time.time())
        return "ok"

    fleet = Fleet.from_url(url, "fl8", timeout=2.0, connect_timeout=2.0)
    m = LLMManager(redis=fleet, enable_caching=False)
    m.register_model("m", model, {"rpm": RPM, "burst": BURST})
    m.set_active_model("m")
    start.wait(60)
    began = time.time()
    refused = 0
    i = 0
    while time.time() - began < RUN:
        try:
            m.generate(f"w{worker} {i}")
        except QuotaExhaustedError as e:
            refused += 1
            time.sleep(min(e.retry_after, 0.005))
        i += 1
    lim = m._models["m"].limiter
    out.put((worker, began, times, refused, lim.snapshot()["fleet"]))


def test_eight_processes_never_exceed_the_shared_limit(redis_srv: RedisServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    out, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(redis_srv.url, w, start, out)) for w in range(8)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    times = sorted(t for r in results for t in r[2])
    began = min(r[1] for r in results)
    last = max(times)
    rate = RPM / 60
    allowed = BURST + rate * (last - began)
    held = len(results)  # a target of one unit each, leased before the start
    excess = _max_excess(times, BURST, rate)
    per = [len(r[2]) for r in results]
    alone = sum(r[4]["admitted_alone"] for r in results)
    print(
        f"8 processes, rpm={RPM} burst={BURST}: {len(times)} admitted over "
        f"{last - began:.3f} s, allowed {allowed:.1f} (burst + rate * elapsed); "
        f"worst span excess {excess:+.1f}; per process {per}; "
        f"refused {sum(r[3] for r in results)}; leases {sum(r[4]['leases'] for r in results)}"
    )
    assert alone == 0  # Redis answered throughout: nothing was admitted locally alone
    assert all(n > 0 for n in per)
    assert len(times) <= allowed + held
    assert excess <= held
    assert len(times) >= 0.5 * allowed  # the limit is used, not starved


def test_an_allowance_being_refilled_is_waited_for_not_refused(redis_srv: RedisServer) -> None:
    """The fleet has room for every request (a burst of 300); this process holds a few
    units at a time, so a tight loop outruns its refills. Such a refusal is the fleet's
    allowance, not its limit: the request waits for the refill (at most 0.1 s) instead of
    failing, without max_queue_wait."""
    up = Upstream()
    fleet = Fleet.from_url(redis_srv.url, "refill")
    m = LLMManager(redis=fleet, enable_caching=False)
    m.register_model("m", up, {"rpm": 6000, "burst": 300})
    m.set_active_model("m")
    assert all(m.generate(f"p{i}") == "ok" for i in range(250))
    assert len(up.times) == 250 and m.get_metrics()["failed_requests"] == 0
