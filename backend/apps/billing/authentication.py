"""`X-Billing-API-Key` authentication for the public billing API.

Order matters: the per-IP throttle is counted *before* the key is checked, so failed guesses
cost the guesser too. Keys travel only in the header; a key in the query string is refused,
because URLs end up in proxy and access logs.
"""
from __future__ import annotations

import logging
from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.common.exceptions import ApplicationError
from apps.common.http import client_ip
from apps.common.rate_limiting import hit

from .models import BillingAPIKey

logger = logging.getLogger(__name__)

HEADER = "HTTP_X_BILLING_API_KEY"
QUERY_NAMES = {"api_key", "apikey", "key", "x-billing-api-key", "token"}
# The model's reasons a key cannot be used → (HTTP status, API error code, message).
REFUSALS = {
    "key_revoked": (401, "api_key_inactive", "The API key has been revoked."),
    "key_inactive": (401, "api_key_inactive", "The API key has been revoked."),
    "key_expired": (401, "api_key_expired", "The API key has expired."),
    "tenant_inactive": (401, "tenant_inactive", "The account is inactive."),
    "ip_not_allowed": (403, "ip_not_allowed", "This API key may not be used from this address."),
}


class BillingAPIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, BillingAPIKey] | None:
        ip = client_ip(request._request)
        request._request.client_ip = ip
        self._throttle_ip(ip)
        if QUERY_NAMES & {name.lower() for name in request.query_params}:
            raise ApplicationError(
                "api_key_in_query_string", "Send the API key in the X-Billing-API-Key header, never in the URL.",
                status=400,
            )
        raw = request.META.get(HEADER, "")
        if not raw:
            return None  # DRF answers 401 missing_api_key through the permission check
        key = BillingAPIKey.authenticate_raw(raw.strip())
        if key is None:
            logger.info("billing api: unknown key", extra={"client_ip": ip})
            raise exceptions.AuthenticationFailed("The API key is not valid.", code="invalid_api_key")
        problem = key.usability_error(ip=ip)
        if problem is not None:
            status, code, message = REFUSALS[problem]
            logger.info("billing api: key refused", extra={"client_ip": ip, "api_key_id": str(key.pk), "reason": problem})
            if status == 401:
                raise exceptions.AuthenticationFailed(message, code=code)
            raise ApplicationError(code, message, status=status)
        key.touch_last_used()
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return 'ApiKey header="X-Billing-API-Key"'

    @staticmethod
    def _throttle_ip(ip: str) -> None:
        result = hit(f"billing-ip:{ip}", int(settings.BILLING_IP_RATE_LIMIT_PER_MINUTE), 60)
        if not result.allowed:
            raise exceptions.Throttled(wait=result.retry_after)
