"""The work queues in Redis: events waiting for fan-out, deliveries waiting for an attempt, kick slots.

- ``fanout`` (zset): one entry per stored event, ``"<event id> <type>[ <endpoint ids>]"``, scored by the
  time it is due. A claim moves the score to the lease's end, so a worker that dies mid-batch leaves the
  entry to come back by itself. The entry carries what matching needs, so a claim reads nothing else.
- ``due`` (zset): delivery ids by due time (new, retrying, or leased while an attempt runs). Alongside it,
  ``jobs`` (delivery id -> event, endpoint, attempt counts) and ``bodies`` (event id -> body, with
  ``refs`` counting the event's pending deliveries when it has more than one; an event's only delivery
  releases its body by itself) hold what sending needs, so a claim is one round trip through declared keys
  only.
- kick slots (``kick:<stage>:<n>``): a task holds one while it works (see ``dispatcher.kicks``).
- lanes: both queues are split by tenant. ``fanout`` and ``due`` are the default tenant's lanes; every other
  tenant's work waits in lanes of its own, listed in an index (``fanout:lanes``, ``due:lanes``: tenant -> the
  earliest its lane may hold due work). A claim shares its limit equally among the lanes with due work (the
  default's and the earliest ``LANES_PER_CLAIM`` others; a lane alone gets all of it), so one tenant's
  backlog never keeps another tenant's work waiting for more than a claim.

``Queue`` owns those keys and is the only caller of the scripts that move work through them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from dispatcher.defaults import LANES_PER_CLAIM, SLOT_QUEUED_TTL_MS, SLOT_RUNNING_TTL_MS, STATS_MINUTE_TTL_S
from dispatcher.errors import NotReplicated, QuotaExceeded, TenantNotFound
from dispatcher.events import NewEvent
from dispatcher.models import DEFAULT_TENANT
from dispatcher.settings import Durability, Settings
from dispatcher.store.keys import Keys
from dispatcher.store.scripts import Scripts
from dispatcher.store.work import (
    ClaimedDelivery,
    ClaimedEvent,
    Counter,
    DeliveryClaim,
    Enqueued,
    EventClaim,
    FanoutCommitted,
    FanoutItem,
    Outcome,
    SlotMode,
    Stage,
)

REPLICAS_CHECK_S = 1.0  # how often a replicated enqueue reads how many replicas the primary has
PURGE_PAGE = 500  # deliveries per script call when an endpoint's pending work is purged


class Queue:
    """The fan-out and delivery queues and their kick slots."""

    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts, settings: Settings) -> None:
        self._r = client
        self._k = keys
        self._scripts = scripts
        self._s = settings
        self._replicas, self._replicas_at = 1, -REPLICAS_CHECK_S  # replicas of the primary, when last read
        self._heads: dict[Stage, list[str]] = {}  # per stage, the lanes index's head the last claim returned

    # -- producing -----------------------------------------------------------------------------------
    def enqueue(self, events: Sequence[NewEvent]) -> Enqueued:
        """Store events and queue them for fan-out, atomically; the fan-out slot is taken if it was free."""
        k, s = self._k, self._s
        keys = [k.fanout, k.kick(Stage.FANOUT, 1), k.stats_enqueued, k.tenants, k.fanout_lanes]
        args: list[Any] = [s.retention_s, s.idempotency_ttl_s, SLOT_QUEUED_TTL_MS, DEFAULT_TENANT]
        for ev in events:
            keys.append(k.event(ev.id))
            if ev.idempotency_key:
                keys.append(k.idempotency(ev.idempotency_key))
            keys += (k.tenant_usage(ev.tenant), k.fanout_lane(ev.tenant))
            args += (ev.id, ev.type, ev.body, ev.only, 1 if ev.idempotency_key else 0, ev.tenant)
        try:
            if s.enqueue_durability is Durability.REPLICATED:
                out = self._enqueue_replicated(keys, args)
            else:
                out = self._scripts.run("enqueue", keys, args)
        except redis.ResponseError as exc:
            if str(exc).startswith("unknown tenant "):
                tenant = str(exc).removeprefix("unknown tenant ").split()[0]
                raise TenantNotFound(f"no tenant {tenant!r}: create it first; nothing was written") from None
            if str(exc).startswith("quota exceeded "):
                tenant, which, limit, retry = str(exc).removeprefix("quota exceeded ").split()[:4]
                window = "second" if which == "per_s" else "day (UTC)"
                raise QuotaExceeded(
                    f"tenant {tenant!r} may enqueue {limit} events per {window} (max_events_{which}); nothing was "
                    f"written: try again in {retry} s",
                    int(retry),
                ) from None
            raise
        n = len(events)
        return Enqueued([v.decode() for v in out[1 : 1 + n]], [bool(v) for v in out[1 + n :]], bool(out[0]))

    def _replicas_wanted(self) -> int:
        """``enqueue_replicas``, or (0) every replica the primary has now: read with ``ROLE`` at most once
        a second, never fewer than one."""
        if self._s.enqueue_replicas:
            return self._s.enqueue_replicas
        now = time.monotonic()
        if now - self._replicas_at > REPLICAS_CHECK_S:
            role = self._r.execute_command("ROLE")
            self._replicas = max(1, len(role[2]) if role and role[0] in (b"master", "master") else 1)
            self._replicas_at = now
        return self._replicas

    def _enqueue_replicated(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The enqueue script and ``WAIT`` on one connection (``WAIT`` counts that connection's writes)."""
        s = self._s
        wanted = self._replicas_wanted()
        pipe = self._r.pipeline(transaction=False)
        self._scripts.run("enqueue", keys, args, client=pipe)
        pipe.execute_command("WAIT", wanted, s.enqueue_replica_timeout_ms)
        out, confirmed = pipe.execute()
        if int(confirmed) < wanted:
            self._replicas_at = 0.0  # look at the replicas again next time (one may have gone)
            raise NotReplicated(
                f"the event is on the Redis primary but {confirmed} of {wanted} replica(s) confirmed it "
                f"within {s.enqueue_replica_timeout_ms} ms (DISPATCHER_ENQUEUE_DURABILITY=replicated): not "
                "acknowledged; enqueue it again with the same idempotency key"
            )
        return out

    # -- fan-out ---------------------------------------------------------------------------------------
    def _lane_keys(self, stage: Stage) -> tuple[Callable[[str], str], str]:
        """The stage's lane name for a tenant (``fanout_lane`` / ``due_lane``) and its lanes index."""
        k = self._k
        return (k.fanout_lane, k.fanout_lanes) if stage is Stage.FANOUT else (k.due_lane, k.due_lanes)

    def _indexed(self, stage: Stage, count: int = 0) -> list[str]:
        """The tenants the stage's lanes index lists, the earliest first (``count`` of them, 0: all)."""
        _, index = self._lane_keys(stage)
        return [t.decode() if isinstance(t, bytes) else str(t) for t in self._r.zrange(index, 0, count - 1)]

    def _lanes(self, stage: Stage, count: int = 0) -> list[str]:
        """The stage's lanes: the default tenant's, then those the index lists (``count`` of them, 0: all)."""
        lane, _ = self._lane_keys(stage)
        return [lane(DEFAULT_TENANT), *map(lane, self._indexed(stage, count))]

    def _claim(self, stage: Stage, fixed: list[str], args: list[Any]) -> Any:
        """Run a claim script over the lanes of the tenants the index listed first (``LANES_PER_CLAIM`` of them)
        when the last claim returned its head: one round trip. Up to twice more, with the head it returns,
        when those were not the lanes it lists now, or when nothing was due in them but a lane not passed may
        hold due work; the last try claims over the lanes it is given, whatever the index lists by then."""
        lane, _ = self._lane_keys(stage)
        tenants = self._heads.get(stage, [])
        for attempt in range(3):
            check = 1 if attempt < 2 else 0
            out = self._scripts.run(
                stage.script, [*fixed, *map(lane, tenants)], [*args, LANES_PER_CLAIM, check, *tenants]
            )
            tenants = self._heads[stage] = [t.decode() for t in out[3]]
            if not int(out[2]):
                break
        return out

    def claim_events(self, limit: int, slot: int = 0, mode: SlotMode = SlotMode.NONE) -> EventClaim:
        """Lease up to ``limit`` due events for fan-out, shared fairly between the tenants' lanes."""
        k = self._k
        fixed = [k.fanout, k.kick(Stage.FANOUT, slot), k.endpoints_version, k.fanout_lanes]
        out = self._claim(Stage.FANOUT, fixed, [limit, self.lease_ms, SLOT_RUNNING_TTL_MS, mode])
        events = []
        for raw in out[4:]:
            parts = raw.decode("utf-8", "replace").split(" ")
            only = parts[2].split(",") if len(parts) > 2 and parts[2] != "-" else None
            tenant = parts[3] if len(parts) == 4 else DEFAULT_TENANT
            valid = len(parts) in (2, 3, 4) and all(parts)  # else taken off the queue with nothing created
            events.append(ClaimedEvent(raw, parts[0], parts[1] if valid else "", only if valid else None, tenant))
        return EventClaim(int(out[0]), out[1], events)

    def commit_fanout(self, items: Sequence[FanoutItem]) -> FanoutCommitted:
        """Record the deliveries (and pull-log appends) of claimed events."""
        k, s = self._k, self._s
        keys = [k.due_lanes, k.jobs, k.bodies, k.refs]
        args: list[Any] = [s.retention_s, s.poll_max_events, s.poll_max_age_s * 1000, DEFAULT_TENANT]
        for item in items:
            ev = item.event
            keys += (k.event(ev.id), k.fanout_lane(ev.tenant), k.due_lane(ev.tenant))
            args += (ev.entry, ev.id, ev.tenant, len(item.deliveries), len(item.logs))
            for endpoint_id, delivery_id in item.deliveries:
                keys += (k.delivery(delivery_id), k.endpoint_deliveries(endpoint_id))
                args += (endpoint_id, delivery_id, item.delays.get(delivery_id, 0))
            keys += (k.stream(endpoint_id) for endpoint_id in item.logs)
        out = self._scripts.run("fanout_commit", keys, args)
        return FanoutCommitted(int(out[0]), [v.decode() for v in out[1:]])

    # -- delivery --------------------------------------------------------------------------------------
    @property
    def lease_ms(self) -> int:
        return int(self._s.lease_s * 1000)

    def claim_deliveries(self, limit: int, slot: int = 0, mode: SlotMode = SlotMode.NONE) -> DeliveryClaim:
        """Lease up to ``limit`` due deliveries with what sending them needs, shared fairly between the
        tenants' lanes."""
        k = self._k
        fixed = [k.due, k.kick(Stage.DELIVER, slot), k.endpoints_version, k.due_lanes, k.jobs, k.bodies]
        out = self._claim(Stage.DELIVER, fixed, [limit, self.lease_ms, SLOT_RUNNING_TTL_MS, mode])
        claimed: list[ClaimedDelivery] = []
        orphans: list[str] = []
        malformed: list[tuple[bytes, str]] = []
        i = 4
        while i < len(out):
            tenant, count = out[i].decode() or DEFAULT_TENANT, int(out[i + 1])
            for j in range(i + 2, i + 2 + 3 * count, 3):
                raw_id, job = out[j], out[j + 1]
                if not job:
                    orphans.append(raw_id.decode("utf-8", "replace"))
                    continue
                try:
                    parts = job.decode().split(" ")  # a fifth part, "s": the event's only delivery
                    if len(parts) == 5 and parts[4] == "s":
                        parts.pop()
                    event_id, endpoint_id, n, r = parts
                    row = (raw_id.decode(), endpoint_id, event_id, int(n), int(r), out[j + 2] or None, tenant)
                    claimed.append(row)
                except ValueError:  # a job (or an id) overwritten by something else
                    malformed.append((raw_id, tenant))
            i += 2 + 3 * count
        return DeliveryClaim(int(out[0]), out[1], claimed, orphans, malformed)

    def purge_endpoint(self, endpoint_id: str, reason: str) -> int:
        """Every pending delivery of an endpoint (its listing, a page at a time) taken off its lane as dead
        with ``reason``; returns how many. For a deleted endpoint: its work does not linger."""
        k, purged, start = self._k, 0, 0
        listing = k.endpoint_deliveries(endpoint_id)
        while True:
            ids = [
                i.decode() if isinstance(i, bytes) else str(i)
                for i in self._r.zrange(listing, start, start + PURGE_PAGE - 1)
            ]
            if not ids:
                return purged
            pipe = self._r.pipeline(transaction=False)
            for d in ids:
                pipe.hget(k.delivery(d), "tenant")  # set by fan-out for a tenant other than the default
            by_tenant: dict[str, list[str]] = {}
            for d, tenant in zip(ids, pipe.execute(), strict=True):
                by_tenant.setdefault(tenant.decode() if tenant else DEFAULT_TENANT, []).append(d)
            for tenant, page in by_tenant.items():
                keys = [k.due_lane(tenant), k.jobs, k.bodies, k.refs, *(k.delivery(d) for d in page)]
                purged += int(self._scripts.run("purge", keys, [self._s.retention_s, reason, *page]))
            start += PURGE_PAGE

    def drop(self, deliveries: Sequence[tuple[str | bytes, str]]) -> None:
        """Take deliveries whose job cannot be read off the queue, given as (id, tenant); their records stay
        as they are."""
        if deliveries:
            pipe = self._r.pipeline(transaction=True)
            for delivery_id, tenant in deliveries:
                pipe.zrem(self._k.due_lane(tenant), delivery_id)
            pipe.hdel(self._k.jobs, *(delivery_id for delivery_id, _ in deliveries))
            pipe.execute()

    def record(self, outcomes: Sequence[Outcome], counters: Mapping[tuple[Counter, str], int], now_ms: int) -> None:
        """Write a batch of attempt outcomes and counter increments in one script call."""
        k, s = self._k, self._s
        keys = [k.due_lanes, k.jobs, k.bodies, k.refs, k.stats_outcomes, k.stats_latency,
                k.stats_minute(now_ms // 60000)]  # fmt: skip
        args: list[Any] = [s.retention_s, now_ms, STATS_MINUTE_TTL_S, len(outcomes)]
        for o in outcomes:
            keys += (k.delivery(o.delivery_id), k.endpoint_dead(o.endpoint_id), k.due_lane(o.tenant))
            args += (o.delivery_id, o.event_id, o.endpoint_id, o.state, o.n, o.r, o.attempt,
                     "" if o.next_ms is None else o.next_ms, 1 if o.dead_letter else 0,
                     "" if o.tenant == DEFAULT_TENANT else o.tenant)  # fmt: skip
        for (counter, name), amount in counters.items():
            args += (int(counter), name, amount)
        self._scripts.run("record", keys, args)

    def defer(self, due: Mapping[str, tuple[int, str]], holds: Mapping[str, Mapping[str, int]] | None = None) -> None:
        """Hand claimed deliveries back to their lanes (delivery id -> (due ms, tenant)); ``holds`` keeps
        rate-limit send slots reserved by them (endpoint id -> {delivery id: slot ms}), in the same transaction."""
        if not due:
            return
        k = self._k
        lanes: dict[str, dict[str, int]] = {}
        for delivery_id, (at_ms, tenant) in due.items():
            lanes.setdefault(tenant, {})[delivery_id] = at_ms
        pipe = self._r.pipeline(transaction=True)
        for endpoint_id, slots in (holds or {}).items():
            pipe.hset(k.rate_limit(endpoint_id), mapping={f"d:{d}": ms for d, ms in slots.items()})
        for tenant, members in lanes.items():
            pipe.zadd(k.due_lane(tenant), members)
            if tenant != DEFAULT_TENANT:
                pipe.zadd(k.due_lanes, {tenant: min(members.values())}, lt=True)
        pipe.execute()

    def pending(self) -> int:
        """Entries in every lane of both queues: events waiting for fan-out and pending deliveries."""
        return sum(self.count_in_lanes(stage, ("-inf", "+inf"))[0] for stage in Stage)

    def count_in_lanes(self, stage: Stage, *ranges: tuple[str, str]) -> list[int]:
        """Per (low, high) range (``zcount`` bounds), the entries of every lane of ``stage`` scored within it,
        read with one look at the lanes index and one round trip."""
        lanes = self._lanes(stage)
        pipe = self._r.pipeline(transaction=False)
        for low, high in ranges:
            for name in lanes:
                pipe.zcount(name, low, high)
        counts = [int(n) for n in pipe.execute()]
        return [sum(counts[i : i + len(lanes)]) for i in range(0, len(counts), len(lanes))]

    def drop_lanes(self, tenant: str) -> None:
        """Delete a deleted tenant's lanes (what is left in them: events its endpoints' deletion left to
        find no endpoint, and nothing else)."""
        if tenant == DEFAULT_TENANT:
            return
        k = self._k
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(k.fanout_lane(tenant), k.due_lane(tenant))
        pipe.zrem(k.fanout_lanes, tenant)
        pipe.zrem(k.due_lanes, tenant)
        pipe.execute()

    # -- kick slots ------------------------------------------------------------------------------------
    def slot_keys(self, stage: Stage) -> list[str]:
        return [self._k.kick(stage, i) for i in range(1, self._s.kick_parallelism + 1)]

    def held_slots(self, stage: Stage) -> int:
        """How many of the stage's kick slots are held (by a queued kick or a running task)."""
        return int(self._r.exists(*self.slot_keys(stage)))

    def take_slots(self, stage: Stage, wanted: int) -> list[int]:
        """Take up to ``wanted`` free kick slots of ``stage``; returns their numbers."""
        taken = self._scripts.run("take_slots", self.slot_keys(stage), [SLOT_QUEUED_TTL_MS, wanted])
        return [int(slot) for slot in taken]

    def release_slots(self, stage: Stage, slots: list[int]) -> None:
        """Free slots taken for kicks that could not be published, so the next scheduler pass retries."""
        if slots:
            self._r.delete(*(self._k.kick(stage, slot) for slot in slots))

    def handoff(self, stage: Stage, slot: int) -> bool:
        """At the end of a task: keep its slot when work is due (True: publish a follow-up kick), else free it."""
        lane, index = self._lane_keys(stage)
        keys = [lane(DEFAULT_TENANT), self._k.kick(stage, slot), index]
        return bool(self._scripts.run("handoff", keys, [SLOT_QUEUED_TTL_MS]))

    def keep_slot(self, stage: Stage, slot: int) -> None:
        """A running task says it is alive: its slot lives ``SLOT_RUNNING_TTL_MS`` more."""
        self._r.set(self._k.kick(stage, slot), "r", px=SLOT_RUNNING_TTL_MS)

    def kick_waiting(self, stage: Stage) -> bool:
        """Whether a kick of ``stage`` is queued and no task has picked it up yet (its slot says ``q``; a
        running task's says ``r``)."""
        return b"q" in self._r.mget(self.slot_keys(stage))

    def count_due(self, stage: Stage, cap: int) -> int:
        """How many entries of the stage's lanes are due now (counted up to ``cap``)."""
        return int(self._scripts.run("count_due", self._lanes(stage, LANES_PER_CLAIM), [cap]))
