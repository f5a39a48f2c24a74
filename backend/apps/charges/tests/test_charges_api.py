"""POST/GET /charges, detail with plan and timeline, and the pay/cancel/write-off/reopen actions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.billing.templating.date_calculator import today_in
from apps.charges.models import Charge, ChargeEvent

from .conftest import charge, make_cadence, upsert

pytestmark = pytest.mark.django_db


def test_upsert_creates_then_updates_then_leaves_unchanged_by_external_id(api):
    first = upsert(api, [charge(1), charge(2, amount="1.234,56", due_date="10/12/2030")])
    assert first.status_code == 200, first.content
    assert first.json() == {"created": 2, "updated": 0, "unchanged": 0, "rejected": []}
    stored = Charge.objects.get(tenant=api.tenant, external_id="INV-2")
    assert stored.amount == Decimal("1234.56") and stored.due_date.isoformat() == "2030-12-10"
    assert stored.phone == "+5511980000002" and stored.status == "open" and stored.debtor_key == "phone:+5511980000002"
    again = upsert(api, [charge(1), charge(2, amount="99.90", due_date="10/12/2030")]).json()
    assert again == {"created": 0, "updated": 1, "unchanged": 1, "rejected": []}
    assert Charge.objects.get(tenant=api.tenant, external_id="INV-2").amount == Decimal("99.90")
    event = ChargeEvent.objects.get(charge__external_id="INV-2")
    assert event.kind == "updated" and event.data == {"amount": ["1234.56", "99.90"]}


def test_a_bad_charge_is_reported_by_index_and_the_rest_is_stored(api):
    batch = [
        charge(0),
        charge(1, phone="123"),
        charge(2, amount="-5"),
        charge(3, document="111.111.111-11"),
        charge(4, due_date="31/02/2030"),
        charge(0),
        charge(5, external_id=None),
        charge(6, cadence="Nope"),
    ]
    body = upsert(api, batch).json()
    assert body["created"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "invalid_phone"),
        (2, "invalid_amount"),
        (3, "invalid_document"),
        (4, "invalid_due_date"),
        (5, "duplicate_external_id"),
        (6, "missing_external_id"),
        (7, "unknown_cadence"),
    ]
    assert "98000" not in str(body["rejected"])  # phones are masked
    assert Charge.objects.filter(tenant=api.tenant).count() == 1


def test_strict_mode_stores_nothing_when_one_charge_is_bad(api):
    response = upsert(api, [charge(0), charge(1, phone="")], strict=True)
    assert response.status_code == 422 and response.json()["error"]["code"] == "charges_rejected"
    assert not Charge.objects.exists()


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"charges": []}, 400, "validation_error"),
        ({"charges": [{"external_id": "x", "colour": "red"}]}, 400, "unknown_field"),
        ({"charges": [{"status": "paid"}]}, 400, "forbidden_field"),
        ({"charges": "nope"}, 400, "validation_error"),
        ({"charges": [charge(0)], "tenant": "other"}, 400, "forbidden_field"),
        ({"charges": [{"phone": "x"}]}, 422, "no_valid_charges"),
    ],
)
def test_malformed_upserts_get_a_4xx_and_write_nothing(api, body, status, code):
    response = api.post("/api/v1/billing/charges", body)
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert not Charge.objects.exists()


def test_more_than_ten_thousand_charges_is_413(api):
    response = upsert(api, [{"external_id": str(i)} for i in range(10_001)])
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_charges"


def test_a_key_limited_to_notifications_cannot_create_charges(api):
    raw = api.new_key(allowed_template_types=["notification"])
    response = api.client.post(
        "/api/v1/billing/charges", data={"charges": [charge(0)]}, format="json", HTTP_X_BILLING_API_KEY=raw
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "template_type_not_allowed"


def test_list_filters_by_status_due_range_and_debtor(api):
    upsert(
        api,
        [
            charge(1, due_date="2030-01-10", debtor_external_id="PAC-1"),
            charge(2, due_date="2030-02-10"),
            charge(3, due_date="2030-03-10", debtor_external_id="PAC-1"),
        ],
    )
    api.post("/api/v1/billing/charges/INV-3/pay", {})
    ids = lambda **q: [c["external_id"] for c in api.get("/api/v1/billing/charges", **q).json()["results"]]  # noqa: E731 - a one-line query, named where it is used several times
    assert ids() == ["INV-1", "INV-2", "INV-3"]
    assert ids(status="open") == ["INV-1", "INV-2"]
    assert ids(due_from="2030-02-01", due_to="10/03/2030") == ["INV-2", "INV-3"]
    assert ids(debtor="PAC-1") == ["INV-1", "INV-3"]
    assert ids(debtor="(11) 98000-0002") == ["INV-2"]
    assert api.get("/api/v1/billing/charges", status="nope").status_code == 400
    assert api.get("/api/v1/billing/charges", due_from="tomorrow").status_code == 400


def test_detail_shows_the_plan_and_the_timeline(api):
    make_cadence(api, offsets=(-3, 0, 5))
    upsert(api, [charge(1, external_id="1001/3", due_date="2030-06-05")])
    body = api.get("/api/v1/billing/charges/1001/3").json()
    assert body["external_id"] == "1001/3" and body["cadence"] is None and body["phone"] == "+55 11 9****-0001"
    assert [(p["offset_days"], p["state"]) for p in body["plan"]] == [(-3, "planned"), (0, "planned"), (5, "planned")]
    assert body["plan"][0]["nominal_date"] == "2030-06-02"
    assert [e["type"] for e in body["timeline"]] == ["created"]


def test_pay_then_reopen_then_cancel_and_write_off_follow_the_transition_table(api):
    upsert(api, [charge(1)])
    paid = api.post(
        "/api/v1/billing/charges/INV-1/pay",
        {"paid_amount": "140,00", "reference": "TX-9", "paid_at": "2026-01-02T10:00:00-03:00"},
    )
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "paid" and paid.json()["paid_amount"] == "140.00"
    assert paid.json()["payment_source"] == "api" and paid.json()["paid_at"].startswith("2026-01-02T13:00")
    assert api.post("/api/v1/billing/charges/INV-1/pay", {}).status_code == 200  # a retry changes nothing
    refused = api.post("/api/v1/billing/charges/INV-1/cancel", {})
    assert refused.status_code == 409 and refused.json()["error"]["details"]["current_status"] == "paid"
    reopened = api.post("/api/v1/billing/charges/INV-1/reopen", {"reason": "estorno"}).json()
    assert reopened["status"] == "open" and reopened["paid_at"] is None and reopened["paid_amount"] is None
    assert api.post("/api/v1/billing/charges/INV-1/write-off", {}).json()["status"] == "written_off"
    assert api.post("/api/v1/billing/charges/INV-1/pay", {}).json()["status"] == "paid"  # a payment always counts
    kinds = [e.kind for e in ChargeEvent.objects.filter(charge__external_id="INV-1").order_by("id")]
    assert kinds == ["paid", "reopened", "written_off", "paid"]


@pytest.mark.parametrize(
    "body",
    [{"paid_amount": "-1"}, {"paid_at": "2026-01-02T10:00:00"}, {"paid_at": "2999-01-01T00:00:00Z"}, {"surprise": 1}],
)
def test_bad_pay_bodies_are_400_and_change_nothing(api, body):
    upsert(api, [charge(1)])
    response = api.post("/api/v1/billing/charges/INV-1/pay", body)
    assert response.status_code == 400
    assert Charge.objects.get(external_id="INV-1").status == "open"


def test_tenant_b_gets_404_for_tenant_a_charge(api, other_api):
    upsert(api, [charge(1)])
    for path in ("/api/v1/billing/charges/INV-1",):
        assert other_api.get(path).status_code == 404
    for action in ("pay", "cancel", "write-off", "reopen"):
        response = other_api.post(f"/api/v1/billing/charges/INV-1/{action}", {})
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert other_api.get("/api/v1/billing/charges").json()["results"] == []
    assert Charge.objects.get(external_id="INV-1").status == "open"


def test_without_a_key_it_is_401(api):
    response = api.client.get("/api/v1/billing/charges")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


def test_the_recovery_report_counts_only_the_keys_tenant_and_checks_its_period(api, other_api):
    today = today_in(api.tenant.timezone).isoformat()  # the report's days are the tenant's
    upsert(api, [charge(1, due_date=today)])
    api.post("/api/v1/billing/charges/INV-1/pay", {"paid_amount": "99,90"})
    mine = api.get("/api/v1/billing/reports/recovery", date_from=today, date_to=today).json()
    theirs = other_api.get("/api/v1/billing/reports/recovery", date_from=today, date_to=today).json()
    assert (mine["charges_paid"], mine["amount_recovered"], mine["charges_due"]["paid"]) == (1, "99.90", 1)
    assert (theirs["charges_paid"], theirs["amount_recovered"], theirs["charges_due"]["total"]) == (0, "0.00", 0)
    assert mine["median_days_to_payment"] is None and mine["conversion_by_step"] == []  # no message was sent
    bad = api.get("/api/v1/billing/reports/recovery", date_from=today, date_to="2000-01-01")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    assert api.get("/api/v1/billing/reports/recovery", date_from=today).status_code == 400
