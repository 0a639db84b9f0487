"""The web page: register an endpoint, see its secret once, watch deliveries, replay, send tests.

Server-rendered with Jinja2 (autoescaped) plus one small vanilla script (``static/app.js``) that
logs in, posts forms to the ``/v1`` API with the page's cookie session and the CSRF header, and
refreshes the endpoint list (``GET /web/endpoints``, an HTML fragment) and the per-minute counters
(``GET /v1/stats``) every few seconds.

The consumer portal (``dispatcher.api.portal``) is this same page for one tenant: ``page(..., portal=tenant)``.

A ``poll`` endpoint created through the form also gets its pull token, once: the page posts the secret it
was just shown to ``POST /web/pull-token``, which derives the token (``dispatcher.signing.endpoint_token``)
and stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from dispatcher.api.auth import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    client_address,
    get_auth,
    refuse_cross_site,
    require_auth,
    require_csrf_header,
    tenant_scope,
)
from dispatcher.api.routes import get_dispatcher
from dispatcher.api.schemas import Strict
from dispatcher.client import Dispatcher
from dispatcher.errors import InvalidInput
from dispatcher.models import DEFAULT_TENANT, Attempt, Delivery, Endpoint, Tenant
from dispatcher.settings import Settings
from dispatcher.signing import endpoint_token

HERE = Path(__file__).resolve().parent
PAGE_ENDPOINTS = 50  # endpoints shown on the page (newest first)
PAGE_DELIVERIES = 10  # recent deliveries shown per endpoint
PAGE_EXAMPLE_CHARS = 600  # of a registered event type's example, pretty-printed
REFRESH_MS = 3000

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(unix_s: float | None) -> str:
    if not unix_s:
        return "-"
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(unix_s: float | None) -> str:
    if not unix_s:
        return "-"
    return datetime.fromtimestamp(unix_s, UTC).strftime("%H:%M:%S")


def _outcome(attempt: Attempt) -> str:
    what = str(attempt.status) if attempt.status is not None else (attempt.error or "no response")
    if attempt.status is not None and attempt.error:  # a chat platform's 200 carrying an error code
        what += f" ({attempt.error[:60]})"
    return f"{what} in {attempt.latency_ms:.0f} ms" if attempt.latency_ms else what


def attempt_ok(attempt: Attempt) -> bool:
    return attempt.status is not None and 200 <= attempt.status < 300 and not attempt.error


templates.filters["when"] = _when
templates.filters["clock"] = _clock
templates.filters["outcome"] = _outcome
templates.tests["ok"] = attempt_ok


@dataclass
class EndpointView:
    """What the page shows of one endpoint."""

    endpoint: Endpoint
    deliveries: list[Delivery]
    dead_letters: int
    last_attempt: Attempt | None
    failing_since: float | None


def endpoint_view(endpoint: Endpoint, deliveries: list[Delivery], dead_letters: int) -> EndpointView:
    """Last attempt, and since when every attempt has failed (over the recent deliveries shown)."""
    attempts = sorted((a for d in deliveries for a in d.attempts), key=lambda a: a.at, reverse=True)
    failing_since = None
    for a in attempts:
        if attempt_ok(a):
            break
        failing_since = a.at
    return EndpointView(endpoint, deliveries, dead_letters, attempts[0] if attempts else None, failing_since)


def endpoint_views(dsp: Dispatcher, tenant: str | None = None) -> list[EndpointView]:
    """The newest endpoints with their recent deliveries: every tenant's, or (``tenant``) that one's only."""
    endpoints = list(reversed(dsp.list_endpoints(tenant=tenant)))[:PAGE_ENDPOINTS]  # ids sort by creation time
    dead = dsp.records.dead_counts([ep.id for ep in endpoints])
    return [
        endpoint_view(ep, dsp.endpoint_deliveries(ep.id, limit=PAGE_DELIVERIES), int(n))
        for ep, n in zip(endpoints, dead, strict=True)
    ]


@dataclass
class EventTypeView:
    """A registered event type as the form offers it: name, description and its example as JSON text."""

    name: str
    description: str
    example: str  # "" when none was registered


def event_type_views(dsp: Dispatcher) -> list[EventTypeView]:
    views = []
    for t in dsp.event_types.list():
        example = "" if t.example is None else json.dumps(t.example, indent=2, ensure_ascii=False)
        if len(example) > PAGE_EXAMPLE_CHARS:
            example = example[: PAGE_EXAMPLE_CHARS - 1] + "…"
        views.append(EventTypeView(t.name, t.description, example))
    return views


def poll_retention(settings: Settings) -> str:
    """How long a pull log keeps events, as the page says it."""
    age = settings.poll_max_age_s
    unit, size = next((u, s) for u, s in (("day", 86400), ("hour", 3600), ("second", 1)) if age >= s)
    span = f"{age / size:g} {unit}" + ("" if age == size else "s")
    return f"kept up to {span}, at most about {settings.poll_max_events:,} events"


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status_code)


def content_security_policy(frame_ancestors: str = "'none'") -> str:
    """The pages' CSP: nothing but this origin's own files; framed only by ``frame_ancestors``."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )


