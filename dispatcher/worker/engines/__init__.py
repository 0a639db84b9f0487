"""The HTTP engines a worker can deliver with, behind one small interface (``Engine``).

``DISPATCHER_HTTP_ENGINE`` picks one: ``reqwest`` (Rust's reqwest through pyreqwest) or ``aiohttp``. Both
hold the same guarantees, checked by the same tests: connections only to vetted addresses (names are
resolved and checked by ``dispatcher.ssrf.GuardedResolver``, and the address checked is the one connected
to), no redirects followed, connect and total timeouts, at most ``cap`` bytes of an answer read (a longer
one is cut and its connection dropped), no automatic decompression, TLS certificates verified, HTTP/1.1
only, no proxy from the environment, bounded keep-alive pools. Their failures are foreign exceptions that
``dispatcher.errormap.translate`` maps to ``DeliveryError``s.
"""

from __future__ import annotations

from aiohttp.abc import AbstractResolver

from dispatcher.settings import Settings
from dispatcher.worker.engines._base import Answer, Engine

__all__ = ["Answer", "Engine", "make_engine"]


def make_engine(settings: Settings, resolver: AbstractResolver | None = None) -> Engine:
    """The engine ``settings.http_engine`` names; its client is made lazily, inside the running loop.
    ``resolver``: what resolves names (default: ``GuardedResolver``, which drops non-public addresses)."""
    if settings.http_engine == "aiohttp":
        from dispatcher.worker.engines._aiohttp import AiohttpEngine

        return AiohttpEngine(settings, resolver)
    from dispatcher.worker.engines._reqwest import ReqwestEngine

    return ReqwestEngine(settings, resolver)
