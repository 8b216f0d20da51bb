"""The one lifecycle coordinator: create → prepare → multipart → done → wait → verify.

Used by :meth:`aioims.IMSSession.upload_image` / :class:`aioims.Uploader`,
``aioims upload`` and ``aioims migrate``.  Every step's intent is recorded in
the :class:`~aioims.lifecycle.journal.Journal` before the step, so a run
that dies anywhere is continued by the next one (docs/uploading.md has the
table "crash point → what the next run does"):

* ``creating`` recorded (with the same-name images that exist already) →
  the create's answer was lost or the process died: the next run (or this
  one, for a lost answer) *adopts* the image of that name created after
  the intent and absent from the pre-existing set — never an older one;
* ``created``/``uploading`` → the image is reused; the multipart driver
  resumes from its own journal (ListParts; nothing re-sent);
* ``done-sent`` → the next run reads the image: ``saving`` → wait,
  ``active`` → verify, ``queued`` → send ``upload-done`` again; never a
  new image;
* a transfer that failed for good: the driver aborted its multipart upload
  (or could not): ``upload-done(result="failed", uploadId=...)`` tells the
  service, which aborts the named upload too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .. import hooks
from ..errors import (
    ChecksumMismatchError,
    ImageKilledError,
    IMSError,
    NotFoundError,
    TransportError,
    UploadFailedError,
    ValidationError,
)
from ..models import Image, ImageStatus, UploadTarget
from ..pagination import Filter
from ..transfer import (
    PartSource,
    StageChanged,
    StatusChanged,
    TransferConfig,
    TransferEvent,
    TransferResult,
    drive,
)
from .journal import Journal, UploadRecord

if TYPE_CHECKING:
    from ..session import IMSSession

__all__ = ["Coordinator", "SourceSpec"]

logger = logging.getLogger("aioims.uploader")

#: Statuses in which an existing image may receive a file.
UPLOADABLE = frozenset({ImageStatus.QUEUED, ImageStatus.KILLED})
#: Clock skew tolerated between this machine and the service when adopting.
ADOPT_SKEW = 300.0
_CLEANUP_TIME_LIMIT = 30.0


@attrs.frozen(kw_only=True)
class SourceSpec:
    """What the coordinator uploads.

    ``open()`` returns a fresh :class:`~aioims.transfer.PartSource` for each
    transfer; ``md5_of()`` (optional) computes the whole source's MD5 when a
    resumed transfer could not (verification after a crash).
    """

    size: int
    open: Callable[[], PartSource]
    description: str
    md5_of: Callable[[], Awaitable[str | None]] | None = None


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


class Coordinator:
    """Runs one image upload through its stages (see the module docstring)."""

    def __init__(
        self,
        ims: IMSSession,
        *,
        config: TransferConfig,
        emit: Callable[[TransferEvent], None],
        wait_timeout: float = 3600.0,
        poll_interval: float = 1.0,
        verify: bool = True,
        delete_on_failure: bool = False,
    ) -> None:
        self.ims = ims
        self.config = config
        self.emit = emit
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.verify = verify
        self.delete_on_failure = delete_on_failure
        self.stage = "create"
        self.image_id: str | None = None
        self.created = False
        self.record = UploadRecord()
        self.journal: Journal | None = None
        self._upload_id: str | None = None
        #: The multipart upload a failed transfer names (for upload-done(failed)).
        self._error_upload_id: str | None = None
        self._create: Callable[[], Awaitable[Image]] | None = None

    # -- journal -----------------------------------------------------------------

    async def _note(self, stage: str, **facts: Any) -> None:
        self.record = attrs.evolve(self.record, stage=stage, **facts)
        if self.journal is not None:
            await self.journal.record(self.record)

    def _stage(self, stage: str) -> None:
        self.emit(StageChanged(stage, self.image_id))

    # -- the flow ----------------------------------------------------------------

    async def run(
        self,
        source: SourceSpec | None,
        *,
        journal: Journal | None,
        image_id: str | None = None,
        create_kwargs: dict[str, Any] | None = None,
        create: Callable[[], Awaitable[Image]] | None = None,
    ) -> tuple[Image, str | None]:
        """Upload ``source``; returns the ``active`` image and the source's
        MD5 (None when ``verify`` is off and it was not computed).

        ``create``: how to create the image (default:
        ``create_private_image(**create_kwargs)``; ``create_kwargs["name"]``
        names it either way).  ``source=None``: the service fills the image
        itself (an import or a copy): the coordinator creates or adopts it
        and waits for it, nothing is uploaded."""
        self.journal = journal
        self._create = create
        record = await journal.load() if journal is not None else None
        if record is not None:
            self.record = record
        try:
            return await self._flow(source, image_id, create_kwargs)
        except ValidationError:
            if self.image_id is None:
                raise  # bad input: nothing was created or sent
            await self._cleanup(resumable=False)
            raise
        except anyio.get_cancelled_exc_class():
            await self._cleanup(resumable=self._resumable(None))
            raise
        except UploadFailedError as exc:
            self._error_upload_id = exc.upload_id
            resumable = self._resumable(exc)
            await self._cleanup(resumable=resumable)
            raise self._wrap(exc, resumable) from exc
        except (IMSError, OSError) as exc:
            self._error_upload_id = getattr(exc, "upload_id", None)
            resumable = self._resumable(exc)
            await self._cleanup(resumable=resumable)
            raise self._wrap(exc, resumable) from exc

    async def _flow(
        self,
        source: SourceSpec | None,
        image_id: str | None,
        create_kwargs: dict[str, Any] | None,
    ) -> tuple[Image, str | None]:
        self._stage("creating")
        image = await self._image(image_id, create_kwargs)
        self.image_id = image.image_id
        self.emit(StatusChanged(image.image_id, str(image.status or ImageStatus.QUEUED)))
        md5 = self.record.md5
        while True:
            status = image.status
            if status in UPLOADABLE and source is None:
                if status == ImageStatus.KILLED:
                    raise ImageKilledError(
                        f"image {image.image_id} was killed by the service",
                        image_id=image.image_id,
                        stage="wait",
                    )
            elif status in UPLOADABLE and source is not None:
                if self.record.stage == "done-sent" and status == ImageStatus.QUEUED:
                    # upload-done may not have reached the service: send it again.
                    await self._done(image.image_id, self.record.upload_id)
                elif self.record.stage == "done-sent":
                    # killed after upload-done: the service rejected the file.
                    await self._note("created", upload_id=None, md5=None)
                    raise ImageKilledError(
                        f"image {image.image_id} was killed by the service after the upload",
                        image_id=image.image_id,
                        stage="wait",
                    )
                else:
                    md5 = await self._transfer(image.image_id, source)
                    await self._done(image.image_id, self.record.upload_id)
                image = await self._get(image.image_id)  # queued: the service has not moved yet
            if image.status in (ImageStatus.SAVING, ImageStatus.QUEUED):
                self.stage = "wait"
                self._stage("saving")
                image = await self.ims.wait_for_image(
                    image.image_id,
                    until=ImageStatus.ACTIVE,
                    timeout=self.wait_timeout,
                    interval=self.poll_interval,
                    initial_interval=min(0.05, self.poll_interval),
                )
            if image.status == ImageStatus.ACTIVE:
                break
            if image.status not in UPLOADABLE:
                raise UploadFailedError(
                    f"image {image.image_id} is {image.status}; it cannot receive a file",
                    image_id=image.image_id,
                    stage="create",
                )
        self.emit(StatusChanged(image.image_id, ImageStatus.ACTIVE.value))
        await hooks.reach("wait:after", image_id=image.image_id)
        self.stage = "verify"
        if self.verify and source is not None:
            self._stage("verifying")
            if md5 is None and source.md5_of is not None:
                md5 = await source.md5_of()
            self._check(image, source, md5)
        await self._note("active")
        self.stage = "finished"
        self._stage("active")
        if self.journal is not None:
            await self.journal.finish()
        return image, md5

    # -- create / adopt ------------------------------------------------------------

    async def _image(self, image_id: str | None, create_kwargs: dict[str, Any] | None) -> Image:
        record = self.record
        if image_id is None and record.image_id is not None:
            try:
                image = await self.ims.get_image(record.image_id)
            except NotFoundError:
                image = None
            if image is not None and image.status != ImageStatus.DELETED:
                logger.info("continuing the upload into image %s (%s)", image.image_id,
                            image.status)  # fmt: skip
                return image
            logger.info("journal names image %s, which is gone: starting over", record.image_id)
            self.record = UploadRecord()
        if image_id is not None:
            image = await self.ims.get_image(image_id)
            if image.status not in UPLOADABLE and record.image_id != image_id:
                raise UploadFailedError(
                    f"image {image_id} is {image.status}; only queued or killed images "
                    "can receive a file",
                    image_id=image_id,
                    stage="create",
                )
            if self.record.image_id != image_id:
                await self._note("created", image_id=image_id)
            return image
        if not create_kwargs:
            raise ValidationError(
                "no resumable upload found: give the create_private_image arguments",
                field="name",
            )
        name = str(create_kwargs.get("name") or "")
        if self.record.stage == "creating" and self.record.create_sent_at is not None:
            found = await self._adopt(name)
            if found is not None:
                return found
        preexisting = await self._same_name(name)
        await self._note("creating", name=name, create_sent_at=time.time(),
                         preexisting=sorted(preexisting), image_id=None)  # fmt: skip
        await hooks.reach("create:before", name=name)
        try:
            if self._create is not None:
                image = await self._create()
            else:
                image = await self.ims.create_private_image(**create_kwargs)
        except (TransportError, OSError) as exc:
            # The answer may be lost while the image was created: look for it.
            found = await self._adopt(name)
            if found is None:
                raise
            logger.info("create answer lost (%s): adopted image %s", exc, found.image_id)
            return found
        self.created = True
        await hooks.reach("create:after", image_id=image.image_id)
        await self._note("created", image_id=image.image_id)
        return image

    async def _same_name(self, name: str) -> set[str]:
        ids = set()
        async for image in self.ims.iter_private_images(filter=Filter().name_equals(name)):
            if image.name == name:
                ids.add(image.image_id)
        return ids

    async def _adopt(self, name: str) -> Image | None:
        """The image an interrupted create made: same name, not among the
        images that existed before the intent, created after it."""
        sent_at = self.record.create_sent_at or time.time()
        since = datetime.fromtimestamp(sent_at - ADOPT_SKEW, tz=timezone.utc)
        before = set(self.record.preexisting)
        candidates: list[tuple[datetime, Image]] = []
        async for image in self.ims.iter_private_images(filter=Filter().name_equals(name)):
            if image.name != name or image.image_id in before:
                continue
            if image.status == ImageStatus.DELETED:
                continue
            created = _aware(image.created_at) if image.created_at is not None else since
            if created >= since:
                candidates.append((created, image))
        if not candidates:
            return None
        image = min(candidates, key=lambda c: c[0])[1]
        logger.info("adopting image %s created by an interrupted run", image.image_id)
        self.created = True
        await self._note("created", image_id=image.image_id)
        return image

    async def _get(self, image_id: str) -> Image:
        return await self.ims.get_image(image_id)

    # -- transfer / done -------------------------------------------------------------

    async def _transfer(self, image_id: str, source: SourceSpec) -> str | None:
        self.stage = "prepare"
        self._stage("preparing")
        if self.record.stage not in ("uploading",):
            await self._note("uploading", image_id=image_id)
        target = await self.ims.upload_prepare(image_id, size=source.size)
        await hooks.reach("prepare:after", image_id=image_id)
        self.stage = "transfer"
        self._stage("uploading")

        async def refresh() -> UploadTarget:
            logger.debug("refreshing upload credentials for %s", image_id)
            return await self.ims.upload_prepare(image_id, size=source.size)

        result: TransferResult = await drive(
            target,
            source.open(),
            config=self.config,
            progress=self.emit,
            refresh=refresh,
            journal=self.journal.parts() if self.journal is not None else None,
            image_id=image_id,
            md5=self.verify,
            discard_journal=False,
        )
        self._upload_id = result.upload_id
        await self._note("done-sent", upload_id=result.upload_id, md5=result.md5)
        return result.md5

    async def _done(self, image_id: str, upload_id: str | None) -> None:
        self.stage = "done"
        await hooks.reach("done:before", image_id=image_id)
        try:
            await self.ims.upload_done(image_id, result="success", upload_id=upload_id)
        except (TransportError, OSError) as exc:
            # The answer may be lost after the service took it: look.
            image = await self._get(image_id)
            if image.status == ImageStatus.QUEUED:
                raise
            logger.info("upload-done answer lost (%s); image %s is %s", exc, image_id,
                        image.status)  # fmt: skip
        await hooks.reach("done:after", image_id=image_id)
        self.emit(StatusChanged(image_id, ImageStatus.SAVING.value))

    def _check(self, image: Image, source: SourceSpec, md5: str | None) -> None:
        if image.size is not None and image.size != source.size:
            raise UploadFailedError(
                f"image {image.image_id} is active with size {image.size}, "
                f"the source has {source.size} bytes",
                image_id=image.image_id,
                stage="verify",
            )
        if md5 is not None and (image.checksum or "").lower() != md5:
            mismatch = ChecksumMismatchError(
                f"image {image.image_id} checksum {image.checksum!r} differs from the "
                f"source's MD5 {md5}",
                expected=md5,
                actual=image.checksum or "",
            )
            raise UploadFailedError(
                str(mismatch), image_id=image.image_id, stage="verify", code=mismatch.code
            ) from mismatch

    # -- failure -----------------------------------------------------------------------

    def _resumable(self, exc: BaseException | None) -> bool:
        """Keep the multipart upload and the queued image for a later run?"""
        if self.journal is None:
            return False
        if self.stage in ("create", "done", "wait"):
            return self.image_id is not None or self.record.stage == "creating"
        if self.stage not in ("prepare", "transfer"):
            return False
        if exc is None:  # cancelled
            return True
        if isinstance(exc, IMSError) and self.stage == "prepare":
            return True
        return bool(getattr(exc, "resumable", False))

    async def _cleanup(self, *, resumable: bool) -> None:
        image_id = self.image_id
        if image_id is None or self.stage in ("wait", "verify", "finished"):
            return
        if resumable:
            logger.info("upload into %s interrupted at %s; re-run it to resume", image_id,
                        self.stage)  # fmt: skip
            return
        if self.stage == "done":
            return  # the file is complete on S3: the service decides
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIME_LIMIT):
            if self.stage in ("prepare", "transfer"):
                try:
                    await self.ims.upload_done(
                        image_id, result="failed", upload_id=self._failed_upload_id()
                    )
                    self.emit(StatusChanged(image_id, ImageStatus.KILLED.value))
                except IMSError as err:
                    logger.warning("could not mark image %s failed: %s", image_id, err)
            if self.journal is not None:
                try:
                    await self._note("created", upload_id=None, md5=None)
                except OSError as err:
                    logger.warning("could not update the journal: %s", err)
            if self.delete_on_failure and self.created:
                try:
                    await self.ims.delete_private_image(image_id)
                    self.emit(StatusChanged(image_id, ImageStatus.DELETED.value))
                    if self.journal is not None:
                        await self.journal.finish()
                except IMSError as err:
                    logger.warning("could not delete image %s: %s", image_id, err)

    def _failed_upload_id(self) -> str | None:
        return self._upload_id or self._error_upload_id

    def _wrap(self, exc: BaseException, resumable: bool) -> UploadFailedError:
        upload_id = getattr(exc, "upload_id", None) or self._upload_id
        if isinstance(exc, UploadFailedError):
            cls = type(exc)
            return cls(
                str(exc), image_id=exc.image_id or self.image_id, stage=exc.stage,
                code=exc.code, request_id=exc.request_id, http_status=exc.http_status,
                resumable=resumable, upload_id=upload_id,
            )  # fmt: skip
        return UploadFailedError(
            f"upload failed at {self.stage}: {exc}",
            image_id=self.image_id,
            stage=self.stage,
            code=getattr(exc, "code", None),
            request_id=getattr(exc, "request_id", None),
            http_status=getattr(exc, "http_status", None),
            resumable=resumable,
            upload_id=upload_id,
        )

