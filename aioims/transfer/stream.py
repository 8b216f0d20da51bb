"""Upload from a stream of known size (no temp file, no seeking).

Parts are cut from the stream one after the other; a slot is taken before a
part is filled, so at most ``max_concurrency`` part buffers exist (plus the
stream's own chunk that straddles two parts).  Parts are hashed in order as
they are cut (Content-MD5 and whole-stream MD5 in one worker-thread call),
then uploaded concurrently.  A stream cannot be re-read, so there is no
checkpoint/resume here.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import IO, Any, Protocol, Union

import anyio

from ..errors import ValidationError
from ..models.upload import UploadTarget
from ._transfer import Guard, Transfer
from .config import MiB, TransferConfig, plan_parts
from .errors import SourceChangedError
from .events import EventStream, ProgressCallback, _is_async_callable
from .hashing import PartSlots, digest_part, new_md5, new_part_buffer
from .results import TransferResult
from .s3 import RefreshCallable


class AsyncReader(Protocol):
    """Anything with ``async def read(n) -> bytes`` (aiohttp's StreamReader...)."""

    def read(self, n: int = ..., /) -> Awaitable[bytes]: ...


_THREAD_ALLOC = 1 << 20

StreamSource = Union[AsyncReader, AsyncIterable[bytes]]  # noqa: UP007 - runtime alias


def _fill_sync(fileobj: IO[bytes], view: memoryview) -> int:
    readinto = getattr(fileobj, "readinto", None)
    if readinto is not None:
        return int(readinto(view) or 0)
    data = fileobj.read(len(view))
    view[: len(data)] = data
    return len(data)


class ChunkReader:
    """Reads exact-size blocks from an async reader, an async iterable of
    bytes, or (in worker threads) a blocking binary file object."""

    def __init__(self, source: Any) -> None:
        self._read: Callable[[int], Awaitable[bytes]] | None = None
        self._iter: AsyncIterator[bytes] | None = None
        self._sync: IO[bytes] | None = None
        self._leftover: memoryview | None = None
        read = getattr(source, "read", None)
        if read is not None and _is_async_callable(read):
            self._read = read
        elif hasattr(source, "__aiter__"):
            self._iter = source.__aiter__()
        elif read is not None:
            self._sync = source
        else:
            raise TypeError(
                "source must have an async read(n), be an async iterable of bytes, "
                "or be a binary file object"
            )

    async def _next_chunk(self, wanted: int) -> bytes:
        if self._read is not None:
            return await self._read(wanted)
        assert self._iter is not None
        try:
            return await self._iter.__anext__()
        except StopAsyncIteration:
            return b""

    async def read_exact(self, size: int, body: io.BytesIO | None = None) -> tuple[io.BytesIO, int]:
        """A part buffer (``body``, a recycled one of ``size`` bytes, or a new
        one) filled with ``size`` bytes (fewer at the end of the stream: the
        count is returned with it)."""
        if body is not None:
            body.seek(0)
        elif size >= _THREAD_ALLOC:  # zero-filling 8 MiB is for a worker thread
            body = await anyio.to_thread.run_sync(new_part_buffer, size)
        else:
            body = new_part_buffer(size)
        got = 0
        with body.getbuffer() as view:
            if self._leftover is not None:
                take = min(size, len(self._leftover))
                view[:take] = self._leftover[:take]
                self._leftover = self._leftover[take:] if take < len(self._leftover) else None
                got = take
            while got < size:
                if self._sync is not None:
                    with view[got:] as rest:
                        count = await anyio.to_thread.run_sync(_fill_sync, self._sync, rest)
                    if count <= 0:
                        break
                    got += count
                    continue
                chunk = await self._next_chunk(min(size - got, 1 << 20))
                if not chunk:
                    break
                take = min(len(chunk), size - got)
                view[got : got + take] = memoryview(chunk)[:take]
                if take < len(chunk):
                    self._leftover = memoryview(chunk)[take:]
                got += take
        if got < size:
            body.truncate(got)
        return body, got

    async def at_eof(self) -> bool:
        return (await self.read_exact(1))[1] == 0


async def upload_stream(
    target: UploadTarget,
    source: StreamSource,
    *,
    size: int,
    config: TransferConfig | None = None,
    progress: ProgressCallback | EventStream | None = None,
    refresh: RefreshCallable | None = None,
    md5: bool = True,
) -> TransferResult:
    """Upload exactly ``size`` bytes read from ``source``: an object with
    ``async def read(n)`` (e.g. ``aiohttp.StreamReader``) or an async
    iterable of bytes chunks.  A source that ends early or yields more than
    ``size`` bytes raises :class:`SourceChangedError` (the multipart upload
    is aborted).  Errors raised by the source propagate as they are."""
    config = config if config is not None else TransferConfig()
    return await _upload(target, ChunkReader(source), size, config, progress, refresh, md5)


def _size_of(fileobj: IO[bytes]) -> int:
    try:
        return os.fstat(fileobj.fileno()).st_size - fileobj.tell()
    except (AttributeError, OSError, ValueError):
        position = fileobj.tell()
        end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(position)
        return end - position


async def upload_fileobj(
    target: UploadTarget,
    fileobj: IO[bytes] | StreamSource,
    *,
    size: int | None = None,
    config: TransferConfig | None = None,
    progress: ProgressCallback | EventStream | None = None,
    refresh: RefreshCallable | None = None,
    md5: bool = True,
) -> TransferResult:
    """Upload from a file object, read sequentially from its current
    position: a blocking binary file (read in worker threads; ``size``
    defaults to what is left in it) or anything :func:`upload_stream` takes."""
    config = config if config is not None else TransferConfig()
    reader = ChunkReader(fileobj)
    if size is None:
        if _is_async_callable(getattr(fileobj, "read", None)) or hasattr(fileobj, "__aiter__"):
            raise ValidationError("size is required for an async source", field="size")
        blocking: IO[bytes] = fileobj  # type: ignore[assignment]
        size = await anyio.to_thread.run_sync(_size_of, blocking)
    return await _upload(target, reader, size, config, progress, refresh, md5)


async def _upload(
    target: UploadTarget,
    reader: ChunkReader,
    size: int,
    config: TransferConfig,
    progress: ProgressCallback | EventStream | None,
    refresh: RefreshCallable | None,
    md5: bool,
) -> TransferResult:
    from .upload import check_target

    check_target(target)
    plan = plan_parts(size, config)
    transfer = Transfer(
        target,
        config,
        plan,
        progress=progress,
        refresh=refresh,
        checkpoint=None,
        image_id=None,
        md5=md5,
    )

    async def body(t: Transfer) -> TransferResult:
        return await _multipart(t, reader) if plan.multipart else await _single(t, reader)

    return await transfer.run(body)


def _short(expected: int, got: int) -> SourceChangedError:
    return SourceChangedError(f"the stream yielded {got} bytes, {expected} were announced")


async def _single(t: Transfer, reader: ChunkReader) -> TransferResult:
    async with t.shared_slot(t.plan.size):
        data, got = await reader.read_exact(t.plan.size)
        if got != t.plan.size:
            raise _short(t.plan.size, got)
        if not await reader.at_eof():
            raise SourceChangedError(
                f"the stream yielded more than the {t.plan.size} bytes announced"
            )
        whole = new_md5() if t.md5 else None
        b64 = await anyio.to_thread.run_sync(digest_part, data, t.config.content_md5, whole)
        t.emit_started()
        part = await t.engine.put_object(data, got, b64)
        del data
    return t.result(etag=part.etag, md5=whole.hexdigest() if whole is not None else None)


async def _multipart(t: Transfer, reader: ChunkReader) -> TransferResult:
    engine = t.engine
    await engine.create()
    t.upload_started()
    t.emit_started()
    whole = new_md5() if t.md5 else None
    slots = PartSlots(t.config.max_concurrency, t.plan.part_size, t.config.part_limiter, t)
    try:
        async with anyio.create_task_group() as tg:
            guard = Guard(tg)
            tg.start_soon(guard.run, produce_parts, t, reader, slots, whole, tg, guard)
    finally:
        slots.close()
    guard.raise_if_failed()
    etag = await engine.complete()
    t.upload_completed()
    return t.result(etag=etag, md5=whole.hexdigest() if whole is not None else None)


async def skip_bytes(reader: ChunkReader, length: int, whole: Any) -> int:
    """Read ``length`` bytes without sending them (hashing them into
    ``whole`` if given); returns how many there were."""
    left = length
    while left:
        data, got = await reader.read_exact(min(left, MiB))
        if got == 0:
            break
        if whole is not None:
            await anyio.to_thread.run_sync(digest_part, data, False, whole)
        left -= got
    return length - left


async def produce_parts(
    t: Transfer,
    reader: ChunkReader,
    slots: PartSlots,
    whole: Any,
    tg: Any,
    guard: Guard,
    *,
    first: int = 1,
    resumed: frozenset[int] | set[int] = frozenset(),
) -> None:
    """Cut the stream into parts ``first``.. and start a task uploading each;
    parts in ``resumed`` (already on S3) are read past, not sent.  A part's
    slot is taken before it is read: at most ``max_concurrency`` buffers."""
    plan = t.plan
    for number in range(first, plan.part_count + 1):
        length = plan.part_length(number)
        if number in resumed:
            got = await skip_bytes(reader, length, whole)
            if got != length:
                raise _short(plan.size, plan.part_offset(number) + got)
            continue
        await slots.acquire(number, 1, length)
        data, got = await reader.read_exact(length, slots.recycled(length))
        slots.attach(number, data)
        if got != length:
            raise _short(plan.size, plan.part_offset(number) + got)
        b64 = await anyio.to_thread.run_sync(digest_part, data, t.config.content_md5, whole)
        tg.start_soon(guard.run, _stream_part, t, number, data, length, b64, slots)
        del data
    if not await reader.at_eof():
        raise SourceChangedError(f"the stream yielded more than the {plan.size} bytes announced")


async def _stream_part(
    t: Transfer, number: int, data: io.BytesIO, size: int, b64: str | None, slots: PartSlots
) -> None:
    part = await t.engine.upload_part(number, data, size, b64)
    del data
    slots.release(number)
    if t.writer is not None:
        t.writer.add_part(part)
