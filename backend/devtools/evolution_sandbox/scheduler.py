"""Run callables later, on a few daemon threads: the sandbox's delayed work (delivery receipts
after configurable delays, webhook deliveries and their retries) without blocking the HTTP
request that caused it, and without keeping the process alive at exit."""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, workers: int = 4, name: str = "sandbox-scheduler") -> None:
        self._heap: list[tuple[float, int, int, Callable[..., Any], tuple[Any, ...]]] = []
        # A reset starts a new generation: what a job of an older one schedules (a webhook retry,
        # the next receipt) is dropped, so nothing of a finished test reaches the next one.
        self._generation = 0
        self._local = threading.local()
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._ready: queue.Queue[tuple[int, Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._timer = threading.Thread(target=self._run_timer, name=f"{name}-timer", daemon=True)
        self._workers = [
            threading.Thread(target=self._run_worker, name=f"{name}-{index}", daemon=True) for index in range(workers)
        ]
        self._timer.start()
        for worker in self._workers:
            worker.start()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            generation = getattr(self._local, "generation", self._generation)
            if self._stopped or generation != self._generation:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), generation, fn, args))
            self._cond.notify()

    def pending(self) -> int:
        """Jobs waiting or running (tests wait for this to reach zero)."""
        with self._cond, self._busy_lock:
            return len(self._heap) + self._busy

    def clear(self) -> None:
        """Drop every job not yet started, and what the running ones would schedule (a sandbox
        reset)."""
        with self._cond:
            self._heap.clear()
            self._generation += 1

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        for _ in self._workers:
            self._ready.put(None)

    def _run_timer(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _due, _seq, generation, fn, args = heapq.heappop(self._heap)
                with self._busy_lock:  # counted as busy from now until a worker finishes it
                    self._busy += 1
                self._ready.put((generation, fn, args))

    def _run_worker(self) -> None:
        while True:
            job = self._ready.get()
            if job is None:
                return
            generation, fn, args = job
            self._local.generation = generation
            try:
                if generation == self._generation:
                    fn(*args)
            except Exception:  # a failing job must not kill the worker thread
                logger.exception("sandbox scheduled job failed")
            finally:
                with self._busy_lock:
                    self._busy -= 1
