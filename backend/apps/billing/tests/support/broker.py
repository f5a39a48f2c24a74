"""The tests' side of RabbitMQ: a vhost of the session's own on the shared broker, emptying the
billing topology between tests, and reading or writing it raw.

A test session (each pytest-xdist worker is one) publishes to and consumes from a vhost nobody
else uses (config/test_settings.py names it), so one session's consumer never takes another's
wake-up calls and a purge never drops another session's messages. AMQP cannot create a vhost:
`rabbitmqctl` does, against the node `scripts/services.sh` started (its Erlang cookie and epmd
port live in the local services' directory), the first time a name is used on a machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq

from apps.billing.broker.topology import ALL_QUEUES
from devtools.processes import REPO

RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"  # Debian's /usr/sbin wrapper runs as user rabbitmq


def vhost_of(url: str) -> str:
    return unquote(urlsplit(url).path[1:]) or "/"


async def _vhost_opens(url: str) -> bool:
    try:
        connection = await aio_pika.connect(url, timeout=10)
    except aiormq.exceptions.InvalidFrameError:  # RabbitMQ closes the connection: "vhost not found"
        return False
    await connection.close()
    return True


def _rabbitmqctl(*args: str) -> None:
    local = Path(os.environ.get("BILLING_LOCAL_DIR") or REPO / ".local")
    env = {
        **os.environ,
        "HOME": str(local / "rabbitmq"),  # the node's Erlang cookie
        "ERL_EPMD_PORT": os.environ.get("BILLING_EPMD_PORT", "54369"),
    }
    result = subprocess.run(
        [RABBITMQCTL, "-n", "billing@localhost", "-q", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl {' '.join(args)} failed ({result.returncode}); is the broker of "
            f"`scripts/services.sh up` running?\n{result.stdout}{result.stderr}"
        )


def ensure_vhost(url: str) -> None:
    """The vhost `url` names exists on the local broker, open to its user (created when missing)."""
    if asyncio.run(_vhost_opens(url)):
        return
    vhost, user = vhost_of(url), urlsplit(url).username or "guest"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


async def _queue_counts(url: str, names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    connection = await aio_pika.connect(url, timeout=5)
    counts = {}
    async with connection:
        channel = await connection.channel()
        for name in names:
            declared = await channel.declare_queue(name, passive=True)
            counts[name] = (declared.declaration_result.consumer_count, declared.declaration_result.message_count)
    return counts


def queue_counts(url: str, names: tuple[str, ...] = ALL_QUEUES) -> dict[str, tuple[int, int]]:
    """{queue: (consumers, ready messages)} as the broker reports them."""
    return asyncio.run(_queue_counts(url, names))


def publish_raw(url: str, routing_key: str, body: bytes) -> None:
    async def publish() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=routing_key)

    asyncio.run(publish())