def page(dsp: Dispatcher, open_mode: bool, portal: Tenant | None = None) -> HTMLResponse:
    """The whole page: the operator's (every tenant's endpoints, the live counters, each tenant's portal) or,
    with ``portal``, one tenant's consumer portal (its endpoints only, no operator controls)."""
    return render(
        "index.html",
        views=endpoint_views(dsp, portal.id if portal is not None else None),
        event_types=event_type_views(dsp),
        poll_retention=poll_retention(dsp.settings),
        open_mode=open_mode,
        portal=portal,
        tenants=[] if portal is not None else [t for t in dsp.list_tenants() if t.id != DEFAULT_TENANT],
        refresh_ms=REFRESH_MS,
        page_endpoints=PAGE_ENDPOINTS,
    )


class Login(Strict):
    api_key: str = Field(min_length=1, max_length=1024)


class PullTokenIn(Strict):
    endpoint_id: str = Field(min_length=1, max_length=200)
    secret: str = Field(min_length=1, max_length=1024)


class PullTokenOut(BaseModel):
    pull_token: str


router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """The login form, or (logged in) the whole page."""
    auth = get_auth(request)
    if not auth.logged_in(request):
        return render("login.html")
    return page(get_dispatcher(request), auth.open)


@router.get("/web/endpoints", response_class=HTMLResponse, dependencies=[Depends(require_auth)])
def endpoints_fragment(request: Request) -> HTMLResponse:
    """The endpoint list alone, for the page's periodic refresh (a portal's: its tenant's endpoints only)."""
    dsp = get_dispatcher(request)
    return render(
        "_endpoints.html",
        views=endpoint_views(dsp, tenant_scope(request)),
        poll_retention=poll_retention(dsp.settings),
        page_endpoints=PAGE_ENDPOINTS,
    )


@router.post("/web/pull-token", dependencies=[Depends(require_auth)])
def pull_token(body: PullTokenIn) -> PullTokenOut:
    """The pull token a secret derives for an endpoint: a pure computation, nothing is read or stored.

    The page calls it once, right after creating a ``poll`` endpoint, with the secret it was just shown
    (the listings only ever show secrets masked, so this cannot reveal a token the caller could not derive).
    """
    try:
        return PullTokenOut(pull_token=endpoint_token(body.endpoint_id, body.secret))
    except ValueError as exc:
        raise InvalidInput(f"invalid secret: {exc}") from None


@router.post("/web/login", status_code=204)
def login(request: Request, body: Login) -> Response:
    """Trade an API key for the page's session cookie (HttpOnly, SameSite=Strict)."""
    refuse_cross_site(request)
    require_csrf_header(request)
    auth = get_auth(request)
    response = Response(status_code=204)
    if auth.open:
        return response
    auth.failures.check(client_address(request))
    if not auth.check_key(body.api_key):
        raise auth.refuse(request, "invalid API key")
    response.set_cookie(
        SESSION_COOKIE,
        auth.issue_session(body.api_key),
        max_age=SESSION_TTL_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def end_cookie_session(request: Request, name: str, end: Callable[[str], None], **cookie: Any) -> Response:
    """A logout: same-site, with the CSRF header; the session in cookie ``name`` ends here (``end``), not
    only in this browser, and the cookie is deleted (``cookie``: its attributes)."""
    refuse_cross_site(request)
    require_csrf_header(request)
    value = request.cookies.get(name)
    if value is not None:
        end(value)
    response = Response(status_code=204)
    response.delete_cookie(name, path="/", httponly=True, **cookie)
    return response


@router.post("/web/logout", status_code=204)
def logout(request: Request) -> Response:
    return end_cookie_session(request, SESSION_COOKIE, get_auth(request).end_session, samesite="strict")


def install_web(app: FastAPI) -> None:
    """Add the page's routes and its static files to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
