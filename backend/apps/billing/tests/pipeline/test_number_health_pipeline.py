"""Number health with real processes (consumer, periodic task, the sandbox's webhooks to a live
server), per provider: a brand-new number stops at its day's cap, saying so; a logout the
provider reports pauses the number's queues with the reason, and they stay paused through
recovery cycles, even once the number is paired again, until a person clears it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from datetime import time as clock

import pytest
from django.utils import timezone

from apps.billing.services.webhook_setup import configure_instance_webhook
from apps.billing.tests.support.processes import notification_contacts, wait_started, wait_until
from apps.connections.models import NumberHealthSettings, WhatsAppInstance

pytestmark = [pytest.mark.slow, pytest.mark.each_provider]  # every path proven for Evolution and WAHA


def test_a_new_number_stops_at_its_daily_cap_and_says_so(pipeline_tenant, start_process):
    tenant = pipeline_tenant(warmed_up=False)
    NumberHealthSettings.objects.create(tenant=tenant.tenant, warmup_schedule=[[0, 3], [4, 50]])
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    body = tenant.send("notification", notification_contacts(5))

    queue = wait_until(
        lambda: (q := tenant.queue(body["queue_id"])).status == "paused_business_hours" and q,
        timeout=60,
        what="paused at the cap",
        alive=[consumer],
    )

    assert queue.pause_reason.startswith("daily_cap: 3/3 messages sent today through this number (warm-up day 0)")
    tomorrow = datetime.combine(
        timezone.now().astimezone(tenant.tenant.tzinfo).date() + timedelta(days=1), clock.min, tenant.tenant.tzinfo
    )
    assert queue.next_resume_at == tomorrow and queue.sent_count == 3
    time.sleep(1.5)
    assert len(tenant.messages()) == 3, "sent past the day's cap"
    status = tenant.client.get(
        f"/api/v1/billing/queue/{body['queue_id']}/status", HTTP_X_BILLING_API_KEY=tenant.raw_key
    ).json()
    assert status["status"] == "paused_business_hours" and datetime.fromisoformat(status["eta"]) >= tomorrow


def test_a_logout_pauses_the_numbers_queues_and_they_stay_paused(pipeline_tenant, start_process, live_server):
    tenant = pipeline_tenant(messages_per_minute=12)  # one send every 5 s: the webhook lands well before the next
    instance = WhatsAppInstance.objects.select_related("tenant").get(pk=tenant.instance.pk)
    configure_instance_webhook(instance=instance, public_base_url=live_server.url)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    periodic = start_process("run_billing_periodic_tasks", "--interval", "0.5")
    wait_started(consumer)
    body = tenant.send("notification", notification_contacts(20))
    wait_until(lambda: len(tenant.messages()) >= 2, timeout=60, what="first messages", alive=[consumer])

    tenant.sandbox.phone_logout(instance.instance_name)

    queue = wait_until(
        lambda: (q := tenant.queue(body["queue_id"])).status == "instance_down" and q,
        timeout=30,
        what="the queue paused",
        alive=[consumer, periodic],
    )
    assert queue.pause_reason.startswith("number_protected: "), queue.pause_reason
    protected = WhatsAppInstance.objects.get(pk=instance.pk)
    assert protected.is_protected and protected.last_disconnect_at is not None
    sent = len(tenant.messages())

    # The owner pairs it again; the periodic task keeps asking for recovery; nothing resumes.
    if instance.provider == "waha":
        tenant.sandbox.scan(instance.instance_name)
    else:
        tenant.sandbox.set_state(instance.instance_name, "open")
    time.sleep(4)
    assert tenant.queue(body["queue_id"]).status == "instance_down"
    assert len(tenant.messages()) == sent, "sent after the logout"
