"""Endpoints: validating, saving, reading and changing subscriptions (workers cache them: ``worker.targets``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import orjson
import redis

from dispatcher import robots
from dispatcher.errors import EndpointNotFound, InvalidInput, InvalidState, InvalidURL, TenantNotFound
from dispatcher.events import validate_tenant
from dispatcher.ids import new_id
from dispatcher.matching import validate_patterns
from dispatcher.models import DEFAULT_TENANT, POLL_KIND, Endpoint, PreviousSecret
from dispatcher.settings import Settings, parse_schedule
from dispatcher.signing import generate_secret, secret_key
from dispatcher.ssrf import check_url
from dispatcher.store.keys import Keys
from dispatcher.store.scripts import Scripts

MAX_BATCH_LIMIT = 1000
WRITE_ATTEMPTS = 20  # reads and compare-and-sets of one change while other writers keep changing the endpoint
CAS_BACKOFF_S = 0.002  # after the n-th lost compare-and-set, wait up to n times this (at most ~0.4 s in all)
KINDS = {"webhook", POLL_KIND, *robots.ROBOT_KINDS}  # Endpoint.kind values accepted by create()


def _attempts() -> Iterator[int]:
    """The tries of one compare-and-set change: after each lost race, step aside a little (jittered, growing),
    so racing writers do not livelock."""
    for attempt in range(WRITE_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, CAS_BACKOFF_S * attempt))
        yield attempt


def _validate_secret(secret: str | None) -> str:
    if secret is None:
        return generate_secret()
    if not isinstance(secret, str):
        raise InvalidInput("secret must be a 'whsec_...' string, or left out to have one generated")
    try:
        key = secret_key(secret)
    except ValueError as exc:
        raise InvalidInput(f"{exc}; or leave it out to have one generated") from None
    if not 24 <= len(key) <= 64:
        raise InvalidInput(
            f"secret holds {len(key)} bytes; it must hold 24 to 64 ('whsec_' + base64 of them), or leave it out "
            "to have one generated"
        )
    return secret


def _text(value: object, name: str, max_chars: int) -> str:
    """A free-form text field: a string of valid UTF-8 text (no lone surrogate) within its cap."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if len(value) > max_chars:
        raise InvalidInput(
            f"{name} is longer than {max_chars} characters (DISPATCHER_ENDPOINT_{name.upper()}_MAX_CHARS)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{name} is not valid UTF-8 text") from None
    return value


def _validate_fields(settings: Settings, fields: dict[str, Any], warnings: list[str] | None = None) -> dict[str, Any]:
    """The fields, checked and normalised (the URL in the one form that is saved and sent); what is worth
    telling the caller without refusing (a host that does not resolve now) is appended to ``warnings``."""
    out = dict(fields)
    if "url" in out:
        checked = check_url(out["url"], settings.allow_private_targets)
        out["url"] = checked.target.url
        if warnings is not None:
            warnings.extend(checked.warnings)
    if "event_types" in out:
        types = out["event_types"]
        cap = settings.endpoint_max_event_types
        if isinstance(types, (list, tuple)) and len(types) > cap:
            raise InvalidInput(f"at most {cap} event type patterns per endpoint (DISPATCHER_ENDPOINT_MAX_EVENT_TYPES)")
        out["event_types"] = validate_patterns(types)
    if "max_batch" in out:
        mb = out["max_batch"]
        if not isinstance(mb, int) or isinstance(mb, bool) or not 1 <= mb <= MAX_BATCH_LIMIT:
            raise InvalidInput(f"max_batch must be an integer from 1 to {MAX_BATCH_LIMIT}")
    if out.get("retry_schedule") is not None:
        try:
            out["retry_schedule"] = list(parse_schedule(out["retry_schedule"]))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    if out.get("rate_limit_per_s") is not None:
        rl = out["rate_limit_per_s"]
        if isinstance(rl, bool) or not isinstance(rl, (int, float)) or not 0 < rl <= 100_000:
            raise InvalidInput("rate_limit_per_s must be a number above 0 (deliveries per second) or null")
        out["rate_limit_per_s"] = float(rl)
    if "enabled" in out and not isinstance(out["enabled"], bool):
        raise InvalidInput("enabled must be true or false")
    if "also_poll" in out and not isinstance(out["also_poll"], bool):
        raise InvalidInput("also_poll must be true or false")
    if "description" in out:
        out["description"] = _text(out["description"], "description", settings.endpoint_description_max_chars)
    if out.get("template") is not None:
        _text(out["template"], "template", settings.endpoint_template_max_chars)
    robots.validate_robot_fields(out, settings.endpoint_template_max_chars)  # template, robot_secret
    return out


