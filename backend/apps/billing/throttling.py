"""Per-API-key throttle: the key's own limit, else the tenant's `api_rate_limit_per_minute`.

The per-IP throttle (the wider net that also counts failed authentication) runs inside the
authentication class, before the key is known. Both limits come from the tenant context the
authentication loaded: no query here.
"""
from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.common.rate_limiting import hit


class BillingAPIKeyThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request: Request, view) -> bool:
        key = request.auth
        if key is None:
            return True
        limit = key.rate_limit_per_minute or request.tenant_context.config.api_rate_limit_per_minute
        result = hit(f"billing-key:{key.pk}", int(limit), 60)
        self._wait = result.retry_after
        return result.allowed

    def wait(self) -> float:
        return self._wait
