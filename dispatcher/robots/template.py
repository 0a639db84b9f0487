"""A tiny, safe template language for chat-robot messages.

Syntax (``Endpoint.template``):

* ``{path}`` is replaced by a value of the event. ``path`` starts at one of the event's fields, ``id``,
  ``type``, ``timestamp`` or ``data``, followed by ``.key`` steps into objects and ``.N`` steps into
  arrays: ``{data.order.id}``, ``{data.items.0.sku}``. Keys are letters, digits, ``_`` and ``-``.
* ``{path|filter}``, ``{path|f1|f2}``: ``json`` (compact JSON), ``fields`` (an object as ``key: value``
  lines, at most 20), ``upper``, ``lower``, ``trunc:N`` (at most N characters).
* ``{{`` and ``}}`` are literal braces.

A missing value renders as the empty string; objects and arrays render as compact JSON. Rendering only
indexes JSON objects by key and arrays by position: no attribute access, no calls, no format specs, so
a template cannot reach Python internals (``{__class__}``, ``{data.__init__}`` are just missing keys).
``compile_template(..., strict=True)`` (at save time) refuses malformed templates; rendering is lenient
and shows a malformed placeholder literally. The output is capped at ``MAX_OUTPUT_CHARS``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from dispatcher.errors import InvalidTemplate

ROOTS = ("id", "type", "timestamp", "data")
DEFAULT_TEMPLATE = "{data|fields}"
MAX_TEMPLATE_CHARS = 4000
MAX_OUTPUT_CHARS = 100_000
MAX_FIELDS = 20
MAX_FIELD_VALUE_CHARS = 300
MAX_TRUNC = 100_000

_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")
_FILTERS = ("json", "fields", "upper", "lower", "trunc")
_MISSING = object()


def _same(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Style:
    """How a platform's markup wants values: escaped (e.g. Slack's ``&<>``), keys in bold."""

    escape: Callable[[str], str] = _same
    bold: Callable[[str], str] = _same


PLAIN = Style()


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``{path|filters}``; ``source`` is its text, shown as is when it cannot be rendered."""

    path: tuple[str, ...]
    filters: tuple[tuple[str, int], ...]
    source: str


Part = str | Placeholder


def _placeholder(inner: str, source: str, strict: bool) -> Part:
    """Parse the inside of ``{...}``; when lenient, a malformed one becomes its literal text."""
    try:
        path_text, *filter_texts = (p.strip() for p in inner.split("|"))
        path = tuple(path_text.split("."))
        if not all(_SEGMENT.fullmatch(seg) for seg in path):
            raise InvalidTemplate(f"bad placeholder {source!r}: use names like {{type}} or {{data.order.id}}")
        if path[0] not in ROOTS:
            raise InvalidTemplate(f"unknown name {path[0]!r} in {source!r}: start with {', '.join(ROOTS)}")
        filters = []
        for text in filter_texts:
            name, _, arg = text.partition(":")
            if name not in _FILTERS:
                raise InvalidTemplate(f"unknown filter {name!r} in {source!r}: use {', '.join(_FILTERS)}")
            if name == "trunc":
                if not (arg.isascii() and arg.isdigit() and 1 <= int(arg) <= MAX_TRUNC):
                    raise InvalidTemplate(f"trunc needs a length from 1 to {MAX_TRUNC}, as in {{data.note|trunc:80}}")
                filters.append((name, int(arg)))
            elif arg:
                raise InvalidTemplate(f"filter {name!r} takes no argument (in {source!r})")
            else:
                filters.append((name, 0))
        return Placeholder(path, tuple(filters), source)
    except InvalidTemplate:
        if strict:
            raise
        return source


