"""The fleet tier: a response cache, breakers and single-flight shared through Redis.

Every process of a fleet (gunicorn workers, pods) keeps its own native L1 cache, breakers
and flights; this module is the state they share, in one Redis server or one Redis
Cluster. It knows nothing of the manager: it takes plain arguments (16-byte cache keys,
model names, numbers) and gives plain answers, sync (``redis.Redis``) and async
(``redis.asyncio.Redis``, one client per event loop: an asyncio client must not be shared
across loops).

**Redis Cluster**: a ``redis+cluster://`` (``rediss+cluster://`` for TLS) URL names one
node of the cluster (the client discovers the others); the clients are then
``redis.cluster.RedisCluster`` and ``redis.asyncio.cluster.RedisCluster``, the sync one
made on first use (its constructor talks to the cluster). Every script's KEYS share one
hash tag, so each runs on the one node that owns that slot (EVALSHA; EVAL when that node
lacks the script). The events channel is classic pub/sub, which a cluster forwards to
every node: the listener subscribes through a plain client of one node
(:meth:`Fleet._new_subscriber`).

**Redis is optional at every call.** Each method catches Redis errors and timeouts (the
sockets' timeouts are short: 0.1 s per operation, 0.2 s to connect, by default) and
returns the answer a process without a fleet would get: a miss, an admitted call, not a
leader. The first failure of an outage logs one WARNING (the URL's password masked) and
Redis is then left alone for ``cooldown`` seconds (a small breaker around Redis itself,
on the injectable ``clock``); the first call after that tries again, and when Redis
answers the fleet is rejoined (one INFO). ``stats()`` counts what happened.

Keys (no prompt text ever: a cache key is the hex of the 16-byte keyed hash the native
cache computes). Keys that one script touches together share a Redis Cluster hash tag::

    {ns}:r:{<hex>}    a cached answer ("v1\\0" + JSON; anything else reads as a miss)
    {ns}:l:{<hex>}    a single-flight lease (SET NX PX; its value is the leader's token)
    {ns}:b:{<model>}  a breaker: hash {f: consecutive failures, u: open until (ms, Redis TIME)}
    {ns}:t:{<model>}  its half-open trial leases: ZSET lease id -> expiry (ms, Redis TIME)
    {ns}:q:{<key>}    a deployment's shared rate limits: hash {r: requests' GCRA TAT,
                      t: tokens' TAT (us, Redis TIME), c: cooling until (us)}
    {ns}:qp:{<key>}   who leases from it: ZSET lessee id -> last lease (ms, Redis TIME)
    {ns}:rb           the retry budget's window counts: hash member -> "requests retries
                      expiry" (ms, Redis TIME), one member per process (fleet_budget.py)
    {ns}:events       pub/sub channel: {"v": 1, "event": "open"|"closed", "model", ...}

Breaker times come from Redis's own ``TIME``, so the hosts' clocks need not agree. A
breaker key's hash tag is the model name with ``%``, ``{`` and ``}`` percent-encoded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from . import _fork, _secrets

logger = logging.getLogger("agenticaiframework.llms")

T = TypeVar("T")

CacheValue = tuple[str, str, int, int, bool]
"""A cached answer: (text, model, prompt_tokens, completion_tokens, estimated), the
fields of the native ``Record``."""

VALUE_PREFIX = b"v1\x00"

# How long a lessee of a shared limit counts as live after its last lease (ms).
LESSEE_WINDOW_MS = 10_000

# What an outage looks like (as opposed to an answer Redis gave: ResponseError and
# friends). redis-py's AuthenticationError and BusyLoadingError are ConnectionErrors. A
# cluster client raises RedisClusterException (not a RedisError) when no node answers or
# the slots are not covered, and CLUSTERDOWN (a ResponseError) while the cluster is down.
_OUTAGE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    asyncio.TimeoutError,
    RedisClusterException,
    ClusterDownError,
)
_ERRORS: tuple[type[BaseException], ...] = (RedisError, *_OUTAGE)


class Admission(NamedTuple):
    """The fleet breaker's answer to :meth:`Fleet.admit`.

    ``trial``: a half-open trial call; pass ``lease`` back to :meth:`Fleet.record_success`,
    :meth:`Fleet.record_failure` or :meth:`Fleet.release_trial`. ``retry_after``: seconds
    until an open breaker admits a trial (0 when unknown or admitted)."""

    allowed: bool
    trial: bool
    retry_after: float
    lease: str | None = None


ADMITTED = Admission(True, False, 0.0, None)


class Lease(NamedTuple):
    """The answer of :meth:`Fleet.lease`: units granted (requests, tokens), the waits
    before the least asked could be granted (seconds, 0.0 when granted or not asked),
    the fleet-wide cool-down left (seconds), and how many lessees leased lately."""

    requests: int
    tokens: int
    requests_wait: float
    tokens_wait: float
    cooling: float
    lessees: int


class Limit(NamedTuple):
    """One shared GCRA limit as :meth:`Fleet.lease` takes it: the emission interval
    (ns: the native limiter's ``ceil(60e9 / per_minute)``) and the burst."""

    interval_ns: int
    burst: int


EVENTS = ("open", "closed", "failing", "clean")


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A message on the events channel: a fleet breaker opened (``retry_after``: its
    recovery timeout, in seconds) or closed; a model's failures began to be counted
    (``failing``) or were reset by a success (``clean``)."""

    event: str
    model: str
    retry_after: float = 0.0
    opening: int = 0  # an opening's id (its end in ms of Redis time); 0 if not one


# ---------------------------------------------------------------------------- scripts

# Milliseconds from Redis's clock. Scripts are replicated by their effects (Redis >= 5),
# so reading TIME before writing is allowed.
_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# A field of a hash key, or false; a key of another type (garbage) reads as absent and,
# when `repair`, is deleted.
_FIELD = """
local function field(key, name, repair)
  local v = redis.pcall('HGET', key, name)
  if type(v) == 'table' and v.err then
    if repair then redis.call('DEL', key) end
    return false
  end
  return v
end
"""

# KEYS: breaker hash, trials zset. ARGV: half_open_max_calls, lease_ttl_ms, lease id.
# -> {allowed, trial, retry_after_ms}. Closed (no open_until): allowed, one HGET, no write.
# Open before open_until: refused with the time left. After it (half-open): expired trial
# leases are dropped, and a new lease is taken while fewer than the maximum are held.
ADMIT = (
    _NOW
    + _FIELD
    + """
local u = tonumber(field(KEYS[1], 'u', false))
if not u then return {1, 0, 0} end
local now = now_ms()
if now < u then return {0, 0, u - now} end
if redis.call('TYPE', KEYS[2]).ok ~= 'zset' then redis.call('DEL', KEYS[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return {0, 0, 0} end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return {1, 1, 0}
"""
)

# KEYS: breaker hash, trials zset. ARGV: threshold, recovery_ms, lease id ('' if not a
# trial), state_ttl_ms, channel, model. -> when this report opened the breaker, the
# opening's end (ms of Redis time; it names the opening in its message), else 0.
# Closed: one more consecutive failure; at the threshold it opens until now + recovery.
# The first failure of a run is published ('failing': processes then report successes).
# Half-open (past open_until): a trial's failure reopens it. Open: a late report of a call
# admitted before it opened changes nothing. A trial's lease is dropped in every case.
FAILURE = (
    _NOW
    + _FIELD
    + """
local trial = ARGV[3] ~= ''
if trial then redis.pcall('ZREM', KEYS[2], ARGV[3]) end
local rt = tonumber(ARGV[2])
local ttl = tonumber(ARGV[4])
local u = tonumber(field(KEYS[1], 'u', true))
local now = now_ms()
if u and not (trial and now >= u) then return 0 end
local f = (tonumber(field(KEYS[1], 'f', false)) or 0) + 1
redis.call('HSET', KEYS[1], 'f', f)
if not u and f < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ttl)
  if f == 1 then
    redis.call('PUBLISH', ARGV[5], cjson.encode({v = 1, event = 'failing', model = ARGV[6]}))
  end
  return 0
end
redis.call('HSET', KEYS[1], 'u', now + rt)
redis.call('PEXPIRE', KEYS[1], rt + ttl)
redis.call('PUBLISH', ARGV[5], cjson.encode(
  {v = 1, event = 'open', model = ARGV[6], retry_after = rt / 1000, opening = now + rt}))
return now + rt
"""
)

# KEYS: breaker hash, trials zset. ARGV: lease id ('' if not a trial), channel, model.
# -> 1 when this report closed the breaker. Closed: the consecutive failures are reset
# (the hash deleted; 'clean' published if there were any). Half-open: a trial's success
# closes it. Open: nothing changes.
SUCCESS = (
    _NOW
    + _FIELD
    + """
local trial = ARGV[1] ~= ''
if trial then redis.pcall('ZREM', KEYS[2], ARGV[1]) end
local u = tonumber(field(KEYS[1], 'u', true))
if not u then
  if redis.call('DEL', KEYS[1]) == 1 then
    redis.call('PUBLISH', ARGV[2], cjson.encode({v = 1, event = 'clean', model = ARGV[3]}))
  end
  return 0
end
if not trial or now_ms() < u then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], cjson.encode({v = 1, event = 'closed', model = ARGV[3]}))
return 1
"""
)

# KEYS: breaker hash, trials zset. -> {failures, open_until - now (ms, or -1 if closed),
# live trial leases}.
STATE = (
    _NOW
    + _FIELD
    + """
