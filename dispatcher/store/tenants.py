"""Tenants: the customers whose endpoints receive only their own events (``tenants`` hash)."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import cast

import redis

from dispatcher.errors import InvalidInput, InvalidState, TenantNotFound
from dispatcher.events import validate_tenant
from dispatcher.models import DEFAULT_TENANT, Tenant
from dispatcher.store.keys import Keys

MAX_TENANT_NAME_CHARS = 200
TENANT_TOKEN_PREFIX = "wht_"  # a tenant-scoped API token: reaches that tenant's resources only


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _limits(per_s: object, per_day: object) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, value in (("max_events_per_s", per_s), ("max_events_per_day", per_day)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidInput(f"{name} must be a whole number of events of at least 1, or null for no limit")
        out[name] = value
    return out


class TenantStore:
    """``tenants`` (hash): tenant id -> tenant JSON. The default tenant is implicit and cannot be removed."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def create(
        self,
        tenant_id: str,
        name: str = "",
        max_events_per_s: int | None = None,
        max_events_per_day: int | None = None,
    ) -> Tenant:
        tenant_id = validate_tenant(tenant_id)
        if not isinstance(name, str) or len(name) > MAX_TENANT_NAME_CHARS:
            raise InvalidInput(f"name must be a string of at most {MAX_TENANT_NAME_CHARS} characters")
        if tenant_id == DEFAULT_TENANT:
            raise InvalidState(f"the tenant {DEFAULT_TENANT!r} always exists (events and endpoints without a tenant)")
        limits = _limits(max_events_per_s, max_events_per_day)
        tenant = Tenant(id=tenant_id, name=name, created_at=time.time(), **limits)
        if not self._r.hsetnx(self._k.tenants, tenant_id, tenant.model_dump_json()):
            raise InvalidState(f"a tenant {tenant_id!r} exists already")
        return tenant

    def set_limits(self, tenant_id: str, max_events_per_s: int | None, max_events_per_day: int | None) -> Tenant:
        """Replace the tenant's limits (None: no limit); they apply to the next ``enqueue``."""
        if tenant_id == DEFAULT_TENANT:
            raise InvalidState(f"the tenant {DEFAULT_TENANT!r} takes no limits (its events are the operator's)")
        limits = _limits(max_events_per_s, max_events_per_day)
        key = self._k.tenants

        changed: list[Tenant] = []

        def change(pipe: redis.client.Pipeline) -> None:  # WATCHed: a tenant deleted meanwhile stays deleted
            raw = pipe.hget(key, tenant_id)
            if raw is None:
                raise TenantNotFound(f"no tenant {tenant_id!r}")
            changed[:] = [Tenant.model_validate_json(cast(bytes, raw)).model_copy(update=limits)]
            pipe.multi()
            pipe.hset(key, tenant_id, changed[0].model_dump_json())

        self._r.transaction(change, key)
        return changed[0]

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
        """Forget the tenant and revoke its tokens: from now on nothing can be enqueued for it, subscribed
        under it or read with its tokens."""
        if tenant_id == DEFAULT_TENANT:
            raise InvalidState(f"the tenant {DEFAULT_TENANT!r} cannot be deleted")
        if not self._r.hdel(self._k.tenants, tenant_id):
            raise TenantNotFound(f"no tenant {tenant_id!r}")
        theirs = [d for d, t in cast(dict[bytes, bytes], self._r.hgetall(self._k.tenant_tokens)).items()
                  if t.decode() == tenant_id]  # fmt: skip
        if theirs:
            self._r.hdel(self._k.tenant_tokens, *theirs)

    # -- tokens -----------------------------------------------------------------------------------
    def issue_token(self, tenant_id: str) -> str:
        """A new token that reaches only this tenant's endpoints, deliveries, events and pull logs; shown
        once (only its digest is stored)."""
        self.get(tenant_id)  # TenantNotFound
        token = TENANT_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._r.hset(self._k.tenant_tokens, token_digest(token), tenant_id)
        return token

    def token_tenant(self, token: str) -> str | None:
        """The tenant a token belongs to, or None."""
        found = self._r.hget(self._k.tenant_tokens, token_digest(token))
        return cast(bytes, found).decode() if found is not None else None
