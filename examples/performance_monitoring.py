"""Seed example: performance monitoring."""

from agenticaiframework.llms import LLMManager, LLMResponse

llm_manager = LLMManager()


def gpt4(prompt: str, kwargs: dict) -> LLMResponse:
    return LLMResponse("An answer.", prompt_tokens=12, completion_tokens=3)


llm_manager.register_model("gpt-4", gpt4, {"cost_per_1k_tokens": 0.03})
llm_manager.set_active_model("gpt-4")
for prompt in ["What is AI?", "What is ML?", "What is AI?"]:
    llm_manager.generate(prompt)

# Get overall metrics
metrics = llm_manager.get_metrics()
print(f"Total requests: {metrics['total_requests']}")
print(f"Success rate: {metrics['success_rate']:.2%}")
print(f"Cache hit rate: {metrics['cache_hit_rate']:.2%}")
print(f"Total tokens: {metrics['total_tokens']}")
print(f"Total retries: {metrics['total_retries']}")

# Get model-specific information
model_info = llm_manager.get_model_info("gpt-4")
print(f"Requests: {model_info['stats']['requests']}")
print(f"Successes: {model_info['stats']['successes']}")
print(f"Failures: {model_info['stats']['failures']}")
print(f"Average latency: {model_info['stats']['avg_latency']:.3f}s")
print(f"Circuit state: {model_info['circuit_breaker_state']}")
assert metrics["total_requests"] == 3 and metrics["cache_hits"] == 1
assert metrics["total_tokens"] == 30
