"""Pull consumers: endpoints of kind poll, the log fan-out appends to, retention, and the client in dispatcher.pull."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

import dispatcher
from dispatcher import Dispatcher, InvalidInput, InvalidURL
from dispatcher.cli.main import cli
from dispatcher.errors import CursorExpired, InvalidCursor, PullError
from dispatcher.receiver.pull import PulledEvent, endpoint_token, iter_events, iter_events_ws
from dispatcher.settings import Settings
from dispatcher.store.pull_log import PullLog, parse_cursor
from dispatcher.store.queue import FanoutItem
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.runtime import Runtime
from tests.apiserver import ApiServer
from tests.conftest import Receiver, make_settings

KEY = "pull-test-key-0123456789"
pytestmark = pytest.mark.timeout(90)


def log_ids(client: redis.Redis, settings: Settings, endpoint_id: str) -> list[str]:
    """The event ids in an endpoint's log, oldest first."""
    entries = client.xrange(f"{settings.key_prefix}stream:{endpoint_id}")
    return [fields[b"id"].decode() for _, fields in entries]


def read(settings: Settings, endpoint_id: str, cursor: str | None, limit: int = 1000) -> Any:
    async def go() -> Any:
        log = PullLog(settings)
        try:
            endpoint = await log.endpoint(endpoint_id)
            return await log.read(endpoint, parse_cursor(endpoint_id, cursor), limit)
        finally:
            await log.aclose()

    return asyncio.run(go())


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": (KEY,)})


@pytest.fixture
def server(api_settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    srv = ApiServer(api_settings, tmp_path / "api.log")
    yield srv
    srv.stop()


# -- endpoints ------------------------------------------------------------------------------------------
def test_a_poll_endpoint_has_no_url_and_every_other_kind_needs_one(dsp: Dispatcher, receiver: Receiver) -> None:
    ep = dsp.subscribe_poll(["order.*"])
    assert (ep.kind, ep.url, ep.event_types, ep.pollable) == ("poll", "", ["order.*"], True)
    assert dsp.subscribe(None, ["a.b"], kind="poll").kind == "poll"
    with pytest.raises(InvalidURL, match="needs a URL"):
        dsp.subscribe(None, ["*"])
    with pytest.raises(InvalidInput, match="no URL"):
        dsp.subscribe(receiver.url, ["*"], kind="poll")
    with pytest.raises(InvalidInput, match="no URL"):
        dsp.update_endpoint(ep.id, url=receiver.url)
    with pytest.raises(InvalidInput, match="kind must be"):
        dsp.subscribe(receiver.url, ["*"], kind="carrier-pigeon")
    with pytest.raises(InvalidInput, match="also_poll"):
        dsp.subscribe(receiver.url, ["*"], also_poll="yes")
    webhook = dsp.subscribe(receiver.url, ["*"])
    assert not webhook.pollable and dsp.update_endpoint(webhook.id, also_poll=True).pollable


def test_fanout_appends_to_logs_instead_of_posting(
    dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver], raw_redis: redis.Redis
) -> None:
    plain, both = receiver_factory(), receiver_factory()
    poll = dsp.subscribe_poll(["order.*"])
    also = dsp.subscribe(both.url, ["*"], also_poll=True)
    webhook = dsp.subscribe(plain.url, ["*"])
    ids = dsp.enqueue_many([("order.paid", {"i": i}) for i in range(5)] + [("user.created", {"i": 5})])
    run_fanout(runtime)
    assert sorted(log_ids(raw_redis, dsp.settings, poll.id)) == sorted(ids[:5])
    assert sorted(log_ids(raw_redis, dsp.settings, also.id)) == sorted(ids)
    assert not raw_redis.exists(f"{dsp.settings.key_prefix}stream:{webhook.id}")
    assert dsp.endpoint_deliveries(poll.id) == []  # nothing to POST
    assert {d.endpoint_id for d in dsp.deliveries(ids[0])} == {also.id, webhook.id}
    # a test event addressed to the poll endpoint goes to its log too
    test_id = dsp.send_test(poll.id)
    run_fanout(runtime)
    assert log_ids(raw_redis, dsp.settings, poll.id)[-1] == test_id


def test_a_redone_fanout_appends_nothing_twice(dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis) -> None:
    poll = dsp.subscribe_poll(["*"])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(3)])
    stalled = runtime.store.queue.claim_events(10)  # a worker claims them, then stalls past its lease
    assert sorted(e.id for e in stalled.events) == sorted(ids)
    raw_redis.zadd(dsp.keys.fanout, {e.entry: 0 for e in stalled.events})  # the lease runs out
    run_fanout(runtime)  # another worker fans them out
    assert sorted(log_ids(raw_redis, dsp.settings, poll.id)) == sorted(ids)
    # the stalled worker wakes up and commits the fan-out it had prepared
    assert runtime.store.queue.commit_fanout([FanoutItem(e, logs=[poll.id]) for e in stalled.events]) == 0
    assert sorted(log_ids(raw_redis, dsp.settings, poll.id)) == sorted(ids)


