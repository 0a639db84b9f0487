"""Chat robots: endpoints whose ``kind`` names a chat platform get each event as a chat message.

Every platform module (``slack``, ``discord``, ``teams``, ``dingtalk``, ``feishu``, ``wecom``) exposes:

* ``render(event, endpoint, now=None) -> RobotRequest(url, headers, body)``: the event (the parsed JSON
  ``{"id", "type", "timestamp", "data"}``) as the platform's message, within its size limits, signed
  when the platform signs and the endpoint has a ``robot_secret``;
* ``classify(status, headers, body) -> Verdict``: whether the platform's answer means delivered (some
  answer 200 with an error code in the body), and how long a throttled attempt must wait;
* ``KIND``, ``DEFAULT_RATE_PER_S`` (the platform's documented rate, the endpoint's default
  ``rate_limit_per_s``) and ``SIGNED`` (whether ``robot_secret`` applies).

``detect_kind(url)`` recognises a platform from the URL's host, so ``subscribe(url)`` alone is enough.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from dispatcher.errors import InvalidInput
from dispatcher.models import Endpoint
from dispatcher.robots import dingtalk, discord, feishu, slack, teams, wecom
from dispatcher.robots.common import MARKER, RobotRequest, Verdict
from dispatcher.robots.template import DEFAULT_TEMPLATE, MAX_TEMPLATE_CHARS, validate_template


class Platform(Protocol):
    """What a platform module provides."""

    KIND: str
    DEFAULT_RATE_PER_S: float
    SIGNED: bool

    def render(self, event: Mapping[str, Any], endpoint: Endpoint, now: float | None = None) -> RobotRequest: ...

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Verdict: ...


PLATFORMS: dict[str, Platform] = {m.KIND: m for m in (slack, discord, teams, dingtalk, feishu, wecom)}
ROBOT_KINDS: tuple[str, ...] = tuple(PLATFORMS)
SIGNED_KINDS: tuple[str, ...] = tuple(k for k, p in PLATFORMS.items() if p.SIGNED)
MAX_ROBOT_SECRET_CHARS = 256

_DISCORD_HOSTS = {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
_DISCORD_PATH = re.compile(r"^/api/(v\d+/)?webhooks/")


def get(kind: str) -> Platform | None:
    """The platform module of a robot kind; None for ``webhook`` (and any other non-robot kind)."""
    return PLATFORMS.get(kind)


def default_rate(kind: str) -> float | None:
    """The platform's documented rate (messages per second), or None for non-robot kinds."""
    platform = PLATFORMS.get(kind)
    return platform.DEFAULT_RATE_PER_S if platform is not None else None


def detect_kind(url: object) -> str | None:
    """The robot kind a URL's host belongs to, or None (a plain webhook, or not a URL at all)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return None
    path = parts.path
    if host in ("hooks.slack.com", "hooks.slack-gov.com"):
        return "slack"
    if host in _DISCORD_HOSTS and _DISCORD_PATH.match(path):
        return "discord"
    if host.endswith((".webhook.office.com", ".logic.azure.com", ".api.powerplatform.com")) or (
        host == "outlook.office.com" and path.startswith("/webhook")
    ):
        return "teams"
    if host == "oapi.dingtalk.com":
        return "dingtalk"
    if host in ("open.feishu.cn", "open.larksuite.com", "open.larkoffice.com"):
        return "feishu"
    if host == "qyapi.weixin.qq.com":
        return "wecom"
    return None


def validate_robot_fields(fields: dict[str, Any], template_max_chars: int = MAX_TEMPLATE_CHARS) -> None:
    """Check the shapes of ``template`` and ``robot_secret`` in endpoint fields (in place)."""
    if "template" in fields:
        fields["template"] = validate_template(fields["template"], template_max_chars)
    if fields.get("robot_secret") is not None:
        secret = fields["robot_secret"]
        if (
            not isinstance(secret, str)
            or not 1 <= len(secret) <= MAX_ROBOT_SECRET_CHARS
            or not secret.isascii()
            or not secret.isprintable()
            or any(c.isspace() for c in secret)
        ):
            raise InvalidInput(f"robot_secret must be 1 to {MAX_ROBOT_SECRET_CHARS} printable ASCII characters")


def apply_kind_rules(endpoint: Endpoint, previous: Endpoint | None = None, rate_given: bool = False) -> Endpoint:
    """Check what a robot kind implies and fill in the platform's rate limit; returns the endpoint to save.

    A robot endpoint without a rate limit gets its platform's; one that changes platform keeps its
    limit unless it was the old platform's default (then it gets the new one) or ``rate_given``.
    """
    platform = PLATFORMS.get(endpoint.kind)
    if platform is None:
        if endpoint.template is not None:
            raise InvalidInput(f"template applies to chat robot kinds only ({', '.join(ROBOT_KINDS)})")
        if endpoint.robot_secret is not None:
            raise InvalidInput(f"robot_secret applies to the kinds {', '.join(SIGNED_KINDS)} only")
        return endpoint
    if endpoint.max_batch != 1:
        raise InvalidInput("max_batch must be 1 for a chat robot: each event is one message")
    if endpoint.robot_secret is not None and not platform.SIGNED:
        raise InvalidInput(f"robot_secret applies to the kinds {', '.join(SIGNED_KINDS)}, not {endpoint.kind}")
    rate = endpoint.rate_limit_per_s
    switched = previous is not None and previous.kind != endpoint.kind and not rate_given
    if rate is None or (switched and previous is not None and rate == default_rate(previous.kind)):
        endpoint = endpoint.model_copy(update={"rate_limit_per_s": platform.DEFAULT_RATE_PER_S})
    return endpoint


__all__ = [
    "DEFAULT_TEMPLATE",
    "MARKER",
    "PLATFORMS",
    "ROBOT_KINDS",
    "SIGNED_KINDS",
    "Platform",
    "RobotRequest",
    "Verdict",
    "apply_kind_rules",
    "default_rate",
    "detect_kind",
    "get",
    "validate_robot_fields",
]
