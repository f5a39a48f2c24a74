"""What a provider webhook means, in provider-neutral words: a receipt, an echo of our own
message, a change of connection. Evolution's envelopes (webhook_events.py) and WAHA's
(waha_webhook_events.py) are mapped onto these, so both providers move contacts, settle
reconciliation, record health and protect numbers through the same code. (A customer's message
goes to `inbound_messages.handle_inbound`, in Evolution's item shape.)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from apps.billing.services import number_protection, reconciliation
from apps.billing.services.delivery_status import apply_provider_status, provider_status_name
from apps.billing.services.instance_queues import pause_running_queues
from apps.connections.models import WhatsAppInstance
from apps.connections.services import record_connection_state

logger = logging.getLogger(__name__)

PAUSE_REASON = "instance_down: connection closed (provider webhook)"
REFUSED = "ERROR"  # WhatsApp did not take the message: blocked by the recipient, or the number restricted


def json_object(value: object) -> dict[str, Any]:
    """A nested object of a provider's payload, or {} when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


def unix_time(value: Any) -> datetime | None:
    """A provider's Unix timestamp (seconds, or milliseconds) as an instant; None if it is not one."""
    try:
        seconds = int(value)
        return datetime.fromtimestamp(seconds // 1000 if seconds > 10**11 else seconds, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def receipt(*, instance: WhatsAppInstance, provider_message_id: str, status: object) -> str:
    """A delivery receipt for one of our messages: forward-only statuses (delivery_status.py);
    an ERROR also counts toward the number's burst of blocks."""
    if provider_status_name(status) == REFUSED and provider_message_id:
        number_protection.record_block(instance=instance, provider_message_id=provider_message_id)
    return apply_provider_status(
        tenant_id=instance.tenant_id, provider_message_id=provider_message_id, provider_status=status
    )


def echo(
    *, instance: WhatsAppInstance, remote_jid: str, text: str, provider_message_id: str, at: datetime | None
) -> str:
    """The provider says it sent one of our messages: settle the `unconfirmed` contact it proves
    sent (services/reconciliation.py), or remember it for one that becomes unconfirmed later."""
    settled = reconciliation.settle_from_echo(
        instance=instance, remote_jid=remote_jid, text=text, provider_message_id=provider_message_id, at=at
    )
    return "reconciled" if settled == "reconciled" else "ignored"


def connection_changed(
    *, instance: WhatsAppInstance, state: str, reason: str, logged_out: bool = False, lost_session: str = ""
) -> str:
    """The number's connection as the provider reports it. A logout, or a paired number's lost
    session (`lost_session`: the provider's word), protects it; any other close pauses its
    running queues `instance_down` (recovery resumes them once it is `open` again)."""
    record_connection_state(
        instance=instance,
        state=state,
        reason=reason,
        disconnected=logged_out or bool(lost_session and instance.paired_at),
    )
    if logged_out:
        protected = number_protection.protect_after_logout(instance=instance, how="provider webhook")
        return "protected" if protected else "health_recorded"
    if lost_session and number_protection.protect_lost_session(instance=instance, provider_state=lost_session):
        return "protected"
    if state != WhatsAppInstance.HealthState.CLOSE:
        return "health_recorded"  # `open`: the recovery task resumes instance_down queues
    paused = pause_running_queues(instance=instance, reason=PAUSE_REASON)
    return f"paused_{paused}_queues"
