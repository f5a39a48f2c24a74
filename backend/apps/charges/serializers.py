"""Input and output shapes of the charges API, in the send endpoints' style: unknown or
server-owned keys are a 400, the charge list is checked for shape here and charge by charge in
services/charge_validation.py (10,000 charges), dates and amounts accept Brazilian formats."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.billing.serializers import StrictSerializer, refuse_unknown_keys
from apps.billing.services.contact_validation import parse_amount, parse_due_date
from apps.charges.constants import MAX_OFFSET_DAYS, MIN_OFFSET_DAYS, ChargeStatus
from apps.charges.models import Cadence, Charge
from apps.charges.services.cadences import StepSpec
from apps.charges.services.charge_validation import CHARGE_FIELDS
from apps.charges.services.recovery_report import MAX_PERIOD_DAYS, Period


class ChargeInputSerializer(serializers.Serializer):
    """One charge (documentation only; see services/charge_validation.py)."""

    external_id = serializers.CharField(max_length=200, help_text="Your invoice or installment id (the upsert key).")
    phone = serializers.CharField(help_text="The debtor's mobile, any common Brazilian format.")
    name = serializers.CharField(max_length=200)
    amount = serializers.CharField(help_text='1234.56 or "1.234,56"; greater than zero.')
    due_date = serializers.CharField(help_text="YYYY-MM-DD or DD/MM/YYYY.")
    cadence = serializers.CharField(required=False, help_text="Cadence name; the tenant's default when absent.")
    variables = serializers.DictField(required=False, help_text="Extra template variables.")
    description = serializers.CharField(required=False, max_length=500)
    document = serializers.CharField(required=False, help_text="CPF or CNPJ (check digits verified).")
    debtor_external_id = serializers.CharField(
        required=False, max_length=200, help_text="Your debtor id: groups charges for the daily cap."
    )
    payment_link = serializers.URLField(required=False, max_length=500)
    pix_code = serializers.CharField(required=False, max_length=1000, help_text="PIX copy-and-paste code.")
    boleto_line = serializers.CharField(required=False, max_length=100)
    asaas_payment_id = serializers.CharField(required=False, max_length=100)


@extend_schema_field(ChargeInputSerializer(many=True))
class ChargesField(serializers.Field):
    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            raise serializers.ValidationError("charges must be a list of objects.", code="invalid")
        if not data:
            raise serializers.ValidationError("charges must not be empty.", code="empty")
        for charge in data:
            if isinstance(charge, Mapping):
                refuse_unknown_keys(charge, CHARGE_FIELDS, "charge")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class ChargesUpsertSerializer(StrictSerializer):
    charges = ChargesField()
    strict = serializers.BooleanField(
        required=False, default=False, help_text="Refuse the whole request if any charge is invalid."
    )


class RejectedChargeSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    external_id = serializers.CharField()
    phone = serializers.CharField(help_text="Masked.")
    code = serializers.CharField()
    message = serializers.CharField()


class UpsertResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rejected = RejectedChargeSerializer(many=True)


class ChargeSerializer(serializers.ModelSerializer):
    phone = serializers.CharField(source="masked_phone", help_text="Masked.")
    cadence = serializers.CharField(source="cadence.name", default=None, allow_null=True)

    class Meta:
        model = Charge
        fields = [
            "external_id",
            "status",
            "name",
            "phone",
            "debtor_external_id",
            "amount",
            "due_date",
            "description",
            "payment_link",
            "pix_code",
            "boleto_line",
            "variables",
            "cadence",
            "asaas_payment_id",
            "paid_at",
            "paid_amount",
            "payment_source",
            "payment_reference",
            "escalated_at",
            "created_at",
            "updated_at",
        ]


class ChargeDetailSerializer(ChargeSerializer):
    plan = serializers.ListField(child=serializers.DictField(), help_text="The cadence's steps and their state.")
    timeline = serializers.ListField(
        child=serializers.DictField(), help_text="Status changes, steps and messages, in time order."
    )

    class Meta(ChargeSerializer.Meta):
        fields = [*ChargeSerializer.Meta.fields, "plan", "timeline"]


def _date(value: str, name: str):
    parsed = parse_due_date(value)
    if parsed is None:
        raise serializers.ValidationError(f"{name} must be YYYY-MM-DD or DD/MM/YYYY.", code="invalid")
    return parsed


class ChargesQuerySerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=ChargeStatus.values, required=False)
    due_from = serializers.CharField(required=False, max_length=10)
    due_to = serializers.CharField(required=False, max_length=10)
    debtor = serializers.CharField(required=False, max_length=200, help_text="debtor_external_id or phone.")
    cursor = serializers.CharField(required=False, max_length=200)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=1000)

    def validate_due_from(self, value: str):
        return _date(value, "due_from")

    def validate_due_to(self, value: str):
        return _date(value, "due_to")


class PayChargeSerializer(StrictSerializer):
    paid_at = serializers.CharField(
        required=False, max_length=40, help_text="ISO 8601 with offset; now when absent. Not in the future."
    )
    paid_amount = serializers.JSONField(required=False, help_text='1234.56 or "1.234,56"; the amount when absent.')
    reference = serializers.CharField(
        required=False, max_length=200, allow_blank=True, help_text="Your payment id or a note."
    )

    def validate_paid_at(self, value: str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise serializers.ValidationError("paid_at must be ISO 8601 with an offset.", code="invalid")
        if parsed > timezone.now() + timedelta(minutes=5):
            raise serializers.ValidationError("paid_at is in the future.", code="in_future")
        return parsed

    def validate_paid_amount(self, value: Any):
        amount = parse_amount(value)
        if amount is None or amount <= 0:
            raise serializers.ValidationError("paid_amount must be an amount greater than zero.", code="invalid")
        return amount


class ChargeActionSerializer(StrictSerializer):
    reason = serializers.CharField(required=False, max_length=200, allow_blank=True)


class StepSerializer(StrictSerializer):
    offset_days = serializers.IntegerField(
        min_value=MIN_OFFSET_DAYS,
        max_value=MAX_OFFSET_DAYS,
        help_text="Days from the due date (-3 before, 0 on it, 5 after).",
    )
    template = serializers.CharField(
        required=False, allow_null=True, max_length=200, help_text="Template name or id; the type's default when null."
    )
    send_from = serializers.TimeField(
        required=False,
        allow_null=True,
        format="%H:%M",
        help_text="HH:MM local: the step's queue does not start earlier.",
    )


class CadenceInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    steps = StepSerializer(many=True, allow_empty=False)
    default = serializers.BooleanField(required=False, default=False)

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value or "/" in value or any(ord(ch) < 32 for ch in value):
            raise serializers.ValidationError("name must be printable text without '/'.", code="invalid")
        return value

    def step_specs(self) -> list[StepSpec]:
        return [
            StepSpec(offset_days=s["offset_days"], template=s.get("template"), send_from=s.get("send_from"))
            for s in self.validated_data["steps"]
        ]


class CadenceReplaceSerializer(CadenceInputSerializer):
    name = serializers.CharField(max_length=100, required=False, help_text="A new name (rename).")
    default = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: make it the default; false: stop being the default.",
    )


class CadenceStepOutputSerializer(serializers.Serializer):
    offset_days = serializers.IntegerField()
    template_type = serializers.CharField()
    template = serializers.CharField(source="template.name", default=None, allow_null=True)
    send_from = serializers.TimeField(format="%H:%M", allow_null=True)


class CadenceSerializer(serializers.ModelSerializer):
    steps = CadenceStepOutputSerializer(many=True)
    # Not get_default: that name is DRF's Field.get_default, which a serializer also is.
    default = serializers.SerializerMethodField(method_name="is_default")

    class Meta:
        model = Cadence
        fields = ["name", "default", "steps", "created_at", "updated_at"]

    def is_default(self, cadence: Cadence) -> bool:
        return cadence.pk == self.context.get("default_cadence_id")


class RecoveryQuerySerializer(StrictSerializer):
    date_from = serializers.CharField(max_length=10, help_text="First day (tenant-local), YYYY-MM-DD.")
    date_to = serializers.CharField(max_length=10, help_text="Last day, included.")
    window_days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=90,
        help_text="Payment within N days of a message counts; tenant setting when absent.",
    )

    def validate(self, attrs: dict) -> dict:
        start, end = _date(attrs["date_from"], "date_from"), _date(attrs["date_to"], "date_to")
        if end < start or (end - start).days >= MAX_PERIOD_DAYS:
            raise serializers.ValidationError(
                f"date_to must be on or after date_from, at most {MAX_PERIOD_DAYS} days.", code="invalid_period"
            )
        attrs["period"] = Period(start, end)
        return attrs
