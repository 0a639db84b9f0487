"""``/v1/event-types`` and the catalog's effect on ``POST /v1/events``, against a real Redis: the one error
shape, and nothing written by a refused request; the web page's form offers the registered types (a real
headless Chromium against ``dispatcher api`` in its own process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from fastapi.testclient import TestClient

from dispatcher import Dispatcher
from dispatcher.store.keys import Keys

if TYPE_CHECKING:
    from tests.conftest import ApiServer

SCHEMA = {
    "type": "object",
    "required": ["order_id"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}},
}
BODY = {"description": "An order was paid", "schema": SCHEMA, "example": {"order_id": "o-1", "amount": 5}}


def keys_under(client: redis.Redis, prefix: str) -> set[bytes]:
    return set(client.scan_iter(match=f"{prefix}*", count=1000))


def assert_error(resp: Any, status: int, code: str, fragment: str = "") -> str:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code, error
    assert fragment in error["message"], error["message"]
    return str(error["message"])


def test_register_list_get_and_delete(api: TestClient, dsp: Dispatcher) -> None:
    resp = api.put("/v1/event-types/order.paid", json=BODY)
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert {k: created[k] for k in BODY} == BODY and created["name"] == "order.paid" and created["updated_at"] > 0
    assert api.put("/v1/event-types/order.created", json={"schema": {"type": "object"}}).status_code == 200
    listed = api.get("/v1/event-types").json()["event_types"]
    assert [t["name"] for t in listed] == ["order.created", "order.paid"]
    assert listed[0] == {**listed[0], "description": "", "example": None}
    assert api.get("/v1/event-types/order.paid").json() == created
    assert dsp.event_types.get("order.paid").schema == SCHEMA  # the same catalog as the Python API

    assert api.delete("/v1/event-types/order.paid").status_code == 204
    assert_error(api.get("/v1/event-types/order.paid"), 404, "not_found", "order.paid")
    assert_error(api.delete("/v1/event-types/order.paid"), 404, "not_found")
    assert [t["name"] for t in api.get("/v1/event-types").json()["event_types"]] == ["order.created"]


def test_event_types_need_the_key(anon: TestClient) -> None:
    assert_error(anon.get("/v1/event-types"), 401, "unauthorized")
    assert_error(anon.put("/v1/event-types/order.paid", json=BODY), 401, "unauthorized")


def test_bad_registrations_answer_400_or_422_and_write_nothing(
    api: TestClient, raw_redis: redis.Redis, prefix: str
) -> None:
    before = keys_under(raw_redis, prefix)
    assert_error(api.put("/v1/event-types/order.paid", json={"schema": {"type": "strin"}}), 400, "invalid_schema",
                 "not valid JSON Schema at /type")  # fmt: skip
    assert_error(api.put("/v1/event-types/order.paid", json={"schema": {"$ref": "https://x.example/s.json"}}), 400,
                 "invalid_schema", "only local references")  # fmt: skip
    bad_example = {**BODY, "example": {"order_id": 5}}
    assert_error(api.put("/v1/event-types/order.paid", json=bad_example), 400, "invalid_schema",
                 "example does not match the schema: at /order_id, keyword 'type'")  # fmt: skip
    assert_error(api.put("/v1/event-types/order%20paid", json=BODY), 400, "invalid_event_type")
    assert_error(api.put("/v1/event-types/webhook.test", json=BODY), 400, "invalid_input", "dispatcher itself")
    assert_error(api.put("/v1/event-types/order.paid", json={"description": "no schema"}), 422, "validation_error")
    assert_error(api.put("/v1/event-types/order.paid", json={"schema": "string"}), 422, "validation_error")
    assert_error(api.put("/v1/event-types/order.paid", json={**BODY, "extra": 1}), 422, "validation_error")
    assert keys_under(raw_redis, prefix) == before


def test_events_of_a_registered_type_must_match_its_schema(
    api: TestClient, raw_redis: redis.Redis, store_keys: Keys
) -> None:
    assert api.put("/v1/event-types/order.paid", json=BODY).status_code == 200
    message = assert_error(api.post("/v1/events", json={"type": "order.paid", "data": {"order_id": "o", "amount": -3}}),
                           400, "data_mismatch", "at /amount, keyword 'minimum' fails (0)")  # fmt: skip
    assert "-3" not in message
    batch = [{"type": "order.paid", "data": {"order_id": "o"}}, {"type": "order.paid", "data": {}}]
    assert_error(api.post("/v1/events", json=batch), 400, "data_mismatch", "item 1:")
    assert raw_redis.zcard(store_keys.fanout) == 0
    assert api.post("/v1/events", json=batch[:1]).status_code == 202
    assert api.post("/v1/events", json={"type": "user.created", "data": 1}).status_code == 202
    assert raw_redis.zcard(store_keys.fanout) == 2


def test_require_registered_refuses_unregistered_types(
    api_factory: Any, raw_redis: redis.Redis, store_keys: Keys
) -> None:
    strict = api_factory(event_types_require_registered=True)
    assert_error(strict.post("/v1/events", json={"type": "user.created"}), 400, "invalid_event_type", "not registered")
    assert raw_redis.zcard(store_keys.fanout) == 0
    assert strict.put("/v1/event-types/user.created", json={"schema": {}}).status_code == 200
    assert strict.post("/v1/events", json={"type": "user.created"}).status_code == 202


# -- the web page's form -------------------------------------------------------------------------------
def test_the_page_offers_registered_types_escaped(anon: TestClient, api_key: str, dsp: Dispatcher) -> None:
    dsp.event_types.register(
        "order.paid", description='<script>alert("d")</script>', schema={}, example={"note": "<b>x</b>"}
    )
    assert anon.post("/web/login", json={"api_key": api_key}, headers={"X-Dispatcher-CSRF": "1"}).status_code == 204
    page = anon.get("/").text
    assert "Registered event types (1)" in page and 'data-add-type="order.paid"' in page
    assert "&lt;script&gt;" in page and '<script>alert("d")' not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    dsp.event_types.unregister("order.paid")
    assert "Registered event types" not in anon.get("/").text


def test_the_form_adds_registered_types_to_a_new_endpoint(
    api_server: ApiServer, api_key: str, browser_page: object, dsp: Dispatcher
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    dsp.event_types.register("order.paid", description="An order was paid", schema=SCHEMA, example=BODY["example"])
    dsp.event_types.register("user.created", description="A user signed up", schema={"type": "object"})
    page.goto(api_server.url + "/")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Registered event types (2)").click()
    types = page.locator("#registered-types")
    expect(types).to_contain_text("An order was paid")
    expect(types).to_contain_text('"order_id": "o-1"')  # the example, pretty-printed
    types.locator('[data-add-type="order.paid"]').click()
    expect(page.get_by_label("Event types")).to_have_value("order.paid")  # "*" is replaced
    types.locator('[data-add-type="user.created"]').click()
    types.locator('[data-add-type="order.paid"]').click()  # not added twice
    expect(page.get_by_label("Event types")).to_have_value("order.paid, user.created")
    page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/hooks")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#created")).to_be_visible()
    assert [ep.event_types for ep in dsp.list_endpoints()] == [["order.paid", "user.created"]]
