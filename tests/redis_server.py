"""A real ``redis-server`` for the fleet tier's tests, on a free loopback port.

One server per test session (``redis_server``), emptied, running and unpaused before each
test that asks for ``redis_srv``; tests may stop it, restart it (same port, empty: nothing
is saved) and pause it (SIGSTOP: its sockets stay open but nothing answers). It is killed
at teardown, and on Linux also if this process dies first (PR_SET_PDEATHSIG).

``redis_cluster`` (session) and ``redis_clu`` (per test) are a real 3-master Redis Cluster
of three such servers (``--cluster-enabled yes``, no replicas), formed by ``redis-cli
--cluster create``; tests may kill all of its nodes and start them again (each keeps its
``nodes.conf``, so the same cluster forms again, empty).

Without a ``redis-server`` (and, for the cluster, ``redis-cli``) on PATH these tests are
skipped: ``make redis-server`` installs Debian's package (``apt-get install redis-server``).
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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# How long a starting server may take to answer PING before the fixture gives up.
START_WITHIN = 10.0


def until(cond: Callable[[], object], bound: float = 10.0) -> bool:
    """Bounded poll for what a background thread (or Redis's clock) does: no timing is
    asserted, the bound only keeps a broken test from hanging."""
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return bool(cond())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A free port P whose cluster bus port (P + 10000) is free too."""
    for _ in range(1000):
        port = free_port()
        if port <= 55535 and not {port, port + 10000} & taken and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


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

    def cluster_ok(self) -> bool:
        """Whether this node sees the cluster as up (CLUSTER INFO's first line)."""
        try:
            return b"cluster_state:ok" in _send(self.port, b"CLUSTER INFO", 0.5)
        except OSError:
            return False

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServers:
    """A Redis Cluster of ``masters`` nodes (no replicas) on loopback ports."""

    def __init__(self, binary: str, cli: str, masters: int = 3) -> None:
        self.cli = cli
        taken: set[int] = set()
        self.nodes: list[RedisServer] = []
        for _ in range(masters):
            port = free_cluster_port(taken)
            taken |= {port, port + 10000}
            node = RedisServer(
                binary,
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
            )  # fmt: skip
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """The fleet's URL: one node; the client discovers the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/"

    def __repr__(self) -> str:
        return f"RedisClusterServers(ports={[n.port for n in self.nodes]})"

    @property
    def running(self) -> bool:
        return all(n.running for n in self.nodes)

    def create(self) -> None:
        """Starts the nodes and forms the cluster (once; later starts reuse nodes.conf)."""
        for n in self.nodes:
            n.start()
        args = [self.cli, "--cluster", "create"]
        args += [f"127.0.0.1:{n.port}" for n in self.nodes]
        args += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            self.cleanup()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        self.wait_ok()

    def start(self) -> None:
        """Starts the nodes that are down; returns once every node says cluster_state:ok."""
        for n in self.nodes:
            n.resume()
            n.start()
        self.wait_ok()

    def wait_ok(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not all(n.cluster_ok() for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self!r}: cluster_state is not ok")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kills every node (the whole cluster down)."""
        for n in self.nodes:
            n.kill()

    def flush(self) -> None:
        for n in self.nodes:
            n.flush()

    def cleanup(self) -> None:
        for n in self.nodes:
            n.cleanup()


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


CLUSTER_SKIP_REASON = (
    "redis-server and redis-cli are needed on PATH for the cluster tests: `make "
    "redis-server` installs both as root on Debian (apt-get install redis-server)"
)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """The session's 3-master Redis Cluster (see ``redis_clu`` for a clean one per test)."""
    pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")
    binary, cli = redis_binary(), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.skip(CLUSTER_SKIP_REASON)
    cluster = RedisClusterServers(binary, cli)
    atexit.register(cluster.cleanup)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.cleanup()
        atexit.unregister(cluster.cleanup)


@pytest.fixture
def redis_clu(redis_cluster: RedisClusterServers) -> Iterator[RedisClusterServers]:
    """The session's cluster, every node running and empty; put back so after the test."""
    redis_cluster.start()
    redis_cluster.flush()
    yield redis_cluster
    redis_cluster.start()


__all__ = [
    "RedisClusterServers",
    "RedisServer",
    "free_cluster_port",
    "free_port",
    "redis_clu",
    "redis_cluster",
    "redis_server",
    "redis_srv",
    "running_server",
]
