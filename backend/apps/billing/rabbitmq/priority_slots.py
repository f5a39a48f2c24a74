"""Queue slots for the consumer's event loop: how many queues one process holds at once,
granted by template priority (overdue before upcoming before notification), then arrival."""
from __future__ import annotations

import asyncio
import heapq
import itertools


class SlotsClosed(Exception):
    """The consumer is stopping: no more slots are granted."""


class PrioritySlots:
    """Queue slots for the event loop, granted by priority, then arrival.

    A free slot nobody else waits for is granted at once (a new queue starts without delay).
    Otherwise grants are made a moment (`settle`) after a request or a release, so deliveries
    that arrive together are ordered by priority instead of by which RabbitMQ queue answered
    first: several waiting when a slot frees, or the burst a consumer receives when it starts
    on a backlog or reconnects (`batch_for()` asks for that ordering for a while).
    """

    def __init__(self, size: int, *, settle: float = 0.05) -> None:
        self.size = size
        self.free = size
        self.settle = settle
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._closed = False
        self._dispatch_handle: asyncio.TimerHandle | None = None
        self._batch_until = 0.0

    def batch_for(self, seconds: float) -> None:
        """Order every grant by priority for the next `seconds` (a burst of deliveries comes)."""
        self._batch_until = asyncio.get_running_loop().time() + seconds

    @property
    def waiting(self) -> int:
        return sum(1 for *_, future in self._waiters if not future.done())

    async def acquire(self, priority: int) -> None:
        if self._closed:
            raise SlotsClosed()
        loop = asyncio.get_running_loop()
        if self.free > 0 and not self._waiters and loop.time() >= self._batch_until:
            self.free -= 1
            return
        future: asyncio.Future[None] = loop.create_future()
        entry = (-priority, next(self._seq), future)
        heapq.heappush(self._waiters, entry)
        self._schedule()
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release()  # granted in the same instant we were cancelled: give it back
            else:
                future.cancel()
                self._forget(entry)
            raise

    def release(self) -> None:
        self.free += 1
        self._schedule()

    def close(self) -> None:
        """Refuse every waiter (they hand their delivery back) and every future request."""
        self._closed = True
        for *_, future in self._waiters:
            if not future.done():
                future.set_exception(SlotsClosed())
        self._waiters.clear()

    def _forget(self, entry: tuple[int, int, asyncio.Future[None]]) -> None:
        try:
            self._waiters.remove(entry)
        except ValueError:
            return
        heapq.heapify(self._waiters)

    def _schedule(self) -> None:
        if self._dispatch_handle is None:
            self._dispatch_handle = asyncio.get_running_loop().call_later(self.settle, self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_handle = None
        while self.free > 0 and self._waiters:
            *_, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            self.free -= 1
            future.set_result(None)
