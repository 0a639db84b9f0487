"""The two baselines, measured in the same run on the same receiver as the scenarios:

(a) the ceiling: each candidate HTTP client (aiohttp, and reqwest through pyreqwest) posting signed bodies,
    64 in flight, no Redis, no Celery, one after the other; the fastest is the ceiling, the others ratios to it;
(b) the hand-written way: one Celery task per delivery doing a blocking ``requests.post``
    (``dispatcher.bench.handwritten``; ``requests`` comes with the ``bench`` extra).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from dispatcher.bench.chart import Part
from dispatcher.bench.harness import SECRET, Bench, BenchError
from dispatcher.bench.registry import Figures, step
from dispatcher.signing import secret_key, webhook_headers
from dispatcher.worker.runtime import new_event_loop

IN_FLIGHT = 64


def _ceiling_chart(r: Figures) -> Part:
    fastest = r.get("fastest", "aiohttp")  # figures of runs before the ceiling compared clients: aiohttp's
    return Part(references=[("a", f"(a) ceiling: {fastest} client, no Redis/Celery", r["per_s"])])


async def _aiohttp_posts(url: str, requests: list[tuple[dict[str, str], bytes]], progress: Callable[[], None]) -> None:
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int, headers: dict[str, str], body: bytes) -> None:
            async with sem, session.post(f"{url}/ceil{i % 10}", data=body, headers=headers) as r:
                await r.read()
            progress()

        await asyncio.gather(*(one(i, h, b) for i, (h, b) in enumerate(requests)))


async def _reqwest_posts(url: str, requests: list[tuple[dict[str, str], bytes]], progress: Callable[[], None]) -> None:
    from pyreqwest.client import ClientBuilder

    async with ClientBuilder().max_connections(IN_FLIGHT).build() as client:
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int, headers: dict[str, str], body: bytes) -> None:
            async with sem:
                r = await client.post(f"{url}/ceil{i % 10}").headers(headers).body_bytes(body).build().send()
                await r.bytes()
            progress()

        await asyncio.gather(*(one(i, h, b) for i, (h, b) in enumerate(requests)))


# each candidate HTTP client of the delivery engine, as plainly as it is used: (name, module, run)
CLIENTS: tuple[tuple[str, str, Callable[..., Coroutine[Any, Any, None]]], ...] = (
    ("aiohttp", "aiohttp", _aiohttp_posts),
    ("reqwest", "pyreqwest", _reqwest_posts),
)


@step("ceiling", baseline=True, needs_workers=False, chart=_ceiling_chart)
def ceiling(bench: Bench) -> dict[str, Any]:
    """(a) for each candidate client in turn: ``n`` signed POSTs, 64 in flight; the ceiling is the fastest."""
    n = bench.sizes.ceiling
    key = secret_key(SECRET)
    clients: dict[str, dict[str, Any]] = {}
    for name, module, posts in CLIENTS:
        if importlib.util.find_spec(module) is None:
            continue
        bench.reset()
        tag = f"msg_{name}"
        bodies = [json.dumps({"id": f"{tag}{i}", "type": "bench", "data": {"i": i}}).encode() for i in range(n)]
        requests = [(webhook_headers([key], f"{tag}{i}", int(time.time()), b), b) for i, b in enumerate(bodies)]
        with bench.progress.task(f"(a) ceiling: {name}", n) as task:
            done = 0

            def progress() -> None:
                nonlocal done
                done += 1
                if done % 100 == 0:
                    task.update(done)

            with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the same loop the workers use
                t0, cpu0 = time.perf_counter(), time.process_time()  # CPU of every thread (reqwest's too)
                runner.run(posts(bench.receiver, requests, progress))
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            task.update(n)
        st = bench.stats()
        if st["unique"] != n or st["bad_signatures"]:
            raise BenchError(
                f"the {name} ceiling run did not arrive whole: {st['unique']} of {n}, {st['bad_signatures']} bad"
            )
        clients[name] = {
            "seconds": round(elapsed, 3),
            "per_s": round(n / elapsed),
            "cpu_us_per_post": round(cpu / n * 1e6),
        }
    fastest = max(clients, key=lambda c: clients[c]["per_s"])
    best = clients[fastest]["per_s"]
    for figures in clients.values():
        figures["vs_fastest"] = round(figures["per_s"] / best, 2)
    shown = ", ".join(
        f"{name} {c['per_s']:,}/s {c['cpu_us_per_post']} us CPU/POST"
        + (" (fastest)" if name == fastest else f" ({c['vs_fastest']}x)")
        for name, c in sorted(clients.items(), key=lambda item: -item[1]["per_s"])
    )
    bench.line(f"(a) ceiling, {IN_FLIGHT} in flight, no Redis/Celery, {n} POSTs per client: {shown}")
    return {"deliveries": n, "seconds": clients[fastest]["seconds"], "per_s": best, "fastest": fastest,
            "clients": clients}  # fmt: skip


@step("handwritten", baseline=True, needs_workers=False, requires=("requests",),
      chart=lambda r: Part(references=[("b", "(b) hand-written: a Celery task per POST", r["per_s"])]))  # fmt: skip
def handwritten(bench: Bench) -> dict[str, Any]:
    from celery import Celery

    n = bench.sizes.handwritten
    queue = f"handwritten{uuid.uuid4().hex[:6]}"
    env = bench.env(BENCH_BROKER_URL=bench.redis_url, BENCH_QUEUE=queue, BENCH_PREFIX=bench.prefix)
    proc = bench.celery_worker("dispatcher.bench.handwritten", "hw", env)
    app = Celery("hw-producer", broker=bench.redis_url)
    app.conf.task_default_queue = queue
    app.conf.broker_transport_options = {"global_keyprefix": bench.prefix}
    key = secret_key(SECRET)
    bench.reset()
    time.sleep(2.0)  # worker boot (not timed)
    bench.check_alive()
    t0 = time.time()
    for i in range(n):
        body = json.dumps({"id": f"msg_h{i}", "type": "bench", "data": {"i": i}})
        headers = webhook_headers([key], f"msg_h{i}", int(time.time()), body.encode())
        app.send_task("handwritten.post", args=[f"{bench.receiver}/hw{i % 10}", body, headers])
    end, st = bench.wait_received("(b) hand-written", n, 600)
    bench.retire(proc)
    elapsed = end - t0
    rate = st["unique"] / elapsed
    bench.line(
        "(b) hand-written: one Celery task per delivery, requests.post: "
        f"{st['unique']} in {elapsed:.2f}s = {rate:,.0f}/s"
    )
    return {"deliveries": st["unique"], "seconds": round(elapsed, 3), "per_s": round(rate)}
