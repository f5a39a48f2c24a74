"""Empty the billing queues of a broker: what tests and benchmarks do between runs, so wake-up
calls left by an earlier run (naming queues this database never had) reach no consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aio_pika

from apps.billing.broker.topology import ALL_QUEUES, DEAD_LETTER_QUEUE, declare_topology


def purge_billing_queues(url: str, names: Iterable[str] | None = None) -> None:
    """Purge `names` (default: every queue of the topology and the dead letters) on the broker at
    `url`, declaring the topology first, so a fresh virtual host gets its queues too."""
    asyncio.run(_purge(url, list(names) if names is not None else [*ALL_QUEUES, DEAD_LETTER_QUEUE]))


async def _purge(url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queues = await declare_topology(channel)
        queues[DEAD_LETTER_QUEUE] = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
        for name in names:
            await queues[name].purge()
