"""The sender worker as the consumer runs it: parked between messages, holding a database
permit (`DbPermits`) only while it reads or writes, not while it waits for its pace slot or for
the provider."""
from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings

from apps.billing.workers.billing_sender_worker import BillingSenderWorker
from apps.billing.workers.db_permits import DbPermits

PARK_AT_LEAST = 0.005  # seconds: a shorter wait for the send slot keeps its database permit


class _ParkedClient:
    """The provider client, without the database permit during its HTTP calls: the send, and
    the health check (a hung provider answers it only at the read timeout)."""

    def __init__(self, client: Any, permits: DbPermits) -> None:
        self._client = client
        self._permits = permits

    def send(self, *args: Any, **kwargs: Any) -> Any:
        # The contact is `sending` until its outcome is written: that write goes first, so the
        # window in which a crash leaves it `interrupted` stays short even when slots are busy.
        with self._permits.idle(resume_first=True):
            return self._client.send(*args, **kwargs)

    def check_health(self) -> Any:
        with self._permits.idle():
            return self._client.check_health()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class ParkingWorker(BillingSenderWorker):
    """The sender worker, parked between messages: it holds a database permit only while it
    reads or writes, not while it waits for its pace slot or for the provider.

    These overrides wrap the worker's own steps without changing what they do; every database
    call of the waits (heartbeat, release on shutdown) borrows a permit for its duration.
    """

    def __init__(self, queue_id: str, *, permits: DbPermits, **kwargs: Any) -> None:
        super().__init__(queue_id, **kwargs)
        self._permits = permits

    def _load(self) -> None:
        super()._load()
        self.client = _ParkedClient(self.client, self._permits)

    def _wait_for_send_slot(self) -> None:
        with self._permits.idle():
            super()._wait_for_send_slot()

    def _wait_until_slot(self) -> None:
        if self.slot_at - time.monotonic() < PARK_AT_LEAST:
            super()._wait_until_slot()  # a moment: not worth handing the connection over
            return
        with self._permits.idle():
            super()._wait_until_slot()

    def _maybe_heartbeat(self) -> None:
        if time.monotonic() - self.last_heartbeat < float(settings.BILLING_HEARTBEAT_SECONDS):
            return  # nothing to write: no permit needed
        with self._permits.ensure():
            super()._maybe_heartbeat()

    def _release_to_pending(self, reason: str) -> None:
        with self._permits.ensure():
            super()._release_to_pending(reason)


def claim_worker(queue_id: str, worker_id: str, stop_event: threading.Event, permits: DbPermits) -> ParkingWorker | None:
    worker = ParkingWorker(queue_id, worker_id=worker_id, stop_event=stop_event, permits=permits)
    return worker if worker.claim() else None


def run_worker(worker: ParkingWorker) -> Any:
    from apps.billing.models import BillingQueue
    from apps.billing.rabbitmq.billing_publisher import publish_queue

    result = worker.run()
    if result.republish:
        queue = BillingQueue.objects.filter(pk=worker.queue_id).first()
        if queue is not None:
            publish_queue(queue)
    return result
