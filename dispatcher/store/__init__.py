"""Everything that touches the dispatcher's Redis. No other room spells a key or holds Lua.

``Store(settings)`` connects once and holds one object per concern, each owning its keys:
``queue`` (fan-out and delivery queues, kick slots), ``endpoints``, ``records`` (deliveries, replay),
``ratelimits``, ``failing`` (endpoint health streaks), ``heartbeats`` (live workers),
``event_types`` (the event-type catalog), ``tenants``, ``portal`` (consumer portal links and sessions); ``stats()``
reads every operational number. Key names come from ``keys.Keys``; Lua from ``lua/`` via ``scripts``.
"""

from __future__ import annotations

from typing import Any

import redis

from dispatcher.defaults import STATS_MINUTES_SHOWN
from dispatcher.settings import Settings
from dispatcher.store.connection import connect_sync
from dispatcher.store.endpoints import EndpointStore
from dispatcher.store.event_types import EventTypeStore
from dispatcher.store.health import FailingStreaks
from dispatcher.store.heartbeats import Heartbeats
from dispatcher.store.keys import Keys
from dispatcher.store.migrate import migrate
from dispatcher.store.pacing import Pacing
from dispatcher.store.poison import PoisonCounts
from dispatcher.store.portal import PortalSessions
from dispatcher.store.queue import Queue
from dispatcher.store.ratelimits import RateLimits
from dispatcher.store.records import Records
from dispatcher.store.scripts import Scripts
from dispatcher.store.sessions import Sessions
from dispatcher.store.stats import collect_stats
from dispatcher.store.tenants import TenantStore


def connect(settings: Settings) -> redis.Redis:
    """A client of the dispatcher's Redis (``Settings.store_url``: the setting, else a running dev stack's)."""
    return connect_sync(settings.store_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


class Store:
    """The dispatcher's Redis, one object per concern; built once per process (or per ``Dispatcher``)."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client if client is not None else connect(settings)
        self.keys = Keys(settings.key_prefix)
        self.scripts = Scripts(self.redis)
        self.queue = Queue(self.redis, self.keys, self.scripts, settings)
        self.endpoints = EndpointStore(self.redis, self.keys, self.scripts, settings)
        self.records = Records(self.redis, self.keys, self.scripts)
        self.ratelimits = RateLimits(self.keys, self.scripts)
        self.failing = FailingStreaks(self.keys, self.scripts)
        self.heartbeats = Heartbeats(self.redis, self.keys)
        self.poison = PoisonCounts(self.redis, self.keys)
        self.sessions = Sessions(self.redis, self.keys)
        self.pacing = Pacing(self.redis, self.keys)
        self.event_types = EventTypeStore(self.redis, self.keys)
        self.tenants = TenantStore(self.redis, self.keys)
        self.portal = PortalSessions(self.redis, self.keys)

    def stats(self, minutes: int = STATS_MINUTES_SHOWN) -> dict[str, Any]:
        """Every operational number, read now (``store.stats.collect_stats``)."""
        return collect_stats(self.redis, self.keys, self.endpoints, self.queue, minutes)

    def migrate(self) -> int:
        """Convert pending work written by an earlier version (once per Redis; see ``store.migrate``)."""
        return migrate(self.redis, self.keys)

    def close(self) -> None:
        self.redis.close()


__all__ = ["Keys", "Store", "connect"]
