"""The ``/v1`` routes: endpoints, events, event types, deliveries, replay and stats, thin over ``Dispatcher``.

Handlers are plain functions (FastAPI runs them in its thread pool) because ``Dispatcher`` talks to
Redis synchronously. Errors are raised as the dispatcher's exceptions and turned into the one
error shape by ``dispatcher.api_errors``. A handler's name is its OpenAPI operation id (what a
generated client calls it: ``create_endpoint``, ``enqueue_event``...), so names are unique in the app.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, overload

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import Discriminator, Tag

from dispatcher.api.auth import operator_only, require_auth, tenant_scope
from dispatcher.api.errors import ERROR_RESPONSES, ApiError
from dispatcher.api.schemas import (
    MAX_EVENTS_PER_REQUEST,
    DeliveryList,
    DisableEndpoint,
    EndpointCreate,
    EndpointList,
    EndpointOut,
    EndpointUpdate,
    Enqueued,
    EventIn,
    EventOut,
    EventTypeIn,
    EventTypeList,
    EventTypeOut,
    Replayed,
    RotateSecret,
    SentTest,
    StatsOut,
)
from dispatcher.client import Dispatcher
from dispatcher.errors import DeliveryNotFound, EndpointNotFound, EventNotFound, TenantNotFound
from dispatcher.models import Delivery, DeliveryState, Endpoint

router = APIRouter(prefix="/v1", dependencies=[Depends(require_auth)], responses=ERROR_RESPONSES)


def get_dispatcher(request: Request) -> Dispatcher:
    dsp = request.app.state.dispatcher
    assert isinstance(dsp, Dispatcher)
    return dsp


Dsp = Annotated[Dispatcher, Depends(get_dispatcher)]
Scope = Annotated[str | None, Depends(tenant_scope)]  # a tenant token's tenant; None for an operator
OPERATOR_ONLY = [Depends(operator_only)]


def owned_endpoint(dsp: Dispatcher, endpoint_id: str, scope: str | None) -> Endpoint:
    """The endpoint, if the caller may see it: another tenant's answers 404, as if it did not exist."""
    endpoint = dsp.get_endpoint(endpoint_id)
    if scope is not None and endpoint.tenant != scope:
        raise EndpointNotFound(f"no endpoint {endpoint_id!r}")
    return endpoint


def guard_endpoint(dsp: Dispatcher, endpoint_id: str, scope: str | None) -> None:
    """Before a change: a tenant token may touch its own tenant's endpoint only (404 otherwise); an
    operator's call reads nothing extra (the change itself answers 404 for a missing endpoint)."""
    if scope is not None:
        owned_endpoint(dsp, endpoint_id, scope)


@overload
def scoped_tenant(tenant: str, scope: str | None) -> str: ...
@overload
def scoped_tenant(tenant: None, scope: str | None) -> str | None: ...
def scoped_tenant(tenant: str | None, scope: str | None) -> str | None:
    """The tenant a request reaches: the one it names, or a tenant token's own; another tenant than the
    token's answers 404 (no existence leak)."""
    if scope is None:
        return tenant
    if tenant is not None and tenant != scope:
        raise TenantNotFound(f"no tenant {tenant!r}")
    return scope


def with_secret(endpoint: Endpoint) -> dict[str, Any]:
    """The masked endpoint with its credentials in full, its secret and its URL (a chat robot's carries a
    token): only for the answers that show them once (creation, a secret rotation)."""
    data = endpoint.masked()
    data["secret"] = endpoint.secret
    data["url"] = endpoint.url
    return data


