"""Automatic protection of a WhatsApp number: the tenant's biggest business risk is a ban.

When the provider logs the number out, its session is lost (WAHA `FAILED`, or `SCAN_QR_CODE`
after it had been paired), too many of its last sends answered "not on WhatsApp", or WhatsApp
refused a burst of its messages (ERROR receipts: blocked by recipients, or restricted), the
number is protected:

- the instance is marked (`protected_reason`, `protected_since`) and flagged for a person
  (`connections.services.mark_protected`, the admin shows both);
- every running queue of the number → `instance_down` with `pause_reason` saying why; its other
  queues stop at their first step (the runner reads the mark with the instance's switches);
- the tenant's callback URL gets `number.protected`;
- recovery never resumes them by itself (`InstanceRecoveryService.recover` skips a protected
  instance): a person clears the protection in the admin, after which recovery resumes the
  queues once the provider says the number is connected.

The "not on WhatsApp" share and the burst of blocks are counted in Redis per instance (a list of
the last N outcomes, a sorted set of refused message ids by time), so each check is one round
trip; losing Redis forgets the counts, never a protection already decided (that is a row).
"""

from __future__ import annotations

import logging
import time

from django.db import transaction

from apps.billing.models import CallbackEvent
from apps.billing.services.callbacks import enqueue_event
from apps.billing.services.instance_queues import pause_running_queues
from apps.common.redis_client import get_redis
from apps.connections.models import NumberHealthSettings, WhatsAppInstance
from apps.connections.services import mark_protected

logger = logging.getLogger(__name__)

LOGGED_OUT = "logged_out"
SESSION_LOST = "session_lost"
NOT_ON_WHATSAPP = "not_on_whatsapp"
BLOCKED = "blocked"


def protect_number(*, instance: WhatsAppInstance, kind: str, reason: str) -> bool:
    """Protect the number (see the module docstring); False when it already was."""
    if not mark_protected(instance=instance, reason=reason):
        return False
    paused = pause_running_queues(instance=instance, reason=f"number_protected: {reason}")
    with transaction.atomic():
        enqueue_event(
            tenant=instance.tenant,
            queue=None,
            event=CallbackEvent.NUMBER_PROTECTED,
            data={
                "instance_id": instance.pk,
                "instance": instance.name,
                "provider": instance.provider,
                "kind": kind,
                "reason": reason,
                "protected_at": instance.protected_since,
                "paused_queues": paused,
            },
        )
    logger.warning(
        "whatsapp number protected",
        extra={
            "instance_id": instance.pk,
            "tenant_id": str(instance.tenant_id),
            "kind": kind,
            "reason": reason,
            "paused_queues": paused,
        },
    )
    return True


def _outcomes_key(instance_id: int) -> str:
    return f"billing:number:{instance_id}:outcomes"


def _blocks_key(instance_id: int) -> str:
    return f"billing:number:{instance_id}:blocks"


def record_send_outcome(*, instance: WhatsAppInstance, not_on_whatsapp: bool, settings: NumberHealthSettings) -> bool:
    """One answer to a send ("not on WhatsApp" or accepted); protects the number when more than
    the tenant's share of its last `invalid_window` answers were "not on WhatsApp". True when
    this answer protected it."""
    key, window = _outcomes_key(instance.pk), int(settings.invalid_window)
    pipe = get_redis().pipeline()
    pipe.lpush(key, "i" if not_on_whatsapp else "s")
    pipe.ltrim(key, 0, window - 1)
    pipe.expire(key, 30 * 86400)
    pipe.lrange(key, 0, window - 1)
    recent = pipe.execute()[-1]
    if not not_on_whatsapp or len(recent) < window:
        return False
    invalid = sum(1 for item in recent if item in (b"i", "i"))
    if invalid / window <= float(settings.invalid_share_limit):
        return False
    return protect_number(
        instance=instance, kind=NOT_ON_WHATSAPP, reason=f"{invalid} of the last {window} sends were not on WhatsApp"
    )


def record_block(*, instance: WhatsAppInstance, provider_message_id: str) -> bool:
    """WhatsApp refused one of the number's messages (an ERROR receipt; a repeat of the same
    receipt counts once); protects the number after the tenant's burst. True when it did."""
    settings = NumberHealthSettings.for_tenant(instance.tenant_id)
    now = time.time()
    window = 60.0 * int(settings.block_window_minutes)
    key = _blocks_key(instance.pk)
    pipe = get_redis().pipeline()
    pipe.zadd(key, {provider_message_id or f"unknown:{now}": now})
    pipe.zremrangebyscore(key, "-inf", now - window)
    pipe.expire(key, int(window) + 60)
    pipe.zcard(key)
    refused = int(pipe.execute()[-1])
    if refused < int(settings.block_burst_limit):
        return False
    return protect_number(
        instance=instance,
        kind=BLOCKED,
        reason=f"{refused} messages refused by WhatsApp within {settings.block_window_minutes} min",
    )


def protect_after_logout(*, instance: WhatsAppInstance, how: str) -> bool:
    """The provider says the number's WhatsApp session ended (`how`: where we learned it)."""
    return protect_number(instance=instance, kind=LOGGED_OUT, reason=f"logged out ({how})")


def protect_lost_session(*, instance: WhatsAppInstance, provider_state: str) -> bool:
    """A paired number's session is gone (WAHA `FAILED` / `SCAN_QR_CODE`); a number still being
    paired is just waiting for its scan."""
    if instance.paired_at is None:
        return False
    return protect_number(instance=instance, kind=SESSION_LOST, reason=f"WhatsApp session {provider_state}")
