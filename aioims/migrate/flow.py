"""One entry's way through the stages (create → prepare → transfer → done →
wait → verify), continuing from whatever stage the ledger recorded.

Each stage is written to the ledger as soon as it is reached, *before* the
next call that depends on it; resuming looks at the image's real status
(``get_image``) rather than trusting the ledger blindly.
"""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..errors import ChecksumMismatchError, NotFoundError, UploadFailedError
from ..models import Image, ImageStatus
from ..models.upload import UploadTarget
from ..pagination import Filter
from ..transfer import (
    BytesSent,
    PartDone,
    TransferEvent,
    TransferResult,
    TransferStarted,
    upload_file,
)
from ..transfer.s3 import S3Clients
from .events import EntryProgress, EntryStage, EntryTransfer
from .ledger import EntryState
from .manifest import Entry
from .sources import (
    SourceInfo,
    inspect_file,
    inspect_ims,
    inspect_shared,
    inspect_url,
    md5_of_file,
    md5_of_url,
    open_ims_at,
)
from .streaming import upload_stream_resumable

if TYPE_CHECKING:
    from .runner import Migration

logger = logging.getLogger("aioims.migrate")

_CREATE_ARGS = frozenset(
    {
        "name", "disk_format", "min_disk", "min_ram", "image_type", "instruction", "cpu_arch",
        "os_type", "platform", "visibility", "usage", "department_id", "tenant_id",
        "description", "image_tags", "resource_group_id", "boot_mode", "os_version",
    }
)  # fmt: skip
_IMPORT_ARGS = (_CREATE_ARGS - {"boot_mode"}) | {"volume_images"}
_COPY_ARGS = frozenset({"name", "description", "tenant_id", "department_id", "resource_group_id"})
#: How far back (before ``create_sent_at``) an image may have been created and
#: still be taken as the one a crashed run created (clock skew).
ADOPT_WINDOW = 3600.0


@attrs.define(kw_only=True)
class EntryRun:
    """The state of an entry being worked on in this process."""

    entry: Entry
    state: EntryState
    attempt: int = 0
    #: Failed attempts in this run (``Entry.attempts`` bounds them).
    failures: int = 0
    info: SourceInfo | None = None
    bytes_done: int = 0
    #: Bytes uploaded by this process for the current transfer.
    sent: int = 0
    total: int | None = None
    lease_lost: bool = False
    scope: Any = None
    started: float = attrs.field(factory=time.monotonic)
    release_slot: Any = None


