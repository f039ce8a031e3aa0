"""What a forked child must not inherit.

A child of ``os.fork()`` (gunicorn ``--preload``, ``multiprocessing`` with fork, Celery
prefork) holds a copy of the parent's memory but only the thread that forked. Locks held
by other threads at that instant stay held for ever, flights led by those threads never
land, worker pools have no workers, and event loops share their epoll instance and
self-pipe with the parent. Objects that hold such state register here; after a fork, the
child calls each one's ``_after_fork()`` (the parent is untouched).
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any

logger = logging.getLogger("agenticaiframework.llms")

# Bumped in each child: state tagged with an older generation belongs to an ancestor.
generation = 0

_holders: weakref.WeakSet[Any] = weakref.WeakSet()


def register(obj: Any) -> None:
    """``obj._after_fork()`` runs in every child forked from now on, while obj lives."""
    _holders.add(obj)


def _in_child() -> None:
    global generation
    generation += 1
    for obj in list(_holders):
        try:
            obj._after_fork()
        except Exception:  # one object's trouble must not leave the others inherited
            logger.exception("resetting %s after fork failed", type(obj).__name__)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)
