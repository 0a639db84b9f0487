"""Delivery: claim due deliveries, POST them concurrently, record every attempt, schedule retries.

One call of ``run_deliver`` is one Celery task: it keeps up to ``deliver_inflight`` requests in
flight on one keep-alive HTTP pool, claiming more from Redis as requests finish, and writes the
outcomes back in batches. Deliveries to one endpoint are capped at ``endpoint_inflight`` at a time
so a slow endpoint cannot take every slot.

Chat-robot endpoints (``Target.robot``) get each event rendered as the platform's message and their
answers classified by the platform's rules (``dispatcher.robots``); rate-limited endpoints wait for
their slots (``dispatcher.ratelimit``). Plain webhooks pay a cheap branch for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from yarl import URL

from dispatcher.kicks import SLOT_TTL_MS
from dispatcher.retry import next_delay, parse_retry_after
from dispatcher.signing import webhook_headers
from dispatcher.worker import ratelimit
from dispatcher.worker.fanout import fanout_once
from dispatcher.worker.runtime import Runtime
from dispatcher.worker.targets import Target

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
STATS_MINUTE_TTL_S = 7200
log = logging.getLogger(__name__)

DEAD_LETTERS_REPORTED = 100  # per task, as failed dead_letter tasks in Flower
FLUSH_EVERY = 256  # outcomes written per Redis round trip at most
FLUSH_INTERVAL_S = 0.02
DEFER_MS = 200  # how long a delivery over its endpoint's in-flight cap waits before it is due again
MAX_DEFER_MS = 30_000
FANOUT_EVERY_S = 0.01
LINGER_POLL_S = 0.01
ROBOT_RESPONSE_MAX_BYTES = 64 * 1024  # a chat platform's answer is read whole (up to this) to classify it


@dataclass(slots=True)
class Job:
    """One claimed delivery."""

    id: str
    endpoint_id: str
    event_id: str
    n: int  # attempts made so far
    r: int  # attempts made in this round (replay starts a new round)
    body: bytes | None
    slot_ms: int = 0  # rate-limited endpoints: not to be sent before this (Redis clock, ms)


@dataclass(slots=True)
class Outcome:
    """What one POST came to."""

    status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0
    response: str = ""
    retry_after_s: float | None = None
    at: float = field(default_factory=time.time)
    rejected: bool = False  # a chat platform's 2xx that still means failure (an error code in the body)
    throttled: bool = False  # the platform refused because we went too fast

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and not self.rejected


def latency_bucket(ms: float) -> str:
    """The Prometheus-style bucket (upper bound in ms) an attempt's latency falls in."""
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return str(bound)
    return "+Inf"


def batch_message_id(jobs: list[Job]) -> str:
    """The ``webhook-id`` of a batched POST: the same for the same set of events."""
    digest = hashlib.blake2b("|".join(sorted(j.event_id for j in jobs)).encode(), digest_size=12).hexdigest()
    return f"batch_{digest}"


def build_request(jobs: list[Job], max_batch: int) -> tuple[str, bytes]:
    """(webhook-id, body) for one POST: the event itself, or a JSON array of events when batching."""
    if max_batch <= 1:
        job = jobs[0]
        assert job.body is not None
        return job.event_id, job.body
    return batch_message_id(jobs), b"[" + b",".join(j.body for j in jobs if j.body is not None) + b"]"


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body, and whether the body ended within them."""
    if resp.content_length is not None and resp.content_length <= cap:
        return await resp.read(), True
    buf = b""
    while len(buf) < cap:
        chunk = await resp.content.read(cap - len(buf))
        if not chunk:
            return buf, True
        buf += chunk
    return buf, resp.content.at_eof()


def _decoded(resp: aiohttp.ClientResponse, raw: bytes, cap: int) -> bytes:
    """A compressed answer (the session does not decompress) inflated for reading, best effort."""
    if resp.headers.get("Content-Encoding", "").lower() not in ("gzip", "deflate", "x-gzip"):
        return raw
    try:
        return zlib.decompressobj(wbits=47).decompress(raw, cap)  # gzip or zlib header
    except zlib.error:
        return raw


async def post(rt: Runtime, target: Target, msg_id: str, body: bytes) -> Outcome:
    """One signed POST; never raises for network or HTTP failures, it reports them."""
    out = Outcome()
    if target.refused:  # an IP literal outside what the settings allow (the resolver vets names)
        out.error = f"refused: {target.refused}"
        return out
    headers = webhook_headers(target.signing_keys(out.at), msg_id, int(out.at), body)
    await _exchange(rt, out, target, target.url, headers, body)
    return out


async def post_robot(rt: Runtime, target: Target, job: Job) -> Outcome:
    """One chat message: the event rendered by the endpoint's platform, the answer classified by its rules."""
    out = Outcome()
    if target.refused:
        out.error = f"refused: {target.refused}"
        return out
    assert target.robot is not None and job.body is not None
    req = target.robot.render(orjson.loads(job.body), target.endpoint, out.at)
    url = target.url if req.url == target.endpoint.url else URL(req.url)
    await _exchange(rt, out, target, url, req.headers, req.body)
    return out


