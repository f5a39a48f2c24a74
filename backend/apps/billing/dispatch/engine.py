"""The inside of one consumer process: a scheduler, a bounded pool of sender threads, a heartbeat.

```
 broker delivery ──claim (PostgreSQL)──▶ QueueRunner.load() ──adopt──▶ Scheduler (heap of instants)
                                                                           │ take(): due, lane free,
                                                                           │ fair share, priority
                                              sender thread ×N ◀───────────┘
                                                 runner.step(): checks, one send, its outcome
                                                 done(entry, next instant) ──▶ back in the heap
 heartbeat thread: ConsumerProcess row + last_heartbeat of every held queue, every few seconds
```

A queue that waits is an entry in the heap: no thread, no database connection, no slot. Sender
threads borrow a database connection from Django's pool while they work and give it back when
no step is due; the pool's `max_size` bounds the process's connections whatever it holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.billing import metrics
from apps.billing.dispatch import consumer_registry
from apps.billing.dispatch.queue_runner import DispatchContext, QueueRunner, Step
from apps.billing.dispatch.scheduler import Entry, Scheduler
from apps.billing.services import queue_lease
from apps.common.db_connections import release_idle_connection

logger = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 1.0  # a sender thread with nothing due looks again at least this often
CRASH_BACKOFF_SECONDS = 60.0  # a queue whose step raised unexpectedly is not taken again sooner


@dataclass(frozen=True)
class QueueRun:
    outcome: str
    sent: int
    failed: int


def run_queue_here(
    queue_id: str, *, holder: str = "in-process", timeout: float = 300.0, engine: DispatchEngine | None = None
) -> QueueRun | None:
    """Claim one queue and step it in this thread until it leaves; None when it could not be
    claimed. For tests, benchmarks and support shells; the consumer uses threads."""
    engine = engine or DispatchEngine(holder=holder, threads=1, max_queues=1, stop_event=threading.Event())
    runner = engine.claim(str(queue_id))
    if runner is None:
        return None
    engine.adopt(runner)
    [ending] = engine.run_until_empty(timeout=timeout)
    return QueueRun(ending.outcome, runner.sent, runner.failed)


class DispatchEngine:
    def __init__(
        self,
        *,
        holder: str,
        threads: int,
        max_queues: int,
        stop_event: threading.Event,
        republish: Callable[..., object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.holder = holder
        self.threads = max(1, int(threads))
        self.max_queues = max(1, int(max_queues))
        self.context = DispatchContext(holder=holder, stop_event=stop_event, republish=republish, monotonic=clock)
        self.scheduler = Scheduler(threads=self.threads, clock=clock)
        self.clock = clock
        self.started_at = timezone.now()
        self._threads: list[threading.Thread] = []
        self._heartbeat_stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Register (one heartbeat) before taking any queue, then start the threads."""
        self.beat()
        for index in range(self.threads):
            thread = threading.Thread(target=self._sender_loop, name=f"billing-sender-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat_loop, name="billing-consumer-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)

    def drain(self, grace: float) -> bool:
        """Shutdown: every held queue gets one step now, which hands it back (pending,
        republished) because the stop event is set; True when all were handed back in time."""
        deadline = self.clock() + grace
        while len(self.scheduler) and self.clock() < deadline:
            # A snapshot taken under the scheduler's lock, so rescheduling while looping is safe;
            # a step in flight is rescheduled once it is done.
            for key in self.scheduler:
                self.scheduler.reschedule(key, self.clock())
            time.sleep(0.05)
        drained = not len(self.scheduler)
        self.scheduler.close()
        self._heartbeat_stop.set()
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - self.clock()))
        if drained:
            try:
                consumer_registry.unregister(self.holder)
            finally:
                release_idle_connection()
        return drained

    # ------------------------------------------------------------------ queues
    def has_room(self) -> bool:
        return len(self.scheduler) < self.max_queues

    def adopt(self, runner: QueueRunner) -> None:
        """Hold a queue this process just claimed (its runner loaded): due at once."""
        old = self.scheduler.add(
            Entry(
                key=str(runner.queue_id),
                tenant=str(runner.tenant.pk),
                lane=runner.pace_key,
                priority=runner.priority,
                payload=runner,
            )
        )
        if old is not None:
            logger.info(
                "billing queue claimed again; the older lease is dropped", extra={"queue_id": str(runner.queue_id)}
            )
        metrics.observe_held_queues(len(self.scheduler))

    def claim(self, queue_id: str) -> QueueRunner | None:
        """pending → running for this process, and the runner loaded; None when the queue is
        someone else's, not due, or finished (the database decided: the delivery is acked)."""
        with transaction.atomic():  # the claim and its queue.started callback commit together
            lease = queue_lease.claim_queue(queue_id, self.holder)
            if lease is None:
                return None
            runner = QueueRunner(lease, context=self.context)
            runner.load()
        return runner

    # ------------------------------------------------------------------ stepping
    def step(self, entry: Entry) -> Step:
        """One step of `entry`'s queue in this thread; the entry goes back to the scheduler."""
        runner: QueueRunner = entry.payload
        metrics.observe_step_lag(self.clock() - entry.due_at)
        try:
            outcome = runner.step()
        except Exception:
            logger.exception(
                "billing queue step crashed; the queue is handed back for later",
                extra={"queue_id": str(runner.queue_id)},
            )
            outcome = self._after_crash(runner)
        self.scheduler.done(entry, outcome.at, sent=outcome.sent)
        if outcome.left:
            metrics.observe_held_queues(len(self.scheduler))
        return outcome

    def run_due(self, *, limit: int | None = None) -> int:
        """Step every entry that is due now in the calling thread (tests, benchmarks): the same
        steps the sender threads run, without threads. Returns how many ran."""
        ran = 0
        while limit is None or ran < limit:
            entry = self.scheduler.take(timeout=0)
            if entry is None:
                return ran
            self.step(entry)
            ran += 1
        return ran

    def run_until_empty(self, *, timeout: float) -> list[Step]:
        """Step the held queues in the calling thread, waiting between their instants, until
        none is held; returns each queue's last step. The same steps the sender threads run,
        without threads: how tests, benchmarks and a support shell drive one queue."""
        deadline = self.clock() + timeout
        endings: list[Step] = []
        while len(self.scheduler):
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise TimeoutError(f"queues still held after {timeout}s: {self.scheduler.keys()}")
            entry = self.scheduler.take(timeout=remaining)
            if entry is not None and (step := self.step(entry)).left:
                endings.append(step)
        return endings

    def _after_crash(self, runner: QueueRunner) -> Step:
        """Poison guard: the queue goes back to pending, not due for a while, and leaves this
        process; the crash is in the log with its traceback."""
        metrics.observe_worker_run("crashed")
        try:
            later = timezone.now() + timedelta(seconds=CRASH_BACKOFF_SECONDS)
            queue_lease.forget_claims(runner.lease, [c.pk for c in runner.batch])
            queue_lease.hand_back(runner.lease, due_at=later)
        except Exception:
            logger.exception(
                "billing queue could not be handed back after a crash", extra={"queue_id": str(runner.queue_id)}
            )
        return Step(None, "crashed")

    def _sender_loop(self) -> None:
        try:
            self._send_until_closed()
        finally:
            connection.close()  # the thread ends: its connection goes back (or is closed)

    def _send_until_closed(self) -> None:
        while True:
            entry = self.scheduler.take(timeout=0)
            if entry is None:
                release_idle_connection()  # nothing due now: hold no connection while idle
                entry = self.scheduler.take(timeout=IDLE_WAIT_SECONDS)
                if entry is None:
                    if self.scheduler.closed:
                        return
                    continue
            self.step(entry)

    # ------------------------------------------------------------------ heartbeat
    def beat(self) -> None:
        consumer_registry.heartbeat(self.holder, held=self.scheduler.keys(), started_at=self.started_at)

    def _heartbeat_loop(self) -> None:
        interval = float(settings.BILLING_CONSUMER_HEARTBEAT_SECONDS)
        while not self._heartbeat_stop.wait(interval):
            try:
                self.beat()
            except Exception:
                logger.warning("billing consumer heartbeat failed", exc_info=True)
            finally:
                release_idle_connection()
        connection.close()
