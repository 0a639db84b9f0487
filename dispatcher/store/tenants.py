"""Tenants: the customers whose endpoints receive only their own events (``tenants`` hash)."""

from __future__ import annotations

import time
from typing import cast

import redis

from dispatcher.errors import InvalidInput, InvalidState, TenantNotFound
from dispatcher.events import validate_tenant
from dispatcher.models import DEFAULT_TENANT, Tenant
from dispatcher.store.keys import Keys

MAX_TENANT_NAME_CHARS = 200


class TenantStore:
    """``tenants`` (hash): tenant id -> tenant JSON. The default tenant is implicit and cannot be removed."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def create(self, tenant_id: str, name: str = "") -> Tenant:
        tenant_id = validate_tenant(tenant_id)
        if not isinstance(name, str) or len(name) > MAX_TENANT_NAME_CHARS:
            raise InvalidInput(f"name must be a string of at most {MAX_TENANT_NAME_CHARS} characters")
        if tenant_id == DEFAULT_TENANT:
            raise InvalidState(f"the tenant {DEFAULT_TENANT!r} always exists (events and endpoints without a tenant)")
        tenant = Tenant(id=tenant_id, name=name, created_at=time.time())
        if not self._r.hsetnx(self._k.tenants, tenant_id, tenant.model_dump_json()):
            raise InvalidState(f"a tenant {tenant_id!r} exists already")
        return tenant

    def get(self, tenant_id: str) -> Tenant:
        if tenant_id == DEFAULT_TENANT:
            return Tenant(id=DEFAULT_TENANT)
        raw = self._r.hget(self._k.tenants, tenant_id)
        if raw is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}")
        return Tenant.model_validate_json(cast(bytes, raw))

    def list(self) -> list[Tenant]:
        """Every tenant, the default one first, then by id."""
        raw = cast(dict[bytes, bytes], self._r.hgetall(self._k.tenants))
        found = sorted((Tenant.model_validate_json(v) for v in raw.values()), key=lambda t: t.id)
        return [Tenant(id=DEFAULT_TENANT), *found]

    def remove(self, tenant_id: str) -> None:
        """Forget the tenant: from now on nothing can be enqueued for it or subscribed under it."""
        if tenant_id == DEFAULT_TENANT:
            raise InvalidState(f"the tenant {DEFAULT_TENANT!r} cannot be deleted")
        if not self._r.hdel(self._k.tenants, tenant_id):
            raise TenantNotFound(f"no tenant {tenant_id!r}")
