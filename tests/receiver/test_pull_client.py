"""The pull client (``dispatcher.receiver.pull``: ``iter_events`` long-polls, ``iter_events_ws`` WebSocket) against
``dispatcher api`` in its own process: resuming by cursor across restarts, verifying, refusals, isolation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import redis
from standardwebhooks.webhooks import Webhook

import dispatcher
from dispatcher import Dispatcher
from dispatcher.errors import PullError
from dispatcher.receiver.pull import PulledEvent, endpoint_token, iter_events, iter_events_ws
from dispatcher.settings import Settings
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import ApiServer

pytestmark = pytest.mark.timeout(90)


# -- the client: long-poll --------------------------------------------------------------------------------
def test_long_poll_client_resumes_by_cursor_across_a_restart_and_verifies(
    api_server: ApiServer, api_settings: Settings, dsp: Dispatcher, runtime: Runtime
) -> None:
    poll = dsp.subscribe_poll(["*"])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(50)])
    run_fanout(runtime)
    token = endpoint_token(poll.id, poll.secret)
    got: list[PulledEvent] = []
    for event in iter_events(api_server.url, poll.id, token, limit=7, wait_s=2):
        got.append(event)
        if len(got) == 20:
            break  # the consumer stops (restart): it saved got[-1].cursor
    for event in iter_events(api_server.url, poll.id, token, cursor=got[-1].cursor, limit=7, wait_s=2):
        got.append(event)
        if len(got) == 50:
            break
    assert sorted(e.id for e in got) == sorted(ids) and len({e.id for e in got}) == 50
    for event in got:
        assert dispatcher.verify(event.body, event.headers, poll.secret) == event.payload
        assert event.verify(poll.secret)["id"] == event.id
        Webhook(poll.secret).verify(event.body, event.headers)


def test_long_poll_client_raises_on_refusals(api_server: ApiServer, dsp: Dispatcher, runtime: Runtime) -> None:
    poll, other = dsp.subscribe_poll(["*"]), dsp.subscribe_poll(["*"])
    with pytest.raises(PullError) as info:
        next(iter_events(api_server.url, poll.id, endpoint_token(other.id, other.secret), wait_s=1))
    assert info.value.status == 403
    with pytest.raises(PullError) as info:
        next(iter_events(api_server.url, poll.id, "not-a-key", wait_s=1))
    assert info.value.status == 401


# -- the client: WebSocket --------------------------------------------------------------------------------
def test_ws_client_gets_10000_events_in_order_across_a_server_restart(
    api_server: ApiServer,
    dsp: Dispatcher,
    runtime: Runtime,
    raw_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    log_ids: Callable[[str], list[str]],
) -> None:
    poll = dsp.subscribe_poll(["*"])
    dsp.enqueue_many([("bulk.item", {"i": i}) for i in range(10_000)])
    run_fanout(runtime)
    expected = log_ids(poll.id)
    assert len(expected) == 10_000
    got: list[str] = []
    cursors: list[str] = []
    for event in iter_events_ws(api_server.url, poll.id, endpoint_token(poll.id, poll.secret), cursor="start"):
        got.append(event.id)
        cursors.append(event.cursor)
        if len(got) == 3000:
            api_server.restart()  # kill -9 mid-stream: the client reconnects from its cursor
        if len(got) == 10_000:
            break
    assert got == expected  # in log order, nothing lost, nothing twice
    assert "stream dropped" in caplog.text  # it did reconnect
    assert cursors == sorted(cursors, key=lambda c: tuple(int(p) for p in c.rpartition(":")[2].split("-")))


def test_ws_consumers_of_two_endpoints_see_only_their_own(
    api_server: ApiServer, dsp: Dispatcher, runtime: Runtime
) -> None:
    orders, users = dsp.subscribe_poll(["order.*"]), dsp.subscribe_poll(["user.*"])
    seen: dict[str, list[str]] = {orders.id: [], users.id: []}
    errors: list[BaseException] = []

    def consume(ep_id: str, secret: str, n: int) -> None:
        try:
            for event in iter_events_ws(api_server.url, ep_id, endpoint_token(ep_id, secret), cursor="start"):
                event.verify(secret)
                seen[ep_id].append(event.type)
                if len(seen[ep_id]) == n:
                    return
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [
        threading.Thread(target=consume, args=(orders.id, orders.secret, 4), daemon=True),
        threading.Thread(target=consume, args=(users.id, users.secret, 6), daemon=True),
    ]
    for t in threads:
        t.start()
    dsp.enqueue_many([("order.paid", {})] * 2 + [("user.created", {})] * 3)
    run_fanout(runtime)
    dsp.enqueue_many([("user.created", {})] * 3 + [("order.paid", {})] * 2)
    run_fanout(runtime)
    for t in threads:
        t.join(15)
    assert not errors, errors
    assert seen == {orders.id: ["order.paid"] * 4, users.id: ["user.created"] * 6}
