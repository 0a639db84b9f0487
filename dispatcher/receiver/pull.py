"""Pull consumers' client: read an endpoint's log over long-poll or WebSocket, resuming by cursor.

For consumers without a public URL (endpoints of kind ``poll``, or webhooks with ``also_poll``)::

    from dispatcher.receiver.pull import endpoint_token, iter_events

    token = endpoint_token(ENDPOINT_ID, ENDPOINT_SECRET)     # or an API key
    for event in iter_events("https://dispatcher.internal", ENDPOINT_ID, token, cursor=load_cursor()):
        event.verify(ENDPOINT_SECRET)                         # Standard Webhooks signature, as on a POST
        handle(event.payload)
        save_cursor(event.cursor)                             # resume here after a restart

Delivery is at-least-once: the server forgets nothing it has not been asked past, so after a crash
the events after the saved cursor come again (dedupe on ``event.id`` if that matters). Every function
here retries network failures and 5xx answers with exponential backoff (0.25 s to 30 s, jittered) and
raises ``PullError`` for answers that retrying cannot fix (401, 403, 404, 400, 409) and
``CursorExpired`` when the cursor fell out of the log's retention (``skip_expired=True`` logs it and
resumes where the log now starts instead).

- ``iter_events``: long-poll ``GET /v1/endpoints/{id}/poll``, one keep-alive connection, standard library only;
- ``iter_events_ws`` / ``aiter_events_ws``: the ``/stream`` WebSocket (the ``websockets`` package), sync
  or asyncio; events are acknowledged when the next one is asked for (in batches), so the server's window
  of unacknowledged frames never fills while the consumer keeps up.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from dispatcher.errors import CursorExpired, PullError
from dispatcher.receiver.verify import verify
from dispatcher.signing import endpoint_token

log = logging.getLogger(__name__)

WS_SUBPROTOCOL = "dispatcher.v1"
ACK_IDLE_S = 0.05  # ack what was processed when no frame comes within this long
FATAL_CLOSE_CODES = {4400, 4403, 4404, 4409}
__all__ = ["PulledEvent", "aiter_events_ws", "endpoint_token", "iter_events", "iter_events_ws"]


@dataclass(frozen=True)
class PulledEvent:
    """One event of the log: its cursor, the ``webhook-*`` headers, the exact signed body and the parsed payload."""

    cursor: str
    id: str
    type: str
    headers: dict[str, str]
    body: bytes
    payload: Any

    def verify(self, secret: str | list[str]) -> Any:
        """Check the signature like a receiver of the POST would (``dispatcher.verify``); returns the payload."""
        return verify(self.body, self.headers, secret)


def _event(item: dict[str, Any]) -> PulledEvent:
    return PulledEvent(
        cursor=item["cursor"],
        id=item["id"],
        type=item["type"],
        headers=dict(item["headers"]),
        body=item["body"].encode(),
        payload=item.get("payload"),
    )


class Backoff:
    """Exponential, jittered delays between reconnection attempts; ``reset()`` after a success."""

    def __init__(self, first_s: float = 0.25, max_s: float = 30.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def reset(self) -> None:
        self._next = self.first_s

    def next(self) -> float:
        delay = self._next * random.uniform(0.8, 1.2)
        self._next = min(self._next * 2, self.max_s)
        return delay


def _error(status: int, raw: bytes) -> tuple[str, str, str | None]:
    """(code, message, resume cursor) of an error answer."""
    try:
        body = json.loads(raw)
        err = body["error"]
        return str(err.get("code", "")), str(err.get("message", "")), body.get("cursor")
    except (ValueError, KeyError, TypeError):
        return "", raw[:200].decode(errors="replace") or f"HTTP {status}", None


def _expired(message: str, resume: str | None, skip: bool) -> str:
    """The cursor to go on from after a 410 (``skip``), or raise ``CursorExpired``."""
    if resume is None:
        raise PullError(f"cursor expired and no resume cursor given: {message}", 410, "cursor_expired")
    if not skip:
        raise CursorExpired(message, resume)
    log.warning("pull: %s; skipping ahead to %s", message, resume)
    return resume


# -- long-poll ------------------------------------------------------------------------------------------
def iter_events(
    base_url: str,
    endpoint_id: str,
    api_key: str,
    *,
    cursor: str | None = None,
    wait_s: float = 25.0,
    limit: int = 100,
    skip_expired: bool = False,
) -> Iterator[PulledEvent]:
    """Yield the endpoint's events after ``cursor`` (None: the oldest kept; ``"latest"``: only new ones), forever.

    ``api_key`` is an API key or the endpoint's pull token (``endpoint_token``). The cursor moves past an
    event when the next one is asked for, so breaking out of the loop re-reads nothing processed.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = f"{parts.path.rstrip('/')}/v1/endpoints/{quote(endpoint_id, safe='')}/poll"
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    backoff = Backoff()
    conn: http.client.HTTPConnection | None = None
    try:
        while True:
            query: dict[str, Any] = {"limit": limit, "wait": wait_s}
            if cursor is not None:
                query["cursor"] = cursor
            try:
                if conn is None:
                    conn = conn_cls(parts.hostname, parts.port, timeout=wait_s + 15)
                conn.request("GET", f"{path}?{urlencode(query)}", headers=headers)
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                delay = backoff.next()
                log.warning("pull: %s; retrying in %.1fs", type(exc).__name__, delay)
                time.sleep(delay)
                continue
            if status == 200:
                backoff.reset()
                page = json.loads(raw)
                for item in page["events"]:
                    event = _event(item)
                    yield event
                    cursor = event.cursor
                cursor = page["cursor"]
                continue
            code, message, resume = _error(status, raw)
            if status == 410:
                cursor = _expired(message, resume, skip_expired)
            elif status == 429 or status >= 500:
                delay = backoff.next()
                log.warning("pull: HTTP %d %s; retrying in %.1fs", status, code, delay)
                time.sleep(delay)
            else:
                raise PullError(f"HTTP {status} {code}: {message}", status, code)
    finally:
        if conn is not None:
            conn.close()


