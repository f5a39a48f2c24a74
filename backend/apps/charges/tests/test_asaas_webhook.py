"""POST /webhooks/asaas/<tenant token>: the token check, payload shapes, de-duplication,
out-of-order delivery, unknown charges, and the set-up command that makes the URL."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from apps.billing.models import BillingConfig, CallbackDelivery
from apps.charges.asaas_sandbox import asaas_event
from apps.charges.models import AsaasEvent, Charge, ChargeSettings
from apps.charges.services.asaas_setup import configure_asaas_webhook

from .conftest import charge, upsert

pytestmark = pytest.mark.django_db
TOKEN = "asaas-token-" + "x" * 30
SP = ZoneInfo("America/Sao_Paulo")


@pytest.fixture
def hook(api):
    """(post(payload, token=TOKEN) -> response) against the tenant's real webhook URL."""
    url = configure_asaas_webhook(tenant=api.tenant, token=TOKEN)
    client = Client()

    def post(payload, token=TOKEN, raw=None):
        headers = {"HTTP_ASAAS_ACCESS_TOKEN": token} if token else {}
        return client.post(
            url, data=raw if raw is not None else json.dumps(payload), content_type="application/json", **headers
        )

    post.url = url
    return post


def event(name: str, external_id: str = "INV-1", *, minutes: int = 0, **fields):
    created = datetime(2030, 5, 10, 12, 0, tzinfo=SP) + timedelta(minutes=minutes)
    return asaas_event(
        name,
        external_reference=external_id,
        value=fields.pop("value", "150.00"),
        due_date=fields.pop("due_date", date(2030, 5, 15)),
        created_at=created,
        **fields,
    )


def status(external_id: str = "INV-1") -> str:
    return Charge.objects.get(external_id=external_id).status


def test_payment_received_marks_the_charge_paid_and_tells_the_crm(api, hook):
    BillingConfig.objects.filter(tenant=api.tenant).update(callback_url="https://crm.example.com/hooks")
    upsert(api, [charge(1)])
    response = hook(event("PAYMENT_RECEIVED", payment_id="pay_123", value=149.5))
    assert response.status_code == 200 and response.json() == {"status": "ok", "outcome": "applied"}
    paid = Charge.objects.get(external_id="INV-1")
    assert (paid.status, paid.paid_amount, paid.payment_source, paid.payment_reference, paid.asaas_payment_id) == (
        "paid",
        Decimal("149.50"),
        "asaas",
        "pay_123",
        "pay_123",
    )
    assert paid.paid_at == datetime(2030, 5, 10, 12, 0, tzinfo=SP)
    callback = CallbackDelivery.objects.get(event="charge.paid")
    assert callback.payload["data"]["external_id"] == "INV-1" and callback.payload["data"]["source"] == "asaas"


def test_events_map_to_statuses_and_a_refund_reopens(api, hook):
    upsert(api, [charge(1)])
    steps = [
        ("PAYMENT_CONFIRMED", "paid"),
        ("PAYMENT_REFUNDED", "open"),
        ("PAYMENT_RECEIVED_IN_CASH", "paid"),
        ("PAYMENT_RECEIVED_IN_CASH_UNDONE", "open"),
        ("PAYMENT_DELETED", "cancelled"),
        ("PAYMENT_RESTORED", "open"),
        ("PAYMENT_RECEIVED", "paid"),
        ("PAYMENT_CHARGEBACK_REQUESTED", "open"),
    ]
    for minute, (name, expected) in enumerate(steps):
        assert hook(event(name, minutes=minute)).json()["outcome"] == "applied", name
        assert status() == expected, name


def test_payment_updated_changes_amount_and_due_date_and_finds_the_charge_by_payment_id(api, hook):
    upsert(api, [charge(1, asaas_payment_id="pay_9")])
    response = hook(
        event("PAYMENT_UPDATED", external_id="", payment_id="pay_9", value="99.00", due_date=date(2030, 6, 1))
    )
    assert response.json()["outcome"] == "applied"
    updated = Charge.objects.get(external_id="INV-1")
    assert updated.amount == Decimal("99.00") and updated.due_date == date(2030, 6, 1)
    assert updated.events.get().data == {
        "amount": ["150.00", "99.00"],
        "due_date": [(date.today() + timedelta(days=5)).isoformat(), "2030-06-01"],
    }


def test_a_repeated_event_is_applied_once(api, hook):
    upsert(api, [charge(1)])
    paid = event("PAYMENT_RECEIVED")
    assert hook(paid).json()["outcome"] == "applied"
    hook(event("PAYMENT_REFUNDED", minutes=1))
    assert hook(paid).json()["outcome"] == "duplicate"
    assert status() == "open" and AsaasEvent.objects.count() == 2


