"""Input and output shapes of `/api/v1/billing/conversations` (strict inputs, like the send API)."""

from __future__ import annotations

from rest_framework import serializers

from apps.billing.serializers import StrictSerializer
from apps.chat.models import Conversation
from apps.chat.services.reply_intents import INTENTS


class ConversationQuerySerializer(StrictSerializer):
    phone = serializers.CharField(required=False, max_length=40, help_text="Any common format; matched as E.164.")
    status = serializers.ChoiceField(choices=Conversation.Status.values, required=False)
    needs_attention = serializers.BooleanField(required=False, allow_null=True, default=None)
    intent = serializers.ChoiceField(choices=INTENTS, required=False, help_text="Of the customer's latest message.")
    date_from = serializers.DateField(required=False, help_text="Last message on or after (tenant's calendar).")
    date_to = serializers.DateField(required=False, help_text="Last message on or before (tenant's calendar).")
    cursor = serializers.CharField(required=False, max_length=200)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("date_from") and attrs.get("date_to") and attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError({"date_to": "date_to is before date_from."}, code="invalid")
        return attrs


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField(source="contact_phone", help_text="E.164.")
    contact_name = serializers.CharField()
    instance = serializers.CharField(source="instance.name", default=None, allow_null=True)
    status = serializers.CharField()
    needs_attention = serializers.BooleanField()
    attention_reason = serializers.CharField(help_text="The intent that asked for a person.")
    last_intent = serializers.CharField(help_text="Intent of the customer's latest message.")
    last_message_at = serializers.DateTimeField()
    last_inbound_at = serializers.DateTimeField()
    closed_by = serializers.CharField()
    closed_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class ThreadMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="message.id")
    direction = serializers.CharField(source="message.direction")
    author = serializers.ChoiceField(
        choices=["customer", "collection", "automatic", "staff", "opt_out"], help_text="Who wrote it."
    )
    author_label = serializers.CharField()
    text = serializers.CharField(source="message.content")
    status = serializers.CharField(source="message.status")
    intent = serializers.CharField(source="message.intent", help_text="Inbound messages only.")
    intent_confidence = serializers.FloatField(source="message.intent_confidence", allow_null=True)
    created_at = serializers.DateTimeField(source="message.created_at")
    sent_at = serializers.DateTimeField(source="message.sent_at")
    delivered_at = serializers.DateTimeField(source="message.delivered_at")
    read_at = serializers.DateTimeField(source="message.read_at")


class QueuedReplySerializer(serializers.Serializer):
    reply_id = serializers.IntegerField(source="id")
    kind = serializers.CharField()
    author_label = serializers.CharField()
    status = serializers.CharField(source="contact.status", help_text="The reply's contact status.")
    queue_id = serializers.UUIDField(source="contact.queue_id")
    created_at = serializers.DateTimeField()


class ConversationDetailSerializer(serializers.Serializer):
    conversation = ConversationSerializer()
    messages = ThreadMessageSerializer(many=True, help_text="The latest 200, oldest first.")
    has_more_messages = serializers.BooleanField(source="has_more")
    queued_replies = QueuedReplySerializer(many=True, source="queued", help_text="Answers not sent yet.")


class StaffReplySerializer(StrictSerializer):
    text = serializers.CharField(trim_whitespace=False, help_text="At most 1000 characters; plain text.")
    external_id = serializers.CharField(
        required=False, max_length=100, help_text="Your id for this reply: a retry with it is not sent twice."
    )


class ResolveSerializer(StrictSerializer):
    """No fields: anything sent is refused as unknown."""


class ReplyQueuedSerializer(serializers.Serializer):
    reply_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    kind = serializers.CharField()
    queue_id = serializers.UUIDField()
    status_url = serializers.CharField(help_text="The reply's queue: delivery tracking as for any send.")
