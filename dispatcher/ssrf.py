"""Keeping deliveries off the network the dispatcher runs in, and one reading of every endpoint URL.

``parse_target`` is the only URL parser of endpoints: it refuses what the sender could not send and
returns one canonical form (ASCII, percent-encoded, host lower-cased or IDNA-encoded, IPv4 in every
form ``inet_aton`` accepts — ``127.1``, ``2130706433``, ``0177.0.0.1`` — rewritten as the dotted quad it
means, dot segments resolved, no fragment). That form is what is saved and what is sent, so the two
never read a URL differently.

Addresses are classified by ``is_public_address``: globally routable unicast only, with every range of
IANA's IPv4 and IPv6 special-purpose registries refused (whatever Python or the HTTP client think of
them). URLs are checked when an endpoint is saved (``check_url``) and again at connect time: IP-literal
hosts when the worker loads the endpoint, names by ``GuardedResolver`` against the address actually
connected to, so DNS that changes between the two checks gains nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from dispatcher.errors import InvalidURL, UnsafeTarget

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
ALLOW_HINT = "set DISPATCHER_ALLOW_PRIVATE_TARGETS=true to allow it (development, tests, trusted networks)"

# IANA IPv4 and IPv6 Special-Purpose Address Registries, every entry (globally reachable or not),
# plus multicast and the deprecated site-local and IPv4-compatible ranges.
_SPECIAL_PURPOSE_TEXT = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
    "100:0:0:1::/64", "2001::/23", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20",
    "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)  # fmt: skip
SPECIAL_PURPOSE = tuple(ipaddress.ip_network(net) for net in _SPECIAL_PURPOSE_TEXT)
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
# what may stay as it is in a path or query; anything else is percent-encoded (a '%' only when it
# does not start a valid escape)
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def is_public_address(addr: IPAddress) -> bool:
    """True only for globally routable unicast addresses outside every special-purpose range."""
    return addr.is_global and not any(addr in net for net in SPECIAL_PURPOSE if net.version == addr.version)


def inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``host`` means in any form ``inet_aton`` accepts (``127.1``, ``0x7f000001``,
    ``0177.0.0.1``, ``2130706433``), or None when it is a name. As browsers and the WHATWG URL standard
    read it, a host whose last label is a number is an address; one that is not a valid address raises
    ``InvalidURL`` (resolvers would read it differently from one library to the next)."""
    parts = host.split(".")
    last = parts[-1]
    if not (last.isdigit() or (last[:2].lower() == "0x" and all(c in "0123456789abcdefABCDEF" for c in last[2:]))):
        return None
    if len(parts) > 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        raise InvalidURL(f"{host!r} is neither a host name nor an IPv4 address")
    values = [int(p, 16) if p[:2] in ("0x", "0X") else int(p, 8) if p.startswith("0") else int(p) for p in parts]
    last_bits = 8 * (5 - len(values))
    if any(v > 255 for v in values[:-1]) or values[-1] >= 1 << last_bits:
        raise InvalidURL(f"{host!r} is not a valid IPv4 address")
    value = 0
    for v in values[:-1]:
        value = value << 8 | v
    return ipaddress.IPv4Address(value << last_bits | values[-1])


@dataclass(frozen=True, slots=True)
class TargetURL:
    """An endpoint URL as the dispatcher reads it: ``url`` is what is saved and what is sent."""

    url: str
    scheme: str
    host: str  # lower-case ASCII name, dotted-quad IPv4, or IPv6 (no brackets)
    port: int
    address: IPAddress | None  # the host, when it is an IP address


def _quote(text: str, safe: str) -> str:
    """Percent-encode what is not ``safe``; valid escapes stay (upper-cased), a stray ``%`` is encoded."""
    pieces, escapes = _ESCAPE.split(text), _ESCAPE.findall(text)
    out = [quote(pieces[0], safe=safe)]
    for escape, piece in zip(escapes, pieces[1:], strict=True):
        out += (escape.upper(), quote(piece, safe=safe))
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    trailing = "/" if path.endswith(("/.", "/..")) else ""
    return "/" + "/".join(out) + trailing


def _host(netloc_host: str) -> tuple[str, IPAddress | None]:
    if netloc_host.startswith("["):
        if not netloc_host.endswith("]"):
            raise InvalidURL("the IPv6 address in brackets is not closed with ']'")
        literal = netloc_host[1:-1]
        if "%" in literal:
            raise InvalidURL("an IPv6 zone identifier (%...) names a network interface of this machine: leave it out")
        try:
            v6 = ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidURL(f"{literal!r} is not a valid IPv6 address") from None
        return str(v6), v6
    name = netloc_host.rstrip(".") if netloc_host.count(".") > 0 else netloc_host
    if not name:
        raise InvalidURL("it has no host (e.g. https://example.com/hooks)")
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidURL(f"host {name[:80]!r} is not a valid host name (letters, digits, '-' and '.')") from None
    v4 = inet_aton(ascii_name)
    if v4 is not None:
        return str(v4), v4
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in ascii_name.split(".")):
        raise InvalidURL(
            f"host {name[:80]!r} is not a valid host name: labels of letters, digits and '-' (not at either "
            "end), at most 63 characters each, separated by '.'"
        )
    return ascii_name, None


