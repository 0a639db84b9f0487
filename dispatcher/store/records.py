"""Delivery records: reading them back, and replaying dead ones."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import redis

from dispatcher.errors import DeliveryNotFound, EventNotFound, InvalidState
from dispatcher.models import DEFAULT_TENANT, Attempt, Delivery, DeliveryState
from dispatcher.store.keys import Keys
from dispatcher.store.scripts import Scripts


def _s(value: Any) -> str:
    """Text of a Redis reply (bytes, or None for a missing field)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_delivery(delivery_id: str, raw: dict[Any, Any]) -> Delivery:
    """A Delivery from its Redis hash (fields: evt, ep, state, n, created, next, a<N>); ``ValueError`` when
    the record does not read. An attempt that does not read is left out."""
    attempts = []
    numbered = sorted((int(k[1:]), k) for k in raw if k[:1] == b"a" and k[1:].isdigit() and len(k) < 12)
    for _, key in numbered:
        try:
            attempts.append(Attempt.model_validate(orjson.loads(raw[key])))
        except (ValueError, TypeError):
            continue
    nxt = raw.get(b"next")
    state = DeliveryState(_s(raw.get(b"state")) or "pending")
    return Delivery(
        id=delivery_id,
        event_id=_s(raw.get(b"evt")),
        endpoint_id=_s(raw.get(b"ep")),
        state=state,
        attempts=attempts,
        created_at=int(raw.get(b"created", b"0")) / 1000,
        next_attempt_at=int(nxt) / 1000 if nxt and state in (DeliveryState.PENDING, DeliveryState.RETRYING) else None,
    )


LIST_PAGE = 200  # delivery records read per round trip when listing by state


# why a lookup can miss a record that once existed
EXPIRED = " (unknown, or older than DISPATCHER_RETENTION_S and expired)"


class Records:
    """Read access to events and deliveries, and replay."""

    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts) -> None:
        self._r = client
        self._k = keys
        self._scripts = scripts

    def event(self, event_id: str) -> dict[str, Any]:
        try:
            raw = self._r.hgetall(self._k.event(event_id))
        except redis.ResponseError:  # the key was overwritten by something else
            raise InvalidState(f"event {event_id!r} has an unreadable record") from None
        if not raw:
            raise EventNotFound(f"no event {event_id!r}{EXPIRED}")
        try:
            body = orjson.loads(raw[b"body"])
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (KeyError, ValueError):
            raise InvalidState(f"event {event_id!r} has an unreadable record") from None
        tenant = _s(raw[b"tenant"]) if b"tenant" in raw else DEFAULT_TENANT
        return {**body, "fanned_out": b"deliveries" in raw, "tenant": tenant}

    def delivery_ids(self, event_id: str) -> list[str]:
        value = self._r.hget(self._k.event(event_id), "deliveries")
        if value is None:
            if not self._r.exists(self._k.event(event_id)):
                raise EventNotFound(f"no event {event_id!r}{EXPIRED}")
            return []
        return [d for d in _s(value).split(",") if d]

    def get_many(self, delivery_ids: list[str]) -> list[Delivery]:
        """The deliveries that exist and read, in the order asked."""
        pipe = self._r.pipeline(transaction=False)
        for d in delivery_ids:
            pipe.hgetall(self._k.delivery(d))
        found = []
        for d, raw in zip(delivery_ids, pipe.execute(raise_on_error=False), strict=True):
            if raw and isinstance(raw, dict):
                with contextlib.suppress(ValueError):
                    found.append(parse_delivery(d, raw))
        return found

    def get(self, delivery_id: str) -> Delivery:
        try:
            raw = self._r.hgetall(self._k.delivery(delivery_id))
        except redis.ResponseError:  # the key was overwritten by something else
            raw = None
        if not raw:
            raise DeliveryNotFound(f"no delivery {delivery_id!r}{EXPIRED}")
        try:
            return parse_delivery(delivery_id, raw)
        except ValueError:
            raise InvalidState(f"delivery {delivery_id!r} has an unreadable record") from None

    def for_event(self, event_id: str) -> list[Delivery]:
        return self.get_many(self.delivery_ids(event_id))

    def for_endpoint(
        self, endpoint_id: str, state: DeliveryState | str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Newest first. ``state='dead'`` reads the dead-letter queue directly."""
        if state is not None and DeliveryState(state) is DeliveryState.DEAD:
            ids = self._r.zrevrange(self._k.endpoint_dead(endpoint_id), 0, limit - 1)
            return self.get_many([_s(i) for i in ids])
        if state is None:
            ids = self._r.zrevrange(self._k.endpoint_deliveries(endpoint_id), 0, limit - 1)
            return self.get_many([_s(i) for i in ids])
        wanted = DeliveryState(state)
        found: list[Delivery] = []
        start = 0
        while len(found) < limit:  # newest first, a page at a time, until enough are found
            ids = self._r.zrevrange(self._k.endpoint_deliveries(endpoint_id), start, start + LIST_PAGE - 1)
            if not ids:
                break
            found += (d for d in self.get_many([_s(i) for i in ids]) if d.state == wanted)
            start += LIST_PAGE
        return found[:limit]

    def dead_counts(self, endpoint_ids: list[str]) -> list[int]:
        """How many dead letters each endpoint holds."""
        if not endpoint_ids:
            return []
        pipe = self._r.pipeline(transaction=False)
        for endpoint_id in endpoint_ids:
            pipe.zcard(self._k.endpoint_dead(endpoint_id))
        return [int(n) for n in pipe.execute()]

    def replay(self, delivery_id: str) -> None:
        """Queue a dead delivery again, starting a fresh round of the retry schedule."""
        k = self._k
        found = self._r.hmget(k.delivery(delivery_id), "evt", "ep", "tenant")
        event_id, endpoint_id, tenant = (_s(v) for v in found)
        if not endpoint_id:
            raise DeliveryNotFound(f"no delivery {delivery_id!r}{EXPIRED}")
        keys = [k.delivery(delivery_id), k.due_lane(tenant or DEFAULT_TENANT), k.endpoint_dead(endpoint_id)]
        keys += (k.jobs, k.bodies, k.refs, k.event(event_id), k.due_lanes)
        result = int(self._scripts.run("replay", keys, [delivery_id, event_id, endpoint_id, tenant or ""]))
        if result == -1:
            raise DeliveryNotFound(f"no delivery {delivery_id!r}{EXPIRED}")
        if result == 0:
            raise InvalidState(f"delivery {delivery_id!r} is not dead; only dead deliveries can be replayed")

    def replay_endpoint(self, endpoint_id: str, since: float | None = None) -> int:
        """Replay every dead delivery of an endpoint (dead-lettered at or after ``since``); returns the count."""
        low = "-inf" if since is None else int(since * 1000)
        ids = [_s(i) for i in self._r.zrangebyscore(self._k.endpoint_dead(endpoint_id), low, "+inf")]
        count = 0
        for delivery_id in ids:
            try:
                self.replay(delivery_id)
                count += 1
            except (DeliveryNotFound, InvalidState):
                self._r.zrem(self._k.endpoint_dead(endpoint_id), delivery_id)
        return count