def test_an_older_event_arriving_late_never_undoes_a_newer_one(api, hook):
    upsert(api, [charge(1)])
    assert hook(event("PAYMENT_REFUNDED", minutes=5)).json()["outcome"] == "unchanged"  # already open
    assert hook(event("PAYMENT_RECEIVED", minutes=1)).json()["outcome"] == "stale"
    assert status() == "open"
    assert hook(event("PAYMENT_RECEIVED", minutes=6)).json()["outcome"] == "applied"
    assert hook(event("PAYMENT_REFUNDED", minutes=2)).json()["outcome"] == "stale"
    assert status() == "paid"
    assert list(AsaasEvent.objects.order_by("id").values_list("outcome", flat=True)) == [
        "unchanged",
        "stale",
        "applied",
        "stale",
    ]


def test_unknown_charges_and_ignored_events_are_200_and_change_nothing(api, hook):
    upsert(api, [charge(1)])
    assert hook(event("PAYMENT_RECEIVED", external_id="NOPE")).json()["outcome"] == "unknown_charge"
    assert hook(event("PAYMENT_BANK_SLIP_VIEWED")).json()["outcome"] == "ignored"
    assert status() == "open" and not AsaasEvent.objects.exists()


@pytest.mark.parametrize("token", [None, "wrong-" + "y" * 30, TOKEN + "x"])
def test_a_wrong_token_is_401_and_changes_nothing(api, hook, token):
    upsert(api, [charge(1)])
    response = hook(event("PAYMENT_RECEIVED"), token=token)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert status() == "open" and not AsaasEvent.objects.exists()


def test_an_unknown_url_token_is_401(api, hook):
    response = Client().post(
        "/api/v1/billing/webhooks/asaas/not-a-tenant",
        data=json.dumps(event("PAYMENT_RECEIVED")),
        content_type="application/json",
        HTTP_ASAAS_ACCESS_TOKEN=TOKEN,
    )
    assert response.status_code == 401


def test_another_tenants_token_cannot_touch_this_tenants_charges(api, other_api, hook):
    upsert(api, [charge(1)])
    other_url = configure_asaas_webhook(tenant=other_api.tenant, token="other-token-" + "z" * 30)
    wrong = Client().post(
        other_url,
        data=json.dumps(event("PAYMENT_RECEIVED")),
        content_type="application/json",
        HTTP_ASAAS_ACCESS_TOKEN="other-token-" + "z" * 30,
    )
    assert wrong.json()["outcome"] == "unknown_charge" and status() == "open"
    cross = Client().post(
        other_url,
        data=json.dumps(event("PAYMENT_RECEIVED")),
        content_type="application/json",
        HTTP_ASAAS_ACCESS_TOKEN=TOKEN,
    )
    assert cross.status_code == 401


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({"event": "PAYMENT_RECEIVED"}),
        json.dumps({"id": "evt_1", "event": "PAYMENT_RECEIVED", "dateCreated": "2030-05-10 12:00:00", "payment": {}}),
        json.dumps(
            {
                "id": "evt_1",
                "event": "PAYMENT_RECEIVED",
                "dateCreated": "yesterday",
                "payment": {"id": "pay_1", "externalReference": "INV-1"},
            }
        ),
        json.dumps(
            {
                "id": "evt_1",
                "event": "PAYMENT_RECEIVED",
                "dateCreated": "2030-05-10 12:00:00",
                "payment": {"id": "pay_1", "externalReference": "INV-1", "value": "lots"},
            }
        ),
    ],
)
def test_a_malformed_event_is_400_and_changes_nothing(api, hook, raw):
    upsert(api, [charge(1)])
    response = hook(None, raw=raw)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_event"
    assert status() == "open" and not AsaasEvent.objects.exists()


def test_setup_command_sets_the_token_and_prints_the_url(db, settings):
    settings.BILLING_PUBLIC_BASE_URL = "https://billing.example.com"
    out = io.StringIO()
    call_command(
        "billing_setup_tenant", "--tenant", "Clínica Asaas", "--asaas-webhook-token", TOKEN, "--json", stdout=out
    )
    summary = json.loads(out.getvalue())
    charge_settings = ChargeSettings.objects.get(tenant__slug="clinica-asaas")
    assert summary["asaas_webhook_url"] == (
        f"https://billing.example.com/api/v1/billing/webhooks/asaas/{charge_settings.asaas_url_token}"
    )
    assert summary["api_key"] and charge_settings.asaas_token_matches(TOKEN)
    assert TOKEN not in charge_settings.asaas_token_hash
    with pytest.raises(CommandError):
        call_command(
            "billing_setup_tenant", "--tenant", "Clínica Asaas", "--asaas-webhook-token", "short", stdout=io.StringIO()
        )
    assert ChargeSettings.objects.get(tenant__slug="clinica-asaas").asaas_token_matches(TOKEN)


def test_an_oversized_body_is_413_and_changes_nothing(api, hook):
    upsert(api, [charge(1)])
    payload = event("PAYMENT_RECEIVED")
    payload["payment"]["description"] = "x" * 300_000
    response = hook(payload)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert status() == "open" and not AsaasEvent.objects.exists()
