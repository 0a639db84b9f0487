"""Fan-out: turn claimed events into one delivery per matching enabled endpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .ids import delivery_id
from .kick import SLOT_TTL_MS
from .runtime import Runtime


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
    args: list[str | int] = [s.key_prefix, s.retention_s]
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
        args.append(eid)
        args.append(len(targets))
        for t in targets:
            args.append(t.endpoint.id)
            args.append(delivery_id(eid, t.endpoint.id))
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
