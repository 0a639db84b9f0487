"""The queues' tenant lanes on a real Redis: each tenant's events and deliveries wait in a lane of their own,
a claim shares its limit between the lanes (so one tenant's backlog never keeps another's work waiting more
than a claim), the lanes index stays right, and every step that moves a delivery (defer, record, replay,
purge, drop, a tenant's deletion) moves it within its own lane."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from dispatcher.defaults import LANES_PER_CLAIM
from dispatcher.events import NewEvent
from dispatcher.ids import delivery_id
from dispatcher.models import DEFAULT_TENANT
from dispatcher.store import Store
from dispatcher.store.work import FanoutItem, Outcome, SlotMode, Stage

NOISY, QUIET = "noisy", "quiet"


@pytest.fixture
def tenants(store: Store) -> None:
    store.tenants.create(NOISY)
    store.tenants.create(QUIET)


def ids_of(claimed: list[Any]) -> set[str]:
    return {c.id for c in claimed}


def fan_out_all(store: Store, limit: int = 1000) -> dict[str, list[str]]:
    """Claim every due event and give each one delivery (to ``ep_<tenant>``); event id -> delivery ids."""
    claim = store.queue.claim_events(limit)
    items = []
    for e in claim.events:
        ep = f"ep_{e.tenant}"
        items.append(FanoutItem(e, deliveries=[(ep, delivery_id(e.id, ep))]))
    store.queue.commit_fanout(items)
    return {item.event.id: [d for _, d in item.deliveries] for item in items}


def test_a_tenant_s_events_wait_in_its_own_lane(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], tenants: None
) -> None:
    k = store.keys
    a, b = new_event(tenant=NOISY), new_event()
    store.queue.enqueue([a, b])
    assert raw_redis.zcard(k.fanout_lane(NOISY)) == 1 and raw_redis.zcard(k.fanout) == 1
    assert [t.decode() for t in raw_redis.zrange(k.fanout_lanes, 0, -1)] == [NOISY]  # the default is not listed
    assert store.queue.pending() == 2
    claim = store.queue.claim_events(10)
    assert {(e.id, e.tenant) for e in claim.events} == {(a.id, NOISY), (b.id, DEFAULT_TENANT)}


def test_a_claim_shares_its_limit_and_a_backlog_cannot_keep_another_lane_waiting(
    store: Store, new_event: Callable[..., NewEvent], tenants: None
) -> None:
    backlog = [new_event(tenant=NOISY) for _ in range(300)]
    for start in range(0, 300, 100):
        store.queue.enqueue(backlog[start : start + 100])
    quiet = new_event(tenant=QUIET)
    store.queue.enqueue([quiet])  # queued after the whole backlog
    first = store.queue.claim_events(100)
    assert quiet.id in ids_of(first.events)  # in the very first claim, not after 300 others
    assert len(first.events) == 51  # while another lane has work, the backlog gets its share: a smaller batch
    assert len(store.queue.claim_events(100).events) == 100  # alone again: the whole limit


def test_a_lone_backlog_still_fills_every_claim(
    store: Store, new_event: Callable[..., NewEvent], tenants: None
) -> None:
    store.queue.enqueue([new_event(tenant=NOISY) for _ in range(250)])
    assert [len(store.queue.claim_events(100).events) for _ in range(4)] == [100, 100, 50, 0]


def test_deliveries_wait_in_their_tenant_s_lane_and_come_back_to_it(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], tenants: None, redis_ms: Callable[[], int]
) -> None:
    k = store.keys
    ev = new_event(tenant=QUIET)
    store.queue.enqueue([ev])
    (did,) = fan_out_all(store)[ev.id]
    assert raw_redis.zscore(k.due_lane(QUIET), did) is not None and raw_redis.zcard(k.due) == 0
    assert raw_redis.hget(k.delivery(did), "tenant") == QUIET.encode()
    claim = store.queue.claim_deliveries(10)
    assert [(d[0], d[6]) for d in claim.deliveries] == [(did, QUIET)]
    later = redis_ms() + 60_000
    attempt = orjson.dumps({"n": 1, "at": 1.0, "status": 500})
    retry = Outcome(did, ev.id, f"ep_{QUIET}", "retrying", 1, 1, attempt, later, tenant=QUIET)
    store.queue.record([retry], {}, redis_ms())
    assert raw_redis.zscore(k.due_lane(QUIET), did) == later and raw_redis.zcard(k.due) == 0
    assert raw_redis.zscore(k.due_lanes, QUIET) is not None
    store.queue.defer({did: (redis_ms() - 1, QUIET)})  # handed back, due at once
    assert [d[0] for d in store.queue.claim_deliveries(10).deliveries] == [did]
    done = Outcome(did, ev.id, f"ep_{QUIET}", "dead", 2, 2, attempt, None, True, tenant=QUIET)
    store.queue.record([done], {}, redis_ms())
    assert raw_redis.zcard(k.due_lane(QUIET)) == 0
    store.records.replay(did)  # back into its own lane, listed again
    assert raw_redis.zscore(k.due_lane(QUIET), did) is not None and raw_redis.zcard(k.due) == 0
    assert [(d[0], d[6]) for d in store.queue.claim_deliveries(10).deliveries] == [(did, QUIET)]
    assert store.queue.purge_endpoint(f"ep_{QUIET}", "endpoint deleted") == 1
    assert store.queue.pending() == 0


def test_the_index_forgets_empty_lanes_and_a_slot_is_freed_only_when_no_lane_is_due(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], tenants: None
) -> None:
    k = store.keys
    ev = new_event(tenant=QUIET)
    store.queue.enqueue([ev])
    fan_out_all(store)  # the event's entry is gone, its lane's index entry is now a stale lower bound
    slot = store.queue.take_slots(Stage.FANOUT, 1)[0]
    assert store.queue.claim_events(10, slot, SlotMode.RELEASE_IF_EMPTY).events == []
    assert raw_redis.zscore(k.fanout_lanes, QUIET) is None  # put right by the claim
    assert raw_redis.exists(k.kick(Stage.FANOUT, slot)) == 0  # nothing due in any lane: freed
    assert store.queue.handoff(Stage.DELIVER, 1)  # the delivery is due in the quiet lane
    assert store.queue.count_due(Stage.DELIVER, 10) == 1


def test_more_lanes_than_one_claim_looks_at_are_all_claimed(store: Store, new_event: Callable[..., NewEvent]) -> None:
    names = [f"t{i:02d}" for i in range(LANES_PER_CLAIM + 8)]
    events = []
    for name in names:
        store.tenants.create(name)
        events.append(new_event(tenant=name))
    store.queue.enqueue(events)
    assert store.queue.count_due(Stage.FANOUT, 1000) >= LANES_PER_CLAIM
    seen: set[str] = set()
    for _ in range(4):
        seen |= {e.tenant for e in store.queue.claim_events(1000).events}
    assert seen == set(names)


def test_a_malformed_job_is_dropped_from_its_own_lane(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], tenants: None
) -> None:
    k = store.keys
    ev = new_event(tenant=NOISY)
    store.queue.enqueue([ev])
    (did,) = fan_out_all(store)[ev.id]
    raw_redis.hset(k.jobs, did, "not a job")
    claim = store.queue.claim_deliveries(10)
    assert claim.malformed == [(did.encode(), NOISY)]
    store.queue.drop(claim.malformed)
    assert raw_redis.zcard(k.due_lane(NOISY)) == 0 and not raw_redis.hexists(k.jobs, did)


def test_dropping_a_deleted_tenant_s_lanes(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], tenants: None
) -> None:
    k = store.keys
    store.queue.enqueue([new_event(tenant=NOISY) for _ in range(3)])
    store.queue.drop_lanes(NOISY)
    assert raw_redis.exists(k.fanout_lane(NOISY)) == 0 and raw_redis.zscore(k.fanout_lanes, NOISY) is None
    assert store.queue.pending() == 0
