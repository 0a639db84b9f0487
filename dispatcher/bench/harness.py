"""What every benchmark step shares: the sizes, the processes (receiver, workers), the receiver's counts,
and helpers to subscribe, enqueue and wait.

The processes are started with ``sys.executable -m ...`` on modules of the installed package
(``dispatcher.bench.receiver``, ``dispatcher.worker.app``, ``dispatcher.bench.handwritten``), so the
benchmark runs the same from a source checkout and from ``pip install``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from dispatcher import Dispatcher, Settings
from dispatcher.bench.progress import Progress
from dispatcher.errors import DispatcherError
from dispatcher.signing import generate_secret

SECRET = generate_secret()
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent  # holds dispatcher/


class BenchError(DispatcherError):
    """The benchmark cannot go on (a process died, something missing); one line for the user."""


@dataclass
class Sizes:
    fanout_events: int = 10_000
    fanout_endpoints: int = 10
    one_to_one: int = 100_000
    enqueue_single: int = 10_000
    enqueue_many: int = 100_000
    latency_rate: int = 1000
    latency_s: float = 30.0
    isolation_endpoints: int = 100
    isolation_events: int = 1000
    backlog: int = 1_000_000
    ceiling: int = 20_000
    handwritten: int = 3_000
    tenant_backlog: int = 100_000  # scenario 8: the noisy tenant's events, each to its hanging endpoints
    tenant_noisy_endpoints: int = 10
    tenant_rate: int = 200  # the quiet tenant's events per second...
    tenant_s: float = 10.0  # ...for this long

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            fanout_events=200, fanout_endpoints=5, one_to_one=1000, enqueue_single=500, enqueue_many=5000,
            latency_rate=200, latency_s=2.0, isolation_endpoints=20, isolation_events=50, backlog=20_000,
            ceiling=1000, handwritten=200, tenant_backlog=2000, tenant_noisy_endpoints=3, tenant_rate=100, tenant_s=2.0,
        )  # fmt: skip


def default_output(text: str) -> None:
    print(text, flush=True)


@dataclass
class Bench:
    """One benchmark run: its Redis, key prefix, processes and figures (``results``, one entry per step)."""

    redis_url: str
    workers: int
    sizes: Sizes
    progress: Progress = field(default_factory=Progress)
    output: Callable[[str], None] = default_output
    timeout_s: float = 2.0
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}:")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    live: list[subprocess.Popen[bytes]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    receiver: str = ""
    worker_proc: subprocess.Popen[bytes] | None = None

    def line(self, text: str) -> None:
        """One result line (stdout by default)."""
        self.output(text)

    # -- processes ------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DISPATCHER_REDIS_URL": self.redis_url,
            "DISPATCHER_KEY_PREFIX": self.prefix,
            "DISPATCHER_ALLOW_PRIVATE_TARGETS": "true",
            "DISPATCHER_TIMEOUT_S": str(self.timeout_s),
            "DISPATCHER_CONNECT_TIMEOUT_S": str(self.timeout_s),
            "DISPATCHER_LEASE_MARGIN_S": "10",
            **extra,
        }
        if (PACKAGE_ROOT / "pyproject.toml").exists():  # a source checkout: the children import this copy
            env["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
        return env

    def spawn(
        self, args: list[str], env: dict[str, str] | None = None, stdout: int = subprocess.DEVNULL
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m ...``-style ``args``; it is stopped with the run, and its death stops the waits."""
        proc = subprocess.Popen(args, env=env or self.env(), stdout=stdout, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        self.live.append(proc)
        return proc

    def celery_worker(self, app: str, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.spawn(
            [sys.executable, "-m", "celery", "-A", app, "worker", "-c", str(self.workers), "-l", "warning",
             "--without-mingle", "--without-gossip", "-n", f"{name}{uuid.uuid4().hex[:4]}@%h"],
            env,
        )  # fmt: skip

    def retire(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one process before the end of the run."""
        if proc in self.live:
            self.live.remove(proc)
        proc.terminate()

    def check_alive(self) -> None:
        for proc in self.live:
            code = proc.poll()
            if code is not None:
                what = " ".join(str(a) for a in proc.args[1:6]) if isinstance(proc.args, list) else str(proc.args)
                raise BenchError(f"a benchmark process exited (code {code}): {what} ...")

    def start_receiver(self) -> None:
        proc = self.spawn(
            [sys.executable, "-m", "dispatcher.bench.receiver", "--secret", SECRET], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        port = proc.stdout.readline().decode().strip()
        if not port.isdigit():
            self.check_alive()
            raise BenchError("the benchmark receiver did not start")
        self.receiver = f"http://127.0.0.1:{port}"
        self.wait(lambda: self._try_stats() is not None, 15, "the receiver")

    def start_workers(self) -> None:
        self.worker_proc = self.celery_worker("dispatcher.worker.app", "bench")
        d = self.dispatcher()
        try:
            self.wait(d.store.heartbeats.live, 60, "the workers")
        finally:
            d.close()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
        self.live.clear()
        client = redis.Redis.from_url(self.redis_url)
        batch = []
        for key in client.scan_iter(f"{self.prefix}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
        client.close()

    def wait(self, predicate: Callable[[], Any], timeout_s: float, what: str) -> None:
        deadline = time.time() + timeout_s
        while not predicate():
            self.check_alive()
            if time.time() > deadline:
                raise BenchError(f"timed out waiting for {what}")
            time.sleep(0.05)

    # -- receiver ------------------------------------------------------------------------------
    def _try_stats(self, arrivals: bool = False) -> dict[str, Any] | None:
        try:
            url = self.receiver + "/stats" + ("?arrivals=1" if arrivals else "")
            with urllib.request.urlopen(url, timeout=10) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except OSError:
            return None

    def stats(self, arrivals: bool = False) -> dict[str, Any]:
        data = self._try_stats(arrivals)
        if data is None:
            self.check_alive()
            raise BenchError("the benchmark receiver does not answer")
        return data

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.receiver + "/reset", method="POST"), timeout=10).read()

    def wait_received(self, label: str, expected: int, timeout_s: float) -> tuple[float, dict[str, Any]]:
        """Wait until the receiver holds ``expected`` unique deliveries; returns (end time, stats)."""
        t0 = time.time()
        with self.progress.task(label, expected) as task:
            while True:
                st = self.stats()
                task.update(st["unique"])
                if st["unique"] >= expected:
                    end = st["last"]
                    break
                self.check_alive()
                if time.time() - t0 > timeout_s:
                    end = time.time()
                    break
                time.sleep(0.1)
        time.sleep(0.3)  # let stray duplicates (if any) land before counting
        return end, self.stats()

    # -- helpers -------------------------------------------------------------------------------
    def dispatcher(self, prefix: str | None = None) -> Dispatcher:
        return Dispatcher(
            Settings(
                redis_url=self.redis_url,
                key_prefix=prefix or self.prefix,
                allow_private_targets=True,
                timeout_s=self.timeout_s,
            )
        )

    def subscribe(self, d: Dispatcher, n: int, hang: int = 0, tag: str = "ep") -> list[str]:
        ids = []
        for i in range(n):
            path = f"/hang/{tag}{i}" if i < hang else f"/{tag}{i}"
            ids.append(d.subscribe(self.receiver + path, ["*"], secret=SECRET).id)
        return ids

    def unsubscribe_all(self, d: Dispatcher) -> None:
        for ep in d.list_endpoints():
            d.unsubscribe(ep.id)
        self.wait(lambda: d.store.queue.pending() == 0, 120, "queues to drain")

    def recorded(self, d: Dispatcher, endpoint_ids: list[str]) -> int:
        raw = d.redis.hgetall(d.keys.stats_outcomes)
        wanted = {f"{e}:delivered".encode() for e in endpoint_ids}
        return sum(int(v) for k, v in raw.items() if k in wanted)

    def enqueue_chunks(self, d: Dispatcher, n: int, etype: str = "bench.event") -> None:
        for start in range(0, n, 1000):
            d.enqueue_many([(etype, {"i": i, "pad": "x" * 64}) for i in range(start, min(n, start + 1000))])


def worker_rss_mb(pid: int) -> dict[str, float]:
    """RSS in MB of a Celery worker's main process and each pool child (Linux; 0 elsewhere)."""
    out = {"main": rss_mb(pid)}
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for i, child in enumerate(children.read_text().split()):
            out[f"child{i + 1}"] = rss_mb(int(child))
    return out


def rss_mb(pid: int) -> float:
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return round(int(row.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def fmt_rss(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in values.items())


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its direct children so far (Linux; 0 elsewhere)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")
