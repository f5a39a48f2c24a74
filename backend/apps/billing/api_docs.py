"""OpenAPI descriptions and examples for the billing API (kept out of the views)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class BillingAPIKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.billing.authentication.BillingAPIKeyAuthentication"
    name = "BillingAPIKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Billing-API-Key"}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def _error(description: str, code: str, message: str, details=None) -> OpenApiResponse:
    return OpenApiResponse(
        ErrorSerializer,
        description,
        examples=[OpenApiExample(code, value={"error": {"code": code, "message": message, "details": details}})],
    )


_AUTH = {
    401: _error(
        "Missing, unknown, revoked or expired key (codes missing_api_key, invalid_api_key, "
        "api_key_inactive, api_key_expired)",
        "invalid_api_key",
        "The API key is not valid.",
    ),
    403: _error(
        "Caller IP or template type not allowed for this key (ip_not_allowed, template_type_not_allowed)",
        "ip_not_allowed",
        "This API key may not be used from this address.",
    ),
    429: _error(
        "Too many requests (per key or per IP); see Retry-After",
        "rate_limited",
        "Too many requests; retry in 3 s.",
        {"retry_after": 3},
    ),
    503: _error(
        "Redis (throttles, caches) unreachable: nothing was written; retry after Retry-After",
        "service_unavailable",
        "A service we depend on (redis) is unavailable; retry in 5 s.",
        {"retry_after": 5},
    ),
}
_NOT_FOUND = {404: _error("No such queue for this key's tenant", "not_found", "Queue not found.")}

ERROR_RESPONSES_SEND = {
    **_AUTH,
    400: _error(
        "Malformed JSON, wrong types, unknown or server-owned fields (malformed_json, validation_error, "
        "unknown_field, forbidden_field, api_key_in_query_string)",
        "validation_error",
        "The request is not valid; see details.",
        {"external_id": ["This field is required."]},
    ),
    409: _error(
        "external_id already used with different content",
        "idempotency_conflict",
        "This external_id was already used with different content.",
    ),
    413: _error(
        "Body or contact list too large (payload_too_large, too_many_contacts)",
        "too_many_contacts",
        "At most 10000 contacts per request; got 10001.",
        {"max_contacts": 10000},
    ),
    415: _error("Body is not application/json", "unsupported_media_type", "Send the body as application/json."),
    422: _error(
        "Nothing to send or unusable template/instance (no_valid_contacts, contacts_rejected, "
        "unknown_template, template_type_mismatch, no_default_template, no_active_variation, "
        "unknown_instance, no_instance)",
        "no_valid_contacts",
        "None of the contacts can be sent; see details.",
    ),
}
ERROR_RESPONSES_READ = {**_AUTH, **_NOT_FOUND}
ERROR_RESPONSES_CONTROL = {
    **_AUTH,
    **_NOT_FOUND,
    400: _error("Unknown action", "validation_error", "The request is not valid; see details."),
    409: _error(
        "Not allowed from the current status",
        "invalid_transition",
        "Cannot resume a queue that is running.",
        {"current_status": "running", "action": "resume"},
    ),
}

SEND_DESCRIPTION = {
    "overdue": "Collection messages for bills already due. Each contact needs `due_date` before today "
    "(tenant time zone) and `amount`. Sent inside business hours only.",
    "upcoming": "Reminders for bills not yet due. Each contact needs `due_date` today or later and `amount`. "
    "Sent inside business hours only.",
    "notification": "General notices. `due_date` and `amount` are optional. Sent 24/7 unless the tenant "
    "restricts notifications to business hours.",
}

OVERDUE_EXAMPLE = {
    "external_id": "erp-batch-2026-11-24-001",
    "template": "Cobrança padrão",
    "callback_url": "https://erp.example.com/hooks/billing",
    "metadata": {"branch": "São Paulo"},
    "contacts": [
        {
            "phone": "(11) 99876-5432",
            "name": "Maria Silva",
            "external_id": "INV-1001",
            "due_date": "2026-11-10",
            "amount": "1234.56",
            "variables": {"payment_link": "https://pay.example.com/1001"},
        },
    ],
}
UPCOMING_EXAMPLE = {
    "external_id": "erp-reminders-2026-11-24",
    "contacts": [{"phone": "+55 21 98765-4321", "name": "João Souza", "due_date": "2026-12-01", "amount": 350}],
}
NOTIFICATION_EXAMPLE = {
    "external_id": "clinic-notice-42",
    "scheduled_for": "2026-11-25T09:00:00-03:00",
    "contacts": [
        {"phone": "11987654321", "name": "Ana Lima", "variables": {"message": "A clínica fechará no feriado."}}
    ],
}
SEND_RESPONSE_EXAMPLE = {
    "queue_id": "6f1c2d5e-8a0b-4c1e-9d7a-2b3c4d5e6f70",
    "billing_campaign_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "status": "pending",
    "accepted": 1,
    "rejected": [
        {
            "index": 1,
            "phone": "+55 11 3***-4444",
            "code": "not_mobile",
            "message": "Phone number is not a mobile number (WhatsApp needs a mobile).",
        }
    ],
    "duplicates_removed": 0,
    "eta": "2026-11-24T14:03:00+00:00",
    "status_url": "/api/v1/billing/queue/6f1c2d5e-8a0b-4c1e-9d7a-2b3c4d5e6f70/status",
}
STATUS_EXAMPLE = {
    "queue_id": "6f1c2d5e-8a0b-4c1e-9d7a-2b3c4d5e6f70",
    "billing_campaign_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "external_id": "erp-batch-2026-11-24-001",
    "template_type": "overdue",
    "status": "running",
    "counters": {
        "total": 100,
        "pending": 60,
        "sent": 38,
        "delivered": 30,
        "read": 12,
        "failed": 2,
        "cancelled": 0,
        "skipped": 0,
        "replied": 1,
    },
    "progress_percent": 40.0,
    "scheduled_for": None,
    "started_at": "2026-11-24T12:00:00Z",
    "completed_at": None,
    "eta": "2026-11-24T15:00:00Z",
    "pause_reason": "",
    "next_resume_at": None,
    "last_heartbeat": "2026-11-24T12:40:00Z",
}
PAUSED_EXAMPLE = {**STATUS_EXAMPLE, "status": "paused", "pause_reason": "manual"}
CONTACTS_EXAMPLE = {
    "next": "https://billing.example.com/api/v1/billing/queue/6f1c.../contacts?cursor=cD0xMDA%3D",
    "previous": None,
    "results": [
        {
            "id": 101,
            "external_id": "INV-1001",
            "phone": "+55 11 9****-5432",
            "status": "delivered",
            "attempts": 1,
            "error_code": "",
            "provider_message_id": "3EB0A1B2C3D4E5F6",
            "variation": "A",
            "sent_at": "2026-11-24T12:00:03Z",
            "delivered_at": "2026-11-24T12:00:09Z",
            "read_at": None,
            "replied_at": None,
        }
    ],
}
