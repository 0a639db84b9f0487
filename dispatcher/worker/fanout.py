"""Fan-out: turn claimed events into one delivery per matching enabled endpoint.

Endpoints of kind ``poll`` get no delivery: the event is appended to their pull log (a Redis stream)
by the same commit script, so a redone fan-out appends nothing twice. Endpoints with ``also_poll`` get
both. Delivery ids are derived from (event id, endpoint id), so a fan-out redone after a crash creates
nothing twice either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dispatcher.ids import delivery_id
from dispatcher.models import POLL_KIND
from dispatcher.store.work import FanoutItem, SlotMode, Stage
from dispatcher.worker.limits import MAX_SLOW_DEFER_MS
from dispatcher.worker.runtime import Runtime

FANOUT_SLICE_S = 0.5  # how long a fan-out task works before queueing itself behind the kicks sent meanwhile


@dataclass
class FanoutResult:
    events: int = 0
    deliveries: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "deliveries": self.deliveries, "batches": self.batches}


def fanout_once(
    rt: Runtime, slot: int = 0, mode: SlotMode = SlotMode.NONE, limit: int | None = None
) -> tuple[int, int]:
    """Claim up to ``limit`` (``fanout_batch``) events and record their deliveries; returns (events, deliveries)."""
    queue = rt.store.queue
    claim = queue.claim_events(limit or rt.settings.fanout_batch, slot, mode)
    if not claim.events:
        return 0, 0
    cache = rt.cache
    rt.refresh_endpoints(claim.version)
    match = cache.match
    items = []
    hanging: dict[str, list[tuple[FanoutItem, str]]] = {}  # endpoint id -> its new deliveries, if it hangs
    for event in claim.events:
        item = FanoutItem(event)
        if not event.type:  # a malformed queue entry: taken off the queue, nothing created
            targets = []
        elif event.only is not None:  # addressed to named endpoints (e.g. a test event), whatever their types
            found = (cache.targets.get(ep) for ep in event.only)
            targets = [t for t in found if t is not None and t.endpoint.enabled and t.endpoint.tenant == event.tenant]
        else:
            targets = match(event.tenant, event.type)
        for t in targets:
            ep = t.endpoint
            if ep.kind == POLL_KIND or ep.also_poll:  # appended to the endpoint's pull log
                item.logs.append(ep.id)
                if ep.kind == POLL_KIND:
                    continue
            did = delivery_id(event.id, ep.id)
            item.deliveries.append((ep.id, did))
            if rt.limits.hanging(ep.id):
                hanging.setdefault(ep.id, []).append((item, did))
        items.append(item)
    pace_hanging_endpoints(rt, hanging)
    done = queue.commit_fanout(items)
    for event_id in done.unusable:
        rt.poison.event(event_id, "its event record or a pull log it goes to is not of the expected type")
    return len(items), done.created


def pace_hanging_endpoints(rt: Runtime, hanging: dict[str, list[tuple[FanoutItem, str]]]) -> None:
    """Deliveries to an endpoint known to hang (slow, its latest request unanswered) are born due at the
    pace it can take (after what it was already handed), so its new work never floods the delivery queue."""
    for ep_id, born in hanging.items():
        target = rt.cache.targets.get(ep_id)
        size = 1 if target is None or target.robot is not None else max(1, target.endpoint.max_batch)
        delays = rt.limits.backlog_delays(ep_id, -(-len(born) // size), 0, MAX_SLOW_DEFER_MS)
        for i, (item, did) in enumerate(born):
            item.delays[did] = delays[i // size]


def run_fanout(rt: Runtime, slot: int = 0) -> FanoutResult:
    """Fan out until no event is due or the task's slice is spent; wakes delivery as it goes. The slice is
    short (``FANOUT_SLICE_S``) and ends early when a delivery kick is waiting for a process: a long fan-out
    (one tenant's big backlog) hands its process over to delivery instead of keeping every process from
    delivering anybody's webhooks until it is done. A direct call (no ``slot``: nothing to hand over to)
    works for the whole task budget."""
    s = rt.settings
    result = FanoutResult()
    deadline = time.monotonic() + (min(s.task_budget_s, FANOUT_SLICE_S) if slot else s.task_budget_s)
    mode = SlotMode.RELEASE_IF_EMPTY if slot else SlotMode.NONE
    while True:
        events, created = fanout_once(rt, slot, mode)
        if not events:
            return result
        result.events += events
        result.deliveries += created
        result.batches += 1
        if created:
            rt.kick(Stage.DELIVER, -(-created // s.deliver_inflight))
        # a delivery kick waits for a process: let it have this one (queued again behind it)
        if time.monotonic() > deadline or (slot and rt.store.queue.kick_waiting(Stage.DELIVER)):
            if slot and rt.store.queue.handoff(Stage.FANOUT, slot) and rt.kicker:
                rt.kicker.publish(Stage.FANOUT, slot)
            return result
