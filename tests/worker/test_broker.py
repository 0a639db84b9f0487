"""RabbitMQ as the broker (``DISPATCHER_BROKER_URL=amqp://...``): kicks go through the machine's RabbitMQ while
every event, delivery and slot stays in Redis; a broker outage loses nothing; a broker that cannot work fails
at start with one clear line that never shows its password.

The outage is a real one for the processes involved: they reach RabbitMQ through a TCP proxy of the test's
own, which drops every connection and refuses new ones for a while (restarting the machine's RabbitMQ from a
test would hit every other user of it). Queue and exchanges are named after the test's key prefix and deleted
afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from kombu import Connection

from dispatcher import Dispatcher
from dispatcher.errors import ConfigError
from dispatcher.kicks import celery_config
from dispatcher.settings import Settings
from dispatcher.store.work import Stage

if TYPE_CHECKING:
    from tests.conftest import Flower, Receiver, RedisTopology, SchedulerProcess, Worker

RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
PASSWORD = "guest"  # the machine's RabbitMQ account is guest/guest
ROOT = Path(__file__).resolve().parents[2]


def _rabbit_listens() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((RABBIT_HOST, RABBIT_PORT)) == 0


def amqp_url(port: int = RABBIT_PORT) -> str:
    return f"amqp://guest:{PASSWORD}@{RABBIT_HOST}:{port}//"


class BrokerProxy:
    """A TCP proxy to RabbitMQ on its own event-loop thread: ``cut()`` drops every connection and stops
    listening (connecting is refused, as while a broker restarts), ``reopen()`` listens again on the same port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # accepted since the start, for the test to see its processes came back
        self.reopen()

    @property
    def url(self) -> str:
        return amqp_url(self.port)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(RABBIT_HOST, RABBIT_PORT)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self.writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}

    def reopen(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

        self._run(start())

    def cut(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in list(self.writers):
                writer.transport.abort()

        self._run(stop())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def rabbit() -> str:
    """The machine's RabbitMQ (guest/guest on 127.0.0.1:5672); the test is skipped when nothing listens there."""
    if not _rabbit_listens():
        pytest.skip(f"no RabbitMQ listens on {RABBIT_HOST}:{RABBIT_PORT}")
    return amqp_url()


@pytest.fixture
def broker_names(rabbit: str, prefix: str) -> Iterator[str]:
    """The test's prefix; afterwards the queue and exchanges Celery declared under it are deleted (ours only)."""
    yield prefix
    queues = [f"{prefix}dispatch"]
    exchanges = [f"{prefix}dispatch", f"{prefix}celeryev", f"{prefix}celery.pidbox", f"reply.{prefix}celery.pidbox"]
    with Connection(rabbit, connect_timeout=5) as conn:
        for name in queues:
            with contextlib.suppress(Exception), conn.channel() as channel:
                channel.queue_delete(name)
        for name in exchanges:
            with contextlib.suppress(Exception), conn.channel() as channel:
                channel.exchange_delete(name)


@pytest.fixture
def dispatcher_for() -> Iterator[Callable[[Settings], Dispatcher]]:
    """``dispatcher_for(settings)``: a Dispatcher (a producer) on those settings, closed after the test."""
    made: list[Dispatcher] = []

    def make(settings: Settings) -> Dispatcher:
        made.append(Dispatcher(settings))
        return made[-1]

    yield make
    for dsp in made:
        dsp.close()


@pytest.fixture
def proxy(rabbit: str) -> Iterator[BrokerProxy]:
    p = BrokerProxy()
    yield p
    p.close()


def rabbit_queue_exists(name: str) -> bool:
    with Connection(amqp_url(), connect_timeout=5) as conn, conn.channel() as channel:
        try:
            channel.queue_declare(name, passive=True)
        except Exception:  # NOT_FOUND closes the channel
            return False
        return True


def assert_each_once(rec: Receiver, ids: list[str]) -> None:
    seen = Counter(r.headers["webhook-id"] for r in rec.requests)
    assert set(ids) <= set(seen), f"{len(set(ids) - set(seen))} events never arrived"
    assert max(seen.values()) == 1, f"delivered twice: {[i for i, n in seen.items() if n > 1][:5]}"


# -- configuration refused at start -----------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["sqs://AKIA:hunter2-secret@sqs.example", "hunter2-secret", "amqp://u:hunter2-secret@host:notaport//"]
)
def test_an_unsupported_or_malformed_broker_url_is_refused_without_showing_it(url: str, redis_url: str) -> None:
    with pytest.raises(ConfigError, match="DISPATCHER_BROKER_URL") as err:
        Settings(redis_url=redis_url, broker_url=url)
    assert "hunter2" not in str(err.value)


def test_supported_broker_urls_are_accepted(redis_url: str) -> None:
    for url in (
        "amqp://guest:guest@127.0.0.1:5672//",
        "amqps://u:p@mq.example/vh",
        "rediss://h:6380/1",
        "redis+sentinel://:p@10.0.0.1:26379,10.0.0.2:26379/dispatch/0",
    ):
        assert Settings(redis_url=redis_url, broker_url=url).celery_broker_url == url


def test_on_rabbitmq_the_queue_and_exchanges_carry_the_prefix_and_kicks_are_confirmed(redis_url: str) -> None:
    amqp = celery_config(Settings(redis_url=redis_url, broker_url=amqp_url(), key_prefix="app1:"))
    assert (amqp["task_default_queue"], amqp["event_exchange"], amqp["control_exchange"]) == (
        "app1:dispatch",
        "app1:celeryev",
        "app1:celery",
    )
    assert amqp["broker_transport_options"] == {"confirm_publish": True}
    on_redis = celery_config(Settings(redis_url=redis_url, key_prefix="app1:"))  # Redis: prefixed keys instead
    assert on_redis["task_default_queue"] == "dispatch" and "event_exchange" not in on_redis
    assert on_redis["broker_transport_options"]["global_keyprefix"] == "app1:"


def _run(
    argv: list[str], settings: Settings, settings_env: Callable[[Settings], dict[str, str]], **env: str
) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    child.update(settings_env(settings), PYTHONPATH=str(ROOT), **env)
    return subprocess.run(argv, cwd=ROOT, env=child, capture_output=True, text=True, timeout=60)


def test_a_worker_with_an_unsupported_broker_stops_at_once_with_one_line(
    settings: Settings, settings_env: Callable[[Settings], dict[str, str]], raw_redis: redis.Redis, prefix: str
) -> None:
    bad = "sqs://AKIA:hunter2-secret@sqs.example"
    for argv in (
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-c", "1"],
        [sys.executable, "-m", "dispatcher", "worker", "-c", "1"],
        [sys.executable, "-m", "dispatcher", "scheduler"],
    ):
        done = _run(argv, settings, settings_env, DISPATCHER_BROKER_URL=bad)
        out = done.stdout + done.stderr
        assert done.returncode != 0, out
        assert "DISPATCHER_BROKER_URL: unsupported broker (the scheme sqs://)" in out
        assert "hunter2" not in out and "Traceback" not in out, out
    assert not list(raw_redis.scan_iter(match=f"{prefix}*"))  # nothing written


def test_a_worker_whose_broker_does_not_answer_stops_naming_the_setting_masking_the_password(
    settings_for: Callable[..., Settings],
    settings_env: Callable[[Settings], dict[str, str]],
    raw_redis: redis.Redis,
    prefix: str,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = settings_for(broker_url=f"amqp://guest:hunter2-secret@127.0.0.1:{port}//", broker_startup_timeout_s=1)
    for argv in (
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-c", "1", "-l", "info"],
        [sys.executable, "-m", "dispatcher", "scheduler"],
    ):
        started = time.monotonic()
        done = _run(argv, settings, settings_env)
        out = done.stdout + done.stderr
        assert done.returncode != 0, out
        assert time.monotonic() - started < 30
        assert f"cannot reach the broker amqp://guest:***@127.0.0.1:{port}// (from DISPATCHER_BROKER_URL)" in out
        assert "hunter2" not in out and "Traceback" not in out, out
    assert not list(raw_redis.scan_iter(match=f"{prefix}*"))  # nothing written


def test_every_process_refuses_a_redis_cluster_node_at_start_with_one_line(
    settings_for: Callable[..., Settings],
    settings_env: Callable[[Settings], dict[str, str]],
    redis_topology: RedisTopology,
) -> None:
    """Not yet supported: say so at start (and what to use), instead of MOVED errors once work arrives."""
    node = redis_topology.server(cluster_node=True)
    settings = settings_for(redis_url=f"redis://:hunter2-secret@127.0.0.1:{node.port}/0")
    cli = [sys.executable, "-m", "dispatcher"]
    for argv in (
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-c", "1"],
        [*cli, "scheduler"],
        [*cli, "flower", "--port", "1"],
        [*cli, "enqueue", "order.paid", "{}"],
    ):
        done = _run(argv, settings, settings_env)
        out = done.stdout + done.stderr
        assert done.returncode != 0, out
        assert "DISPATCHER_REDIS_URL points at a node of a Redis Cluster" in out and "Sentinel" in out, out
        assert "hunter2" not in out and "Traceback" not in out, out
    assert node.client().dbsize() == 0  # nothing written


# -- end to end through RabbitMQ --------------------------------------------------------------------
def test_events_go_end_to_end_through_rabbitmq_once_each(
    rabbit: str,
    broker_names: str,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    dispatcher_for: Callable[[Settings], Dispatcher],
    raw_redis: redis.Redis,
    wait_until: Callable[..., Any],
) -> None:
    settings = settings_for(broker_url=rabbit)
    worker = worker_factory(settings, concurrency=2)
    rec = receiver_factory()
    dsp = dispatcher_for(settings)
    dsp.subscribe(rec.url, ["*"])
    ids = dsp.enqueue_many([("order.paid", {"i": i}) for i in range(300)])
    ids += [dsp.enqueue("order.refunded", {"i": i}) for i in range(50)]  # one kick each
    rec.wait_for(len(ids), timeout_s=60)
    assert_each_once(rec, ids)
    wait_until(lambda: {d.state.value for d in dsp.deliveries(ids[-1])} == {"delivered"})
    # the kicks went through RabbitMQ, not Redis; the banner shows the broker with its password masked
    assert rabbit_queue_exists(f"{broker_names}dispatch")
    assert not raw_redis.exists(f"{broker_names}dispatch")
    log = worker.log()
    assert "Task dispatcher.deliver" in log
    assert "amqp://guest:**@127.0.0.1:5672//" in log  # Celery's banner
    assert "kicks through the broker amqp://guest:***@127.0.0.1:5672// (from DISPATCHER_BROKER_URL)" in log
    assert "guest:guest@" not in log


def test_flower_shows_the_deliveries_over_rabbitmq(
    rabbit: str,
    broker_names: str,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    flower_factory: Callable[..., Flower],
    dispatcher_for: Callable[[Settings], Dispatcher],
    wait_until: Callable[..., Any],
) -> None:
    settings = settings_for(broker_url=rabbit)
    flower = flower_factory(settings)
    worker_factory(settings)
    rec = receiver_factory()
    dsp = dispatcher_for(settings)
    ep = dsp.subscribe(rec.url, ["user.*"])
    ids = dsp.enqueue_many([("user.created", {"i": i}) for i in range(10)])
    rec.wait_for(10)

    def tasks() -> dict[str, Any]:
        return dict(json.loads(flower.get("/api/tasks")))

    wait_until(lambda: len(tasks()) >= 10, 20, 0.2, "10 delivery tasks in Flower")
    shown = tasks().values()
    assert {t["name"] for t in shown} == {"webhook:user.created"}
    assert {t["state"] for t in shown} == {"SUCCESS"}
    assert {json.loads(t["kwargs"].replace("'", '"'))["event_id"] for t in shown} == set(ids)
    assert all(ep.id in t["args"] for t in shown)
    assert "guest:guest@" not in flower.log_path.read_text(errors="replace")


def test_a_broker_outage_loses_no_event_and_delivers_none_twice(
    rabbit: str,
    broker_names: str,
    proxy: BrokerProxy,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    dispatcher_for: Callable[[Settings], Dispatcher],
    wait_until: Callable[..., Any],
) -> None:
    """Kicks sent while RabbitMQ is away are lost (or never sent); the events are safe in Redis and the
    scheduler inside the worker kicks again once the broker is back."""
    settings = settings_for(broker_url=proxy.url)
    worker = worker_factory(settings, concurrency=2)
    rec = receiver_factory()
    dsp = dispatcher_for(settings)
    dsp.subscribe(rec.url, ["*"])
    before = dsp.enqueue_many([("a.before", {"i": i}) for i in range(200)])
    rec.wait_for(len(before), timeout_s=60)
    queue = dsp.store.queue
    # idle: no task runs (one would fan out and deliver by itself), so only a kick can move new events
    wait_until(lambda: not queue.held_slots(Stage.FANOUT) and not queue.held_slots(Stage.DELIVER), 30, 0.05, "idle")

    proxy.cut()  # every connection dropped, new ones refused: the broker is away
    during = dsp.enqueue_many([("a.during", {"i": i}) for i in range(150)])  # accepted: the events are in Redis
    during += [dsp.enqueue("a.during.one", {"i": i}) for i in range(5)]
    wait_until(lambda: "Connection to broker lost" in worker.log(), 20, 0.1, "the worker to see the outage")
    wait_until(lambda: "scheduler: cannot reach Redis or the broker" in worker.log(), 20, 0.1, "a kick to fail")
    assert rec.count() == len(before)  # nothing moved: no kick got through
    accepted = proxy.connections

    proxy.reopen()
    rec.wait_for(len(before) + len(during), timeout_s=90)
    assert_each_once(rec, before + during)
    wait_until(lambda: {d.state.value for d in dsp.deliveries(during[-1])} == {"delivered"})
    assert proxy.connections > accepted  # the worker came back through the proxy
    log = worker.log()
    assert "scheduler: Redis reachable again" in log  # and the broker: its kicks went out
    assert "CPendingDeprecationWarning" not in log  # Celery's warning at each connection loss is silenced
    assert "guest:guest@" not in log


def test_the_standalone_scheduler_kicks_retries_through_rabbitmq(
    rabbit: str,
    broker_names: str,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    scheduler_factory: Callable[..., SchedulerProcess],
    dispatcher_for: Callable[[Settings], Dispatcher],
    wait_until: Callable[..., Any],
) -> None:
    """Retries come due in Redis; only the standalone scheduler (the worker's own is off) kicks for them."""
    settings = settings_for(broker_url=rabbit, embedded_scheduler=False)
    scheduler = scheduler_factory(settings)
    worker_factory(settings)
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"") if n <= 2 else (200, {}, b""))
    dsp = dispatcher_for(settings)
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    assert {r.headers["webhook-id"] for r in rec.wait_for(3)} == {eid}
    wait_until(lambda: [d.state.value for d in dsp.deliveries(eid)] == ["delivered"])
    assert rec.count() == 3
    log = scheduler.log()
    assert "kicks through the broker amqp://guest:***@127.0.0.1:5672// (from DISPATCHER_BROKER_URL)" in log
    assert "guest:guest@" not in log


