"""Who may call the API: bearer API keys, and the web page's cookie session, with CSRF protection.

- ``Authorization: Bearer <key>`` with one of ``Settings.api_keys`` (compared in constant time).
- The web page logs in once with a key and gets an HttpOnly, SameSite=Strict cookie holding a random
  session id, stored in Redis with the digest of the key (never the key itself). The session ends at
  logout, after ``SESSION_TTL_S``, or as soon as its key is removed from the settings.
- Failed credentials are counted per client address (``guard.FailedAuth``): past
  ``api_auth_failures_per_minute`` the address gets 429 until the minute is over.
- A request authenticated by that cookie that changes anything (POST, PATCH, DELETE) must also carry
  ``X-Dispatcher-CSRF: 1``. Browsers only let a page of this very origin set a custom header (any
  other site would need a CORS preflight, which this API never grants), so a form or script on
  another site cannot act with the user's cookie.
- Any state-changing request without an ``Authorization`` header is also refused when the browser
  says it comes from another site (``Sec-Fetch-Site``/``Origin``), which covers the no-auth mode.
- The consumer portal (``api/portal.py``) has a cookie of its own, ``dispatcher_portal``, holding a session
  scoped to one tenant. It counts only on requests that carry ``X-Dispatcher-Portal: <that tenant>`` (the
  portal's script sends it on every call), so a browser logged in to both the operator's page and a portal never
  mixes them up; such a request is that tenant's, exactly as with a tenant token (``request.state.tenant``),
  and its changes need the CSRF header too.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Literal

from fastapi import Depends, Request, WebSocket
from fastapi.security import APIKeyCookie, HTTPBearer

from dispatcher.api.errors import ApiError
from dispatcher.api.guard import FailedAuth
from dispatcher.errors import TenantNotFound
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.tenants import TENANT_TOKEN_PREFIX

SESSION_COOKIE = "dispatcher_session"
PORTAL_COOKIE = "dispatcher_portal"
PORTAL_HEADER = "x-dispatcher-portal"
CSRF_HEADER = "x-dispatcher-csrf"
SESSION_TTL_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Principal = Literal["bearer", "session", "open", "tenant"]

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="one of DISPATCHER_API_KEYS, or a tenant token (wht_...: that tenant's resources only)",
)
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="the web page's login session")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class Auth:
    """The configured keys, the web page's sessions and the checks made on every request."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._keys = tuple(settings.api_keys)
        self._digests = tuple(_digest(k) for k in self._keys)
        self._sessions = store.sessions
        self._tenants = store.tenants
        self._portal = store.portal
        self.portal_session_ttl_s = settings.portal_session_ttl_s
        self.open = not self._keys and settings.api_insecure_no_auth
        self.failures = FailedAuth(settings.api_auth_failures_per_minute)

    def check_key(self, candidate: str) -> bool:
        """True when ``candidate`` is one of the keys; every key is compared, in constant time."""
        probe = _digest(candidate)
        found = False
        for d in self._digests:
            found |= hmac.compare_digest(probe, d)
        return found

    # -- cookie sessions ------------------------------------------------------------------------
    def issue_session(self, key: str) -> str:
        """A new session id for a browser that logged in with ``key`` (stored in Redis, never the key)."""
        return self._sessions.create(_digest(key), SESSION_TTL_S)

    def check_session(self, token: str) -> bool:
        """Whether the session exists and its key is still configured (else it is deleted)."""
        return self._sessions.check(token, self._digests)

    def end_session(self, token: str) -> None:
        self._sessions.delete(token)

    # -- consumer portal sessions ---------------------------------------------------------------
    def open_portal(self, link_token: str) -> str | None:
        """Consume a portal link: a new portal session id of its tenant, or None when the link is unknown,
        expired or used already, or its tenant was deleted since (nothing is written then)."""
        tenant = self._portal.consume_link(link_token)
        if tenant is None or not self._tenant_exists(tenant):
            return None
        return self._portal.create_session(tenant, self.portal_session_ttl_s)

    def portal_link_open(self, link_token: str) -> bool:
        """Whether a portal link can still be opened (known, not expired or used, its tenant still there);
        looking writes nothing and leaves the link as it is."""
        tenant = self._portal.link_tenant(link_token)
        return tenant is not None and self._tenant_exists(tenant)

    def portal_tenant(self, session_id: str) -> str | None:
        """The tenant of a live portal session (a session whose tenant was deleted is ended)."""
        tenant = self._portal.session_tenant(session_id)
        if tenant is not None and not self._tenant_exists(tenant):
            self._portal.end_session(session_id)
            return None
        return tenant

    def end_portal(self, session_id: str) -> None:
        self._portal.end_session(session_id)

    def _tenant_exists(self, tenant: str) -> bool:
        try:
            self._tenants.get(tenant)
        except TenantNotFound:
            return False
        return True

    # -- per request ----------------------------------------------------------------------------
    def refuse(self, request: Request | WebSocket, message: str) -> ApiError:
        """A 401 for a wrong credential, counted against the client's address."""
        self.failures.failed(client_address(request))
        return unauthorized(message)

    def authenticate(self, request: Request) -> Principal:
        """Who is calling, or raise a 401/403/429 ``ApiError``. A tenant token sets ``request.state.tenant``
        (``tenant_scope``): the routes then reach that tenant's resources only."""
        self.failures.check(client_address(request))
        request.state.tenant = None
        header = request.headers.get("authorization")
        unsafe = request.method not in SAFE_METHODS
        if header is None and unsafe:
            refuse_cross_site(request)
        if header is not None:
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise unauthorized("the Authorization header must be 'Bearer <api key>'")
            credential = credentials.strip()
            if credential.startswith(TENANT_TOKEN_PREFIX):
                tenant = self._tenants.token_tenant(credential)
                if tenant is None:
                    raise self.refuse(request, "invalid tenant token (revoked, or its tenant was deleted)")
                request.state.tenant = tenant
                return "tenant"
            if self.open or self.check_key(credential):
                return "open" if self.open else "bearer"
            raise self.refuse(request, "invalid API key")
        portal = request.headers.get(PORTAL_HEADER)
        if portal is not None:  # the portal's own calls: its tenant, whatever the mode
            return self._authenticate_portal(request, portal, unsafe)
        if self.open:
            return "open"
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None:
            raise unauthorized("an API key is required: 'Authorization: Bearer <api key>'")
        if not self.check_session(cookie):
            raise self.refuse(request, "the session has expired or its key was revoked; log in again")
        if unsafe:
            require_csrf_header(request)
        return "session"

    def _authenticate_portal(self, request: Request, page_tenant: str, unsafe: bool) -> Principal:
        """A portal page's call: its cookie's session must be live and of the tenant the page shows (another
        portal opened since in this browser replaced the cookie: this page is over)."""
        cookie = request.cookies.get(PORTAL_COOKIE)
        tenant = self.portal_tenant(cookie) if cookie is not None else None
        if tenant is None or not hmac.compare_digest(tenant.encode(), page_tenant.encode()):
            raise unauthorized("the portal session has expired or ended: open a new portal link")
        if unsafe:
            require_csrf_header(request)
        request.state.tenant = tenant
        return "tenant"

    def logged_in(self, request: Request) -> bool:
        """Whether the web page's cookie (or the no-auth mode) lets this browser in."""
        if self.open:
            return True
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and self.check_session(cookie)


