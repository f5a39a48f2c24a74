"""The audit trail: who paused a queue, issued or revoked a key, edited a template, a cadence or
an instance — recorded with the actor and IP, visible to the tenant's staff in the admin, and
append-only for everyone (the admin offers nothing, the database refuses UPDATE and DELETE)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditAction, AuditEvent
from apps.billing.models import BillingAPIKey, BillingTemplate
from apps.billing.tests.support.builders import CREDITOR_LINE, build_staff, template_post

LIST = reverse("admin:audit_auditevent_changelist")


def staff_of(tenant) -> Client:
    user = build_staff(tenant)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="audit"))
    client = Client()
    client.force_login(user)
    return client


def events(action: str):
    return AuditEvent.objects.filter(action=action)


def test_pausing_a_queue_through_the_api_records_the_key_and_the_ip(api, other_api):
    response = api.send(
        "notification",
        {"external_id": "q", "contacts": [{"phone": "+5511987650001", "name": "Ana", "variables": {"message": "x"}}]},
    )
    assert response.status_code == 202, response.content[:300]
    body = response.json()
    control = f"/api/v1/billing/queue/{body['queue_id']}/control"
    assert other_api.post(control, {"action": "pause"}).status_code == 404  # not theirs: nothing recorded
    assert api.post(control, {"action": "pause"}, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 200
    assert api.post(control, {"action": "resume"}).status_code == 200
    assert api.post(control, {"action": "cancel"}).status_code == 200
    recorded = list(AuditEvent.objects.filter(action__startswith="queue.").order_by("id"))
    assert [e.action for e in recorded] == ["queue.paused", "queue.resumed", "queue.cancelled"]
    first = recorded[0]
    assert (first.actor_kind, first.actor_id, first.actor_label) == ("api_key", str(api.key.pk), api.key.display_prefix)
    assert (first.tenant_id, first.object_type, first.object_id) == (
        api.tenant.pk,
        "billing.billingqueue",
        body["queue_id"],
    )
    assert first.ip == "127.0.0.1"  # no trusted proxy in front: X-Forwarded-For is not believed


def test_cadence_edits_through_the_api_are_recorded(api):
    assert api.post("/api/v1/billing/cadences", {"name": "Régua", "steps": [{"offset_days": 1}]}).status_code == 201
    assert api.client.delete("/api/v1/billing/cadences/Régua", HTTP_X_BILLING_API_KEY=api.raw_key).status_code == 204
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="cadence.").order_by("id")] == [
        "cadence.saved",
        "cadence.deleted",
    ]


def test_keys_issued_and_revoked_in_the_admin_are_recorded_with_the_user(api):
    user = build_staff(api.tenant)
    client = Client()
    client.force_login(user)
    assert client.post(reverse("admin:billing_billingapikey_add"), {"name": "ERP"}).status_code == 200
    key = BillingAPIKey.objects.get(name="ERP")
    client.post(reverse("admin:billing_billingapikey_revoke", args=[key.pk]))
    issued, revoked = (
        events(AuditAction.API_KEY_ISSUED).get(object_id=str(key.pk)),
        events(AuditAction.API_KEY_REVOKED).get(),
    )
    assert (issued.actor_kind, issued.actor_label, revoked.actor_id) == ("user", user.username, str(user.pk))


def test_template_and_instance_edits_in_the_admin_are_recorded_without_values(api):
    user = build_staff(api.tenant)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="connections"))
    client = Client()
    client.force_login(user)
    data = template_post(
        "Régua nova", [{"name": "A", "content": "Olá {{name}}" + CREDITOR_LINE, "weight": "1", "is_active": "on"}]
    )
    assert client.post(reverse("admin:billing_billingtemplate_add"), data).status_code == 302
    template = BillingTemplate.objects.get(name="Régua nova")
    details = events(AuditAction.TEMPLATE_SAVED).get().details
    assert details["created"] is True and details["variations_changed"] == 1 and "name" in details["fields"]
    assert events(AuditAction.TEMPLATE_SAVED).get().object_id == str(template.pk)

    url = reverse("admin:connections_whatsappinstance_change", args=[api.instance.pk])
    form = client.get(url).context["adminform"].form
    post = {name: value for name, value in form.initial.items() if value is not None and name != "api_key"}
    post.update(api_key="a-brand-new-provider-key", name="renamed", is_active="on")
    post.pop("base_url", None)
    assert client.post(url, post).status_code == 302
    event = events(AuditAction.INSTANCE_SAVED).get(actor_kind="user")  # set-up's own is the operator's
    assert "api_key" in event.details["fields"] and "name" in event.details["fields"]
    assert "a-brand-new-provider-key" not in str(event.details)


def test_staff_see_their_tenants_events_and_can_change_or_delete_none(api, other_api):
    mine, theirs = staff_of(api.tenant), staff_of(other_api.tenant)
    event = events(AuditAction.API_KEY_ISSUED).get(tenant_id=api.tenant.pk)
    own = AuditEvent.objects.filter(tenant_id=api.tenant.pk).count()  # set-up: instance saved, key issued
    assert own == 2 and mine.get(LIST).context["cl"].result_count == own
    assert set(theirs.get(LIST).context["cl"].queryset.values_list("tenant_id", flat=True)) == {other_api.tenant.pk}
    change = reverse("admin:audit_auditevent_change", args=[event.pk])
    assert mine.get(change).status_code == 200  # read-only view
    assert theirs.get(change).status_code == 302  # another tenant's event: not found, back to the list
    assert mine.post(change, {"action": "queue.paused"}).status_code == 403
    assert mine.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk, action=AuditAction.API_KEY_ISSUED).exists()


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_auditevent SET action = 'queue.paused'", "DELETE FROM audit_auditevent"]
)
def test_the_database_refuses_to_rewrite_history(api, statement):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert events(AuditAction.API_KEY_ISSUED).filter(tenant_id=api.tenant.pk).count() == 1
