"""One accepted send request: the billing side of a generic `campaigns.Campaign`.

`(tenant, template_type, external_id)` is unique: the client's id is the idempotency key. A
repeated request with the same id and the same content (`request_fingerprint`) gets the
original answer (`response_snapshot`); the same id with other content is a conflict.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from apps.billing.constants import TemplateType


class BillingCampaign(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="billing_campaigns")
    campaign = models.OneToOneField("campaigns.Campaign", on_delete=models.CASCADE, related_name="billing")
    template = models.ForeignKey("billing.BillingTemplate", on_delete=models.PROTECT, related_name="campaigns")
    # Copied from the template so the database can hold the uniqueness rule below.
    template_type = models.CharField(max_length=20, choices=TemplateType.choices)
    external_id = models.CharField(max_length=200, help_text="The client's id for this request.")
    request_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the canonical request, for idempotent retries."
    )
    response_snapshot = models.JSONField(default=dict, blank=True, help_text="The original 202 answer.")
    callback_url = models.URLField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_by_key = models.ForeignKey(
        "billing.BillingAPIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="campaigns"
    )
    instance = models.ForeignKey(
        "connections.WhatsAppInstance",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="billing_campaigns",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "billing campaign"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["external_id"], name="billing_camp_external_id"),
            models.Index(fields=["created_at"], name="billing_campaign_created"),
            models.Index(fields=["tenant", "created_at"], name="billing_camp_tenant_created"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "template_type", "external_id"],
                name="billing_campaign_unique_external_id",
                violation_error_message="A campaign with this external id already exists for this type.",
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="billing_campaign_external_id_not_blank"),
            models.CheckConstraint(
                condition=Q(template_type__in=TemplateType.values), name="billing_campaign_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template_type} {self.external_id}"

    def clean(self) -> None:
        super().clean()
        errors = {}
        if self.template_id is not None:
            if self.template.template_type != self.template_type:
                errors["template_type"] = "Must match the template's type."
            if self.tenant_id is not None and self.template.tenant_id != self.tenant_id:
                errors["template"] = "The template belongs to another tenant."
        if self.instance is not None and self.tenant_id is not None and self.instance.tenant_id != self.tenant_id:
            errors["instance"] = "The instance belongs to another tenant."
        if errors:
            raise ValidationError(errors)
