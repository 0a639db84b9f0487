"""Endpoint health: an endpoint failing without a break for ``disable_after_failing_s`` is disabled.

Each worker process notes, per endpoint, whether its attempts answered 2xx or failed. Failures (and,
at most every ``CLEAR_EVERY_S`` per endpoint, successes) are written to one Redis hash holding when
each endpoint's current failing streak began (``store.health``); a success ends the streak. When a
streak outlasts the window the endpoint is disabled and an ``endpoint.disabled`` event is enqueued for
whoever subscribes to that type (operators' own endpoints, a chat robot, ...).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from dispatcher.client import Dispatcher
from dispatcher.errors import NotFound
from dispatcher.settings import Settings
from dispatcher.store.endpoints import EndpointStore
from dispatcher.store.health import FailingStreaks

log = logging.getLogger(__name__)

CLEAR_EVERY_S = 10.0
DISABLED_EVENT = "endpoint.disabled"


class EndpointHealth:
    """Collects outcomes per endpoint during one flush and reports them in one script call."""

    def __init__(
        self,
        settings: Settings,
        failing: FailingStreaks,
        endpoints: EndpointStore,
        producer: Callable[[], Dispatcher],
    ) -> None:
        self._s = settings
        self._failing = failing
        self._endpoints = endpoints
        self._producer = producer
        self._pending: dict[str, bool] = {}  # endpoint id -> any success in this flush
        self._known_failing: set[str] = set()
        self._cleared_at: dict[str, float] = {}

    def note(self, endpoint_id: str, ok: bool) -> None:
        self._pending[endpoint_id] = self._pending.get(endpoint_id, False) or ok

    def report(self, now_ms: int) -> list[str]:
        """Write this flush's health; disable endpoints whose streak outlasted the window. Returns them."""
        pending, self._pending = self._pending, {}
        now = time.monotonic()
        answered: dict[str, bool] = {}
        for ep_id, ok in pending.items():
            if not ok:
                self._known_failing.add(ep_id)
                answered[ep_id] = False
            elif ep_id in self._known_failing or now - self._cleared_at.get(ep_id, -CLEAR_EVERY_S) >= CLEAR_EVERY_S:
                self._known_failing.discard(ep_id)
                self._cleared_at[ep_id] = now
                answered[ep_id] = True
        if not answered:
            return []
        expired = self._failing.note(answered, now_ms, int(self._s.disable_after_failing_s * 1000))
        for ep_id in expired:
            self._disable(ep_id)
        return expired

    def _disable(self, endpoint_id: str) -> None:
        window_h = self._s.disable_after_failing_s / 3600
        reason = f"failing without a success for {window_h:g} h"
        with contextlib.suppress(NotFound):
            endpoint = self._endpoints.get(endpoint_id)
            if not endpoint.enabled:
                return
            self._endpoints.set_enabled(endpoint_id, False, reason)
            data = {"endpoint_id": endpoint_id, "description": endpoint.description, "reason": reason}
            idempotency_key = f"disabled:{endpoint_id}:{int(time.time())}"
            self._producer().enqueue(DISABLED_EVENT, data, idempotency_key=idempotency_key)
            log.warning("endpoint %s disabled: %s", endpoint_id, reason)
