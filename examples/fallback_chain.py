"""Seed example: configuring a fallback chain.

The seed's chain names "gpt-3.5", which its other examples never register; a chain may
only name registered models (UnknownModelError otherwise), so it is registered here.
"""

from agenticaiframework.llms import LLMManager

llm_manager = LLMManager(max_retries=3, backoff_base=0.01)


def openai_gpt4(prompt: str, kwargs: dict) -> str:
    raise ConnectionError("gpt-4 is down")  # simulate an outage of the primary


def claude_opus(prompt: str, kwargs: dict) -> str:
    return "Generated response from Claude"


def gpt35(prompt: str, kwargs: dict) -> str:
    return "Generated response from GPT-3.5"


llm_manager.register_model("gpt-4", openai_gpt4)
llm_manager.register_model("claude-opus", claude_opus)
llm_manager.register_model("gpt-3.5", gpt35)
llm_manager.set_active_model("gpt-4")

# Set fallback chain for reliability
llm_manager.set_fallback_chain(
    [
        "gpt-4",  # Primary
        "claude-opus",  # Fallback 1
        "gpt-3.5",  # Fallback 2
    ]
)

# If gpt-4 fails, automatically tries claude-opus, then gpt-3.5
response = llm_manager.generate("Analyze this data...")
print(response)
assert response == "Generated response from Claude"