def parse_target(url: object) -> TargetURL:
    """Read an endpoint URL the one way the dispatcher does, or raise ``InvalidURL`` saying what is wrong.

    Every message starts with ``invalid URL:`` and never repeats the URL (it may hold a token)."""
    try:
        return _parse_target(url)
    except InvalidURL as exc:
        raise InvalidURL(f"invalid URL: {exc}") from None


def _parse_target(url: object) -> TargetURL:
    if not isinstance(url, str) or not url:
        raise InvalidURL("give an absolute http:// or https:// URL, e.g. https://example.com/hooks")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"it is longer than {MAX_URL_LENGTH} characters")
    bad = next((i for i, c in enumerate(url) if c.isspace() or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        what = "a space" if url[bad] == " " else "whitespace" if url[bad].isspace() else "a control character"
        raise InvalidURL(
            f"it contains {what} (character {bad + 1}); a host name cannot hold one, and in a path or query "
            "write a space as %20"
        )
    if "\\" in url.split("?", 1)[0].split("#", 1)[0]:
        raise InvalidURL("it contains a backslash before the query (some clients read it as '/'): write '/' or %5C")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        hint = " (an IPv6 address goes in brackets: http://[2001:db8::1]:8080/)" if "IPv6" in str(exc) else ""
        raise InvalidURL(f"{str(exc)[:1].lower()}{str(exc)[1:]}{hint}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        got = f" (not {parts.scheme[:20]}://)" if parts.scheme and "://" in url else ""
        raise InvalidURL(f"it must start with http:// or https://{got}")
    netloc = parts.netloc
    if "@" in netloc:
        raise InvalidURL(
            "it must not carry credentials (user:password@): receivers authenticate the dispatcher by the "
            "webhook signature, or put a token in the path"
        )
    host_part = netloc.rsplit(":", 1)[0] if port is not None or netloc.endswith(":") else netloc
    if not host_part:
        raise InvalidURL("it has no host (e.g. https://example.com/hooks)")
    host, address = _host(host_part)
    if port == 0:
        raise InvalidURL("port 0 cannot be connected to: give the receiver's port, or none for 80/443")
    default = 443 if scheme == "https" else 80
    port = port or default
    shown = f"[{host}]" if isinstance(address, ipaddress.IPv6Address) else host
    try:
        path = _remove_dot_segments(_quote(parts.path or "/", _PATH_SAFE))
        query = _quote(parts.query, _QUERY_SAFE)
    except UnicodeError:
        raise InvalidURL("it is not valid Unicode text (it holds a lone surrogate)") from None
    canonical = f"{scheme}://{shown}{'' if port == default else f':{port}'}{path}{'?' + query if query else ''}"
    return TargetURL(canonical, scheme, host, port, address)


def check_address(addr: IPAddress, allow_private: bool, what: str = "") -> None:
    """Refuse a non-public address unless private targets are allowed; ``what`` names the host resolved."""
    if not allow_private and not is_public_address(addr):
        if what:
            raise UnsafeTarget(f"refusing host {what}: it resolves to non-public address {addr}; {ALLOW_HINT}")
        raise UnsafeTarget(f"refusing non-public address {addr}; {ALLOW_HINT}")


def _is_local_name(host: str) -> bool:
    return host in ("localhost", "localhost.localdomain") or host.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class CheckedURL:
    """A URL accepted for saving, with what is worth telling the person who gave it."""

    target: TargetURL
    warnings: tuple[str, ...] = ()


def check_url(url: object, allow_private: bool, resolve: bool = True) -> CheckedURL:
    """Validate ``url`` for saving: http(s), and (unless allowed) an address that is public, or a name that
    resolves only to public addresses. A name that does not resolve now is accepted with a warning: DNS
    changes, and the connect-time guard decides then."""
    target = parse_target(url)
    if allow_private:
        return CheckedURL(target)
    if target.address is not None:
        check_address(target.address, allow_private)
        return CheckedURL(target)
    if _is_local_name(target.host):
        raise UnsafeTarget(f"refusing local host {target.host!r}; {ALLOW_HINT}")
    if not resolve:
        return CheckedURL(target)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        warning = (
            f"host {target.host!r} does not resolve now ({reason}); deliveries will be attempted, "
            "and refused at connect time if it resolves to a private address"
        )
        return CheckedURL(target, (warning,))
    for info in infos:
        check_address(ipaddress.ip_address(str(info[4][0]).split("%")[0]), allow_private, f"{target.host!r}")
    return CheckedURL(target)


class AddressRefused(OSError):
    """Every address a name resolves to is non-public (an ``OSError``, as resolvers fail)."""


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops non-public addresses, so connections only go where vetted.
    ``inner``: what answers the lookups (default: aiohttp's, i.e. the system's)."""

    def __init__(self, allow_private: bool = False, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        safe = [r for r in results if is_public_address(ipaddress.ip_address(r["host"].split("%")[0]))]
        if not safe:
            raise AddressRefused(f"refusing {host!r}: it resolves only to non-public addresses")
        return safe

    async def close(self) -> None:
        await self._inner.close()
