"""End to end: the sandbox (a real subprocess) sends its webhooks to a live Django server, as
Evolution and as WAHA (the test runs once per provider).

A message goes out through the instance's provider client for a billing contact; the sandbox
reports its receipts to the URL our management command configured (Evolution: with the Bearer
JWT; WAHA: HMAC-signed), and the contact follows. Then the customer answers "SAIR" and the
number is suppressed and answered once.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import BillingContact, BillingQueue, BillingTemplate, SuppressedPhone
from apps.billing.services.chat_history import record_outbound_message
from apps.billing.tests.support.api import make_tenant
from apps.billing.tests.support.builders import build_contact, build_queue
from apps.billing.tests.support.replies import status_of
from apps.chat.models import Conversation, Message
from apps.common.services.provider import client_for
from devtools.sandbox_process import wait_for

pytestmark = pytest.mark.each_provider

PHONE = "+5511987650001"


@pytest.mark.django_db(transaction=True)
def test_sandbox_webhooks_move_a_contact_and_an_inbound_sair_suppresses_it(
    live_server, make_sandbox_whatsapp_instance, evolution_sandbox
):
    api = make_tenant("e2e")
    instance = make_sandbox_whatsapp_instance(
        tenant=api.tenant, ack_delays={"SERVER_ACK": 0.2, "DELIVERY_ACK": 1.0, "READ": 2.5}
    )
    call_command(
        "configure_evolution_webhook",
        "--tenant",
        api.tenant.slug,
        "--instance",
        instance.name,
        "--base-url",
        live_server.url,
        stdout=None,
    )

    template = BillingTemplate.objects.get(tenant=api.tenant, template_type="overdue", is_default=True)
    queue = build_queue(api.tenant, template=template, total=1, instance=instance, status=QueueStatus.RUNNING)
    contact = build_contact(
        queue, phone=PHONE, status=ContactStatus.SENDING, attempts=1, variation=template.variations.first()
    )
    text = "Olá Maria, sua fatura venceu."
    result = client_for(instance).send(contact.phone, text, max_retries=0)
    # What the worker's record_sent + record_outbound_message do after a 201:
    BillingContact.objects.filter(pk=contact.pk).update(
        status=ContactStatus.SENT, sent_at=timezone.now(), provider_message_id=result.provider_message_id
    )
    record_outbound_message(
        contact=contact, instance=instance, text=text, provider_message_id=result.provider_message_id
    )

    wait_for(lambda: status_of(contact) == ContactStatus.DELIVERED, timeout=30, what="delivered")
    wait_for(lambda: status_of(contact) == ContactStatus.READ, timeout=30, what="read")
    contact.refresh_from_db()
    assert contact.delivered_at <= contact.read_at
    queue.refresh_from_db()
    assert (queue.delivered_count, queue.read_count) == (1, 1)
    assert Message.objects.get(provider_message_id=result.provider_message_id).status == "read"

    evolution_sandbox.inbound(
        instance.instance_name, number=PHONE.lstrip("+"), text="SAIR", reply_to=result.provider_message_id
    )
    wait_for(
        lambda: SuppressedPhone.objects.filter(tenant=api.tenant, phone=PHONE).exists(), timeout=30, what="suppressed"
    )
    # The confirmation goes out once, from a thread after the webhook's commit; it is the last write.
    wait_for(lambda: Message.objects.filter(source="opt_out").exists(), timeout=30, what="confirmation stored")
    sent_texts = [m["text"] for m in evolution_sandbox.messages(instance=instance.instance_name)]
    assert sent_texts == [text, api.config.opt_out_confirmation]
    contact.refresh_from_db()
    assert contact.replied_at is not None and contact.status == ContactStatus.READ
    assert BillingQueue.objects.get(pk=queue.pk).replied_count == 1
    assert Conversation.objects.get(tenant=api.tenant, contact_phone=PHONE).status == "open"

    # The confirmation's own send.message webhook may still be on its way: wait for every answer.
    deliveries = wait_for(
        lambda: (
            (d := evolution_sandbox.webhooks(instance=instance.instance_name))
            and all(x["status"] is not None for x in d)
            and d
        ),
        timeout=30,
        what="every webhook answered",
    )
    assert deliveries and all(d["status"] == 200 for d in deliveries), [(d["event"], d["status"]) for d in deliveries]
    signature = "X-Webhook-Hmac" if instance.provider == "waha" else "Authorization"
    assert all(d["headers"].get(signature) for d in deliveries)
