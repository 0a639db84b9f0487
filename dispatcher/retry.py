"""The retry schedule: when the next attempt happens, and when a delivery is dead."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Sequence


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from ``now`` asked by a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts '²', which float() rejects
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def next_delay(
    schedule: Sequence[float],
    attempts_made: int,
    *,
    jitter: float = 0.2,
    retry_after_s: float | None = None,
    retry_after_max_s: float = 36000.0,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` failed ones, or None when exhausted.

    The n-th failure waits ``schedule[n-1]`` seconds, spread by +/- ``jitter``. A receiver's
    ``Retry-After`` can only push the attempt later, never earlier, and at most to ``retry_after_max_s``.
    """
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    delay = base * (1 + (rng or random).uniform(-jitter, jitter)) if jitter else base
    if retry_after_s is not None and retry_after_s > delay:
        delay = max(delay, min(retry_after_s, retry_after_max_s))
    return delay
