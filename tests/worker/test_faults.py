"""Nothing lost: workers killed mid-batch, Redis restarted, receivers down, schedulers doubled.

Short variants run in CI; ``-m slow`` runs the long ones (10,000 deliveries in flight).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from dispatcher import Dispatcher, StoreUnavailable
from dispatcher.cli.embedded import EmbeddedRedis, free_port
from dispatcher.settings import Settings

if TYPE_CHECKING:
    from tests.conftest import Receiver, SchedulerProcess, Worker


def ids_seen(rec: Receiver) -> Counter[str]:
    return Counter(r.headers["webhook-id"] for r in list(rec.requests))


KillResult = tuple[Counter[str], list[str]]


@pytest.fixture
def kill_mid_batch(
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> Callable[[int, int], KillResult]:
    """``kill_mid_batch(n, sig)``: n events under way through one worker, ``sig`` sent to it mid-batch, a new
    worker finishing the job; returns how often each event arrived, and the event ids."""

    def run(n: int, sig: int) -> KillResult:
        settings = settings_for(timeout_s=3.0, lease_margin_s=2.0)
        dsp = Dispatcher(settings)
        rec = receiver_factory(delay_s=0.05)  # slow enough that many requests are in flight at the kill
        dsp.subscribe(rec.url, ["*"])
        first = worker_factory(settings, concurrency=2)
        ids = dsp.enqueue_many([("fault.kill", {"i": i}) for i in range(n)])
        wait_until(lambda: rec.count() >= n // 10, 60, what="deliveries under way")
        if sig == signal.SIGKILL:
            first.stop(signal.SIGKILL)  # the whole process group, mid-batch
        else:
            first.signal_main(sig)  # warm shutdown: finish the running tasks, then exit
            first.wait(60)
        worker_factory(settings, concurrency=2)
        wait_until(lambda: set(ids_seen(rec)) >= set(ids), 120, what="every event delivered")
        # nothing pending any more: every claimed delivery had its outcome recorded, so every request any
        # worker sent has arrived (a request is recorded by the receiver before it is answered)
        wait_until(
            lambda: dsp.redis.zcard(dsp.keys.due) == 0 and dsp.redis.hlen(dsp.keys.jobs) == 0,
            30,
            what="the due set and the pending jobs to drain",
        )
        seen = ids_seen(rec)
        dsp.close()
        return seen, ids

    return run


@pytest.mark.parametrize("n", [pytest.param(2000, id="2000"), pytest.param(10_000, id="10000", marks=pytest.mark.slow)])
def test_kill_9_worker_mid_batch_loses_nothing(n: int, kill_mid_batch: Callable[[int, int], KillResult]) -> None:
    seen, ids = kill_mid_batch(n, signal.SIGKILL)
    assert set(seen) == set(ids)
    duplicated = [i for i, c in seen.items() if c > 1]
    # only the cut batch is sent again: at most what one worker process had claimed (2 x 64 in flight + queued)
    assert len(duplicated) <= 2 * 64 * 9, len(duplicated)
    print(f"kill -9: {n} events, {len(seen)} arrived, {len(duplicated)} delivered twice (same webhook-id)")


def test_sigterm_warm_shutdown_loses_nothing(kill_mid_batch: Callable[[int, int], KillResult]) -> None:
    seen, ids = kill_mid_batch(2000, signal.SIGTERM)
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1  # a warm shutdown finishes its batch: nothing is sent twice


def test_redis_restart_loses_no_acknowledged_event(
    own_redis: EmbeddedRedis,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> None:
    """Events enqueued before, during and after a Redis restart: every one acknowledged is delivered, and
    those refused during the outage were refused with a clear error. Each phase ends on a count."""
    settings = settings_for(redis_url=own_redis.url, key_prefix="restart:", timeout_s=2.0, lease_margin_s=2.0)
    dsp = Dispatcher(settings)
    rec = receiver_factory()
    dsp.subscribe(rec.url, ["*"])
    worker_factory(settings, concurrency=2)
    acknowledged: list[str] = []
    refused = 0

    def enqueue_one(i: int) -> bool:
        nonlocal refused
        try:
            acknowledged.append(dsp.enqueue("fault.redis", {"i": i}))
            return True
        except StoreUnavailable:
            refused += 1  # a clear error during the outage, never a silent drop
            return False
        finally:
            time.sleep(0.005)

    i = 0
    while len(acknowledged) < 300:  # before: 300 events acknowledged (the workers deliver as they come)
        i += 1
        enqueue_one(i)
    assert refused == 0
    own_redis.process.terminate()  # type: ignore[union-attr]  # a clean shutdown fsyncs the AOF
    own_redis.process.wait(10)  # type: ignore[union-attr]
    outage_ends = time.monotonic() + 1.0  # the outage: at least 1 s, and until calls have been refused
    while refused == 0 or time.monotonic() < outage_ends:
        i += 1
        assert not enqueue_one(i), "enqueue() acknowledged an event while Redis was down"
    own_redis.process = None
    own_redis.start()
    after = len(acknowledged)
    deadline = time.monotonic() + 30
    while len(acknowledged) < after + 300:  # after: 300 more acknowledged once Redis is back
        assert time.monotonic() < deadline, "enqueue() did not recover after the restart"
        i += 1
        enqueue_one(i)
    assert refused > 0
    wait_until(lambda: set(ids_seen(rec)) >= set(acknowledged), 90, what="every acknowledged event delivered")
    print(f"redis restart: {len(acknowledged)} acknowledged, all delivered; {refused} enqueue() calls refused")
    dsp.close()


def test_receiver_outage_then_recovery(
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    states: Callable[..., list[str]],
    wait_until: Callable[..., Any],
) -> None:
    """Refused connections, then timeouts, then 503 + Retry-After, then healthy: everything arrives, no hot loop.
    Each phase lasts until the dispatcher has recorded attempts of that phase's kind."""
    settings = settings_for(timeout_s=0.5, retry_schedule=(0.3, 0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0), lease_margin_s=2.0)
    dsp = Dispatcher(settings)
    port = free_port()
    ep = dsp.subscribe(f"http://127.0.0.1:{port}/hook", ["*"])  # nothing listens yet: connection refused
    worker_factory(settings)
    ids = dsp.enqueue_many([("fault.outage", {"i": i}) for i in range(20)])

    def recorded() -> Counter[str]:
        """Attempts recorded so far, by what they came to (an error, or the HTTP status)."""
        return Counter(a.error or str(a.status) for i in ids for d in dsp.deliveries(i) for a in d.attempts)

    wait_until(
        lambda: all(dsp.deliveries(i) and dsp.deliveries(i)[0].attempts for i in ids), 20, what="refused attempts"
    )
    assert all(e.startswith("connection error") for e in recorded()), recorded()
    phase = {"mode": "hang"}

    def reply(n: int, r: object) -> tuple[int, dict[str, str], bytes]:
        if phase["mode"] == "503":
            return 503, {"Retry-After": "1"}, b"busy"
        return 200, {}, b"ok"

    rec = receiver_factory(port=port, reply=reply, delay_s=1.0)  # answers after the 0.5 s timeout: timeouts
    wait_until(lambda: recorded()["timeout"] >= 2, 30, 0.05, "2 timed-out attempts recorded")
    rec.delay_s = 0.0  # requests arriving from now on are answered at once (those held still time out)
    phase["mode"] = "503"
    wait_until(lambda: recorded()["503"] >= 2, 30, 0.05, "2 attempts answered 503 recorded")
    phase["mode"] = "ok"
    wait_until(lambda: set(ids) <= set(ids_seen(rec)), 60, what="recovery")
    wait_until(lambda: all(states(dsp, i) == ["delivered"] for i in ids), 30)
    attempts = [len(d.attempts) for i in ids for d in dsp.deliveries(i)]
    assert max(attempts) <= 9  # the schedule, not a hot loop
    errors = {a.error or str(a.status) for i in ids for d in dsp.deliveries(i) for a in d.attempts}
    assert any(e.startswith("connection error") for e in errors), errors
    assert "timeout" in errors and "503" in errors, errors
    print(f"receiver outage: {len(ids)} events, {sum(attempts)} attempts in all, max {max(attempts)} per delivery")
    assert dsp.get_endpoint(ep.id).enabled
    dsp.close()


