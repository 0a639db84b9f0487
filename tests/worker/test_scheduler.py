"""The scheduler loop (``worker.scheduler.run_scheduler``) in a thread, with a real Kicker, a real Celery app
and Redis: it kicks when due work has no slot holder and not while every slot is held, and it survives
Redis being unreachable (one warning, then retrying every interval) and carries on when Redis is back."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from dispatcher.cli.embedded import EmbeddedRedis
from dispatcher.kicks import TASK_DELIVER, TASK_FANOUT, Kicker, make_celery
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.work import Stage
from dispatcher.worker.scheduler import run_scheduler

INTERVAL_S = 0.02


class CountingKicker(Kicker):
    """The real Kicker, counting its ticks (so a test can wait for "N ticks happened", not for time)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ticks = 0
        self.sent: list[dict[str, int]] = []

    def tick(self) -> dict[str, int]:
        try:
            sent = super().tick()
            self.sent.append(sent)
            return sent
        finally:
            self.ticks += 1


class Running:
    """A scheduler thread; ``stop()`` ends it and says whether it ended."""

    def __init__(self, kicker: CountingKicker, wait_until: Callable[..., Any]) -> None:
        self.kicker = kicker
        self.wait_until = wait_until
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            run_scheduler(self.kicker, INTERVAL_S, self.stop_event)
        except BaseException as exc:  # the loop must never raise; the test reports it
            self.errors.append(exc)

    def ticks_more(self, n: int) -> None:
        """Wait until ``n`` more ticks have run."""
        target = self.kicker.ticks + n
        self.wait_until(lambda: self.kicker.ticks >= target, 20, 0.005, f"{n} more scheduler ticks")

    def stop(self) -> bool:
        self.stop_event.set()
        self.thread.join(10)
        return not self.thread.is_alive()


@pytest.fixture
def scheduler(wait_until: Callable[..., Any]) -> Iterator[Callable[[Settings], Running]]:
    """``scheduler(settings)``: run_scheduler in a thread over a CountingKicker and a real Celery app."""
    started: list[tuple[Running, Store, Celery]] = []

    def start(settings: Settings) -> Running:
        store, app = Store(settings), make_celery(settings, "test-scheduler")
        running = Running(CountingKicker(settings, store.queue, app), wait_until)
        started.append((running, store, app))
        return running

    yield start
    for running, store, app in started:
        running.stop()
        app.close()
        store.close()


@pytest.fixture
def sched_settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(kick_parallelism=2, fanout_batch=10, deliver_inflight=10)


@pytest.fixture
def kicks(raw_redis: redis.Redis, sched_settings: Settings) -> Callable[[], list[tuple[str, int]]]:
    """``kicks()``: the kicks in the broker's queue (task name, slot), oldest first."""
    queue = sched_settings.key_prefix + "dispatch"

    def read() -> list[tuple[str, int]]:
        out = []
        for raw in reversed(raw_redis.lrange(queue, 0, -1)):
            message = json.loads(raw)
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            out.append((message["headers"]["task"], kwargs["slot"]))
        return out

    return read


def test_kicks_only_when_due_work_has_no_slot_holder(
    scheduler: Callable[[Settings], Running],
    sched_settings: Settings,
    raw_redis: redis.Redis,
    kicks: Callable[[], list[tuple[str, int]]],
    wait_until: Callable[..., Any],
) -> None:
    keys = Store(sched_settings).keys
    running = scheduler(sched_settings)
    running.ticks_more(5)
    assert kicks() == []  # nothing due: nothing sent
    raw_redis.zadd(keys.due, {"dlv_later": 4_000_000_000_000})
    running.ticks_more(5)
    assert kicks() == []  # a retry not yet due: nothing sent
    raw_redis.zadd(keys.due, {f"dlv{i}": 0 for i in range(15)})  # due, no task holds a slot: 2 batches
    wait_until(lambda: len(kicks()) == 2, 10, 0.01, "the scheduler's kicks")
    assert sorted(kicks()) == [(TASK_DELIVER, 1), (TASK_DELIVER, 2)]
    running.ticks_more(10)
    assert len(kicks()) == 2  # both slots held (their tasks would be working): no more kicks
    raw_redis.delete(keys.kick(Stage.DELIVER, 2))  # one task died and its slot expired; work is still due
    wait_until(lambda: len(kicks()) == 3, 10, 0.01, "a kick for the freed slot")
    assert kicks()[-1] == (TASK_DELIVER, 2)
    running.ticks_more(10)
    assert len(kicks()) == 3
    raw_redis.zadd(keys.fanout, {"evt1 a.b": 0})  # the other stage: its own slots
    wait_until(lambda: len(kicks()) == 4, 10, 0.01, "a fan-out kick")
    assert kicks()[-1] == (TASK_FANOUT, 1)
    assert running.stop() and running.errors == []


def test_due_work_whose_slot_is_held_gets_no_second_kick(
    scheduler: Callable[[Settings], Running],
    sched_settings: Settings,
    raw_redis: redis.Redis,
    kicks: Callable[[], list[tuple[str, int]]],
) -> None:
    keys = Store(sched_settings).keys
    raw_redis.set(keys.kick(Stage.FANOUT, 1), "1", px=30_000)  # taken by enqueue(), its kick on its way
    raw_redis.zadd(keys.fanout, {"evt1 a.b": 0})  # one event: one batch, and it has a holder
    running = scheduler(sched_settings)
    running.ticks_more(5)
    assert kicks() == []


def test_a_store_error_is_logged_once_and_retried_every_interval(
    scheduler: Callable[[Settings], Running],
    settings_for: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = settings_for(redis_url="redis://127.0.0.1:1/0")  # nothing listens: connections are refused
    caplog.set_level(logging.INFO, logger="dispatcher.worker.scheduler")
    running = scheduler(down)
    running.ticks_more(5)
    assert running.thread.is_alive() and running.errors == []  # it keeps ticking
    assert running.kicker.sent == []  # every tick failed
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]  # once, not once per tick
    assert "cannot reach Redis or the broker (StoreUnavailable); retrying" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback per tick
    assert running.stop()


def test_the_scheduler_carries_on_when_redis_comes_back(
    scheduler: Callable[[Settings], Running],
    own_redis: EmbeddedRedis,
    settings_for: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
    wait_until: Callable[..., Any],
) -> None:
    settings = settings_for(redis_url=own_redis.url, key_prefix="sched:", kick_parallelism=2)
    caplog.set_level(logging.INFO, logger="dispatcher.worker.scheduler")
    client = redis.Redis.from_url(own_redis.url)
    keys = Store(settings).keys
    running = scheduler(settings)
    running.ticks_more(3)
    own_redis.process.terminate()  # type: ignore[union-attr]
    own_redis.process.wait(10)  # type: ignore[union-attr]
    wait_until(lambda: "cannot reach Redis" in caplog.text, 20, 0.01, "the scheduler to notice the outage")
    running.ticks_more(3)
    own_redis.process = None
    own_redis.start()
    wait_until(lambda: "Redis reachable again" in caplog.text, 20, 0.01, "the scheduler to notice Redis is back")
    client.zadd(keys.due, {"dlv_retry": 0})  # a retry comes due
    wait_until(lambda: client.llen(settings.key_prefix + "dispatch") == 1, 20, 0.01, "a kick after the outage")
    assert client.exists(keys.kick(Stage.DELIVER, 1))
    assert running.stop() and running.errors == []
    client.close()
