"""Dispatch one authenticated Evolution webhook envelope (contract §4) to its handler.

The envelope's `instance` must be the instance the URL secret belongs to; the provider's
`apikey` field (an instance token when exposure is on) is dropped before anything else reads the
payload, so it is never stored or logged. Events we do not use are acknowledged and ignored.

Each event is small and processed synchronously in one short transaction (a handful of indexed
statements), which answers well inside the provider's timeout; the slow parts — the opt-out
confirmation (a provider call) and client callbacks (client HTTP) — run after the response,
in a thread and in the periodic task respectively.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apps.billing.services import provider_events
from apps.billing.services.inbound_messages import handle_inbound
from apps.common.services.evolution_lookup import message_text
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)

_HEALTH_BY_STATE = {
    "open": WhatsAppInstance.HealthState.OPEN,
    "connecting": WhatsAppInstance.HealthState.CONNECTING,
    "close": WhatsAppInstance.HealthState.CLOSE,
    "refused": WhatsAppInstance.HealthState.CLOSE,
}
LOGGED_OUT_STATUS_REASON = 401  # Baileys DisconnectReason.loggedOut (contract §4, `connection.update`)


class InstanceMismatch(Exception):
    """The body names another instance than the one the secret belongs to (403)."""


def event_name(raw: Any) -> str:
    """`MESSAGES_UPDATE`, `messages-update` or `messages.update` → `messages.update`."""
    return str(raw or "").strip().lower().replace("_", ".").replace("-", ".")


def body_instance_name(payload: dict[str, Any]) -> str:
    value = payload.get("instance")
    if isinstance(value, dict):  # some builds nest it: {"instanceName": ...}
        value = value.get("instanceName")
    return str(value or "")


def handle_event(*, instance: WhatsAppInstance, payload: dict[str, Any], path_event: str = "") -> str:
    """Process one envelope; returns an outcome word for the response and the log."""
    payload.pop("apikey", None)
    if body_instance_name(payload) != instance.instance_name:
        raise InstanceMismatch()
    event = event_name(payload.get("event") or path_event)
    handler = _HANDLERS.get(event)
    if handler is None:
        return "ignored"
    data = payload.get("data")
    items = data if isinstance(data, list) else [data]
    outcomes = [handler(instance, item) for item in items if isinstance(item, dict)]
    outcome = outcomes[0] if len(outcomes) == 1 else ",".join(sorted(set(outcomes))) or "ignored"
    logger.info(
        "evolution webhook processed",
        extra={"event": event, "outcome": outcome, "instance_id": instance.pk, "tenant_id": str(instance.tenant_id)},
    )
    return outcome


def _status_update(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    """`messages.update` (v2 `keyId`, v1 `id`) and `send.message` (`key.id`)."""
    if data.get("fromMe") is False:
        return "ignored"  # a receipt for a message the customer sent us
    key = provider_events.json_object(data.get("key"))
    message_id = str(data.get("keyId") or data.get("id") or key.get("id") or "")[:128]
    return provider_events.receipt(instance=instance, provider_message_id=message_id, status=data.get("status"))


def _inbound(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    return handle_inbound(instance=instance, data=data)


def _connection_update(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    state = str(data.get("state") or "").lower()
    health = _HEALTH_BY_STATE.get(state)
    if health is None:
        return "ignored"
    reason = f"connection.update webhook: {state}"
    if data.get("statusReason") is not None:
        reason += f" (statusReason {str(data['statusReason'])[:20]})"
    logged_out = state == "close" and str(data.get("statusReason")) == str(LOGGED_OUT_STATUS_REASON)
    return provider_events.connection_changed(instance=instance, state=health, reason=reason, logged_out=logged_out)


def _logout(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    """`logout.instance`: the number's session ended (it is followed by a `connection.update`)."""
    return provider_events.connection_changed(
        instance=instance, state=WhatsAppInstance.HealthState.CLOSE, reason="logout.instance webhook", logged_out=True
    )


def _echo(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    """The provider says it sent one of our messages: settle the `unconfirmed` contact it proves
    sent (services/reconciliation.py), or remember it for one that becomes unconfirmed later."""
    key = provider_events.json_object(data.get("key"))
    if key.get("fromMe") is not True:
        return "ignored"
    return provider_events.echo(
        instance=instance,
        remote_jid=str(key.get("remoteJid") or ""),
        text=message_text(data.get("message")),
        provider_message_id=str(key.get("id") or "")[:128],
        at=provider_events.unix_time(data.get("messageTimestamp")),
    )


def _sent(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    """`send.message`: its receipt status as before, and the echo."""
    status = _status_update(instance, data)
    return "reconciled" if _echo(instance, data) == "reconciled" else status


def _upsert(instance: WhatsAppInstance, data: dict[str, Any]) -> str:
    """`messages.upsert`: a customer's message, or (some builds) the echo of one of ours."""
    key = provider_events.json_object(data.get("key"))
    return _echo(instance, data) if key.get("fromMe") is True else _inbound(instance, data)


_HANDLERS: dict[str, Callable[[WhatsAppInstance, dict[str, Any]], str]] = {
    "messages.update": _status_update,
    "send.message": _sent,
    "messages.upsert": _upsert,
    "connection.update": _connection_update,
    "logout.instance": _logout,
}
