"""The fleet tier on a real 3-master Redis Cluster (tests/redis_server.py: three
``redis-server --cluster-enabled yes`` formed by ``redis-cli --cluster create``), through a
``redis+cluster://`` URL: the L2 cache and the shared secret, fleet single-flight, the
fleet breaker and its events, keys spread over the nodes, scripts on nodes that lost
them, and the whole cluster killed (no request fails; the fleet is rejoined after).

Two managers (or Fleet objects) in one process stand for two processes. Every functional
test also asserts ``fleet_errors == 0``: a script whose keys crossed slots, or a command
the cluster client could not route, would show there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from redis_server import RedisClusterServers
from redis_server import until as _until

redis = pytest.importorskip("redis", reason="redis-py is not installed (requirements-dev.txt)")

from redis.cluster import RedisCluster  # noqa: E402
from redis.crc import key_slot  # noqa: E402

from agenticaiframework.llms import LLMManager  # noqa: E402
from agenticaiframework.llms.fleet import Fleet, cluster_url, parse_event  # noqa: E402

K1 = bytes(range(16))
V1 = ("first answer", "gpt-4", 12, 3, False)


class Upstream:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.delay = delay

    def __call__(self, prompt: str, kwargs: dict[str, Any]) -> str:
        with self.lock:
            self.calls[prompt] += 1
        if self.delay:
            time.sleep(self.delay)
        return f"answer to {prompt}"


async def _no_wait(_: float) -> None:
    return None


def manager(url: str | Fleet, up: Any, namespace: str = "t", **kw: Any) -> LLMManager:
    m = LLMManager(redis=url, namespace=namespace, sleep=lambda _: None, async_sleep=_no_wait, **kw)
    m.register_model("m", up)
    m.set_active_model("m")
    return m


@pytest.fixture
def raw(redis_clu: RedisClusterServers) -> Iterator[RedisCluster]:
    """A cluster client of the test's own, to look at what the fleet stored."""
    c = RedisCluster(host="127.0.0.1", port=redis_clu.nodes[0].port)
    yield c
    c.close()


def node_clients(cluster: RedisClusterServers) -> list[Any]:
    return [redis.Redis(host="127.0.0.1", port=n.port) for n in cluster.nodes]


def models_on_each_node(raw: RedisCluster, namespace: str) -> list[str]:
    """One model name per cluster node: its breaker keys live on that node."""
    found: dict[str, str] = {}
    for i in range(200):
        name = f"model-{i}"
        node = raw.get_node_from_key(f"{namespace}:b:{{{name}}}")
        found.setdefault(node.name, name)
    assert len(found) == 3, found
    return list(found.values())


# ------------------------------------------------------------------ URLs


def test_cluster_urls_are_recognised_checked_and_masked() -> None:
    assert cluster_url("redis+cluster://h:7000/") == "redis://h:7000/"
    assert cluster_url("rediss+cluster://u:p@h:7000/0") == "rediss://u:p@h:7000/0"
    assert cluster_url("REDIS+CLUSTER://h") == "redis://h"
    assert cluster_url("redis://h:6379/0") is None and cluster_url("unix:///s") is None
    # No connection is made: nothing listens on port 1.
    f = Fleet.from_url("redis+cluster://user:s3cr%40t@127.0.0.1:1/?password=other", "t")
    assert f.cluster and not Fleet.from_url("redis://127.0.0.1:1/0", "t").cluster
    shown = repr(f) + f.url
    assert "s3cr" not in shown and "other" not in shown and "***" in shown
    assert f.url.startswith("redis+cluster://user:***@127.0.0.1:1/")
    with pytest.raises(ValueError, match="database 0"):
        Fleet.from_url("redis+cluster://127.0.0.1:7000/3", "t")
    with pytest.raises(ValueError):
        Fleet.from_url("redis+cluster://:pw@/", "t")


def test_an_unreachable_cluster_is_an_outage_with_the_password_masked(caplog: Any) -> None:
    from redis_server import free_port

    t = [0.0]
    url = f"redis+cluster://u:sekret@127.0.0.1:{free_port()}/"
    f = Fleet.from_url(url, "t", clock=lambda: t[0])
    with caplog.at_level(logging.WARNING, logger="agenticaiframework.llms"):
        assert f.get(K1) is None and f.lead(K1, 1.0) is False
        assert asyncio.run(f.aget(K1)) is None
        assert f.shared_secret() is None
    s = f.stats()
    assert s["outages"] == 1 and not s["available"] and s["fleet_skipped"] >= 1
    assert "sekret" not in caplog.text and "unreachable" in caplog.text


