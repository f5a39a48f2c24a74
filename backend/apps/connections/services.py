"""What the rest of the project does to a WhatsApp instance beyond reading it.

    flag_for_attention(instance_id=..., reason=...)   the send worker: a person must look
    clear_attention(instances=...)                     the admin action, once a person has
    open_queue_count(instance=...)                     queues that still need it (no deletion)
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.utils import timezone

from .models import WhatsAppInstance

logger = logging.getLogger(__name__)


def flag_for_attention(*, instance_id: Any, reason: str) -> bool:
    """Flag the instance with a short, log-safe reason (no phone, no text, no key). The first
    flag's time is kept while it stays flagged; the reason is the latest. Returns whether the
    flag is new."""
    now = timezone.now()
    newly = WhatsAppInstance.objects.filter(pk=instance_id, attention_since__isnull=True).update(
        attention_reason=reason[:300], attention_since=now, updated_at=now)
    if not newly:
        WhatsAppInstance.objects.filter(pk=instance_id).update(attention_reason=reason[:300], updated_at=now)
    else:
        logger.warning("whatsapp instance flagged for attention", extra={"instance_id": instance_id, "reason": reason[:300]})
    return bool(newly)


def clear_attention(*, instances: Iterable[WhatsAppInstance]) -> int:
    """A person has looked: clear the flag. Returns how many were flagged."""
    ids = [instance.pk for instance in instances]
    return WhatsAppInstance.objects.filter(pk__in=ids).exclude(attention_since__isnull=True).update(
        attention_reason="", attention_since=None, updated_at=timezone.now())


def open_queue_count(*, instance: WhatsAppInstance) -> int:
    """Billing queues not yet final (completed, cancelled) that send through this instance.
    Imported when asked: connections sits below billing and does not depend on it to load."""
    from apps.billing.constants import FINAL_QUEUE_STATUSES

    queue_model = apps.get_model("billing", "BillingQueue")
    return queue_model.objects.filter(instance=instance).exclude(status__in=FINAL_QUEUE_STATUSES).count()
