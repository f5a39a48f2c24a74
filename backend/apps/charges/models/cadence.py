"""A tenant's dunning plan (régua de cobrança): steps in days from the due date.

A step with `offset_days <= 0` is a reminder (an `upcoming` template), one after the due date
a collection message (`overdue`). `template` empty means the tenant's default template of that
type; `send_from` is an optional local time before which the step's queue does not start.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.billing.constants import TemplateType
from apps.charges.constants import MAX_OFFSET_DAYS, MIN_OFFSET_DAYS


def template_type_for_offset(offset_days: int) -> str:
    return TemplateType.UPCOMING if offset_days <= 0 else TemplateType.OVERDUE


class Cadence(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="cadences", db_index=False)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="cadence_unique_name",
                violation_error_message="A cadence with this name already exists.",
            ),
            models.CheckConstraint(condition=~Q(name=""), name="cadence_name_not_blank"),
        ]

    def __str__(self) -> str:
        return self.name


class CadenceStep(models.Model):
    id = models.BigAutoField(primary_key=True)
    cadence = models.ForeignKey(Cadence, on_delete=models.CASCADE, related_name="steps")
    offset_days = models.SmallIntegerField(
        validators=[MinValueValidator(MIN_OFFSET_DAYS), MaxValueValidator(MAX_OFFSET_DAYS)],
        help_text="Days from the due date: -3 is three days before, 0 the day itself, 5 five days after.",
    )
    template = models.ForeignKey(
        "billing.BillingTemplate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: the tenant's default template of the type.",
    )
    send_from = models.TimeField(null=True, blank=True, help_text="Local time before which the step does not start.")

    class Meta:
        ordering = ["cadence", "offset_days"]
        constraints = [
            models.UniqueConstraint(
                fields=["cadence", "offset_days"],
                name="cadence_step_unique_offset",
                violation_error_message="Two steps of a cadence cannot share an offset.",
            ),
            models.CheckConstraint(
                condition=Q(offset_days__gte=MIN_OFFSET_DAYS, offset_days__lte=MAX_OFFSET_DAYS),
                name="cadence_step_offset_range",
            ),
        ]

    def __str__(self) -> str:
        return f"D{self.offset_days:+d}"

    @property
    def template_type(self) -> str:
        return template_type_for_offset(self.offset_days)

    def clean(self) -> None:
        super().clean()
        if self.template is not None and self.offset_days is not None:
            if self.template.template_type != self.template_type:
                raise ValidationError(
                    {"template": f"A D{self.offset_days:+d} step needs a {self.template_type} template."}
                )
            if self.cadence_id is not None and self.template.tenant_id != self.cadence.tenant_id:
                raise ValidationError({"template": "The template belongs to another tenant."})
