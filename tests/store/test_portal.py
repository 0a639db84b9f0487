"""``PortalSessions``: a portal link opens once, even when many browsers race with it; sessions are TTL'd."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import redis

from dispatcher.settings import Settings
from dispatcher.store import Store


def test_a_link_is_consumed_once_by_racing_openers(settings: Settings, store: Store, raw_redis: redis.Redis) -> None:
    token = store.portal.create_link("acme", ttl_s=60)
    stores = [Store(settings) for _ in range(8)]  # a connection each: the race happens in Redis
    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            got = list(pool.map(lambda s: s.portal.consume_link(token), stores))
    finally:
        for s in stores:
            s.close()
    assert got.count("acme") == 1 and got.count(None) == 7, got
    assert list(raw_redis.scan_iter(match=f"{store.keys.prefix}portal:*")) == []


def test_sessions_expire_and_end(store: Store, raw_redis: redis.Redis) -> None:
    session = store.portal.create_session("acme", ttl_s=30)
    assert store.portal.session_tenant(session) == "acme"
    assert 0 < raw_redis.ttl(store.keys.portal_session(session)) <= 30
    for bogus in ("", "x" * 101, "naïve", "unknown"):
        assert store.portal.session_tenant(bogus) is None
        assert store.portal.consume_link(bogus) is None
    store.portal.end_session(session)
    assert store.portal.session_tenant(session) is None