async def _exchange(rt: Runtime, out: Outcome, target: Target, url: URL, headers: dict[str, str], body: bytes) -> None:
    """POST and fill ``out`` (status, response, Retry-After; a robot's verdict); errors are reported in it."""
    s = rt.settings
    robot = target.robot
    cap = s.response_body_max_bytes if robot is None else max(s.response_body_max_bytes, ROBOT_RESPONSE_MAX_BYTES)
    session = await rt.session()
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            out.status = resp.status
            raw, complete = await _read_capped(resp, cap)
            if not complete:
                resp.close()  # do not read a huge (or endless) body just to reuse the connection
            if resp.status == 429 or resp.status >= 500 or "Retry-After" in resp.headers:
                out.retry_after_s = parse_retry_after(resp.headers.get("Retry-After"))
            if robot is not None:
                raw = _decoded(resp, raw, cap)
                verdict = robot.classify(resp.status, resp.headers, raw)
                out.rejected = 200 <= resp.status < 300 and not verdict.ok
                out.error = verdict.error if out.rejected else None
                out.throttled = verdict.throttled
                if verdict.retry_after_s is not None:
                    out.retry_after_s = max(out.retry_after_s or 0.0, verdict.retry_after_s)
                raw = raw[: s.response_body_max_bytes]
            out.response = raw.decode("utf-8", "replace")
    except TimeoutError:
        out.error = "timeout"
    except aiohttp.ClientConnectorError as exc:
        out.error = f"connection error: {exc.os_error.strerror or type(exc.os_error).__name__}"
    except (aiohttp.ClientError, OSError) as exc:
        # a URL may carry a token (chat robots): never copy it into the attempt record
        text = str(exc).replace(str(url), "<url>").replace(str(target.url), "<url>")
        out.error = f"{type(exc).__name__}: {text[:200]}"
    out.latency_ms = round((time.perf_counter() - t0) * 1000, 2)