def test_entries_chain_to_the_previous_one(dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis) -> None:
    poll = dsp.subscribe_poll(["*"])
    for batch in range(3):
        dsp.enqueue_many([("a.b", {"b": batch, "i": i}) for i in range(4)])
        run_fanout(runtime)
    entries = raw_redis.xrange(f"{dsp.settings.key_prefix}stream:{poll.id}")
    prevs = [fields[b"prev"].decode() for _, fields in entries]
    assert prevs == ["0-0"] + [sid.decode() for sid, _ in entries[:-1]]


def test_cursors_are_checked(dsp: Dispatcher) -> None:
    ep_id = "ep_01M8G7F8SG245CQQMG28VKQT2R"
    assert parse_cursor(ep_id, None) == parse_cursor(ep_id, "start") == "0-0"
    assert parse_cursor(ep_id, "latest") is None
    assert parse_cursor(ep_id, f"{ep_id}:1795841041245-3") == "1795841041245-3"
    for bad in ("zz", f"{ep_id}:", f"{ep_id}:12", f"{ep_id}:a-1", f"{ep_id}:99999999999999999999-0", ":1-0"):
        with pytest.raises(InvalidCursor):
            parse_cursor(ep_id, bad)
    with pytest.raises(InvalidCursor, match="belongs to endpoint"):
        parse_cursor(ep_id, "ep_other:1-0")


# -- retention ------------------------------------------------------------------------------------------
def test_count_retention_expires_old_cursors_and_says_where_to_resume(redis_url: str, prefix: str) -> None:
    settings = make_settings(redis_url, prefix, poll_max_events=10)
    d, rt = Dispatcher(settings), Runtime(settings)
    try:
        poll = d.subscribe_poll(["*"])
        d.enqueue("a.b", {"first": True})
        run_fanout(rt)
        first = read(settings, poll.id, None)
        d.enqueue_many([("a.b", {"i": i}) for i in range(300)])
        run_fanout(rt)
        length = rt.redis.xlen(settings.key_prefix + f"stream:{poll.id}")
        assert 10 <= length < 200  # MAXLEN ~: whole macro nodes are trimmed
        with pytest.raises(CursorExpired) as info:
            read(settings, poll.id, first.cursor)
        resumed = read(settings, poll.id, info.value.resume_cursor)
        assert len(resumed.events) == length  # the resume cursor is right before the oldest entry kept
        assert "Resume from cursor " + info.value.resume_cursor in str(info.value)
        assert len(read(settings, poll.id, "start").events) == length  # 'start' never expires
        last = resumed.events[-1]["cursor"]
        assert read(settings, poll.id, last).events == []  # a cursor inside the log is fine
    finally:
        d.close()
        rt.close()


def test_age_retention_trims_entries_older_than_max_age(redis_url: str, prefix: str) -> None:
    settings = make_settings(redis_url, prefix, poll_max_age_s=60)
    d, rt = Dispatcher(settings), Runtime(settings)
    try:
        poll = d.subscribe_poll(["*"])
        key = settings.key_prefix + f"stream:{poll.id}"
        # two entries from long ago, as if appended an hour back
        rt.redis.xadd(key, {"prev": "0-0", "id": "msg_old1", "type": "a.b", "ts": 1, "body": b"{}"}, id="1000-0")
        rt.redis.xadd(key, {"prev": "1000-0", "id": "msg_old2", "type": "a.b", "ts": 1, "body": b"{}"}, id="2000-0")
        eid = d.enqueue("a.b", {})
        run_fanout(rt)
        assert log_ids(rt.redis, settings, poll.id) == [eid]
        with pytest.raises(CursorExpired) as info:
            read(settings, poll.id, f"{poll.id}:1000-0")
        assert info.value.resume_cursor == f"{poll.id}:2000-0"
        assert [e["id"] for e in read(settings, poll.id, f"{poll.id}:2000-0").events] == [eid]
    finally:
        d.close()
        rt.close()


def test_unsubscribing_deletes_the_log(dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis) -> None:
    poll = dsp.subscribe_poll(["*"])
    dsp.enqueue("a.b", {})
    run_fanout(runtime)
    key = f"{dsp.settings.key_prefix}stream:{poll.id}"
    assert raw_redis.exists(key)
    dsp.unsubscribe(poll.id)
    assert not raw_redis.exists(key)


