"""What inference functions return and what generate_response() gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The finish reasons with which a provider says an answer ended normally: an empty text
# ending so is what the model meant, not a response that went missing.
MEANT_TO_END = frozenset({"stop", "end_turn", "stop_sequence"})


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response. ``estimated`` when the model reported none.

    In a stream, the last item may be a Usage that also says why the stream ended
    (``finish_reason``, as the provider named it); ``Usage(estimated=True,
    finish_reason="stop")`` reports only that, and the counts are then estimated."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    finish_reason: str | None = field(default=None, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """A response with token usage, for inference functions that know it.

    >>> def fn(prompt: str, kwargs: dict) -> LLMResponse:
    ...     return LLMResponse("hi", prompt_tokens=3, completion_tokens=1)

    An empty text is an :class:`InvalidResponseError` unless ``finish_reason`` says the
    model ended normally (``"stop"``, ``"end_turn"``, ``"stop_sequence"``) or the manager
    was made with ``allow_empty=True``.
    """

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    raw: Any = field(default=None, repr=False, compare=False)
    # Why the answer ended, as the provider named it ("stop", "length", "end_turn", ...).
    # An empty ``text`` is accepted only with a normal ending (see ``allow_empty``).
    finish_reason: str | None = None


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
    """About four characters a token, as the providers' rules of thumb go: the one
    estimate the library makes (the native first-try path makes the same one). The base
    str length: a str subclass's own ``__len__`` (user code) is never called."""
    return (str.__len__(text) + 3) >> 2
