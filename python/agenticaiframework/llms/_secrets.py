"""Keeping API keys out of logs, errors, metrics and cache keys.

Two layers: names that look secret (``api_key``, ``authorization``, ...) have their values
masked wherever the library shows a mapping, and free text (exception messages) is scrubbed
of known key shapes and of every secret value the library has seen.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Whole name components only: "access_token" is secret, "max_tokens" is not.
_SECRET_NAME = re.compile(
    r"(^|_)(api_?key|secret|token|password|passwd|authorization|auth|credentials?|"
    r"private_?key|access_?key|session_?key|cookie)($|_)"
)
# Shapes of common provider keys and bearer tokens.
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk_[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-+/=]{8,}|"
    r"AKIA[0-9A-Z]{12,}|xox[abpr]-[A-Za-z0-9\-]{8,}|ghp_[A-Za-z0-9]{20,})"
)

_known: set[str] = set()
_known_lock = threading.Lock()
_known_pattern: re.Pattern[str] | None = None


def is_secret_name(name: object) -> bool:
    """Whether a mapping key names a secret (and its value must be masked)."""
    if not isinstance(name, str):
        return False
    return _SECRET_NAME.search(name.lower().replace("-", "_")) is not None


def remember(value: object) -> None:
    """Registers a secret value so it is scrubbed from any text the library emits."""
    global _known_pattern
    if not isinstance(value, str) or len(value) < 6:
        return
    with _known_lock:
        if value in _known:
            return
        _known.add(value)
        # Longest first, so a key that contains another is removed whole.
        ordered = sorted(_known, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))


# How deep remember_from/redact_mapping look into nested mappings: far beyond any real
# configuration, and short of Python's recursion limit on hostile (deep or cyclic) input.
MAX_DEPTH = 32


def remember_from(mapping: Mapping[Any, Any] | None, _depth: int = 0) -> None:
    """Registers the values of secret-looking names in a mapping (and nested mappings)."""
    if not mapping or _depth > MAX_DEPTH:
        return
    try:
        items = list(mapping.items())
    except Exception:  # a hostile Mapping: nothing we can read is worth failing a request
        return
    for k, v in items:
        if is_secret_name(k):
            remember(v)
        elif isinstance(v, Mapping):
            remember_from(v, _depth + 1)


def redact_text(text: str) -> str:
    """Scrubs known secret values and key-shaped substrings from free text."""
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _KEY_SHAPES.sub(MASK, text)


def redact_mapping(mapping: Mapping[Any, Any], _depth: int = 0) -> dict[Any, Any]:
    """A copy with secret-looking values masked, recursively (cycles and depth cut off)."""
    out: dict[Any, Any] = {}
    for k, v in mapping.items():
        if is_secret_name(k) and v is not None:
            out[k] = MASK
        elif isinstance(v, Mapping):
            out[k] = redact_mapping(v, _depth + 1) if _depth < MAX_DEPTH else "{...}"
        elif isinstance(v, str):
            # A key under a name we do not recognise ("openai_key") is still key-shaped.
            out[k] = redact_text(v)
        else:
            out[k] = v
    return out
