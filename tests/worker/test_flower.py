"""Flower's views are the webhook's views: a real worker and a real Flower process, read through Flower's API.

Each delivery attempt is a task (delivered = SUCCESS, retried = RETRY, dead-lettered = FAILURE), so Flower's
``/api/tasks`` and its ``/metrics`` agree with the dispatcher's ``dispatcher_deliveries_total``.
"""

from __future__ import annotations

import ast
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import Dispatcher
from dispatcher.settings import Settings

if TYPE_CHECKING:
    from tests.conftest import Flower, Receiver, Worker

OUTCOME_STATE = {"delivered": "SUCCESS", "retrying": "RETRY", "dead": "FAILURE"}
STATE_EVENT = {"SUCCESS": "task-succeeded", "RETRY": "task-retried", "FAILURE": "task-failed"}


def deliveries_total(api: TestClient) -> dict[str, Counter[str]]:
    """The dispatcher's ``dispatcher_deliveries_total``: outcome counts per endpoint."""
    resp = api.get("/metrics")
    assert resp.status_code == 200
    out: dict[str, Counter[str]] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            if s.name == "dispatcher_deliveries_total":
                out.setdefault(s.labels["endpoint_id"], Counter())[s.labels["outcome"]] += int(s.value)
    return out


def flower_tasks(flower: Flower) -> dict[str, dict[str, Any]]:
    return dict(json.loads(flower.get("/api/tasks")))


def delivered_in(flower: Flower, endpoint_id: str) -> tuple[int, int]:
    """(tasks, deliveries) Flower holds, all SUCCESS for ``endpoint_id``: a tally's kwargs count its attempts.

    A task Flower has seen received but not yet succeeded (its two events are read one after the other)
    counts as no delivery yet; once it is done it must be a SUCCESS for ``endpoint_id``.
    """
    tasks = [t for t in flower_tasks(flower).values() if t["state"] != "RECEIVED"]
    assert all(t["state"] == "SUCCESS" and ast.literal_eval(t["args"])[0] == endpoint_id for t in tasks)
    return len(tasks), sum(ast.literal_eval(t["kwargs"]).get("delivered", 1) for t in tasks)


