"""The provider servers the operator offers for new numbers (settings.WHATSAPP_PROVIDER_SERVERS).

A provider's base URL is where *our* servers connect with a key, so a tenant never types one
(docs/security.md, "Provider URLs"): the operator lists the Evolution and WAHA servers, and tenant
staff pick one by name when they create a number in the admin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PROVIDERS = ("evolution", "waha")


@dataclass(frozen=True)
class ProviderServer:
    name: str
    provider: str
    base_url: str
    api_key: str = field(repr=False)


def provider_servers() -> dict[str, ProviderServer]:
    """By name, in the order given; ImproperlyConfigured when the setting is malformed."""
    raw = settings.WHATSAPP_PROVIDER_SERVERS
    if not raw:
        return {}
    try:
        entries = json.loads(raw) if isinstance(raw, str) else raw
        servers = [
            ProviderServer(
                name=str(entry["name"]),
                provider=str(entry["provider"]),
                base_url=str(entry["base_url"]).rstrip("/"),
                api_key=str(entry["api_key"]),
            )
            for entry in entries
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise ImproperlyConfigured(
            'WHATSAPP_PROVIDER_SERVERS must be a JSON list of {"name", "provider", "base_url", "api_key"}'
        ) from exc
    for server in servers:
        if server.provider not in PROVIDERS:
            raise ImproperlyConfigured(f"WHATSAPP_PROVIDER_SERVERS: unknown provider {server.provider!r}")
    return {server.name: server for server in servers}
