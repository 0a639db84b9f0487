"""Nothing lost: workers killed mid-batch, Redis restarted, receivers down, schedulers doubled.

Short variants run in CI; ``-m slow`` runs the long ones (10,000 deliveries in flight).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatcher import Dispatcher, StoreUnavailable
from dispatcher.cli.embedded import EmbeddedRedis, free_port
from dispatcher.settings import Settings
from tests.conftest import ROOT, Receiver, Worker, make_settings, settings_env, wait_until


def states(dsp: Dispatcher, event_id: str) -> list[str]:
    return [d.state.value for d in dsp.deliveries(event_id)]


def ids_seen(rec: Receiver) -> Counter[str]:
    return Counter(r.headers["webhook-id"] for r in list(rec.requests))


def _kill_mid_batch(
    n: int,
    sig: int,
    redis_url: str,
    prefix: str,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
) -> tuple[Counter[str], list[str]]:
    settings = make_settings(redis_url, prefix, timeout_s=3.0, lease_margin_s=2.0)
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
    wait_until(lambda: dsp.redis.zcard(dsp.keys.due) == 0, 30, what="the due set to drain")
    time.sleep(0.2)  # stray duplicates, if any, would land now
    seen = ids_seen(rec)
    dsp.close()
    return seen, ids


@pytest.mark.parametrize("n", [pytest.param(2000, id="2000"), pytest.param(10_000, id="10000", marks=pytest.mark.slow)])
def test_kill_9_worker_mid_batch_loses_nothing(
    n: int,
    redis_url: str,
    prefix: str,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
) -> None:
    seen, ids = _kill_mid_batch(n, signal.SIGKILL, redis_url, prefix, receiver_factory, worker_factory)
    assert set(seen) == set(ids)
    duplicated = [i for i, c in seen.items() if c > 1]
    # only the cut batch is sent again: at most what one worker process had claimed (2 x 64 in flight + queued)
    assert len(duplicated) <= 2 * 64 * 9, len(duplicated)
    print(f"kill -9: {n} events, {len(seen)} arrived, {len(duplicated)} delivered twice (same webhook-id)")


def test_sigterm_warm_shutdown_loses_nothing(
    redis_url: str, prefix: str, receiver_factory: Callable[..., Receiver], worker_factory: Callable[..., Worker]
) -> None:
    seen, ids = _kill_mid_batch(2000, signal.SIGTERM, redis_url, prefix, receiver_factory, worker_factory)
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1  # a warm shutdown finishes its batch: nothing is sent twice


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test's own (AOF, fsync every second) that the test may restart."""
    server = EmbeddedRedis(directory=tmp_path / "redis", port=free_port(), appendonly=True)
    server.start()
    yield server
    server.stop()


def test_redis_restart_loses_no_acknowledged_event(
    own_redis: EmbeddedRedis, receiver_factory: Callable[..., Receiver], worker_factory: Callable[..., Worker]
) -> None:
    settings = make_settings(own_redis.url, "restart:", timeout_s=2.0, lease_margin_s=2.0)
    dsp = Dispatcher(settings)
    rec = receiver_factory()
    dsp.subscribe(rec.url, ["*"])
    worker_factory(settings, concurrency=2)
    acknowledged: list[str] = []
    refused = 0
    deadline = time.monotonic() + 6.0
    restarted = False
    i = 0
    while time.monotonic() < deadline:
        i += 1
        if not restarted and i == 300:
            own_redis.process.terminate()  # type: ignore[union-attr]  # a clean shutdown fsyncs the AOF
            own_redis.process.wait(10)  # type: ignore[union-attr]
            restarted = True
            outage_ends = time.monotonic() + 1.0
        process = own_redis.process
        if restarted and process is not None and process.poll() is not None and time.monotonic() >= outage_ends:
            own_redis.process = None
            own_redis.start()
        try:
            acknowledged.append(dsp.enqueue("fault.redis", {"i": i}))
        except StoreUnavailable:
            refused += 1  # a clear error during the outage, never a silent drop
        time.sleep(0.005)
    assert restarted and refused > 0
    wait_until(lambda: set(ids_seen(rec)) >= set(acknowledged), 90, what="every acknowledged event delivered")
    print(f"redis restart: {len(acknowledged)} acknowledged, all delivered; {refused} enqueue() calls refused")
    dsp.close()


