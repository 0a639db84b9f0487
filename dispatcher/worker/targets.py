"""What a worker knows of the endpoints: a ``Target`` per endpoint, and the cache that reloads them.

The cache holds every endpoint, parsed once per change (URL, signing keys, schedule, robot platform,
rate limit), and indexes the enabled ones by type pattern for fan-out. It reloads when the endpoints'
version counter moves (read by the claim scripts, so a worker never fans out with an older view than
the event it claimed).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from yarl import URL

from dispatcher import robots
from dispatcher.errors import UnsafeTarget
from dispatcher.matching import PatternIndex
from dispatcher.models import Endpoint
from dispatcher.settings import Settings
from dispatcher.signing import secret_key
from dispatcher.ssrf import check_literal_host
from dispatcher.store.endpoints import EndpointStore


@dataclass(slots=True)
class Target:
    """What a worker needs to deliver to one endpoint, computed once per cache refresh."""

    endpoint: Endpoint
    url: URL
    key: bytes
    previous: list[tuple[bytes, float]]  # rotated-out keys and when they stop signing
    schedule: tuple[float, ...]
    refused: str | None = None  # why the URL's host (an IP literal) may not be contacted
    robot: robots.Platform | None = None  # a chat robot's platform module; None: a Standard Webhooks endpoint
    rate_interval_ms: float = 0.0  # ms between requests under the endpoint's rate limit; 0: no limit

    def signing_keys(self, now: float) -> list[bytes]:
        """The current key, then every rotated-out key still within its grace period."""
        if not self.previous:
            return [self.key]
        return [self.key, *(k for k, until in self.previous if until > now)]


class EndpointCache:
    """A worker's copy of every endpoint, reloaded when the version counter moves."""

    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self.version: bytes | None = None
        self.targets: dict[str, Target] = {}
        self.index: PatternIndex[Target] = PatternIndex()

    def load(self, version: bytes | None, raw: dict[bytes, bytes]) -> None:
        targets: dict[str, Target] = {}
        index: PatternIndex[Target] = PatternIndex()
        for value in raw.values():
            ep = Endpoint.model_validate(orjson.loads(value))
            schedule = tuple(ep.retry_schedule) if ep.retry_schedule is not None else self._s.retry_schedule
            previous = [(secret_key(p.secret), p.expires_at) for p in ep.previous_secrets]
            url = URL(ep.url, encoded=False)
            target = Target(ep, url, secret_key(ep.secret), previous, schedule)
            target.robot = robots.get(ep.kind)
            rate = ep.rate_limit_per_s or robots.default_rate(ep.kind)
            if rate:
                target.rate_interval_ms = 1000.0 / rate
            try:
                check_literal_host(url.host or "", self._s.allow_private_targets)
            except UnsafeTarget as exc:
                target.refused = str(exc)
            targets[ep.id] = target
            if ep.enabled:
                index.add(ep.event_types, target)
        self.targets, self.index, self.version = targets, index, version

    def refresh(self, endpoints: EndpointStore, version: bytes) -> None:
        """Reload every endpoint if the version (read by the claim that needs them) moved."""
        if version != self.version or self.version is None:
            self.load(*endpoints.load_all())
