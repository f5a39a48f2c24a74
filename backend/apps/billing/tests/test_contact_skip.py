"""skip_unsent_contacts: only unsent contacts of the caller's tenant become `skipped`, claimed
ones included, each queue's counter follows, and the worker's start_sending refuses them."""

from __future__ import annotations

import pytest

from apps.billing.models import BillingContact, BillingQueue
from apps.billing.services import queue_lease
from apps.billing.services.contact_skip import skip_unsent_contacts
from apps.billing.tests.support.builders import build_contact, build_queue

pytestmark = pytest.mark.django_db


def test_unsent_contacts_are_skipped_with_the_reason_and_counted_per_queue(tenant, template):
    first, second = build_queue(tenant, template=template, total=3), build_queue(tenant, template=template, total=1)
    pending, retry, sent = (build_contact(first, status=s) for s in ("pending", "pending_retry", "sent"))
    in_flight = build_contact(second, status="sending")
    other = build_contact(second)
    skipped = skip_unsent_contacts(
        tenant=tenant,
        contact_ids=[pending.pk, retry.pk, sent.pk, in_flight.pk, other.pk],
        code="charge_closed",
        reason="paid",
    )
    assert skipped == 3
    statuses = dict(BillingContact.objects.values_list("pk", "status"))
    assert statuses == {
        pending.pk: "skipped",
        retry.pk: "skipped",
        sent.pk: "sent",
        in_flight.pk: "sending",
        other.pk: "skipped",
    }
    assert BillingContact.objects.get(pk=pending.pk).error_code == "charge_closed"
    assert BillingContact.objects.get(pk=pending.pk).last_error == "paid"
    assert dict(BillingQueue.objects.values_list("pk", "skipped_count")) == {first.pk: 2, second.pk: 1}
    assert skip_unsent_contacts(tenant=tenant, contact_ids=[pending.pk], code="charge_closed", reason="paid") == 0


def test_another_tenants_contacts_are_left_alone(tenant, other_tenant, template):
    theirs = build_contact(build_queue(other_tenant, total=1))
    assert skip_unsent_contacts(tenant=tenant, contact_ids=[theirs.pk], code="charge_closed", reason="paid") == 0
    assert BillingContact.objects.get(pk=theirs.pk).status == "pending"


def test_a_contact_a_worker_already_claimed_is_never_started(tenant, template):
    queue = build_queue(tenant, template=template, total=2)
    skipped_one, kept = build_contact(queue), build_contact(queue)
    lease = queue_lease.claim_queue(queue.pk, "worker-1")
    claimed = {c.pk: c for c in queue_lease.claim_contacts(lease, 10)}
    skip_unsent_contacts(tenant=tenant, contact_ids=[skipped_one.pk], code="charge_closed", reason="cancelled")
    assert BillingContact.objects.get(pk=skipped_one.pk).claim_token is None
    assert not queue_lease.start_sending(lease, claimed[skipped_one.pk], text="Olá")
    assert queue_lease.start_sending(lease, claimed[kept.pk], text="Olá")
    # Nothing left to claim: only the message in flight keeps the queue open until its outcome.
    assert queue_lease.unsent_summary(queue.pk)[:2] == (1, 0)
