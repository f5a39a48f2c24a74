"""Outbound HTTP for the provider client, configured in one place.

One `DeadlineHTTPClient` (apps/common/http_client.py) for every call to a WhatsApp provider:
a total wall-clock deadline per call (`deadline(kind)`), the provider address policy
(apps/common/url_safety.py: public addresses, plus the operator's EVOLUTION_ALLOWED_NETWORKS),
no proxy, no redirects, no cookies, answers capped at MAX_RESPONSE_BYTES.
"""

from __future__ import annotations

from django.conf import settings

from apps.common.http_client import DeadlineHTTPClient
from apps.common.url_safety import provider_policy

SEND = "send"
HEALTH = "health"
LOOKUP = "lookup"

MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a findMessages page of long texts fits many times over

_DEADLINE_SETTINGS = {
    SEND: "EVOLUTION_SEND_DEADLINE",
    HEALTH: "EVOLUTION_HEALTH_DEADLINE",
    LOOKUP: "EVOLUTION_LOOKUP_DEADLINE",
}

provider_client = DeadlineHTTPClient(
    policy=provider_policy,
    user_agent=lambda: settings.EVOLUTION_USER_AGENT,
    max_response_bytes=MAX_RESPONSE_BYTES,
)


def deadline(kind: str) -> float:
    """Seconds one call of this kind may take in all (DNS, connect, request, whole answer)."""
    return float(getattr(settings, _DEADLINE_SETTINGS[kind]))


def connect_timeout() -> float:
    """Seconds for DNS + TCP + TLS, within the deadline: a dead host is noticed early, and a
    call that fails there provably sent nothing."""
    return float(settings.EVOLUTION_CONNECT_TIMEOUT)


def default_headers(auth_header: str, api_key: str) -> dict[str, str]:
    """The provider's own key header (`apikey` for Evolution, `X-Api-Key` for WAHA)."""
    return {auth_header: api_key, "Accept": "application/json"}


def json_headers(auth_header: str, api_key: str) -> dict[str, str]:
    return {**default_headers(auth_header, api_key), "Content-Type": "application/json"}
