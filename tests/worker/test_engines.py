"""Each HTTP engine on its own, against raw loopback servers: where it connects, what it sends, what it keeps.

The delivery, hostile-receiver and robot suites hold both engines to the same outcomes end to end; these
tests look at the wire: the request a receiver gets, and the connections it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from dispatcher.errormap import translate
from dispatcher.errors import ConnectionFailed
from dispatcher.settings import Settings
from dispatcher.ssrf import GuardedResolver
from dispatcher.worker.engines import Answer, make_engine

pytestmark = pytest.mark.every_engine  # each test runs once per HTTP engine


class KeepAliveServer:
    """An HTTP/1.1 server on loopback that keeps connections open and records each request's head, and
    how many connections it accepted. ``body`` is what it answers (``length`` overrides Content-Length),
    after ``delay_s``."""

    def __init__(self, body: bytes = b"ok", length: int | None = None, delay_s: float = 0.0) -> None:
        self.body, self.length, self.delay_s = body, length, delay_s
        self.heads: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client closed it (as it should after a cut answer)
            self._answer_each(conn)

    def _answer_each(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            fields = [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]
            length = next((int(value) for name, value in fields if name.strip().lower() == b"content-length"), 0)
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[length:]
            self.heads.append(head)
            size = len(self.body) if self.length is None else self.length
            time.sleep(self.delay_s)  # a receiver that takes its time (so requests overlap)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + self.body)

    def url(self, host: str = "127.0.0.1") -> URL:
        return URL(f"http://{host}:{self.port}/hook")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def keepalive_server() -> Iterator[Callable[..., KeepAliveServer]]:
    servers: list[KeepAliveServer] = []

    def make(**kwargs: Any) -> KeepAliveServer:
        servers.append(KeepAliveServer(**kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


class FixedResolver(AbstractResolver):
    """DNS answers given by the test (a name with several addresses, which this machine's hosts file has not)."""

    def __init__(self, addresses: list[str], hang: bool = False) -> None:
        self.addresses, self.hang = addresses, hang

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        if self.hang:  # a DNS server that never answers
            await asyncio.Event().wait()
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


def post_all(
    settings: Settings, posts: list[tuple[URL, int]], resolver: AbstractResolver | None = None
) -> list[Answer | Exception]:
    """POST each (url, cap) in turn on one engine; the answers, or the exceptions raised."""

    async def run() -> list[Answer | Exception]:
        engine = make_engine(settings, resolver)
        out: list[Answer | Exception] = []
        try:
            for url, cap in posts:
                try:
                    out.append(await engine.post(url, {"content-type": "application/json"}, b'{"a":1}', cap))
                except Exception as exc:
                    out.append(exc)
        finally:
            await engine.close()
        return out

    return asyncio.run(run())


def test_the_request_is_plain_http_1_1(
    settings_for: Callable[..., Settings], keepalive_server: Callable[..., KeepAliveServer]
) -> None:
    server = keepalive_server()
    [answer] = post_all(settings_for(), [(server.url("localhost"), 1024)])
    assert isinstance(answer, Answer) and answer.status == 200 and answer.body == b"ok"
    lines = server.heads[0].decode().split("\r\n")
    assert lines[0] == "POST /hook HTTP/1.1"
    fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:]}
    assert fields["host"] == f"localhost:{server.port}"  # the name, though the address was pinned
    assert fields["content-length"] == "7" and fields["content-type"] == "application/json"
    assert fields["user-agent"].startswith("webhook-dispatcher/")
    assert not {"transfer-encoding", "expect", "accept-encoding", "upgrade", "http2-settings"} & set(fields)


