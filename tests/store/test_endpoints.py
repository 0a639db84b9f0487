"""Endpoints in Redis (``store.endpoints``): validation of kinds and URLs, and the compare-and-set writes
of the ``endpoint_write`` script."""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from dispatcher import Dispatcher, EndpointNotFound, InvalidInput, InvalidURL
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.endpoints import EndpointStore

if TYPE_CHECKING:
    from tests.conftest import Receiver


def test_a_poll_endpoint_has_no_url_and_every_other_kind_needs_one(dsp: Dispatcher, receiver: Receiver) -> None:
    ep = dsp.subscribe_poll(["order.*"])
    assert (ep.kind, ep.url, ep.event_types, ep.pollable) == ("poll", "", ["order.*"], True)
    assert dsp.subscribe(None, ["a.b"], kind="poll").kind == "poll"
    with pytest.raises(InvalidURL, match="needs a URL"):
        dsp.subscribe(None, ["*"])
    with pytest.raises(InvalidInput, match="no URL"):
        dsp.subscribe(receiver.url, ["*"], kind="poll")
    with pytest.raises(InvalidInput, match="no URL"):
        dsp.update_endpoint(ep.id, url=receiver.url)
    with pytest.raises(InvalidInput, match="kind must be"):
        dsp.subscribe(receiver.url, ["*"], kind="carrier-pigeon")
    with pytest.raises(InvalidInput, match="also_poll"):
        dsp.subscribe(receiver.url, ["*"], also_poll="yes")
    webhook = dsp.subscribe(receiver.url, ["*"])
    assert not webhook.pollable and dsp.update_endpoint(webhook.id, also_poll=True).pollable


# -- endpoint_write: compare and set ---------------------------------------------------------------------
def version(r: redis.Redis, store: Store) -> int:
    return int(r.get(store.keys.endpoints_version) or 0)


def test_a_write_happens_only_if_the_endpoint_is_as_it_was_read(store: Store, raw_redis: redis.Redis) -> None:
    ep = store.endpoints.create("https://example.com/h", ["*"])
    k = store.keys
    read = raw_redis.hget(k.endpoints, ep.id)
    assert read is not None
    v = version(raw_redis, store)
    changed = ep.model_copy(update={"description": "first"}).model_dump_json().encode()
    assert store.endpoints._write(ep.id, read, changed) == 1
    assert raw_redis.hget(k.endpoints, ep.id) == changed and version(raw_redis, store) == v + 1
    other = ep.model_copy(update={"description": "second"}).model_dump_json().encode()
    assert store.endpoints._write(ep.id, read, other) == 0  # changed since it was read: nothing written
    assert store.endpoints._write(ep.id, read, b"") == 0  # a delete from a stale read neither
    assert raw_redis.hget(k.endpoints, ep.id) == changed and version(raw_redis, store) == v + 1
    assert store.endpoints._write(ep.id, b"", other) == 0  # "must not exist yet": it does


def test_a_deleted_endpoint_never_comes_back(store: Store, raw_redis: redis.Redis) -> None:
    ep = store.endpoints.create(None, ["*"], kind="poll")
    k = store.keys
    raw_redis.xadd(k.stream(ep.id), {"id": "msg_1"})
    read = raw_redis.hget(k.endpoints, ep.id)
    assert read is not None
    assert store.endpoints._write(ep.id, read, b"") == 1
    assert not raw_redis.hexists(k.endpoints, ep.id) and not raw_redis.exists(k.stream(ep.id))  # log deleted too
    v = version(raw_redis, store)
    revived = ep.model_copy(update={"description": "late"}).model_dump_json().encode()
    assert store.endpoints._write(ep.id, read, revived) == -1  # a writer that read it before the delete
    assert store.endpoints._write(ep.id, read, b"") == -1
    assert not raw_redis.hexists(k.endpoints, ep.id) and version(raw_redis, store) == v
    with pytest.raises(EndpointNotFound):
        store.endpoints.update(ep.id, description="late")
    assert not raw_redis.hexists(k.endpoints, ep.id)


@pytest.fixture
def meddler(settings: Settings) -> Iterator[EndpointStore]:
    """Another writer of the same endpoints (another process, say)."""
    other = Store(settings)
    yield other.endpoints
    other.close()


