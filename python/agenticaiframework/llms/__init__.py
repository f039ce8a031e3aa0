"""The LLM layer: LLMManager, CircuitBreaker and the errors they raise.

>>> from agenticaiframework.llms import LLMManager
"""

from .circuit_breaker import CircuitBreaker
from .errors import (
    AllModelsFailedError,
    CircuitBreakerOpenError,
    InvalidResponseError,
    LLMError,
    NoModelConfiguredError,
    NonRetryableError,
    UnknownModelError,
)
from .manager import LLMManager
from .response import GenerationResult, LLMResponse, Usage
from .retry import Backoff

__all__ = [
    "AllModelsFailedError",
    "Backoff",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "GenerationResult",
    "InvalidResponseError",
    "LLMError",
    "LLMManager",
    "LLMResponse",
    "NoModelConfiguredError",
    "NonRetryableError",
    "UnknownModelError",
    "Usage",
]
