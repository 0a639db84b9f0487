"""Recording outcomes: every attempt, state, next due time and counter of a batch in one script call.

``Recorder.add`` collects what each finished (or skipped) request came to; ``flush`` decides each one
(``jobs.decide``), writes them all through ``store.queue.record``, and then calls the hooks registered
for each decision's state: endpoint health, disabling an endpoint that answered 410, reporting dead
letters. A new reaction to an outcome is a hook, not a branch in the loop.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from dispatcher.defaults import LATENCY_BUCKETS_MS
from dispatcher.models import DeliveryState
from dispatcher.settings import Settings
from dispatcher.store.queue import Queue
from dispatcher.store.work import Counter
from dispatcher.store.work import Outcome as RecordedOutcome
from dispatcher.worker.jobs import Decision, Job, Outcome, decide
from dispatcher.worker.targets import Target

log = logging.getLogger(__name__)


def latency_bucket(ms: float) -> str:
    """The Prometheus-style bucket (upper bound in ms) an attempt's latency falls in."""
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return str(bound)
    return "+Inf"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request's outcome as recorded, handed to the hooks."""

    jobs: list[Job]
    target: Target | None
    outcome: Outcome
    decision: Decision


Hook = Callable[[Recorded], None]


class Recorder:
    """Collects outcomes and writes them in batches; runs per-state hooks after each write."""

    def __init__(self, settings: Settings, queue: Queue) -> None:
        self._s = settings
        self._queue = queue
        self.pending: list[tuple[list[Job], Target | None, Outcome]] = []
        self.hooks: dict[DeliveryState, list[Hook]] = {state: [] for state in DeliveryState}
        self.after_flush: list[Callable[[int], object]] = []  # called with Redis' clock (ms) after each write
        self.counts: Tally[DeliveryState] = Tally()

    def on(self, *states: DeliveryState) -> Callable[[Hook], Hook]:
        """Register a hook for outcomes decided as any of ``states`` (every state when none is given)."""

        def register(hook: Hook) -> Hook:
            for state in states or tuple(DeliveryState):
                self.hooks[state].append(hook)
            return hook

        return register

    def add(self, jobs: list[Job], target: Target | None, outcome: Outcome) -> None:
        self.pending.append((jobs, target, outcome))

    def flush(self, now_ms: int) -> None:
        """Decide and write every collected outcome (``now_ms``: Redis' clock), then run the hooks."""
        if not self.pending:
            return
        pending = self.pending
        rows: list[RecordedOutcome] = []
        counters: Tally[tuple[Counter, str]] = Tally()
        tally: Tally[DeliveryState] = Tally()
        recorded: list[Recorded] = []
        for jobs, target, outcome in pending:
            decision = decide(jobs, target, outcome, self._s)
            state = decision.state
            tally[state] += len(jobs)
            counters[Counter.OUTCOMES, f"{jobs[0].endpoint_id}:{state}"] += len(jobs)
            counters[Counter.MINUTE, state] += len(jobs)
            if outcome.sent:
                counters[Counter.LATENCY, latency_bucket(outcome.latency_ms)] += 1
                counters[Counter.LATENCY, "count"] += 1
                counters[Counter.LATENCY, "sum_ms"] += int(outcome.latency_ms)
            attempt = {
                "n": 0,
                "at": round(outcome.at, 3),
                "status": outcome.status,
                "error": outcome.error,
                "latency_ms": outcome.latency_ms,
                "response": outcome.response,
            }
            next_ms = None if decision.delay_s is None else now_ms + int(decision.delay_s * 1000)
            dead_letter = state is DeliveryState.DEAD and target is not None
            for job in jobs:
                n = attempt["n"] = job.n + 1
                row = (job.id, job.event_id, job.endpoint_id, state, n, job.r + 1, orjson.dumps(attempt), next_ms)
                rows.append(RecordedOutcome(*row, dead_letter, job.tenant))
            recorded.append(Recorded(jobs, target, outcome, decision))
        self._queue.record(rows, counters, now_ms)  # raises when Redis is down: nothing is lost, try again
        self.pending = []
        for state, n in tally.items():
            self.counts[state] += n
        for item in recorded:
            for hook in self.hooks[item.decision.state]:
                try:
                    hook(item)
                except Exception:  # a hook must not lose the other outcomes' hooks
                    log.exception("outcome hook %r failed", hook)
        for after in self.after_flush:
            after(now_ms)
