"""What a newcomer reads when something is misconfigured or fails: each message says what
to do next, once."""

from __future__ import annotations

import pytest

from agenticaiframework.llms import AllModelsFailedError, LLMManager, NoModelConfiguredError


def test_no_model_registered_says_register_first() -> None:
    m = LLMManager()
    with pytest.raises(NoModelConfiguredError, match=r"register_model\(name, fn\) first"):
        m.generate("p")


def test_registered_but_not_active_names_them() -> None:
    m = LLMManager()
    m.register_model("gpt-4", lambda prompt, kwargs: "x")
    m.register_model("claude", lambda prompt, kwargs: "y")
    with pytest.raises(NoModelConfiguredError) as ei:
        m.generate("p")
    text = str(ei.value)
    assert "'gpt-4', 'claude'" in text and "set_active_model('gpt-4')" in text


def test_one_failure_is_singular_and_repeats_are_counted() -> None:
    def down(prompt: str, kwargs: dict[str, object]) -> str:
        raise ConnectionError("upstream down")

    m = LLMManager(max_retries=3, failure_threshold=100, sleep=lambda s: None)
    m.register_model("a", down)
    m.register_model("b", down)
    m.set_active_model("a")
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p", use_cache=False)
    assert str(ei.value) == (
        "no model answered (3 failed attempts): a: ConnectionError: upstream down (3 times)"
    )
    m.set_fallback_chain(["b"])
    with pytest.raises(AllModelsFailedError) as ei:
        m.generate("p", use_cache=False)
    assert str(ei.value).count("upstream down") == 2  # once per model, with its count
    assert len(ei.value.errors) == 6  # every attempt is still there

    m2 = LLMManager(max_retries=1)
    m2.register_model("a", down)
    m2.set_active_model("a")
    with pytest.raises(AllModelsFailedError, match=r"\(1 failed attempt\): a: "):
        m2.generate("p")


def test_bare_str_fallback_chain_is_refused_clearly() -> None:
    m = LLMManager()
    m.register_model("primary", lambda prompt, kwargs: "x")
    with pytest.raises(TypeError, match=r"not a bare str: write \['primary'\]"):
        m.set_fallback_chain("primary")  # type: ignore[arg-type]
    assert m.fallback_chain == []