def test_a_broker_outage_while_workers_deliver_neither_stalls_them_nor_sends_anything_twice(
    rabbit: str,
    broker_names: str,
    proxy: BrokerProxy,
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    worker_factory: Callable[..., Worker],
    dispatcher_for: Callable[[Settings], Dispatcher],
    wait_until: Callable[..., Any],
) -> None:
    """Running tasks go on delivering while the broker is away (their Flower events are dropped, and trying
    to send them must not hold the loop until the leases run out and the deliveries go out again); what
    is left waits for the broker and is then delivered, each once."""
    settings = settings_for(broker_url=proxy.url)
    worker = worker_factory(settings, concurrency=2)
    rec = receiver_factory(delay_s=0.05)
    dsp = dispatcher_for(settings)
    dsp.subscribe(rec.url, ["*"])
    ids = dsp.enqueue_many([("a.busy", {"i": i}) for i in range(2000)])
    rec.wait_for(100, timeout_s=60)

    proxy.cut()
    at_cut = rec.count()
    rec.wait_for(at_cut + 100, timeout_s=10)  # the loops were not held up by the broker's absence
    wait_until(lambda: "Flower events not sent" in worker.log(), 20, 0.1, "the events to be dropped")
    wait_until(lambda: "scheduler: cannot reach Redis or the broker" in worker.log(), 30, 0.1, "a kick to fail")

    proxy.reopen()
    wait_until(lambda: set(ids) <= {r.headers["webhook-id"] for r in rec.wait_for(0)}, 120, 0.2, "every event")
    assert_each_once(rec, ids)
    assert "raised unexpected" not in worker.log()  # a kick that could not be sent is one warning line
