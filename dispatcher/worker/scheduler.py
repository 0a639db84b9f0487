"""The scheduler: wakes workers when retries come due or leases expire.

Pending work never leaves Redis: new and retrying deliveries wait in the ``due`` sorted set and a
claimed one comes back by itself when its lease runs out. All the scheduler does is publish kicks
when something is due and no worker holds a slot for it, so running several (a standalone
``dispatcher scheduler`` and one inside each worker) is harmless: slots bound the kicks and claims
are atomic, so nothing fires twice.
"""

from __future__ import annotations

import logging
import threading

import redis

from dispatcher.kicks import Kicker

log = logging.getLogger(__name__)


def run_scheduler(kicker: Kicker, interval_s: float, stop: threading.Event) -> None:
    """Tick every ``interval_s`` until ``stop`` is set; survives Redis outages by retrying."""
    failing = False
    while not stop.is_set():
        try:
            sent = kicker.tick()
            if failing:
                log.info("scheduler: Redis reachable again")
                failing = False
            if any(sent.values()):
                log.debug("scheduler kicked %s", sent)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if not failing:
                log.warning("scheduler: cannot reach Redis or the broker (%s); retrying", type(exc).__name__)
                failing = True
        except Exception:
            log.exception("scheduler tick failed")
        stop.wait(interval_s)
