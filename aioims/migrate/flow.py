"""One entry's way through the stages, continuing from whatever stage the
ledger recorded.

The stages themselves (create → prepare → multipart → done → wait) are the
one lifecycle coordinator's (:class:`aioims.lifecycle.Coordinator`), with
the ledger as its journal (:class:`~aioims.migrate.journal.LedgerJournal`):
a ``file`` or ``ims`` entry is an upload, a ``url`` or ``shared`` entry an
import or copy the service fills itself.  This module adds what is the
migration's own: inspecting the source, the manifest's metadata, the
transfer budget, and the final verification against the source.
"""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ChecksumMismatchError, NotFoundError, UploadFailedError
from ..lifecycle import Coordinator, SourceSpec
from ..models import Image, ImageStatus
from ..transfer import (
    BytesSent,
    FileSource,
    PartDone,
    PartSource,
    ReopenableSource,
    StageChanged,
    TransferEvent,
    TransferStarted,
)
from .events import EntryProgress, EntryStage, EntryTransfer
from .journal import LedgerJournal
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
        assert info.size is not None
        image, _ = await self.coordinator().run(
            self.source_spec(info), journal=LedgerJournal(self),
            create_kwargs=self.create_kwargs(info),
        )  # fmt: skip
        return await self.verify(info, image)

    def coordinator(self) -> Coordinator:
        return Coordinator(
            self.ims, config=self.mig.transfer_config(), emit=self.on_transfer_event,
            wait_timeout=self.mig.wait_timeout, poll_interval=self.mig.poll_interval,
            verify=False,
        )  # fmt: skip

    def source_spec(self, info: SourceInfo) -> SourceSpec:
        assert info.size is not None
        size = info.size
        if self.entry.kind == "file":
            path = Path(self.entry.source)
            return SourceSpec(size=size, open=lambda: FileSource(path), description=str(path))
        spec = self.entry.source
        session = self.mig.source_session(self.entry)
        identity = f"ims:{spec['source']}/{spec['image_id']}#{info.checksum}"

        def reopenable() -> PartSource:
            opener = open_ims_at(session, spec["image_id"], timeout=self.mig.stream_timeout)
            return ReopenableSource(opener, size, identity)

        return SourceSpec(size=size, open=reopenable, description=identity)

    def create_kwargs(self, info: SourceInfo) -> dict[str, Any]:
        kwargs = self.kwargs(info, _CREATE_ARGS)
        kwargs["name"] = self.entry.name or info.name or self.entry.id
        return kwargs

    def safe_id(self) -> str:
        return self.entry.id.replace(":", "_").replace("/", "_")

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

    # -- transfer ----------------------------------------------------------------

    def on_transfer_event(self, event: TransferEvent) -> None:
        run, entry_id = self.run, self.entry.id
        if isinstance(event, StageChanged) and event.stage == "saving":
            self.leave_active_phase()
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
        entry = self.entry
        name = entry.name or info.name or entry.id
        if entry.kind == "url":
            kwargs = self.kwargs(info, _IMPORT_ARGS)
            kwargs.update(name=name, image_url=entry.source)
            kwargs.setdefault("os_version", "")
            kwargs["visibility"] = "private"

            async def create() -> Image:
                return await self.ims.import_image(**kwargs)
        else:
            kwargs = self.kwargs(info, _COPY_ARGS)
            kwargs["name"] = name
            kwargs.setdefault("resource_group_id", "")
            assert info.share_id is not None
            share_id = info.share_id

            async def create() -> Image:
                return await self.ims.copy_shared_image(share_id, **kwargs)

        started = time.monotonic()
        image, _ = await self.coordinator().run(
            None, journal=LedgerJournal(self), create_kwargs={"name": name}, create=create
        )
        await self.mig.ledger.update(self.entry.id, add_transfer=time.monotonic() - started)
        return await self.verify(info, image)

    # -- wait and verify ---------------------------------------------------------

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
