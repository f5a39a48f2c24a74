"""What a customer's reply makes the service do, per tenant (services/reply_actions.py).

One row per tenant, created with the defaults the first time a reply needs it. The defaults are
the safe ones: hold a debtor who says they paid for 3 days, suppress a number that reached the
wrong person, answer a request for the payment data automatically, hand negotiations and
requests for a person to the tenant's staff, and never send the customer's words to the CRM
(LGPD) unless the tenant opts in.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q


class ReplySettings(models.Model):
    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="reply_settings")
    min_confidence = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Hold, suppress and answer automatically only at this confidence or above; below it "
        "the conversation is flagged for a person instead. A receipt image alone scores 0.7.",
    )
    hold_days_on_claims_paid = models.PositiveSmallIntegerField(
        default=3,
        validators=[MaxValueValidator(30)],
        help_text='"Já paguei": hold the debtor\'s pending messages this many days (0: do not hold).',
    )
    suppress_wrong_person = models.BooleanField(
        default=True,
        help_text='"Número errado": suppress the phone and stop its pending messages.',
    )
    answer_payment_info = models.BooleanField(
        default=True,
        help_text='"Me manda o pix": answer with the payment data (once a day per conversation).',
    )
    flag_negotiate = models.BooleanField(default=True, help_text="Flag negotiations for a person.")
    flag_talk_to_human = models.BooleanField(default=True, help_text="Flag requests for a person.")
    callback_include_text = models.BooleanField(
        default=False,
        help_text="Send the customer's words in reply.received callbacks (LGPD: off by default).",
    )
    payment_info_template = models.ForeignKey(
        "billing.BillingTemplate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Notification template of the automatic payment-data answer (its variations rotate).",
    )
    staff_reply_template = models.ForeignKey(
        "billing.BillingTemplate",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Notification template a person's reply is sent with: {{message}}.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "reply settings"
        verbose_name_plural = "reply settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(min_confidence__gte=0, min_confidence__lte=1), name="reply_settings_confidence_range"
            ),
            models.CheckConstraint(condition=Q(hold_days_on_claims_paid__lte=30), name="reply_settings_hold_days_max"),
        ]

    def __str__(self) -> str:
        return f"Reply settings of {self.tenant}"

    @classmethod
    def for_tenant(cls, tenant) -> ReplySettings:
        """The tenant's settings, created with the defaults the first time (race-safe)."""
        settings = cls.objects.filter(tenant=tenant).first()
        if settings is not None:
            return settings
        try:
            with transaction.atomic():
                return cls.objects.create(tenant=tenant)
        except IntegrityError:  # a concurrent first reply created it
            return cls.objects.get(tenant=tenant)