def test_two_schedulers_fire_no_retry_twice(
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    scheduler_factory: Callable[..., SchedulerProcess],
    states: Callable[..., list[str]],
    wait_until: Callable[..., Any],
) -> None:
    settings = settings_for(retry_schedule=(0.3, 0.3, 0.3))
    dsp = Dispatcher(settings)
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"") if n <= 150 else (200, {}, b""))
    dsp.subscribe(rec.url, ["*"])
    schedulers = [scheduler_factory(settings, "--interval", "0.05") for _ in range(2)]
    worker_factory(settings, concurrency=2)  # runs a third scheduler inside
    ids = dsp.enqueue_many([("fault.sched", {"i": i}) for i in range(100)])
    wait_until(lambda: all(states(dsp, i) == ["delivered"] for i in ids), 60)
    for i in ids:
        (d,) = dsp.deliveries(i)
        # every attempt recorded exactly once, one per failure + the success: none fired twice
        assert [a.n for a in d.attempts] == list(range(1, len(d.attempts) + 1))
    total = sum(len(d.attempts) for i in ids for d in dsp.deliveries(i))
    assert total == rec.count()  # each request the receiver saw is one recorded attempt
    for scheduler in schedulers:
        assert scheduler.stop(signal.SIGINT) == 0, scheduler.log()
    dsp.close()