# -- WebSocket ------------------------------------------------------------------------------------------
def _ws_url(base_url: str, endpoint_id: str, cursor: str | None) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    url = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/v1/endpoints/{quote(endpoint_id, safe='')}/stream"
    return url + (f"?{urlencode({'cursor': cursor})}" if cursor is not None else "")


class _Acker:
    """Batches acks: every ``every`` events, or when the consumer has caught up (no frame waiting)."""

    def __init__(self) -> None:
        self.pending: str | None = None
        self.count = 0
        self.every = 100

    def hello(self, message: dict[str, Any]) -> None:
        self.every = max(1, int(message.get("max_unacked", 400)) // 4)

    def processed(self, cursor: str) -> str | None:
        """The ack to send now, if any."""
        self.pending, self.count = cursor, self.count + 1
        return self.take() if self.count >= self.every else None

    def take(self) -> str | None:
        ack, self.pending, self.count = self.pending, None, 0
        return None if ack is None else json.dumps({"ack": ack})


def _on_close(exc: Exception, skip_expired: bool, cursor: str | None) -> tuple[str | None, bool]:
    """After a dropped connection: (cursor to resume from, reconnect at once?) or raise."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        code, message, resume = _error(status, bytes(exc.response.body or b""))
        if status == 410:
            return _expired(message, resume, skip_expired), True
        if status == 429 or status >= 500:
            return cursor, False
        raise PullError(f"HTTP {status} {code}: {message}", status, code) from None
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        close, reason = int(exc.rcvd.code), exc.rcvd.reason
        if close == 4410:
            return _expired(reason, reason.rpartition(" ")[2] or None, skip_expired), True
        if close in FATAL_CLOSE_CODES:
            raise PullError(f"stream closed ({close}): {reason}", close - 4000, "closed") from None
        if close == 4008:  # too slow: our own cursor is exact, resume from it at once
            log.warning("pull: %s; resuming from %s", reason, cursor)
            return cursor, True
    return cursor, False


class _Stream:
    """The WebSocket pull protocol without the I/O, shared by the sync and asyncio clients.

    It knows where to connect (resuming from the last processed cursor), how long a read may wait before
    what was processed is acked, what each frame means, and what a dropped connection calls for.
    """

    def __init__(self, base_url: str, endpoint_id: str, api_key: str, cursor: str | None, skip_expired: bool):
        self.base_url, self.endpoint_id, self.api_key = base_url, endpoint_id, api_key
        self.cursor = cursor
        self.skip_expired = skip_expired
        self.backoff = Backoff()
        self.acker = _Acker()

    def connect_args(self, open_timeout_s: float) -> tuple[str, dict[str, Any]]:
        """(url, keyword arguments) of ``websockets``' ``connect`` for the next connection."""
        self.acker = _Acker()
        options = {
            "additional_headers": {"Authorization": f"Bearer {self.api_key}"},
            "subprotocols": [WS_SUBPROTOCOL],
            "open_timeout": open_timeout_s,
            "max_size": 64 * 1024 * 1024,
        }
        return _ws_url(self.base_url, self.endpoint_id, self.cursor), options

    @property
    def read_timeout(self) -> float | None:
        """How long to wait for a frame: briefly while something processed is not acked yet."""
        return ACK_IDLE_S if self.acker.pending else None

    def caught_up(self) -> str | None:
        """No frame came within ``read_timeout``: the ack to send, if any."""
        return self.acker.take()

    def frame(self, raw: str | bytes) -> PulledEvent | None:
        """A received frame: the event to hand to the consumer, or None (a hello)."""
        message = json.loads(raw)
        if message.get("op") == "hello":
            self.acker.hello(message)
            if self.cursor in (None, "latest", "start"):
                self.cursor = message["cursor"]
            self.backoff.reset()
        elif message.get("op") == "event":
            return _event(message)
        return None

    def processed(self, event: PulledEvent) -> str | None:
        """The consumer is done with ``event``: the ack to send now, if any."""
        self.cursor = event.cursor
        return self.acker.processed(event.cursor)

    def dropped(self, exc: Exception) -> float:
        """The connection ended with ``exc``: seconds to wait before reconnecting (0: at once), or raise."""
        self.cursor, at_once = _on_close(exc, self.skip_expired, self.cursor)
        if at_once:
            return 0.0
        delay = self.backoff.next()
        log.warning("pull: stream dropped (%s); reconnecting in %.1fs", type(exc).__name__, delay)
        return delay


def iter_events_ws(
    base_url: str,
    endpoint_id: str,
    api_key: str,
    *,
    cursor: str | None = None,
    skip_expired: bool = False,
    open_timeout_s: float = 10.0,
) -> Iterator[PulledEvent]:
    """``iter_events`` over the ``/stream`` WebSocket: events pushed as they arrive, acked as they are processed."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    stream = _Stream(base_url, endpoint_id, api_key, cursor, skip_expired)
    while True:
        url, options = stream.connect_args(open_timeout_s)
        try:
            with connect(url, **options) as ws:
                while True:
                    try:
                        raw = ws.recv(timeout=stream.read_timeout)
                    except TimeoutError:  # caught up: ack what was processed
                        if ack := stream.caught_up():
                            ws.send(ack)
                        continue
                    if (event := stream.frame(raw)) is not None:
                        yield event
                        if ack := stream.processed(event):
                            ws.send(ack)
        except (OSError, WebSocketException, TimeoutError) as exc:
            time.sleep(stream.dropped(exc))


async def aiter_events_ws(
    base_url: str,
    endpoint_id: str,
    api_key: str,
    *,
    cursor: str | None = None,
    skip_expired: bool = False,
    open_timeout_s: float = 10.0,
) -> AsyncIterator[PulledEvent]:
    """The asyncio variant of ``iter_events_ws`` (``async for event in aiter_events_ws(...)``)."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    stream = _Stream(base_url, endpoint_id, api_key, cursor, skip_expired)
    while True:
        url, options = stream.connect_args(open_timeout_s)
        try:
            async with connect(url, **options) as ws:
                while True:
                    try:  # recv() is safe to cancel
                        raw = await asyncio.wait_for(ws.recv(), stream.read_timeout)
                    except TimeoutError:  # caught up: ack what was processed
                        if ack := stream.caught_up():
                            await ws.send(ack)
                        continue
                    if (event := stream.frame(raw)) is not None:
                        yield event
                        if ack := stream.processed(event):
                            await ws.send(ack)
        except (OSError, WebSocketException, TimeoutError) as exc:
            await asyncio.sleep(stream.dropped(exc))
