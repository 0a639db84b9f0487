"""Poison records: stored records a worker cannot use. Each is set aside with a reason a person can read,
logged once per process, and counted (``dispatcher_poison_records_total{kind}``); the loop goes on.

- an endpoint whose record does not read or whose URL, template or keys cannot be used: disabled with the
  reason (or, when even its JSON does not parse, moved to ``endpoints:quarantine``); its deliveries go
  dead with the reason (``Skip.ENDPOINT_UNUSABLE``);
- a queued delivery without a usable job: dropped from the queue (its record, if any, stays readable);
- an event whose body a chat robot cannot read: its delivery goes dead with the reason.
"""

from __future__ import annotations

import logging

from dispatcher.errormap import translated
from dispatcher.errors import StoreError
from dispatcher.store import Store

log = logging.getLogger(__name__)

ENDPOINT, DELIVERY, EVENT, STREAM = "endpoint", "delivery", "event", "stream"
SEEN_MAX = 10_000  # records remembered as already reported, per process


class Poison:
    """Reports each unusable record once per process and takes it out of service."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen: set[tuple[str, str]] = set()

    def _first(self, kind: str, record_id: str) -> bool:
        key = (kind, record_id)
        if key in self._seen:
            return False
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()
        self._seen.add(key)
        return True

    def endpoint(self, endpoint_id: str, reason: str) -> None:
        if not self._first(ENDPOINT, endpoint_id):
            return
        try:
            with translated():
                done = self._store.endpoints.set_aside(endpoint_id, reason)
                self._store.poison.add(ENDPOINT)
        except StoreError as exc:
            self._seen.discard((ENDPOINT, endpoint_id))  # try again next time
            log.warning("could not set endpoint %s aside (%s)", endpoint_id, exc)
            return
        log.warning("endpoint %s %s: %s", endpoint_id, done, reason)

    def deliveries(self, ids: list[str], reason: str) -> None:
        fresh = [i for i in ids if self._first(DELIVERY, i)]
        if not fresh:
            return
        log.warning("%d queued deliveries dropped (%s): %s", len(fresh), reason, ", ".join(fresh[:5]))
        try:
            with translated():
                self._store.poison.add(DELIVERY, len(fresh))
        except StoreError:
            pass

    def event(self, event_id: str, reason: str) -> None:
        if not self._first(EVENT, event_id):
            return
        log.warning("event %s cannot be delivered: %s", event_id, reason)
        try:
            with translated():
                self._store.poison.add(EVENT)
        except StoreError:
            pass
