"""An endpoint failing without a break for the window is disabled, and an endpoint.disabled event goes out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from dispatcher import Dispatcher
from dispatcher.settings import Settings
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver


def test_failing_past_the_window_disables_and_announces(
    settings_for: Callable[..., Settings], receiver_factory: Callable[..., Receiver]
) -> None:
    settings = settings_for(retry_schedule=(0.2,) * 30, disable_after_failing_s=1.0)
    dsp, rt = Dispatcher(settings), Runtime(settings)
    broken = receiver_factory(reply=lambda n, r: (500, {}, b"down"))
    ops = receiver_factory()
    bad = dsp.subscribe(broken.url, ["order.*"])
    dsp.subscribe(ops.url, ["endpoint.disabled"])
    dsp.enqueue("order.paid", {})
    deadline = time.monotonic() + 20
    while dsp.get_endpoint(bad.id).enabled:
        assert time.monotonic() < deadline, "not disabled in time"
        run_fanout(rt)
        run_deliver(rt, budget_s=0.3)
    assert broken.count() >= 3  # it kept failing for the whole window first
    assert "failing without a success" in (dsp.get_endpoint(bad.id).disabled_reason or "")
    while ops.count() == 0:
        assert time.monotonic() < deadline, "no endpoint.disabled event"
        run_fanout(rt)
        run_deliver(rt, budget_s=0.3)
    event = orjson.loads(ops.requests[0].body)
    assert event["type"] == "endpoint.disabled" and event["data"]["endpoint_id"] == bad.id
    rt.close()
    dsp.close()


def test_a_success_ends_the_streak(
    settings_for: Callable[..., Settings], receiver_factory: Callable[..., Receiver]
) -> None:
    settings = settings_for(retry_schedule=(0.2,) * 30, disable_after_failing_s=1.5)
    dsp, rt = Dispatcher(settings), Runtime(settings)
    flaky = receiver_factory(reply=lambda n, r: (200, {}, b"") if n % 4 == 0 else (500, {}, b""))
    ep = dsp.subscribe(flaky.url, ["*"])
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 3.0:  # twice the window
        i += 1
        dsp.enqueue("tick", {"i": i})
        run_fanout(rt)
        run_deliver(rt, budget_s=0.3)
    assert flaky.count() >= 8
    assert dsp.get_endpoint(ep.id).enabled  # it failed for longer than the window, but never without a break
    rt.close()
    dsp.close()
