"""`X-Billing-API-Key` authentication for the public billing API.

Order matters: the per-IP throttle is counted *before* the key is checked, so failed guesses
cost the guesser too. Keys travel only in the header; a key in the query string is refused,
because URLs end up in proxy and access logs.

The key, its tenant and the tenant's configuration come from the process's tenant context
(`tenant_context.py`); its freshness is the tenant's configuration version, read in the same
Redis round trip as the per-IP throttle. A known key costs no database query; a revoked one
stops working on the next request (docs/security.md, "API keys").
"""

from __future__ import annotations

import hmac
import logging
from typing import cast
from uuid import UUID

import redis
from django.conf import settings
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.common.config_version import version_key
from apps.common.exceptions import ApplicationError
from apps.common.http import client_ip
from apps.common.rate_limiting import RateLimitResult, hit_all

from . import tenant_context
from .models import BillingAPIKey
from .models.billing_api_key import hash_raw_key, parse_raw_key
from .tenant_context import TenantContext
from .throttling import key_limit, key_throttle_name

DUMMY_HASH = hash_raw_key("billing-api-key-dummy")

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


class KeyedHttpRequest(HttpRequest):
    """What the authentication leaves on the Django request. A type for the checker only
    (django-stubs' pattern for attributes added at run time): requests stay `HttpRequest`."""

    tenant_context: TenantContext
    key_throttle: RateLimitResult


class KeyedRequest(Request):
    """The request of a view behind `HasBillingAPIKey`: `auth` is the key, `tenant_context` its
    tenant's context (DRF's Request reads it from the Django request). A type only, as above."""

    auth: BillingAPIKey
    tenant_context: TenantContext


class BillingAPIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, BillingAPIKey] | None:
        try:
            return self._authenticate(request)
        except (redis.ConnectionError, redis.TimeoutError):
            # A version bump may be lost with Redis: nothing cached before may outlive the outage.
            # The exception handler answers 503 service_unavailable.
            tenant_context.forget_all()
            raise

    def _authenticate(self, request: Request) -> tuple[None, BillingAPIKey] | None:
        django_request = cast(KeyedHttpRequest, request._request)
        ip = client_ip(django_request)
        raw = request.META.get(HEADER, "").strip()
        parsed = parse_raw_key(raw)
        # A key this process already holds, valid and usable in its tenant's cached context, has
        # its own limit counted in the same round trip as the IP's, with the version read that
        # tells whether the cached context is still current (checked right after).
        held = self._held_key(parsed, raw, ip)
        # Only a public id this process has seen is resolved before the throttle: an unknown one
        # costs a query, which a throttled guesser must not get.
        tenant_id = (
            held.tenant_id if held is not None else (tenant_context.known_tenant_for_key(parsed[0]) if parsed else None)
        )
        ip_limit = (f"billing-ip:{ip}", int(settings.BILLING_IP_RATE_LIMIT_PER_MINUTE))
        limits = [ip_limit] if held is None else [ip_limit, (key_throttle_name(held), key_limit(held))]
        reads = [version_key(tenant_id)] if tenant_id is not None else []
        result = hit_all(limits, 60, read=reads)
        if not result.allowed and result.refused_by == ip_limit[0]:
            raise exceptions.Throttled(wait=result.retry_after)
        if QUERY_NAMES & {name.lower() for name in request.query_params}:
            raise ApplicationError(
                "api_key_in_query_string",
                "Send the API key in the X-Billing-API-Key header, never in the URL.",
                status=400,
            )
        if not raw:
            return None  # DRF answers 401 missing_api_key through the permission check
        version = result.values[0] if result.allowed and reads else None
        if tenant_id is None and parsed is not None:  # first sight of this public id in this process
            tenant_id = tenant_context.tenant_id_for_key(parsed[0])
        if tenant_id is not None and version is None:
            version = tenant_context.read_version(tenant_id)
        key, context = self._key(parsed, raw, tenant_id, version)
        if key is None or context is None:  # both or neither
            logger.info("billing api: unknown key", extra={"client_ip": ip})
            raise exceptions.AuthenticationFailed("The API key is not valid.", code="invalid_api_key")
        problem = key.usability_error(ip=ip)
        if problem is not None:
            status, code, message = REFUSALS[problem]
            logger.info(
                "billing api: key refused", extra={"client_ip": ip, "api_key_id": str(key.pk), "reason": problem}
            )
            if status == 401:
                raise exceptions.AuthenticationFailed(message, code=code)
            raise ApplicationError(code, message, status=status)
        key.touch_last_used()
        django_request.tenant_context = context
        if held is not None and held.pk == key.pk:
            django_request.key_throttle = result  # BillingAPIKeyThrottle answers from it
        return (None, key)

    @staticmethod
    def _held_key(parsed: tuple[str, str] | None, raw: str, ip: str) -> BillingAPIKey | None:
        """The key, if this process holds it in a cached context in which it is valid and usable
        from `ip` (memory only: the context may be stale, which the caller checks next)."""
        if parsed is None:
            return None
        context = tenant_context.cached_context(tenant_context.known_tenant_for_key(parsed[0]))
        key = context.keys.get(parsed[0]) if context is not None else None
        if key is None or not hmac.compare_digest(hash_raw_key(raw), key.key_hash):
            return None
        return key if key.usability_error(ip=ip) is None else None

    def authenticate_header(self, request: Request) -> str:
        return 'ApiKey header="X-Billing-API-Key"'

    @staticmethod
    def _key(
        parsed: tuple[str, str] | None, raw: str, tenant_id: UUID | None, version: str | None
    ) -> tuple[BillingAPIKey, TenantContext] | tuple[None, None]:
        """The key whose hash matches `raw` and its tenant's context, or (None, None). A key the
        context does not hold (issued after it was built) rebuilds it once."""
        if parsed is None or tenant_id is None:
            return None, None
        context = tenant_context.context_for(tenant_id, version)
        if context is not None and parsed[0] not in context.keys:
            context = tenant_context.context_for(tenant_id, version, rebuild=True)
        key = context.keys.get(parsed[0]) if context is not None else None
        if key is None:
            tenant_context.forget_key(parsed[0])
        # An unknown public id costs the same comparison as a wrong secret.
        match = hmac.compare_digest(hash_raw_key(raw), key.key_hash if key is not None else DUMMY_HASH)
        if not match or key is None or context is None:
            return None, None
        return key, context
