"""``Dispatcher``: what producers and operators hold. One per process, built from ``Settings``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import redis

from dispatcher.defaults import DEFAULT_PUBLIC_URL, STATS_MINUTES_SHOWN
from dispatcher.errormap import translating
from dispatcher.errors import InvalidInput, InvalidState
from dispatcher.event_types import EventTypes
from dispatcher.events import CHUNK, NewEvent, build_event, build_many
from dispatcher.kicks import Kicker
from dispatcher.models import DEFAULT_TENANT, Delivery, DeliveryState, Endpoint, PortalLink, Tenant
from dispatcher.settings import PUBLIC_URL, Settings
from dispatcher.store import Store
from dispatcher.store.work import Stage

log = logging.getLogger(__name__)


class Dispatcher:
    """Subscribe endpoints, publish events, read and replay deliveries."""

    def __init__(
        self, settings: Settings | None = None, client: redis.Redis | None = None, store: Store | None = None
    ) -> None:
        self.settings = settings or (store.settings if store is not None else Settings())
        self.store = store if store is not None else Store(self.settings, client)
        self.redis = self.store.redis
        self.keys = self.store.keys
        self.endpoints = self.store.endpoints
        self.records = self.store.records
        self.event_types = EventTypes(self.store.event_types, self.settings)
        self._kicker: Kicker | None = None

    # -- kicks -------------------------------------------------------------------------------
    @property
    def kicker(self) -> Kicker:
        """Publishes kicks (Celery messages that wake workers); made on first use."""
        if self._kicker is None:
            self._kicker = Kicker.for_producer(self.settings, self.store.queue)
        return self._kicker

    # -- endpoints ---------------------------------------------------------------------------
    @translating
    def subscribe(
        self, url: str | None, event_types: Iterable[str] = ("*",), secret: str | None = None, **options: Any
    ) -> Endpoint:
        """Register ``url`` for ``event_types`` (``*``, exact types, or ``prefix.*``).

        ``kind="poll"`` (with ``url=None``) registers a pull consumer instead: its events are appended
        to a log read through ``GET /v1/endpoints/{id}/poll`` or ``.../stream`` (see ``subscribe_poll``).
        ``also_poll=True`` appends a webhook endpoint's events to such a log as well as POSTing them.
        """
        return self.endpoints.create(url, event_types, secret, **options)

    def subscribe_poll(
        self, event_types: Iterable[str] = ("*",), secret: str | None = None, **options: Any
    ) -> Endpoint:
        """Register a pull consumer (kind ``poll``, no URL) for ``event_types``; read it with ``dispatcher.pull``."""
        return self.subscribe(None, event_types, secret, kind="poll", **options)

    @translating
    def unsubscribe(self, endpoint_id: str) -> int:
        """Delete an endpoint; its pending deliveries go dead at once ("endpoint deleted"). Returns how many."""
        self.endpoints.delete(endpoint_id)
        return self.store.queue.purge_endpoint(endpoint_id, "endpoint deleted")

    @translating
    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        return self.endpoints.get(endpoint_id)

    @translating
    def list_endpoints(self, tenant: str | None = None) -> list[Endpoint]:
        """Every endpoint, or (``tenant``) that tenant's only."""
        found = self.endpoints.list()
        if tenant is None:
            return found
        self.store.tenants.get(tenant)  # TenantNotFound
        return [ep for ep in found if ep.tenant == tenant]

    # -- tenants -----------------------------------------------------------------------------
    @translating
    def create_tenant(
        self,
        tenant_id: str,
        name: str = "",
        max_events_per_s: int | None = None,
        max_events_per_day: int | None = None,
    ) -> Tenant:
        """A tenant: its endpoints (``subscribe(..., tenant=id)``) receive only the events enqueued for it
        (``enqueue(..., tenant=id)``). Endpoints and events naming no tenant belong to ``"default"``. With
        limits, ``enqueue`` past them raises ``QuotaExceeded`` and writes nothing."""
        return self.store.tenants.create(tenant_id, name, max_events_per_s, max_events_per_day)

    @translating
    def set_tenant_limits(
        self, tenant_id: str, max_events_per_s: int | None = None, max_events_per_day: int | None = None
    ) -> Tenant:
        """Replace a tenant's limits (None: none)."""
        return self.store.tenants.set_limits(tenant_id, max_events_per_s, max_events_per_day)

    @translating
    def get_tenant(self, tenant_id: str) -> Tenant:
        return self.store.tenants.get(tenant_id)

    @translating
    def list_tenants(self) -> list[Tenant]:
        return self.store.tenants.list()

    @translating
    def issue_tenant_token(self, tenant_id: str) -> str:
        """A new API token that reaches only this tenant's resources (shown once; deleting the tenant revokes it)."""
        return self.store.tenants.issue_token(tenant_id)

    @translating
    def portal_link(self, tenant_id: str, base_url: str | None = None) -> PortalLink:
        """A link to the tenant's consumer portal: ``<base>/portal/<token>``, opened once within
        ``portal_link_ttl_s``; it then logs that browser in to this tenant only. ``base_url``: where the API is
        reached (default: ``public_url``, else ``http://127.0.0.1:8000``). Only the token's digest is stored."""
        base = (base_url or self.settings.public_url or DEFAULT_PUBLIC_URL).rstrip("/")
        if not PUBLIC_URL.fullmatch(base):
            raise InvalidInput(f"the portal's base URL must be http(s)://host[:port] without a path, not {base!r}")
        self.store.tenants.get(tenant_id)  # TenantNotFound
        ttl_s = self.settings.portal_link_ttl_s
        token = self.store.portal.create_link(tenant_id, ttl_s)
        return PortalLink(tenant=tenant_id, url=f"{base}/portal/{token}", expires_at=time.time() + ttl_s)

    @translating
    def delete_tenant(self, tenant_id: str) -> int:
        """Delete a tenant, its endpoints and their pending work (dead at once, "endpoint deleted"); events
        of it still waiting for fan-out find no endpoint. Returns how many deliveries were purged."""
        self.store.tenants.remove(tenant_id)  # first: nothing new is enqueued or subscribed for it
        purged = sum(self.unsubscribe(ep.id) for ep in self.endpoints.list() if ep.tenant == tenant_id)
        self.store.queue.drop_lanes(tenant_id)
        return purged

    @translating
    def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        return self.endpoints.update(endpoint_id, **changes)

    @translating
    def rotate_secret(self, endpoint_id: str, grace_s: float = 86400.0, new_secret: str | None = None) -> Endpoint:
        """New signing secret; the old one keeps signing alongside it for ``grace_s`` seconds."""
        return self.endpoints.rotate_secret(endpoint_id, grace_s, new_secret)

    @translating
    def enable_endpoint(self, endpoint_id: str) -> Endpoint:
        return self.endpoints.set_enabled(endpoint_id, True)

    @translating
    def disable_endpoint(self, endpoint_id: str, reason: str | None = None) -> Endpoint:
        return self.endpoints.set_enabled(endpoint_id, False, reason)

    # -- events ------------------------------------------------------------------------------
    def enqueue(
        self,
        event_type: str,
        data: Any,
        *,
        event_id: str | None = None,
        idempotency_key: str | None = None,
        endpoint_ids: list[str] | None = None,
        tenant: str | None = None,
    ) -> str:
        """Store one event durably and schedule its fan-out; returns the event id.

        With an ``idempotency_key`` (or an ``event_id``) already seen within the retention window,
        returns the first event's id and sends nothing again. ``endpoint_ids`` addresses the event to
        those endpoints only, whatever their type filters. ``tenant``: only that tenant's endpoints receive
        it (none: the default tenant's); a tenant that does not exist raises ``TenantNotFound``. Data of a
        registered type must match its schema (``DataMismatch``; see ``event_types``).
        """
        ev = build_event(
            event_type,
            data,
            event_id=event_id,
            idempotency_key=idempotency_key,
            endpoint_ids=endpoint_ids,
            tenant=tenant,
            max_bytes=self.settings.max_payload_bytes,
            check=self.event_types.check,
        )
        return self._write([ev])[0]

    def send_test(self, endpoint_id: str, data: Any = None) -> str:
        """Send a ``webhook.test`` event to one endpoint (whatever its type filters); a disabled endpoint
        would drop it, so that is refused with ``InvalidState``."""
        endpoint = self.get_endpoint(endpoint_id)
        if not endpoint.enabled:
            raise InvalidState(f"endpoint {endpoint_id} is disabled ({endpoint.disabled_reason}): enable it first")
        payload = data if data is not None else {"message": "test event from webhook-dispatcher"}
        return self.enqueue("webhook.test", payload, endpoint_ids=[endpoint_id], tenant=endpoint.tenant)

    def enqueue_many(self, items: Iterable[Any], tenant: str | None = None) -> list[str]:
        """Store many events (``(type, data)`` pairs or dicts, which may name a ``tenant``; else ``tenant``);
        all are validated before any is written."""
        events = build_many(items, self.settings.max_payload_bytes, tenant, self.event_types.check)
        if len(events) > CHUNK:  # several writes: every tenant is checked before the first
            self._check_tenants({ev.tenant for ev in events} - {DEFAULT_TENANT})
        ids: list[str] = []
        for start in range(0, len(events), CHUNK):
            ids.extend(self._write(events[start : start + CHUNK]))
        return ids

    @translating
    def _check_tenants(self, tenants: set[str]) -> None:
        for tenant in tenants:
            self.store.tenants.get(tenant)  # TenantNotFound

    @translating
    def _write(self, events: list[NewEvent]) -> list[str]:
        done = self.store.queue.enqueue(events)
        if done.kick:
            try:
                self.kicker.publish(Stage.FANOUT, 1)
            except Exception as exc:  # the event is stored; the scheduler will kick it
                log.warning("event stored but the fan-out kick failed (%s); the scheduler will pick it up", exc)
        return done.ids

    # -- deliveries --------------------------------------------------------------------------
    @translating
    def event(self, event_id: str) -> dict[str, Any]:
        return self.records.event(event_id)

    @translating
    def deliveries(self, event_id: str) -> list[Delivery]:
        """Every delivery of an event (empty until it is fanned out), with each attempt."""
        return self.records.for_event(event_id)

    @translating
    def get_delivery(self, delivery_id: str) -> Delivery:
        return self.records.get(delivery_id)

    @translating
    def endpoint_deliveries(
        self, endpoint_id: str, state: DeliveryState | str | None = None, limit: int = 100
    ) -> list[Delivery]:
        return self.records.for_endpoint(endpoint_id, state, limit)

    @translating
    def replay(
        self, delivery_id: str | None = None, *, endpoint_id: str | None = None, since: float | None = None
    ) -> int:
        """Replay one dead delivery, or every dead delivery of ``endpoint_id``; returns how many."""
        if (delivery_id is None) == (endpoint_id is None):
            raise TypeError("replay() takes a delivery id or endpoint_id=..., not both")
        if delivery_id is not None:
            self.records.replay(delivery_id)
            n = 1
        else:
            assert endpoint_id is not None
            n = self.records.replay_endpoint(endpoint_id, since)
        if n:
            try:  # the replay is recorded; a kick only saves waiting for the scheduler
                self.kicker.kick(Stage.DELIVER)
            except Exception as exc:
                log.warning("replay recorded but the kick failed (%s); the scheduler will pick it up", exc)
        return n

    # -- monitoring ------------------------------------------------------------------------------
    def stats(self, minutes: int = STATS_MINUTES_SHOWN) -> dict[str, Any]:
        """Every operational number, read from Redis now (``dispatcher.store.stats.collect_stats``)."""
        return self.store.stats(minutes)

    def close(self) -> None:
        self.store.close()
