"""Seed example: registering and using models (a local function stands in for each API)."""

from agenticaiframework.llms import LLMManager

# Initialize LLM manager
llm_manager = LLMManager(max_retries=3, enable_caching=True)


# Define model inference functions
def openai_gpt4(prompt: str, kwargs: dict) -> str:
    # Your OpenAI API call here
    return "Generated response from GPT-4"


def claude_opus(prompt: str, kwargs: dict) -> str:
    # Your Anthropic API call here
    return "Generated response from Claude"


# Register models with metadata
llm_manager.register_model(
    name="gpt-4",
    inference_fn=openai_gpt4,
    metadata={"provider": "openai", "max_tokens": 8192, "cost_per_1k_tokens": 0.03},
)

llm_manager.register_model(
    name="claude-opus",
    inference_fn=claude_opus,
    metadata={"provider": "anthropic", "max_tokens": 4096, "cost_per_1k_tokens": 0.015},
)

# Set active model
llm_manager.set_active_model("gpt-4")

# Generate response
response = llm_manager.generate(
    prompt="Explain quantum computing in simple terms.", temperature=0.7, max_tokens=500
)
print(response)
assert response == "Generated response from GPT-4"
