"""Set up a tenant's Asaas webhook: store the token Asaas will send (its hash only) and give the
URL to paste into Asaas (Integrações → Webhooks, "Token de autenticação")."""

from __future__ import annotations

import re

from django.conf import settings
from django.urls import reverse

from apps.charges.models import ChargeSettings
from apps.tenancy.models import Tenant

# Asaas' own rule for a webhook authentication token: 32-255 characters, no whitespace.
_TOKEN = re.compile(r"^\S{32,255}$")


class AsaasTokenError(ValueError):
    pass


def check_asaas_token(token: str) -> None:
    if not _TOKEN.match(token or ""):
        raise AsaasTokenError("The Asaas webhook token must be 32 to 255 characters without spaces.")


def configure_asaas_webhook(*, tenant: Tenant, token: str) -> str:
    """Store `token` for `tenant`; return the webhook URL (absolute when BILLING_PUBLIC_BASE_URL is set)."""
    check_asaas_token(token)
    charge_settings = ChargeSettings.for_tenant(tenant)
    charge_settings.set_asaas_token(token)
    return asaas_webhook_url(charge_settings)


def asaas_webhook_url(charge_settings: ChargeSettings) -> str:
    path = reverse("charges:asaas-webhook", kwargs={"token": charge_settings.asaas_url_token})
    return settings.BILLING_PUBLIC_BASE_URL.rstrip("/") + path
