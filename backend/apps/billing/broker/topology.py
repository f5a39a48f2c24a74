"""RabbitMQ names and arguments, declared idempotently by publisher and consumer alike.

Every queue is durable with `x-max-priority: 10` (overdue 10, upcoming 5, notification 1) and
dead-letters to `billing.dead` through `billing.dlx`: a message the consumer cannot parse is
rejected once and parked there, never requeued in a loop. Queue arguments cannot change once a
queue exists (RabbitMQ answers PRECONDITION_FAILED), so they are stated here only.
"""

from __future__ import annotations

import aio_pika
from pamqp.common import FieldTable

from apps.billing.constants import TemplateType

SEND_QUEUES = {
    TemplateType.OVERDUE: "billing.overdue",
    TemplateType.UPCOMING: "billing.upcoming",
    TemplateType.NOTIFICATION: "billing.notification",
}
RESUME_QUEUE = "billing.resume"
CHECK_STALE_QUEUE = "billing.check_stale"
CHECK_RECOVERY_QUEUE = "billing.check_recovery"
CONTROL_QUEUES = (RESUME_QUEUE, CHECK_STALE_QUEUE, CHECK_RECOVERY_QUEUE)
ALL_QUEUES = (*SEND_QUEUES.values(), *CONTROL_QUEUES)

DEAD_LETTER_EXCHANGE = "billing.dlx"
DEAD_LETTER_QUEUE = "billing.dead"
MAX_PRIORITY = 10
QUEUE_ARGUMENTS: FieldTable = {
    "x-max-priority": MAX_PRIORITY,
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    "x-dead-letter-routing-key": DEAD_LETTER_QUEUE,
}


def send_queue_for(template_type: str) -> str:
    return SEND_QUEUES[TemplateType(template_type)]


async def declare_topology(channel: aio_pika.abc.AbstractChannel) -> dict[str, aio_pika.abc.AbstractQueue]:
    dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    dead = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
    await dead.bind(dlx, routing_key=DEAD_LETTER_QUEUE)
    queues = {}
    for name in ALL_QUEUES:
        queues[name] = await channel.declare_queue(name, durable=True, arguments=QUEUE_ARGUMENTS)
    return queues
