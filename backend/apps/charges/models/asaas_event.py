"""Asaas webhook events already processed, by their `id` (Asaas delivers at least once).
Only events for a known charge are kept: an unknown charge changes nothing."""

from __future__ import annotations

from django.db import models

from apps.charges.constants import AsaasOutcome


class AsaasEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    event_id = models.CharField(max_length=200)
    event = models.CharField(max_length=60)
    payment_id = models.CharField(max_length=100, blank=True)
    charge = models.ForeignKey("charges.Charge", on_delete=models.CASCADE, related_name="asaas_events")
    occurred_at = models.DateTimeField(help_text="The event's dateCreated.")
    outcome = models.CharField(max_length=10, choices=AsaasOutcome.choices)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"], name="asaas_event_once")]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} ({self.outcome})"
