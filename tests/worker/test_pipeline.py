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


def test_dead_letters_show_as_failed_tasks(
    dsp: Dispatcher,
    settings: Settings,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    wait_until: Callable[..., Any],
) -> None:
    """Flower sees each dead-lettered delivery as a failed ``dispatcher.dead_letter`` task."""
    worker = worker_factory(settings)
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"no"))
    ep = dsp.update_endpoint(dsp.subscribe(rec.url, ["*"]).id, retry_schedule=[])
    eid = dsp.enqueue("a.b", {})
    wait_until(lambda: [d.state.value for d in dsp.deliveries(eid)] == ["dead"])
    (d,) = dsp.deliveries(eid)
    wait_until(lambda: "DeadLettered" in worker.log(), what="a failed dead_letter task")
    log = worker.log()
    assert f"delivery {d.id} of event {eid} to endpoint {ep.id} is dead: HTTP 500" in log
    assert ep.secret not in log
