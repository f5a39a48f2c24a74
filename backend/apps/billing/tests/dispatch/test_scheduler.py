"""The scheduler's rules, with a clock the test moves: no threads, no sleeps, no database."""

from __future__ import annotations

import threading
import time

import pytest

from apps.billing.dispatch.scheduler import Entry, Scheduler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def entry(key: str, *, tenant: str = "t1", lane: str | None = None, priority: int = 1) -> Entry:
    return Entry(key=key, tenant=tenant, lane=lane or f"lane-{key}", priority=priority)


def drain(scheduler: Scheduler) -> list[str]:
    """Take everything due now, one after the other, each finished before the next is taken."""
    taken = []
    while (item := scheduler.take(timeout=0)) is not None:
        taken.append(item.key)
        scheduler.done(item, None)
    return taken


def test_an_entry_is_not_taken_before_its_instant(clock):
    scheduler = Scheduler(threads=2, clock=clock, gather=0)
    scheduler.add(entry("q1"), at=clock.now + 3)
    assert scheduler.take(timeout=0) is None
    clock.now += 2.999
    assert scheduler.take(timeout=0) is None
    clock.now += 0.001
    assert scheduler.take(timeout=0).key == "q1"


def test_a_waiting_entry_holds_nothing_and_comes_back_at_the_instant_done_names(clock):
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("q1"))
    first = scheduler.take(timeout=0)
    scheduler.done(first, clock.now + 86_400)  # a day-long Retry-After
    scheduler.add(entry("q2", tenant="t2"))
    assert scheduler.take(timeout=0).key == "q2", "the waiting queue kept no thread"
    assert len(scheduler) == 2


def test_queues_waiting_for_the_same_slot_wake_together_and_priority_decides(clock):
    """Each queue of a shared number computed the slot's instant from its own Redis answer, a
    fraction of a millisecond apart: the one due first must not win for that alone."""
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("notice", lane="shared", priority=1), at=clock.now + 1.0000)
    scheduler.add(entry("overdue", lane="shared", priority=10), at=clock.now + 1.0004)
    clock.now += 1.0
    assert scheduler.take(timeout=0).key == "overdue"


def test_on_a_shared_number_a_better_queue_due_soon_goes_first_whoever_woke_earlier(clock):
    """Under load the queues waiting for a number's slot wake milliseconds apart, and the slot is
    granted a little early: the lower-priority one must not take it for having woken first."""
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("notice", lane="shared", priority=1), at=clock.now)
    scheduler.add(entry("upcoming", lane="shared", priority=5), at=clock.now + 0.2)
    scheduler.add(entry("elsewhere", lane="other", priority=1), at=clock.now)
    assert drain(scheduler) == ["elsewhere"], "only the shared number's lower queue waits"
    clock.now += 0.2
    upcoming = scheduler.take(timeout=0)
    assert upcoming.key == "upcoming"
    assert scheduler.take(timeout=0) is None, "the lane is busy"
    scheduler.done(upcoming, clock.now + 1.0)  # it took the slot: next one in a second
    assert scheduler.take(timeout=0).key == "notice", "waited once, not for every later step"


def test_a_better_queue_far_off_or_on_another_number_does_not_hold_a_due_one(clock):
    scheduler = Scheduler(threads=1, clock=clock, lane_window=0.5)
    scheduler.add(entry("notice", lane="shared", priority=1), at=clock.now)
    scheduler.add(entry("overdue", lane="shared", priority=10), at=clock.now + 0.6)
    scheduler.add(entry("same", lane="shared", priority=1), at=clock.now + 0.1)
    assert scheduler.take(timeout=0).key == "notice"


def test_a_lower_queue_held_for_a_better_one_that_left_goes_at_once(clock):
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("notice", lane="shared", priority=1), at=clock.now)
    scheduler.add(entry("overdue", lane="shared", priority=10), at=clock.now + 0.3)
    assert scheduler.take(timeout=0) is None
    scheduler.remove("overdue")  # cancelled from the API meanwhile
    clock.now += 0.3
    assert drain(scheduler) == ["notice"]


