"""What "WhatsApp" does around a message, simulated, in the instance's provider's words: the echo
of each accepted message (Evolution `send.message`, WAHA `message.any`), delivery receipts
(SERVER_ACK → DELIVERY_ACK → READ after the instance's `ack_delays`, or one ERROR when the
instance was told `ack_error_next`), connection changes (Evolution `connection.update`, plus
`logout.instance` on a logout; WAHA `session.status`), and inbound replies on request (Evolution
`messages.upsert`, WAHA `message` and `message.any`)."""

from __future__ import annotations

from typing import Any

from . import contract, waha_contract
from .scheduler import Scheduler
from .state import SandboxInstance, SandboxState
from .webhooks import WebhookEmitter


class EventSimulator:
    def __init__(self, state: SandboxState, scheduler: Scheduler, emitter: WebhookEmitter) -> None:
        self.state = state
        self.scheduler = scheduler
        self.emitter = emitter

    def message_sent(
        self, instance: SandboxInstance, record: dict[str, Any], response: dict[str, Any], *, refused: bool = False
    ) -> None:
        if instance.provider == "waha":
            self.emitter.emit(
                instance.name,
                "message.any",
                waha_contract.outgoing_message(record=record, owner_number=instance.owner_number, ack=0),
            )
        else:
            self.emitter.emit(instance.name, "send.message", response)
        if self.state.take_ack_error(instance.name) or refused:
            first = min((delay for delay in instance.ack_delays.values() if delay is not None), default=0.5)
            self.scheduler.call_later(first, self._receipt, instance, record, "ERROR")
            return
        self._schedule_next_ack(instance, record, 0, 0.0)

    def _schedule_next_ack(self, instance: SandboxInstance, record: dict[str, Any], index: int, elapsed: float) -> None:
        """Receipts are chained (each schedules the next) so they can never overtake each other."""
        for position in range(index, len(contract.ACK_STATUSES)):
            status = contract.ACK_STATUSES[position]
            delay = instance.ack_delays.get(status)
            if delay is None:  # e.g. READ off: the recipient has read receipts disabled
                continue
            self.scheduler.call_later(
                max(0.0, delay - elapsed), self._ack, instance, record, position, max(delay, elapsed)
            )
            return

    def _ack(self, instance: SandboxInstance, record: dict[str, Any], index: int, elapsed: float) -> None:
        if self._receipt(instance, record, contract.ACK_STATUSES[index]):
            self._schedule_next_ack(instance, record, index + 1, elapsed)

    def _receipt(self, instance: SandboxInstance, record: dict[str, Any], status: str) -> bool:
        if self.state.set_message_status(record["id"], status) is None:
            return False  # cleared meanwhile: the sandbox was reset
        if instance.provider == "waha":
            self.emitter.emit(
                instance.name,
                "message.ack",
                waha_contract.ack_payload(
                    record=record, owner_number=instance.owner_number, ack=waha_contract.ACK_OF_STATUS[status]
                ),
            )
        elif instance.api_version == "v1":
            self.emitter.emit(
                instance.name,
                "messages.update",
                contract.messages_update_data_v1(
                    message_id=record["id"], jid=record["remote_jid"], status=status, owner=instance.name
                ),
            )
        else:
            self.emitter.emit(
                instance.name,
                "messages.update",
                contract.messages_update_data_v2(
                    message_id=record["id"],
                    jid=record["remote_jid"],
                    status=status,
                    instance_id=instance.id,
                    db_id=record["db_id"],
                ),
            )
        return True

    def state_changed(self, instance: SandboxInstance, previous: str, *, logged_out: bool = False) -> None:
        if instance.state == previous and not logged_out:
            return
        if instance.provider == "waha":
            if waha_contract.SESSION_STATUS[instance.state] != waha_contract.SESSION_STATUS[previous] or logged_out:
                self.emitter.emit(
                    instance.name, "session.status", waha_contract.session_status_payload(instance.name, instance.state)
                )
            return
        if contract.evolution_state(instance.state) == contract.evolution_state(previous) and not logged_out:
            return
        if logged_out:
            self.emitter.emit(instance.name, "logout.instance", {"instance": instance.name})
        data = contract.connection_update_data(
            name=instance.name,
            state=instance.state,
            owner_number=instance.owner_number,
            profile_name=instance.profile_name,
            logged_out=logged_out,
        )
        self.emitter.emit(instance.name, "connection.update", data)

    def inbound(
        self,
        instance: SandboxInstance,
        *,
        number: str,
        text: str,
        push_name: str = "Cliente",
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        """A customer writes to the instance; returns the webhook's data (payload)."""
        message_id = "3A" + contract.new_message_id()[4:]
        if instance.provider == "waha":
            payload = waha_contract.incoming_message(
                message_id=message_id,
                digits=contract.number_digits(number),
                text=text,
                owner_number=instance.owner_number,
                push_name=push_name,
                quoted_id=reply_to,
            )
            self.emitter.emit(instance.name, "message", payload)
            self.emitter.emit(instance.name, "message.any", payload)
            return payload
        data = contract.messages_upsert_data(
            message_id=message_id,
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
