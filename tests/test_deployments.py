"""Deployments and routing (issue 17): several upstreams under one model name, one picked
per attempt by the native Picker; an open deployment is skipped, a failed attempt moves
to another deployment at once, and with none left the walk goes to the next model.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import pytest

from agenticaiframework._native import BreakerCore, ModelCore, ModelStats, Picker
from agenticaiframework.llms import CircuitBreakerOpenError, LLMManager, UnknownModelError
from agenticaiframework.llms.events import AttemptStarted, Event


class Upstream:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.fail = False
        self.calls = 0

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        self.calls += 1
        if self.fail:
            raise ConnectionError(f"{self.tag} down")
        return self.tag


def manager(*weights: float, **kw: Any) -> tuple[LLMManager, list[Upstream]]:
    kw.setdefault("enable_caching", False)
    kw.setdefault("sleep", _no_sleep)
    m = LLMManager(**kw)
    ups = [Upstream(f"d{i}") for i in range(len(weights))]
    m.register_model("gpt", ups[0], {"weight": weights[0]})
    for i, (u, w) in enumerate(zip(ups[1:], weights[1:], strict=True), start=1):
        assert m.add_deployment("gpt", u, {"weight": w}) == str(i)
    m.register_model("backup", Upstream("backup"))
    m.set_active_model("gpt")
    m.set_fallback_chain(["backup"])
    return m, ups


def _no_sleep(seconds: float) -> None:
    if seconds > 0:
        raise AssertionError(f"slept {seconds} s: a deployment switch must not back off")


def cores(n: int) -> list[ModelCore]:
    return [ModelCore(BreakerCore(3, 60.0), ModelStats()) for _ in range(n)]


def test_weights_hold_over_ten_thousand_picks() -> None:
    weights = [1.0, 2.0, 3.0, 4.0]
    p = Picker("weighted", cores(4), weights, seed=7)
    n = 10_000
    got = Counter(p.pick() for _ in range(n))
    for i, w in enumerate(weights):
        share = w / sum(weights)
        sigma = math.sqrt(n * share * (1 - share))
        assert abs(got[i] - n * share) < 4 * sigma, (i, got)
    # Through the manager: the answers split by weight too.
    m, _ = manager(1, 3)
    out = Counter(m.generate(f"p{i}") for i in range(4000))
    assert abs(out["d1"] - 3000) < 4 * math.sqrt(4000 * 0.75 * 0.25)


def test_least_busy_never_picks_a_busier_one() -> None:
    cs = cores(4)
    p = Picker("least-busy", cs, [1.0] * 4, seed=1)
    held: list[tuple[ModelCore, int]] = []
    for _ in range(40):
        busy = [c.stats.snapshot()["requests"] for c in cs]  # nothing ends: in flight
        i = p.pick()
        assert busy[i] == min(busy)
        held.append((cs[i], cs[i].begin()))
    assert sorted(c.stats.snapshot()["requests"] for c in cs) == [10, 10, 10, 10]
    # Ending attempts frees their deployment: it is the one picked next.
    c0, t0 = held[0]
    c0.success(t0)
    assert cs[p.pick()] is c0


def test_latency_moves_off_a_slowed_deployment_and_back() -> None:
    cs = cores(3)
    p = Picker("latency", cs, [1.0] * 3, explore=0.1, seed=3)
    speed = [0.10, 0.12, 0.15]

    def run(n: int) -> Counter[int]:
        got: Counter[int] = Counter()
        for _ in range(n):
            i = p.pick()
            got[i] += 1
            cs[i].stats.record_success(speed[i])
        return got

    assert run(500).most_common(1)[0][0] == 0
    speed[0] = 2.0  # deployment 0 slows down
    later = run(1000)
    assert later.most_common(1)[0][0] == 1 and later[0] < 150
    speed[0] = 0.05  # and recovers: the explored picks bring its average down again
    run(2000)
    assert run(500).most_common(1)[0][0] == 0


def test_an_open_deployment_is_skipped_and_all_open_moves_on() -> None:
    m, ups = manager(1, 1, 1, failure_threshold=1, max_retries=3)
    ups[0].fail = True
    # Each request starts where the picker sends it; a failure moves to another at once.
    for i in range(30):
        assert m.generate(f"p{i}") in ("d1", "d2")
    assert ups[0].calls == 1  # opened at its first failure, skipped since
    info = m.get_model_info("gpt")
    states = [d["circuit_breaker_state"] for d in info["deployments"]]
    assert states == ["open", "closed", "closed"] and info["circuit_breaker_state"] == "closed"
    assert info["stats"]["requests"] == 31 and info["stats"]["failures"] == 1
    ups[1].fail = ups[2].fail = True
    r = m.generate_response("all down")
    assert r.model == "backup"
    assert [type(e).__name__ for _, e in r.errors] == ["ConnectionError"] * 2  # d1, d2
    r2 = m.generate_response("still down")
    assert r2.model == "backup" and len(r2.errors) == 1
    err = r2.errors[0][1]
    assert isinstance(err, CircuitBreakerOpenError) and err.retry_after > 0
    assert m.get_model_info("gpt")["circuit_breaker_state"] == "open"


def test_a_retry_goes_to_another_deployment_at_once() -> None:
    m, ups = manager(1, 1, max_retries=2, failure_threshold=5)
    ups[0].fail = True
    got = Counter(m.generate_response(f"p{i}").attempts for i in range(50))
    # A request that picked d0 first retried on d1 with no backoff (no sleep).
    assert set(got) <= {1, 2} and got[2] == ups[0].calls
    assert ups[1].calls == 50


def test_the_first_try_of_a_single_deployment_model_stays_inline() -> None:
    m = LLMManager()
    m.register_model("one", Upstream("one"))
    assert m._models["one"].inline_sync and m._models["one"].group is None
    m.add_deployment("one", Upstream("two"))
    assert not m._models["one"].inline_sync  # the walk picks now


def test_bad_input_is_a_typed_error_naming_the_parameter() -> None:
    m = LLMManager()
    m.register_model("gpt", Upstream("a"))
    for bad in (0, -1, float("nan"), 1e9, "2", True):
        with pytest.raises(ValueError, match="weight"):
            m.add_deployment("gpt", Upstream("b"), {"weight": bad})
    with pytest.raises(ValueError, match="weight"):
        m.register_model("x", Upstream("x"), {"weight": -2})
    with pytest.raises(UnknownModelError):
        m.add_deployment("nope", Upstream("b"))
    m.add_deployment("gpt", Upstream("b"), {"deployment": "eu"})
    with pytest.raises(ValueError, match="eu"):
        m.add_deployment("gpt", Upstream("c"), {"deployment": "eu"})
    with pytest.raises(TypeError, match="deployment"):
        m.add_deployment("gpt", Upstream("c"), {"deployment": 3})
    with pytest.raises(ValueError, match="routing"):
        LLMManager(routing="round-robin")
    with pytest.raises(ValueError, match="routing"):
        Picker("fastest", cores(1), [1.0])
    with pytest.raises(ValueError, match="weight"):
        Picker("weighted", cores(2), [1.0, -1.0])
    with pytest.raises(TypeError, match="weights"):
        Picker("weighted", cores(2), [1.0])
    with pytest.raises(ValueError, match="deployments"):
        Picker("weighted", [], [])
    with pytest.raises(ValueError, match="explore"):
        Picker("latency", cores(1), [1.0], explore=2.0)


def test_events_and_async_say_which_deployment() -> None:
    m, _ = manager(1, 1, routing="least-busy")
    ev: list[Event] = []
    m.subscribe(ev.append)

    async def main() -> list[str]:
        return list(await asyncio.gather(*(m.agenerate(f"q{i}") for i in range(20))))

    assert set(asyncio.run(main())) <= {"d0", "d1"}
    deps = Counter(e.deployment for e in ev if isinstance(e, AttemptStarted))
    assert set(deps) == {"0", "1"} and sum(deps.values()) == 20


def test_replacing_the_model_drops_its_deployments() -> None:
    m, _ = manager(1, 1)
    assert "gpt@1" in m._by_key
    m.register_model("gpt", Upstream("new"))
    assert "gpt@1" not in m._by_key and m._models["gpt"].group is None
    assert m.generate("p") == "new"
