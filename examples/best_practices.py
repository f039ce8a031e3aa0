"""Seed example: the best-practice snippets, together."""

import os

from agenticaiframework.llms import LLMManager


def model(prompt: str, kwargs: dict) -> str:
    return "response"


# 1. Configure fallback chains
llm = LLMManager(enable_caching=True)  # 2. Enable caching for repeated queries
for name in ("primary-model", "backup-model-1", "backup-model-2", "model-name"):
    llm.register_model(name, model)
llm.set_fallback_chain(["primary-model", "backup-model-1", "backup-model-2"])

prompt = "Summarise the quarterly report."
response = llm.generate(prompt, use_cache=True)

# 3. Monitor performance metrics
metrics = llm.get_metrics()
if metrics["success_rate"] < 0.95:
    print("WARNING: Low success rate detected")

# 4. Handle circuit breaker states
info = llm.get_model_info("model-name")
if info["circuit_breaker_state"] == "open":
    llm.reset_circuit_breaker("model-name")


# 5. Secure API keys
def secure_inference(prompt: str, kwargs: dict) -> str:
    api_key = os.getenv("API_KEY", "configured-in-the-environment")
    if not api_key:
        raise ValueError("API key not configured")
    # Use api_key for inference
    return "response"


llm.register_model("secure", secure_inference)
print(response, metrics["success_rate"], llm.generate("hi", use_cache=False))
assert response == "response"
