"""Typed progress events and the ways to receive them.

``progress=`` of :func:`aioims.transfer.upload_file` accepts

* a plain function ``f(event) -> None``: called inline, in order, on the
  event loop (keep it quick: it runs between S3 requests);
* an ``async def`` function (or an object with ``async def __call__``):
  awaited in order by a dispatcher task beside the transfer, so a slow
  callback never stalls the upload; while it lags, ``BytesSent`` events are
  merged (only the newest total is kept);
* an :class:`EventStream`, consumed with ``async for`` by another task.

A callback that raises is logged (``aioims.transfer``, WARNING, with the
traceback the first time) and the transfer carries on: progress reporting
never decides whether an upload succeeds.

Events other than :class:`BytesSent` are never dropped.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Union

import anyio
import attrs
from anyio.abc import TaskGroup

if TYPE_CHECKING:
    from .results import TransferResult

logger = logging.getLogger("aioims.transfer")


class TransferEvent:
    """Base class of every progress event."""

    __slots__ = ()


@attrs.frozen
class TransferStarted(TransferEvent):
    """Sent once the upload is set up.  ``upload_id`` is None for a single
    PutObject; ``resumed_parts``/``resumed_bytes`` were already on S3."""

    total_bytes: int
    part_count: int
    upload_id: str | None
    resumed_parts: int = 0
    resumed_bytes: int = 0
    part_size: int = 0


@attrs.frozen
class PartStarted(TransferEvent):
    """A part's first attempt begins (sent once per part)."""

    part_number: int
    size: int


@attrs.frozen
class PartDone(TransferEvent):
    part_number: int
    size: int
    etag: str


@attrs.frozen
class PartRetried(TransferEvent):
    """Attempt ``attempt`` of a part failed; another follows after ``delay`` s.
    ``error`` is a one-line description (never contains credentials)."""

    part_number: int
    attempt: int
    error: str
    code: str | None = None
    delay: float = 0.0


@attrs.frozen
class BytesSent(TransferEvent):
    """Cumulative bytes on S3 (resumed parts included), sent after each part."""

    bytes_sent_total: int
    total_bytes: int


@attrs.frozen
class CredentialsRefreshed(TransferEvent):
    """``refresh()`` returned new credentials; ``count`` refreshes so far."""

    count: int


@attrs.frozen
class TransferCompleted(TransferEvent):
    result: TransferResult


@attrs.frozen
class TransferFailed(TransferEvent):
    """The transfer ended without success.  ``cancelled``: it was cancelled;
    ``aborted``: the multipart upload was aborted; ``resumable``: the
    checkpoint and the multipart upload were kept for a later run."""

    error: BaseException
    cancelled: bool = False
    aborted: bool = False
    resumable: bool = False


@attrs.frozen
class StatusChanged(TransferEvent):
    """An image changed status (sent by the upload coordinator, not the engine)."""

    image_id: str
    status: str


#: The stages of an image upload, in order (``StageChanged.stage``).
UPLOAD_STAGES = ("creating", "preparing", "uploading", "saving", "verifying", "active")


@attrs.frozen
class StageChanged(TransferEvent):
    """The upload coordinator entered a stage of the image lifecycle:
    ``creating`` (or adopting/reusing an image), ``preparing`` (upload-prepare),
    ``uploading`` (the S3 transfer), ``saving`` (upload-done sent, the service
    verifies), ``verifying`` (the client compares size and MD5), ``active``
    (done).  ``image_id`` is None until the image exists."""

    stage: str
    image_id: str | None = None


TERMINAL_EVENTS = (TransferCompleted, TransferFailed)

ProgressCallback = Union[  # noqa: UP007 - a runtime alias, Python 3.10 compatible
    Callable[[TransferEvent], None], Callable[[TransferEvent], Awaitable[None]]
]


