"""SSRF guards: URL checks at save time, literal checks and the guarded resolver at connect time.

No external DNS: the hosts here are IP literals, numeric forms getaddrinfo parses itself, or localhost.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from dispatcher.errors import InvalidInput, InvalidURL, UnsafeTarget
from dispatcher.ssrf import GuardedResolver, check_literal_host, check_url, is_public_address, parse_url

PUBLIC_URL = "http://93.184.216.34/"


# -- check_url ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/hook",
        "https://localhost/",
        "http://localhost/",
        "http://LOCALHOST:9000/",
        "http://api.localhost/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://2130706433/",  # decimal 127.0.0.1: getaddrinfo parses it itself
        "http://127.1/",  # short form of 127.0.0.1
    ],
)
def test_check_url_refuses_non_public(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_url(url, allow_private=False)


def test_check_url_refuses_octal_loopback() -> None:
    # glibc reads 0177 as octal (127); a resolver that cannot parse it makes it an InvalidURL -- a refusal either way
    with pytest.raises(InvalidInput):
        check_url("http://0177.0.0.1/", allow_private=False)


def test_unsafe_target_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        check_url("http://127.0.0.1/", allow_private=False)


@pytest.mark.parametrize(
    "url", [PUBLIC_URL, "https://93.184.216.34:8443/path?q=1", "http://[2606:4700:4700::1111]/", "http://8.8.8.8"]
)
def test_check_url_accepts_public_literals(url: str) -> None:
    assert check_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/", "http://[::1]/", "http://10.0.0.1/"]
)
def test_check_url_allow_private(url: str) -> None:
    assert check_url(url, allow_private=True) == url


def test_check_url_without_resolving_skips_dns_but_not_literals() -> None:
    assert check_url("https://hooks.example.invalid/x", allow_private=False, resolve=False)
    with pytest.raises(UnsafeTarget):
        check_url("http://10.1.2.3/", allow_private=False, resolve=False)
    with pytest.raises(UnsafeTarget):
        check_url("http://localhost/", allow_private=False, resolve=False)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "gopher://93.184.216.34/",
        "//93.184.216.34/",
        "93.184.216.34",
        "http://",
        "http:///path",
        "http://user:pass@93.184.216.34/",
        "http://user@93.184.216.34/",
        "http://93.184.216.34:99999/",
        "http://93.184.216.34:port/",
        "",
        None,
        123,
        "http://93.184.216.34/" + "a" * 2100,
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_check_url_rejects_malformed(url: object, allow_private: bool) -> None:
    with pytest.raises(InvalidURL):
        check_url(url, allow_private=allow_private)


def test_parse_url_default_ports() -> None:
    assert parse_url("http://93.184.216.34/") == ("http", "93.184.216.34", 80)
    assert parse_url("https://93.184.216.34/") == ("https", "93.184.216.34", 443)
    assert parse_url("https://[::1]:8443/") == ("https", "::1", 8443)


# -- is_public_address ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "10.0.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
        "2002:a00:1::",  # 6to4 wrapping 10.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_not_public(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr)) is False


@pytest.mark.parametrize("addr", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr)) is True


# -- check_literal_host ---------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.0.0.1", "::ffff:127.0.0.1", "fe80::1", "224.0.0.1"])
def test_check_literal_host_refuses(host: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_literal_host(host, allow_private=False)
    check_literal_host(host, allow_private=True)  # allowed: no raise


@pytest.mark.parametrize("host", ["93.184.216.34", "2606:4700:4700::1111", "example.com", "localhost", ""])
def test_check_literal_host_ignores_public_literals_and_names(host: str) -> None:
    # names are the resolver's job; only IP literals are judged here
    assert check_literal_host(host, allow_private=False) is None  # no UnsafeTarget raised


# -- GuardedResolver ------------------------------------------------------------------------------
async def _resolve(host: str, allow_private: bool) -> list[str]:
    resolver = GuardedResolver(allow_private=allow_private)
    try:
        return [r["host"] for r in await resolver.resolve(host, 80)]
    finally:
        await resolver.close()


def test_guarded_resolver_refuses_localhost() -> None:
    with pytest.raises(OSError):
        asyncio.run(_resolve("localhost", allow_private=False))


def test_guarded_resolver_refuses_numeric_loopback() -> None:
    with pytest.raises(OSError):
        asyncio.run(_resolve("2130706433", allow_private=False))


def test_guarded_resolver_allows_private_when_told() -> None:
    hosts = asyncio.run(_resolve("localhost", allow_private=True))
    assert hosts
    assert all(ipaddress.ip_address(h).is_loopback for h in hosts)


def test_guarded_resolver_passes_public_literal() -> None:
    assert asyncio.run(_resolve("93.184.216.34", allow_private=False)) == ["93.184.216.34"]
