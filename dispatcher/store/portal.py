"""The consumer portal's links and sessions: a short-lived single-use link opens a session scoped to one tenant.

``portal:link:<sha256 of the token>`` -> tenant id, TTL'd; looking at a link (``link_tenant``) leaves it,
opening it reads and deletes it in one command (GETDEL), so two browsers racing with the same link cannot
both get in. The token itself is never
stored. ``portal:session:<id>`` -> tenant id, TTL'd; deleted when the portal logs out.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import cast

import redis

from dispatcher.store.keys import Keys

PORTAL_LINK_PREFIX = "whpl_"
MAX_TOKEN_CHARS = 100  # a link token (prefix + 43 characters) or a session id (43); longer is never ours


def _link_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _plausible(value: str) -> bool:
    return bool(value) and len(value) <= MAX_TOKEN_CHARS and value.isascii()


class PortalSessions:
    """Portal links (single use, TTL'd, digest only) and the tenant-scoped sessions they open."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def create_link(self, tenant_id: str, ttl_s: int) -> str:
        """A new link token for ``tenant_id``, valid ``ttl_s`` seconds and once (only its digest is stored)."""
        token = PORTAL_LINK_PREFIX + secrets.token_urlsafe(32)
        self._r.set(self._k.portal_link(_link_digest(token)), tenant_id, ex=ttl_s)
        return token

    def link_tenant(self, token: str) -> str | None:
        """The tenant of a link that can still be opened, leaving it as it is; None when unknown, expired or used."""
        if not _plausible(token) or not token.startswith(PORTAL_LINK_PREFIX):
            return None
        found = self._r.get(self._k.portal_link(_link_digest(token)))
        return cast(bytes, found).decode() if found is not None else None

    def consume_link(self, token: str) -> str | None:
        """The link's tenant, deleting the link in the same command; None when it is unknown, expired or used."""
        if not _plausible(token) or not token.startswith(PORTAL_LINK_PREFIX):
            return None
        found = self._r.getdel(self._k.portal_link(_link_digest(token)))
        return cast(bytes, found).decode() if found is not None else None

    def create_session(self, tenant_id: str, ttl_s: int) -> str:
        session_id = secrets.token_urlsafe(32)
        self._r.set(self._k.portal_session(session_id), tenant_id, ex=ttl_s)
        return session_id

    def session_tenant(self, session_id: str) -> str | None:
        """The tenant a portal session is scoped to, or None (unknown or expired)."""
        if not _plausible(session_id):
            return None
        found = self._r.get(self._k.portal_session(session_id))
        return cast(bytes, found).decode() if found is not None else None

    def end_session(self, session_id: str) -> None:
        if _plausible(session_id):
            self._r.delete(self._k.portal_session(session_id))
