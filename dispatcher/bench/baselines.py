"""The two baselines, measured in the same run on the same receiver as the scenarios:

(a) the ceiling: a plain aiohttp client posting signed bodies, 64 in flight, no Redis, no Celery;
(b) the hand-written way: one Celery task per delivery doing a blocking ``requests.post``
    (``dispatcher.bench.handwritten``; ``requests`` comes with the ``bench`` extra).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp

from dispatcher.bench.chart import Part
from dispatcher.bench.harness import SECRET, Bench, BenchError
from dispatcher.bench.registry import step
from dispatcher.signing import secret_key, webhook_headers
from dispatcher.worker.runtime import new_event_loop

IN_FLIGHT = 64


@step("ceiling", baseline=True, needs_workers=False,
      chart=lambda r: Part(references=[("a", "(a) ceiling: aiohttp client, no Redis/Celery", r["per_s"])]))  # fmt: skip
def ceiling(bench: Bench) -> dict[str, Any]:
    n = bench.sizes.ceiling
    bench.reset()
    key = secret_key(SECRET)
    bodies = [json.dumps({"id": f"msg_c{i}", "type": "bench", "data": {"i": i}}).encode() for i in range(n)]

    async def run() -> float:
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:
            sem = asyncio.Semaphore(IN_FLIGHT)
            done = 0

            async def one(i: int) -> None:
                nonlocal done
                async with sem:
                    headers = webhook_headers([key], f"msg_c{i}", int(time.time()), bodies[i])
                    async with session.post(f"{bench.receiver}/ceil{i % 10}", data=bodies[i], headers=headers) as r:
                        await r.read()
                done += 1
                if done % 100 == 0:
                    task.update(done)

            with bench.progress.task("(a) ceiling", n) as task:
                t0 = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                elapsed = time.perf_counter() - t0
                task.update(n)
            return elapsed

    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the same loop the workers use
        elapsed = runner.run(run())
    st = bench.stats()
    if st["unique"] != n or st["bad_signatures"]:
        raise BenchError(f"the ceiling run did not arrive whole: {st['unique']} of {n}, {st['bad_signatures']} bad")
    rate = n / elapsed
    bench.line(
        f"(a) ceiling: aiohttp client, {IN_FLIGHT} in flight, no Redis/Celery: "
        f"{n} POSTs in {elapsed:.2f}s = {rate:,.0f}/s"
    )
    return {"deliveries": n, "seconds": round(elapsed, 3), "per_s": round(rate)}


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
