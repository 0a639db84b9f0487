"""Every Redis key name the dispatcher uses, spelled in this one place, under the configured prefix.

Nothing else builds a key: the store's classes ask ``Keys`` and hand the names to Redis or, for the
Lua scripts, through ``KEYS``. ARCHITECTURE.md lists each key with what it holds and who writes it.
"""

from __future__ import annotations

from dispatcher.models import DEFAULT_TENANT


class Keys:
    """Key names under one prefix (``Settings.key_prefix``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # hash: endpoint id -> endpoint JSON
        self.endpoints = f"{prefix}endpoints"
        # hash: tenant id -> tenant JSON (the default tenant has no entry: it always exists)
        self.tenants = f"{prefix}tenants"
        # hash: sha256 hex of a tenant token -> its tenant id (the token itself is never stored)
        self.tenant_tokens = f"{prefix}tenants:tokens"
        # hash: endpoint id -> JSON {raw, reason, at} of an endpoint record the workers could not read
        self.endpoints_quarantine = f"{prefix}endpoints:quarantine"
        # hash: kind of stored record ("endpoint", "delivery", "event", "stream") -> how many were unusable
        self.stats_poison = f"{prefix}stats:poison"
        # counter bumped on every endpoint change; workers reload their cache when it moves
        self.endpoints_version = f"{prefix}endpoints:ver"
        # hash: event type name -> JSON {description, schema, example, updated_at} (the event-type catalog)
        self.event_types = f"{prefix}event_types"
        # counter bumped on every catalog change; producers reload their compiled schemas when it moves
        self.event_types_version = f"{prefix}event_types:ver"
        # zset: "<event id> <type>[ <endpoint ids or -> <tenant>]" -> due ms; events waiting for fan-out (lease
        # end while claimed); the last two parts only when the event is addressed or of a tenant. The default
        # tenant's lane: every other tenant's events wait in a lane of their own (``fanout_lane``)
        self.fanout = f"{prefix}fanout"
        # zset: delivery id -> due ms; new deliveries, retries and claimed leases (the default tenant's lane;
        # other tenants': ``due_lane``)
        self.due = f"{prefix}due"
        # zsets: tenant -> the earliest its fan-out (delivery) lane may hold a due entry, a lower bound put
        # right by each claim; lists the lanes of tenants other than the default that may hold entries
        self.fanout_lanes = f"{prefix}fanout:lanes"
        self.due_lanes = f"{prefix}due:lanes"
        # hash: delivery id -> "<event id> <endpoint id> <attempts> <attempts this round>", while pending
        self.jobs = f"{prefix}jobs"
        # hash: event id -> the exact body POSTed, while a delivery of the event is pending
        self.bodies = f"{prefix}bodies"
        # hash: event id -> how many of its deliveries are pending (its body goes with the last)
        self.refs = f"{prefix}refs"
        # hash: "<endpoint id>:<delivered|retrying|dead>" -> attempts with that outcome
        self.stats_outcomes = f"{prefix}stats:outcomes"
        # hash: latency bucket upper bound in ms ("5", ..., "+Inf") -> attempts; plus "sum_ms", "count"
        self.stats_latency = f"{prefix}stats:latency"
        # counter: events accepted by enqueue()
        self.stats_enqueued = f"{prefix}stats:enqueued"
        # hash: endpoint id -> ms when its current failing streak began (no entry = healthy)
        self.failing = f"{prefix}failing"
        # hash: endpoint id -> "<latency ms> <limit> <valid until ms>" of endpoints a worker found slow
        self.pacing = f"{prefix}pacing"
        # string: the data layout this Redis holds ("2"), and the lock of the process converting it
        self.layout = f"{prefix}layout"
        self.layout_lock = f"{prefix}layout:lock"
        # zset: worker name -> ms until which its last heartbeat counts
        self.workers = f"{prefix}workers"
        # hash: worker name -> JSON (name, pid, concurrency, at) of its last heartbeat
        self.workers_info = f"{prefix}workers:info"

    def event(self, event_id: str) -> str:
        """hash: body (exact JSON sent), type, ts, only, deliveries (comma-separated ids after fan-out)."""
        return f"{self.prefix}evt:{event_id}"

    def fanout_lane(self, tenant: str) -> str:
        """zset: the tenant's events waiting for fan-out, like ``fanout`` (which is the default tenant's)."""
        return self.fanout if tenant == DEFAULT_TENANT else f"{self.prefix}fanout:t:{tenant}"

    def due_lane(self, tenant: str) -> str:
        """zset: the tenant's deliveries by due time, like ``due`` (which is the default tenant's)."""
        return self.due if tenant == DEFAULT_TENANT else f"{self.prefix}due:t:{tenant}"

    def tenant_usage(self, tenant: str) -> str:
        """hash: "s" -> "<unix second> <events>", "d" -> "<unix day> <events>": a tenant's accepted events,
        kept by ``enqueue`` against the tenant's limits (expires 2 days after the last event)."""
        return f"{self.prefix}tenants:usage:{tenant}"

    def idempotency(self, key: str) -> str:
        """string: idempotency key -> first event id."""
        return f"{self.prefix}idem:{key}"

    def delivery(self, delivery_id: str) -> str:
        """hash: evt, ep, state, n (attempts), r (attempts this round), created, next, a<N> attempt JSON."""
        return f"{self.prefix}dlv:{delivery_id}"

    def endpoint_deliveries(self, endpoint_id: str) -> str:
        """zset: delivery id -> created ms, for per-endpoint listing."""
        return f"{self.prefix}ep:{endpoint_id}:dlv"

    def endpoint_dead(self, endpoint_id: str) -> str:
        """zset: delivery id -> dead-lettered ms (the endpoint's dead letter queue)."""
        return f"{self.prefix}ep:{endpoint_id}:dead"

    def stream(self, endpoint_id: str) -> str:
        """stream: the endpoint's pull log (poll / also_poll); entries prev, id, type, ts, body."""
        return f"{self.prefix}stream:{endpoint_id}"

    def rate_limit(self, endpoint_id: str) -> str:
        """hash: the endpoint's rate limit (GCRA): ``tat`` (next free send time, ms) and ``d:<delivery id>``
        (a send time reserved by a delivery handed back to the due set to wait for it); TTL'd."""
        return f"{self.prefix}rl:{endpoint_id}"

    def stats_minute(self, minute: int) -> str:
        """hash with a 2 h TTL: delivered / retrying / dead attempts in one unix minute."""
        return f"{self.prefix}stats:min:{minute}"

    def session(self, session_id: str) -> str:
        """string with a TTL: a web page login session -> the hex SHA-256 of the API key it logged in with."""
        return f"{self.prefix}session:{session_id}"

    def portal_link(self, link_digest: str) -> str:
        """string with a TTL: an unused portal link (the hex SHA-256 of its token) -> its tenant id; read and
        deleted at once (GETDEL) when the link is opened."""
        return f"{self.prefix}portal:link:{link_digest}"

    def portal_session(self, session_id: str) -> str:
        """string with a TTL: a consumer portal session -> the tenant it is scoped to."""
        return f"{self.prefix}portal:session:{session_id}"

    def kick(self, stage: str, slot: int) -> str:
        """string with a short TTL: kick slot ``slot`` (1..kick_parallelism) of ``fanout`` or ``deliver``: ``q``
        while its kick waits for a process, ``r`` while a task runs with it.
        Slot 0 is never taken: it stands for "no slot" where a script needs a key anyway."""
        return f"{self.prefix}kick:{stage}:{slot}"
