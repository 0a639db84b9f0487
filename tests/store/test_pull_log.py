"""Pull logs in Redis (``store.pull_log`` and the fan-out script's appends): each entry chains to the one
before it, a redone fan-out appends nothing twice, cursors are checked, count and age retention expire old
cursors with a place to resume, deleting the endpoint deletes its log, and one XREAD wakes many waiters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from dispatcher import Dispatcher
from dispatcher.errors import CursorExpired, InvalidCursor
from dispatcher.settings import Settings
from dispatcher.store.pull_log import PullLog, parse_cursor
from dispatcher.store.work import FanoutItem
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.runtime import Runtime


def read(settings: Settings, endpoint_id: str, cursor: str | None, limit: int = 1000) -> Any:
    async def go() -> Any:
        log = PullLog(settings)
        try:
            endpoint = await log.endpoint(endpoint_id)
            return await log.read(endpoint, parse_cursor(endpoint_id, cursor), limit)
        finally:
            await log.aclose()

    return asyncio.run(go())


def test_a_redone_fanout_appends_nothing_twice(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, log_ids: Callable[[str], list[str]]
) -> None:
    poll = dsp.subscribe_poll(["*"])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(3)])
    stalled = runtime.store.queue.claim_events(10)  # a worker claims them, then stalls past its lease
    assert sorted(e.id for e in stalled.events) == sorted(ids)
    raw_redis.zadd(dsp.keys.fanout, {e.entry: 0 for e in stalled.events})  # the lease runs out
    run_fanout(runtime)  # another worker fans them out
    assert sorted(log_ids(poll.id)) == sorted(ids)
    # the stalled worker wakes up and commits the fan-out it had prepared
    assert runtime.store.queue.commit_fanout([FanoutItem(e, logs=[poll.id]) for e in stalled.events]).created == 0
    assert sorted(log_ids(poll.id)) == sorted(ids)


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
def test_count_retention_expires_old_cursors_and_says_where_to_resume(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(poll_max_events=10)
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


def test_age_retention_trims_entries_older_than_max_age(
    settings_for: Callable[..., Settings], log_ids: Callable[[str], list[str]]
) -> None:
    settings = settings_for(poll_max_age_s=60)
    d, rt = Dispatcher(settings), Runtime(settings)
    try:
        poll = d.subscribe_poll(["*"])
        key = settings.key_prefix + f"stream:{poll.id}"
        # two entries from long ago, as if appended an hour back
        rt.redis.xadd(key, {"prev": "0-0", "id": "msg_old1", "type": "a.b", "ts": 1, "body": b"{}"}, id="1000-0")
        rt.redis.xadd(key, {"prev": "1000-0", "id": "msg_old2", "type": "a.b", "ts": 1, "body": b"{}"}, id="2000-0")
        eid = d.enqueue("a.b", {})
        run_fanout(rt)
        assert log_ids(poll.id) == [eid]
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


# -- the waiter hub ---------------------------------------------------------------------------------------
def test_one_xread_wakes_waiters_of_many_streams_and_rearms_for_newcomers(settings: Settings) -> None:
    """A waiter whose stream is not in the blocked XREAD re-arms it (CLIENT UNBLOCK) and wakes at once."""

    async def go() -> None:
        log = PullLog(settings)
        try:
            r, waiters = log._ensure()

            async def blocked_in_xread(waiting: int) -> None:
                """Until ``waiting`` waiters are registered and the hub's connection is blocked in XREAD."""
                deadline = asyncio.get_running_loop().time() + 10
                while True:
                    client_id = waiters._client_id
                    clients = await r.client_list() if client_id is not None else []
                    mine = [c for c in clients if int(c["id"]) == client_id]
                    if log.waiting() == waiting and mine and mine[0]["cmd"] == "xread" and "b" in mine[0]["flags"]:
                        return
                    assert asyncio.get_running_loop().time() < deadline, "the hub's XREAD never blocked"
                    await asyncio.sleep(0.005)

            a, b = "ep_A", "ep_B"
            waiting_a = asyncio.create_task(log.wait(a, "0-0", 10))
            await blocked_in_xread(1)  # A's XREAD is blocked now, without B's stream
            waiting_b = asyncio.create_task(log.wait(b, "0-0", 10))
            await blocked_in_xread(2)
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
