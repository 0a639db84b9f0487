"""The event-type catalog: registered types with a description, a JSON Schema and an example.

``Dispatcher.event_types`` is an ``EventTypes``: ``register`` checks the schema (JSON Schema, draft
2020-12 unless its ``$schema`` names another draft) and that the example matches it before anything
is saved; ``enqueue`` calls ``check``, which refuses data that does not match its type's schema.

``check`` is on the producer's hot path, so each process compiles every schema once (with a quick
check for the common keywords, ``dispatcher.fastschema``) and keeps them until the catalog changes: a
change made through this object is seen at once, one made by another process within
``Settings.event_types_refresh_s`` (one GET of the version counter per period).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from dispatcher.defaults import BUILTIN_EVENT_TYPES, EVENT_TYPE_DESCRIPTION_MAX_CHARS, EVENT_TYPE_SCHEMA_MAX_BYTES
from dispatcher.errormap import translating
from dispatcher.errors import (
    DataMismatch,
    EventTypeNotFound,
    InvalidInput,
    InvalidSchema,
    UnregisteredEventType,
)
from dispatcher.fastschema import Predicate, quick_check
from dispatcher.matching import validate_event_type
from dispatcher.settings import Settings
from dispatcher.store.event_types import EventTypeStore

log = logging.getLogger(__name__)

__all__ = ["EventType", "EventTypes"]

_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
# keywords whose value (from the schema) an error message shows: a type, a bound, a format
_SHOWN_KEYWORDS = frozenset(
    {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
     "maxItems", "minProperties", "maxProperties", "multipleOf", "format"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EventType:
    """A registered event type: what it means, the JSON Schema its data must match, and an example."""

    name: str
    description: str
    schema: dict[str, Any]
    example: Any = None  # None: no example given
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "schema": self.schema,
            "example": self.example,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One type's validator (and quick check, for the schemas it covers), or why its stored schema cannot be
    used (a record written by hand)."""

    validator: Validator | None
    quick: Predicate | None = None  # True: certainly valid; False: ask the validator
    broken: str = ""


# -- checking what is registered ----------------------------------------------------------------------
def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object inside a schema, the schema itself first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _pointer_target(root: Any, fragment: str) -> bool:
    """Whether the JSON Pointer ``fragment`` (``/a/b``, URI-escaped) names a place inside ``root``."""
    node = root
    for raw in fragment.split("/")[1:]:
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _check_refs(schema: dict[str, Any]) -> None:
    """Only references inside the schema itself: the dispatcher fetches nothing, and a reference that
    leads nowhere is refused now rather than at the first ``enqueue``."""
    anchors = {n["$anchor"] for n in _walk(schema) if isinstance(n.get("$anchor"), str)}
    anchors |= {n["$dynamicAnchor"] for n in _walk(schema) if isinstance(n.get("$dynamicAnchor"), str)}
    for node in _walk(schema):
        for keyword in _REF_KEYWORDS:
            ref = node.get(keyword)
            if not isinstance(ref, str):
                continue
            if not ref.startswith("#"):
                raise InvalidSchema(
                    f"{keyword} {ref!r} points outside the schema: only local references ('#/$defs/...') are "
                    "allowed (the dispatcher fetches nothing)"
                )
            fragment = ref[1:]
            found = _pointer_target(schema, fragment) if fragment.startswith("/") or not fragment else None
            if found is None:
                found = fragment in anchors
            if not found:
                raise InvalidSchema(f"{keyword} {ref!r} leads nowhere in the schema")


def _validator_class(schema: dict[str, Any]) -> type[Validator]:
    if "$schema" not in schema:
        return Draft202012Validator
    cls = validator_for(schema, default=None)
    if cls is None:
        raise InvalidSchema(
            f"unknown $schema {schema['$schema']!r}: leave it out (draft 2020-12) or name a JSON Schema draft"
        )
    return cls


def compile_schema(schema: object) -> Validator:
    """A validator of ``schema``, or ``InvalidSchema`` saying why it is not valid JSON Schema."""
    if not isinstance(schema, dict):
        raise InvalidSchema("schema must be a JSON object (a JSON Schema)")
    cls = _validator_class(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise InvalidSchema(f"schema is not valid JSON Schema at /{where}: {_short(exc.message)}") from None
    _check_refs(schema)
    return cls(schema)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _path(error: ValidationError) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path]
    return "/" + "/".join(parts) if parts else "the data itself"


