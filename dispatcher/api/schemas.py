"""Request and response bodies of the HTTP API (``dispatcher.api``).

Requests are strict: unknown fields and wrong JSON types are refused with a 422 before anything is
written. What a value means (a URL's safety, a pattern's syntax, an event's size) is still checked
by the dispatcher itself, which answers 400 or 413.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from dispatcher.models import Delivery

MAX_EVENTS_PER_REQUEST = 1000


class Strict(BaseModel):
    """Base of every request body: unknown fields and type coercions are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class EndpointCreate(Strict):
    url: str | None = Field(
        default=None,
        description="http(s) URL the events are POSTed to; left out for kind 'poll'",
        examples=["https://example.com/hooks"],
    )
    kind: str | None = Field(
        default=None,
        description="'webhook' (Standard Webhooks), 'poll' (no URL, consumers pull GET /v1/endpoints/{id}/poll), or a"
        " chat robot: 'slack', 'discord', 'teams', 'dingtalk', 'feishu', 'wecom'. Left out: recognised from the URL's"
        " host (a chat platform's), else 'webhook'",
    )
    template: str | None = Field(
        default=None, description="chat robots: message template, e.g. 'Order {data.order.id} paid'; null: default"
    )
    robot_secret: str | None = Field(default=None, description="dingtalk / feishu: the robot's signing secret")
    also_poll: bool = Field(default=False, description="also append the events to the endpoint's pull log")
    event_types: list[str] = Field(default=["*"], description="'*', exact types, or 'prefix.*' patterns")
    secret: str | None = Field(default=None, description="whsec_ + base64 of 24-64 bytes; generated when left out")
    description: str = ""
    max_batch: int = Field(default=1, description="events per POST (> 1: a JSON array)")
    retry_schedule: list[float] | None = Field(default=None, description="seconds after each failed attempt")
    rate_limit_per_s: float | None = Field(
        default=None, description="requests per second at most; null: none (a chat robot: its platform's rate)"
    )
    enabled: bool = True
    tenant: str | None = Field(
        default=None, description="the tenant whose events it receives (must exist); left out: 'default'"
    )

    @model_validator(mode="after")
    def _url_unless_poll(self) -> EndpointCreate:
        if self.url is None and self.kind != "poll":
            raise ValueError("url is required (only kind 'poll' has none)")
        return self


