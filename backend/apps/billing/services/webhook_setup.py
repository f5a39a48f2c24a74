"""Point a provider instance's webhook at us, the provider's way (contract §4 and §6).

Each provider has its own route (the path carries the instance's webhook secret) and its own
proof of origin, both derived from that secret and our SECRET_KEY (services/webhook_auth.py):

- Evolution signs nothing: `POST /webhook/set/{instance}` with `headers: {"jwt_key": …}`, so it
  sends `Authorization: Bearer <JWT>` (v1 servers take a flat body and no headers);
- WAHA: the session's `config.webhooks[]` with `hmac.key`, so it sends `X-Webhook-Hmac`.

The HTTP call is the provider client's (`configure_webhook`: total deadline, address guard, no
redirects). Creating an instance from the admin sets the webhook in the same call
(`services.instance_pairing`); `manage.py configure_evolution_webhook` does it for existing
instances.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.urls import reverse

from apps.billing.services.webhook_auth import waha_hmac_key, webhook_jwt_key
from apps.common.services.provider import WAHA, client_for
from apps.common.services.provider_errors import ProviderError
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)

_ROUTES = {WAHA: "billing:waha-webhook"}
_DEFAULT_ROUTE = "billing:evolution-webhook"


class WebhookSetupError(Exception):
    """The provider refused or could not be reached; `http_status` when it answered."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class WebhookSetupResult:
    url: str  # contains the secret: show it masked (`masked_url`)
    masked_url: str
    signed: bool  # Evolution: the Bearer JWT is configured; WAHA: the HMAC key is
    http_status: int


def webhook_url(*, instance: WhatsAppInstance, public_base_url: str) -> str:
    """The instance's own webhook URL (its route carries the secret)."""
    if not public_base_url.lower().startswith(("http://", "https://")):
        raise WebhookSetupError("The public base URL must start with http:// or https://.")
    path = reverse(_ROUTES.get(instance.provider, _DEFAULT_ROUTE), kwargs={"token": instance.webhook_secret})
    return public_base_url.rstrip("/") + path


def masked(url: str, secret: str) -> str:
    return url.replace(secret, secret[:4] + "…")


def signing_key(*, instance: WhatsAppInstance, use_jwt: bool = True) -> str:
    """The key the provider signs (WAHA) or makes its JWT (Evolution v2) with; "" for none."""
    if instance.provider == WAHA:
        return waha_hmac_key(instance)
    if use_jwt and instance.api_version != WhatsAppInstance.ApiVersion.V1:
        return webhook_jwt_key(instance)
    return ""


def configure_instance_webhook(
    *, instance: WhatsAppInstance, public_base_url: str, use_jwt: bool = True
) -> WebhookSetupResult:
    """Send the webhook configuration to the provider; raise `WebhookSetupError` on refusal."""
    url = webhook_url(instance=instance, public_base_url=public_base_url)
    key = signing_key(instance=instance, use_jwt=use_jwt)
    try:
        status = client_for(instance).configure_webhook(url=url, signing_key=key)
    except ProviderError as exc:
        raise WebhookSetupError(f"The provider could not be reached: {exc.code}.") from exc
    if not 200 <= status < 300:
        raise WebhookSetupError(f"The provider answered HTTP {status}.", http_status=status)
    logger.info(
        "provider webhook configured",
        extra={"instance_id": instance.pk, "provider": instance.provider, "signed": bool(key), "http_status": status},
    )
    return WebhookSetupResult(
        url=url, masked_url=masked(url, instance.webhook_secret), signed=bool(key), http_status=status
    )
