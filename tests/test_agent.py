"""Agent: construction, start/stop/status, execute_task, and the seed's LLM integration."""

from __future__ import annotations

from typing import Any

import pytest

from agenticaiframework import Agent
from agenticaiframework.llms import LLMManager


def make_agent(**config: Any) -> Agent:
    return Agent(
        name="AIAssistant",
        role="General Assistant",
        capabilities=["conversation", "analysis"],
        config=config,
    )


def test_construction_keeps_arguments() -> None:
    agent = make_agent(temperature=0.2)
    assert agent.name == "AIAssistant"
    assert agent.role == "General Assistant"
    assert list(agent.capabilities) == ["conversation", "analysis"]
    assert agent.config["temperature"] == 0.2


def test_positional_construction() -> None:
    agent = Agent("a", "r", ["x"], {})
    agent.start()
    assert agent.execute_task(lambda: 1) == 1


def test_start_stop_status() -> None:
    agent = make_agent()
    initial = agent.status
    agent.start()
    assert agent.status == "running"
    assert agent.status != initial
    agent.stop()
    assert agent.status == "stopped"
    agent.start()
    assert agent.status == "running"


def test_execute_task_returns_result_and_passes_arguments() -> None:
    agent = make_agent()
    agent.start()
    seen: list[Any] = []

    def task(a: int, b: int, *, scale: int = 1) -> int:
        seen.append((a, b, scale))
        return (a + b) * scale

    assert agent.execute_task(task, 2, 3, scale=10) == 50
    assert seen == [(2, 3, 10)]
    assert agent.execute_task(lambda: None) is None
    marker = object()
    assert agent.execute_task(lambda: marker) is marker


def test_execute_task_errors_propagate_unchanged() -> None:
    agent = make_agent()
    agent.start()
    err = ValueError("task failed")

    def task() -> None:
        raise err

    with pytest.raises(ValueError) as ei:
        agent.execute_task(task)
    assert ei.value is err
    # The agent keeps working after a failed task.
    assert agent.execute_task(lambda: "next") == "next"
    assert agent.status == "running"


def test_seed_integration_with_llm_manager() -> None:
    manager = LLMManager(sleep=lambda seconds: None)
    prompts: list[str] = []

    def gpt4(prompt: str, kwargs: dict[str, Any]) -> str:
        prompts.append(prompt)
        return "Machine learning is learning from data."

    manager.register_model("gpt-4", gpt4)
    manager.set_active_model("gpt-4")
    agent = Agent(
        name="AIAssistant",
        role="General Assistant",
        capabilities=["conversation", "analysis"],
        config={"llm_manager": manager},
    )
    assert agent.config["llm_manager"] is manager

    def agent_task(query: str) -> str:
        return manager.generate(prompt=f"As an AI assistant, respond to: {query}")

    agent.start()
    result = agent.execute_task(agent_task, "What is machine learning?")
    assert result == "Machine learning is learning from data."
    assert prompts == ["As an AI assistant, respond to: What is machine learning?"]
