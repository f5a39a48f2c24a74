"""`connection.update`: health recorded at once; `close` pauses the instance's running queues."""

from __future__ import annotations

import uuid

from django.utils import timezone

from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import BillingContact, BillingQueue, CallbackDelivery
from apps.billing.services import queue_lease
from apps.billing.tests.support.builders import build_contact, build_queue
from apps.billing.tests.support.webhooks import CONNECTION_UPDATE_V2, envelope
from apps.connections.models import WhatsAppInstance


def running_queue(hook, **fields) -> tuple[BillingQueue, queue_lease.Lease]:
    queue = build_queue(hook.tenant, template=hook.template(), total=3, instance=hook.instance, **fields)
    for _ in range(3):
        build_contact(queue)
    lease = queue_lease.claim_queue(queue.pk, "worker-test:1")
    assert lease is not None
    return queue, lease


def test_close_records_health_and_pauses_running_queues_releasing_claims(hook):
    hook.api.config.callback_url = "https://erp.example.com/hooks"
    hook.api.config.save()
    queue, lease = running_queue(hook)
    claimed = queue_lease.claim_contacts(lease, 2)
    assert queue_lease.start_sending(lease, claimed[0], text="Olá")  # one in flight at the provider
    pending_queue = build_queue(hook.tenant, template=hook.template(), total=1, instance=hook.instance)

    response = hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance))
    assert response.status_code == 200
    assert response.json()["outcome"] == "paused_1_queues"

    instance = WhatsAppInstance.objects.get(pk=hook.instance.pk)
    assert instance.health_state == "close" and "428" in instance.health_reason and instance.health_checked_at
    queue.refresh_from_db()
    assert queue.status == QueueStatus.INSTANCE_DOWN
    assert queue.pause_reason.startswith("instance_down") and queue.lease_token is None and queue.processing_by == ""
    # claimed-but-unsent contacts are free again; the in-flight one keeps its claim, so the
    # worker can still record its real outcome (queue_lease fences outcomes on the contact).
    unsent = BillingContact.objects.get(pk=claimed[1].pk)
    assert unsent.claim_token is None and unsent.status == ContactStatus.PENDING
    assert queue_lease.record_sent(lease, claimed[0], provider_message_id="3EB0INFLIGHT0001", rendered="x")
    assert queue_lease.current_status(lease) is None  # the worker stops before its next message
    pending_queue.refresh_from_db()
    assert pending_queue.status == QueueStatus.PENDING  # no pending → instance_down in the state machine
    paused = CallbackDelivery.objects.get(event="queue.paused")
    assert paused.payload["data"]["reason"] == "instance_down" and paused.payload["data"]["queue_id"] == str(queue.pk)


def test_open_only_records_health(hook):
    queue, _ = running_queue(hook)
    queue_lease.release(
        queue_lease.Lease(queue.pk, BillingQueue.objects.get(pk=queue.pk).lease_token, "w"),
        QueueStatus.INSTANCE_DOWN,
        pause_reason="instance_down: test",
    )
    response = hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance, state="open", statusReason=200))
    assert response.json()["outcome"] == "health_recorded"
    assert WhatsAppInstance.objects.get(pk=hook.instance.pk).health_state == "open"
    assert BillingQueue.objects.get(pk=queue.pk).status == QueueStatus.INSTANCE_DOWN  # recovery task's job


def test_connecting_and_refused_states(hook):
    hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance, state="connecting"))
    assert WhatsAppInstance.objects.get(pk=hook.instance.pk).health_state == "connecting"
    hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance, state="refused"))
    assert WhatsAppInstance.objects.get(pk=hook.instance.pk).health_state == "close"


def test_other_instances_queues_are_left_alone(hook):
    from apps.billing.tests.support.api import make_tenant
    from apps.billing.tests.support.webhooks import Hook

    other = Hook(make_tenant("conn-other"), hook.client)
    theirs, _ = running_queue(other)
    hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance))
    theirs.refresh_from_db()
    assert theirs.status == QueueStatus.RUNNING


def test_an_unknown_state_is_ignored(hook):
    before = WhatsAppInstance.objects.get(pk=hook.instance.pk).health_state
    response = hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance, state="sleeping"))
    assert response.json()["outcome"] == "ignored"
    assert WhatsAppInstance.objects.get(pk=hook.instance.pk).health_state == before


def test_a_queue_whose_lease_changed_meanwhile_is_not_touched_twice(hook):
    queue, lease = running_queue(hook)
    queue_lease.hand_back(lease)
    BillingQueue.objects.filter(pk=queue.pk).update(
        status=QueueStatus.RUNNING, lease_token=uuid.uuid4(), processing_by="someone", last_heartbeat=timezone.now()
    )
    response = hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance))
    assert response.json()["outcome"] == "paused_1_queues"
