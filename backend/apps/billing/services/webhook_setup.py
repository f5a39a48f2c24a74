"""Point a provider instance's webhook at us: `POST /webhook/set/{instance}` (contract §4).

The HTTP call goes through the provider client (`EvolutionAPIService.set_webhook`: total
deadline, address guard, no redirects).

v2 body: `{"webhook": {enabled, url, headers, byEvents: false, base64: false, events}}`, with
`headers: {"jwt_key": ...}` so Evolution adds `Authorization: Bearer <JWT>` (the path secret
stays the identifier). v1 (1.8) takes a flat body and sends no custom headers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from django.urls import reverse

from apps.billing.services.webhook_auth import webhook_jwt_key
from apps.common.services.evolution_api_service import EvolutionAPIError, EvolutionAPIService
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)

WEBHOOK_EVENTS = ["MESSAGES_UPSERT", "MESSAGES_UPDATE", "SEND_MESSAGE", "CONNECTION_UPDATE"]


class WebhookSetupError(Exception):
    """The provider refused or could not be reached; `http_status` when it answered."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class WebhookSetupResult:
    url: str  # contains the secret: show it masked (`masked_url`)
    masked_url: str
    events: list[str]
    jwt: bool
    http_status: int


def webhook_url(*, instance: WhatsAppInstance, public_base_url: str) -> str:
    path = reverse("billing:evolution-webhook", kwargs={"token": instance.webhook_secret})
    return public_base_url.rstrip("/") + path


def _masked(url: str, secret: str) -> str:
    return url.replace(secret, secret[:4] + "…")


def webhook_body(*, instance: WhatsAppInstance, url: str, use_jwt: bool = True) -> dict[str, Any]:
    if instance.api_version == WhatsAppInstance.ApiVersion.V1:
        return {"url": url, "enabled": True, "events": WEBHOOK_EVENTS, "webhook_by_events": False,
                "webhook_base64": False}
    headers = {"jwt_key": webhook_jwt_key(instance)} if use_jwt else {}
    return {"webhook": {"enabled": True, "url": url, "headers": headers, "byEvents": False, "base64": False,
                        "events": WEBHOOK_EVENTS}}


def configure_instance_webhook(
    *, instance: WhatsAppInstance, public_base_url: str, use_jwt: bool = True
) -> WebhookSetupResult:
    """Send the webhook configuration to the provider; raise `WebhookSetupError` on refusal."""
    if not public_base_url.lower().startswith(("http://", "https://")):
        raise WebhookSetupError("The public base URL must start with http:// or https://.")
    url = webhook_url(instance=instance, public_base_url=public_base_url)
    body = webhook_body(instance=instance, url=url, use_jwt=use_jwt)
    try:
        status = EvolutionAPIService(instance).set_webhook(body)
    except EvolutionAPIError as exc:
        raise WebhookSetupError(f"The provider could not be reached: {exc.code}.") from exc
    if not 200 <= status < 300:
        raise WebhookSetupError(f"The provider answered HTTP {status}.", http_status=status)
    jwt = use_jwt and instance.api_version != WhatsAppInstance.ApiVersion.V1
    logger.info("evolution webhook configured", extra={"instance_id": instance.pk, "jwt": jwt,
                                                       "http_status": status})
    return WebhookSetupResult(url=url, masked_url=_masked(url, instance.webhook_secret), events=list(WEBHOOK_EVENTS),
                              jwt=jwt, http_status=status)
