"""A charge's status changes (and amount/due-date changes), for its timeline. Messages,
receipts and replies are not copied here: the timeline reads them from billing's contacts."""

from __future__ import annotations

from django.db import models

from apps.charges.constants import ChangeSource, ChargeEventKind


class ChargeEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    charge = models.ForeignKey("charges.Charge", on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=ChargeEventKind.choices)
    source = models.CharField(max_length=10, choices=ChangeSource.choices)
    occurred_at = models.DateTimeField(help_text="When it happened (a provider event's own time).")
    data = models.JSONField(default=dict, blank=True, help_text="Ids and amounts only; never message texts.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["charge", "occurred_at"], name="charge_event_charge_at")]

    def __str__(self) -> str:
        return f"{self.kind} ({self.source})"
