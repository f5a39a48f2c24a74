"""The RabbitMQ side of `run_billing_consumer`: a thin asyncio shell around synchronous workers.

Acknowledgement follows the database claim, not the end of the work. A queue of 1,000
contacts at 20 messages a minute runs for 50 minutes, longer than RabbitMQ's
`consumer_timeout` (30 min) lets a delivery stay unacknowledged. So for a send message:

    wait for a free queue slot, by priority (the delivery stays unacked meanwhile)
    claim the queue in PostgreSQL (pending → running, lease token)   ─ in a worker thread
    ack the delivery                       (whatever the claim said: the database decided)
    run the worker in that thread, slot held, no delivery held
    a worker that released its queue (shutdown, time slice) republishes it

Two budgets, because a throttled queue spends almost all its time waiting for its next send
slot (20 msgs/min = one HTTP call every 3 s):

- **queue slots** (`max_queues`): queues this process holds at once, one parked thread each.
  Deliveries wait for one by template priority (overdue 10 > upcoming 5 > notification 1,
  then arrival), so when slots are scarce the overdue queues start first.
- **worker slots** (`concurrency`): threads doing database or provider work at once. Each is a
  pooled database connection (`DbPermits`), so the process never opens more than
  `concurrency` connections, however many queues it holds, and closes them when idle. A worker
  gives its permit back while it waits for the pace or for the provider's answer.

Crash safety lives in the database (lease tokens, fenced writes, the stale release), so the
broker side only has to keep consuming: a watchdog checks after every reconnection that each
queue still has our consumer (aio-pika's robust connection does not always restore them:
upstream issues #231, #563, #632) and re-subscribes, or exits non-zero so the platform restarts
the process. A delivery fetched before a reconnection may arrive twice: the claim decides.

A body that cannot be parsed is rejected without requeue and dead-lettered to `billing.dead`.
The ORM never runs on the event loop: every database call happens in the worker thread pool.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import ChannelInvalidStateError, ChannelNotFoundEntity
from django.conf import settings

from apps.billing import metrics
from apps.billing.constants import TemplateType
from apps.billing.workers.db_permits import DbPermits, run_with_permit
from apps.billing.workers.parking_worker import ParkingWorker, claim_worker, run_worker

from .messages import BillingMessage, PoisonMessage
from .priority_slots import PrioritySlots, SlotsClosed
from .topology import (
    ALL_QUEUES,
    CHECK_RECOVERY_QUEUE,
    CHECK_STALE_QUEUE,
    QUEUE_ARGUMENTS,
    RESUME_QUEUE,
    SEND_QUEUES,
    declare_topology,
)

logger = logging.getLogger(__name__)

SEND_QUEUE_NAMES = frozenset(SEND_QUEUES.values())
CONTROL_PRIORITY = 11  # control steps (stale release, resumes) go before any send work
STARTUP_BATCH_SECONDS = 1.0  # after subscribing or reconnecting, grants wait to be ordered by priority
EXIT_CONSUMERS_LOST = 3  # the watchdog could not restore our consumers: let the platform restart us


def _channel_alive(message: aio_pika.abc.AbstractIncomingMessage) -> bool:
    try:
        message.channel  # noqa: B018 - raises when the delivery's channel is gone
    except ChannelInvalidStateError:
        return False
    return True


async def _settle(message: aio_pika.abc.AbstractIncomingMessage, action: str, **kwargs: Any) -> bool:
    """ack / nack / reject, tolerating a channel that died meanwhile (the broker has requeued
    the delivery; if we claimed, the redelivered copy finds nothing to claim)."""
    try:
        await getattr(message, action)(**kwargs)
    except CONNECTION_EXCEPTIONS as exc:
        logger.info("billing consumer: delivery not settled, its channel is gone",
                    extra={"action": action, "error": type(exc).__name__})
        return False
    return True


# ---------------------------------------------------------------------------------- the consumer
@dataclass
class _WatchState:
    misses: dict[str, int] = field(default_factory=dict)  # consecutive checks a queue lacked our consumer
    resubscribed: set[str] = field(default_factory=set)  # re-subscribed, not yet seen working
    down_since: float | None = None


class BillingConsumer:
    def __init__(self, *, queues: list[str] | None = None, concurrency: int | None = None,
                 max_queues: int | None = None, url: str | None = None, shutdown_grace: float | None = None,
                 watchdog_interval: float | None = None, reconnect_interval: float | None = None,
                 db_idle_seconds: float | None = None, handback_after: float | None = None) -> None:
        self.queue_names = list(queues or ALL_QUEUES)
        self.concurrency = int(concurrency or settings.BILLING_CONSUMER_CONCURRENCY)
        self.max_queues = int(max_queues or settings.BILLING_CONSUMER_MAX_QUEUES or self.concurrency)
        # Per consumer (one per RabbitMQ queue): a few deliveries beyond what can start now, so a
        # freed slot can pick the highest priority among them.
        self.prefetch = min(self.max_queues, self.concurrency) + 2
        self.url = url or settings.RABBITMQ_URL
        # The message in flight may take one provider call (its total deadline), its outcome
        # write and a republish (publish timeout): that is how long a worker needs to stop.
        self.shutdown_grace = shutdown_grace if shutdown_grace is not None else (
            float(settings.EVOLUTION_SEND_DEADLINE) + float(settings.BILLING_PUBLISH_TIMEOUT) + 3.0)
        self.watchdog_interval = float(watchdog_interval or settings.BILLING_CONSUMER_WATCHDOG_SECONDS)
        self.reconnect_interval = float(reconnect_interval or settings.BILLING_CONSUMER_RECONNECT_SECONDS)
        self.db_idle_seconds = float(db_idle_seconds if db_idle_seconds is not None
                                     else settings.BILLING_CONSUMER_DB_IDLE_SECONDS)
        # A delivery that waited this long for a queue slot goes back to the broker, where
        # another consumer process with free slots may take it.
        self.handback_after = float(handback_after or 2.0)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stop_event = threading.Event()  # read by workers between messages
        self.exit_code = 0
        self.permits = DbPermits(self.concurrency, application_name=f"billing-consumer {self.process_id}")
        # One parked thread per held queue, plus room for claims and control steps.
        self._executor = ThreadPoolExecutor(max_workers=self.max_queues + self.concurrency + 2,
                                            thread_name_prefix="billing-worker")
        self._stopping: asyncio.Event | None = None
        self._slots: PrioritySlots | None = None
        self._tasks: set[asyncio.Task] = set()  # deliveries being handled and workers running
        self._background: list[asyncio.Task] = []
        self._queues: dict[str, aio_pika.abc.AbstractQueue] = {}
        self._tags: dict[str, str] = {}
        self._reconnected: asyncio.Event | None = None
        self._stopping_since: float | None = None
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        """Consume until `request_stop()` (or until the consumers cannot be restored); return
        the process exit code."""
        self._stopping = asyncio.Event()
        self._reconnected = asyncio.Event()
        if self.stop_event.is_set():
            self._stopping.set()
        self._slots = PrioritySlots(self.max_queues)
        if await self._start():
            logger.info("billing consumer started", extra={
                "queues": self.queue_names, "concurrency": self.concurrency, "max_queues": self.max_queues,
                "prefetch": self.prefetch, "consumer_id": self.process_id})
            self._background = [asyncio.create_task(self._watchdog(), name="billing-consumer-watchdog"),
                                asyncio.create_task(self._beat(), name="billing-consumer-heartbeat")]
            for task in self._background:
                task.add_done_callback(self._on_background_done)
            await self._stopping.wait()
        return await self._shutdown()

    def _on_background_done(self, task: asyncio.Task) -> None:
        """The watchdog and the heartbeat end only at shutdown: anything else means this process
        runs unwatched, so it stops and lets the platform start a fresh one."""
        if self._stopping.is_set():
            return
        error = "cancelled" if task.cancelled() else type(task.exception()).__name__ if task.exception() else None
        logger.error("billing consumer background task ended; exiting so it is restarted",
                     extra={"task": task.get_name(), "error": error})
        self.exit_code = self.exit_code or EXIT_CONSUMERS_LOST
        self.request_stop()

    def request_stop(self) -> None:
        """First signal: stop taking deliveries, let workers finish their message, release."""
        self.stop_event.set()
        if self._stopping is not None:
            self._stopping.set()

    async def _start(self) -> bool:
        """Connect and subscribe, retrying while the broker is unreachable (a consumer that
        starts before RabbitMQ waits for it). False when asked to stop first."""
        while not self._stopping.is_set():
            try:
                await self._until_stopping(self._connect_and_subscribe())
                return not self._stopping.is_set()
            except CONNECTION_EXCEPTIONS + (asyncio.TimeoutError,) as exc:
                logger.warning("billing consumer cannot reach RabbitMQ yet; retrying",
                               extra={"error": type(exc).__name__, "retry_in_seconds": self.reconnect_interval})
                await self._close_connection()
                await self._sleep_unless_stopping(self.reconnect_interval)
        return False

    async def _connect_and_subscribe(self) -> None:
        self._queues.clear()
        self._tags.clear()
        self.connection = await aio_pika.connect_robust(
            self.url, timeout=10, reconnect_interval=self.reconnect_interval,
            client_properties={"connection_name": f"billing-consumer {self.process_id}"},
        )
        self.connection.reconnect_callbacks.add(self._on_reconnect)
        self.channel = await self.connection.channel()
        await self.channel.set_qos(prefetch_count=self.prefetch)
        queues = await declare_topology(self.channel)
        self._slots.batch_for(STARTUP_BATCH_SECONDS)  # a backlog arrives at once: overdue first
        for name in self.queue_names:
            self._queues[name] = queues[name]
            self._tags[name] = await queues[name].consume(self._on_message)

    async def _shutdown(self) -> int:
        self.stop_event.set()
        self._stopping.set()
        self._stopping_since = time.monotonic()
        for name, tag in list(self._tags.items()):
            try:
                await asyncio.wait_for(self._queues[name].cancel(tag), 2.0)
            except (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError):  # the broker may be gone: it requeues anyway
                logger.debug("cancel consumer failed", exc_info=True)
        if self._slots is not None:
            self._slots.close()  # waiting deliveries go back to the broker
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.shutdown_grace)
            if pending:
                logger.error("billing workers did not stop in time; their queues are released as stale later",
                             extra={"still_running": len(pending), "grace_seconds": self.shutdown_grace})
                if not self.exit_code:
                    self.exit_code = 1
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._close_connection()
        # Django refuses blocking database calls on the event loop's thread: close in the pool.
        await asyncio.get_running_loop().run_in_executor(self._executor, self.permits.close_all)
        self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info("billing consumer stopped", extra={"consumer_id": self.process_id, "exit_code": self.exit_code,
                                                       "seconds": round(time.monotonic() - self._stopping_since, 2)})
        return self.exit_code

    async def _close_connection(self) -> None:
        if self.connection is None:
            return
        try:
            await asyncio.wait_for(self.connection.close(), 5.0)
        except (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError):
            logger.debug("closing the broker connection failed", exc_info=True)
        self.connection = None

    async def _until_stopping(self, coro: Any) -> Any:
        """Await `coro` unless a stop is requested first (then cancel it)."""
        task = asyncio.ensure_future(coro)
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ deliveries
    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        # aiormq runs this callback as a task of the channel and cancels it when the channel
        # closes (a broker restart): the handling runs in a task of ours instead, so a claim in
        # flight always gets its worker.
        self._spawn(self._handle(message))

    async def _handle(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            parsed = BillingMessage.from_bytes(message.body)
        except PoisonMessage as exc:
            logger.error("billing consumer: unparseable message dead-lettered",
                         extra={"routing_key": message.routing_key, "error": str(exc)})
            await _settle(message, "reject", requeue=False)
            metrics.observe_delivery(message.routing_key, "rejected")
            return
        if message.routing_key in SEND_QUEUE_NAMES:
            await self._on_send(message, parsed)
        else:
            await self._on_control(message, parsed)

    async def _on_send(self, message: aio_pika.abc.AbstractIncomingMessage, parsed: BillingMessage) -> None:
        queue_name = message.routing_key
        if parsed.queue_id is None or parsed.type not in TemplateType.values:
            logger.error("billing consumer: send message without queue", extra={"routing_key": queue_name})
            await _settle(message, "reject", requeue=False)
            metrics.observe_delivery(queue_name, "rejected")
            return
        priority = TemplateType.priority_of(parsed.type)
        if not await self._acquire_slot(message, priority):
            return
        try:
            worker = await self._claim(message, parsed)
        except BaseException:
            self._slots.release()
            raise
        if worker is None:
            self._slots.release()
            return
        try:
            await self._work(worker, priority)
        finally:
            self._slots.release()

    async def _acquire_slot(self, message: aio_pika.abc.AbstractIncomingMessage, priority: int) -> bool:
        """Wait for a queue slot; False (delivery handed back) when stopping or when none came
        within `handback_after`."""
        try:
            if self.stop_event.is_set():
                raise SlotsClosed()
            await asyncio.wait_for(self._slots.acquire(priority), self.handback_after)
        except (SlotsClosed, asyncio.TimeoutError):
            await _settle(message, "nack", requeue=True)
            metrics.observe_delivery(message.routing_key, "requeued")
            return False
        if not _channel_alive(message):
            # The broker requeued this delivery when its channel closed; the copy it sends again
            # is the one to handle.
            self._slots.release()
            return False
        return True

    async def _claim(self, message: aio_pika.abc.AbstractIncomingMessage, parsed: BillingMessage) -> ParkingWorker | None:
        loop = asyncio.get_running_loop()
        worker_id = f"{self.process_id}:{uuid.uuid4().hex[:8]}"
        try:
            worker = await loop.run_in_executor(self._executor, run_with_permit, self.permits,
                                                TemplateType.priority_of(parsed.type), claim_worker, parsed.queue_id,
                                                worker_id, self.stop_event, self.permits)
        except Exception:  # noqa: BLE001 - database trouble: give the message back, slowly
            logger.exception("billing consumer: claim failed", extra={"queue_id": parsed.queue_id})
            await asyncio.sleep(1)
            await _settle(message, "nack", requeue=True)
            metrics.observe_delivery(message.routing_key, "requeued")
            return None
        await _settle(message, "ack")
        if worker is None:
            logger.info("billing consumer: nothing to claim (duplicate, not due or finished)",
                        extra={"queue_id": parsed.queue_id})
            metrics.observe_delivery(message.routing_key, "not_claimed")
            return None
        metrics.observe_delivery(message.routing_key, "claimed")
        return worker

    async def _work(self, worker: ParkingWorker, priority: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, run_with_permit, self.permits, priority,
                                                run_worker, worker)
        except Exception:  # noqa: BLE001 - a worker bug must not kill the consumer; the stale check recovers
            logger.exception("billing worker crashed", extra={"queue_id": str(worker.queue_id)})
            metrics.observe_worker_run("crashed")
            return
        metrics.observe_worker_run(result.outcome)
        logger.info("billing worker finished", extra={"queue_id": str(worker.queue_id), "outcome": result.outcome,
                                                      "sent": result.sent, "failed": result.failed,
                                                      "worker_id": worker.worker_id})

    async def _on_control(self, message: aio_pika.abc.AbstractIncomingMessage, parsed: BillingMessage) -> None:
        from apps.billing.services import periodic

        handlers = {
            RESUME_QUEUE: periodic.resume_due_queues,
            CHECK_STALE_QUEUE: periodic.release_stale_queues,
            CHECK_RECOVERY_QUEUE: periodic.recover_instances,
        }
        handler = handlers.get(message.routing_key)
        if handler is None:
            await _settle(message, "reject", requeue=False)
            metrics.observe_delivery(message.routing_key, "rejected")
            return
        if self.stop_event.is_set():
            await _settle(message, "nack", requeue=True)
            metrics.observe_delivery(message.routing_key, "requeued")
            return
        loop = asyncio.get_running_loop()
        outcome = "handled"
        try:
            await loop.run_in_executor(self._executor, run_with_permit, self.permits, CONTROL_PRIORITY, handler)
        except Exception:  # noqa: BLE001 - the periodic task runs the same step again soon
            logger.exception("billing control message failed", extra={"routing_key": message.routing_key})
            outcome = "failed"
        await _settle(message, "ack")
        metrics.observe_delivery(message.routing_key, outcome)

    # ------------------------------------------------------------------ watchdog
    async def _on_reconnect(self, *_: Any) -> None:
        logger.warning("billing consumer reconnected to RabbitMQ; checking its consumers")
        self._slots.batch_for(STARTUP_BATCH_SECONDS)  # what was unacked comes again, at once
        self._reconnected.set()

    async def _watchdog(self) -> None:
        """Every `watchdog_interval` (and right after a reconnection): is the connection up,
        and does each of our queues have our consumer, on our channel and on the broker?
        A queue missing its consumer twice in a row is re-subscribed; if that fails, or the
        consumer is still missing afterwards, the process stops with EXIT_CONSUMERS_LOST so the
        platform restarts it. Also closes database connections left idle."""
        state = _WatchState()
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._reconnected.wait(), self.watchdog_interval)
                await asyncio.sleep(min(1.0, self.watchdog_interval))  # let aio-pika restore first
            except asyncio.TimeoutError:
                pass
            self._reconnected.clear()
            if self._stopping.is_set():
                return
            try:
                await self._watch_once(state)
            except Exception:  # noqa: BLE001 - the watchdog must outlive any one failed check
                logger.exception("billing consumer check failed")

    async def _watch_once(self, state: _WatchState) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.permits.close_idle,
                                                         self.db_idle_seconds)
        if self.connection is None or self.connection.is_closed or not self.connection.connected.is_set():
            if state.down_since is None:
                state.down_since = time.monotonic()
                logger.warning("billing consumer lost its broker connection; aio-pika reconnects")
            state.misses.clear()
            return
        missing = await self._check_consumers()
        if missing is None:
            return
        if state.down_since is not None:
            logger.info("billing consumer broker connection is back",
                        extra={"down_seconds": round(time.monotonic() - state.down_since, 1)})
            state.down_since = None
        for name in list(state.misses):
            if name not in missing:
                state.misses.pop(name)
                if name in state.resubscribed:
                    state.resubscribed.discard(name)
                    logger.info("billing consumer restored", extra={"queue": name})
        for name in missing:
            state.misses[name] = state.misses.get(name, 0) + 1
            if state.misses[name] < 2:
                continue
            if name in state.resubscribed or not await self._resubscribe(name):
                logger.error("billing consumer cannot restore its consumer; exiting so it is restarted",
                             extra={"queue": name, "exit_code": EXIT_CONSUMERS_LOST})
                self.exit_code = EXIT_CONSUMERS_LOST
                self.request_stop()
                return
            state.resubscribed.add(name)
            state.misses[name] = 0

    async def _check_consumers(self) -> list[str] | None:
        """`_missing_consumers()` in a task of its own, abandoned after 10 s: on a connection
        going down, aiormq cancels its pending calls and a channel close can hang, and neither
        may take the watchdog with it. None when the check could not run."""
        check = asyncio.ensure_future(self._missing_consumers())
        done, _ = await asyncio.wait({check}, timeout=10.0)
        if not done:
            check.cancel()
            logger.info("billing consumer check skipped (broker not answering)")
            return None
        if check.cancelled() or check.exception() is not None:
            error = "cancelled" if check.cancelled() else type(check.exception()).__name__
            logger.info("billing consumer check skipped (connection changing)", extra={"error": error})
            return None
        return check.result()

    async def _missing_consumers(self) -> list[str]:
        """Queues whose consumer is not registered on our channel, or that the broker says
        nobody consumes."""
        underlay = await self.channel.get_underlay_channel()
        missing = {name for name, tag in self._tags.items() if tag not in underlay.consumers}
        amqp = self.connection.transport.connection
        probe = None
        try:
            for name in self._tags:
                if name in missing:
                    continue
                if probe is None or probe.is_closed:
                    probe = await amqp.channel(timeout=5)
                try:
                    declared = await probe.queue_declare(name, passive=True, timeout=5)
                except ChannelNotFoundEntity:  # the queue was deleted (the broker closed the probe)
                    missing.add(name)
                    continue
                if not declared.consumer_count:
                    missing.add(name)
        finally:
            if probe is not None and not probe.is_closed:
                await asyncio.wait_for(probe.close(), 5.0)
        if missing:
            logger.warning("billing consumer missing on queues", extra={"queues": sorted(missing)})
        return sorted(missing)

    async def _resubscribe(self, name: str) -> bool:
        """Declare the queue again (it may have been deleted) and consume from it afresh."""
        queue = self._queues[name]
        try:
            await asyncio.wait_for(queue.cancel(self._tags[name]), 5.0)
        except (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError):
            logger.debug("cancel before re-subscribe failed", exc_info=True)
        try:
            queue = await self.channel.declare_queue(name, durable=True, arguments=QUEUE_ARGUMENTS)
            self._queues[name] = queue
            self._tags[name] = await queue.consume(self._on_message)
        except (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError) as exc:
            logger.error("billing consumer re-subscribe failed", extra={"queue": name, "error": type(exc).__name__})
            return False
        logger.warning("billing consumer re-subscribed", extra={"queue": name})
        return True

    async def _beat(self) -> None:
        """This process's liveness for /readyz (apps.common.health)."""
        from apps.common.health import heartbeat_forever

        await heartbeat_forever("consumer", self.process_id, stop=self._stopping)