def failure(validator: Validator, data: Any) -> str:
    """Where ``data`` fails ``validator`` and which keyword, e.g. ``at /amount, keyword 'minimum' fails (0)``:
    a path and what the schema says, never a value of the data (it may be secret)."""
    error = best_match(validator.iter_errors(data))
    if error is None:  # pragma: no cover - only called after is_valid() said no
        return "somewhere"
    keyword = str(error.validator)
    detail = ""
    expected = error.validator_value  # from the schema, not from the data
    if keyword == "required" and isinstance(error.instance, dict) and isinstance(expected, list):
        missing = [p for p in expected if p not in error.instance]
        detail = f": missing {', '.join(repr(p) for p in missing)}"
    elif keyword in _SHOWN_KEYWORDS:
        detail = f" ({_short(repr(expected), 80)})"
    return f"at {_path(error)}, keyword {keyword!r} fails{detail}"


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("description must be a string")
    if len(value) > EVENT_TYPE_DESCRIPTION_MAX_CHARS:
        raise InvalidInput(f"description is longer than {EVENT_TYPE_DESCRIPTION_MAX_CHARS} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("description is not valid UTF-8 text") from None
    return value


def _decode(name: str, raw: bytes) -> EventType:
    record = orjson.loads(raw)
    return EventType(name, record["description"], record["schema"], record.get("example"), record["updated_at"])


# -- the catalog ------------------------------------------------------------------------------------
class EventTypes:
    """Register, list and remove event types; ``check`` validates an event's data against its type."""

    def __init__(self, store: EventTypeStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._compiled: dict[str, _Compiled] = {}
        self._version: bytes | None = None  # None: nothing loaded yet
        self._fresh_until = 0.0  # time.monotonic() until which the compiled schemas are trusted

    @translating
    def register(self, name: str, *, description: str = "", schema: object, example: Any = None) -> EventType:
        """Add or replace ``name``; the schema must be valid JSON Schema and the example (if any) match it."""
        name = validate_event_type(name)
        if name in BUILTIN_EVENT_TYPES:
            raise InvalidInput(f"{name!r} is sent by the dispatcher itself and cannot be registered")
        description = _text(description)
        if not isinstance(schema, dict):
            raise InvalidSchema("schema must be a JSON object (a JSON Schema)")
        try:
            encoded_schema = orjson.dumps(schema)
        except TypeError as exc:
            raise InvalidSchema(f"schema is not JSON: {exc}") from None
        if len(encoded_schema) > EVENT_TYPE_SCHEMA_MAX_BYTES:
            raise InvalidSchema(
                f"schema is {len(encoded_schema)} bytes encoded; the limit is {EVENT_TYPE_SCHEMA_MAX_BYTES}"
            )
        validator = compile_schema(schema)
        if example is not None:
            try:
                encoded_example = orjson.dumps(example)
            except TypeError as exc:
                raise InvalidInput(f"example is not JSON: {exc}") from None
            if len(encoded_example) > self._settings.max_payload_bytes:
                raise InvalidInput(
                    f"example is {len(encoded_example)} bytes encoded; the limit is {self._settings.max_payload_bytes}"
                )
            try:
                valid = validator.is_valid(example)
            except Exception as exc:  # a schema jsonschema accepts but cannot evaluate
                raise InvalidSchema(f"schema cannot be evaluated: {_short(str(exc))}") from None
            if not valid:
                raise InvalidSchema(f"example does not match the schema: {failure(validator, example)}")
        entry = EventType(name, description, schema, example, round(time.time(), 3))
        record = {"description": description, "schema": schema, "example": example, "updated_at": entry.updated_at}
        self._store.put(name, orjson.dumps(record))
        self._fresh_until = 0.0
        return entry

    @translating
    def unregister(self, name: str) -> None:
        """Remove ``name`` from the catalog (``EventTypeNotFound`` when it is not registered)."""
        name = validate_event_type(name)
        if not self._store.delete(name):
            raise EventTypeNotFound(f"no event type {name!r} is registered")
        self._fresh_until = 0.0

    @translating
    def get(self, name: str) -> EventType:
        name = validate_event_type(name)
        raw = self._store.get(name)
        if raw is None:
            raise EventTypeNotFound(f"no event type {name!r} is registered")
        return _decode(name, raw)

    @translating
    def list(self) -> list[EventType]:
        """Every registered type, by name."""
        _, raw = self._store.load_all()
        found = []
        for key, value in raw.items():
            name = key.decode()
            try:
                found.append(_decode(name, value))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("event type %r has an unreadable record (%s); skipped", name, exc)
        return sorted(found, key=lambda t: t.name)

    # -- the hot path -----------------------------------------------------------------------------
    def check(self, event_type: str, data: Any) -> None:
        """Refuse ``data`` that does not match ``event_type``'s schema (``DataMismatch``), and an
        unregistered type when ``event_types_require_registered`` is on (``UnregisteredEventType``)."""
        now = time.monotonic()
        if now >= self._fresh_until:
            self._refresh(now)
        compiled = self._compiled.get(event_type)
        if compiled is None:
            if self._settings.event_types_require_registered and event_type not in BUILTIN_EVENT_TYPES:
                raise UnregisteredEventType(
                    f"event type {event_type!r} is not registered (DISPATCHER_EVENT_TYPES_REQUIRE_REGISTERED is on): "
                    "register it first (`dispatcher event-types register`)"
                )
            return
        quick = compiled.quick
        if quick is not None and quick(data):
            return
        validator = compiled.validator
        if validator is None:
            raise InvalidSchema(
                f"the schema registered for {event_type!r} is unusable ({compiled.broken}): register it again"
            )
        try:
            valid = validator.is_valid(data)
        except Exception as exc:  # a schema jsonschema accepted but cannot evaluate on this data
            raise InvalidSchema(f"the schema of {event_type!r} cannot be evaluated: {_short(str(exc))}") from None
        if not valid:
            raise DataMismatch(
                f"data does not match the schema of event type {event_type!r}: {failure(validator, data)}"
            )

    @translating
    def _refresh(self, now: float) -> None:
        version = self._store.version()
        if version != self._version:
            version, raw = self._store.load_all()
            compiled: dict[str, _Compiled] = {}
            for key, value in raw.items():
                name = key.decode()
                try:
                    schema = orjson.loads(value)["schema"]
                    compiled[name] = _Compiled(compile_schema(schema), quick_check(schema))
                except (InvalidInput, ValueError, KeyError, TypeError) as exc:
                    log.warning("event type %r has an unusable record (%s)", name, exc)
                    compiled[name] = _Compiled(None, None, _short(str(exc), 120))
            self._compiled = compiled
            self._version = version
        self._fresh_until = now + self._settings.event_types_refresh_s
