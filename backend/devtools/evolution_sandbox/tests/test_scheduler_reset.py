"""A sandbox reset ends the previous test's delayed work, including what runs at that moment."""

from __future__ import annotations

import threading

from devtools.evolution_sandbox.scheduler import Scheduler


def test_a_reset_drops_what_a_job_running_at_that_moment_would_schedule_next():
    scheduler = Scheduler(workers=1)
    started, release, finished, next_ran = (threading.Event() for _ in range(4))
    ran: list[str] = []

    def delivery() -> None:  # a webhook delivery whose attempt ends after the reset, then retries
        started.set()
        release.wait(5)
        scheduler.call_later(0, lambda: ran.append("retry"))
        finished.set()

    def next_test() -> None:
        ran.append("next test")
        next_ran.set()

    try:
        scheduler.call_later(0, delivery)
        scheduler.call_later(60, lambda: ran.append("receipt"))  # scheduled, not yet due
        assert started.wait(5)
        scheduler.clear()
        release.set()
        assert finished.wait(5)
        # One worker, jobs in order: a retry queued by the delivery would run before this one.
        scheduler.call_later(0, next_test)
        assert next_ran.wait(5)
        assert ran == ["next test"], "neither the retry nor the scheduled receipt outlived the reset"
    finally:
        scheduler.stop()
