"""Per-tenant billing settings: pace, retries, limits, business-hours switches, callbacks."""

from __future__ import annotations

import base64
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.billing.constants import TemplateType
from apps.common.encrypted_fields import EncryptedTextField


def new_callback_secret() -> str:
    """Signing secret for the client's callback webhooks, in the Standard Webhooks form
    `whsec_<base64 of 32 random bytes>`, so a client can verify with any Standard Webhooks
    library. Older secrets (plain `token_urlsafe`) keep working: see services/callbacks.py."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


DEFAULT_OPT_OUT_CONFIRMATION = (
    "Tudo certo: seu número foi removido da nossa lista e você não receberá mais mensagens "
    "automáticas por aqui. Se foi um engano, é só nos avisar."
)


class BillingConfig(models.Model):
    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="billing_config")

    # Pace of sending (per WhatsApp instance) and batching.
    messages_per_minute = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text="Maximum messages per minute through one WhatsApp instance.",
    )
    jitter_seconds = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(300)],
        help_text="Random extra gap (0..N seconds) added between messages so the pace looks human.",
    )
    batch_size = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Contacts a worker claims at a time.",
    )

    # Retries.
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(10)])
    retry_backoff_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],
        help_text="Base of the exponential backoff between attempts (base × 2^(attempt-1)).",
    )

    # Limits.
    max_contacts_per_request = models.PositiveIntegerField(
        default=10000, validators=[MinValueValidator(1), MaxValueValidator(100000)]
    )
    api_rate_limit_per_minute = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],
        help_text="API requests per minute per key, unless the key sets its own limit.",
    )

    # Business hours per template type (notifications go out 24/7 by default).
    business_hours_overdue = models.BooleanField(
        default=True, help_text="Send overdue messages only in business hours."
    )
    business_hours_upcoming = models.BooleanField(
        default=True, help_text="Send upcoming messages only in business hours."
    )
    business_hours_notification = models.BooleanField(
        default=False, help_text="Send notifications only in business hours (off: 24/7)."
    )

    default_instance = models.ForeignKey(
        "connections.WhatsAppInstance",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Instance used when a request names none.",
    )

    # Client callback (delivery/read/queue events), signed with the secret.
    callback_url = models.URLField(max_length=500, blank=True)
    callback_secret = EncryptedTextField(default=new_callback_secret)  # shown in full only when generated
    callback_contact_events = models.BooleanField(
        default=False,
        help_text="Also send per-contact events (sent, failed, delivered, read, replied, opted out), batched per queue.",
    )

    # Opt-out (LGPD): the one answer to a customer who asks to stop; blank = do not answer.
    opt_out_confirmation = models.CharField(
        max_length=500,
        blank=True,
        default=DEFAULT_OPT_OUT_CONFIRMATION,
        help_text="Sent once when a customer asks to stop receiving messages (blank: send nothing).",
    )

    # Worker robustness.
    stale_threshold_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(30)],
        help_text="A running queue its consumer no longer tends (no heartbeat for this long) is released to "
        "another consumer. A consumer process that dies is noticed much sooner: see "
        "BILLING_CONSUMER_DEAD_AFTER_SECONDS.",
    )
    health_cache_seconds = models.PositiveIntegerField(
        default=5, help_text="How long an instance health check result is reused."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "billing config"
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    messages_per_minute__gt=0,
                    batch_size__gt=0,
                    max_attempts__gt=0,
                    retry_backoff_seconds__gt=0,
                    max_contacts_per_request__gt=0,
                    api_rate_limit_per_minute__gt=0,
                ),
                name="billing_config_positive_limits",
                violation_error_message="Rates, sizes, attempts and limits must be greater than zero.",
            ),
        ]

    def __str__(self) -> str:
        return f"Billing config of {self.tenant}"

    def __repr__(self) -> str:  # keeps callback_secret out of debug output
        return f"<BillingConfig tenant={self.tenant_id}>"

    def clean(self) -> None:
        super().clean()
        if self.default_instance is not None and self.tenant_id and self.default_instance.tenant_id != self.tenant_id:
            raise ValidationError({"default_instance": "The default instance must belong to the same tenant."})

    @classmethod
    def for_tenant(cls, tenant) -> BillingConfig:
        """The tenant's config, created with the defaults the first time it is asked for."""
        config, _ = cls.objects.get_or_create(tenant=tenant)
        return config

    def respects_business_hours(self, template_type: str) -> bool:
        """Whether messages of this type may only go out inside the tenant's business hours."""
        switches: dict[str, bool] = {
            TemplateType.OVERDUE: self.business_hours_overdue,
            TemplateType.UPCOMING: self.business_hours_upcoming,
            TemplateType.NOTIFICATION: self.business_hours_notification,
        }
        try:
            return switches[str(template_type)]
        except KeyError:
            raise ValueError(f"Unknown template type {template_type!r}") from None

    def regenerate_callback_secret(self) -> None:
        self.callback_secret = new_callback_secret()
        self.save(update_fields=["callback_secret", "updated_at"])
