"""Who is calling a provider webhook?

Evolution signs nothing (contract §4), so:

1. The URL path carries the instance's `webhook_secret` (256 random bits, unique). The secret is
   stored encrypted, so it is looked up by its keyed hash (`webhook_secret_hash`, unique index)
   and then compared with `hmac.compare_digest`; a token of the wrong shape is refused before
   any query.
2. Optionally, Evolution's `jwt_key` header option: the configured key never travels, Evolution
   sends `Authorization: Bearer <HS256 JWT>` (exp = iat + 600 s) instead. Our key is derived from
   the instance secret *and* the server's SECRET_KEY, so a leaked URL (proxy logs, say) is not
   enough to forge it. A bearer token, when present, must verify; with
   BILLING_WEBHOOK_REQUIRE_JWT on, it must be present (v1 servers cannot send it).

WAHA signs (contract §6): the same path secret names the instance, and `X-Webhook-Hmac` must be
the hex HMAC-SHA512 of the raw body under the key we configured, derived like the JWT key from
the instance secret and SECRET_KEY. It is required unless BILLING_WAHA_WEBHOOK_REQUIRE_HMAC is
off (a WAHA Core older than 2024.11.5 cannot sign); a header that is present must verify.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import jwt
from django.conf import settings

from apps.connections.models import WhatsAppInstance, webhook_secret_hash

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,100}$")
_JWT_LEEWAY_SECONDS = 60
_JWT_MAX_LIFETIME = 3600


class WebhookAuthError(Exception):
    """Unknown or wrong credentials; the view answers 401 and writes nothing."""


def webhook_jwt_key(instance: WhatsAppInstance) -> str:
    """The `jwt_key` we configure on the provider for this instance."""
    material = f"billing.evolution-webhook-jwt:{instance.webhook_secret}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), material, hashlib.sha256).hexdigest()


def waha_hmac_key(instance: WhatsAppInstance) -> str:
    """The `hmac.key` we configure on a WAHA session for this instance."""
    material = f"billing.waha-webhook-hmac:{instance.webhook_secret}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), material, hashlib.sha256).hexdigest()


def _instance_for_token(token: str, provider: str) -> WhatsAppInstance:
    if not token or not _TOKEN.match(token):
        raise WebhookAuthError("malformed token")
    instance = (
        WhatsAppInstance.objects.select_related("tenant")
        .filter(webhook_secret_hash=webhook_secret_hash(token), is_active=True, provider=provider)
        .first()
    )
    if instance is None or not hmac.compare_digest(instance.webhook_secret.encode(), token.encode()):
        raise WebhookAuthError("unknown token")
    return instance


def authenticate_waha_webhook(*, token: str, body: bytes, signature: str | None) -> WhatsAppInstance:
    """The active WAHA instance this request is for, its body's HMAC verified; else
    `WebhookAuthError`. Call it with the raw body, before any parsing."""
    instance = _instance_for_token(token, "waha")
    if signature is None:
        if settings.BILLING_WAHA_WEBHOOK_REQUIRE_HMAC:
            raise WebhookAuthError("signature required")
        return instance
    expected = hmac.new(waha_hmac_key(instance).encode(), body, hashlib.sha512).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise WebhookAuthError("bad signature")
    return instance


def authenticate_webhook(*, token: str, authorization: str | None) -> WhatsAppInstance:
    """The active Evolution instance this request is for, or `WebhookAuthError`."""
    instance = _instance_for_token(token, "evolution")
    bearer = _bearer(authorization)
    if bearer is not None:
        verify_jwt(bearer, webhook_jwt_key(instance))
    elif settings.BILLING_WEBHOOK_REQUIRE_JWT:
        raise WebhookAuthError("bearer token required")
    return instance


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise WebhookAuthError("unsupported Authorization header")
    return value.strip()


def verify_jwt(token: str, key: str) -> dict[str, Any]:
    """Check an HS256 token as Evolution makes it (`generateJwtToken()`). PyJWT checks the
    signature, `exp` (required) and `iat` not in the future, with a minute of leeway for the
    provider's clock; the lifetime (at most an hour) and `app`/`action` (if present) are ours."""
    try:
        payload = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp"]}, leeway=_JWT_LEEWAY_SECONDS)
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
        raise WebhookAuthError("bearer token expired or not yet valid") from exc
    except jwt.InvalidTokenError as exc:
        raise WebhookAuthError(f"bearer token rejected: {exc}") from exc
    exp = payload["exp"]
    if exp - payload.get("iat", exp) > _JWT_MAX_LIFETIME:
        raise WebhookAuthError("bearer token lives longer than an hour")
    if payload.get("app", "evolution") != "evolution" or payload.get("action", "webhook") != "webhook":
        raise WebhookAuthError("bearer token is not for webhooks")
    return payload
