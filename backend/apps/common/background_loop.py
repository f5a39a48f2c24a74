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
        TimeoutError."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
