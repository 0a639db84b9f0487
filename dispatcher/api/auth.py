"""Who may call the API: bearer API keys, and the web page's cookie session, with CSRF protection.

- ``Authorization: Bearer <key>`` with one of ``Settings.api_keys`` (compared in constant time).
- The web page logs in once with a key and gets an HttpOnly, SameSite=Strict cookie holding
  ``v1.<issued>.<HMAC(key, issued)>`` (never the key itself). The cookie expires after
  ``SESSION_TTL_S`` and stops working as soon as its key is removed from the settings.
- A request authenticated by that cookie that changes anything (POST, PATCH, DELETE) must also carry
  ``X-Dispatcher-CSRF: 1``. Browsers only let a page of this very origin set a custom header (any
  other site would need a CORS preflight, which this API never grants), so a form or script on
  another site cannot act with the user's cookie.
- Any state-changing request without an ``Authorization`` header is also refused when the browser
  says it comes from another site (``Sec-Fetch-Site``/``Origin``), which covers the no-auth mode.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPBearer

from dispatcher.api.errors import ApiError
from dispatcher.settings import Settings

SESSION_COOKIE = "dispatcher_session"
CSRF_HEADER = "x-dispatcher-csrf"
SESSION_TTL_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Principal = Literal["bearer", "session", "open"]

bearer_scheme = HTTPBearer(auto_error=False, description="one of DISPATCHER_API_KEYS")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="the web page's login session")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class Auth:
    """The configured keys and the checks made on every request."""

    def __init__(self, settings: Settings) -> None:
        self._keys = tuple(settings.api_keys)
        self._digests = tuple(_digest(k) for k in self._keys)
        self.open = not self._keys and settings.api_insecure_no_auth

    def check_key(self, candidate: str) -> bool:
        """True when ``candidate`` is one of the keys; every key is compared, in constant time."""
        probe = _digest(candidate)
        found = False
        for d in self._digests:
            found |= hmac.compare_digest(probe, d)
        return found

    # -- cookie sessions ------------------------------------------------------------------------
    @staticmethod
    def _mac(key: str, issued: int) -> str:
        mac = hmac.new(key.encode(), f"dispatcher-web-session.v1.{issued}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue_session(self, key: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        return f"v1.{issued}.{self._mac(key, issued)}"

    def check_session(self, token: str, now: float | None = None) -> bool:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit():
            return False
        issued = int(parts[1])
        age = (time.time() if now is None else now) - issued
        if not -60 <= age <= SESSION_TTL_S:
            return False
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(self._mac(key, issued).encode(), parts[2].encode())
        return found

    # -- per request ----------------------------------------------------------------------------
    def authenticate(self, request: Request) -> Principal:
        """Who is calling, or raise a 401/403 ``ApiError``."""
        header = request.headers.get("authorization")
        unsafe = request.method not in SAFE_METHODS
        if header is None and unsafe:
            refuse_cross_site(request)
        if header is not None:
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise unauthorized("the Authorization header must be 'Bearer <api key>'")
            if self.open or self.check_key(credentials.strip()):
                return "open" if self.open else "bearer"
            raise unauthorized("invalid API key")
        if self.open:
            return "open"
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None:
            raise unauthorized("an API key is required: 'Authorization: Bearer <api key>'")
        if not self.check_session(cookie):
            raise unauthorized("the session has expired or its key was revoked; log in again")
        if unsafe:
            require_csrf_header(request)
        return "session"

    def logged_in(self, request: Request) -> bool:
        """Whether the web page's cookie (or the no-auth mode) lets this browser in."""
        if self.open:
            return True
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and self.check_session(cookie)


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