def test_the_queues_of_one_number_take_turns_whoever_reads_the_clock_earlier(clock):
    """Both wake for the number's next slot; the one refused reads its instant a little later
    than the one that sent (a loaded box: tens of milliseconds). It must not lose every slot."""
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("older", lane="shared"), at=clock.now)
    scheduler.add(entry("newer", lane="shared"), at=clock.now + 0.001)
    order = []
    for _ in range(6):
        while (taken := scheduler.take(timeout=0)) is None:
            clock.now += 0.01
        order.append(taken.key)
        slot = clock.now + 1.0  # the number's next slot
        # One sends (its next instant counted from the slot), the other one is refused and
        # counts 30 ms later: without the rule, the sender's instant is always the earlier.
        scheduler.done(taken, slot, sent=True)
        other = scheduler.take(timeout=0)
        if other is not None:
            scheduler.done(other, slot + 0.03)  # refused by the pace: not sent
    assert order == ["older", "newer", "older", "newer", "older", "newer"], order


def test_an_entry_that_sent_does_not_yield_to_a_peer_far_off(clock):
    scheduler = Scheduler(threads=1, clock=clock, lane_window=0.5)
    scheduler.add(entry("a", lane="shared"), at=clock.now)
    scheduler.add(entry("far", lane="shared"), at=clock.now + 1.7)  # a retry's backoff, say
    scheduler.done(scheduler.take(timeout=0), clock.now + 1.0, sent=True)
    clock.now += 1.0
    assert scheduler.take(timeout=0).key == "a"


def test_two_entries_that_both_sent_yield_once_each_and_one_goes(clock):
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("a", lane="shared"), at=clock.now)
    scheduler.add(entry("b", lane="shared"), at=clock.now + 0.001)
    scheduler.done(scheduler.take(timeout=0), clock.now + 1.0, sent=True)
    clock.now += 0.001
    scheduler.done(scheduler.take(timeout=0), clock.now + 1.0, sent=True)
    clock.now += 1.0
    assert scheduler.take(timeout=0).key == "a", "a yielded to b, b to a, then a went"


def test_one_step_in_flight_per_lane(clock):
    scheduler = Scheduler(threads=4, clock=clock)
    scheduler.add(entry("a1", lane="number-A"))
    scheduler.add(entry("a2", lane="number-A"))
    scheduler.add(entry("b1", lane="number-B"))
    first = scheduler.take(timeout=0)
    second = scheduler.take(timeout=0)
    assert {first.key, second.key} == {"a1", "b1"} or {first.key, second.key} == {"a2", "b1"}
    assert scheduler.take(timeout=0) is None, "the other queue of number A waits for its lane"
    on_a = first if first.lane == "number-A" else second
    scheduler.done(on_a, None)
    assert scheduler.take(timeout=0).lane == "number-A"


def test_priority_decides_between_tenants_under_their_share(clock):
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("notice", tenant="t1", priority=1))
    scheduler.add(entry("upcoming", tenant="t2", priority=5))
    scheduler.add(entry("overdue", tenant="t3", priority=10))
    assert drain(scheduler) == ["overdue", "upcoming", "notice"]


def test_a_tenant_over_its_fair_share_waits_while_another_tenant_has_work(clock):
    scheduler = Scheduler(threads=4, clock=clock)
    for index in range(6):  # tenant A: six queues on six numbers, all overdue
        scheduler.add(entry(f"a{index}", tenant="A", priority=10))
    scheduler.add(entry("b0", tenant="B", priority=1))
    scheduler.add(entry("b1", tenant="B", priority=1))
    taken = [scheduler.take(timeout=0) for _ in range(4)]
    tenants = sorted(item.tenant for item in taken)
    assert tenants == ["A", "A", "B", "B"], "A holds its share (2 of 4 threads), B gets the rest"


def test_a_tenant_alone_never_holds_more_than_half_the_threads(clock):
    """So a tenant that arrives while another's provider hangs finds threads free at once."""
    scheduler = Scheduler(threads=6, clock=clock)
    for index in range(6):
        scheduler.add(entry(f"a{index}", tenant="A"))
    taken = [scheduler.take(timeout=0) for _ in range(4)]
    assert [t is not None for t in taken] == [True, True, True, False]
    scheduler.add(entry("b0", tenant="B"))
    assert scheduler.take(timeout=0).tenant == "B"


