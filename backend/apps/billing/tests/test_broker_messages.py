"""Broker messages: ids only, one shape. A body the consumer cannot understand is a
PoisonMessage (dead-lettered, never requeued), whatever it holds."""

import json
import uuid

import pytest

from apps.billing.broker.messages import BillingMessage, PoisonMessage


def test_a_message_survives_the_round_trip_without_its_empty_fields():
    message = BillingMessage(
        type="overdue", queue_id=str(uuid.uuid4()), tenant_id=str(uuid.uuid4()), attempt=2, request_id="req-1"
    )
    body = message.to_bytes()
    assert "instance_id" not in json.loads(body) and "holder" not in json.loads(body)
    assert BillingMessage.from_bytes(body) == message


def test_control_messages_keep_their_instance_and_holder():
    message = BillingMessage(type="check_stale", queue_id=str(uuid.uuid4()), holder="web-1:123")
    assert BillingMessage.from_bytes(message.to_bytes()).holder == "web-1:123"
    recovery = BillingMessage(type="check_recovery", instance_id=7)
    assert BillingMessage.from_bytes(recovery.to_bytes()).instance_id == 7


def test_a_queue_id_is_normalised_and_odd_optional_fields_fall_back():
    queue_id = uuid.uuid4()
    body = json.dumps({"type": "upcoming", "queue_id": queue_id.hex.upper(), "attempt": "3", "request_id": 5})
    message = BillingMessage.from_bytes(body.encode())
    assert (message.queue_id, message.attempt, message.request_id) == (str(queue_id), 1, None)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"queue_id": "0b7c4f1e-0000-4000-8000-000000000000"}',
        b'{"type": 3}',
        b'{"type": "overdue", "queue_id": "not-a-uuid"}',
        b'{"type": "check_recovery", "instance_id": "7"}',
        b'{"type": "check_recovery", "instance_id": true}',
        b'{"type": "check_stale", "holder": 12}',
    ],
)
def test_a_body_it_cannot_understand_is_poison(body):
    with pytest.raises(PoisonMessage):
        BillingMessage.from_bytes(body)
