"""Upload a file: single PutObject below the threshold, else a concurrent,
resumable multipart upload.

Parts are read with ``os.pread`` in worker threads (their Content-MD5 in
the same thread call); a slot is taken before a part is read, so at most
``max_concurrency`` part buffers are alive.  The whole-file MD5 is computed
on the way from the same buffers (see :mod:`aioims.transfer.hashing`).
"""

from __future__ import annotations

import base64
import io
import logging
import os
from pathlib import Path

import anyio
import attrs

from ..errors import ValidationError
from ..models.upload import UploadTarget
from ._transfer import Guard, Transfer
from .checkpoint import Checkpoint, CheckpointWriter, SourceIdentity, read_checkpoint
from .config import PartPlan, TransferConfig, plan_parts
from .errors import S3TransferError, SourceChangedError
from .events import EventStream, ProgressCallback
from .hashing import OrderedHasher, PartSlots, body_digest, read_body, read_part
from .results import CompletedPart, TransferResult
from .s3 import RefreshCallable

logger = logging.getLogger("aioims.transfer")

#: ListParts answers that mean "not allowed to list": trust the checkpoint.
_LIST_DENIED = frozenset({"AccessDenied", "NotImplemented", "MethodNotAllowed"})


@attrs.frozen
class _Source:
    fd: int
    identity: SourceIdentity


def check_target(target: UploadTarget) -> None:
    if not isinstance(target, UploadTarget):
        raise ValidationError("target must be an aioims.UploadTarget", field="target")
    for field in ("bucket", "file", "domain", "access_key"):
        if not getattr(target, field):
            raise ValidationError(f"upload target has no {field}", field=field)


def _open_source(path: Path) -> tuple[int, SourceIdentity]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        identity = SourceIdentity(str(path.resolve()), st.st_size, st.st_mtime_ns)
    except BaseException:
        os.close(fd)
        raise
    return fd, identity


def _fstat_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_size, st.st_mtime_ns


def _read_whole(
    fd: int, size: int, content_md5: bool, want_md5: bool
) -> tuple[io.BytesIO, str | None, str | None]:
    body = read_body(fd, 0, size)
    if not (content_md5 or want_md5):
        return body, None, None
    digest = body_digest(body)
    b64 = base64.b64encode(digest.digest()).decode() if content_md5 else None
    return body, b64, digest.hexdigest() if want_md5 else None


async def upload_file(
    target: UploadTarget,
    path: str | os.PathLike[str],
    *,
    config: TransferConfig | None = None,
    progress: ProgressCallback | EventStream | None = None,
    refresh: RefreshCallable | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    image_id: str | None = None,
    md5: bool = True,
) -> TransferResult:
    """Upload the file at ``path`` to ``target.bucket``/``target.file``.

    ``refresh``: async callable returning a new :class:`UploadTarget` (same
    bucket and key) when S3 rejects the credentials or ``target.expires_at``
    is near.  ``checkpoint``: a JSON file that makes the upload resumable (no
    secrets in it; deleted on success); ``image_id`` is recorded in it.
    ``md5``: compute the whole-file MD5 (``result.md5``).

    Raises :class:`aioims.errors.ValidationError` (bad config/target, too
    large) before anything is sent, :class:`PartUploadError`,
    :class:`CredentialsExpiredError`, :class:`S3TransferError` or
    :class:`SourceChangedError`.
    """
    config = config if config is not None else TransferConfig()
    check_target(target)
    source_path = Path(path)
    checkpoint_path = Path(checkpoint) if checkpoint is not None else None
    fd, identity = await anyio.to_thread.run_sync(_open_source, source_path)
    try:
        plan = plan_parts(identity.size, config)
        transfer = Transfer(
            target,
            config,
            plan,
            progress=progress,
            refresh=refresh,
            checkpoint=checkpoint_path if plan.multipart else None,
            image_id=image_id,
            md5=md5,
        )
        source = _Source(fd, identity)

        async def body(t: Transfer) -> TransferResult:
            if plan.multipart:
                return await _multipart(t, source)
            return await _single(t, source)

        return await transfer.run(body)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(os.close, fd)


async def _single(t: Transfer, source: _Source) -> TransferResult:
    async with t.shared_slot(t.plan.size):
        data, b64, whole_md5 = await anyio.to_thread.run_sync(
            _read_whole, source.fd, t.plan.size, t.config.content_md5, t.md5
        )
        t.emit_started()
        part = await t.engine.put_object(data, t.plan.size, b64)
        del data
    return t.result(etag=part.etag, md5=whole_md5)


