"""The RabbitMQ side of `run_billing_consumer`: a thin asyncio shell around synchronous workers.

Acknowledgement follows the database claim, not the end of the work. A queue of 1,000
contacts at 20 messages a minute runs for 50 minutes, longer than RabbitMQ's
`consumer_timeout` (30 min) lets a delivery stay unacknowledged. So for a send message:

    wait for a free worker slot (the delivery stays unacked meanwhile: prefetch = concurrency)
    claim the queue in PostgreSQL (pending → running, lease token)   ─ in a worker thread
    ack the delivery                       (whatever the claim said: the database decided)
    run the worker in that thread, slot held, no delivery held
    a worker that released its queue (shutdown, time slice) republishes it

A redelivered or duplicate message for a queue that a live worker holds finds nothing to claim
and is acknowledged and dropped. A body that cannot be parsed is rejected without requeue and
dead-lettered to `billing.dead`. The ORM never runs on the event loop: every database call
happens in the worker thread pool.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import aio_pika
from django.conf import settings
from django.db import connection

from apps.billing.constants import TemplateType

from .messages import BillingMessage, PoisonMessage
from .topology import ALL_QUEUES, CHECK_RECOVERY_QUEUE, CHECK_STALE_QUEUE, RESUME_QUEUE, SEND_QUEUES, declare_topology

logger = logging.getLogger(__name__)

SEND_QUEUE_NAMES = frozenset(SEND_QUEUES.values())


def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a database-touching callable and give the thread's connection back afterwards, so an
    idle consumer holds no database connection."""
    try:
        return fn(*args)
    finally:
        connection.close()


def _claim(queue_id: str, worker_id: str, stop_event: threading.Event):
    from apps.billing.workers.billing_sender_worker import BillingSenderWorker

    worker = BillingSenderWorker(queue_id, worker_id=worker_id, stop_event=stop_event)
    return worker if worker.claim() else None


def _run_worker(worker) -> Any:
    from apps.billing.rabbitmq.billing_publisher import publish_queue
    from apps.billing.models import BillingQueue

    result = worker.run()
    if result.republish:
        queue = BillingQueue.objects.filter(pk=worker.queue_id).first()
        if queue is not None:
            publish_queue(queue)
    return result


class BillingConsumer:
    def __init__(self, *, queues: list[str] | None = None, concurrency: int | None = None,
                 url: str | None = None, shutdown_grace: float | None = None) -> None:
        self.queue_names = list(queues or ALL_QUEUES)
        self.concurrency = int(concurrency or settings.BILLING_CONSUMER_CONCURRENCY)
        self.url = url or settings.RABBITMQ_URL
        self.shutdown_grace = shutdown_grace if shutdown_grace is not None else (
            float(settings.EVOLUTION_READ_TIMEOUT) + float(settings.EVOLUTION_CONNECT_TIMEOUT) + 5.0)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}"
        self.stop_event = threading.Event()  # read by workers between messages
        self._stopping: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency + 1, thread_name_prefix="billing-worker")
        self._running: set[asyncio.Task] = set()
        self._consumers: list[tuple[aio_pika.abc.AbstractQueue, str]] = []
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        """Consume until `request_stop()`; return the process exit code."""
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        self.connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"billing-consumer {self.process_id}"}
        )
        self.channel = await self.connection.channel()
        await self.channel.set_qos(prefetch_count=self.concurrency)
        queues = await declare_topology(self.channel)
        for name in self.queue_names:
            tag = await queues[name].consume(self._on_message)
            self._consumers.append((queues[name], tag))
        logger.info("billing consumer started", extra={"queues": self.queue_names, "concurrency": self.concurrency,
                                                       "consumer_id": self.process_id})
        await self._stopping.wait()
        return await self._shutdown()

    def request_stop(self) -> None:
        """First signal: stop taking deliveries, let workers finish their message, release."""
        self.stop_event.set()
        if self._stopping is not None:
            self._stopping.set()

    async def _shutdown(self) -> int:
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except Exception:  # noqa: BLE001 - the channel may already be gone
                logger.debug("cancel consumer failed", exc_info=True)
        if self._running:
            done, pending = await asyncio.wait(self._running, timeout=self.shutdown_grace)
            if pending:
                logger.error("billing workers did not stop in time", extra={"still_running": len(pending)})
        if self.connection is not None:
            await self.connection.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info("billing consumer stopped", extra={"consumer_id": self.process_id})
        return 0

    # ------------------------------------------------------------------ deliveries
    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            parsed = BillingMessage.from_bytes(message.body)
        except PoisonMessage as exc:
            logger.error("billing consumer: unparseable message dead-lettered",
                         extra={"routing_key": message.routing_key, "error": str(exc)})
            await message.reject(requeue=False)
            return
        if message.routing_key in SEND_QUEUE_NAMES:
            await self._on_send(message, parsed)
        else:
            await self._on_control(message, parsed)

    async def _on_send(self, message: aio_pika.abc.AbstractIncomingMessage, parsed: BillingMessage) -> None:
        if parsed.queue_id is None or parsed.type not in TemplateType.values:
            logger.error("billing consumer: send message without queue", extra={"routing_key": message.routing_key})
            await message.reject(requeue=False)
            return
        if self.stop_event.is_set():
            await message.nack(requeue=True)
            return
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        worker_id = f"{self.process_id}:{uuid.uuid4().hex[:8]}"
        try:
            worker = await loop.run_in_executor(self._executor, _in_thread, _claim, parsed.queue_id, worker_id,
                                                self.stop_event)
        except Exception:  # noqa: BLE001 - database trouble: give the message back, slowly
            self._slots.release()
            logger.exception("billing consumer: claim failed", extra={"queue_id": parsed.queue_id})
            await asyncio.sleep(1)
            await message.nack(requeue=True)
            return
        await message.ack()
        if worker is None:
            self._slots.release()
            logger.info("billing consumer: nothing to claim (duplicate, not due or finished)",
                        extra={"queue_id": parsed.queue_id})
            return
        task = asyncio.create_task(self._work(worker))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _work(self, worker) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, _in_thread, _run_worker, worker)
            logger.info("billing worker finished", extra={"queue_id": str(worker.queue_id), "outcome": result.outcome,
                                                          "sent": result.sent, "failed": result.failed})
        except Exception:  # noqa: BLE001 - a worker bug must not kill the consumer; the stale check recovers
            logger.exception("billing worker crashed", extra={"queue_id": str(worker.queue_id)})
        finally:
            self._slots.release()

    async def _on_control(self, message: aio_pika.abc.AbstractIncomingMessage, parsed: BillingMessage) -> None:
        from apps.billing.services import periodic

        handlers = {
            RESUME_QUEUE: periodic.resume_due_queues,
            CHECK_STALE_QUEUE: periodic.release_stale_queues,
            CHECK_RECOVERY_QUEUE: periodic.recover_instances,
        }
        handler = handlers.get(message.routing_key)
        if handler is None:
            await message.reject(requeue=False)
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, _in_thread, handler)
        except Exception:  # noqa: BLE001 - the periodic task runs the same step again soon
            logger.exception("billing control message failed", extra={"routing_key": message.routing_key})
        await message.ack()
