"""The broker comes and goes: the consumer survives and really consumes again, the API keeps
accepting, nothing is sent twice. The broker is the test's own node (`crash_broker`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aio_pika
import pytest

from apps.billing.broker.topology import SEND_QUEUES
from apps.billing.models import BillingQueue
from apps.billing.rabbitmq.billing_consumer import EXIT_CONSUMERS_LOST, BillingConsumer
from apps.billing.tests.support.broker import queue_counts
from apps.billing.tests.support.processes import notification_contacts, wait_until

from .proxy import CuttableProxy

pytestmark = pytest.mark.slow  # real processes; the second broker is per worker (conftest)

# The API side's publisher starts cold here (conftest): these tests are about what it does when
# the broker is away, and the periodic task publishes what it could not.
OPEN_PUBLISHER = False
PERIODIC = ("run_billing_periodic_tasks", "--interval", "0.5")
PERIODIC_ENV = {"BILLING_REPUBLISH_AFTER_SECONDS": "2"}
CONSUMER = ("run_billing_consumer", "--concurrency", "2", "--watchdog-interval", "1", "--reconnect-interval", "1")
NOTIFICATION = SEND_QUEUES["notification"]


def completed(tenant, queue_id: str):
    return lambda: (q := tenant.queue(queue_id)).status == "completed" and q


def consumers_restored(url: str, expected: int = 1):
    def check() -> bool:
        try:
            return all(consumers == expected for consumers, _ in queue_counts(url).values())
        except Exception:
            return False

    return check


def assert_sent_once(tenant, total: int) -> None:
    numbers = Counter(m["number"] for m in tenant.messages())
    assert len(numbers) == total and set(numbers.values()) == {1}, "lost or duplicated messages"


def log_messages(handle) -> list[str]:
    return [line.get("message", "") for line in handle.log_lines()]


def test_the_consumer_keeps_consuming_across_two_broker_restarts(pipeline_tenant, start_process, crash_broker):
    """A new queue before, between and after two restarts: each needs the broker to deliver its
    wake-up, so each completing proves the consumer really consumes again."""
    tenant = pipeline_tenant()
    tenant.configure(messages_per_minute=1200)
    consumer = start_process(*CONSUMER)
    periodic = start_process(*PERIODIC, **PERIODIC_ENV)
    queue_ids = []
    for restart in range(3):
        body = tenant.send("notification", notification_contacts(50, start=1000 * restart), external_id=f"r{restart}")
        queue_ids.append(body["queue_id"])
        before = len(tenant.messages())
        wait_until(
            lambda before=before: len(tenant.messages()) >= before + 15,
            timeout=30,
            what=f"progress before restart {restart}",
            alive=[consumer, periodic],
        )
        if restart < 2:
            crash_broker.stop()
            time.sleep(1)
            crash_broker.start()
    for queue_id in queue_ids:
        queue = wait_until(completed(tenant, queue_id), timeout=90, what="queue completed", alive=[consumer, periodic])
        assert queue.sent_count == 50
    assert_sent_once(tenant, 150)
    wait_until(consumers_restored(crash_broker.url), timeout=20, what="one consumer on every queue", alive=[consumer])
    messages = log_messages(consumer)
    # At least once per restart (a connection may also flap while the node boots).
    assert messages.count("billing consumer reconnected to RabbitMQ; checking its consumers") >= 2
    assert "billing consumer started" in messages and consumer.process.poll() is None


def test_the_api_accepts_while_the_broker_is_down_and_every_queue_runs_after(
    pipeline_tenant, start_process, crash_broker
):
    tenant = pipeline_tenant()
    early = start_process(*CONSUMER)
    periodic = start_process(*PERIODIC, **PERIODIC_ENV)
    wait_until(lambda: "billing consumer started" in log_messages(early), timeout=30, what="consumer up", alive=[early])
    crash_broker.stop()
    late = start_process(*CONSUMER)  # starts while the broker is down: it must wait, not die
    queue_ids = []
    for i in range(5):
        started = time.monotonic()
        body = tenant.send("notification", notification_contacts(4, start=10 * i), external_id=f"outage-{i}")
        assert time.monotonic() - started < 5, "the API waited on the broker"
        queue_ids.append(body["queue_id"])
    assert set(BillingQueue.objects.filter(pk__in=queue_ids).values_list("status", "last_published_at")) == {
        ("pending", None)
    }
    wait_until(
        lambda: "billing consumer cannot reach RabbitMQ yet; retrying" in log_messages(late),
        timeout=30,
        what="late consumer waiting for the broker",
        alive=[late],
    )
    crash_broker.start()
    for queue_id in queue_ids:
        wait_until(
            completed(tenant, queue_id),
            timeout=60,
            what="queue completed after the outage",
            alive=[early, late, periodic],
        )
    assert_sent_once(tenant, 20)
    assert "billing consumer started" in log_messages(late)
    wait_until(
        consumers_restored(crash_broker.url, expected=2),
        timeout=20,
        what="both consumers on every queue",
        alive=[early, late],
    )


def test_a_consumer_cancelled_by_the_broker_consumes_again(pipeline_tenant, start_process, crash_broker):
    tenant = pipeline_tenant()
    consumer = start_process(*CONSUMER)
    # As deployed, with the periodic task: the API's first publish (connect and declare, 3 s at
    # most) once timed out on a loaded box, and that queue is the periodic task's to publish.
    periodic = start_process(*PERIODIC, **PERIODIC_ENV)
    wait_until(consumers_restored(crash_broker.url), timeout=30, what="consumer up", alive=[consumer])

    async def delete_queue() -> None:
        conn = await aio_pika.connect(crash_broker.url)
        async with conn:
            channel = await conn.channel()
            await channel.queue_delete(NOTIFICATION)  # the broker cancels every consumer of it

    asyncio.run(delete_queue())
    wait_until(
        consumers_restored(crash_broker.url),
        timeout=30,
        what="consumer back on the re-declared queue",
        alive=[consumer],
    )
    body = tenant.send("notification", notification_contacts(5))
    wait_until(completed(tenant, body["queue_id"]), timeout=30, what="queue completed", alive=[consumer, periodic])
    assert_sent_once(tenant, 5)


def test_a_network_cut_longer_than_the_heartbeat_timeout_is_survived(pipeline_tenant, start_process, crash_broker):
    """The case of aio-pika #563: the connection is declared stuck, a reconnection fails, then
    the network comes back. Only the consumer goes through the cut; the periodic task talks to
    the broker directly and republishes what the consumer's publishes lost."""
    proxy = CuttableProxy(crash_broker.port)
    try:
        tenant = pipeline_tenant()
        tenant.configure(messages_per_minute=600)
        consumer = start_process(*CONSUMER, RABBITMQ_URL=proxy.url("heartbeat=2"))
        periodic = start_process(*PERIODIC, **PERIODIC_ENV)
        body = tenant.send("notification", notification_contacts(80))
        wait_until(lambda: len(tenant.messages()) >= 10, timeout=30, what="first messages", alive=[consumer])
        proxy.cut()
        wait_until(
            lambda: "billing consumer lost its broker connection; aio-pika reconnects" in log_messages(consumer),
            timeout=30,
            what="connection declared lost",
            alive=[consumer],
        )
        time.sleep(3)  # at least one reconnection attempt fails while the network is still cut
        proxy.heal()
        queue = wait_until(
            completed(tenant, body["queue_id"]),
            timeout=90,
            what="queue completed after the cut",
            alive=[consumer, periodic],
        )
        assert queue.sent_count == 80
        assert_sent_once(tenant, 80)
        wait_until(consumers_restored(crash_broker.url), timeout=30, what="consumer restored", alive=[consumer])
    finally:
        proxy.close()


