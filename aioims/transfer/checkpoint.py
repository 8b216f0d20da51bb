"""Resume state of a multipart upload, on disk.

The file is JSON, written atomically (a temp file in the same directory,
created 0600, fsynced, then ``os.replace``) from a worker thread.  It holds
no secrets: no access key, secret key, session token or endpoint — only
what identifies the upload and the parts S3 already has::

    {"version": 1, "kind": "aioims.upload",
     "bucket": "...", "key": "...", "image_id": "..." | null,
     "upload_id": "...", "part_size": 8388608, "size": 1234,
     "source": {"path": "/abs/file.qcow2", "size": 1234, "mtime_ns": 1700000000000000000},
     "checksum_algorithm": "CRC32C" | null,
     "parts": [{"part_number": 1, "etag": "\\"...\\"", "size": 8388608,
                "checksum_crc32c": "..."}, ...],
     "updated_at": 1700000000.0}

``checksum_algorithm`` is what the multipart upload was created with
(``"CRC32C"``, or null: none declared; missing in files of older versions,
which never declared one); ``checksum_crc32c`` is a part's CRC32C (base64),
written only when known.  A resume continues with the recorded algorithm.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Protocol

import anyio
import attrs

from .results import CompletedPart

logger = logging.getLogger("aioims.transfer")

CHECKPOINT_VERSION = 1
_KIND = "aioims.upload"


@attrs.frozen
class SourceIdentity:
    """What tells us the file is still the one the parts came from."""

    path: str
    size: int
    mtime_ns: int


@attrs.define(kw_only=True)
class Checkpoint:
    bucket: str
    key: str
    image_id: str | None
    upload_id: str
    part_size: int
    size: int
    source: SourceIdentity
    parts: dict[int, CompletedPart] = attrs.field(factory=dict)
    #: CompleteMultipartUpload succeeded (the object exists); ``etag`` is its ETag.
    completed: bool = False
    etag: str | None = None
    #: The ``ChecksumAlgorithm`` the upload was created with (``"CRC32C"``)
    #: or None (none declared).
    checksum_algorithm: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "kind": _KIND,
            "bucket": self.bucket,
            "key": self.key,
            "image_id": self.image_id,
            "upload_id": self.upload_id,
            "part_size": self.part_size,
            "size": self.size,
            "source": attrs.asdict(self.source),
            "checksum_algorithm": self.checksum_algorithm,
            "parts": [_part_json(p) for _, p in sorted(self.parts.items())],
            "completed": self.completed,
            "etag": self.etag,
            "updated_at": time.time(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint | None:
        """Parse a checkpoint; None if it is not one we understand."""
        try:
            if data.get("version") != CHECKPOINT_VERSION or data.get("kind") != _KIND:
                return None
            src = data["source"]
            parts = {}
            for item in data["parts"]:
                crc = item.get("checksum_crc32c")
                part = CompletedPart(
                    int(item["part_number"]), str(item["etag"]), int(item["size"]),
                    None if crc is None else str(crc),
                )  # fmt: skip
                parts[part.part_number] = part
            algorithm = data.get("checksum_algorithm")
            image_id = data.get("image_id")
            return cls(
                bucket=str(data["bucket"]),
                key=str(data["key"]),
                image_id=None if image_id is None else str(image_id),
                upload_id=str(data["upload_id"]),
                part_size=int(data["part_size"]),
                size=int(data["size"]),
                source=SourceIdentity(str(src["path"]), int(src["size"]), int(src["mtime_ns"])),
                parts=parts,
                completed=bool(data.get("completed", False)),
                etag=None if data.get("etag") is None else str(data["etag"]),
                checksum_algorithm=None if algorithm is None else str(algorithm),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


def _part_json(part: CompletedPart) -> dict[str, Any]:
    item: dict[str, Any] = {"part_number": part.part_number, "etag": part.etag, "size": part.size}
    if part.checksum_crc32c is not None:
        item["checksum_crc32c"] = part.checksum_crc32c
    return item


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours
        return True
    return True


def clean_temp_files(path: Path) -> int:
    """Remove temp files a crashed writer of ``path`` left behind (named
    ``.NAME.PID.HEX.tmp``; those of live processes are kept).  Blocking."""
    removed = 0
    try:
        candidates = list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return 0
    for tmp in candidates:
        pid_text = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def read_document(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (blocking); None when missing or broken
    (a broken one is logged).  Temp files of crashed writers are removed."""
    clean_temp_files(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        logger.warning("ignoring unreadable journal file %s", path)
        return None
    return data


def write_document(path: Path, document: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``document`` as JSON, mode 0600 (blocking)."""
    payload = json.dumps(document, separators=(",", ":")).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path) -> Checkpoint | None:
    """Load a checkpoint (blocking; run it in a thread).  None when the file
    is missing or unreadable (a broken one is logged and ignored)."""
    data = read_document(path)
    if data is None:
        return None
    if "multipart" in data:  # a lifecycle journal with a multipart section
        section = data.get("multipart")
        return Checkpoint.from_json(section) if section is not None else None
    checkpoint = Checkpoint.from_json(data)
    if checkpoint is None:
        logger.warning("ignoring unreadable checkpoint file %s", path)
    return checkpoint


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically replace ``path`` with ``checkpoint`` as JSON, mode 0600 (blocking)."""
    write_document(path, checkpoint.to_json())


def delete_checkpoint(path: Path) -> None:
    """Remove the checkpoint (blocking)."""
    path.unlink(missing_ok=True)


class JournalFile:
    """One JSON document on disk, in named sections, kept up to date.

    :meth:`set` is cheap (it marks the document dirty); a background task
    (:meth:`run`) writes at most once per ``interval`` seconds, so a burst of
    finished parts becomes one write; :meth:`flush` writes the latest state
    now (shielded) and returns once it is on disk.  Writes are atomic
    (temp file, fsync, rename) and happen in a worker thread.
    """

    def __init__(self, path: Path, interval: float = 0.5, *, top_level: bool = False) -> None:
        self.path = path
        self.interval = interval
        #: The document is the one ``multipart`` section itself (the stand-alone
        #: checkpoint format of ``upload_file(checkpoint=...)``).
        self.top_level = top_level
        self.sections: dict[str, Any] = {}
        self._loaded = False
        self._version = 0
        self._written = -1
        self._lock = anyio.Lock()
        self._wakeup = anyio.Event()
        self.writes = 0

    async def load(self) -> dict[str, Any]:
        """Read the document (empty when there is none) and keep its sections
        (read once: later calls return what is in memory)."""
        if self._loaded:
            return dict(self.sections)
        self._loaded = True
        data = await anyio.to_thread.run_sync(read_document, self.path)
        if self.top_level and data is not None and "multipart" not in data:
            data = {"multipart": data}
        self.sections = dict(data or {})
        self._written = self._version
        return dict(self.sections)

    def set(self, section: str, value: Any) -> None:
        self.sections[section] = value
        self._version += 1
        self._wakeup.set()

    def _snapshot(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = {}
        for key, value in self.sections.items():
            if isinstance(value, Checkpoint):
                value = attrs.evolve(value, parts=dict(value.parts))
            snapshot[key] = value
        return snapshot

    async def _write_if_needed(self) -> None:
        async with self._lock:
            version = self._version
            if version == self._written:
                return
            snapshot = self._snapshot()

            def write() -> None:
                document = {
                    key: value.to_json() if isinstance(value, Checkpoint) else value
                    for key, value in snapshot.items()
                }
                if self.top_level:
                    document = document.get("multipart") or {}
                write_document(self.path, document)

            await anyio.to_thread.run_sync(write)
            self._written = version
            self.writes += 1

    async def run(self) -> None:
        """Background writer; cancel it when the work ends."""
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            try:
                await self._write_if_needed()
            except OSError as exc:
                logger.warning("could not write journal %s: %s", self.path, exc)
            await anyio.sleep(self.interval)

    async def flush(self) -> None:
        """Write the latest state now (shielded from cancellation)."""
        with anyio.CancelScope(shield=True):
            await self._write_if_needed()

    async def delete(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await anyio.to_thread.run_sync(delete_checkpoint, self.path)
                self.sections = {}
                self._written = self._version


class PartJournal(Protocol):
    """Where the driver keeps the state of a multipart upload (a
    :class:`Checkpoint`: upload id, part size, source identity, parts held,
    completed).  :class:`FilePartJournal` keeps it in a JSON file; the
    lifecycle journals (:mod:`aioims.lifecycle`) and the migration ledger
    hand the driver one of theirs."""

    async def load(self) -> Checkpoint | None:
        """The recorded state, if any."""
        ...

    async def save(self, state: Checkpoint | None) -> None:
        """Record ``state`` (None: forget the multipart upload) durably."""
        ...

    def add_part(self, part: CompletedPart) -> None:
        """Note a finished part of the saved state (written soon, coalesced)."""
        ...

    async def run(self) -> None:
        """Background writer of :meth:`add_part` notes (cancelled at the end)."""
        ...

    async def flush(self) -> None:
        """Write pending notes now."""
        ...


class FilePartJournal:
    """A :class:`PartJournal` in a section of a :class:`JournalFile` (or the
    whole file, in the version-1 checkpoint format: :meth:`at`)."""

    def __init__(self, file: JournalFile, section: str = "multipart") -> None:
        self.file = file
        self.section = section
        self.state: Checkpoint | None = None

    @classmethod
    def at(cls, path: Path, interval: float = 0.5) -> FilePartJournal:
        """A stand-alone checkpoint file (``upload_file(checkpoint=path)``)."""
        return cls(JournalFile(path, interval, top_level=True), section="multipart")

    async def load(self) -> Checkpoint | None:
        sections = await self.file.load()
        raw: Any = sections.get(self.section or "multipart")
        if not raw:
            self.state = None
        elif isinstance(raw, Checkpoint):
            self.state = raw
        else:
            self.state = Checkpoint.from_json(raw)
            if self.state is None:
                logger.warning("ignoring an unreadable multipart record in %s", self.file.path)
        return self.state

    async def save(self, state: Checkpoint | None) -> None:
        self.state = state
        if state is None and self.file.top_level:
            await self.file.delete()
            return
        self.file.set(self.section or "multipart", state)
        await self.file.flush()

    def add_part(self, part: CompletedPart) -> None:
        assert self.state is not None
        self.state.parts[part.part_number] = part
        self.file.set(self.section or "multipart", self.state)

    async def run(self) -> None:
        await self.file.run()

    async def flush(self) -> None:
        await self.file.flush()
