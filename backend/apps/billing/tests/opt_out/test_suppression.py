"""The suppression list: kept per tenant, checked at ingest in one query, never lifted by the
CRM sending the contact again, lifted by an admin."""

from __future__ import annotations

import pytest

from apps.billing.models import BillingContact, SuppressedPhone
from apps.billing.services.opt_out import is_suppressed, suppress, suppressed_phones
from apps.billing.tests.support.api import ApiTenant, contacts, make_tenant

PHONES = [c["phone"] for c in contacts(3)]
E164 = ["+551197000000" + str(i) for i in range(3)]  # what normalize_phone makes of PHONES


@pytest.fixture
def api(db) -> ApiTenant:
    return make_tenant("alpha")


@pytest.fixture
def other_api(db) -> ApiTenant:
    return make_tenant("beta")


def test_suppress_is_idempotent(api):
    first, created = suppress(tenant=api.tenant, phone=E164[0], reason="asked")
    again, created_again = suppress(tenant=api.tenant, phone=E164[0])
    assert created and not created_again and first.pk == again.pk
    assert SuppressedPhone.objects.count() == 1


def test_lookups_are_per_tenant(api, other_api, django_assert_num_queries):
    suppress(tenant=api.tenant, phone=E164[0])
    assert is_suppressed(tenant=api.tenant, phone=E164[0])
    assert not is_suppressed(tenant=other_api.tenant, phone=E164[0])
    with django_assert_num_queries(1):
        assert suppressed_phones(tenant=api.tenant, phones=E164 * 1000) == {E164[0]}
    with django_assert_num_queries(0):
        assert suppressed_phones(tenant=api.tenant, phones=[]) == set()


def test_ingest_reports_suppressed_phones_as_opted_out(api):
    suppress(tenant=api.tenant, phone=E164[1])
    response = api.send("notification", {"external_id": "oo-1", "contacts": contacts(3)})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "opted_out")]
    assert body["rejected"][0]["phone"] == "+55 11 9****-0001"  # masked, as every rejection
    assert sorted(BillingContact.objects.values_list("phone", flat=True)) == [E164[0], E164[2]]


def test_rejections_stay_in_request_order(api):
    suppress(tenant=api.tenant, phone=E164[0])
    body = contacts(3)
    body[2]["phone"] = "123"  # invalid
    response = api.send("notification", {"external_id": "oo-2", "contacts": body})
    assert [(r["index"], r["code"]) for r in response.json()["rejected"]] == [(0, "opted_out"), (2, "invalid_phone")]


def test_strict_mode_does_not_refuse_a_request_for_an_opted_out_phone(api):
    suppress(tenant=api.tenant, phone=E164[0])
    response = api.send("notification", {"external_id": "oo-3", "strict": True, "contacts": contacts(2)})
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1


def test_all_opted_out_is_a_clear_422(api):
    for phone in E164[:2]:
        suppress(tenant=api.tenant, phone=phone)
    response = api.send("notification", {"external_id": "oo-4", "contacts": contacts(2)})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "no_valid_contacts"
    assert {r["code"] for r in error["details"]["rejected"]} == {"opted_out"}


def test_sending_the_contact_again_does_not_lift_it_but_the_admin_can(api, superuser_client):
    suppress(tenant=api.tenant, phone=E164[0])
    for attempt in range(2):
        response = api.send("notification", {"external_id": f"oo-again-{attempt}", "contacts": contacts(2)})
        assert response.json()["accepted"] == 1
    row = SuppressedPhone.objects.get(tenant=api.tenant, phone=E164[0])
    response = superuser_client.post(f"/admin/billing/suppressedphone/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not SuppressedPhone.objects.exists()
    response = api.send("notification", {"external_id": "oo-lifted", "contacts": contacts(2)})
    assert response.json()["accepted"] == 2


def test_ingest_checks_the_list_in_one_query_whatever_the_size(api, django_assert_max_num_queries):
    """The opt-out filter adds one statement, not one per contact."""
    suppress(tenant=api.tenant, phone=E164[0])
    api.send("notification", {"external_id": "warm-up", "contacts": contacts(2, start=500)})
    with django_assert_max_num_queries(60) as small:
        api.send("notification", {"external_id": "q-small", "contacts": contacts(5, start=1000)})
    with django_assert_max_num_queries(60) as large:
        api.send("notification", {"external_id": "q-large", "contacts": contacts(300, start=2000)})
    suppression_queries = [q for q in large.captured_queries if "billing_suppressedphone" in q["sql"]]
    assert len(suppression_queries) == 1
    assert len(large.captured_queries) - len(small.captured_queries) <= 2  # bulk batches only


def test_staff_can_add_a_phone_in_any_format_and_it_is_normalised(api, staff_client, tenant):
    response = staff_client.post(
        "/admin/billing/suppressedphone/add/", {"phone": "(11) 97000-0001", "reason": "pedido por telefone"}
    )
    assert response.status_code == 302, response.content[:500]
    row = SuppressedPhone.objects.get()
    assert (row.phone, row.source, row.tenant_id) == ("+5511970000001", "admin", tenant.pk)


def test_the_admin_list_shows_masked_phones(api, superuser_client):
    suppress(tenant=api.tenant, phone=E164[0])
    page = superuser_client.get("/admin/billing/suppressedphone/").content.decode()
    assert E164[0] not in page and "+55 11 9****-0000" in page
