"""Checked by mypy --strict (``make lint``, tests/test_typing.py), never run: each
``# type: ignore[code]`` marks a mistake the types must catch (strict mode's
warn_unused_ignores fails if one stops being an error), each ``assert_type`` a type a
user's editor must show."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from agenticaiframework.llms import LLMManager, LLMResponse
from agenticaiframework.llms.reports import BreakerState, Metrics, ModelInfo

llm = LLMManager()


def good(prompt: str, kwargs: dict[str, Any]) -> str:
    return prompt


def with_usage(prompt: str, kwargs: dict[str, Any]) -> LLMResponse:
    return LLMResponse(prompt, prompt_tokens=1, completion_tokens=1)


async def asynchronous(prompt: str, kwargs: dict[str, Any]) -> str:
    return prompt


def returns_int(prompt: str, kwargs: dict[str, Any]) -> int:
    return 1


def one_argument(prompt: str) -> str:
    return prompt


llm.register_model("a", good)
llm.register_model("b", with_usage)
llm.register_model("c", asynchronous)
llm.register_model("d", lambda prompt, kwargs: prompt.upper())
llm.register_model("e", returns_int)  # type: ignore[arg-type]
llm.register_model("f", one_argument)  # type: ignore[arg-type]

llm.set_fallback_chain(["a", "b"])
llm.set_fallback_chain(("a",))
llm.set_fallback_chain("a")  # type: ignore[arg-type]

assert_type(llm.generate("p", temperature=0.2), str)
m = llm.get_metrics()
assert_type(m, Metrics)
assert_type(m["success_rate"], float)
assert_type(m["total_cost"], float)
assert_type(m["breaker_states"], dict[str, BreakerState])
m["sucess_rate"]  # type: ignore[typeddict-item]

info = llm.get_model_info("a")
assert_type(info, ModelInfo)
assert_type(info["stats"]["p99_latency"], float)
assert_type(info["circuit_breaker_state"], BreakerState)
info["stats"]["p99"]  # type: ignore[typeddict-item]
