"""generate and agenerate have three ways in (a flight to lead, no flight, no cache; the
first attempt is made inline); each scenario must give the same answers, waits and
counters whichever way it takes, sync or async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agenticaiframework.llms import AllModelsFailedError, LLMManager

CONFIGS = {
    "single-flight": {},
    "no-single-flight": {"single_flight": False},
    "no-cache": {"enable_caching": False},
}


class SyncScript:
    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.calls = 0

    def step(self) -> Any:
        self.calls += 1
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return step

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        return self.step()


class Script(SyncScript):
    async def __call__(self, prompt: str, kwargs: dict[str, Any]) -> Any:  # type: ignore[override]
        return self.step()


def run(
    config: str, plan: list[tuple[str, SyncScript]], sync: bool = False, **kw: Any
) -> tuple[Any, dict[str, Any]]:
    waits: list[float] = []

    async def asleep(s: float) -> None:
        waits.append(s)

    m = LLMManager(async_sleep=asleep, sleep=waits.append, **CONFIGS[config], **kw)
    for name, fn in plan:
        m.register_model(name, fn)
    m.set_active_model(plan[0][0])
    m.set_fallback_chain([n for n, _ in plan[1:]])

    async def go() -> Any:
        try:
            return await m.agenerate("p")
        except AllModelsFailedError as e:
            return [type(x).__name__ for _, x in e.errors]

    def go_sync() -> Any:
        try:
            return m.generate("p")
        except AllModelsFailedError as e:
            return [type(x).__name__ for _, x in e.errors]

    out = go_sync() if sync else asyncio.run(go())
    met = m.get_metrics()
    for k in ("cache_hits", "cache_misses", "cache_size", "cache_hit_rate"):
        met.pop(k)
    for k in [k for k in met if "latency" in k]:
        met.pop(k)  # times differ between paths; that each path times is tested apart
    models = {n: m.get_model_info(n)["stats"] for n, _ in plan}
    for st in models.values():
        for k in list(st):
            if "latency" in k:
                st.pop(k)
    return (out, waits, [fn.calls for _, fn in plan]), {"manager": met, "models": models}


SCENARIOS = {
    "first-try": lambda: [("a", Script("A"))],
    "retry-then-ok": lambda: [("a", Script(ConnectionError(), "A"))],
    "fallback": lambda: [("a", Script(ConnectionError())), ("b", Script("B"))],
    "all-fail": lambda: [("a", Script(ValueError())), ("b", Script(KeyError()))],
    "bad-return": lambda: [("a", Script(42)), ("b", Script("B"))],
}


def as_sync(plan: list[tuple[str, SyncScript]]) -> list[tuple[str, SyncScript]]:
    return [(n, SyncScript(*s.steps)) for n, s in plan]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_paths_agree(scenario: str) -> None:
    results = {c: run(c, SCENARIOS[scenario](), max_retries=2) for c in CONFIGS}
    for c in CONFIGS:
        results[f"sync {c}"] = run(c, as_sync(SCENARIOS[scenario]()), sync=True, max_retries=2)
    first = results["single-flight"]
    for config, got in results.items():
        assert got == first, config


def test_open_breaker_first_model_paths_agree() -> None:
    def once(config: str) -> Any:
        waits: list[float] = []

        async def asleep(s: float) -> None:
            waits.append(s)

        a, b = Script(ConnectionError()), Script("B")
        m = LLMManager(async_sleep=asleep, failure_threshold=1, **CONFIGS[config])
        m.register_model("a", a)
        m.register_model("b", b)
        m.set_active_model("a")
        m.set_fallback_chain(["b"])
        outs = [asyncio.run(m.agenerate(f"p{i}")) for i in range(3)]
        return outs, a.calls, b.calls, m.get_model_info("a")["stats"]["short_circuits"]

    assert {c: once(c) for c in CONFIGS} == {c: (["B"] * 3, 1, 3, 2) for c in CONFIGS}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cancelled_first_attempt_is_counted_once(config: str) -> None:
    async def hang(prompt: str, kwargs: dict[str, Any]) -> str:
        await asyncio.Event().wait()
        return "never"

    m = LLMManager(**CONFIGS[config])
    m.register_model("a", hang)
    m.set_active_model("a")

    async def go() -> None:
        t = asyncio.create_task(m.agenerate("p"))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(go())
    met = m.get_metrics()
    assert (met["total_requests"], met["cancelled_requests"], met["failed_requests"]) == (1, 1, 0)
    assert m.get_model_info("a")["stats"]["cancelled"] == 1
