"""A tenant's number from the admin: create it on a provider server, pair it by QR, restart it,
log it out. Every call goes through the instance's provider client (`client_for`), so Evolution
and WAHA are paired the same way:

    create_number(tenant=..., name=..., server=..., public_base_url=...)  # provider instance + webhook
    pairing_state(instance=...)      # connected, or the QR to scan now (never logged)
    restart_number(instance=...) / logout_number(instance=..., user=...)

The webhook is set in the creation call itself (Evolution's `webhook` field, WAHA's session
config), to the instance's own URL and signed or authenticated the provider's way
(webhook_setup.py). Logging a number out from the admin protects it like a logout the provider
reports: its queues stay paused until a person clears it, after pairing it again.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.billing.services import number_protection
from apps.billing.services.webhook_setup import WebhookSetupError, signing_key, webhook_url
from apps.common.config_version import bump_config_version
from apps.common.services.provider import client_for
from apps.common.services.provider_client import PairingState
from apps.common.services.provider_errors import ProviderError
from apps.connections.models import WhatsAppInstance
from apps.connections.provider_servers import ProviderServer
from apps.connections.services import record_connection_state
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)


class PairingError(Exception):
    """The provider refused or could not be reached: a message a person can act on."""


def provider_instance_name(tenant: Tenant, name: str) -> str:
    """The name on the provider: the tenant's slug and ours, so tenants never collide."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{tenant.slug}-{name}".lower()).strip("-")[:100]


def create_number(*, tenant: Tenant, name: str, server: ProviderServer, public_base_url: str) -> WhatsAppInstance:
    """Create the instance on `server` with its webhook, then our row (its key: the instance token
    Evolution answers, WAHA's server key). Nothing is saved when the provider refuses."""
    if WhatsAppInstance.objects.filter(tenant=tenant, name=name).exists():
        raise PairingError(f"This tenant already has a number named {name!r}.")
    instance = WhatsAppInstance(
        tenant=tenant,
        name=name,
        provider=server.provider,
        base_url=server.base_url,
        api_key=server.api_key,
        instance_name=provider_instance_name(tenant, name),
    )
    try:
        instance.full_clean(exclude=["api_key"])
        url = webhook_url(instance=instance, public_base_url=public_base_url)
        instance.api_key = client_for(instance).create_remote(
            webhook_url=url, signing_key=signing_key(instance=instance)
        )
    except (ValidationError, WebhookSetupError) as exc:
        raise PairingError(_message(exc)) from exc
    except ProviderError as exc:
        raise PairingError(f"The provider refused to create the number ({exc.code}).") from exc
    with transaction.atomic():
        instance.save()
    bump_config_version(tenant.pk)
    logger.info(
        "whatsapp number created",
        extra={
            "instance_id": instance.pk,
            "tenant_id": str(tenant.pk),
            "provider": instance.provider,
            "server": server.name,
        },
    )
    return instance


def pairing_state(*, instance: WhatsAppInstance) -> PairingState:
    """Ask the provider; a connected answer is recorded (the number is now paired)."""
    try:
        state = client_for(instance).pairing_state()
    except ProviderError as exc:
        raise PairingError(f"The provider did not answer ({exc.code}).") from exc
    if state.connected and instance.health_state != WhatsAppInstance.HealthState.OPEN:
        record_connection_state(instance=instance, state=WhatsAppInstance.HealthState.OPEN, reason="paired")
    return state


def restart_number(*, instance: WhatsAppInstance) -> None:
    try:
        client_for(instance).restart()
    except ProviderError as exc:
        raise PairingError(f"The provider refused the restart ({exc.code}).") from exc
    logger.info("whatsapp number restarted", extra={"instance_id": instance.pk, "tenant_id": str(instance.tenant_id)})


def logout_number(*, instance: WhatsAppInstance, user: Any) -> None:
    """Log the number out on the provider and protect it (its queues wait for a person)."""
    try:
        client_for(instance).logout()
    except ProviderError as exc:
        raise PairingError(f"The provider refused the logout ({exc.code}).") from exc
    record_connection_state(
        instance=instance,
        state=WhatsAppInstance.HealthState.CLOSE,
        reason="logged out from the admin",
        disconnected=True,
    )
    number_protection.protect_after_logout(instance=instance, how=f"from the admin by {getattr(user, 'username', '?')}")


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
    return str(exc)
