"""Per-tenant charge settings: the per-debtor daily cap (CDC art. 42), the escalation age, the
default cadence, the report's conversion window and the Asaas webhook credentials.

The Asaas URL carries `asaas_url_token` (it names the tenant); Asaas sends the token chosen at
set-up in the `asaas-access-token` header, and only its SHA-256 is stored, compared in
constant time. Empty `asaas_token_hash`: Asaas webhooks are off for the tenant (401).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def new_url_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ChargeSettings(models.Model):
    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="charge_settings")
    debtor_daily_cap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Collection messages a debtor may get per day, across all charges and cadences (CDC art. 42).",
    )
    escalation_age_days = models.PositiveIntegerField(
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="A charge still open this many days after its due date is escalated: its cadence stops.",
    )
    default_cadence = models.ForeignKey(
        "charges.Cadence",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Used by charges that name no cadence.",
    )
    conversion_window_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text="Recovery report: a payment counts for a message if it came within this many days.",
    )
    asaas_url_token = models.CharField(max_length=64, unique=True, default=new_url_token, editable=False)
    asaas_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "charge settings"
        verbose_name_plural = "charge settings"

    def __str__(self) -> str:
        return f"Charge settings of {self.tenant}"

    @classmethod
    def for_tenant(cls, tenant) -> ChargeSettings:
        settings, _ = cls.objects.get_or_create(tenant=tenant)
        return settings

    def set_asaas_token(self, token: str) -> None:
        self.asaas_token_hash = token_hash(token)
        self.save(update_fields=["asaas_token_hash", "updated_at"])

    def asaas_token_matches(self, token: str | None) -> bool:
        if not self.asaas_token_hash or not token:
            return False
        return hmac.compare_digest(self.asaas_token_hash, token_hash(token))
