"""The RabbitMQ side of `run_billing_consumer`: a thin asyncio shell around the dispatch engine.

A broker message is a wake-up call naming a queue; PostgreSQL decides who sends it. For a send
message the consumer claims the queue (pending → running, a new lease token, `processing_by` =
this process) in a claim thread and acknowledges the delivery whatever the claim said; a queue
it claimed goes into the process's scheduler (apps/billing/dispatch/), where a bounded pool of
sender threads steps it at its own instants. A delivery is never held for the length of the
work (RabbitMQ's `consumer_timeout` is 30 minutes; a 1,000-contact queue at 20 a minute runs 50).

Control messages (billing.resume, billing.check_stale, billing.check_recovery) are published by
the periodic process, one per thing to act on, and handled here by a small control pool
(dispatch/control.py): exactly once, whichever consumer gets them.

Crash safety lives in the database (lease tokens, fenced writes, the process heartbeat of
dispatch/consumer_registry.py), so the broker side only has to keep consuming: a watchdog checks
after every reconnection that each queue still has our consumer (aio-pika's robust connection
does not always restore them: upstream issues #231, #563, #632) and re-subscribes, or exits
non-zero so the platform restarts the process. A delivery fetched before a reconnection may
arrive twice: the claim decides.

A body that cannot be parsed is rejected without requeue and dead-lettered to `billing.dead`.
The ORM never runs on the event loop: claims and control actions run in their thread pools.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import ChannelInvalidStateError, ChannelNotFoundEntity
from django.conf import settings

from apps.billing import metrics
from apps.billing.broker.messages import BillingMessage, PoisonMessage
from apps.billing.broker.publisher import publish_queue
from apps.billing.broker.topology import ALL_QUEUES, QUEUE_ARGUMENTS, SEND_QUEUES, declare_topology
from apps.billing.constants import TemplateType
from apps.billing.dispatch import control
from apps.billing.dispatch.consumer_registry import new_consumer_id
from apps.billing.dispatch.engine import DispatchEngine
from apps.billing.dispatch.queue_runner import QueueRunner
from apps.common.db_connections import release_idle_connection

logger = logging.getLogger(__name__)

SEND_QUEUE_NAMES = frozenset(SEND_QUEUES.values())
CLAIM_THREADS = 2  # claims are two short statements: a couple of threads keep up with any burst
CONTROL_THREADS = 2  # a recovery check may wait for a provider's deadline: never on the claim threads
FULL_BACKOFF_SECONDS = 1.0  # a process at max_queues hands a delivery back after this pause
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
        logger.info(
            "billing consumer: delivery not settled, its channel is gone",
            extra={"action": action, "error": type(exc).__name__},
        )
        return False
    return True


def _in_thread(fn: Any, *args: Any) -> Any:
    """Run `fn` in a pool thread and give its database connection back afterwards."""
    try:
        return fn(*args)
    finally:
        release_idle_connection()


# ---------------------------------------------------------------------------------- the consumer
@dataclass
class _WatchState:
    misses: dict[str, int] = field(default_factory=dict)  # consecutive checks a queue lacked our consumer
    resubscribed: set[str] = field(default_factory=set)  # re-subscribed, not yet seen working
    down_since: float | None = None


class BillingConsumer:
    def __init__(
        self,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        max_queues: int | None = None,
        url: str | None = None,
        shutdown_grace: float | None = None,
        watchdog_interval: float | None = None,
        reconnect_interval: float | None = None,
    ) -> None:
        self.queue_names = list(queues or ALL_QUEUES)
        self.concurrency = int(concurrency or settings.BILLING_CONSUMER_CONCURRENCY)
        self.max_queues = int(max_queues or settings.BILLING_CONSUMER_MAX_QUEUES)
        # Handling a delivery is a claim, not the work: a modest prefetch keeps claims flowing.
        self.prefetch = 4 * CLAIM_THREADS + CONTROL_THREADS
        self.url = url or settings.RABBITMQ_URL
        # The step in flight may take one provider call (its total deadline), its outcome write
        # and a republish (publish timeout): that is how long the sender threads need to stop.
        self.shutdown_grace = (
            shutdown_grace
            if shutdown_grace is not None
            else (float(settings.EVOLUTION_SEND_DEADLINE) + float(settings.BILLING_PUBLISH_TIMEOUT) + 3.0)
        )
        self.watchdog_interval = float(watchdog_interval or settings.BILLING_CONSUMER_WATCHDOG_SECONDS)
        self.reconnect_interval = float(reconnect_interval or settings.BILLING_CONSUMER_RECONNECT_SECONDS)
        self.process_id = new_consumer_id()
        self.stop_event = threading.Event()  # read by the sender threads before each step
        self.exit_code = 0
        self.engine = DispatchEngine(
            holder=self.process_id,
            threads=self.concurrency,
            max_queues=self.max_queues,
            stop_event=self.stop_event,
            republish=publish_queue,
        )
        self._claims = ThreadPoolExecutor(max_workers=CLAIM_THREADS, thread_name_prefix="billing-claim")
        self._control = ThreadPoolExecutor(max_workers=CONTROL_THREADS, thread_name_prefix="billing-control")
        # Made here, bound to the loop that first waits on them (asyncio's events are since 3.10).
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()  # deliveries being handled
        self._background: list[asyncio.Task[None]] = []
        self._queues: dict[str, aio_pika.abc.AbstractQueue] = {}
        self._tags: dict[str, str] = {}
        self._reconnected = asyncio.Event()
        self._stopping_since: float | None = None
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        """Consume until `request_stop()` (or until the consumers cannot be restored); return
        the process exit code."""
        if self.stop_event.is_set():
            self._stopping.set()
        loop = asyncio.get_running_loop()
        # Registered (first heartbeat) before the first claim: a process is never a holder the
        # database does not know.
        await loop.run_in_executor(self._claims, _in_thread, self.engine.start)
        if await self._start():
            logger.info(
                "billing consumer started",
                extra={
                    "queues": self.queue_names,
                    "sender_threads": self.concurrency,
                    "max_queues": self.max_queues,
                    "prefetch": self.prefetch,
                    "consumer_id": self.process_id,
                },
            )
            self._background = [
                asyncio.create_task(self._watchdog(), name="billing-consumer-watchdog"),
                asyncio.create_task(self._beat(), name="billing-consumer-heartbeat"),
            ]
            for task in self._background:
                task.add_done_callback(self._on_background_done)
            await self._stopping.wait()
        return await self._shutdown()

    def _on_background_done(self, task: asyncio.Task[None]) -> None:
        """The watchdog and the heartbeat end only at shutdown: anything else means this process
        runs unwatched, so it stops and lets the platform start a fresh one."""
        if self._stopping.is_set():
            return
        error = "cancelled" if task.cancelled() else type(task.exception()).__name__ if task.exception() else None
        logger.error(
            "billing consumer background task ended; exiting so it is restarted",
            extra={"task": task.get_name(), "error": error},
        )
        self.exit_code = self.exit_code or EXIT_CONSUMERS_LOST
        self.request_stop()

    def request_stop(self) -> None:
        """First signal: stop taking deliveries; every held queue is handed back after its
        step in flight."""
        self.stop_event.set()
        self._stopping.set()

    async def _start(self) -> bool:
        """Connect and subscribe, retrying while the broker is unreachable (a consumer that
        starts before RabbitMQ waits for it). False when asked to stop first."""
        while not self._stopping.is_set():
            try:
                await self._until_stopping(self._connect_and_subscribe())
                return not self._stopping.is_set()
            except CONNECTION_EXCEPTIONS + (asyncio.TimeoutError,) as exc:
                logger.warning(
                    "billing consumer cannot reach RabbitMQ yet; retrying",
                    extra={"error": type(exc).__name__, "retry_in_seconds": self.reconnect_interval},
                )
                await self._close_connection()
                await self._sleep_unless_stopping(self.reconnect_interval)
        return False

    async def _connect_and_subscribe(self) -> None:
        self._queues.clear()
        self._tags.clear()
        self.connection = await aio_pika.connect_robust(
            self.url,
            timeout=10,
            reconnect_interval=self.reconnect_interval,
            client_properties={"connection_name": f"billing-consumer {self.process_id}"},
        )
        self.connection.reconnect_callbacks.add(self._on_reconnect)
        self.channel = await self.connection.channel()
        await self.channel.set_qos(prefetch_count=self.prefetch)
        queues = await declare_topology(self.channel)
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
            except (TimeoutError, *CONNECTION_EXCEPTIONS):  # the broker may be gone: it requeues anyway
                logger.debug("cancel consumer failed", exc_info=True)
        if self._tasks:  # claims in flight end in the scheduler, which the drain empties
            await asyncio.wait(set(self._tasks), timeout=self.shutdown_grace)
        loop = asyncio.get_running_loop()
        drained = await loop.run_in_executor(self._claims, _in_thread, self.engine.drain, self.shutdown_grace)
        if not drained:
            logger.error(
                "billing queues were not handed back in time; their consumer's silence releases them",
                extra={"still_held": len(self.engine.scheduler), "grace_seconds": self.shutdown_grace},
            )
            if not self.exit_code:
                self.exit_code = 1
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._close_connection()
        self._claims.shutdown(wait=False, cancel_futures=True)
        self._control.shutdown(wait=False, cancel_futures=True)
        logger.info(
            "billing consumer stopped",
            extra={
                "consumer_id": self.process_id,
                "exit_code": self.exit_code,
                "seconds": round(time.monotonic() - self._stopping_since, 2),
            },
        )
        return self.exit_code

    async def _close_connection(self) -> None:
        if self.connection is None:
            return
        try:
            await asyncio.wait_for(self.connection.close(), 5.0)
        except (TimeoutError, *CONNECTION_EXCEPTIONS):
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
        except TimeoutError:
            pass

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ deliveries
    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        # aiormq runs this callback as a task of the channel and cancels it when the channel
        # closes (a broker restart): the handling runs in a task of ours instead, so a claim in
        # flight always reaches the scheduler.
        self._spawn(self._handle(message))

    async def _handle(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            parsed = BillingMessage.from_bytes(message.body)
        except PoisonMessage as exc:
            logger.error(
                "billing consumer: unparseable message dead-lettered",
                extra={"routing_key": message.routing_key, "error": str(exc)},
            )
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
        if self.stop_event.is_set() or not self.engine.has_room():
            if not self.stop_event.is_set():
                await self._sleep_unless_stopping(FULL_BACKOFF_SECONDS)  # full: let another process take it
            await _settle(message, "nack", requeue=True)
            metrics.observe_delivery(queue_name, "requeued")
            return
        if not _channel_alive(message):
            return  # the broker requeued it when its channel closed: the copy it sends again counts
        loop = asyncio.get_running_loop()
        try:
            runner = await loop.run_in_executor(self._claims, _in_thread, self.engine.claim, parsed.queue_id)
        except Exception:
            logger.exception("billing consumer: claim failed", extra={"queue_id": parsed.queue_id})
            await asyncio.sleep(1)
            await _settle(message, "nack", requeue=True)
            metrics.observe_delivery(queue_name, "requeued")
            return
        await _settle(message, "ack")
        if runner is None:
            logger.info(
                "billing consumer: nothing to claim (duplicate, not due or finished)",
                extra={"queue_id": parsed.queue_id},
            )
            metrics.observe_delivery(queue_name, "not_claimed")
            return
        self._adopt(runner, parsed)
        metrics.observe_delivery(queue_name, "claimed")

    def _adopt(self, runner: QueueRunner, parsed: BillingMessage) -> None:
        self.engine.adopt(runner)
        logger.info(
            "billing consumer: queue claimed", extra={"queue_id": parsed.queue_id, "request_id": parsed.request_id}
        )

    async def _on_control(self, message: aio_pika.abc.AbstractIncomingMessage, parsed: BillingMessage) -> None:
        handler = control.HANDLERS.get(message.routing_key or "")
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
            await loop.run_in_executor(self._control, _in_thread, handler, parsed)
        except Exception:
            logger.exception("billing control message failed", extra={"routing_key": message.routing_key})
            outcome = "failed"
        await _settle(message, "ack")
        metrics.observe_delivery(message.routing_key, outcome)

    # ------------------------------------------------------------------ watchdog
    async def _on_reconnect(self, *_: Any) -> None:
        logger.warning("billing consumer reconnected to RabbitMQ; checking its consumers")
        self._reconnected.set()

    async def _watchdog(self) -> None:
        """Every `watchdog_interval` (and right after a reconnection): is the connection up,
        and does each of our queues have our consumer, on our channel and on the broker?
        A queue missing its consumer twice in a row is re-subscribed; if that fails, or the
        consumer is still missing afterwards, the process stops with EXIT_CONSUMERS_LOST so the
        platform restarts it."""
        state = _WatchState()
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._reconnected.wait(), self.watchdog_interval)
                await asyncio.sleep(min(1.0, self.watchdog_interval))  # let aio-pika restore first
            except TimeoutError:
                pass
            self._reconnected.clear()
            if self._stopping.is_set():
                return
            try:
                await self._watch_once(state)
            except Exception:
                logger.exception("billing consumer check failed")

    async def _watch_once(self, state: _WatchState) -> None:
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
            logger.info(
                "billing consumer broker connection is back",
                extra={"down_seconds": round(time.monotonic() - state.down_since, 1)},
            )
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
                logger.error(
                    "billing consumer cannot restore its consumer; exiting so it is restarted",
                    extra={"queue": name, "exit_code": EXIT_CONSUMERS_LOST},
                )
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
        connection, channel = self._link()
        underlay = await channel.get_underlay_channel()
        # aiormq's Channel has `consumers`; its abstract base, which aio-pika's types name, does not.
        missing = {name for name, tag in self._tags.items() if tag not in underlay.consumers}  # type: ignore[attr-defined]
        if connection.transport is None:
            raise ConnectionError("the broker connection is being re-established")
        amqp = connection.transport.connection
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

    def _link(self) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.abc.AbstractChannel]:
        """The connection and channel `_connect_and_subscribe` opened; a connection error while
        they are gone (shutting down), which the watchdog's callers already handle."""
        if self.connection is None or self.channel is None:
            raise ConnectionError("not connected to the broker")
        return self.connection, self.channel

    async def _resubscribe(self, name: str) -> bool:
        """Declare the queue again (it may have been deleted) and consume from it afresh."""
        queue = self._queues[name]
        try:
            await asyncio.wait_for(queue.cancel(self._tags[name]), 5.0)
        except (TimeoutError, *CONNECTION_EXCEPTIONS):
            logger.debug("cancel before re-subscribe failed", exc_info=True)
        try:
            _, channel = self._link()
            queue = await channel.declare_queue(name, durable=True, arguments=QUEUE_ARGUMENTS)
            self._queues[name] = queue
            self._tags[name] = await queue.consume(self._on_message)
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as exc:
            logger.error("billing consumer re-subscribe failed", extra={"queue": name, "error": type(exc).__name__})
            return False
        logger.warning("billing consumer re-subscribed", extra={"queue": name})
        return True

    async def _beat(self) -> None:
        """This process's liveness for /readyz (apps.common.health)."""
        from apps.common.health import heartbeat_forever

        await heartbeat_forever("consumer", self.process_id, stop=self._stopping)
