"""The ``/v1/tenants`` routes: tenants, and each one's endpoints, thin over ``Dispatcher``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status

from dispatcher.api.auth import require_auth
from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.api.routes import Dsp
from dispatcher.api.schemas import EndpointList, TenantCreate, TenantDeleted, TenantList, TenantOut

router = APIRouter(prefix="/v1", dependencies=[Depends(require_auth)], responses=ERROR_RESPONSES, tags=["tenants"])


@router.post("/tenants", status_code=status.HTTP_201_CREATED, response_model=TenantOut)
def create_tenant(body: TenantCreate, dsp: Dsp) -> dict[str, Any]:
    """A tenant: its endpoints receive only the events posted with its id (``"tenant"``)."""
    return dsp.create_tenant(body.id, body.name).model_dump()


@router.get("/tenants", response_model=TenantList)
def list_tenants(dsp: Dsp) -> dict[str, Any]:
    return {"tenants": [t.model_dump() for t in dsp.list_tenants()]}


@router.get("/tenants/{tenant_id}", response_model=TenantOut)
def get_tenant(tenant_id: str, dsp: Dsp) -> dict[str, Any]:
    return dsp.get_tenant(tenant_id).model_dump()


@router.delete("/tenants/{tenant_id}", response_model=TenantDeleted)
def delete_tenant(tenant_id: str, dsp: Dsp) -> dict[str, int]:
    """Delete the tenant, its endpoints and their pending deliveries."""
    return {"purged": dsp.delete_tenant(tenant_id)}


@router.get("/tenants/{tenant_id}/endpoints", response_model=EndpointList)
def list_tenant_endpoints(tenant_id: str, dsp: Dsp) -> dict[str, Any]:
    return {"endpoints": [ep.masked() for ep in dsp.list_endpoints(tenant=tenant_id)]}
