"""WAHA webhooks: `POST /api/v1/billing/webhooks/waha/<token>/`.

The path secret names the instance; `X-Webhook-Hmac` (hex HMAC-SHA512 of the raw body, under the
key we configured on the session) proves the body (services/webhook_auth.py). The body is read
(capped) before anything else because the signature covers its bytes; nothing is parsed or
written before both checks pass. Answers: 200 processed or ignored (an unknown session too) ·
400 malformed body · 401 unknown secret, bad or missing signature · 413 body too large. WAHA
retries failed deliveries per the hook's policy; every handler is idempotent.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.billing.services.waha_webhook_events import handle_waha_event
from apps.billing.services.webhook_auth import WebhookAuthError, authenticate_waha_webhook
from apps.billing.webhook_views import BadBody, error_response, parse_envelope, read_body

logger = logging.getLogger(__name__)


@method_decorator(csrf_exempt, name="dispatch")
class WAHAWebhookView(View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, token: str) -> JsonResponse:
        try:
            raw = read_body(request)
        except BadBody as bad:
            return error_response(bad.status, bad.code, bad.message)
        try:
            instance = authenticate_waha_webhook(token=token, body=raw, signature=request.headers.get("X-Webhook-Hmac"))
        except WebhookAuthError:
            logger.warning("waha webhook refused: bad credentials")
            return error_response(401, "unauthorized", "Unknown or invalid webhook credentials.")
        try:
            payload = parse_envelope(raw)
        except BadBody as bad:
            return error_response(bad.status, bad.code, bad.message)
        return JsonResponse({"status": "ok", "outcome": handle_waha_event(instance=instance, payload=payload)})