def client_address(request: Request | WebSocket) -> str:
    return request.client.host if request.client is not None else ""


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def require_csrf_header(request: Request) -> None:
    if request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(403, "csrf", f"cookie-authenticated changes need the '{CSRF_HEADER}: 1' header")


def refuse_cross_site(request: Request) -> None:
    """Refuse a state-changing request a browser marks as coming from another site."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        raise ApiError(403, "csrf", "cross-site requests are refused")
    origin = request.headers.get("origin")
    if origin is not None and site is None:
        host = request.headers.get("host", "")
        if origin == "null" or origin.split("://", 1)[-1] != host:
            raise ApiError(403, "csrf", "cross-origin requests are refused")


def tenant_scope(request: Request) -> str | None:
    """The tenant a tenant token limits this request to; None for an operator (API key, session, no-auth)."""
    return getattr(request.state, "tenant", None)


def operator_only(request: Request) -> None:
    """FastAPI dependency of the routes a tenant token may not use (they span every tenant)."""
    if tenant_scope(request) is not None:
        raise ApiError(403, "forbidden", "a tenant token reaches its own tenant's resources only, not this route")


def get_auth(request: Request) -> Auth:
    auth = request.app.state.auth
    assert isinstance(auth, Auth)
    return auth


def require_auth(
    request: Request,
    _bearer: Annotated[object, Depends(bearer_scheme)],
    _cookie: Annotated[object, Depends(cookie_scheme)],
) -> Principal:
    """FastAPI dependency: the caller's principal, or a 401/403 (the schemes only document auth)."""
    return get_auth(request).authenticate(request)
