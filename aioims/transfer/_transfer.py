"""The lifecycle shared by every kind of upload: client, events, checkpoint,
and what happens on failure or cancellation.

The abort rule (documented in docs/uploading.md):

* success: the checkpoint file is deleted;
* cancellation (or a crash): the multipart upload is aborted unless a
  checkpoint file is used (``TransferConfig.abort_on_cancel`` overrides);
  with a checkpoint it stays, and so does the checkpoint, ready to resume;
* failure without a checkpoint: always aborted;
* failure with a checkpoint: kept (resumable) when the failure may heal —
  attempts ran out on transient errors, or the credentials expired and could
  not be refreshed; aborted (and the checkpoint deleted) when it will not —
  a non-retryable S3 error, a changed source, anything unexpected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..models.upload import UploadTarget
from ._engine import CleanupRegistry, Engine
from .checkpoint import CheckpointWriter
from .config import PartPlan, TransferConfig
from .errors import CredentialsExpiredError, S3TransferError, SourceChangedError
from .events import (
    CredentialsRefreshed,
    Emitter,
    EventStream,
    ProgressCallback,
    TransferCompleted,
    TransferFailed,
    TransferStarted,
)
from .results import TransferResult
from .s3 import RefreshCallable, S3Clients

logger = logging.getLogger("aioims.transfer")


def is_resumable(exc: BaseException) -> bool:
    """May a later run with the same checkpoint succeed where this failed?"""
    if isinstance(exc, CredentialsExpiredError):
        return True
    if isinstance(exc, S3TransferError):
        return exc.transient
    return False


class Guard:
    """Runs tasks of a task group; the first exception cancels the group and
    is kept (re-raised by :meth:`raise_if_failed`, not as an ExceptionGroup)."""

    def __init__(self, task_group: TaskGroup) -> None:
        self.error: Exception | None = None
        self._scope = task_group.cancel_scope

    async def run(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        try:
            await func(*args)
        except Exception as exc:
            if self.error is None:
                self.error = exc
            self._scope.cancel()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


class Transfer:
    """One upload's shared state; drivers run inside :meth:`run`."""

    def __init__(
        self,
        target: UploadTarget,
        config: TransferConfig,
        plan: PartPlan,
        *,
        progress: ProgressCallback | EventStream | None,
        refresh: RefreshCallable | None,
        checkpoint: Path | None,
        image_id: str | None,
        md5: bool,
    ) -> None:
        self.target = target
        self.config = config
        self.plan = plan
        self.refresh = refresh
        self.checkpoint_path = checkpoint
        self.image_id = image_id
        self.md5 = md5
        self.emitter = Emitter(progress)
        self.cleanup = CleanupRegistry()
        self.writer: CheckpointWriter | None = None
        self.resumed_parts = 0
        self.started = time.monotonic()
        self._engine: Engine | None = None
        self._bg: TaskGroup | None = None
        self._abort_handle: int | None = None
        self._aborted = False
        self._failed_emitted = False

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    @property
    def background(self) -> TaskGroup:
        assert self._bg is not None
        return self._bg

    # -- lifecycle --------------------------------------------------------------

    async def run(self, body: Callable[[Transfer], Awaitable[TransferResult]]) -> TransferResult:
        failure: Exception | None = None
        result: TransferResult | None = None
        async with anyio.create_task_group() as bg:
            self._bg = bg
            self.emitter.start(bg)
            try:
                async with S3Clients(
                    self.target, self.config, self.refresh, self._refreshed
                ) as clients:
                    self._engine = Engine(clients, self.config, self.plan, self.emitter)
                    try:
                        result = await body(self)
                    except BaseException as exc:
                        await self._on_failure(exc)
                        raise
                self.emitter.emit(TransferCompleted(result))
            except Exception as exc:
                failure = exc
                if not self._failed_emitted:
                    self.emitter.emit(TransferFailed(exc))
            await self.emitter.aclose(self.config.event_drain_timeout)
            bg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert result is not None
        return result

    @asynccontextmanager
    async def shared_slot(self, nbytes: int) -> AsyncIterator[None]:
        """Hold a slot of ``config.part_limiter`` (if any) for a single PutObject."""
        limiter = self.config.part_limiter
        if limiter is None:
            yield
            return
        await limiter.acquire(self, nbytes)
        try:
            yield
        finally:
            limiter.release(self)

    def _refreshed(self, count: int) -> None:
        self.emitter.emit(CredentialsRefreshed(count))

    def upload_started(self) -> None:
        """Call once the multipart upload exists: from now on, failure aborts it."""

        async def abort() -> None:
            self._aborted = await self.engine.abort()

        self._abort_handle = self.cleanup.register("abort multipart upload", abort)

    def upload_completed(self) -> None:
        if self._abort_handle is not None:
            self.cleanup.unregister(self._abort_handle)
            self._abort_handle = None

    def start_checkpoint(self, writer: CheckpointWriter) -> None:
        self.writer = writer
        self.background.start_soon(writer.run)

    def emit_started(self) -> None:
        engine = self.engine
        self.emitter.emit(
            TransferStarted(
                total_bytes=self.plan.size,
                part_count=self.plan.part_count,
                upload_id=engine.upload_id,
                resumed_parts=self.resumed_parts,
                resumed_bytes=engine.bytes_done,
                part_size=self.plan.part_size,
            )
        )

    def should_abort(self, exc: BaseException, cancelled: bool) -> bool:
        if cancelled:
            if self.config.abort_on_cancel is not None:
                return self.config.abort_on_cancel
            return self.checkpoint_path is None
        if self.checkpoint_path is None:
            return True
        return not is_resumable(exc)

    async def _on_failure(self, exc: BaseException) -> None:
        with anyio.CancelScope(shield=True):
            cancelled = not isinstance(exc, Exception)
            aborted = resumable = False
            if self._abort_handle is not None:
                if self.should_abort(exc, cancelled):
                    await self.cleanup.run(self.config.abort_timeout)
                    aborted = self._aborted
                    if self.writer is not None:
                        await self._settle_checkpoint(delete=aborted)
                elif self.writer is not None:
                    resumable = await self._settle_checkpoint(delete=False)
                else:
                    logger.info(
                        "multipart upload %s left in place (abort_on_cancel=False)",
                        self.engine.upload_id,
                    )
            if isinstance(exc, (S3TransferError, SourceChangedError)):
                exc.aborted = aborted
                exc.resumable = resumable
            level = logging.DEBUG if cancelled else logging.WARNING
            logger.log(
                level,
                "upload of %s/%s %s (aborted=%s, resumable=%s)",
                self.target.bucket,
                self.target.file,
                "cancelled" if cancelled else f"failed: {exc}",
                aborted,
                resumable,
            )
            self._failed_emitted = True
            self.emitter.emit(TransferFailed(exc, cancelled, aborted, resumable))

    async def _settle_checkpoint(self, *, delete: bool) -> bool:
        assert self.writer is not None
        try:
            if delete:
                await self.writer.delete()
                return False
            await self.writer.flush()
            return True
        except OSError as err:
            logger.warning("could not update checkpoint %s: %s", self.writer.path, err)
            return False

    def result(self, *, etag: str | None, md5: str | None) -> TransferResult:
        engine = self.engine
        return TransferResult(
            upload_id=engine.upload_id,
            parts=[engine.parts[n] for n in sorted(engine.parts)],
            md5=md5,
            size=self.plan.size,
            resumed_parts=self.resumed_parts,
            elapsed=time.monotonic() - self.started,
            bucket=engine.bucket,
            key=engine.key,
            etag=etag,
            refreshes=engine.clients.refreshes,
        )
