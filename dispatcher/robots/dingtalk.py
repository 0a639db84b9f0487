"""DingTalk custom robots: ``{"msgtype": "markdown", "markdown": {"title", "text"}}``.

With a robot secret (``SEC...``, the robot's "加签" setting) the URL also carries ``timestamp`` (ms) and
``sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))``; DingTalk accepts the
signature for an hour. Bodies stay under 20,000 bytes (the text is cut).

DingTalk answers 200 with ``{"errcode": 0, "errmsg": "ok"}``: any other ``errcode`` is a failure, retried
on the schedule. Throttling codes ask for a longer wait: 130101 "send too fast, exceed 20 times per
minute" and 410100 (DingTalk then blocks the robot for 10 minutes: 600 s), 90030 "webhook over limit"
(a quota: 1 hour). A robot may send 20 messages a minute: the default rate limit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus, urlsplit, urlunsplit

from dispatcher.models import Endpoint
from dispatcher.robots.common import (
    JSON_HEADERS,
    RobotRequest,
    Verdict,
    classify_code,
    cut,
    dumps,
    fit,
    hmac_sha256_b64,
    message,
)
from dispatcher.robots.template import Style

KIND = "dingtalk"
DEFAULT_RATE_PER_S = 20 / 60
SIGNED = True
MAX_BODY_BYTES = 20_000
TITLE_MAX_CHARS = 100
FOOTER_MAX_CHARS = 500
THROTTLE_CODES = {130101: 600.0, 410100: 600.0, 90030: 3600.0}

STYLE = Style(bold=lambda s: f"**{s}**")


def sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value, already URL-encoded."""
    return quote_plus(hmac_sha256_b64(secret.encode(), f"{timestamp_ms}\n{secret}".encode()))


def signed_url(url: str, secret: str, now: float) -> str:
    """``url`` with ``timestamp`` and ``sign`` (any already there replaced)."""
    ms = int(now * 1000)
    parts = urlsplit(url)
    query = [p for p in parts.query.split("&") if p and not p.startswith(("timestamp=", "sign="))]
    query += [f"timestamp={ms}", f"sign={sign(secret, ms)}"]
    return urlunsplit(parts._replace(query="&".join(query)))


def render(event: Mapping[str, Any], endpoint: Endpoint, now: float | None = None) -> RobotRequest:
    msg = message(event, endpoint, STYLE)
    title, footer = cut(msg.title, TITLE_MAX_CHARS), cut(msg.footer, FOOTER_MAX_CHARS)

    def build(text: str) -> bytes:
        lines = [f"#### {title}"]
        if text.strip():
            lines += text.split("\n")
        if footer:
            lines.append(f"###### {footer}")
        return dumps({"msgtype": "markdown", "markdown": {"title": title, "text": "\n\n".join(lines)}})

    body = fit(build, msg.text, MAX_BODY_BYTES)
    url = endpoint.url
    if endpoint.robot_secret:
        url = signed_url(url, endpoint.robot_secret, time.time() if now is None else now)
    return RobotRequest(url, dict(JSON_HEADERS), body)


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    return classify_code(status, body, ("errcode",), ("errmsg",), THROTTLE_CODES)