# -- endpoints ------------------------------------------------------------------------------------
@router.post("/endpoints", status_code=status.HTTP_201_CREATED, response_model=EndpointOut, tags=["endpoints"])
def create_endpoint(body: EndpointCreate, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    """Register an endpoint. The answer holds its full signing secret: the only time it is shown."""
    fields = body.model_dump(exclude_unset=True)
    if scope is not None:
        fields["tenant"] = scoped_tenant(fields.get("tenant"), scope)
    url, event_types, secret = fields.pop("url", None), fields.pop("event_types", ["*"]), fields.pop("secret", None)
    return with_secret(dsp.subscribe(url, event_types, secret, **fields))


@router.get("/endpoints", response_model=EndpointList, tags=["endpoints"])
def list_endpoints(dsp: Dsp, scope: Scope) -> dict[str, Any]:
    return {"endpoints": [ep.masked() for ep in dsp.list_endpoints(tenant=scope)]}


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut, tags=["endpoints"])
def get_endpoint(endpoint_id: str, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    return owned_endpoint(dsp, endpoint_id, scope).masked()


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointOut, tags=["endpoints"])
def update_endpoint(endpoint_id: str, body: EndpointUpdate, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    """Change the given fields; ``enabled: true`` also clears the disabled reason."""
    guard_endpoint(dsp, endpoint_id, scope)
    return dsp.update_endpoint(endpoint_id, **body.model_dump(exclude_unset=True)).masked()


@router.delete("/endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["endpoints"])
def delete_endpoint(endpoint_id: str, dsp: Dsp, scope: Scope) -> Response:
    guard_endpoint(dsp, endpoint_id, scope)
    dsp.unsubscribe(endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=EndpointOut, tags=["endpoints"])
def rotate_endpoint_secret(
    endpoint_id: str, dsp: Dsp, scope: Scope, body: Annotated[RotateSecret | None, Body()] = None
) -> dict[str, Any]:
    """New signing secret, shown once; the old one keeps signing alongside it for ``grace_s`` (1 day)."""
    guard_endpoint(dsp, endpoint_id, scope)
    req = body or RotateSecret()
    return with_secret(dsp.rotate_secret(endpoint_id, req.grace_s, req.secret))


@router.post("/endpoints/{endpoint_id}/enable", response_model=EndpointOut, tags=["endpoints"])
def enable_endpoint(endpoint_id: str, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    guard_endpoint(dsp, endpoint_id, scope)
    return dsp.enable_endpoint(endpoint_id).masked()


@router.post("/endpoints/{endpoint_id}/disable", response_model=EndpointOut, tags=["endpoints"])
def disable_endpoint(
    endpoint_id: str, dsp: Dsp, scope: Scope, body: Annotated[DisableEndpoint | None, Body()] = None
) -> dict[str, Any]:
    guard_endpoint(dsp, endpoint_id, scope)
    return dsp.disable_endpoint(endpoint_id, body.reason if body else None).masked()


@router.post(
    "/endpoints/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=SentTest, tags=["endpoints"]
)
def send_test_event(endpoint_id: str, dsp: Dsp, scope: Scope) -> dict[str, str]:
    """Send a ``webhook.test`` event to this endpoint only, whatever its type filters."""
    guard_endpoint(dsp, endpoint_id, scope)
    return {"event_id": dsp.send_test(endpoint_id)}


# -- events ---------------------------------------------------------------------------------------
def _one_or_many(value: Any) -> str:
    return "events" if isinstance(value, list) else "event"


# a callable discriminator, so a bad body is reported against the shape that was sent, not both
EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[list[EventIn], Tag("events")],
    Discriminator(_one_or_many),
    Body(description=f"one event, or an array of 1 to {MAX_EVENTS_PER_REQUEST}"),
]


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Enqueued,
    response_model_exclude_none=True,
    tags=["events"],
)
def enqueue_event(body: EventsBody, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    """Store events durably for delivery to every matching endpoint. An array is all or nothing."""
    if isinstance(body, EventIn):
        tenant = scoped_tenant(body.tenant, scope)
        event_id = dsp.enqueue(
            body.type, body.data, event_id=body.id, idempotency_key=body.idempotency_key, tenant=tenant
        )
        return {"ids": [event_id], "id": event_id}
    if not 1 <= len(body) <= MAX_EVENTS_PER_REQUEST:
        raise ApiError(422, "validation_error", f"send 1 to {MAX_EVENTS_PER_REQUEST} events per request")
    items = [
        {
            "type": e.type,
            "data": e.data,
            "id": e.id,
            "idempotency_key": e.idempotency_key,
            "tenant": scoped_tenant(e.tenant, scope),
        }
        for e in body
    ]
    return {"ids": dsp.enqueue_many(items)}


@router.get("/events/{event_id}", response_model=EventOut, tags=["events"])
def get_event(event_id: str, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    """The event as sent, and its deliveries (none until fanned out) with every attempt."""
    event = dsp.event(event_id)
    if scope is not None and event["tenant"] != scope:
        raise EventNotFound(f"no event {event_id!r}")
    return {**event, "deliveries": dsp.deliveries(event_id)}


# -- event types ----------------------------------------------------------------------------------
@router.get("/event-types", response_model=EventTypeList, response_model_by_alias=True, tags=["event types"])
def list_event_types(dsp: Dsp) -> dict[str, Any]:
    """Every registered event type, by name, with its description, schema and example."""
    return {"event_types": [t.as_dict() for t in dsp.event_types.list()]}


@router.get("/event-types/{name}", response_model=EventTypeOut, response_model_by_alias=True, tags=["event types"])
def get_event_type(name: str, dsp: Dsp) -> dict[str, Any]:
    return dsp.event_types.get(name).as_dict()


@router.put(
    "/event-types/{name}",
    response_model=EventTypeOut,
    response_model_by_alias=True,
    tags=["event types"],
    dependencies=OPERATOR_ONLY,
)
def register_event_type(name: str, body: EventTypeIn, dsp: Dsp) -> dict[str, Any]:
    """Register (or replace) an event type: events of this type whose data does not match the schema are
    refused from then on (400). The schema must be valid JSON Schema and the example match it."""
    registered = dsp.event_types.register(name, description=body.description, schema=body.schema_, example=body.example)
    return registered.as_dict()


@router.delete(
    "/event-types/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["event types"], dependencies=OPERATOR_ONLY
)
def delete_event_type(name: str, dsp: Dsp) -> Response:
    """Unregister an event type: its events are no longer checked (or refused, with the require setting)."""
    dsp.event_types.unregister(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- deliveries -----------------------------------------------------------------------------------
@router.get("/endpoints/{endpoint_id}/deliveries", response_model=DeliveryList, tags=["deliveries"])
def list_endpoint_deliveries(
    endpoint_id: str,
    dsp: Dsp,
    scope: Scope,
    state: DeliveryState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[Delivery]]:
    """The endpoint's deliveries, newest first; ``state=dead`` reads its dead-letter queue."""
    owned_endpoint(dsp, endpoint_id, scope)
    return {"deliveries": dsp.endpoint_deliveries(endpoint_id, state, limit)}


@router.get("/deliveries/{delivery_id}", response_model=Delivery, tags=["deliveries"])
def get_delivery(delivery_id: str, dsp: Dsp, scope: Scope) -> Delivery:
    return owned_delivery(dsp, delivery_id, scope)


def owned_delivery(dsp: Dispatcher, delivery_id: str, scope: str | None) -> Delivery:
    """The delivery, if the caller may see it (a tenant token: one of its own endpoints' only)."""
    delivery = dsp.get_delivery(delivery_id)
    if scope is not None:
        try:
            owned_endpoint(dsp, delivery.endpoint_id, scope)
        except EndpointNotFound:
            raise DeliveryNotFound(f"no delivery {delivery_id!r}") from None
    return delivery


@router.post(
    "/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Replayed,
    tags=["deliveries"],
)
def replay_delivery(delivery_id: str, dsp: Dsp, scope: Scope) -> dict[str, int]:
    """Queue a dead delivery again for a fresh round of attempts (409 unless it is dead)."""
    if scope is not None:  # an operator's replay reads nothing extra
        owned_delivery(dsp, delivery_id, scope)
    return {"replayed": dsp.replay(delivery_id)}


@router.post(
    "/endpoints/{endpoint_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Replayed,
    tags=["deliveries"],
)
def replay_endpoint(
    endpoint_id: str,
    dsp: Dsp,
    scope: Scope,
    state: Literal["dead"] = "dead",
    since: Annotated[float | None, Query(ge=0, description="unix time: only dead-lettered at or after")] = None,
) -> dict[str, int]:
    """Replay every dead delivery of the endpoint (optionally only those dead since ``since``)."""
    owned_endpoint(dsp, endpoint_id, scope)
    return {"replayed": dsp.replay(endpoint_id=endpoint_id, since=since)}


# -- stats ----------------------------------------------------------------------------------------
@router.get("/stats", response_model=StatsOut, tags=["monitoring"], dependencies=OPERATOR_ONLY)
def get_stats(dsp: Dsp) -> dict[str, Any]:
    """Counters, queue depths, dead letters, workers and per-minute outcomes (see /metrics)."""
    return dsp.stats()
