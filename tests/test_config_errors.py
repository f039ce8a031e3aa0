"""Every constructor argument and setter: a wrong type is a TypeError, an out-of-range
value a ValueError, and the message names the parameter."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agenticaiframework.llms import CircuitBreaker, LLMManager, UnknownModelError

BAD_MANAGER_ARGS = [
    ("max_retries", "3", TypeError),
    ("max_retries", 0, ValueError),
    ("max_retries", 2.5, TypeError),
    ("max_retries", True, TypeError),
    ("enable_caching", 1, TypeError),
    ("cache_max_entries", 0, ValueError),
    ("cache_max_entries", "x", TypeError),
    ("cache_max_bytes", 0, ValueError),
    ("cache_ttl", 0, ValueError),
    ("cache_ttl", -1, ValueError),
    ("cache_ttl", math.nan, ValueError),
    ("failure_threshold", 0, ValueError),
    ("recovery_timeout", -1, ValueError),
    ("recovery_timeout", math.inf, ValueError),
    ("recovery_timeout", "x", TypeError),
    ("half_open_max_calls", 0, ValueError),
    ("backoff_base", -1, ValueError),
    ("backoff_base", math.nan, ValueError),
    ("backoff_max", "x", TypeError),
    ("jitter", "sometimes", ValueError),
    ("sleep", 1, TypeError),
    ("async_sleep", 1, TypeError),
    ("clock", 1, TypeError),
    ("hash_secret", 123, TypeError),
    ("hash_secret", "0123456789abcdef", TypeError),
    ("hash_secret", b"short", ValueError),
    ("single_flight", "yes", TypeError),
    ("single_flight", None, TypeError),
    ("classify", 1, TypeError),
    ("retry_on", [ValueError], TypeError),
    ("no_retry_on", (1,), TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), BAD_MANAGER_ARGS)
def test_manager_arguments(name: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=name):
        LLMManager(**{name: value})


def test_registration_and_setters() -> None:
    m = LLMManager()
    ok = lambda p, k: "x"  # noqa: E731
    with pytest.raises(TypeError, match="model name"):
        m.register_model(1, ok)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model name"):
        m.register_model("", ok)
    with pytest.raises(TypeError, match="inference_fn"):
        m.register_model("a", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata"):
        m.register_model("a", ok, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"metadata\['timeout'\]"):
        m.register_model("a", ok, {"timeout": -1})
    with pytest.raises(TypeError, match="cost_per_1k_tokens"):
        m.register_model("a", ok, {"cost_per_1k_tokens": "x"})
    with pytest.raises(ValueError, match="cost_per_1k_output_tokens"):
        m.register_model("a", ok, {"cost_per_1k_output_tokens": -0.5})
    with pytest.raises(TypeError, match="breaker"):
        m.register_model("a", ok, breaker=object())  # type: ignore[arg-type]
    assert m.list_models() == []  # nothing half-registered
    m.register_model("a", ok)
    with pytest.raises(TypeError, match="model name"):
        m.set_active_model(1)  # type: ignore[arg-type]
    with pytest.raises(UnknownModelError):
        m.set_active_model("nope")
    with pytest.raises(TypeError, match="model_names"):
        m.set_fallback_chain("a")
    with pytest.raises(TypeError, match="model names"):
        m.set_fallback_chain([1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="model_name"):
        m.get_model_info(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model_name"):
        m.reset_circuit_breaker(1)  # type: ignore[arg-type]
    assert m.active_model is None and m.fallback_chain == []


@pytest.mark.parametrize(
    ("kw", "error", "name"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold"),
        ({"failure_threshold": "x"}, TypeError, "failure_threshold"),
        ({"recovery_timeout": -1}, ValueError, "recovery_timeout"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls"),
        ({"clock": 1}, TypeError, "clock"),
    ],
)
def test_circuit_breaker_arguments(kw: dict[str, Any], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        CircuitBreaker(**kw)
