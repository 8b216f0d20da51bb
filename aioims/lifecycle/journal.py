"""The journal of an image upload: each step's intent, written before the step.

A :class:`Journal` keeps one :class:`UploadRecord` (the lifecycle stage,
the image id, the same-name images that existed before a create, the
upload id, the MD5) and hands the multipart driver a
:class:`~aioims.transfer.PartJournal` for the multipart state.  Two
implementations: :class:`FileJournal` (one JSON file, for
``upload_image(checkpoint=...)`` and ``aioims upload --resume``) and the
migration ledger's (:mod:`aioims.migrate.journal`).

Stages, in order: ``creating`` (the create is about to be sent; the
same-name images that exist already are listed in ``preexisting``) →
``created`` (``image_id`` known) → ``uploading`` → ``done-sent``
(``upload-done`` is about to be sent; ``upload_id`` and ``md5`` known) →
``active``.  The record lives until the image is verified ``active``.

The journal is keyed: the account (endpoint, region, tenant), the image
metadata (a fingerprint of the create arguments) and the source (path,
size, mtime).  :meth:`Journal.load` raises
:class:`~aioims.errors.JournalMismatchError` when the account or the
metadata differ, or when the source changed after its bytes were handed to
the service; a source that changed earlier just restarts the multipart
upload (the old one is aborted).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

import attrs

from ..errors import JournalMismatchError
from ..transfer import FilePartJournal, JournalFile, PartJournal

__all__ = [
    "STAGES",
    "FileJournal",
    "Journal",
    "JournalKey",
    "UploadRecord",
    "fingerprint",
]

STAGES = ("creating", "created", "uploading", "done-sent", "active")


def fingerprint(create_kwargs: dict[str, Any] | None) -> str | None:
    """A stable fingerprint of the create arguments (None: no create)."""
    if not create_kwargs:
        return None
    text = json.dumps(
        {k: v for k, v in create_kwargs.items() if v is not None}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@attrs.frozen(kw_only=True)
class JournalKey:
    """What a journal belongs to."""

    endpoint: str
    region: str
    tenant: str | None = None
    #: :func:`fingerprint` of the create arguments (None: an existing image).
    spec: str | None = None
    #: The source: absolute path (or a description), size, mtime.
    source: str = ""
    size: int = 0
    mtime_ns: int = 0

    def account(self) -> tuple[str, str, str | None]:
        return (self.endpoint, self.region, self.tenant)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> JournalKey | None:
        try:
            return cls(
                endpoint=str(data["endpoint"]),
                region=str(data["region"]),
                tenant=None if data.get("tenant") is None else str(data["tenant"]),
                spec=None if data.get("spec") is None else str(data["spec"]),
                source=str(data.get("source", "")),
                size=int(data.get("size", 0)),
                mtime_ns=int(data.get("mtime_ns", 0)),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


@attrs.define(kw_only=True)
class UploadRecord:
    """The lifecycle state of one image upload."""

    stage: str = "creating"
    name: str | None = None
    image_id: str | None = None
    #: Unix time just before the create was sent.
    create_sent_at: float | None = None
    #: Ids of the same-name images that existed before the create.
    preexisting: list[str] = attrs.field(factory=list)
    upload_id: str | None = None
    md5: str | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> UploadRecord | None:
        try:
            stage = str(data["stage"])
            if stage not in STAGES:
                return None
            return cls(
                stage=stage,
                name=data.get("name"),
                image_id=data.get("image_id"),
                create_sent_at=data.get("create_sent_at"),
                preexisting=[str(i) for i in data.get("preexisting") or []],
                upload_id=data.get("upload_id"),
                md5=data.get("md5"),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


class Journal(Protocol):
    """Where the coordinator records each step's intent (see the module)."""

    async def load(self) -> UploadRecord | None:
        """The record of an earlier run (None: start afresh); raises
        :class:`~aioims.errors.JournalMismatchError` for another upload's."""
        ...

    async def record(self, record: UploadRecord) -> None:
        """Make ``record`` durable (returns once it is on disk)."""
        ...

    def parts(self) -> PartJournal:
        """The journal the multipart driver keeps its state in."""
        ...

    async def finish(self) -> None:
        """The image is verified active: forget the upload."""
        ...


def _check_key(path: str, stored: JournalKey, key: JournalKey, stage: str) -> None:
    differs = []
    # A run that names no tenant / no metadata (a plain resume) accepts the stored ones.
    tenant_differs = key.tenant is not None and stored.tenant != key.tenant
    if (stored.endpoint, stored.region) != (key.endpoint, key.region) or tenant_differs:
        differs.append("account (endpoint, region, tenant)")
    if key.spec is not None and stored.spec != key.spec:
        differs.append("image metadata")
    source_changed = (stored.source, stored.size, stored.mtime_ns) != (
        key.source,
        key.size,
        key.mtime_ns,
    )
    if source_changed and stage in ("done-sent", "active"):
        differs.append("source file (changed after its upload was handed to the service)")
    if differs:
        raise JournalMismatchError(
            f"the checkpoint {path} belongs to another upload (it differs in: "
            f"{', '.join(differs)}); delete it to start afresh, or run the upload it was "
            "made for",
            path=path,
            differs=differs,
        )


class FileJournal:
    """A :class:`Journal` in one JSON file (0600, atomic writes, no secrets):
    ``{"kind": "aioims.upload-journal", "key": ..., "lifecycle": ...,
    "multipart": ...}``.  Deleted once the image is verified active."""

    KIND = "aioims.upload-journal"

    def __init__(self, path: str | os.PathLike[str], key: JournalKey, interval: float = 0.5):
        self.path = Path(path)
        self.key = key
        self.file = JournalFile(self.path, interval)
        self._parts = FilePartJournal(self.file, "multipart")

    async def load(self) -> UploadRecord | None:
        sections = await self.file.load()
        if not sections:
            self._stamp()
            return None
        if sections.get("kind") != self.KIND:
            # A stand-alone multipart checkpoint (or junk): the multipart part
            # of it is still useful to the driver; no lifecycle record.
            multipart = sections if "version" in sections else None
            self.file.sections = {"multipart": multipart}
            self._stamp()
            return None
        stored = JournalKey.from_json(sections.get("key"))
        record = UploadRecord.from_json(sections.get("lifecycle"))
        if stored is not None and record is not None:
            _check_key(str(self.path), stored, self.key, record.stage)
            self.key = attrs.evolve(
                self.key,
                tenant=self.key.tenant if self.key.tenant is not None else stored.tenant,
                spec=self.key.spec if self.key.spec is not None else stored.spec,
            )
        self._stamp()
        return record

    def _stamp(self) -> None:
        self.file.sections["kind"] = self.KIND
        self.file.sections["key"] = self.key.to_json()

    async def record(self, record: UploadRecord) -> None:
        self._stamp()
        self.file.set("lifecycle", record.to_json())
        await self.file.flush()

    def parts(self) -> PartJournal:
        return self._parts

    async def finish(self) -> None:
        await self.file.delete()
