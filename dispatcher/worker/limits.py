"""Per-endpoint concurrency inside one worker process, adapting like TCP's congestion window, and what
every worker process knows of the slow ones.

An endpoint starts with ``initial`` requests in flight, gains one per answer (any HTTP status) up to
``maximum``, and is halved by each timeout or connection failure. An endpoint is *slow* while its answers
(or the requests it holds unanswered) take ``SLOW_S`` or more: its requests go in the slow lane, which
has slots of its own (so hanging endpoints cannot take the healthy ones' slots), and what it cannot
take soon is handed back to Redis spread over the time it would need. Slowness is shared through Redis
(``store.pacing``): a worker process that finds an endpoint hanging tells the others, so none of them
has to rediscover it.
"""

from __future__ import annotations

import time

from dispatcher.store.pacing import SlowEndpoint
from dispatcher.worker.jobs import Outcome

SLOW_S = 1.0  # an endpoint answering (or holding requests) this long or longer is in the slow lane
MAX_SLOW_DEFER_MS = 60_000  # a slow endpoint's backlog is handed back (or born due) at most this far ahead
SHARE_EVERY_S = 1.0  # how often one process tells the others about an endpoint, at most


class EndpointLimits:
    """How many requests each endpoint may have in flight, and how long its answers take."""

    def __init__(self, maximum: int, initial: int = 2, lease_s: float = 45.0) -> None:
        self.maximum = maximum
        self.initial = min(initial, maximum)
        self.lease_s = lease_s
        self._limits: dict[str, float] = {}
        self._latency_s: dict[str, float] = {}  # moving average of answer times
        self._in_flight: dict[str, list[float]] = {}  # endpoint -> when each unanswered request left (monotonic)
        self._shared: dict[str, SlowEndpoint] = {}  # endpoint -> what other processes saw of it
        self._silent: set[str] = set()  # endpoints whose latest request here got no answer at all
        self._shared_at: dict[str, float] = {}  # when this process last shared an endpoint's state
        self._horizon: dict[str, float] = {}  # slow endpoint -> when its backlog handed back so far is due

    def get(self, endpoint_id: str) -> int:
        local = int(self._limits.get(endpoint_id, self.initial))
        shared = self._shared.get(endpoint_id)
        return local if shared is None else max(1, min(local, shared.limit))

    def latency_s(self, endpoint_id: str) -> float:
        """The endpoint's answer time as best known: the average of its answers, what other processes saw,
        and how long its oldest request in flight has been waiting."""
        known = self._latency_s.get(endpoint_id, 0.0)
        shared = self._shared.get(endpoint_id)
        if shared is not None:
            known = max(known, shared.latency_s)
        waiting = self._in_flight.get(endpoint_id)
        if waiting:
            known = max(known, time.monotonic() - min(waiting))
        return known

    def slow(self, endpoint_id: str) -> bool:
        return self.latency_s(endpoint_id) >= SLOW_S

    def hanging(self, endpoint_id: str) -> bool:
        """Slow, and its latest request (here or in another process) got no answer at all. Only such an
        endpoint's new deliveries are born paced: one that answers, however slowly, is paced by its
        in-flight limit, and a busy moment (answers near ``SLOW_S`` while everything is loaded) must not
        push a healthy endpoint's work a minute ahead."""
        shared = self._shared.get(endpoint_id)
        silent = endpoint_id in self._silent or (shared is not None and shared.silent)
        return silent and self.slow(endpoint_id)

    def queue_allowance(self, endpoint_id: str) -> int:
        """How many claimed chunks may wait here for the endpoint: up to 8 rounds of its limit when it
        answers fast, one round when it is slow, so none waits anywhere near its lease."""
        latency = self.latency_s(endpoint_id) or self.lease_s / 4
        rounds = max(1, min(8, int(self.lease_s / 4 / max(latency, 0.001))))
        return self.get(endpoint_id) * rounds

    def spacing_ms(self, endpoint_id: str) -> float:
        """How long, on average, the endpoint takes to free one request slot (0 until anything is known)."""
        return 1000 * self.latency_s(endpoint_id) / self.get(endpoint_id)

    def backlog_delays(self, endpoint_id: str, chunks: int, first_ms: int, cap_ms: int) -> list[int]:
        """Delays (ms from now) for ``chunks`` chunks of a slow endpoint handed back to Redis, one
        ``spacing_ms`` apart and after those handed back before (this process' horizon for the endpoint),
        so its backlog comes back at the pace it can take, not all again at the next claim."""
        now = time.monotonic()
        spacing_s = self.spacing_ms(endpoint_id) / 1000
        start = max(now + first_ms / 1000, self._horizon.get(endpoint_id, 0.0))
        self._horizon[endpoint_id] = start + chunks * spacing_s
        return [min(cap_ms, int((start - now + i * spacing_s) * 1000)) for i in range(chunks)]

    def started(self, endpoint_id: str) -> float:
        """A request to the endpoint leaves now; returns its start, to hand back to ``record``."""
        now = time.monotonic()
        self._in_flight.setdefault(endpoint_id, []).append(now)
        return now

    def record(self, endpoint_id: str, outcome: Outcome, started: float | None = None) -> None:
        """A request to the endpoint (that left at ``started``) finished with ``outcome``."""
        waiting = self._in_flight.get(endpoint_id)
        if waiting and started is not None:
            waiting.remove(started)
            if not waiting:
                del self._in_flight[endpoint_id]
        current = self._limits.get(endpoint_id, self.initial)
        seconds = outcome.latency_ms / 1000
        previous = self._latency_s.get(endpoint_id)
        average = seconds if previous is None else previous * 0.9 + seconds * 0.1
        # no answer at all (a timeout, a connection failure): it is at least as slow as that, now
        self._latency_s[endpoint_id] = max(average, seconds) if outcome.status is None else average
        if outcome.status is None:
            self._silent.add(endpoint_id)
            self._limits[endpoint_id] = max(1.0, current / 2)
        else:
            self._silent.discard(endpoint_id)
            if current < self.maximum:
                self._limits[endpoint_id] = min(float(self.maximum), current + 1)
        if outcome.status is not None and seconds < SLOW_S:
            self._shared.pop(endpoint_id, None)  # it answers: what others saw is over
            self._horizon.pop(endpoint_id, None)

    # -- sharing with the other worker processes --------------------------------------------------
    def to_share(self) -> tuple[dict[str, SlowEndpoint], list[str]]:
        """(slow endpoints to tell the others about, endpoints no longer slow), at most every ``SHARE_EVERY_S``."""
        now = time.monotonic()
        slow: dict[str, SlowEndpoint] = {}
        recovered: list[str] = []
        for endpoint_id, latency in self._latency_s.items():
            if now - self._shared_at.get(endpoint_id, -SHARE_EVERY_S) < SHARE_EVERY_S:
                continue
            if latency >= SLOW_S:
                limit = int(self._limits.get(endpoint_id, self.initial))
                slow[endpoint_id] = SlowEndpoint(latency, limit, endpoint_id in self._silent)
                self._shared_at[endpoint_id] = now
            elif endpoint_id in self._shared_at:
                recovered.append(endpoint_id)
                del self._shared_at[endpoint_id]
        return slow, recovered

    def learn(self, shared: dict[str, SlowEndpoint]) -> None:
        """What the other processes saw of the slow endpoints replaces what was learnt before."""
        self._shared = shared
