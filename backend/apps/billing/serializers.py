"""Input and output shapes of the public billing API.

Inputs refuse what they do not know: an unknown key (or one a client must never set, such as
`tenant`, `status` or a counter) is a 400, never silently ignored. The contact list is checked
for shape here and contact by contact in `services/contact_validation.py` (fast path for
10,000 contacts); `ContactInputSerializer` documents a contact for OpenAPI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.exceptions import ApplicationError
from apps.contacts.utils import mask_phone

from .constants import ContactStatus
from .services.contact_validation import CONTACT_FIELDS

# Fields that exist on our models but belong to the server; named so the error says so.
SERVER_OWNED_FIELDS = frozenset(
    {
        "id",
        "tenant",
        "tenant_id",
        "status",
        "queue_id",
        "billing_campaign_id",
        "provider_message_id",
        "attempts",
        "sent_at",
        "delivered_at",
        "read_at",
        "created_at",
        "total_contacts",
        "sent_count",
        "failed_count",
        "cancelled_count",
        "skipped_count",
        "delivered_count",
        "read_count",
        "processing_by",
        "rendered_message",
        "variation",
        "error_code",
        "last_error",
    }
)
MAX_SCHEDULE_AHEAD = timedelta(days=365)


def refuse_unknown_keys(data: Mapping[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    unknown = set(data) - set(allowed)
    if not unknown:
        return
    owned = sorted(unknown & SERVER_OWNED_FIELDS)
    if owned:
        raise ApplicationError(
            "forbidden_field",
            f"{where}: these fields are set by the server and may not be sent: {', '.join(owned)}.",
            status=400,
            details={"fields": owned},
        )
    names = sorted(str(name)[:50] for name in unknown)[:20]
    raise ApplicationError(
        "unknown_field", f"{where}: unknown fields: {', '.join(names)}.", status=400, details={"fields": names}
    )


def contains_nul(value: Any) -> bool:
    """PostgreSQL text and JSON cannot hold U+0000: find it anywhere before it reaches a query.
    A parsed body holds only dicts, lists and scalars: they are told apart by exact type first
    (a Mapping check goes through the ABC machinery, a third of this walk's time)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return True
        elif kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            refuse_unknown_keys(data, set(self.fields), "request")
        if contains_nul(data):
            raise ApplicationError("invalid_characters", "Text may not contain NUL (\\u0000) characters.", status=400)
        return super().to_internal_value(data)


class ContactInputSerializer(serializers.Serializer):
    """One recipient (documentation only; see services/contact_validation.py)."""

    phone = serializers.CharField(help_text="Any common Brazilian format, or +<country><number>.")
    name = serializers.CharField(max_length=200)
    external_id = serializers.CharField(required=False, max_length=200, help_text="Your id for this contact.")
    due_date = serializers.DateField(required=False, help_text="YYYY-MM-DD or DD/MM/YYYY; overdue/upcoming only.")
    amount = serializers.DecimalField(
        required=False, max_digits=14, decimal_places=2, help_text='1234.56 or "1.234,56"; overdue/upcoming only.'
    )
    variables = serializers.DictField(required=False, help_text="Extra template variables.")


@extend_schema_field(ContactInputSerializer(many=True))
class ContactsField(serializers.Field):
    """A list of contact objects; contacts are validated one by one by the service."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            raise serializers.ValidationError("contacts must be a list of objects.", code="invalid")
        if not data:
            raise serializers.ValidationError("contacts must not be empty.", code="empty")
        for contact in data:
            if isinstance(contact, Mapping):
                refuse_unknown_keys(contact, CONTACT_FIELDS, "contact")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class SendRequestSerializer(StrictSerializer):
    external_id = serializers.CharField(max_length=200, help_text="Your id for this request: the idempotency key.")
    template = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=200,
        help_text="Template name or id; the type's default when absent.",
    )
    instance = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=100,
        help_text="WhatsApp instance name; the tenant's default when absent.",
    )
    scheduled_for = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=40,
        help_text="ISO 8601 with offset, e.g. 2026-12-01T09:00:00-03:00.",
    )
    callback_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    metadata = serializers.JSONField(required=False, help_text="Your data, echoed in callbacks.")
    strict = serializers.BooleanField(
        required=False, default=False, help_text="Refuse the whole request if any contact is invalid."
    )
    contacts = ContactsField()

    def validate_external_id(self, value: str) -> str:
        value = value.strip()
        if not value or any(ord(ch) < 32 for ch in value):
            raise serializers.ValidationError("external_id must be printable text.", code="invalid")
        return value

    def validate_scheduled_for(self, value: str | None):
        if not value:
            return None
        parsed = None
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is None:
            raise serializers.ValidationError(
                "scheduled_for must be ISO 8601, e.g. 2026-12-01T09:00:00-03:00.", code="invalid"
            )
        if parsed.tzinfo is None:
            raise serializers.ValidationError("scheduled_for must include a UTC offset.", code="missing_offset")
        if parsed - timezone.now() > MAX_SCHEDULE_AHEAD:
            raise serializers.ValidationError("scheduled_for is more than a year ahead.", code="too_far")
        return parsed

    def validate_callback_url(self, value: str) -> str:
        if value and not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("callback_url must be http or https.", code="invalid")
        if value:
            # SSRF: refuse loopback/private/link-local/metadata targets now (checked again at send
            # time). A name that does not resolve yet is accepted; delivery retries it.
            from apps.common.url_safety import UnsafeURL, validate_callback_url

            try:
                validate_callback_url(value)
            except UnsafeURL as exc:
                if exc.code != "unresolvable_callback_url":
                    raise ApplicationError(
                        "unsafe_callback_url", exc.message, status=400, details={"field": "callback_url"}
                    ) from None
        return value

    def validate_metadata(self, value: Any) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise serializers.ValidationError("metadata must be a JSON object.", code="invalid")
        if len(json.dumps(value, ensure_ascii=False)) > settings.BILLING_MAX_METADATA_BYTES:
            raise serializers.ValidationError(
                f"metadata must be at most {settings.BILLING_MAX_METADATA_BYTES} bytes.", code="too_large"
            )
        return value


class RejectedContactSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    phone = serializers.CharField(help_text="Masked.")
    code = serializers.CharField()
    message = serializers.CharField()


class SendResponseSerializer(serializers.Serializer):
    queue_id = serializers.UUIDField()
    billing_campaign_id = serializers.UUIDField()
    status = serializers.CharField()
    accepted = serializers.IntegerField()
    rejected = RejectedContactSerializer(many=True)
    duplicates_removed = serializers.IntegerField()
    eta = serializers.DateTimeField(allow_null=True)
    status_url = serializers.CharField()


class QueueStatusSerializer(serializers.Serializer):
    queue_id = serializers.UUIDField(source="id")
    billing_campaign_id = serializers.UUIDField()
    external_id = serializers.CharField(source="billing_campaign.external_id")
    template_type = serializers.CharField()
    status = serializers.CharField()
    counters = serializers.SerializerMethodField()
    progress_percent = serializers.FloatField()
    scheduled_for = serializers.DateTimeField()
    started_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()
    eta = serializers.DateTimeField(allow_null=True, source="eta_value")
    pause_reason = serializers.CharField()
    next_resume_at = serializers.DateTimeField()
    last_heartbeat = serializers.DateTimeField()

    def get_counters(self, queue) -> dict[str, int]:
        return {
            "total": queue.total_contacts,
            "pending": queue.pending_count,
            "sent": queue.sent_count,
            "delivered": queue.delivered_count,
            "read": queue.read_count,
            "failed": queue.failed_count,
            "cancelled": queue.cancelled_count,
            "skipped": queue.skipped_count,
            "replied": queue.replied_count,
        }


class QueueControlSerializer(StrictSerializer):
    action = serializers.ChoiceField(choices=["pause", "resume", "cancel"])


class ContactsQuerySerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=ContactStatus.values, required=False)
    external_id = serializers.CharField(required=False, max_length=200)
    cursor = serializers.CharField(required=False, max_length=200)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=1000)


class MaskedPhoneField(serializers.CharField):
    """An E.164 phone, shown masked (`+55 11 9****-4321`)."""

    def to_representation(self, value: str) -> str:
        return mask_phone(value)


class ContactStatusSerializer(serializers.Serializer):
    """One row of `selectors.queue_contacts` (a dict)."""

    id = serializers.IntegerField()
    external_id = serializers.CharField()
    phone = MaskedPhoneField(help_text="Masked.")
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    error_code = serializers.CharField()
    provider_message_id = serializers.CharField()
    variation = serializers.CharField(source="variation_name", allow_null=True)
    sent_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField()
    replied_at = serializers.DateTimeField()
