"""Fan-out (``worker.fanout``): webhooks get deliveries, poll endpoints get log entries, also_poll both."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from dispatcher import Dispatcher
from dispatcher.worker.fanout import run_fanout
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
