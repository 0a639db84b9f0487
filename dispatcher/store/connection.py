"""Connections to the dispatcher's Redis, from one URL: a plain Redis (``redis://``, ``rediss://``,
``unix://``) or a primary found through Sentinel (``redis+sentinel://``).

A Sentinel URL names the sentinels, the primary's name and the database::

    redis+sentinel://[[user]:password@]host:26379[,host:26380...]/<primary name>[/<db>]

The password (and user) are the primary's; the sentinels are asked without one. Clients made here
ask the sentinels for the primary whenever they (re)connect, so after a failover they reach the new
primary on their own. ``celery_broker`` turns the same URL into kombu's spelling for Celery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import MasterNotFoundError, Sentinel

from dispatcher.errors import ConfigError

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_TIMEOUT_S = 2.0  # how long one sentinel may take to answer "where is the primary?"


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    """Where a Sentinel-managed primary is found."""

    sentinels: tuple[tuple[str, int], ...]
    primary: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        """For messages and logs: never the password."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"primary {self.primary!r} of the sentinels at {hosts}, db {self.db}"


def parse_sentinel(url: str) -> SentinelAddress | None:
    """The Sentinel address in ``url``, None for a plain Redis URL; ``ConfigError`` (without echoing the
    URL, which may carry a password) when it is neither."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in PLAIN_SCHEMES:
        return None
    if scheme != SENTINEL_SCHEME:
        raise ConfigError(
            f"invalid Redis URL: the scheme {scheme or '(none)'!r} is not one of redis://, rediss://, unix://, "
            f"{SENTINEL_SCHEME}://; see DISPATCHER_REDIS_URL in the README"
        )
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    hosts_part = netloc[-1]
    username = password = None
    if len(netloc) == 2:
        user, _, pw = netloc[0].partition(":")
        username, password = (unquote(user) or None), (unquote(pw) or None)
    sentinels = []
    for host_port in filter(None, hosts_part.split(",")):
        host, _, port = host_port.rpartition(":") if ":" in host_port else (host_port, "", "26379")
        if not host or not port.isdigit():
            raise ConfigError(f"invalid Sentinel URL: {host_port!r} is not host:port; see DISPATCHER_REDIS_URL")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(
            f"invalid Sentinel URL: expected {SENTINEL_SCHEME}://host:port[,host:port...]/<primary name>[/<db>]"
        )
    db = int(path[1]) if len(path) == 2 else 0
    return SentinelAddress(tuple(sentinels), unquote(path[0]), db, username, password)


def _sentinel_kwargs() -> dict[str, Any]:
    return {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S}


def _no_primary(address: SentinelAddress) -> ConfigError:
    return ConfigError(
        f"no sentinel knows a primary for the {address.describe()}: check the name and that the sentinels "
        "are reachable (DISPATCHER_REDIS_URL)"
    )


NO_CLUSTER = (
    "DISPATCHER_REDIS_URL points at a node of a Redis Cluster, which the dispatcher does not run on yet (its "
    "scripts move work between keys of different slots): use one Redis primary, with Sentinel for failover "
    "(redis+sentinel://, see the README's 'Running at scale')"
)


def refuse_cluster(client: redis.Redis) -> None:
    """``ConfigError`` when ``client``'s server is a Redis Cluster node (``INFO cluster``). A server that
    cannot be asked now (down, or ``INFO`` renamed away) is left to fail, or work, when first used."""
    try:
        info = client.info("cluster")
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return
    if int(info.get("cluster_enabled", 0) or 0):
        client.close()
        raise ConfigError(NO_CLUSTER)


def connect_sync(url: str, **options: Any) -> redis.Redis:
    """A client of the Redis at ``url`` (``options``: redis-py's, e.g. timeouts). For a Sentinel URL the
    primary is looked up once now, so a wrong name or unreachable sentinels fail at start; a Redis Cluster
    node fails at start too (``refuse_cluster``)."""
    address = parse_sentinel(url)
    if address is None:
        client = redis.Redis.from_url(url, **options)
        refuse_cluster(client)
        return client
    sentinel = Sentinel(address.sentinels, sentinel_kwargs=_sentinel_kwargs(), **_timeouts(options))
    try:
        sentinel.discover_master(address.primary)
    except MasterNotFoundError:
        raise _no_primary(address) from None
    return sentinel.master_for(
        address.primary, db=address.db, username=address.username, password=address.password, **options
    )


def connect_async(url: str, *, max_connections: int | None = None, **options: Any) -> aredis.Redis:
    """The asyncio counterpart of ``connect_sync`` (a blocking pool of ``max_connections`` for a plain URL);
    the primary is looked up on first use."""
    address = parse_sentinel(url)
    if address is None:
        if max_connections is None:
            return aredis.Redis.from_url(url, **options)
        pool = aredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10, **options)
        return aredis.Redis(connection_pool=pool)
    sentinel = AsyncSentinel(address.sentinels, sentinel_kwargs=_sentinel_kwargs(), **_timeouts(options))
    options = {k: v for k, v in options.items() if k != "single_connection_client"}
    if max_connections is not None:
        options["max_connections"] = max_connections
    return sentinel.master_for(
        address.primary, db=address.db, username=address.username, password=address.password, **options
    )


def _timeouts(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """(broker URL, extra transport options) in kombu's spelling when ``url`` is a Sentinel URL; any other
    broker URL (Redis, AMQP, ...) as it is."""
    if not url.lower().startswith(f"{SENTINEL_SCHEME}://"):
        return url, {}
    address = parse_sentinel(url)
    assert address is not None
    auth = ""
    if address.password is not None:
        auth = f"{address.username or ''}:{address.password}@"
    hosts = ";".join(f"sentinel://{auth}{h}:{p}/{address.db}" for h, p in address.sentinels)
    return hosts, {"master_name": address.primary, "sentinel_kwargs": _sentinel_kwargs()}


__all__ = ["SentinelAddress", "celery_broker", "connect_async", "connect_sync", "parse_sentinel"]
