"""Generic campaign records shared by every feature that messages many contacts
(billing today; marketing campaigns later). Billing keeps its own details 1:1 beside these."""

from __future__ import annotations

import uuid

from django.db import models


class Campaign(models.Model):
    class Source(models.TextChoices):
        BILLING = "billing", "Billing"
        MANUAL = "manual", "Manual"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    total_contacts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="campaign_tenant_created")]

    def __str__(self) -> str:
        return self.name


class CampaignContact(models.Model):
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="campaign_contacts")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="contacts")
    phone = models.CharField(max_length=20, help_text="E.164")
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "phone"], name="campaign_contact_unique_phone")]

    def __str__(self) -> str:
        return self.name or "contact"
