"""Which failures are retried, and how long a provider's Retry-After makes us wait."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest

from agenticaiframework.llms import (
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    LLMManager,
    NonRetryableError,
    RateLimitError,
    RetryableProviderError,
)
from agenticaiframework.llms.classify import (
    default_retryable,
    parse_retry_after,
    retry_after_of,
)


class Script:
    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> Any:
        self.calls += 1
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return step


def make(**kw: Any) -> tuple[LLMManager, list[float]]:
    waits: list[float] = []
    kw.setdefault("sleep", waits.append)
    kw.setdefault("enable_caching", False)
    return LLMManager(**kw), waits


class SDKError(Exception):
    """Shaped like the official SDKs' APIStatusError: status_code and response.headers."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"Error code: {status_code}")
        self.status_code = status_code
        self.response = type("R", (), {"headers": headers or {}})()


@pytest.mark.parametrize(
    ("status", "retry"),
    [(408, True), (409, True), (429, True), (500, True), (503, True), (400, False),
     (401, False), (403, False), (404, False), (422, False)],
)  # fmt: skip
def test_status_codes(status: int, retry: bool) -> None:
    assert default_retryable(SDKError(status)) is retry
    err = (RetryableProviderError if retry else BadRequestError)("x", status=status)
    assert default_retryable(err) is retry


def test_our_types() -> None:
    assert default_retryable(ConnectionError()) and default_retryable(TimeoutError())
    for exc in (NonRetryableError(), AuthenticationError("no", status=401),
                ContextLengthError("too long", status=400)):  # fmt: skip
        assert not default_retryable(exc)
    assert isinstance(ContextLengthError("x"), NonRetryableError)


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 30)}, now=now) == 0.0
    for bad in ("soon", "-1", "nan", "inf", ""):
        assert parse_retry_after({"retry-after": bad}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    assert retry_after_of(SDKError(429, {"retry-after": "2"})) == 2.0
    assert retry_after_of(RateLimitError("slow down", status=429, retry_after=4.0)) == 4.0
    assert retry_after_of(ValueError()) is None


def test_retry_after_lengthens_the_wait() -> None:
    m, waits = make(max_retries=3, backoff_base=1.0, backoff_max=60.0)
    f = Script(RateLimitError("slow", status=429, retry_after=7.0), SDKError(503), "ok")
    m.register_model("a", f)
    m.set_active_model("a")
    assert m.generate("p") == "ok"
    # attempt 1: backoff 1 s but the provider asked for 7; attempt 2: backoff 2 s.
    assert waits == [7.0, 2.0]
    assert f.calls == 3


def test_retry_after_shorter_than_backoff_does_not_shorten_it() -> None:
    m, waits = make(max_retries=2, backoff_base=4.0)
    m.register_model("a", Script(SDKError(429, {"retry-after-ms": "10"}), "ok"))
    m.set_active_model("a")
    assert m.generate("p") == "ok"
    assert waits == [4.0]


def test_retry_after_beyond_backoff_max_moves_to_next_model() -> None:
    m, waits = make(max_retries=3, backoff_max=10.0)
    a, b = Script(SDKError(429, {"retry-after": "120"})), Script("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("p") == "B"
    assert (a.calls, b.calls, waits) == (1, 1, [])


def test_non_retryable_status_falls_back_without_waiting() -> None:
    m, waits = make(max_retries=3)
    a, b = Script(SDKError(401)), Script("B")
    m.register_model("a", a)
    m.register_model("b", b)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    assert m.generate("p") == "B"
    assert (a.calls, waits) == (1, [])


def test_manager_classifier_and_lists() -> None:
    class Flaky(Exception):
        pass

    class Fatal(Exception):
        pass

    m, _ = make(max_retries=3, no_retry_on=(Fatal,), retry_on=(ValueError,))
    fatal = Script(Fatal())
    m.register_model("fatal", fatal)
    m.set_active_model("fatal")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert fatal.calls == 1

    m2, _ = make(max_retries=3, classify=lambda e: False if isinstance(e, Flaky) else None)
    flaky, other = Script(Flaky()), Script(KeyError("k"))
    m2.register_model("flaky", flaky)
    m2.register_model("other", other)
    m2.set_active_model("flaky")
    m2.set_fallback_chain(["other"])
    with pytest.raises(AllModelsFailedError):
        m2.generate("p")
    # the classifier had no opinion on KeyError: the default retries it
    assert (flaky.calls, other.calls) == (1, 3)


def test_model_policy_overrides_manager_policy() -> None:
    m, _ = make(max_retries=3, no_retry_on=(KeyError,))
    a = Script(KeyError("k"))
    m.register_model("a", a, retry_on=(KeyError,))
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert a.calls == 3
    # and a model-level classifier can make even a 503 final
    b = Script(SDKError(503))
    m.register_model("b", b, classify=lambda e: getattr(e, "status_code", 0) != 503)
    m.set_active_model("b")
    with pytest.raises(AllModelsFailedError):
        m.generate("p")
    assert b.calls == 1


def test_broken_classifier_falls_back_to_default() -> None:
    def bad(e: BaseException) -> bool:
        raise RuntimeError("oops")

    m, _ = make(max_retries=2, classify=bad)
    a = Script(ConnectionError(), "ok")
    m.register_model("a", a)
    m.set_active_model("a")
    assert m.generate("p") == "ok"
    assert m.get_metrics()["successful_requests"] == 1


def test_policy_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="retry_on"):
        LLMManager(retry_on=[ValueError])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no_retry_on"):
        LLMManager(no_retry_on=(42,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="classify"):
        LLMManager(classify="yes")  # type: ignore[arg-type]
    m = LLMManager()
    with pytest.raises(TypeError, match="retry_on"):
        m.register_model("a", lambda p, k: "x", retry_on=(int,))


def test_provider_error_message_keeps_status_and_drops_secrets() -> None:
    err = AuthenticationError(
        "Incorrect API key provided: sk-abcdefghijklmnop1234", status=401, provider="openai"
    )
    assert err.status == 401 and "401" in str(err) and "openai" in str(err)
    assert "sk-abcdefghijklmnop1234" not in str(err)
