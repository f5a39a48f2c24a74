"""A message we sent *in* a conversation, as an answer: automatic (an intent's answer) or a person's.

Each is a one-contact billing queue (ingest → broker → worker → provider), so pace, chat
history, receipts and callbacks are those of any send; this row says which contact answers
which conversation, why, and who wrote it. It is what the thread shows next to the messages
("automatic", "Ana (staff)") and what keeps automatic answers to one per intent per
conversation per day (the unique constraint, on the tenant's local date).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ConversationReply(models.Model):
    class Kind(models.TextChoices):
        AUTOMATIC = "automatic", "Automatic answer"
        STAFF = "staff", "A person's reply"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="conversation_replies")
    conversation = models.ForeignKey("chat.Conversation", on_delete=models.CASCADE, related_name="billing_replies")
    contact = models.OneToOneField(
        "billing.BillingContact", on_delete=models.CASCADE, related_name="conversation_reply"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    intent = models.CharField(max_length=20, blank=True, help_text="The intent an automatic answer answers.")
    local_date = models.DateField(help_text="The tenant's date when it was queued.")
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    author_api_key = models.ForeignKey(
        "billing.BillingAPIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "conversation reply"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "intent", "local_date"],
                condition=Q(kind="automatic"),
                name="conversation_reply_one_automatic_a_day",
            ),
            models.CheckConstraint(condition=Q(kind__in=["automatic", "staff"]), name="conversation_reply_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} in conversation {self.conversation_id}"

    @property
    def author_label(self) -> str:
        """Who wrote it, for the thread: never a phone or a secret."""
        if self.kind == self.Kind.AUTOMATIC:
            return "automática"
        if self.author_user is not None:
            return self.author_user.get_full_name() or self.author_user.get_username()
        if self.author_api_key is not None:
            return f"API ({self.author_api_key.name})"
        return "equipe"
