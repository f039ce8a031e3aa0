"""The public types catch a user's mistakes: tests/typing/check_public_api.py under mypy
--strict (the project's configuration), and the docstrings' examples run."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import agenticaiframework.llms.errors
import agenticaiframework.llms.manager
import agenticaiframework.llms.reports

ROOT = Path(__file__).parent.parent


def test_public_api_types_catch_mistakes() -> None:
    api = pytest.importorskip("mypy.api")
    out, err, code = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(ROOT / "tests/typing/check_public_api.py"),
        ]
    )
    assert code == 0, out + err


def test_messages_name_the_public_class(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text("from agenticaiframework.llms import LLMManager\nLLMManager().generate(1)\n")
    out, _, code = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(snippet)])
    assert code == 1 and '"generate" of "LLMManager"' in out, out


@pytest.mark.parametrize(
    "module",
    [
        agenticaiframework.llms.manager,
        agenticaiframework.llms.errors,
        agenticaiframework.llms.reports,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def test_help_of_generate_is_for_users() -> None:
    from agenticaiframework.llms import LLMManager

    doc = LLMManager.generate.__doc__ or ""
    assert "_generate_slow" not in doc
    for word in ("Raises", "AllModelsFailedError", "kwargs", "Example"):
        assert word in doc