# -- the client: long-poll --------------------------------------------------------------------------------
def test_long_poll_client_resumes_by_cursor_across_a_restart_and_verifies(
    server: ApiServer, api_settings: Settings, dsp: Dispatcher, runtime: Runtime
) -> None:
    poll = dsp.subscribe_poll(["*"])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(50)])
    run_fanout(runtime)
    token = endpoint_token(poll.id, poll.secret)
    got: list[PulledEvent] = []
    for event in iter_events(server.url, poll.id, token, limit=7, wait_s=2):
        got.append(event)
        if len(got) == 20:
            break  # the consumer stops (restart): it saved got[-1].cursor
    for event in iter_events(server.url, poll.id, token, cursor=got[-1].cursor, limit=7, wait_s=2):
        got.append(event)
        if len(got) == 50:
            break
    assert sorted(e.id for e in got) == sorted(ids) and len({e.id for e in got}) == 50
    for event in got:
        assert dispatcher.verify(event.body, event.headers, poll.secret) == event.payload
        assert event.verify(poll.secret)["id"] == event.id
        Webhook(poll.secret).verify(event.body, event.headers)


def test_long_poll_client_raises_on_refusals(server: ApiServer, dsp: Dispatcher, runtime: Runtime) -> None:
    poll, other = dsp.subscribe_poll(["*"]), dsp.subscribe_poll(["*"])
    with pytest.raises(PullError) as info:
        next(iter_events(server.url, poll.id, endpoint_token(other.id, other.secret), wait_s=1))
    assert info.value.status == 403
    with pytest.raises(PullError) as info:
        next(iter_events(server.url, poll.id, "not-a-key", wait_s=1))
    assert info.value.status == 401


def test_listen_prints_events_as_they_arrive(server: ApiServer, dsp: Dispatcher, runtime: Runtime) -> None:
    poll = dsp.subscribe_poll(["order.*"])
    ids = dsp.enqueue_many([("order.paid", {"n": i}) for i in range(3)])
    run_fanout(runtime)
    args = ["listen", poll.id, "--url", server.url, "--secret", poll.secret, "--from-start", "--count", "3", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(ids)
    assert all(line["verified"] is True and line["type"] == "order.paid" for line in lines)
    assert f"--cursor {lines[-1]['cursor']}" in result.stderr
    ws_args = [*args[:4], "--ws", "--from-start", "--count", "1"]
    result = CliRunner().invoke(cli, ws_args, env={"DISPATCHER_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert "--> order.paid [" in result.stdout


# -- the client: WebSocket --------------------------------------------------------------------------------
def test_ws_client_gets_10000_events_in_order_across_a_server_restart(
    server: ApiServer, dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    poll = dsp.subscribe_poll(["*"])
    dsp.enqueue_many([("bulk.item", {"i": i}) for i in range(10_000)])
    run_fanout(runtime)
    expected = log_ids(raw_redis, dsp.settings, poll.id)
    assert len(expected) == 10_000
    got: list[str] = []
    cursors: list[str] = []
    for event in iter_events_ws(server.url, poll.id, endpoint_token(poll.id, poll.secret), cursor="start"):
        got.append(event.id)
        cursors.append(event.cursor)
        if len(got) == 3000:
            server.restart()  # kill -9 mid-stream: the client reconnects from its cursor
        if len(got) == 10_000:
            break
    assert got == expected  # in log order, nothing lost, nothing twice
    assert "stream dropped" in caplog.text  # it did reconnect
    assert cursors == sorted(cursors, key=lambda c: tuple(int(p) for p in c.rpartition(":")[2].split("-")))


def test_ws_consumers_of_two_endpoints_see_only_their_own(server: ApiServer, dsp: Dispatcher, runtime: Runtime) -> None:
    orders, users = dsp.subscribe_poll(["order.*"]), dsp.subscribe_poll(["user.*"])
    seen: dict[str, list[str]] = {orders.id: [], users.id: []}
    errors: list[BaseException] = []

    def consume(ep_id: str, secret: str, n: int) -> None:
        try:
            for event in iter_events_ws(server.url, ep_id, endpoint_token(ep_id, secret), cursor="start"):
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


# -- the waiter hub ---------------------------------------------------------------------------------------
def test_one_xread_wakes_waiters_of_many_streams_and_rearms_for_newcomers(settings: Settings) -> None:
    """A waiter whose stream is not in the blocked XREAD re-arms it (CLIENT UNBLOCK) and wakes at once."""

    async def go() -> None:
        log = PullLog(settings)
        try:
            r, _ = log._ensure()
            a, b = "ep_A", "ep_B"
            waiting_a = asyncio.create_task(log.wait(a, "0-0", 10))
            await asyncio.sleep(0.05)  # A's XREAD is blocked now, without B's stream
            waiting_b = asyncio.create_task(log.wait(b, "0-0", 10))
            await asyncio.sleep(0.05)
            assert log.waiting() == 2
            loop = asyncio.get_running_loop()
            started = loop.time()
            await r.xadd(log.keys.stream(b), {"x": "1"})
            assert await waiting_b is True
            assert loop.time() - started < 0.1
            assert not waiting_a.done()
            sid = (await r.xadd(log.keys.stream(a), {"x": "1"})).decode()
            assert await waiting_a is True
            # an entry at or before the position waited from does not wake; a timeout answers False
            assert await log.wait(a, sid, 0.2) is False
            assert log.waiting() == 0
        finally:
            await log.aclose()

    asyncio.run(go())