class Batch:
    """The state of one ``run_deliver`` call."""

    def __init__(self, rt: Runtime, slot: int) -> None:
        self.rt = rt
        self.slot_key = rt.keys.kick("deliver", slot) if slot else ""
        self.inflight: set[asyncio.Task[None]] = set()
        self.finished: list[tuple[list[Job], Target, Outcome]] = []
        self.wake = asyncio.Event()
        self.per_endpoint: Counter[str] = Counter()
        self.waiting: dict[str, deque[tuple[list[Job], Target]]] = {}
        self.results: list[tuple[list[Job], Target | None, Outcome]] = []
        self.stats: Counter[str] = Counter()
        self.clock_ms = 0  # Redis' clock at the last claim
        self.clock_mono = 0.0
        self.to_disable: dict[str, str] = {}
        self.dead_letters: list[dict[str, str]] = []  # reported to Flower by the task (first 100)

    def redis_now_ms(self) -> int:
        """Redis' clock, extrapolated from the last claim with our monotonic clock (no skew)."""
        return self.clock_ms + int((time.monotonic() - self.clock_mono) * 1000)

    # -- claiming ---------------------------------------------------------------------------------
    def claim(self, limit: int, release_if_empty: bool) -> list[Job]:
        rt, s, k = self.rt, self.rt.settings, self.rt.keys
        out = rt.claim_deliveries(
            keys=[k.due, self.slot_key],
            args=[s.key_prefix, limit, int(s.lease_s * 1000), SLOT_TTL_MS, 1 if release_if_empty else 0],
        )
        self.clock_ms, self.clock_mono = int(out[0]), time.monotonic()
        if len(out) == 2:
            return []
        rt.cache.refresh(rt.redis, k, out[1] or b"")
        return [
            Job(
                out[i].decode(),
                out[i + 1].decode(),
                out[i + 2].decode(),
                int(out[i + 3]),
                int(out[i + 4]),
                out[i + 5] or None,
            )
            for i in range(2, len(out), 6)
        ]

    def start(self, jobs: list[Job]) -> None:
        """Queue claimed jobs per endpoint (in ``max_batch`` chunks) and start what the limits allow."""
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.endpoint_id, []).append(job)
        for ep_id, group in groups.items():
            target = self.rt.cache.targets.get(ep_id)
            if target is None or not target.endpoint.enabled:
                reason = "endpoint deleted" if target is None else "endpoint disabled"
                self.results.extend(([job], target, Outcome(error=reason)) for job in group)
                continue
            self.results.extend(([job], target, Outcome(error="event expired")) for job in group if job.body is None)
            group = [j for j in group if j.body is not None]
            size = 1 if target.robot is not None else max(1, target.endpoint.max_batch)
            chunks = [group[i : i + size] for i in range(0, len(group), size)]
            if target.rate_interval_ms and chunks:
                chunks = self.reserve(ep_id, target, chunks)
            queue = self.waiting.setdefault(ep_id, deque())
            queue.extend((chunk, target) for chunk in chunks)
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
            spacing = limits.spacing_ms(ep_id)
            for i, chunk in enumerate(reversed(surplus)):
                later += ((job, min(MAX_DEFER_MS, DEFER_MS + int(i * spacing))) for job in chunk)
        self.defer_each(later)

    def pump(self) -> None:
        """Start waiting chunks while their endpoint is under its concurrency limit."""
        limits = self.rt.limits
        for ep_id in list(self.waiting):
            queue = self.waiting[ep_id]
            while queue and self.per_endpoint[ep_id] < limits.get(ep_id):
                chunk, target = queue.popleft()
                self.per_endpoint[ep_id] += 1
                task = asyncio.ensure_future(self._send(chunk, target))
                self.inflight.add(task)  # a strong reference while it runs
                task.add_done_callback(self.inflight.discard)
            if not queue:
                del self.waiting[ep_id]

    def waiting_count(self) -> int:
        return sum(len(q) for q in self.waiting.values())

    def reserve(self, ep_id: str, target: Target, chunks: list[list[Job]]) -> list[list[Job]]:
        """Slots for a rate-limited endpoint's chunks; those due within LOCAL_WAIT_MS are kept, the rest
        go back to Redis (due at their slots, which they keep). Not an attempt."""
        now = ratelimit.reserve(self.rt, ep_id, target.rate_interval_ms, chunks)
        self.clock_ms, self.clock_mono = now, time.monotonic()
        horizon = now + ratelimit.LOCAL_WAIT_MS
        keep = [c for c in chunks if c[0].slot_ms <= horizon]
        later = [job for c in chunks if c[0].slot_ms > horizon for job in c]
        if later:
            self.defer(later, 0)
            self.stats["rate_limited"] += len(later)
        return keep

    def defer(self, jobs: list[Job], delay_ms: int) -> None:
        """Hand claimed jobs back to Redis, due again after ``delay_ms`` (and not before a reserved slot)."""
        self.defer_each([(job, delay_ms) for job in jobs])

    def defer_each(self, jobs: list[tuple[Job, int]]) -> None:
        """``defer`` with a delay per job, in one write."""
        if not jobs:
            return
        now = self.redis_now_ms()
        k = self.rt.keys
        if any(j.slot_ms for j, _ in jobs):
            pipe = self.rt.redis.pipeline(transaction=True)
            ratelimit.hold(pipe, self.rt, [j for j, _ in jobs])
            pipe.zadd(k.due, {j.id: max(now + delay, j.slot_ms) for j, delay in jobs})
            pipe.execute()
        else:
            self.rt.redis.zadd(k.due, {j.id: now + delay for j, delay in jobs})
        self.stats["deferred"] += len(jobs)

    def defer_all_waiting(self) -> None:
        self.defer([job for q in self.waiting.values() for chunk, _ in q for job in chunk], 0)
        self.waiting.clear()

    async def _send(self, jobs: list[Job], target: Target) -> None:
        try:
            if jobs[0].slot_ms:  # rate-limited: not before the reserved slot
                wait_s = (jobs[0].slot_ms - self.redis_now_ms()) / 1000
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
            if target.robot is not None:
                outcome = await post_robot(self.rt, target, jobs[0])
            else:
                msg_id, body = build_request(jobs, target.endpoint.max_batch)
                outcome = await post(self.rt, target, msg_id, body)
        except Exception as exc:  # a bug must not lose the delivery: record it as a failed attempt
            log.exception("unexpected error while sending")
            outcome = Outcome(error=f"internal error: {type(exc).__name__}")
        self.finished.append((jobs, target, outcome))
        self.wake.set()

    async def wait_finished(self, timeout_s: float) -> None:
        """Until a send finishes (or ``timeout_s``): O(1) per wake-up, whatever the number in flight."""
        if self.finished:
            return
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.wake.wait()

    # -- recording --------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every collected outcome (attempt record, state, next due time, counters) in one script call."""
        if not self.results:
            return
        rt, s, k = self.rt, self.rt.settings, self.rt.keys
        now_ms = self.redis_now_ms()
        minute = now_ms // 60000
        jobs_args: list[Any] = []
        counters: Counter[tuple[str, str]] = Counter()
        minute_key = f"stats:min:{minute}"
        for jobs, target, outcome in self.results:
            state, delay = self._decide(jobs, target, outcome)
            self.stats[state] += len(jobs)
            counters["stats:outcomes", f"{jobs[0].endpoint_id}:{state}"] += len(jobs)
            counters[minute_key, state] += len(jobs)
            if outcome.latency_ms:  # an HTTP attempt was made (not a skipped one)
                counters["stats:latency", latency_bucket(outcome.latency_ms)] += 1
                counters["stats:latency", "count"] += 1
                counters["stats:latency", "sum_ms"] += int(outcome.latency_ms)
            attempt = {
                "n": 0,
                "at": round(outcome.at, 3),
                "status": outcome.status,
                "error": outcome.error,
                "latency_ms": outcome.latency_ms,
                "response": outcome.response,
            }
            nxt = "" if delay is None else now_ms + int(delay * 1000)
            ep_id = "" if target is None else target.endpoint.id
            if ep_id and outcome.latency_ms:  # a real attempt, not one skipped (disabled, expired, ...)
                rt.health.note(ep_id, outcome.ok)
            if state == "dead":
                reason = outcome.error or f"HTTP {outcome.status}"
                room = max(0, DEAD_LETTERS_REPORTED - len(self.dead_letters))
                self.dead_letters += [
                    {"delivery_id": j.id, "endpoint_id": j.endpoint_id, "event_id": j.event_id, "reason": reason}
                    for j in jobs[:room]
                ]
            for job in jobs:
                attempt["n"] = job.n + 1
                jobs_args += (job.id, ep_id, state, job.n + 1, job.r + 1, orjson.dumps(attempt), nxt)
        count = len(jobs_args) // 7
        args: list[Any] = [s.key_prefix, s.retention_s, now_ms, minute, STATS_MINUTE_TTL_S, count, *jobs_args]
        for (key, field_name), amount in counters.items():
            args += (key, field_name, amount)
        rt.record(keys=[k.due], args=args)
        self.results.clear()
        rt.health.report(rt, now_ms)
        for ep_id, reason in self.to_disable.items():
            with contextlib.suppress(LookupError):  # deleted meanwhile
                rt.endpoints.set_enabled(ep_id, False, reason)
        self.to_disable.clear()

    def _decide(self, jobs: list[Job], target: Target | None, outcome: Outcome) -> tuple[str, float | None]:
        """'delivered', 'retrying' (with the delay in seconds) or 'dead'."""
        if outcome.ok:
            return "delivered", None
        if (
            target is None
            or outcome.error in ("endpoint disabled", "event expired")
            or (outcome.error or "").startswith("refused")
        ):
            return "dead", None
        if outcome.status == 410:
            self.to_disable[target.endpoint.id] = "endpoint answered 410 Gone"
            return "dead", None
        s = self.rt.settings
        delay = next_delay(
            target.schedule,
            max(j.r for j in jobs) + 1,
            jitter=s.retry_jitter,
            retry_after_s=outcome.retry_after_s,
            retry_after_max_s=s.retry_after_max_s,
        )
        return ("dead", None) if delay is None else ("retrying", delay)


