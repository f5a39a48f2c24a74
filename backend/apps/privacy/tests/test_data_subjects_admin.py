"""Data-subject requests in the admin: a tenant's staff export and erase a person's data and
see the requests answered (their tenant's only, read-only)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditAction, AuditEvent
from apps.billing.models import BillingContact, SuppressedPhone
from apps.billing.tests.support.builders import build_staff

PHONE = "+5511987654321"
ADD = reverse("admin:privacy_datasubjectrequest_add")
LIST = reverse("admin:privacy_datasubjectrequest_changelist")


def staff_of(tenant) -> Client:
    user = build_staff(tenant)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["privacy", "audit"]))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def person(api):
    response = api.send(
        "notification",
        {
            "external_id": "adm",
            "contacts": [{"phone": PHONE, "name": "Lia Admin", "variables": {"message": "Texto da Lia"}}],
        },
    )
    assert response.status_code == 202
    return BillingContact.objects.get(tenant=api.tenant)


def test_staff_download_the_persons_data_as_json(api, person):
    response = staff_of(api.tenant).post(ADD, {"phone": "(11) 98765-4321", "action": "export"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="data-subject.json"'
    document = json.loads(response.content)
    assert document["billing_contacts"][0]["name"] == "Lia Admin"
    event = AuditEvent.objects.get(action=AuditAction.DATA_SUBJECT_EXPORTED)
    assert event.actor_kind == "user" and event.tenant_id == api.tenant.pk


def test_staff_erase_and_see_the_request_listed_only_in_their_tenant(api, other_api, person):
    staff = staff_of(api.tenant)
    response = staff.post(ADD, {"phone": "11 98765 4321", "action": "erase"})
    assert response.status_code == 302 and response["Location"] == LIST
    person.refresh_from_db()
    assert (person.phone, person.name, person.variables) == ("", "", {})
    assert SuppressedPhone.objects.get(tenant=api.tenant).phone is None
    assert staff.get(LIST).context["cl"].result_count == 1
    assert staff_of(other_api.tenant).get(LIST).context["cl"].result_count == 0


def test_a_bad_phone_shows_on_the_form_and_records_nothing(api):
    response = staff_of(api.tenant).post(ADD, {"phone": "abc", "action": "erase"})
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not AuditEvent.objects.filter(action__startswith="data_subject.").exists()


def test_staff_without_the_permission_cannot_answer_requests(api):
    client = Client()
    client.force_login(build_staff(api.tenant))  # billing permissions only
    assert client.post(ADD, {"phone": PHONE, "action": "erase"}).status_code == 403
