"""Fan-out: turn claimed events into one delivery per matching enabled endpoint.

Endpoints of kind ``poll`` get no delivery: the event is appended to their pull log (a Redis stream,
``Keys.stream``) by the same ``FANOUT_COMMIT`` script, so a redone fan-out appends nothing twice.
Endpoints with ``also_poll`` get both. Others cost nothing more than before (no extra round trip).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dispatcher.ids import delivery_id
from dispatcher.kicks import SLOT_TTL_MS
from dispatcher.models import POLL_KIND
from dispatcher.worker.runtime import Runtime


@dataclass
class FanoutResult:
    events: int = 0
    deliveries: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "deliveries": self.deliveries, "batches": self.batches}


def fanout_once(rt: Runtime, slot_key: str = "", release_if_empty: bool = True) -> tuple[int, int]:
    """Claim up to ``fanout_batch`` events and record their deliveries; returns (events, deliveries)."""
    s, k = rt.settings, rt.keys
    out = rt.claim_events(
        keys=[k.fanout, slot_key],
        args=[s.key_prefix, s.fanout_batch, int(s.lease_s * 1000), SLOT_TTL_MS, 1 if release_if_empty else 0],
    )
    if len(out) == 2:
        return 0, 0
    rt.cache.refresh(rt.redis, k, out[1] or b"")
    args: list[str | int] = [s.key_prefix, s.retention_s, s.poll_max_events, s.poll_max_age_s * 1000]
    match = rt.cache.index.match
    events = 0
    for i in range(2, len(out), 3):
        eid, etype, only = out[i].decode(), out[i + 1], out[i + 2]
        events += 1
        if not etype:  # expired meanwhile
            targets = []
        elif only:  # addressed to named endpoints (e.g. a test event), whatever their type filters
            found = (rt.cache.targets.get(ep) for ep in only.decode().split(","))
            targets = [t for t in found if t is not None and t.endpoint.enabled]
        else:
            targets = match(etype.decode())
        head = len(args)
        args.append(eid)
        args.append(0)
        args.append(0)
        logs: list[str] | None = None
        for t in targets:
            ep = t.endpoint
            if ep.kind == POLL_KIND or ep.also_poll:  # appended to the endpoint's pull log by FANOUT_COMMIT
                if logs is None:
                    logs = []
                logs.append(ep.id)
                if ep.kind == POLL_KIND:
                    continue
            args.append(ep.id)
            args.append(delivery_id(eid, ep.id))
        args[head + 1] = (len(args) - head - 3) // 2
        if logs:
            args[head + 2] = len(logs)
            args.extend(logs)
    created = int(rt.fanout_commit(keys=[k.fanout, k.due], args=args))
    return events, created


def run_fanout(rt: Runtime, slot: int = 0) -> FanoutResult:
    """Fan out until no event is due or the task budget is spent; wakes delivery as it goes."""
    s, k = rt.settings, rt.keys
    slot_key = k.kick("fanout", slot) if slot else ""
    result = FanoutResult()
    deadline = time.monotonic() + s.task_budget_s
    while True:
        events, created = fanout_once(rt, slot_key)
        if not events:
            return result
        result.events += events
        result.deliveries += created
        result.batches += 1
        if created:
            rt.kick("deliver", -(-created // s.deliver_inflight))
        if time.monotonic() > deadline:
            if slot and rt.handoff(keys=[k.fanout, slot_key], args=[SLOT_TTL_MS]) and rt.kicker:
                rt.kicker.publish("fanout", slot)
            return result
