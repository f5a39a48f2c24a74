"""BackgroundLoop: runs coroutines for synchronous callers, and really ends when stopped."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings

import pytest

from apps.common.background_loop import BackgroundLoop


def test_runs_coroutines_on_one_long_lived_loop():
    background = BackgroundLoop("test-loop")
    try:

        async def which_loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        assert background.run(which_loop(), 5) is background.run(which_loop(), 5) is background.loop
    finally:
        background.stop()


def test_a_timeout_cancels_the_coroutine():
    background = BackgroundLoop("test-loop")
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(TimeoutError):
            background.run(slow(), 0.05)

        async def was_cancelled() -> bool:
            await asyncio.wait_for(cancelled.wait(), 5)
            return True

        assert background.run(was_cancelled(), 6)
    finally:
        background.stop()


def test_stop_cancels_what_is_left_and_closes_the_loop():
    background = BackgroundLoop("test-loop")
    ended: list[str] = []
    started = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("cleaned up")

    asyncio.run_coroutine_threadsafe(forever(), background.loop)
    assert started.wait(5)
    background.stop()
    assert background.loop.is_closed()
    assert ended == ["cleaned up"]
    background.stop()  # twice is harmless
    with pytest.raises(RuntimeError):
        background.run(forever(), 1)  # a closed loop refuses at once instead of timing out


class _ClosesOnCollection:
    """What aio-pika's Connection does in `__del__`: schedule a close unless the loop is closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def close(self) -> None:
        pass

    def __del__(self) -> None:
        try:
            if self.loop.is_closed():
                return
            asyncio.ensure_future(self.close())
        except RuntimeError:
            pass


def test_clients_collected_after_stop_leave_no_unawaited_close():
    background = BackgroundLoop("test-loop")
    client = _ClosesOnCollection(background.loop)
    background.stop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
