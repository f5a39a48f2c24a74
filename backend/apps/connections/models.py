"""WhatsApp numbers: how a tenant reaches its customers (one Evolution instance or WAHA session
each), with their life in this service — pairing, warm-up, health, protection — and the tenant's
number-health settings."""

from __future__ import annotations

import secrets
import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.utils import timezone

from apps.common.encrypted_fields import EncryptedTextField
from apps.common.keyed_hash import keyed_hash
from apps.common.url_safety import UnsafeURL, validate_provider_url

from .warmup import DEFAULT_UNCAPPED_FROM_DAY, WarmUp, WarmUpSchedule


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def webhook_secret_hash(secret: str) -> str:
    """How a webhook request finds its instance: the secret itself is stored encrypted."""
    return keyed_hash(secret, purpose="webhook-secret")


class WhatsAppInstance(models.Model):
    class Provider(models.TextChoices):
        EVOLUTION = "evolution", "Evolution API"
        WAHA = "waha", "WAHA"

    class ApiVersion(models.TextChoices):
        V2 = "v2", "v2 (2.3.x)"
        V1 = "v1", "v1 (1.8.x)"

    class HealthState(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        OPEN = "open", "Open"
        CONNECTING = "connecting", "Connecting"
        PAIRING = "pairing", "Waiting for the QR code scan"
        CLOSE = "close", "Closed"
        ERROR = "error", "Error"

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="whatsapp_instances")
    name = models.CharField(max_length=100, help_text="Our name for it, used by API callers")
    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.EVOLUTION)
    api_version = models.CharField(max_length=2, choices=ApiVersion.choices, default=ApiVersion.V2)
    base_url = models.CharField(max_length=300, validators=[URLValidator(schemes=["http", "https"])])
    # Needed in clear to call the provider, so encrypted (not hashed) at rest; never rendered
    # back (the admin shows a masked hint and takes a new one write-only).
    api_key = EncryptedTextField()
    instance_name = models.CharField(
        max_length=100, help_text="The instance (Evolution) or session (WAHA) name on the provider"
    )
    webhook_secret = EncryptedTextField(default=new_webhook_secret)
    webhook_secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    health_state = models.CharField(max_length=12, choices=HealthState.choices, default=HealthState.UNKNOWN)
    health_reason = models.CharField(max_length=300, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    # Set by the send worker when the instance needs a person (it answers "instance unavailable"
    # to every send while saying `open`, its key is refused...); cleared by a person in the admin.
    attention_reason = models.CharField(max_length=300, blank=True)
    attention_since = models.DateTimeField(null=True, blank=True)
    # The number's life here. Paired: first seen connected (a session lost after that is a logout).
    paired_at = models.DateTimeField(null=True, blank=True)
    last_disconnect_at = models.DateTimeField(null=True, blank=True)
    last_disconnect_reason = models.CharField(max_length=300, blank=True)
    # Warm-up: the daily cap grows with the days since this instant, unless a person skipped it.
    warmup_started_at = models.DateTimeField(default=timezone.now)
    warmup_skipped_at = models.DateTimeField(null=True, blank=True)
    warmup_skipped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    warmup_skip_reason = models.CharField(max_length=300, blank=True)
    # Set by number protection (a logout, a lost session, too many "not on WhatsApp", a burst of
    # blocks): every queue of the number stays paused until a person clears it.
    protected_reason = models.CharField(max_length=300, blank=True)
    protected_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="whatsapp_instance_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.instance_name})"

    def clean(self) -> None:
        """The provider URL goes through the address guard (checked again on every connection)."""
        super().clean()
        if self.base_url:
            try:
                validate_provider_url(self.base_url)
            except UnsafeURL as exc:
                if exc.code != "unresolvable_provider_url":  # a name not live yet is not unsafe
                    raise ValidationError({"base_url": exc.message}, code=exc.code) from None

    def save(self, *args, **kwargs) -> None:
        """The lookup hash follows the secret it stands for (one fact, kept in step here)."""
        self.webhook_secret_hash = webhook_secret_hash(self.webhook_secret)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "webhook_secret" in update_fields:
            kwargs["update_fields"] = {*update_fields, "webhook_secret_hash"}
        super().save(*args, **kwargs)

    def __repr__(self) -> str:  # keeps api_key out of debug output
        return f"<WhatsAppInstance {self.pk} {self.name!r}>"

    @property
    def is_protected(self) -> bool:
        return self.protected_since is not None

    def warm_up(self, schedule: WarmUpSchedule, tz: zoneinfo.ZoneInfo) -> WarmUp:
        """This number's warm-up under the tenant's schedule, its days in the tenant's zone."""
        return WarmUp(
            started_on=timezone.localtime(self.warmup_started_at, tz).date(),
            skipped=self.warmup_skipped_at is not None,
            schedule=schedule,
        )


class NumberHealthSettings(models.Model):
    """A tenant's rules for its numbers (docs/providers.md, "Number health"): the warm-up
    schedule of daily caps, and when protection pauses a number."""

    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="number_health_settings")
    warmup_schedule = models.JSONField(
        default=WarmUpSchedule.default_steps,
        help_text="[[day, cap], ...]: from that day of the number's age, at most cap messages a day",
    )
    warmup_uncapped_from_day = models.PositiveSmallIntegerField(
        default=DEFAULT_UNCAPPED_FROM_DAY, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    invalid_share_limit = models.FloatField(
        default=0.30,
        validators=[MinValueValidator(0.01), MaxValueValidator(1.0)],
        help_text="Protect the number when more than this share of its last sends were 'not on WhatsApp'",
    )
    invalid_window = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(5), MaxValueValidator(1000)],
        help_text="How many of the number's last sends that share is taken over",
    )
    block_burst_limit = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Protect the number after this many messages WhatsApp refused (ERROR receipts)...",
    )
    block_window_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(10080)], help_text="...within this many minutes"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "number health settings"

    def __str__(self) -> str:
        return f"Number health settings of {self.tenant}"

    def clean(self) -> None:
        super().clean()
        try:
            WarmUpSchedule.from_steps(self.warmup_schedule, uncapped_from_day=self.warmup_uncapped_from_day)
        except ValueError as exc:
            raise ValidationError({"warmup_schedule": str(exc)}) from None

    @property
    def schedule(self) -> WarmUpSchedule:
        return WarmUpSchedule.from_steps(self.warmup_schedule, uncapped_from_day=self.warmup_uncapped_from_day)

    @classmethod
    def for_tenant(cls, tenant_id: uuid.UUID | str) -> NumberHealthSettings:
        """The tenant's row, or the defaults (unsaved: reading never writes)."""
        return cls.objects.filter(tenant_id=tenant_id).first() or cls(tenant_id=tenant_id)
