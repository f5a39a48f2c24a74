"""`purge_billing_queues` empties what it names, and only that."""

import asyncio

import aio_pika
from django.conf import settings

from apps.billing.broker.topology import DEAD_LETTER_QUEUE, SEND_QUEUES, declare_topology
from devtools.broker_purge import purge_billing_queues

NOTIFICATION = SEND_QUEUES["notification"]


async def _publish_and_count(names: list[str], publish: bool) -> dict[str, int]:
    connection = await aio_pika.connect(settings.RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await declare_topology(channel)
        if publish:
            for name in names:
                await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=name)
        counts = {}
        for name in names:
            declared = await channel.declare_queue(name, passive=True)
            counts[name] = declared.declaration_result.message_count
        return counts


def test_it_empties_the_named_queues_and_leaves_the_others():
    names = [NOTIFICATION, DEAD_LETTER_QUEUE]
    purge_billing_queues(settings.RABBITMQ_URL)
    asyncio.run(_publish_and_count(names, publish=True))
    purge_billing_queues(settings.RABBITMQ_URL, [NOTIFICATION])
    assert asyncio.run(_publish_and_count(names, publish=False)) == {NOTIFICATION: 0, DEAD_LETTER_QUEUE: 1}
    purge_billing_queues(settings.RABBITMQ_URL)
    assert asyncio.run(_publish_and_count(names, publish=False)) == {NOTIFICATION: 0, DEAD_LETTER_QUEUE: 0}