# --------------------------------------------------------------------- the watchdog, in process
async def _start_in_process(consumer: BillingConsumer) -> asyncio.Task:
    task = asyncio.create_task(consumer.run())
    for _ in range(200):
        if NOTIFICATION in consumer._tags:
            return task
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    raise AssertionError("consumer did not start")


async def _server_consumers(url: str) -> int:
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        return (await channel.declare_queue(NOTIFICATION, passive=True)).declaration_result.consumer_count


async def _drop_consumer_behind_aio_pikas_back(consumer: BillingConsumer) -> str:
    """Cancel our consumer on the AMQP channel directly: aio-pika still lists it as a consumer to
    restore, so it never re-subscribes by itself (the state upstream issues describe)."""
    tag = consumer._tags[NOTIFICATION]
    underlay = await consumer.channel.get_underlay_channel()
    await underlay.basic_cancel(tag)
    # Not asking the broker for its count now: the 0.2 s watchdog may already have resubscribed
    # while a probe connects on a loaded box. The new tag is the proof (the test checks it).
    assert tag not in underlay.consumers
    return tag


@pytest.mark.django_db(transaction=True)  # the consumer registers its process row before it subscribes
def test_the_watchdog_resubscribes_a_consumer_that_was_not_restored(crash_broker):
    async def scenario() -> tuple[int, str, str, int]:
        consumer = BillingConsumer(queues=[NOTIFICATION], concurrency=1, url=crash_broker.url, watchdog_interval=0.2)
        task = await _start_in_process(consumer)
        old_tag = await _drop_consumer_behind_aio_pikas_back(consumer)
        for _ in range(100):
            await asyncio.sleep(0.1)
            if await _server_consumers(crash_broker.url) == 1:
                break
        restored = await _server_consumers(crash_broker.url)
        new_tag = consumer._tags[NOTIFICATION]
        consumer.request_stop()
        return restored, old_tag, new_tag, await asyncio.wait_for(task, 15)

    restored, old_tag, new_tag, code = asyncio.run(scenario())
    assert restored == 1 and new_tag != old_tag
    assert code == 0


@pytest.mark.django_db(transaction=True)
def test_the_consumer_exits_non_zero_when_its_consumer_cannot_be_restored(crash_broker, caplog):
    async def scenario() -> int:
        consumer = BillingConsumer(queues=[NOTIFICATION], concurrency=1, url=crash_broker.url, watchdog_interval=0.2)

        async def refuse(name: str) -> bool:
            return False

        consumer._resubscribe = refuse
        task = await _start_in_process(consumer)
        await _drop_consumer_behind_aio_pikas_back(consumer)
        return await asyncio.wait_for(task, 20)

    assert asyncio.run(scenario()) == EXIT_CONSUMERS_LOST
    assert "billing consumer cannot restore its consumer; exiting so it is restarted" in caplog.messages
