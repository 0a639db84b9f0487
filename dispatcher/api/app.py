"""The HTTP API and web page: ``create_app(settings)`` builds the FastAPI app, ``serve()`` runs it.

Routes (all JSON, all behind an API key except ``/healthz``, ``/openapi.json`` (unless
``api_openapi_requires_key``), the page's login form and its static files):

- ``/v1/...``: endpoints, events, deliveries, replay, stats (``dispatcher.api.routes``)
- ``/v1/endpoints/{id}/poll`` and ``.../stream``: pull consumers, long-poll and WebSocket (``dispatcher.api.pull``)
- ``/`` and ``/web/...``: the web page (``dispatcher.api.web``)
- ``/portal/...``: one tenant's consumer portal, opened by a single-use link (``dispatcher.api.portal``)
- ``/metrics``: Prometheus, read from Redis at scrape time (``dispatcher.api.prometheus``)
- ``/openapi.json``: the OpenAPI document; operation ids are the handlers' names (``create_endpoint``...)
- ``/healthz``: 200 when Redis answers (live workers listed, none is only a warning), else 503
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.api.auth import Auth, operator_only, require_auth
from dispatcher.api.errors import ERROR_RESPONSES, error_response, install_error_handlers
from dispatcher.api.guard import AllowedHosts, GuardedH11Protocol, RedactCredentials
from dispatcher.api.portal import install_portal
from dispatcher.api.prometheus import DispatcherCollector
from dispatcher.api.pull import close_pull, install_pull
from dispatcher.api.routes import router as v1_router
from dispatcher.api.schemas import Health
from dispatcher.api.tenants import router as tenants_router
from dispatcher.api.web import content_security_policy, install_web
from dispatcher.client import Dispatcher
from dispatcher.errormap import translated
from dispatcher.errors import ConfigError, StoreError
from dispatcher.settings import Settings, check_api_config
from dispatcher.version import __version__

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = content_security_policy()


ApiConfigError = ConfigError  # the name it had before ConfigError covered every process


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await error_response(413, "payload_too_large", message)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


class SecurityHeaders:
    """Headers on every answer: no sniffing, no framing, no caching (answers can hold secrets), a CSP. An
    answer that sets its own CSP (the consumer portal, framed by ``portal_frame_ancestors``) gets no
    ``X-Frame-Options``: its ``frame-ancestors`` decides."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" in present:  # a page with its own framing rule (the portal)
                    present.add(b"x-frame-options")
                headers.extend(h for h in self.HEADERS if h[0] not in present)
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                msg["headers"] = headers
            await send(msg)

        await self.app(scope, receive, send_with_headers)


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI operation id: its handler's name (``create_endpoint``, not FastAPI's
    ``create_endpoint_v1_endpoints_post``), which generated clients use as the function's name."""
    return route.name


def create_app(settings: Settings, dispatcher: Dispatcher | None = None) -> FastAPI:
    """The API and web page over ``dispatcher`` (built from ``settings`` and closed with the app if not given)."""
    check_api_config(settings)
    dsp = dispatcher if dispatcher is not None else Dispatcher(settings)
    owned = dispatcher is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await close_pull(app)
        if owned:
            dsp.close()

    app = FastAPI(
        title="webhook-dispatcher",
        version=__version__,
        description="Register webhook endpoints, publish events, inspect and replay deliveries.",
        openapi_url=None,  # served below, behind the API key if api_openapi_requires_key
        generate_unique_id_function=operation_id,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.dispatcher = dsp
    app.state.auth = Auth(settings, dsp.store)
    registry = CollectorRegistry()
    registry.register(DispatcherCollector(dsp))
    app.state.registry = registry

    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AllowedHosts, hosts=settings.api_allowed_hosts)
    app.include_router(v1_router)
    app.include_router(tenants_router)
    install_pull(app, settings)  # async long-poll and WebSocket routes of pull consumers
    install_web(app)
    install_portal(app)

    @app.get("/healthz", response_model=Health, tags=["monitoring"], responses={503: ERROR_RESPONSES[503]})
    def get_health() -> Any:
        """No auth. 200 while Redis answers; ``workers`` lists live workers (none is a warning, not a failure)."""
        try:
            with translated():
                workers = [w["name"] for w in dsp.store.heartbeats.live()]
        except StoreError:
            return error_response(503, "store_unavailable", "Redis is unreachable", redis="down", workers=[])
        warning = None if workers else "no live workers: events are stored but not delivered until one runs"
        return Health(redis="ok", workers=workers, warning=warning)

    @app.get(
        "/metrics",
        dependencies=[Depends(require_auth), Depends(operator_only)],
        tags=["monitoring"],
        response_class=Response,  # no media type of its own: the 200 is text/plain, errors stay JSON
        responses={
            200: {
                "description": "Prometheus text exposition format (version 0.0.4)",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **{code: ERROR_RESPONSES[code] for code in (401, 403, 429)},
        },
    )
    def get_metrics() -> Response:
        """Prometheus text format, read from Redis at scrape time."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    openapi_auth = [Depends(require_auth)] if settings.api_openapi_requires_key else []

    @app.get("/openapi.json", dependencies=openapi_auth, include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(app.openapi())

    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any) -> None:
    """Run the API under uvicorn until interrupted; raises ``ConfigError`` without (long enough) API keys.

    Connections are bounded (``api_max_connections``, then 503; the process' open-file limit is raised to
    fit them), a connection must send its request head within ``api_header_timeout_s``, idle keep-alive
    ones close after ``api_keepalive_timeout_s``, and credentials in query strings are masked in the
    access log.
    """
    app = create_app(settings)
    auth = "NO AUTHENTICATION (api_insecure_no_auth)" if app.state.auth.open else f"{len(settings.api_keys)} API key(s)"
    log.info("HTTP API on http://%s:%d (%s)", host, port, auth)
    _raise_open_files(settings.api_max_connections * 2 + 256)
    GuardedH11Protocol.header_timeout_s = settings.api_header_timeout_s
    logging.getLogger("uvicorn.access").addFilter(RedactCredentials())
    options: dict[str, Any] = {
        "log_level": "info",
        "proxy_headers": True,
        "server_header": False,
        "http": GuardedH11Protocol,
        "limit_concurrency": settings.api_max_connections,
        "timeout_keep_alive": settings.api_keepalive_timeout_s,
        # pull WebSockets: protocol pings keep idle ones alive; acks are tiny
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "ws_max_size": 64 * 1024,
    }
    options.update(uvicorn_options)
    uvicorn.run(app, host=host, port=port, **options)


def _raise_open_files(wanted: int) -> None:
    """Raise this process' soft limit of open files towards ``wanted`` (within the hard limit)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open files limited to %d: fewer than DISPATCHER_API_MAX_CONNECTIONS needs", target)
