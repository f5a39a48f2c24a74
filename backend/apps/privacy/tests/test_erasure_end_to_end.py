"""An erasure end to end: a person is messaged for real (API ingest, the worker in process,
the Evolution sandbox), owes a charge, and is exported; then their data is erased through the
API. Afterwards every table of the project and every log line of the whole flow are searched
for their phone (every writing), name and the text sent to them: nothing. A new send to the
phone is refused as opted out, and the worker refuses a contact queued for it by hash alone.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from apps.audit.models import AuditAction, AuditEvent
from apps.billing.constants import ContactErrorCode, ContactStatus, QueueStatus
from apps.billing.dispatch.engine import run_queue_here
from apps.billing.models import BillingContact, SuppressedPhone
from apps.billing.tests.observability.test_pii_logging import Capture, leaks
from apps.charges.models import Charge
from apps.common.keyed_hash import phone_hash
from apps.common.logging import JsonFormatter

from .conftest import erase, export, rows_containing

pytestmark = pytest.mark.slow

AS_WRITTEN = "(11) 98765-4321"
E164 = "+5511987654321"
NAME = "Joana Erasmo Quintanilha"
SECRET_TEXT = "https://pagamento.example/boleto-ZX81QW"
OTHER = {
    "phone": "+55 21 98888-7777",
    "name": "Pedro Mantido",
    "external_id": "keep",
    "due_date": (date.today() - timedelta(days=3)).isoformat(),
    "amount": "80.00",
}


@pytest.fixture
def all_logs():
    import logging

    root = logging.getLogger()
    capture = Capture(JsonFormatter(redact=False))
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)


def forms_of_the_person() -> dict[str, str]:
    return {
        "as written": AS_WRITTEN,
        "E.164": E164,
        "digits": E164[1:],
        "national": E164[3:],
        "name": NAME,
        "surname": "Quintanilha",
        "text": SECRET_TEXT,
        "text fragment": "boleto-ZX81QW",
    }


def test_after_erasure_nothing_of_the_person_is_left_and_they_are_never_messaged_again(pipeline_tenant, all_logs):
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=60000)
    body = tenant.send(
        "overdue",
        [
            {
                "phone": AS_WRITTEN,
                "name": NAME,
                "external_id": "erase-me",
                "amount": "150.00",
                "due_date": (date.today() - timedelta(days=3)).isoformat(),
                "variables": {"payment_link": SECRET_TEXT},
            },
            OTHER,
        ],
        external_id="before-erasure",
    )
    assert run_queue_here(body["queue_id"], holder="t").outcome == QueueStatus.COMPLETED
    sent = BillingContact.objects.get(phone=E164)
    assert sent.status == ContactStatus.SENT and SECRET_TEXT in sent.rendered_message
    assert "Credor: Clínica Exemplo Ltda., CPF/CNPJ 11.222.333/0001-81." in sent.rendered_message
    charge = tenant.client.post(
        "/api/v1/billing/charges",
        content_type="application/json",
        HTTP_X_BILLING_API_KEY=tenant.raw_key,
        data={
            "charges": [
                {
                    "external_id": "INV-9",
                    "phone": AS_WRITTEN,
                    "name": NAME,
                    "amount": "150.00",
                    "document": "390.533.447-05",
                    "due_date": date.today().isoformat(),
                    "payment_link": SECRET_TEXT,
                }
            ]
        },
    )
    assert charge.status_code in (200, 201, 202), charge.content[:500]

    document = export(tenant, AS_WRITTEN)
    assert document.status_code == 200
    held = document.json()
    assert held["billing_contacts"][0]["rendered_message"] == sent.rendered_message
    assert held["conversations"][0]["messages"][0]["content"] == sent.rendered_message
    assert held["charges"][0]["document"] == "39053344705"
    assert OTHER["name"] not in str(held)
    assert rows_containing(E164) and rows_containing(NAME)  # the search below can find things

    response = erase(tenant, AS_WRITTEN)
    assert response.status_code == 200, response.content[:500]
    assert response.json()["erased"]["billing_contacts"] == 1 and response.json()["erased"]["charges_cancelled"] == 1

    for label, needle in forms_of_the_person().items():
        assert rows_containing(needle) == [], label
    assert leaks(all_logs.lines, forms_of_the_person()) == []
    # Counters and statuses stay for reports; the other person is untouched.
    sent.refresh_from_db()
    assert (sent.status, sent.phone, sent.name, sent.rendered_message, sent.variables) == ("sent", "", "", "", {})
    assert BillingContact.objects.get(name=OTHER["name"]).phone == "+5521988887777"
    assert Charge.objects.get(external_id="INV-9").status == "cancelled"
    # The opt-out survives as a keyed hash: ingest refuses the phone, in any writing.
    assert SuppressedPhone.objects.get(tenant=tenant.tenant).phone_hash == phone_hash(E164)
    again = tenant.client.post(
        "/api/v1/billing/send/overdue",
        content_type="application/json",
        HTTP_X_BILLING_API_KEY=tenant.raw_key,
        data={
            "external_id": "after-erasure",
            "contacts": [
                {
                    "phone": "+55 11 98765 4321",
                    "name": "X",
                    "amount": "1.00",
                    "due_date": (date.today() - timedelta(days=3)).isoformat(),
                }
            ],
        },
    )
    assert again.status_code == 422, again.content[:500]
    assert {r["code"] for r in again.json()["error"]["details"]["rejected"]} == {"opted_out"}
    # Recorded without the phone: who (the key), what, how many rows.
    event = AuditEvent.objects.get(action=AuditAction.DATA_SUBJECT_ERASED)
    assert event.actor_kind == "api_key" and event.object_id == phone_hash(E164) and event.ip == "127.0.0.1"
    assert E164 not in str(event.details)


def test_the_worker_refuses_a_contact_whose_phone_is_suppressed_only_by_hash(pipeline_tenant):
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=60000)
    body = tenant.send(
        "overdue",
        [
            {
                "phone": AS_WRITTEN,
                "name": NAME,
                "amount": "10.00",
                "due_date": (date.today() - timedelta(days=3)).isoformat(),
            }
        ],
        external_id="queued",
    )
    # Erased between ingest and send, as a second process would: only the hash is left.
    SuppressedPhone.objects.create(
        tenant=tenant.tenant, phone=None, phone_hash=phone_hash(E164), source=SuppressedPhone.Source.ERASURE
    )
    assert run_queue_here(body["queue_id"], holder="t").outcome == QueueStatus.COMPLETED
    contact = BillingContact.objects.get(queue_id=body["queue_id"])
    assert (contact.status, contact.error_code) == (ContactStatus.SKIPPED, ContactErrorCode.OPTED_OUT)
    assert tenant.messages() == []
