"""The process-wide worker threads (aioims.transfer.pool): results and
errors come back, a cancelled call waits for a running job (its buffer is
not given up early) and never starts a queued one; threads are started off
the loop and named after their pool."""

from __future__ import annotations

import threading

import anyio
import pytest

from aioims.transfer.pool import WorkerPool, run_in_pool


@pytest.fixture
def pool() -> WorkerPool:
    pool = WorkerPool("aioims-test-pool", 4)
    pool.ensure(1)
    return pool


async def test_result_error_and_thread_name(pool: WorkerPool) -> None:
    assert await run_in_pool(pool, lambda: threading.current_thread().name) == "aioims-test-pool-0"

    def fail() -> None:
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        await run_in_pool(pool, fail)


async def test_cancel_waits_for_the_running_job_and_drops_the_queued_one(
    pool: WorkerPool,
) -> None:
    started, leave = threading.Event(), threading.Event()
    ran: list[str] = []
    returned_while_running: list[bool] = []

    def running() -> None:
        started.set()
        leave.wait(10)
        ran.append("running")

    async def call(fn: object, name: str) -> None:
        try:
            await run_in_pool(pool, fn)  # type: ignore[arg-type]
        finally:
            returned_while_running.append(name == "running" and not leave.is_set())

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, running, "running")
            await anyio.to_thread.run_sync(started.wait, 10)
            # one thread, busy: this one waits in the queue
            tg.start_soon(call, lambda: ran.append("queued"), "queued")
            await anyio.sleep(0.05)
            threading.Timer(0.3, leave.set).start()
            scope.cancel()
    assert scope.cancelled_caught
    assert returned_while_running == [False, False]
    await run_in_pool(pool, lambda: None)  # the queue has moved on
    assert ran == ["running"]  # the queued job never ran


def test_threads_grow_to_the_bound_never_past_it() -> None:
    pool = WorkerPool("aioims-test-bound", 3)
    pool.ensure(2)
    assert pool.size == 2
    pool.ensure(10)
    assert pool.size == 3
    names = {t.name for t in threading.enumerate() if t.name.startswith("aioims-test-bound-")}
    assert names == {"aioims-test-bound-0", "aioims-test-bound-1", "aioims-test-bound-2"}