def test_receiver_outage_then_recovery(
    redis_url: str, prefix: str, receiver_factory: Callable[..., Receiver], worker_factory: Callable[..., Worker]
) -> None:
    """Refused connections, then timeouts, then 503 + Retry-After, then healthy: everything arrives, no hot loop."""
    settings = make_settings(
        redis_url, prefix, timeout_s=0.5, retry_schedule=(0.3, 0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0), lease_margin_s=2.0
    )
    dsp = Dispatcher(settings)
    port = free_port()
    ep = dsp.subscribe(f"http://127.0.0.1:{port}/hook", ["*"])  # nothing listens yet: connection refused
    worker_factory(settings)
    ids = dsp.enqueue_many([("fault.outage", {"i": i}) for i in range(20)])
    wait_until(
        lambda: all(dsp.deliveries(i) and dsp.deliveries(i)[0].attempts for i in ids), 20, what="refused attempts"
    )
    phase = {"mode": "hang"}

    def reply(n: int, r: object) -> tuple[int, dict[str, str], bytes]:
        if phase["mode"] == "503":
            return 503, {"Retry-After": "1"}, b"busy"
        return 200, {}, b"ok"

    rec = receiver_factory(port=port, reply=reply, delay_s=1.0)  # answers after the 0.5 s timeout: timeouts
    time.sleep(1.5)
    rec.delay_s = 0.0
    phase["mode"] = "503"
    time.sleep(1.5)
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
    redis_url: str, prefix: str, receiver_factory: Callable[..., Receiver], worker_factory: Callable[..., Worker]
) -> None:
    settings: Settings = make_settings(redis_url, prefix, retry_schedule=(0.3, 0.3, 0.3))
    dsp = Dispatcher(settings)
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"") if n <= 150 else (200, {}, b""))
    dsp.subscribe(rec.url, ["*"])
    env = {**settings_env(settings), "PYTHONPATH": str(ROOT)}
    schedulers = [
        subprocess.Popen([sys.executable, "-m", "dispatcher", "scheduler", "--interval", "0.05"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]  # fmt: skip
    try:
        worker_factory(settings, concurrency=2)  # runs a third scheduler inside
        ids = dsp.enqueue_many([("fault.sched", {"i": i}) for i in range(100)])
        wait_until(lambda: all(states(dsp, i) == ["delivered"] for i in ids), 60)
        for i in ids:
            (d,) = dsp.deliveries(i)
            # every attempt recorded exactly once, one per failure + the success: none fired twice
            assert [a.n for a in d.attempts] == list(range(1, len(d.attempts) + 1))
        total = sum(len(d.attempts) for i in ids for d in dsp.deliveries(i))
        assert total == rec.count()  # each request the receiver saw is one recorded attempt
    finally:
        for proc in schedulers:
            proc.send_signal(signal.SIGINT)
            proc.wait(20)
    dsp.close()


def test_hanging_and_slow_endpoints_do_not_stall_healthy_ones(
    redis_url: str, prefix: str, receiver_factory: Callable[..., Receiver]
) -> None:
    """Healthy deliveries all land before the hanging endpoint's first timeout even fires."""
    from dispatcher.worker.fanout import run_fanout
    from dispatcher.worker.run import run_deliver
    from dispatcher.worker.runtime import Runtime

    settings = make_settings(redis_url, prefix, timeout_s=8.0)
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
    dsp: Dispatcher, runtime: object, receiver_factory: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
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
