"""Seed example: the circuit breaker pattern (backoff shortened so the script is quick)."""

from agenticaiframework.llms import LLMManager

llm_manager = LLMManager(backoff_base=0.001)


def inference_fn(prompt: str, kwargs: dict) -> str:
    raise TimeoutError("provider timed out")


# Circuit breaker is automatic per model
llm_manager.register_model("unreliable-model", inference_fn)
llm_manager.set_active_model("unreliable-model")

# After 5 failures, circuit breaker opens
for i in range(10):
    try:
        response = llm_manager.generate("Test prompt")
    except Exception as e:
        print(f"Request failed: {e}")

# Check circuit breaker state
info = llm_manager.get_model_info("unreliable-model")
print(f"Circuit breaker state: {info['circuit_breaker_state']}")
assert info["circuit_breaker_state"] == "open"

# Manually reset if needed
llm_manager.reset_circuit_breaker("unreliable-model")
info = llm_manager.get_model_info("unreliable-model")
print(f"Circuit breaker state: {info['circuit_breaker_state']}")
assert info["circuit_breaker_state"] == "closed"