# ------------------------------------------------------------------ the L2 cache


def test_two_managers_share_answers_through_the_cluster(redis_clu: RedisClusterServers) -> None:
    up1, up2 = Upstream(), Upstream()
    a, b = manager(redis_clu.url, up1), manager(redis_clu.url, up2)
    assert a._fleet is not None and a._fleet.cluster
    assert a.generate("q", temperature=0) == "answer to q"
    r = b.generate_response("q", temperature=0)  # b's L1 misses; the cluster has it
    assert r.text == "answer to q" and r.model == "m"
    assert (up1.calls["q"], up2.calls["q"]) == (1, 0)
    mb = b.get_metrics()
    assert mb["l2_hits"] == 1 and mb["successful_requests"] == 1
    assert b.generate_response("q", temperature=0).cached  # now in b's own L1
    for m in (a, b):
        assert m.get_metrics()["fleet_errors"] == 0


def test_async_managers_share_through_the_cluster(redis_clu: RedisClusterServers) -> None:
    async def model(prompt: str, kwargs: dict[str, Any]) -> str:
        return "async " + prompt

    up = Upstream()
    a, b = manager(redis_clu.url, model), manager(redis_clu.url, up)

    async def main() -> list[tuple[str, str]]:
        return [(await a.agenerate(f"p{i}"), await b.agenerate(f"p{i}")) for i in range(10)]

    assert asyncio.run(main()) == [(f"async p{i}", f"async p{i}") for i in range(10)]
    assert sum(up.calls.values()) == 0  # b never called its model: every answer was L2
    assert b.get_metrics()["l2_hits"] == 10
    for m in (a, b):
        assert m.get_metrics()["fleet_errors"] == 0


def test_the_secret_is_made_once_in_the_cluster(
    redis_clu: RedisClusterServers, raw: RedisCluster
) -> None:
    a, b = manager(redis_clu.url, Upstream()), manager(redis_clu.url, Upstream())
    assert a._cache is not None and b._cache is not None
    assert a._cache.key("r", "p") == b._cache.key("r", "p")  # equal keys fleet-wide
    secret = Fleet.from_url(redis_clu.url, "t").shared_secret()
    assert secret is not None and raw.get("t:secret") == secret
    shown = repr(a) + repr(a.get_metrics()) + repr(a._fleet)
    assert secret.hex() not in shown and repr(secret) not in shown


def test_keys_of_different_prompts_land_on_every_node(
    redis_clu: RedisClusterServers, raw: RedisCluster
) -> None:
    m = manager(redis_clu.url, Upstream())
    for i in range(60):
        m.generate(f"prompt {i}")
    per_node, slots = [], set()
    for client in node_clients(redis_clu):
        keys = [k.decode() for k in client.scan_iter("t:r:*")]
        per_node.append(len(keys))
        slots |= {key_slot(k.encode()) for k in keys}
        assert all(raw.get(k) is not None for k in keys)  # the cluster routes there
        for k in keys:  # a value and its lease share a slot: POLL and FINISH run on one node
            lease = k.replace("t:r:", "t:l:", 1)
            assert key_slot(k.encode()) == key_slot(lease.encode())
        client.close()
    # 60 random slots over 3 masters: each holds some (one empty: about 3 * (2/3)^60).
    assert sum(per_node) == 60 and all(n > 0 for n in per_node), per_node
    assert len(slots) > 50  # distinct prompts, distinct hash tags
    assert m.get_metrics()["fleet_errors"] == 0


# ------------------------------------------------------------------ single-flight


