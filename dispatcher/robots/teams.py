"""Microsoft Teams (Workflows and the older incoming webhooks): an Adaptive Card in a message.

Body: ``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"content": {AdaptiveCard 1.4}}]}`` with the event type as a bold title, the rendered template (each line
its own paragraph) and a subtle footer (time, event id). Teams refuses messages over 28 KB: the text is
cut until the body fits.

Success: a 2xx — except that Teams answers some failures with a 200 whose body says so
("Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 ...").
Such a body is a failure; mentioning 429 or throttling, it also waits at least THROTTLE_RETRY_S
(Microsoft advises 10-15 s; we take 30). Connectors allow about 4 requests per second: the default
rate limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dispatcher.models import Endpoint
from dispatcher.robots.common import DELIVERED, FAILED, JSON_HEADERS, RobotRequest, Verdict, cut, dumps, fit, message
from dispatcher.robots.template import Style

KIND = "teams"
DEFAULT_RATE_PER_S = 4.0
SIGNED = False
MAX_BODY_BYTES = 28_000
TITLE_MAX_CHARS = 500
FOOTER_MAX_CHARS = 500
THROTTLE_RETRY_S = 30.0
CARD_TYPE = "application/vnd.microsoft.card.adaptive"

STYLE = Style(bold=lambda s: f"**{s}**")
_THROTTLED = re.compile(r"\b429\b|throttl|too many requests", re.IGNORECASE)
_FAILED = re.compile(r"delivery failed|returned http error", re.IGNORECASE)


def card(title: str, text: str, footer: str) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}
    ]
    if text.strip():
        body.append({"type": "TextBlock", "text": "\n\n".join(text.split("\n")), "wrap": True})
    if footer:
        body.append({"type": "TextBlock", "text": footer, "isSubtle": True, "size": "Small", "wrap": True})
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }


def render(event: Mapping[str, Any], endpoint: Endpoint, now: float | None = None) -> RobotRequest:
    msg = message(event, endpoint, STYLE)
    title, footer = cut(msg.title, TITLE_MAX_CHARS), cut(msg.footer, FOOTER_MAX_CHARS)

    def build(text: str) -> bytes:
        content = card(title, text, footer)
        return dumps({"type": "message", "attachments": [{"contentType": CARD_TYPE, "content": content}]})

    return RobotRequest(endpoint.url, dict(JSON_HEADERS), fit(build, msg.text, MAX_BODY_BYTES))


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    if not 200 <= status < 300:
        if status == 429:
            return Verdict(False, error="throttled", retry_after_s=THROTTLE_RETRY_S, throttled=True)
        return FAILED
    text = body.decode("utf-8", "replace").strip()
    if not text or text == "1":  # Workflows: 202 and nothing; incoming webhooks: "1"
        return DELIVERED
    if _THROTTLED.search(text):
        return Verdict(False, error=f"throttled: {text[:200]}", retry_after_s=THROTTLE_RETRY_S, throttled=True)
    if _FAILED.search(text):
        return Verdict(False, error=f"delivery failed: {text[:200]}")
    return DELIVERED
