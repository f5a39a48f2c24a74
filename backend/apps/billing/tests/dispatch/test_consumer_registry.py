"""Consumer processes heartbeat in PostgreSQL; a silent one's queues are found in seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.dispatch import consumer_registry
from apps.billing.models import BillingQueue, ConsumerProcess
from apps.billing.services import queue_lease
from apps.billing.tests.support.builders import build_queue, build_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():  # the plain tenant (this folder's `tenant` is a pipeline tenant)
    return build_tenant()


def claimed(tenant, holder: str) -> BillingQueue:
    queue = build_queue(tenant, total=1)
    assert queue_lease.claim_queue(queue.pk, holder) is not None
    return queue


def test_a_heartbeat_registers_the_process_and_refreshes_only_the_queues_it_tends(tenant):
    tended, forgotten, other = claimed(tenant, "me:1:a"), claimed(tenant, "me:1:a"), claimed(tenant, "you:2:b")
    long_ago = timezone.now() - timedelta(hours=1)
    BillingQueue.objects.update(last_heartbeat=long_ago)
    touched = consumer_registry.heartbeat("me:1:a", held=[str(tended.pk), str(other.pk)], started_at=timezone.now())
    assert touched == 1, "a queue another process holds is not ours to refresh"
    beats = dict(BillingQueue.objects.values_list("pk", "last_heartbeat"))
    assert beats[tended.pk] > long_ago and beats[forgotten.pk] == long_ago and beats[other.pk] == long_ago
    row = ConsumerProcess.objects.get(pk="me:1:a")
    assert row.queues_held == 2 and (timezone.now() - row.last_seen_at).total_seconds() < 5


def test_death_is_declared_after_the_bound_and_never_before_three_heartbeats(settings):
    settings.BILLING_CONSUMER_HEARTBEAT_SECONDS = 5
    settings.BILLING_CONSUMER_DEAD_AFTER_SECONDS = 30
    assert consumer_registry.dead_after() == 30
    settings.BILLING_CONSUMER_DEAD_AFTER_SECONDS = 4
    assert consumer_registry.dead_after() == 15


def test_orphaned_queues_are_those_of_dead_or_unknown_holders(tenant, settings):
    settings.BILLING_CONSUMER_DEAD_AFTER_SECONDS = 30
    now = timezone.now()
    alive, dead = claimed(tenant, "alive:1:a"), claimed(tenant, "dead:2:b")
    unknown_old, unknown_new = claimed(tenant, "ghost:3:c"), claimed(tenant, "ghost:4:d")
    consumer_registry.heartbeat("alive:1:a", held=[str(alive.pk)], started_at=now)
    ConsumerProcess.objects.create(
        id="dead:2:b", hostname="h", pid=2, started_at=now, last_seen_at=now - timedelta(seconds=31)
    )
    BillingQueue.objects.filter(pk=unknown_old.pk).update(last_heartbeat=now - timedelta(seconds=31))
    orphans = dict(consumer_registry.orphaned_queues())
    assert orphans == {str(dead.pk): "dead:2:b", str(unknown_old.pk): "ghost:3:c"}
    assert str(unknown_new.pk) not in orphans, "a holder not yet seen gets the bound from its queue's heartbeat"


def test_a_dead_holders_queue_is_released_once_and_its_row_forgotten_after(tenant):
    now = timezone.now()
    queue = claimed(tenant, "dead:2:b")
    ConsumerProcess.objects.create(
        id="dead:2:b", hostname="h", pid=2, started_at=now, last_seen_at=now - timedelta(hours=1)
    )
    assert consumer_registry.forget_dead_consumers() == 0, "it still holds a queue"
    assert queue_lease.release_stale(queue.pk, now, holder="dead:2:b")
    assert not queue_lease.release_stale(queue.pk, now, holder="dead:2:b"), "a duplicate changes nothing"
    assert BillingQueue.objects.get(pk=queue.pk).status == "pending"
    assert consumer_registry.forget_dead_consumers() == 1
