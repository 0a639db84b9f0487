"""The reqwest engine (Rust's reqwest through pyreqwest), with the address connected to pinned.

reqwest resolves names itself, out of reach of a Python resolver. So a name is resolved here, by the same
``GuardedResolver`` the aiohttp engine uses (non-public addresses dropped), and the first vetted address is
pinned into a client of that host's own (``ClientBuilder.resolve``): the client cannot connect anywhere
else, while TLS (SNI and certificate check) and the ``Host`` header still use the name. A pin lives
``PIN_TTL_S`` (aiohttp's DNS cache time); after that the name is resolved again, and the client (with its
keep-alive pool) is kept when its address is still among the answers. When the pinned address cannot be
connected to, the host's next vetted address is pinned and tried (aiohttp tries each address too).
IP-literal hosts need no resolving: they are vetted (``LiteralGuard``) and share one client.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from aiohttp.abc import AbstractResolver
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectError, ConnectTimeoutError
from pyreqwest.http import HeaderMap, Url
from pyreqwest.response import Response
from yarl import URL

from dispatcher.errors import ConnectionFailed, ReceiverProtocolError
from dispatcher.settings import Settings
from dispatcher.ssrf import GuardedResolver
from dispatcher.worker.engines._base import Answer, LiteralGuard

__all__ = ["ReqwestEngine"]

PIN_TTL_S = 10.0  # how long a vetted address is used before the name is resolved again
# clients kept, one per host name, least recently used dropped: each costs about 130 KB, and making one
# about 6 ms of CPU (loading the system's trust store), done off the event loop
MAX_PINNED_HOSTS = 256
MAX_URLS_REMEMBERED = 10_000
IDLE_KEEPALIVE_S = 15.0  # an idle pooled connection is closed after this (aiohttp's default; reqwest's is 90 s)
MAX_ADDRESSES_TRIED = 8  # per request, when a host's addresses cannot be connected to
MAX_HEADER_FIELD_BYTES = 8190  # one response header line (aiohttp's limit; hyper reads up to ~400 KiB of head)


@dataclass(slots=True)
class _Pin:
    """A host's vetted addresses, the client pinned to ``addresses[index]``, and until when they hold."""

    client: Client
    addresses: list[str]
    index: int
    until: float


def _connect_failed(exc: BaseException) -> bool:
    """True when the TCP connection could not be made (nothing was sent), as opposed to a later failure."""
    if isinstance(exc, ConnectTimeoutError):
        return True
    details = getattr(exc, "details", None)
    causes = details.get("causes") if isinstance(exc, ConnectError) and isinstance(details, dict) else None
    return any(isinstance(c, dict) and c.get("message") == "tcp connect error" for c in causes or ())


def _check_head(headers: HeaderMap) -> None:
    """Refuse an answer with a header line longer than an HTTP/1.1 server may expect a client to take."""
    for name, value in headers.items():
        if len(name) + len(value) > MAX_HEADER_FIELD_BYTES:
            raise ReceiverProtocolError(
                f"response header {name[:40]!r} is too long ({len(name) + len(value)} bytes, at most "
                f"{MAX_HEADER_FIELD_BYTES})"
            )


async def _read_capped(resp: Response, cap: int) -> bytes:
    """Up to ``cap`` bytes of the body; leaving the rest unread drops the connection instead of draining it."""
    length = resp.headers.get("content-length")
    reader = resp.body_reader
    if length is not None and length.isdigit() and int(length) <= cap:
        return bytes(await reader.bytes())
    buf = bytearray()
    while len(buf) < cap:
        chunk = await reader.read(cap - len(buf))
        if chunk is None:
            break
        buf += chunk
    return bytes(buf)


