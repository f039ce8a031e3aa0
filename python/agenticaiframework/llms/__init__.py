"""The LLM layer: LLMManager, CircuitBreaker and the errors they raise.

>>> from agenticaiframework.llms import LLMManager
"""

from .circuit_breaker import CircuitBreaker
from .errors import (
    AdmissionRejectedError,
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    CircuitBreakerOpenError,
    ContextLengthError,
    DeadlineExceededError,
    InvalidResponseError,
    LLMError,
    NoModelConfiguredError,
    NonRetryableError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitedError,
    RateLimitError,
    RetryableProviderError,
    StreamInterruptedError,
    UnknownModelError,
)
from .manager import LLMManager
from .response import GenerationResult, LLMResponse, Usage
from .retry import Backoff
from .workers import WorkersBusyError

__all__ = [
    "AdmissionRejectedError",
    "AllModelsFailedError",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "ContextLengthError",
    "DeadlineExceededError",
    "GenerationResult",
    "InvalidResponseError",
    "LLMError",
    "LLMManager",
    "LLMResponse",
    "NoModelConfiguredError",
    "NonRetryableError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RateLimitedError",
    "RetryableProviderError",
    "StreamInterruptedError",
    "UnknownModelError",
    "Usage",
    "WorkersBusyError",
]
