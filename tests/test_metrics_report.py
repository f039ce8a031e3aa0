"""get_metrics() answers a server operator's first questions: what it cost, and which
breakers are open."""

from __future__ import annotations

from agenticaiframework.llms import LLMManager, LLMResponse


def test_total_cost_and_breaker_states() -> None:
    m = LLMManager(failure_threshold=1, max_retries=1, sleep=lambda s: None)

    def down(prompt: str, kwargs: dict[str, object]) -> str:
        raise ConnectionError("down")

    m.register_model("dead", down)
    m.register_model(
        "priced",
        lambda prompt, kwargs: LLMResponse("x", prompt_tokens=600, completion_tokens=400),
        {"cost_per_1k_tokens": 0.01},
    )
    m.add_deployment("priced", lambda prompt, kwargs: "y", {"deployment": "eu"})
    m.register_model("free", lambda prompt, kwargs: "z")
    m.set_active_model("dead")
    m.set_fallback_chain(["priced", "free"])
    assert m.get_metrics()["total_cost"] == 0.0
    for i in range(4):
        m.generate(f"p{i}")
    metrics = m.get_metrics()
    infos = [m.get_model_info(n)["stats"].get("cost", 0.0) for n in m.list_models()]
    assert metrics["total_cost"] == sum(infos) > 0
    assert metrics["breaker_states"] == {"dead": "open", "priced": "closed", "free": "closed"}


def test_request_latency_is_the_whole_request_not_an_attempt() -> None:
    import time as _time

    from agenticaiframework.llms import LLMManager

    def slow_fail(p: str, k: dict[str, object]) -> str:
        _time.sleep(0.02)
        raise ConnectionError("down")

    def slow_ok(p: str, k: dict[str, object]) -> str:
        _time.sleep(0.02)
        return "ok"

    m = LLMManager(max_retries=1, enable_caching=True)
    m.register_model("a", slow_fail)
    m.register_model("b", slow_ok)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    before = m.get_metrics()
    assert before["p50_request_latency"] == before["p99_request_latency"] == 0.0
    assert m.generate("p") == "ok"  # a (20 ms, fails), then b (20 ms): one request
    assert m.generate("p") == "ok"  # a cache hit: not timed
    got = m.get_metrics()
    # Sleeps last at least what they ask: the request took both attempts' 40 ms.
    assert got["p50_request_latency"] >= 0.04
    assert m.get_model_info("b")["stats"]["p50_latency"] < got["p50_request_latency"]
    assert got["p50_request_latency"] <= got["p95_request_latency"] <= got["p99_request_latency"]
    one = LLMManager(enable_caching=False)
    one.register_model("b", slow_ok)
    one.set_active_model("b")
    one.generate("q")  # a first try: the request is its one attempt
    assert one.get_metrics()["p50_request_latency"] >= 0.02
    one.reset_metrics()
    assert one.get_metrics()["p50_request_latency"] == 0.0
