"""Seed example: response caching."""

from agenticaiframework.llms import LLMManager

calls = []


def model(prompt: str, kwargs: dict) -> str:
    calls.append(prompt)
    return f"Answer to {prompt}"


# Enable caching for repeated queries
llm_manager = LLMManager(enable_caching=True)
llm_manager.register_model("gpt-4", model)
llm_manager.set_active_model("gpt-4")

# First call - hits the API
response1 = llm_manager.generate("What is AI?", use_cache=True)

# Second call - returns cached response
response2 = llm_manager.generate("What is AI?", use_cache=True)

# Clear cache when needed
llm_manager.clear_cache()

print(response1, response2, f"model calls: {len(calls)}")
assert response1 == response2 and len(calls) == 1
