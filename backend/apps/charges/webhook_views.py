"""`POST /api/v1/billing/webhooks/asaas/<tenant token>` — Asaas payment events.

A plain Django view (not DRF): Asaas authenticates with the `asaas-access-token` header, not
our API keys. Answers: 401 unknown URL token or wrong header token · 400 a body that is not an
Asaas payment event · 413 a body over BILLING_WEBHOOK_MAX_BODY_BYTES · 200 everything else,
quickly (an unknown charge and an event we ignore included: Asaas pauses a webhook queue after
15 failed answers). Nothing is written before authentication and parsing succeed. See
services/asaas_webhook.py.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.charges.metrics import observe_asaas_event
from apps.charges.services.asaas_webhook import (
    AsaasAuthError,
    MalformedAsaasEvent,
    authenticate,
    handle_notification,
    parse_notification,
)
from apps.common.exceptions import error_body

logger = logging.getLogger(__name__)


@method_decorator(csrf_exempt, name="dispatch")
class AsaasWebhookView(View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, token: str) -> JsonResponse:
        try:
            tenant = authenticate(url_token=token, access_token=request.headers.get("asaas-access-token"))
        except AsaasAuthError:
            logger.warning("asaas webhook refused: bad credentials")
            observe_asaas_event("unauthorized")
            return JsonResponse(error_body("unauthorized", "Unknown or invalid webhook credentials."), status=401)
        limit = int(settings.BILLING_WEBHOOK_MAX_BODY_BYTES)
        if len(request.body) > limit:
            observe_asaas_event("malformed")
            return JsonResponse(
                error_body("payload_too_large", f"Webhook bodies are limited to {limit} bytes."), status=413
            )
        try:
            notification = parse_notification(json.loads(request.body))
        except (ValueError, RecursionError, MalformedAsaasEvent) as exc:
            observe_asaas_event("malformed")
            message = str(exc) if isinstance(exc, MalformedAsaasEvent) else "The body is not valid JSON."
            return JsonResponse(error_body("malformed_event", message), status=400)
        outcome = handle_notification(tenant=tenant, notification=notification)
        return JsonResponse({"status": "ok", "outcome": outcome})
