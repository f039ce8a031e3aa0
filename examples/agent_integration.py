"""Seed example: integration with agents."""

from agenticaiframework import Agent
from agenticaiframework.llms import LLMManager


def openai_gpt4(prompt: str, kwargs: dict) -> str:
    return f"(gpt-4) {prompt}"


# Create LLM manager
llm_manager = LLMManager()
llm_manager.register_model("gpt-4", openai_gpt4)
llm_manager.set_active_model("gpt-4")

# Create agent with LLM
agent = Agent(
    name="AIAssistant",
    role="General Assistant",
    capabilities=["conversation", "analysis"],
    config={"llm_manager": llm_manager},
)


# Agent can use LLM for reasoning
def agent_task(query: str):
    response = llm_manager.generate(prompt=f"As an AI assistant, respond to: {query}")
    return response


agent.start()
result = agent.execute_task(agent_task, "What is machine learning?")
print(result)
assert result == "(gpt-4) As an AI assistant, respond to: What is machine learning?"
