"""Tenant tokens, route by route from the OpenAPI document: another tenant's resource answers 404 (no
existence leak), operator routes answer 403, the token's own tenant is reached. Every operation in the
document must be classified here, so a new route cannot ship without deciding what a tenant token gets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dispatcher import Dispatcher
from dispatcher.worker.runtime import Runtime

OPERATOR = "operator"  # 403 for any tenant token
THEIRS = "theirs"  # addressed to one tenant's resource: 404 with another tenant's token, allowed with its own
COLLECTION = "collection"  # lists or creates within the caller's own tenant

ROUTES: dict[str, str] = {
    "create_tenant": OPERATOR, "set_tenant_limits": OPERATOR, "list_tenants": OPERATOR, "delete_tenant": OPERATOR,
    "create_tenant_token": OPERATOR, "create_portal_link": OPERATOR,
    "get_stats": OPERATOR, "get_metrics": OPERATOR, "register_event_type": OPERATOR, "delete_event_type": OPERATOR,
    "get_tenant": THEIRS, "list_tenant_endpoints": THEIRS, "get_endpoint": THEIRS, "update_endpoint": THEIRS,
    "delete_endpoint": THEIRS, "rotate_endpoint_secret": THEIRS, "enable_endpoint": THEIRS,
    "disable_endpoint": THEIRS, "send_test_event": THEIRS, "get_event": THEIRS, "list_endpoint_deliveries": THEIRS,
    "get_delivery": THEIRS, "replay_delivery": THEIRS, "replay_endpoint": THEIRS, "poll_endpoint": THEIRS,
    "create_endpoint": COLLECTION, "list_endpoints": COLLECTION, "enqueue_event": COLLECTION,
    "list_event_types": COLLECTION, "get_event_type": COLLECTION, "get_health": COLLECTION,
}  # fmt: skip
BODIES: dict[str, Any] = {
    "create_tenant": {"id": "x"}, "set_tenant_limits": {}, "update_endpoint": {"description": "x"},
    "register_event_type": {"schema": {}},
    "create_endpoint": {"url": "http://127.0.0.1:9/hook"}, "enqueue_event": {"type": "a.b", "data": {}},
}  # fmt: skip


@pytest.fixture
def world(
    dsp: Dispatcher, runtime: Runtime, api_factory: Callable[..., TestClient], pump: Callable[..., Any]
) -> dict[str, Any]:
    """Tenants acme and globex, an endpoint, an event and a dead delivery of acme's, a token of each."""
    for tenant in ("acme", "globex"):
        dsp.create_tenant(tenant)
    ep = dsp.subscribe("http://127.0.0.1:9/hook", ["*"], tenant="acme", also_poll=True, retry_schedule=[])
    event_id = dsp.enqueue("order.paid", {}, tenant="acme")
    pump(runtime, lambda: [d for d in dsp.deliveries(event_id) if d.state.value == "dead"])  # port 9: refused
    tokens = {t: dsp.issue_tenant_token(t) for t in ("acme", "globex")}
    clients = {t: api_factory(headers={"Authorization": f"Bearer {tok}"}) for t, tok in tokens.items()}
    params = {"tenant_id": "acme", "endpoint_id": ep.id, "event_id": event_id,
              "delivery_id": dsp.deliveries(event_id)[0].id, "name": "order.paid"}  # fmt: skip
    return {"clients": clients, "params": params, "operator": api_factory()}


def operations(client: TestClient) -> list[tuple[str, str, str]]:
    doc = client.get("/openapi.json").json()
    return [(op["operationId"], method.upper(), path) for path, item in doc["paths"].items()
            for method, op in item.items() if method in ("get", "post", "put", "patch", "delete")]  # fmt: skip


def call(client: TestClient, op: str, method: str, path: str, params: dict[str, str]) -> int:
    url = path.format(**{k: v for k, v in params.items() if "{" + k + "}" in path})
    return client.request(method, url, json=BODIES.get(op)).status_code


def test_every_route_gives_a_tenant_token_its_own_tenant_only(world: dict[str, Any]) -> None:
    globex, acme = world["clients"]["globex"], world["clients"]["acme"]
    ops = operations(world["operator"])
    assert {op for op, _, _ in ops} == set(ROUTES), "classify the new route's tenant-token behaviour in ROUTES"
    destructive = ("delete_endpoint",)
    for op, method, path in sorted(ops, key=lambda o: o[0] in destructive):  # the endpoint is deleted last
        kind, params = ROUTES[op], world["params"]
        if kind == OPERATOR:
            assert call(globex, op, method, path, params) == 403, op
            assert call(acme, op, method, path, params) == 403, op
        elif kind == THEIRS:
            assert call(globex, op, method, path, params) == 404, op  # as if it did not exist
            assert call(acme, op, method, path, params) not in (401, 403, 404), op


def test_collections_hold_the_callers_own_tenant(world: dict[str, Any], dsp: Dispatcher) -> None:
    globex, acme = world["clients"]["globex"], world["clients"]["acme"]
    made = globex.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/g"})
    assert made.status_code == 201 and made.json()["tenant"] == "globex"
    assert [e["id"] for e in globex.get("/v1/endpoints").json()["endpoints"]] == [made.json()["id"]]
    assert world["params"]["endpoint_id"] in {e["id"] for e in acme.get("/v1/endpoints").json()["endpoints"]}
    other = globex.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/g", "tenant": "acme"})
    assert other.status_code == 404  # not another tenant's, and no hint that it exists
    sent = globex.post("/v1/events", json={"type": "a.b", "data": {}})
    assert sent.status_code == 202 and dsp.event(sent.json()["id"])["tenant"] == "globex"
    assert globex.post("/v1/events", json=[{"type": "a.b", "tenant": "acme"}]).status_code == 404


def test_a_deleted_tenants_token_and_a_wrong_one_are_refused(world: dict[str, Any], dsp: Dispatcher) -> None:
    acme = world["clients"]["acme"]
    assert acme.get("/v1/endpoints").status_code == 200
    dsp.delete_tenant("acme")
    assert acme.get("/v1/endpoints").status_code == 401
    forged = world["operator"].get("/v1/endpoints", headers={"Authorization": "Bearer wht_forged"})
    assert forged.status_code == 401
