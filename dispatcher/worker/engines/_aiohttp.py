"""The aiohttp engine: one ``ClientSession`` whose resolver drops non-public addresses."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from dispatcher.settings import Settings
from dispatcher.ssrf import GuardedResolver
from dispatcher.worker.engines._base import Answer, LiteralGuard

__all__ = ["AiohttpEngine"]


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body, and whether the body ended within them."""
    if resp.content_length is not None and resp.content_length <= cap:
        return await resp.read(), True
    buf = b""
    while len(buf) < cap:
        chunk = await resp.content.read(cap - len(buf))
        if not chunk:
            return buf, True
        buf += chunk
    return buf, resp.content.at_eof()


class AiohttpEngine:
    """Deliveries on aiohttp: the session is made on first use, inside the worker's loop."""

    name = "aiohttp"

    def __init__(self, settings: Settings, resolver: AbstractResolver | None = None) -> None:
        self._s = settings
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._literals = LiteralGuard(settings.allow_private_targets)  # the resolver sees names only

    def _make_session(self) -> aiohttp.ClientSession:
        s = self._s
        connector = aiohttp.TCPConnector(
            limit=max(s.deliver_inflight * 2, 100),
            limit_per_host=0,
            ttl_dns_cache=10,
            resolver=self._resolver or GuardedResolver(s.allow_private_targets),
            enable_cleanup_closed=True,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=s.timeout_s, connect=min(s.connect_timeout_s, s.timeout_s)),
            headers={"user-agent": s.user_agent},
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    async def post(self, url: URL, headers: Mapping[str, str], body: bytes, cap: int) -> Answer:
        self._literals.check(url.raw_host or "")
        if self._session is None or self._session.closed:
            self._session = self._make_session()
        async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            try:
                raw, complete = await _read_capped(resp, cap)
            except Exception as exc:  # the head arrived: its status stands
                return Answer(resp.status, resp.headers, b"", exc)
            if not complete:
                resp.close()  # do not read a huge (or endless) body just to reuse the connection
            return Answer(resp.status, resp.headers, raw)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
