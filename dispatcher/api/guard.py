"""What keeps one client from exhausting the API: the HTTP server's connection rules, a slow-down for
failed credentials, caps on held streams, a Host allow-list, and access logs without credentials.

- ``GuardedH11Protocol`` (uvicorn's h11 protocol): a connection that has not sent a whole request head
  within ``api_header_timeout_s`` of connecting, or of its previous answer, is closed (slow headers and
  idle sockets cannot pile up); ``serve`` also bounds connections (``api_max_connections``, then 503).
- ``FailedAuth``: more than ``api_auth_failures_per_minute`` failed logins or bearer checks from one client
  address get 429 with ``Retry-After`` until the minute has passed.
- ``StreamSlots``: held long-polls and WebSockets, at most ``api_max_streams_per_credential`` per API key
  or pull token (429) and ``api_max_streams`` per process (503).
- ``AllowedHosts``: a Host header outside ``api_allowed_hosts`` is refused (400), against DNS rebinding.
- ``RedactCredentials``: ``api_key``, ``token`` and similar query parameters are masked in access logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from dispatcher.api.errors import ApiError, error_response
from dispatcher.store.portal import PORTAL_LINK_PREFIX

log = logging.getLogger(__name__)

TRACKED_ADDRESSES = 10_000  # client addresses remembered by the failure limiter (the least recent go first)
WINDOW_S = 60.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not send a request head in time."""

    header_timeout_s = 10.0  # set by ``serve`` from the settings

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timeout()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timeout()

    def _arm_header_timeout(self) -> None:
        self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _header_timeout(self) -> None:
        if self.transport.is_closing() or self.transport.get_protocol() is not self:  # closed, or a WebSocket now
            return
        waiting = self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        if waiting:
            self.transport.close()


class FailedAuth:
    """Failed credential checks per client address over the last minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()  # sync routes check credentials in a thread pool

    def _recent(self, address: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(address, ()) if now - t < WINDOW_S]
        if times:
            self._failures[address] = times
            self._failures.move_to_end(address)
        else:
            self._failures.pop(address, None)
        return times

    def check(self, address: str) -> None:
        """Raise 429 while ``address`` is over its failures of the last minute."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
        if len(times) >= self.per_minute:
            retry = max(1, int(WINDOW_S - (now - times[0])) + 1)
            raise ApiError(
                429, "too_many_failures",
                f"too many failed credentials from this address; try again in {retry} s "
                "(DISPATCHER_API_AUTH_FAILURES_PER_MINUTE)",
                headers={"Retry-After": str(retry)},
            )  # fmt: skip

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(address, now)
            self._failures.setdefault(address, []).append(now)
            self._failures.move_to_end(address)
            while len(self._failures) > TRACKED_ADDRESSES:
                self._failures.popitem(last=False)


class StreamSlots:
    """Held long-polls and WebSockets: per credential and per process."""

    def __init__(self, per_credential: int, per_process: int) -> None:
        self.per_credential = per_credential
        self.per_process = per_process
        self.held = 0
        self._by_credential: dict[str, int] = {}

    @staticmethod
    def _who(credential: str | None) -> str:
        return hashlib.sha256((credential or "").encode()).hexdigest()[:32]

    def full(self, credential: str | None) -> ApiError | None:
        """Why one more stream for ``credential`` is refused now, or None."""
        if self.held >= self.per_process:
            return ApiError(503, "too_many_streams", f"this API process holds its maximum of {self.per_process} "
                            "long-polls and streams (DISPATCHER_API_MAX_STREAMS); try again shortly",
                            headers={"Retry-After": "5"})  # fmt: skip
        if self._by_credential.get(self._who(credential), 0) >= self.per_credential:
            return ApiError(429, "too_many_streams", f"this credential holds its maximum of {self.per_credential} "
                            "long-polls and streams (DISPATCHER_API_MAX_STREAMS_PER_CREDENTIAL)",
                            headers={"Retry-After": "5"})  # fmt: skip
        return None

    @contextmanager
    def hold(self, credential: str | None) -> Iterator[None]:
        """Count one stream for ``credential`` while the block runs, or raise its refusal."""
        refusal = self.full(credential)
        if refusal is not None:
            raise refusal
        who = self._who(credential)
        self.held += 1
        self._by_credential[who] = self._by_credential.get(who, 0) + 1
        try:
            yield
        finally:
            self.held -= 1
            left = self._by_credential[who] - 1
            if left:
                self._by_credential[who] = left
            else:
                del self._by_credential[who]


class AllowedHosts:
    """Refuse requests whose Host header is not in the allow-list (an empty list allows any)."""

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...]) -> None:
        self.app = app
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hosts and scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1").lower() for k, v in scope.get("headers", ()) if k == b"host"), "")
            if host not in self.hosts and host.rsplit(":", 1)[0] not in self.hosts:
                if scope["type"] == "http":
                    await error_response(
                        400, "host_not_allowed", "this Host is not served (DISPATCHER_API_ALLOWED_HOSTS)"
                    )(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
                return
        await self.app(scope, receive, send)


_CREDENTIAL_PARAM = re.compile(r"((?:^|[?&])(?:api_key|key|token|access_token|secret|sig|sign)=)[^&]*", re.I)


_PORTAL_LINK = re.compile(rf"(/portal/{PORTAL_LINK_PREFIX})[^?#\s]*")


class RedactCredentials(logging.Filter):
    """Masks credential query parameters, and the token of a portal link's path, in uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            masked = _PORTAL_LINK.sub(r"\1***", _CREDENTIAL_PARAM.sub(r"\1***", args[2]))
            record.args = (*args[:2], masked, *args[3:])
        return True
