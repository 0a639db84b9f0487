"""Connections from one URL: plain Redis or a primary found through Sentinel, and replicated enqueue.

Real servers: a primary, a replica and sentinels this test starts on loopback ports (``redis_topology``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from dispatcher import Dispatcher
from dispatcher.cli.embedded import free_port
from dispatcher.errors import ConfigError, NotReplicated
from dispatcher.kicks import celery_config
from dispatcher.settings import Durability, Settings
from dispatcher.store import Keys, Store
from dispatcher.store.connection import SentinelAddress, celery_broker, parse_sentinel

if TYPE_CHECKING:
    from tests.conftest import RedisTopology


def test_plain_urls_are_not_sentinel_ones() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380", "unix:///tmp/redis.sock"):
        assert parse_sentinel(url) is None


def test_a_sentinel_url_names_the_sentinels_the_primary_and_the_db() -> None:
    assert parse_sentinel("redis+sentinel://:s3cret@h1:26379,h2:26380,[::1]:26381/main/3") == SentinelAddress(
        (("h1", 26379), ("h2", 26380), ("::1", 26381)), "main", 3, None, "s3cret"
    )
    assert parse_sentinel("redis+sentinel://h1/main") == SentinelAddress((("h1", 26379),), "main")


@pytest.mark.parametrize(
    "url",
    [
        "http://h:1/x",
        "h1:26379",
        "redis+sentinel://h1:26379",  # no primary name
        "redis+sentinel://h1:26379/main/x",
        "redis+sentinel://h1:port/main",
        "redis+sentinel:///main",
    ],
)
def test_a_malformed_url_is_a_config_error_that_does_not_echo_it(url: str) -> None:
    with pytest.raises(ConfigError, match=r"DISPATCHER_REDIS_URL|expected") as info:
        parse_sentinel(url.replace("h1", "pw@h1"))
    assert "pw" not in str(info.value)


def test_celery_gets_the_sentinels_in_kombus_spelling(settings_for: Callable[..., Settings]) -> None:
    url = "redis+sentinel://:pw@h1:26379,h2:26380/main/2"
    assert celery_broker(url) == (
        "sentinel://:pw@h1:26379/2;sentinel://:pw@h2:26380/2",
        {"master_name": "main", "sentinel_kwargs": {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}},
    )
    assert celery_broker("amqp://guest:guest@127.0.0.1:5672//") == ("amqp://guest:guest@127.0.0.1:5672//", {})
    conf = celery_config(settings_for(redis_url=url))
    assert conf["broker_url"].startswith("sentinel://") and conf["broker_transport_options"]["master_name"] == "main"


def test_unreachable_sentinels_fail_at_start(settings_for: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="no sentinel knows a primary"):
        Store(settings_for(redis_url=f"redis+sentinel://127.0.0.1:{free_port()}/main"))  # nobody listens


def test_a_primary_name_no_sentinel_knows_fails_at_start(
    redis_topology: RedisTopology, settings_for: Callable[..., Settings]
) -> None:
    primary = redis_topology.server()
    (sentinel,) = redis_topology.sentinels(primary, "main", n=1)
    with pytest.raises(ConfigError, match="primary 'other'"):
        Store(settings_for(redis_url=f"redis+sentinel://127.0.0.1:{sentinel.port}/other"))
    store = Store(settings_for(redis_url=f"redis+sentinel://127.0.0.1:{sentinel.port}/main/0"))
    store.redis.set("x", "through the sentinel")
    assert primary.client().get("x") == b"through the sentinel"
    store.close()


def test_replicated_enqueue_waits_for_a_replica_and_refuses_without_one(
    redis_topology: RedisTopology, settings_for: Callable[..., Settings], wait_until: Callable[..., Any]
) -> None:
    primary = redis_topology.server()
    settings = settings_for(
        redis_url=f"redis://127.0.0.1:{primary.port}/0",
        enqueue_durability=Durability.REPLICATED,
        enqueue_replica_timeout_ms=200,
    )
    dsp = Dispatcher(settings)
    with pytest.raises(NotReplicated, match="0 of 1 replica"):
        dsp.enqueue("a.b", {"i": 1})  # no replica at all: not acknowledged
    replica = redis_topology.server(replica_of=primary)
    wait_until(lambda: replica.client().info("replication").get("master_link_status") == "up", 10)
    event_id = dsp.enqueue("a.b", {"i": 2})
    assert replica.client().exists(Keys(settings.key_prefix).event(event_id))  # the replica has it on return
    second = redis_topology.server(replica_of=primary)
    wait_until(lambda: second.client().info("replication").get("master_link_status") == "up", 10)
    wait_until(lambda: len(primary.client().execute_command("ROLE")[2]) == 2, 10)
    fresh = Dispatcher(settings)  # reads the replica count anew (a running one re-reads it once a second)
    event_id = fresh.enqueue("a.b", {"i": 3})
    fresh.close()
    # ENQUEUE_REPLICAS=0 (the default): every replica holds it on return, so any promotion keeps it
    assert all(r.client().exists(Keys(settings.key_prefix).event(event_id)) for r in (replica, second))
    dsp.close()


def test_a_redis_cluster_node_fails_at_start_with_what_to_use_instead(
    redis_topology: RedisTopology, settings_for: Callable[..., Settings]
) -> None:
    node = redis_topology.server(cluster_node=True)
    url = f"redis://:s3cret@127.0.0.1:{node.port}/0"
    with pytest.raises(ConfigError, match=r"Redis Cluster.*Sentinel") as info:
        Store(settings_for(redis_url=url))
    assert "s3cret" not in str(info.value) and "DISPATCHER_REDIS_URL" in str(info.value)
    plain = redis_topology.server()
    Store(settings_for(redis_url=f"redis://127.0.0.1:{plain.port}/0")).close()  # a plain server is fine
    Store(settings_for(redis_url=f"redis://127.0.0.1:{free_port()}/0")).close()  # one down now: fails when used
