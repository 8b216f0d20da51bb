"""A *resumable* upload from a stream that can be reopened at an offset
(an IMS image download with HTTP Range): no temporary file, bounded memory.

:func:`aioims.transfer.upload_stream` cannot resume (a stream cannot be
re-read).  A download can be reopened, though, so this module adds to it
what :func:`aioims.transfer.upload_file` does with a checkpoint: the
multipart upload id and the finished parts are kept in a checkpoint file
(same format, ``source.path`` = a description of the stream); a later run
lists the parts S3 holds, reopens the source at the first missing part and
skips (reads but does not send) the parts already there.  Finished parts are
never sent twice.

Built from the transfer engine's own pieces (``Transfer``, ``PartSlots``,
checkpoints, the shared part limiter), so its retry, credential-refresh,
abort and event rules are those of ``upload_file``.

The whole-stream MD5 (``result.md5``) is computed when the stream is read
from its start; after a resume that starts later it is ``None`` and the
caller verifies the target image's checksum against the source's instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread

from ..errors import IMSError
from ..models.upload import UploadTarget
from ..transfer import TransferConfig, TransferResult, upload_stream
from ..transfer._transfer import Guard, Transfer
from ..transfer.checkpoint import Checkpoint, CheckpointWriter, SourceIdentity
from ..transfer.config import plan_parts
from ..transfer.errors import S3TransferError, SourceChangedError
from ..transfer.events import EventStream, ProgressCallback
from ..transfer.hashing import PartSlots, new_md5
from ..transfer.s3 import RefreshCallable
from ..transfer.stream import ChunkReader, produce_parts
from ..transfer.upload import _reconcile, _Source

__all__ = ["OpenAt", "upload_stream_resumable"]

#: ``open_at(offset)`` → an async context manager yielding an async iterator
#: of the bytes from ``offset`` to the end.
OpenAt = Callable[[int], AbstractAsyncContextManager[AsyncIterator[bytes]]]


class _SourceReader:
    """``read(n)`` over a chunk iterator; a failure of the source becomes a
    transient :class:`S3TransferError` (operation ``SourceRead``) so the
    engine keeps the multipart upload and the checkpoint for a resume."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def read(self, n: int = -1) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""
        except (IMSError, OSError) as exc:
            if isinstance(exc, (S3TransferError, SourceChangedError)):
                raise
            raise S3TransferError(
                f"reading the source failed: {exc}",
                operation="SourceRead",
                code=getattr(exc, "code", None) or type(exc).__name__,
                request_id=getattr(exc, "request_id", None),
                http_status=getattr(exc, "http_status", None),
                transient=True,
            ) from exc


async def upload_stream_resumable(
    target: UploadTarget,
    open_at: OpenAt,
    *,
    size: int,
    identity: str,
    config: TransferConfig | None = None,
    progress: ProgressCallback | EventStream | None = None,
    refresh: RefreshCallable | None = None,
    checkpoint: str | Path | None = None,
    image_id: str | None = None,
) -> TransferResult:
    """Upload ``size`` bytes from ``open_at(0)`` to the target.

    ``identity`` names the source in the checkpoint (include what changes
    when the source's bytes change, e.g. its checksum): a checkpoint of
    another identity is discarded (its upload aborted).  Without
    ``checkpoint``, or for a single PutObject, this is
    :func:`aioims.transfer.upload_stream`.
    """
    config = config if config is not None else TransferConfig()
    plan = plan_parts(size, config)
    if checkpoint is None or not plan.multipart:
        async with open_at(0) as chunks:
            return await upload_stream(
                target, _SourceReader(chunks), size=size, config=config,
                progress=progress, refresh=refresh,
            )  # fmt: skip
    from ..transfer.upload import check_target

    check_target(target)
    transfer = Transfer(
        target, config, plan, progress=progress, refresh=refresh,
        checkpoint=Path(checkpoint), image_id=image_id, md5=True,
    )  # fmt: skip
    source = _Source(-1, SourceIdentity(identity, size, 0))

    async def body(t: Transfer) -> TransferResult:
        return await _multipart(t, source, open_at)

    return await transfer.run(body)


async def _multipart(t: Transfer, source: _Source, open_at: OpenAt) -> TransferResult:
    engine = t.engine
    upload_id, resumed = await _reconcile(t, source)
    if upload_id is None:
        await engine.create()
    else:
        engine.upload_id = upload_id
    t.upload_started()
    for part in resumed.values():
        engine.record(part)
    t.resumed_parts = len(resumed)
    assert t.checkpoint_path is not None and engine.upload_id is not None
    writer = CheckpointWriter(
        t.checkpoint_path,
        Checkpoint(
            bucket=engine.bucket, key=engine.key, image_id=t.image_id,
            upload_id=engine.upload_id, part_size=t.plan.part_size, size=t.plan.size,
            source=source.identity, parts=dict(resumed),
        ),
        t.config.checkpoint_interval,
    )  # fmt: skip
    writer.mark_dirty()
    await writer.flush()
    t.start_checkpoint(writer)
    t.emit_started()
    plan = t.plan
    missing = [n for n in range(1, plan.part_count + 1) if n not in resumed]
    whole = None
    if missing:
        first = missing[0]
        whole = new_md5() if first == 1 else None
        slots = PartSlots(t.config.max_concurrency, plan.part_size, t.config.part_limiter, t)
        try:
            async with open_at(plan.part_offset(first)) as chunks:
                reader = ChunkReader(_SourceReader(chunks))
                async with anyio.create_task_group() as tg:
                    guard = Guard(tg)
                    tg.start_soon(
                        guard.run, partial(produce_parts, first=first, resumed=set(resumed)),
                        t, reader, slots, whole, tg, guard,
                    )  # fmt: skip
        finally:
            slots.close()
        guard.raise_if_failed()
    etag = await engine.complete()
    t.upload_completed()
    await writer.delete()
    return t.result(etag=etag, md5=whole.hexdigest() if whole is not None else None)
