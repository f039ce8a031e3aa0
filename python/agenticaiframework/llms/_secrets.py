"""Keeping API keys out of logs, errors, metrics and cache keys.

Two layers: names that look secret (``api_key``, ``authorization``, ...) have their values
masked wherever the library shows a mapping, and free text (exception messages) is scrubbed
of known key shapes and of every secret value the library has seen.
"""

from __future__ import annotations

import os
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

# The secret values seen, most recent last; bounded, so a server whose callers each pass
# their own key does not grow without end (the oldest are forgotten first).
MAX_KNOWN = 4096
_known: dict[str, None] = {}
_known_lock = threading.Lock()
_ordered: tuple[str, ...] | None = ()  # longest first; None: to rebuild


def _fresh_lock() -> None:
    global _known_lock
    _known_lock = threading.Lock()  # a forked child: another thread may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock)


def is_secret_name(name: object) -> bool:
    """Whether a mapping key names a secret (and its value must be masked)."""
    if not isinstance(name, str):
        return False
    return _SECRET_NAME.search(name.lower().replace("-", "_")) is not None


def remember(value: object) -> None:
    """Registers a secret value so it is scrubbed from any text the library emits."""
    global _ordered
    if not isinstance(value, str) or len(value) < 6:
        return
    with _known_lock:
        if value in _known:
            return
        _known[value] = None
        if len(_known) > MAX_KNOWN:
            del _known[next(iter(_known))]
        _ordered = None


# How deep remember_from/redact_mapping look into nested values: far beyond any real
# configuration, and short of Python's recursion limit on hostile (deep or cyclic) input.
MAX_DEPTH = 32


def remember_from(obj: object, _depth: int = 0, _secret: bool = False) -> None:
    """Registers the str values under secret-looking names, in nested mappings, lists and
    tuples; everything under a secret name (``{"auth": {"user": ..., "pass": ...}}``)."""
    if _depth > MAX_DEPTH:
        return
    if isinstance(obj, str):
        if _secret:
            remember(obj)
        return
    try:
        if isinstance(obj, Mapping):
            for k, v in list(obj.items()):
                remember_from(v, _depth + 1, _secret or is_secret_name(k))
        elif isinstance(obj, (list, tuple)):
            for v in list(obj):
                remember_from(v, _depth + 1, _secret)
    except Exception:  # a hostile container: nothing we can read is worth failing a request
        return


def remember_env() -> None:
    """Registers the values of secret-named environment variables (OPENAI_API_KEY, ...):
    a model's own client reads them, and its errors may echo them."""
    for k, v in list(os.environ.items()):
        if is_secret_name(k):
            remember(v)


def redact_text(text: str) -> str:
    """Scrubs known secret values (the environment's included) and key-shaped substrings
    from free text."""
    global _ordered
    remember_env()
    ordered = _ordered
    if ordered is None:
        with _known_lock:
            # Longest first, so a key that contains another is removed whole.
            ordered = _ordered = tuple(sorted(_known, key=len, reverse=True))
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return _KEY_SHAPES.sub(MASK, text)


def redact_mapping(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy with secret-looking values masked, recursively through mappings, lists and
    tuples (cycles and depth cut off); key-shaped strings are scrubbed wherever they are."""
    out = _redact(mapping, 0)
    return out if isinstance(out, dict) else {}


def _redact(v: Any, depth: int) -> Any:
    if isinstance(v, str):
        # A key under a name we do not recognise ("openai_key") is still key-shaped.
        return redact_text(v)
    if isinstance(v, (Mapping, list, tuple)) and depth >= MAX_DEPTH:
        return "..."
    if isinstance(v, Mapping):
        return {
            k: (MASK if is_secret_name(k) and x is not None else _redact(x, depth + 1))
            for k, x in v.items()
        }
    if isinstance(v, (list, tuple)):
        return (
            type(v)(_redact(x, depth + 1) for x in v)
            if type(v) in (list, tuple)
            else [_redact(x, depth + 1) for x in v]
        )
    return v
