"""Tenants: every other table points here, and every query filters by it."""

from __future__ import annotations

import functools
import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from .creditor import clean_document


@functools.cache
def _known_time_zones() -> frozenset[str]:
    """`available_timezones()` walks the tz database's folders on every call (~10 ms, a third of
    creating a tenant); the set does not change while the process runs."""
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in _known_time_zones():
        raise ValidationError(f"Unknown time zone {value!r}", code="invalid_timezone")


class LegalBasis(models.TextChoices):
    CREDIT_PROTECTION = "credit_protection", "Proteção do crédito (art. 7, X)"
    CONTRACT = "contract", "Execução de contrato (art. 7, V)"
    LEGITIMATE_INTEREST = "legitimate_interest", "Legítimo interesse (art. 7, IX)"
    CONSENT = "consent", "Consentimento (art. 7, I)"
    LEGAL_OBLIGATION = "legal_obligation", "Obrigação legal (art. 7, II)"


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, default=settings.DEFAULT_TENANT_TIMEZONE, validators=[validate_timezone])
    is_active = models.BooleanField(default=True)

    # Creditor identification (CDC art. 42-A): printed by every collection message.
    creditor_legal_name = models.CharField(
        max_length=200, blank=True, help_text="Razão social (or the person's full name) of the creditor."
    )
    creditor_document = models.CharField(
        max_length=18, blank=True, help_text="CPF or CNPJ of the creditor (check digits validated; stored as digits)."
    )

    # LGPD: the tenant is the controller; these are its records for this processing.
    legal_basis = models.CharField(
        max_length=30,
        choices=LegalBasis.choices,
        default=LegalBasis.CREDIT_PROTECTION,
        help_text="Legal basis (LGPD art. 7) for messaging these customers.",
    )
    legal_basis_notes = models.TextField(
        blank=True, help_text="Why the basis applies (e.g. the contract or the legitimate-interest assessment)."
    )
    privacy_contact = models.CharField(
        max_length=200, blank=True, help_text="The controller's data-protection officer (encarregado) or channel."
    )
    retention_days = models.PositiveIntegerField(
        default=180,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Days message texts, rendered messages, variables and reply texts are kept (then removed).",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(retention_days__gte=1), name="tenant_retention_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.creditor_document:
            try:
                self.creditor_document = clean_document(self.creditor_document)
            except ValidationError as exc:
                raise ValidationError({"creditor_document": exc}) from None
        if bool(self.creditor_legal_name.strip()) != bool(self.creditor_document):
            raise ValidationError("Informe a razão social e o CPF/CNPJ do credor juntos.", code="incomplete_creditor")

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Membership(models.Model):
    """Attaches a staff user to one tenant; the admin then shows only that tenant's rows."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"
