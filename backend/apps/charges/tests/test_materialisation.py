"""The cadence job in-process: which steps become billing queues on which day, what is skipped
and why, idempotency, escalation, and paid means silent for contacts already queued or claimed.
Time is moved with time-machine; the tenant is in São Paulo (UTC-3)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from apps.billing.models import BillingConfig, BillingContact, BillingQueue, CallbackDelivery
from apps.billing.services import queue_lease
from apps.billing.services.opt_out import suppress
from apps.billing.services.tenant_setup import parse_business_hours
from apps.charges.models import Charge, ChargeStepRun
from apps.charges.services.periodic import run_cycle
from apps.chat.models import BusinessHours

from .conftest import charge, make_cadence, upsert

pytestmark = pytest.mark.django_db
SP = ZoneInfo("America/Sao_Paulo")
MONDAY = date(2031, 3, 3)  # a Monday


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), SP)


def runs() -> Counter:
    return Counter(
        (r.charge.external_id, r.offset_days, r.status, r.skip_reason)
        for r in ChargeStepRun.objects.select_related("charge")
    )


def office_hours(api, spec: str = "mon-fri 08:00-18:00") -> None:
    BusinessHours.objects.filter(tenant=api.tenant).delete()
    BusinessHours.objects.bulk_create(
        [BusinessHours(tenant=api.tenant, weekday=d, opens_at=o, closes_at=c) for d, o, c in parse_business_hours(spec)]
    )


def test_each_due_step_becomes_a_queue_once_and_a_second_run_adds_nothing(api):
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(-3, 0, 1))
        upsert(
            api,
            [
                charge(1, due_date=(MONDAY + timedelta(days=3)).isoformat()),
                charge(2, due_date=MONDAY.isoformat(), payment_link="https://pay.example.com/2"),
                charge(3, due_date=(MONDAY - timedelta(days=1)).isoformat()),
                charge(4, due_date=(MONDAY + timedelta(days=10)).isoformat()),
            ],
        )
        first = run_cycle()
        second = run_cycle()
    assert first["queued"] == 3 and second["queued"] == 0 and second["skipped"] == 0
    assert runs() == Counter(
        {("INV-1", -3, "queued", ""): 1, ("INV-2", 0, "queued", ""): 1, ("INV-3", 1, "queued", ""): 1}
    )
    queues = {
        q.billing_campaign.metadata["offset_days"]: q for q in BillingQueue.objects.select_related("billing_campaign")
    }
    assert {offset: q.template_type for offset, q in queues.items()} == {-3: "upcoming", 0: "upcoming", 1: "overdue"}
    contact = BillingContact.objects.get(external_id="INV-2")
    assert contact.variables["payment_link"] == "https://pay.example.com/2" and contact.due_date == MONDAY
    assert ChargeStepRun.objects.get(charge__external_id="INV-2").billing_contact == contact


def test_the_daily_cap_holds_across_two_charges_of_one_debtor(api):
    BillingConfig.objects.filter(tenant=api.tenant).update(callback_url="https://crm.example.com/hooks")
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0, 1))
        upsert(
            api,
            [
                charge(1, due_date=MONDAY.isoformat(), debtor_external_id="PAC-1"),
                charge(
                    2,
                    due_date=(MONDAY - timedelta(days=1)).isoformat(),
                    debtor_external_id="PAC-1",
                    phone="+55 11 98888-0002",
                ),
                charge(3, due_date=MONDAY.isoformat(), phone=charge(4)["phone"]),
                charge(4, due_date=MONDAY.isoformat()),
            ],
        )
        run_cycle()
        run_cycle()
    # The oldest debt goes first; the same phone under another debtor id is the same person.
    assert runs() == Counter(
        {
            ("INV-2", 1, "queued", ""): 1,
            ("INV-1", 0, "skipped", "daily_cap"): 1,
            ("INV-3", 0, "queued", ""): 1,
            ("INV-4", 0, "skipped", "daily_cap"): 1,
        }
    )
    skipped = CallbackDelivery.objects.get(event="cadence.step_skipped")
    assert skipped.payload["data"] == {
        "cadence": "Padrão",
        "offset_days": 0,
        "date": MONDAY.isoformat(),
        "reason": "daily_cap",
        "charges": ["INV-1", "INV-4"],
    }


def test_an_opted_out_phone_is_skipped(api):
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0,))
        upsert(api, [charge(1, due_date=MONDAY.isoformat())])
        suppress(tenant=api.tenant, phone="+5511980000001", reason="test")
        run_cycle()
    assert runs() == Counter({("INV-1", 0, "skipped", "opted_out"): 1})
    assert not BillingQueue.objects.exists()


def test_steps_falling_on_closed_days_go_out_on_the_next_business_day(api):
    office_hours(api)
    saturday = MONDAY - timedelta(days=2)
    make_cadence(api, offsets=(-1, 0, 1))
    upsert(
        api, [charge(1, due_date=saturday.isoformat()), charge(2, due_date=(MONDAY + timedelta(days=1)).isoformat())]
    )
    with time_machine.travel(at(saturday, 10), tick=False):
        assert run_cycle()["queued"] == 0  # closed: nothing is decided on a closed day
    with time_machine.travel(at(MONDAY, 7), tick=False):
        run_cycle()
    # D0 (Saturday) and D+1 (Sunday) of INV-1 both land on Monday: the later step wins.
    assert runs() == Counter(
        {("INV-1", 1, "queued", ""): 1, ("INV-1", 0, "skipped", "superseded"): 1, ("INV-2", -1, "queued", ""): 1}
    )
    # Queued at 07:00, the queues start at the 08:00 opening.
    assert {q.scheduled_for for q in BillingQueue.objects.all()} == {at(MONDAY, 8)}


def test_a_step_found_after_closing_time_is_skipped_not_sent_tomorrow(api):
    office_hours(api)
    make_cadence(api, offsets=(0,))
    with time_machine.travel(at(MONDAY, 19), tick=False):
        upsert(api, [charge(1, due_date=MONDAY.isoformat())])
        run_cycle()
    assert runs() == Counter({("INV-1", 0, "skipped", "after_hours"): 1})


def test_old_charges_are_escalated_and_their_cadence_stops(api):
    BillingConfig.objects.filter(tenant=api.tenant).update(callback_url="https://crm.example.com/hooks")
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(90, 91))
        upsert(
            api,
            [
                charge(1, due_date=(MONDAY - timedelta(days=90)).isoformat()),
                charge(2, due_date=(MONDAY - timedelta(days=89)).isoformat()),
            ],
        )
        result = run_cycle()
        assert run_cycle()["escalated"] == 0
    assert result["escalated"] == 1 and result["queued"] == 0
    assert Charge.objects.get(external_id="INV-1").escalated_at is not None
    assert Charge.objects.get(external_id="INV-2").escalated_at is None
    callback = CallbackDelivery.objects.get(event="charge.escalated")
    assert callback.payload["data"]["external_id"] == "INV-1" and "phone" not in callback.payload["data"]


def test_paying_skips_queued_messages_even_one_a_worker_already_claimed(api):
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0,))
        upsert(api, [charge(1, due_date=MONDAY.isoformat()), charge(2, due_date=MONDAY.isoformat())])
        run_cycle()
    queue = BillingQueue.objects.get()
    lease = queue_lease.claim_queue(queue.pk, "test-worker")
    claimed = {c.external_id: c for c in queue_lease.claim_contacts(lease, 100)}
    assert set(claimed) == {"INV-1", "INV-2"}
    assert api.post("/api/v1/billing/charges/INV-1/pay", {}).status_code == 200
    skipped = BillingContact.objects.get(external_id="INV-1")
    assert (skipped.status, skipped.error_code, skipped.last_error) == ("skipped", "charge_closed", "paid")
    assert not queue_lease.start_sending(lease, claimed["INV-1"], text="Olá")  # the worker's own check refuses it
    assert queue_lease.start_sending(lease, claimed["INV-2"], text="Olá")
    assert BillingQueue.objects.get().skipped_count == 1
    assert api.post("/api/v1/billing/charges/INV-2/pay", {}).json()["status"] == "paid"
    assert BillingContact.objects.get(external_id="INV-2").status == "sending"  # in flight: not called back


def test_a_new_due_date_skips_the_queued_message_and_replans_the_steps(api):
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0, 3))
        upsert(api, [charge(1, due_date=MONDAY.isoformat())])
        run_cycle()
        upsert(api, [charge(1, due_date=(MONDAY - timedelta(days=3)).isoformat())])
        run_cycle()
    contacts = {c.due_date: c for c in BillingContact.objects.filter(external_id="INV-1")}
    assert contacts[MONDAY].status == "skipped" and contacts[MONDAY].error_code == "charge_changed"
    assert contacts[MONDAY - timedelta(days=3)].status == "pending"  # the D+3 of the new due date


def test_a_step_without_a_usable_template_is_skipped_with_ingest_code(api):
    from apps.billing.models import BillingTemplate
    from apps.common.config_version import bump_config_version

    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(1,))
        upsert(api, [charge(1, due_date=(MONDAY - timedelta(days=1)).isoformat())])
        BillingTemplate.objects.filter(tenant=api.tenant, template_type="overdue").update(is_default=False)
        bump_config_version(api.tenant.pk)  # what the admin does after a template change (tenant_context)
        run_cycle()
    assert runs() == Counter({("INV-1", 1, "skipped", "no_default_template"): 1})


def test_a_tenant_another_process_is_materialising_is_left_to_it(api):
    import psycopg
    from django.db import connection

    from apps.charges.services.materialisation import tenant_lock_key

    settings_dict = connection.settings_dict
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0,))
        upsert(api, [charge(1, due_date=MONDAY.isoformat())])
        with psycopg.connect(
            host=settings_dict["HOST"],
            port=settings_dict["PORT"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            dbname=settings_dict["NAME"],
            autocommit=True,
        ) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [tenant_lock_key(api.tenant)])
            busy = run_cycle()
        free = run_cycle()
    assert (busy["busy"], busy["queued"]) == (1, 0)
    assert (free["busy"], free["queued"]) == (0, 1)


def test_the_command_runs_one_cycle_and_prints_its_counts(api):
    import io
    import json

    from django.core.management import call_command

    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0,))
        upsert(api, [charge(1, due_date=MONDAY.isoformat())])
        out = io.StringIO()
        call_command("run_charges_periodic", "--once", stdout=out)
    assert json.loads(out.getvalue()) == {
        "tenants": 1,
        "escalated": 0,
        "queued": 1,
        "skipped": 0,
        "busy": 0,
        "failed": 0,
    }
