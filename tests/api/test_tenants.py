"""``/v1/tenants``: create, list, get, delete, a tenant's endpoints; events and endpoints naming a tenant."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from dispatcher import Dispatcher


def error_code(resp: Any) -> str:
    return str(resp.json()["error"]["code"])


def test_tenants_through_the_api(api: TestClient, dsp: Dispatcher) -> None:
    created = api.post("/v1/tenants", json={"id": "acme", "name": "Acme"})
    assert created.status_code == 201 and created.json()["id"] == "acme"
    assert api.post("/v1/tenants", json={"id": "acme"}).status_code == 409
    assert api.post("/v1/tenants", json={"id": "bad id"}).status_code == 400
    assert api.post("/v1/tenants", json={"id": "x", "extra": 1}).status_code == 422
    assert [t["id"] for t in api.get("/v1/tenants").json()["tenants"]] == ["default", "acme"]

    ep = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook", "tenant": "acme"})
    assert ep.status_code == 201 and ep.json()["tenant"] == "acme"
    nope = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook", "tenant": "nope"})
    assert nope.status_code == 404 and "no tenant 'nope'" in nope.json()["error"]["message"]
    assert [e["id"] for e in api.get("/v1/tenants/acme/endpoints").json()["endpoints"]] == [ep.json()["id"]]
    assert api.get("/v1/tenants/nope/endpoints").status_code == 404

    one = api.post("/v1/events", json={"type": "order.paid", "data": {}, "tenant": "acme"})
    assert one.status_code == 202
    refused = api.post("/v1/events", json=[{"type": "a.b"}, {"type": "a.b", "tenant": "nope"}])
    assert refused.status_code == 404 and error_code(refused) == "not_found"
    assert dsp.store.queue.pending() == 1  # the refused array wrote nothing

    limited = api.put("/v1/tenants/acme/limits", json={"max_events_per_day": 1})
    assert limited.status_code == 200 and limited.json()["max_events_per_day"] == 1
    over = api.post("/v1/events", json={"type": "order.paid", "data": {}, "tenant": "acme"})
    assert over.status_code == 429 and error_code(over) == "quota_exceeded"
    assert 0 < int(over.headers["Retry-After"]) <= 86400
    assert api.put("/v1/tenants/acme/limits", json={"max_events_per_s": 0}).status_code == 400
    assert api.put("/v1/tenants/nope/limits", json={}).status_code == 404

    deleted = api.delete("/v1/tenants/acme")
    assert deleted.status_code == 200 and deleted.json() == {"purged": 0}
    assert api.get("/v1/endpoints").json()["endpoints"] == []
    assert api.get("/v1/tenants/acme").status_code == 404
    assert api.delete("/v1/tenants/default").status_code == 409
