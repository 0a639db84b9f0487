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
from dispatcher.models import POLL_KIND, Endpoint
from dispatcher.settings import Settings
from dispatcher.signing import secret_key
from dispatcher.ssrf import check_address, parse_target
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
    """A worker's copy of every endpoint, reloaded when the version counter moves.

    A stored endpoint the worker cannot use (its JSON does not parse, its URL is one the sender refuses,
    its template does not compile, ...) does not stop the others: it is left out of matching and listed
    in ``unusable`` with the reason, for the delivery loop to dead-letter its deliveries and disable it.
    """

    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self.version: bytes | None = None
        self.targets: dict[str, Target] = {}
        self.unusable: dict[str, str] = {}  # endpoint id -> why
        self.indexes: dict[str, PatternIndex[Target]] = {}  # tenant -> its enabled endpoints by type pattern

    def match(self, tenant: str, event_type: str) -> list[Target]:
        """The tenant's enabled endpoints subscribed to ``event_type``."""
        index = self.indexes.get(tenant)
        return index.match(event_type) if index is not None else []

    def target(self, raw: bytes) -> Target:
        """A Target for one stored endpoint; raises (anything) when the record cannot be used."""
        ep = Endpoint.model_validate(orjson.loads(raw))
        schedule = tuple(ep.retry_schedule) if ep.retry_schedule is not None else self._s.retry_schedule
        previous = [(secret_key(p.secret), p.expires_at) for p in ep.previous_secrets]
        robot = robots.get(ep.kind)
        if robot is not None and ep.template is not None:
            robots.validate_robot_fields({"template": ep.template})
        refused = None
        if ep.kind == POLL_KIND:
            url = URL("http://poll.invalid/")  # never sent: its events go to its pull log
        else:
            parsed = parse_target(ep.url)
            url = URL(parsed.url, encoded=True)
            if parsed.address is not None:  # names are vetted at connect time by the resolver
                try:
                    check_address(parsed.address, self._s.allow_private_targets)
                except UnsafeTarget as exc:
                    refused = str(exc)
        target = Target(ep, url, secret_key(ep.secret), previous, schedule, refused, robot)
        rate = ep.rate_limit_per_s or robots.default_rate(ep.kind)
        if rate:
            target.rate_interval_ms = 1000.0 / rate
        return target

    def load(self, version: bytes | None, raw: dict[bytes, bytes]) -> None:
        targets: dict[str, Target] = {}
        unusable: dict[str, str] = {}
        indexes: dict[str, PatternIndex[Target]] = {}
        for key, value in raw.items():
            endpoint_id = key.decode("utf-8", "replace")
            try:
                target = self.target(value)
                if target.endpoint.id != endpoint_id:
                    raise ValueError(f"the record holds endpoint {target.endpoint.id[:40]!r}")
                if target.endpoint.enabled:
                    indexes.setdefault(target.endpoint.tenant, PatternIndex()).add(target.endpoint.event_types, target)
            except Exception as exc:  # one record must not stop the others
                unusable[endpoint_id] = f"endpoint record unusable: {type(exc).__name__}: {str(exc)[:200]}"
                continue
            targets[endpoint_id] = target
        self.targets, self.unusable, self.indexes, self.version = targets, unusable, indexes, version

    def refresh(self, endpoints: EndpointStore, version: bytes) -> None:
        """Reload every endpoint if the version (read by the claim that needs them) moved."""
        if version != self.version or self.version is None:
            self.load(*endpoints.load_all())
