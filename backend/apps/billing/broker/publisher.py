"""Publishing wake-up calls to RabbitMQ from synchronous code (Django views, the periodic task,
the worker itself).

Django views are synchronous, aio-pika is not: one daemon thread per process runs an event loop
with one robust connection and one confirming channel, and `publish()` hands it coroutines. So a
request reuses the connection instead of opening one per call, and a publish waits for the
broker's confirm (with `mandatory` + `on_return_raises`, an unroutable message is an error).

A broker failure never fails the caller: `publish_queue()` answers False, the queue stays
`pending` with `last_published_at` unset, and the periodic task publishes it later. Never call
`publish()` inside a transaction: use `publish_queue_on_commit()` (the row must be visible to a
consumer before its wake-up call arrives).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import aio_pika
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.billing import metrics
from apps.billing.constants import TemplateType
from apps.common.background_loop import BackgroundLoop
from apps.common.request_id import get_request_id

from .messages import BillingMessage
from .topology import declare_topology, send_queue_for

logger = logging.getLogger(__name__)


class BillingQueuePublisher:
    """Process-wide publisher; use `get_publisher()`."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._background = BackgroundLoop("billing-publisher")
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._lock: asyncio.Lock | None = None

    def publish(self, message: BillingMessage, routing_key: str, *, priority: int = 0) -> None:
        """Publish and wait for the broker's confirm; raises on any failure."""
        self._run(self._publish(message, routing_key, priority))

    def ready(self) -> bool:
        """Whether the confirming channel is open (read from any thread: a hint, not a promise)."""
        channel = self._channel
        return channel is not None and not channel.is_closed

    def publish_nowait(
        self, message: BillingMessage, routing_key: str, *, priority: int, done: Callable[[BaseException | None], None]
    ) -> None:
        """Hand the publish to the loop and return at once; `done(error)` runs on the loop's
        thread once the broker confirmed (None) or failed (the error)."""

        def finished(future: Any) -> None:
            done(TimeoutError("publish cancelled") if future.cancelled() else future.exception())

        future = asyncio.run_coroutine_threadsafe(self._publish(message, routing_key, priority), self._background.loop)
        future.add_done_callback(finished)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._run(self._connection.close())
            except Exception:
                logger.debug("publisher close failed", exc_info=True)
        self._background.stop()

    # ------------------------------------------------------------------ internals
    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self._background.run(coro, self.timeout + 1)

    async def _channel_ready(self) -> aio_pika.abc.AbstractChannel:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(
                    self.url, timeout=self.timeout, client_properties={"connection_name": "billing-publisher"}
                )
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await declare_topology(channel)
            self._channel = channel
            return channel

    async def _publish(self, message: BillingMessage, routing_key: str, priority: int) -> None:
        # A first connect that fails leaves `_connection` unset, so the next call connects afresh;
        # once up, the robust connection and channel restore themselves after a broker restart.
        channel = await asyncio.wait_for(self._channel_ready(), self.timeout)
        await channel.default_exchange.publish(
            aio_pika.Message(
                message.to_bytes(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                priority=priority,
            ),
            routing_key=routing_key,
            mandatory=True,
            timeout=self.timeout,
        )


_publisher: BillingQueuePublisher | None = None
_publisher_pid: int | None = None
_publisher_lock = threading.Lock()


def get_publisher() -> BillingQueuePublisher:
    """One publisher per process (re-created after a fork)."""
    global _publisher, _publisher_pid
    with _publisher_lock:
        if _publisher is None or _publisher_pid != os.getpid():
            _publisher = BillingQueuePublisher(settings.RABBITMQ_URL, timeout=settings.BILLING_PUBLISH_TIMEOUT)
            _publisher_pid = os.getpid()
        return _publisher


def publish_queue(queue: Any, *, attempt: int = 1, request_id: str | None = None) -> bool:
    """Wake a consumer for `queue`; record the publish. False (logged) when the broker failed.
    The request id (the API call's, by default) travels to the worker's log lines."""
    from apps.billing.models import BillingQueue

    request_id = request_id or get_request_id()
    message = BillingMessage(
        type=str(queue.template_type),
        queue_id=str(queue.pk),
        tenant_id=str(queue.tenant_id),
        attempt=attempt,
        request_id=request_id,
    )
    try:
        get_publisher().publish(
            message, send_queue_for(queue.template_type), priority=TemplateType.priority_of(queue.template_type)
        )
    except Exception as exc:
        logger.warning(
            "billing publish failed; the periodic task will retry",
            extra={"queue_id": str(queue.pk), "error": type(exc).__name__},
        )
        metrics.observe_publish("send", False)
        return False
    metrics.observe_publish("send", True)
    BillingQueue.objects.filter(pk=queue.pk).update(
        last_published_at=timezone.now(), publish_count=F("publish_count") + 1
    )
    return True


def publish_control(message: BillingMessage, routing_key: str) -> bool:
    try:
        get_publisher().publish(message, routing_key)
    except Exception as exc:
        logger.warning(
            "billing control publish failed", extra={"routing_key": routing_key, "error": type(exc).__name__}
        )
        metrics.observe_publish("control", False)
        return False
    metrics.observe_publish("control", True)
    return True


def publish_stamped_queue_on_commit(
    *, queue_id: Any, tenant_id: Any, template_type: str, request_id: str | None = None
) -> None:
    """For the API's ingest, whose statement already stamped the new queue as published
    (`last_published_at`, `publish_count` 1). After commit, while the publisher's channel is
    open, the wake-up call is handed to the broker without waiting for its confirm: a request
    never waits for the broker's disk. If the broker then refuses or times out, the stamp is
    cleared (in a short thread: this runs on the publisher's loop) and the periodic task
    publishes the queue at its next cycle, as any unpublished one; if the process dies first,
    the stamp ages past BILLING_REPUBLISH_AFTER_SECONDS and the periodic task publishes it then.
    Without an open channel (first use, broker down) it publishes and waits as
    `publish_queue` does, and clears the stamp before returning if that fails."""
    request_id = request_id or get_request_id()
    message = BillingMessage(
        type=str(template_type), queue_id=str(queue_id), tenant_id=str(tenant_id), attempt=1, request_id=request_id
    )
    routing_key, priority = send_queue_for(template_type), TemplateType.priority_of(template_type)

    def failed(error: BaseException) -> None:
        metrics.observe_publish("send", False)
        logger.warning(
            "billing publish failed; the periodic task will retry",
            extra={"queue_id": str(queue_id), "error": type(error).__name__},
        )

    def confirmed_or_failed(error: BaseException | None) -> None:  # on the publisher's loop
        if error is None:
            metrics.observe_publish("send", True)
            return
        failed(error)
        threading.Thread(
            target=_clear_publish_stamp,
            args=(queue_id,),
            kwargs={"close": True},
            name="billing-publish-unstamp",
            daemon=True,
        ).start()

    def publish() -> None:
        publisher = get_publisher()
        if publisher.ready():
            publisher.publish_nowait(message, routing_key, priority=priority, done=confirmed_or_failed)
            return
        try:
            publisher.publish(message, routing_key, priority=priority)
        except Exception as exc:
            failed(exc)
            _clear_publish_stamp(queue_id)
        else:
            metrics.observe_publish("send", True)

    transaction.on_commit(publish)


def _clear_publish_stamp(queue_id: Any, *, close: bool = False) -> None:
    """`close`: in a thread of its own, whose connection would otherwise outlive it."""
    from django.db import connections

    from apps.billing.models import BillingQueue

    try:
        BillingQueue.objects.filter(pk=queue_id, publish_count=1).update(last_published_at=None, publish_count=0)
    except Exception:
        logger.warning("billing publish stamp not cleared", extra={"queue_id": str(queue_id)}, exc_info=True)
    finally:
        if close:
            connections.close_all()


def publish_queue_on_commit(queue: Any, *, request_id: str | None = None) -> None:
    request_id = request_id or get_request_id()  # captured now: on_commit may run elsewhere
    transaction.on_commit(lambda: publish_queue(queue, request_id=request_id))
