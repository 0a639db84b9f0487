"""What the delivery engine works with: a claimed delivery (``Job``), what one attempt came to
(``Outcome``) and what follows from it (``Decision``: delivered, retried after a delay, or dead).

Outcomes are typed, never strings matched later: a delivery that was not attempted says why with a
``Skip``; a failure retries cannot fix is ``permanent``; a retry is a ``Decision`` with its delay.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from dispatcher.models import DEFAULT_TENANT, DeliveryState
from dispatcher.retry import next_delay
from dispatcher.settings import Settings
from dispatcher.worker.targets import Target


@dataclass(slots=True)
class Job:
    """One claimed delivery."""

    id: str
    endpoint_id: str
    event_id: str
    n: int  # attempts made so far
    r: int  # attempts made in this round (replay starts a new round)
    body: bytes | None  # None: the event expired
    tenant: str = DEFAULT_TENANT  # whose delivery lane it was claimed from (and goes back to)
    slot_ms: int = 0  # rate-limited endpoints: not to be sent before this (Redis clock, ms)


class Skip(enum.StrEnum):
    """Why a claimed delivery was not attempted (its value is the reason recorded)."""

    ENDPOINT_DELETED = "endpoint deleted"
    ENDPOINT_DISABLED = "endpoint disabled"
    ENDPOINT_UNUSABLE = "endpoint record unusable"  # a stored endpoint the worker cannot read or use
    EVENT_EXPIRED = "event expired"
    EVENT_UNUSABLE = "event unusable"  # a stored event the endpoint's platform cannot render


@dataclass(slots=True)
class Outcome:
    """What one POST came to (or why none was made)."""

    status: int | None = None
    error: str | None = None  # what went wrong, as recorded: no answer, a robot's error code, a skip reason
    latency_ms: float = 0.0
    response: str = ""
    retry_after_s: float | None = None
    at: float = field(default_factory=time.time)
    sent: bool = False  # a request went out (an HTTP attempt, counted in latency and health)
    rejected: bool = False  # a chat platform's 2xx that still means failure (an error code in the body)
    throttled: bool = False  # the platform refused because we went too fast
    permanent: bool = False  # a failure retries cannot fix (a target the SSRF guard refuses)
    skipped: Skip | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and not self.rejected

    @classmethod
    def skip(cls, why: Skip, detail: str | None = None) -> Outcome:
        return cls(error=detail or why.value, skipped=why)


@dataclass(frozen=True, slots=True)
class Decision:
    """What an outcome means for its deliveries."""

    state: DeliveryState  # DELIVERED, RETRYING or DEAD
    delay_s: float | None = None  # RETRYING: when the next attempt is due
    disable: str | None = None  # a reason to disable the endpoint too (it answered 410 Gone)


DELIVERED = Decision(DeliveryState.DELIVERED)
DEAD = Decision(DeliveryState.DEAD)
GONE = Decision(DeliveryState.DEAD, disable="endpoint answered 410 Gone")


def decide(jobs: list[Job], target: Target | None, outcome: Outcome, settings: Settings) -> Decision:
    """Delivered; dead (not attempted, a permanent failure, 410, or out of attempts); else retried later."""
    if outcome.ok:
        return DELIVERED
    if target is None or outcome.skipped is not None or outcome.permanent:
        return DEAD
    if outcome.status == 410:
        return GONE
    delay = next_delay(
        target.schedule,
        max(j.r for j in jobs) + 1,
        jitter=settings.retry_jitter,
        retry_after_s=outcome.retry_after_s,
        retry_after_max_s=settings.retry_after_max_s,
    )
    return DEAD if delay is None else Decision(DeliveryState.RETRYING, delay)
