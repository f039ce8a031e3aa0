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