def interleave(monkeypatch: pytest.MonkeyPatch, store: Store, between: Callable[[], object]) -> None:
    """Run ``between`` once, right after ``store`` reads an endpoint for its next change."""
    original = store.endpoints._read
    pending = [between]

    def read_then_meddle(endpoint_id: str) -> bytes:
        raw = original(endpoint_id)
        while pending:
            pending.pop()()
        return raw

    monkeypatch.setattr(store.endpoints, "_read", read_then_meddle)


def test_a_change_racing_another_is_applied_on_top_of_it(
    store: Store, meddler: EndpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An auto-disable lands between an update's read and write: the update is re-applied to the disabled
    endpoint, so neither change undoes the other."""
    ep = store.endpoints.create("https://example.com/h", ["*"])
    interleave(monkeypatch, store, lambda: meddler.set_enabled(ep.id, False, "failing for 5 days"))
    updated = store.endpoints.update(ep.id, description="renamed", max_batch=7)
    assert (updated.enabled, updated.disabled_reason) == (False, "failing for 5 days")
    stored = meddler.get(ep.id)
    assert (stored.description, stored.max_batch, stored.enabled) == ("renamed", 7, False)
    assert stored.disabled_reason == "failing for 5 days"


def test_a_change_racing_a_delete_fails_and_writes_nothing(
    store: Store, meddler: EndpointStore, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = store.endpoints.create("https://example.com/h", ["*"])
    interleave(monkeypatch, store, lambda: meddler.delete(ep.id))
    with pytest.raises(EndpointNotFound):
        store.endpoints.set_enabled(ep.id, False, "maintenance")
    assert not raw_redis.hexists(store.keys.endpoints, ep.id)


def test_every_write_bumps_the_version_workers_watch(store: Store, raw_redis: redis.Redis) -> None:
    assert version(raw_redis, store) == 0
    ep = store.endpoints.create("https://example.com/h", ["*"])
    store.endpoints.update(ep.id, description="x")
    store.endpoints.set_enabled(ep.id, False)
    store.endpoints.rotate_secret(ep.id)
    store.endpoints.delete(ep.id)
    assert version(raw_redis, store) == 5


# -- concurrent writers ----------------------------------------------------------------------------------
def _hammer(writers: list[Callable[[], object]], rounds: int) -> list[BaseException]:
    """Run each writer ``rounds`` times in its own thread, all at once; returns what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(writers))

    def run(write: Callable[[], object]) -> None:
        start.wait()
        for _ in range(rounds):
            try:
                write()
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return errors


def test_concurrent_edits_never_undo_a_disable(settings: Settings) -> None:
    """Edits racing an auto-disable (another process, another client) keep it: only an explicit enable
    undoes it, and every edit lands."""
    dispatchers = [Dispatcher(settings) for _ in range(4)]
    try:
        ep = dispatchers[0].subscribe("https://example.com/h", ["*"])
        counter = itertools.count()

        def edit(d: Dispatcher) -> Callable[[], object]:
            return lambda: d.update_endpoint(ep.id, description=f"edit {next(counter)}", max_batch=2)

        def disable() -> object:
            return dispatchers[3].disable_endpoint(ep.id, "failing without a success for 120 h")

        errors = _hammer([edit(dispatchers[0]), edit(dispatchers[1]), edit(dispatchers[2]), disable], 40)
        assert errors == []
        final = dispatchers[0].get_endpoint(ep.id)
        assert final.enabled is False and final.disabled_reason == "failing without a success for 120 h"
        assert final.max_batch == 2 and final.description.startswith("edit ")
        assert dispatchers[1].update_endpoint(ep.id, enabled=True).enabled is True  # the explicit enable
    finally:
        for d in dispatchers:
            d.close()


def test_a_deleted_endpoint_never_comes_back_whatever_races_the_delete(settings: Settings) -> None:
    dispatchers = [Dispatcher(settings) for _ in range(3)]
    try:
        for _ in range(10):
            ep_id = dispatchers[0].subscribe("https://example.com/h", ["*"]).id
            writers = [
                functools.partial(dispatchers[0].update_endpoint, ep_id, description="racing"),
                functools.partial(dispatchers[1].rotate_secret, ep_id),
                functools.partial(dispatchers[2].unsubscribe, ep_id),
            ]
            errors = _hammer(writers, 5)
            assert all(isinstance(e, EndpointNotFound) for e in errors), errors
            with pytest.raises(EndpointNotFound):
                dispatchers[0].get_endpoint(ep_id)
    finally:
        for d in dispatchers:
            d.close()
