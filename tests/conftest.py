"""Shared fixtures: a real Redis, a key prefix per test, HTTP receivers on loopback, real workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web

from dispatcher import Dispatcher, Settings
from dispatcher.cli.embedded import EmbeddedRedis
from dispatcher.worker.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


# -- Redis ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """DISPATCHER_REDIS_URL when set (CI: the machine's Redis, its own database), else an embedded one."""
    url = os.environ.get("DISPATCHER_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never FLUSHALL)."""
    p = f"t{uuid.uuid4().hex[:10]}:"
    yield p
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{p}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()


def make_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "key_prefix": prefix,
        "allow_private_targets": True,
        "timeout_s": 5.0,
        "retry_schedule": (0.2, 0.4, 0.6),
        "retry_jitter": 0.0,
        "retention_s": 3600,
        "idle_linger_s": 0.05,
        "scheduler_interval_s": 0.1,
        "lease_margin_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(redis_url: str, prefix: str) -> Settings:
    return make_settings(redis_url, prefix)


@pytest.fixture
def dsp(settings: Settings) -> Iterator[Dispatcher]:
    d = Dispatcher(settings)
    yield d
    d.close()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """An in-process worker runtime (no Celery): call run_fanout / run_deliver on it directly."""
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- receivers ------------------------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    query: str = ""  # the raw (still percent-encoded) query string


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Receiver:
    """An aiohttp server on loopback that records every request and answers as told."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    # called with the request number (1-based) and the request; returns (status, headers, body)
    reply: Callable[[int, Received], Reply] = lambda n, r: (200, {}, b"ok")
    delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def url_for(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec = Received(request.path, dict(request.headers), body, time.time(), request.rel_url.raw_query_string)
        with self._lock:
            self.requests.append(rec)
            n = len(self.requests)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status, headers, payload = self.reply(n, rec)
        return web.Response(status=status, headers=headers, body=payload)

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def wait_for(self, n: int, timeout_s: float = 15.0) -> list[Received]:
        wait_until(lambda: self.count() >= n, timeout_s, what=f"{n} requests at {self.url}")
        with self._lock:
            return list(self.requests)


class ReceiverServer:
    """Runs receivers on one background event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def start(self, receiver: Receiver) -> Receiver:
        async def boot() -> None:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", receiver._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)  # don't wait on hung handlers
            await runner.setup()
            site = web.TCPSite(runner, receiver.host, receiver.port)
            await site.start()
            self.runners.append(runner)
            receiver.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(boot(), self.loop).result(10)
        return receiver

    def close(self) -> None:
        async def shutdown() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    """``receiver_factory(reply=..., delay_s=...)`` starts a new receiver and returns it."""
    server = ReceiverServer()

    def make(**kwargs: Any) -> Receiver:
        return server.start(Receiver(**kwargs))

    yield make
    server.close()


@pytest.fixture
def receiver(receiver_factory: Callable[..., Receiver]) -> Receiver:
    return receiver_factory()


# -- workers --------------------------------------------------------------------------------------
def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes another process build the same Settings."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"DISPATCHER_{name.upper()}"] = str(value)
    return env


class Worker:
    """A real ``celery -A workers.app worker`` process."""

    def __init__(
        self, settings: Settings, log_path: Path, concurrency: int = 1, extra_env: dict[str, str] | None = None
    ):
        env = {**os.environ, **settings_env(settings), **(extra_env or {})}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-l", "info", "-c", str(concurrency),
             "--without-mingle", "--without-gossip", "-n", f"w{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 30.0) -> Worker:
        wait_until(lambda: "ready." in self.log() or self.process.poll() is not None, timeout_s, 0.1, "worker ready")
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited:\n{self.log()}")
        return self

    def signal_main(self, sig: int) -> None:
        """Signal the main process only (as ``kill PID`` does); the pool children are its business."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.process.wait(timeout_s)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``worker_factory(settings, concurrency=1)`` starts a real Celery worker and waits until ready."""
    workers: list[Worker] = []

    def make(settings: Settings, concurrency: int = 1, **kwargs: Any) -> Worker:
        w = Worker(settings, tmp_path / f"worker{len(workers)}.log", concurrency, **kwargs)
        workers.append(w)
        return w.wait_ready()

    yield make
    for w in workers:
        w.stop()
