"""A sandbox reset ends the previous test's delayed work, including what runs at that moment."""

from __future__ import annotations

import threading
import time

from devtools.evolution_sandbox.scheduler import Scheduler


def wait_idle(scheduler: Scheduler) -> None:
    deadline = time.monotonic() + 5
    while scheduler.pending():
        assert time.monotonic() < deadline, "the scheduler never went idle"
        time.sleep(0.005)


def test_a_reset_drops_what_a_job_running_at_that_moment_would_schedule_next():
    scheduler = Scheduler(workers=1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def delivery() -> None:  # a webhook delivery whose attempt ends after the reset, then retries
        started.set()
        release.wait(5)
        scheduler.call_later(0, lambda: ran.append("retry"))

    try:
        scheduler.call_later(0, delivery)
        scheduler.call_later(60, lambda: ran.append("receipt"))  # scheduled, not yet due
        assert started.wait(5)
        scheduler.clear()
        release.set()
        wait_idle(scheduler)
        assert ran == [], "neither the retry nor the scheduled receipt outlived the reset"
        scheduler.call_later(0, lambda: ran.append("next test"))
        wait_idle(scheduler)
        assert ran == ["next test"]
    finally:
        scheduler.stop()
