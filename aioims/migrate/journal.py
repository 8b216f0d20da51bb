"""The migration ledger as a lifecycle :class:`~aioims.lifecycle.Journal`.

One entry's row holds the coordinator's record (stage, image id, the
create's time and the same-name images that existed before it, upload id,
MD5); the multipart state lives in a checkpoint file next to the ledger
(``<ledger>.checkpoints/<entry>.json``), the driver's
:class:`~aioims.transfer.FilePartJournal`.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ..lifecycle import UploadRecord
from ..transfer import FilePartJournal, PartJournal

if TYPE_CHECKING:
    from .flow import EntryFlow

#: Ledger stage → lifecycle stage (None: nothing recorded yet).
_FROM_LEDGER = {
    "pending": None,
    "creating": "creating",
    "created": "created",
    "prepared": "uploading",
    "uploading": "uploading",
    "done-sent": "done-sent",
    "active": "active",
    "verified": "active",
}


class LedgerJournal:
    """The coordinator's journal for one manifest entry."""

    def __init__(self, flow: EntryFlow) -> None:
        self.flow = flow
        path = flow.mig.ledger.checkpoint_dir / f"{flow.safe_id()}.json"
        self._parts = FilePartJournal.at(path, flow.mig.transfer_config().checkpoint_interval)
        self._transfer_started: float | None = None

    async def load(self) -> UploadRecord | None:
        await self.flow.mig.ensure_checkpoint_dir()
        state = self.flow.run.state
        stage = _FROM_LEDGER.get(state.stage)
        if stage is None:
            return None
        preexisting: list[str] = []
        if state.preexisting:
            try:
                preexisting = [str(i) for i in json.loads(state.preexisting)]
            except ValueError:
                preexisting = []
        # Images other entries of this ledger own are never adopted.
        taken = {s.image_id for s in await self.flow.mig.ledger.all()
                 if s.image_id and s.entry_id != state.entry_id}  # fmt: skip
        return UploadRecord(
            stage=stage,
            name=state.name,
            image_id=state.image_id,
            create_sent_at=state.create_sent_at,
            preexisting=sorted(set(preexisting) | taken),
            upload_id=state.upload_id or None,
            md5=state.md5,
        )

    async def record(self, record: UploadRecord) -> None:
        fields: dict[str, Any] = {
            "image_id": record.image_id,
            "create_sent_at": record.create_sent_at,
            "preexisting": json.dumps(record.preexisting),
            "upload_id": record.upload_id or "",
            "md5": record.md5,
        }
        if record.name is not None:
            fields["name"] = record.name
        if record.stage == "uploading":
            await self.flow.mig.ensure_checkpoint_dir()
            fields["checkpoint"] = str(self._parts.file.path)
        if record.stage == "done-sent" and self._transfer_started is not None:
            fields["add_transfer"] = time.monotonic() - self._transfer_started
            fields["add_bytes"] = self.flow.run.sent
            self._transfer_started = None
        await self.flow.stage(record.stage, **fields)

    def parts(self) -> PartJournal:
        """(Called right before the transfer: its time counts from here.)"""
        self._transfer_started = time.monotonic()
        self.flow.run.sent = 0
        return self._parts

    async def finish(self) -> None:
        await self._parts.save(None)
