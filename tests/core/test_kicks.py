"""Kicks (``dispatcher.kicks.Kicker``) and the slots that bound them (``Queue.take_slots`` / ``handoff`` /
``count_due``), with a real Celery app whose broker is the test's Redis: each kick is read back from the
broker's queue, so what a worker would receive is what is asserted."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery

from dispatcher.errors import BrokerUnavailable
from dispatcher.kicks import TASK_DELIVER, TASK_FANOUT, Kicker, make_celery
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.work import Stage

PARALLELISM = 3


@pytest.fixture
def kick_settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(kick_parallelism=PARALLELISM, fanout_batch=10, deliver_inflight=64)


@pytest.fixture
def store(kick_settings: Settings) -> Iterator[Store]:
    s = Store(kick_settings)
    yield s
    s.close()


@pytest.fixture
def celery_app(kick_settings: Settings) -> Iterator[Celery]:
    app = make_celery(kick_settings, "test-kicks")
    yield app
    app.close()


@pytest.fixture
def kicker(kick_settings: Settings, store: Store, celery_app: Celery) -> Kicker:
    return Kicker(kick_settings, store.queue, celery_app)


@pytest.fixture
def sent(raw_redis: redis.Redis, kick_settings: Settings, celery_app: Celery) -> Callable[[], list[tuple[str, int]]]:
    """``sent()``: the kicks in the broker's queue (task name, slot), oldest first, as a worker would get them."""
    queue = kick_settings.key_prefix + celery_app.conf.task_default_queue  # kombu's global_keyprefix + queue

    def read() -> list[tuple[str, int]]:
        found = []
        for raw in reversed(raw_redis.lrange(queue, 0, -1)):  # LPUSHed: newest first
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            assert args == [] and set(kwargs) == {"slot"}  # a kick carries its slot and nothing else
            found.append((message["headers"]["task"], kwargs["slot"]))
        return found

    return read


def test_kick_takes_free_slots_and_sends_one_kick_per_slot(
    kicker: Kicker, store: Store, raw_redis: redis.Redis, sent: Callable[[], list[tuple[str, int]]]
) -> None:
    assert kicker.kick(Stage.FANOUT, 2) == 2
    assert sorted(sent()) == [(TASK_FANOUT, 1), (TASK_FANOUT, 2)]
    assert raw_redis.exists(store.keys.kick(Stage.FANOUT, 1), store.keys.kick(Stage.FANOUT, 2)) == 2
    assert kicker.kick(Stage.DELIVER) == 1  # the stages' slots are separate
    assert sent()[-1] == (TASK_DELIVER, 1)
    assert kicker.kick(Stage.DELIVER, 0) == 0 and len(sent()) == 3


def test_kicks_are_bounded_by_kick_parallelism_and_a_taken_slot_is_never_taken_twice(
    kicker: Kicker, sent: Callable[[], list[tuple[str, int]]]
) -> None:
    assert kicker.kick(Stage.DELIVER, 10) == PARALLELISM
    assert kicker.kick(Stage.DELIVER, 10) == 0  # every slot held: nothing more is sent
    assert kicker.kick(Stage.DELIVER) == 0
    assert sorted(sent()) == [(TASK_DELIVER, n) for n in range(1, PARALLELISM + 1)]


