"""OpenAPI errors and examples of the conversation endpoints (kept out of the views)."""

from __future__ import annotations

from apps.billing.api_docs import _AUTH, _error

_NOT_FOUND = {404: _error("No such conversation for this key's tenant", "not_found", "Conversation not found.")}

ERROR_RESPONSES_LIST = {
    **_AUTH,
    400: _error(
        "Bad filter (validation_error, invalid_phone, unknown_field)",
        "invalid_phone",
        "phone is not a valid phone number.",
    ),
}
ERROR_RESPONSES_READ = {**_AUTH, **_NOT_FOUND}
ERROR_RESPONSES_REPLY = {
    **_AUTH,
    **_NOT_FOUND,
    400: _error(
        "Empty, too long or malformed (validation_error, empty_text, text_too_long, invalid_characters, unknown_field)",
        "text_too_long",
        "A reply has at most 1000 characters.",
        {"max_length": 1000, "length": 1200},
    ),
    409: _error(
        "external_id already used with another text",
        "idempotency_conflict",
        "This external_id was already used with different content.",
    ),
    422: _error(
        "The phone opted out, or the conversation cannot be answered (opted_out, no_instance, unknown_instance)",
        "opted_out",
        "This phone asked not to receive messages; only the tenant's admin can lift it.",
    ),
}

CONVERSATION_EXAMPLE = {
    "id": 4812,
    "phone": "+5511998765432",
    "contact_name": "Maria",
    "instance": "principal",
    "status": "open",
    "needs_attention": True,
    "attention_reason": "negotiate",
    "last_intent": "negotiate",
    "last_message_at": "2026-12-01T13:05:12Z",
    "last_inbound_at": "2026-12-01T13:05:12Z",
    "closed_by": "",
    "closed_at": None,
    "created_at": "2026-11-28T12:00:03Z",
}
DETAIL_EXAMPLE = {
    "conversation": CONVERSATION_EXAMPLE,
    "messages": [
        {
            "id": 90311,
            "direction": "outbound",
            "author": "collection",
            "author_label": "cobrança",
            "text": "Olá, Maria! Consta em aberto a fatura de *R$ 150,00*...",
            "status": "read",
            "intent": "",
            "intent_confidence": None,
            "created_at": "2026-12-01T12:00:03Z",
            "sent_at": "2026-12-01T12:00:03Z",
            "delivered_at": "2026-12-01T12:00:05Z",
            "read_at": "2026-12-01T12:40:00Z",
        },
        {
            "id": 90377,
            "direction": "inbound",
            "author": "customer",
            "author_label": "cliente",
            "text": "quero parcelar",
            "status": "received",
            "intent": "negotiate",
            "intent_confidence": 0.9,
            "created_at": "2026-12-01T13:05:12Z",
            "sent_at": None,
            "delivered_at": None,
            "read_at": None,
        },
    ],
    "has_more_messages": False,
    "queued_replies": [],
}
REPLY_QUEUED_EXAMPLE = {
    "reply_id": 77,
    "conversation_id": 4812,
    "kind": "staff",
    "queue_id": "0b6f3c1e-5a7d-4f55-9d59-2b1f0c7e9a10",
    "status_url": "/api/v1/billing/queue/0b6f3c1e-5a7d-4f55-9d59-2b1f0c7e9a10/status",
}