async def _multipart(t: Transfer, source: _Source) -> TransferResult:
    engine = t.engine
    resumed: dict[int, CompletedPart] = {}
    upload_id: str | None = None
    if t.checkpoint_path is not None:
        upload_id, resumed = await _reconcile(t, source)
    if upload_id is None:
        await engine.create()
    else:
        engine.upload_id = upload_id
    t.upload_started()
    for part in resumed.values():
        engine.record(part)
    t.resumed_parts = len(resumed)
    if t.checkpoint_path is not None:
        assert engine.upload_id is not None
        writer = CheckpointWriter(
            t.checkpoint_path,
            Checkpoint(
                bucket=engine.bucket,
                key=engine.key,
                image_id=t.image_id,
                upload_id=engine.upload_id,
                part_size=t.plan.part_size,
                size=t.plan.size,
                source=source.identity,
                parts=dict(resumed),
            ),
            t.config.checkpoint_interval,
        )
        writer.mark_dirty()
        await writer.flush()  # a crash from now on leaves a resumable record
        t.start_checkpoint(writer)
    t.emit_started()
    if resumed:
        logger.debug("resuming upload %s: %d part(s) already on S3", engine.upload_id, len(resumed))
    plan = t.plan
    slots = PartSlots(t.config.max_concurrency, plan.part_size, t.config.part_limiter, t)
    hasher = OrderedHasher(plan, set(resumed), source.fd, slots.release) if t.md5 else None
    users = 2 if hasher is not None else 1
    try:
        async with anyio.create_task_group() as tg:
            guard = Guard(tg)
            if hasher is not None:
                tg.start_soon(guard.run, hasher.run)
            for number in range(1, plan.part_count + 1):
                if number in resumed:
                    continue
                await slots.acquire(number, users, plan.part_length(number))
                tg.start_soon(guard.run, _file_part, t, source, number, slots, hasher)
    finally:
        slots.close()
    guard.raise_if_failed()
    size, mtime_ns = await anyio.to_thread.run_sync(_fstat_identity, source.fd)
    if (size, mtime_ns) != (source.identity.size, source.identity.mtime_ns):
        raise SourceChangedError(f"{source.identity.path} changed during the upload")
    etag = await engine.complete()
    t.upload_completed()
    if t.writer is not None:
        await t.writer.delete()
    return t.result(etag=etag, md5=hasher.hexdigest() if hasher is not None else None)


async def _file_part(
    t: Transfer, source: _Source, number: int, slots: PartSlots, hasher: OrderedHasher | None
) -> None:
    plan = t.plan
    offset, length = plan.part_offset(number), plan.part_length(number)
    data, b64 = await anyio.to_thread.run_sync(
        read_part, source.fd, offset, length, t.config.content_md5, slots.recycled(length)
    )
    slots.attach(number, data)
    if hasher is not None:
        hasher.submit(number, data)
    part = await t.engine.upload_part(number, data, length, b64)
    del data
    slots.release(number)
    if t.writer is not None:
        t.writer.add_part(part)


async def _reconcile(t: Transfer, source: _Source) -> tuple[str | None, dict[int, CompletedPart]]:
    """Match the checkpoint against the file and S3.  Returns the upload id
    to continue (None: start a new one) and the parts to trust: those S3
    lists (ListParts, every page) with the size the plan expects."""
    assert t.checkpoint_path is not None
    engine = t.engine
    cp = await anyio.to_thread.run_sync(read_checkpoint, t.checkpoint_path)
    if cp is None:
        return None, {}
    if (cp.bucket, cp.key) != (engine.bucket, engine.key) or (
        t.image_id is not None and cp.image_id is not None and cp.image_id != t.image_id
    ):
        logger.warning("checkpoint %s is for another object: starting afresh", t.checkpoint_path)
        return None, {}
    plan: PartPlan | None = None
    if cp.source == source.identity and cp.size == source.identity.size:
        try:
            plan = plan_parts(cp.size, t.config, part_size=cp.part_size)
        except ValidationError:
            plan = None
        if plan is not None and (not plan.multipart or plan.part_size != cp.part_size):
            plan = None
    if plan is None:
        logger.info(
            "source changed since checkpoint (or incompatible plan): aborting upload %s, "
            "starting over",
            cp.upload_id,
        )
        await engine.abort(cp.upload_id)
        return None, {}
    try:
        listed: dict[int, CompletedPart] | None = await engine.list_parts(cp.upload_id)
    except S3TransferError as err:
        if err.code == "NoSuchUpload":
            logger.info("upload %s no longer exists: starting over", cp.upload_id)
            return None, {}
        if err.code not in _LIST_DENIED:
            raise
        logger.info("ListParts not allowed (%s): trusting the checkpoint", err.code)
        listed = None
    candidates = listed if listed is not None else cp.parts
    trusted = {
        number: part
        for number, part in candidates.items()
        if 1 <= number <= plan.part_count and part.size == plan.part_length(number)
    }
    t.plan = engine.plan = plan
    return cp.upload_id, trusted
