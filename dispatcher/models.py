"""Records the dispatcher stores and returns: endpoints, deliveries and their attempts."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

POLL_KIND = "poll"  # Endpoint.kind of pull consumers: no URL, read through GET .../poll or .../stream
DEFAULT_TENANT = "default"  # the tenant of endpoints and events that name none: today's behaviour


class DeliveryState(enum.StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"  # created, first attempt not made yet
    RETRYING = "retrying"  # failed at least once, next attempt scheduled
    DELIVERED = "delivered"  # a 2xx was received
    DEAD = "dead"  # out of attempts (or the endpoint is gone/disabled); replayable


class Tenant(BaseModel):
    """A customer of the platform: its endpoints receive only the events enqueued for it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str = ""
    created_at: float = 0.0
    max_events_per_s: int | None = None  # events enqueue() accepts for it per second; None: no limit
    max_events_per_day: int | None = None  # ...per UTC day


class PortalLink(BaseModel):
    """A link that opens the consumer portal of one tenant: once, before ``expires_at`` (unix seconds)."""

    tenant: str
    url: str = Field(repr=False)  # holds the single-use token
    expires_at: float


class PreviousSecret(BaseModel):
    """A rotated-out secret that keeps signing until ``expires_at`` (unix seconds)."""

    secret: str = Field(repr=False)
    expires_at: float


class Endpoint(BaseModel):
    """A subscriber: where to POST, which event types, and how to sign."""

    model_config = ConfigDict(extra="ignore")

    id: str
    url: str
    event_types: list[str]
    tenant: str = DEFAULT_TENANT  # receives only this tenant's events
    secret: str = Field(repr=False)
    enabled: bool = True
    description: str = ""
    max_batch: int = 1
    retry_schedule: list[float] | None = None
    created_at: float = 0.0
    disabled_reason: str | None = None
    kind: str = "webhook"  # "poll": no URL, events are appended to a log read by pull (dispatcher.api_pull)
    also_poll: bool = False  # a webhook endpoint whose events are also appended to its pull log
    rate_limit_per_s: float | None = None
    previous_secrets: list[PreviousSecret] = Field(default_factory=list, repr=False)
    # chat robots (kind slack, discord, teams, dingtalk, feishu, wecom; see dispatcher.robots)
    template: str | None = None  # the message template; None: the default one
    robot_secret: str | None = Field(default=None, repr=False)  # the platform's signing secret (DingTalk, Feishu)
    # not stored: what the save had to say without refusing (e.g. a host that does not resolve now)
    warnings: list[str] = Field(default_factory=list, exclude=True, repr=False)

    @property
    def pollable(self) -> bool:
        """Whether fan-out appends this endpoint's events to its pull log (kind ``poll`` or ``also_poll``)."""
        return self.kind == POLL_KIND or self.also_poll

    def masked(self) -> dict[str, Any]:
        """The endpoint as a dict with every secret hidden, safe for logs and listings: signing secrets, and
        the parts of its URL that can be credentials (a chat robot's path and token, any query string)."""
        data = self.model_dump()
        data["url"] = mask_url(self.url, robot=self.kind not in ("webhook", POLL_KIND))
        data["warnings"] = list(self.warnings)
        data["secret"] = mask_secret(self.secret)
        data["previous_secrets"] = [
            {"secret": mask_secret(p.secret), "expires_at": p.expires_at} for p in self.previous_secrets
        ]
        data["robot_secret"] = self.robot_secret[:4] + "…" if self.robot_secret else None
        return data


def mask_url(url: str, robot: bool) -> str:
    """``url`` without what may be a credential: its query string, and for a chat robot every path segment
    after the first (Slack and Discord put the token in the path, DingTalk and WeCom in the query)."""
    if not url:
        return url
    head, sep, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    host, slash, path = rest.partition("/")
    if robot and slash:
        first, more, _ = path.partition("/")
        path = first + ("/…" if more else "")
    return f"{scheme}://{host}{slash}{path}" + ("?…" if sep and query else "")


def mask_secret(secret: str) -> str:
    """``whsec_abc…``: enough to tell secrets apart, too little to use one."""
    return secret[:9] + "…" if secret else ""


class Attempt(BaseModel):
    """One HTTP attempt of a delivery."""

    n: int
    at: float  # unix seconds
    status: int | None = None  # HTTP status, None when no response
    error: str | None = None  # timeout, connection error, ...
    latency_ms: float = 0.0
    response: str = ""  # first bytes of the response body


class Delivery(BaseModel):
    """One event to one endpoint, with every attempt made."""

    id: str
    event_id: str
    endpoint_id: str
    state: DeliveryState
    attempts: list[Attempt] = []
    created_at: float = 0.0
    next_attempt_at: float | None = None
