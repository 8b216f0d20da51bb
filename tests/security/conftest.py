"""Fixtures of the security tests: one in-process emulator (embedded S3 and S3
front) on its own event loop in a background thread, so that tests may talk to
it over HTTP from their own loop, run the CLI in subprocesses, and still reach
its in-process handles (the S3 front's credential store, ``reset()``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aioims.emulator import Emulator

T = TypeVar("T")


class ThreadedEmulator:
    """An :class:`Emulator` running on a private loop in a daemon thread."""

    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.emu = Emulator(data_dir, port=0, **kwargs)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.emu.start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the emulator's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """The same, awaited from another event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    @staticmethod
    async def _cancel_leftovers() -> None:
        """Handlers of kept-alive connections still parked on the loop."""
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return self.emu.url

    def stop(self) -> None:
        try:
            self.call(self.emu.stop())
            self.call(self._cancel_leftovers())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()


@pytest.fixture(scope="session")
def threaded_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedEmulator]:
    emulator = ThreadedEmulator(tmp_path_factory.mktemp("security-emulator"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clean_emulator(threaded_emulator: ThreadedEmulator) -> ThreadedEmulator:
    """The session's emulator, reset to a clean account before the test."""
    threaded_emulator.call(threaded_emulator.emu.reset())
    return threaded_emulator
