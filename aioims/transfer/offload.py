"""The transfer loop: part requests handled off the caller's event loop.

With the threaded sender, the bytes of a part leave from worker threads, but
aiobotocore still builds, signs and parses every ``UploadPart`` on the event
loop that awaits it: 2–5 ms of CPU per part on a 2-core VM (request
serialisation, endpoint rules, the user-agent string, SigV4, parsing), i.e.
0.3–0.6 CPU-s per GiB at 8 MiB parts, taken from everything else the
application's loop serves.  ``TransferConfig(offload_parts=True)`` (the
default with ``sender="thread"``) moves that work to **one process-wide
background event loop** (the *transfer loop*, thread ``aioims-transfer-loop``):
each set of upload credentials gets an aiobotocore client there (the same
``client_kwargs`` as the caller's client, so the same TLS, timeouts and
``ThreadedSession``), and the caller's loop only hands over the call and
awaits its result.

Rules (one place, :func:`run_in_transfer_loop`):

* the transfer loop is started once per process, off the caller's loop (the
  first call starts it from the default executor); a forked child starts its
  own;
* results and exceptions (botocore's, unchanged) come back to the caller;
* cancellation of the caller cancels the call in the transfer loop and
  **waits** (shielded) until it has finished there before raising
  ``CancelledError``: a part buffer is never reused while the transfer loop
  or a sender thread still holds it;
* nothing in the transfer loop ever waits for the caller's loop (no
  deadlock): credentials are fixed per client, refreshes happen on the
  caller's side, which then asks for a client of the new credentials.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _TransferLoop:
    """A daemon thread running an asyncio loop forever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def running(self) -> asyncio.AbstractEventLoop | None:
        loop = self._loop
        if loop is None or self._pid != os.getpid():
            return None
        return loop

    def ensure(self) -> asyncio.AbstractEventLoop:
        """The loop, started if needed (blocking: call it off any loop)."""
        with self._lock:
            loop = self.running()
            if loop is not None:
                return loop
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="aioims-transfer-loop", daemon=True)
            thread.start()
            started.wait()
            self._loop, self._pid = loop, os.getpid()
            return loop


_TRANSFER_LOOP = _TransferLoop()


def _forget_loop_after_fork() -> None:
    # A forked child has no transfer-loop thread (and maybe a lock taken
    # mid-use): it starts its own when it needs one.
    global _TRANSFER_LOOP
    _TRANSFER_LOOP = _TransferLoop()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_loop_after_fork)


async def transfer_loop() -> asyncio.AbstractEventLoop:
    """The transfer loop, started off the calling loop if needed."""
    loop = _TRANSFER_LOOP.running()
    if loop is None:
        loop = await asyncio.get_running_loop().run_in_executor(None, _TRANSFER_LOOP.ensure)
    return loop


def in_transfer_loop() -> bool:
    """Is the running code in the transfer loop's thread?"""
    loop = _TRANSFER_LOOP.running()
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _Call:
    """One coroutine run in the transfer loop; ``done`` is set only when
    its task has really finished there."""

    def __init__(self, factory: Callable[[], Awaitable[Any]]) -> None:
        self.factory = factory
        self.done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.task: asyncio.Future[Any] | None = None
        self.cancelled = False

    def start(self) -> None:  # in the transfer loop
        if self.cancelled:
            self.done.set_exception(asyncio.CancelledError())
            return
        try:
            self.task = asyncio.ensure_future(self.factory())
        except BaseException as exc:
            self.done.set_exception(exc)
            return
        self.task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            self.done.set_exception(asyncio.CancelledError())
            return
        error = task.exception()
        if error is not None:
            self.done.set_exception(error)
        else:
            self.done.set_result(task.result())

    def cancel(self) -> None:  # in the transfer loop
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


async def run_in_transfer_loop(factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` in the transfer loop and return its result (see the
    module docstring for the cancellation rule).  Called from the transfer
    loop itself, it simply awaits it."""
    if in_transfer_loop():
        return await factory()
    loop = await transfer_loop()
    call = _Call(factory)
    loop.call_soon_threadsafe(call.start)
    future = asyncio.wrap_future(call.done)
    try:
        result: T = await asyncio.shield(future)
        return result
    except asyncio.CancelledError:
        if not future.done():  # we were cancelled: stop it there, wait for it
            loop.call_soon_threadsafe(call.cancel)
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait((future,))
            if not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning
        raise
