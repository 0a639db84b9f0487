"""The consumer portal: the web page for one tenant, opened by a short-lived single-use link.

The operator (or the platform's backend) asks ``POST /v1/tenants/{id}/portal-link`` (``dispatcher portal-link
ID``) and hands the link to the tenant's user, or sets it as an iframe's ``src`` on the platform's own
settings page:

- ``GET /portal/<token>`` only looks at the link: a page whose form (submitted by the page's script at once,
  or by its button) posts to the same address. A chat app or mail scanner that fetches the link to preview
  it therefore does not use it up.
- ``POST /portal/<token>`` consumes the link (gone from Redis in the same command: a second use, or one
  after ``portal_link_ttl_s``, gets a 410 page and writes nothing), sets the ``dispatcher_portal`` cookie
  (a session scoped to the tenant, ``portal_session_ttl_s``) and redirects to ``/portal``. A post from
  another site's page (its ``Origin``) is refused.
- ``GET /portal`` is the operator's page rendered for that tenant (``web.page(..., portal=tenant)``): its
  endpoints only, no counters or tenant list. Its script calls the same ``/v1`` routes with
  ``X-Dispatcher-Portal: <tenant>``, which makes them that tenant's (``auth.Auth._authenticate_portal``).
- ``POST /portal/logout`` ends the session.

Framing: portal pages carry ``Content-Security-Policy: frame-ancestors <portal_frame_ancestors>`` (the
operator's page keeps ``'none'``). Inside another site's iframe the cookie is a third-party cookie: over HTTPS
it is ``SameSite=None; Secure; Partitioned`` (kept per embedding site, as browsers that block third-party
cookies allow); over plain HTTP it is ``SameSite=Lax``, which browsers do not send from a cross-site frame,
so embedding needs HTTPS.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from dispatcher.api.auth import (
    PORTAL_COOKIE,
    client_address,
    get_auth,
)
from dispatcher.api.routes import get_dispatcher
from dispatcher.api.web import content_security_policy, end_cookie_session, page, render
from dispatcher.settings import Settings

LINK_GONE = (
    "This portal link has expired or was used already: each link opens the portal once, within minutes. "
    "Ask the platform for a new one."
)
CROSS_SITE = "This portal link can only be opened from its own page: open the link itself in your browser."
SESSION_OVER = "Your portal session has ended (it expires after a while). Open the portal again from the platform."

router = APIRouter(include_in_schema=False)


def _settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def _framed(response: Response, settings: Settings) -> Response:
    """Let the sites of ``portal_frame_ancestors`` embed this answer (and no other site)."""
    response.headers["content-security-policy"] = content_security_policy(settings.portal_frame_ancestors)
    return response


def _secure(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")


def _gone(request: Request, settings: Settings) -> Response:
    """A used, expired or unknown link: a 410 page, counted as a failed attempt of the client."""
    get_auth(request).failures.failed(client_address(request))
    return _framed(render("portal_closed.html", status_code=410, message=LINK_GONE), settings)


def _same_site(request: Request, settings: Settings) -> bool:
    """A post made by a page of this server (its own address, or ``public_url``), or by no page at all.

    Browsers say where a post comes from in ``Sec-Fetch-Site``; in ``Origin`` too, unless the page's
    referrer policy (``no-referrer`` here) makes it ``null``."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    own = {str(request.base_url).rstrip("/")}
    if settings.public_url:
        public = urlsplit(settings.public_url)
        own.add(f"{public.scheme}://{public.netloc}")
    return origin in own


@router.post("/portal/logout", status_code=204)  # before /portal/{token}: that would take it
def portal_logout(request: Request) -> Response:
    return end_cookie_session(request, PORTAL_COOKIE, get_auth(request).end_portal)


@router.get("/portal/{token}")
def portal_link(token: str, request: Request) -> Response:
    """A portal link, looked at: the page that opens it (a POST); a used or expired one: a 410 page."""
    auth = get_auth(request)
    settings = _settings(request)
    auth.failures.check(client_address(request))
    if not auth.portal_link_open(token):
        return _gone(request, settings)
    return _framed(render("portal_open.html", action=f"/portal/{token}"), settings)


@router.post("/portal/{token}")
def open_portal(token: str, request: Request) -> Response:
    """Consume a portal link: a session for its tenant, then the portal; a used or expired one: a 410 page."""
    auth = get_auth(request)
    settings = _settings(request)
    auth.failures.check(client_address(request))
    if not _same_site(request, settings):
        return _framed(render("portal_closed.html", status_code=403, message=CROSS_SITE), settings)
    session_id = auth.open_portal(token)
    if session_id is None:
        return _gone(request, settings)
    response = RedirectResponse("/portal", status_code=303)
    response.headers.append("set-cookie", _portal_cookie(session_id, settings, _secure(request, settings)))
    return _framed(response, settings)


def _portal_cookie(session_id: str, settings: Settings, secure: bool) -> str:
    """The portal's Set-Cookie (spelled here: Starlette writes ``Partitioned`` only on Python 3.14+). The id is
    URL-safe base64, nothing to quote."""
    cookie = f"{PORTAL_COOKIE}={session_id}; Max-Age={settings.portal_session_ttl_s}; Path=/; HttpOnly"
    return cookie + ("; Secure; SameSite=None; Partitioned" if secure else "; SameSite=Lax")


@router.get("/portal", response_class=HTMLResponse)
def portal(request: Request) -> Response:
    """The tenant's portal, or a page saying the session is over (401)."""
    auth = get_auth(request)
    settings = _settings(request)
    cookie = request.cookies.get(PORTAL_COOKIE)
    tenant_id = auth.portal_tenant(cookie) if cookie is not None else None
    if tenant_id is None:
        return _framed(render("portal_closed.html", status_code=401, message=SESSION_OVER), settings)
    dsp = get_dispatcher(request)
    return _framed(page(dsp, auth.open, portal=dsp.get_tenant(tenant_id)), settings)


def install_portal(app: FastAPI) -> None:
    app.include_router(router)
