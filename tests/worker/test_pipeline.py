"""End to end with real Celery worker processes: enqueue() -> Redis -> workers -> receivers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from standardwebhooks.webhooks import Webhook

from dispatcher import Dispatcher
from dispatcher.settings import Settings

if TYPE_CHECKING:
    from tests.conftest import Receiver, Worker


def test_enqueue_reaches_every_subscriber_signed(
    dsp: Dispatcher,
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> None:
    worker_factory(settings)
    a, b, c = receiver_factory(), receiver_factory(), receiver_factory()
    ep_a = dsp.subscribe(a.url, ["user.*"])
    ep_b = dsp.subscribe(b.url, ["*"])
    dsp.subscribe(c.url, ["order.*"])
    eid = dsp.enqueue("user.created", {"name": "Ada"})
    (req_a,) = a.wait_for(1)
    (req_b,) = b.wait_for(1)
    assert Webhook(ep_a.secret).verify(req_a.body, req_a.headers)["data"] == {"name": "Ada"}
    assert Webhook(ep_b.secret).verify(req_b.body, req_b.headers)["id"] == eid
    wait_until(lambda: [d.state.value for d in dsp.deliveries(eid)] == ["delivered", "delivered"])
    assert c.count() == 0


def test_retries_are_driven_by_the_worker_scheduler(
    dsp: Dispatcher,
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> None:
    worker_factory(settings)
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"") if n <= 2 else (200, {}, b""))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    reqs = rec.wait_for(3)
    assert {r.headers["webhook-id"] for r in reqs} == {eid}
    wait_until(lambda: [d.state.value for d in dsp.deliveries(eid)] == ["delivered"])


def test_two_workers_2000_deliveries_no_loss_no_duplicates(
    dsp: Dispatcher,
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> None:
    w1, w2 = worker_factory(settings, concurrency=2), worker_factory(settings, concurrency=2)
    receivers = [receiver_factory() for _ in range(4)]
    for rec in receivers:
        dsp.subscribe(rec.url, ["*"])
    ids = dsp.enqueue_many([("bulk.event", {"i": i}) for i in range(500)])
    for rec in receivers:
        rec.wait_for(500, timeout_s=60)
    for rec in receivers:
        seen = Counter(r.headers["webhook-id"] for r in rec.requests)
        assert set(seen) == set(ids)
        assert max(seen.values()) == 1
    # both workers took part
    for w in (w1, w2):
        assert "Task dispatcher.deliver" in w.log()
    wait_until(lambda: dsp.redis.zcard(dsp.keys.due) == 0)
    assert {d.state.value for d in dsp.deliveries(ids[-1])} == {"delivered"}


def test_a_failing_receiver_is_one_log_line_per_attempt_never_a_traceback(
    dsp: Dispatcher,
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> None:
    """A retried attempt is one INFO line, a dead letter one WARNING line: reason, host, never URL or secret."""
    worker = worker_factory(settings)
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"no"))
    ep = dsp.update_endpoint(dsp.subscribe(rec.url + "/t0ken-in-path", ["*"]).id, retry_schedule=[0.2])
    eid = dsp.enqueue("a.b", {})
    wait_until(lambda: [d.state.value for d in dsp.deliveries(eid)] == ["dead"])
    (d,) = dsp.deliveries(eid)
    wait_until(lambda: "dead-lettered" in worker.log(), what="the dead letter's log line")
    log = worker.log()
    retried = [line for line in log.splitlines() if f"delivery {d.id} " in line and "next attempt" in line]
    dead = [line for line in log.splitlines() if f"delivery {d.id} " in line and "dead-lettered" in line]
    assert len(retried) == 1 and "INFO" in retried[0] and "attempt 1 failed: HTTP 500" in retried[0]
    assert len(dead) == 1 and "WARNING" in dead[0] and "attempt 2 dead-lettered: HTTP 500" in dead[0]
    assert f"endpoint {ep.id} (127.0.0.1)" in dead[0]
    assert "Traceback" not in log and "raised unexpected" not in log
    assert ep.secret not in log and "t0ken-in-path" not in log
