"""Provider webhooks: `POST /api/v1/billing/webhooks/evolution/<token>/[<event>]`.

A plain Django view (not DRF): it authenticates by the URL secret (services/webhook_auth.py),
caps the body before reading it, parses JSON and hands the envelope to one service. Answers:
200 processed or ignored · 400 malformed body · 401 unknown secret / bad bearer token ·
403 the body names another instance · 413 body over BILLING_WEBHOOK_MAX_BODY_BYTES. Evolution
does not retry 400/401/403/404/422, and does retry anything else (a 500 from a real bug, 413),
which is safe because every handler is idempotent. Nothing is written before authentication.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.billing.services.webhook_auth import WebhookAuthError, authenticate_webhook
from apps.billing.services.webhook_events import InstanceMismatch, handle_event
from apps.common.exceptions import error_body

logger = logging.getLogger(__name__)


class BadBody(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def read_body(request: HttpRequest) -> bytes:
    """The raw body, refused (413) past BILLING_WEBHOOK_MAX_BODY_BYTES without reading more."""
    limit = int(settings.BILLING_WEBHOOK_MAX_BODY_BYTES)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BadBody(413, "payload_too_large", f"Webhook bodies are limited to {limit} bytes.")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise BadBody(413, "payload_too_large", f"Webhook bodies are limited to {limit} bytes.")
    return raw


def parse_envelope(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadBody(400, "malformed_json", "The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadBody(400, "invalid_envelope", "The body must be a JSON object (a webhook envelope).")
    return payload


@method_decorator(csrf_exempt, name="dispatch")
class EvolutionWebhookView(View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, token: str, event: str | None = None) -> JsonResponse:
        try:
            instance = authenticate_webhook(token=token, authorization=request.headers.get("Authorization"))
        except WebhookAuthError:
            logger.warning("evolution webhook refused: bad credentials")
            return error_response(401, "unauthorized", "Unknown or invalid webhook credentials.")
        try:
            payload = parse_envelope(read_body(request))
        except BadBody as bad:
            return error_response(bad.status, bad.code, bad.message)
        try:
            outcome = handle_event(instance=instance, payload=payload, path_event=event or "")
        except InstanceMismatch:
            logger.warning("evolution webhook refused: instance mismatch", extra={"instance_id": instance.pk})
            return error_response(403, "instance_mismatch", "The body names another instance than this URL's.")
        return JsonResponse({"status": "ok", "outcome": outcome})