def flower_events(flower: Flower) -> Counter[str]:
    """Flower's ``flower_events_total``, summed by event type."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(flower.get("/metrics").decode()):
        for s in family.samples:
            if s.name == "flower_events_total":
                counts[s.labels["type"]] += int(s.value)
    return counts


def test_flower_counts_deliveries_retries_and_dead_letters_as_the_dispatcher_does(
    dsp: Dispatcher,
    settings: Settings,
    api: TestClient,
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    flower_factory: Callable[..., Flower],
    wait_until: Callable[..., Any],
) -> None:
    n_ok, n_bad, n_batch = 20, 5, 12
    flower = flower_factory(settings)
    worker_factory(settings)
    ok, bad, batch = receiver_factory(), receiver_factory(reply=lambda n, r: (500, {}, b"no")), receiver_factory()
    ep_ok = dsp.subscribe(ok.url + "/secret-path", ["order.paid"])
    ep_bad = dsp.update_endpoint(dsp.subscribe(bad.url, ["order.refunded"]).id, retry_schedule=[0.2, 0.2])
    ep_batch = dsp.update_endpoint(dsp.subscribe(batch.url, ["report.*"]).id, max_batch=5)
    dsp.enqueue_many([("order.paid", {"i": i}) for i in range(n_ok)])
    bad_ids = dsp.enqueue_many([("order.refunded", {"i": i}) for i in range(n_bad)])
    dsp.enqueue_many([("report.ready", {"i": i}) for i in range(n_batch)])
    expected = {
        ep_ok.id: Counter(delivered=n_ok),
        ep_bad.id: Counter(retrying=2 * n_bad, dead=n_bad),
        ep_batch.id: Counter(delivered=n_batch),
    }
    wait_until(lambda: deliveries_total(api) == expected, timeout_s=60, what="every outcome recorded")
    wait_until(lambda: all(d.state.value == "dead" for e in bad_ids for d in dsp.deliveries(e)))

    def by_endpoint() -> dict[str, Counter[str]]:
        """Flower's tasks: per endpoint, deliveries by state (a batch's task counts the events it carried)."""
        out: dict[str, Counter[str]] = {}
        for task in flower_tasks(flower).values():
            endpoint_id, _host = ast.literal_eval(task["args"])
            carried = ast.literal_eval(task["kwargs"]).get("events", 1)
            out.setdefault(endpoint_id, Counter())[task["state"]] += carried
        return out

    want = {ep: Counter({OUTCOME_STATE[o]: n for o, n in c.items()}) for ep, c in expected.items()}
    wait_until(lambda: by_endpoint() == want, timeout_s=30, what=f"Flower's tasks to read {want}")

    # Flower's Prometheus counters: one terminal event per attempt (a batched POST is one attempt)
    tasks = flower_tasks(flower)
    states = Counter(t["state"] for t in tasks.values())
    events = flower_events(flower)
    assert {STATE_EVENT[s]: n for s, n in states.items()} == {k: events[k] for k in STATE_EVENT.values() if events[k]}
    assert events["task-received"] == len(tasks)
    assert states["RETRY"] == 2 * n_bad and states["FAILURE"] == n_bad
    batched = [t for t in tasks.values() if ast.literal_eval(t["args"])[0] == ep_batch.id]
    assert len(batched) == batch.count() < n_batch  # one task per POST, carrying several events

    # what a row says: which endpoint (host only), which event type, why, and when the next attempt is
    for task in tasks.values():
        assert not task["name"].startswith("dispatcher."), "kicks are not tasks in Flower"
        assert ast.literal_eval(task["args"])[1] == "127.0.0.1"
    names = Counter(t["name"] for t in tasks.values())
    assert names["webhook:order.paid"] == n_ok and names["webhook:report.ready"] == len(batched)
    retried = [t for t in tasks.values() if t["state"] == "RETRY"]
    assert all("HTTP 500; next attempt at 20" in t["exception"] for t in retried)
    dead = [t for t in tasks.values() if t["state"] == "FAILURE"]
    assert all(t["exception"] == "dead-lettered: HTTP 500" and not t["traceback"] for t in dead)
    delivered = [t for t in tasks.values() if t["state"] == "SUCCESS"]
    assert all(t["result"] == "HTTP 200" and 0 < t["runtime"] < 5 for t in delivered)
    text = flower.get("/api/tasks").decode() + flower.get("/metrics").decode()
    # the receiver's address (host:port) never shows; its port alone can appear inside any number (a runtime)
    assert "secret-path" not in text and ep_ok.secret not in text and f":{ok.port}" not in text


def test_flower_every_n_aggregates_one_task_per_endpoint(
    dsp: Dispatcher,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    flower_factory: Callable[..., Flower],
    wait_until: Callable[..., Any],
) -> None:
    """``flower_every`` = 10: 30 deliveries to one endpoint are 3 tasks, each counting its 10 outcomes."""
    settings = settings_for(flower_every=10)
    flower = flower_factory(settings)
    worker_factory(settings)
    rec = receiver_factory()
    ep = dsp.subscribe(rec.url, ["*"])
    dsp.enqueue_many([("order.paid", {"i": i}) for i in range(30)])
    rec.wait_for(30)

    wait_until(lambda: delivered_in(flower, ep.id)[1] == 30, timeout_s=30, what="30 deliveries in Flower")
    assert delivered_in(flower, ep.id)[0] <= 6  # 3 full tasks of 10, plus partial ones closed when a task ended
    assert all("delivered" in ast.literal_eval(t["kwargs"]) for t in flower_tasks(flower).values())  # all tallies


def test_flower_pages_show_deliveries_and_a_failing_endpoint(
    dsp: Dispatcher,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    flower_factory: Callable[..., Flower],
    browser_page: Any,
    screenshots: Path,
    wait_until: Callable[..., Any],
) -> None:
    """Flower's dashboard and Tasks page in a real browser, during a run with a failing endpoint; the screenshots
    are README's (refresh: DISPATCHER_SCREENSHOTS_DIR=docs/screenshots pytest tests/worker/test_flower.py)."""
    settings = settings_for(retry_schedule=(1.0, 2.0))
    flower = flower_factory(settings)
    worker_factory(settings)
    ok, bad = receiver_factory(), receiver_factory(reply=lambda n, r: (503, {}, b"maintenance"))
    dsp.subscribe(ok.url, ["order.*"])
    dsp.update_endpoint(dsp.subscribe(bad.url, ["order.refunded"]).id, retry_schedule=[1.0, 2.0])
    for i in range(40):
        dsp.enqueue("order.paid" if i % 4 else "order.refunded", {"order": 1000 + i})
    dsp.enqueue_many([("invoice.created", {"n": i}) for i in range(5)])
    wait_until(lambda: Counter(t["state"] for t in flower_tasks(flower).values())["FAILURE"] >= 10, timeout_s=60)
    late = dsp.enqueue_many([("order.paid", {"order": 2000 + i}) for i in range(4)])  # newest rows: a mix
    dsp.enqueue("order.refunded", {"order": 2004})
    wait_until(lambda: all(f"{d.id}.1" in flower_tasks(flower) for e in late for d in dsp.deliveries(e)))

    page = browser_page
    page.goto(f"{flower.url}/tasks")
    page.wait_for_selector("text=webhook:order.paid")
    page.wait_for_selector("text=FAILURE")
    page.wait_for_selector("text=RETRY")
    page.screenshot(path=str(screenshots / "flower-tasks.png"))
    page.goto(f"{flower.url}/")
    page.wait_for_timeout(2000)  # the counters fill in from Flower's API
    text = page.inner_text("body")
    assert "Succeeded" in text and "Failed" in text
    page.screenshot(path=str(screenshots / "flower-dashboard.png"))


def test_over_the_cap_attempts_are_counted_per_endpoint_never_lost(
    dsp: Dispatcher,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    flower_factory: Callable[..., Flower],
    wait_until: Callable[..., Any],
) -> None:
    """``flower_max_tasks_per_s`` = 5: past 5 attempts in a second, one task per endpoint per second counts
    the rest of that second's attempts, a burst after a pause included."""
    settings = settings_for(flower_max_tasks_per_s=5)
    flower = flower_factory(settings)
    worker_factory(settings)
    rec = receiver_factory()
    ep = dsp.subscribe(rec.url, ["*"])
    dsp.enqueue_many([("order.paid", {"i": i}) for i in range(100)])
    rec.wait_for(100)
    time.sleep(1.2)  # a pause: the next burst begins a fresh window, and is capped within it
    dsp.enqueue_many([("order.paid", {"i": i}) for i in range(100, 400)])
    rec.wait_for(400)

    wait_until(lambda: delivered_in(flower, ep.id)[1] == 400, timeout_s=30, what="400 deliveries counted in Flower")
    assert delivered_in(flower, ep.id)[0] < 150  # the first 100 a task each, the next 300 in a few
