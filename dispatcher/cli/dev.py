"""``dispatcher dev``: the whole stack on one machine with one command, for trying the dispatcher out.

It uses the Redis at ``DISPATCHER_REDIS_URL`` when that is set and answers, otherwise it starts an
embedded ``redis-server`` (data kept under ``--dir``). Then it starts, each in a process group of
its own, a Celery worker, the standalone scheduler and Flower, with an environment that points them
at that Redis and allows loopback targets (so a receiver on 127.0.0.1 can be tried). Their output is
shown prefixed with their name. Ctrl-C or SIGTERM stops them (SIGTERM, then SIGKILL after a
timeout; a second Ctrl-C kills at once) and then the embedded Redis. If one of them dies on its
own, the rest are stopped and the exit code is 1.

Once ready, it announces its Redis (``dispatcher.devstack``) until it stops: this user's processes without
``DISPATCHER_REDIS_URL`` use it.

POSIX only (process groups, signals).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from dispatcher.cli.embedded import EmbeddedRedis, reachable
from dispatcher.devstack import announce, devstack_path, remove_devstack
from dispatcher.errors import DispatcherError
from dispatcher.redis_choice import redact_url

READY_LINE = "dispatcher dev is ready"
WORKER_READY_MARK = " ready."  # celery logs "celery@host ready." once it consumes
POLL_S = 0.1


class DevError(DispatcherError):
    """Raised when the dev stack cannot start (a port in use, the directory locked by another stack)."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something could listen on ``host:port`` now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass
class Child:
    """One process of the stack, leader of its own process group, its output pumped by a thread."""

    name: str
    process: subprocess.Popen[bytes]
    pump: threading.Thread

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def group_alive(self) -> bool:
        """The process or anything it started (e.g. worker pool processes) still runs."""
        return self.alive() or _group_exists(self.pid)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's whole process group (its pool processes too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


