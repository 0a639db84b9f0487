"""Event types, subscription patterns and the index that matches one against the other."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Generic, TypeVar

from dispatcher.errors import InvalidEventType

_TYPE_RE = re.compile(r"^[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*$")
MAX_TYPE_LENGTH = 128

T = TypeVar("T")


def validate_event_type(event_type: object) -> str:
    """Return ``event_type`` if it is a dotted name like ``order.paid``, else raise InvalidEventType."""
    if not isinstance(event_type, str) or not event_type:
        raise InvalidEventType("event type must be a non-empty string")
    if len(event_type) > MAX_TYPE_LENGTH or not _TYPE_RE.fullmatch(event_type):
        raise InvalidEventType(
            f"malformed event type {event_type!r}: use dot-separated words of letters, digits, '_' or '-'"
        )
    return event_type


def validate_pattern(pattern: object) -> str:
    """A pattern is ``*``, an exact type, or a type prefix followed by ``.*``."""
    if pattern == "*":
        return "*"
    if isinstance(pattern, str) and pattern.endswith(".*"):
        validate_event_type(pattern[:-2])
        return pattern
    try:
        return validate_event_type(pattern)
    except InvalidEventType as exc:
        raise InvalidEventType(f"bad subscription pattern {pattern!r}: {exc}") from None


def validate_patterns(patterns: object) -> list[str]:
    """Validate a non-empty list of patterns, dropping repeats and keeping order."""
    if isinstance(patterns, str) or not isinstance(patterns, Iterable):
        raise InvalidEventType("event_types must be a list of patterns")
    out = list(dict.fromkeys(validate_pattern(p) for p in patterns))
    if not out:
        raise InvalidEventType("event_types must not be empty (use ['*'] for every type)")
    return out


def matches(pattern: str, event_type: str) -> bool:
    """Whether one pattern matches one event type."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


class PatternIndex(Generic[T]):
    """Maps event types to subscribers in O(depth of the type), whatever the number of patterns."""

    def __init__(self) -> None:
        self._all: list[T] = []
        self._exact: dict[str, list[T]] = {}
        self._prefix: dict[str, list[T]] = {}  # "order" for "order.*"

    def add(self, patterns: Iterable[str], item: T) -> None:
        for p in patterns:
            if p == "*":
                self._all.append(item)
            elif p.endswith(".*"):
                self._prefix.setdefault(p[:-2], []).append(item)
            else:
                self._exact.setdefault(p, []).append(item)

    def match(self, event_type: str) -> list[T]:
        """Every subscriber of ``event_type``, each once, in a stable order."""
        found: list[T] = list(self._all)
        found.extend(self._exact.get(event_type, ()))
        if self._prefix:
            parts = event_type.split(".")
            for i in range(1, len(parts)):
                found.extend(self._prefix.get(".".join(parts[:i]), ()))
        if len(found) > 1:
            seen: set[int] = set()
            unique = []
            for item in found:
                if id(item) not in seen:
                    seen.add(id(item))
                    unique.append(item)
            return unique
        return found
