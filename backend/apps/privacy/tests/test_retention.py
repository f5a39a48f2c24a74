"""Retention: texts older than the tenant's retention are removed in batches, counters and
statuses stay, recent rows and unfinished contacts are untouched, each tenant has its own
period, and a pass resumes where the last one stopped."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from apps.billing.constants import ContactStatus
from apps.billing.models import BillingContact
from apps.billing.tests.support.builders import build_contact, build_queue, build_tenant
from apps.chat.models import Conversation, Message
from apps.privacy.models import RetentionProgress
from apps.privacy.services.retention import run_retention

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 9, 1, 12, tzinfo=dt.UTC)


def contact_at(queue, when: dt.datetime, status: str = ContactStatus.DELIVERED) -> BillingContact:
    with time_machine.travel(when, tick=False):
        return build_contact(
            queue, status=status, rendered_message="Olá Maria, sua fatura…", variables={"valor": "R$ 10,00"}
        )


def message_at(tenant, when: dt.datetime, content: str = "Já paguei ontem") -> Message:
    with time_machine.travel(when, tick=False):
        conversation, _ = Conversation.objects.get_or_create(tenant=tenant, contact_phone="+5511987650000")
        return Message.objects.create(tenant=tenant, conversation=conversation, direction="inbound", content=content)


def test_old_texts_go_and_counters_statuses_and_recent_rows_stay():
    tenant = build_tenant()
    queue = build_queue(tenant, total=3, sent_count=2)
    old = contact_at(queue, NOW - dt.timedelta(days=181))
    recent = contact_at(queue, NOW - dt.timedelta(days=179))
    in_flight = contact_at(queue, NOW - dt.timedelta(days=200), status=ContactStatus.UNCONFIRMED)
    old_reply, new_reply = message_at(tenant, NOW - dt.timedelta(days=190)), message_at(tenant, NOW)

    cleared = run_retention(now=NOW)

    assert cleared == {"billing_contacts": 1, "chat_messages": 1, "closed_charges": 0}
    old.refresh_from_db()
    assert (old.rendered_message, old.variables, old.status, old.phone) == ("", {}, "delivered", old.phone)
    assert BillingContact.objects.get(pk=recent.pk).rendered_message
    assert BillingContact.objects.get(pk=in_flight.pk).rendered_message  # reconciliation still needs it
    assert Message.objects.get(pk=old_reply.pk).content == ""
    assert Message.objects.get(pk=new_reply.pk).content == "Já paguei ontem"
    queue.refresh_from_db()
    assert (queue.total_contacts, queue.sent_count) == (3, 2)


def test_each_tenant_keeps_texts_for_its_own_period():
    short, default = build_tenant(), build_tenant()
    short.retention_days = 30
    short.save(update_fields=["retention_days"])
    a = contact_at(build_queue(short), NOW - dt.timedelta(days=31))
    b = contact_at(build_queue(default), NOW - dt.timedelta(days=31))
    run_retention(now=NOW)
    assert BillingContact.objects.get(pk=a.pk).rendered_message == ""
    assert BillingContact.objects.get(pk=b.pk).rendered_message


def test_a_bounded_pass_resumes_where_it_stopped_and_never_rereads():
    tenant = build_tenant()
    queue = build_queue(tenant)
    contacts = [contact_at(queue, NOW - dt.timedelta(days=300, minutes=i)) for i in range(5)]
    assert run_retention(now=NOW, batch_size=2, max_batches=1)["billing_contacts"] == 2
    position = RetentionProgress.objects.get(tenant=tenant, target="billing_contacts").position
    assert position[1] in {c.pk for c in contacts}
    assert run_retention(now=NOW, batch_size=2)["billing_contacts"] == 3
    assert not BillingContact.objects.exclude(rendered_message="").exists()
    assert run_retention(now=NOW, batch_size=2)["billing_contacts"] == 0


def test_the_command_runs_one_pass():
    tenant = build_tenant()
    contact_at(build_queue(tenant), timezone.now() - dt.timedelta(days=400))
    out = io.StringIO()
    call_command("run_privacy_retention", "--once", stdout=out)
    assert json.loads(out.getvalue())["billing_contacts"] == 1


def test_closed_charges_lose_their_texts_open_ones_keep_what_they_still_send():
    from apps.charges.models import Charge

    tenant = build_tenant()
    common = {
        "tenant": tenant,
        "phone": "+5511987650000",
        "name": "Maria",
        "debtor_key": "+5511987650000",
        "amount": "10.00",
        "due_date": (NOW - dt.timedelta(days=200)).date(),
        "variables": {"parcela": "3/10"},
        "description": "Mensalidade",
    }
    paid = Charge.objects.create(external_id="paid", status="paid", **common)
    still_open = Charge.objects.create(external_id="open", **common)
    assert run_retention(now=NOW)["closed_charges"] == 1
    paid.refresh_from_db()
    assert (paid.variables, paid.description, paid.status, paid.amount) == ({}, "", "paid", paid.amount)
    assert Charge.objects.get(pk=still_open.pk).variables == {"parcela": "3/10"}
