"""``EndpointLimits``: per-endpoint concurrency in one worker process, adapting like TCP's congestion window.

Pure logic on real ``Outcome`` values: an endpoint starts at ``initial`` requests in flight, gains one per
answer (any HTTP status) up to ``maximum``, is halved (never below one) by each timeout or connection
failure; its answer time (a moving average) sizes the local queue and the spacing of handed-back work.
"""

from __future__ import annotations

import pytest

from dispatcher.worker.jobs import Outcome
from dispatcher.worker.limits import EndpointLimits

EP = "ep_a"


def answered(status: int = 200, latency_ms: float = 10.0) -> Outcome:
    return Outcome(status=status, latency_ms=latency_ms, sent=True)


def timed_out(latency_ms: float = 5000.0) -> Outcome:
    return Outcome(error="timeout", latency_ms=latency_ms, sent=True)


def refused() -> Outcome:
    return Outcome(error="connection error: Connection refused", latency_ms=1.0, sent=True)


def test_an_endpoint_starts_at_the_initial_limit_capped_by_the_maximum() -> None:
    assert EndpointLimits(32).get(EP) == 2
    assert EndpointLimits(32, initial=5).get(EP) == 5
    assert EndpointLimits(1).get(EP) == 1  # initial 2, but never above the maximum
    limits = EndpointLimits(32)
    limits.record("ep_other", answered())
    assert limits.get(EP) == 2  # endpoints are independent


@pytest.mark.parametrize("status", [200, 204, 301, 404, 429, 500, 503])
def test_each_answer_adds_one_whatever_its_status(status: int) -> None:
    limits = EndpointLimits(32)
    for expected in (3, 4, 5):
        limits.record(EP, answered(status))
        assert limits.get(EP) == expected


def test_growth_stops_at_the_maximum() -> None:
    limits = EndpointLimits(6)
    seen = []
    for _ in range(10):
        limits.record(EP, answered())
        seen.append(limits.get(EP))
    assert seen == [3, 4, 5, 6, 6, 6, 6, 6, 6, 6]


@pytest.mark.parametrize("failure", [timed_out, refused], ids=["timeout", "connection-failure"])
def test_each_timeout_or_connection_failure_halves_it_down_to_one(failure: object) -> None:
    limits = EndpointLimits(64)
    for _ in range(30):
        limits.record(EP, answered())
    assert limits.get(EP) == 32
    seen = []
    for _ in range(7):
        limits.record(EP, failure())  # type: ignore[operator]
        seen.append(limits.get(EP))
    assert seen == [16, 8, 4, 2, 1, 1, 1]  # halved each time, never below one request in flight


def test_halving_keeps_fractions_so_growth_resumes_from_where_it_was() -> None:
    limits = EndpointLimits(32)
    limits.record(EP, answered())  # 3
    limits.record(EP, timed_out())  # 1.5: one request in flight
    assert limits.get(EP) == 1
    limits.record(EP, answered())  # 2.5
    assert limits.get(EP) == 2
    limits.record(EP, answered())  # 3.5
    assert limits.get(EP) == 3


def test_a_hanging_endpoint_soon_holds_one_slot_then_recovers_as_it_answers() -> None:
    limits = EndpointLimits(32)
    for _ in range(40):
        limits.record(EP, answered())
    assert limits.get(EP) == 32
    for _ in range(5):
        limits.record(EP, timed_out())
    assert limits.get(EP) == 1
    for _ in range(3):
        limits.record(EP, answered())
    assert limits.get(EP) == 4


def test_spacing_is_zero_until_the_endpoint_answered_then_its_answer_time_per_slot() -> None:
    limits = EndpointLimits(32)
    assert limits.spacing_ms(EP) == 0.0
    limits.record(EP, answered(latency_ms=300.0))  # limit 3, answer time 0.3 s
    assert limits.spacing_ms(EP) == pytest.approx(100.0)
    limits.record(EP, answered(latency_ms=100.0))  # limit 4, average 0.9 * 0.3 + 0.1 * 0.1 = 0.28 s
    assert limits.spacing_ms(EP) == pytest.approx(70.0)


def test_a_timeout_counts_its_full_wait_in_the_answer_time() -> None:
    limits = EndpointLimits(32)
    limits.record(EP, timed_out(latency_ms=8000.0))  # limit 1, answer time 8 s
    assert limits.spacing_ms(EP) == pytest.approx(8000.0)


