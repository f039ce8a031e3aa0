"""Inference functions for real providers, and a simulated one for demos and tests.

The adapters import their SDK only when called, so this package never needs one:
``pip install 'agenticaiframework[openai]'`` or ``[anthropic]`` adds it.
"""

from .anthropic_messages import AnthropicMessages, AsyncAnthropicMessages, anthropic_messages
from .openai_chat import AsyncOpenAIChat, OpenAIChat, openai_chat
from .simulated import SimulatedModel

__all__ = [
    "AnthropicMessages",
    "AsyncAnthropicMessages",
    "AsyncOpenAIChat",
    "OpenAIChat",
    "SimulatedModel",
    "anthropic_messages",
    "openai_chat",
]
