"""Upload from a stream of known size (no temp file, no seeking), through
the one driver (:mod:`aioims.transfer.driver`):

* :func:`upload_stream` / :func:`upload_fileobj` — a one-shot stream
  (:class:`~aioims.transfer.sources.StreamSource`): not resumable;
* :func:`upload_stream_resumable` — a stream that can be reopened at an
  offset, e.g. an IMS image download with HTTP Range
  (:class:`~aioims.transfer.sources.ReopenableSource`): with a checkpoint,
  a later run lists the parts S3 holds, reopens the source at the first
  missing part and reads past (does not send) the parts already there.

Parts are cut from the stream in order; a slot is taken before a part is
filled, so at most ``max_concurrency`` part buffers exist (plus the stream's
own chunk that straddles two parts).  Parts are hashed in order as they are
cut (Content-MD5 and the whole-stream MD5 in one worker-thread call), then
uploaded concurrently.  After a resume that starts past the first part the
whole-stream MD5 is ``None`` (the caller compares the target's checksum
with the source's instead).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import anyio

from ..errors import ValidationError
from ..models.upload import UploadTarget
from .checkpoint import FilePartJournal
from .config import TransferConfig
from .driver import check_target, drive
from .events import EventStream, ProgressCallback, _is_async_callable
from .results import TransferResult
from .s3 import RefreshCallable
from .sources import OpenAt, ReopenableSource, StreamLike, StreamSource

__all__ = ["upload_fileobj", "upload_stream", "upload_stream_resumable"]

#: Kept for compatibility: what :func:`upload_stream` reads.
StreamSourceLike = StreamLike


async def upload_stream(
    target: UploadTarget,
    source: StreamLike,
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
    check_target(target)
    return await drive(
        target, StreamSource(source, size), config=config, progress=progress,
        refresh=refresh, md5=md5,
    )  # fmt: skip


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
    fileobj: IO[bytes] | StreamLike,
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
    check_target(target)
    if size is None:
        if _is_async_callable(getattr(fileobj, "read", None)) or hasattr(fileobj, "__aiter__"):
            raise ValidationError("size is required for an async source", field="size")
        blocking: Any = fileobj
        size = await anyio.to_thread.run_sync(_size_of, blocking)
    return await drive(
        target, StreamSource(fileobj, size), config=config, progress=progress,
        refresh=refresh, md5=md5,
    )  # fmt: skip


async def upload_stream_resumable(
    target: UploadTarget,
    open_at: OpenAt,
    *,
    size: int,
    identity: str,
    config: TransferConfig | None = None,
    progress: ProgressCallback | EventStream | None = None,
    refresh: RefreshCallable | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    image_id: str | None = None,
    md5: bool = True,
) -> TransferResult:
    """Upload ``size`` bytes from ``open_at(0)`` to the target, resumably.

    ``open_at(offset)`` returns an async context manager yielding an async
    iterator of the bytes from ``offset`` to the end.  ``identity`` names the
    source in the checkpoint (include what changes when the source's bytes
    change, e.g. its checksum): a checkpoint of another identity is
    discarded (its upload aborted).  ``checkpoint``: the JSON file that
    makes the upload resumable (deleted on success)."""
    config = config if config is not None else TransferConfig()
    check_target(target)
    journal = (
        FilePartJournal.at(Path(checkpoint), config.checkpoint_interval)
        if checkpoint is not None
        else None
    )
    return await drive(
        target, ReopenableSource(open_at, size, identity), config=config, progress=progress,
        refresh=refresh, journal=journal, image_id=image_id, md5=md5,
    )  # fmt: skip
