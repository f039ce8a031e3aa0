"""Argument checks that name the parameter in their error."""

from __future__ import annotations

import math

# What the native structures can hold (breaker.rs packs its state in one 64-bit word).
MAX_FAILURE_THRESHOLD = (1 << 14) - 1
MAX_HALF_OPEN_CALLS = (1 << 10) - 1
MAX_RECOVERY_TIMEOUT = ((1 << 37) - 1) / 1000.0  # about four years
MAX_ENTRIES = (1 << 32) - 2  # slab indices are u32
MAX_COUNT = (1 << 62) - 1


def check_count(name: str, value: object, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return int(value)


def check_seconds(
    name: str, value: object, *, allow_none: bool = False, maximum: float = math.inf
) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if math.isnan(v) or math.isinf(v) or v < 0 or v > maximum:
        bound = "" if math.isinf(maximum) else f" and <= {maximum:.0f}"
        raise ValueError(f"{name} must be a finite number of seconds >= 0{bound}, got {value!r}")
    return v


def check_deadline(v: object) -> float:
    """A request's deadline: seconds > 0 (the native generate() checks the same)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
        raise ValueError(f"deadline must be a number of seconds > 0 (or None), not {v!r}")
    return float(v)