class ReqwestEngine:
    """Deliveries on pyreqwest: one client per host name (pinned to its vetted address), one for IP literals."""

    name = "reqwest"

    def __init__(self, settings: Settings, resolver: AbstractResolver | None = None) -> None:
        self._s = settings
        self._resolver = resolver  # default: a GuardedResolver, made in the running loop on first use
        self._pins: OrderedDict[str, _Pin] = OrderedDict()
        self._pending: dict[str, asyncio.Future[_Pin]] = {}
        self._literal: Client | None = None
        self._literals = LiteralGuard(settings.allow_private_targets)
        self._urls: dict[str, Url] = {}

    def _build(self, host: str | None = None, address: str | None = None) -> Client:
        s = self._s
        builder = (
            ClientBuilder()
            .follow_redirects(False)
            .gzip(False)
            .deflate(False)
            .brotli(False)
            .zstd(False)
            .no_proxy()
            .http1_only()
            .http1_lower_case_headers()  # as given (webhook-id, ...), as aiohttp sends them
            .referer(False)
            .danger_accept_invalid_certs(False)
            .timeout(timedelta(seconds=s.timeout_s))
            .connect_timeout(timedelta(seconds=min(s.connect_timeout_s, s.timeout_s)))
            # endpoints may share a host (every Slack robot): as many idle as may be in flight, no churn
            .pool_max_idle_per_host(s.deliver_inflight)
            .pool_idle_timeout(timedelta(seconds=IDLE_KEEPALIVE_S))
            .max_connections(max(s.deliver_inflight * 2, 100))
            .user_agent(s.user_agent)
        )
        if host is not None and address is not None:
            builder = builder.resolve(host, address, 0)  # the port stays the URL's
        return builder.build()

    def _cached(self, url: Url) -> Client | None:
        """The client for ``url``'s host when no resolving is needed (an IP literal, a pin still valid)."""
        host = url.domain  # the name exactly as reqwest will look it up; None for an IP literal
        if host is None:
            self._literals.check(url.host_str or "")
            if self._literal is None:
                self._literal = self._build()
            return self._literal
        pin = self._pins.get(host)
        if pin is not None and pin.until > time.monotonic():
            self._pins.move_to_end(host)
            return pin.client
        return None

    async def _resolving(self, host: str, port: int) -> Client:
        """The client for ``host`` once it is resolved and vetted (``AddressRefused``: nothing is public)."""
        pending = self._pending.get(host)
        if pending is None:  # one resolution per host at a time, shared by every request waiting for it
            pending = asyncio.ensure_future(self._pin(host, port, self._pins.get(host)))
            self._pending[host] = pending
            pending.add_done_callback(lambda done: self._resolved(host, done))
        return (await asyncio.shield(pending)).client

    def _resolved(self, host: str, done: asyncio.Future[_Pin]) -> None:
        self._pending.pop(host, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every request waiting for it was cancelled

    async def _pin(self, host: str, port: int, old: _Pin | None) -> _Pin:
        if self._resolver is None:
            self._resolver = GuardedResolver(self._s.allow_private_targets)
        results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)  # OSError: none is public
        addresses = [r["host"] for r in results]
        current = old.addresses[old.index] if old is not None else None
        if old is not None and current in addresses:  # still vetted: keep the client and its pool
            pin = _Pin(old.client, addresses, addresses.index(current), time.monotonic() + PIN_TTL_S)
        else:
            client = await asyncio.to_thread(self._build, host, addresses[0])
            pin = _Pin(client, addresses, 0, time.monotonic() + PIN_TTL_S)
        self._pins[host] = pin
        self._pins.move_to_end(host)
        while len(self._pins) > MAX_PINNED_HOSTS:
            self._pins.popitem(last=False)  # its client closes when its last request is done
        return pin

    def _next_address(self, host: str, failed: Client) -> Client | None:
        """After ``failed`` could not connect: the client of the host's next vetted address (the pin moves
        on for every request), or None when the host has no other address."""
        pin = self._pins.get(host)
        if pin is None or len(pin.addresses) < 2:
            return None
        if pin.client is failed:  # no other request moved it on yet (no await from here to the swap)
            pin.index = (pin.index + 1) % len(pin.addresses)
            pin.client = self._build(host, pin.addresses[pin.index])
        return pin.client

    async def post(self, url: URL, headers: Mapping[str, str], body: bytes, cap: int) -> Answer:
        """POST on the host's pinned client; when its address cannot be connected to (nothing was sent),
        the host's other vetted addresses are tried in turn within the same total timeout, as aiohttp does."""
        text = str(url)
        parsed = self._urls.get(text)
        if parsed is None:  # parsed once per URL, as reqwest reads it
            if len(self._urls) >= MAX_URLS_REMEMBERED:
                self._urls.clear()
            parsed = self._urls[text] = Url(text)
        deadline = time.monotonic() + self._s.timeout_s
        left: float | None = None
        client = self._cached(parsed)
        if client is None:  # resolving counts against the connect timeout (as in aiohttp), and the total
            connect_s = min(self._s.connect_timeout_s, self._s.timeout_s)
            client = await asyncio.wait_for(
                self._resolving(parsed.domain or "", parsed.port_or_known_default or 0), connect_s
            )
            left = max(deadline - time.monotonic(), 0.001)
        for _ in range(MAX_ADDRESSES_TRIED):
            try:
                return await self._send(client, parsed, headers, body, cap, left)
            except Exception as exc:
                host = parsed.domain
                left = deadline - time.monotonic()
                following = self._next_address(host, client) if host and _connect_failed(exc) and left > 0 else None
                if following is None:
                    raise
                client = following
        raise ConnectionFailed("connection error: no address of the host could be connected to")

    async def _send(
        self, client: Client, url: Url, headers: Mapping[str, str], body: bytes, cap: int, left: float | None
    ) -> Answer:
        request = client.post(url).headers(headers).body_bytes(body)
        if left is not None:  # after resolving, or on a later address: what remains of the total timeout
            request = request.timeout(timedelta(seconds=left))
        # 0: entering the response waits for the head only (the default also waits for 64 KiB of body, or its end)
        async with request.streamed_read_buffer_limit(0).build_streamed() as resp:
            _check_head(resp.headers)
            got = cast(Mapping[str, str], resp.headers)
            try:
                raw = await _read_capped(resp, cap)
            except Exception as exc:  # the head arrived: its status stands
                return Answer(resp.status, got, b"", exc)
            return Answer(resp.status, got, raw)

    async def close(self) -> None:
        clients = [p.client for p in self._pins.values()] + ([self._literal] if self._literal else [])
        self._pins.clear()
        self._literal = None
        for client in clients:
            await client.close()
        if self._resolver is not None:
            await self._resolver.close()