class DevStack:
    """Starts and supervises the dev stack; ``run()`` blocks until it is stopped and returns the exit code."""

    def __init__(
        self,
        directory: str | Path = ".dispatcher-dev",
        *,
        flower_port: int = 5555,
        api_port: int = 8000,
        redis_port: int | None = None,
        concurrency: int | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 15.0,
        environ: dict[str, str] | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.flower_port = flower_port
        self.api_port = api_port
        self.redis_port = redis_port
        self.concurrency = concurrency
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.environ = dict(os.environ if environ is None else environ)
        # the dev stack's own API key: from DISPATCHER_API_KEYS if set, else a fresh one for this run
        keys = [k.strip() for k in self.environ.get("DISPATCHER_API_KEYS", "").split(",") if k.strip()]
        self.api_key = keys[0] if keys else secrets.token_urlsafe(24)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.redis_url = ""
        self._stop = threading.Event()
        self._force = threading.Event()
        self._worker_ready = threading.Event()
        self._print_lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self.devstack_file = devstack_path(self.environ.get("DISPATCHER_DEVSTACK_FILE", "").strip() or None)
        self._announced = False

    # -- output ------------------------------------------------------------------------------
    def say(self, text: str, *, error: bool = False) -> None:
        stream = self.err if error else self.out
        with self._print_lock, contextlib.suppress(OSError, ValueError):
            stream.write(text + "\n")
            stream.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"[{name}] "
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if name == "worker" and WORKER_READY_MARK in line:
                    self._worker_ready.set()
                self.say(prefix + line)
        finally:
            stream.close()

    # -- signals -----------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set():
            self._force.set()
        else:
            self._stop.set()

    def _install_signals(self) -> Callable[[], None]:
        previous: dict[int, Any] = {}
        wanted = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGHUP"):
            wanted.append(signal.SIGHUP)
        try:
            for sig in wanted:
                previous[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: the caller stops us with stop()
            pass

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def stop(self) -> None:
        """Ask ``run()`` to shut the stack down (what SIGINT/SIGTERM do)."""
        self._stop.set()

    # -- starting ----------------------------------------------------------------------------
    def _lock_directory(self) -> None:
        """One stack per directory: two redis-servers must never share an AOF."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        handle = open(self.directory / "dev.lock", "wb")  # noqa: SIM115 - held for the stack's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise DevError(f"another `dispatcher dev` is running with --dir {self.directory}") from None
        self._lock_file = handle

    def _choose_redis(self) -> None:
        env_url = self.environ.get("DISPATCHER_REDIS_URL", "").strip()
        if env_url:
            if reachable(env_url):
                self.redis_url = env_url
                return
            self.say(f"dev: DISPATCHER_REDIS_URL ({redact_url(env_url)}) does not answer; starting an embedded Redis")
        self.redis = EmbeddedRedis(directory=self.directory / "redis", port=self.redis_port)
        self.redis.start()
        self.redis_url = self.redis.url
        if self.environ.get("DISPATCHER_BROKER_URL", "").strip():
            self.say("dev: DISPATCHER_BROKER_URL is not used: the embedded Redis is the broker too")

    def child_env(self, **extra: str) -> dict[str, str]:
        """The environment of every child: our Redis, loopback targets allowed, unbuffered output."""
        env = dict(self.environ)
        env["DISPATCHER_REDIS_URL"] = self.redis_url
        env["DISPATCHER_ALLOW_PRIVATE_TARGETS"] = "true"
        if self.redis is not None:
            env.pop("DISPATCHER_BROKER_URL", None)  # the embedded Redis is the broker too
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # Ctrl-C reaches only us; we stop the children in order
        )
        assert process.stdout is not None
        pump = threading.Thread(target=self._pump, args=(name, process.stdout), name=f"dev-{name}", daemon=True)
        pump.start()
        child = Child(name, process, pump)
        self.children.append(child)
        return child

    def _start_children(self) -> None:
        py = sys.executable
        worker = [py, "-m", "celery", "-A", "workers.app", "worker", "-E", "-l", "info", "-n", f"dev{os.getpid()}@%h"]
        if self.concurrency:
            worker += ["-c", str(self.concurrency)]
        # the worker would run a scheduler of its own; off here so the standalone one does the work
        self.spawn("worker", worker, self.child_env(DISPATCHER_EMBEDDED_SCHEDULER="false"))
        self.spawn("scheduler", [py, "-m", "dispatcher", "scheduler"], self.child_env())
        # loopback only, without authentication: its pages and API are open to this machine
        flower = [py, "-m", "dispatcher", "flower", "--address=127.0.0.1", f"--port={self.flower_port}"]
        self.spawn("flower", flower, self.child_env())
        api = [py, "-m", "dispatcher", "api", "--host", "127.0.0.1", "--port", str(self.api_port)]
        self.spawn("api", api, self.child_env(DISPATCHER_API_KEYS=self.api_key))

    def _dead_child(self) -> Child | None:
        for child in self.children:
            if not child.alive():
                return child
        return None

    def _report_death(self, child: Child) -> None:
        child.pump.join(1.0)  # let its last lines (the reason) through first
        code = child.process.returncode
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        self.say(f"dev: {child.name} (pid {child.pid}) {how} unexpectedly; stopping the rest", error=True)

    def _ready(self) -> bool:
        return self._worker_ready.is_set() and port_open(self.flower_port) and port_open(self.api_port)

    def _announce(self) -> None:
        """Tell this user's other processes where our Redis is (they use it without DISPATCHER_REDIS_URL)."""
        try:
            other = announce(self.devstack_file, self.redis_url, f"http://127.0.0.1:{self.api_port}")
        except OSError as exc:
            self.say(f"dev: cannot write {self.devstack_file} ({exc}); other processes will not find this stack")
            return
        self._announced = True
        if other is not None:
            self.say(f"dev: took over {self.devstack_file} from the dev stack of pid {other.pid}", error=True)

    def banner(self) -> str:
        by_name = {c.name: c for c in self.children}
        if self.redis is not None:
            assert self.redis.process is not None
            redis_line = f"{self.redis_url}  (embedded, pid {self.redis.process.pid}, data in {self.redis.directory})"
            export = f"  export DISPATCHER_REDIS_URL={self.redis_url}"
        else:
            redis_line = f"{redact_url(self.redis_url)}  (from DISPATCHER_REDIS_URL)"
            export = "  # DISPATCHER_REDIS_URL: already set in your environment"
        flower_url = f"http://127.0.0.1:{self.flower_port}"
        return "\n".join(
            [
                READY_LINE,
                f"  redis      {redis_line}",
                f"  worker     pid {by_name['worker'].pid}  (celery -A workers.app worker -E)",
                f"  scheduler  pid {by_name['scheduler'].pid}",
                f"  flower     pid {by_name['flower'].pid}  {flower_url}",
                f"  api        pid {by_name['api'].pid}  http://127.0.0.1:{self.api_port}/  (web page; API key below)",
                f"  api key    {self.api_key}",
                f"  announced  {self.devstack_file}  (used by this user's processes without DISPATCHER_REDIS_URL)"
                if self._announced
                else "  announced  nowhere: set DISPATCHER_REDIS_URL in other shells",
                "Send a first event from another shell (loopback targets are allowed in this stack):",
                export,
                "  export DISPATCHER_ALLOW_PRIVATE_TARGETS=true",
                "  dispatcher subscribe http://127.0.0.1:9000/hook -t '*'   # any server answering 2xx to POST",
                """  dispatcher enqueue user.created '{"id": 1}'""",
                "  dispatcher deliveries <the event id enqueue printed>",
                f"Watch deliveries in Flower at {flower_url} (API: {flower_url}/api/tasks). Ctrl-C stops everything.",
            ]
        )

    # -- running -----------------------------------------------------------------------------
    def run(self) -> int:
        """Start the stack, supervise it until a signal or a death, stop it; returns the exit code."""
        restore = self._install_signals()
        try:
            return self._run()
        finally:
            try:
                self.shutdown()
            finally:
                restore()

    def _run(self) -> int:
        self._lock_directory()
        if not port_free(self.flower_port):
            raise DevError(f"port {self.flower_port} is in use; choose another with --port-flower")
        if not port_free(self.api_port):
            raise DevError(f"port {self.api_port} is in use; choose another with --port-api")
        self._choose_redis()
        if self._stop.is_set():
            return 0
        self._start_children()

        deadline = time.monotonic() + self.startup_timeout_s
        while not self._ready():
            if self._stop.is_set():
                return 0
            dead = self._dead_child()
            if dead is not None:
                self._report_death(dead)
                return 1
            if time.monotonic() > deadline:
                self.say(f"dev: the stack was not ready after {self.startup_timeout_s:.0f}s; stopping", error=True)
                return 1
            self._stop.wait(POLL_S)

        self._announce()
        self.say(self.banner())
        while not self._stop.wait(POLL_S):
            dead = self._dead_child()
            if dead is not None:
                self._report_death(dead)
                return 1
        return 0

    def shutdown(self) -> None:
        """Withdraw the announcement, stop every child (SIGTERM, SIGKILL after ``stop_timeout_s``), then the
        embedded Redis."""
        if self._announced:
            with contextlib.suppress(OSError):
                remove_devstack(self.devstack_file, os.getpid())
            self._announced = False
        if self.children:
            self.say("dev: stopping " + ", ".join(f"{c.name} ({c.pid})" for c in self.children))
        for child in self.children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        while any(c.group_alive() for c in self.children):
            if self._force.is_set() or time.monotonic() > deadline:
                for child in self.children:
                    if child.group_alive():
                        self.say(f"dev: killing {child.name} ({child.pid})", error=True)
                        child.signal(signal.SIGKILL)
                break
            self._force.wait(0.05)
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
            child.pump.join(2)
        if self.redis is not None:
            self.redis.stop()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if self.children or self.redis is not None:
            self.say("dev: stopped")
        self.children = []
        self.redis = None