class EndpointUpdate(Strict):
    """Fields to change; those left out stay as they are. Secrets change through rotate-secret."""

    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    max_batch: int | None = None
    retry_schedule: list[float] | None = Field(default=None, description="null: back to the global schedule")
    rate_limit_per_s: float | None = Field(default=None, description="null: no limit (a chat robot: its platform's)")
    enabled: bool | None = None
    also_poll: bool | None = None
    kind: str | None = Field(default=None, description="webhook or a chat robot kind (not to or from poll)")
    template: str | None = Field(default=None, description="chat robots: null: back to the default template")
    robot_secret: str | None = Field(default=None, description="dingtalk / feishu: null: no signing")

    @model_validator(mode="after")
    def _not_null(self) -> EndpointUpdate:
        for name in ("url", "event_types", "description", "max_batch", "enabled", "also_poll", "kind"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class RotateSecret(Strict):
    grace_s: float = Field(default=86400.0, ge=0, description="how long the old secret keeps signing too")
    secret: str | None = Field(default=None, description="the new secret; generated when left out")


class DisableEndpoint(Strict):
    reason: str | None = Field(default=None, max_length=500)


class EventIn(Strict):
    type: str = Field(examples=["order.paid"])
    data: Any = None
    id: str | None = Field(default=None, description="your own event id (letters, digits, _ - .)")
    idempotency_key: str | None = Field(default=None, description="the same key again returns the first event's id")
    tenant: str | None = Field(default=None, description="only this tenant's endpoints receive it; left out: 'default'")


class EventTypeIn(Strict):
    """An event type to register (or replace): its data must match ``schema`` from then on."""

    description: str = Field(default="", description="what the event means, shown where types are offered")
    schema_: dict[str, Any] = Field(
        alias="schema",
        description="JSON Schema (draft 2020-12 unless its $schema names another) the event's data must match",
        examples=[{"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}],
    )
    example: Any = Field(default=None, description="example data; must match the schema")


class EventTypeOut(BaseModel):
    name: str = Field(examples=["order.paid"])
    description: str
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    example: Any = None
    updated_at: float = Field(description="unix time of its registration")


class EventTypeList(BaseModel):
    event_types: list[EventTypeOut]


class SecretOut(BaseModel):
    secret: str
    expires_at: float


class EndpointOut(BaseModel):
    """An endpoint; ``secret`` is masked except in the answers to create and rotate-secret."""

    id: str
    url: str
    event_types: list[str]
    tenant: str
    secret: str
    enabled: bool
    description: str
    max_batch: int
    retry_schedule: list[float] | None
    created_at: float
    disabled_reason: str | None
    kind: str
    also_poll: bool
    rate_limit_per_s: float | None
    previous_secrets: list[SecretOut]
    template: str | None
    robot_secret: str | None = Field(description="masked")
    warnings: list[str] = Field(
        default_factory=list,
        description="what the save had to say without refusing, e.g. a host that does not resolve now (not stored)",
    )


class TenantLimits(Strict):
    max_events_per_s: int | None = Field(default=None, description="events accepted per second; null: no limit")
    max_events_per_day: int | None = Field(default=None, description="events accepted per UTC day; null: no limit")


class TenantCreate(TenantLimits):
    id: str = Field(description="1 to 64 letters, digits, '_', '-' and '.'", examples=["acme"])
    name: str = Field(default="", description="a label for people")


class TenantOut(BaseModel):
    id: str
    name: str
    created_at: float
    max_events_per_s: int | None
    max_events_per_day: int | None


class TenantList(BaseModel):
    tenants: list[TenantOut]


class TenantToken(BaseModel):
    tenant: str
    token: str = Field(description="wht_...: shown this once; send it as 'Authorization: Bearer <token>'")


class PortalLinkOut(BaseModel):
    tenant: str
    url: str = Field(description="<base>/portal/whpl_...: opens the tenant's consumer portal once, before expires_at")
    expires_at: float = Field(description="unix seconds")


class TenantDeleted(BaseModel):
    purged: int = Field(description="pending deliveries of its endpoints, now dead ('endpoint deleted')")


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]


class Enqueued(BaseModel):
    ids: list[str]
    id: str | None = Field(default=None, description="set when a single event (not an array) was posted")


class SentTest(BaseModel):
    event_id: str


class EventOut(BaseModel):
    id: str
    type: str
    timestamp: str
    data: Any
    fanned_out: bool
    tenant: str
    deliveries: list[Delivery]


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


class Replayed(BaseModel):
    replayed: int


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_input"])
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    redis: Literal["ok", "down"]
    workers: list[str]
    warning: str | None = None


# -- GET /v1/stats: what ``dispatcher.store.stats.collect_stats`` returns -----------------------------
class OutcomeCounts(BaseModel):
    delivered: int = Field(description="deliveries that got a 2xx")
    retrying: int = Field(description="failed attempts that were rescheduled")
    dead: int = Field(description="deliveries dead-lettered")


class LatencyBucket(BaseModel):
    le_ms: str = Field(description="upper bound in milliseconds, or '+Inf'", examples=["250"])
    count: int = Field(description="attempts that took at most le_ms (cumulative)")


class LatencyStats(BaseModel):
    buckets: list[LatencyBucket]
    sum_ms: int
    count: int


class QueueDepths(BaseModel):
    fanout_due: int = Field(description="events due for fan-out and not claimed yet")
    deliver_due: int = Field(description="deliveries due now and not claimed yet")


class EndpointCounts(BaseModel):
    total: int
    enabled: int
    disabled: int


class DisabledEndpoint(BaseModel):
    id: str
    reason: str | None


class WorkerOut(BaseModel):
    """A live worker as its heartbeat describes it; a field its record holds in a wrong type is null."""

    model_config = ConfigDict(extra="allow")

    name: str
    pid: int | None = None
    concurrency: int | None = None
    at: float | None = Field(default=None, description="unix time of its last heartbeat")

    @field_validator("pid", "concurrency", "at", mode="wrap")
    @classmethod
    def _lenient(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            return None


class MinuteOutcomes(BaseModel):
    minute: int = Field(description="unix time // 60")
    delivered: int
    retrying: int
    dead: int


class StatsOut(BaseModel):
    """Counters run since the Redis data was created; gauges are current (see /metrics)."""

    time: float = Field(description="unix time of the reading (Redis' clock)")
    enqueued_total: int
    deliveries: OutcomeCounts
    deliveries_by_endpoint: dict[str, OutcomeCounts] = Field(description="live endpoints only")
    latency: LatencyStats
    queue: QueueDepths
    queue_depth: int = Field(description="queue.fanout_due + queue.deliver_due")
    pending_retries: int = Field(description="deliveries scheduled for later (retries and leases in flight)")
    dead_letters: int
    dead_letters_by_endpoint: dict[str, int]
    endpoints: EndpointCounts
    disabled_endpoints: list[DisabledEndpoint]
    workers: list[WorkerOut]
    poison_records: dict[str, int] = Field(description="records set aside, by kind: endpoint, delivery, event")
    minutes: list[MinuteOutcomes] = Field(description="per-minute outcomes, oldest first, this minute last")
