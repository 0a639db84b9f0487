"""A quick yes for the JSON Schemas most event types use, so ``enqueue()`` stays fast.

``quick_check(schema)`` compiles a draft 2020-12 schema made only of common keywords (``type``,
``properties``, ``required``, ``additionalProperties``, ``items``, ``enum``/``const`` of strings,
bounds on numbers, strings, arrays and objects, and annotations) into a predicate that answers True
only for data that certainly matches. Its False means "not sure": the caller then asks ``jsonschema``,
which decides (and explains). A schema with any other keyword gets no predicate (None): ``jsonschema``
checks all its data. So the predicate can only save time, never accept what ``jsonschema`` refuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["Predicate", "quick_check"]

Predicate = Callable[[Any], bool]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
# keywords that never make data invalid (format is an annotation unless a format checker is configured)
_ANNOTATIONS = frozenset(
    {"title", "description", "examples", "default", "$comment", "deprecated", "readOnly", "writeOnly", "format",
     "$defs", "$schema"}
)  # fmt: skip
_SUPPORTED = _ANNOTATIONS | {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "minProperties",
    "maxProperties",
}  # fmt: skip
_NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


class _Unsupported(Exception):
    """Raised while compiling when a schema uses something the quick check does not cover."""


def _is_type(name: str, value: Any) -> bool:
    """JSON Schema's types as ``jsonschema`` reads Python values, where that reading is plain; anything
    unusual (a Decimal, a NaN) is not vouched for."""
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if name == "number":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    raise _Unsupported(name)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(schema: dict[str, Any], name: str) -> int | None:
    value = schema.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Unsupported(name)
    return value


def _any_type(names: tuple[str, ...]) -> Predicate:
    def check(value: Any) -> bool:
        return any(_is_type(n, value) for n in names)

    return check


def _one_of(strings: frozenset[str], null_ok: bool) -> Predicate:
    def check(value: Any) -> bool:
        return (isinstance(value, str) and value in strings) or (null_ok and value is None)

    return check


def _bounded(bounds: tuple[tuple[str, float], ...]) -> Predicate:
    def check(value: Any) -> bool:
        return _within(value, bounds)

    return check


def _sized(kind: type, least: int | None, most: int | None) -> Predicate:
    def check(value: Any) -> bool:
        if not isinstance(value, kind):
            return True
        n = len(value)  # type: ignore[arg-type]  # a str, list or dict
        return (least is None or n >= least) and (most is None or n <= most)

    return check


def _has(names: tuple[str, ...]) -> Predicate:
    def check(value: Any) -> bool:
        return not isinstance(value, dict) or all(n in value for n in names)

    return check


def _members(properties: dict[str, Predicate], extra: Predicate | None) -> Predicate:
    def check(value: Any) -> bool:
        return _object_ok(value, properties, extra)

    return check


def _each(item: Predicate) -> Predicate:
    def check(value: Any) -> bool:
        return not isinstance(value, list) or all(item(v) for v in value)

    return check


def _every(checks: tuple[Predicate, ...]) -> Predicate:
    def check(value: Any) -> bool:
        return all(c(value) for c in checks)

    return check


def _always(answer: bool) -> Predicate:
    def check(value: Any) -> bool:
        return answer

    return check


def _compile(schema: Any) -> Predicate:
    if schema is True or schema is False:
        return _always(schema)
    if not isinstance(schema, dict) or not set(schema) <= _SUPPORTED:
        raise _Unsupported("keyword")
    if schema.get("$schema", DRAFT_2020_12) != DRAFT_2020_12:
        raise _Unsupported("$schema")
    checks: list[Predicate] = []

    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _Unsupported("type")
        for name in names:
            _is_type(name, None)  # an unknown name raises here, not on the hot path
        checks.append(_any_type(tuple(names)))

    for keyword in ("enum", "const"):
        if keyword in schema:
            allowed = schema[keyword] if keyword == "enum" else [schema[keyword]]
            if not isinstance(allowed, list) or not all(a is None or isinstance(a, str) for a in allowed):
                raise _Unsupported(keyword)  # equality of numbers and containers is jsonschema's to judge
            checks.append(_one_of(frozenset(a for a in allowed if a is not None), None in allowed))

    bounds = [(k, schema[k]) for k in _NUMBER_BOUNDS if k in schema]
    for keyword, bound in bounds:
        if not _number(bound) or (isinstance(bound, float) and not math.isfinite(bound)):
            raise _Unsupported(keyword)
    if bounds:
        checks.append(_bounded(tuple(bounds)))

    for kind, low, high in ((str, "minLength", "maxLength"), (list, "minItems", "maxItems"),
                            (dict, "minProperties", "maxProperties")):  # fmt: skip
        least, most = _count(schema, low), _count(schema, high)
        if least is not None or most is not None:
            checks.append(_sized(kind, least, most))

    required = schema.get("required")
    if required is not None:
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _Unsupported("required")
        checks.append(_has(tuple(required)))

    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise _Unsupported("properties")
    compiled = {name: _compile(sub) for name, sub in properties.items()}
    extra = _compile(schema["additionalProperties"]) if "additionalProperties" in schema else None
    if compiled or extra is not None:
        checks.append(_members(compiled, extra))

    if "items" in schema:
        checks.append(_each(_compile(schema["items"])))

    if not checks:
        return _always(True)
    return checks[0] if len(checks) == 1 else _every(tuple(checks))


def _within(value: Any, bounds: tuple[tuple[str, float], ...]) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return not _maybe_number(value)
    if isinstance(value, float) and not math.isfinite(value):
        return False
    for keyword, bound in bounds:
        if keyword == "minimum" and not value >= bound:
            return False
        if keyword == "maximum" and not value <= bound:
            return False
        if keyword == "exclusiveMinimum" and not value > bound:
            return False
        if keyword == "exclusiveMaximum" and not value < bound:
            return False
    return True


def _maybe_number(value: Any) -> bool:
    """Whether jsonschema might read ``value`` as a number (a Decimal, a Fraction...): not vouched for."""
    return not isinstance(value, (str, dict, list, bool)) and value is not None


def _object_ok(value: Any, properties: dict[str, Predicate], extra: Predicate | None) -> bool:
    if not isinstance(value, dict):
        return True
    for name, item in value.items():
        check = properties.get(name) if isinstance(name, str) else None
        if check is not None:
            if not check(item):
                return False
        elif extra is not None and not extra(item):
            return False
    return True


def quick_check(schema: Any) -> Predicate | None:
    """A predicate that is True only for data ``schema`` certainly accepts, or None when the schema uses
    keywords the quick check does not cover (``jsonschema`` then checks everything)."""
    try:
        return _compile(schema)
    except _Unsupported:
        return None
