"""A CRM's POST ends as WhatsApp messages: HTTP API → PostgreSQL → RabbitMQ → consumer process
→ sandbox, checked on the sandbox's own record of what it received."""

from __future__ import annotations

from collections import Counter

import pytest

from apps.billing.models import BillingContact
from apps.billing.tests.support.processes import notification_contacts, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.each_provider]  # every path proven for Evolution and WAHA


def test_fifty_notifications_are_each_sent_exactly_once(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    consumer = start_process("run_billing_consumer", "--concurrency", "2")
    body = tenant.send("notification", notification_contacts(50))
    queue = wait_until(
        lambda: (q := tenant.queue(body["queue_id"])).status == "completed" and q,
        timeout=60,
        what="queue completed",
        alive=[consumer],
    )
    messages = tenant.messages()
    numbers = Counter(m["number"] for m in messages)
    assert len(numbers) == 50 and set(numbers.values()) == {1}
    assert queue.sent_count == 50 and queue.failed_count == 0 and queue.pending_count == 0
    assert queue.completed_at is not None and queue.started_at is not None
    contacts = BillingContact.objects.filter(queue_id=queue.pk)
    assert set(contacts.values_list("status", flat=True)) == {"sent"}
    sandbox_ids = {m["id"] for m in messages}
    assert set(contacts.values_list("provider_message_id", flat=True)) == sandbox_ids
    assert all("Aviso de teste." in m["text"] for m in messages)
