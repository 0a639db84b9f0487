"""Every tunable of the dispatcher, read once from the environment (``DISPATCHER_`` prefix)."""

from __future__ import annotations

import logging
import math
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dispatcher.brokers import check_broker_url
from dispatcher.errors import ConfigError
from dispatcher.redis_choice import RedisChoice, choose_redis
from dispatcher.version import __version__

log = logging.getLogger(__name__)

DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)


def parse_schedule(value: object) -> tuple[float, ...]:
    """Turn ``"5,300,1800"`` (or a sequence of numbers) into a validated schedule in seconds."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            items = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"retry schedule must be comma-separated seconds, got {value!r}") from exc
    elif isinstance(value, (list, tuple)):
        try:
            items = [float(v) for v in value]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"retry schedule must be a list of seconds, got {value!r}") from exc
    else:
        raise ValueError(f"retry schedule must be comma-separated seconds, got {value!r}")
    if any(not math.isfinite(v) or v < 0 for v in items):
        raise ValueError("retry schedule delays must be finite and >= 0 seconds")
    return tuple(items)


def parse_api_keys(value: object) -> tuple[str, ...]:
    """Turn ``"key1,key2"`` (or a sequence of strings) into a tuple of strings; blanks are dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ValueError("must be comma-separated strings")
    return tuple(k for k in items if k)


# the consumer portal's public address, and one CSP frame-ancestors source (no ';' or ',': nothing else
# can be smuggled into the header)
PUBLIC_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
FRAME_SOURCE = re.compile(r"'self'|'none'|(https?://)?(\*\.)?[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*(:(\d{1,5}|\*))?|https?:")


class Durability(StrEnum):
    """When ``enqueue()`` returns."""

    PRIMARY = "primary"  # once the primary holds the event (lost if it dies before a replica copied it)
    REPLICATED = "replicated"  # once ``enqueue_replicas`` replicas hold it too (Redis ``WAIT``)


