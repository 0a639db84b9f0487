"""Per-endpoint rate limits (``dispatcher.ratelimit``): in order, across workers, not counted as attempts."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from dispatcher import Dispatcher
from dispatcher.settings import Settings
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver


def enqueue_in_order(dsp: Dispatcher, n: int) -> list[str]:
    """Events a millisecond apart at least, so their order is defined (same-millisecond events have none)."""
    ids = []
    for i in range(n):
        ids.append(dsp.enqueue("tick", {"i": i}))
        time.sleep(0.002)
    return ids


def max_in_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_webhook_rate_limit_spaces_requests_in_order(
    dsp: Dispatcher, runtime: Runtime, receiver: Receiver, pump: Callable[..., Any], states: Callable[..., list[str]]
) -> None:
    dsp.subscribe(receiver.url, ["*"], rate_limit_per_s=5)
    ids = enqueue_in_order(dsp, 15)
    started = time.monotonic()
    pump(runtime, lambda: all(states(dsp, e) == ["delivered"] for e in ids), timeout_s=20)
    took = time.monotonic() - started
    assert took >= 2.5  # 14 intervals of 0.2 s after the first request
    got = [orjson.loads(r.body)["data"]["i"] for r in receiver.requests]
    assert got == list(range(15))  # messages beyond the rate waited in order
    arrivals = [r.at for r in receiver.requests]
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.1  # 0.2 s apart, give or take a late claim
    assert max_in_window(arrivals, 1.0) <= 6
    # waiting for the rate is not an attempt: one attempt each, none failed
    assert all(len(dsp.deliveries(e)[0].attempts) == 1 for e in ids)


def test_robot_rate_limit_keeps_order(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=lambda n, r: (204, {}, b""))
    dsp.subscribe(rec.url, ["*"], kind="discord", rate_limit_per_s=10, template="#{data.i}")
    ids = enqueue_in_order(dsp, 12)
    pump(runtime, lambda: all(states(dsp, e) == ["delivered"] for e in ids), timeout_s=20)
    assert [orjson.loads(r.body)["content"] for r in rec.requests] == [f"#{i}" for i in range(12)]
    assert rec.requests[-1].at - rec.requests[0].at >= 11 * 0.1 * 0.9


def test_far_slots_wait_in_redis_and_keep_their_place(
    dsp: Dispatcher, runtime: Runtime, receiver: Receiver, pump: Callable[..., Any], states: Callable[..., list[str]]
) -> None:
    """At 2/s, 8 events span 3.5 s: those beyond the 2 s horizon go back to the due set with their slots."""
    dsp.subscribe(receiver.url, ["*"], rate_limit_per_s=2)
    ids = enqueue_in_order(dsp, 8)
    run_fanout(runtime)
    summary = run_deliver(runtime, budget_s=0.2)
    assert summary["claimed"] == 8 and summary["rate_limited"] >= 2
    pump(runtime, lambda: all(states(dsp, e) == ["delivered"] for e in ids), timeout_s=20)
    assert [orjson.loads(r.body)["data"]["i"] for r in receiver.requests] == list(range(8))
    arrivals = [r.at for r in receiver.requests]
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.3  # 0.5 s apart, give or take a late claim
    assert all(len(dsp.deliveries(e)[0].attempts) == 1 for e in ids)


def test_two_workers_share_one_limit(
    settings: Settings,
    dsp: Dispatcher,
    receiver: Receiver,
    states: Callable[..., list[str]],
    wait_until: Callable[..., Any],
) -> None:
    dsp.subscribe(receiver.url, ["*"], rate_limit_per_s=5)
    runtimes = [Runtime(settings), Runtime(settings)]
    ids = dsp.enqueue_many([("tick", {"i": i}) for i in range(20)])
    done = threading.Event()
    errors: list[BaseException] = []

    def work(rt: Runtime) -> None:
        try:
            while not done.is_set():
                run_fanout(rt)
                run_deliver(rt, budget_s=0.3)
        except BaseException as exc:  # surfaced by the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(rt,)) for rt in runtimes]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: errors or all(states(dsp, e) == ["delivered"] for e in ids), 30, 0.1, "all delivered")
    finally:
        done.set()
        for t in threads:
            t.join(10)
        for rt in runtimes:
            rt.close()
    assert not errors
    arrivals = sorted(r.at for r in receiver.requests)
    assert len(arrivals) == 20
    assert arrivals[-1] - arrivals[0] >= 19 * 0.2 * 0.9
    assert max_in_window(arrivals, 1.0) <= 6  # 5 per second (+1 at the window's edge)


def test_endpoints_without_a_limit_never_touch_it(
    dsp: Dispatcher, runtime: Runtime, receiver: Receiver, pump: Callable[..., Any], states: Callable[..., list[str]]
) -> None:
    ep = dsp.subscribe(receiver.url, ["*"])
    ids = dsp.enqueue_many([("tick", {"i": i}) for i in range(30)])
    pump(runtime, lambda: all(states(dsp, e) == ["delivered"] for e in ids))
    assert ep.rate_limit_per_s is None
    assert not runtime.redis.exists(runtime.keys.rate_limit(ep.id))
    limited = dsp.subscribe(receiver.url, ["*"], rate_limit_per_s=1000)
    dsp.enqueue("tick", {})
    pump(runtime, lambda: runtime.redis.exists(runtime.keys.rate_limit(limited.id)))
    assert runtime.redis.pttl(runtime.keys.rate_limit(limited.id)) > 0  # the key expires when idle