def test_connections_are_kept_alive_and_an_answer_cut_at_the_cap_drops_its_own(
    settings_for: Callable[..., Settings], keepalive_server: Callable[..., KeepAliveServer]
) -> None:
    server = keepalive_server()
    huge = keepalive_server(body=b"x" * 200_000, length=100_000_000)  # 100 MB announced, the rest never comes
    started = time.monotonic()
    answers = post_all(settings_for(timeout_s=5.0), [(server.url(), 1024)] * 5 + [(huge.url(), 1024)] * 3)
    assert all(isinstance(a, Answer) and a.status == 200 and a.failure is None for a in answers), answers
    assert server.connections == 1  # five requests, one connection
    assert [len(a.body) for a in answers[5:] if isinstance(a, Answer)] == [1024] * 3
    assert huge.connections == 3  # not read to its end to be reused: each cut answer closed its connection
    assert time.monotonic() - started < 5  # nor waited for


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_non_public_targets_are_refused_before_connecting(
    settings_for: Callable[..., Settings], keepalive_server: Callable[..., KeepAliveServer], host: str
) -> None:
    """A name is refused by the guarded resolver, an IP literal (as a chat platform may render one) by
    the engine itself; either way the receiver never sees a connection."""
    server = keepalive_server()
    url = server.url(host)
    [failure] = post_all(settings_for(allow_private_targets=False), [(url, 1024)])
    assert isinstance(failure, Exception)
    mapped = translate(failure, str(url))
    assert isinstance(mapped, ConnectionFailed) and "refusing" in str(mapped) and "non-public" in str(mapped)
    assert server.connections == 0


def test_an_address_that_cannot_be_connected_to_gives_way_to_the_next(
    settings_for: Callable[..., Settings], keepalive_server: Callable[..., KeepAliveServer]
) -> None:
    """A name with two addresses, the first refusing connections: the request goes to the second."""
    server = keepalive_server()  # listens on 127.0.0.1 only: 127.0.0.2 refuses
    resolver = FixedResolver(["127.0.0.2", "127.0.0.1"])
    answers = post_all(settings_for(), [(server.url("two.example"), 1024)] * 3, resolver)
    assert all(isinstance(a, Answer) and a.status == 200 for a in answers), answers
    assert len(server.heads) == 3 and server.connections == 1


@pytest.mark.parametrize("answers", [["127.0.0.1"], ["10.1.2.3", "127.0.0.1"]])
def test_the_address_connected_to_is_the_one_the_guard_vetted(
    settings_for: Callable[..., Settings], keepalive_server: Callable[..., KeepAliveServer], answers: list[str]
) -> None:
    """DNS that answers a name (one no real DNS knows) with private addresses: the guard drops them, and
    the engine connects to nothing, though the server listens on the address the name was given."""
    server = keepalive_server()
    resolver = GuardedResolver(allow_private=False, inner=FixedResolver(answers))
    [failure] = post_all(settings_for(allow_private_targets=False), [(server.url("rebind.example"), 1024)], resolver)
    mapped = translate(failure, "") if isinstance(failure, Exception) else None
    assert isinstance(mapped, ConnectionFailed) and "non-public" in str(mapped), failure
    assert server.connections == 0


def test_a_name_that_never_resolves_ends_at_the_connect_timeout(
    settings_for: Callable[..., Settings], keepalive_server: Callable[..., KeepAliveServer]
) -> None:
    server = keepalive_server()
    started = time.monotonic()
    settings = settings_for(connect_timeout_s=0.5, timeout_s=2.0)
    [failure] = post_all(settings, [(server.url("slow-dns.example"), 1024)], FixedResolver([], hang=True))
    assert isinstance(failure, Exception) and str(translate(failure, "")) == "timeout", failure
    assert time.monotonic() - started < 1.9  # the connect timeout, not the total
    assert server.connections == 0


def test_endpoints_sharing_a_host_keep_their_connections_alive(
    settings_for: Callable[..., Settings], keepalive_server: Callable[..., KeepAliveServer]
) -> None:
    """More requests in flight to one host than one endpoint may have (several endpoints on one host, as
    every Slack robot is): the second wave reuses the first wave's connections instead of opening new ones."""
    server = keepalive_server(delay_s=0.2)
    settings = settings_for(endpoint_inflight=8, deliver_inflight=24)

    async def waves() -> list[int]:
        engine = make_engine(settings)
        seen = []
        try:
            for _ in range(2):
                posts = (engine.post(server.url(), {}, b"{}", 1024) for _ in range(settings.deliver_inflight))
                assert all(a.status == 200 for a in await asyncio.gather(*posts))
                seen.append(server.connections)
        finally:
            await engine.close()
        return seen

    first, second = asyncio.run(waves())
    assert first == 24 and second == 24
