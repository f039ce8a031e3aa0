"""The errors the library raises. Every one derives from :class:`LLMError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._secrets import redact_text


class LLMError(Exception):
    """Base of every error raised by ``agenticaiframework.llms``."""


class CircuitBreakerOpenError(LLMError):
    """A call was refused because the circuit breaker is open.

    >>> err = CircuitBreakerOpenError("gpt-4", 12.5)
    >>> err.model, err.retry_after
    ('gpt-4', 12.5)
    """

    def __init__(self, model: str | None = None, retry_after: float = 0.0) -> None:
        self.model = model
        self.retry_after = retry_after
        who = f"for {model!r} " if model else ""
        super().__init__(f"circuit breaker {who}is open; retry in {retry_after:.3f}s")


class AdmissionRejectedError(LLMError):
    """An admission gate (a rate limit, a retry budget, a shared breaker) refused an
    attempt on a model before it was made; the next model is tried.

    ``retry_after``: when the gate expects to admit again (seconds, 0 if unknown)."""

    def __init__(self, model: str, reason: str, retry_after: float = 0.0) -> None:
        self.model = model
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"model {model!r} not admitted: {reason}")


class RateLimitedError(AdmissionRejectedError):
    """A model's own rate limit (requests or tokens per minute, or the cool-down after
    a 429) refused an attempt before it was made: no call reached the provider.

    An :class:`AdmissionRejectedError` (the walk skips the model like any refused gate,
    and code that handles refusals handles this one), not a :class:`RateLimitError`,
    which is the provider's own 429 after a call. ``retry_after``: seconds until the
    limit could admit it (``inf``: the request needs more tokens than the burst).

    >>> err = RateLimitedError("gpt-4", 1.5)
    >>> err.model, err.retry_after, isinstance(err, AdmissionRejectedError)
    ('gpt-4', 1.5, True)
    """

    def __init__(self, model: str, retry_after: float, reason: str | None = None) -> None:
        why = reason or f"rate limited; capacity returns in {retry_after:.3f}s"
        super().__init__(model, why, retry_after)
        self.pending = False  # a fleet allowance being refilled (fleet_limits.py)


class NonRetryableError(LLMError):
    """Raise it (or a subclass) from an inference function to stop retries on that model.

    The fallback chain still applies: the next model is tried.
    """


class InvalidResponseError(NonRetryableError):
    """An inference function returned something that is neither str nor LLMResponse."""


class UnknownModelError(LLMError, KeyError):
    """A model name that was never registered."""

    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(f"unknown model {name!r}")

    def __str__(self) -> str:
        # KeyError would repr() the message; keep it readable.
        return str(self.args[0])


class NoModelConfiguredError(LLMError):
    """generate() was called with neither an active model nor a fallback chain."""


class AllModelsFailedError(LLMError):
    """Every model in the route failed or was skipped.

    ``errors`` lists ``(model_name, exception)`` in the order tried; ``__cause__`` is the
    last exception.
    """

    def __init__(self, errors: Sequence[tuple[str, BaseException]]) -> None:
        self.errors: list[tuple[str, BaseException]] = list(errors)
        n = len(self.errors)
        head = f"no model answered ({n} failed attempt{'' if n == 1 else 's'})"
        super().__init__(f"{head}: {summarize(self.errors)}" if n else head)


class DeadlineExceededError(LLMError, TimeoutError):
    """The request's deadline passed before a model answered. ``errors``: the attempts
    made so far, ``(model_name, exception)`` in order, as in
    :class:`AllModelsFailedError`; ``deadline``: the budget it had, in seconds.

    >>> err = DeadlineExceededError([], 2.0)
    >>> isinstance(err, TimeoutError), err.deadline
    (True, 2.0)
    """

    def __init__(self, errors: Sequence[tuple[str, BaseException]], deadline: float) -> None:
        self.errors: list[tuple[str, BaseException]] = list(errors)
        self.deadline = deadline
        tried = f"after {len(self.errors)} failed or skipped attempts" if self.errors else ""
        super().__init__(f"deadline of {deadline:g}s exceeded {tried}".rstrip())


class QuotaExhaustedError(AllModelsFailedError):
    """Every model of the route was refused by its own rate limits (no call was made):
    ``retry_after`` is when the first of them could admit the request. Raised at once,
    or after waiting up to the manager's ``max_queue_wait`` for capacity to return.

    >>> err = QuotaExhaustedError([("gpt-4", RateLimitedError("gpt-4", 2.0))], 2.0)
    >>> err.retry_after, isinstance(err, AllModelsFailedError)
    (2.0, True)
    """

    def __init__(self, errors: Sequence[tuple[str, BaseException]], retry_after: float) -> None:
        super().__init__(errors)
        self.retry_after = retry_after
        self.args = (f"{self.args[0]}; capacity returns in {retry_after:.3f}s",)


def summarize(errors: Sequence[tuple[str, BaseException]]) -> str:
    """``model: Type: message`` per failure, in order; a run of the same text from the same
    model is said once with its count, so three attempts failing alike read as one line.

    >>> summarize([("a", OSError("down"))] * 3 + [("b", ValueError("bad"))])
    'a: OSError: down (3 times); b: ValueError: bad'
    """
    runs: list[list[Any]] = []
    for name, exc in errors:
        text = f"{name}: {describe(exc)}"
        if runs and runs[-1][0] == text:
            runs[-1][1] += 1
        else:
            runs.append([text, 1])
    return "; ".join(text if k == 1 else f"{text} ({k} times)" for text, k in runs)


def describe(exc: BaseException) -> str:
    """``Type: message`` with secrets removed; never raises, even if ``__str__`` does."""
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    name = type(exc).__name__
    return f"{name}: {redact_text(text)}" if text else name


class ProviderError(LLMError):
    """An error answered by (or on the way to) a model provider, translated from its SDK.

    ``status`` is the HTTP status (None for timeouts and connection errors), ``provider``
    names the adapter, ``retry_after`` is the wait the provider asked for, in seconds. The
    message is the provider's own, with secrets removed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.provider = provider
        self.retry_after = retry_after
        head = f"{provider} " if provider else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{head}{code}{redact_text(message)}".strip())


class RetryableProviderError(ProviderError):
    """Timeouts, connection errors, 408, 409, 429 and 5xx: retried with backoff."""


class RateLimitError(RetryableProviderError):
    """HTTP 429. Its ``retry_after`` (from ``Retry-After``) bounds the next wait from below."""


class ProviderTimeoutError(RetryableProviderError):
    """The request timed out before the provider answered."""


class ProviderConnectionError(RetryableProviderError):
    """The provider could not be reached."""


class BadRequestError(NonRetryableError, ProviderError):
    """400, 404, 422 and other 4xx: the same request will fail again on this model."""


class AuthenticationError(BadRequestError):
    """401 or 403: the key is missing, wrong or lacks permission (it is never shown)."""


class ContextLengthError(BadRequestError):
    """The prompt does not fit the model's context window: route it to a bigger model."""


class StreamInterruptedError(LLMError):
    """A stream failed after its first chunk; ``partial`` holds the text received."""

    def __init__(self, model: str, partial: str, cause: BaseException) -> None:
        self.model = model
        self.partial = partial
        super().__init__(
            f"stream from {model!r} broke after {len(partial)} chars: {describe(cause)}"
        )
