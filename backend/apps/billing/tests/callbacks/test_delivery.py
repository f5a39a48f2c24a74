"""Delivering callbacks: signed, verified by the client's own check, retried with backoff under
the same webhook-id, given up after a day, never redirected, always time-limited."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.services import Actor
from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import BillingConfig, CallbackDelivery
from apps.billing.services import callback_delivery, callbacks
from apps.billing.services.queue_control import queue_control
from apps.billing.tests.support.builders import build_contact

from .conftest import queue_for, set_callback, verify_standard_webhook

OPERATOR = Actor.command("test")


def secret_of(api) -> str:
    return BillingConfig.for_tenant(api.tenant).callback_secret


def test_a_queue_event_reaches_the_client_signed(client_tenant, receiver, allow_loopback):
    endpoint = receiver()
    set_callback(client_tenant, endpoint.url)
    queue = queue_for(client_tenant, status=QueueStatus.RUNNING)
    delivery = callbacks.on_queue_started(queue)
    assert delivery is not None and delivery.status == "pending"

    assert callback_delivery.deliver_due() == 1
    [request] = endpoint.requests
    payload = verify_standard_webhook(secret_of(client_tenant), request["headers"], request["body"])
    assert request["headers"]["webhook-id"] == delivery.webhook_id
    assert request["headers"]["Content-Type"] == "application/json"
    assert payload["type"] == "queue.started"
    data = payload["data"]
    assert data["queue_id"] == str(queue.pk) and data["status"] == "running"
    assert data["external_id"] == queue.billing_campaign.external_id
    assert set(data["counters"]) == {"total", "sent", "failed", "cancelled", "skipped", "delivered", "read", "replied"}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None
    assert callback_delivery.deliver_due() == 0  # nothing left


def test_the_requests_callback_url_wins_over_the_tenant_default(client_tenant, receiver, allow_loopback):
    default, specific = receiver(), receiver()
    set_callback(client_tenant, default.url)
    queue = queue_for(client_tenant)
    queue.billing_campaign.callback_url = specific.url
    queue.billing_campaign.save()
    callbacks.on_queue_completed(queue)
    callback_delivery.deliver_due()
    assert len(specific.requests) == 1 and not default.requests


def test_no_url_no_callback(client_tenant):
    set_callback(client_tenant, "")
    assert callbacks.on_queue_started(queue_for(client_tenant)) is None
    assert not CallbackDelivery.objects.exists()


def test_without_a_url_a_queue_event_reads_only_the_url(client_tenant, django_assert_max_num_queries):
    """The worker sends queue.started / queue.completed for every queue; most tenants have no
    callback URL, so nothing else (fresh counters for the payload) is read."""
    config = set_callback(client_tenant, "")
    queue = queue_for(client_tenant)
    with django_assert_max_num_queries(1):  # the request's own callback_url; the counters would be a 2nd
        assert callbacks.on_queue_started(queue, config=config) is None


def test_failures_are_retried_with_backoff_and_the_same_webhook_id(client_tenant, receiver, allow_loopback):
    endpoint = receiver([500, 503, 200])
    set_callback(client_tenant, endpoint.url)
    delivery = callbacks.on_queue_paused(queue_for(client_tenant), "manual")
    now = timezone.now()

    assert callback_delivery.deliver_due(now=now) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    assert delivery.next_attempt_at == now + timedelta(seconds=30)
    assert callback_delivery.deliver_due(now=now + timedelta(seconds=29)) == 0  # not due yet

    callback_delivery.deliver_due(now=now + timedelta(seconds=30))
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.next_attempt_at == now + timedelta(seconds=30 + 60)

    callback_delivery.deliver_due(now=now + timedelta(seconds=90))
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 3
    ids = {request["headers"]["webhook-id"] for request in endpoint.requests}
    assert ids == {delivery.webhook_id} and len(endpoint.requests) == 3
    for request in endpoint.requests:  # each attempt is signed afresh, and verifies
        verify_standard_webhook(secret_of(client_tenant), request["headers"], request["body"])


def test_backoff_doubles_and_is_capped():
    assert [callbacks.retry_delay(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert callbacks.retry_delay(30) == 3600


def test_it_gives_up_after_a_day(client_tenant, receiver, allow_loopback):
    endpoint = receiver([500])
    set_callback(client_tenant, endpoint.url)
    delivery = callbacks.on_queue_cancelled(queue_for(client_tenant))
    now = timezone.now()
    for _ in range(60):
        delivery.refresh_from_db()
        if delivery.status != "pending":
            break
        now = max(now, delivery.next_attempt_at)
        callback_delivery.deliver_due(now=now)
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert now - delivery.created_at <= timedelta(hours=24)
    assert 10 < delivery.attempts < 40
    assert {request["headers"]["webhook-id"] for request in endpoint.requests} == {delivery.webhook_id}


def test_redirects_are_not_followed(client_tenant, receiver, allow_loopback):
    endpoint = receiver([302])
    set_callback(client_tenant, endpoint.url)
    delivery = callbacks.on_queue_started(queue_for(client_tenant))
    callback_delivery.deliver_due()
    assert [request["path"] for request in endpoint.requests] == ["/hooks/billing"]  # never /elsewhere
    delivery.refresh_from_db()
    assert delivery.status == "pending" and "redirects are not followed" in delivery.last_error


def test_a_slow_client_times_out_and_is_retried(client_tenant, receiver, allow_loopback, settings):
    settings.BILLING_CALLBACK_DEADLINE = 0.3
    endpoint = receiver([200], delay=6)
    set_callback(client_tenant, endpoint.url)
    delivery = callbacks.on_queue_started(queue_for(client_tenant))
    started = time.monotonic()
    callback_delivery.deliver_due()
    assert time.monotonic() - started < 4  # cut at the 0.3 s deadline, not after the 6 s answer
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("pending", "transport: deadline")


def test_an_unsafe_url_at_send_time_fails_without_a_request(client_tenant, receiver):
    endpoint = receiver()  # on 127.0.0.1, and BILLING_CALLBACK_ALLOW_PRIVATE stays off
    set_callback(client_tenant, endpoint.url)
    delivery = callbacks.on_queue_started(queue_for(client_tenant))
    callback_delivery.deliver_due()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "unsafe_callback_url")
    assert endpoint.requests == []


def test_payloads_carry_ids_and_statuses_never_message_texts(client_tenant, receiver, allow_loopback):
    endpoint = receiver()
    set_callback(client_tenant, endpoint.url, contact_events=True)
    queue = queue_for(client_tenant)
    contact = build_contact(
        queue,
        status=ContactStatus.SENT,
        rendered_message="Olá Maria, sua fatura de R$ 10",
        provider_message_id="3EB0TEXTLESS0001",
        external_id="crm-42",
    )
    callbacks.on_contact_outcome(contact, "contact.sent")
    CallbackDelivery.objects.update(next_attempt_at=timezone.now())
    callback_delivery.deliver_due()
    body = endpoint.requests[0]["body"].decode()
    assert "fatura" not in body and contact.phone not in body
    event = json.loads(body)["data"]["events"][0]
    assert (event["type"], event["contact_id"], event["external_id"], event["status"]) == (
        "contact.sent",
        contact.pk,
        "crm-42",
        "sent",
    )


# ----------------------------------------------------------------------------- per-contact events
def test_per_contact_events_are_off_unless_the_tenant_turns_them_on(client_tenant):
    set_callback(client_tenant, "https://erp.example.com/hooks")
    contact = build_contact(queue_for(client_tenant), status=ContactStatus.SENT)
    assert callbacks.on_contact_outcome(contact, "contact.sent") is None
    assert not CallbackDelivery.objects.exists()


def test_per_contact_events_are_batched_per_queue_until_the_first_attempt(client_tenant, receiver, allow_loopback):
    endpoint = receiver()
    set_callback(client_tenant, endpoint.url, contact_events=True)
    queue, other_queue = queue_for(client_tenant), queue_for(client_tenant)
    contacts = [build_contact(queue, status=ContactStatus.SENT) for _ in range(3)]
    for contact in contacts:
        callbacks.on_contact_outcome(contact, "contact.sent")
    callbacks.on_contact_outcome(build_contact(other_queue, status=ContactStatus.SENT), "contact.sent")
    batches = CallbackDelivery.objects.filter(event="contact.batch")
    assert batches.count() == 2
    batch = batches.get(queue=queue)
    assert batch.item_count == 3 and [e["contact_id"] for e in batch.payload["data"]["events"]] == [
        c.pk for c in contacts
    ]
    assert callback_delivery.deliver_due() == 0  # a batch waits BILLING_CALLBACK_BATCH_SECONDS to gather events

    callback_delivery.deliver_due(now=timezone.now() + timedelta(seconds=11))
    assert len(endpoint.requests) == 2
    callbacks.on_contact_outcome(contacts[0], "contact.delivered")  # after the flush: a new batch
    assert CallbackDelivery.objects.filter(event="contact.batch", queue=queue).count() == 2
    batch.refresh_from_db()
    assert batch.item_count == 3  # a sealed batch never changes


def test_a_full_batch_starts_a_new_one(client_tenant, settings):
    settings.BILLING_CALLBACK_BATCH_MAX = 2
    set_callback(client_tenant, "https://erp.example.com/hooks", contact_events=True)
    queue = queue_for(client_tenant)
    for _ in range(5):
        callbacks.on_contact_outcome(build_contact(queue, status=ContactStatus.SENT), "contact.sent")
    assert sorted(CallbackDelivery.objects.values_list("item_count", flat=True)) == [1, 2, 2]


def test_webhook_driven_contact_events_are_recorded(client_tenant):
    from apps.billing.services.delivery_status import apply_provider_status

    set_callback(client_tenant, "https://erp.example.com/hooks", contact_events=True)
    contact = build_contact(queue_for(client_tenant), status=ContactStatus.SENT, provider_message_id="3EB0CB0000000001")
    apply_provider_status(
        tenant_id=client_tenant.tenant.pk, provider_message_id="3EB0CB0000000001", provider_status="READ"
    )
    [batch] = CallbackDelivery.objects.filter(event="contact.batch")
    assert [e["type"] for e in batch.payload["data"]["events"]] == ["contact.read"]
    assert batch.payload["data"]["events"][0]["status"] == "read"
    contact.refresh_from_db()
    assert contact.status == ContactStatus.READ


# ----------------------------------------------------------------------------- hooks from queue control
def test_pause_resume_and_cancel_record_queue_events(client_tenant):
    set_callback(client_tenant, "https://erp.example.com/hooks")
    queue = queue_for(client_tenant, status=QueueStatus.RUNNING)
    queue_control(queue=queue, action="pause", actor=OPERATOR)
    queue_control(queue=queue, action="resume", actor=OPERATOR)
    queue_control(queue=queue, action="cancel", actor=OPERATOR)
    events = list(CallbackDelivery.objects.order_by("id").values_list("event", flat=True))
    assert events == ["queue.paused", "queue.resumed", "queue.cancelled"]
    paused = CallbackDelivery.objects.get(event="queue.paused")
    assert paused.payload["data"]["reason"] == "manual" and paused.payload["data"]["status"] == "paused"
    assert CallbackDelivery.objects.get(event="queue.cancelled").payload["data"]["status"] == "cancelled"


def test_a_refused_control_action_records_no_event(client_tenant):
    from apps.common.exceptions import ApplicationError

    set_callback(client_tenant, "https://erp.example.com/hooks")
    queue = queue_for(client_tenant, status=QueueStatus.COMPLETED)
    with pytest.raises(ApplicationError):
        queue_control(queue=queue, action="pause", actor=OPERATOR)
    assert not CallbackDelivery.objects.exists()


# ----------------------------------------------------------------------------- admin
def test_admin_send_again_requeues_with_the_same_webhook_id(client_tenant, superuser_client):
    set_callback(client_tenant, "https://erp.example.com/hooks")
    delivery = callbacks.on_queue_started(queue_for(client_tenant))
    CallbackDelivery.objects.filter(pk=delivery.pk).update(
        status="failed", attempts=12, last_error="HTTP 500", next_attempt_at=timezone.now() - timedelta(days=2)
    )
    response = superuser_client.post(
        "/admin/billing/callbackdelivery/", {"action": "send_again", "_selected_action": [delivery.pk]}
    )
    assert response.status_code == 302
    refreshed = CallbackDelivery.objects.get(pk=delivery.pk)
    assert (refreshed.status, refreshed.webhook_id, refreshed.last_error) == ("pending", delivery.webhook_id, "")
    assert refreshed.next_attempt_at <= timezone.now() < refreshed.give_up_at
    assert superuser_client.get(f"/admin/billing/callbackdelivery/{delivery.pk}/change/").status_code == 200


def test_staff_see_only_their_tenants_deliveries(client_tenant, client):
    from apps.billing.tests.support.api import make_tenant
    from apps.billing.tests.support.builders import build_staff

    other = make_tenant("cb-other")
    set_callback(client_tenant, "https://erp.example.com/a")
    set_callback(other, "https://erp.example.com/b")
    mine = callbacks.on_queue_started(queue_for(client_tenant))
    theirs = callbacks.on_queue_started(queue_for(other))
    client.force_login(build_staff(client_tenant.tenant))
    page = client.get("/admin/billing/callbackdelivery/").content.decode()
    assert mine.webhook_id in page and theirs.webhook_id not in page
