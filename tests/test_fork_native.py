"""Issue 13, fork safety of the native state: a child forked while other threads hammer the
cache, a breaker and the counters never inherits a held lock.

Audit (every lock in src/, at 74c61fd):

- The only locks are the response cache's shard mutexes (parking_lot, py_cache.rs). The
  breakers, counters and histograms are atomics; the histograms' lazily allocated chunks
  are published by compare_exchange (no OnceLock, whose "initialising" state a child
  could inherit); the manager's route is an ArcSwap (lock-free); the secret and the cache
  slot are PyOnceLocks initialised without releasing the GIL; the clock origins are std
  OnceLocks around Instant::now.
- A thread can hold a lock at the moment another thread forks only if it holds it while
  the GIL is released or while Python code runs (which may switch the GIL). Neither
  happens: no shard lock is held across `detach` (the one `detach`, hashing a prompt of
  64 KiB or more, runs before the lock is taken), the Python clock is read before
  locking (get, put, contains), `__sizeof__` is called before locking, keys are hashed
  before locking, and every value leaving a shard (expired, replaced, evicted, rejected,
  invalidated, cleared) is handed back and dropped after the guard, so no `__del__` runs
  under a lock. Reading a value under the lock is an incref. No `__eq__`/`__hash__` of a
  Python object runs under a lock: shard maps are keyed by the 128-bit key.
- PyO3's own deferred-decref pool is a mutex locked by a thread dropping a Py while
  detached; this crate never drops a Py while detached.
- On free-threaded builds (3.13+) os.fork stops the world first; a thread holding a shard
  lock stays attached and reaches no safe point until it releases it, so it is never
  stopped holding it (reasoned, not run: no free-threaded interpreter here).

On a GIL build each such place would also deadlock the parent before any fork (a waiter
blocks on the lock holding the GIL its holder needs back): moving the Python clock read
under the shard lock in get_native, as a check, hung this test's parent, not only a
child; hence the faulthandler watchdog below.

Nothing needed fixing in src/. The test forks 30 times each with 1, 4 and 8 threads
hammering (values whose __del__ runs Python code and uses the cache, a Python clock that
jumps, prompts large enough to be hashed with the GIL released) and checks that every
child can use every structure and exit. A control shows the harness catches a child that
hangs on a lock held at fork.

Not native, so not covered here: the Python single-flight registry. A flight whose
leader thread is mid-call at fork stays registered in the child, where that thread does
not exist; an identical request in the child waits for it forever.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from agenticaiframework._native import (
    BreakerCore,
    ManagerStats,
    ModelCore,
    ModelStats,
    ResponseCache,
)

pytestmark = [
    pytest.mark.skipif(
        not (sys.platform.startswith("linux") and hasattr(os, "fork")), reason="os.fork"
    ),
    # Python 3.12+ warns about forking a multi-threaded process: that is the point here.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

REPETITIONS = 30
CHILD_TIMEOUT = 10.0  # seconds; a healthy child exits in milliseconds
# A lock wrapping Python code or a GIL release would deadlock the parent first (a waiter
# blocks on it holding the GIL its holder needs): this C-level watchdog then dumps every
# thread's stack and exits, instead of hanging the suite. One repetition takes ms.
WATCHDOG = CHILD_TIMEOUT + 50.0
KEYS = [i.to_bytes(16, "big") for i in range(256)]
BIG_PROMPT = "x" * (64 * 1024 + 1)  # hashed with the GIL released (py_key.rs DETACH_AT)


class JumpyClock:
    """A Python clock: runs Python code on every read and sometimes jumps back."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.reads = 0
        self.jumps = True

    def __call__(self) -> float:
        self.reads += 1
        self.t += 0.25
        if self.jumps and self.reads % 97 == 0:
            self.t -= 50.0
        return self.t


class Noisy:
    """A value whose finaliser runs Python code, including calls into the cache."""

    def __init__(self, cache: ResponseCache, n: int) -> None:
        self.cache, self.n = cache, n

    def __del__(self) -> None:
        sum(range(self.n % 50))
        len(self.cache)
        self.cache.get(KEYS[self.n % len(KEYS)])


class Fixture:
    def __init__(self) -> None:
        self.clock = JumpyClock()
        self.cache = ResponseCache(64, ttl=5.0, clock=self.clock, shards=4)
        self.breaker = BreakerCore(3, 0.5, 2, clock=self.clock)
        self.mstats = ManagerStats()
        self.stats = ModelStats()
        self.core = ModelCore(self.breaker, self.stats, "m", self.mstats)