local f = tonumber(field(KEYS[1], 'f', false)) or 0
local u = tonumber(field(KEYS[1], 'u', false))
local now = now_ms()
local n = redis.pcall('ZCOUNT', KEYS[2], '(' .. now, '+inf')
if type(n) ~= 'number' then n = 0 end
if not u then return {f, -1, n} end
return {f, math.max(u - now, 0), n}
"""
)

# KEYS: value, lease. -> {1, value} when the answer is there, else {0, lease exists}.
POLL = """
local v = redis.pcall('GET', KEYS[1])
if v and type(v) ~= 'table' then return {1, v} end
return {0, redis.call('EXISTS', KEYS[2])}
"""

# KEYS: value, lease. ARGV: token, value ('' for none), ttl_ms ('' for none). Stores the
# answer (if any), then drops the lease if it is still this leader's. -> 1 if dropped.
FINISH = """
if ARGV[2] ~= '' then
  if ARGV[3] ~= '' then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0
"""


# Microseconds from Redis's clock (exact in a double until the year 2255).
_NOW_US = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# The shared rate limits of one deployment (fleet_limits.py): a GCRA per limit, its TAT
# in us of Redis TIME (a double, written with 3 decimals). KEYS: quota hash, lessees
# zset. ARGV: for requests then tokens, 5 each: interval (us, may be fractional), burst,
# want, least, give back; then the lessee's id, the lessee window (ms), the key's TTL
# (ms, beyond its state's end). Gives back first (the TAT moves back by at most what is
# still ahead of now: capacity that has refilled is not handed out twice), then grants
# as many units as the GCRA admits now, up to `want`, when that is at least `least`
# (else none, and the wait for `least`). Cooling (a provider's 429 anywhere in the
# fleet): nothing is granted. -> {requests granted, tokens granted, requests' wait (us),
# tokens' wait (us), cooling left (us), live lessees}.
LEASE = (
    _NOW_US
    + _FIELD
    + """
local now = now_us()
local c = tonumber(field(KEYS[1], 'c', true)) or 0
local cool = math.max(c - now, 0)
local horizon = c
local function one(name, i)
  local T, burst = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local want, least, back = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  if T <= 0 then return 0, 0 end
  local tat = tonumber(field(KEYS[1], name, true)) or 0
  local moved = false
  if back > 0 and tat > now then
    tat = tat - math.min(back * T, tat - now)
    moved = true
  end
  local base = math.max(tat, now)
  local g, wait = 0, 0
  if want > 0 then
    if cool > 0 then
      wait = cool
    else
      local fit = math.floor((burst * T - (base - now)) / T + 1e-9)
      if fit >= least and fit > 0 then
        g = math.min(want, fit)
        tat = base + g * T
        moved = true
      else
        wait = math.max(base + least * T - burst * T - now, 1)
      end
    end
  end
  if moved then redis.call('HSET', KEYS[1], name, string.format('%.3f', tat)) end
  if tat > horizon then horizon = tat end
  return g, wait
