"""Replies end to end: the sandbox's customer writes back, its webhook reaches a live web server,
and the real consumer process sends what follows (or stops sending) — checked on the sandbox's
own record of what it received, on the database, and on what the CRM's endpoint got.

"Done when" of issue 17, one test each: "Já paguei, segue o comprovante" on a running
collection stops the rest to that debtor and the CRM gets `reply.received` with claims_paid;
"número errado" suppresses the phone; "me manda o pix" gets one paced, recorded answer with the
PIX code. (The inbox's "quero parcelar" is test_inbox_browser.py.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import BillingContact, BillingQueue, ConversationReply, SuppressedPhone
from apps.billing.services.callback_delivery import deliver_due
from apps.billing.tests.support.processes import PipelineTenant, assert_paced, sandbox_times, wait_until
from apps.billing.tests.support.replies import PIX
from apps.chat.models import Message
from apps.common.services.waha_lookup import message_key

pytestmark = [pytest.mark.slow, pytest.mark.each_provider]

DEBTOR = "+5511988887777"
DEBTOR_DIGITS = DEBTOR.lstrip("+")
PACE = 60  # messages a minute: the second collection reaches the debtor ~10 s after the first


def overdue(phone: str, name: str, external_id: str, **variables: Any) -> dict[str, Any]:
    due = (timezone.localdate() - timedelta(days=5)).isoformat()
    return {
        "phone": phone,
        "name": name,
        "external_id": external_id,
        "amount": "150.00",
        "due_date": due,
        "variables": variables,
    }


def others(n: int, start: int) -> list[dict[str, Any]]:
    return [overdue(f"+5511977{start + i:06d}", f"Cliente {start + i}", f"o{start + i}") for i in range(n)]


def to_debtor(tenant: PipelineTenant) -> list[dict[str, Any]]:
    return [m for m in tenant.messages() if m["number"] == DEBTOR_DIGITS]


def debtor_contact(queue_id: str) -> BillingContact:
    return BillingContact.objects.get(queue_id=queue_id, phone=DEBTOR)


@pytest.fixture
def replying_tenant(pipeline_tenant, live_server, webhook_receiver, settings):
    """A tenant whose sandbox instance posts its webhooks to the live server and whose CRM
    endpoint is the receiver (a loopback address: allowed for this test only)."""
    settings.BILLING_CALLBACK_ALLOW_PRIVATE = True
    tenant = pipeline_tenant(messages_per_minute=PACE)
    call_command(
        "configure_evolution_webhook",
        "--tenant",
        tenant.tenant.slug,
        "--instance",
        tenant.instance.name,
        "--base-url",
        live_server.url,
        stdout=None,
    )
    tenant.configure(callback_url=webhook_receiver.url)
    tenant.crm = webhook_receiver
    return tenant


def collections(tenant: PipelineTenant, **debtor_variables: Any) -> tuple[str, str]:
    """Two overdue queues: the debtor first in one (sent at once), last in the other (still
    pending when the debtor answers the first)."""
    first = tenant.send(
        "overdue", [overdue(DEBTOR, "Maria Souza", "d1", **debtor_variables), *others(3, 0)], external_id="collection-1"
    )
    second = tenant.send("overdue", [*others(8, 10), overdue(DEBTOR, "Maria Souza", "d2")], external_id="collection-2")
    return first["queue_id"], second["queue_id"]


def answer_the_first_message(tenant: PipelineTenant, text: str, consumer) -> dict[str, Any]:
    first = wait_until(lambda: to_debtor(tenant), timeout=60, what="the debtor's first message", alive=[consumer])[0]
    return tenant.sandbox.inbound(tenant.instance.instance_name, number=DEBTOR_DIGITS, text=text, reply_to=first["id"])


def message_id(inbound: dict[str, Any]) -> str:
    """The provider id of a message the sandbox's customer wrote (Evolution's item, or WAHA's)."""
    return inbound["key"]["id"] if "key" in inbound else message_key(inbound["id"])


def crm_events(tenant, event_type: str) -> list[dict[str, Any]]:
    deliver_due()  # run_billing_callbacks's job
    return [event for event in tenant.crm.events() if event.get("type") == event_type]


