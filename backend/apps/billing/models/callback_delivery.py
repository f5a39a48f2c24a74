"""One signed callback to a client's URL, and its delivery log (an outbox row).

Rows are written in the same transaction as the change they report (services/callbacks.py) and
sent later by the periodic task, never from an API request. `webhook_id` is fixed at creation:
every retry carries the same `webhook-id` header, so the client can de-duplicate. The payload
holds ids and statuses only, never message texts — except `reply.received`, whose `text` the
tenant may opt into (ReplySettings.callback_include_text).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class CallbackEvent(models.TextChoices):
    QUEUE_STARTED = "queue.started", "Queue started"
    QUEUE_PAUSED = "queue.paused", "Queue paused"
    QUEUE_RESUMED = "queue.resumed", "Queue resumed"
    QUEUE_COMPLETED = "queue.completed", "Queue completed"
    QUEUE_CANCELLED = "queue.cancelled", "Queue cancelled"
    CONTACT_SENT = "contact.sent", "Contact sent"
    CONTACT_FAILED = "contact.failed", "Contact failed"
    CONTACT_DELIVERED = "contact.delivered", "Contact delivered"
    CONTACT_READ = "contact.read", "Contact read"
    CONTACT_REPLIED = "contact.replied", "Contact replied"
    CONTACT_OPTED_OUT = "contact.opted_out", "Contact opted out"
    #: A customer wrote back: the intent, what the service did and, if the tenant opts in, the text.
    REPLY_RECEIVED = "reply.received", "Reply received"
    # A debt and its dunning cadence (apps.charges).
    CHARGE_PAID = "charge.paid", "Charge paid"
    CHARGE_REOPENED = "charge.reopened", "Charge reopened"
    CHARGE_ESCALATED = "charge.escalated", "Charge escalated"
    CADENCE_STEP_SKIPPED = "cadence.step_skipped", "Cadence step skipped"
    #: A WhatsApp number was protected (logged out, session lost, "not on WhatsApp" or blocks):
    #: its queues are paused until a person clears it (services/number_protection.py).
    NUMBER_PROTECTED = "number.protected", "Number protected"
    #: Several per-contact events of one queue, sent as one delivery.
    CONTACT_BATCH = "contact.batch", "Per-contact events (batch)"


class CallbackDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="callback_deliveries")
    queue = models.ForeignKey(
        "billing.BillingQueue", on_delete=models.SET_NULL, null=True, blank=True, related_name="callback_deliveries"
    )
    event = models.CharField(max_length=40, choices=CallbackEvent.choices)
    webhook_id = models.CharField(
        max_length=64, unique=True, help_text="The `webhook-id` header, the same on every retry."
    )
    payload = models.JSONField(default=dict)
    url = models.CharField(max_length=500)
    item_count = models.PositiveIntegerField(default=1, help_text="Events carried (more than one for a batch).")

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    give_up_at = models.DateTimeField(help_text="No retry after this; the delivery is marked failed.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "callback delivery"
        verbose_name_plural = "callback deliveries"
        ordering = ["-created_at"]
        indexes = [
            # The periodic task's query: pending rows that are due.
            models.Index(fields=["next_attempt_at"], name="callback_due", condition=Q(status="pending")),
            models.Index(fields=["tenant", "status"], name="callback_tenant_status"),
            models.Index(fields=["created_at"], name="callback_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivered", "failed"]), name="callback_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.webhook_id} ({self.status})"
