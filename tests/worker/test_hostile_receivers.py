"""Hostile receivers: huge headers, endless bodies, garbage and bad bytes are failed attempts; nothing crashes,
nothing hangs, no robot token leaks into the records."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher import Dispatcher
from dispatcher.settings import Settings
from dispatcher.worker.runtime import Runtime

pytestmark = pytest.mark.every_engine  # each test runs once per HTTP engine


class RawServer:
    """A TCP server on loopback that answers every connection with ``respond(conn)``."""

    def __init__(self, respond: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.respond = respond
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)  # a client that refuses it: SSLError
                conn.recv(65536)
                self.respond(conn)
            except OSError:
                pass

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/hook" if self.tls else f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for ``localhost`` (that no client trusts)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", *files, "-days", "1", "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(respond: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(respond, tls))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def one_attempt(pump: Callable[..., Any]) -> Callable[[Dispatcher, Runtime, str], Any]:
    """``one_attempt(dsp, runtime, url)``: subscribe ``url``, send one event, return its first attempt."""

    def attempt(dsp: Dispatcher, rt: Runtime, url: str) -> Any:
        dsp.subscribe(url, ["*"])
        eid = dsp.enqueue("abuse.test", {"x": 1})
        pump(rt, lambda: dsp.deliveries(eid) and dsp.deliveries(eid)[0].attempts, timeout_s=20.0)
        return dsp.deliveries(eid)[0].attempts[0]

    return attempt


def test_huge_response_headers_are_a_failed_attempt(
    dsp: Dispatcher, runtime: Runtime, raw_server: Callable[..., RawServer], one_attempt: Callable[..., Any]
) -> None:
    def respond(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 0\r\n\r\n")

    attempt = one_attempt(dsp, runtime, raw_server(respond).url)
    assert attempt.status is None and attempt.error  # recorded as a failure, the worker carries on


def test_endless_response_is_cut_at_the_cap(
    settings_for: Callable[..., Settings], raw_server: Callable[..., RawServer], one_attempt: Callable[..., Any]
) -> None:
    settings = settings_for(timeout_s=2.0)
    dsp, rt = Dispatcher(settings), Runtime(settings)

    def respond(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conn.sendall(b"400\r\n" + b"z" * 1024 + b"\r\n")

    started = time.monotonic()
    attempt = one_attempt(dsp, rt, raw_server(respond).url)
    assert attempt.status == 200 and len(attempt.response) == 1024
    assert time.monotonic() - started < 8  # read capped, not streamed forever
    rt.close()
    dsp.close()


def test_garbage_response_is_a_failed_attempt(
    dsp: Dispatcher, runtime: Runtime, raw_server: Callable[..., RawServer], one_attempt: Callable[..., Any]
) -> None:
    attempt = one_attempt(dsp, runtime, raw_server(lambda conn: conn.sendall(b"\x00\xffnot http\r\n\r\n")).url)
    assert attempt.status is None and attempt.error


def test_non_utf8_response_body_is_recorded_safely(
    dsp: Dispatcher, runtime: Runtime, raw_server: Callable[..., RawServer], one_attempt: Callable[..., Any]
) -> None:
    body = b"\xff\xfe\xfa bad bytes"
    attempt = one_attempt(
        dsp,
        runtime,
        raw_server(lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)).url,
    )
    assert attempt.status == 200 and "bad bytes" in attempt.response


def test_urls_with_tokens_stay_out_of_attempt_records(
    dsp: Dispatcher, runtime: Runtime, raw_server: Callable[..., RawServer], one_attempt: Callable[..., Any]
) -> None:
    """Errors that quote the request URL (aiohttp's do) must not copy a robot's token into the records."""
    server = raw_server(lambda conn: conn.sendall(b"HTTP/1.1 2x0 Nope\r\n\r\n"))
    url = server.url + "?access_token=SECRET-TOKEN-123"
    attempt = one_attempt(dsp, runtime, url)
    assert "<url>" in (attempt.error or "")
    assert attempt.error and "SECRET-TOKEN-123" not in attempt.error


def test_a_certificate_that_does_not_verify_is_a_failed_attempt(
    dsp: Dispatcher,
    runtime: Runtime,
    raw_server: Callable[..., RawServer],
    self_signed: ssl.SSLContext,
    one_attempt: Callable[..., Any],
) -> None:
    answered: list[bool] = []

    def respond(conn: socket.socket) -> None:
        answered.append(True)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    attempt = one_attempt(dsp, runtime, raw_server(respond, self_signed).url)
    assert attempt.status is None and "certificate" in (attempt.error or "").lower(), attempt.error
    assert not answered  # the request was never sent


def test_a_body_trickling_under_the_cap_ends_at_the_total_timeout(
    settings_for: Callable[..., Settings], raw_server: Callable[..., RawServer], one_attempt: Callable[..., Any]
) -> None:
    settings = settings_for(timeout_s=1.0)
    dsp, rt = Dispatcher(settings), Runtime(settings)

    def respond(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conn.sendall(b"1\r\nz\r\n")
            time.sleep(0.1)

    started = time.monotonic()
    attempt = one_attempt(dsp, rt, raw_server(respond).url)
    assert attempt.status == 200 and attempt.error == "timeout"  # the receiver said 200: that stands
    assert time.monotonic() - started < 8
    rt.close()
    dsp.close()
