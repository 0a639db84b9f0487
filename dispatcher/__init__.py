"""Webhook dispatcher: ``enqueue()`` an event, every subscribed endpoint gets a signed POST.

The module-level functions use one ``Dispatcher`` built from the environment on first use; build
your own ``Dispatcher(Settings(...))`` to configure it in code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# ``dispatcher.verify`` is the function; the module of that name (a compat re-export) is loaded first, because
# importing a submodule later would rebind the package attribute to the module.
from dispatcher import verify as _verify_module  # noqa: F401
from dispatcher.client import Dispatcher
from dispatcher.errors import (
    AlreadyProcessed,
    ConfigError,
    CursorExpired,
    DataMismatch,
    DeliveryError,
    DeliveryNotFound,
    DispatcherError,
    EndpointNotFound,
    EventNotFound,
    EventTypeNotFound,
    InvalidCursor,
    InvalidEventType,
    InvalidInput,
    InvalidPayload,
    InvalidSchema,
    InvalidSecret,
    InvalidSignature,
    InvalidState,
    InvalidURL,
    MalformedHeader,
    MissingHeader,
    NotFound,
    NotPollable,
    NotReplicated,
    PayloadNotSerializable,
    PayloadTooLarge,
    PermanentDeliveryError,
    PullError,
    QuotaExceeded,
    RawBodyRequired,
    RetryableDeliveryError,
    StoreUnavailable,
    TenantNotFound,
    TimestampTooNew,
    TimestampTooOld,
    UnregisteredEventType,
    UnsafeTarget,
    VerificationError,
)
from dispatcher.event_types import EventType
from dispatcher.models import Attempt, Delivery, DeliveryState, Endpoint, Tenant
from dispatcher.receiver.verify import SeenIds, verify
from dispatcher.settings import Settings
from dispatcher.version import __version__

_default: Dispatcher | None = None


def default() -> Dispatcher:
    """The process-wide Dispatcher, built from the environment the first time it is needed."""
    global _default
    if _default is None:
        _default = Dispatcher()
    return _default


def configure(settings: Settings | None = None) -> Dispatcher:
    """Replace the process-wide Dispatcher (e.g. with explicit settings)."""
    global _default
    if _default is not None:
        _default.close()
    _default = Dispatcher(settings)
    return _default


def subscribe(
    url: str | None, event_types: Iterable[str] = ("*",), secret: str | None = None, **options: Any
) -> Endpoint:
    return default().subscribe(url, event_types, secret, **options)


def subscribe_poll(event_types: Iterable[str] = ("*",), secret: str | None = None, **options: Any) -> Endpoint:
    return default().subscribe_poll(event_types, secret, **options)


def unsubscribe(endpoint_id: str) -> int:
    return default().unsubscribe(endpoint_id)


def get_endpoint(endpoint_id: str) -> Endpoint:
    return default().get_endpoint(endpoint_id)


def list_endpoints() -> list[Endpoint]:
    return default().list_endpoints()


def update_endpoint(endpoint_id: str, **changes: Any) -> Endpoint:
    return default().update_endpoint(endpoint_id, **changes)


def enable_endpoint(endpoint_id: str) -> Endpoint:
    return default().enable_endpoint(endpoint_id)


def disable_endpoint(endpoint_id: str, reason: str | None = None) -> Endpoint:
    return default().disable_endpoint(endpoint_id, reason)


def enqueue(
    event_type: str,
    data: Any,
    *,
    event_id: str | None = None,
    idempotency_key: str | None = None,
    tenant: str | None = None,
) -> str:
    return default().enqueue(event_type, data, event_id=event_id, idempotency_key=idempotency_key, tenant=tenant)


def enqueue_many(items: Iterable[Any], tenant: str | None = None) -> list[str]:
    return default().enqueue_many(items, tenant)


def create_tenant(tenant_id: str, name: str = "") -> Tenant:
    return default().create_tenant(tenant_id, name)


def delete_tenant(tenant_id: str) -> int:
    return default().delete_tenant(tenant_id)


def list_tenants() -> list[Tenant]:
    return default().list_tenants()


class _DefaultEventTypes:
    """``dispatcher.event_types``: the event-type catalog of the process-wide Dispatcher (``EventTypes``).

    Bound over the submodule of the same name, which stays importable (``from dispatcher.event_types import
    EventTypes``)."""

    def register(self, name: str, *, description: str = "", schema: object, example: Any = None) -> EventType:
        return default().event_types.register(name, description=description, schema=schema, example=example)

    def unregister(self, name: str) -> None:
        default().event_types.unregister(name)

    def get(self, name: str) -> EventType:
        return default().event_types.get(name)

    def list(self) -> list[EventType]:
        return default().event_types.list()


event_types = _DefaultEventTypes()


def deliveries(event_id: str) -> list[Delivery]:
    return default().deliveries(event_id)


def endpoint_deliveries(endpoint_id: str, state: DeliveryState | str | None = None, limit: int = 100) -> list[Delivery]:
    return default().endpoint_deliveries(endpoint_id, state, limit)


def replay(delivery_id: str | None = None, *, endpoint_id: str | None = None, since: float | None = None) -> int:
    return default().replay(delivery_id, endpoint_id=endpoint_id, since=since)


__all__ = [
    "AlreadyProcessed",
    "Attempt",
    "ConfigError",
    "CursorExpired",
    "DataMismatch",
    "Delivery",
    "DeliveryError",
    "DeliveryNotFound",
    "DeliveryState",
    "Dispatcher",
    "DispatcherError",
    "Endpoint",
    "EndpointNotFound",
    "EventNotFound",
    "EventType",
    "EventTypeNotFound",
    "InvalidCursor",
    "InvalidEventType",
    "InvalidInput",
    "InvalidPayload",
    "InvalidSchema",
    "InvalidSecret",
    "InvalidSignature",
    "InvalidState",
    "InvalidURL",
    "MalformedHeader",
    "MissingHeader",
    "NotFound",
    "NotPollable",
    "NotReplicated",
    "PayloadNotSerializable",
    "PayloadTooLarge",
    "PermanentDeliveryError",
    "PullError",
    "QuotaExceeded",
    "RawBodyRequired",
    "RetryableDeliveryError",
    "SeenIds",
    "Settings",
    "StoreUnavailable",
    "Tenant",
    "TenantNotFound",
    "TimestampTooNew",
    "TimestampTooOld",
    "UnregisteredEventType",
    "UnsafeTarget",
    "VerificationError",
    "__version__",
    "configure",
    "create_tenant",
    "default",
    "delete_tenant",
    "deliveries",
    "disable_endpoint",
    "enable_endpoint",
    "endpoint_deliveries",
    "enqueue",
    "enqueue_many",
    "event_types",
    "get_endpoint",
    "list_endpoints",
    "list_tenants",
    "replay",
    "subscribe",
    "subscribe_poll",
    "unsubscribe",
    "update_endpoint",
    "verify",
]
