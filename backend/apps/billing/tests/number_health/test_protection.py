"""Automatic protection in-process: too many "not on WhatsApp" answers, a logout, a lost session
found by a health check. Each pauses the number's queues with the reason, records
`number.protected`, and recovery leaves them paused until a person clears it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.billing.models import BillingConfig, CallbackDelivery
from apps.billing.services.instance_checker import InstanceRecoveryService, record_health
from apps.billing.tests.support.dispatch import run_queue
from apps.billing.tests.support.processes import notification_contacts
from apps.common.services.provider import client_for
from apps.connections.models import WhatsAppInstance
from apps.connections.services import clear_protection

from .conftest import health_settings

pytestmark = pytest.mark.django_db(transaction=True)

HOOK = "https://erp.example.com/hooks/billing"


def instance_of(tenant) -> WhatsAppInstance:
    return WhatsAppInstance.objects.select_related("tenant").get(pk=tenant.instance.pk)


def test_too_many_not_on_whatsapp_answers_protect_the_number_until_a_person_clears_it(pipeline_tenant):
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=60000, callback_url=HOOK)
    health_settings(tenant.tenant, invalid_window=5, invalid_share_limit=0.5)
    contacts = notification_contacts(10)
    tenant.sandbox.set_not_on_whatsapp(*[c["phone"] for c in contacts[2:5]])
    body = tenant.send("notification", contacts)

    result = run_queue(body["queue_id"])

    queue = tenant.queue(body["queue_id"])
    assert result.outcome == "instance_down" and len(tenant.messages()) == 2
    assert queue.status == "instance_down"
    assert queue.pause_reason == "number_protected: 3 of the last 5 sends were not on WhatsApp"
    instance = instance_of(tenant)
    assert instance.is_protected and instance.attention_reason.startswith("number protected")
    [event] = CallbackDelivery.objects.filter(event="number.protected")
    assert event.payload["data"]["kind"] == "not_on_whatsapp" and event.payload["data"]["instance"] == instance.name

    assert InstanceRecoveryService.recover(instance) == []  # the provider says open; still paused
    assert tenant.queue(body["queue_id"]).status == "instance_down"

    assert clear_protection(instances=[instance], user=None) == 1
    instance.refresh_from_db()
    assert [q.pk for q in InstanceRecoveryService.recover(instance)] == [queue.pk]
    assert tenant.queue(body["queue_id"]).status == "pending"


def test_a_protected_number_stops_its_other_queues_at_their_first_step(pipeline_tenant):
    tenant = pipeline_tenant()
    instance = instance_of(tenant)
    WhatsAppInstance.objects.filter(pk=instance.pk).update(
        protected_reason="logged out (test)", protected_since=instance.created_at
    )
    body = tenant.send("notification", notification_contacts(3))

    result = run_queue(body["queue_id"])

    assert result.outcome == "instance_down" and tenant.messages() == []
    assert tenant.queue(body["queue_id"]).pause_reason == "instance_down: number_protected: logged out (test)"


def test_a_logout_webhook_protects_the_number_and_its_queues_stay_paused(
    pipeline_tenant, evolution_sandbox, live_server
):
    from apps.billing.services import queue_lease
    from apps.billing.services.webhook_setup import configure_instance_webhook

    tenant = pipeline_tenant()
    BillingConfig.objects.filter(tenant=tenant.tenant).update(callback_url=HOOK)
    configure_instance_webhook(instance=instance_of(tenant), public_base_url=live_server.url)
    body = tenant.send("notification", notification_contacts(3))
    assert queue_lease.claim_queue(body["queue_id"], "worker-test:1") is not None  # running

    evolution_sandbox.phone_logout(tenant.instance.instance_name)  # connection.update close 401, logout.instance
    evolution_sandbox.wait_idle(timeout=10)

    queue = tenant.queue(body["queue_id"])
    assert queue.status == "instance_down" and queue.pause_reason == "number_protected: logged out (provider webhook)"
    instance = instance_of(tenant)
    assert instance.is_protected and instance.health_state == "close" and instance.last_disconnect_at is not None
    assert CallbackDelivery.objects.filter(event="number.protected").count() == 1  # once, for two events

    evolution_sandbox.set_state(tenant.instance.instance_name, "open")  # re-paired, but nobody cleared it yet
    assert InstanceRecoveryService.recover(instance) == []
    assert tenant.queue(body["queue_id"]).status == "instance_down"


def test_a_health_check_finding_a_paired_waha_session_lost_protects_the_number(
    make_sandbox_whatsapp_instance, evolution_sandbox
):
    instance = make_sandbox_whatsapp_instance(provider="waha")
    record_health(instance, client_for(instance).check_health())  # WORKING: now paired
    assert instance_of_pk(instance.pk).paired_at is not None
    evolution_sandbox.set_state(instance.instance_name, "refused")  # FAILED

    record_health(instance, client_for(instance).check_health())

    stored = instance_of_pk(instance.pk)
    assert stored.is_protected and stored.protected_reason == "WhatsApp session FAILED"
    assert stored.health_state == "error" and stored.last_disconnect_at is not None


def test_a_number_still_waiting_for_its_first_scan_is_not_protected(make_sandbox_whatsapp_instance):
    instance = make_sandbox_whatsapp_instance(provider="waha", state="qr")

    record_health(instance, client_for(instance).check_health())

    stored = instance_of_pk(instance.pk)
    assert stored.health_state == "pairing" and not stored.is_protected


def instance_of_pk(pk: int) -> WhatsAppInstance:
    return WhatsAppInstance.objects.get(pk=pk)


def test_an_unsigned_waha_webhook_cannot_protect_a_number(make_sandbox_whatsapp_instance):
    instance = make_sandbox_whatsapp_instance(provider="waha")
    path = reverse("billing:waha-webhook", kwargs={"token": instance.webhook_secret})

    response = Client().post(
        path,
        data=b'{"event": "session.status", "session": "x", "payload": {"status": "FAILED"}}',
        content_type="application/json",
    )

    assert response.status_code == 401 and not instance_of_pk(instance.pk).is_protected
