"""Seed example: retry with exponential backoff (waits recorded instead of slept)."""

from agenticaiframework.llms import LLMManager

waits: list[float] = []
failures_left = 4


def flaky(prompt: str, kwargs: dict) -> str:
    global failures_left
    if failures_left:
        failures_left -= 1
        raise ConnectionError("transient")
    return "done"


# Configure retry attempts
llm_manager = LLMManager(max_retries=5, sleep=waits.append)
llm_manager.register_model("model", flaky)
llm_manager.set_active_model("model")

# Automatic retry on failure with backoff:
# Attempt 1: immediate
# Attempt 2: wait 1s
# Attempt 3: wait 2s
# Attempt 4: wait 4s
# Attempt 5: wait 8s
response = llm_manager.generate("Process this request")
print(response, waits)
assert waits == [1.0, 2.0, 4.0, 8.0]
