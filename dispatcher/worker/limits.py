"""Per-endpoint concurrency inside one worker process, adapting like TCP's congestion window."""

from __future__ import annotations

from dispatcher.worker.jobs import Outcome


class EndpointLimits:
    """How many requests each endpoint may have in flight, and how long its answers take.

    An endpoint starts with ``initial`` requests in flight, gains one per answer (any HTTP status)
    up to ``maximum``, and is halved by each timeout or connection failure. An endpoint that hangs
    soon holds one request slot instead of ``maximum``, so it cannot starve healthy endpoints.
    """

    def __init__(self, maximum: int, initial: int = 2, lease_s: float = 45.0) -> None:
        self.maximum = maximum
        self.initial = min(initial, maximum)
        self.lease_s = lease_s
        self._limits: dict[str, float] = {}
        self._latency_s: dict[str, float] = {}  # moving average of answer times

    def get(self, endpoint_id: str) -> int:
        return int(self._limits.get(endpoint_id, self.initial))

    def queue_allowance(self, endpoint_id: str) -> int:
        """How many claimed chunks may wait here for the endpoint: up to 8 rounds of its limit when it
        answers fast, one round when it is slow, so none waits anywhere near its lease."""
        latency = self._latency_s.get(endpoint_id, self.lease_s / 4)
        rounds = max(1, min(8, int(self.lease_s / 4 / max(latency, 0.001))))
        return self.get(endpoint_id) * rounds

    def spacing_ms(self, endpoint_id: str) -> float:
        """How long, on average, the endpoint takes to free one request slot (0 until it has answered)."""
        return 1000 * self._latency_s.get(endpoint_id, 0.0) / self.get(endpoint_id)

    def record(self, endpoint_id: str, outcome: Outcome) -> None:
        current = self._limits.get(endpoint_id, self.initial)
        seconds = outcome.latency_ms / 1000
        previous = self._latency_s.get(endpoint_id)
        self._latency_s[endpoint_id] = seconds if previous is None else previous * 0.9 + seconds * 0.1
        if outcome.status is None:
            self._limits[endpoint_id] = max(1.0, current / 2)
        elif current < self.maximum:
            self._limits[endpoint_id] = min(float(self.maximum), current + 1)