def test_single_flight_lease_on_the_cluster(redis_clu: RedisClusterServers) -> None:
    f1, f2 = Fleet.from_url(redis_clu.url, "t"), Fleet.from_url(redis_clu.url, "t")
    assert f1.get(K1) is None
    assert f1.lead(K1, 30.0) and not f2.lead(K1, 30.0)  # one leader fleet-wide
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(f2.await_answer(K1, 10.0)))
    waiter.start()
    time.sleep(0.05)
    assert f1.finish(K1, V1, 30.0)  # stores and lets go in one script (one node)
    waiter.join(10)
    assert got == [V1] and f2.get(K1) == V1
    assert f2.lead(K1, 30.0) and f2.finish(K1)  # free again; finishing without an answer
    assert f1.await_answer(bytes(16), 0.0) is None  # nobody leads: done at once
    for f in (f1, f2):
        assert f.stats()["fleet_errors"] == 0


def test_two_managers_reach_the_model_once_for_one_prompt(
    redis_clu: RedisClusterServers, raw: RedisCluster
) -> None:
    up = Upstream(delay=0.3)
    a, b = manager(redis_clu.url, up), manager(redis_clu.url, up)
    key = a._enter("slow", True, None)[1]
    out: dict[str, str] = {}
    ta = threading.Thread(target=lambda: out.update(a=a.generate("slow")))
    ta.start()
    assert _until(lambda: raw.exists(f"t:l:{{{key.hex()}}}") == 1)  # a leads the flight
    tb = threading.Thread(target=lambda: out.update(b=b.generate("slow")))
    tb.start()
    ta.join(10)
    tb.join(10)
    assert out == {"a": "answer to slow", "b": "answer to slow"}
    assert up.calls["slow"] == 1  # b waited for a's answer instead of calling
    assert raw.exists(f"t:l:{{{key.hex()}}}") == 0  # the lease was let go
    for m in (a, b):
        assert m.get_metrics()["fleet_errors"] == 0


def test_scripts_run_on_nodes_that_lost_them(
    redis_clu: RedisClusterServers, raw: RedisCluster
) -> None:
    """SCRIPT FLUSH on every node (a new or restarted node): EVALSHA answers NOSCRIPT on
    whichever node the keys live on, and the EVAL that follows caches it there."""
    f = Fleet.from_url(redis_clu.url, "t")
    models = models_on_each_node(raw, "t")
    keys = [bytes([i]) * 16 for i in range(12)]
    for _ in range(2):  # flushed, then loaded again by the first round
        for n in node_clients(redis_clu):
            n.script_flush()
            n.close()
        for model in models:
            assert f.admit(model, 1, 5.0).allowed
            assert not f.record_failure(model, 5, 30.0)
            assert f.breaker_state(model) == {
                "state": "closed",
                "failures": 1,
                "retry_after": 0.0,
                "trials": 0,
            }
            assert not f.record_success(model)
        for k in keys:
            assert f.lead(k, 5.0) and f.finish(k, V1, 30.0)
            assert f.await_answer(k, 0.0) == V1
    assert f.stats()["fleet_errors"] == 0


# ------------------------------------------------------------------ breakers


def test_events_published_on_any_node_reach_the_listener(
    redis_clu: RedisClusterServers, raw: RedisCluster
) -> None:
    """Each model's breaker script runs (and PUBLISHes) on the node owning its slot; the
    listener's plain client of one node hears all of them (classic pub/sub is forwarded
    cluster-wide)."""
    f = Fleet.from_url(redis_clu.url, "ev")
    models = models_on_each_node(raw, "ev")
    for _ in range(3):  # a subscriber on whichever node it picks
        sub = f._new_subscriber().pubsub(ignore_subscribe_messages=True)
        sub.subscribe(f.events_channel)
        assert sub.get_message(timeout=1.0) is None  # the subscription is in place
        for model in models:
            raw.delete(f"ev:b:{{{model}}}", f"ev:t:{{{model}}}")
            assert f.record_failure(model, 1, 0.01)  # opens: published on its node
            assert _until(lambda m=model: f.admit(m, 1, 5.0).trial)  # half-open
            lease = f.admit(model, 2, 5.0).lease
            assert f.record_success(model, lease)  # a trial's success closes it
        # Until every expected event came (bounded): counting messages instead would stop
        # early on a repeat or on a message of the channel that is not one of these.
        want = {(ev, m) for m in models for ev in ("open", "closed")}
        got: set[tuple[str, str]] = set()
        end = time.monotonic() + 5.0
        while not want <= got and time.monotonic() < end:
            msg = sub.get_message(timeout=0.5)
            e = None if msg is None else parse_event(msg["data"])
            if e is not None and e.model in models:
                got.add((e.event, e.model))
        sub.close()
        assert got == want
    assert f.stats()["fleet_errors"] == 0


