"""The benchmark: ``python -m benchmarks.bench [--quick] [--json FILE] [--only NAMES]``.

Starts (or uses) Redis, a signature-checking receiver in its own process, real ``workers.app``
worker processes, and two baselines measured in the same run on the same receiver:
(a) the ceiling — a plain aiohttp client posting signed bodies, 64 in flight, no Redis, no Celery;
(b) the hand-written way — one Celery task per delivery doing ``requests.post``.
Prints one summary line per scenario; figures are ratios against those baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

from dispatcher import Dispatcher, Settings
from dispatcher.cli.embedded import EmbeddedRedis, free_port, reachable
from dispatcher.signing import generate_secret, secret_key, webhook_headers
from dispatcher.worker.runtime import new_event_loop

ROOT = Path(__file__).resolve().parent.parent
SECRET = generate_secret()


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

    @classmethod
    def quick(cls) -> Sizes:
        return cls(200, 5, 1000, 500, 5000, 200, 2.0, 20, 50, 20_000, 1000, 200)


@dataclass
class Bench:
    redis_url: str
    workers: int
    sizes: Sizes
    timeout_s: float = 2.0
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}:")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    receiver: str = ""
    worker_proc: subprocess.Popen[bytes] | None = None

    # -- processes ------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "DISPATCHER_REDIS_URL": self.redis_url,
            "DISPATCHER_KEY_PREFIX": self.prefix,
            "DISPATCHER_ALLOW_PRIVATE_TARGETS": "true",
            "DISPATCHER_TIMEOUT_S": str(self.timeout_s),
            "DISPATCHER_CONNECT_TIMEOUT_S": str(self.timeout_s),
            "DISPATCHER_LEASE_MARGIN_S": "10",
            **extra,
        }

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env or self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.append(proc)
        return proc

    def start_receiver(self) -> None:
        port = free_port()
        self.spawn([sys.executable, "-m", "benchmarks.receiver", "--port", str(port), "--secret", SECRET])
        self.receiver = f"http://127.0.0.1:{port}"
        wait(lambda: self._try_stats() is not None, 15, "receiver")

    def start_workers(self) -> None:
        self.worker_proc = self.spawn(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-c", str(self.workers),
             "-l", "warning", "--without-mingle", "--without-gossip", "-n", f"bench{uuid.uuid4().hex[:4]}@%h"]
        )  # fmt: skip
        d = self.dispatcher()
        wait(d.store.heartbeats.live, 60, "workers")
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
        client = redis.Redis.from_url(self.redis_url)
        for pattern in (f"{self.prefix}*",):
            batch = []
            for key in client.scan_iter(pattern, count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        client.close()

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
        assert data is not None, "receiver is gone"
        return data

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.receiver + "/reset", method="POST"), timeout=10).read()

    def wait_received(self, label: str, expected: int, timeout_s: float) -> tuple[float, dict[str, Any]]:
        """Wait until the receiver holds ``expected`` unique deliveries; returns (end time, stats)."""
        t0 = time.time()
        while True:
            st = self.stats()
            progress(label, st["unique"], expected, t0)
            if st["unique"] >= expected:
                end = st["last"]
                break
            if time.time() - t0 > timeout_s:
                end = time.time()
                break
            time.sleep(0.1)
        sys.stderr.write("\n")
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
        wait(lambda: d.redis.zcard(d.keys.due) == 0 and d.redis.zcard(d.keys.fanout) == 0, 120, "queues to drain")

    def recorded(self, d: Dispatcher, endpoint_ids: list[str]) -> int:
        raw = d.redis.hgetall(d.keys.stats_outcomes)
        wanted = {f"{e}:delivered".encode() for e in endpoint_ids}
        return sum(int(v) for k, v in raw.items() if k in wanted)

    def enqueue_chunks(self, d: Dispatcher, n: int, etype: str = "bench.event") -> None:
        for start in range(0, n, 1000):
            d.enqueue_many([(etype, {"i": i, "pad": "x" * 64}) for i in range(start, min(n, start + 1000))])

    # -- baselines -----------------------------------------------------------------------------
    def ceiling(self) -> float:
        n = self.sizes.ceiling
        self.reset()
        key = secret_key(SECRET)
        bodies = [json.dumps({"id": f"msg_c{i}", "type": "bench", "data": {"i": i}}).encode() for i in range(n)]

        async def run() -> float:
            connector = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(connector=connector) as session:
                sem = asyncio.Semaphore(64)

                async def one(i: int) -> None:
                    async with sem:
                        msg = f"msg_c{i}"
                        headers = webhook_headers([key], msg, int(time.time()), bodies[i])
                        async with session.post(f"{self.receiver}/ceil{i % 10}", data=bodies[i], headers=headers) as r:
                            await r.read()

                t0 = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                return time.perf_counter() - t0

        with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the same loop the workers use
            elapsed = runner.run(run())
        st = self.stats()
        assert st["unique"] == n and st["bad_signatures"] == 0, st
        rate = n / elapsed
        self.results["ceiling"] = {"deliveries": n, "seconds": round(elapsed, 3), "per_s": round(rate)}
        line(f"(a) ceiling: aiohttp client, 64 in flight, no Redis/Celery: {n} POSTs in {elapsed:.2f}s = {rate:,.0f}/s")
        return rate

    def handwritten(self) -> float:
        from celery import Celery

        n = self.sizes.handwritten
        queue = f"handwritten{uuid.uuid4().hex[:6]}"
        env = {**self.env(), "BENCH_BROKER_URL": self.redis_url, "BENCH_QUEUE": queue, "BENCH_PREFIX": self.prefix}
        proc = self.spawn(
            [sys.executable, "-m", "celery", "-A", "benchmarks.handwritten", "worker", "-c", str(self.workers),
             "-l", "warning", "--without-mingle", "--without-gossip", "-n", f"hw{uuid.uuid4().hex[:4]}@%h"],
            env,
        )  # fmt: skip
        app = Celery("hw-producer", broker=self.redis_url)
        app.conf.task_default_queue = queue
        app.conf.broker_transport_options = {"global_keyprefix": self.prefix}
        key = secret_key(SECRET)
        self.reset()
        time.sleep(2.0)  # worker boot (not timed)
        t0 = time.time()
        for i in range(n):
            body = json.dumps({"id": f"msg_h{i}", "type": "bench", "data": {"i": i}})
            headers = webhook_headers([key], f"msg_h{i}", int(time.time()), body.encode())
            app.send_task("handwritten.post", args=[f"{self.receiver}/hw{i % 10}", body, headers])
        end, st = self.wait_received("(b) hand-written", n, 600)
        proc.terminate()
        elapsed = end - t0
        rate = st["unique"] / elapsed
        self.results["handwritten"] = {"deliveries": st["unique"], "seconds": round(elapsed, 3), "per_s": round(rate)}
        line(
            "(b) hand-written: one Celery task per delivery, requests.post: "
            f"{st['unique']} in {elapsed:.2f}s = {rate:,.0f}/s"
        )
        return rate

    # -- scenarios -----------------------------------------------------------------------------
    def throughput(self, name: str, events: int, endpoints: int) -> dict[str, Any]:
        d = self.dispatcher()
        eps = self.subscribe(d, endpoints, tag=name)
        self.reset()
        expected = events * endpoints
        t0 = time.time()
        self.enqueue_chunks(d, events)
        end, st = self.wait_received(name, expected, 600)
        wait(lambda: self.recorded(d, eps) >= expected, 60, "records")
        elapsed = end - t0
        res = {
            "deliveries": expected,
            "seconds": round(elapsed, 3),
            "per_s": round(st["unique"] / elapsed),
            "missing": expected - st["unique"],
            "duplicates": st["duplicates"],
            "bad_signatures": st["bad_signatures"],
            "recorded": self.recorded(d, eps),
        }
        self.unsubscribe_all(d)
        d.close()
        return res

    def scenario_fanout(self) -> None:
        s = self.sizes
        res = self.throughput("fanout", s.fanout_events, s.fanout_endpoints)
        self.results["fanout"] = res
        line(f"1 fan-out {s.fanout_events:,} events x {s.fanout_endpoints} endpoints: " + self.describe(res))

    def scenario_one_to_one(self) -> None:
        s = self.sizes
        res = self.throughput("one_to_one", s.one_to_one, 1)
        self.results["one_to_one"] = res
        line(f"2 one-to-one {s.one_to_one:,} events x 1 endpoint: " + self.describe(res))

    def describe(self, res: dict[str, Any]) -> str:
        parts = [f"{res['deliveries']:,} in {res['seconds']:.2f}s = {res['per_s']:,}/s"]
        if "ceiling" in self.results:
            res["vs_ceiling"] = round(res["per_s"] / self.results["ceiling"]["per_s"], 2)
            parts.append(f"{res['vs_ceiling']}x (a)")
        if "handwritten" in self.results:
            res["vs_handwritten"] = round(res["per_s"] / self.results["handwritten"]["per_s"], 1)
            parts.append(f"{res['vs_handwritten']}x (b)")
        parts.append(f"missing {res['missing']}, duplicates {res['duplicates']}, recorded {res['recorded']:,}")
        return "; ".join(parts)

    def scenario_enqueue(self) -> None:
        s = self.sizes
        d = self.dispatcher(prefix=self.prefix + "enq:")  # no worker listens to this prefix
        d.enqueue("warm.up", {})
        t0 = time.perf_counter()
        for i in range(s.enqueue_single):
            d.enqueue("bench.event", {"i": i, "pad": "x" * 64})
            if i % 500 == 0:
                progress("enqueue()", i, s.enqueue_single, t0, clock=time.perf_counter)
        single = s.enqueue_single / (time.perf_counter() - t0)
        sys.stderr.write("\n")
        t0 = time.perf_counter()
        self.enqueue_chunks(d, s.enqueue_many)
        many = s.enqueue_many / (time.perf_counter() - t0)
        stored = d.redis.zcard(d.keys.fanout)
        d.close()
        self.results["enqueue"] = {
            "single_per_s": round(single),
            "many_per_s": round(many),
            "stored": stored,
            "expected": s.enqueue_single + s.enqueue_many + 1,
        }
        line(
            f"3 enqueue(): {single:,.0f} calls/s one by one; "
            f"enqueue_many() chunks of 1000: {many:,.0f} events/s; stored {stored:,}"
        )

    def scenario_latency(self) -> None:
        s = self.sizes
        d = self.dispatcher()
        self.subscribe(d, 1, tag="lat")
        self.reset()
        n = int(s.latency_rate * s.latency_s)
        sent: dict[str, float] = {}
        t0 = time.perf_counter()
        wall0 = time.time()
        for i in range(n):
            target = t0 + i / s.latency_rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[d.enqueue("bench.latency", {"i": i})] = time.time()
            if i % 200 == 0:
                progress("latency", i, n, wall0)
        sys.stderr.write("\n")
        self.wait_received("latency drain", n, 120)
        arrivals = self.stats(arrivals=True)["arrivals"]
        lat = sorted((arrivals[i] - t) * 1000 for i, t in sent.items() if i in arrivals)
        self.unsubscribe_all(d)
        d.close()

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(len(lat) * p))], 1) if lat else float("nan")

        res = {"events": n, "rate": s.latency_rate, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
               "max_ms": round(lat[-1], 1) if lat else None, "missing": n - len(lat)}  # fmt: skip
        self.results["latency"] = res
        line(f"4 latency at {s.latency_rate}/s for {s.latency_s:.0f}s: p50 {res['p50_ms']} ms, p95 {res['p95_ms']} ms, "
             f"p99 {res['p99_ms']} ms, max {res['max_ms']} ms; missing {res['missing']}")  # fmt: skip

    def isolation_run(self, hang: int) -> dict[str, Any]:
        """All endpoints get every event; ``hang`` of them never answer within the timeout."""
        s = self.sizes
        d = self.dispatcher()
        eps = self.subscribe(d, s.isolation_endpoints, hang=hang, tag=f"iso{hang}_")
        self.reset()
        healthy = s.isolation_events * (s.isolation_endpoints - hang)
        t0 = time.time()
        self.enqueue_chunks(d, s.isolation_events)
        end, st = self.wait_received(f"isolation {hang} hanging", healthy, 600)
        elapsed = end - t0
        for ep in eps[:hang]:
            d.unsubscribe(ep)
        self.unsubscribe_all(d)
        d.close()
        return {"hanging": hang, "healthy_deliveries": healthy, "seconds": round(elapsed, 3),
                "healthy_per_s": round(st["unique"] / elapsed), "missing": healthy - st["unique"],
                "duplicates": st["duplicates"]}  # fmt: skip

    def scenario_isolation(self) -> None:
        """Healthy endpoints' throughput with 10 % and 50 % of the endpoints hanging, against none hanging
        measured before and after them in the same run (the mean of the two, so drift cancels out)."""
        s = self.sizes
        shares = (0.0, 0.1, 0.5, 0.0)
        runs = [self.isolation_run(round(s.isolation_endpoints * share)) for share in shares]
        base = (runs[0]["healthy_per_s"] + runs[-1]["healthy_per_s"]) / 2 or 1
        for r in runs[1:-1]:
            r["vs_none_hanging"] = round(r["healthy_per_s"] / base, 2)
            # the same figure per healthy endpoint: what each of them gets against what each got with none hanging
            share = (s.isolation_endpoints - r["hanging"]) / s.isolation_endpoints
            r["per_endpoint_vs_none_hanging"] = round(r["vs_none_hanging"] / share, 2)
        self.results["isolation"] = {"endpoints": s.isolation_endpoints, "timeout_s": self.timeout_s,
                                     "none_hanging_per_s": round(base), "runs": runs}  # fmt: skip
        parts = [f"{r['hanging']} hanging: healthy {r['healthy_per_s']:,}/s"
                 + (f" = {r['vs_none_hanging']:.0%} of none hanging ({r['per_endpoint_vs_none_hanging']:.0%}"
                    " per healthy endpoint)" if "vs_none_hanging" in r else "")
                 + f", missing {r['missing']}, duplicates {r['duplicates']}" for r in runs]  # fmt: skip
        line(f"5 isolation {s.isolation_endpoints} endpoints, hanging past the {self.timeout_s:.0f}s timeout "
             f"(none hanging before and after: {base:,.0f}/s): " + "; ".join(parts))  # fmt: skip

    def scenario_backlog(self) -> None:
        s = self.sizes
        assert self.worker_proc is not None
        d = self.dispatcher()
        before = worker_rss_mb(self.worker_proc.pid)
        far = int(time.time() * 1000) + 10 * 3600 * 1000
        t0 = time.time()
        for start in range(0, s.backlog, 10_000):
            d.redis.zadd(d.keys.due, {f"dlv_backlog{i}": far for i in range(start, min(s.backlog, start + 10_000))})
            progress("backlog", start, s.backlog, t0)
        sys.stderr.write("\n")
        # the workers keep working with the backlog present
        res_work = self.throughput_with_backlog(d)
        after = worker_rss_mb(self.worker_proc.pid)
        d.redis.delete(d.keys.due)
        d.close()
        res = {"pending_retries": s.backlog, "rss_mb_before": before, "rss_mb_after": after,
               "deliveries_during": res_work}  # fmt: skip
        self.results["backlog"] = res
        line(f"6 backlog {s.backlog:,} pending retries: worker RSS per process before {fmt_rss(before)} MB, "
             f"after {fmt_rss(after)} MB; {res_work} deliveries made meanwhile")  # fmt: skip

    def throughput_with_backlog(self, d: Dispatcher) -> int:
        eps = self.subscribe(d, 1, tag="bk")
        self.reset()
        n = min(5000, self.sizes.one_to_one)
        self.enqueue_chunks(d, n)
        _, st = self.wait_received("backlog deliveries", n, 120)
        for ep in eps:
            d.unsubscribe(ep)
        return int(st["unique"])


def worker_rss_mb(pid: int) -> dict[str, float]:
    """RSS in MB of a Celery worker's main process and each pool child."""
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


def wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def progress(label: str, done: int, total: int, t0: float, clock: Callable[[], float] = time.time) -> None:
    width = 30
    frac = min(1.0, done / total) if total else 1.0
    bar = "#" * int(frac * width)
    sys.stderr.write(f"\r  {label:<20} [{bar:<{width}}] {done:>9,}/{total:,} {clock() - t0:6.1f}s")
    sys.stderr.flush()


def line(text: str) -> None:
    print(text, flush=True)


SCENARIOS = ("ceiling", "handwritten", "fanout", "one_to_one", "enqueue", "latency", "isolation", "backlog")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: runs in well under a minute")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="worker processes")
    parser.add_argument("--redis-url", help="use this Redis (default: an embedded one)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)

    embedded = None
    if args.redis_url and reachable(args.redis_url):
        url = args.redis_url
    else:
        embedded = EmbeddedRedis().start()
        url = embedded.url
    bench = Bench(url, args.workers, Sizes.quick() if args.quick else Sizes())
    client = redis.Redis.from_url(url)
    loop = type(new_event_loop()).__module__.split(".")[0]
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "event_loop": loop,
               "redis": client.info("server")["redis_version"], "redis_embedded": embedded is not None,
               "workers": args.workers}  # fmt: skip
    client.close()
    bench.results["machine"] = machine
    line(f"machine: {machine['cores']} cores, Python {machine['python']}, Redis {machine['redis']}"
         f"{' (embedded)' if embedded else ''}, {args.workers} worker processes, {loop} event loop")  # fmt: skip
    try:
        bench.start_receiver()
        if "ceiling" in only:
            bench.ceiling()
        if "handwritten" in only:
            bench.handwritten()
        if only & {"fanout", "one_to_one", "latency", "isolation", "backlog"}:
            bench.start_workers()
        for name in ("fanout", "one_to_one", "enqueue", "latency", "isolation", "backlog"):
            if name in only:
                getattr(bench, f"scenario_{name}")()
    finally:
        bench.stop()
        if embedded is not None:
            embedded.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(bench.results, indent=2))
    return bench.results


if __name__ == "__main__":
    main()