def hammer(fx: Fixture, stop: threading.Event, seed: int) -> None:
    i = seed
    while not stop.is_set():
        i += 1
        key = KEYS[i % len(KEYS)]
        fx.cache.put(key, Noisy(fx.cache, i))
        fx.cache.get(KEYS[(i * 7) % len(KEYS)])
        if i % 5 == 0:
            fx.cache.invalidate(KEYS[(i * 3) % len(KEYS)])
        if i % 11 == 0:
            _ = key in fx.cache
            fx.cache.stats()
        if i % 53 == 0:
            fx.cache.clear()
        if i % 17 == 0:
            fx.cache.key(("m",), BIG_PROMPT, {"i": i})
        token = fx.core.begin(retry=i % 2 == 0)
        if token:
            if i % 3 == 0:
                fx.core.failure(token)
            else:
                fx.core.success(token, 1, 2)
        fx.mstats.record_request()
        fx.mstats.record_success(tokens=3)
        fx.stats.snapshot()


def child_work(fx: Fixture) -> None:
    """Everything a forked worker would touch first; raises on any inconsistency."""
    fx.clock.jumps = False  # still a Python clock, but an entry must live until read
    fx.cache.put(KEYS[0], "child")
    assert fx.cache.get(KEYS[0]) == "child"
    fx.cache.put(KEYS[1], Noisy(fx.cache, 1))
    fx.cache.invalidate(KEYS[1])
    assert fx.cache.stats()["entries"] == len(fx.cache)
    fx.cache.key(("m",), BIG_PROMPT)
    fx.breaker.reset()
    permit = fx.breaker.acquire()
    assert permit == 1
    fx.breaker.on_success(permit)
    token = fx.core.begin()
    assert token
    fx.core.success(token, 1, 1)
    fx.stats.record_success(0.01)
    assert fx.stats.snapshot()["successes"] >= 1
    assert fx.mstats.snapshot()["total_requests"] >= 0
    fx.cache.clear()
    assert len(fx.cache) == 0


def fork_and_wait(run: Callable[[], None], timeout: float) -> str:
    """Forks; the child runs ``run`` and exits 0 (1 if it raised). Returns "ok", "failed"
    or "hung" (killed after ``timeout`` s)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            run()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    for _ in range(int(timeout / 0.01)):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "ok" if os.waitstatus_to_exitcode(status) == 0 else "failed"
        time.sleep(0.01)  # a bounded wait on a child process, not on the code under test
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"


@pytest.fixture
def fast_switching() -> Any:
    """Switch the GIL often, so the forking thread interrupts the others anywhere it can."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


@pytest.fixture
def real_stderr(request: pytest.FixtureRequest) -> Any:
    """The terminal's stderr, past pytest's capture: the watchdog exits the process, and a
    dump into the capture file would die with it."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        fd = os.dup(2)
    else:
        with capman.global_and_fixture_disabled():
            fd = os.dup(2)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("threads", [1, 4, 8])
def test_children_forked_under_load_never_hang(
    threads: int, fast_switching: Any, real_stderr: int
) -> None:
    fx = Fixture()
    stop = threading.Event()
    workers = [
        threading.Thread(target=hammer, args=(fx, stop, 1000 * n), daemon=True)
        for n in range(threads)
    ]
    for w in workers:
        w.start()
    outcomes: list[str] = []
    try:
        for rep in range(REPETITIONS):
            faulthandler.dump_traceback_later(WATCHDOG, exit=True, file=real_stderr)
            # Work on this thread too, so the GIL passes to the hammers between forks.
            for j in range(50):
                fx.cache.put(KEYS[(rep + j) % len(KEYS)], Noisy(fx.cache, j))
                fx.cache.get(KEYS[j])
            outcomes.append(fork_and_wait(lambda: child_work(fx), CHILD_TIMEOUT))
    finally:
        stop.set()
        for w in workers:
            w.join()
        faulthandler.cancel_dump_traceback_later()
    assert outcomes.count("hung") == 0, outcomes
    assert outcomes == ["ok"] * REPETITIONS, outcomes
    assert fx.clock.reads > 0


def test_the_harness_catches_a_lock_held_at_fork() -> None:
    """Control: a Python lock held by another thread at fork stays held in the child,
    which then hangs; the harness reports it rather than hanging itself."""
    lock = threading.Lock()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            release.wait()

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    held.wait()
    try:
        assert fork_and_wait(lock.acquire, timeout=0.5) == "hung"
    finally:
        release.set()
        t.join()
