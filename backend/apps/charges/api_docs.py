"""OpenAPI descriptions and examples for the charges API (kept out of the views)."""

from __future__ import annotations

from apps.billing.api_docs import ERROR_RESPONSES_READ, _error

ERRORS_READ = {
    **ERROR_RESPONSES_READ,
    404: _error("No such charge or cadence for this key's tenant", "not_found", "Charge not found."),
    400: _error(
        "Bad filter (validation_error, unknown_field)", "validation_error", "The request is not valid; see details."
    ),
}
ERRORS_UPSERT = {
    **ERROR_RESPONSES_READ,
    400: _error(
        "Malformed JSON, unknown or server-owned fields (malformed_json, validation_error, unknown_field, "
        "forbidden_field)",
        "unknown_field",
        "charge: unknown fields: colour.",
        {"fields": ["colour"]},
    ),
    403: _error(
        "The key may not send overdue/upcoming messages",
        "template_type_not_allowed",
        "This API key may not send overdue and upcoming messages.",
    ),
    413: _error(
        "More than 10,000 charges (too_many_charges, payload_too_large)",
        "too_many_charges",
        "At most 10000 charges per request; got 10001.",
        {"max_charges": 10000},
    ),
    422: _error(
        "Nothing stored (no_valid_charges, charges_rejected in strict mode)",
        "no_valid_charges",
        "None of the charges can be stored; see details.",
    ),
}
ERRORS_ACTION = {
    **ERRORS_READ,
    409: _error(
        "Not allowed from the current status",
        "invalid_transition",
        "A paid charge cannot become cancelled.",
        {"current_status": "paid", "target_status": "cancelled"},
    ),
}
ERRORS_CADENCE = {
    **ERRORS_READ,
    400: _error(
        "Bad steps (validation_error, invalid_steps, duplicate_offset, invalid_offset)",
        "duplicate_offset",
        "Two steps cannot share an offset.",
    ),
    403: ERRORS_UPSERT[403],
    409: _error("The name is taken", "cadence_exists", "A cadence named 'Padrão' already exists."),
    422: _error(
        "Unusable template (unknown_template, template_type_mismatch, no_default_template)",
        "template_type_mismatch",
        "A D+5 step needs a overdue template; 'Lembrete' is upcoming.",
    ),
}
ERRORS_CADENCE_DELETE = {
    **ERRORS_READ,
    403: ERRORS_UPSERT[403],
    409: _error(
        "Open charges follow it",
        "cadence_in_use",
        "3 open charge(s) follow this cadence.",
        {"open_charges": 3, "default": True},
    ),
}

UPSERT_DESCRIPTION = (
    "Creates or updates charges by `external_id` (unique per tenant). A changed amount or due date updates the "
    "charge and its future steps, and skips its messages queued but not sent yet (`charge_changed`). An absent "
    "`cadence` means the tenant's default cadence. A bad charge is reported by index and the others are stored "
    "(`strict: true` refuses the whole request). Status is never changed here: use pay, cancel, write-off, reopen."
)
ACTION_SUMMARY = {
    "pay": "Mark a charge paid: its unsent messages are skipped at once",
    "cancel": "Cancel a charge: its unsent messages are skipped at once",
    "write-off": "Write a charge off: its unsent messages are skipped at once",
    "reopen": "Open a charge again (refund, chargeback): the cadence resumes from the next due step",
}
UPSERT_EXAMPLE = {
    "charges": [
        {
            "external_id": "INV-1001-1/3",
            "phone": "(11) 99876-5432",
            "name": "Maria Silva",
            "amount": "1.234,56",
            "due_date": "2026-12-10",
            "cadence": "Padrão",
            "debtor_external_id": "PAC-77",
            "payment_link": "https://pay.example.com/1001",
            "pix_code": "00020126580014br.gov.bcb.pix…",
        },
    ],
}
CADENCE_EXAMPLE = {
    "name": "Padrão",
    "default": True,
    "steps": [
        {"offset_days": -3, "template": None},
        {"offset_days": 0},
        {"offset_days": 1},
        {"offset_days": 5, "send_from": "10:00"},
        {"offset_days": 15},
        {"offset_days": 30},
    ],
}
REPORT_EXAMPLE = {
    "period": {"from": "2026-11-01", "to": "2026-11-30"},
    "window_days": 7,
    "charges_due": {"open": 40, "paid": 55, "cancelled": 3, "written_off": 2, "escalated": 1, "total": 100},
    "charges_paid": 57,
    "amount_recovered": "48210.90",
    "median_days_to_payment": 1.8,
    "conversion_by_step": [{"cadence": "Padrão", "offset_days": -3, "messages": 80, "paid": 22, "conversion": 0.275}],
    "conversion_by_variation": [
        {"template": "Lembrete padrão", "variation": "A", "messages": 40, "paid": 12, "conversion": 0.3}
    ],
}
