"""The values the queue's scripts take and give: the stages, slot modes and counters they name, and what a
claim, a fan-out commit and an outcome batch carry. ``store.queue.Queue`` turns replies into these."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dispatcher.models import DEFAULT_TENANT


class Stage(enum.StrEnum):
    """The two queues a kick can wake a worker for."""

    FANOUT = "fanout"
    DELIVER = "deliver"

    @property
    def script(self) -> str:
        """The script that claims from the stage's queue."""
        return "claim_events" if self is Stage.FANOUT else "claim_deliveries"


class SlotMode(enum.StrEnum):
    """What a claim does with the caller's kick slot."""

    NONE = "none"  # the caller holds no slot (a direct call, a test)
    KEEP = "keep"  # refresh it: the task goes on
    RELEASE_IF_EMPTY = "release_if_empty"  # free it when nothing is due, so the next enqueue kicks again


class Counter(enum.IntEnum):
    """The counter hashes an outcome batch increments (their position in the record script's ``KEYS``)."""

    OUTCOMES = 5  # "<endpoint id>:<state>" -> count
    LATENCY = 6  # latency bucket / "sum_ms" / "count" -> count
    MINUTE = 7  # state -> count in this minute


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What storing a batch of events did."""

    ids: list[str]  # per event: its id, or the first event's id when it was seen before
    fresh: list[bool]  # per event: stored now (False: an id or idempotency key seen before)
    kick: bool  # the fan-out slot was free and is now the caller's: publish a kick


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """An event leased for fan-out."""

    entry: bytes  # its queue entry as stored, to take it off the queue
    id: str
    type: str
    only: list[str] | None  # addressed to these endpoints only (e.g. a test event), whatever their types
    tenant: str = DEFAULT_TENANT  # fans out to this tenant's endpoints only


@dataclass(frozen=True, slots=True)
class EventClaim:
    now_ms: int  # Redis' clock at the claim
    version: bytes  # the endpoints' version counter at the claim
    events: list[ClaimedEvent]


# id, endpoint id, event id, attempts so far, attempts this round, body (None when the event is gone), the
# tenant whose lane it was claimed from
ClaimedDelivery = tuple[str, str, str, int, int, bytes | None, str]


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    now_ms: int
    version: bytes
    deliveries: list[ClaimedDelivery]
    orphans: list[str] = field(default_factory=list)  # queued ids without a job: dropped from the queue
    # queued ids whose job does not read, with their lane's tenant: left to ``drop``
    malformed: list[tuple[bytes, str]] = field(default_factory=list)


@dataclass(slots=True)
class FanoutItem:
    """The fan-out of one claimed event: a delivery per endpoint, and the pull logs it is appended to."""

    event: ClaimedEvent
    deliveries: list[tuple[str, str]] = field(default_factory=list)  # (endpoint id, delivery id)
    logs: list[str] = field(default_factory=list)  # endpoint ids
    delays: dict[str, int] = field(default_factory=dict)  # delivery id -> ms after the event it is first due


@dataclass(frozen=True, slots=True)
class FanoutCommitted:
    created: int  # deliveries created
    unusable: list[str]  # events whose records (event hash, a pull log) were of the wrong type: skipped


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery's attempt outcome, as recorded."""

    delivery_id: str
    event_id: str
    endpoint_id: str
    state: str  # a DeliveryState value: delivered, retrying or dead
    n: int  # attempts made, this one included
    r: int  # attempts made this round, this one included
    attempt: bytes  # the attempt's JSON record
    next_ms: int | None  # when it is due again (retrying)
    dead_letter: bool = False  # add it to its endpoint's dead letters
    tenant: str = DEFAULT_TENANT  # whose delivery lane it is in