def test_ja_paguei_on_a_running_collection_stops_the_rest_to_that_debtor_and_tells_the_crm(
    replying_tenant, start_process
):
    tenant = replying_tenant
    consumer = start_process("run_billing_consumer", "--concurrency", "2")
    first_queue, second_queue = collections(tenant)
    answer_the_first_message(tenant, "Já paguei, segue o comprovante", consumer)

    held = wait_until(
        lambda: (c := debtor_contact(second_queue)).status == ContactStatus.PENDING_RETRY and c,
        timeout=30,
        what="the debtor's second message held",
        alive=[consumer],
    )
    assert held.next_attempt_at > timezone.now() + timedelta(days=2, hours=23)
    # Everyone else is still sent, at the tenant's pace; the second queue waits for the held contact.
    wait_until(
        lambda: (
            tenant.queue(first_queue).status == QueueStatus.COMPLETED
            and (q := tenant.queue(second_queue)).sent_count == 8
            and q.status == QueueStatus.PENDING
        ),
        timeout=90,
        what="both queues done with everyone else",
        alive=[consumer],
    )
    assert tenant.queue(second_queue).next_resume_at == held.next_attempt_at
    assert len(to_debtor(tenant)) == 1

    events = wait_until(lambda: crm_events(tenant, "reply.received"), timeout=30, what="reply.received at the CRM")
    data = events[0]["data"]
    assert (data["intent"], data["phone"], data["contact_external_id"]) == ("claims_paid", DEBTOR, "d1")
    assert data["actions"]["held_contacts"] == 1 and "text" not in data


def test_numero_errado_suppresses_the_phone_and_nothing_more_reaches_it(replying_tenant, start_process):
    tenant = replying_tenant
    consumer = start_process("run_billing_consumer", "--concurrency", "2")
    _, second_queue = collections(tenant)
    answer_the_first_message(tenant, "número errado, não conheço essa Maria", consumer)

    wait_until(
        lambda: SuppressedPhone.objects.filter(tenant=tenant.tenant, phone=DEBTOR).exists(),
        timeout=30,
        what="the phone suppressed",
        alive=[consumer],
    )
    wait_until(
        lambda: tenant.queue(second_queue).status == QueueStatus.COMPLETED,
        timeout=90,
        what="the second queue completed",
        alive=[consumer],
    )
    contact = debtor_contact(second_queue)
    assert (contact.status, contact.error_code) == (ContactStatus.SKIPPED, "opted_out")
    queue = tenant.queue(second_queue)
    assert (queue.sent_count, queue.skipped_count) == (8, 1)
    assert len(to_debtor(tenant)) == 1
    assert crm_events(tenant, "reply.received")[0]["data"]["actions"]["suppressed"] is True


def test_me_manda_o_pix_gets_one_paced_recorded_answer_with_the_pix_code(replying_tenant, start_process):
    tenant = replying_tenant
    consumer = start_process("run_billing_consumer", "--concurrency", "2")
    tenant.send(
        "overdue", [overdue(DEBTOR, "Maria Souza", "d1", pix_code=PIX), *others(5, 0)], external_id="collection-pix"
    )
    asked = answer_the_first_message(tenant, "me manda o pix", consumer)

    answer = wait_until(
        lambda: len(found := to_debtor(tenant)) >= 2 and found[1],
        timeout=60,
        what="the automatic answer at the sandbox",
        alive=[consumer],
    )
    assert PIX in answer["text"] and "Maria" in answer["text"]
    reply = ConversationReply.objects.get(conversation__contact_phone=DEBTOR)
    recorded = wait_until(
        lambda: (c := BillingContact.objects.get(pk=reply.contact_id)).message_id and c,
        timeout=30,
        what="the answer recorded",
    )
    stored = Message.objects.get(pk=recorded.message_id)
    assert (stored.direction, stored.content, stored.provider_message_id) == ("outbound", answer["text"], answer["id"])

    # Paced: no two sends through the instance closer than the tenant's interval (1 s), answer included.
    wait_until(
        lambda: (
            BillingContact.objects.filter(tenant=tenant.tenant, status__in=["sent", "delivered", "read"]).count() == 7
        ),
        timeout=90,
        what="everything sent",
        alive=[consumer],
    )
    times = sandbox_times(tenant.messages())
    assert len(times) == 7
    # An answer outside the pace would land within milliseconds of another send: every gap is
    # at least 0.1 s (0.9 s less 0.8 s for two posts' delays differing on a saturated box).
    assert_paced(times, 60 / PACE, jitter=0.8)

    # Asking again the same day answers nothing more: no new queue, so nothing can be sent.
    queues = BillingQueue.objects.count()
    tenant.sandbox.inbound(
        tenant.instance.instance_name, number=DEBTOR_DIGITS, text="manda o pix de novo", reply_to=message_id(asked)
    )
    wait_until(
        lambda: Message.objects.filter(direction="inbound", conversation__contact_phone=DEBTOR).count() == 2,
        timeout=30,
        what="the second request stored",
    )
    assert BillingQueue.objects.count() == queues and ConversationReply.objects.count() == 1
    assert len(to_debtor(tenant)) == 2
