"""SSRF guards and the one URL reading: ``parse_target`` (what is saved is what is sent), URL checks at save
time, address classification and the guarded resolver at connect time.

No external DNS: the hosts here are IP literals, numeric forms getaddrinfo parses itself, or localhost.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from dispatcher.errors import InvalidInput, InvalidURL, UnsafeTarget
from dispatcher.ssrf import GuardedResolver, check_address, check_url, inet_aton, is_public_address, parse_target

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
        "http://2130706433/",  # decimal 127.0.0.1
        "http://127.1/",  # short form of 127.0.0.1
        "http://0177.0.0.1/",  # octal 127.0.0.1
        "http://0x7f.1/",  # hex and short
        "http://0x7f000001/",
        "http://017700000001/",
        "http://10.0x10.1/",
        "http://198.18.0.1/",  # benchmarking
        "http://192.0.2.1/",  # TEST-NET-1
        "http://192.88.99.1/",  # 6to4 relay anycast
        "http://240.0.0.1/",  # reserved
        "http://[64:ff9b::7f00:1]/",  # NAT64
        "http://[2001:db8::1]/",  # documentation
        "http://[3fff::1]/",  # documentation (2024)
        "http://[5f00::1]/",  # SRv6 SIDs
        "http://[100::1]/",  # discard-only
        "http://[::ffff:8.8.8.8]/",  # IPv4-mapped: every special-purpose range, whatever it wraps
    ],
)
def test_check_url_refuses_non_public(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("10.0.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0", "0.0.0.0"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_every_inet_aton_form_is_the_address_it_means(host: str, address: str) -> None:
    assert str(inet_aton(host)) == address
    target = parse_target(f"http://{host}/x")
    assert target.url == f"http://{address}/x" and str(target.address) == address  # saved and sent as the address


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "1.2.3.0400", "0x100000000", "1.0x", "08.1.1.1"])
def test_numeric_hosts_that_are_no_address_are_invalid(host: str) -> None:
    with pytest.raises(InvalidURL):
        parse_target(f"http://{host}/")


@pytest.mark.parametrize("host", ["example.com", "3com.4u", "a_b.example", "xn--mnchen-3ya.de", "1e3.example"])
def test_names_are_names(host: str) -> None:
    assert inet_aton(host) is None
    assert parse_target(f"https://{host}/").host == host


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.COM:443/a/./b/../c?x=1&y=%2f", "https://example.com/a/c?x=1&y=%2F"),
        ("https://example.com./p", "https://example.com/p"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:8080/p#frag", "http://example.com:8080/p"),
        ("https://münchen.de/ü?q=é", "https://xn--mnchen-3ya.de/%C3%BC?q=%C3%A9"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://[2606:4700:4700:0::1111]/", "http://[2606:4700:4700::1111]/"),
    ],
)
def test_one_canonical_form_is_saved_and_sent(url: str, canonical: str) -> None:
    assert parse_target(url).url == canonical
    assert parse_target(canonical).url == canonical  # stable: reading it again changes nothing


@pytest.mark.parametrize(
    "url",
    [
        "http://[2606:4700::1111%25a\\b]/",  # the URL that once stopped every worker
        "http://[2606:4700::1111%25eth0]/",  # an interface of this machine
        "http://[fe80::1%eth0]/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com\\@evil.example/",
        "http://example.com:0/",
        "http://-bad-.example/",
        "http://" + "a" * 64 + ".example/",
        "http://example.com/\ud800",
        "http://\ud800.example/",
    ],
)
def test_urls_the_sender_could_not_send_are_invalid(url: str) -> None:
    with pytest.raises(InvalidURL):
        check_url(url, allow_private=True)


def test_a_refused_private_target_names_the_setting() -> None:
    with pytest.raises(UnsafeTarget, match="DISPATCHER_ALLOW_PRIVATE_TARGETS"):
        check_url("http://127.0.0.1/", allow_private=False)


def test_unsafe_target_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        check_url("http://127.0.0.1/", allow_private=False)


@pytest.mark.parametrize(
    "url", [PUBLIC_URL, "https://93.184.216.34:8443/path?q=1", "http://[2606:4700:4700::1111]/", "http://8.8.8.8"]
)
def test_check_url_accepts_public_literals(url: str) -> None:
    assert check_url(url, allow_private=False).target.url == parse_target(url).url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/", "http://[::1]/", "http://10.0.0.1/"]
)
def test_check_url_allow_private(url: str) -> None:
    assert check_url(url, allow_private=True).target.url == url


def test_a_host_that_does_not_resolve_is_accepted_with_a_warning() -> None:
    checked = check_url("https://hooks.example.invalid/x", allow_private=False)
    assert checked.target.url == "https://hooks.example.invalid/x"
    assert len(checked.warnings) == 1 and "does not resolve" in checked.warnings[0]


def test_check_url_without_resolving_skips_dns_but_not_literals() -> None:
    assert not check_url("https://hooks.example.invalid/x", allow_private=False, resolve=False).warnings
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


def test_parse_target_default_ports() -> None:
    assert (parse_target("http://93.184.216.34/").port, parse_target("https://93.184.216.34/").port) == (80, 443)
    target = parse_target("https://[::1]:8443/")
    assert (target.scheme, target.host, target.port, target.url) == ("https", "::1", 8443, "https://[::1]:8443/")


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
        "::ffff:8.8.8.8",  # IPv4-mapped: refused whatever it wraps
        "100.64.0.1",
        "192.31.196.1",  # AS112, globally reachable yet special-purpose
        "2620:4f:8000::1",
    ],
)
def test_not_public(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr)) is False


@pytest.mark.parametrize("addr", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"])
def test_public(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr)) is True


# -- check_address ----------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.0.0.1", "::ffff:127.0.0.1", "fe80::1", "224.0.0.1"])
def test_check_address_refuses(host: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_address(ipaddress.ip_address(host), allow_private=False)
    assert check_address(ipaddress.ip_address(host), allow_private=True) is None  # allowed


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


# -- messages that say what is wrong and what to do ---------------------------------------------------
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://exa mple.com/x", "contains a space (character 11)"),
        ("http://example.com/a\tb", "whitespace"),
        ("http://example.com/a\x00b", "control character"),
        ("", "give an absolute http:// or https:// URL"),
        ("example.com/hooks", "must start with http:// or https://"),
        ("ftp://example.com/h", "(not ftp://)"),
        ("http://[::1/x", "brackets"),
        ("http://user:pw@example.com/", "credentials"),
        ("https://", "no host"),
        ("http://example.com:0/", "port 0"),
        ("http://example.com:99999/", "port out of range"),
        ("http://-bad-.example/", "not a valid host name"),
        ("http://example.com\\@evil.example/", "backslash"),
    ],
)
def test_a_syntactically_bad_url_says_invalid_url(url: str, fragment: str) -> None:
    for allow_private in (True, False):
        with pytest.raises(InvalidURL) as info:
            check_url(url, allow_private=allow_private)
        message = str(info.value)
        assert message.startswith("invalid URL: ") and fragment in message, message
        assert "resolve" not in message


def test_invalid_url_messages_never_repeat_a_credential() -> None:
    with pytest.raises(InvalidURL) as info:
        check_url("http://admin:hunter2@example.com/", allow_private=True)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["http://localhost:9011/ok", "http://10.0.0.1/", "http://127.1/", "http://[::1]/"])
def test_every_refused_private_target_names_the_setting(url: str) -> None:
    with pytest.raises(UnsafeTarget, match="DISPATCHER_ALLOW_PRIVATE_TARGETS=true"):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True).warnings == ()


def test_a_name_resolving_to_a_private_address_is_refused_and_says_so() -> None:
    name = socket.gethostname()  # in /etc/hosts, normally a loopback or private address
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip(f"{name!r} does not resolve here")
    if any(is_public_address(ipaddress.ip_address(str(a).split("%")[0])) for a in addresses):
        pytest.skip(f"{name!r} resolves to a public address here")
    with pytest.raises(UnsafeTarget) as info:
        check_url(f"http://{name}/hooks", allow_private=False)
    message = str(info.value)
    assert f"refusing host {name.lower()!r}: it resolves to non-public address" in message
    assert "DISPATCHER_ALLOW_PRIVATE_TARGETS" in message


def test_an_unresolvable_host_is_not_an_invalid_url() -> None:
    checked = check_url("https://hooks.example.invalid/x", allow_private=False)
    assert checked.warnings and "refused at connect time if it resolves to a private address" in checked.warnings[0]
