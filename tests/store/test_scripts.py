"""Each Lua script of ``store/lua`` through its Python wrapper, on a real Redis: what it writes, what it
returns, and the guards it exists for (idempotency, leases, a redone fan-out creating nothing twice, stale
outcomes, compare-and-set). ``endpoint_write`` is in ``test_endpoints.py``; ``test_lua_source.py`` checks the
scripts' text (headers, declared keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from dispatcher.defaults import SLOT_QUEUED_TTL_MS, SLOT_RUNNING_TTL_MS, STATS_MINUTE_TTL_S
from dispatcher.errors import CursorExpired
from dispatcher.events import NewEvent
from dispatcher.ids import delivery_id
from dispatcher.models import DEFAULT_TENANT, Endpoint
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store import pull_log as pull_log_module
from dispatcher.store.keys import Keys
from dispatcher.store.pull_log import PullLog
from dispatcher.store.ratelimits import HOLD_TTL_MS
from dispatcher.store.work import Counter, FanoutItem, Outcome, SlotMode, Stage

EP1, EP2 = "ep_one", "ep_two"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hash_of(r: redis.Redis, key: str) -> dict[str, str]:
    return {text(k): text(v) for k, v in r.hgetall(key).items()}


def fan_out(store: Store, events: list[NewEvent], endpoints: tuple[str, ...] = (EP1,)) -> dict[str, list[str]]:
    """Store ``events`` and fan each out to ``endpoints`` (through the real scripts); event id -> delivery ids."""
    store.queue.enqueue(events)
    claim = store.queue.claim_events(100)
    items = [FanoutItem(e, deliveries=[(ep, delivery_id(e.id, ep)) for ep in endpoints]) for e in claim.events]
    store.queue.commit_fanout(items)
    return {item.event.id: [d for _, d in item.deliveries] for item in items}


def outcome(
    did: str,
    eid: str,
    state: str,
    n: int,
    *,
    ep: str = EP1,
    r: int | None = None,
    next_ms: int | None = None,
    dead_letter: bool = False,
    status: int = 500,
) -> Outcome:
    attempt = orjson.dumps({"n": n, "at": 1.0, "status": status, "latency_ms": 3.0})
    return Outcome(did, eid, ep, state, n, n if r is None else r, attempt, next_ms, dead_letter)


# -- enqueue ------------------------------------------------------------------------------------------
def test_enqueue_stores_each_event_and_queues_it_due_now(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    before = redis_ms()
    plain, addressed = new_event("order.paid", {"n": 1}), new_event("webhook.test", endpoint_ids=[EP1, EP2])
    done = store.queue.enqueue([plain, addressed])
    assert done.ids == [plain.id, addressed.id] and done.fresh == [True, True]
    k = store.keys
    stored = hash_of(raw_redis, k.event(plain.id))
    assert stored["body"] == plain.body.decode() and stored["type"] == "order.paid" and "only" not in stored
    assert before <= int(stored["ts"]) <= redis_ms()
    assert hash_of(raw_redis, k.event(addressed.id))["only"] == f"{EP1},{EP2}"
    assert 0 < raw_redis.ttl(k.event(plain.id)) <= store.settings.retention_s
    queued = {text(m): int(s) for m, s in raw_redis.zrange(k.fanout, 0, -1, withscores=True)}
    assert queued == {
        f"{plain.id} order.paid": int(stored["ts"]),
        f"{addressed.id} webhook.test {EP1},{EP2}": int(hash_of(raw_redis, k.event(addressed.id))["ts"]),
    }
    assert int(raw_redis.get(k.stats_enqueued) or 0) == 2


def test_an_event_id_seen_before_returns_it_and_writes_nothing(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    first = new_event("a.b", {"v": 1}, event_id="evt-fixed")
    assert store.queue.enqueue([first]).fresh == [True]
    again = store.queue.enqueue([new_event("a.b", {"v": 2}, event_id="evt-fixed")])
    assert again.ids == ["evt-fixed"] and again.fresh == [False] and again.kick is False
    assert raw_redis.hget(store.keys.event("evt-fixed"), "body") == first.body  # the first body stays
    assert raw_redis.zcard(store.keys.fanout) == 1
    assert int(raw_redis.get(store.keys.stats_enqueued) or 0) == 1


def test_an_idempotency_key_seen_before_returns_the_first_event_id(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    first = new_event("order.paid", {"n": 1}, idempotency_key="order-1")
    assert store.queue.enqueue([first]).ids == [first.id]
    k = store.keys
    assert raw_redis.get(k.idempotency("order-1")) == first.id.encode()
    assert 0 < raw_redis.ttl(k.idempotency("order-1")) <= store.settings.idempotency_ttl_s
    second = new_event("order.paid", {"n": 2}, idempotency_key="order-1")
    done = store.queue.enqueue([second])
    assert done.ids == [first.id] and done.fresh == [False]
    assert not raw_redis.exists(k.event(second.id))  # nothing written for the repeat
    # within one batch too: the second of two events with one key gets the first one's id
    a, b = new_event("x.y", idempotency_key="k-2"), new_event("x.y", idempotency_key="k-2")
    assert store.queue.enqueue([a, b]).ids == [a.id, a.id]
    assert not raw_redis.exists(k.event(b.id))
    assert raw_redis.zcard(k.fanout) == 2
    assert int(raw_redis.get(k.stats_enqueued) or 0) == 2


def test_enqueue_is_all_or_nothing_when_a_later_event_fails(
    store: Store, raw_redis: redis.Redis, prefix: str, new_event: Callable[..., NewEvent]
) -> None:
    raw_redis.hset(store.keys.idempotency("taken"), "not", "a string")  # a key of the wrong type
    good, bad = new_event("a.b"), new_event("a.b", idempotency_key="taken")
    with pytest.raises(redis.ResponseError):
        store.queue.enqueue([good, bad])
    assert not raw_redis.exists(store.keys.event(good.id))
    assert raw_redis.zcard(store.keys.fanout) == 0


def test_enqueue_takes_the_fanout_slot_only_when_it_is_free(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    slot = store.keys.kick(Stage.FANOUT, 1)
    assert store.queue.enqueue([new_event()]).kick is True  # the caller publishes the kick
    assert 0 < raw_redis.pttl(slot) <= SLOT_QUEUED_TTL_MS
    assert store.queue.enqueue([new_event()]).kick is False  # held: a task will see the event
    raw_redis.delete(slot)  # the task ended and freed it
    seen = new_event(event_id="evt-once")
    assert store.queue.enqueue([seen]).kick is True
    raw_redis.delete(slot)
    assert store.queue.enqueue([new_event(event_id="evt-once")]).kick is False  # nothing new: no kick
    assert not raw_redis.exists(slot)


# -- claim_events / fanout_commit ---------------------------------------------------------------------
def test_claim_events_leases_due_entries_until_the_lease_runs_out(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    events = [new_event("order.paid"), new_event("user.created"), new_event("webhook.test", endpoint_ids=[EP1])]
    store.queue.enqueue(events)
    k = store.keys
    expected = {e.id: (e.type, [EP1] if e.only else None) for e in events}
    first = store.queue.claim_events(2)
    assert abs(first.now_ms - redis_ms()) < 1000 and first.version == b""
    assert len(first.events) == 2
    for e in first.events:  # parsed from the queue entry; hidden until the lease's end
        assert (e.type, e.only) == expected[e.id]
        assert raw_redis.zscore(k.fanout, e.entry) == first.now_ms + store.queue.lease_ms
    raw_redis.incr(k.endpoints_version)
    second = store.queue.claim_events(10)
    assert second.version == b"1" and len(second.events) == 1
    assert {e.id for e in first.events + second.events} == set(expected)
    assert (second.events[0].type, second.events[0].only) == expected[second.events[0].id]
    assert store.queue.claim_events(10).events == []
    raw_redis.zadd(k.fanout, {first.events[0].entry: 0})  # that worker died: its lease ran out
    assert [e.id for e in store.queue.claim_events(10).events] == [first.events[0].id]


@pytest.mark.parametrize("stage", [Stage.FANOUT, Stage.DELIVER])
def test_claims_keep_refresh_or_release_the_callers_slot(
    stage: Stage, store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    claim = store.queue.claim_events if stage is Stage.FANOUT else store.queue.claim_deliveries
    slot = store.keys.kick(stage, 2)
    raw_redis.set(slot, "1", px=1000)
    claim(10, 2, SlotMode.NONE)  # nothing due, no slot held: untouched
    assert 0 < raw_redis.pttl(slot) <= 1000
    claim(10, 2, SlotMode.KEEP)  # nothing due, the task goes on: refreshed
    assert raw_redis.pttl(slot) > 1000
    claim(10, 2, SlotMode.RELEASE_IF_EMPTY)  # nothing due: freed, so the next enqueue kicks again
    assert not raw_redis.exists(slot)
    if stage is Stage.FANOUT:
        store.queue.enqueue([new_event()])
    else:
        fan_out(store, [new_event()])
    got = claim(10, 2, SlotMode.RELEASE_IF_EMPTY)  # work found: the slot is (re)taken, not freed
    assert len(got.events if stage is Stage.FANOUT else got.deliveries) == 1  # type: ignore[union-attr]
    assert 0 < raw_redis.pttl(slot) <= SLOT_RUNNING_TTL_MS


def test_commit_fanout_creates_each_delivery_with_its_job_and_the_body_once(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    ev = new_event("order.paid", {"total": 5})
    store.queue.enqueue([ev])
    (claimed,) = store.queue.claim_events(10).events
    d1, d2 = delivery_id(ev.id, EP1), delivery_id(ev.id, EP2)
    assert store.queue.commit_fanout([FanoutItem(claimed, deliveries=[(EP1, d1), (EP2, d2)])]).created == 2
    k = store.keys
    ts = hash_of(raw_redis, k.event(ev.id))["ts"]
    for ep, did in ((EP1, d1), (EP2, d2)):
        record = hash_of(raw_redis, k.delivery(did))
        assert {f: record[f] for f in ("evt", "ep", "state", "n", "r", "next")} == {
            "evt": ev.id, "ep": ep, "state": "pending", "n": "0", "r": "0", "next": ts,
        }  # fmt: skip
        assert 0 < raw_redis.ttl(k.delivery(did)) <= store.settings.retention_s
        assert raw_redis.zscore(k.due, did) == int(ts)  # due at the event's time
        assert raw_redis.hget(k.jobs, did) == f"{ev.id} {ep} 0 0".encode()
        assert raw_redis.zscore(k.endpoint_deliveries(ep), did) is not None
    assert raw_redis.hget(k.bodies, ev.id) == ev.body  # one copy for both deliveries
    assert raw_redis.hget(k.refs, ev.id) == b"2"
    assert raw_redis.hget(k.event(ev.id), "deliveries") == f"{d1},{d2}".encode()
    assert raw_redis.zcard(k.fanout) == 0


def test_a_fanout_redone_after_a_lost_lease_creates_nothing_twice(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    ev = new_event()
    store.queue.enqueue([ev])
    (stalled,) = store.queue.claim_events(10).events  # a worker claims it, then stalls past its lease
    k = store.keys
    raw_redis.zadd(k.fanout, {stalled.entry: 0})
    (again,) = store.queue.claim_events(10).events  # another worker fans it out
    item = FanoutItem(again, deliveries=[(EP1, delivery_id(ev.id, EP1))], logs=[EP2])
    assert store.queue.commit_fanout([item]).created == 1
    snapshot = {
        "due": raw_redis.zrange(k.due, 0, -1, withscores=True),
        "jobs": raw_redis.hgetall(k.jobs),
        "refs": raw_redis.hgetall(k.refs),
        "bodies": raw_redis.hgetall(k.bodies),
        "delivery": raw_redis.hgetall(k.delivery(delivery_id(ev.id, EP1))),
        "log": raw_redis.xrange(k.stream(EP2)),
        "event": raw_redis.hgetall(k.event(ev.id)),
    }
    raw_redis.zadd(k.fanout, {stalled.entry: 0})  # (as if it were queued again)
    # the stalled worker wakes up and commits the fan-out it had prepared
    redo = FanoutItem(stalled, deliveries=[(EP1, delivery_id(ev.id, EP1))], logs=[EP2])
    assert store.queue.commit_fanout([redo]).created == 0
    assert snapshot == {
        "due": raw_redis.zrange(k.due, 0, -1, withscores=True),
        "jobs": raw_redis.hgetall(k.jobs),
        "refs": raw_redis.hgetall(k.refs),
        "bodies": raw_redis.hgetall(k.bodies),
        "delivery": raw_redis.hgetall(k.delivery(delivery_id(ev.id, EP1))),
        "log": raw_redis.xrange(k.stream(EP2)),
        "event": raw_redis.hgetall(k.event(ev.id)),
    }
    assert len(snapshot["log"]) == 1  # appended to the pull log once
    assert raw_redis.zcard(k.fanout) == 0  # and taken off the queue


def test_commit_fanout_appends_to_pull_logs_chained_and_once(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    events = [new_event("a.b", {"i": i}) for i in range(2)]
    store.queue.enqueue(events)
    claimed = store.queue.claim_events(10).events
    assert store.queue.commit_fanout([FanoutItem(e, logs=[EP1]) for e in claimed]).created == 0  # no delivery to POST
    k = store.keys
    entries = raw_redis.xrange(k.stream(EP1))
    fields = [{text(f): text(v) for f, v in e[1].items()} for e in entries]
    assert [f["id"] for f in fields] == [e.id for e in claimed]  # in claim order
    assert [f["prev"] for f in fields] == ["0-0", text(entries[0][0])]
    first = next(e for e in events if e.id == fields[0]["id"])
    assert fields[0]["body"] == first.body.decode() and fields[0]["type"] == "a.b"
    assert fields[0]["ts"] == hash_of(raw_redis, k.event(first.id))["ts"]
    assert not raw_redis.exists(k.due) and raw_redis.hlen(k.bodies) == 0 and raw_redis.hlen(k.refs) == 0


def test_an_expired_event_is_only_taken_off_the_queue(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    ev = new_event()
    store.queue.enqueue([ev])
    (claimed,) = store.queue.claim_events(10).events
    k = store.keys
    raw_redis.delete(k.event(ev.id))  # its retention ran out while it waited
    did = delivery_id(ev.id, EP1)
    assert store.queue.commit_fanout([FanoutItem(claimed, deliveries=[(EP1, did)], logs=[EP2])]).created == 0
    assert raw_redis.zcard(k.fanout) == 0
    for key in (k.delivery(did), k.due, k.jobs, k.bodies, k.refs, k.stream(EP2), k.event(ev.id)):
        assert not raw_redis.exists(key), key


# -- claim_deliveries ---------------------------------------------------------------------------------
def test_claim_deliveries_leases_them_with_what_sending_needs(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    ev = new_event("a.b", {"x": 1})
    (d1, d2) = fan_out(store, [ev], (EP1, EP2))[ev.id]
    k = store.keys
    raw_redis.zadd(k.due, {d2: 4_000_000_000_000})  # not due yet
    claim = store.queue.claim_deliveries(10)
    assert claim.deliveries == [(d1, EP1, ev.id, 0, 0, ev.body, DEFAULT_TENANT)] and claim.orphans == []
    assert raw_redis.zscore(k.due, d1) == claim.now_ms + store.queue.lease_ms
    assert store.queue.claim_deliveries(10).deliveries == []  # leased: hidden
    raw_redis.zadd(k.due, {d1: 0, d2: 1})
    assert [row[0] for row in store.queue.claim_deliveries(1).deliveries] == [d1]  # the limit holds, oldest first


def test_queued_ids_without_a_job_are_dropped_and_reported(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    ev = new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    k = store.keys
    raw_redis.zadd(k.due, {"dlv_ghost": 0})  # queued, but no job: a record from nowhere
    claim = store.queue.claim_deliveries(10)
    assert [row[0] for row in claim.deliveries] == [did] and claim.orphans == ["dlv_ghost"]
    assert raw_redis.zscore(k.due, "dlv_ghost") is None


def test_a_delivery_whose_body_is_gone_is_claimed_without_one(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    ev = new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    raw_redis.hdel(store.keys.bodies, ev.id)
    assert store.queue.claim_deliveries(10).deliveries == [(did, EP1, ev.id, 0, 0, None, DEFAULT_TENANT)]


# -- record -------------------------------------------------------------------------------------------
def test_a_retrying_outcome_reschedules_and_updates_the_job(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    ev = new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    store.queue.claim_deliveries(10)
    now = redis_ms()
    store.queue.record([outcome(did, ev.id, "retrying", 1, next_ms=now + 5000)], {}, now)
    k = store.keys
    assert raw_redis.zscore(k.due, did) == now + 5000
    assert raw_redis.hget(k.jobs, did) == f"{ev.id} {EP1} 1 1 s".encode()  # s: still its event's only delivery
    record = hash_of(raw_redis, k.delivery(did))
    assert (record["state"], record["n"], record["r"], record["next"]) == ("retrying", "1", "1", str(now + 5000))
    assert orjson.loads(record["a1"])["status"] == 500
    assert not raw_redis.hexists(k.refs, ev.id) and raw_redis.hget(k.bodies, ev.id) == ev.body


def test_an_events_only_delivery_holds_its_body_uncounted_and_releases_it_when_final(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    """One delivery: no count in ``refs`` to write and decrement; its final outcome releases the body alone,
    and a replay of it counts the body like any other."""
    ev, other = new_event(), new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    d1, _ = fan_out(store, [other], (EP1, EP2))[other.id]
    k = store.keys
    assert raw_redis.hget(k.jobs, did) == f"{ev.id} {EP1} 0 0 s".encode()
    assert raw_redis.hget(k.jobs, d1) == f"{other.id} {EP1} 0 0".encode()
    assert not raw_redis.hexists(k.refs, ev.id) and raw_redis.hget(k.refs, other.id) == b"2"
    claimed = {d[0]: d for d in store.queue.claim_deliveries(10).deliveries}
    assert claimed[did] == (did, EP1, ev.id, 0, 0, ev.body, DEFAULT_TENANT)
    store.queue.record([outcome(did, ev.id, "dead", 1, dead_letter=True)], {}, redis_ms())
    assert not raw_redis.hexists(k.bodies, ev.id) and not raw_redis.hexists(k.refs, ev.id)
    assert raw_redis.hget(k.bodies, other.id) == other.body  # another event's body is not touched
    store.records.replay(did)
    assert raw_redis.hget(k.jobs, did) == f"{ev.id} {EP1} 1 0".encode()
    assert raw_redis.hget(k.refs, ev.id) == b"1" and raw_redis.hget(k.bodies, ev.id) == ev.body
    store.queue.record([outcome(did, ev.id, "delivered", 2, status=200)], {}, redis_ms())
    assert not raw_redis.hexists(k.bodies, ev.id) and not raw_redis.hexists(k.refs, ev.id)


def test_final_outcomes_release_the_body_with_the_last_pending_delivery(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    ev = new_event()
    d1, d2 = fan_out(store, [ev], (EP1, EP2))[ev.id]
    k = store.keys
    now = redis_ms()
    store.queue.record([outcome(d1, ev.id, "delivered", 1, status=200)], {}, now)
    assert raw_redis.zscore(k.due, d1) is None and not raw_redis.hexists(k.jobs, d1)
    assert hash_of(raw_redis, k.delivery(d1))["state"] == "delivered"
    assert raw_redis.hget(k.refs, ev.id) == b"1" and raw_redis.hget(k.bodies, ev.id) == ev.body  # d2 still needs it
    store.queue.record([outcome(d2, ev.id, "dead", 1, ep=EP2, dead_letter=True)], {}, now)
    assert not raw_redis.hexists(k.refs, ev.id) and not raw_redis.hexists(k.bodies, ev.id)
    assert raw_redis.zscore(k.due, d2) is None and not raw_redis.hexists(k.jobs, d2)
    assert hash_of(raw_redis, k.delivery(d2))["state"] == "dead"
    assert raw_redis.zscore(k.endpoint_dead(EP2), d2) == now  # a dead letter, at the outcome's time
    assert raw_redis.zcard(k.endpoint_dead(EP1)) == 0


def test_a_dead_outcome_is_a_dead_letter_only_when_asked(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    ev = new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    store.queue.record([outcome(did, ev.id, "dead", 1, dead_letter=False)], {}, redis_ms())
    assert hash_of(raw_redis, store.keys.delivery(did))["state"] == "dead"
    assert raw_redis.zcard(store.keys.endpoint_dead(EP1)) == 0


def test_record_adds_the_counters_and_expires_the_minute(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    ev = new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    now = redis_ms()
    counters = {
        (Counter.OUTCOMES, f"{EP1}:delivered"): 1,
        (Counter.LATENCY, "25"): 1,
        (Counter.LATENCY, "count"): 1,
        (Counter.LATENCY, "sum_ms"): 17,
        (Counter.MINUTE, "delivered"): 1,
    }
    store.queue.record([outcome(did, ev.id, "delivered", 1, status=200)], counters, now)
    store.queue.record([], {(Counter.OUTCOMES, f"{EP1}:delivered"): 2}, now)
    k = store.keys
    assert hash_of(raw_redis, k.stats_outcomes) == {f"{EP1}:delivered": "3"}
    assert hash_of(raw_redis, k.stats_latency) == {"25": "1", "count": "1", "sum_ms": "17"}
    minute = k.stats_minute(now // 60000)
    assert hash_of(raw_redis, minute) == {"delivered": "1"}
    assert STATS_MINUTE_TTL_S - 5 <= raw_redis.ttl(minute) <= STATS_MINUTE_TTL_S


def test_a_stale_outcome_for_a_finished_delivery_changes_nothing_but_its_attempt(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    """A worker whose lease ran out records after another worker delivered: the attempt is kept, the
    finished delivery never comes back (not queued, no job, no dead letter, the body not released twice)."""
    ev = new_event()
    d1, _ = fan_out(store, [ev], (EP1, EP2))[ev.id]
    k = store.keys
    now = redis_ms()
    store.queue.record([outcome(d1, ev.id, "delivered", 1, status=200)], {}, now)  # the other worker
    before = {
        "due": raw_redis.zrange(k.due, 0, -1, withscores=True),
        "jobs": raw_redis.hgetall(k.jobs),
        "refs": raw_redis.hgetall(k.refs),
        "bodies": raw_redis.hgetall(k.bodies),
    }
    stale = [
        outcome(d1, ev.id, "retrying", 2, next_ms=now + 1000),
        outcome(d1, ev.id, "dead", 3, dead_letter=True),
    ]
    for late in stale:
        store.queue.record([late], {}, now)
    record = hash_of(raw_redis, k.delivery(d1))
    assert (record["state"], record["n"]) == ("delivered", "1")  # unchanged
    assert {"a1", "a2", "a3"} <= set(record)  # but both late attempts are on file
    assert before == {
        "due": raw_redis.zrange(k.due, 0, -1, withscores=True),
        "jobs": raw_redis.hgetall(k.jobs),
        "refs": raw_redis.hgetall(k.refs),
        "bodies": raw_redis.hgetall(k.bodies),
    }
    assert raw_redis.hget(k.refs, ev.id) == b"1"  # d2's claim on the body stands
    assert raw_redis.zcard(k.endpoint_dead(EP1)) == 0


# -- replay ---------------------------------------------------------------------------------------------
def test_replay_queues_a_dead_delivery_again_and_brings_its_body_back(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    ev = new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    k = store.keys
    store.queue.record([outcome(did, ev.id, "retrying", 1, next_ms=0)], {}, redis_ms())
    store.queue.record([outcome(did, ev.id, "dead", 2, dead_letter=True)], {}, redis_ms())
    assert not raw_redis.hexists(k.bodies, ev.id)  # released with the last pending delivery
    before = redis_ms()
    store.records.replay(did)
    record = hash_of(raw_redis, k.delivery(did))
    assert (record["state"], record["n"], record["r"]) == ("pending", "2", "0")  # a new round, attempts kept
    assert before <= int(raw_redis.zscore(k.due, did) or 0) <= redis_ms()
    assert raw_redis.hget(k.jobs, did) == f"{ev.id} {EP1} 2 0".encode()
    assert raw_redis.zcard(k.endpoint_dead(EP1)) == 0
    assert raw_redis.hget(k.refs, ev.id) == b"1" and raw_redis.hget(k.bodies, ev.id) == ev.body
    assert store.queue.claim_deliveries(10).deliveries == [(did, EP1, ev.id, 2, 0, ev.body, DEFAULT_TENANT)]


def test_replay_counts_the_body_once_more_when_another_delivery_still_holds_it(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    ev = new_event()
    d1, _ = fan_out(store, [ev], (EP1, EP2))[ev.id]
    store.queue.record([outcome(d1, ev.id, "dead", 1, dead_letter=True)], {}, redis_ms())
    assert raw_redis.hget(store.keys.refs, ev.id) == b"1"
    store.records.replay(d1)
    assert raw_redis.hget(store.keys.refs, ev.id) == b"2"
    assert raw_redis.hget(store.keys.bodies, ev.id) == ev.body


def test_the_replay_script_refuses_what_is_not_dead_or_not_as_read(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent], redis_ms: Callable[[], int]
) -> None:
    ev = new_event()
    (did,) = fan_out(store, [ev])[ev.id]
    k = store.keys

    def replay(event_id: str, endpoint_id: str, delivery: str = did) -> int:
        keys = [k.delivery(delivery), k.due, k.endpoint_dead(endpoint_id), k.jobs, k.bodies, k.refs, k.event(event_id)]
        return int(store.scripts.run("replay", [*keys, k.due_lanes], [delivery, event_id, endpoint_id, ""]))

    assert replay(ev.id, EP1) == 0  # pending: not dead
    store.queue.record([outcome(did, ev.id, "dead", 1, dead_letter=True)], {}, redis_ms())
    assert replay("msg_other", EP1) == -1  # the record changed since it was read
    assert replay(ev.id, EP2) == -1
    assert replay(ev.id, EP1, "dlv_missing") == -1
    assert hash_of(raw_redis, k.delivery(did))["state"] == "dead"  # none of those wrote anything
    assert replay(ev.id, EP1) == 1


# -- kick slots: take_slots, handoff, count_due ---------------------------------------------------------
@pytest.fixture
def slotted(settings_for: Callable[..., Settings]) -> Iterator[Store]:
    s = Store(settings_for(kick_parallelism=3))
    yield s
    s.close()


def test_take_slots_takes_free_slots_up_to_kick_parallelism_and_never_one_twice(
    slotted: Store, raw_redis: redis.Redis
) -> None:
    q, k = slotted.queue, slotted.keys
    assert q.take_slots(Stage.DELIVER, 2) == [1, 2]
    assert q.take_slots(Stage.DELIVER, 5) == [3]  # bounded by kick_parallelism (3)
    assert q.take_slots(Stage.DELIVER, 5) == []  # every slot held
    for n in (1, 2, 3):
        assert 0 < raw_redis.pttl(k.kick(Stage.DELIVER, n)) <= SLOT_QUEUED_TTL_MS
    assert not raw_redis.exists(k.kick(Stage.DELIVER, 4))
    assert q.take_slots(Stage.FANOUT, 1) == [1]  # the other stage's slots are its own
    raw_redis.delete(k.kick(Stage.DELIVER, 2))  # its task ended
    assert q.take_slots(Stage.DELIVER, 5) == [2]
    assert q.take_slots(Stage.DELIVER, 0) == []


@pytest.mark.parametrize("stage", [Stage.FANOUT, Stage.DELIVER])
def test_handoff_keeps_the_slot_when_work_is_due_and_frees_it_when_not(
    stage: Stage, slotted: Store, raw_redis: redis.Redis, redis_ms: Callable[[], int]
) -> None:
    q, k = slotted.queue, slotted.keys
    queue_key = k.fanout if stage is Stage.FANOUT else k.due
    slot = k.kick(stage, 2)
    raw_redis.set(slot, "1", px=500)
    raw_redis.zadd(queue_key, {"later": redis_ms() + 60_000})  # not due
    assert q.handoff(stage, 2) is False
    assert not raw_redis.exists(slot)  # freed: the next publisher kicks
    raw_redis.zadd(queue_key, {"now": redis_ms() - 1})
    assert q.handoff(stage, 2) is True  # kept (taken again): the caller publishes a follow-up kick
    assert 500 < raw_redis.pttl(slot) <= SLOT_QUEUED_TTL_MS


@pytest.mark.parametrize("stage", [Stage.FANOUT, Stage.DELIVER])
def test_count_due_counts_what_is_due_by_redis_clock_up_to_the_cap(
    stage: Stage, store: Store, raw_redis: redis.Redis, redis_ms: Callable[[], int]
) -> None:
    queue_key = store.keys.fanout if stage is Stage.FANOUT else store.keys.due
    assert store.queue.count_due(stage, 100) == 0
    now = redis_ms()
    raw_redis.zadd(queue_key, {f"due{i}": now - 1000 + i for i in range(5)})
    raw_redis.zadd(queue_key, {f"later{i}": now + 60_000 for i in range(3)})
    assert store.queue.count_due(stage, 100) == 5
    assert store.queue.count_due(stage, 3) == 3


# -- read_stream ----------------------------------------------------------------------------------------
def read_log(settings: Settings, endpoint: Endpoint, after: str | None, limit: int = 100) -> Any:
    async def go() -> Any:
        log = PullLog(settings)
        try:
            return await log.read(endpoint, after, limit)
        finally:
            await log.aclose()

    return asyncio.run(go())


@pytest.fixture
def logged(raw_redis: redis.Redis, store_keys: Keys) -> Endpoint:
    """A poll endpoint (not stored: read_stream needs only its id and secret) whose log holds entries
    1-0 .. 5-0, each chained to the one before."""
    ep = Endpoint(id="ep_log", url="", event_types=["*"], secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", kind="poll")
    prev = "0-0"
    for i in range(1, 6):
        fields = {"prev": prev, "id": f"msg_{i}", "type": "a.b", "ts": 1000 + i, "body": b'{"n": %d}' % i}
        prev = text(raw_redis.xadd(store_keys.stream(ep.id), fields, id=f"{i}-0"))  # type: ignore[arg-type]
    return ep


def test_read_stream_pages_after_a_cursor(settings: Settings, logged: Endpoint) -> None:
    page = read_log(settings, logged, "0-0", limit=2)
    assert [e["id"] for e in page.events] == ["msg_1", "msg_2"] and page.has_more is True
    assert page.cursor == f"{logged.id}:2-0" and page.position == "2-0"
    rest = read_log(settings, logged, page.position)
    assert [e["id"] for e in rest.events] == ["msg_3", "msg_4", "msg_5"] and rest.has_more is False
    empty = read_log(settings, logged, "5-0")
    assert empty.events == [] and empty.cursor == f"{logged.id}:5-0"  # nothing new: the cursor asked for


def test_read_stream_latest_is_the_newest_entry_without_events(settings: Settings, logged: Endpoint) -> None:
    page = read_log(settings, logged, None)
    assert page.events == [] and page.position == "5-0"
    other = logged.model_copy(update={"id": "ep_empty"})
    assert read_log(settings, other, None).position == "0-0"


def test_read_stream_stops_at_max_bytes_but_returns_at_least_one(
    settings: Settings, logged: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pull_log_module, "MAX_PAGE_BYTES", 18)  # each body is 8 bytes
    page = read_log(settings, logged, "0-0")
    assert [e["id"] for e in page.events] == ["msg_1", "msg_2", "msg_3"] and page.has_more is True
    monkeypatch.setattr(pull_log_module, "MAX_PAGE_BYTES", 1)
    assert [e["id"] for e in read_log(settings, logged, "0-0").events] == ["msg_1"]


def test_read_stream_refuses_a_cursor_whose_next_entries_were_trimmed(
    settings: Settings, logged: Endpoint, raw_redis: redis.Redis, store_keys: Keys
) -> None:
    raw_redis.xdel(store_keys.stream(logged.id), "1-0", "2-0")  # trimmed: 3-0 (prev 2-0) comes first now
    with pytest.raises(CursorExpired) as info:
        read_log(settings, logged, "1-0")
    assert info.value.resume_cursor == f"{logged.id}:2-0" and f"{logged.id}:2-0" in str(info.value)
    assert [e["id"] for e in read_log(settings, logged, "2-0").events] == ["msg_3", "msg_4", "msg_5"]
    assert read_log(settings, logged, "0-0").events[0]["id"] == "msg_3"  # the start never expires


# -- rate_reserve / rate_pause --------------------------------------------------------------------------
def test_rate_reserve_hands_out_slots_in_order_one_interval_apart(
    store: Store, raw_redis: redis.Redis, redis_ms: Callable[[], int]
) -> None:
    before = redis_ms()
    now, slots = store.ratelimits.reserve(EP1, 100, [["d1"], ["d2", "d3"], ["d4"]])
    assert before <= now <= redis_ms()
    assert slots == [now, now + 100, now + 200]  # one slot per chunk (one request each)
    key = store.keys.rate_limit(EP1)
    assert float(raw_redis.hget(key, "tat") or 0) == now + 300
    assert 300 + HOLD_TTL_MS - 1000 < raw_redis.pttl(key) <= 300 + HOLD_TTL_MS
    later_now, later = store.ratelimits.reserve(EP1, 100, [["d5"]])
    assert later == [max(later_now, now + 300)]  # the next free slot, whoever asks
    other_now, other = store.ratelimits.reserve(EP2, 100, [["x"]])
    assert other == [other_now]  # another endpoint's own limit: free now


def test_rate_reserve_gives_a_handed_back_delivery_its_held_slot(
    store: Store, raw_redis: redis.Redis, redis_ms: Callable[[], int]
) -> None:
    key = store.keys.rate_limit(EP1)
    now, _ = store.ratelimits.reserve(EP1, 500, [["d1"], ["d2"]])
    tat = float(raw_redis.hget(key, "tat") or 0)
    raw_redis.hset(key, mapping={"d:d2": now + 500, "d:d9": now + 9000})  # as ``Queue.defer`` keeps them
    _, slots = store.ratelimits.reserve(EP1, 500, [["d2"], ["d8", "d9"]])
    assert slots == [now + 500, now + 9000]  # kept slots (the latest of a chunk's), no new ones handed out
    assert float(raw_redis.hget(key, "tat") or 0) == tat
    assert not raw_redis.hexists(key, "d:d2") and not raw_redis.hexists(key, "d:d9")


def test_rate_pause_hands_out_no_slot_before_the_pause_ends(
    store: Store, raw_redis: redis.Redis, redis_ms: Callable[[], int]
) -> None:
    key = store.keys.rate_limit(EP1)
    before = redis_ms()
    store.ratelimits.pause(EP1, 2.0)
    paused_until = float(raw_redis.hget(key, "tat") or 0)
    assert before + 2000 <= paused_until <= redis_ms() + 2000
    assert raw_redis.pttl(key) > 2000
    _, (slot,) = store.ratelimits.reserve(EP1, 100, [["d1"]])
    assert slot >= paused_until
    store.ratelimits.pause(EP1, 0.5)  # a shorter pause never pulls the next slot earlier
    assert float(raw_redis.hget(key, "tat") or 0) == paused_until + 100


# -- health -----------------------------------------------------------------------------------------------
def test_failing_streaks_start_at_the_first_failure_and_end_at_a_success(store: Store, raw_redis: redis.Redis) -> None:
    failing = store.keys.failing
    window = 10_000
    assert store.failing.note({EP1: False, EP2: True}, 1_000, window) == []
    assert hash_of(raw_redis, failing) == {EP1: "1000"}
    assert store.failing.note({EP1: False}, 5_000, window) == []
    assert hash_of(raw_redis, failing) == {EP1: "1000"}  # the streak's start stays
    assert store.failing.note({EP1: True}, 6_000, window) == []
    assert hash_of(raw_redis, failing) == {}  # one success ends it
    assert store.failing.note({EP1: False, EP2: False}, 7_000, window) == []
    assert store.failing.note({EP1: False, EP2: True}, 16_999, window) == []
    assert store.failing.note({EP1: False}, 17_000, window) == [EP1]  # failing for the whole window
    assert hash_of(raw_redis, failing) == {}  # reported once, its streak cleared


def test_purge_takes_an_endpoints_pending_deliveries_off_as_dead(
    store: Store, raw_redis: redis.Redis, new_event: Callable[..., NewEvent]
) -> None:
    events = [new_event() for _ in range(3)]
    fan_out(store, events, (EP1, EP2))  # one delivery per event to EP1 and EP2
    k = store.keys
    assert raw_redis.zcard(k.due) == 6
    assert store.queue.purge_endpoint(EP1, "endpoint deleted") == 3
    assert store.queue.purge_endpoint(EP1, "endpoint deleted") == 0  # once
    assert raw_redis.zcard(k.due) == 3 and raw_redis.hlen(k.jobs) == 3  # EP2's stay
    assert raw_redis.hlen(k.bodies) == 3  # still needed by EP2's deliveries
    (gone,) = [d for d in store.records.for_endpoint(EP1) if d.event_id == events[0].id]
    assert gone.state.value == "dead" and gone.attempts[-1].error == "endpoint deleted"
    assert gone.attempts[-1].status is None and gone.next_attempt_at is None
    assert store.queue.purge_endpoint(EP2, "endpoint deleted") == 3
    assert not raw_redis.exists(k.due, k.jobs, k.bodies, k.refs)  # nothing left behind
    only = new_event()
    fan_out(store, [only])  # its only delivery: the body is not counted in refs
    assert raw_redis.hexists(k.bodies, only.id)
    assert store.queue.purge_endpoint(EP1, "endpoint deleted") == 1
    assert not raw_redis.exists(k.due, k.jobs, k.bodies, k.refs)  # its body went with it
