"""OpenAPI texts and examples of the data-subject endpoints."""

from __future__ import annotations

from apps.billing.api_docs import ERROR_RESPONSES_READ, _error

EXPORT_DESCRIPTION = (
    "Right of access (LGPD art. 18): one JSON document with everything this tenant holds about the phone — "
    "billing contacts (with variables and the rendered messages), campaign contacts, conversations and their "
    "messages, reply records, the opt-out entry, callbacks that carried the phone, charges and their timelines. "
    "A phone nothing is held about answers the same document with empty lists. The request is recorded in the "
    "audit trail (who, when, how many rows), never the phone."
)
ERASE_DESCRIPTION = (
    "Right to erasure (LGPD art. 18): phones, names, variables, message texts and payment data are blanked or "
    "removed in every table; counters and statuses stay for reports. Unsent messages to the phone are skipped and "
    "its open charges cancelled. The opt-out survives as a keyed hash, so any later send to the phone is refused "
    "as `opted_out`. Repeating the request is harmless. A message being delivered at that moment answers 409 "
    "`data_subject_in_flight` with `Retry-After` and changes nothing."
)
ERRORS = {
    **{status: response for status, response in ERROR_RESPONSES_READ.items() if status != 404},  # unknown: empty
    400: _error(
        "The phone cannot be read (invalid_phone, invalid_country, empty_phone, not_mobile)",
        "invalid_phone",
        "This is not a valid phone number.",
    ),
}
ERRORS_ERASE = {
    **ERRORS,
    409: _error(
        "A message to the phone is in flight; nothing was changed",
        "data_subject_in_flight",
        "A message to this number is being delivered right now; ask again in a minute.",
        {"in_flight": 1, "retry_after": 60},
    ),
}
EXPORT_EXAMPLE = {
    "phone": "+5511987654321",
    "tenant": {
        "name": "Clínica Exemplo",
        "creditor_legal_name": "Clínica Exemplo Ltda.",
        "privacy_contact": "dpo@clinica.example",
        "legal_basis": "credit_protection",
        "retention_days": 180,
    },
    "generated_at": "2026-03-10T14:00:00+00:00",
    "billing_contacts": [
        {
            "id": 12,
            "phone": "+5511987654321",
            "name": "Maria Silva",
            "status": "delivered",
            "rendered_message": "Olá, Maria! …",
            "variables": {"valor": "R$ 150,00"},
        }
    ],
    "campaign_contacts": [],
    "conversations": [],
    "conversation_replies": [],
    "opt_out": [],
    "callbacks": [],
    "charges": [],
}
ERASE_EXAMPLE = {
    "erased": {
        "opt_out_hashed": 1,
        "contacts_skipped": 0,
        "charges_cancelled": 1,
        "billing_contacts": 3,
        "campaign_contacts": 3,
        "charges": 2,
        "conversations": 1,
        "callbacks": 0,
    }
}
