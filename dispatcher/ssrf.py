"""Keeping deliveries off the network the dispatcher runs in.

URLs are checked when an endpoint is saved (``check_url``) and again when a connection is made
(``GuardedResolver`` vets every address DNS returns; ``check_literal_host`` vets IP literals, which
aiohttp never sends to a resolver), so DNS that changes between the two checks gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from dispatcher.errors import InvalidURL, UnsafeTarget

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPAT = ipaddress.IPv6Network("::/96")


def is_public_address(addr: IPAddress) -> bool:
    """True only for globally routable unicast addresses (IPv4 mapped in IPv6 is unwrapped)."""
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped or addr.sixtofour
        if mapped is not None:
            return is_public_address(mapped)
        if addr.teredo is not None or addr in _IPV4_COMPAT:
            return False
        if addr in _NAT64:  # NAT64 reaches the embedded IPv4 address
            return is_public_address(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return addr.is_global and not addr.is_multicast


def parse_url(url: object) -> tuple[str, str, int]:
    """Split an http(s) URL into (scheme, host, port) or raise InvalidURL."""
    if not isinstance(url, str) or not url:
        raise InvalidURL("url must be a non-empty string")
    if len(url) > 2048:
        raise InvalidURL("url longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"malformed url: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidURL("url must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise InvalidURL("url has no host")
    if parts.username or parts.password:
        raise InvalidURL("url must not carry credentials")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_literal_host(host: str, allow_private: bool) -> None:
    """Refuse a host that is itself a non-global IP literal."""
    addr = _literal(host)
    if addr is not None and not allow_private and not is_public_address(addr):
        raise UnsafeTarget(f"refusing non-public address {addr}")


def check_url(url: object, allow_private: bool, resolve: bool = True) -> str:
    """Validate ``url`` for saving: http(s), and (unless allowed) every resolved address public."""
    _, host, port = parse_url(url)
    assert isinstance(url, str)
    if allow_private:
        return url
    check_literal_host(host, allow_private)
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        raise UnsafeTarget(f"refusing local host {host!r}")
    if resolve and _literal(host) is None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise InvalidURL(f"cannot resolve host {host!r}: {exc}") from None
        for info in infos:
            addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if not is_public_address(addr):
                raise UnsafeTarget(f"refusing {host!r}: it resolves to non-public address {addr}")
    return url


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops non-public addresses, so connections only go where vetted."""

    def __init__(self, allow_private: bool = False) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        safe = [r for r in results if is_public_address(ipaddress.ip_address(r["host"].split("%")[0]))]
        if not safe:
            raise OSError(f"refusing {host!r}: it resolves only to non-public addresses")
        return safe

    async def close(self) -> None:
        await self._inner.close()