end
local gr, wr = one('r', 1)
local gt, wt = one('t', 6)
local ttl = tonumber(ARGV[13])
if horizon > now then
  redis.call('PEXPIRE', KEYS[1], math.ceil((horizon - now) / 1000) + ttl)
end
if redis.call('TYPE', KEYS[2]).ok ~= 'zset' then redis.call('DEL', KEYS[2]) end
local ms = math.floor(now / 1000)
redis.call('ZADD', KEYS[2], ms, ARGV[11])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms - tonumber(ARGV[12]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[12]) + ttl)
return {gr, gt, math.ceil(wr), math.ceil(wt), math.ceil(cool), redis.call('ZCARD', KEYS[2])}
"""
)

# KEYS: quota hash. ARGV: seconds to cool (ms), the key's TTL (ms). The deployment
# refuses fleet-wide until now + ms (a later end wins). -> the cooling left (us).
COOL = (
    _NOW_US
    + _FIELD
    + """
local now = now_us()
local c = tonumber(field(KEYS[1], 'c', true)) or 0
local u = now + tonumber(ARGV[1]) * 1000
if u > c then
  redis.call('HSET', KEYS[1], 'c', string.format('%.0f', u))
  c = u
end
local left = redis.call('PTTL', KEYS[1])
local need = math.ceil((c - now) / 1000) + tonumber(ARGV[2])
if left < need then redis.call('PEXPIRE', KEYS[1], need) end
return math.ceil(c - now)
"""
)


class _Script:
    __slots__ = ("sha", "src")

    def __init__(self, src: str) -> None:
        self.src = src
        self.sha = hashlib.sha1(src.encode()).hexdigest()


# The fleet's retry budget (fleet_budget.py). KEYS: the budget's hash. ARGV: this
# member's id, its requests and retries in the window, how long they stand (ms). Writes
# them (with their expiry on Redis's clock), drops the members whose counts expired
# (a process that stopped), and answers the others' sums: {requests, retries}.
BUDGET = (
    _NOW_US
    + """
