"""API keys never leak: not into log records, str() of AllModelsFailedError, get_metrics()
or get_model_info(), whether they come in kwargs, in metadata or in a model's error text."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agenticaiframework.llms import AllModelsFailedError, LLMManager, NonRetryableError

LOGGER = "agenticaiframework.llms"

# Shaped like a provider key.
SHAPED = "sk-SENTINEL-0123456789abcdefXYZ"


def plain(tag: str) -> str:
    """A secret not shaped like any known key: only the name it is passed under marks it.

    Each test uses its own (the library remembers secrets it has seen process-wide, so a
    shared value would let one test pass on another's account).
    """
    return f"PLAINSECRET{tag.upper()}Zq9"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**kw: Any) -> LLMManager:
    kw.setdefault("sleep", lambda seconds: None)
    kw.setdefault("clock", FakeClock())
    return LLMManager(**kw)


def everything_visible(m: LLMManager, err: BaseException | None, caplog: Any) -> str:
    """All the text a user could see: logs, the error, metrics and every model's info."""
    parts = [caplog.text]
    for r in caplog.records:
        parts.append(r.getMessage())
        if r.exc_info:
            parts.append(logging.Formatter().formatException(r.exc_info))
    if err is not None:
        parts.append(str(err))
    parts.append(repr(m.get_metrics()))
    for name in m.list_models():
        parts.append(repr(m.get_model_info(name)))
    return "\n".join(parts)


def echo_kwargs_error(prompt: str, kwargs: dict[str, Any]) -> str:
    # A provider SDK error that echoes the request, secrets and all.
    raise RuntimeError(f"401 Unauthorized for request {kwargs!r}")


@pytest.fixture
def logs(caplog: Any) -> Any:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.mark.parametrize("secret", [SHAPED, plain("echoed")])
def test_kwargs_secret_echoed_in_error_never_leaks(logs: Any, secret: str) -> None:
    m = make(max_retries=2, failure_threshold=2)
    m.register_model("a", echo_kwargs_error)
    m.register_model("b", echo_kwargs_error)
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p", api_key=secret, temperature=0.2)
    # The failures were logged (so the check below is not vacuous) ...
    assert any("401" in r.getMessage() for r in logs.records)
    # ... without the key.
    assert secret not in everything_visible(m, ei.value, logs)


@pytest.mark.parametrize(
    ("kwargs", "secret"),
    [
        ({"api_key": SHAPED}, SHAPED),
        ({"headers": {"Authorization": plain("authz")}}, plain("authz")),
        ({"headers": {"Authorization": "Bearer " + plain("bearer")}}, plain("bearer")),
        ({"access_token": plain("access")}, plain("access")),
        ({"password": plain("password")}, plain("password")),
        ({"API_KEY": plain("upper")}, plain("upper")),
    ],
)
def test_secret_kwarg_names(logs: Any, kwargs: dict[str, Any], secret: str) -> None:
    m = make(max_retries=1)
    m.register_model("a", echo_kwargs_error)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p", **kwargs)
    assert secret not in everything_visible(m, ei.value, logs)


def test_secret_in_metadata_masked_in_model_info(logs: Any) -> None:
    m = make(max_retries=1)
    secret = plain("metadata")
    meta = {"provider": "openai", "max_tokens": 8192, "api_key": secret}

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise RuntimeError(f"auth failed with key {secret}")

    m.register_model("a", fn, meta)
    m.set_active_model("a")
    info = m.get_model_info("a")
    assert info["metadata"]["provider"] == "openai"
    assert info["metadata"]["max_tokens"] == 8192  # "max_tokens" is not a secret name
    assert secret not in repr(info)
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert any("auth failed" in r.getMessage() for r in logs.records)
    assert secret not in everything_visible(m, ei.value, logs)
    # The caller's mapping is untouched.
    assert meta["api_key"] == secret


def test_shaped_key_in_exception_message_never_leaks(logs: Any) -> None:
    """No kwargs, no metadata: the key only appears in the model's own error text."""
    m = make(max_retries=2)

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise NonRetryableError(f"Incorrect API key provided: {SHAPED}")

    m.register_model("a", fn)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert any("Incorrect API key" in r.getMessage() for r in logs.records)
    assert SHAPED not in everything_visible(m, ei.value, logs)
    # The original exception is still the caller's to inspect.
    assert SHAPED in str(ei.value.errors[0][1])


def test_secret_kwargs_on_success_not_in_metrics_or_info(logs: Any) -> None:
    m = make()
    m.register_model("a", lambda p, k: "fine", {"provider": "x"})
    m.set_active_model("a")
    assert m.generate("p", api_key=SHAPED) == "fine"
    assert m.generate("p", api_key=SHAPED) == "fine"  # a cache hit
    assert SHAPED not in everything_visible(m, None, logs)


def test_async_path_does_not_leak(logs: Any) -> None:
    async def asleep(seconds: float) -> None:
        return None

    m = make(max_retries=2, async_sleep=asleep)

    async def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise RuntimeError(f"denied: {kwargs}")

    m.register_model("a", fn)
    m.set_active_model("a")
    secret = plain("async")
    with pytest.raises(AllModelsFailedError) as ei:
        asyncio.run(m.agenerate("p", api_key=secret))
    assert any("denied" in r.getMessage() for r in logs.records)
    assert secret not in everything_visible(m, ei.value, logs)


def test_shaped_key_in_metadata_under_unusual_name_not_shown() -> None:
    m = make()
    m.register_model("a", lambda p, k: "x", {"openai_key": SHAPED})
    assert SHAPED not in repr(m.get_model_info("a"))
