"""The send pace and the API limits, as atomic scripts on the real Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from apps.common.rate_limiting import acquire_send_slot, hit, hold_back
from apps.common.redis_client import get_redis


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex}"


def slot_due_in(key: str, seconds: float) -> None:
    """Put the number's next slot `seconds` from now (negative: that long ago) on Redis' own
    clock, the one the script reads: the test moves the stored slot instead of sleeping until
    it comes (as the circuit-breaker tests move the stored end of the cool-down)."""
    client = get_redis()
    whole, micros = client.time()
    client.set(f"pace:{key}", str(whole * 1_000_000 + micros + int(seconds * 1_000_000)), px=60_000)


def test_a_slot_is_granted_once_and_the_next_caller_is_told_how_long_to_wait(key):
    first = acquire_send_slot(key, 2.0, seed_epoch_seconds=0)
    assert first.granted and 1.9 <= first.seconds <= 2.0
    second = acquire_send_slot(key, 2.0)
    assert not second.granted and not second.held and 1.5 <= second.seconds <= 2.0  # margin: a stalled box


def test_a_number_redis_does_not_know_is_reported_so_postgresql_can_seed_it(key):
    unknown = acquire_send_slot(key, 2.0)
    assert unknown.unknown and not unknown.granted
    # PostgreSQL says the number last sent a moment ago: its next slot is about an interval away.
    seeded = acquire_send_slot(key, 2.0, seed_epoch_seconds=time.time() + 1.5)
    assert not seeded.granted and 1.0 <= seeded.seconds <= 1.5  # margin: the seed was read before the call
    assert acquire_send_slot(key, 2.0).seconds > 1.0, "the seed is now the pace"


def test_a_grant_up_to_the_tolerance_early_is_allowed(key):
    slot_due_in(key, 0.01)  # comes in 10 ms: inside the 20 ms tolerance
    assert acquire_send_slot(key, 0.2, tolerance_seconds=0.02).granted
    slot_due_in(key, 0.5)  # well outside it
    assert not acquire_send_slot(key, 0.2, tolerance_seconds=0.02).granted


def test_a_late_grant_wins_back_at_most_a_tenth_of_an_interval(key):
    """A 2 s interval: a grant late by a whole interval counts as idle (a full interval next),
    so "very late" must stay under that however long this box stalls between two calls."""
    slot_due_in(key, -0.05)  # at least 50 ms late (more on a stalled box: then up to the cap)
    late = acquire_send_slot(key, 2.0)
    assert late.granted and 1.799 <= late.seconds <= 1.951, "the next slot wins the lateness back"
    slot_due_in(key, -0.6)  # 600 ms late: more than the tenth (0.2 s) it may win back
    very_late = acquire_send_slot(key, 2.0)
    assert very_late.granted and 1.79 <= very_late.seconds <= 1.81


def test_a_providers_hold_stops_that_number_only_and_says_so(key):
    other = f"{key}-other"
    hold_back(key, 60)
    held = acquire_send_slot(key, 1.0, seed_epoch_seconds=0)
    assert held.held and not held.granted and 59 <= held.seconds <= 60
    assert acquire_send_slot(other, 1.0, seed_epoch_seconds=0).granted
    hold_back(key, 5)  # a shorter hold never shortens a longer one
    assert acquire_send_slot(key, 1.0).seconds > 50
    assert get_redis().pttl(f"hold:{key}") > 55_000


def test_the_api_limit_allows_a_burst_then_refuses_with_a_wait(key):
    assert all(hit(key, 3, 60).allowed for _ in range(3))
    refused = hit(key, 3, 60)
    assert not refused.allowed and 19 <= refused.retry_after <= 20
