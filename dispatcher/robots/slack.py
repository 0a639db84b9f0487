"""Slack incoming webhooks: ``{"text", "blocks"}`` (header, mrkdwn section, context).

Limits: ``text`` up to 40,000 characters (Slack cuts longer ones), a section's text 3,000, a
header's 150. Values from the event are escaped (``&``, ``<``, ``>``), so data cannot mention
``<!channel>`` or forge links. Success is any 2xx (Slack answers ``ok``); a 429 carries
``Retry-After`` (handled by the delivery loop like any webhook's). About one message per second
per webhook, the default rate limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dispatcher.models import Endpoint
from dispatcher.robots.common import DELIVERED, FAILED, JSON_HEADERS, RobotRequest, Verdict, cut, dumps, message
from dispatcher.robots.template import Style

KIND = "slack"
DEFAULT_RATE_PER_S = 1.0
SIGNED = False
TEXT_MAX_CHARS = 40_000
SECTION_MAX_CHARS = 3000
HEADER_MAX_CHARS = 150


def escape(text: str) -> str:
    """Slack's three control characters in mrkdwn text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


STYLE = Style(escape=escape, bold=lambda s: f"*{s}*")


def render(event: Mapping[str, Any], endpoint: Endpoint, now: float | None = None) -> RobotRequest:
    msg = message(event, endpoint, STYLE)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(msg.title, HEADER_MAX_CHARS)}}
    ]
    if msg.text.strip():
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": cut(msg.text, SECTION_MAX_CHARS)}})
    if msg.footer:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(msg.footer)}]})
    fallback = cut(f"{msg.title}\n{msg.text}" if msg.text else msg.title, TEXT_MAX_CHARS)
    return RobotRequest(endpoint.url, dict(JSON_HEADERS), dumps({"text": fallback, "blocks": blocks}))


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    return DELIVERED if 200 <= status < 300 else FAILED
