"""Per-API-key throttle: the key's own limit, else the tenant's `api_rate_limit_per_minute`.

The per-IP throttle (the wider net that also counts failed authentication) runs inside the
authentication class, before the key is known. When the process already holds the key, the
authentication counts both limits in one Redis round trip and this class only reads the answer.
Both limits come from the tenant context: no query here.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from apps.common.rate_limiting import hit

from .models import BillingAPIKey


def key_throttle_name(key: BillingAPIKey) -> str:
    return f"billing-key:{key.pk}"


def key_limit(key: BillingAPIKey) -> int:
    """Requests per minute: the key's own limit, else its tenant's (from the cached context the
    key came with: `key.tenant.billing_config` is the context's config)."""
    return int(key.rate_limit_per_minute or key.tenant.billing_config.api_rate_limit_per_minute)


class BillingAPIKeyThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        key = request.auth
        if not isinstance(key, BillingAPIKey):  # no key: the permission check answers 401
            return True
        # Usually counted by the authentication in the same Redis round trip as the IP's limit.
        result = getattr(request._request, "key_throttle", None) or hit(key_throttle_name(key), key_limit(key), 60)
        self._wait = result.retry_after
        return result.allowed

    def wait(self) -> float:
        return self._wait