class EntryFlow:
    """Runs the stages of one entry for a :class:`~aioims.migrate.runner.Migration`."""

    def __init__(self, mig: Migration, run: EntryRun) -> None:
        self.mig = mig
        self.ims = mig.ims
        self.run = run
        self.entry = run.entry

    # -- ledger ------------------------------------------------------------------

    async def stage(self, stage: str, **fields: Any) -> None:
        extra = {k: fields.pop(k) for k in ("add_duration", "add_transfer", "add_bytes",
                                            "release") if k in fields}  # fmt: skip
        await self.mig.ledger.update(self.entry.id, stage=stage, **fields, **extra)
        self.run.state = attrs.evolve(self.run.state, stage=stage, **fields)
        self.mig.publish(EntryStage(entry_id=self.entry.id, stage=stage,
                                    image_id=self.run.state.image_id))  # fmt: skip

    # -- the flow ----------------------------------------------------------------

    async def execute(self) -> Image:
        entry, state = self.entry, self.run.state
        info = self.run.info = await self.inspect()
        if info.size is not None and state.size != info.size:
            await self.mig.ledger.update(entry.id, size=info.size)
            self.run.state = attrs.evolve(self.run.state, size=info.size)
        self.mig.note_size(entry.id, info.size)
        if entry.kind in ("url", "shared"):
            return await self.server_side(info)
        image_id = state.image_id or (await self.create(info)).image_id
        image = await self.get(image_id)
        state = self.run.state
        if image.status in (ImageStatus.QUEUED, ImageStatus.KILLED):
            if not (state.stage == "done-sent" and image.status == ImageStatus.QUEUED):
                await self.transfer(info, image_id)
            await self.ims.upload_done(
                image_id, result="success", upload_id=self.run.state.upload_id or None
            )
        self.leave_active_phase()
        active = await self.wait(image_id)
        return await self.verify(info, active)

    def leave_active_phase(self) -> None:
        """Waiting for the service does not use the transfer budget."""
        if self.run.release_slot is not None:
            self.run.release_slot()

    async def inspect(self) -> SourceInfo:
        kind = self.entry.kind
        if kind == "file":
            return await inspect_file(self.entry)
        if kind == "ims":
            return await inspect_ims(self.mig.source_session(self.entry), self.entry)
        if kind == "shared":
            return await inspect_shared(self.ims, self.entry)
        if self.run.state.image_id is None:  # url: only before the import
            return await inspect_url(self.ims.http_session, self.entry)
        return SourceInfo(size=self.run.state.size, checksum=self.entry.md5)

    async def get(self, image_id: str) -> Image:
        try:
            image = await self.ims.get_image(image_id)
        except NotFoundError as exc:
            raise UploadFailedError(
                f"image {image_id} (created for this entry) no longer exists; remove the "
                "entry from the ledger (or give it a new id) to migrate it again",
                image_id=image_id, stage="create", code=exc.code, request_id=exc.request_id,
            ) from exc  # fmt: skip
        if image.status == ImageStatus.DELETED:
            raise UploadFailedError(f"image {image_id} was deleted", image_id=image_id,
                                    stage="create", code="ImageDeleted")  # fmt: skip
        return image

    # -- create ------------------------------------------------------------------

    def kwargs(self, info: SourceInfo, allowed: frozenset[str]) -> dict[str, Any]:
        merged = {**info.metadata, **self.mig.defaults, **self.entry.metadata}
        merged.setdefault("visibility", "private")
        merged["name"] = self.entry.name or info.name
        return {k: v for k, v in merged.items() if k in allowed and v is not None}

    async def create(self, info: SourceInfo) -> Image:
        entry, state = self.entry, self.run.state
        name = entry.name or info.name or entry.id
        if state.stage == "creating":
            found = await self.adopt(name, state.create_sent_at)
            if found is not None:
                logger.info("%s: adopting image %s created by an interrupted run",
                            entry.id, found.image_id)  # fmt: skip
                await self.stage("created", image_id=found.image_id)
                return found
        if entry.kind == "file" or entry.kind == "ims":
            kwargs = self.kwargs(info, _CREATE_ARGS)
            kwargs["name"] = name
            await self.stage("creating", name=name, create_sent_at=time.time())
            image = await self.ims.create_private_image(**kwargs)
        elif entry.kind == "url":
            kwargs = self.kwargs(info, _IMPORT_ARGS)
            kwargs.update(name=name, image_url=entry.source)
            kwargs.setdefault("os_version", "")
            if kwargs.get("visibility") != "private":
                kwargs["visibility"] = "private"
            await self.stage("creating", name=name, create_sent_at=time.time())
            image = await self.ims.import_image(**kwargs)
        else:
            kwargs = self.kwargs(info, _COPY_ARGS)
            kwargs["name"] = name
            kwargs.setdefault("resource_group_id", "")
            assert info.share_id is not None
            await self.stage("creating", name=name, create_sent_at=time.time())
            image = await self.ims.copy_shared_image(info.share_id, **kwargs)
        await self.stage("created", image_id=image.image_id)
        return image

    async def adopt(self, name: str, sent_at: float | None) -> Image | None:
        """The image an interrupted create made (same name, created after
        the create was sent, not claimed by another entry), if any."""
        taken = {s.image_id for s in await self.mig.ledger.all() if s.image_id}
        since = datetime.fromtimestamp((sent_at or 0) - ADOPT_WINDOW, tz=timezone.utc)
        candidates: list[tuple[datetime, Image]] = []
        async for image in self.ims.iter_private_images(filter=Filter().name_equals(name)):
            if image.name != name or image.image_id in taken:
                continue
            if image.status == ImageStatus.DELETED:
                continue
            created = _aware(image.created_at) if image.created_at is not None else since
            if created >= since:
                candidates.append((created, image))
        return max(candidates, key=lambda c: c[0])[1] if candidates else None

    # -- transfer ----------------------------------------------------------------

    def checkpoint_path(self) -> Path:
        safe = self.entry.id.replace(":", "_").replace("/", "_")
        return self.mig.ledger.checkpoint_dir / f"{safe}.json"

    def on_transfer_event(self, event: TransferEvent) -> None:
        run, entry_id = self.run, self.entry.id
        self.mig.publish(EntryTransfer(entry_id=entry_id, event=event))
        if isinstance(event, TransferStarted):
            run.total = event.total_bytes
            run.bytes_done = event.resumed_bytes
            self.mig.note_bytes(entry_id, run.bytes_done)
        elif isinstance(event, PartDone):
            run.sent += event.size
            self.mig.note_part(entry_id, event.part_number, event.size)
        elif isinstance(event, BytesSent):
            run.bytes_done = event.bytes_sent_total
            self.mig.note_bytes(entry_id, run.bytes_done)
            self.mig.publish(EntryProgress(entry_id=entry_id, bytes_done=run.bytes_done,
                                           total_bytes=event.total_bytes))  # fmt: skip

    async def transfer(self, info: SourceInfo, image_id: str) -> TransferResult | None:
        """Upload the bytes; None when an interrupted run had already
        completed the upload (crash before the ledger recorded it)."""
        assert info.size is not None
        size = info.size
        resuming = self.run.state.stage == "uploading"
        target = await self.ims.upload_prepare(image_id, size=size)
        checkpoint = self.checkpoint_path()
        left_over = resuming and not await anyio.Path(checkpoint).exists()
        if left_over and await self.object_complete(target, size):
            logger.info("%s: the object is already complete on S3", self.entry.id)
            await self.stage("done-sent", md5=None, upload_id="")
            return None
        await self.stage("prepared")
        await self.mig.ensure_checkpoint_dir()
        await self.stage("uploading", checkpoint=str(checkpoint))

        async def refresh() -> Any:
            return await self.ims.upload_prepare(image_id, size=size)

        config = self.mig.transfer_config()
        started = time.monotonic()
        self.run.sent = 0
        if self.entry.kind == "file":
            result = await upload_file(
                target, self.entry.source, config=config, progress=self.on_transfer_event,
                refresh=refresh, checkpoint=checkpoint, image_id=image_id, md5=True,
            )  # fmt: skip
        else:
            spec = self.entry.source
            source = self.mig.source_session(self.entry)
            result = await upload_stream_resumable(
                target, open_ims_at(source, spec["image_id"], timeout=self.mig.stream_timeout),
                size=size, identity=f"ims:{spec['source']}/{spec['image_id']}#{info.checksum}",
                config=config, progress=self.on_transfer_event, refresh=refresh,
                checkpoint=checkpoint, image_id=image_id,
            )  # fmt: skip
        await self.stage(
            "done-sent", md5=result.md5, upload_id=result.upload_id or "",
            add_transfer=time.monotonic() - started, add_bytes=self.run.sent,
        )  # fmt: skip
        return result

    async def object_complete(self, target: UploadTarget, size: int) -> bool:
        """Does the image's object exist on S3 with ``size`` bytes?  (A
        multipart checkpoint is deleted right after CompleteMultipartUpload:
        a crash before the next ledger write leaves no other trace.)"""
        try:
            async with S3Clients(target, self.mig.transfer_config(), None, _ignore) as clients:
                head = await clients.client.head_object(Bucket=target.bucket, Key=target.file)
        except Exception as exc:  # NoSuchKey/404 and anything else: upload it
            logger.debug("%s: HEAD of the object failed: %s", self.entry.id, exc)
            return False
        return int(head.get("ContentLength", -1)) == size

    # -- server-side kinds -------------------------------------------------------

    async def server_side(self, info: SourceInfo) -> Image:
        image_id = self.run.state.image_id
        if image_id is not None:
            image = await self.get(image_id)
            if image.status == ImageStatus.KILLED:
                # The service gave up on it: start over (ours, never shared).
                logger.info("%s: image %s was killed; importing again", self.entry.id, image_id)
                with suppress(NotFoundError):
                    await self.ims.delete_private_image(image_id)
                await self.stage("pending", image_id=None)
                info = self.run.info = await self.inspect()
                image_id = None
        if image_id is None:
            image_id = (await self.create(info)).image_id
        self.leave_active_phase()
        started = time.monotonic()
        active = await self.wait(image_id)
        await self.mig.ledger.update(self.entry.id, add_transfer=time.monotonic() - started)
        return await self.verify(info, active)

    # -- wait and verify ---------------------------------------------------------

    async def wait(self, image_id: str) -> Image:
        image = await self.ims.wait_for_image(
            image_id, until=ImageStatus.ACTIVE, timeout=self.mig.wait_timeout,
            interval=self.mig.poll_interval,
        )  # fmt: skip
        await self.stage("active", size=image.size)
        return image

    async def verify(self, info: SourceInfo, image: Image) -> Image:
        entry, state = self.entry, self.run.state
        got = (image.checksum or "").lower() or None
        if entry.verify:
            if info.size is not None and image.size is not None and image.size != info.size:
                raise ChecksumMismatchError(
                    f"image {image.image_id} has {image.size} bytes, the source {info.size}",
                    expected=str(info.size), actual=str(image.size),
                )  # fmt: skip
            expected = await self.expected_md5(info, state)
            if got is None or expected is None or got != expected:
                raise ChecksumMismatchError(
                    f"image {image.image_id} checksum {got} differs from the source's {expected}",
                    expected=str(expected), actual=str(got),
                )  # fmt: skip
        await self.stage(
            "verified", verified=entry.verify, md5=got, size=image.size,
            finished_at=time.time(), error_code=None, error_message=None, request_id=None,
            error_stage=None,
        )  # fmt: skip
        return image

    async def expected_md5(self, info: SourceInfo, state: EntryState) -> str | None:
        entry = self.entry
        if entry.kind == "file":
            streamed = state.md5 or await md5_of_file(entry.source)
            if entry.md5 and entry.md5 != streamed:
                raise ChecksumMismatchError(
                    f"{entry.source} has MD5 {streamed}, the manifest says {entry.md5}",
                    expected=entry.md5, actual=streamed,
                )  # fmt: skip
            return streamed
        if entry.kind == "ims" and state.md5 and info.checksum and state.md5 != info.checksum:
            raise ChecksumMismatchError(
                f"the bytes streamed have MD5 {state.md5}, the source image {info.checksum}",
                expected=info.checksum, actual=state.md5,
            )  # fmt: skip
        if entry.kind == "url" and info.checksum is None:
            md5, _ = await md5_of_url(self.ims.http_session, str(entry.source))
            return md5
        return info.checksum


def _ignore(count: int) -> None:
    pass


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)
