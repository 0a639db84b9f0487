"""Every tunable of the dispatcher, read once from the environment (``DISPATCHER_`` prefix)."""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dispatcher.errors import ConfigError
from dispatcher.version import __version__

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
    """Turn ``"key1,key2"`` (or a sequence of strings) into API keys; blanks are dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ValueError("api_keys must be comma-separated strings")
    return tuple(k for k in items if k)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print."""
    try:
        parts = urlsplit(url)
        password, user, host, port = parts.password, parts.username, parts.hostname, parts.port
    except ValueError:
        return "<unparseable url>"
    if password is None:
        return url
    host = host or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user or ''}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseSettings):
    """Dispatcher configuration. Build one at process start and pass it down."""

    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = Field(default=None, description="Celery broker; defaults to redis_url")
    key_prefix: str = "whd:"

    # producer side
    max_payload_bytes: int = 256 * 1024
    idempotency_ttl_s: int = 24 * 3600
    retention_s: int = 7 * 24 * 3600

    # delivery
    timeout_s: float = 15.0
    connect_timeout_s: float = 5.0
    allow_private_targets: bool = False
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE_S
    retry_jitter: float = 0.2
    retry_after_max_s: float = 36000.0
    disable_after_failing_s: float = 5 * 24 * 3600.0  # an endpoint failing this long without a success
    response_body_max_bytes: int = 1024
    user_agent: str = f"webhook-dispatcher/{__version__}"

    # batching and concurrency inside one worker process
    fanout_batch: int = 500
    deliver_inflight: int = 64
    endpoint_inflight: int = 32
    task_budget_s: float = 5.0
    idle_linger_s: float = 0.2
    lease_margin_s: float = 30.0

    # kicks and the scheduler
    kick_debounce_ms: int = 20
    kick_parallelism: int = 4
    scheduler_interval_s: float = 0.5
    embedded_scheduler: bool = True

    # HTTP API and web page (``dispatcher.api``)
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), repr=False, description="bearer API keys, comma-separated in DISPATCHER_API_KEYS"
    )
    api_insecure_no_auth: bool = False
    api_max_body_bytes: int = 8 * 1024 * 1024

    # pull consumers (kind "poll" and ``also_poll`` endpoints; ``dispatcher.api_pull``)
    poll_max_events: int = Field(default=100_000, ge=1, description="entries kept per endpoint log (about)")
    poll_max_age_s: int = Field(default=7 * 24 * 3600, ge=1, description="age past which entries are trimmed")
    poll_ws_max_unacked: int = Field(default=1000, ge=1, description="WebSocket frames sent but not acked")
    poll_ws_ack_timeout_s: float = Field(default=30.0, gt=0, description="how long a full window waits for acks")

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> tuple[float, ...]:
        return parse_schedule(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: object) -> tuple[str, ...]:
        return parse_api_keys(value)

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

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery stays invisible before another worker may take it."""
        return self.timeout_s + self.lease_margin_s


def check_api_config(settings: Settings) -> None:
    """Refuse to serve the HTTP API without API keys unless no-auth was asked for explicitly."""
    if not settings.api_keys and not settings.api_insecure_no_auth:
        raise ConfigError(
            "the HTTP API needs at least one API key: set DISPATCHER_API_KEYS=<key>[,<key>...] "
            "(long random strings, e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or DISPATCHER_API_INSECURE_NO_AUTH=true to run it without authentication on a trusted machine"
        )
