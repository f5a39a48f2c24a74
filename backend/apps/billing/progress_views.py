"""Progress for people: the browser token endpoint and the standalone progress page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from . import api_docs
from .authentication import KeyedRequest
from .progress import issue_ws_token, read_ws_token
from .selectors import queue_get
from .views import BillingAPIView


class QueueWsTokenView(BillingAPIView):
    @extend_schema(
        operation_id="queue_ws_token",
        summary="Token for watching a queue's progress from a browser",
        description=(
            "A signed token, valid for a few minutes, that lets a browser open "
            "`ws/billing/queues/<queue_id>/?token=...` (browsers cannot send the API key header on a "
            "WebSocket) or the progress page at `progress_url`. Servers can connect with the "
            "`X-Billing-API-Key` header instead."
        ),
        tags=["queue"],
        request=None,
        responses={
            200: inline_serializer(
                "QueueWsToken",
                {
                    "token": serializers.CharField(),
                    "expires_in": serializers.IntegerField(),
                    "websocket_path": serializers.CharField(),
                    "progress_url": serializers.CharField(),
                },
            ),
            **api_docs.ERROR_RESPONSES_READ,
        },
        examples=[
            OpenApiExample(
                "token",
                response_only=True,
                value={
                    "token": "eyJxIjoi...:1tX9Zk:abc",
                    "expires_in": 300,
                    "websocket_path": "/ws/billing/queues/6f1c…/?token=eyJxIjoi...",
                    "progress_url": "/billing/progress/6f1c…/?token=eyJxIjoi...",
                },
            )
        ],
    )
    def post(self, request: KeyedRequest, queue_id: str) -> Response:
        key = request.auth
        queue = queue_get(tenant=key.tenant, queue_id=queue_id)
        token = issue_ws_token(queue_id=queue.pk, tenant_id=queue.tenant_id, api_key_id=key.pk)
        return Response(
            {
                "token": token,
                "expires_in": int(settings.BILLING_WS_TOKEN_MAX_AGE),
                "websocket_path": f"/ws/billing/queues/{queue.pk}/?token={token}",
                "progress_url": f"{reverse('billing-progress-page', args=[queue.pk])}?token={token}",
            }
        )


@require_GET
def progress_page(request: HttpRequest, queue_id: str) -> HttpResponse:
    """A page with a progress bar fed by the WebSocket. It shows no data itself (the socket
    does, after checking the token), so it only checks that the token fits this queue to give
    an expired link a readable answer. No cache: the URL carries a token."""
    grant = read_ws_token(request.GET.get("token", ""))
    valid = grant is not None and grant.queue_id == str(queue_id)
    response = render(
        request, "billing/progress.html", {"queue_id": queue_id, "token_valid": valid}, status=200 if valid else 403
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
