"""The upload coordinator: create -> prepare -> transfer -> done -> wait -> verify.

::

    async with IMSSession(...) as ims:
        image = await ims.upload_image("disk.qcow2", name="web", disk_format="qcow2", ...)

    # or, with every knob:
    uploader = Uploader(ims, config=TransferConfig(max_concurrency=16),
                        checkpoint_dir="~/.cache/aioims/checkpoints")
    image = await uploader.upload("disk.qcow2", name="web", ...)

Failure handling (see ``docs/uploading.md``):

* any failure after the image exists raises :class:`~aioims.UploadFailedError`
  with ``image_id`` and ``stage`` (``create``, ``prepare``, ``transfer``,
  ``done``, ``wait``, ``verify``); ``killed`` raises
  :class:`~aioims.ImageKilledError`; invalid input raises
  :class:`~aioims.ValidationError` before anything is sent;
* the transfer engine aborts the multipart upload when the transfer fails for
  good (and on cancellation when no checkpoint is kept); the coordinator then
  tells the service ``upload_done(result="failed")`` (the image goes
  ``killed``; its id can be uploaded to again with ``image_id=``) and, with
  ``delete_on_failure``, deletes the image it created;
* with a checkpoint (``checkpoint_dir`` or ``checkpoint=``) a cancelled or
  crashed upload keeps its multipart upload and its ``queued`` image: running
  the same upload again finds the checkpoint, reuses the image and sends only
  the missing parts.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .errors import (
    ChecksumMismatchError,
    IMSError,
    NotFoundError,
    UploadFailedError,
    ValidationError,
)
from .models import Image, ImageStatus, UploadTarget
from .transfer import TransferConfig, TransferResult, upload_file
from .transfer._emitting import run_with_emitter
from .transfer.checkpoint import read_checkpoint
from .transfer.events import Emitter, EventStream, ProgressCallback, StatusChanged, TransferEvent

if TYPE_CHECKING:
    from .session import IMSSession

logger = logging.getLogger("aioims.uploader")

#: Statuses in which an existing image may receive a file.
_UPLOADABLE = frozenset({ImageStatus.QUEUED, ImageStatus.KILLED})
_CLEANUP_TIME_LIMIT = 30.0


def checkpoint_path_for(directory: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """The checkpoint file an :class:`Uploader` keeps in ``directory`` for the
    source file ``path`` (named after a hash of its absolute path)."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
    return Path(directory).expanduser() / f"upload-{digest}.json"


class Uploader:
    """Uploads image files through the full IMS flow.

    ``config``: the :class:`~aioims.transfer.TransferConfig` (part size,
    concurrency, TLS options...).  ``progress``: a callable, an async callable
    or an :class:`~aioims.transfer.EventStream` receiving the transfer events
    plus :class:`~aioims.transfer.StatusChanged`.  ``checkpoint_dir``: keep a
    resumable checkpoint per source file there.  ``delete_on_failure``: delete
    an image this uploader created when its upload fails.  ``verify``: compare
    the active image's size and MD5 with the file's.  ``poll_interval``: the
    longest pause between status polls while the service verifies the file
    (polls start 50 ms apart and back off to it).
    """

    def __init__(
        self,
        ims: IMSSession,
        *,
        config: TransferConfig | None = None,
        progress: ProgressCallback | EventStream | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        delete_on_failure: bool = False,
        wait_timeout: float = 3600.0,
        poll_interval: float = 1.0,
        verify: bool = True,
    ) -> None:
        self.ims = ims
        self.config = config if config is not None else TransferConfig()
        self.progress = progress
        self.checkpoint_dir = Path(checkpoint_dir).expanduser() if checkpoint_dir else None
        self.delete_on_failure = delete_on_failure
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.verify = verify

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        image_id: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        **create_kwargs: Any,
    ) -> Image:
        """Upload ``path`` and return the ``active`` image.

        ``image_id``: upload into this existing ``queued``/``killed`` image
        instead of creating one (``create_kwargs`` are then not needed).
        ``checkpoint``: the checkpoint file to use (default: one in
        ``checkpoint_dir``, if set).  ``create_kwargs``: the keyword arguments
        of :meth:`IMSSession.create_private_image`.
        """
        source = Path(path)
        size = await anyio.to_thread.run_sync(_file_size, source)
        if checkpoint is None and self.checkpoint_dir is not None:
            checkpoint = checkpoint_path_for(self.checkpoint_dir, source)
        checkpoint_path = Path(checkpoint) if checkpoint is not None else None
        if checkpoint_path is not None:
            await anyio.to_thread.run_sync(_ensure_private_dir, checkpoint_path.parent)
        if image_id is None and not create_kwargs and checkpoint_path is None:
            raise ValidationError(
                "give the create_private_image arguments (name, disk_format, ...) "
                "or the image_id of an existing queued image",
                field="image_id",
            )
        run = _Run(self, source, size, checkpoint_path)
        return await run.execute(image_id, create_kwargs)