def _kind_change(current: Endpoint, changes: dict[str, Any], fields: dict[str, Any]) -> None:
    """Check a new ``kind``; a new URL of a chat platform switches the kind to it (unless ``kind`` is given)."""
    if "kind" in changes:
        kind = changes["kind"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise InvalidInput(f"kind must be one of: {', '.join(sorted(KINDS))}")
        if (kind == POLL_KIND) != (current.kind == POLL_KIND):
            raise InvalidInput("an endpoint cannot become or stop being a poll endpoint: create a new one")
    elif "url" in changes and current.kind != POLL_KIND:
        detected = robots.detect_kind(fields["url"])
        if detected is not None:
            fields["kind"] = detected


class EndpointStore:
    """Endpoints in one Redis hash; every change is one compare-and-set that bumps the version workers watch."""

    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts, settings: Settings) -> None:
        self._r = client
        self._k = keys
        self._scripts = scripts
        self._s = settings

    def create(
        self,
        url: str | None,
        event_types: Iterable[str] = ("*",),
        secret: str | None = None,
        **options: Any,
    ) -> Endpoint:
        unknown = set(options) - {
            "description", "max_batch", "retry_schedule", "enabled", "rate_limit_per_s", "kind", "also_poll",
            "template", "robot_secret", "tenant",
        }  # fmt: skip
        if unknown:
            raise InvalidInput(f"unknown endpoint option(s): {', '.join(sorted(unknown))}")
        warnings: list[str] = []
        kind = options.get("kind")
        if kind is None:  # a chat robot's URL tells its platform (dispatcher.robots); anything else is a webhook
            kind = options["kind"] = robots.detect_kind(url) or "webhook"
        if not isinstance(kind, str) or kind not in KINDS:
            raise InvalidInput(f"kind must be one of: {', '.join(sorted(KINDS))}")
        if kind == POLL_KIND:  # no URL: consumers pull the endpoint's log (dispatcher.api_pull)
            if url not in (None, ""):
                raise InvalidInput("a poll endpoint has no URL: its consumers read GET /v1/endpoints/{id}/poll")
            if options.get("also_poll"):
                raise InvalidInput("also_poll is for endpoints with a URL; a poll endpoint is only read by pull")
            fields = _validate_fields(self._s, {"event_types": event_types, **options})
            fields["url"] = ""
        else:
            if url is None or url == "":
                raise InvalidURL(f"an endpoint of kind {kind!r} needs a URL (kind 'poll' is the one without)")
            fields = _validate_fields(self._s, {"url": url, "event_types": event_types, **options}, warnings)
        fields["tenant"] = validate_tenant(options.get("tenant"))
        endpoint = Endpoint(id=new_id("ep"), secret=_validate_secret(secret), created_at=time.time(), **fields)
        endpoint = robots.apply_kind_rules(endpoint)
        self._save_new(endpoint)
        endpoint.warnings = warnings
        return endpoint

    def get(self, endpoint_id: str) -> Endpoint:
        try:
            return Endpoint.model_validate_json(self._read(endpoint_id))
        except ValueError:
            raise InvalidState(f"endpoint {endpoint_id!r} has an unreadable record; delete it") from None

    def list(self) -> list[Endpoint]:
        """Every endpoint whose record reads (one that does not is the workers' to set aside), by id."""
        found = []
        for value in self._r.hgetall(self._k.endpoints).values():
            try:
                found.append(Endpoint.model_validate_json(value))
            except ValueError:
                continue
        return sorted(found, key=lambda e: e.id)

    def set_aside(self, endpoint_id: str, reason: str) -> str:
        """Take an endpoint the workers cannot use out of service: disabled with ``reason`` when its record
        reads, else moved to ``endpoints:quarantine`` with the reason. Returns what was done."""
        raw = self._r.hget(self._k.endpoints, endpoint_id)
        if raw is None:
            return "gone"
        try:
            endpoint = Endpoint.model_validate_json(cast(bytes, raw))
        except ValueError:
            entry = {"raw": cast(bytes, raw).decode("utf-8", "replace"), "reason": reason, "at": time.time()}
            self._r.hset(self._k.endpoints_quarantine, endpoint_id, orjson.dumps(entry))
            self._write(endpoint_id, cast(bytes, raw), b"")  # 0 when it changed meanwhile: left to the next look
            return "quarantined"
        if endpoint.enabled:
            self.set_enabled(endpoint_id, False, reason)
        return "disabled"

    def load_all(self) -> tuple[bytes | None, dict[bytes, bytes]]:
        """The version counter and every endpoint's raw JSON, read together (for the workers' cache)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.get(self._k.endpoints_version)
        pipe.hgetall(self._k.endpoints)
        version, raw = pipe.execute()
        return version or b"", raw

    def update(self, endpoint_id: str, **changes: Any) -> Endpoint:
        allowed = {
            "url",
            "event_types",
            "description",
            "max_batch",
            "retry_schedule",
            "enabled",
            "secret",
            "rate_limit_per_s",
            "also_poll",
            "kind",
            "template",
            "robot_secret",
        }
        if "tenant" in changes:
            raise InvalidInput("an endpoint's tenant cannot change: create an endpoint under the other tenant")
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"unknown endpoint field(s): {', '.join(sorted(unknown))}")
        warnings: list[str] = []
        fields = _validate_fields(self._s, changes, warnings)
        if "secret" in fields:
            fields["secret"] = _validate_secret(fields["secret"])
        if fields.get("enabled") is True:
            fields["disabled_reason"] = None

        def change(current: Endpoint) -> Endpoint:
            if ("url" in changes or changes.get("also_poll")) and current.kind == POLL_KIND:
                raise InvalidInput(
                    "a poll endpoint has no URL (and needs no also_poll): create a webhook endpoint instead"
                )
            own = dict(fields)
            _kind_change(current, changes, own)
            rate_given = changes.get("rate_limit_per_s") is not None
            return robots.apply_kind_rules(current.model_copy(update=own), current, rate_given=rate_given)

        endpoint = self._change(endpoint_id, change)
        endpoint.warnings = warnings
        return endpoint

    def set_enabled(self, endpoint_id: str, enabled: bool, reason: str | None = None) -> Endpoint:
        update = {"enabled": enabled, "disabled_reason": None if enabled else reason or "disabled by user"}
        return self._change(endpoint_id, lambda current: current.model_copy(update=update))

    def rotate_secret(self, endpoint_id: str, grace_s: float = 86400.0, new_secret: str | None = None) -> Endpoint:
        """Give the endpoint a new secret; the old one keeps signing alongside it for ``grace_s``."""
        if not isinstance(grace_s, (int, float)) or isinstance(grace_s, bool) or grace_s < 0:
            raise InvalidInput("grace_s must be a number of seconds >= 0")
        secret = _validate_secret(new_secret)

        def change(current: Endpoint) -> Endpoint:
            now = time.time()
            kept = [p for p in current.previous_secrets if p.expires_at > now]
            if grace_s > 0:
                kept.append(PreviousSecret(secret=current.secret, expires_at=now + grace_s))
            return current.model_copy(update={"secret": secret, "previous_secrets": kept})

        return self._change(endpoint_id, change)

    def delete(self, endpoint_id: str) -> None:
        """Delete the endpoint and its pull log; its pending deliveries go dead when they come due."""
        for _ in _attempts():  # the record as it is, readable or not
            if self._write(endpoint_id, self._read(endpoint_id), b"") == 1:
                return
        raise InvalidState(f"endpoint {endpoint_id!r} kept changing while it was being deleted; try again")

    # -- writing: compare and set ---------------------------------------------------------------------
    def _read(self, endpoint_id: str) -> bytes:
        raw = self._r.hget(self._k.endpoints, endpoint_id)
        if raw is None:
            raise EndpointNotFound(f"no endpoint {endpoint_id!r}")
        return cast(bytes, raw)

    def _write(self, endpoint_id: str, expected: bytes, new: bytes, tenant: str = "") -> int:
        k = self._k
        keys = [k.endpoints, k.endpoints_version, k.stream(endpoint_id), k.stats_outcomes, k.tenants]
        return int(self._scripts.run("endpoint_write", keys, [endpoint_id, expected, new, tenant]))

    def _change(self, endpoint_id: str, change: Callable[[Endpoint], Endpoint]) -> Endpoint:
        """Apply ``change`` to the endpoint as it is in Redis, atomically: when another writer changed it
        between the read and the write, read it again and apply the change to that."""
        for _ in _attempts():
            raw = self._read(endpoint_id)
            try:
                current = Endpoint.model_validate_json(raw)
            except ValueError:
                raise InvalidState(f"endpoint {endpoint_id!r} has an unreadable record; delete it") from None
            endpoint = change(current)
            result = self._write(endpoint_id, raw, endpoint.model_dump_json().encode())
            if result == 1:
                return endpoint
            if result == -1:
                raise EndpointNotFound(f"no endpoint {endpoint_id!r}")
        raise InvalidState(f"endpoint {endpoint_id!r} kept changing while this change was applied; try again")

    def _save_new(self, endpoint: Endpoint) -> None:
        tenant = "" if endpoint.tenant == DEFAULT_TENANT else endpoint.tenant
        result = self._write(endpoint.id, b"", endpoint.model_dump_json().encode(), tenant)
        if result == -2:
            raise TenantNotFound(f"no tenant {endpoint.tenant!r}: create it first; nothing was written")
        if result != 1:
            raise InvalidState(f"an endpoint with id {endpoint.id!r} exists already")
