"""A Sentinel failover under load: the primary is killed (``kill -9``), a replica is promoted, and the
worker, the API and producers reach the new primary on their own, with nothing acknowledged lost.

Real parts: a primary, a replica and three sentinels on loopback ports of this test's own, a real Celery
worker whose state and broker both go through the sentinels, ``dispatcher api`` and a loopback receiver.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dispatcher import Dispatcher
from dispatcher.errors import StoreError
from dispatcher.settings import Durability, Settings

if TYPE_CHECKING:
    from tests.conftest import ApiServer, Receiver, RedisTopology, Worker

NAME = "dispatch-main"


def test_a_failover_loses_no_acknowledged_event_and_needs_no_restart(
    redis_topology: RedisTopology,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    api_server_factory: Callable[[Settings], ApiServer],
    api_keys: tuple[str, ...],
    wait_until: Callable[..., Any],
) -> None:
    primary = redis_topology.server()
    replicas = [redis_topology.server(replica_of=primary) for _ in range(2)]  # one stays a replica after a failover
    for replica in replicas:
        wait_until(lambda r=replica: r.client().info("replication").get("master_link_status") == "up", 10)
    sentinels = redis_topology.sentinels(primary, NAME)
    wait_until(  # every sentinel knows the replica, so any of them can promote it
        lambda: all(len(s.client().execute_command("SENTINEL", "REPLICAS", NAME)) == 2 for s in sentinels),
        20,
        what="sentinels",
    )
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + f"/{NAME}/0"
    settings = settings_for(
        redis_url=url,
        key_prefix="failover:",
        enqueue_durability=Durability.REPLICATED,
        timeout_s=2.0,
        lease_margin_s=2.0,
    )
    dsp = Dispatcher(settings)
    rec = receiver_factory()
    dsp.subscribe(rec.url, ["*"])
    worker = worker_factory(settings, concurrency=2)
    api = api_server_factory(settings.model_copy(update={"api_keys": api_keys}))
    acknowledged: list[str] = []
    refused = 0

    def enqueue_until(n: int, deadline_s: float) -> None:
        nonlocal refused
        deadline = time.monotonic() + deadline_s
        while len(acknowledged) < n:
            assert time.monotonic() < deadline, f"only {len(acknowledged)} of {n} acknowledged"
            try:
                acknowledged.append(dsp.enqueue("failover.test", {"i": len(acknowledged)}))
            except StoreError:
                refused += 1  # during the failover: refused with a clear error, not acknowledged
                time.sleep(0.05)

    enqueue_until(200, 30)
    wait_until(lambda: len(set(ids_seen(rec))) >= 100, 30, what="deliveries before the failover")
    primary.kill()
    enqueue_until(250, 60)  # through the failover: refused until a replica is promoted and followed, then on
    promoted = wait_until(
        lambda: [r for r in replicas if r.client().info("replication").get("role") == "master"], 30, 0.1, "a promotion"
    )
    (other,) = set(replicas) - set(promoted)
    wait_until(  # the other replica follows the new primary: replicated enqueues can be confirmed again
        lambda: other.client().info("replication").get("master_port") == promoted[0].port, 30, 0.1, "re-replication"
    )
    enqueue_until(400, 60)  # the producer reaches the new primary on its own
    try:
        wait_until(lambda: set(ids_seen(rec)) >= set(acknowledged), 90, what="every acknowledged event delivered")
    except AssertionError:
        missing = len(set(acknowledged) - set(ids_seen(rec)))
        raise AssertionError(f"{missing} acknowledged events not delivered; the worker's log ends:\n"
                             + worker.log()[-6000:]) from None  # fmt: skip
    assert refused > 0  # the outage was real: calls were refused with a clear error while no primary answered
    assert worker.process.poll() is None  # the same worker, never restarted
    request = urllib.request.Request(
        f"{api.url}/v1/events/{acknowledged[-1]}", headers={"Authorization": f"Bearer {api_keys[0]}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert json.loads(resp.read())["id"] == acknowledged[-1]  # the API too, without a restart
    duplicates = sum(n - 1 for n in ids_seen(rec).values())
    print(f"failover: {len(acknowledged)} acknowledged, all delivered, {duplicates} duplicates; {refused} refused")
    dsp.close()


def ids_seen(rec: Receiver) -> Counter[str]:
    return Counter(r.headers["webhook-id"] for r in list(rec.requests))