async def deliver_loop(rt: Runtime, slot: int = 0, budget_s: float | None = None) -> dict[str, Any]:
    """Deliver until nothing is due (after lingering briefly) or the budget is spent.

    While it runs, the loop also fans out due events (every ``FANOUT_EVERY_S``), so a busy worker
    never leaves new events waiting behind its own long-running task.
    """
    s = rt.settings
    b = Batch(rt, slot)
    deadline = time.monotonic() + (s.task_budget_s if budget_s is None else budget_s)
    # past the budget the task only finishes what is in flight; while a slow request keeps it here
    # anyway it goes on claiming (so it is never idle waiting), but not past one more timeout
    hard_deadline = deadline + s.timeout_s
    idle_since: float | None = None
    last_flush = last_fanout = time.monotonic()
    threshold = max(1, s.deliver_inflight // 4)
    released = False
    while True:
        now = time.monotonic()
        working = now < deadline or (bool(b.inflight) and now < hard_deadline)
        if now - last_fanout >= FANOUT_EVERY_S and working:
            last_fanout = now
            events, created = fanout_once(rt)
            b.stats["fanned_out"] += created
            if events:
                idle_since = None
        busy = len(b.inflight) + b.waiting_count()
        free = s.deliver_inflight - busy
        if working and (free >= threshold or (free > 0 and not busy)):
            release = not busy and idle_since is not None and now - idle_since >= s.idle_linger_s
            jobs = b.claim(free, release)
            if jobs:
                idle_since = None
                b.stats["claimed"] += len(jobs)
                b.start(jobs)
            elif not b.inflight and not b.finished and not b.results:
                if release:
                    released = True
                    break
                idle_since = idle_since or now
                await asyncio.sleep(LINGER_POLL_S)
                last_fanout = 0.0  # look for new events on the next pass
                continue
        elif not working and b.waiting:
            b.defer_all_waiting()
        if not b.inflight and not b.finished and not b.results and not b.waiting and now >= deadline:
            break
        if b.inflight or b.finished:
            await b.wait_finished(FLUSH_INTERVAL_S)
            finished, b.finished = b.finished, []
            for jobs_done, target, outcome in finished:
                ep_id = target.endpoint.id
                b.per_endpoint[ep_id] -= 1
                rt.limits.record(ep_id, outcome)
                if outcome.throttled and target.rate_interval_ms and outcome.retry_after_s:
                    ratelimit.pause(rt, ep_id, min(outcome.retry_after_s, s.retry_after_max_s))
                b.results.append((jobs_done, target, outcome))
            b.pump()
        if b.results and (
            len(b.results) >= FLUSH_EVERY
            or not (b.inflight or b.finished)
            or time.monotonic() - last_flush >= FLUSH_INTERVAL_S
        ):
            b.flush()
            last_flush = time.monotonic()
    b.flush()
    if slot and not released:
        k = rt.keys
        if rt.handoff(keys=[k.due, b.slot_key], args=[SLOT_TTL_MS]) and rt.kicker is not None:
            rt.kicker.publish("deliver", slot)
    summary: dict[str, Any] = {
        key: b.stats[key]
        for key in ("claimed", "delivered", "retrying", "dead", "deferred", "rate_limited", "fanned_out")
    }
    summary["dead_letters"] = b.dead_letters
    return summary


def run_deliver(rt: Runtime, slot: int = 0, budget_s: float | None = None) -> dict[str, Any]:
    """The body of the ``deliver`` task: run the loop on this process' event loop."""
    return rt.loop.run_until_complete(deliver_loop(rt, slot, budget_s))
