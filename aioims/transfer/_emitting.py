"""Run a coroutine beside the dispatcher of its progress events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .events import Emitter

T = TypeVar("T")

#: How long a slow async progress callback may lag behind the end of a job.
CATCH_UP_LIMIT = 5.0


async def run_with_emitter(emitter: Emitter, body: Callable[[], Awaitable[T]]) -> T:
    """Await ``body()`` while ``emitter`` dispatches events in a task group.

    An exception of ``body`` comes out as itself, not wrapped in an
    ``ExceptionGroup``; cancellation propagates unchanged.
    """
    error: Exception | None = None
    result: T | None = None
    async with anyio.create_task_group() as tg:
        emitter.start(tg)
        try:
            result = await body()
        except Exception as exc:
            error = exc
        finally:
            with anyio.CancelScope(shield=True):
                await emitter.aclose(CATCH_UP_LIMIT)
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
