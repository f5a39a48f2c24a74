"""Charges through the real stack: the API, the cadence job (in this process, its clock moved
with time-machine), billing queues sent by the real consumer process (real time) to the
sandbox, Asaas events posted to the real webhook view."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from apps.billing.models import BillingContact, BillingQueue
from apps.billing.templating.date_calculator import today_in
from apps.billing.tests.support.processes import wait_until
from apps.charges.asaas_sandbox import asaas_event
from apps.charges.models import Charge, ChargeStepRun
from apps.charges.services.asaas_setup import configure_asaas_webhook
from apps.charges.services.periodic import run_cycle

from .conftest import api_get, api_post, open_around_now

pytestmark = pytest.mark.slow
TOKEN = "pipeline-asaas-token-" + "k" * 20


def phone(n: int) -> str:
    return f"+55 21 9{8300_0000 + n:08d}"


def e164(n: int) -> str:
    return f"55219{8300_0000 + n:08d}"


def charges(*items: tuple[int, object], **fields) -> list[dict]:
    return [
        {
            "external_id": f"CH-{n}",
            "phone": phone(n),
            "name": f"Devedor {n}",
            "amount": "100.00",
            "due_date": due.isoformat(),
            **fields,
        }
        for n, due in items
    ]


def sent_to(tenant, n: int) -> list[dict]:
    return [m for m in tenant.messages() if m["number"] == e164(n)]


def job_on(day_offset: int) -> dict:
    """Run the cadence job `day_offset` days from now (same clock time)."""
    with time_machine.travel(datetime.now().astimezone() + timedelta(days=day_offset), tick=False):
        return run_cycle()


def queues_done(tenant):
    return lambda: not BillingQueue.objects.filter(tenant=tenant.tenant).exclude(status="completed").exists()


def asaas(tenant, name: str, external_id: str, *, seconds: int = 0) -> dict:
    url = configure_asaas_webhook(tenant=tenant.tenant, token=TOKEN)
    payload = asaas_event(
        name,
        external_reference=external_id,
        value="100.00",
        due_date=Charge.objects.get(external_id=external_id).due_date,
        created_at=datetime.now().astimezone() + timedelta(seconds=seconds),
    )
    response = Client().post(
        url, data=json.dumps(payload), content_type="application/json", HTTP_ASAAS_ACCESS_TOKEN=TOKEN
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_minus3_0_plus1_plan_sends_exactly_its_three_steps_on_their_days_inside_hours(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    zone, opens, closes = open_around_now(tenant)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    assert (
        api_post(
            tenant, "cadences", {"name": "Régua", "default": True, "steps": [{"offset_days": d} for d in (-3, 0, 1)]}
        ).status_code
        == 201
    )
    today = today_in(zone)
    assert api_post(tenant, "charges", {"charges": charges((1, today + timedelta(days=3)))}).status_code == 200
    expected = {0: 1, 1: 1, 2: 1, 3: 2, 4: 3, 5: 3}  # messages seen after the job of each day
    for day in range(6):
        job_on(day)
        wait_until(queues_done(tenant), timeout=60, what=f"day {day} sent", alive=[consumer])
        assert len(sent_to(tenant, 1)) == expected[day], f"day {day}"
    runs = ChargeStepRun.objects.order_by("offset_days")
    assert [(r.offset_days, r.scheduled_date - today, r.status) for r in runs] == [
        (-3, timedelta(0), "queued"),
        (0, timedelta(3), "queued"),
        (1, timedelta(4), "queued"),
    ]
    assert [r.billing_contact.queue.template_type for r in runs] == ["upcoming", "upcoming", "overdue"]
    for message in sent_to(tenant, 1):
        at = datetime.fromisoformat(message["created_at"].replace("Z", "+00:00")).astimezone(zone)
        assert opens.time() <= at.time() < closes.time(), "sent outside business hours"


@pytest.mark.parametrize("pay_with", ["api", "asaas"])
def test_paying_while_the_steps_queue_runs_stops_its_message_and_every_later_step(
    pipeline_tenant, start_process, pay_with
):
    tenant = pipeline_tenant(messages_per_minute=30)  # one message every 2 s
    zone, _, _ = open_around_now(tenant)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    api_post(tenant, "cadences", {"name": "Régua", "default": True, "steps": [{"offset_days": 0}, {"offset_days": 1}]})
    today = today_in(zone)
    api_post(tenant, "charges", {"charges": charges(*[(n, today) for n in range(1, 6)])})
    assert job_on(0)["queued"] == 5
    wait_until(lambda: tenant.messages(), timeout=30, what="the queue is running", alive=[consumer])
    if pay_with == "api":
        assert api_post(tenant, "charges/CH-5/pay", {}).json()["status"] == "paid"
    else:
        assert asaas(tenant, "PAYMENT_RECEIVED", "CH-5")["outcome"] == "applied"
    wait_until(queues_done(tenant), timeout=60, what="queue completed", alive=[consumer])
    assert sent_to(tenant, 5) == [], "a paid charge's message went out"
    assert Counter(m["number"] for m in tenant.messages()) == Counter({e164(n): 1 for n in range(1, 5)})
    skipped = BillingContact.objects.get(external_id="CH-5")
    assert (skipped.status, skipped.error_code) == ("skipped", "charge_closed")
    assert skipped.queue.skipped_count == 1 and skipped.queue.sent_count == 4
    consumer.stop()  # the next step is only queued, so the report below counts the first step's messages
    job_on(1)  # the next step: the paid charge gets none
    assert not ChargeStepRun.objects.filter(charge__external_id="CH-5", offset_days=1).exists()
    assert ChargeStepRun.objects.filter(offset_days=1, status="queued").count() == 4

    # The recovery report's numbers match the rows.
    for n, amount in ((1, "100.00"), (2, "80.50")):
        api_post(tenant, f"charges/CH-{n}/pay", {"paid_amount": amount})
    report = api_get(tenant, "reports/recovery", date_from=today.isoformat(), date_to=today.isoformat()).json()
    paid = Charge.objects.filter(status="paid")
    assert report["charges_paid"] == paid.count() == 3
    assert Decimal(report["amount_recovered"]) == sum(c.paid_amount for c in paid) == Decimal("280.50")
    assert report["charges_due"]["paid"] == 3 and report["charges_due"]["open"] == 2
    sent = BillingContact.objects.filter(sent_at__isnull=False, external_id__startswith="CH-")
    assert report["conversion_by_step"] == [
        {"cadence": "Régua", "offset_days": 0, "messages": sent.count(), "paid": 2, "conversion": 0.5}
    ]
    assert sum(row["messages"] for row in report["conversion_by_variation"]) == 4
    assert sum(row["paid"] for row in report["conversion_by_variation"]) == 2
    days = [
        (Charge.objects.get(external_id=c.external_id).paid_at - c.sent_at).total_seconds() / 86400
        for c in sent.filter(external_id__in=["CH-1", "CH-2"])
    ]
    assert report["median_days_to_payment"] == round(statistics.median(days), 2)


def test_a_refund_reopens_the_charge_and_the_cadence_resumes_from_the_next_due_step(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    zone, _, _ = open_around_now(tenant)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    api_post(tenant, "cadences", {"name": "Régua", "default": True, "steps": [{"offset_days": d} for d in (0, 1, 2)]})
    today = today_in(zone)
    api_post(tenant, "charges", {"charges": charges((1, today))})
    job_on(0)
    wait_until(lambda: len(sent_to(tenant, 1)) == 1, timeout=30, what="D0 sent", alive=[consumer])
    assert asaas(tenant, "PAYMENT_RECEIVED", "CH-1")["outcome"] == "applied"
    assert job_on(1)["queued"] == 0  # D+1 passes while paid
    assert asaas(tenant, "PAYMENT_REFUNDED", "CH-1", seconds=5)["outcome"] == "applied"
    assert Charge.objects.get(external_id="CH-1").status == "open"
    assert job_on(2)["queued"] == 1
    wait_until(lambda: len(sent_to(tenant, 1)) == 2, timeout=30, what="D+2 sent", alive=[consumer])
    with time_machine.travel(datetime.now().astimezone() + timedelta(days=2), tick=False):
        plan = {p["offset_days"]: p["state"] for p in api_get(tenant, "charges/CH-1").json()["plan"]}
    assert plan == {0: "queued", 1: "missed", 2: "queued"}
    assert len(sent_to(tenant, 1)) == 2


def test_the_daily_cap_holds_across_two_charges_of_the_same_debtor(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    zone, _, _ = open_around_now(tenant)
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    api_post(tenant, "cadences", {"name": "Régua", "default": True, "steps": [{"offset_days": 0}]})
    today = today_in(zone)
    batch = charges((1, today), (2, today), debtor_external_id="PAC-1") + charges((3, today))
    batch[1]["phone"] = phone(1)  # the same debtor, the same WhatsApp
    api_post(tenant, "charges", {"charges": batch})
    result = job_on(0)
    assert result["queued"] == 2 and result["skipped"] == 1
    wait_until(queues_done(tenant), timeout=60, what="sent", alive=[consumer])
    assert Counter(m["number"] for m in tenant.messages()) == Counter({e164(1): 1, e164(3): 1})
    assert ChargeStepRun.objects.get(status="skipped").skip_reason == "daily_cap"


def test_a_queue_whose_every_contact_was_skipped_still_completes(pipeline_tenant, start_process):
    tenant = pipeline_tenant()
    zone, _, _ = open_around_now(tenant)
    api_post(tenant, "cadences", {"name": "Régua", "default": True, "steps": [{"offset_days": 0}]})
    api_post(tenant, "charges", {"charges": charges((1, today_in(zone)), (2, today_in(zone)))})
    job_on(0)
    for n in (1, 2):  # paid before any consumer runs the queue
        api_post(tenant, f"charges/CH-{n}/pay", {})
    consumer = start_process("run_billing_consumer", "--concurrency", "1")
    wait_until(queues_done(tenant), timeout=60, what="queue completed", alive=[consumer])
    queue = BillingQueue.objects.get(tenant=tenant.tenant)
    assert (queue.status, queue.skipped_count, queue.sent_count) == ("completed", 2, 0)
    assert tenant.messages() == []
