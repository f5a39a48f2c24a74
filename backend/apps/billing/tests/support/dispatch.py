"""In-process dispatch: the consumer's engine (scheduler + runner) driven from the test thread,
against the real database, Redis and the sandbox; no broker, no threads."""

from __future__ import annotations

import threading

from apps.billing.dispatch.engine import DispatchEngine, QueueRun, run_queue_here


def make_engine(
    *, holder: str = "test-consumer", stop_event: threading.Event | None = None, republished: list | None = None
) -> DispatchEngine:
    return DispatchEngine(
        holder=holder,
        threads=1,
        max_queues=100,
        stop_event=stop_event or threading.Event(),
        republish=(republished.append if republished is not None else None),
    )


def run_queue(queue_id: str, *, timeout: float = 60.0) -> QueueRun:
    """Claim `queue_id` and step it in the test's thread until it leaves the engine."""
    run = run_queue_here(queue_id, holder="test-consumer", timeout=timeout)
    assert run is not None, "the queue could not be claimed"
    return run


def finish(engine: DispatchEngine, runner, *, timeout: float = 60.0) -> QueueRun:
    """Step an adopted runner until it leaves."""
    [ending] = engine.run_until_empty(timeout=timeout)
    return QueueRun(ending.outcome, runner.sent, runner.failed)
