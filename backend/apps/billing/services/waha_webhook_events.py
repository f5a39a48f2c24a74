"""One authenticated WAHA webhook envelope (contract §6), mapped onto the services Evolution's
events use (provider_events.py, inbound_messages.py):

- `message` / `message.any`: a customer's message → `handle_inbound` (in Evolution's item
  shape: the sender `from`, the quoted `replyTo.id`, the caption of media); one of ours
  (`fromMe`) → the echo that settles reconciliation;
- `message.ack`: `ack` −1…4 → the same receipt statuses as Evolution's (−1 ERROR also counts
  toward the number's blocks);
- `session.status`: `WORKING` healthy; `STARTING` connecting; `STOPPED` closed (running queues
  pause, recovery resumes them); `SCAN_QR_CODE` / `FAILED` of a paired number → protected.

An envelope for another session than the instance's (a server-wide hook) is ignored, as an
unknown Evolution instance would be. Message ids are kept in their short form (waha_lookup).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apps.billing.services import provider_events
from apps.billing.services.inbound_messages import handle_inbound
from apps.common.services.waha_lookup import ack_status, message_key
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)

_HEALTH_BY_STATUS = {
    "WORKING": WhatsAppInstance.HealthState.OPEN,
    "STARTING": WhatsAppInstance.HealthState.CONNECTING,
    "SCAN_QR_CODE": WhatsAppInstance.HealthState.PAIRING,
    "STOPPED": WhatsAppInstance.HealthState.CLOSE,
    "FAILED": WhatsAppInstance.HealthState.ERROR,
}
_LOST = frozenset({"SCAN_QR_CODE", "FAILED"})
# A media message's mimetype → the Evolution key inbound_messages labels it with.
_MEDIA = (("image/", "imageMessage"), ("video/", "videoMessage"), ("audio/", "audioMessage"))


def handle_waha_event(*, instance: WhatsAppInstance, payload: dict[str, Any]) -> str:
    """Process one envelope; returns an outcome word for the response and the log."""
    if str(payload.get("session") or "") != instance.instance_name:
        logger.warning("waha webhook for another session ignored", extra={"instance_id": instance.pk})
        return "ignored_unknown_session"
    event = str(payload.get("event") or "")
    handler = _HANDLERS.get(event)
    data = payload.get("payload")
    if handler is None or not isinstance(data, dict):
        return "ignored"
    outcome = handler(instance, data)
    logger.info(
        "waha webhook processed",
        extra={"event": event, "outcome": outcome, "instance_id": instance.pk, "tenant_id": str(instance.tenant_id)},
    )
    return outcome


def _message(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    if data.get("fromMe") is True:
        return provider_events.echo(
            instance=instance,
            remote_jid=str(data.get("to") or ""),
            text=str(data.get("body") or ""),
            provider_message_id=message_key(data.get("id")),
            at=provider_events.unix_time(data.get("timestamp")),
        )
    return handle_inbound(instance=instance, data=inbound_item(data))


def inbound_item(data: dict[str, Any]) -> dict[str, Any]:
    """A WAHA message in the shape of an Evolution `messages.upsert` item."""
    body = str(data.get("body") or "")
    message: dict[str, Any] = {"conversation": body}
    media = provider_events.json_object(data.get("media"))
    if data.get("hasMedia"):
        mimetype = str(media.get("mimetype") or "")
        kind = next((key for prefix, key in _MEDIA if mimetype.startswith(prefix)), "documentMessage")
        message = {kind: {"caption": body}}
    reply = provider_events.json_object(data.get("replyTo"))
    quoted = message_key(reply.get("id")) if reply.get("id") else ""
    extra = provider_events.json_object(data.get("_data"))
    return {
        "key": {"remoteJid": str(data.get("from") or ""), "fromMe": False, "id": message_key(data.get("id"))},
        "pushName": str(extra.get("notifyName") or ""),
        "message": message,
        "contextInfo": {"stanzaId": quoted} if quoted else None,
    }


def _ack(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    if data.get("fromMe") is False:
        return "ignored"  # a receipt for a message the customer sent us
    raw = data.get("ack") if data.get("ack") is not None else data.get("ackName")
    return provider_events.receipt(
        instance=instance, provider_message_id=message_key(data.get("id"))[:128], status=ack_status(raw)
    )


def _session_status(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    status = str(data.get("status") or "").upper()
    health = _HEALTH_BY_STATUS.get(status)
    if health is None:
        return "ignored"
    return provider_events.connection_changed(
        instance=instance,
        state=health,
        reason=f"session.status webhook: {status}",
        lost_session=status if status in _LOST else "",
    )


_HANDLERS: dict[str, Callable[[WhatsAppInstance, dict[str, Any]], str]] = {
    "message": _message,
    "message.any": _message,
    "message.ack": _ack,
    "session.status": _session_status,
}
