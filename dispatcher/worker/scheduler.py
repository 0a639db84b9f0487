"""The scheduler: wakes workers when retries come due or leases expire.

Pending work never leaves Redis: new and retrying deliveries wait in the ``due`` sorted set and a
claimed one comes back by itself when its lease runs out. All the scheduler does is publish kicks
when something is due and no worker holds a slot for it, so running several (a standalone
``dispatcher scheduler`` and one inside each worker) is harmless: slots bound the kicks and claims
are atomic, so nothing fires twice.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from dispatcher.errormap import translated
from dispatcher.errors import BrokerUnavailable, ConfigError, StoreError
from dispatcher.kicks import Kicker, check_broker, make_celery
from dispatcher.redis_choice import redact_url
from dispatcher.settings import Settings
from dispatcher.store import Store

log = logging.getLogger(__name__)


def run_scheduler(kicker: Kicker, interval_s: float, stop: threading.Event) -> None:
    """Tick every ``interval_s`` until ``stop`` is set; survives Redis outages by retrying."""
    failing = False
    while not stop.is_set():
        try:
            with translated():
                sent = kicker.tick()
            if failing:
                log.info("scheduler: Redis reachable again")
                failing = False
            if any(sent.values()):
                log.debug("scheduler kicked %s", sent)
        except (StoreError, BrokerUnavailable) as exc:
            if not failing:
                log.warning("scheduler: cannot reach Redis or the broker (%s); retrying", type(exc).__name__)
                failing = True
        except Exception:
            log.exception("scheduler tick failed")
        stop.wait(interval_s)


def main(argv: Sequence[str] | None = None) -> None:
    """The standalone scheduler (``dispatcher scheduler``, ``python -m dispatcher.worker.scheduler``)."""
    parser = argparse.ArgumentParser(prog="dispatcher scheduler", description="Kick workers when work comes due.")
    parser.add_argument("--interval", type=float, default=None, help="seconds between ticks")
    parser.add_argument("-l", "--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
        app = make_celery(settings, "dispatcher-scheduler")
        check_broker(app, settings)  # a broker that does not answer: one clear line, nothing written
        store = Store(settings)  # a Redis it cannot run on (a Cluster node, a Sentinel name nobody knows): too
    except ConfigError as exc:
        raise SystemExit(f"dispatcher scheduler: {exc}") from None
    every = args.interval if args.interval is not None else settings.scheduler_interval_s
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("scheduler: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info(
            "scheduler running every %.2fs on %s (prefix %s); Ctrl-C stops it",
            every,
            settings.redis_choice().describe(),
            settings.key_prefix,
        )
        if settings.broker_url:
            log.info("kicks through the broker %s (from DISPATCHER_BROKER_URL)", redact_url(settings.broker_url))
        run_scheduler(Kicker(settings, store.queue, app), every, stop)
        log.info("scheduler stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        app.close()
        store.close()


if __name__ == "__main__":
    main()
