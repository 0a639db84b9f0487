"""WeCom (企业微信) group robots: ``{"msgtype": "markdown", "markdown": {"content"}}``.

The content is the event type in bold, the rendered template and a grey footer (time, event id), at
most 2,048 bytes of UTF-8 (the text is cut). The key lives in the URL; there is no signing.

WeCom answers 200 with ``{"errcode": 0, "errmsg": "ok"}``: any other ``errcode`` is a failure, retried.
45009 "api freq out of limit" (and 45033, too many concurrent calls) are throttling: at least 60 s
before the next try. A robot may send 20 messages a minute: the default rate limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dispatcher.models import Endpoint
from dispatcher.robots.common import JSON_HEADERS, RobotRequest, Verdict, classify_code, cut, dumps, fit, message
from dispatcher.robots.template import Style

KIND = "wecom"
DEFAULT_RATE_PER_S = 20 / 60
SIGNED = False
CONTENT_MAX_BYTES = 2048
TITLE_MAX_CHARS = 128
FOOTER_MAX_CHARS = 200
THROTTLE_CODES = {45009: 60.0, 45033: 60.0}

STYLE = Style(bold=lambda s: f"**{s}**")


def render(event: Mapping[str, Any], endpoint: Endpoint, now: float | None = None) -> RobotRequest:
    msg = message(event, endpoint, STYLE)
    title, footer = cut(msg.title, TITLE_MAX_CHARS), cut(msg.footer, FOOTER_MAX_CHARS)

    def build(text: str) -> bytes:
        lines = [f"**{title}**"]
        if text.strip():
            lines.append(text)
        if footer:
            lines.append(f'<font color="comment">{footer}</font>')
        return "\n".join(lines).encode()

    content = fit(build, msg.text, CONTENT_MAX_BYTES).decode()
    body = dumps({"msgtype": "markdown", "markdown": {"content": content}})
    return RobotRequest(endpoint.url, dict(JSON_HEADERS), body)


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    return classify_code(status, body, ("errcode",), ("errmsg",), THROTTLE_CODES)
