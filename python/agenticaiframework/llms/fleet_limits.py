"""Rate limits shared by a fleet: a deployment's rpm/tpm held across every process that
uses it (a provider's quota is per API key, not per process), with no Redis round trip
on the request path.

Without a fleet a limited model has a native ``RateLimiter`` (ratelimit.py). With one
(``LLMManager(redis=...)``) it has a :class:`FleetLimiter`, which the walk's rate-limit
stage uses the same way (``reserve``, ``settle``, ``release``, ``cool_down``), made of:

- the same native limiter, local (:attr:`FleetLimiter.local`): a process alone never
  exceeds the limit, and the deployment picker reads its headroom;
- an *allowance*: units (requests, tokens) leased from a GCRA per limit kept in Redis
  (fleet.py's ``LEASE`` script, on Redis's clock, key ``{ns}:q:{deployment}``). An
  admission takes one request and its token estimate from the allowance under a short
  lock (no I/O), and is refused when the allowance cannot cover it (``retry_after``:
  the fleet's wait when Redis said wait, else :data:`PENDING`, the time a refill takes).

A background thread per limiter keeps the allowance topped up to a *target* in small
leases: ``max(1, min(ceil(rate * 0.25 s), burst // (4 * lessees)))`` units of each limit
(``lessees``: the processes that leased that deployment in the last 10 s, counted by the
script), the token target at least twice the largest estimate seen (capped by the
burst). It is woken when an admission leaves the allowance at half the target or less,
or a request found it short; it waits when Redis says wait. The first lease is made in
the constructor (configuration time), so a new process admits at once.

Settlement stays local: tokens given back (``settle`` below the estimate, ``release``)
return to the allowance, up to the target; beyond it they go back to Redis with the next
lease (at most what has not refilled there). Tokens charged beyond the estimate put the
allowance into debt, which the next leases pay before anything is admitted.

A provider's 429 (``cool_down``) cools the local limiter at once and is published by the
thread: the lease script then grants nothing fleet-wide until it ends, and each process
that asks learns it and cools its own local limiter (so its picker passes the
deployment over too). A process that does not lease in that time (its allowance is
above half the target) may spend what it holds: at most ``target/2`` admissions.

Redis out (fleet.py's outage handling: one WARNING, a cooldown, one INFO when back): the
lease answers None, the limiter degrades to its local native limiter alone (each process
then admits up to the whole limit) and the thread asks again every :data:`RETRY`
seconds; the first answer rejoins. While the lease that discovers the outage is
blocked (at most the fleet's socket timeout), admissions the allowance cannot cover are
refused with :data:`PENDING`.

Bounds (fleet-wide, per limit; ``B`` burst, ``r`` rate, Redis's clock): units granted
over any span of ``d`` seconds are at most ``B + r*d`` (the GCRA). Every admission
spends a granted unit, at or after its grant, so admissions from the first lease on are
at most ``B + r*elapsed``. Over a span that starts later, what was leased before it and
held unspent may be added: at most the allowances held at its start, ``H`` (the sum of
the processes' targets, plus tokens given back up to the target). ``H`` is at most
``B/4`` when the batch formula's burst term rules and ``B >= 4 * lessees``; else at
most one unit per process. Spent only during outages (degraded) are admissions beyond
these: up to the local limit per process.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from typing import Any

from .._native import RateLimiter, Reservation
from . import _fork
from .fleet import Fleet, Lease, Limit

logger = logging.getLogger("agenticaiframework.llms")

# Seconds a refused request is told to wait when the allowance is being refilled.
PENDING = 0.002
# Seconds between leases while Redis is out.
RETRY = 0.25
# A lease's worth of the rate: units for this many seconds.
BATCH_SECONDS = 0.25
# The share of the burst all the lessees' targets may hold together.
BURST_SHARE = 4


class FleetReservation:
    """What :meth:`FleetLimiter.reserve` admitted: the local reservation, and the units
    taken from the allowance (0 when admitted locally alone, during an outage)."""

    __slots__ = ("native", "requests", "tokens")

    def __init__(self, native: Reservation, requests: int, tokens: int) -> None:
        self.native = native
        self.requests = requests
        self.tokens = tokens

    @property
    def admitted(self) -> bool:
        return True

    @property
    def retry_after(self) -> float:
        return 0.0

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"FleetReservation(requests={self.requests}, tokens={self.tokens})"


class FleetRefusal:
    """A refusal by the fleet's allowance (the local limiter would have admitted)."""

    __slots__ = ("pending", "retry_after")

    def __init__(self, retry_after: float, pending: bool = False) -> None:
        self.retry_after = retry_after
        # The fleet's shared limit may have room: this process's allowance is being
        # refilled (ratelimit.py lets such a request wait a moment, max_queue_wait or not).
        self.pending = pending

    @property
    def admitted(self) -> bool:
        return False

    @property
    def tokens(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"FleetRefusal(retry_after={self.retry_after})"


def _limit(per_minute: float | None, burst: int | None) -> Limit | None:
    if per_minute is None or burst is None:
        return None
    return Limit(max(1, math.ceil(60e9 / per_minute)), int(burst))


def target(per_minute: float, burst: int, lessees: int) -> int:
    """Units a process keeps leased of one limit (see the module's text)."""
    by_rate = math.ceil(per_minute / 60.0 * BATCH_SECONDS)
    by_burst = burst // (BURST_SHARE * max(1, lessees))
    return max(1, min(by_rate, by_burst))


class FleetLimiter:
    """A deployment's limits shared by the fleet through ``fleet`` under ``key`` (its
    deployment key), over ``local``, the native limiter with the same limits."""

    def __init__(self, local: RateLimiter, fleet: Fleet, key: str) -> None:
        self.local = local
        self.fleet = fleet
        self.key = key
        self._limits = (_limit(local.rpm, local.burst), _limit(local.tpm, local.token_burst))
        self._reset()
        self._step()  # the first lease: a new process admits at once
        _fork.register(self)
        self._start()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._id = os.urandom(8).hex()  # this limiter in this process, as a lessee
        self._req = 0  # requests held
        self._tok = 0  # tokens held (negative: debt)
        self._lessees = 1
        self._tr = self._tt = 1  # the targets
        self._big = 0  # the largest token estimate seen
        self._need = 0  # tokens a refused request wanted
        self._back = 0  # tokens to give back to Redis
        self._cool = 0.0  # a cool-down to publish: until, on time.monotonic
        self._wait = 0.0  # Redis said wait until (time.monotonic)
        self._degraded = False
        self._started = False
        self._retarget(1)
        # Counts: leases answered, units granted, refusals by the allowance, admissions
        # made on the local limiter alone (Redis out).
        self._leases = self._granted_r = self._granted_t = 0
        self._refused = self._alone = 0

    def _after_fork(self) -> None:
        # The parent's allowance is the parent's to spend: the child leases its own.
        self._reset()
        self._wake.set()
        self._start()

    # ------------------------------------------------------------------ the stage's face

    @property
    def rpm(self) -> float | None:
        return self.local.rpm

    @property
    def tpm(self) -> float | None:
        return self.local.tpm

    @property
    def burst(self) -> int | None:
        return self.local.burst

    @property
    def token_burst(self) -> int | None:
        return self.local.token_burst

    @property
    def degraded(self) -> bool:
        """Whether the limit is this process's alone for now (Redis out)."""
        return self._degraded

    def reserve(self, tokens: int = 0) -> Reservation | FleetReservation | FleetRefusal:
        """One request costing ``tokens``: admitted by the local limiter and covered by
        the allowance, or refused (nothing taken). No I/O."""
        r = self.local.reserve(tokens)
        if not r.admitted:
            return r
        need_t = tokens if self._limits[1] is not None else 0
        need_r = 1 if self._limits[0] is not None else 0
        with self._lock:
            if self._degraded:
                self._alone += 1
                return FleetReservation(r, 0, 0)
            if need_t > self._big:
                self._big = need_t
                self._retarget(self._lessees)
            if self._req >= need_r and self._tok >= need_t:
                self._req -= need_r
                self._tok -= need_t
                low = bool(need_r and self._req <= self._tr // 2) or bool(
                    need_t and self._tok <= self._tt // 2
                )
                got = FleetReservation(r, need_r, need_t)
            else:
                if need_t > self._tok:
                    self._need = max(self._need, need_t)
                self._refused += 1
                got = None
                low = True
            wait = self._wait - time.monotonic()
        if low:
            self._wake.set()
        if got is not None:
            return got
        self.local.release(r)
        if wait > PENDING:
            return FleetRefusal(wait)
        return FleetRefusal(PENDING, pending=True)

    def settle(self, r: Any, actual: int) -> int:
        """Settles an admitted reservation on the tokens really used (locally: the
        difference returns to the allowance, or is owed by it)."""
        if not isinstance(r, FleetReservation):
            return self.local.settle(r, actual)
        n = self.local.settle(r.native, actual)
        if r.tokens or r.requests:
            actual = max(int(actual), 0)
            with self._lock:
                self._give(r.tokens - actual)
            r.tokens = actual
        return n

    def release(self, r: Any) -> None:
        """Gives an admitted reservation back whole (the call was not made)."""
        if not isinstance(r, FleetReservation):
            self.local.release(r)
            return
        self.local.release(r.native)
        with self._lock:
            self._req += r.requests
            self._give(r.tokens)
        r.requests = r.tokens = 0

    def _give(self, n: int) -> None:
        # Under the lock: n tokens back to the allowance (negative: owed); beyond the
        # target they go back to Redis with the next lease.
        self._tok += n
        over = self._tok - max(self._tt, self._need)
        if over > 0:
            self._tok -= over
            self._back += over
            self._wake.set()
        elif n < 0 and self._tok <= self._tt // 2:
            self._wake.set()

    def cool_down(self, seconds: float) -> None:
        """A provider's 429: refuse here at once, and fleet-wide once published."""
        self.local.cool_down(seconds)
        until = time.monotonic() + seconds
        with self._lock:
            if until > self._cool:
                self._cool = until
        self._wake.set()

    def retry_after(self, tokens: int = 0) -> float:
        w = self.local.retry_after(tokens)
        with self._lock:
            if self._degraded:
                return w
            short = self._req < (self._limits[0] is not None) or (
                self._limits[1] is not None and self._tok < tokens
            )
            fleet = max(self._wait - time.monotonic(), PENDING) if short else 0.0
        return max(w, fleet)

    def headroom(self) -> float:
        """The local limiter's headroom (what the picker reads), 0.0 while the fleet
        said wait and the allowance is empty."""
        h = self.local.headroom()
        if not self._degraded and self._req < 1 and self._wait > time.monotonic():
            return 0.0
        return h

    def snapshot(self) -> dict[str, Any]:
        """The local limiter's snapshot, and ``fleet``: the allowance and its counts."""
        s = dict(self.local.snapshot())
        with self._lock:
            s["fleet"] = {
                "key": self.key,
                "degraded": self._degraded,
                "requests_held": self._req if self._limits[0] is not None else None,
                "tokens_held": self._tok if self._limits[1] is not None else None,
                "requests_target": self._tr,
                "tokens_target": self._tt,
                "lessees": self._lessees,
                "leases": self._leases,
                "granted_requests": self._granted_r,
                "granted_tokens": self._granted_t,
                "refused": self._refused,
                "admitted_alone": self._alone,
            }
        return s

    def __repr__(self) -> str:
        return f"FleetLimiter({self.key!r}, {self.local!r})"

    # ------------------------------------------------------------------ the thread

    def _retarget(self, lessees: int) -> None:
        rl, tl = self._limits
        self._lessees = max(1, lessees)
        if rl is not None:
            self._tr = target(60e9 / rl.interval_ns, rl.burst, self._lessees)
        if tl is not None:
            base = target(60e9 / tl.interval_ns, tl.burst, self._lessees)
            self._tt = max(base, min(tl.burst, 2 * self._big))

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(
            target=_refill_loop,
            args=(weakref.ref(self), self._wake),
            name="agenticai-fleet-limits",
            daemon=True,
        ).start()

    def _step(self) -> float | None:
        """One lease if one is due: the seconds to sleep before the next look (None:
        until woken)."""
        rl, tl = self._limits
        now = time.monotonic()
        with self._lock:
            cool = self._cool - now
            self._cool = 0.0
            want_r = self._tr - self._req if rl is not None else 0
            want_t = max(self._tt, self._need) - self._tok if tl is not None else 0
            least_t = max(1, self._need - self._tok)
            back = self._back
            self._back = 0
            due = (want_r > 0 and (self._req <= self._tr // 2 or self._degraded)) or (
                want_t > 0 and (self._tok <= self._tt // 2 or self._need > self._tok)
            )
            waiting = self._wait > now and not self._degraded
        if cool > 0:
            left = self.fleet.cool_quota(self.key, cool)
            if left is None:
                self._down()
                return RETRY
        if waiting and back <= 0:
            return self._wait - now
        if not due and back <= 0 and not self._degraded:
            return None
        if tl is not None and least_t > tl.burst:
            least_t = tl.burst
        got = self.fleet.lease(
            self.key,
            self._limits,
            (max(want_r, 0) if due else 0, max(want_t, 0) if due else 0),
            (1, least_t),
            (0, back),
            self._id,
        )
        if got is None:
            with self._lock:
                self._back += back  # not given back: kept for the next answer
            self._down()
            return RETRY
        return self._took(got, now)

    def _took(self, got: Lease, asked: float) -> float | None:
        with self._lock:
            if self._degraded:
                self._degraded = False
                logger.debug("fleet rate limits for %r: shared again", self.key)
            self._leases += 1
            self._req += got.requests
            self._tok += got.tokens
            self._granted_r += got.requests
            self._granted_t += got.tokens
            if self._tok >= self._need:
                self._need = 0
            if got.lessees != self._lessees:
                self._retarget(got.lessees)
            wait = max(got.requests_wait if got.requests == 0 else 0.0, 0.0)
            if got.tokens == 0:
                wait = max(wait, got.tokens_wait)
            self._wait = asked + wait if wait > 0 else 0.0
        if got.cooling > 0:
            self.local.cool_down(got.cooling)
            return got.cooling
        return wait if wait > 0 else None

    def _down(self) -> None:
        with self._lock:
            if not self._degraded:
                self._degraded = True
                # fleet.py has logged the outage (once): this is its consequence here.
                logger.debug("fleet rate limits for %r: this process limits alone", self.key)


def _refill_loop(ref: weakref.ref[FleetLimiter], wake: threading.Event) -> None:
    pause: float | None = None
    while True:
        wake.wait(1.0 if pause is None else min(max(pause, 0.0005), 1.0))
        wake.clear()
        owner = ref()
        if owner is None or owner._wake is not wake:  # gone, or forked anew
            return
        try:
            pause = owner._step()
        except Exception:  # a lease never kills the thread
            logger.debug("fleet lease for %r failed", owner.key, exc_info=True)
            pause = RETRY
        del owner


__all__ = ["FleetLimiter", "FleetRefusal", "FleetReservation", "target"]