def _file_size(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ValidationError(f"no such file: {path}", field="path") from None
    if not path.is_file():
        raise ValidationError(f"not a regular file: {path}", field="path")
    if st.st_size <= 0:
        raise ValidationError(f"the file is empty: {path}", field="path")
    return st.st_size


def _ensure_private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


class _Run:
    """The state of one upload: the stage reached and what to undo."""

    def __init__(
        self, uploader: Uploader, source: Path, size: int, checkpoint: Path | None
    ) -> None:
        self.up = uploader
        self.ims = uploader.ims
        self.source = source
        self.size = size
        self.checkpoint = checkpoint
        self.stage = "create"
        self.image_id: str | None = None
        self.created = False
        self.emitter = Emitter(uploader.progress)
        self._stream = uploader.progress if isinstance(uploader.progress, EventStream) else None

    def emit(self, event: TransferEvent) -> None:
        self.emitter.emit(event)

    async def execute(self, image_id: str | None, create_kwargs: dict[str, Any]) -> Image:
        close_stream = False
        if self._stream is not None and self._stream.close_on_terminal:
            # One stream for every stage: it ends when the whole upload does.
            self._stream.close_on_terminal = False
            close_stream = True
        try:
            return await run_with_emitter(
                self.emitter, lambda: self._guarded(image_id, create_kwargs)
            )
        finally:
            if close_stream and self._stream is not None:
                self._stream.close()

    async def _guarded(self, image_id: str | None, create_kwargs: dict[str, Any]) -> Image:
        try:
            return await self._flow(image_id, create_kwargs)
        except ValidationError:
            if self.image_id is None:
                raise  # bad input: nothing was created or sent
            await self._cleanup(resumable=False)
            raise
        except anyio.get_cancelled_exc_class():
            await self._cleanup(resumable=self._resumable())
            raise
        except UploadFailedError as exc:
            if exc.image_id is None:
                exc.image_id = self.image_id
            await self._cleanup(resumable=False)
            raise
        except (IMSError, OSError) as exc:
            await self._cleanup(resumable=self._resumable(exc))
            raise self._wrap(exc) from exc

    # -- the flow ------------------------------------------------------------

    async def _flow(self, image_id: str | None, create_kwargs: dict[str, Any]) -> Image:
        if image_id is None and self.checkpoint is not None:
            image_id = await self._image_from_checkpoint()
        if image_id is not None:
            image = await self.ims.get_image(image_id)
            if image.status not in _UPLOADABLE:
                raise UploadFailedError(
                    f"image {image_id} is {image.status}; only queued or killed images "
                    "can receive a file",
                    image_id=image_id,
                    stage="create",
                )
        else:
            if not create_kwargs:
                raise ValidationError(
                    "no resumable upload found: give the create_private_image arguments",
                    field="name",
                )
            image = await self.ims.create_private_image(**create_kwargs)
            self.created = True
        self.image_id = image.image_id
        self.emit(StatusChanged(image.image_id, str(image.status or ImageStatus.QUEUED)))

        self.stage = "prepare"
        target = await self.ims.upload_prepare(image.image_id, size=self.size)

        self.stage = "transfer"
        result = await upload_file(
            target,
            self.source,
            config=self.up.config,
            progress=self.emit,
            refresh=self._refresher(image.image_id),
            checkpoint=self.checkpoint,
            image_id=image.image_id,
            md5=self.up.verify,
        )

        self.stage = "done"
        await self.ims.upload_done(image.image_id, result="success", upload_id=result.upload_id)
        self.emit(StatusChanged(image.image_id, ImageStatus.SAVING.value))

        self.stage = "wait"
        active = await self.ims.wait_for_image(
            image.image_id,
            until=ImageStatus.ACTIVE,
            timeout=self.up.wait_timeout,
            interval=self.up.poll_interval,
            initial_interval=min(0.05, self.up.poll_interval),
        )
        self.emit(StatusChanged(image.image_id, ImageStatus.ACTIVE.value))

        self.stage = "verify"
        if self.up.verify:
            self._verify(active, result)
        self.stage = "finished"
        return active

    def _refresher(self, image_id: str) -> Callable[[], Awaitable[UploadTarget]]:
        async def refresh() -> UploadTarget:
            logger.debug("refreshing upload credentials for %s", image_id)
            return await self.ims.upload_prepare(image_id, size=self.size)

        return refresh

    async def _image_from_checkpoint(self) -> str | None:
        assert self.checkpoint is not None
        cp = await anyio.to_thread.run_sync(read_checkpoint, self.checkpoint)
        if cp is None or not cp.image_id:
            return None
        try:
            image = await self.ims.get_image(cp.image_id)
        except NotFoundError:
            return None
        if image.status not in _UPLOADABLE:
            logger.info(
                "checkpoint names image %s, which is %s: starting a new image",
                cp.image_id,
                image.status,
            )
            return None
        logger.info("resuming the upload of %s into image %s", self.source, cp.image_id)
        return cp.image_id

    def _verify(self, image: Image, result: TransferResult) -> None:
        if image.size is not None and image.size != self.size:
            raise UploadFailedError(
                f"image {image.image_id} is active with size {image.size}, "
                f"the file has {self.size} bytes",
                image_id=image.image_id,
                stage="verify",
            )
        if result.md5 is not None and (image.checksum or "").lower() != result.md5:
            mismatch = ChecksumMismatchError(
                f"image {image.image_id} checksum {image.checksum!r} differs from the "
                f"file's MD5 {result.md5}",
                expected=result.md5,
                actual=image.checksum or "",
            )
            raise UploadFailedError(
                str(mismatch), image_id=image.image_id, stage="verify", code=mismatch.code
            ) from mismatch

    # -- failure handling -----------------------------------------------------

    def _resumable(self, exc: BaseException | None = None) -> bool:
        """Keep the multipart upload and the queued image for a later run?"""
        if self.checkpoint is None or self.stage not in ("prepare", "transfer"):
            return False
        if exc is None:  # cancelled
            return True
        return bool(getattr(exc, "resumable", False))

    async def _cleanup(self, *, resumable: bool) -> None:
        image_id = self.image_id
        if image_id is None or self.stage in ("wait", "verify", "finished"):
            return
        if resumable:
            logger.info(
                "upload of %s into %s interrupted at %s; re-run it to resume",
                self.source,
                image_id,
                self.stage,
            )
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIME_LIMIT):
            if self.stage in ("prepare", "transfer", "done"):
                try:
                    await self.ims.upload_done(image_id, result="failed")
                    self.emit(StatusChanged(image_id, ImageStatus.KILLED.value))
                except IMSError as err:
                    logger.warning("could not mark image %s failed: %s", image_id, err)
            if self.up.delete_on_failure and self.created:
                try:
                    await self.ims.delete_private_image(image_id)
                    self.emit(StatusChanged(image_id, ImageStatus.DELETED.value))
                except IMSError as err:
                    logger.warning("could not delete image %s: %s", image_id, err)

    def _wrap(self, exc: BaseException) -> UploadFailedError:
        return UploadFailedError(
            f"upload of {self.source} failed at {self.stage}: {exc}",
            image_id=self.image_id,
            stage=self.stage,
            code=getattr(exc, "code", None),
            request_id=getattr(exc, "request_id", None),
            http_status=getattr(exc, "http_status", None),
        )