def test_an_outage_one_manager_finds_is_skipped_by_the_other(
    redis_clu: RedisClusterServers,
) -> None:
    """A fails the dead model failure_threshold times; the fleet breaker opens on the
    cluster node owning its keys and B, which never called it, skips it (its local breaker
    is tripped by the event). The managers' clock stands still: no local recovery."""
    dead_calls = Counter[str]()
    t = [0.0]

    def dead(prompt: str, kwargs: dict[str, Any]) -> str:
        dead_calls[prompt] += 1
        raise ConnectionError("provider down")

    def make() -> LLMManager:
        m = LLMManager(
            redis=redis_clu.url,
            namespace="brk",
            failure_threshold=3,
            recovery_timeout=30,
            max_retries=1,
            enable_caching=False,
            sleep=lambda _: None,
            clock=lambda: t[0],
        )
        m.register_model("dead", dead)
        m.register_model("backup", lambda p, k: "backup")
        m.set_active_model("dead")
        m.set_fallback_chain(["backup"])
        return m

    a, b = make(), make()
    # Both listen before the opening is published (one who had not: tested below).
    assert _until(lambda: all(m._gates[0].listening for m in (a, b)))
    for i in range(2):
        assert a.generate(f"a{i}") == "backup"
    assert a.get_model_info("dead")["circuit_breaker_state"] == "closed"  # 2 < 3 locally
    b.generate("b0")  # B's first: its failure is the fleet's third -> opens fleet-wide
    assert _until(lambda: a.get_model_info("dead")["circuit_breaker_state"] == "open")
    assert _until(lambda: b.get_model_info("dead")["circuit_breaker_state"] == "open")
    for m in (a, b):
        for i in range(5):
            assert m.generate(f"after {i}") == "backup"
    assert sum(dead_calls.values()) == 3  # failure_threshold, fleet-wide
    assert a._fleet is not None
    state = a._fleet.breaker_state("dead")
    assert state is not None and state["state"] == "open" and state["failures"] == 3
    for m in (a, b):
        assert m.get_metrics()["fleet_errors"] == 0


# ------------------------------------------------------------------ the cluster down


def test_the_cluster_killed_never_fails_a_request(
    redis_clu: RedisClusterServers, caplog: Any
) -> None:
    t = [0.0]  # the fleet's cooldown clock: advanced past each outage's cooldown
    fleet = Fleet.from_url(redis_clu.url, "t", clock=lambda: t[0])
    up = Upstream()
    m = manager(fleet, up)
    other = manager(redis_clu.url, Upstream())
    assert m.generate("before") == "answer to before"
    assert asyncio.run(m.agenerate("before async")) == "answer to before async"
    redis_clu.stop()  # every node killed
    with caplog.at_level(logging.WARNING, logger="agenticaiframework.llms"):
        for i in range(5):
            assert m.generate(f"down {i}") == f"answer to down {i}"
            assert asyncio.run(m.agenerate(f"down async {i}")) == f"answer to down async {i}"
            t[0] += 60  # each round tries the cluster again
        assert m.generate("before") == "answer to before"  # L1 still answers
    outages = [r for r in caplog.records if r.levelname == "WARNING"]
    assert outages and all("unreachable" in r.getMessage() for r in outages)
    redis_clu.start()  # the same cluster again (nodes.conf), empty
    t[0] += 60
    assert m.generate("back") == "answer to back"  # rejoined: shared again
    assert other.generate("back") == "answer to back" and other.get_metrics()["l2_hits"] == 1
    t[0] += 60
    assert asyncio.run(m.agenerate("back async")) == "answer to back async"
    assert other.generate("back async") == "answer to back async"
    assert other.get_metrics()["l2_hits"] == 2
    s = m.get_metrics()
    assert s["failed_requests"] == 0 and s["successful_requests"] == s["total_requests"]
    assert s["fleet_errors"] >= 1 and fleet.stats()["available"]
    assert sum(up.calls.values()) == 14  # each distinct prompt once
