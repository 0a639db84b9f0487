"""The delivery engine: claim due deliveries, POST them concurrently, record every attempt.

One ``deliver_loop`` is one Celery task (``dispatcher.deliver``): it keeps up to ``deliver_inflight``
requests in flight on one keep-alive HTTP pool, claiming more from Redis as requests finish, and
writes the outcomes back in batches (``recording``). Requests to one endpoint are capped by
``EndpointLimits`` so a slow endpoint cannot take every slot; what it cannot take soon goes back to
Redis, spread over the time it would need. The loop also fans out due events every ``FANOUT_EVERY_S``
(in smaller batches, and never more than half of its time), so a busy worker never leaves new events
waiting behind its own long-running task, nor other deliveries behind a big fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from dispatcher.defaults import SLOT_REFRESH_S
from dispatcher.errormap import translated
from dispatcher.errors import StoreUnavailable
from dispatcher.models import DeliveryState
from dispatcher.store.work import SlotMode, Stage
from dispatcher.worker import http, monitor, ratelimit
from dispatcher.worker.fanout import fanout_once
from dispatcher.worker.jobs import Job, Outcome, Skip
from dispatcher.worker.limits import MAX_SLOW_DEFER_MS
from dispatcher.worker.monitor import TaskFeed
from dispatcher.worker.recording import Recorded, Recorder
from dispatcher.worker.runtime import Runtime
from dispatcher.worker.targets import Target

log = logging.getLogger(__name__)

FLUSH_EVERY = 256  # outcomes written per Redis round trip at most
FLUSH_INTERVAL_S = 0.02
DEFER_MS = 200  # how long a delivery over its endpoint's in-flight cap waits before it is due again
MAX_DEFER_MS = 30_000  # a surplus handed back is spread over at most this long (slow endpoints: MAX_SLOW_DEFER_MS)
FANOUT_EVERY_S = 0.01
# the loop fans out batches of fanout_batch / this, so a big fan-out (one tenant's backlog) never holds the
# claims and sends of everybody else's deliveries for long
LOOP_FANOUT_SHARE = 4
LINGER_POLL_S = 0.01
STORE_RETRY_S = 0.1  # Redis unreachable: how often the loop tries again
STORE_PATIENCE_S = 30.0  # and how long before the task gives up (its leases bring the deliveries back)


@dataclass
class Summary:
    """What one task did, for its result."""

    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        keys = ("claimed", "delivered", "retrying", "dead", "deferred", "rate_limited", "fanned_out")
        return {k: self.counts[k] for k in keys}


class DeliveryRun:
    """The state of one ``deliver_loop``: requests in flight, chunks waiting per endpoint, outcomes to record."""

    def __init__(self, rt: Runtime, slot: int, feed: TaskFeed | None = None) -> None:
        self.rt = rt
        self.slot = slot
        self.feed = feed
        self.inflight: set[asyncio.Task[None]] = set()
        self.finished: list[tuple[list[Job], Target, Outcome, float]] = []  # ..., when the request left
        self.wake = asyncio.Event()
        self.per_endpoint: Counter[str] = Counter()
        # chunks claimed but not sent yet, per endpoint, with when they were claimed (monotonic)
        self.waiting: dict[str, deque[tuple[list[Job], Target, float]]] = {}
        self.summary = Summary()
        self.clock_ms = 0  # Redis' clock at the last claim
        self.clock_mono = 0.0
        # past the task's budget: no new request to a slow endpoint (its chunks go back to Redis), so the
        # slow requests in flight are over by the hard deadline and a hanging endpoint never keeps the task
        # from claiming anybody's work while it waits for them
        self.closing = False
        self.recorder = Recorder(rt.settings, rt.store.queue)
        self._hook_outcomes()

    def _hook_outcomes(self) -> None:
        rec, health = self.recorder, self.rt.health

        @rec.on()
        def note_health(item: Recorded) -> None:
            if item.target is not None and item.outcome.sent:  # a real attempt, not one skipped
                health.note(item.target.endpoint.id, item.outcome.ok)

        @rec.on(DeliveryState.DEAD)
        def disable_gone(item: Recorded) -> None:
            if item.decision.disable and item.target is not None:
                with contextlib.suppress(LookupError):  # deleted meanwhile
                    self.rt.store.endpoints.set_enabled(item.target.endpoint.id, False, item.decision.disable)

        rec.on(DeliveryState.RETRYING, DeliveryState.DEAD)(monitor.log_outcome)
        rec.after_flush.append(health.report)
        if self.feed is not None:  # Flower: a task per delivery attempt
            rec.on()(self.feed.on_outcome)
            rec.after_flush.append(self.feed.publish)

    def redis_now_ms(self) -> int:
        """Redis' clock, extrapolated from the last claim with our monotonic clock (no skew)."""
        return self.clock_ms + int((time.monotonic() - self.clock_mono) * 1000)

    # -- claiming ---------------------------------------------------------------------------------
    def claim(self, limit: int, release_if_empty: bool) -> list[Job]:
        rt = self.rt
        mode = SlotMode.NONE if not self.slot else SlotMode.RELEASE_IF_EMPTY if release_if_empty else SlotMode.KEEP
        claim = rt.store.queue.claim_deliveries(limit, self.slot, mode)
        self.clock_ms, self.clock_mono = claim.now_ms, time.monotonic()
        if claim.orphans:
            rt.poison.deliveries(claim.orphans, "queued without a job")
        if claim.malformed:
            rt.store.queue.drop(claim.malformed)
            rt.poison.deliveries([d.decode("utf-8", "replace") for d, _ in claim.malformed], "their job does not read")
        if not claim.deliveries:
            return []
        rt.refresh_endpoints(claim.version)
        return [Job(*row) for row in claim.deliveries]

    def start(self, jobs: list[Job]) -> None:
        """Queue claimed jobs per endpoint (in ``max_batch`` chunks) and start what the limits allow."""
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.endpoint_id, []).append(job)
        record = self.recorder.add
        for ep_id, group in groups.items():
            target = self.rt.cache.targets.get(ep_id)
            if target is None or not target.endpoint.enabled:
                unusable = self.rt.cache.unusable.get(ep_id)
                if unusable is not None:
                    skip = Outcome.skip(Skip.ENDPOINT_UNUSABLE, unusable)
                    self.rt.poison.endpoint(ep_id, unusable)
                else:
                    skip = Outcome.skip(Skip.ENDPOINT_DELETED if target is None else Skip.ENDPOINT_DISABLED)
                for job in group:
                    record([job], target, skip)
                continue
            for job in group:
                if job.body is None:
                    record([job], target, Outcome.skip(Skip.EVENT_EXPIRED))
            group = [j for j in group if j.body is not None]
            size = 1 if target.robot is not None else max(1, target.endpoint.max_batch)
            chunks = [group[i : i + size] for i in range(0, len(group), size)]
            if target.rate_interval_ms and chunks:
                chunks = self.reserve(ep_id, target, chunks)
            queue = self.waiting.setdefault(ep_id, deque())
            claimed = time.monotonic()
            queue.extend((chunk, target, claimed) for chunk in chunks)
        self.pump()
        # what an endpoint cannot take within about one round of its limit goes back to Redis for
        # a moment, so no claimed delivery waits here long enough for its lease to run out
        limits = self.rt.limits
        later: list[tuple[Job, int]] = []
        for ep_id, queue in self.waiting.items():
            surplus: list[list[Job]] = []
            while len(queue) > limits.queue_allowance(ep_id):
                surplus.append(queue.pop()[0])
            # spread the surplus over the time the endpoint needs to take it (a hanging endpoint's
            # backlog comes back over tens of seconds instead of being claimed again and again)
            if not surplus:
                continue
            if limits.slow(ep_id):  # at the pace it can take, after what was handed back before
                delays = limits.backlog_delays(ep_id, len(surplus), DEFER_MS, MAX_SLOW_DEFER_MS)
            else:
                spacing = limits.spacing_ms(ep_id)
                delays = [min(MAX_DEFER_MS, DEFER_MS + int(i * spacing)) for i in range(len(surplus))]
            for delay, chunk in zip(delays, reversed(surplus), strict=True):
                later += ((job, delay) for job in chunk)
        self.defer(later)

    def pump(self) -> None:
        """Start waiting chunks while their endpoint is under its concurrency limit (and, for a slow
        endpoint, while the slow lane has room). A chunk that cannot go soon goes back to Redis: a slow
        endpoint's when the slow lane is full, any one held for a third of its lease, so no claimed
        delivery is ever held here until another worker may claim it."""
        limits = self.rt.limits
        slow_room = 0 if self.closing else self.rt.settings.deliver_inflight - self.lanes()[1]
        stale = time.monotonic() - self.rt.settings.lease_s / 3
        back: list[tuple[Job, int]] = []
        for ep_id in list(self.waiting):
            queue = self.waiting[ep_id]
            slow = limits.slow(ep_id)
            while queue and self.per_endpoint[ep_id] < limits.get(ep_id) and (not slow or slow_room > 0):
                chunk, target, _ = queue.popleft()
                self.per_endpoint[ep_id] += 1
                slow_room -= slow
                task = asyncio.ensure_future(self._send(chunk, target, limits.started(ep_id)))
                self.inflight.add(task)  # a strong reference while it runs
                task.add_done_callback(self.inflight.discard)
            held: list[list[Job]] = []
            while queue and ((slow and slow_room <= 0) or queue[0][2] < stale):
                held.append(queue.popleft()[0])
            if held:
                delays = limits.backlog_delays(ep_id, len(held), DEFER_MS, MAX_SLOW_DEFER_MS) if slow else None
                for i, chunk in enumerate(held):
                    back += ((job, delays[i] if delays else DEFER_MS) for job in chunk)
            if not queue:
                del self.waiting[ep_id]
        self.defer(back)

    def lanes(self) -> tuple[int, int]:
        """(requests in flight to endpoints answering in time, to slow ones): hanging endpoints fill the
        slow lane, never the slots of the others."""
        limits = self.rt.limits
        slow = sum(n for ep_id, n in self.per_endpoint.items() if n and limits.slow(ep_id))
        return len(self.inflight) - slow, slow

    def busy(self) -> int:
        """The fast lane's load: requests in flight to endpoints that are not slow, and of the chunks waiting
        for each such endpoint its next round (up to its limit). Counting every chunk held for an endpoint
        would let a few endpoints that hang, before they are found slow, stop this process claiming anything
        for anyone (another tenant's work included) for as long as finding it takes."""
        limits = self.rt.limits
        waiting = sum(min(len(q), limits.get(ep_id)) for ep_id, q in self.waiting.items() if not limits.slow(ep_id))
        return self.lanes()[0] + waiting

    def waiting_count(self) -> int:
        return sum(len(q) for q in self.waiting.values())

    def reserve(self, ep_id: str, target: Target, chunks: list[list[Job]]) -> list[list[Job]]:
        """Slots for a rate-limited endpoint's chunks; those due within LOCAL_WAIT_MS are kept, the rest
        go back to Redis (due at their slots, which they keep). Not an attempt."""
        now = ratelimit.reserve(self.rt.store.ratelimits, ep_id, target.rate_interval_ms, chunks)
        self.clock_ms, self.clock_mono = now, time.monotonic()
        horizon = now + ratelimit.LOCAL_WAIT_MS
        keep = [c for c in chunks if c[0].slot_ms <= horizon]
        later = [job for c in chunks if c[0].slot_ms > horizon for job in c]
        if later:
            self.defer([(job, 0) for job in later])
            self.summary.counts["rate_limited"] += len(later)
        return keep

    def defer(self, jobs: list[tuple[Job, int]]) -> None:
        """Hand claimed jobs back to Redis, each due after its delay (ms) and not before a reserved slot."""
        if not jobs:
            return
        now = self.redis_now_ms()
        due = {job.id: (max(now + delay, job.slot_ms), job.tenant) for job, delay in jobs}
        self.rt.store.queue.defer(due, ratelimit.holds([job for job, _ in jobs]))
        self.summary.counts["deferred"] += len(jobs)

    def defer_all_waiting(self) -> None:
        self.defer([(job, 0) for q in self.waiting.values() for chunk, _, _ in q for job in chunk])
        self.waiting.clear()

    async def _send(self, jobs: list[Job], target: Target, started: float) -> None:
        rt = self.rt
        try:
            if jobs[0].slot_ms:  # rate-limited: not before the reserved slot
                wait_s = (jobs[0].slot_ms - self.redis_now_ms()) / 1000
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
            engine = rt.engine()
            cap = rt.settings.response_body_max_bytes
            if target.robot is not None:
                outcome = await http.post_robot(engine, target, jobs[0], cap)
            else:
                msg_id, body = http.build_request(jobs, target.endpoint.max_batch)
                outcome = await http.post(engine, target, msg_id, body, cap)
        except Exception as exc:  # a bug must not lose the delivery: record it as a failed attempt
            log.exception("unexpected error while sending")
            outcome = Outcome(error=f"internal error: {type(exc).__name__}")
        if outcome.skipped is Skip.EVENT_UNUSABLE:
            rt.poison.event(jobs[0].event_id, outcome.error or "")
        self.finished.append((jobs, target, outcome, started))
        self.wake.set()

    async def wait_finished(self, timeout_s: float) -> None:
        """Until a send finishes (or ``timeout_s``): O(1) per wake-up, whatever the number in flight."""
        if self.finished:
            return
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.wake.wait()

    def collect_finished(self) -> None:
        """Take finished sends: free their endpoint's slot, adapt its limit, queue the outcome for recording."""
        rt, s = self.rt, self.rt.settings
        finished, self.finished = self.finished, []
        for jobs, target, outcome, started in finished:
            ep_id = target.endpoint.id
            self.per_endpoint[ep_id] -= 1
            rt.limits.record(ep_id, outcome, started)
            if outcome.throttled and target.rate_interval_ms and outcome.retry_after_s:
                rt.store.ratelimits.pause(ep_id, min(outcome.retry_after_s, s.retry_after_max_s))
            self.recorder.add(jobs, target, outcome)

    def flush(self) -> None:
        self.recorder.flush(self.redis_now_ms())

    def share_pacing(self) -> None:
        """Tell the other worker processes which endpoints this one found slow, and learn theirs."""
        limits, pacing, now_ms = self.rt.limits, self.rt.store.pacing, self.redis_now_ms()
        pacing.share(now_ms, *limits.to_share())
        limits.learn(pacing.read(now_ms))