def test_queue_allowance_is_one_round_until_answers_show_it_is_fast() -> None:
    limits = EndpointLimits(32, lease_s=40.0)
    assert limits.queue_allowance(EP) == 2  # no answer yet: one round of the limit
    limits.record(EP, answered(latency_ms=10.0))  # fast: up to 8 rounds of the limit (3)
    assert limits.queue_allowance(EP) == 3 * 8


@pytest.mark.parametrize(
    ("latency_s", "rounds"),
    [(0.001, 8), (1.0, 8), (1.25, 8), (2.0, 5), (5.0, 2), (9.9, 1), (10.0, 1), (30.0, 1), (120.0, 1)],
)
def test_queue_allowance_shrinks_with_the_answer_time_so_nothing_waits_near_its_lease(
    latency_s: float, rounds: int
) -> None:
    """Rounds = lease / 4 / answer time, between 1 and 8: with a 40 s lease, chunks wait at most ~10 s here."""
    limits = EndpointLimits(32, lease_s=40.0)
    limits.record(EP, answered(latency_ms=latency_s * 1000))  # the first answer sets the average; limit 3
    assert limits.queue_allowance(EP) == 3 * rounds
    assert limits.queue_allowance(EP) / limits.get(EP) * latency_s <= max(10.0, latency_s)


# -- the slow lane and what worker processes share ----------------------------------------------------
def test_an_endpoint_is_slow_once_its_answers_or_its_oldest_request_take_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("dispatcher.worker.limits.time.monotonic", lambda: clock[0])
    limits = EndpointLimits(32)
    started = limits.started(EP)
    assert not limits.slow(EP)
    clock[0] += 1.5  # no answer yet, but its request has waited 1.5 s
    assert limits.slow(EP) and limits.latency_s(EP) == pytest.approx(1.5)
    limits.record(EP, answered(latency_ms=50.0), started)
    assert not limits.slow(EP)  # it answered, fast
    limits.record(EP, timed_out(latency_ms=2000.0))
    limits.record(EP, timed_out(latency_ms=2000.0))
    assert limits.latency_s(EP) >= 1.0 and limits.slow(EP)


def test_a_slow_endpoints_backlog_is_spread_across_hand_backs(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("dispatcher.worker.limits.time.monotonic", lambda: clock[0])
    limits = EndpointLimits(32)
    limits.record(EP, timed_out(latency_ms=2000.0))  # limit 1, 2 s per request: one slot frees every 2 s
    assert limits.backlog_delays(EP, 3, 200, 300_000) == [200, 2200, 4200]
    # the next claim's surplus goes after it, not back to the start
    assert limits.backlog_delays(EP, 2, 200, 300_000) == [6200, 8200]
    clock[0] += 5.0
    assert limits.backlog_delays(EP, 1, 200, 300_000) == [5200]
    assert max(limits.backlog_delays(EP, 500, 200, 300_000)) == 300_000  # never further than the cap
    limits.record(EP, answered(latency_ms=20.0))  # it answers again: the horizon is forgotten
    assert limits.backlog_delays(EP, 1, 200, 300_000)[0] < 1000


def test_what_other_processes_saw_lowers_the_limit_and_raises_the_latency() -> None:
    ours, theirs = EndpointLimits(32), EndpointLimits(32)
    for _ in range(3):
        theirs.record(EP, timed_out(latency_ms=2000.0))
    slow, recovered = theirs.to_share()
    assert slow == {EP: (pytest.approx(2.0), 1, True)} and recovered == []
    assert theirs.to_share() == ({}, [])  # not again within SHARE_EVERY_S
    ours.learn(slow)
    assert ours.get(EP) == 1 and ours.slow(EP) and ours.hanging(EP)  # known before a single request of its own
    ours.record(EP, answered(latency_ms=20.0))
    assert not ours.slow(EP)  # an answer of its own ends it


def test_hanging_is_slow_with_the_latest_request_unanswered() -> None:
    limits = EndpointLimits(32)
    limits.record(EP, answered(latency_ms=1500.0))
    assert limits.slow(EP) and not limits.hanging(EP)  # slow answers are paced by the limit, not born late
    limits.record(EP, timed_out(latency_ms=2000.0))
    assert limits.hanging(EP)
    mine, _ = limits.to_share()
    assert mine[EP].silent
    limits.record(EP, answered(latency_ms=1500.0))
    assert limits.slow(EP) and not limits.hanging(EP)  # it answered again
    limits.record(EP, refused())
    assert limits.hanging(EP)  # a refused connection is no answer either
