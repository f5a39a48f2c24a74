"""WhatsApp instances: how a tenant reaches its customers (one Evolution API instance each)."""
from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models

from apps.common.encrypted_fields import EncryptedTextField
from apps.common.keyed_hash import keyed_hash
from apps.common.url_safety import UnsafeURL, validate_provider_url


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def webhook_secret_hash(secret: str) -> str:
    """How a webhook request finds its instance: the secret itself is stored encrypted."""
    return keyed_hash(secret, purpose="webhook-secret")


class WhatsAppInstance(models.Model):
    class Provider(models.TextChoices):
        EVOLUTION = "evolution", "Evolution API"

    class ApiVersion(models.TextChoices):
        V2 = "v2", "v2 (2.3.x)"
        V1 = "v1", "v1 (1.8.x)"

    class HealthState(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        OPEN = "open", "Open"
        CONNECTING = "connecting", "Connecting"
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
    instance_name = models.CharField(max_length=100, help_text="The instance name on the provider")
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
