"""A debtor who says "já paguei" gets no new cadence step while the hold of the reply settings
lasts, as their queued messages are held: the reply reaches the steps not queued yet too."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from apps.billing.models import BillingQueue
from apps.billing.services.inbound_messages import handle_inbound
from apps.charges.models import ChargeStepRun
from apps.charges.services.periodic import run_cycle

from .conftest import charge, make_cadence, upsert

pytestmark = pytest.mark.django_db
SP = ZoneInfo("America/Sao_Paulo")
MONDAY = date(2031, 3, 3)


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), SP)


def reply(api, text: str, *, phone_digits: str = "5511980000001", message_id: str = "3A5F000000000001") -> str:
    """A debtor's message, through the webhook's own service."""
    data = {
        "key": {"remoteJid": f"{phone_digits}@s.whatsapp.net", "fromMe": False, "id": message_id},
        "message": {"conversation": text},
        "pushName": "Devedor",
    }
    return handle_inbound(instance=api.instance, data=data)


def runs() -> Counter:
    return Counter((r.charge.external_id, r.offset_days, r.status, r.skip_reason) for r in ChargeStepRun.objects.all())


def test_a_claim_of_payment_holds_the_next_steps_for_the_hold_days_then_they_resume(api):
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0, 1, 4))
        upsert(api, [charge(1, due_date=MONDAY.isoformat()), charge(2, due_date=MONDAY.isoformat())])
        run_cycle()  # day 0: both sent
        reply(api, "Já paguei, segue o comprovante")  # debtor 1 (hold: 3 days by default)
    with time_machine.travel(at(MONDAY + timedelta(days=1)), tick=False):
        run_cycle()  # day +1: debtor 1 held, debtor 2 gets it
    with time_machine.travel(at(MONDAY + timedelta(days=4)), tick=False):
        run_cycle()  # day +4: the hold is over
    assert runs() == Counter(
        {
            ("INV-1", 0, "queued", ""): 1,
            ("INV-2", 0, "queued", ""): 1,
            ("INV-1", 1, "skipped", "held"): 1,
            ("INV-2", 1, "queued", ""): 1,
            ("INV-1", 4, "queued", ""): 1,
            ("INV-2", 4, "queued", ""): 1,
        }
    )
    assert BillingQueue.objects.count() == 3


def test_an_unsure_or_other_reply_holds_nothing(api):
    with time_machine.travel(at(MONDAY), tick=False):
        make_cadence(api, offsets=(0, 1))
        upsert(api, [charge(1, due_date=MONDAY.isoformat())])
        run_cycle()
        reply(api, "Bom dia, qual o valor?", message_id="3A5F000000000002")
    with time_machine.travel(at(MONDAY + timedelta(days=1)), tick=False):
        run_cycle()
    assert runs()[("INV-1", 1, "queued", "")] == 1
