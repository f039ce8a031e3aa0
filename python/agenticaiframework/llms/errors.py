"""The errors the library raises. Every one derives from :class:`LLMError`."""

from __future__ import annotations

from collections.abc import Sequence

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
        parts = "; ".join(f"{name}: {describe(exc)}" for name, exc in self.errors)
        super().__init__(f"no model answered ({len(self.errors)} failures): {parts}")


def describe(exc: BaseException) -> str:
    """``Type: message`` with secrets removed; never raises, even if ``__str__`` does."""
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    name = type(exc).__name__
    return f"{name}: {redact_text(text)}" if text else name
