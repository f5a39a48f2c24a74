"""The processing state of one billing campaign: what a worker claims, pauses and completes.

The database is the source of truth; a broker message only names a queue. A worker owns a
running queue through `processing_by` + `lease_token` (a fencing token that changes on every
claim, so a worker that lost its lease cannot write as if it still held it) and keeps it with
`last_heartbeat`. `last_published_at` lets the periodic task re-publish pending queues the
broker never delivered.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import F, Q

from apps.billing.constants import FINAL_QUEUE_STATUSES, QueueStatus, TemplateType, TransitionKind
from apps.billing.models.status_machine import StatusMachineMixin


class BillingQueue(StatusMachineMixin):
    status_kind = TransitionKind.QUEUE

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="billing_queues")
    billing_campaign = models.OneToOneField("billing.BillingCampaign", on_delete=models.CASCADE, related_name="queue")
    template_type = models.CharField(max_length=20, choices=TemplateType.choices)
    instance = models.ForeignKey(
        "connections.WhatsAppInstance",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="billing_queues",
    )
    status = models.CharField(max_length=24, choices=QueueStatus.choices, default=QueueStatus.PENDING)
    priority = models.PositiveSmallIntegerField(default=1)
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="Do not start before this time.")

    # Ownership by a worker.
    processing_by = models.CharField(
        max_length=200, blank=True, help_text="The consumer process holding the queue (ConsumerProcess id)."
    )
    lease_token = models.UUIDField(null=True, blank=True, help_text="Fencing token; new on every claim.")
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When this queue last handed a message to the provider: the pace is recovered from it "
        "when Redis lost it.",
    )

    # Broker outbox bookkeeping.
    last_published_at = models.DateTimeField(null=True, blank=True)
    publish_count = models.PositiveIntegerField(default=0)

    # Counters (delivered/read/replied are subsets of sent).
    total_contacts = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    cancelled_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    delivered_count = models.PositiveIntegerField(default=0)
    read_count = models.PositiveIntegerField(default=0)
    replied_count = models.PositiveIntegerField(default=0)

    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=200, blank=True)
    next_resume_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "billing queue"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "status"], name="billing_queue_tenant_status"),
            models.Index(fields=["status", "scheduled_for"], name="billing_queue_status_sched"),
            models.Index(fields=["processing_by", "status"], name="billing_queue_worker_status"),
            models.Index(fields=["created_at"], name="billing_queue_created"),
            models.Index(fields=["status", "next_resume_at"], name="billing_queue_status_resume"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=QueueStatus.values), name="billing_queue_status_valid"),
            models.CheckConstraint(condition=Q(template_type__in=TemplateType.values), name="billing_queue_type_valid"),
            models.CheckConstraint(condition=Q(priority__lte=10), name="billing_queue_priority_range"),
            models.CheckConstraint(
                condition=Q(
                    total_contacts__gte=0,
                    sent_count__gte=0,
                    failed_count__gte=0,
                    cancelled_count__gte=0,
                    skipped_count__gte=0,
                    delivered_count__gte=0,
                    read_count__gte=0,
                    replied_count__gte=0,
                    publish_count__gte=0,
                ),
                name="billing_queue_counters_non_negative",
            ),
            # pending_count can never go below zero: no contact is counted twice.
            models.CheckConstraint(
                condition=Q(
                    total_contacts__gte=F("sent_count") + F("failed_count") + F("cancelled_count") + F("skipped_count")
                ),
                name="billing_queue_processed_within_total",
            ),
        ]

    #: The estimated finish, set by the status views for the serializer (selectors.queue_eta); not a column.
    eta_value: datetime | None

    def __str__(self) -> str:
        return f"Queue {self.pk} ({self.status})"

    # ------------------------------------------------------------------ progress
    @property
    def processed_count(self) -> int:
        return self.sent_count + self.failed_count + self.cancelled_count + self.skipped_count

    @property
    def pending_count(self) -> int:
        return max(self.total_contacts - self.processed_count, 0)

    @property
    def progress_percent(self) -> float:
        if not self.total_contacts:
            return 100.0 if self.is_final else 0.0
        return round(100.0 * self.processed_count / self.total_contacts, 1)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_QUEUE_STATUSES

    # ------------------------------------------------------------------ transitions
    @staticmethod
    def back_to_pending_fields(*, due_at: datetime | None = None) -> dict[str, Any]:
        """What going back to pending writes, however a queue gets there (released by its worker
        or as stale, resumed by a person, its hours or its number): nobody holds it, no pause
        shown, due at `due_at` (at once when None), and unpublished, so the periodic task
        publishes it if the caller does not."""
        return {
            "processing_by": "",
            "lease_token": None,
            "pause_reason": "",
            "next_resume_at": due_at,
            "last_published_at": None,
        }

    def transition_side_effects(self, new_status: str, now: datetime) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if new_status == QueueStatus.RUNNING:
            if self.started_at is None:
                fields["started_at"] = now
            fields["pause_reason"] = ""
            fields["next_resume_at"] = None
        elif new_status == QueueStatus.PENDING:
            fields.update(self.back_to_pending_fields())
        elif new_status in (QueueStatus.PAUSED, QueueStatus.PAUSED_BUSINESS_HOURS, QueueStatus.INSTANCE_DOWN):
            fields.update(processing_by="", lease_token=None)
        elif new_status in FINAL_QUEUE_STATUSES:
            fields.update(processing_by="", lease_token=None, completed_at=now, next_resume_at=None)
        return fields
