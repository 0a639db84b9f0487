"""Scenario 7: the cost of watching deliveries in Flower, in the same run (two alternating rounds, best of each).

The fan-out scenario's shape (events × endpoints) three ways, each on freshly started workers:
**without** (``DISPATCHER_FLOWER_EVERY=0``: the loop sends no task events, no Flower runs); **with**
Flower attached and the defaults (a task per attempt up to ``DISPATCHER_FLOWER_MAX_TASKS_PER_S`` per
worker process, then one per endpoint per second); **uncapped**, Flower attached and a task for every
attempt whatever the rate (``DISPATCHER_FLOWER_MAX_TASKS_PER_S=0``). Each is reported as a ratio to
*without*, with the workers' CPU and Redis commands per delivery, Flower's resident memory and what its
counters saw.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request

import redis

from dispatcher.bench.chart import Part
from dispatcher.bench.harness import Bench, cpu_s, rss_mb
from dispatcher.bench.registry import Figures, step
from dispatcher.bench.scenarios import throughput

FLOWER_MAX_TASKS = 10_000


def restart_workers(bench: Bench, **env: str) -> None:
    """Replace the workers with new ones started with ``env``; back when a new one beats."""
    d = bench.dispatcher()
    try:
        if bench.worker_proc is not None:
            old = bench.worker_proc
            bench.retire(old)
            with contextlib.suppress(subprocess.TimeoutExpired):
                old.wait(30)
        before = {w["name"] for w in d.store.heartbeats.live()}
        bench.worker_proc = bench.celery_worker("dispatcher.worker.app", "bench", bench.env(**env))
        bench.wait(lambda: {w["name"] for w in d.store.heartbeats.live()} - before, 60, "the new workers")
        time.sleep(1.0)  # the pool's children have started
    finally:
        d.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_flower(bench: Bench) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = bench.env(FLOWER_UNAUTHENTICATED_API="true")
    proc = bench.spawn(
        [sys.executable, "-m", "celery", "-A", "dispatcher.worker.app", "flower", "--address=127.0.0.1",
         f"--port={port}", f"--max_tasks={FLOWER_MAX_TASKS}"],
        env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthcheck", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    bench.wait(ready, 60, "Flower")
    return proc, url


def flower_succeeded(url: str) -> int:
    """Deliveries Flower counted as succeeded (its /metrics; aggregated tasks count once each)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        int(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "flower_events_total" and s.labels.get("type") == "task-succeeded"
    )


def variant(bench: Bench, label: str, env: dict[str, str], attached: bool, events: int, endpoints: int) -> Figures:
    restart_workers(bench, **env)
    flower, url = start_flower(bench) if attached else (None, "")
    client = redis.Redis.from_url(bench.redis_url)
    try:
        assert bench.worker_proc is not None
        cpu0, cmds0 = cpu_s(bench.worker_proc.pid), int(client.info("stats")["total_commands_processed"])
        res = throughput(bench, f"flower-{label}", events, endpoints)
        cpu1, cmds1 = cpu_s(bench.worker_proc.pid), int(client.info("stats")["total_commands_processed"])
        res["worker_cpu_us_per_delivery"] = round((cpu1 - cpu0) / res["deliveries"] * 1e6, 1)
        res["redis_commands_per_delivery"] = round((cmds1 - cmds0) / res["deliveries"], 2)
        if flower is not None:
            time.sleep(1.0)  # Flower has read the last events
            res["flower_tasks_succeeded"] = flower_succeeded(url)
            res["flower_rss_mb"] = round(rss_mb(flower.pid))
    finally:
        client.close()
        if flower is not None:
            bench.retire(flower)
            with contextlib.suppress(subprocess.TimeoutExpired):
                flower.wait(15)
    return res


def _chart(r: Figures) -> Part:
    return Part(
        throughput=[
            (f"7 without Flower: {r['without']['deliveries']:,} deliveries", r["without"]["per_s"]),
            ("7 Flower attached (defaults)", r["with"]["per_s"]),
            ("7 Flower attached, a task for every attempt", r["uncapped"]["per_s"]),
        ]
    )


VARIANTS: tuple[tuple[str, dict[str, str], bool], ...] = (
    ("without", {"DISPATCHER_FLOWER_EVERY": "0"}, False),
    ("with", {}, True),
    ("uncapped", {"DISPATCHER_FLOWER_MAX_TASKS_PER_S": "0"}, True),
)
ROUNDS = 2  # the variants alternate, so a drift of the machine hits them all; each reports its best round


@step("flower", chart=_chart)
def flower(bench: Bench) -> Figures:
    s = bench.sizes
    events, endpoints = max(1, s.fanout_events // 2), s.fanout_endpoints
    runs: dict[str, list[Figures]] = {label: [] for label, _, _ in VARIANTS}
    for _ in range(ROUNDS):
        for label, env, attached in VARIANTS:
            runs[label].append(variant(bench, label, env, attached, events, endpoints))
    out: Figures = {}
    for label, results in runs.items():
        best = max(results, key=lambda r: r["per_s"])  # the round least disturbed by the machine
        out[label] = {**best, "rounds_per_s": [r["per_s"] for r in results],
                      "missing": sum(r["missing"] for r in results),
                      "duplicates": sum(r["duplicates"] for r in results)}  # fmt: skip
    base = out["without"]["per_s"] or 1
    for label in ("with", "uncapped"):
        out[label]["vs_without"] = round(out[label]["per_s"] / base, 2)
    restart_workers(bench)  # the next steps run on default workers
    w, u = out["with"], out["uncapped"]
    bench.line(
        f"7 Flower {events:,} events x {endpoints} endpoints: without {base:,}/s; attached (defaults) "
        f"{w['per_s']:,}/s = {w['vs_without']}x; attached, a task for every attempt {u['per_s']:,}/s = "
        f"{u['vs_without']}x (Flower counted {u['flower_tasks_succeeded']:,} succeeded, its RSS "
        f"{u['flower_rss_mb']} MB); missing {sum(v['missing'] for v in out.values())}; worker CPU per delivery "
        + ", ".join(f"{k} {v['worker_cpu_us_per_delivery']} us" for k, v in out.items())
        + "; Redis commands per delivery "
        + ", ".join(f"{k} {v['redis_commands_per_delivery']}" for k, v in out.items())
    )
    return out
