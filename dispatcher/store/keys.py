"""Every Redis key the dispatcher uses, in one place. All share the configured prefix."""

from __future__ import annotations


class Keys:
    """Key names under one prefix (``Settings.key_prefix``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # hash: endpoint id -> endpoint JSON
        self.endpoints = f"{prefix}endpoints"
        # counter bumped on every endpoint change; workers reload their cache when it moves
        self.endpoints_version = f"{prefix}endpoints:ver"
        # zset: event id -> due time (ms); events waiting for fan-out (score = lease while claimed)
        self.fanout = f"{prefix}fanout"
        # zset: delivery id -> due time (ms); new deliveries, retries and claimed leases
        self.due = f"{prefix}due"
        # hash: "<endpoint id>:<delivered|retrying|dead>" -> attempts with that outcome
        self.stats_outcomes = f"{prefix}stats:outcomes"
        # hash: latency bucket upper bound in ms ("5", ..., "+Inf") -> attempts; plus "sum_ms", "count"
        self.stats_latency = f"{prefix}stats:latency"
        # hash: endpoint id -> ms when its current failing streak began (no entry = healthy)
        self.failing = f"{prefix}failing"
        # counter: events accepted by enqueue()
        self.stats_enqueued = f"{prefix}stats:enqueued"

    def event(self, event_id: str) -> str:
        """hash: body (exact JSON sent), type, ts, deliveries (comma-separated ids after fan-out)."""
        return f"{self.prefix}evt:{event_id}"

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

    def worker(self, name: str) -> str:
        """string with a TTL: a live worker's heartbeat (JSON: name, pid, concurrency, at)."""
        return f"{self.prefix}worker:{name}"

    def kick(self, stage: str, slot: int) -> str:
        """string with a short TTL: debounces publishing of kick tasks per stage and slot."""
        return f"{self.prefix}kick:{stage}:{slot}"
