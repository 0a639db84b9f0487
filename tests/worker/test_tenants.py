"""Tenants: an endpoint receives only its tenant's events; a tenant's removal takes its endpoints and
pending work with it. Real Redis, real loopback receivers, fan-out and delivery run in this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import redis

from dispatcher import Dispatcher, InvalidInput, InvalidState, QuotaExceeded, TenantNotFound
from dispatcher.events import CHUNK
from dispatcher.models import DEFAULT_TENANT
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver


def event_ids(rec: Receiver) -> set[str]:
    return {r.headers["webhook-id"] for r in list(rec.requests)}


def test_each_tenant_receives_only_its_own_events(
    dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver], pump: Callable[..., Any]
) -> None:
    dsp.create_tenant("acme", name="Acme Inc.")
    dsp.create_tenant("globex")
    acme, globex, default = receiver_factory(), receiver_factory(), receiver_factory()
    dsp.subscribe(acme.url, ["order.*"], tenant="acme")
    dsp.subscribe(globex.url, ["*"], tenant="globex")
    dsp.subscribe(default.url, ["*"])
    for_acme = [dsp.enqueue("order.paid", {"i": i}, tenant="acme") for i in range(3)]
    for_globex = dsp.enqueue_many([("order.paid", {}), {"type": "user.new", "data": {}}], tenant="globex")
    for_default = [dsp.enqueue("order.paid", {})]
    mixed = dsp.enqueue_many([{"type": "order.paid", "data": {}, "tenant": "acme"}, ("order.paid", {})])
    for_acme.append(mixed[0])
    for_default.append(mixed[1])
    total = len(for_acme) + len(for_globex) + len(for_default)
    pump(runtime, lambda: acme.count() + globex.count() + default.count() >= total)
    assert event_ids(acme) == set(for_acme)
    assert event_ids(globex) == set(for_globex)
    assert event_ids(default) == set(for_default)  # no tenant: the default tenant's endpoints only
    assert [t.id for t in dsp.list_tenants()] == [DEFAULT_TENANT, "acme", "globex"]
    assert dsp.get_tenant("acme").name == "Acme Inc."
    assert {ep.tenant for ep in dsp.list_endpoints(tenant="acme")} == {"acme"}
    assert len(dsp.list_endpoints()) == 3


def test_a_test_event_goes_to_an_endpoint_of_a_tenant(
    dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver], pump: Callable[..., Any]
) -> None:
    dsp.create_tenant("acme")
    rec = receiver_factory()
    ep = dsp.subscribe(rec.url, ["order.*"], tenant="acme")
    test_id = dsp.send_test(ep.id)
    pump(runtime, lambda: rec.count() >= 1)
    assert event_ids(rec) == {test_id}


def test_an_unknown_tenant_is_refused_and_nothing_is_written(
    dsp: Dispatcher, receiver_factory: Callable[..., Receiver], raw_redis: redis.Redis
) -> None:
    dsp.create_tenant("acme")
    before = raw_redis.zcard(dsp.keys.fanout)
    with pytest.raises(TenantNotFound, match="no tenant 'nope'"):
        dsp.enqueue("order.paid", {}, tenant="nope")
    with pytest.raises(TenantNotFound):
        dsp.enqueue_many([("a.b", {}), {"type": "a.b", "data": {}, "tenant": "nope"}], tenant="acme")
    many = [("a.b", {"i": i}) for i in range(CHUNK)] + [{"type": "a.b", "data": {}, "tenant": "nope"}]
    with pytest.raises(TenantNotFound):  # more than one write: checked before the first
        dsp.enqueue_many(many)
    assert raw_redis.zcard(dsp.keys.fanout) == before
    with pytest.raises(TenantNotFound):
        dsp.subscribe(receiver_factory().url, ["*"], tenant="nope")
    assert dsp.list_endpoints() == []
    with pytest.raises(InvalidInput, match="tenant may hold only"):
        dsp.enqueue("a.b", {}, tenant="no spaces")
    with pytest.raises(TenantNotFound):
        dsp.list_endpoints(tenant="nope")


def test_tenant_rules(dsp: Dispatcher, receiver_factory: Callable[..., Receiver]) -> None:
    dsp.create_tenant("acme")
    with pytest.raises(InvalidState, match="exists already"):
        dsp.create_tenant("acme")
    with pytest.raises(InvalidState, match="always exists"):
        dsp.create_tenant(DEFAULT_TENANT)
    with pytest.raises(InvalidState, match="cannot be deleted"):
        dsp.delete_tenant(DEFAULT_TENANT)
    with pytest.raises(TenantNotFound):
        dsp.delete_tenant("nope")
    ep = dsp.subscribe(receiver_factory().url, ["*"], tenant="acme")
    with pytest.raises(InvalidInput, match="tenant cannot change"):
        dsp.update_endpoint(ep.id, tenant=DEFAULT_TENANT)
    assert dsp.get_endpoint(ep.id).tenant == "acme"


def test_deleting_a_tenant_removes_its_endpoints_and_pending_work(
    dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver], pump: Callable[..., Any]
) -> None:
    dsp.create_tenant("acme")
    rec, other = receiver_factory(), receiver_factory()
    ep = dsp.subscribe(rec.url, ["*"], tenant="acme")
    kept = dsp.subscribe(other.url, ["*"])
    rec.reply = lambda n, r: (503, {}, b"busy")  # its deliveries stay pending, retrying
    ids = [dsp.enqueue("a.b", {"i": i}, tenant="acme") for i in range(3)]
    pump(runtime, lambda: rec.count() >= 3)
    assert dsp.delete_tenant("acme") == 3  # every pending delivery purged
    assert [e.id for e in dsp.list_endpoints()] == [kept.id]
    assert all(d.state.value == "dead" for i in ids for d in dsp.deliveries(i))
    with pytest.raises(TenantNotFound):
        dsp.enqueue("a.b", {}, tenant="acme")
    with pytest.raises(TenantNotFound):
        dsp.subscribe(rec.url, ["*"], tenant="acme")
    assert ep.id not in {e.id for e in dsp.list_endpoints()}


def test_a_tenant_past_its_limits_is_refused_and_nothing_is_written(dsp: Dispatcher, raw_redis: redis.Redis) -> None:
    dsp.create_tenant("acme", max_events_per_day=5)
    dsp.create_tenant("globex", max_events_per_s=1000)
    dsp.enqueue_many([("a.b", {"i": i}) for i in range(4)], tenant="acme")
    before = raw_redis.zcard(dsp.keys.fanout)
    with pytest.raises(QuotaExceeded, match=r"5 events per day .*max_events_per_day") as info:
        dsp.enqueue_many([("a.b", {}), ("a.b", {})], tenant="acme")  # 4 + 2 > 5: the whole batch refused
    assert 0 < info.value.retry_after_s <= 86400
    with pytest.raises(QuotaExceeded):  # one tenant over its limit refuses a mixed batch, for every tenant
        dsp.enqueue_many([{"type": "a.b", "data": {}, "tenant": "globex"}, ("a.b", {}), ("a.b", {})], tenant="acme")
    assert raw_redis.zcard(dsp.keys.fanout) == before
    first = dsp.enqueue("a.b", {}, tenant="acme", idempotency_key="k")  # the fifth fits
    assert dsp.enqueue("a.b", {}, tenant="acme", idempotency_key="k") == first  # a repeat is not a new event
    with pytest.raises(QuotaExceeded):
        dsp.enqueue("a.b", {}, tenant="acme")
    dsp.enqueue("a.b", {})  # the default tenant and others are not held back
    dsp.enqueue("a.b", {}, tenant="globex")
    assert dsp.set_tenant_limits("acme", max_events_per_day=None).max_events_per_day is None
    dsp.enqueue("a.b", {}, tenant="acme")  # limits lifted: accepted at once
    with pytest.raises(InvalidInput, match="at least 1"):
        dsp.set_tenant_limits("acme", max_events_per_s=0)
    with pytest.raises(TenantNotFound):
        dsp.set_tenant_limits("nope", max_events_per_s=5)


def test_a_per_second_limit_counts_within_one_second(dsp: Dispatcher) -> None:
    dsp.create_tenant("acme", max_events_per_s=3)
    accepted = refused = 0
    for _ in range(10):  # ten calls in well under a second (or spread over two: at most 6 then)
        try:
            dsp.enqueue("a.b", {}, tenant="acme")
            accepted += 1
        except QuotaExceeded as exc:
            refused += 1
            assert exc.retry_after_s == 1
    assert 3 <= accepted <= 6 and refused == 10 - accepted
