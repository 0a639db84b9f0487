"""Fan-out (``worker.fanout``): webhooks get deliveries, poll endpoints get log entries, also_poll both."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from dispatcher import Dispatcher
from dispatcher.ids import delivery_id
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.jobs import Outcome
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver


def test_fanout_appends_to_logs_instead_of_posting(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    raw_redis: redis.Redis,
    log_ids: Callable[[str], list[str]],
) -> None:
    plain, both = receiver_factory(), receiver_factory()
    poll = dsp.subscribe_poll(["order.*"])
    also = dsp.subscribe(both.url, ["*"], also_poll=True)
    webhook = dsp.subscribe(plain.url, ["*"])
    ids = dsp.enqueue_many([("order.paid", {"i": i}) for i in range(5)] + [("user.created", {"i": 5})])
    run_fanout(runtime)
    assert sorted(log_ids(poll.id)) == sorted(ids[:5])
    assert sorted(log_ids(also.id)) == sorted(ids)
    assert not raw_redis.exists(f"{dsp.settings.key_prefix}stream:{webhook.id}")
    assert dsp.endpoint_deliveries(poll.id) == []  # nothing to POST
    assert {d.endpoint_id for d in dsp.deliveries(ids[0])} == {also.id, webhook.id}
    # a test event addressed to the poll endpoint goes to its log too
    test_id = dsp.send_test(poll.id)
    run_fanout(runtime)
    assert log_ids(poll.id)[-1] == test_id


def test_deliveries_to_an_endpoint_known_to_hang_are_born_due_at_its_pace(
    dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver], raw_redis: redis.Redis
) -> None:
    healthy = dsp.subscribe(receiver_factory().url, ["*"])
    busy = dsp.subscribe(receiver_factory().url, ["*"], max_batch=1)
    slow = dsp.subscribe(receiver_factory().url, ["*"], max_batch=1)
    for _ in range(5):  # answers, if slowly (a loaded moment): its in-flight limit paces it, not a birth delay
        runtime.limits.record(busy.id, Outcome(status=200, latency_ms=1500.0, sent=True))
    for _ in range(5):  # this process saw it time out after 2 s, five times: one request at a time, 2 s each
        runtime.limits.record(slow.id, Outcome(error="timeout", latency_ms=2000.0, sent=True))
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(6)])
    run_fanout(runtime)
    fanned_out_ms = time.time() * 1000
    due = runtime.store.keys.due

    def due_ms(endpoint_id: str) -> list[float]:
        return sorted(float(raw_redis.zscore(due, delivery_id(e, endpoint_id)) or 0) for e in ids)

    assert all(ms <= fanned_out_ms for ms in due_ms(healthy.id))  # due at once: a healthy endpoint waits for nothing
    assert runtime.limits.slow(busy.id) and all(ms <= fanned_out_ms for ms in due_ms(busy.id))  # nor one answering
    paced = due_ms(slow.id)
    gaps = [b - a for a, b in itertools.pairwise(paced)]
    assert paced[0] <= fanned_out_ms  # its first one goes now...
    assert all(1500 <= gap <= 2500 for gap in gaps)  # ...then one per answer time, not all at once
