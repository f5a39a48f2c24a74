"""Business hours (when a tenant may message its customers) and the chat history
(every message sent or received lives in a conversation)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class BusinessHours(models.Model):
    """One opening range on one weekday, in the tenant's time zone. Several rows per day make
    a lunch break; `closes_at < opens_at` runs past midnight into the next day, and
    `closes_at == opens_at` is a full 24 hours (00:00-00:00 every day = always open)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="business_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens_at = models.TimeField()
    closes_at = models.TimeField()

    class Meta:
        ordering = ["tenant", "weekday", "opens_at"]
        verbose_name_plural = "business hours"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "weekday", "opens_at"], name="business_hours_unique_start"),
            models.CheckConstraint(condition=Q(weekday__gte=0, weekday__lte=6), name="business_hours_weekday_range"),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens_at:%H:%M}-{self.closes_at:%H:%M}"


class ClosedDate(models.Model):
    """A holiday or any day without opening: ranges that start on this date do not open."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="closed_dates")
    date = models.DateField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["tenant", "date"]
        constraints = [models.UniqueConstraint(fields=["tenant", "date"], name="closed_date_unique")]

    def __str__(self) -> str:
        return f"{self.date:%d/%m/%Y} {self.reason}".strip()


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="conversations")
    instance = models.ForeignKey(
        "connections.WhatsAppInstance", on_delete=models.SET_NULL, null=True, blank=True, related_name="conversations"
    )
    contact_phone = models.CharField(max_length=20, help_text="E.164")
    contact_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    closed_by = models.CharField(max_length=20, blank=True, help_text="who closed it: billing, agent, system")
    closed_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # What the customer's replies said (services/conversations.py). Database defaults: the send
    # worker inserts conversations with an explicit column list (chat_history).
    needs_attention = models.BooleanField(
        default=False, db_default=False, help_text="A person should answer (negotiation, a request for one)."
    )
    attention_reason = models.CharField(
        max_length=20, blank=True, default="", db_default="", help_text="The intent that asked for a person."
    )
    last_intent = models.CharField(
        max_length=20, blank=True, default="", db_default="", help_text="Intent of the customer's latest message."
    )
    last_inbound_at = models.DateTimeField(null=True, blank=True, help_text="When the customer last wrote.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_message_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "instance", "contact_phone"], name="conversation_unique_contact", nulls_distinct=False
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status"], name="conversation_tenant_status"),
            # The staff inbox: conversations waiting for a person, the latest customer message first.
            # Not on last_message_at: every message sent moves it (the index would cost each send).
            models.Index(
                fields=["tenant", "-last_inbound_at"], name="conversation_attention", condition=Q(needs_attention=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_name or 'contact'} ({self.status})"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"
        RECEIVED = "received", "Received"

    # tenant look-ups use (tenant, created_at); each index costs every insert (one per message sent)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="messages", db_index=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=10, choices=Direction.choices)
    content = models.TextField()
    provider_message_id = models.CharField(max_length=128, blank=True)  # indexed in Meta, without a LIKE twin
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=30, blank=True, help_text="what produced it, e.g. billing")
    # Inbound only: the reply classifier's answer (apps.chat.services.reply_intents).
    intent = models.CharField(max_length=20, blank=True, default="", db_default="")
    intent_confidence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="message_tenant_created"),
            models.Index(fields=["provider_message_id"], name="message_provider_id"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.status}"
