"""What operators see of the delivery loop: Flower tasks that are deliveries, and one log line per failure.

Flower builds its Tasks page, dashboard, ``/api/tasks`` and ``/metrics`` from Celery's task events
(``task-received``, ``task-succeeded``, ``task-retried``, ``task-failed``). The Celery tasks of this
dispatcher are only kicks, each of which delivers many webhooks, so the delivery loop sends those events
itself, one task per delivery attempt, from hooks on the recorder (``recording.Recorder``):

- uuid ``<delivery id>.<attempt>`` (a batched POST: ``<webhook-id of the batch>.<attempt>``), so every
  attempt is a row and Flower's counters count attempts as ``dispatcher_deliveries_total`` does;
- name ``<kind>:<event type>`` (``webhook:order.paid``, ``slack:order.paid``; a batch of several types
  ``webhook:*``); args ``(endpoint id, host)`` (never the URL: it may carry a token); kwargs the event
  id(s) and type(s), the attempt number, and for a batch how many events it carried;
- delivered = SUCCESS (runtime: the HTTP exchange), failed and rescheduled = RETRY (the reason and the
  time of the next attempt), dead-lettered = FAILURE (the reason; no traceback: nothing crashed).

Events of one recorder flush go out as one ``task.multi`` message (Celery's batched form), so the cost
is one publish per flush, not per delivery. While a worker process delivers faster than
``flower_max_tasks_per_s``, its attempts are tallied per endpoint and sent as one task per endpoint per
second (kwargs count each outcome; state: the worst of them), so Flower's load stays bounded at any
rate. ``flower_every`` > 1 always aggregates: one task per endpoint per N attempts. A publish that fails drops
that flush's events (logged once until one succeeds again): monitoring never holds up delivery.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.events import Event
from celery.events.event import get_exchange
from celery.utils.time import utcoffset
from kombu import Connection, Producer

from dispatcher import events
from dispatcher.models import DeliveryState
from dispatcher.worker.http import batch_message_id
from dispatcher.worker.recording import Recorded

log = logging.getLogger(__name__)

FLOWER_STATE = {
    DeliveryState.DELIVERED: "task-succeeded",
    DeliveryState.RETRYING: "task-retried",
    DeliveryState.DEAD: "task-failed",
}
_WORST = (DeliveryState.DEAD, DeliveryState.RETRYING, DeliveryState.DELIVERED)
OVERFLOW_WINDOW_S = 1.0  # over ``flower_max_tasks_per_s``: one task per endpoint per this long
EVENTS_CONNECT_TIMEOUT_S = 1.0  # connecting to the broker for Flower's events, at most (then they are dropped)
EVENTS_RECONNECT_S = 2.0  # after a failed attempt, events are dropped this long before the next one


def reason(item: Recorded) -> str:
    """Why an attempt failed, as one line (the attempt's error, else its status)."""
    outcome = item.outcome
    if outcome.error:
        return outcome.error
    if outcome.rejected:
        return f"HTTP {outcome.status}, refused by the platform"
    return f"HTTP {outcome.status}"


def describe(item: Recorded) -> str:
    """The endpoint and deliveries an outcome is about, for a log line (host only, never the URL)."""
    jobs = item.jobs
    host = item.target.url.host if item.target is not None else "-"
    what = f"delivery {jobs[0].id}" if len(jobs) == 1 else f"{len(jobs)} deliveries (batch)"
    return f"{what} to endpoint {jobs[0].endpoint_id} ({host}), attempt {jobs[0].n + 1}"


def log_outcome(item: Recorded) -> None:
    """A receiver's failure is one line: INFO when it will be retried, WARNING when dead-lettered."""
    state = item.decision.state
    if state is DeliveryState.RETRYING:
        log.info("%s failed: %s; next attempt in %.1fs", describe(item), reason(item), item.decision.delay_s or 0)
    elif state is DeliveryState.DEAD:
        log.warning("%s dead-lettered: %s", describe(item), reason(item))


def _kind(item: Recorded) -> str:
    target = item.target
    if target is None:
        return "webhook"
    return target.robot.KIND if target.robot is not None else "webhook"


@dataclass(slots=True)
class _Tally:
    """One endpoint's attempts since its last aggregated task (``flower_every`` > 1)."""

    name: str
    args: str
    started: float
    states: Counter[DeliveryState] = field(default_factory=Counter)
    events: int = 0
    runtime_s: float = 0.0
    last_reason: str = ""
    attempts: int = 0
    opened: float = field(default_factory=time.monotonic)


class TaskFeed:
    """Celery task events for Flower, one flush of the recorder at a time."""

    def __init__(self, app: Celery, hostname: str, every: int = 1, max_per_s: float = 0.0) -> None:
        self.app = app
        self.hostname = hostname
        self.every = max(1, every)
        self.max_per_s = max_per_s  # attempts a second up to which each is a task (0: no cap); beyond, tallies
        self._window_start = time.monotonic()
        self._window_count = 0
        self.pid = os.getpid()
        self.buffer: list[dict[str, Any]] = []
        self.tallies: dict[str, _Tally] = {}
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._failing = False
        self._reconnect_at = 0.0

    # -- building events --------------------------------------------------------------------------
    def _event(self, type_: str, at: float, **fields: Any) -> None:
        self.buffer.append(
            Event(
                type_,
                hostname=self.hostname,
                utcoffset=utcoffset(),
                pid=self.pid,
                clock=self.app.clock.forward(),
                timestamp=at,
                **fields,
            )
        )

    def _task(
        self,
        task_id: str,
        name: str,
        args: str,
        kwargs: str,
        state: DeliveryState,
        start: float,
        end: float,
        runtime_s: float,
        why: str,
        next_at: float | None,
    ) -> None:
        self._event("task-received", start, uuid=task_id, name=name, args=args, kwargs=kwargs, retries=0)
        if state is DeliveryState.DELIVERED:
            self._event("task-succeeded", end, uuid=task_id, result=why, runtime=runtime_s)
        elif state is DeliveryState.RETRYING:
            when = datetime.fromtimestamp(next_at or end, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            self._event("task-retried", end, uuid=task_id, exception=f"{why}; next attempt at {when}", traceback="")
        else:
            self._event("task-failed", end, uuid=task_id, exception=f"dead-lettered: {why}", traceback="")

    def on_outcome(self, item: Recorded) -> None:
        """The recorder's hook for every decided outcome."""
        jobs, outcome, state = item.jobs, item.outcome, item.decision.state
        types = sorted({events.type_of(j.body) for j in jobs})
        name = f"{_kind(item)}:{types[0] if len(types) == 1 else '*'}"
        host = item.target.url.host if item.target is not None else "-"
        args = repr((jobs[0].endpoint_id, host))
        runtime_s = outcome.latency_ms / 1000
        end = outcome.at
        start = end - runtime_s if outcome.sent else end
        why = reason(item) if state is not DeliveryState.DELIVERED else f"HTTP {outcome.status}"
        if self.every > 1 or self._over_rate():
            self._tally(jobs[0].endpoint_id, name, args, item, start, end, runtime_s, why)
            return
        attempt = jobs[0].n + 1
        if len(jobs) == 1:
            task_id = f"{jobs[0].id}.{attempt}"
            kwargs = {"event_id": jobs[0].event_id, "type": types[0], "attempt": attempt}
        else:
            task_id = f"{batch_message_id(jobs)}.{attempt}"
            kwargs = {"events": len(jobs), "types": types, "attempt": attempt}
        next_at = end + item.decision.delay_s if item.decision.delay_s is not None else None
        self._task(task_id, name, args, repr(kwargs), state, start, end, runtime_s, why, next_at)

    def _over_rate(self) -> bool:
        """Whether this attempt is past ``max_per_s`` in the current window (a second): the first
        ``max_per_s`` attempts of each window are a task each, the rest are tallied, so Flower never gets
        more than that plus a task per endpoint per second, even from a burst right after a quiet spell."""
        if not self.max_per_s:
            return False
        now = time.monotonic()
        if now - self._window_start >= OVERFLOW_WINDOW_S:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        return self._window_count > self.max_per_s * OVERFLOW_WINDOW_S

    def _tally(
        self, ep_id: str, name: str, args: str, item: Recorded, start: float, end: float, runtime_s: float, why: str
    ) -> None:
        tally = self.tallies.get(ep_id)
        if tally is None:
            tally = self.tallies[ep_id] = _Tally(name, args, start)
        elif tally.name != name:
            tally.name = name.split(":", 1)[0] + ":*"
        tally.states[item.decision.state] += 1
        tally.events += len(item.jobs)
        tally.attempts += 1
        tally.runtime_s += runtime_s
        if item.decision.state is not DeliveryState.DELIVERED:
            tally.last_reason = why
        if self.every > 1 and tally.attempts >= self.every:
            self._emit_tally(ep_id, end)

    def _emit_tally(self, ep_id: str, end: float) -> None:
        tally = self.tallies.pop(ep_id)
        state = next(s for s in _WORST if tally.states[s])
        kwargs = {
            "attempts": tally.attempts,
            "events": tally.events,
            **{s.value: tally.states[s] for s in reversed(_WORST)},
        }
        summary = ", ".join(f"{n} {s.value}" for s, n in tally.states.items())
        why = summary if state is DeliveryState.DELIVERED else f"{summary}; last failure: {tally.last_reason}"
        task_id = f"{ep_id}.{uuid.uuid4().hex[:12]}"
        self._task(
            task_id,
            tally.name,
            tally.args,
            repr(kwargs),
            state,
            tally.started,
            end,
            tally.runtime_s / tally.attempts,
            why,
            None,
        )

    # -- sending ----------------------------------------------------------------------------------
    def publish(self, _now_ms: int = 0) -> None:
        """Send what the last flush produced as one ``task.multi`` message (the recorder's after-flush hook)."""
        if self.every == 1 and self.tallies:  # over the cap: one task per endpoint per second
            now, wall = time.monotonic(), time.time()
            for ep_id in [e for e, t in self.tallies.items() if now - t.opened >= OVERFLOW_WINDOW_S]:
                self._emit_tally(ep_id, wall)
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        reused = self._producer is not None
        try:
            try:
                self._send(batch)
            except Exception:
                if not reused:
                    raise
                # a connection that worked before and broke (the broker restarted): one more try on a new one
                self._reset()
                self._send(batch)
        except Exception as exc:  # monitoring must never hold up delivery
            self._reset()
            if not self._failing:
                log.warning(
                    "Flower events not sent (%s: %s); dropping them until the broker answers", type(exc).__name__, exc
                )
            self._failing = True
            return
        self._failing = False

    def _send(self, batch: list[dict[str, Any]]) -> None:
        producer = self._producer or self._connect()
        producer.publish(
            batch,
            routing_key="task.multi",
            exchange=self.app.conf.event_exchange,
            serializer=self.app.conf.event_serializer,
            headers={"hostname": self.hostname},
            delivery_mode=1,
            retry=False,
        )

    def close(self) -> None:
        """Send the aggregated tasks still open (``flower_every`` > 1) and what is buffered."""
        now = time.time()
        for ep_id in list(self.tallies):
            self._emit_tally(ep_id, now)
        self.publish()

    def _connect(self) -> Producer:
        """A connection for the events, in one attempt bounded by ``EVENTS_CONNECT_TIMEOUT_S`` (never kombu's
        retry loop: this runs inside the delivery loop, whose leases must not run out while it waits for a
        broker that is away); after a failed attempt the next waits ``EVENTS_RECONNECT_S``."""
        if time.monotonic() < self._reconnect_at:
            raise ConnectionError("the broker did not answer a moment ago")
        connection = self.app.connection_for_write(connect_timeout=EVENTS_CONNECT_TIMEOUT_S)
        try:
            connection.connect()
        except Exception:
            self._reconnect_at = time.monotonic() + EVENTS_RECONNECT_S
            with contextlib.suppress(Exception):
                connection.release()
            raise
        exchange = get_exchange(connection, name=self.app.conf.event_exchange)
        producer = Producer(connection.default_channel, exchange=exchange, auto_declare=True)
        self._connection, self._producer = connection, producer
        return producer

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken
                log.debug("closing the events connection failed", exc_info=True)
        self._connection = self._producer = None
