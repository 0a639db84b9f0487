"""Feishu / Lark custom bots: ``{"msg_type": "post", "content": {"post": {"zh_cn": {"title", "content"}}}}``.

The post's title is the event type; each line of the rendered template is a paragraph, then a footer
(time, event id). With a robot secret ("签名校验") the body also carries ``"timestamp"`` (seconds, as a
string) and ``"sign" = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))`` — key and message
swapped compared with DingTalk. Bodies stay under 20 KB (the text is cut).

Feishu answers 200 with ``{"code": 0, "msg": "success"}`` (older bots: ``{"StatusCode": 0}``): any other
code is a failure, retried. Throttling codes wait at least 60 s: 9499 "Too Many Request", 11232
(frequency limited, e.g. at busy hours) and 99991400 (the Open Platform's rate limit). A bot may send
100 messages a minute and 5 a second: the default rate limit is 100/60 per second, within both.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

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
from dispatcher.robots.template import PLAIN

KIND = "feishu"
DEFAULT_RATE_PER_S = 100 / 60
SIGNED = True
MAX_BODY_BYTES = 20_000
TITLE_MAX_CHARS = 200
FOOTER_MAX_CHARS = 500
THROTTLE_CODES = {9499: 60.0, 11232: 60.0, 99991400: 60.0}


def sign(secret: str, timestamp_s: int) -> str:
    return hmac_sha256_b64(f"{timestamp_s}\n{secret}".encode(), b"")


def render(event: Mapping[str, Any], endpoint: Endpoint, now: float | None = None) -> RobotRequest:
    msg = message(event, endpoint, PLAIN)
    title, footer = cut(msg.title, TITLE_MAX_CHARS), cut(msg.footer, FOOTER_MAX_CHARS)
    head: dict[str, str] = {}
    if endpoint.robot_secret:
        ts = int(time.time() if now is None else now)
        head = {"timestamp": str(ts), "sign": sign(endpoint.robot_secret, ts)}

    def build(text: str) -> bytes:
        paragraphs = [[{"tag": "text", "text": line}] for line in text.split("\n")] if text.strip() else []
        if footer:
            paragraphs.append([{"tag": "text", "text": footer}])
        post = {"zh_cn": {"title": title, "content": paragraphs}}
        return dumps({**head, "msg_type": "post", "content": {"post": post}})

    return RobotRequest(endpoint.url, dict(JSON_HEADERS), fit(build, msg.text, MAX_BODY_BYTES))


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    return classify_code(status, body, ("code", "StatusCode"), ("msg", "StatusMessage"), THROTTLE_CODES)
