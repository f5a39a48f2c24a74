"""The broker down while a request comes in: the request is accepted (PostgreSQL is the outbox),
the queue's publish stamp is cleared, and the periodic task publishes it once the broker is back."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from apps.billing.broker import publisher as billing_publisher
from apps.billing.broker.publisher import BillingQueuePublisher
from apps.billing.models import BillingQueue
from apps.billing.services.periodic import publish_waiting_queues
from apps.billing.tests.support.api import contacts


@pytest.fixture
def unreachable_broker(monkeypatch):
    """This process's publisher pointed at a loopback port where nothing listens; the ones the
    test makes are closed afterwards, and the process's own is put back."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    publisher = BillingQueuePublisher(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=1.0)
    monkeypatch.setattr(billing_publisher, "_publisher", publisher)
    monkeypatch.setattr(billing_publisher, "_publisher_pid", os.getpid())
    yield
    publisher.close()
    if billing_publisher._publisher not in (publisher, None):
        billing_publisher._publisher.close()


def test_a_request_accepted_while_the_broker_is_down_is_published_by_the_periodic_task(
    api, unreachable_broker, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    with (
        caplog.at_level(logging.WARNING, logger="apps.billing.broker.publisher"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = api.send("notification", {"external_id": "broker-down-1", "contacts": contacts(2)})
    assert response.status_code == 202, response.json()
    queue = BillingQueue.objects.get(pk=response.json()["queue_id"])
    assert (queue.status, queue.publish_count, queue.last_published_at) == ("pending", 0, None)
    assert "billing publish failed; the periodic task will retry" in [r.getMessage() for r in caplog.records]

    monkeypatch.setattr(billing_publisher, "_publisher", None)  # the broker is back: a fresh publisher
    assert publish_waiting_queues() >= 1
    queue.refresh_from_db()
    assert queue.publish_count == 1 and queue.last_published_at is not None
