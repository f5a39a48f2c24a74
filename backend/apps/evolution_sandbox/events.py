"""What "WhatsApp" does around a message, simulated: the `send.message` echo, delivery receipts
(SERVER_ACK → DELIVERY_ACK → READ after the instance's `ack_delays`), `connection.update` when
the state changes, and inbound replies (`messages.upsert`) on request."""
from __future__ import annotations

from typing import Any

from . import contract
from .scheduler import Scheduler
from .state import SandboxInstance, SandboxState
from .webhooks import WebhookEmitter


class EventSimulator:
    def __init__(self, state: SandboxState, scheduler: Scheduler, emitter: WebhookEmitter) -> None:
        self.state = state
        self.scheduler = scheduler
        self.emitter = emitter

    def message_sent(self, instance: SandboxInstance, record: dict[str, Any], response: dict[str, Any]) -> None:
        self.emitter.emit(instance.name, "send.message", response)
        self._schedule_next_ack(instance, record, 0, 0.0)

    def _schedule_next_ack(self, instance: SandboxInstance, record: dict[str, Any], index: int, elapsed: float) -> None:
        """Receipts are chained (each schedules the next) so they can never overtake each other."""
        for position in range(index, len(contract.ACK_STATUSES)):
            status = contract.ACK_STATUSES[position]
            delay = instance.ack_delays.get(status)
            if delay is None:  # e.g. READ off: the recipient has read receipts disabled
                continue
            self.scheduler.call_later(max(0.0, delay - elapsed), self._ack, instance, record, position, max(delay, elapsed))
            return

    def _ack(self, instance: SandboxInstance, record: dict[str, Any], index: int, elapsed: float) -> None:
        status = contract.ACK_STATUSES[index]
        if self.state.set_message_status(record["id"], status) is None:
            return  # cleared meanwhile: the sandbox was reset
        if instance.api_version == "v1":
            data = contract.messages_update_data_v1(
                message_id=record["id"], jid=record["remote_jid"], status=status, owner=instance.name
            )
        else:
            data = contract.messages_update_data_v2(
                message_id=record["id"], jid=record["remote_jid"], status=status, instance_id=instance.id, db_id=record["db_id"]
            )
        self.emitter.emit(instance.name, "messages.update", data)
        self._schedule_next_ack(instance, record, index + 1, elapsed)

    def state_changed(self, instance: SandboxInstance, previous: str) -> None:
        if instance.state == previous:
            return
        data = contract.connection_update_data(
            name=instance.name, state=instance.state, owner_number=instance.owner_number, profile_name=instance.profile_name
        )
        self.emitter.emit(instance.name, "connection.update", data)

    def inbound(
        self, instance: SandboxInstance, *, number: str, text: str, push_name: str = "Cliente", reply_to: str | None = None
    ) -> dict[str, Any]:
        """A customer writes to the instance; returns the `messages.upsert` data."""
        data = contract.messages_upsert_data(
            message_id="3A" + contract.new_message_id()[4:],
            jid=contract.create_jid(number),
            text=text,
            push_name=push_name,
            instance_id=instance.id,
            owner=instance.name,
            quoted_id=reply_to,
            v1=instance.api_version == "v1",
        )
        self.emitter.emit(instance.name, "messages.upsert", data)
        return data
