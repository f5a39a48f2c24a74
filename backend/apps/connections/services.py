"""What the rest of the project does to a WhatsApp instance beyond reading it.

flag_for_attention(instance_id=..., reason=...)   the send worker: a person must look
clear_attention(instances=...)                     the admin action, once a person has
open_queue_count(instance=...)                     queues that still need it (no deletion)
record_connection_state(instance=..., ...)         a health check or a provider webhook saw it
mark_protected(instance=..., reason=...)           number protection (billing pauses the queues)
clear_protection(instances=..., user=...)          a person has looked: queues may resume
skip_warm_up(instance=..., user=..., reason=...)   a number with history: no daily cap (audited)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.apps import apps
from django.utils import timezone

from apps.common.config_version import bump_config_version

from .models import WhatsAppInstance

logger = logging.getLogger(__name__)


def flag_for_attention(*, instance_id: Any, reason: str) -> bool:
    """Flag the instance with a short, log-safe reason (no phone, no text, no key). The first
    flag's time is kept while it stays flagged; the reason is the latest. Returns whether the
    flag is new."""
    now = timezone.now()
    newly = WhatsAppInstance.objects.filter(pk=instance_id, attention_since__isnull=True).update(
        attention_reason=reason[:300], attention_since=now, updated_at=now
    )
    if not newly:
        WhatsAppInstance.objects.filter(pk=instance_id).update(attention_reason=reason[:300], updated_at=now)
    else:
        logger.warning(
            "whatsapp instance flagged for attention", extra={"instance_id": instance_id, "reason": reason[:300]}
        )
    return bool(newly)


def clear_attention(*, instances: Iterable[WhatsAppInstance]) -> int:
    """A person has looked: clear the flag. Returns how many were flagged."""
    ids = [instance.pk for instance in instances]
    return (
        WhatsAppInstance.objects.filter(pk__in=ids)
        .exclude(attention_since__isnull=True)
        .update(attention_reason="", attention_since=None, updated_at=timezone.now())
    )


def open_queue_count(*, instance: WhatsAppInstance) -> int:
    """Billing queues not yet final (completed, cancelled) that send through this instance.
    Imported when asked: connections sits below billing and does not depend on it to load."""
    from apps.billing.constants import FINAL_QUEUE_STATUSES

    queue_model = apps.get_model("billing", "BillingQueue")
    return queue_model.objects.filter(instance=instance).exclude(status__in=FINAL_QUEUE_STATUSES).count()


def record_connection_state(
    *, instance: WhatsAppInstance, state: str, reason: str, at: datetime | None = None, disconnected: bool = False
) -> None:
    """The instance's health as a check or a webhook saw it. The first `open` marks the number
    paired (a session lost after that is a logout); leaving `open`, or the provider saying the
    session ended (`disconnected`), is the last disconnect."""
    now = at or timezone.now()
    rows = WhatsAppInstance.objects.filter(pk=instance.pk)
    if state == WhatsAppInstance.HealthState.OPEN:
        if rows.filter(paired_at__isnull=True).update(paired_at=now):
            instance.paired_at = now
    else:
        leaving = rows if disconnected else rows.filter(health_state=WhatsAppInstance.HealthState.OPEN)
        if leaving.update(last_disconnect_at=now, last_disconnect_reason=reason[:300]):
            instance.last_disconnect_at, instance.last_disconnect_reason = now, reason[:300]
    rows.update(health_state=state, health_reason=reason[:300], health_checked_at=now)
    instance.health_state, instance.health_reason, instance.health_checked_at = state, reason[:300], now


def mark_protected(*, instance: WhatsAppInstance, reason: str) -> bool:
    """Protect the number (first reason kept until cleared) and flag it for a person; True when
    it was not protected yet. Billing pauses its queues (services/number_protection.py)."""
    now = timezone.now()
    newly = WhatsAppInstance.objects.filter(pk=instance.pk, protected_since__isnull=True).update(
        protected_reason=reason[:300], protected_since=now, updated_at=now
    )
    if newly:
        instance.protected_reason, instance.protected_since = reason[:300], now
        flag_for_attention(instance_id=instance.pk, reason=f"number protected: {reason}")
    return bool(newly)


def clear_protection(*, instances: Iterable[WhatsAppInstance], user: Any) -> int:
    """A person has looked at protected numbers: lift it (and the attention flag), so recovery
    may resume their queues once the provider says they are connected. Returns how many."""
    ids = [instance.pk for instance in instances]
    protected = list(
        WhatsAppInstance.objects.filter(pk__in=ids, protected_since__isnull=False).values_list("pk", "protected_reason")
    )
    WhatsAppInstance.objects.filter(pk__in=[pk for pk, _ in protected]).update(
        protected_reason="", protected_since=None, attention_reason="", attention_since=None, updated_at=timezone.now()
    )
    for pk, reason in protected:
        logger.warning(
            "whatsapp number protection cleared",
            extra={"instance_id": pk, "reason": reason, "user_id": getattr(user, "pk", None)},
        )
    return len(protected)


def skip_warm_up(*, instance: WhatsAppInstance, user: Any, reason: str) -> bool:
    """No daily warm-up cap for this number from now on: who, when and why are kept on the row
    (and logged). False when it was already skipped or no reason was given."""
    reason = reason.strip()
    if not reason:
        return False
    now = timezone.now()
    skipped = WhatsAppInstance.objects.filter(pk=instance.pk, warmup_skipped_at__isnull=True).update(
        warmup_skipped_at=now, warmup_skipped_by=user, warmup_skip_reason=reason[:300], updated_at=now
    )
    if skipped:
        instance.warmup_skipped_at, instance.warmup_skipped_by, instance.warmup_skip_reason = now, user, reason[:300]
        bump_config_version(instance.tenant_id)  # the API's cached numbers (the status ETA) follow
        logger.warning(
            "whatsapp number warm-up skipped",
            extra={
                "instance_id": instance.pk,
                "tenant_id": str(instance.tenant_id),
                "user_id": getattr(user, "pk", None),
            },
        )
    return bool(skipped)
