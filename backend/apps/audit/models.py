"""The audit trail: who changed what, when, from where — for a tenant's staff and for us.

Append-only twice over: the admin grants nobody change or delete, and a database trigger
(migration 0001) refuses UPDATE and DELETE on the table whoever asks, so not even a bug or
a shell session rewrites history. The tenant is a plain reference without a foreign-key
constraint: deleting a tenant must not need to delete (or be blocked by) its trail.

Details carry ids, counts and field names only: never a phone, a name, a text or a secret.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    API_KEY_ISSUED = "api_key.issued", "API key issued"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    API_KEY_CHANGED = "api_key.changed", "API key changed"
    QUEUE_PAUSED = "queue.paused", "Queue paused"
    QUEUE_RESUMED = "queue.resumed", "Queue resumed"
    QUEUE_CANCELLED = "queue.cancelled", "Queue cancelled"
    TEMPLATE_SAVED = "template.saved", "Template saved"
    TEMPLATE_DELETED = "template.deleted", "Template deleted"
    CADENCE_SAVED = "cadence.saved", "Cadence saved"
    CADENCE_DELETED = "cadence.deleted", "Cadence deleted"
    INSTANCE_SAVED = "instance.saved", "WhatsApp instance saved"
    INSTANCE_DELETED = "instance.deleted", "WhatsApp instance deleted"
    INSTANCE_ATTENTION_CLEARED = "instance.attention_cleared", "Instance attention flag cleared"
    CALLBACK_SECRET_REGENERATED = "config.callback_secret_regenerated", "Callback secret regenerated"
    DATA_SUBJECT_EXPORTED = "data_subject.exported", "Data-subject data exported"
    DATA_SUBJECT_ERASED = "data_subject.erased", "Data-subject data erased"


class ActorKind(models.TextChoices):
    USER = "user", "Person (admin)"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "Operator command"


class AuditEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    occurred_at = models.DateTimeField(default=timezone.now)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True, help_text="User id or API key id.")
    actor_label = models.CharField(max_length=150, blank=True, help_text="Username or key prefix, as it was then.")
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=50, choices=AuditAction.choices)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="Ids, counts and field names; no personal data.")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-occurred_at"], name="audit_tenant_occurred")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_label or self.actor_kind}"