def test_many_publishers_at_once_still_send_one_kick_per_slot(
    kick_settings: Settings, celery_app: Celery, sent: Callable[[], list[tuple[str, int]]]
) -> None:
    stores = [Store(kick_settings) for _ in range(6)]
    kickers = [Kicker(kick_settings, s.queue, celery_app) for s in stores]
    start = threading.Barrier(len(kickers))
    taken: list[int] = []

    def publish(k: Kicker) -> None:
        start.wait()
        for _ in range(5):
            taken.append(k.kick(Stage.FANOUT, 2))

    threads = [threading.Thread(target=publish, args=(k,)) for k in kickers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert sum(taken) == PARALLELISM
    assert Counter(sent()) == {(TASK_FANOUT, n): 1 for n in range(1, PARALLELISM + 1)}


def test_handoff_frees_a_slot_when_nothing_is_due_and_keeps_it_when_work_is(
    kicker: Kicker, store: Store, raw_redis: redis.Redis, sent: Callable[[], list[tuple[str, int]]]
) -> None:
    assert kicker.kick(Stage.DELIVER, PARALLELISM) == PARALLELISM
    assert store.queue.handoff(Stage.DELIVER, 2) is False  # its task found nothing more: slot 2 is free
    assert kicker.kick(Stage.DELIVER, PARALLELISM) == 1
    assert sent()[-1] == (TASK_DELIVER, 2)
    raw_redis.zadd(store.keys.due, {"dlv_due": 0})
    assert store.queue.handoff(Stage.DELIVER, 3) is True  # work is due: the task keeps slot 3 ...
    kicker.publish(Stage.DELIVER, 3)  # ... and sends its own follow-up kick (as the tasks do)
    assert kicker.kick(Stage.DELIVER, PARALLELISM) == 0  # nobody else could take slot 3
    assert Counter(sent())[(TASK_DELIVER, 3)] == 2


def test_tick_kicks_each_stage_one_slot_per_batch_of_due_work(
    kicker: Kicker, store: Store, raw_redis: redis.Redis, sent: Callable[[], list[tuple[str, int]]]
) -> None:
    k = store.keys
    assert kicker.tick() == {"fanout": 0, "deliver": 0}  # nothing due: no kick
    raw_redis.zadd(k.fanout, {f"evt{i} a.b": 0 for i in range(15)})  # 15 due, batches of 10: 2 slots
    raw_redis.zadd(k.fanout, {f"later{i} a.b": 4_000_000_000_000 for i in range(50)})  # not due: not counted
    raw_redis.zadd(k.due, {f"dlv{i}": 0 for i in range(40)})  # 40 due, batches of 64: 1 slot
    assert kicker.tick() == {"fanout": 2, "deliver": 1}
    assert sorted(sent()) == [(TASK_DELIVER, 1), (TASK_FANOUT, 1), (TASK_FANOUT, 2)]
    raw_redis.delete(k.fanout)  # the fan-out tasks took every event
    raw_redis.zadd(k.due, {f"more{i}": 0 for i in range(500)})  # 540 due: more batches than slots
    assert kicker.tick() == {"fanout": 0, "deliver": PARALLELISM - 1}  # the free ones: bounded by parallelism
    assert kicker.tick() == {"fanout": 0, "deliver": 0}  # every slot held: no kick however much is due
    assert len(sent()) == 3 + PARALLELISM - 1
    assert Counter(sent())[(TASK_DELIVER, 1)] == 1  # no slot was kicked twice


def test_a_kick_the_broker_cannot_take_frees_its_slot_at_once(settings_for: Callable[..., Settings]) -> None:
    """The scheduler's next pass can kick again at once, instead of after the slot lapses."""
    with socket.socket() as s:  # a port nothing listens on: the broker is away, the store is not
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = settings_for(broker_url=f"redis://127.0.0.1:{port}/0", kick_parallelism=PARALLELISM)
    store, app = Store(settings), make_celery(settings, "test-kicks-away")
    try:
        kicker = Kicker(settings, store.queue, app)
        with pytest.raises(BrokerUnavailable):
            kicker.kick(Stage.DELIVER, 2)
        assert store.queue.held_slots(Stage.DELIVER) == 0
        (slot,) = store.queue.take_slots(Stage.FANOUT, 1)  # as enqueue() takes one before its kick
        with pytest.raises(BrokerUnavailable):
            kicker.publish(Stage.FANOUT, slot)
        assert store.queue.held_slots(Stage.FANOUT) == 0
    finally:
        app.close()
        store.close()
