"""Per-endpoint rate limits in Redis (``rl:<endpoint id>``), shared by every worker: a GCRA of send slots.

The policy (which deliveries wait where) is the worker's (``dispatcher.worker.ratelimit``); this class
only reserves slots and pauses a throttled endpoint, one script call each.
"""

from __future__ import annotations

from collections.abc import Sequence

from dispatcher.store.keys import Keys
from dispatcher.store.scripts import Scripts

BURST = 1  # requests that may go at once after a quiet spell
HOLD_TTL_MS = 3_600_000  # how long a reserved slot outlives the endpoint's next free slot


class RateLimits:
    """Send slots of rate-limited endpoints."""

    def __init__(self, keys: Keys, scripts: Scripts) -> None:
        self._k = keys
        self._scripts = scripts

    def reserve(self, endpoint_id: str, interval_ms: float, chunks: Sequence[Sequence[str]]) -> tuple[int, list[int]]:
        """One slot per chunk of delivery ids (one request each), in order: (Redis' clock ms, slot ms per chunk).
        A chunk whose deliveries were handed back holding a slot gets that slot again."""
        args: list[object] = [interval_ms, BURST, HOLD_TTL_MS]
        for chunk in chunks:
            args.append(len(chunk))
            args.extend(chunk)
        out = self._scripts.run("rate_reserve", [self._k.rate_limit(endpoint_id)], args)
        return int(out[0]), [int(slot) for slot in out[1:]]

    def pause(self, endpoint_id: str, seconds: float) -> None:
        """The platform throttled us: hand out no new slot of this endpoint for ``seconds``."""
        self._scripts.run("rate_pause", [self._k.rate_limit(endpoint_id)], [int(seconds * 1000), HOLD_TTL_MS])