class EventStream:
    """An async iterator of events, for one consumer task::

        events = EventStream()
        async with anyio.create_task_group() as tg:
            tg.start_soon(show, events)        # async for event in events: ...
            await upload_file(target, path, progress=events)

    Backed by an anyio memory object stream of ``max_buffer`` events.  The
    producer never waits: when the buffer is full, ``BytesSent`` events are
    merged (only the newest total is kept; ``merged`` counts the ones left
    out) and other events queue up behind the buffer in order, so a slow
    consumer gets every part/credential/terminal event, late.

    With ``close_on_terminal`` (the default) the stream ends after
    :class:`TransferCompleted`/:class:`TransferFailed`; otherwise call
    :meth:`close` (a coordinator reusing one stream for several stages does).
    """

    def __init__(self, max_buffer: int = 256, *, close_on_terminal: bool = True) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._send, self._receive = anyio.create_memory_object_stream[TransferEvent](max_buffer)
        self._overflow: deque[TransferEvent] = deque()
        self._pending_bytes: BytesSent | None = None
        self._closing = False
        self.close_on_terminal = close_on_terminal
        self.merged = 0

    # -- producer side ------------------------------------------------------

    def publish(self, event: TransferEvent) -> None:
        """Queue ``event`` without waiting (ignored once the stream is closed)."""
        if self._closing:
            return
        self._pump()
        if isinstance(event, BytesSent):
            if not self._overflow and self._pending_bytes is None and self._try_send(event):
                return
            if self._pending_bytes is not None:
                self.merged += 1
            self._pending_bytes = event
            return
        if self._pending_bytes is not None:
            self._overflow.append(self._pending_bytes)
            self._pending_bytes = None
        self._overflow.append(event)
        self._pump()
        if self.close_on_terminal and isinstance(event, TERMINAL_EVENTS):
            self.close()

    def close(self) -> None:
        """End the stream once the consumer has read what is queued."""
        if self._closing:
            return
        self._closing = True
        if self._pending_bytes is not None:
            self._overflow.append(self._pending_bytes)
            self._pending_bytes = None
        self._pump()

    @property
    def closed(self) -> bool:
        return self._closing

    def _try_send(self, event: TransferEvent) -> bool:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            return False
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The consumer went away: nothing more to deliver.
            self._overflow.clear()
            self._pending_bytes = None
            self._closing = True
            return True
        return True

    def _pump(self) -> None:
        while self._overflow:
            if not self._try_send(self._overflow[0]):
                return
            if self._overflow:
                self._overflow.popleft()
        if self._pending_bytes is not None and self._try_send(self._pending_bytes):
            self._pending_bytes = None
        if self._closing and not self._overflow and self._pending_bytes is None:
            self._send.close()

    # -- consumer side ------------------------------------------------------

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> TransferEvent:
        self._pump()
        try:
            event = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            raise StopAsyncIteration from None
        self._pump()
        return event

    async def aclose(self) -> None:
        """Stop consuming: later events are discarded."""
        self._closing = True
        self._overflow.clear()
        self._pending_bytes = None
        self._send.close()
        self._receive.close()

    def __del__(self) -> None:
        # Never leave anyio's streams to warn about being garbage-collected open.
        self._send.close()
        self._receive.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _is_async_callable(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - the bound method, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


class Emitter:
    """Delivers the events of one transfer to whatever ``progress`` is."""

    def __init__(self, progress: ProgressCallback | EventStream | None) -> None:
        self._stream: EventStream | None = None
        self._sync: Callable[[TransferEvent], Any] | None = None
        self._async: Callable[[TransferEvent], Any] | None = None
        self._queue: EventStream | None = None
        self._done = anyio.Event()
        self._failures = 0
        if progress is None:
            pass
        elif isinstance(progress, EventStream):
            self._stream = progress
        elif _is_async_callable(progress):
            self._async = progress
        elif callable(progress):
            self._sync = progress
        else:
            raise TypeError("progress must be a callable, an async callable or an EventStream")

    @property
    def active(self) -> bool:
        """Does anybody listen?"""
        return self._stream is not None or self._async is not None or self._sync is not None

    def start(self, task_group: TaskGroup) -> None:
        if self._async is not None:
            self._queue = EventStream(1024, close_on_terminal=False)
            task_group.start_soon(self._dispatch)

    def emit(self, event: TransferEvent) -> None:
        if self._stream is not None:
            self._stream.publish(event)
        elif self._queue is not None:
            self._queue.publish(event)
        elif self._sync is not None:
            try:
                result = self._sync(event)
            except Exception:
                self._callback_failed(event)
            else:
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    logger.warning(
                        "progress callback returned an awaitable; pass an async def function"
                    )

    async def _dispatch(self) -> None:
        assert self._queue is not None and self._async is not None
        try:
            async for event in self._queue:
                try:
                    await self._async(event)
                except Exception:
                    self._callback_failed(event)
        finally:
            self._done.set()

    def _callback_failed(self, event: TransferEvent) -> None:
        self._failures += 1
        logger.warning(
            "progress callback raised on %s (ignored, the transfer continues)",
            type(event).__name__,
            exc_info=self._failures == 1,
        )

    async def aclose(self, time_limit: float) -> None:
        """Let an async callback catch up (at most ``time_limit`` s)."""
        if self._queue is None:
            return
        self._queue.close()
        with anyio.move_on_after(time_limit):
            await self._done.wait()
