"""Publishing: validating events, encoding their bodies once, and writing them to Redis atomically."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from dispatcher.errors import InvalidInput, PayloadNotSerializable, PayloadTooLarge
from dispatcher.ids import new_id
from dispatcher.matching import validate_event_type
from dispatcher.models import DEFAULT_TENANT

_ID_RE = re.compile(r"^[A-Za-z0-9_\-.]{1,128}$")
MAX_IDEMPOTENCY_KEY = 256
CHUNK = 1000  # events per Redis script call

Check = Callable[[str, Any], None]  # raises InvalidInput for data its type does not accept (EventTypes.check)


@dataclass(slots=True, frozen=True)
class NewEvent:
    """A validated event, its exact body and its optional idempotency key."""

    id: str
    type: str
    body: bytes
    idempotency_key: str
    only: str = ""  # comma-separated endpoint ids; empty = every matching subscriber
    tenant: str = DEFAULT_TENANT  # fans out to this tenant's endpoints only


def _check_id(value: object, what: str, max_len: int = 128, charset: bool = True) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidInput(f"{what} must be a non-empty string of at most {max_len} characters")
    if charset and not _ID_RE.fullmatch(value):
        raise InvalidInput(f"{what} may hold only letters, digits, '_', '-' and '.'")
    return value


def build_event(
    event_type: object,
    data: object,
    *,
    event_id: object = None,
    idempotency_key: object = None,
    endpoint_ids: object = None,
    tenant: object = None,
    max_bytes: int,
    check: Check | None = None,
) -> NewEvent:
    """Validate one event and encode its body ``{"id", "type", "timestamp", "data"}``."""
    etype = validate_event_type(event_type)
    if check is not None:
        check(etype, data)
    eid = new_id("msg") if event_id is None else _check_id(event_id, "event_id")
    idem = (
        ""
        if idempotency_key is None
        else _check_id(idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY, charset=False)
    )
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        body = orjson.dumps({"id": eid, "type": etype, "timestamp": stamp, "data": data})
    except TypeError as exc:
        raise PayloadNotSerializable(f"event data is not JSON-serialisable: {exc}") from None
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"event is {len(body)} bytes encoded; the limit is {max_bytes} (DISPATCHER_MAX_PAYLOAD_BYTES): send "
            "less data, e.g. an id the receiver looks up"
        )
    only = ""
    if endpoint_ids is not None:
        if isinstance(endpoint_ids, str) or not isinstance(endpoint_ids, (list, tuple, set, frozenset)):
            raise InvalidInput("endpoint_ids must be a list of endpoint ids")
        if not endpoint_ids:
            raise InvalidInput("endpoint_ids must not be empty (leave it out to reach every subscriber)")
        only = ",".join(_check_id(e, "endpoint id") for e in endpoint_ids)
    return NewEvent(eid, etype, body, idem, only, validate_tenant(tenant))


MAX_TENANT_ID = 64


def validate_tenant(value: object) -> str:
    """A tenant id (None: the default tenant): 1 to 64 letters, digits, '_', '-' and '.'."""
    if value is None:
        return DEFAULT_TENANT
    return _check_id(value, "tenant", MAX_TENANT_ID)


def build_many(
    items: Iterable[Any], max_bytes: int, tenant: object = None, check: Check | None = None
) -> list[NewEvent]:
    """Validate every item (a ``(type, data)`` pair or a mapping) before anything is written; ``tenant``
    is each item's unless the item names one."""
    out = []
    for n, item in enumerate(items):
        try:
            if isinstance(item, Mapping):
                unknown = set(item) - {"type", "data", "event_id", "id", "idempotency_key", "tenant"}
                if unknown:
                    raise InvalidInput(
                        f"unknown field(s) {sorted(unknown)}: an event takes 'type', 'data', 'id', "
                        "'idempotency_key' and 'tenant'"
                    )
                if "type" not in item:
                    raise InvalidInput("missing 'type': each event needs one, e.g. {'type': 'order.paid', 'data': {}}")
                out.append(
                    build_event(
                        item["type"],
                        item.get("data"),
                        event_id=item.get("event_id", item.get("id")),
                        idempotency_key=item.get("idempotency_key"),
                        tenant=item.get("tenant", tenant),
                        max_bytes=max_bytes,
                        check=check,
                    )
                )
            elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2:
                out.append(build_event(item[0], item[1], tenant=tenant, max_bytes=max_bytes, check=check))
            else:
                raise InvalidInput("each item must be a (type, data) pair or a mapping with 'type' and 'data'")
        except InvalidInput as exc:
            raise type(exc)(f"item {n}: {exc}") from None
    return out


def script_args(events: Sequence[NewEvent]) -> list[Any]:
    args: list[Any] = []
    for ev in events:
        args.extend((ev.id, ev.type, ev.body, ev.idempotency_key, ev.only))
    return args


_TYPE_FIELD = b'"type":"'


def type_of(body: bytes | None) -> str:
    """The event type inside an encoded body (``build_event``'s layout: ``{"id":..,"type":"..",...}``), read
    without parsing the data; ``"?"`` when the body is missing or not of that layout. Type names contain no
    quote (``validate_event_type``), and the id before it none either, so the first match is the type."""
    if not body:
        return "?"
    start = body.find(_TYPE_FIELD, 0, 256)
    if start < 0:
        return "?"
    start += len(_TYPE_FIELD)
    end = body.find(b'"', start, start + 256)
    return body[start:end].decode("utf-8", "replace") if end > 0 else "?"
