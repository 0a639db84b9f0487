"""Fixtures and helpers shared by every room's tests: a real Redis, a key prefix per test, HTTP receivers on
loopback, real worker and API processes, API test clients, and in-process pumping of the pipeline.

Test modules never import from each other or from here: what they share is a fixture. Helpers that are
functions (``wait_until``, ``pump``, ``states``, ``settings_for``, ``settings_env``) are fixtures returning
the function; the classes below are imported by test modules for annotations only (under TYPE_CHECKING).
Room-specific fixtures live in ``tests/<room>/conftest.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from fastapi.testclient import TestClient

from dispatcher import Dispatcher, Settings
from dispatcher.api.app import create_app
from dispatcher.cli.embedded import EmbeddedRedis, server_binary
from dispatcher.store.keys import Keys
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-0123456789abcdef"  # the default key of the API fixtures (a module may override ``api_keys``)


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


def make_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    """Settings for tests: fast retries and lingering, private targets allowed; ``overrides`` win."""
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


def pump(rt: Runtime, until: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    """Run fan-out and delivery passes in this process until ``until()`` is truthy; returns its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        run_fanout(rt)
        run_deliver(rt, budget_s=0.5)
        value = until()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"


def states(dsp: Dispatcher, event_id: str) -> list[str]:
    """The states of an event's deliveries, in delivery order."""
    return [d.state.value for d in dsp.deliveries(event_id)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- helpers as fixtures ----------------------------------------------------------------------------
@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    """``wait_until(predicate, timeout_s=10, interval_s=0.02, what="")``: a condition with a deadline."""
    return wait_until


@pytest.fixture(name="pump")
def pump_fixture() -> Callable[..., Any]:
    """``pump(runtime, until, timeout_s=15)``: in-process fan-out + delivery passes until ``until()``."""
    return pump


@pytest.fixture(name="states")
def states_fixture() -> Callable[[Dispatcher, str], list[str]]:
    """``states(dsp, event_id)``: the states of the event's deliveries."""
    return states


@pytest.fixture(name="settings_env")
def settings_env_fixture() -> Callable[[Settings], dict[str, str]]:
    """``settings_env(settings)``: the DISPATCHER_* environment that rebuilds ``settings`` in another process."""
    return settings_env


@pytest.fixture
def repo_root() -> Path:
    return ROOT


# -- Redis ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def private_devstack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The directory where a ``dispatcher dev`` would be announced (XDG_RUNTIME_DIR), this session's own:
    no test or process it starts ever finds the developer's own dev stack (``dispatcher.devstack``)."""
    directory = tmp_path_factory.mktemp("xdg-runtime")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_RUNTIME_DIR", str(directory))
        mp.delenv("DISPATCHER_DEVSTACK_FILE", raising=False)
        yield directory


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked ``every_engine`` runs each of its tests once per HTTP engine."""
    if metafunc.definition.get_closest_marker("every_engine") and "http_engine" in metafunc.fixturenames:
        metafunc.parametrize("http_engine", typing.get_args(Settings.model_fields["http_engine"].annotation))


@pytest.fixture
def http_engine() -> str:
    """The HTTP engine of the test settings: DISPATCHER_HTTP_ENGINE when set, else the default."""
    return os.environ.get("DISPATCHER_HTTP_ENGINE") or str(Settings.model_fields["http_engine"].default)


@pytest.fixture
def settings_for(redis_url: str, prefix: str, http_engine: str) -> Callable[..., Settings]:
    """``settings_for(**overrides)``: the test settings on this test's Redis and prefix and the HTTP engine
    under test, with overrides (``redis_url=`` / ``key_prefix=`` included)."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("http_engine", http_engine)
        return make_settings(overrides.pop("redis_url", redis_url), overrides.pop("key_prefix", prefix), **overrides)

    return make


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for()


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


@pytest.fixture
def store_keys(prefix: str) -> Keys:
    """The key names of this test's prefix (``store.keys.Keys``: the one place keys are spelled)."""
    return Keys(prefix)


@pytest.fixture
def log_ids(raw_redis: redis.Redis, store_keys: Keys) -> Callable[[str], list[str]]:
    """``log_ids(endpoint_id)``: the event ids in an endpoint's pull log, oldest first."""

    def read(endpoint_id: str) -> list[str]:
        return [fields[b"id"].decode() for _, fields in raw_redis.xrange(store_keys.stream(endpoint_id))]

    return read


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
    """``receiver_factory(reply=..., delay_s=..., port=...)`` starts a new receiver and returns it."""
    server = ReceiverServer()

    def make(**kwargs: Any) -> Receiver:
        return server.start(Receiver(**kwargs))

    yield make
    server.close()


@pytest.fixture
def receiver(receiver_factory: Callable[..., Receiver]) -> Receiver:
    return receiver_factory()


# -- workers --------------------------------------------------------------------------------------
def _child_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process' environment without its DISPATCHER_* variables, plus exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(settings_env(settings))
    env.update(extra or {})
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Worker:
    """A real ``celery -A workers.app worker`` process."""

    def __init__(
        self, settings: Settings, log_path: Path, concurrency: int = 1, extra_env: dict[str, str] | None = None
    ):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-l", "info", "-c", str(concurrency),
             "--without-mingle", "--without-gossip", "-n", f"w{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, env=_child_env(settings, extra_env), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
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
    """``worker_factory(settings, concurrency=1, extra_env=None)`` starts a real Celery worker, waits until ready."""
    workers: list[Worker] = []

    def make(settings: Settings, concurrency: int = 1, **kwargs: Any) -> Worker:
        w = Worker(settings, tmp_path / f"worker{len(workers)}.log", concurrency, **kwargs)
        workers.append(w)
        return w.wait_ready()

    yield make
    for w in workers:
        w.stop()


class Flower:
    """A real ``celery -A workers.app flower`` on a free loopback port, its API open (FLOWER_UNAUTHENTICATED_API)."""

    def __init__(self, settings: Settings, log_path: Path, max_tasks: int = 10_000) -> None:
        self.log_path = log_path
        self.port = free_port()
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "flower", "--address=127.0.0.1",
             f"--port={self.port}", f"--max_tasks={max_tasks}"],
            cwd=ROOT, env=_child_env(settings, {"FLOWER_UNAUTHENTICATED_API": "true"}), stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(self._ready, 30, 0.1, f"Flower on port {self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Flower exited:\n{self.log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
            return bytes(resp.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@pytest.fixture
def flower_factory(tmp_path: Path) -> Iterator[Callable[..., Flower]]:
    """``flower_factory(settings, max_tasks=10_000)`` starts a real Flower on the test's broker, waits until ready."""
    started: list[Flower] = []

    def make(settings: Settings, **kwargs: Any) -> Flower:
        flower = Flower(settings, tmp_path / f"flower{len(started)}.log", **kwargs)
        started.append(flower)
        return flower

    yield make
    for flower in started:
        flower.stop()


# -- a real browser ---------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"]


@pytest.fixture
def screenshots(tmp_path: Path, repo_root: Path) -> Path:
    """Where the browser tests save their screenshots: DISPATCHER_SCREENSHOTS_DIR (relative to the repository
    root) when set, else a temporary folder, so a run never rewrites tracked files unasked."""
    chosen = os.environ.get("DISPATCHER_SCREENSHOTS_DIR")
    folder = repo_root / chosen if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page() -> Iterator[object]:
    """A page of a real headless Chromium (Debian's /usr/bin/chromium; skipped when it is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium) - the browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
        browser.close()


class SchedulerProcess:
    """A real ``dispatcher scheduler`` process, its output in a log file."""

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dispatcher", "scheduler", *args],
                cwd=ROOT, env=_child_env(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code (killed when it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def scheduler_factory(tmp_path: Path) -> Iterator[Callable[..., SchedulerProcess]]:
    """``scheduler_factory(settings, *args)`` starts ``dispatcher scheduler *args``; stopped after the test."""
    started: list[SchedulerProcess] = []

    def make(settings: Settings, *args: str) -> SchedulerProcess:
        started.append(SchedulerProcess(settings, tmp_path / f"scheduler{len(started)}.log", *args))
        return started[-1]

    yield make
    for scheduler in started:
        scheduler.stop(signal.SIGKILL)


# -- the HTTP API -----------------------------------------------------------------------------------
class ApiServer:
    """``dispatcher api`` (uvicorn) in its own process on a free loopback port; ``restart()`` keeps the port."""

    def __init__(self, settings: Settings, log_path: Path, port: int | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> ApiServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dispatcher", "api", "--port", str(self.port)],
                cwd=ROOT, env=_child_env(self.settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until(self._ready, 30, 0.05, f"the API on port {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the API exited:\n{self.log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def restart(self, sig: int = signal.SIGKILL) -> None:
        self.stop(sig)
        self.start()

    def status(self) -> dict[str, int]:
        """The process' resident memory (KiB), threads and open file descriptors, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "Threads"):
                fields[name] = int(value.split()[0])
        fields["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
        return fields


@pytest.fixture
def api_keys() -> tuple[str, ...]:
    """The API keys of the API fixtures; the first one authenticates ``api``. Override it in a module to
    use keys of its own."""
    return (API_KEY,)


@pytest.fixture
def api_key(api_keys: tuple[str, ...]) -> str:
    return api_keys[0]


@pytest.fixture
def api_settings(settings: Settings, api_keys: tuple[str, ...]) -> Settings:
    """The test settings with the API keys set (what ``dispatcher api`` needs to start)."""
    return settings.model_copy(update={"api_keys": api_keys})


@pytest.fixture
def api_server_factory(tmp_path: Path) -> Iterator[Callable[[Settings], ApiServer]]:
    """``api_server_factory(settings)``: ``dispatcher api`` in its own process, stopped after the test."""
    servers: list[ApiServer] = []

    def make(settings: Settings) -> ApiServer:
        servers.append(ApiServer(settings, tmp_path / f"api{len(servers)}.log"))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def api_server(api_server_factory: Callable[[Settings], ApiServer], api_settings: Settings) -> ApiServer:
    return api_server_factory(api_settings)


@pytest.fixture
def api_factory(dsp: Dispatcher, api_keys: tuple[str, ...]) -> Iterator[Callable[..., TestClient]]:
    """``api_factory(auth=True, headers=None, **settings overrides)`` -> a TestClient on the app (in this
    process) over ``dsp``'s Redis, with ``api_keys``. ``auth``: send the first key as a bearer token;
    ``headers`` replaces the default headers. With overrides, the app gets a Dispatcher of its own."""
    clients: list[TestClient] = []
    owned: list[Dispatcher] = []

    def make(auth: bool = True, headers: dict[str, str] | None = None, **overrides: Any) -> TestClient:
        settings = dsp.settings.model_copy(update={"api_keys": api_keys, **overrides})
        d = dsp
        if overrides:
            d = Dispatcher(settings)
            owned.append(d)
        if headers is None:
            headers = {"Authorization": f"Bearer {api_keys[0]}"} if auth and api_keys else {}
        client = TestClient(create_app(settings, d), headers=headers)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)
    for d in owned:
        d.close()


@pytest.fixture
def api(api_factory: Callable[..., TestClient]) -> TestClient:
    """A TestClient of the API, authenticated with the first of ``api_keys``."""
    return api_factory()


@pytest.fixture
def anon(api_factory: Callable[..., TestClient]) -> TestClient:
    """A TestClient of the API without credentials."""
    return api_factory(auth=False)


# -- the CLI ----------------------------------------------------------------------------------------
def clear_dispatcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DISPATCHER_"):
            monkeypatch.delenv(name)


@pytest.fixture(name="clear_dispatcher_env")
def clear_dispatcher_env_fixture(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """``clear_dispatcher_env()``: remove every DISPATCHER_* variable from this process' environment."""
    return lambda: clear_dispatcher_env(monkeypatch)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment the CLI reads: exactly the test's settings."""
    clear_dispatcher_env(monkeypatch)
    env = settings_env(settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


# -- the pipeline's counters ----------------------------------------------------------------------
@pytest.fixture
def mixed(dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver]) -> dict[str, str]:
    """Three endpoints, one event each way: delivered, dead (no retries), retrying (retry in a minute)."""
    ok = dsp.subscribe(receiver_factory().url, ["a.*"])
    dead = dsp.subscribe(receiver_factory(reply=lambda n, r: (500, {}, b"")).url, ["a.*"], retry_schedule=[])
    retry = dsp.subscribe(receiver_factory(reply=lambda n, r: (503, {}, b"")).url, ["a.*"], retry_schedule=[60])
    dsp.enqueue("a.b", {"x": 1})
    run_fanout(runtime)
    run_deliver(runtime)
    return {"ok": ok.id, "dead": dead.id, "retry": retry.id}


# -- Redis topologies (replicas, sentinels) -------------------------------------------------------
class RedisProc:
    """One ``redis-server`` (or sentinel) on a loopback port of its own, in a directory of its own."""

    def __init__(self, directory: Path, args: list[str], port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.log_path = directory / "server.log"
        self.process = subprocess.Popen(
            [server_binary(), *args], cwd=directory, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
        )  # fmt: skip
        wait_until(self._ready, 10, 0.05, f"redis on port {port}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"redis on port {self.port} exited:\n{self.log_path.read_text(errors='replace')}")
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no last write."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def cluster_port() -> int:
    """A free port for a cluster node whose bus port (10,000 higher) is free too, so at most 55535."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisTopology:
    """Servers, replicas and sentinels this test starts (and stops): never the machine's Redis."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self.procs: list[RedisProc] = []

    def server(self, replica_of: RedisProc | None = None, cluster_node: bool = False) -> RedisProc:
        """A server (a replica of ``replica_of``; a Redis Cluster node, with no slots yet, for ``cluster_node``)."""
        port = cluster_port() if cluster_node else free_port()
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of.port)]
        if cluster_node:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self._dir / f"nodes-{port}.conf")]
        proc = RedisProc(self._dir / f"redis-{port}", args, port)
        self.procs.append(proc)
        return proc

    def sentinels(self, primary: RedisProc, name: str, n: int = 3) -> list[RedisProc]:
        """``n`` sentinels watching ``primary`` as ``name`` (quorum: a majority; down after 1 s)."""
        found = []
        for _ in range(n):
            port = free_port()
            directory = self._dir / f"sentinel-{port}"
            directory.mkdir(parents=True)
            conf = directory / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {name} 127.0.0.1 {primary.port} {n // 2 + 1}\n"
                f"sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 5000\n"
            )
            proc = RedisProc(directory, [str(conf), "--sentinel"], port)
            self.procs.append(proc)
            found.append(proc)
        return found

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()


@pytest.fixture
def redis_topology(tmp_path: Path) -> Iterator[RedisTopology]:
    """``redis_topology.server(replica_of=...)``, ``.sentinels(primary, name)``: loopback servers of this test's own."""
    topology = RedisTopology(tmp_path / "topology")
    yield topology
    topology.stop()
