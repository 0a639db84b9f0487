"""The HTTP API against a real Redis: auth, validation, the error shape, and the pipeline behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from dispatcher import Dispatcher, Settings
from dispatcher.api.app import ApiConfigError, create_app
from dispatcher.api.auth import SESSION_COOKIE, SESSION_TTL_S, Auth
from dispatcher.models import mask_secret
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "second-key-fedcba9876543210"
CSRF = {"X-Dispatcher-CSRF": "1"}


def with_keys(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={"api_keys": (KEY, OTHER_KEY), **overrides})


@pytest.fixture
def api_keys() -> tuple[str, ...]:
    """The API fixtures (``api``, ``anon``, ``api_factory``) of this module take these two keys."""
    return (KEY, OTHER_KEY)


def keys_under(client: redis.Redis, prefix: str) -> set[bytes]:
    return set(client.scan_iter(match=f"{prefix}*", count=1000))


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"error"} and set(body["error"]) >= {"code", "message"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def pipeline(rt: Runtime) -> None:
    """Fan out and deliver everything that is due, in this process."""
    run_fanout(rt)
    run_deliver(rt)


# -- configuration ----------------------------------------------------------------------------------
def test_api_keys_come_from_a_comma_separated_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_API_KEYS", " k1, k2 ,,")
    settings = Settings()
    assert settings.api_keys == ("k1", "k2")
    assert "k1" not in repr(settings)


def test_the_api_refuses_to_start_without_keys(settings: Settings, dsp: Dispatcher) -> None:
    assert settings.api_keys == ()
    with pytest.raises(ApiConfigError, match="DISPATCHER_API_KEYS"):
        create_app(settings, dsp)


def test_no_auth_mode_must_be_asked_for_and_still_refuses_cross_site_writes(
    api_factory: Callable[..., TestClient], dsp: Dispatcher
) -> None:
    client = api_factory(auth=False, api_keys=(), api_insecure_no_auth=True, api_allowed_hosts=("testserver",))
    assert client.get("/v1/endpoints").status_code == 200
    resp = client.post("/v1/endpoints", json={"url": "https://example.com/h"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert_error(resp, 403, "csrf")
    resp = client.post("/v1/events", json={"type": "a.b"}, headers={"Origin": "https://evil.example"})
    assert_error(resp, 403, "csrf")
    assert dsp.list_endpoints() == []


# -- auth -------------------------------------------------------------------------------------------
PROTECTED = [
    ("GET", "/v1/endpoints"),
    ("POST", "/v1/endpoints"),
    ("GET", "/v1/endpoints/ep_x"),
    ("PATCH", "/v1/endpoints/ep_x"),
    ("DELETE", "/v1/endpoints/ep_x"),
    ("POST", "/v1/endpoints/ep_x/rotate-secret"),
    ("POST", "/v1/endpoints/ep_x/test"),
    ("POST", "/v1/endpoints/ep_x/enable"),
    ("POST", "/v1/endpoints/ep_x/disable"),
    ("GET", "/v1/endpoints/ep_x/deliveries"),
    ("POST", "/v1/endpoints/ep_x/replay"),
    ("POST", "/v1/events"),
    ("GET", "/v1/events/msg_x"),
    ("GET", "/v1/deliveries/dlv_x"),
    ("POST", "/v1/deliveries/dlv_x/replay"),
    ("GET", "/v1/stats"),
    ("GET", "/metrics"),
    ("GET", "/web/endpoints"),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer "},
        {"Cookie": f"{SESSION_COOKIE}=v1.123.forged"},
    ],
    ids=["none", "wrong-key", "basic", "empty", "forged-cookie"],
)
def test_every_route_but_healthz_and_the_openapi_document_needs_a_valid_key(
    anon: TestClient, raw_redis: redis.Redis, prefix: str, headers: dict[str, str]
) -> None:
    before = keys_under(raw_redis, prefix)
    for method, path in PROTECTED:
        resp = anon.request(method, path, headers={**headers, **CSRF}, json={"url": "https://example.com/h"})
        assert_error(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"] == "Bearer"
    assert keys_under(raw_redis, prefix) == before
    assert anon.get("/healthz").status_code == 200
    assert anon.get("/").status_code == 200  # the login form
    assert anon.get("/openapi.json").status_code == 200  # public unless API_OPENAPI_REQUIRES_KEY (test_openapi.py)


def test_either_configured_key_works(api_factory: Callable[..., TestClient]) -> None:
    client = api_factory(auth=False)
    for key in (KEY, OTHER_KEY):
        assert client.get("/v1/endpoints", headers={"Authorization": f"bearer {key}"}).status_code == 200


def test_auth_compares_keys_in_constant_time_and_sessions_live_in_redis(
    settings: Settings, dsp: Dispatcher, raw_redis: redis.Redis
) -> None:
    auth = Auth(with_keys(settings), dsp.store)
    assert auth.check_key(KEY) and auth.check_key(OTHER_KEY)
    assert not auth.check_key(KEY[:-1]) and not auth.check_key("")
    token = auth.issue_session(KEY)
    assert KEY not in token and len(token) >= 40  # a random id, nothing derived from the key
    assert auth.issue_session(KEY) != token
    assert auth.check_session(token)
    stored = dsp.keys.session(token)
    assert raw_redis.get(stored) != KEY.encode() and SESSION_TTL_S - 5 <= raw_redis.ttl(stored) <= SESSION_TTL_S
    assert not auth.check_session("not-a-session") and not auth.check_session("")
    # the key it logged in with leaves the settings: the session stops working and is deleted
    revoked = Auth(settings.model_copy(update={"api_keys": (OTHER_KEY,)}), dsp.store)
    assert not revoked.check_session(token)
    assert not raw_redis.exists(stored)
    assert not auth.check_session(token)  # gone for the old configuration too
    other = auth.issue_session(OTHER_KEY)
    auth.end_session(other)  # logout
    assert not auth.check_session(other) and not raw_redis.exists(dsp.keys.session(other))


def test_web_login_sets_an_httponly_strict_cookie_and_csrf_is_enforced(
    anon: TestClient, dsp: Dispatcher, raw_redis: redis.Redis, prefix: str
) -> None:
    assert_error(anon.post("/web/login", json={"api_key": "nope"}, headers=CSRF), 401, "unauthorized")
    assert_error(anon.post("/web/login", json={"api_key": KEY}), 403, "csrf")
    resp = anon.post("/web/login", json={"api_key": KEY}, headers=CSRF)
    assert resp.status_code == 204
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and KEY not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    # the cookie reads; writes need the page's CSRF header too
    assert anon.get("/v1/endpoints").status_code == 200
    before = keys_under(raw_redis, prefix)
    assert_error(anon.post("/v1/endpoints", json={"url": "https://example.com/h"}), 403, "csrf")
    assert keys_under(raw_redis, prefix) == before
    assert anon.post("/v1/endpoints", json={"url": "https://example.com/h"}, headers=CSRF).status_code == 201
    assert anon.post("/web/logout", headers=CSRF).status_code == 204
    anon.cookies.clear()
    assert_error(anon.get("/v1/endpoints"), 401, "unauthorized")


# -- health -----------------------------------------------------------------------------------------
def test_healthz_reports_redis_and_live_workers(anon: TestClient, dsp: Dispatcher) -> None:
    body = anon.get("/healthz").json()
    assert body["redis"] == "ok" and body["workers"] == [] and "no live workers" in body["warning"]
    dsp.store.heartbeats.beat("w1@host", {"pid": 1, "concurrency": 2}, ttl_s=30)
    resp = anon.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"redis": "ok", "workers": ["w1@host"], "warning": None}


def test_healthz_is_503_and_routes_answer_store_unavailable_when_redis_is_down(
    api_factory: Callable[..., TestClient],
) -> None:
    client = api_factory(redis_url="redis://127.0.0.1:1/0")
    body = assert_error(client.get("/healthz"), 503, "store_unavailable")
    assert body["redis"] == "down"
    assert_error(client.get("/v1/endpoints"), 503, "store_unavailable")
    assert_error(client.post("/v1/events", json={"type": "a.b"}), 503, "store_unavailable")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "dispatcher_redis_up 0.0" in metrics.text


# -- endpoints --------------------------------------------------------------------------------------
def test_create_shows_the_secret_once_then_reads_are_masked(api: TestClient, dsp: Dispatcher) -> None:
    resp = api.post(
        "/v1/endpoints",
        json={"url": "https://example.com/hooks", "event_types": ["order.*"], "description": "shop", "max_batch": 5},
    )
    assert resp.status_code == 201
    created = resp.json()
    stored = dsp.get_endpoint(created["id"])
    assert created["secret"] == stored.secret and created["secret"].startswith("whsec_")
    assert created["event_types"] == ["order.*"] and created["max_batch"] == 5 and created["enabled"] is True
    got = api.get(f"/v1/endpoints/{created['id']}").json()
    assert got["secret"] == mask_secret(stored.secret) != stored.secret
    listed = api.get("/v1/endpoints").json()["endpoints"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert listed[0]["secret"] == mask_secret(stored.secret)


def test_create_with_own_secret_and_options(api: TestClient, dsp: Dispatcher) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = {"url": "https://example.com/h", "secret": secret, "retry_schedule": [1, 2], "rate_limit_per_s": 5.0}
    created = api.post("/v1/endpoints", json=body).json()
    ep = dsp.get_endpoint(created["id"])
    assert ep.secret == secret and ep.retry_schedule == [1.0, 2.0] and ep.rate_limit_per_s == 5.0


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://example.com/h", "colour": "blue"},
        {"url": 5},
        {"url": "https://example.com/h", "event_types": "order.*"},
        {"url": "https://example.com/h", "max_batch": "2"},
        {"url": "https://example.com/h", "enabled": "yes"},
        {"url": "https://example.com/h", "retry_schedule": ["soon"]},
        {"event_types": ["*"]},
        ["https://example.com/h"],
    ],
)
def test_bad_endpoint_bodies_are_422_and_write_nothing(
    api: TestClient, raw_redis: redis.Redis, prefix: str, body: Any
) -> None:
    before = keys_under(raw_redis, prefix)
    body_out = assert_error(api.post("/v1/endpoints", json=body), 422, "validation_error")
    assert body_out["error"]["details"] and all("loc" in d and "msg" in d for d in body_out["error"]["details"])
    assert keys_under(raw_redis, prefix) == before


def test_bad_values_are_400_with_a_message_and_write_nothing(
    api: TestClient, raw_redis: redis.Redis, prefix: str
) -> None:
    before = keys_under(raw_redis, prefix)
    assert_error(api.post("/v1/endpoints", json={"url": "ftp://example.com/h"}), 400, "invalid_url")
    assert_error(api.post("/v1/endpoints", json={"url": "javascript:alert(1)"}), 400, "invalid_url")
    resp = api.post("/v1/endpoints", json={"url": "https://example.com/h", "event_types": ["bad type!"]})
    assert_error(resp, 400, "invalid_event_type")
    assert_error(api.post("/v1/endpoints", json={"url": "https://x.com/h", "max_batch": 0}), 400, "invalid_input")
    assert_error(api.post("/v1/endpoints", json={"url": "https://x.com/h", "secret": "nope!"}), 400, "invalid_input")
    assert_error(
        api.post("/v1/endpoints", content=b"{", headers={"content-type": "application/json"}), 422, "validation_error"
    )
    assert_error(
        api.post("/v1/endpoints", content=b"url=x", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert keys_under(raw_redis, prefix) == before


def test_private_targets_are_refused_unless_allowed(
    api_factory: Callable[..., TestClient], raw_redis: redis.Redis, prefix: str
) -> None:
    strict = api_factory(allow_private_targets=False)
    before = keys_under(raw_redis, prefix)
    for url in ("http://127.0.0.1:8080/h", "http://10.1.2.3/h", "http://[::1]/h", "http://localhost/h"):
        body = assert_error(strict.post("/v1/endpoints", json={"url": url}), 400, "unsafe_target")
        assert "refusing" in body["error"]["message"]
    assert keys_under(raw_redis, prefix) == before
    created = strict.post("/v1/endpoints", json={"url": "https://93.184.215.14/h"})
    assert created.status_code == 201
    resp = strict.patch(f"/v1/endpoints/{created.json()['id']}", json={"url": "http://192.168.0.1/"})
    assert_error(resp, 400, "unsafe_target")


def test_url_answers_teach_what_to_do(
    api_factory: Callable[..., TestClient], raw_redis: redis.Redis, prefix: str
) -> None:
    strict = api_factory(allow_private_targets=False)
    before = keys_under(raw_redis, prefix)
    body = assert_error(strict.post("/v1/endpoints", json={"url": "http://localhost:9011/ok"}), 400, "unsafe_target")
    assert "DISPATCHER_ALLOW_PRIVATE_TARGETS=true" in body["error"]["message"]
    body = assert_error(strict.post("/v1/endpoints", json={"url": "http://exa mple.com/x"}), 400, "invalid_url")
    assert body["error"]["message"].startswith("invalid URL: it contains a space")
    assert keys_under(raw_redis, prefix) == before


def test_our_validation_messages_drop_pydantics_prefix(api: TestClient) -> None:
    body = assert_error(api.post("/v1/endpoints", json={}), 422, "validation_error")
    assert body["error"]["message"] == "invalid request: body: url is required (only kind 'poll' has none)"
    assert body["error"]["details"][0]["msg"] == "url is required (only kind 'poll' has none)"


def test_an_unresolvable_host_is_created_with_a_warning(api_factory: Callable[..., TestClient]) -> None:
    strict = api_factory(allow_private_targets=False)
    created = strict.post("/v1/endpoints", json={"url": "https://hooks.example.invalid/x"})
    assert created.status_code == 201, created.text
    warnings = created.json()["warnings"]
    assert len(warnings) == 1 and "'hooks.example.invalid' does not resolve now" in warnings[0]
    ep_id = created.json()["id"]
    assert strict.get(f"/v1/endpoints/{ep_id}").json()["warnings"] == []  # not stored: said once, at save time
    patched = strict.patch(f"/v1/endpoints/{ep_id}", json={"url": "https://other.example.invalid/y"})
    assert patched.status_code == 200 and "does not resolve now" in patched.json()["warnings"][0]
    assert strict.patch(f"/v1/endpoints/{ep_id}", json={"description": "d"}).json()["warnings"] == []


def test_patch_enable_disable_delete(api: TestClient, dsp: Dispatcher) -> None:
    ep_id = api.post("/v1/endpoints", json={"url": "https://example.com/h"}).json()["id"]
    patched = api.patch(f"/v1/endpoints/{ep_id}", json={"description": "new", "max_batch": 3})
    assert patched.status_code == 200 and patched.json()["description"] == "new" and patched.json()["max_batch"] == 3
    assert patched.json()["secret"].endswith("…")
    assert_error(api.patch(f"/v1/endpoints/{ep_id}", json={"secret": "whsec_x"}), 422, "validation_error")
    assert_error(api.patch(f"/v1/endpoints/{ep_id}", json={"url": None}), 422, "validation_error")
    disabled = api.post(f"/v1/endpoints/{ep_id}/disable", json={"reason": "maintenance"}).json()
    assert disabled["enabled"] is False and disabled["disabled_reason"] == "maintenance"
    assert api.post(f"/v1/endpoints/{ep_id}/disable").json()["disabled_reason"] == "disabled by user"
    enabled = api.post(f"/v1/endpoints/{ep_id}/enable").json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None
    assert api.delete(f"/v1/endpoints/{ep_id}").status_code == 204
    assert_error(api.get(f"/v1/endpoints/{ep_id}"), 404, "not_found")
    assert_error(api.delete(f"/v1/endpoints/{ep_id}"), 404, "not_found")
    assert_error(api.post(f"/v1/endpoints/{ep_id}/enable"), 404, "not_found")


# -- events -----------------------------------------------------------------------------------------
def test_post_one_event_or_an_array(api: TestClient, dsp: Dispatcher) -> None:
    one = api.post("/v1/events", json={"type": "order.paid", "data": {"total": "9.99"}})
    assert one.status_code == 202
    assert one.json()["ids"] == [one.json()["id"]]
    assert dsp.event(one.json()["id"])["data"] == {"total": "9.99"}
    again = api.post("/v1/events", json={"type": "order.paid", "data": {}, "idempotency_key": "k-1"}).json()
    assert api.post("/v1/events", json={"type": "order.paid", "data": {}, "idempotency_key": "k-1"}).json() == again
    own = api.post("/v1/events", json={"type": "a.b", "id": "my-event-1"}).json()
    assert own == {"ids": ["my-event-1"], "id": "my-event-1"}
    many = api.post("/v1/events", json=[{"type": "a.b", "data": i} for i in range(3)])
    assert many.status_code == 202 and set(many.json()) == {"ids"} and len(many.json()["ids"]) == 3
    assert [dsp.event(i)["data"] for i in many.json()["ids"]] == [0, 1, 2]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "a.b", "extra": 1},
        {"type": 5},
        {"data": {}},
        [{"type": "a.b"}, {"type": "a.b", "idempotency_key": 7}],
        [],
        "a.b",
    ],
)
def test_bad_event_bodies_are_422_and_write_nothing(
    api: TestClient, raw_redis: redis.Redis, prefix: str, body: Any
) -> None:
    before = keys_under(raw_redis, prefix)
    assert_error(api.post("/v1/events", json=body), 422, "validation_error")
    assert keys_under(raw_redis, prefix) == before


def test_oversized_events_are_413_and_write_nothing(
    api_factory: Callable[..., TestClient], raw_redis: redis.Redis, prefix: str
) -> None:
    client = api_factory(max_payload_bytes=1024, api_max_body_bytes=64 * 1024)
    before = keys_under(raw_redis, prefix)
    body = assert_error(client.post("/v1/events", json={"type": "a.b", "data": "x" * 2000}), 413, "payload_too_large")
    assert "1024" in body["error"]["message"]
    resp = client.post("/v1/events", json=[{"type": "a.b", "data": 1}, {"type": "a.b", "data": "x" * 2000}])
    assert_error(resp, 413, "payload_too_large")
    assert_error(client.post("/v1/events", json={"type": "a.b", "data": "x" * 70_000}), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"type": "a.b", "data": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    streamed = client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert_error(streamed, 413, "payload_too_large")
    assert keys_under(raw_redis, prefix) == before
    assert_error(client.post("/v1/endpoints", json={"url": "https://x.com/" + "a" * 70_000}), 413, "payload_too_large")


def test_get_event_with_deliveries_after_the_pipeline(
    api: TestClient, runtime: Runtime, receiver_factory: Callable[..., Receiver]
) -> None:
    ok, failing = receiver_factory(), receiver_factory(reply=lambda n, r: (500, {}, b"down"))
    ep_ok = api.post("/v1/endpoints", json={"url": ok.url, "event_types": ["order.*"]}).json()
    ep_bad = api.post("/v1/endpoints", json={"url": failing.url, "retry_schedule": []}).json()
    event_id = api.post("/v1/events", json={"type": "order.paid", "data": {"n": 1}}).json()["id"]
    fresh = api.get(f"/v1/events/{event_id}").json()
    assert fresh["fanned_out"] is False and fresh["deliveries"] == []
    pipeline(runtime)
    event = api.get(f"/v1/events/{event_id}").json()
    assert event["id"] == event_id and event["type"] == "order.paid" and event["data"] == {"n": 1}
    assert event["fanned_out"] is True
    by_ep = {d["endpoint_id"]: d for d in event["deliveries"]}
    assert by_ep[ep_ok["id"]]["state"] == "delivered"
    assert [a["status"] for a in by_ep[ep_ok["id"]]["attempts"]] == [200]
    assert by_ep[ep_bad["id"]]["state"] == "dead"
    (attempt,) = by_ep[ep_bad["id"]]["attempts"]
    assert attempt["status"] == 500 and attempt["response"] == "down" and attempt["latency_ms"] > 0
    (req,) = ok.wait_for(1)
    assert Webhook(ep_ok["secret"]).verify(req.body, req.headers)["id"] == event_id
    assert_error(api.get("/v1/events/msg_nope"), 404, "not_found")


def test_endpoint_deliveries_by_state(
    api: TestClient, runtime: Runtime, receiver_factory: Callable[..., Receiver]
) -> None:
    rec = receiver_factory(reply=lambda n, r: (200, {}, b"") if n == 1 else (503, {}, b""))
    ep_id = api.post("/v1/endpoints", json={"url": rec.url, "retry_schedule": []}).json()["id"]
    first = api.post("/v1/events", json={"type": "a.b"}).json()["id"]
    pipeline(runtime)
    second = api.post("/v1/events", json={"type": "a.b"}).json()["id"]
    pipeline(runtime)
    listed = api.get(f"/v1/endpoints/{ep_id}/deliveries").json()["deliveries"]
    assert [d["event_id"] for d in listed] == [second, first]  # newest first
    dead = api.get(f"/v1/endpoints/{ep_id}/deliveries", params={"state": "dead"}).json()["deliveries"]
    assert [d["event_id"] for d in dead] == [second]
    delivered = api.get(f"/v1/endpoints/{ep_id}/deliveries?state=delivered&limit=1").json()["deliveries"]
    assert [d["event_id"] for d in delivered] == [first]
    assert api.get(f"/v1/deliveries/{dead[0]['id']}").json()["state"] == "dead"
    assert_error(api.get(f"/v1/endpoints/{ep_id}/deliveries?limit=0"), 422, "validation_error")
    assert_error(api.get(f"/v1/endpoints/{ep_id}/deliveries?state=lost"), 422, "validation_error")
    assert_error(api.get("/v1/endpoints/ep_nope/deliveries"), 404, "not_found")
    assert_error(api.get("/v1/deliveries/dlv_nope"), 404, "not_found")


def test_replay_one_then_all_dead_deliveries(
    api: TestClient, runtime: Runtime, receiver_factory: Callable[..., Receiver]
) -> None:
    healthy = {"up": False}
    rec = receiver_factory(reply=lambda n, r: (200, {}, b"") if healthy["up"] else (500, {}, b""))
    ep_id = api.post("/v1/endpoints", json={"url": rec.url, "retry_schedule": []}).json()["id"]
    ids = api.post("/v1/events", json=[{"type": "a.b", "data": i} for i in range(3)]).json()["ids"]
    pipeline(runtime)
    dead = api.get(f"/v1/endpoints/{ep_id}/deliveries?state=dead").json()["deliveries"]
    assert {d["event_id"] for d in dead} == set(ids)
    healthy["up"] = True

    one = dead[0]["id"]
    resp = api.post(f"/v1/deliveries/{one}/replay")
    assert resp.status_code == 202 and resp.json() == {"replayed": 1}
    run_deliver(runtime)
    replayed = api.get(f"/v1/deliveries/{one}").json()
    assert replayed["state"] == "delivered" and [a["status"] for a in replayed["attempts"]] == [500, 200]
    assert_error(api.post(f"/v1/deliveries/{one}/replay"), 409, "invalid_state")
    assert_error(api.post("/v1/deliveries/dlv_nope/replay"), 404, "not_found")

    future = api.post(f"/v1/endpoints/{ep_id}/replay", params={"state": "dead", "since": 4_000_000_000})
    assert future.json() == {"replayed": 0}
    bulk = api.post(f"/v1/endpoints/{ep_id}/replay?state=dead&since=0")
    assert bulk.status_code == 202 and bulk.json() == {"replayed": 2}
    run_deliver(runtime)
    states = [api.get(f"/v1/deliveries/{d['id']}").json()["state"] for d in dead]
    assert states == ["delivered"] * 3
    assert api.get(f"/v1/endpoints/{ep_id}/deliveries?state=dead").json()["deliveries"] == []
    assert_error(api.post(f"/v1/endpoints/{ep_id}/replay?state=delivered"), 422, "validation_error")
    assert_error(api.post("/v1/endpoints/ep_nope/replay"), 404, "not_found")


def test_send_test_event(api: TestClient, runtime: Runtime, receiver: Receiver) -> None:
    ep = api.post("/v1/endpoints", json={"url": receiver.url, "event_types": ["order.*"]}).json()
    resp = api.post(f"/v1/endpoints/{ep['id']}/test")
    assert resp.status_code == 202
    event_id = resp.json()["event_id"]
    pipeline(runtime)
    (req,) = receiver.wait_for(1)
    payload = Webhook(ep["secret"]).verify(req.body, req.headers)
    assert payload["type"] == "webhook.test" and payload["id"] == event_id
    assert_error(api.post("/v1/endpoints/ep_nope/test"), 404, "not_found")


def test_rotate_secret_returns_it_once_and_both_secrets_sign(
    api: TestClient, runtime: Runtime, receiver: Receiver
) -> None:
    ep = api.post("/v1/endpoints", json={"url": receiver.url}).json()
    old = ep["secret"]
    rotated = api.post(f"/v1/endpoints/{ep['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["previous_secrets"][0]["secret"] == mask_secret(old)
    got = api.get(f"/v1/endpoints/{ep['id']}").json()
    assert got["secret"] == mask_secret(new) and got["previous_secrets"][0]["secret"] == mask_secret(old)

    api.post("/v1/events", json={"type": "a.b", "data": {"rotated": True}})
    pipeline(runtime)
    (req,) = receiver.wait_for(1)
    signatures = req.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (old, new):
        assert Webhook(secret).verify(req.body, req.headers)["data"] == {"rotated": True}

    no_grace = api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", json={"grace_s": 0}).json()
    assert [p["secret"] for p in no_grace["previous_secrets"]] == [mask_secret(old)]  # new's grace is 0
    assert_error(api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", json={"grace_s": -1}), 422, "validation_error")
    assert_error(api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", json={"grace": 1}), 422, "validation_error")
    assert_error(api.post("/v1/endpoints/ep_nope/rotate-secret"), 404, "not_found")


# -- the rest ---------------------------------------------------------------------------------------
def test_unknown_routes_and_methods_use_the_error_shape(api: TestClient) -> None:
    assert_error(api.get("/v1/nothing"), 404, "not_found")
    assert_error(api.put("/v1/endpoints"), 405, "method_not_allowed")


def test_openapi_document_lists_the_routes(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    for path in (
        "/v1/endpoints",
        "/v1/endpoints/{endpoint_id}",
        "/v1/endpoints/{endpoint_id}/rotate-secret",
        "/v1/endpoints/{endpoint_id}/replay",
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/deliveries/{delivery_id}/replay",
        "/healthz",
        "/metrics",
    ):
        assert path in doc["paths"], path
    assert "HTTPBearer" in doc["components"]["securitySchemes"]


def test_responses_carry_security_headers(api: TestClient) -> None:
    resp = api.get("/v1/endpoints")
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def test_stats_route_serves_collect_stats(api: TestClient, dsp: Dispatcher) -> None:
    api.post("/v1/events", json={"type": "a.b"})
    stats = api.get("/v1/stats").json()
    assert stats["enqueued_total"] == 1 and stats["queue"]["fanout_due"] == 1
    assert len(stats["minutes"]) == 10 and set(stats["minutes"][0]) == {"minute", "delivered", "retrying", "dead"}