def test_the_least_recently_served_tenant_goes_first_at_equal_priority(clock):
    scheduler = Scheduler(threads=1, clock=clock)
    for index in range(3):
        scheduler.add(entry(f"a{index}", tenant="A"))
    scheduler.add(entry("b0", tenant="B"))
    order = []
    while (item := scheduler.take(timeout=0)) is not None:
        order.append(item.tenant)
        scheduler.done(item, None)
    assert order[:2] in (["A", "B"], ["B", "A"]) and order.count("B") == 1
    assert order.index("B") <= 1, "B was served before A's second queue"


def test_one_tenants_many_due_queues_never_starve_another_tenants_queue(clock):
    """41 queues of tenant A at one message a minute each, 1 queue of tenant B: B's queue acts
    at every turn it is due, never behind all of A's."""
    scheduler = Scheduler(threads=2, clock=clock)
    for index in range(41):
        scheduler.add(entry(f"a{index}", tenant="A"))
    scheduler.add(entry("b", tenant="B"))
    positions = []
    for turn in range(42):
        item = scheduler.take(timeout=0)
        if item.key == "b":
            positions.append(turn)
            scheduler.done(item, clock.now)  # B has 2,000 messages: due again at once
        else:
            scheduler.done(item, clock.now + 60)
    assert positions[0] <= 1 and len(positions) >= 20, positions


def test_a_queue_claimed_again_replaces_the_older_entry(clock):
    scheduler = Scheduler(threads=1, clock=clock)
    old = entry("q1")
    scheduler.add(old, at=clock.now + 600)
    replaced = scheduler.add(entry("q1"))
    assert replaced is old and len(scheduler) == 1
    taken = scheduler.take(timeout=0)
    assert taken is not old
    scheduler.done(taken, None)
    clock.now += 601
    assert scheduler.take(timeout=0) is None, "the old lease's entry is gone"


def test_an_entry_removed_while_in_flight_is_dropped_when_done(clock):
    scheduler = Scheduler(threads=1, clock=clock)
    scheduler.add(entry("q1"))
    item = scheduler.take(timeout=0)
    scheduler.remove("q1")
    scheduler.done(item, clock.now)
    assert len(scheduler) == 0 and scheduler.take(timeout=0) is None


def test_reschedule_brings_a_waiting_queue_forward_but_not_one_in_flight(clock):
    scheduler = Scheduler(threads=4, clock=clock)
    scheduler.add(entry("waiting"), at=clock.now + 900)
    scheduler.add(entry("busy"))
    busy = scheduler.take(timeout=0)
    assert scheduler.reschedule("waiting", clock.now)
    assert not scheduler.reschedule("busy", clock.now)
    assert scheduler.take(timeout=0).key == "waiting"
    scheduler.done(busy, None)


def test_a_blocked_thread_wakes_when_an_entry_is_added_or_the_scheduler_closes():
    scheduler = Scheduler(threads=1)
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(scheduler.take(timeout=30)))
    waiter.start()
    scheduler.add(entry("q1"))
    waiter.join(5)
    assert not waiter.is_alive() and got[0].key == "q1"
    closer = threading.Thread(target=lambda: got.append(scheduler.take(timeout=30)))
    closer.start()
    scheduler.close()
    closer.join(5)
    assert not closer.is_alive() and got[1] is None


def test_ten_thousand_waiting_queues_cost_no_time_to_pick_from(clock):
    """A pick looks at the best tenants, not all of them: draining 10,000 due queues of 1,000
    tenants took 48 s when every pick scanned every tenant; the bound leaves a loaded box room."""
    scheduler = Scheduler(threads=8, clock=clock)
    for index in range(10_000):
        scheduler.add(entry(f"q{index}", tenant=f"t{index % 1000}"), at=clock.now + 1 + index * 0.001)
    clock.now += 11
    taken, started = 0, time.process_time()
    while (item := scheduler.take(timeout=0)) is not None:
        scheduler.done(item, None)
        taken += 1
    assert taken == 10_000 and len(scheduler) == 0
    assert time.process_time() - started < 10