class Settings(BaseSettings):
    """Dispatcher configuration. Build one at process start and pass it down."""

    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="the store (and the broker unless `BROKER_URL`); none: the Redis of a running `dispatcher dev`, "
        "else an error (see [Which Redis is used](#which-redis-is-used))",
    )
    devstack_file: str | None = Field(
        default=None,
        description="where `dispatcher dev` announces its Redis while it runs (none: "
        "`$XDG_RUNTIME_DIR/webhook-dispatcher/devstack.json`, else under `~/.cache`)",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery's broker when not the store's Redis: `amqp://` (RabbitMQ) or `redis://` "
        "(see [RabbitMQ as the broker](#rabbitmq-as-the-broker))",
    )
    broker_startup_timeout_s: float = Field(
        default=20.0, gt=0, description="how long a worker or scheduler waits for the broker at start before it fails"
    )
    key_prefix: str = Field(
        default="whd:", description="prefix of every Redis key, Celery's included, and of Celery's RabbitMQ names"
    )

    # producer side
    max_payload_bytes: int = Field(default=256 * 1024, ge=1, description="encoded event size limit")
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1, description="how long an idempotency key is remembered")
    retention_s: int = Field(default=7 * 24 * 3600, ge=1, description="how long events and attempt records are kept")
    event_types_require_registered: bool = Field(
        default=False, description="refuse events whose type is not registered (`dispatcher event-types`)"
    )
    event_types_refresh_s: float = Field(
        default=1.0,
        ge=0,
        description="how long a producer trusts its compiled event-type schemas before checking the catalog for "
        "changes made by another process (one GET)",
    )
    enqueue_durability: Durability = Field(
        default=Durability.PRIMARY,
        description="`primary`: `enqueue()` returns once the Redis primary holds the event; `replicated`: once "
        "`ENQUEUE_REPLICAS` replicas hold it too, else it raises `NotReplicated`",
    )
    enqueue_replicas: int = Field(
        default=0,
        ge=0,
        description="replicas that must hold an event (`replicated`); 0: every replica connected to the primary "
        "(at least one), the setting that survives any Sentinel promotion",
    )
    enqueue_replica_timeout_ms: int = Field(
        default=2000, ge=1, description="how long `enqueue()` waits for them before raising `NotReplicated`"
    )

    # delivery
    timeout_s: float = Field(default=15.0, gt=0, description="a request's whole time, connecting included")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="connecting to a receiver")
    allow_private_targets: bool = Field(
        default=False, description="allow loopback/private/link-local targets (tests and `dispatcher dev` set it)"
    )
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        default=DEFAULT_RETRY_SCHEDULE_S, description="seconds after each failed attempt (comma-separated)"
    )
    retry_jitter: float = Field(default=0.2, description="± fraction of each retry delay")
    retry_after_max_s: float = Field(default=36000.0, ge=0, description="cap on a receiver's `Retry-After`")
    disable_after_failing_s: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        description="an endpoint failing this long without one success is disabled (an `endpoint.disabled` event)",
    )
    response_body_max_bytes: int = Field(default=1024, ge=0, description="bytes of each answer read and recorded")
    user_agent: str = Field(
        default=f"webhook-dispatcher/{__version__}", description="the `User-Agent` of every request"
    )
    http_engine: Literal["reqwest", "aiohttp"] = Field(
        default="reqwest",
        description="the HTTP client of deliveries: `reqwest` (Rust, via pyreqwest: about 0.6x aiohttp's worker CPU "
        "per delivery), or `aiohttp` (for receivers that offer only TLS older than 1.2 or legacy ciphers); both hold "
        "the same guarantees",
    )

    # endpoints: caps on what one endpoint may hold
    endpoint_max_event_types: int = Field(default=100, ge=1, description="event type patterns one endpoint may have")
    endpoint_description_max_chars: int = Field(default=1000, ge=0, description="an endpoint's description")
    endpoint_template_max_chars: int = Field(default=4000, ge=1, description="a chat robot's message template")

    # batching and concurrency inside one worker process
    fanout_batch: int = Field(default=500, ge=1, description="events fanned out per Redis round trip")
    deliver_inflight: int = Field(default=64, ge=1, description="requests in flight per worker process")
    endpoint_inflight: int = Field(
        default=32, ge=1, description="requests in flight to one endpoint, per worker process"
    )
    task_budget_s: float = Field(default=5.0, gt=0, description="how long one task works before handing over")
    idle_linger_s: float = Field(default=0.2, ge=0, description="how long a task waits for more work before it ends")
    lease_margin_s: float = Field(
        default=30.0, ge=0, description="a claimed delivery is invisible for `TIMEOUT_S` + this, then due again"
    )

    # kicks and the scheduler
    kick_parallelism: int = Field(default=4, ge=1, description="tasks per stage queued or running at once")
    scheduler_interval_s: float = Field(default=0.5, gt=0, description="how often the scheduler looks for due work")
    embedded_scheduler: bool = Field(default=True, description="run the scheduler loop inside each worker too")

    # monitoring (Flower: ``dispatcher.worker.monitor``)
    flower_every: int = Field(
        default=1,
        ge=0,
        description="Flower tasks: 1 = one per delivery attempt; N = one per endpoint per N attempts; 0 = none",
    )
    flower_max_tasks_per_s: float = Field(
        default=500.0,
        ge=0,
        description="per worker process: up to this many attempts a second each is a Flower task; faster, one "
        "task per endpoint per second counts them (0: no cap)",
    )

    # HTTP API and web page (``dispatcher.api``)
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), repr=False, description="comma-separated bearer keys of the HTTP API and web page"
    )
    api_insecure_no_auth: bool = Field(default=False, description="run the API without keys (a trusted machine only)")
    api_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="largest request body the API reads")
    api_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Host headers the API answers (comma-separated; none: any); required with `API_INSECURE_NO_AUTH`",
    )
    api_max_connections: int = Field(
        default=4096, ge=1, description="connections one API process holds at once; beyond, new ones get 503"
    )
    api_header_timeout_s: float = Field(
        default=10.0, gt=0, description="a connection that has not sent a whole request head by then is closed"
    )
    api_keepalive_timeout_s: float = Field(default=5.0, gt=0, description="an idle keep-alive connection is closed")
    api_max_streams: int = Field(
        default=2000, ge=1, description="long-polls and WebSockets one API process holds at once (503 beyond)"
    )
    api_max_streams_per_credential: int = Field(
        default=100, ge=1, description="long-polls and WebSockets held at once for one API key or pull token (429)"
    )
    api_auth_failures_per_minute: int = Field(
        default=20, ge=1, description="failed logins and bearer checks per client address before it gets 429"
    )
    api_openapi_requires_key: bool = Field(
        default=False,
        description="`/openapi.json` needs an API key too (off: public, so client generators can fetch it)",
    )

    # the consumer portal (``dispatcher.api.portal``)
    public_url: str | None = Field(
        default=None,
        description="the API's address as people reach it, for portal links (none: the address the request came "
        "to; the CLI's default `http://127.0.0.1:8000`)",
    )
    portal_link_ttl_s: int = Field(default=600, ge=1, description="a portal link must be opened within this, once")
    portal_session_ttl_s: int = Field(
        default=8 * 3600, ge=1, description="how long a portal opened by a link stays logged in to its tenant"
    )
    portal_frame_ancestors: str = Field(
        default="'self'",
        description="the sites that may embed the portal in an iframe (CSP `frame-ancestors` sources, "
        "space-separated, e.g. `https://app.example.com`)",
    )

    # pull consumers (kind "poll" and ``also_poll`` endpoints; ``dispatcher.api.pull``)
    poll_max_events: int = Field(default=100_000, ge=1, description="about how many events a pull log keeps")
    poll_max_age_s: int = Field(default=7 * 24 * 3600, ge=1, description="pull log entries older than this are trimmed")
    poll_ws_max_unacked: int = Field(default=1000, ge=1, description="WebSocket frames in flight without an ack")
    poll_ws_ack_timeout_s: float = Field(
        default=30.0, gt=0, description="a full window (or a blocked send) this long closes the stream with 4008"
    )

    _redis_choice: tuple[tuple[str | None, str | None], RedisChoice] | None = PrivateAttr(default=None)

    @field_validator("redis_url", "broker_url", "devstack_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value is not None:
            check_broker_url(value)
        return value

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> tuple[float, ...]:
        return parse_schedule(value)

    @field_validator("api_keys", "api_allowed_hosts", mode="before")
    @classmethod
    def _api_keys(cls, value: object) -> tuple[str, ...]:
        return parse_api_keys(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not PUBLIC_URL.fullmatch(value):
            raise ValueError(
                "public_url must be an http:// or https:// address without a path, e.g. https://hooks.example.com"
            )
        return value

    @field_validator("portal_frame_ancestors")
    @classmethod
    def _frame_ancestors(cls, value: str) -> str:
        sources = value.split()
        if not sources or not all(FRAME_SOURCE.fullmatch(src) for src in sources):
            raise ValueError(
                "portal_frame_ancestors must be CSP frame-ancestors sources separated by spaces: 'self', 'none' "
                "or origins such as https://app.example.com or https://*.example.com"
            )
        return " ".join(sources)

    @field_validator("retry_jitter")
    @classmethod
    def _jitter(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError("retry_jitter must be in [0, 1)")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("key_prefix must be non-empty and without spaces")
        return value

    @model_validator(mode="after")
    def _retention_outlives_retries(self) -> Settings:
        if self.retention_s < sum(self.retry_schedule) * (1 + self.retry_jitter) + self.timeout_s:
            raise ValueError("retention_s must outlive the whole retry schedule")
        return self

    def redis_choice(self) -> RedisChoice:
        """The Redis this process uses (``choose_redis``), chosen on first use and then kept; raises
        ``ConfigError`` when neither ``redis_url`` is set nor a ``dispatcher dev`` runs."""
        asked = (self.redis_url, self.devstack_file)  # a model_copy(update=...) may have changed them
        if self._redis_choice is None or self._redis_choice[0] != asked:
            self._redis_choice = (asked, choose_redis(*asked))
        return self._redis_choice[1]

    @property
    def store_url(self) -> str:
        """The URL of the Redis in use (``redis_choice()``): every connection to the store is made from it."""
        return self.redis_choice().url

    @property
    def celery_broker_url(self) -> str:
        """Celery's broker: ``broker_url``, else the store's Redis."""
        return self.broker_url or self.store_url

    @property
    def broker_setting(self) -> str:
        """The variable that chose the broker, for messages about it."""
        return "DISPATCHER_BROKER_URL" if self.broker_url else "DISPATCHER_REDIS_URL"

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery stays invisible before another worker may take it."""
        return self.timeout_s + self.lease_margin_s


MIN_API_KEY_CHARS = 24


def check_api_config(settings: Settings) -> None:
    """Refuse to serve the HTTP API without API keys (unless no-auth was asked for explicitly, with a Host
    allow-list against DNS rebinding), or with a key too short to resist guessing."""
    make_one = "e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    if not settings.api_keys and not settings.api_insecure_no_auth:
        raise ConfigError(
            f"the HTTP API needs at least one API key: set DISPATCHER_API_KEYS=<key>[,<key>...] ({make_one}), "
            "or DISPATCHER_API_INSECURE_NO_AUTH=true to run it without authentication on a trusted machine"
        )
    short = [i + 1 for i, key in enumerate(settings.api_keys) if len(key) < MIN_API_KEY_CHARS]
    if short:
        raise ConfigError(
            f"API key number {', '.join(map(str, short))} of DISPATCHER_API_KEYS is shorter than "
            f"{MIN_API_KEY_CHARS} characters: use long random keys ({make_one})"
        )
    if settings.api_insecure_no_auth and not settings.api_keys and not settings.api_allowed_hosts:
        raise ConfigError(
            "DISPATCHER_API_INSECURE_NO_AUTH needs DISPATCHER_API_ALLOWED_HOSTS (e.g. 127.0.0.1:8000,localhost:8000): "
            "without keys, a Host allow-list is what stops another site's page from reaching the API by DNS rebinding"
        )
