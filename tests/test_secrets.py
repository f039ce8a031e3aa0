"""API keys never leak: not into log records, str() of AllModelsFailedError, get_metrics()
or get_model_info(), whether they come in kwargs, in metadata or in a model's error text."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys
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


# ------------------------------------------------------------------ issue 8: every path


def everything_including_reprs(m: LLMManager, err: BaseException | None, caplog: Any) -> str:
    """everything_visible() plus the reprs a debugging user prints, and the cache's keys
    and stored records."""
    parts = [everything_visible(m, err, caplog), repr(m), repr(err)]
    for name in m.list_models():
        parts.append(repr(m._model(name).breaker))
    cache = m._cache
    if cache is not None:
        parts.append(repr(cache))
        parts.append(repr(cache.stats()))
        for shard in range(cache.shard_count):
            for key in cache.shard_keys(shard):
                parts.append(key.decode("latin-1"))
                record = cache.get(key)
                parts.append(repr(record))
                parts.extend(str(getattr(record, f, "")) for f in ("text", "model"))
    return "\n".join(parts)


def echo_everything(prompt: str, kwargs: dict[str, Any]) -> str:
    raise RuntimeError(f"rejected request {prompt!r} with {kwargs!r}")


def route(**kw: Any) -> LLMManager:
    m = make(max_retries=2, **kw)
    m.register_model("a", echo_everything)
    m.register_model("b", lambda p, k: "fine")
    m.set_active_model("a")
    m.set_fallback_chain(["b"])
    return m


async def _no_wait(seconds: float) -> None:
    return None


def _drain_async(it: Any) -> list[str]:
    async def go() -> list[str]:
        return [c async for c in it]

    return asyncio.run(go())


CALLS = {
    "generate": lambda m, kw: m.generate("p", **kw),
    "generate_response": lambda m, kw: m.generate_response("p", **kw).text,
    "agenerate": lambda m, kw: asyncio.run(m.agenerate("p", **kw)),
    "agenerate_timeout": lambda m, kw: asyncio.run(m.agenerate("p", timeout=5, **kw)),
    "stream": lambda m, kw: "".join(m.stream("p", **kw)),
    "astream": lambda m, kw: "".join(_drain_async(m.astream("p", **kw))),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("shaped", [False, True], ids=["plain", "shaped"])
def test_kwarg_secret_on_every_path_at_debug(logs: Any, call: str, shaped: bool) -> None:
    secret = SHAPED if shaped else plain(f"path{call}")
    m = route(async_sleep=_no_wait)
    kw = {"api_key": secret, "headers": {"x-api-key": secret}, "temperature": 0.1}
    assert CALLS[call](m, kw) == "fine"
    assert CALLS[call](m, kw) == "fine"  # the second one from the cache (or the model)
    # The echoing failure was logged, so the check is not vacuous.
    assert any("rejected request" in r.getMessage() for r in logs.records)
    assert secret not in everything_including_reprs(m, None, logs)


def test_all_failed_error_and_its_repr_at_debug(logs: Any) -> None:
    secret = plain("allfailed")
    m = route()
    m.set_fallback_chain([])
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p", password=secret)
    assert secret not in everything_including_reprs(m, ei.value, logs)
    assert secret not in repr(ei.value) + str(ei.value.args)


def test_secret_in_deep_metadata_and_echoing_model(logs: Any) -> None:
    token, authz = plain("metatoken"), plain("metaauthz")
    meta = {
        "provider": "x",
        "client": {"options": {"token": token}},
        "headers": {"Authorization": f"Bearer {authz}"},
    }

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise RuntimeError(f"config was {meta!r}")

    m = make(max_retries=2)
    m.register_model("a", fn, meta)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    text = everything_including_reprs(m, ei.value, logs)
    assert token not in text and authz not in text
    assert m.get_model_info("a")["metadata"]["provider"] == "x"


def test_secret_inside_a_list_kwarg(logs: Any) -> None:
    secret = plain("inlist")
    m = route()
    m.set_fallback_chain([])
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p", messages=[{"role": "user", "api_key": secret}])
    assert secret not in everything_including_reprs(m, ei.value, logs)


def test_secret_inside_a_list_in_metadata(logs: Any) -> None:
    secret = plain("metalist")
    meta = {"keys": [{"token": secret}]}

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise RuntimeError(f"config was {meta!r}")

    m = make(max_retries=1)
    m.register_model("a", fn, meta)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert secret not in everything_including_reprs(m, ei.value, logs)


@pytest.mark.parametrize("outer", ["auth", "credentials"])
def test_secret_inside_a_secret_named_mapping(logs: Any, outer: str) -> None:
    secret = plain(f"under{outer}")
    meta = {outer: {"token": secret}}

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise RuntimeError(f"config was {meta!r} and request {kwargs!r}")

    m = make(max_retries=1)
    m.register_model("a", fn, meta)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p", **{outer: {"api_key": secret}})
    assert secret not in everything_including_reprs(m, ei.value, logs)


def test_generation_result_repr_hides_echoed_secrets(logs: Any) -> None:
    secret = plain("resultrepr")
    m = route()
    result = m.generate_response("p", api_key=secret)
    assert result.text == "fine" and result.errors
    assert secret not in repr(result)


def test_environment_secret_echoed_by_a_model(logs: Any, monkeypatch: Any) -> None:
    secret = plain("environ")
    monkeypatch.setenv("MYPROVIDER_API_KEY", secret)

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise RuntimeError(f"401 with key {os.environ['MYPROVIDER_API_KEY']}")

    m = make(max_retries=1)
    m.register_model("a", fn)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert secret not in everything_including_reprs(m, ei.value, logs)


def test_shaped_environment_secret_echoed_by_a_model(logs: Any, monkeypatch: Any) -> None:
    secret = "sk-ENVSENTINEL-abcdefghijklmnop0123"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    def fn(prompt: str, kwargs: dict[str, Any]) -> str:
        raise RuntimeError(f"401 with key {os.environ['OPENAI_API_KEY']}")

    m = make(max_retries=1)
    m.register_model("a", fn)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p")
    assert secret not in everything_including_reprs(m, ei.value, logs)


def test_cache_keys_and_records_hold_no_secret() -> None:
    secret = plain("cachekey")
    m = make()
    m.register_model("a", lambda p, k: "answer")
    m.set_active_model("a")
    m.generate("p", api_key=secret)
    m.generate("p", api_key=secret + "2")  # the key differs: both requests are cached ...
    cache = m._cache
    assert cache is not None and len(cache) == 2
    raw = secret.encode()
    for shard in range(cache.shard_count):
        for key in cache.shard_keys(shard):
            assert len(key) == 16 and raw not in key  # ... under a keyed hash only
            assert secret not in repr(cache.get(key))


DEMO_ARGS = ["--requests", "80", "--time-scale", "0.01"]
DEMO_SECRETS = {
    "OPENAI_API_KEY": "sk-DEMOSENTINEL-0123456789abcdef",
    "ANTHROPIC_API_KEY": "PLAINSECRETDEMOANTHROPICZq9",
    "LLM_TOKEN": "PLAINSECRETDEMOTOKENZq9",
}


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_demo_output_has_no_secret(mode: list[str]) -> None:
    env = {**os.environ, **DEMO_SECRETS}
    done = subprocess.run(
        [sys.executable, "-m", "agenticaiframework.llms", "demo", *DEMO_ARGS, *mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Metrics" in done.stdout
    for secret in DEMO_SECRETS.values():
        assert secret not in done.stdout + done.stderr


def test_demo_at_debug_logs_no_secret(logs: Any, monkeypatch: Any) -> None:
    from agenticaiframework.llms.__main__ import main

    for name, value in DEMO_SECRETS.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert main(["demo", "--requests", "80", "--time-scale", "0.01"], out=out) == 0
    text = out.getvalue() + logs.text
    assert "failed attempt" in logs.text or "opened" in logs.text  # it did log failures
    for secret in DEMO_SECRETS.values():
        assert secret not in text
