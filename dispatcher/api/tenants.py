"""The ``/v1/tenants`` routes: tenants, each one's endpoints and its tokens, thin over ``Dispatcher``.

Creating, listing and deleting tenants and issuing tokens is the operator's (a tenant token gets 403); a
tenant token reads its own tenant only (any other answers 404, as if it did not exist).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, status

from dispatcher.api.auth import require_auth
from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.api.routes import OPERATOR_ONLY, Dsp, Scope, scoped_tenant
from dispatcher.api.schemas import (
    EndpointList,
    PortalLinkOut,
    TenantCreate,
    TenantDeleted,
    TenantLimits,
    TenantList,
    TenantOut,
    TenantToken,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_auth)], responses=ERROR_RESPONSES, tags=["tenants"])


@router.post("/tenants", status_code=status.HTTP_201_CREATED, response_model=TenantOut, dependencies=OPERATOR_ONLY)
def create_tenant(body: TenantCreate, dsp: Dsp) -> dict[str, Any]:
    """A tenant: its endpoints receive only the events posted with its id (``"tenant"``)."""
    return dsp.create_tenant(body.id, body.name, body.max_events_per_s, body.max_events_per_day).model_dump()


@router.get("/tenants", response_model=TenantList, dependencies=OPERATOR_ONLY)
def list_tenants(dsp: Dsp) -> dict[str, Any]:
    return {"tenants": [t.model_dump() for t in dsp.list_tenants()]}


@router.get("/tenants/{tenant_id}", response_model=TenantOut)
def get_tenant(tenant_id: str, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    return dsp.get_tenant(scoped_tenant(tenant_id, scope)).model_dump()


@router.put("/tenants/{tenant_id}/limits", response_model=TenantOut, dependencies=OPERATOR_ONLY)
def set_tenant_limits(tenant_id: str, body: TenantLimits, dsp: Dsp) -> dict[str, Any]:
    """Replace the tenant's limits: past them ``POST /v1/events`` answers 429 ``quota_exceeded`` with
    ``Retry-After``, writing nothing."""
    return dsp.set_tenant_limits(tenant_id, body.max_events_per_s, body.max_events_per_day).model_dump()


@router.delete("/tenants/{tenant_id}", response_model=TenantDeleted, dependencies=OPERATOR_ONLY)
def delete_tenant(tenant_id: str, dsp: Dsp) -> dict[str, int]:
    """Delete the tenant, its endpoints and their pending deliveries; its tokens stop working."""
    return {"purged": dsp.delete_tenant(tenant_id)}


@router.get("/tenants/{tenant_id}/endpoints", response_model=EndpointList)
def list_tenant_endpoints(tenant_id: str, dsp: Dsp, scope: Scope) -> dict[str, Any]:
    return {"endpoints": [ep.masked() for ep in dsp.list_endpoints(tenant=scoped_tenant(tenant_id, scope))]}


@router.post(
    "/tenants/{tenant_id}/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TenantToken,
    dependencies=OPERATOR_ONLY,
)
def create_tenant_token(tenant_id: str, dsp: Dsp) -> dict[str, str]:
    """A token for the tenant's own backend: it reaches that tenant's endpoints, events, deliveries, replay
    and pull logs only. Shown once (only its digest is stored); deleting the tenant revokes it."""
    return {"tenant": tenant_id, "token": dsp.issue_tenant_token(tenant_id)}


@router.post(
    "/tenants/{tenant_id}/portal-link",
    status_code=status.HTTP_201_CREATED,
    response_model=PortalLinkOut,
    dependencies=OPERATOR_ONLY,
)
def create_portal_link(tenant_id: str, dsp: Dsp, request: Request) -> dict[str, Any]:
    """A link to the tenant's consumer portal, for the platform to hand to its customer (or put in an iframe):
    opened once within ``portal_link_ttl_s``, it logs that browser in to this tenant's endpoints only, for
    ``portal_session_ttl_s``. Its address starts with ``public_url`` (else the address this request came to)."""
    base = dsp.settings.public_url or str(request.base_url)
    return dsp.portal_link(tenant_id, base).model_dump()
