"""Pull consumers over HTTP: long-poll ``GET /v1/endpoints/{id}/poll`` and the WebSocket ``/v1/endpoints/{id}/stream``.

Both read the endpoint's log (``dispatcher.pull_log``) on ``redis.asyncio`` and are ``async``: a held
long-poll or an idle WebSocket costs a coroutine, not a thread, and all of them share one blocking
``XREAD`` per process.

Who may read a log (checked before anything about the endpoint is revealed):

- an API key (``Authorization: Bearer <key>``; the web page's session cookie also works for the
  long-poll), for any endpoint; an unknown endpoint is then a 404;
- the endpoint's own **pull token** (``dispatcher.signing.endpoint_token(endpoint id, secret)``,
  ``whpt_...``), derived from the secret the consumer holds anyway to verify signatures: it reads that
  one endpoint and nothing else (another endpoint, or an unknown one: 403);
- anything else: 401. An endpoint that is not pollable (a webhook without ``also_poll``): 409.

The WebSocket takes the credential from the ``Authorization`` header, else the ``api_key`` query
parameter, else a ``bearer.<credential>`` subprotocol (browsers cannot set headers on a WebSocket:
``new WebSocket(url, ["dispatcher.v1", "bearer." + token])``; the server answers ``dispatcher.v1``).
It never accepts the session cookie (a cross-site page could otherwise open it with the user's cookie).
A refused handshake answers the same HTTP error as the long-poll would.

WebSocket protocol: the server sends ``{"op": "hello", "cursor", "max_unacked"}``, then one
``{"op": "event", "cursor", "id", "type", "headers", "body", "payload"}`` text frame per event. The client
sends ``{"ack": "<cursor>"}`` for the last event it processed (acking every event up to it). At most
``poll_ws_max_unacked`` frames are in flight; a window that stays full ``poll_ws_ack_timeout_s`` (or a
send that blocks that long) closes the connection with code 4008 and the reason
``consumer too slow; resume from cursor <last acked>``. Other closes: 4410 the cursor expired (reason
holds where to resume), 4404 the endpoint was deleted, 4409 it stopped being pollable, 4403 the token
stopped being valid, 4400 a malformed message, 1011 a server or Redis failure. Reconnect with
``?cursor=<last processed>`` to resume without a gap. Protocol pings keep it alive (uvicorn,
``ws_ping_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
import redis
from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket
from fastapi.responses import Response
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect, WebSocketState

from dispatcher.api.auth import SESSION_COOKIE, Auth, bearer_scheme, client_address, cookie_scheme, unauthorized
from dispatcher.api.errors import ERROR_RESPONSES, ApiError, dispatcher_error_status, error_response
from dispatcher.api.guard import StreamSlots
from dispatcher.api.schemas import ErrorBody
from dispatcher.errormap import translate
from dispatcher.errors import CursorExpired, DispatcherError, EndpointNotFound, InvalidCursor, NotPollable
from dispatcher.models import Endpoint
from dispatcher.settings import Settings
from dispatcher.signing import PULL_TOKEN_PREFIX, endpoint_token
from dispatcher.store.pull_log import Page, PullLog, format_cursor, parse_cursor, position
from dispatcher.store.tenants import TENANT_TOKEN_PREFIX

log = logging.getLogger(__name__)

WS_SUBPROTOCOL = "dispatcher.v1"
BEARER_SUBPROTOCOL = "bearer."
CLOSE_TOO_SLOW = 4008
CLOSE_EXPIRED = 4410
REFRESH_S = 5.0  # how often a WebSocket re-reads its endpoint (deleted, disabled pull, rotated secret)

router = APIRouter(prefix="/v1", tags=["pull"])


class PolledEvent(BaseModel):
    cursor: str
    id: str
    type: str
    headers: dict[str, str]
    body: str
    payload: Any


class PollPage(BaseModel):
    events: list[PolledEvent]
    cursor: str
    has_more: bool


class CursorExpiredOut(BaseModel):
    error: ErrorBody
    cursor: str


class PullCollector(Collector):
    """Prometheus gauges of this API process: held long-polls and open WebSocket streams."""

    def __init__(self, pull: PullLog) -> None:
        self._pull = pull

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "dispatcher_pull_waiting",
            "long-polls and WebSocket streams of this API process waiting for new events",
            self._pull.waiting(),
        )
        yield GaugeMetricFamily(
            "dispatcher_pull_streams_open", "WebSocket streams open in this API process", self._pull.streams_open
        )


def install_pull(app: FastAPI, settings: Settings) -> None:
    """Add the pull routes to ``app`` (and their gauges to ``app.state.registry`` if it has one).

    ``close_pull`` releases their Redis clients at shutdown.
    """
    app.state.pull = PullLog(settings)
    app.state.streams = StreamSlots(settings.api_max_streams_per_credential, settings.api_max_streams)
    app.include_router(router)
    registry = getattr(app.state, "registry", None)
    if registry is not None:
        registry.register(PullCollector(app.state.pull))


async def close_pull(app: FastAPI) -> None:
    await app.state.pull.aclose()


# -- who may read ---------------------------------------------------------------------------------------
def token_matches(endpoint: Endpoint, token: str) -> bool:
    """Whether ``token`` is the endpoint's pull token under its secret or a rotated-out one in grace."""
    now = time.time()
    secrets = [endpoint.secret, *(p.secret for p in endpoint.previous_secrets if p.expires_at > now)]
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(endpoint_token(endpoint.id, secret).encode(), token.encode())
    return found


