"""Process-wide worker threads, started once and off the event loop.

One rule for the transfer's own threads (the part senders of
:mod:`aioims.transfer.sender`, the file-part readers of
:mod:`aioims.transfer.sources`, the whole-file hashers of
:mod:`aioims.transfer.hashing`): a :class:`WorkerPool` is a set of daemon
threads taking jobs from one queue, grown (never shrunk) by
:meth:`WorkerPool.ensure` — a blocking call, made from a worker thread or at
program start, never on the event loop (starting threads there stalls it) —
and :meth:`WorkerPool.submit` only queues a job (cheap: callable from the
loop or from any thread).  A forked child forgets its parent's threads (and
any lock or queue left mid-use) and starts its own when it needs them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class WorkerPool:
    """Daemon threads named ``{name}-N`` taking jobs from one queue."""

    def __init__(self, name: str, max_threads: int) -> None:
        self.name = name
        self.max_threads = max_threads
        self._reset()
        _POOLS.add(self)

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def size(self) -> int:
        return len(self._threads)

    def ensure(self, threads: int) -> None:
        """Start threads up to ``threads`` (blocking: call it off the loop)."""
        wanted = max(1, min(threads, self.max_threads))
        with self._lock:
            while len(self._threads) < wanted:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    async def ensure_async(self, threads: int) -> None:
        """Grow the pool to ``threads`` without starting threads on the loop."""
        if self.size >= min(threads, self.max_threads):
            return
        await asyncio.get_running_loop().run_in_executor(None, self.ensure, threads)

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn))
        return future

    def _work(self) -> None:
        jobs = self._queue
        while True:
            future, fn = jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, fn


async def run_in_pool(pool: WorkerPool, fn: Callable[[], T]) -> T:
    """``fn()`` in one of ``pool``'s threads (a queue put and a wake-up: about
    half of ``anyio.to_thread.run_sync``'s loop time).  Cancelled while
    queued, it never runs; cancelled while running, it is waited for
    (shielded) before the cancellation goes on — like ``anyio``'s, a buffer
    handed to ``fn`` is never reused while ``fn`` still holds it.  The pool
    must have threads (:meth:`WorkerPool.ensure`)."""
    job = pool.submit(fn)
    future = asyncio.wrap_future(job)
    try:
        return await asyncio.shield(future)
    except BaseException:
        if not job.cancel():  # running or done: wait for it
            with anyio.CancelScope(shield=True):
                await asyncio.wait((future,))
            if not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning
        raise


_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _forget_threads_after_fork() -> None:
    for pool in list(_POOLS):
        pool._reset()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_threads_after_fork)
