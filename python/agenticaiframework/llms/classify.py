"""Which failures are worth retrying, and how long a provider asked us to wait.

The default policy reads our own error types first, then anything that carries an HTTP
status the way the official SDKs do (``status_code``), so a user who calls an SDK directly
in an inference function gets the same treatment as one who uses our adapters.
"""

from __future__ import annotations

import email.utils
import functools
import inspect
import math
import os
import time
import weakref
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any, TypeAlias

from .errors import NonRetryableError, ProviderError

# exc -> True (retry), False (do not retry on this model), None (no opinion: next rule).
Classifier: TypeAlias = Callable[[BaseException], "bool | None"]

RETRYABLE_STATUS = frozenset({408, 409, 429})


def status_retryable(status: int) -> bool:
    """408, 409, 429 and 5xx are worth another try; every other 4xx is not."""
    return status in RETRYABLE_STATUS or status >= 500 or status < 400


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (ours: ``status``; SDKs: ``status_code``).
    Attributes that raise when read (properties, ``__getattr__``) count as absent."""
    for attr in ("status", "status_code"):
        try:
            v = getattr(exc, attr, None)
        except Exception:
            continue
        if type(v) is int:
            return v
    return None


# A bug in an inference function, not an outage: the same call fails the same way, so a
# retry only adds backoff and moves the breaker. Not retried (the fallback still runs)
# when raised by the function's own code, or by the call itself (a wrong signature is
# a TypeError raised in the library's frame that makes the call). Raised deeper (an SDK,
# a helper the function calls), they are retried as before. Opt out with
# ``retry_on=(TypeError, AttributeError, NameError)``, per manager or per model.
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (TypeError, AttributeError, NameError)

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OWN_CODE: weakref.WeakSet[CodeType] = weakref.WeakSet()


def remember_code(fn: object) -> None:
    """Notes the code objects of a registered inference function (the function, a
    callable object's ``__call__``, its ``stream``/``astream`` methods, through
    ``functools.partial`` and ``functools.wraps``), so that an error raised in its own
    frame can be told from one raised deeper."""
    todo: list[object] = [fn]
    for _ in range(16):
        if not todo:
            return
        f = todo.pop()
        if isinstance(f, functools.partial):
            todo.append(f.func)
            continue
        try:
            f = inspect.unwrap(f)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            pass
        code = getattr(getattr(f, "__func__", f), "__code__", None)
        if isinstance(code, CodeType):
            _OWN_CODE.add(code)
        elif not inspect.isroutine(f) and not isinstance(f, type):
            call = getattr(type(f), "__call__", None)  # noqa: B004
            if call is not None:
                todo.append(call)
        for attr in ("stream", "astream"):
            try:
                m = getattr(f, attr, None)
            except Exception:
                m = None
            if m is not None and callable(m):
                c = getattr(getattr(m, "__func__", m), "__code__", None)
                if isinstance(c, CodeType):
                    _OWN_CODE.add(c)


def programming_error(exc: BaseException) -> bool:
    """A TypeError, AttributeError or NameError raised by a registered inference
    function's own code or by the library's call of it (see PROGRAMMING_ERRORS)."""
    if not isinstance(exc, PROGRAMMING_ERRORS):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return code in _OWN_CODE or code.co_filename.startswith(_PACKAGE)


def default_retryable(exc: BaseException) -> bool:
    if isinstance(exc, NonRetryableError) or programming_error(exc):
        return False
    if isinstance(exc, ProviderError):
        return exc.status is None or status_retryable(exc.status)
    status = status_of(exc)
    return status is None or status_retryable(status)


def parse_retry_after(headers: Mapping[str, Any] | Any, now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Returns None when absent or unreadable (whatever the headers object raises); never
    negative.
    """
    try:
        return _parse_retry_after(headers, now)
    except Exception:
        return None


def _parse_retry_after(headers: Mapping[str, Any] | Any, now: float | None) -> float | None:
    get = getattr(headers, "get", None)
    if get is None:
        return None
    ms = get("retry-after-ms")
    if ms is not None:
        v = float(ms) / 1000.0
        return v if math.isfinite(v) and v >= 0 else None
    raw = get("retry-after")
    if raw is None:
        return None
    raw = str(raw).strip()
    try:
        v = float(raw)
        return v if math.isfinite(v) and v >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(exc: BaseException) -> float | None:
    """The wait an exception asks for: our ``retry_after``, or an SDK response's headers.
    None when there is none or it cannot be read."""
    try:
        v = getattr(exc, "retry_after", None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            f = float(v)
            return f if math.isfinite(f) and f >= 0 else None
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    except Exception:
        return None
    return parse_retry_after(headers) if headers is not None else None


def make_policy(
    classify: Classifier | None,
    retry_on: tuple[type[BaseException], ...],
    no_retry_on: tuple[type[BaseException], ...],
    then: Callable[[BaseException], bool],
) -> Callable[[BaseException], bool]:
    """One callable from a user's classifier and exception lists, in that order, then
    ``then`` (the manager's policy, or the default)."""
    for name, types in (("retry_on", retry_on), ("no_retry_on", no_retry_on)):
        if not isinstance(types, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise TypeError(f"{name} must be a tuple of exception classes")
    if classify is not None and not callable(classify):
        raise TypeError("classify must be callable: exc -> True, False or None")
    if classify is None and not retry_on and not no_retry_on:
        return then

    def policy(exc: BaseException) -> bool:
        if classify is not None:
            verdict = classify(exc)
            if verdict is not None:
                return bool(verdict)
        if no_retry_on and isinstance(exc, no_retry_on):
            return False
        if retry_on and isinstance(exc, retry_on):
            return True
        return then(exc)

    return policy
