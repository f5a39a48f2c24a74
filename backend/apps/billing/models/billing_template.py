"""Message templates per tenant and type, each with up to five active variations that the
rotation alternates between (WhatsApp blocks senders that repeat one text to many people)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from apps.billing.constants import MAX_ACTIVE_VARIATIONS, RotationStrategy, TemplateType
from apps.billing.templating.engine import BillingTemplateEngine
from apps.tenancy.creditor import MISSING_CREDITOR_MESSAGE, missing_creditor_variables

ACTIVE_LIMIT_MESSAGE = f"A template can have at most {MAX_ACTIVE_VARIATIONS} active variations."
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def validate_variable_names(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("Enter a list of variable names.", code="invalid")
    bad = [str(item) for item in value if not isinstance(item, str) or not _VARIABLE_NAME.match(item)]
    if bad:
        raise ValidationError(
            "Not a variable name (letters, digits, underscore): %(bad)s",
            code="invalid_variable_name",
            params={"bad": ", ".join(bad)},
        )


class BillingTemplateQuerySet(models.QuerySet["BillingTemplate"]):
    def for_tenant(self, tenant) -> BillingTemplateQuerySet:
        return self.filter(tenant=tenant)

    def default_for(self, tenant, template_type: str) -> BillingTemplate | None:
        """The tenant's active default template of this type (the database allows at most one)."""
        return self.filter(tenant=tenant, template_type=template_type, is_default=True, is_active=True).first()


class BillingTemplate(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="billing_templates")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    template_type = models.CharField(max_length=20, choices=TemplateType.choices)
    rotation_strategy = models.CharField(
        max_length=20, choices=RotationStrategy.choices, default=RotationStrategy.RANDOM
    )
    is_default = models.BooleanField(
        default=False, help_text="Used when a request names no template (one per type and tenant)."
    )
    is_active = models.BooleanField(default=True)
    required_variables = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_variable_names],
        help_text='Variables every request must supply, e.g. ["nome", "valor"].',
    )
    # Next round-robin slot for the sequential strategy; advanced atomically in blocks.
    rotation_cursor = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BillingTemplateQuerySet.as_manager()

    class Meta:
        verbose_name = "billing template"
        ordering = ["tenant", "template_type", "name"]
        indexes = [models.Index(fields=["tenant", "template_type", "is_active"], name="billing_tpl_tenant_type")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="billing_template_unique_name",
                violation_error_message="This tenant already has a template with this name.",
            ),
            models.UniqueConstraint(
                fields=["tenant", "template_type"],
                condition=Q(is_default=True),
                name="billing_template_one_default_per_type",
                violation_error_message="This tenant already has a default template of this type.",
            ),
            models.CheckConstraint(
                condition=Q(template_type__in=TemplateType.values), name="billing_template_type_valid"
            ),
            models.CheckConstraint(
                condition=Q(rotation_strategy__in=RotationStrategy.values), name="billing_template_strategy_valid"
            ),
            models.CheckConstraint(
                condition=~Q(is_default=True, is_active=False),
                name="billing_template_default_is_active",
                violation_error_message="A default template must be active.",
            ),
            models.CheckConstraint(condition=Q(rotation_cursor__gte=0), name="billing_template_cursor_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.template_type})"

    @property
    def priority(self) -> int:
        return TemplateType.priority_of(self.template_type)

    def active_variations(self) -> models.QuerySet[BillingTemplateVariation]:
        """In rotation order (stable: the sequential strategy maps slot k to item k mod n)."""
        return self.variations.filter(is_active=True).order_by("created_at", "id")


class BillingTemplateVariation(models.Model):
    template = models.ForeignKey(BillingTemplate, on_delete=models.CASCADE, related_name="variations")
    name = models.CharField(max_length=100)
    content = models.TextField(help_text="Text with {{variables}} and {{#if x}}…{{/if}} blocks.")
    weight = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Relative share under the weighted strategy."
    )
    is_active = models.BooleanField(default=True)
    used_count = models.PositiveBigIntegerField(default=0, editable=False)
    sent_count = models.PositiveBigIntegerField(default=0, editable=False)
    failed_count = models.PositiveBigIntegerField(default=0, editable=False)
    delivered_count = models.PositiveBigIntegerField(default=0, editable=False)
    read_count = models.PositiveBigIntegerField(default=0, editable=False)
    replied_count = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    #: Set by the admin inline formset, which checks the active limit over the whole submitted
    #: set (a row-by-row database count would be wrong while rows are swapped in one save).
    skip_active_limit_check = False

    class Meta:
        verbose_name = "template variation"
        ordering = ["template", "created_at", "id"]
        indexes = [models.Index(fields=["template", "is_active"], name="billing_var_template_active")]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "name"],
                name="billing_variation_unique_name",
                violation_error_message="This template already has a variation with this name.",
            ),
            models.CheckConstraint(condition=Q(weight__gte=1), name="billing_variation_weight_positive"),
            models.CheckConstraint(
                condition=Q(
                    used_count__gte=0,
                    sent_count__gte=0,
                    failed_count__gte=0,
                    delivered_count__gte=0,
                    read_count__gte=0,
                    replied_count__gte=0,
                ),
                name="billing_variation_counters_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------------ validation
    def clean(self) -> None:
        super().clean()
        errors: dict[str, list[str | ValidationError]] = {}
        if self.content:
            from apps.billing.services.template_preview import (
                TemplateContentError,
                clean_template_content,
            )

            try:
                self.content = clean_template_content(self.content)
            except TemplateContentError as exc:
                errors.setdefault("content", []).append(str(exc))
            else:
                if self.is_active and self._missing_creditor_variables():
                    errors.setdefault("content", []).append(
                        ValidationError(MISSING_CREDITOR_MESSAGE, code="missing_creditor_variables")
                    )
        if self.is_active and not self.skip_active_limit_check and self.template_id is not None:
            others = (
                BillingTemplateVariation.objects.filter(template_id=self.template_id, is_active=True)
                .exclude(pk=self.pk)
                .count()
            )
            if others >= MAX_ACTIVE_VARIATIONS:
                errors.setdefault(NON_FIELD_ERRORS, []).append(ACTIVE_LIMIT_MESSAGE)
        if errors:
            raise ValidationError(errors)

    def _missing_creditor_variables(self) -> list[str]:
        if self.template_id is None and not BillingTemplateVariation.template.is_cached(self):
            return []
        return missing_creditor_variables(
            self.template.template_type, BillingTemplateEngine.variables_used(self.content)
        )

    # ------------------------------------------------------------------ rates (percent, None if no base)
    @staticmethod
    def _rate(part: int, whole: int) -> float | None:
        return round(100.0 * part / whole, 1) if whole else None

    @property
    def delivery_rate(self) -> float | None:
        return self._rate(self.delivered_count, self.sent_count)

    @property
    def read_rate(self) -> float | None:
        return self._rate(self.read_count, self.sent_count)

    @property
    def reply_rate(self) -> float | None:
        return self._rate(self.replied_count, self.sent_count)

    @property
    def failure_rate(self) -> float | None:
        return self._rate(self.failed_count, self.sent_count + self.failed_count)
