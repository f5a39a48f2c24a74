"""Shutdown with a queue still held: the drain walks the scheduler's keys (mypy found the loop
iterated a scheduler that was not iterable, which raised TypeError). No threads, no database."""

from __future__ import annotations

import threading

from apps.billing.dispatch.engine import DispatchEngine
from apps.billing.dispatch.scheduler import Entry, Scheduler


class SteppingClock:
    """Each reading is a second later: the drain's grace runs out after a few turns."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_iterating_a_scheduler_gives_the_keys_it_holds_now():
    scheduler = Scheduler(threads=1, clock=SteppingClock())
    scheduler.add(Entry(key="q1", tenant="t1", lane="n1", priority=1))
    scheduler.add(Entry(key="q2", tenant="t1", lane="n2", priority=1))
    assert sorted(scheduler) == ["q1", "q2"]


def test_the_drain_reports_a_queue_it_could_not_hand_back_in_time():
    engine = DispatchEngine(
        holder="drain-test", threads=1, max_queues=2, stop_event=threading.Event(), clock=SteppingClock()
    )
    engine.scheduler.add(Entry(key="q1", tenant="t1", lane="n1", priority=1))  # no sender thread steps it
    assert engine.drain(grace=3.0) is False
    assert engine.scheduler.keys() == ["q1"]