def test_hanging_and_slow_endpoints_do_not_stall_healthy_ones(
    settings_for: Callable[..., Settings], receiver_factory: Callable[..., Receiver]
) -> None:
    """Healthy deliveries all land before the hanging endpoint's first timeout even fires."""
    from dispatcher.worker.fanout import run_fanout
    from dispatcher.worker.run import run_deliver
    from dispatcher.worker.runtime import Runtime

    settings = settings_for(timeout_s=8.0)
    dsp, rt = Dispatcher(settings), Runtime(settings)
    hanging = receiver_factory(delay_s=30.0)
    slow = receiver_factory(delay_s=0.5)
    healthy = receiver_factory()
    for rec in (hanging, slow, healthy):
        dsp.subscribe(rec.url, ["*"])
    dsp.enqueue_many([("fault.iso", {"i": i}) for i in range(200)])
    started = time.time()
    run_fanout(rt)
    run_deliver(rt, budget_s=0.2)  # returns once the hanging requests time out
    assert healthy.count() == 200, healthy.count()
    last_healthy = max(r.at for r in healthy.requests)
    assert last_healthy - started < 6.0 < settings.timeout_s  # all in before the first hang timed out
    assert slow.count() >= 2  # the slow one makes progress too
    rt.close()
    dsp.close()


def test_worker_clock_skew_does_not_move_the_schedule(
    dsp: Dispatcher,
    runtime: object,
    receiver_factory: Callable[..., Receiver],
    monkeypatch: pytest.MonkeyPatch,
    states: Callable[..., list[str]],
) -> None:
    """Due times come from Redis' clock: a worker whose clock is 30 s ahead retries on schedule, not early."""
    import dispatcher.worker.run as delivery_module
    from dispatcher.worker.fanout import run_fanout
    from dispatcher.worker.run import run_deliver

    class SkewedTime:
        monotonic = staticmethod(time.monotonic)
        perf_counter = staticmethod(time.perf_counter)

        @staticmethod
        def time() -> float:
            return time.time() + 30.0

    monkeypatch.setattr(delivery_module, "time", SkewedTime)
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"") if n <= 2 else (200, {}, b""))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("skew.test", {})
    deadline = time.monotonic() + 15
    while states(dsp, eid) != ["delivered"]:
        assert time.monotonic() < deadline
        run_fanout(runtime)  # type: ignore[arg-type]
        run_deliver(runtime, budget_s=0.3)  # type: ignore[arg-type]
    gaps = [rec.requests[i + 1].at - rec.requests[i].at for i in range(2)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38  # the schedule (0.2 s, 0.4 s) held despite the skew


def test_work_never_waits_on_a_dead_worker(
    own_redis: EmbeddedRedis,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> None:
    """A steady stream of events while a worker is killed -9 four times (each once 100 more deliveries arrived
    after the previous fault) and Redis crashes for a second in the middle: deliveries resume within 5 s of
    every fault (kick slots of dead tasks expire in seconds)."""
    settings = settings_for(redis_url=own_redis.url, key_prefix="live:", timeout_s=2.0, lease_margin_s=2.0)
    dsp = Dispatcher(settings)
    rec = receiver_factory()
    dsp.subscribe(rec.url, ["*"])
    workers = [worker_factory(settings, concurrency=1), worker_factory(settings, concurrency=1)]
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            with contextlib.suppress(StoreUnavailable):
                dsp.enqueue("live.tick", {"i": i})
            time.sleep(0.02)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    outage_s = 0.0

    def resumed(after: int) -> None:
        wait_until(lambda: rec.count() >= after + 100, 60, what="100 more deliveries after the last fault")

    try:
        wait_until(lambda: rec.count() > 20, 30, what="deliveries flowing")
        seen = rec.count()
        for cycle in range(4):
            resumed(seen)
            victim = workers.pop(0)
            os.killpg(victim.process.pid, signal.SIGKILL)  # no warm shutdown: its tasks die holding their slots
            victim.process.wait(10)
            if cycle == 1:  # Redis crashes for a second in the middle
                began = time.monotonic()
                own_redis.process.kill()  # type: ignore[union-attr]
                own_redis.process.wait(10)  # type: ignore[union-attr]
                time.sleep(1.0)  # the outage itself: Redis stays down this long
                own_redis.process = None
                own_redis.start()
                outage_s = time.monotonic() - began
            workers.append(worker_factory(settings, concurrency=1))
            seen = rec.count()
        resumed(seen)
    finally:
        stop.set()
        producer.join(10)
    arrivals = sorted(r.at for r in rec.requests)
    longest = max(b - a for a, b in itertools.pairwise(arrivals))
    print(f"liveness: {len(arrivals)} deliveries, longest stall {longest:.2f}s (Redis down {outage_s:.2f}s)")
    assert longest <= 5.0 + outage_s, f"deliveries stalled for {longest:.1f}s"
    dsp.close()