async def deliver_loop(
    rt: Runtime, slot: int = 0, budget_s: float | None = None, feed: TaskFeed | None = None
) -> dict[str, Any]:
    """Deliver until nothing is due (after lingering briefly) or the budget is spent.

    Redis going away for a moment (a restart) does not lose what the loop holds: outcomes wait to be
    written and claims resume when it answers again; after ``STORE_PATIENCE_S`` without it the task
    fails, and the leases bring its deliveries back.
    """
    s = rt.settings
    b = DeliveryRun(rt, slot, feed)
    counts = b.summary.counts
    deadline = time.monotonic() + (s.task_budget_s if budget_s is None else budget_s)
    # past the budget the task only finishes what is in flight; while a slow request keeps it here
    # anyway it goes on claiming (so it is never idle waiting), but not past one more timeout, and it starts
    # no new slow request (``closing``): those in flight are over by then, so it ends soon after
    hard_deadline = deadline + s.timeout_s
    idle_since: float | None = None
    last_flush = last_fanout = last_keep = time.monotonic()
    fanout_took = 0.0
    last_share = 0.0
    threshold = max(1, s.deliver_inflight // 4)
    released = False
    down_since: float | None = None
    while True:
        now = time.monotonic()
        try:
            with translated():
                if now - last_share >= SLOT_REFRESH_S:
                    b.share_pacing()
                    last_share = now
                if slot and now - last_keep >= SLOT_REFRESH_S:  # alive: the slot stays ours
                    rt.store.queue.keep_slot(Stage.DELIVER, slot)
                    last_keep = now
                working = now < deadline or (bool(b.inflight) and now < hard_deadline)
                b.closing = now >= deadline
                if now - last_fanout >= max(FANOUT_EVERY_S, fanout_took) and working:
                    events, created = fanout_once(rt, limit=max(1, s.fanout_batch // LOOP_FANOUT_SHARE))
                    last_fanout = time.monotonic()  # as long again for claims and sends: at most half for fan-out
                    fanout_took = last_fanout - now
                    counts["fanned_out"] += created
                    if events:
                        idle_since = None
                busy = b.busy()
                free = s.deliver_inflight - busy
                if working and (free >= threshold or (free > 0 and not busy)):
                    release = not busy and idle_since is not None and now - idle_since >= s.idle_linger_s
                    jobs = b.claim(free, release)
                    last_keep = now if slot else last_keep  # a claim refreshes the slot too
                    if jobs:
                        idle_since = None
                        counts["claimed"] += len(jobs)
                        b.start(jobs)
                    elif not b.inflight and not b.finished and not b.recorder.pending:
                        if release:
                            released = True
                            break
                        idle_since = idle_since or now
                        await asyncio.sleep(LINGER_POLL_S)
                        last_fanout = 0.0  # look for new events on the next pass
                        continue
                elif not working and b.waiting:
                    b.defer_all_waiting()
                if not b.inflight and not b.finished and not b.recorder.pending and not b.waiting and now >= deadline:
                    break
                if b.inflight or b.finished:
                    await b.wait_finished(FLUSH_INTERVAL_S)
                    b.collect_finished()
                    b.pump()
                pending = b.recorder.pending
                if pending and (
                    len(pending) >= FLUSH_EVERY
                    or not (b.inflight or b.finished)
                    or time.monotonic() - last_flush >= FLUSH_INTERVAL_S
                ):
                    b.flush()
                    last_flush = time.monotonic()
        except StoreUnavailable as exc:
            if down_since is None:
                down_since = now
                log.warning(
                    "Redis unreachable (%s): holding %d outcomes until it answers", exc, len(b.recorder.pending)
                )
            elif now - down_since > STORE_PATIENCE_S:
                raise
            await asyncio.sleep(STORE_RETRY_S)
            continue
        if down_since is not None:
            log.info("Redis reachable again after %.1fs", now - down_since)
            down_since = None
    b.flush()
    if feed is not None:
        feed.close()
    if slot and not released and rt.store.queue.handoff(Stage.DELIVER, slot) and rt.kicker is not None:
        rt.kicker.publish(Stage.DELIVER, slot)
    for state, n in b.recorder.counts.items():
        counts[state.value] += n
    return b.summary.as_dict()


def run_deliver(
    rt: Runtime, slot: int = 0, budget_s: float | None = None, feed: TaskFeed | None = None
) -> dict[str, Any]:
    """The body of the ``deliver`` task: run the loop on this process' event loop (``feed``: Flower's)."""
    return rt.loop.run_until_complete(deliver_loop(rt, slot, budget_s, feed))
