"""The consumer's two budgets, in process and fast: queue slots granted by priority, and a
bounded pool of database connections lent to threads (never more than its size, handed to
the highest priority first, closed when idle)."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.db import connection, connections

from apps.billing.rabbitmq.priority_slots import PrioritySlots, SlotsClosed
from apps.billing.workers.db_permits import DbPermits


def test_queue_slots_go_to_the_highest_priority_then_the_earliest():
    async def scenario() -> list[str]:
        slots = PrioritySlots(1, settle=0.01)
        await slots.acquire(1)  # the only slot is taken
        order: list[str] = []

        async def wait(name: str, priority: int) -> None:
            await slots.acquire(priority)
            order.append(name)
            slots.release()

        waiters = [asyncio.create_task(wait(name, priority)) for name, priority in
                   (("notification", 1), ("upcoming", 5), ("overdue-1", 10), ("overdue-2", 10))]
        await asyncio.sleep(0.05)
        slots.release()
        await asyncio.gather(*waiters)
        return order

    assert asyncio.run(scenario()) == ["overdue-1", "overdue-2", "upcoming", "notification"]


def test_a_free_slot_is_granted_at_once_but_a_starting_burst_is_ordered_first():
    async def scenario() -> tuple[float, list[str]]:
        slots = PrioritySlots(2, settle=0.2)
        started = asyncio.get_running_loop().time()
        await slots.acquire(1)  # nobody waits: no settle delay
        immediate = asyncio.get_running_loop().time() - started
        slots.release()
        slots.batch_for(1.0)  # a consumer subscribing on a backlog
        order: list[str] = []

        async def take(name: str, priority: int) -> None:
            await slots.acquire(priority)
            order.append(name)

        tasks = [asyncio.create_task(take(name, priority))
                 for name, priority in (("notification", 1), ("upcoming", 5), ("overdue", 10))]
        await asyncio.wait(tasks, timeout=0.5)  # two slots: the third keeps waiting
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return immediate, order

    immediate, order = asyncio.run(scenario())
    assert immediate < 0.05
    assert order == ["overdue", "upcoming"]


def test_closing_the_slots_refuses_waiters_and_a_cancelled_waiter_leaves_no_trace():
    async def scenario() -> tuple[bool, int]:
        slots = PrioritySlots(1, settle=0.01)
        await slots.acquire(1)
        timed_out = False
        try:
            await asyncio.wait_for(slots.acquire(5), 0.05)
        except asyncio.TimeoutError:
            timed_out = True
        waiter = asyncio.create_task(slots.acquire(5))
        await asyncio.sleep(0.02)
        slots.close()
        with pytest.raises(SlotsClosed):
            await waiter
        return timed_out, slots.waiting

    assert asyncio.run(scenario()) == (True, 0)


@pytest.mark.django_db(transaction=True)
def test_many_threads_share_a_bounded_number_of_connections():
    permits = DbPermits(3, application_name="billing-consumer budget-test")
    seen_backends: set[int] = set()
    lock = threading.Lock()

    def work() -> None:
        for _ in range(5):
            with permits.ensure(1):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    pid = cursor.fetchone()[0]
                with lock:
                    seen_backends.add(pid)
            with permits.ensure(1), permits.idle():  # a parked wait holds no connection
                assert not permits.held
                time.sleep(0.001)
            assert not permits.held

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(seen_backends) <= 3
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                       ["billing-consumer budget-test"])
        assert cursor.fetchone()[0] <= 3
    assert permits.open_connections() >= 1
    permits.close_idle(0.0)
    assert permits.open_connections() == 0
    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_freed_connection_goes_to_the_highest_priority_waiter():
    permits = DbPermits(1, application_name="billing-consumer priority-test")
    order: list[int] = []
    permits.acquire(0)  # held by this thread

    def wait(priority: int) -> None:
        permits.acquire(priority)
        order.append(priority)
        permits.release()

    threads = []
    for priority in (1, 5, 10, 11):
        threads.append(threading.Thread(target=wait, args=(priority,)))
        threads[-1].start()
        time.sleep(0.02)  # queue them in this order
    permits.release()
    for thread in threads:
        thread.join(10)
    assert order == [11, 10, 5, 1]
    permits.close_all()
