"""The scenarios, numbered as in the README: each is measured end to end (enqueue → the receiver has it,
signature checked) with the dispatcher's real worker processes, and set against the baselines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dispatcher import Dispatcher
from dispatcher.bench.chart import Part
from dispatcher.bench.harness import Bench, cpu_s, fmt_rss, worker_rss_mb
from dispatcher.bench.progress import Task
from dispatcher.bench.redis_cost import RedisUsage, describe_cost
from dispatcher.bench.registry import Figures, step


def throughput(bench: Bench, name: str, events: int, endpoints: int) -> dict[str, Any]:
    """``events`` events to ``endpoints`` endpoints each; deliveries/s until the receiver has them all."""
    d = bench.dispatcher()
    eps = bench.subscribe(d, endpoints, tag=name)
    bench.reset()
    expected = events * endpoints
    usage = RedisUsage.read(d.redis)
    cpu0 = cpu_s(bench.worker_proc.pid) if bench.worker_proc is not None else 0.0
    t0 = time.time()
    bench.enqueue_chunks(d, events)
    end, st = bench.wait_received(name, expected, 600)
    bench.wait(lambda: bench.recorded(d, eps) >= expected, 60, "records")
    cost = RedisUsage.read(d.redis).per_delivery(usage, expected)  # enqueue to the recorded outcome
    cpu1 = cpu_s(bench.worker_proc.pid) if bench.worker_proc is not None else 0.0
    elapsed = end - t0
    res = {
        "deliveries": expected,
        "seconds": round(elapsed, 3),
        "per_s": round(st["unique"] / elapsed),
        "missing": expected - st["unique"],
        "duplicates": st["duplicates"],
        "bad_signatures": st["bad_signatures"],
        "recorded": bench.recorded(d, eps),
        **cost,
        # the workers' CPU (every process) per delivery: what the HTTP engine changes, less noisy than the rate
        "worker_cpu_us_per_delivery": round((cpu1 - cpu0) / expected * 1e6, 1),
    }
    bench.unsubscribe_all(d)
    d.close()
    return res


def describe(bench: Bench, res: dict[str, Any]) -> str:
    """The figure and its ratios to the baselines measured in this run (added to ``res``)."""
    parts = [f"{res['deliveries']:,} in {res['seconds']:.2f}s = {res['per_s']:,}/s"]
    if "ceiling" in bench.results:
        res["vs_ceiling"] = round(res["per_s"] / bench.results["ceiling"]["per_s"], 2)
        parts.append(f"{res['vs_ceiling']}x (a)")
    if "handwritten" in bench.results:
        res["vs_handwritten"] = round(res["per_s"] / bench.results["handwritten"]["per_s"], 1)
        parts.append(f"{res['vs_handwritten']}x (b)")
    parts.append(f"missing {res['missing']}, duplicates {res['duplicates']}, recorded {res['recorded']:,}")
    if res.get("worker_cpu_us_per_delivery"):
        parts.append(f"worker CPU {res['worker_cpu_us_per_delivery']} us/delivery")
    if "redis_cpu_us" in res:
        parts.append(describe_cost(res))
    return "; ".join(parts)


def _fanout_chart(r: Figures) -> Part:
    return Part(throughput=[(f"1 fan-out: {r['deliveries']:,} deliveries", r["per_s"])])


@step("fanout", chart=_fanout_chart)
def fanout(bench: Bench) -> dict[str, Any]:
    s = bench.sizes
    res = throughput(bench, "fanout", s.fanout_events, s.fanout_endpoints)
    bench.line(f"1 fan-out {s.fanout_events:,} events x {s.fanout_endpoints} endpoints: " + describe(bench, res))
    return res


@step("one_to_one", chart=lambda r: Part(throughput=[(f"2 one-to-one: {r['deliveries']:,} events", r["per_s"])]))
def one_to_one(bench: Bench) -> dict[str, Any]:
    s = bench.sizes
    res = throughput(bench, "one_to_one", s.one_to_one, 1)
    bench.line(f"2 one-to-one {s.one_to_one:,} events x 1 endpoint: " + describe(bench, res))
    return res


# the enqueue step's registered type: its schema is checked on every call (dispatcher.event_types)
TYPED_EVENT = "bench.typed"
TYPED_SCHEMA = {
    "type": "object",
    "required": ["i", "pad"],
    "properties": {"i": {"type": "integer", "minimum": 0}, "pad": {"type": "string", "maxLength": 256}},
    "additionalProperties": False,
}
ENQUEUE_ROUNDS = 5  # plain and registered-type calls alternate in this many blocks, so drift hits both alike


def _enqueue_chart(r: Figures) -> Part:
    typed = ""
    if "typed_per_s" in r:
        typed = f"; a registered type (schema checked): {r['typed_per_s']:,} calls/s ({r['typed_vs_plain']}x)"
    return Part(notes=[f"3 enqueue(): {r['single_per_s']:,} calls/s one at a time{typed}; enqueue_many() in chunks of "
                       f"1,000: {r['many_per_s']:,} events/s (events accepted, not deliveries)"])  # fmt: skip


def _enqueue_calls(d: Dispatcher, etype: str, start: int, stop: int, task: Task) -> float:
    """Seconds taken by ``enqueue()`` of events ``start`` to ``stop`` of type ``etype``, one call each."""
    done = task.done
    t0 = time.perf_counter()
    for i in range(start, stop):
        d.enqueue(etype, {"i": i, "pad": "x" * 64})
        if i % 100 == 0:
            task.update(done + i - start)
    took = time.perf_counter() - t0
    task.update(done + stop - start)
    return took


@step("enqueue", needs_workers=False, chart=_enqueue_chart)
def enqueue(bench: Bench) -> dict[str, Any]:
    """``enqueue()`` one by one, of an unregistered type and of a registered one (its schema checked on every
    call), alternating in blocks; then ``enqueue_many()`` in chunks."""
    s = bench.sizes
    d = bench.dispatcher(prefix=bench.prefix + "enq:")  # no worker listens to this prefix
    d.event_types.register(TYPED_EVENT, description="bench: a registered type", schema=TYPED_SCHEMA,
                           example={"i": 0, "pad": "x"})  # fmt: skip
    d.enqueue("warm.up", {})
    d.enqueue(TYPED_EVENT, {"i": 0, "pad": ""})
    n = s.enqueue_single
    plain_s = typed_s = 0.0
    with bench.progress.task("enqueue() plain+typed", 2 * n) as task:
        bounds = [n * k // ENQUEUE_ROUNDS for k in range(ENQUEUE_ROUNDS + 1)]
        for k in range(ENQUEUE_ROUNDS):
            order = ("bench.event", TYPED_EVENT) if k % 2 == 0 else (TYPED_EVENT, "bench.event")
            for etype in order:
                took = _enqueue_calls(d, etype, bounds[k], bounds[k + 1], task)
                if etype == TYPED_EVENT:
                    typed_s += took
                else:
                    plain_s += took
    single, typed = n / plain_s, n / typed_s
    t0 = time.perf_counter()
    bench.enqueue_chunks(d, s.enqueue_many)
    many = s.enqueue_many / (time.perf_counter() - t0)
    stored = d.redis.zcard(d.keys.fanout)
    d.close()
    ratio = round(typed / single, 2)
    bench.line(
        f"3 enqueue(): {single:,.0f} calls/s one by one; of a registered type (schema checked): {typed:,.0f} "
        f"calls/s = {ratio}x; enqueue_many() chunks of 1000: {many:,.0f} events/s; stored {stored:,}"
    )
    return {
        "single_per_s": round(single),
        "typed_per_s": round(typed),
        "typed_vs_plain": ratio,
        "many_per_s": round(many),
        "stored": stored,
        "expected": 2 * n + s.enqueue_many + 2,
    }


def _latency_chart(r: Figures) -> Part:
    title = f"enqueue → receiver (4: {r['events']:,} events at {r['rate']:,}/s)"
    rows = [(k.removesuffix("_ms"), float(r[k])) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms") if r[k] is not None]
    return Part(latency=[(title, rows)])


@step("latency", chart=_latency_chart)
def latency(bench: Bench) -> dict[str, Any]:
    s = bench.sizes
    d = bench.dispatcher()
    bench.subscribe(d, 1, tag="lat")
    n = int(s.latency_rate * s.latency_s)
    lat = paced_latencies(bench, "latency", n, s.latency_rate, lambda i: d.enqueue("bench.latency", {"i": i}), 120)
    bench.unsubscribe_all(d)
    d.close()

    def pct(p: float) -> float:
        return percentile(lat, p)

    res = {"events": n, "rate": s.latency_rate, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
           "max_ms": round(lat[-1], 1) if lat else None, "missing": n - len(lat)}  # fmt: skip
    bench.line(f"4 latency at {s.latency_rate}/s for {s.latency_s:.0f}s: p50 {res['p50_ms']} ms, "
               f"p95 {res['p95_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']} ms; "
               f"missing {res['missing']}")  # fmt: skip
    return res


def paced_latencies(
    bench: Bench, label: str, n: int, rate: float, send: Callable[[int], str], drain_s: float
) -> list[float]:
    """Send ``n`` events at a steady ``rate`` (``send(i)`` enqueues one, returns its id); their enqueue →
    receiver times in ms, sorted (the receiver is reset first, so only these count)."""
    bench.reset()
    sent: dict[str, float] = {}
    with bench.progress.task(f"{label} (sending)", n) as task:
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[send(i)] = time.time()
            if i % 50 == 0:
                task.update(i)
        task.update(n)
    bench.wait_received(f"{label} (drain)", n, drain_s)
    arrivals = bench.stats(arrivals=True)["arrivals"]
    return sorted((arrivals[i] - t) * 1000 for i, t in sent.items() if i in arrivals)


def percentile(lat: list[float], p: float) -> float:
    """The ``p`` quantile of sorted latencies, in ms to 0.1 (nan when there are none)."""
    return round(lat[min(len(lat) - 1, int(len(lat) * p))], 1) if lat else float("nan")


def isolation_run(bench: Bench, hang: int) -> dict[str, Any]:
    """All endpoints get every event; ``hang`` of them never answer within the timeout."""
    s = bench.sizes
    d = bench.dispatcher()
    eps = bench.subscribe(d, s.isolation_endpoints, hang=hang, tag=f"iso{hang}_")
    bench.reset()
    healthy = s.isolation_events * (s.isolation_endpoints - hang)
    t0 = time.time()
    bench.enqueue_chunks(d, s.isolation_events)
    end, st = bench.wait_received(f"isolation {hang} hanging", healthy, 600)
    elapsed = end - t0
    for ep in eps[:hang]:
        d.unsubscribe(ep)
    bench.unsubscribe_all(d)
    d.close()
    return {"hanging": hang, "healthy_deliveries": healthy, "seconds": round(elapsed, 3),
            "healthy_per_s": round(st["unique"] / elapsed), "missing": healthy - st["unique"],
            "duplicates": st["duplicates"]}  # fmt: skip


def _isolation_chart(r: Figures) -> Part:
    runs, n = r["runs"], r["endpoints"]
    labels = [f"5 isolation: {run['hanging']} of {n} hanging" for run in runs]
    labels[0] += " (before)"
    labels[-1] += " (after)"
    return Part(throughput=[(label, run["healthy_per_s"]) for label, run in zip(labels, runs, strict=True)])


@step("isolation", chart=_isolation_chart)
def isolation(bench: Bench) -> dict[str, Any]:
    """Healthy endpoints' throughput with 10 % and 50 % of the endpoints hanging, against none hanging
    measured before and after them in the same run (the mean of the two, so drift cancels out)."""
    s = bench.sizes
    shares = (0.0, 0.1, 0.5, 0.0)
    runs = [isolation_run(bench, round(s.isolation_endpoints * share)) for share in shares]
    base = (runs[0]["healthy_per_s"] + runs[-1]["healthy_per_s"]) / 2 or 1
    for r in runs[1:-1]:
        r["vs_none_hanging"] = round(r["healthy_per_s"] / base, 2)
        # the same figure per healthy endpoint: what each of them gets against what each got with none hanging
        share = (s.isolation_endpoints - r["hanging"]) / s.isolation_endpoints
        r["per_endpoint_vs_none_hanging"] = round(r["vs_none_hanging"] / share, 2)
    parts = [f"{r['hanging']} hanging: healthy {r['healthy_per_s']:,}/s"
             + (f" = {r['vs_none_hanging']:.0%} of none hanging ({r['per_endpoint_vs_none_hanging']:.0%}"
                " per healthy endpoint)" if "vs_none_hanging" in r else "")
             + f", missing {r['missing']}, duplicates {r['duplicates']}" for r in runs]  # fmt: skip
    bench.line(f"5 isolation {s.isolation_endpoints} endpoints, hanging past the {bench.timeout_s:.0f}s timeout "
               f"(none hanging before and after: {base:,.0f}/s): " + "; ".join(parts))  # fmt: skip
    return {"endpoints": s.isolation_endpoints, "timeout_s": bench.timeout_s,
            "none_hanging_per_s": round(base), "runs": runs}  # fmt: skip


def _backlog_chart(r: Figures) -> Part:
    label = f"6 with {r['pending_retries']:,} pending retries"
    return Part(throughput=[(label, r["deliveries_during_per_s"])])


@step("backlog", chart=_backlog_chart)
def backlog(bench: Bench) -> dict[str, Any]:
    s = bench.sizes
    assert bench.worker_proc is not None
    d = bench.dispatcher()
    before = worker_rss_mb(bench.worker_proc.pid)
    far = int(time.time() * 1000) + 10 * 3600 * 1000
    with bench.progress.task("backlog (filling)", s.backlog) as task:
        for start in range(0, s.backlog, 10_000):
            d.redis.zadd(d.keys.due, {f"dlv_backlog{i}": far for i in range(start, min(s.backlog, start + 10_000))})
            task.update(start)
        task.update(s.backlog)
    # the workers keep working with the backlog present
    done, per_s = deliveries_with_backlog(bench, d)
    after = worker_rss_mb(bench.worker_proc.pid)
    d.redis.delete(d.keys.due)
    d.close()
    bench.line(f"6 backlog {s.backlog:,} pending retries: worker RSS per process before {fmt_rss(before)} MB, "
               f"after {fmt_rss(after)} MB; {done} deliveries made meanwhile ({per_s:,}/s)")  # fmt: skip
    return {"pending_retries": s.backlog, "rss_mb_before": before, "rss_mb_after": after,
            "deliveries_during": done, "deliveries_during_per_s": per_s}  # fmt: skip


def deliveries_with_backlog(bench: Bench, d: Dispatcher) -> tuple[int, int]:
    eps = bench.subscribe(d, 1, tag="bk")
    bench.reset()
    n = min(5000, bench.sizes.one_to_one)
    t0 = time.time()
    bench.enqueue_chunks(d, n)
    end, st = bench.wait_received("backlog deliveries", n, 120)
    for ep in eps:
        d.unsubscribe(ep)
    return int(st["unique"]), round(st["unique"] / max(end - t0, 1e-3))