def bearer_credential(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise unauthorized("the Authorization header must be 'Bearer <api key or endpoint pull token>'")
    return credentials.strip()


async def authorize(
    auth: Auth,
    pull: PullLog,
    endpoint_id: str,
    credential: str | None,
    client: Request | WebSocket,
    cookie: str | None = None,
) -> Endpoint:
    """The endpoint whose log the caller may read, or a 401/403/404/409/429 error."""
    auth.failures.check(client_address(client))
    if credential is not None and credential.startswith(TENANT_TOKEN_PREFIX):
        tenant = await pull.token_tenant(credential)
        if tenant is None:
            raise auth.refuse(client, "invalid tenant token (revoked, or its tenant was deleted)")
        endpoint = await pull.endpoint(endpoint_id)
        if endpoint.tenant != tenant:  # another tenant's: as if it did not exist
            raise EndpointNotFound(f"no endpoint {endpoint_id!r}")
    elif credential is not None and not auth.open and not auth.check_key(credential):
        if not credential.startswith(PULL_TOKEN_PREFIX):
            raise auth.refuse(client, "invalid API key")
        found = await pull.find_endpoint(endpoint_id)
        if found is None or not token_matches(found, credential):
            auth.failures.failed(client_address(client))
            raise ApiError(403, "forbidden", f"this token does not grant access to endpoint {endpoint_id!r}")
        if not found.enabled:
            raise ApiError(403, "forbidden", f"endpoint {endpoint_id!r} is disabled: its pull token reads nothing")
        endpoint = found
    elif credential is None and not auth.open and not (cookie is not None and auth.check_session(cookie)):
        if cookie is not None:
            raise auth.refuse(client, "the session has expired or its key was revoked; log in again")
        raise unauthorized("an API key or the endpoint's pull token is required: 'Authorization: Bearer <credential>'")
    else:
        endpoint = await pull.endpoint(endpoint_id)
    if not endpoint.pollable:
        raise NotPollable(f"endpoint {endpoint_id} is a {endpoint.kind} endpoint without also_poll: it has no pull log")
    return endpoint


def _slots(app: Any) -> StreamSlots:
    slots = app.state.streams
    assert isinstance(slots, StreamSlots)
    return slots


def _pull(app: Any) -> tuple[Auth, PullLog]:
    auth, pull = app.state.auth, app.state.pull
    assert isinstance(auth, Auth) and isinstance(pull, PullLog)
    return auth, pull


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


# -- long-poll ------------------------------------------------------------------------------------------
@router.get(
    "/endpoints/{endpoint_id}/poll",
    response_model=PollPage,
    responses={**ERROR_RESPONSES, 410: {"model": CursorExpiredOut, "description": "the cursor expired"}},
)
async def poll_endpoint(
    request: Request,
    endpoint_id: str,
    _bearer: Annotated[object, Depends(bearer_scheme)],
    _cookie: Annotated[object, Depends(cookie_scheme)],
    cursor: Annotated[
        str | None, Query(max_length=200, description="a 'cursor' of a previous answer; 'start' (default) or 'latest'")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait: Annotated[float, Query(ge=0, le=30, description="seconds to hold the request while nothing is there")] = 0,
) -> Response:
    """Events after ``cursor`` (at once if there are some, else as soon as one arrives within ``wait`` s).

    Each event carries its ``cursor``, the ``webhook-*`` headers signed now and the exact signed ``body``
    (verify these bytes, e.g. with ``dispatcher.verify``) plus the parsed ``payload``. Asking with the
    answer's ``cursor`` acknowledges every event up to it (at-least-once). A cursor older than the
    oldest entry kept: 410 ``cursor_expired``, with the ``cursor`` where the log now starts.
    """
    auth, pull = _pull(request.app)
    credential = bearer_credential(request.headers.get("authorization"))
    cookie = request.cookies.get(SESSION_COOKIE)
    endpoint = await authorize(auth, pull, endpoint_id, credential, request, cookie)
    after = parse_cursor(endpoint_id, cursor)
    if wait > 0:  # a held request: counted against its credential and the process
        with _slots(request.app).hold(credential or cookie):
            return await _poll(request, pull, endpoint, after, limit, wait)
    return await _poll(request, pull, endpoint, after, limit, wait)


async def _poll(
    request: Request, pull: PullLog, endpoint: Endpoint, after: str | None, limit: int, wait: float
) -> Response:
    reading = asyncio.ensure_future(pull.poll(endpoint, after, limit, wait))
    watch = asyncio.ensure_future(_disconnected(request)) if wait > 0 else None
    try:
        if watch is not None:
            await asyncio.wait({reading, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():  # the client went away: stop waiting for it
                reading.cancel()
                return Response(status_code=204)
        page: Page = await reading
    except CursorExpired as exc:
        return error_response(410, "cursor_expired", str(exc), cursor=exc.resume_cursor)
    finally:
        for task in (reading, watch):
            if task is not None and not task.done():
                task.cancel()
    return Response(page.as_json(), media_type="application/json")


# -- WebSocket ------------------------------------------------------------------------------------------
class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason.encode()[:123].decode(errors="ignore")


def _error_of(exc: Exception) -> tuple[int, str, str, dict[str, Any]]:
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, {}
    if isinstance(exc, CursorExpired):
        return 410, "cursor_expired", str(exc), {"cursor": exc.resume_cursor}
    if isinstance(exc, InvalidCursor):
        return 400, "invalid_cursor", str(exc), {}
    mapped = translate(exc)  # Redis failing is a store error like any other
    if mapped is not None:
        status, code = dispatcher_error_status(mapped)
        return status, code, str(mapped) if status != 500 else "internal error", {}
    return 500, "internal_error", "internal error", {}


@router.websocket("/endpoints/{endpoint_id}/stream")
async def stream_endpoint(
    websocket: WebSocket, endpoint_id: str, cursor: str | None = None, api_key: str | None = None
) -> None:
    """Events pushed as they arrive; acked by cursor; resumable with ``?cursor=`` (see the module doc)."""
    auth, pull = _pull(websocket.app)
    offered = list(websocket.scope.get("subprotocols") or [])
    from_protocol = next((p[len(BEARER_SUBPROTOCOL) :] for p in offered if p.startswith(BEARER_SUBPROTOCOL)), None)
    credential: str | None = None
    try:
        credential = bearer_credential(websocket.headers.get("authorization")) or api_key or from_protocol
        endpoint = await authorize(auth, pull, endpoint_id, credential, websocket)
        refusal = _slots(websocket.app).full(credential)
        if refusal is not None:
            raise refusal
        after = parse_cursor(endpoint_id, cursor)
        first = await pull.read(endpoint, after, min(500, websocket.app.state.settings.poll_ws_max_unacked))
    except (DispatcherError, ApiError, redis.RedisError) as exc:
        status, code, message, extra = _error_of(exc)
        try:
            await websocket.send_denial_response(error_response(status, code, message, **extra))
        except RuntimeError:  # a server without the denial extension: close with 4000 + status
            await websocket.close(4000 + status, message[:120])
        return
    token = credential if credential and credential.startswith(PULL_TOKEN_PREFIX) else None
    with _slots(websocket.app).hold(credential):
        await websocket.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
        start = first.cursor if after is None else format_cursor(endpoint.id, after)
        await StreamSession(websocket, pull, websocket.app.state.settings, endpoint, first, start, token).run()


class StreamSession:
    """One accepted WebSocket: sends events within the ack window, reads acks, closes with a reason."""

    def __init__(
        self,
        ws: WebSocket,
        pull: PullLog,
        settings: Settings,
        endpoint: Endpoint,
        first: Page,
        start: str,
        token: str | None,
    ) -> None:
        self.ws = ws
        self.pull = pull
        self.endpoint = endpoint
        self.token = token
        self.first = first
        self.max_unacked = settings.poll_ws_max_unacked
        self.ack_timeout_s = settings.poll_ws_ack_timeout_s
        self.sent = start.rpartition(":")[2]  # stream id of the last event sent
        self.acked = start  # the last cursor acked: where the client resumes if it acks nothing
        self.unacked: deque[tuple[int, int]] = deque()
        self.ack_event = asyncio.Event()
        self.checked = time.monotonic()

    async def run(self) -> None:
        hello = {"op": "hello", "endpoint_id": self.endpoint.id, "cursor": self.acked, "max_unacked": self.max_unacked}
        await self.ws.send_text(orjson.dumps(hello).decode())
        tasks = [asyncio.ensure_future(c) for c in (self._receive(), self._send(), self._watch())]
        self.pull.streams_open += 1
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.pull.streams_open -= 1
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        exc = next((t.exception() for t in done if not t.cancelled() and t.exception() is not None), None)
        if exc is None or isinstance(exc, WebSocketDisconnect):
            return
        if isinstance(exc, _Close):
            await self._close(exc.code, exc.reason)
        elif isinstance(exc, (redis.RedisError, OSError)):
            await self._close(1011, f"store unavailable; resume from cursor {self.acked}")
        else:
            log.error("pull stream of %s failed: %r", self.endpoint.id, exc)
            await self._close(1011, f"internal error; resume from cursor {self.acked}")

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason.encode()[:123].decode(errors="ignore"))

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            raw = message.get("text") or message.get("bytes") or b""
            try:
                ack = orjson.loads(raw)["ack"]
                sid = parse_cursor(self.endpoint.id, ack) if isinstance(ack, str) and ":" in ack else None
            except (orjson.JSONDecodeError, KeyError, TypeError, InvalidCursor):
                sid = None
            if sid is None:
                raise _Close(4400, 'expected {"ack": "<cursor of an event received>"}')
            at = position(sid)
            while self.unacked and self.unacked[0] <= at:
                self.unacked.popleft()
            if at > position(self.acked.rpartition(":")[2]):
                self.acked = ack
            self.ack_event.set()

    async def _window(self) -> None:
        """Return once fewer than ``max_unacked`` frames await an ack; close a consumer that stalls."""
        while len(self.unacked) >= self.max_unacked:
            self.ack_event.clear()
            try:
                async with asyncio.timeout(self.ack_timeout_s):
                    await self.ack_event.wait()
            except TimeoutError:
                raise _Close(CLOSE_TOO_SLOW, f"consumer too slow; resume from cursor {self.acked}") from None

    async def _send(self) -> None:
        page = self.first
        while True:
            for event in page.events:
                await self._window()
                frame = orjson.dumps({"op": "event", **event}).decode()
                try:
                    async with asyncio.timeout(self.ack_timeout_s):
                        await self.ws.send_text(frame)
                except TimeoutError:
                    raise _Close(CLOSE_TOO_SLOW, f"consumer too slow; resume from cursor {self.acked}") from None
                self.sent = event["cursor"].rpartition(":")[2]
                self.unacked.append(position(self.sent))
            if not page.has_more:
                await self.pull.wait(self.endpoint.id, self.sent, 20.0)
            await self._refresh()
            await self._window()
            try:
                page = await self.pull.read(self.endpoint, self.sent, min(500, self.max_unacked - len(self.unacked)))
            except CursorExpired as exc:
                raise _Close(CLOSE_EXPIRED, f"cursor expired; resume from {exc.resume_cursor}") from None

    async def _watch(self) -> None:
        """Follow the endpoint: within a moment of a change (the process watches the endpoints' version),
        and every ``REFRESH_S`` anyway, re-read it; a revoked stream ends (``_refresh``)."""
        while True:
            await self.pull.endpoints_changed(REFRESH_S)
            await self._refresh(force=True)

    async def _refresh(self, force: bool = False) -> None:
        """Follow secret rotations; stop for a deleted, disabled or no longer pollable endpoint, or a token
        that no longer matches its secrets."""
        if not force and time.monotonic() - self.checked < REFRESH_S:
            return
        self.checked = time.monotonic()
        found = await self.pull.find_endpoint(self.endpoint.id)
        if found is None:
            raise _Close(4404, "endpoint deleted")
        if not found.pollable:
            raise _Close(4409, "endpoint no longer pollable")
        if self.token is not None and not found.enabled:
            raise _Close(4403, "endpoint disabled: its pull token reads nothing")
        if self.token is not None and not token_matches(found, self.token):
            raise _Close(4403, "pull token no longer valid (secret rotated)")
        self.endpoint = found
