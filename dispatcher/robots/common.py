"""What every chat-robot platform module shares: the message parts, size limits, signing, verdicts.

A platform module turns one event into ``RobotRequest(url, headers, body)`` with ``render`` and reads
the platform's answer with ``classify`` into a ``Verdict``. Bodies never exceed the platform's limit:
the message text is cut (with ``MARKER`` at the end) until the encoded body fits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from dispatcher.models import Endpoint
from dispatcher.robots.template import Style, render

MARKER = "…(truncated)"
JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}


class RobotRequest(NamedTuple):
    """One POST to a chat platform."""

    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a platform's answer means: delivered, or failed (retried) with an optional minimum delay."""

    ok: bool
    error: str | None = None  # why a 2xx answer is still a failure (an error code in the body...)
    retry_after_s: float | None = None  # the platform asks for at least this long before the next try
    throttled: bool = False  # the platform refused because of its rate limit


DELIVERED = Verdict(True)
FAILED = Verdict(False)


@dataclass(frozen=True, slots=True)
class Message:
    """The parts every platform lays out its own way."""

    title: str  # the event type
    text: str  # the endpoint's template rendered for the event
    footer: str  # "<timestamp> · <event id>"
    timestamp: str
    event_id: str


def message(event: Mapping[str, Any], endpoint: Endpoint, style: Style) -> Message:
    title = str(event.get("type") or "event")
    stamp = str(event.get("timestamp") or "")
    event_id = str(event.get("id") or "")
    footer = " · ".join(p for p in (stamp, event_id) if p)
    return Message(title, render(endpoint.template, event, style), footer, stamp, event_id)


def cut(text: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars`` characters, else its start followed by MARKER."""
    if len(text) <= max_chars:
        return text
    if max_chars <= len(MARKER):
        return text[:max_chars]
    return text[: max_chars - len(MARKER)] + MARKER


def cut_bytes(text: str, max_bytes: int) -> str:
    """Like ``cut`` but counting UTF-8 bytes (never splits a character)."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    room = max_bytes - len(MARKER.encode())
    if room <= 0:
        return raw[:max_bytes].decode("utf-8", "ignore")
    return raw[:room].decode("utf-8", "ignore") + MARKER


def fit(build: Callable[[str], bytes], text: str, max_bytes: int) -> bytes:
    """``build(text)`` if it is at most ``max_bytes``, else ``build`` of the longest cut of ``text`` that is.

    ``build`` must grow with its argument (an encoded body around the text). Raises ValueError when
    even an empty text does not fit (the platform module bounds every other part, so it never does).
    """
    body = build(text)
    if len(body) <= max_bytes:
        return body
    lo, hi = 0, len(text) - 1  # characters of text kept, before MARKER
    best = build(MARKER)
    if len(best) > max_bytes:
        raise ValueError("the message does not fit the platform's size limit even without its text")
    while lo < hi:
        mid = (lo + hi + 1) // 2
        candidate = build(text[:mid] + MARKER)
        if len(candidate) <= max_bytes:
            lo, best = mid, candidate
        else:
            hi = mid - 1
    return best


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def hmac_sha256_b64(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def json_object(body: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object, or None."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def classify_code(
    status: int,
    body: bytes,
    code_fields: tuple[str, ...],
    message_fields: tuple[str, ...],
    throttle_codes: Mapping[int, float],
) -> Verdict:
    """Platforms that answer 200 with an error code in a JSON body (DingTalk, WeCom, Feishu).

    Delivered only for a 2xx whose first present ``code_fields`` is 0. Any other code is a failure
    (retried on the schedule); a code in ``throttle_codes`` also asks for at least that many seconds.
    """
    doc = json_object(body)
    code: int | None = None
    name = ""
    if doc is not None:
        for name in code_fields:
            value = doc.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                code = value
                break
    if 200 <= status < 300 and code == 0:
        return DELIVERED
    if code is None:
        if 200 <= status < 300:
            return Verdict(False, error="unrecognised answer: no error code in the body")
        return FAILED
    text = ""
    for field in message_fields:
        value = doc.get(field) if doc is not None else None
        if isinstance(value, str) and value:
            text = value
            break
    delay = throttle_codes.get(code)
    error = f"{name} {code}" + (f": {text[:200]}" if text else "") + (" (throttled)" if delay is not None else "")
    return Verdict(False, error=error, retry_after_s=delay, throttled=delay is not None)
