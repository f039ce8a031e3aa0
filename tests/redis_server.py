"""A real ``redis-server`` for the fleet tier's tests, on a free loopback port.

One server per test session (``redis_server``), emptied, running and unpaused before each
test that asks for ``redis_srv``; tests may stop it, restart it (same port, empty: nothing
is saved) and pause it (SIGSTOP: its sockets stay open but nothing answers). It is killed
at teardown, and on Linux also if this process dies first (PR_SET_PDEATHSIG).

Without a ``redis-server`` on PATH these tests are skipped: ``make redis-server`` installs
Debian's package (``apt-get install redis-server``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# How long a starting server may take to answer PING before the fixture gives up.
START_WITHIN = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _send(port: int, command: bytes, timeout: float) -> bytes:
    """One inline command, its first reply line (no client library involved)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(command + b"\r\n")
        return s.recv(64)


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``."""

    def __init__(self, binary: str, port: int | None = None, *extra: str) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.extra = extra
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Starts it (empty), and returns once it answers PING."""
        if self.running:
            return
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.paused = False
        deadline = time.monotonic() + START_WITHIN
        while True:
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            try:
                # +PONG, or -NOAUTH when a password is required: either way it answers.
                if _send(self.port, b"PING", 0.5)[:1] in (b"+", b"-"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kills it (what a crash or an unplugged host looks like to a client)."""
        self.kill()

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.paused:
                proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=10)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        assert self.proc is not None and self.running
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def flush(self) -> None:
        reply = _send(self.port, b"FLUSHALL", 5.0)
        assert reply.startswith(b"+OK"), reply

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_binary() -> str | None:
    return shutil.which("redis-server")


SKIP_REASON = (
    "redis-server is not on PATH: `make redis-server` installs it as root on Debian "
    "(apt-get install redis-server); elsewhere install Redis >= 5 and put redis-server "
    "on PATH"
)


@contextlib.contextmanager
def running_server(*extra: str) -> Iterator[RedisServer]:
    """A server of its own (e.g. with ``--requirepass``), killed on exit."""
    binary = redis_binary()
    if binary is None:
        pytest.skip(SKIP_REASON)
    server = RedisServer(binary, None, *extra)
    atexit.register(server.cleanup)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
        atexit.unregister(server.cleanup)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's server (see ``redis_srv`` for a clean one per test)."""
    pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")
    with running_server() as server:
        yield server


@pytest.fixture
def redis_srv(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's server, running, unpaused and empty; put back so after the test."""
    redis_server.resume()
    redis_server.start()
    redis_server.flush()
    yield redis_server
    redis_server.resume()
    redis_server.start()


__all__ = ["RedisServer", "free_port", "redis_server", "redis_srv", "running_server"]