local now = math.floor(now_us() / 1000)
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. (now + ttl))
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local all = redis.call('HGETALL', KEYS[1])
local req, ret = 0, 0
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local a, b, e = string.match(all[i + 1], '^(%d+) (%d+) (%d+)$')
    if e and tonumber(e) >= now then
      req = req + tonumber(a)
      ret = ret + tonumber(b)
    else
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
return {req, ret}
"""
)

_ADMIT = _Script(ADMIT)
_FAILURE = _Script(FAILURE)
_SUCCESS = _Script(SUCCESS)
_STATE = _Script(STATE)
_POLL = _Script(POLL)
_FINISH = _Script(FINISH)
_LEASE = _Script(LEASE)
_COOL = _Script(COOL)
_BUDGET = _Script(BUDGET)


# ---------------------------------------------------------------------------- values


def encode_value(value: CacheValue) -> bytes:
    """The stored form of a cached answer: ``b"v1\\0"`` + compact JSON."""
    text, model, prompt_tokens, completion_tokens, estimated = value
    doc = {
        "t": text,
        "m": model,
        "p": int(prompt_tokens),
        "c": int(completion_tokens),
        "e": bool(estimated),
    }
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return VALUE_PREFIX + body.encode("utf-8", "surrogatepass")


def decode_value(raw: object) -> CacheValue | None:
    """A stored answer, or None for anything that is not one (never raises)."""
    try:
        if not isinstance(raw, bytes) or not raw.startswith(VALUE_PREFIX):
            return None
        doc = json.loads(raw[len(VALUE_PREFIX) :].decode("utf-8", "surrogatepass"))
        if not isinstance(doc, dict):
            return None
        t, m, p, c, e = doc.get("t"), doc.get("m"), doc.get("p"), doc.get("c"), doc.get("e")
        if not (isinstance(t, str) and isinstance(m, str) and isinstance(e, bool)):
            return None
        if type(p) is not int or type(c) is not int or p < 0 or c < 0:
            return None
        return (t, m, p, c, e)
    except Exception:  # whatever the bytes are, they are a miss
        return None


def parse_event(data: object) -> BreakerEvent | None:
    """A message of the events channel (bytes or str), or None if it is not one."""
    try:
        if isinstance(data, bytes):
            data = data.decode()
        if not isinstance(data, str):
            return None
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            return None
        event, model = doc.get("event"), doc.get("model")
        if event not in EVENTS or not isinstance(model, str):
            return None
        ra, op = doc.get("retry_after", 0), doc.get("opening", 0)
        retry_after = float(ra) if isinstance(ra, (int, float)) and ra >= 0 else 0.0
        opening = op if type(op) is int and op > 0 else 0
        return BreakerEvent(event, model, retry_after, opening)
    except Exception:
        return None


# ---------------------------------------------------------------------------- URLs


def mask_url(url: str) -> str:
    """The URL with its password (userinfo or ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            host = netloc.rpartition("@")[2]
            netloc = f"{user}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k == "password" for k, _ in pairs):
                pairs = [(k, "***" if k == "password" else v) for k, v in pairs]
                query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except Exception:
        return "<redis url>"


def _passwords(url: str) -> tuple[str, ...]:
    """Every form in which the URL's password could show up in text."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k == "password" and v:
                found += [v, quote(v, safe="")]
    except Exception:
        pass
    return tuple(sorted({p for p in found if p}, key=len, reverse=True))


_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """For a Redis Cluster URL (``redis+cluster://``, ``rediss+cluster://``), the URL
    redis-py's cluster clients take (``redis://``, ``rediss://``); None for another."""
    scheme, sep, rest = url.partition("://") if isinstance(url, str) else ("", "", "")
    plain = _CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    return None if plain is None else f"{plain}://{rest}"


def _check_cluster_url(url: str) -> tuple[str, int]:
    """The node a cluster URL names; ValueError for what a cluster cannot take."""
    opts: dict[str, Any] = cast(Any, parse_url)(url)  # untyped in redis-py
    if int(opts.get("db") or 0) != 0:
        raise ValueError("a Redis Cluster has database 0 only")
    host = opts.get("host")
    if not isinstance(host, str) or not host:
        raise ValueError("a cluster URL names a node: host[:port]")
    return host, int(opts.get("port") or 6379)


def _node_url(url: str, host: str, port: int) -> str:
    """``url`` (a plain redis:// or rediss:// URL) pointed at another node: same userinfo,
    query and TLS (a URL's own host and port win over redis-py's keyword arguments)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    h = f"[{host}]" if ":" in host else host
    netloc = f"{userinfo}@{h}:{port}" if userinfo else f"{h}:{port}"
    return urlunsplit((parts.scheme, netloc, "/0", parts.query, ""))


# redis-py < 6 counts a cluster client's retries in cluster_error_retry_attempts (6.0
# deprecates it for the retry object, which it then ignores).
_REDIS_MAJOR = int(redis.__version__.split(".")[0]) if redis.__version__[:1].isdigit() else 0
_CLUSTER_RETRY_KW: dict[str, Any] = {"cluster_error_retry_attempts": 0} if _REDIS_MAJOR < 6 else {}


def _tag(name: str) -> str:
    """A name made safe inside a hash tag (and readable)."""
    return name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


# ---------------------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class _Op(Generic[T]):
    """One round trip: a script (EVALSHA, EVAL when the server lost it) or a command; how
    its reply becomes the answer; the answer without Redis."""

    name: str
    script: _Script | None
    args: tuple[Any, ...]
    nkeys: int
    decode: Callable[[Any], T]
    default: T
    # A reply error (WRONGTYPE: garbage under the key) is the default answer, not an error.
    lenient: bool = False


def _as_bool(raw: Any) -> bool:
    return bool(raw)


def _as_int(raw: Any) -> int:
    return int(raw)


def _as_none(raw: Any) -> None:
    return None


def _as_admission(lease: str) -> Callable[[Any], Admission]:
    def decode(raw: Any) -> Admission:
        allowed, trial, ms = int(raw[0]), int(raw[1]), int(raw[2])
        if not allowed:
            return Admission(False, False, max(ms, 0) / 1000.0, None)
        return Admission(True, True, 0.0, lease) if trial else ADMITTED

    return decode


def _as_lease(raw: Any) -> Lease:
    gr, gt, wr, wt, cool, n = (int(x) for x in raw[:6])
    return Lease(max(gr, 0), max(gt, 0), max(wr, 0) / 1e6, max(wt, 0) / 1e6, max(cool, 0) / 1e6, n)


def _as_state(raw: Any) -> dict[str, Any]:
    failures, left, trials = int(raw[0]), int(raw[1]), int(raw[2])
    if left < 0:
        state = "closed"
    elif left > 0:
        state = "open"
    else:
        state = "half-open"
    return {
        "state": state,
        "failures": failures,
        "retry_after": max(left, 0) / 1000.0,
        "trials": trials,
    }


def _ms(seconds: float) -> int:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"expected a positive number of seconds, got {seconds!r}")
    return max(1, math.ceil(seconds * 1000))


class Fleet:
    """The state a fleet of processes shares through one Redis server (or one Redis
    Cluster), under a namespace.

    Make one with :meth:`from_url`. Thread-safe; the async methods may run on any number
    of event loops (each gets its own client)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        connect_timeout: float = 0.2,
        timeout: float = 0.1,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 0.05,
        state_ttl: float = 86400.0,
        max_value_bytes: int = 1 << 20,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("namespace must be a non-empty str")
        if any(c in namespace for c in "{} \t\r\n"):
            raise ValueError("namespace must not contain braces or whitespace")
        for v in (connect_timeout, timeout, poll_interval, state_ttl):
            _ms(v)  # each a positive number of seconds
        if not (isinstance(cooldown, (int, float)) and cooldown >= 0):
            raise ValueError("cooldown must be >= 0 seconds")
        self._url = url
        # A cluster's plain URL (redis:// or rediss://), or None for one server.
        self._cluster_url = cluster_url(url)
        self._masked = mask_url(url)
        self._secrets = _passwords(url)
        for p in self._secrets:
            _secrets.remember(p)
        self.namespace = namespace
        self.events_channel = f"{namespace}:events"
        self._connect_timeout = float(connect_timeout)
        self._timeout = float(timeout)
        self._cooldown = float(cooldown)
        self._clock = clock
        self._poll = float(poll_interval)
        self._state_ttl_ms = _ms(state_ttl)
        self._max_value_bytes = int(max_value_bytes)
        # No retries inside redis-py (its default retries a failed command with backoff):
        # one try per call, and an outage is this module's to handle.
        self._kw: dict[str, Any] = {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._connect_timeout,
            "health_check_interval": 0,
        }
        self._sync: redis.Redis | redis.cluster.RedisCluster | None = None
        self._client_lock = threading.Lock()
        try:
            if self._cluster_url is None:
                self._sync = self._new_sync()
            else:
                # A cluster client's constructor asks a node for the slots: made on first
                # use (under a call's error handling), like a connection. The URL is
                # checked now.
                _check_cluster_url(self._cluster_url)
        except Exception as exc:  # its message may quote the URL
            raise ValueError(
                f"not a Redis URL: {self._masked} ({self._redact(str(exc))})"
            ) from None
        self._reset()
        _fork.register(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str = "agenticai",
        *,
        connect_timeout: float = 0.2,
        timeout: float = 0.1,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 0.05,
        state_ttl: float = 86400.0,
        max_value_bytes: int = 1 << 20,
    ) -> Fleet:
        """A fleet on the Redis server at ``url`` (``redis://``, ``rediss://``,
        ``unix://``), or on the Redis Cluster one of whose nodes it names
        (``redis+cluster://host:port/``, ``rediss+cluster://``), its keys under
        ``namespace``. No connection is made until a call.

        ``connect_timeout``/``timeout``: the sockets' (seconds); ``cooldown``: how long
        Redis is left alone after an outage is seen; ``clock``: for the cooldown;
        ``poll_interval``: the longest pause between looks of :meth:`await_answer`;
        ``state_ttl``: how long a breaker's failure count outlives its last failure;
        ``max_value_bytes``: larger answers are not shared."""
        return cls(
            url,
            namespace,
            connect_timeout=connect_timeout,
            timeout=timeout,
            cooldown=cooldown,
            clock=clock,
            poll_interval=poll_interval,
            state_ttl=state_ttl,
            max_value_bytes=max_value_bytes,
        )

    def _reset(self) -> None:
        self._lock = threading.Lock()
        # A leader's lease value: this Fleet in this process (a forked child gets its own).
        self._token = os.urandom(12).hex()
        self._aclients: dict[
            asyncio.AbstractEventLoop, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
        ] = {}
        self._down_until = -math.inf
        self._out = False
        self._warned_kinds: set[str] = set()
        self._hits = self._misses = self._puts = 0
        self._errors = self._skipped = self._outages = 0

    def _after_fork(self) -> None:
        # The parent's sockets and loops are not ours: new clients, made on first use
        # (the old ones are dropped, never closed: closing would touch shared sockets).
        self._sync = self._new_sync() if self._cluster_url is None else None
        self._client_lock = threading.Lock()
        self._reset()

    def __repr__(self) -> str:
        return f"Fleet({self._masked!r}, namespace={self.namespace!r})"

    @property
    def url(self) -> str:
        """The server's URL, its password masked."""
        return self._masked

    @property
    def cluster(self) -> bool:
        """Whether this fleet's Redis is a Redis Cluster (a ``+cluster`` URL)."""
        return self._cluster_url is not None

    # ------------------------------------------------------------------------ keys

    def _cache_key(self, key: bytes) -> str:
        if not isinstance(key, bytes) or len(key) != 16:
            raise ValueError("a cache key is the native cache's 16-byte key")
        return f"{self.namespace}:r:{{{key.hex()}}}"

    def _lease_key(self, key: bytes) -> str:
        if not isinstance(key, bytes) or len(key) != 16:
            raise ValueError("a flight key is the native cache's 16-byte key")
        return f"{self.namespace}:l:{{{key.hex()}}}"

    def _breaker_keys(self, model: str) -> tuple[str, str]:
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty str")
        tag = _tag(model)
        return f"{self.namespace}:b:{{{tag}}}", f"{self.namespace}:t:{{{tag}}}"

    def _quota_keys(self, key: str) -> tuple[str, str]:
        if not isinstance(key, str) or not key:
            raise ValueError("a deployment key must be a non-empty str")
        tag = _tag(key)
        return f"{self.namespace}:q:{{{tag}}}", f"{self.namespace}:qp:{{{tag}}}"

    # ------------------------------------------------------------------------ plans

    def _op_get(self, key: bytes) -> _Op[CacheValue | None]:
        return _Op("get", None, ("GET", self._cache_key(key)), 0, decode_value, None, True)

    def _op_put(self, key: bytes, value: CacheValue, ttl: float | None) -> _Op[bool] | None:
        k = self._cache_key(key)
        if ttl is not None and not (isinstance(ttl, (int, float)) and ttl > 0):
            return None  # nothing lives for no time
        try:
            data = encode_value(value)
        except (TypeError, ValueError):
            return None
        if len(data) > self._max_value_bytes:
            return None
        args: tuple[Any, ...] = ("SET", k, data)
        if ttl is not None:
            args += ("PX", _ms(ttl))
        return _Op("put", None, args, 0, _as_bool, False)

    def _op_admit(self, model: str, half_open_max_calls: int, lease_ttl: float) -> _Op[Admission]:
        keys = self._breaker_keys(model)
        if not (isinstance(half_open_max_calls, int) and half_open_max_calls >= 1):
            raise ValueError("half_open_max_calls must be an int >= 1")
        lease = os.urandom(8).hex()
        args = (*keys, half_open_max_calls, _ms(lease_ttl), lease)
        return _Op("admit", _ADMIT, args, 2, _as_admission(lease), ADMITTED)

    def _op_failure(
        self, model: str, threshold: int, recovery_timeout: float, lease: str | None
    ) -> _Op[int]:
        keys = self._breaker_keys(model)
        if not (isinstance(threshold, int) and threshold >= 1):
            raise ValueError("threshold must be an int >= 1")
        args = (
            *keys,
            threshold,
            _ms(recovery_timeout),
            lease or "",
            self._state_ttl_ms,
            self.events_channel,
            model,
        )
        return _Op("record_failure", _FAILURE, args, 2, _as_int, 0)

    def _op_success(self, model: str, lease: str | None) -> _Op[bool]:
        keys = self._breaker_keys(model)
        args = (*keys, lease or "", self.events_channel, model)
        return _Op("record_success", _SUCCESS, args, 2, _as_bool, False)

    def _op_release(self, model: str, lease: str) -> _Op[None]:
        trials = self._breaker_keys(model)[1]
        return _Op("release_trial", None, ("ZREM", trials, lease), 0, _as_none, None, True)

    def _op_state(self, model: str) -> _Op[dict[str, Any] | None]:
        return _Op("breaker_state", _STATE, self._breaker_keys(model), 2, _as_state, None)

    def _op_lead(self, key: bytes, lease_ttl: float) -> _Op[bool]:
        args = ("SET", self._lease_key(key), self._token, "NX", "PX", _ms(lease_ttl))
        return _Op("lead", None, args, 0, _as_bool, False)

    def _op_poll(self, key: bytes) -> _Op[tuple[bool, CacheValue | None]]:
        # (done, answer): done when the answer is there or nobody leads any more.
        def decode(raw: Any) -> tuple[bool, CacheValue | None]:
            if int(raw[0]):
                return True, decode_value(raw[1])
            return not int(raw[1]), None

        keys = (self._cache_key(key), self._lease_key(key))
        return _Op("await_answer", _POLL, keys, 2, decode, (True, None))

    def _op_finish(self, key: bytes, value: CacheValue | None, ttl: float | None) -> _Op[bool]:
        data: bytes | str = ""
        px: int | str = ""
        if value is not None and (ttl is None or (isinstance(ttl, (int, float)) and ttl > 0)):
            try:
                data = encode_value(value)
            except (TypeError, ValueError):
                data = ""
            if len(data) > self._max_value_bytes:
                data = ""
            if ttl is not None:
                px = _ms(ttl)
        keys = (self._cache_key(key), self._lease_key(key))
        return _Op("finish", _FINISH, (*keys, self._token, data, px), 2, _as_bool, False)

    def _op_lease(
        self,
        key: str,
        limits: tuple[Limit | None, Limit | None],
        want: tuple[int, int],
        least: tuple[int, int],
        back: tuple[int, int],
        lessee: str,
    ) -> _Op[Lease | None]:
        args: list[Any] = list(self._quota_keys(key))
        for lim, w, lo, b in zip(limits, want, least, back, strict=True):
            if lim is None:
                args += [0, 0, 0, 0, 0]
            else:
                args += [repr(lim.interval_ns / 1000), lim.burst, max(w, 0), max(lo, 1), max(b, 0)]
        args += [lessee, LESSEE_WINDOW_MS, self._state_ttl_ms]
        return _Op("lease", _LEASE, tuple(args), 2, _as_lease, None)

    def _op_cool(self, key: str, seconds: float) -> _Op[float | None]:
        def decode(raw: Any) -> float:
            return max(int(raw), 0) / 1e6

        args = (self._quota_keys(key)[0], _ms(seconds), self._state_ttl_ms)
        return _Op("cool_down", _COOL, args, 1, decode, None)

    # ------------------------------------------------------------------------ running

    def _redact(self, text: str) -> str:
        for p in self._secrets:
            text = text.replace(p, "***")
        return _secrets.redact_text(text)

    @property
    def up(self) -> bool:
        """Whether Redis answered the last call (no outage, no cooldown)."""
        return not self._out and self._clock() >= self._down_until

    def _skip(self) -> bool:
        """Whether Redis is being left alone (an outage's cooldown)."""
        if self._clock() < self._down_until:
            with self._lock:
                self._skipped += 1
            return True
        return False

    def _ok(self) -> None:
        if self._out:
            with self._lock:
                back, self._out = self._out, False
                self._down_until = -math.inf
            if back:
                logger.info("fleet: Redis at %s answers again; sharing resumed", self._masked)

    def _failed(self, op: _Op[T], exc: BaseException) -> T:
        if op.lenient and isinstance(exc, ResponseError) and not isinstance(exc, _OUTAGE):
            return op.default  # Redis answered: what is under the key is not ours
        outage = isinstance(exc, _OUTAGE)
        kind = type(exc).__name__
        with self._lock:
            self._errors += 1
            warn = False
            if outage:
                self._down_until = self._clock() + self._cooldown
                if not self._out:
                    self._out = warn = True
                    self._outages += 1
            elif kind not in self._warned_kinds:
                self._warned_kinds.add(kind)
                warn = True
        if warn:
            if outage:
                logger.warning(
                    "fleet: Redis at %s unreachable (%s on %s: %s); going on without the "
                    "fleet, next try in %.1f s",
                    self._masked,
                    kind,
                    op.name,
                    self._redact(str(exc)),
                    self._cooldown,
                )
            else:
                logger.warning(
                    "fleet: Redis at %s refused %s (%s: %s); answering without the fleet",
                    self._masked,
                    op.name,
                    kind,
                    self._redact(str(exc)),
                )
        return op.default

    def _decode(self, op: _Op[T], raw: Any) -> T:
        try:
            return op.decode(raw)
        except Exception:  # a reply of an unexpected shape: the answer without Redis
            return op.default

    def _new_sync(self) -> redis.Redis | redis.cluster.RedisCluster:
        """A new sync client: no retries (one try per call), the short timeouts. For a
        cluster this asks a node for the slots (and raises when none answers)."""
        if self._cluster_url is not None:
            return redis.cluster.RedisCluster.from_url(
                self._cluster_url, retry=Retry(NoBackoff(), 0), **_CLUSTER_RETRY_KW, **self._kw
            )
        return redis.Redis.from_url(self._url, retry=Retry(NoBackoff(), 0), **self._kw)

    def _new_subscriber(self) -> redis.Redis:
        """A client for the events channel's subscription. One server: a client of it. A
        cluster: a plain client of one of its nodes, chosen at random among those the
        cluster client knows (the URL's node when it knows none): classic pub/sub is
        forwarded to every node of a cluster, so any node hears every PUBLISH."""
        if self._cluster_url is None:
            return cast(redis.Redis, self._new_sync())
        nodes = [_check_cluster_url(self._cluster_url)]
        try:
            known = cast(Any, self._client()).get_nodes()
            nodes = [(n.host, int(n.port)) for n in known] or nodes
        except Exception:  # the cluster is out: the URL's node, tried as well as any
            pass
        host, port = random.choice(nodes)
        return redis.Redis.from_url(
            _node_url(self._cluster_url, host, port), retry=Retry(NoBackoff(), 0), **self._kw
        )

    def _client(self) -> redis.Redis | redis.cluster.RedisCluster:
        c = self._sync
        if c is None:
            with self._client_lock:
                c = self._sync
                if c is None:
                    c = self._sync = self._new_sync()
        return c

    def _aclient(self) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        loop = asyncio.get_running_loop()
        c = self._aclients.get(loop)
        if c is None:
            with self._lock:
                c = self._aclients.get(loop)
                if c is None:
                    # Loops that ended take their clients along (their sockets died with
                    # them; a closed loop cannot run the clients' close).
                    for old in [lp for lp in self._aclients if lp.is_closed()]:
                        del self._aclients[old]
                    c = self._new_async()
                    self._aclients[loop] = c
        return c

    def _new_async(self) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        # A cluster's asyncio client connects on its first command (not here).
        if self._cluster_url is not None:
            return redis.asyncio.cluster.RedisCluster.from_url(
                self._cluster_url, retry=AsyncRetry(NoBackoff(), 0), **_CLUSTER_RETRY_KW, **self._kw
            )
        return redis.asyncio.Redis.from_url(self._url, retry=AsyncRetry(NoBackoff(), 0), **self._kw)

    def _run(self, op: _Op[T]) -> T:
        if self._skip():
            return op.default
        try:
            c = self._client()
            s = op.script
            if s is None:
                raw = cast(Any, c).execute_command(*op.args)  # untyped in redis-py
            else:
                # A cluster client sends both to the node owning the first key's slot
                # (all of a script's KEYS share one hash tag): a node that has not seen
                # the script yet answers NOSCRIPT, and EVAL leaves it cached there.
                try:
                    raw = c.evalsha(s.sha, op.nkeys, *op.args)
                except NoScriptError:  # a restarted (or flushed) server: one more trip
                    raw = c.eval(s.src, op.nkeys, *op.args)
        except _ERRORS as exc:
            return self._failed(op, exc)
        self._ok()
        return self._decode(op, raw)

    async def _arun(self, op: _Op[T]) -> T:
        if self._skip():
            return op.default
        try:
            c = self._aclient()
            s = op.script
            if s is None:
                raw = await cast(Any, c).execute_command(*op.args)
            else:
                try:
                    raw = await c.evalsha(s.sha, op.nkeys, *op.args)
                except NoScriptError:
                    raw = await c.eval(s.src, op.nkeys, *op.args)
        except _ERRORS as exc:
            return self._failed(op, exc)
        self._ok()
        return self._decode(op, raw)

    def _count_get(self, value: CacheValue | None) -> CacheValue | None:
        with self._lock:
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
        return value

    def _count_put(self, stored: bool) -> bool:
        if stored:
            with self._lock:
                self._puts += 1
        return stored

    # ------------------------------------------------------------------------ L2 cache

    def get(self, key: bytes) -> CacheValue | None:
        """The answer cached under the native 16-byte ``key``, or None (a miss; also
        when Redis is out or what is stored is not an answer)."""
        return self._count_get(self._run(self._op_get(key)))

    async def aget(self, key: bytes) -> CacheValue | None:
        return self._count_get(await self._arun(self._op_get(key)))

    def landed(self, key: bytes) -> CacheValue | None:
        """A second look after :meth:`lead` won: the answer a leader stored just before
        it let go. Counted as a hit when found, not as another miss."""
        value = self._run(self._op_get(key))
        return None if value is None else self._count_get(value)

    async def alanded(self, key: bytes) -> CacheValue | None:
        value = await self._arun(self._op_get(key))
        return None if value is None else self._count_get(value)

    def put(self, key: bytes, value: CacheValue, ttl: float | None) -> bool:
        """Stores an answer for ``ttl`` seconds (None: until Redis evicts it); True if
        Redis took it. A ``ttl`` <= 0 or an answer over ``max_value_bytes`` is not
        stored."""
        op = self._op_put(key, value, ttl)
        return False if op is None else self._count_put(self._run(op))

    async def aput(self, key: bytes, value: CacheValue, ttl: float | None) -> bool:
        op = self._op_put(key, value, ttl)
        return False if op is None else self._count_put(await self._arun(op))

    # ------------------------------------------------------------------------ breaker

    def admit(self, model: str, half_open_max_calls: int, lease_ttl: float) -> Admission:
        """Whether the fleet lets a call to ``model`` be made now. Closed: allowed. Open:
        refused, ``retry_after`` = the time left. Half-open (the recovery timeout has
        passed): a trial, while fewer than ``half_open_max_calls`` trial leases are held
        fleet-wide; a lease expires after ``lease_ttl`` seconds if nobody reports it."""
        return self._run(self._op_admit(model, half_open_max_calls, lease_ttl))

    async def aadmit(self, model: str, half_open_max_calls: int, lease_ttl: float) -> Admission:
        return await self._arun(self._op_admit(model, half_open_max_calls, lease_ttl))

    def record_failure(
        self, model: str, threshold: int, recovery_timeout: float, lease: str | None = None
    ) -> int:
        """A failed call (``lease``: its trial lease, if it was one). Non-zero when this
        report opened the breaker fleet-wide (for ``recovery_timeout`` seconds of Redis
        time): the opening's ``opening`` id, as in its message on :attr:`events_channel`;
        0 otherwise (or without Redis)."""
        return self._run(self._op_failure(model, threshold, recovery_timeout, lease))

    async def arecord_failure(
        self, model: str, threshold: int, recovery_timeout: float, lease: str | None = None
    ) -> int:
        return await self._arun(self._op_failure(model, threshold, recovery_timeout, lease))

    def record_success(self, model: str, lease: str | None = None) -> bool:
        """A successful call: the consecutive failures reset; a trial's success closes a
        half-open breaker (True, and ``closed`` is published)."""
        return self._run(self._op_success(model, lease))

    async def arecord_success(self, model: str, lease: str | None = None) -> bool:
        return await self._arun(self._op_success(model, lease))

    def release_trial(self, model: str, lease: str) -> None:
        """Gives a trial lease back without an outcome (the call was not made)."""
        self._run(self._op_release(model, lease))

    async def arelease_trial(self, model: str, lease: str) -> None:
        await self._arun(self._op_release(model, lease))

    def breaker_state(self, model: str) -> dict[str, Any] | None:
        """``{"state", "failures", "retry_after", "trials"}`` as the fleet sees it, or
        None without Redis."""
        return self._run(self._op_state(model))

    async def abreaker_state(self, model: str) -> dict[str, Any] | None:
        return await self._arun(self._op_state(model))

    # ------------------------------------------------------------------------ rate limits

    def lease(
        self,
        key: str,
        limits: tuple[Limit | None, Limit | None],
        want: tuple[int, int],
        least: tuple[int, int] = (1, 1),
        back: tuple[int, int] = (0, 0),
        lessee: str = "",
    ) -> Lease | None:
        """Units of deployment ``key``'s shared limits (requests, tokens; a None limit is
        not asked), in one round trip on Redis's clock: ``back`` units are given back
        first (at most what has not refilled), then up to ``want`` are granted, as many as
        the limit admits now when that is at least ``least``. ``lessee``: the caller's
        id, counted in :attr:`Lease.lessees`. None without Redis."""
        return self._run(self._op_lease(key, limits, want, least, back, lessee or self._token))

    def cool_quota(self, key: str, seconds: float) -> float | None:
        """Deployment ``key`` grants nothing fleet-wide for ``seconds`` from now (a
        provider's 429; a later end wins): the cooling left, or None without Redis."""
        return self._run(self._op_cool(key, seconds))

    # ------------------------------------------------------------------------ retry budget

    def budget_share(
        self, member: str, requests: int, retries: int, ttl: float
    ) -> tuple[int, int] | None:
        """Publishes this process's retry-budget window counts (standing ``ttl``
        seconds) and answers the other live members' sums, ``(requests, retries)``, in
        one round trip (fleet_budget.py). None without Redis."""

        def decode(raw: Any) -> tuple[int, int]:
            return int(raw[0]), int(raw[1])

        key = f"{self.namespace}:rb"
        args = (key, member, max(int(requests), 0), max(int(retries), 0), max(_ms(ttl), 1))
        return self._run(_Op("retry_budget", _BUDGET, args, 1, decode, None, lenient=True))

    # ------------------------------------------------------------------------ single-flight

    def shared_secret(self) -> bytes | None:
        """The fleet's cache-key secret: 16 random bytes created once in Redis (SET NX)
        and read by every process, so that all of them compute equal keys. None when Redis
        cannot be reached (that process then caches alone). Never logged."""
        key = f"{self.namespace}:secret"
        self._run(_Op("secret", None, ("SET", key, os.urandom(16), "NX"), 0, _as_none, None))
        raw = self._run(_Op("secret", None, ("GET", key), 0, lambda r: r, None))
        return raw if isinstance(raw, bytes) and len(raw) == 16 else None

    def lead(self, key: bytes, lease_ttl: float) -> bool:
        """Whether this process leads the flight for ``key`` (a lease of ``lease_ttl``
        seconds: if the leader dies, it expires and a waiter can take over). False also
        without Redis: then :meth:`await_answer` returns None at once. The lease says
        nothing of the answer: one that landed between a miss and this call is found by
        a second :meth:`get`. Choose ``lease_ttl`` longer than the call it covers: a
        lease that runs out lets a second leader in."""
        return self._run(self._op_lead(key, lease_ttl))

    async def alead(self, key: bytes, lease_ttl: float) -> bool:
        return await self._arun(self._op_lead(key, lease_ttl))

    def _pauses(self, wait: float) -> tuple[float, float]:
        if not (isinstance(wait, (int, float)) and wait >= 0 and math.isfinite(wait)):
            raise ValueError("wait must be a finite number of seconds >= 0")
        return time.monotonic() + wait, min(0.002, self._poll)

    def await_answer(self, key: bytes, wait: float) -> CacheValue | None:
        """Waits at most ``wait`` seconds for the leader's answer to land. None when it
        does not: the wait ran out, the leader finished without an answer, or its lease
        expired (then try :meth:`lead` again: one waiter takes over), or Redis is out.
        Looks at the answer and the lease in one round trip, at growing intervals up to
        ``poll_interval``."""
        deadline, pause = self._pauses(wait)
        while True:
            done, value = self._run(self._op_poll(key))
            if done:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(pause, left))
            pause = min(pause * 2, self._poll)

    async def aawait_answer(self, key: bytes, wait: float) -> CacheValue | None:
        deadline, pause = self._pauses(wait)
        while True:
            done, value = await self._arun(self._op_poll(key))
            if done:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, self._poll)

    def finish(self, key: bytes, value: CacheValue | None = None, ttl: float | None = None) -> bool:
        """Ends this process's flight for ``key``: stores ``value`` (if given) as
        :meth:`put` would, and drops the lease if it is still this process's, in one
        round trip. True if the lease was dropped."""
        return self._run(self._op_finish(key, value, ttl))

    async def afinish(
        self, key: bytes, value: CacheValue | None = None, ttl: float | None = None
    ) -> bool:
        return await self._arun(self._op_finish(key, value, ttl))

    # ------------------------------------------------------------------------ life

    def stats(self) -> dict[str, Any]:
        """``l2_hits``, ``l2_misses`` (a get without Redis is a miss), ``l2_puts``,
        ``fleet_errors`` (failed round trips), ``fleet_skipped`` (calls not sent during
        an outage's cooldown), ``outages`` (seen), ``available`` (not in an outage)."""
        with self._lock:
            return {
                "l2_hits": self._hits,
                "l2_misses": self._misses,
                "l2_puts": self._puts,
                "fleet_errors": self._errors,
                "fleet_skipped": self._skipped,
                "outages": self._outages,
                "available": not self._out,
            }

    def close(self) -> None:
        """Closes the sync client's connections and forgets the async clients (close
        each on its loop with :meth:`aclose` first)."""
        with self._lock:
            c, self._sync = self._sync, None
            self._aclients = {}
        if c is not None:
            try:
                c.close()
            except _ERRORS:
                pass

    async def aclose(self) -> None:
        """Closes the async client of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            c = self._aclients.pop(loop, None)
        if c is not None:
            # aclose: redis-py >= 5.0.1; close before it.
            closer = getattr(c, "aclose", None) or c.close
            try:
                await closer()
            except _ERRORS:
                pass


__all__ = [
    "ADMITTED",
    "Admission",
    "BreakerEvent",
    "CacheValue",
    "Fleet",
    "Lease",
    "Limit",
    "decode_value",
    "encode_value",
    "mask_url",
    "parse_event",
]
