"""Delivery records (``store.records.Records``) on deliveries made by the real pipeline: reading them by id,
event and endpoint (state filters, limits, newest first), replaying dead ones (and refusing the rest), bulk
replay since a time, and dead-letter counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import redis

from dispatcher import Dispatcher
from dispatcher.errors import DeliveryNotFound, EventNotFound, InvalidState
from dispatcher.models import DeliveryState
from dispatcher.store import Store
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver


FINAL = (DeliveryState.DELIVERED, DeliveryState.DEAD)


@pytest.fixture
def records(dsp: Dispatcher) -> Any:
    return dsp.records


@pytest.fixture
def failing(receiver_factory: Callable[..., Receiver]) -> Receiver:
    return receiver_factory(reply=lambda n, r: (500, {}, b"down"))


def test_get_and_for_event_read_what_the_pipeline_wrote(
    dsp: Dispatcher, records: Any, runtime: Runtime, receiver: Receiver, failing: Receiver, pump: Callable[..., Any]
) -> None:
    ok_ep = dsp.subscribe(receiver.url, ["*"])
    bad_ep = dsp.subscribe(failing.url, ["*"], retry_schedule=[])
    eid = dsp.enqueue("a.b", {"x": 1})
    with pytest.raises(EventNotFound):
        records.for_event("msg_nope")
    assert records.for_event(eid) == []  # stored, not fanned out yet
    assert records.event(eid)["fanned_out"] is False
    pump(runtime, lambda: {d.state for d in records.for_event(eid)} == {DeliveryState.DELIVERED, DeliveryState.DEAD})
    by_ep = {d.endpoint_id: d for d in records.for_event(eid)}
    assert set(by_ep) == {ok_ep.id, bad_ep.id}
    delivered, dead = by_ep[ok_ep.id], by_ep[bad_ep.id]
    assert records.get(delivered.id) == delivered
    assert [(a.n, a.status) for a in delivered.attempts] == [(1, 200)]
    assert [(a.n, a.status, a.response) for a in dead.attempts] == [(1, 500, "down")]
    assert delivered.event_id == dead.event_id == eid and delivered.next_attempt_at is None
    assert records.event(eid)["fanned_out"] is True and records.event(eid)["data"] == {"x": 1}
    with pytest.raises(DeliveryNotFound):
        records.get("dlv_nope")
    with pytest.raises(EventNotFound):
        records.event("msg_nope")


def test_for_endpoint_is_newest_first_with_state_filters_and_limits(
    dsp: Dispatcher,
    records: Any,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
) -> None:
    """Six events to one endpoint: it answers 200, 500, 200, 500, 200, 500 (no retries: 500 is dead)."""
    rec = receiver_factory(reply=lambda n, r: (200, {}, b"") if n % 2 else (500, {}, b""))
    ep = dsp.subscribe(rec.url, ["*"], retry_schedule=[])
    ids = []
    for i in range(6):  # one at a time, so creation order (and the receiver's order) is defined
        ids.append(dsp.enqueue("a.b", {"i": i}))
        pump(runtime, lambda: rec.count() == len(ids) and records.for_event(ids[-1])[0].state in FINAL)
    newest_first = list(reversed(ids))
    assert [d.event_id for d in records.for_endpoint(ep.id)] == newest_first
    assert [d.event_id for d in records.for_endpoint(ep.id, limit=2)] == newest_first[:2]
    assert [d.event_id for d in records.for_endpoint(ep.id, state="delivered")] == [ids[4], ids[2], ids[0]]
    assert [d.event_id for d in records.for_endpoint(ep.id, state=DeliveryState.DEAD)] == [ids[5], ids[3], ids[1]]
    assert [d.event_id for d in records.for_endpoint(ep.id, state="delivered", limit=2)] == [ids[4], ids[2]]
    assert [d.event_id for d in records.for_endpoint(ep.id, state="dead", limit=1)] == [ids[5]]
    assert records.for_endpoint(ep.id, state="retrying") == []
    assert records.for_endpoint("ep_nothing") == []
    with pytest.raises(ValueError):
        records.for_endpoint(ep.id, state="lost")


def test_for_endpoint_lists_pending_and_retrying_ones_with_their_next_attempt(
    dsp: Dispatcher, records: Any, runtime: Runtime, failing: Receiver, pump: Callable[..., Any]
) -> None:
    ep = dsp.subscribe(failing.url, ["*"], retry_schedule=[600])
    eid = dsp.enqueue("a.b", {})
    run_fanout(runtime)
    (pending,) = records.for_endpoint(ep.id, state="pending")
    assert pending.event_id == eid and pending.next_attempt_at is not None and pending.attempts == []
    pump(runtime, lambda: records.for_endpoint(ep.id, state="retrying"))
    (retrying,) = records.for_endpoint(ep.id, state="retrying")
    assert retrying.next_attempt_at is not None and retrying.next_attempt_at - retrying.attempts[0].at >= 590


def test_replay_of_a_dead_delivery_and_refusals_for_missing_or_not_dead_ones(
    dsp: Dispatcher,
    records: Any,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
) -> None:
    healthy = {"up": False}
    rec = receiver_factory(reply=lambda n, r: (200, {}, b"") if healthy["up"] else (503, {}, b""))
    ep = dsp.subscribe(rec.url, ["*"], retry_schedule=[0.1])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: [d.state for d in records.for_event(eid)] == [DeliveryState.DEAD])
    (dead,) = records.for_event(eid)
    assert len(dead.attempts) == 2 and records.dead_counts([ep.id]) == [1]
    with pytest.raises(DeliveryNotFound):
        records.replay("dlv_nope")
    records.replay(dead.id)
    replayed = records.get(dead.id)
    assert replayed.state is DeliveryState.PENDING and replayed.next_attempt_at is not None
    assert len(replayed.attempts) == 2  # the history is kept
    assert records.dead_counts([ep.id]) == [0]
    with pytest.raises(InvalidState):
        records.replay(dead.id)  # pending, not dead
    healthy["up"] = True
    pump(runtime, lambda: records.get(dead.id).state is DeliveryState.DELIVERED)
    assert [a.status for a in records.get(dead.id).attempts] == [503, 503, 200]
    with pytest.raises(InvalidState):
        records.replay(dead.id)  # delivered, not dead


def test_replay_endpoint_replays_dead_letters_since_a_time_and_drops_stale_ones(
    dsp: Dispatcher,
    records: Any,
    runtime: Runtime,
    failing: Receiver,
    raw_redis: redis.Redis,
    pump: Callable[..., Any],
) -> None:
    ep = dsp.subscribe(failing.url, ["*"], retry_schedule=[])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(4)])
    pump(runtime, lambda: len(records.for_endpoint(ep.id, state="dead")) == 4)
    dead_key = dsp.keys.endpoint_dead(ep.id)
    by_event = {d.event_id: d.id for d in records.for_endpoint(ep.id, state="dead")}
    # dead-lettered at known times: 1000 s, 2000 s, 3000 s, 4000 s after the epoch
    raw_redis.zadd(dead_key, {by_event[eid]: (i + 1) * 1_000_000 for i, eid in enumerate(ids)})
    assert records.replay_endpoint(ep.id, since=5000) == 0
    assert records.replay_endpoint(ep.id, since=3000) == 2  # at or after 3000 s: the last two
    states = {eid: records.get(by_event[eid]).state for eid in ids}
    assert states == {ids[0]: DeliveryState.DEAD, ids[1]: DeliveryState.DEAD,
                      ids[2]: DeliveryState.PENDING, ids[3]: DeliveryState.PENDING}  # fmt: skip
    assert records.dead_counts([ep.id]) == [2]
    raw_redis.zadd(dead_key, {"dlv_gone": 1_500_000})  # a dead letter whose record expired
    raw_redis.zadd(dead_key, {by_event[ids[2]]: 1_600_000})  # one listed again although it is pending
    assert records.replay_endpoint(ep.id) == 2  # ids[0] and ids[1]; the stale entries are dropped
    assert raw_redis.zcard(dead_key) == 0
    assert all(records.get(by_event[eid]).state is DeliveryState.PENDING for eid in ids)
    assert records.replay_endpoint("ep_nothing") == 0


def test_dead_counts_per_endpoint(
    dsp: Dispatcher, store: Store, runtime: Runtime, failing: Receiver, receiver: Receiver, pump: Callable[..., Any]
) -> None:
    a = dsp.subscribe(failing.url, ["a.*"], retry_schedule=[])
    b = dsp.subscribe(failing.url, ["b.*"], retry_schedule=[])
    c = dsp.subscribe(receiver.url, ["*"])
    dsp.enqueue_many([("a.x", {}), ("a.y", {}), ("b.x", {})])
    pump(runtime, lambda: store.records.dead_counts([a.id, b.id]) == [2, 1] and receiver.count() == 3)
    assert store.records.dead_counts([a.id, b.id, c.id, "ep_nothing"]) == [2, 1, 0, 0]
    assert store.records.dead_counts([]) == []
