"""Seed example: a multi-model system with fallback.

The seed calls the OpenAI and Anthropic APIs; here local functions with the same shape
stand in (the primary fails, as an unreachable API would), so no key or network is needed.
"""

import os

from agenticaiframework.llms import LLMManager

# Initialize manager
llm = LLMManager(max_retries=3, enable_caching=True, backoff_base=0.001)


def openai_inference(prompt: str, kwargs: dict) -> str:
    api_key = os.getenv("OPENAI_API_KEY", "sk-example-not-a-real-key")
    raise ConnectionError(f"could not reach the API with key {api_key}")


def anthropic_inference(prompt: str, kwargs: dict) -> str:
    return f"Claude's analysis ({kwargs.get('max_tokens', 1024)} tokens max): {prompt}"


# Register models
llm.register_model("gpt-4", openai_inference, {"provider": "openai", "max_tokens": 8192})
llm.register_model(
    "claude-opus", anthropic_inference, {"provider": "anthropic", "max_tokens": 4096}
)

# Configure fallback
llm.set_active_model("gpt-4")
llm.set_fallback_chain(["gpt-4", "claude-opus"])

# Use with automatic fallback
response = llm.generate(
    prompt="Analyze the impact of AI on society", temperature=0.7, max_tokens=1000
)
print(response)

# Monitor performance
metrics = llm.get_metrics()
print(f"Success rate: {metrics['success_rate']:.2%}")
print(f"Cache hit rate: {metrics['cache_hit_rate']:.2%}")
assert response.startswith("Claude's analysis (1000 tokens max)")
