"""A small Agent: enough to hold an LLMManager in its config and run tasks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("agenticaiframework.agent")


class Agent:
    """A named worker with a role, capabilities and a config (e.g. ``llm_manager``).

    >>> agent = Agent("helper", "assistant", ["chat"], {})
    >>> agent.start()
    >>> agent.execute_task(lambda q: q.upper(), "hi")
    'HI'
    >>> agent.status
    'running'
    """

    def __init__(
        self,
        name: str,
        role: str,
        capabilities: Iterable[str] = (),
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        if not isinstance(role, str):
            raise TypeError("role must be a str")
        if isinstance(capabilities, str):
            raise TypeError("capabilities must be a list of str, not a str")
        self.name = name
        self.role = role
        self.capabilities = list(capabilities)
        self.config: dict[str, Any] = dict(config or {})
        self._status = "initialized"
        self._lock = threading.Lock()
        self.tasks_completed = 0
        self.tasks_failed = 0

    @property
    def status(self) -> str:
        """``'initialized'``, ``'running'`` or ``'stopped'``."""
        return self._status

    @property
    def llm_manager(self) -> Any:
        return self.config.get("llm_manager")

    def start(self) -> None:
        with self._lock:
            self._status = "running"
        logger.info("agent %r started", self.name)

    def stop(self) -> None:
        with self._lock:
            self._status = "stopped"
        logger.info("agent %r stopped", self.name)

    def execute_task(self, task: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs ``task(*args, **kwargs)`` and returns its result; its errors propagate."""
        if self._status != "running":
            raise RuntimeError(f"agent {self.name!r} is {self._status}; call start() first")
        try:
            result = task(*args, **kwargs)
        except BaseException:
            with self._lock:
                self.tasks_failed += 1
            raise
        with self._lock:
            self.tasks_completed += 1
        return result

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, role={self.role!r}, status={self._status!r})"
