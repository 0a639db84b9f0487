"""Discord webhooks: ``{"content", "embeds", "allowed_mentions"}``.

``content`` (the rendered template, at most 2,000 characters) is the message; one embed carries the
event type as its title, the event time and the event id. ``allowed_mentions: {"parse": []}`` keeps
event data from pinging ``@everyone`` or anyone else. Success is any 2xx (204 without ``?wait=true``).
A 429's JSON body holds ``retry_after`` in seconds (a float, with ``global``); the next attempt waits at
least that long (or ``Retry-After`` / ``X-RateLimit-Reset-After``, whichever is longest). Webhooks allow
about 5 requests per 2 seconds: the default rate limit is 2 per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dispatcher.models import Endpoint
from dispatcher.robots.common import (
    DELIVERED,
    FAILED,
    JSON_HEADERS,
    RobotRequest,
    Verdict,
    cut,
    dumps,
    json_object,
    message,
)
from dispatcher.robots.template import Style

KIND = "discord"
DEFAULT_RATE_PER_S = 2.0
SIGNED = False
CONTENT_MAX_CHARS = 2000
TITLE_MAX_CHARS = 256
FOOTER_MAX_CHARS = 2048
COLOR = 0x5865F2

STYLE = Style(bold=lambda s: f"**{s}**")


def _iso(stamp: str) -> str | None:
    try:
        datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return stamp


def render(event: Mapping[str, Any], endpoint: Endpoint, now: float | None = None) -> RobotRequest:
    msg = message(event, endpoint, STYLE)
    embed: dict[str, Any] = {"title": cut(msg.title, TITLE_MAX_CHARS), "color": COLOR}
    if msg.event_id:
        embed["footer"] = {"text": cut(msg.event_id, FOOTER_MAX_CHARS)}
    stamp = _iso(msg.timestamp)
    if stamp:
        embed["timestamp"] = stamp
    payload = {
        "content": cut(msg.text, CONTENT_MAX_CHARS),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }
    return RobotRequest(endpoint.url, dict(JSON_HEADERS), dumps(payload))


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 1e7 else None


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    if 200 <= status < 300:
        return DELIVERED
    if status != 429:
        return FAILED
    doc = json_object(body) or {}
    waits = [
        w for w in (_seconds(doc.get("retry_after")), _seconds(headers.get("X-RateLimit-Reset-After"))) if w is not None
    ]
    wait = max(waits) if waits else None
    scope = "global " if doc.get("global") is True else ""
    error = f"{scope}rate limited" + (f": retry after {wait:g} s" if wait is not None else "")
    return Verdict(False, error=error, retry_after_s=wait, throttled=True)