@functools.lru_cache(maxsize=512)
def compile_template(template: str, strict: bool = False) -> tuple[Part, ...]:
    """Split a template into literal text and placeholders (cached: endpoints reuse theirs)."""
    parts: list[Part] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "{" and template.startswith("{{", i):
            text.append("{")
            i += 2
        elif c == "}" and template.startswith("}}", i):
            text.append("}")
            i += 2
        elif c == "{":
            end = template.find("}", i + 1)
            nested = template.find("{", i + 1)
            if end < 0 or (0 <= nested < end):
                if strict:
                    raise InvalidTemplate(f"unclosed '{{' at position {i}: write '{{{{' for a literal brace")
                text.append(c)
                i += 1
                continue
            if text:
                parts.append("".join(text))
                text = []
            parts.append(_placeholder(template[i + 1 : end], template[i : end + 1], strict))
            i = end + 1
        elif c == "}":
            if strict:
                raise InvalidTemplate(f"single '}}' at position {i}: write '}}}}' for a literal brace")
            text.append(c)
            i += 1
        else:
            j = i + 1
            while j < n and template[j] not in "{}":
                j += 1
            text.append(template[i:j])
            i = j
    if text:
        parts.append("".join(text))
    # adjacent literals (a placeholder shown literally) are merged so rendering stays simple
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return tuple(merged)


def validate_template(template: object, max_chars: int = MAX_TEMPLATE_CHARS) -> str | None:
    """The template if it parses (None: the default one), else raise InvalidTemplate."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise InvalidTemplate("template must be a string or null")
    if len(template) > max_chars:
        raise InvalidTemplate(f"template is longer than {max_chars} characters")
    compile_template(template, strict=True)
    return template


def lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """Follow ``path`` through JSON objects (by key) and arrays (by index) only."""
    if path[0] not in ROOTS:
        return _MISSING
    current: Any = event.get(path[0], _MISSING)
    for seg in path[1:]:
        if isinstance(current, dict):
            current = current.get(seg, _MISSING)
        elif isinstance(current, list) and seg.isdigit() and int(seg) < len(current):
            current = current[int(seg)]
        else:
            return _MISSING
    return current


def as_text(value: Any) -> str:
    """A JSON value as message text: strings as they are, null as nothing, the rest as compact JSON."""
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return as_json(value)


def as_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # not from JSON (ints past 64 bits...): show it, never fail
        return str(value) if isinstance(value, (int, float)) else ""


def as_fields(value: Any, style: Style) -> str:
    """An object as ``key: value`` lines (keys in bold), at most MAX_FIELDS; anything else as text."""
    if not isinstance(value, dict):
        return style.escape(as_text(value))
    lines = []
    for n, (key, item) in enumerate(value.items()):
        if n == MAX_FIELDS:
            lines.append(f"… and {len(value) - MAX_FIELDS} more")
            break
        text = " ".join(as_text(item).split("\n"))
        if len(text) > MAX_FIELD_VALUE_CHARS:
            text = text[: MAX_FIELD_VALUE_CHARS - 1] + "…"
        lines.append(f"{style.bold(style.escape(str(key)))}: {style.escape(text)}")
    return "\n".join(lines)


def _value(p: Placeholder, event: Mapping[str, Any], style: Style) -> str:
    value = lookup(event, p.path)
    if value is _MISSING:
        return ""
    escaped = False
    for name, arg in p.filters:
        if name == "json":
            value = as_json(value)
        elif name == "fields":
            value, escaped = as_fields(value, style), True
        elif name == "upper":
            value = as_text(value).upper()
        elif name == "lower":
            value = as_text(value).lower()
        else:  # trunc
            text = as_text(value)
            value = text if len(text) <= arg else text[: max(0, arg - 1)] + "…"
    text = as_text(value)
    return text if escaped else style.escape(text)


def render(template: str | None, event: Mapping[str, Any], style: Style = PLAIN) -> str:
    """The message text of ``event`` (the default template when ``template`` is None)."""
    out: list[str] = []
    size = 0
    for part in compile_template(DEFAULT_TEMPLATE if template is None else template):
        text = part if isinstance(part, str) else _value(part, event, style)
        out.append(text)
        size += len(text)
        if size >= MAX_OUTPUT_CHARS:
            break
    return "".join(out)[:MAX_OUTPUT_CHARS]
