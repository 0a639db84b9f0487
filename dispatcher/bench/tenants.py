"""Scenario 8: fairness between tenants. A quiet tenant's enqueue → delivered latency, alone and while a
noisy tenant has a backlog of events to endpoints that hang, in the same run."""

from __future__ import annotations

from typing import Any

from dispatcher import Dispatcher
from dispatcher.bench.chart import Part
from dispatcher.bench.harness import SECRET, Bench
from dispatcher.bench.registry import Figures, step
from dispatcher.bench.scenarios import paced_latencies, percentile
from dispatcher.store.work import Stage

QUIET, NOISY = "quiet", "noisy"


def quiet_latencies(bench: Bench, d: Dispatcher, label: str) -> list[float]:
    """Send the quiet tenant's events at its steady rate; their enqueue → receiver times in ms, sorted."""
    s = bench.sizes
    n = int(s.tenant_rate * s.tenant_s)
    return paced_latencies(
        bench, f"tenants ({label})", n, s.tenant_rate, lambda i: d.enqueue("bench.quiet", {"i": i}, tenant=QUIET), 300
    )


def _chart(r: Figures) -> Part:
    rows = [("p99 alone", float(r["alone"]["p99_ms"])), ("p99 with the backlog", float(r["with_backlog"]["p99_ms"])),
            ("p99 during its fan-out", float(r["during_fanout"]["p99_ms"]))]  # fmt: skip
    return Part(latency=[(f"8 a quiet tenant, another's backlog of {r['backlog_events']:,}", rows)])


@step("tenants", chart=_chart)
def tenants(bench: Bench) -> dict[str, Any]:
    """The quiet tenant's p99 with the noisy tenant's backlog pending, against the same measured alone."""
    s = bench.sizes
    d = bench.dispatcher()
    d.create_tenant(QUIET)
    d.create_tenant(NOISY)
    d.subscribe(bench.receiver + "/quiet0", ["*"], secret=SECRET, tenant=QUIET)
    for i in range(s.tenant_noisy_endpoints):
        d.subscribe(bench.receiver + f"/hang/noisy{i}", ["*"], secret=SECRET, tenant=NOISY)
    alone = quiet_latencies(bench, d, "alone")
    for start in range(0, s.tenant_backlog, 1000):
        d.enqueue_many([("bench.noisy", {"i": i}) for i in range(start, min(s.tenant_backlog, start + 1000))],
                       tenant=NOISY)  # fmt: skip
    during = quiet_latencies(bench, d, "during the backlog's fan-out")
    queued = d.store.queue.count_in_lanes
    bench.wait(lambda: queued(Stage.FANOUT, ("-inf", "+inf")) == [0], 600, "the backlog fanned out")
    pending_before = d.store.queue.pending()
    fanned = quiet_latencies(bench, d, "with the backlog")
    pending = d.store.queue.pending()
    d.delete_tenant(NOISY)
    d.delete_tenant(QUIET)
    bench.unsubscribe_all(d)
    d.close()
    n = int(s.tenant_rate * s.tenant_s)
    res: dict[str, Any] = {"backlog_events": s.tenant_backlog, "noisy_endpoints": s.tenant_noisy_endpoints,
                           "rate": s.tenant_rate, "events": n, "pending_at_end": pending}  # fmt: skip
    res["pending_with_backlog"] = pending_before
    for name, lat in (("alone", alone), ("with_backlog", fanned), ("during_fanout", during)):
        res[name] = {"p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99), "missing": n - len(lat)}
    for name in ("with_backlog", "during_fanout"):
        res[f"p99_vs_alone_{name}"] = round(res[name]["p99_ms"] / max(res["alone"]["p99_ms"], 0.1), 2)
    res["p99_vs_alone"] = res["p99_vs_alone_with_backlog"]
    bench.line(
        f"8 tenants: a quiet tenant at {s.tenant_rate}/s for {s.tenant_s:.0f}s, p50/p99 alone "
        f"{res['alone']['p50_ms']}/{res['alone']['p99_ms']} ms; while another tenant has {pending_before:,} "
        f"deliveries ({s.tenant_backlog:,} events x {s.tenant_noisy_endpoints} hanging endpoints) pending: "
        f"{res['with_backlog']['p50_ms']}/{res['with_backlog']['p99_ms']} ms = {res['p99_vs_alone']}x p99; while "
        f"that backlog was being fanned out: {res['during_fanout']['p50_ms']}/{res['during_fanout']['p99_ms']} ms "
        f"= {res['p99_vs_alone_during_fanout']}x; missing {res['alone']['missing']} / {res['with_backlog']['missing']}"
        f" / {res['during_fanout']['missing']}"
    )
    return res
