"""What inference functions return and what generate_response() gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response. ``estimated`` when the model reported none."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """A response with token usage, for inference functions that know it.

    >>> def fn(prompt: str, kwargs: dict) -> LLMResponse:
    ...     return LLMResponse("hi", prompt_tokens=3, completion_tokens=1)
    """

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """The full outcome of one request.

    ``attempts`` counts calls made to models (0 for a cache hit); ``errors`` lists the
    ``(model, exception)`` failures that came before the answer.
    """

    text: str
    model: str
    cached: bool
    attempts: int
    latency: float
    usage: Usage
    errors: tuple[tuple[str, BaseException], ...] = ()

    def __repr__(self) -> str:
        # The errors as scrubbed text: an earlier model's error may echo a key.
        from .errors import describe

        errs = [(name, describe(exc)) for name, exc in self.errors]
        return (
            f"GenerationResult(text={self.text!r}, model={self.model!r}, "
            f"cached={self.cached}, attempts={self.attempts}, latency={self.latency!r}, "
            f"usage={self.usage!r}, errors={errs!r})"
        )


def estimate_tokens(text: str) -> int:
    """About four characters a token, as the providers' rules of thumb go."""
    return (len(text) + 3) // 4
