"""Which client talks to a WhatsApp instance: `client_for(instance)`, by `instance.provider`.

Every caller (the dispatch step, health checks and recovery, reconciliation, webhook set-up,
pairing, the opt-out confirmation) asks here, so adding a provider is one client class and one
line below; they all speak `provider_client.ProviderClient` and raise `provider_errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .evolution_api_service import EvolutionAPIService
from .provider_client import ProviderClient
from .waha_api_service import WAHAAPIService

if TYPE_CHECKING:
    from apps.connections.models import WhatsAppInstance

EVOLUTION = "evolution"
WAHA = "waha"
CLIENTS: dict[str, type[ProviderClient]] = {EVOLUTION: EvolutionAPIService, WAHA: WAHAAPIService}


def client_for(instance: WhatsAppInstance) -> ProviderClient:
    """The client for `instance`'s provider; an unknown provider is a programming error."""
    try:
        return CLIENTS[instance.provider](instance)
    except KeyError:
        raise ValueError(f"no client for provider {instance.provider!r}") from None
