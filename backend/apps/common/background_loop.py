"""An asyncio event loop on a daemon thread, for synchronous code that must reuse async clients.

Why: views, workers and the periodic task are synchronous; aio-pika and the Channels Redis layer
are not, and both keep their connections per event loop. `async_to_sync` would start a new loop
(and open new connections) for every call. One long-lived loop per use keeps them open: the
publisher's confirming channel, the progress pushes' Redis connections.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any


class BackgroundLoop:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """Run `coro` on the loop and wait for its result; on timeout cancel it and raise
        TimeoutError. A stopped loop refuses at once (RuntimeError)."""
        if self.loop.is_closed():
            coro.close()  # never started: no "never awaited" warning for the caller's coroutine
            raise RuntimeError(f"background loop {self._thread.name!r} is stopped")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, wait for its thread and close it. A loop left open but stopped makes
        clients collected later (aio-pika's `Connection.__del__`) schedule a close on it that never
        runs ("coroutine … was never awaited"); closed, they see there is nothing left to do."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is self._thread:
            return  # called from a task on the loop: it stops after this callback
        self._thread.join(timeout)
        if self._thread.is_alive():
            return  # a callback is stuck: leave the loop to the daemon thread rather than hang
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()
