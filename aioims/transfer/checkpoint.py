"""Resume state of a multipart upload, on disk.

The file is JSON, written atomically (a temp file in the same directory,
created 0600, fsynced, then ``os.replace``) from a worker thread.  It holds
no secrets: no access key, secret key, session token or endpoint — only
what identifies the upload and the parts S3 already has::

    {"version": 1, "kind": "aioims.upload",
     "bucket": "...", "key": "...", "image_id": "..." | null,
     "upload_id": "...", "part_size": 8388608, "size": 1234,
     "source": {"path": "/abs/file.qcow2", "size": 1234, "mtime_ns": 1700000000000000000},
     "parts": [{"part_number": 1, "etag": "\\"...\\"", "size": 8388608}, ...],
     "updated_at": 1700000000.0}
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

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
            "parts": [
                {"part_number": p.part_number, "etag": p.etag, "size": p.size}
                for _, p in sorted(self.parts.items())
            ],
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
                part = CompletedPart(int(item["part_number"]), str(item["etag"]), int(item["size"]))
                parts[part.part_number] = part
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
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


def read_checkpoint(path: Path) -> Checkpoint | None:
    """Load a checkpoint (blocking; run it in a thread).  None when the file
    is missing or unreadable (a broken one is logged and ignored)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        checkpoint = Checkpoint.from_json(json.loads(raw))
    except ValueError:
        checkpoint = None
    if checkpoint is None:
        logger.warning("ignoring unreadable checkpoint file %s", path)
    return checkpoint


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically replace ``path`` with ``checkpoint`` as JSON, mode 0600 (blocking)."""
    payload = json.dumps(checkpoint.to_json(), separators=(",", ":")).encode()
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


def delete_checkpoint(path: Path) -> None:
    """Remove the checkpoint (blocking)."""
    path.unlink(missing_ok=True)


class CheckpointWriter:
    """Keeps the checkpoint file up to date during a transfer.

    :meth:`mark_dirty` is cheap; a background task (:meth:`run`) writes at
    most once per ``interval`` seconds, so a burst of finished parts becomes
    one write.  :meth:`flush` writes the latest state now (always called
    before the transfer returns or raises).
    """

    def __init__(self, path: Path, state: Checkpoint, interval: float) -> None:
        self.path = path
        self.state = state
        self.interval = interval
        self._version = 0
        self._written = -1
        self._lock = anyio.Lock()
        self._wakeup = anyio.Event()
        self.writes = 0

    def mark_dirty(self) -> None:
        self._version += 1
        self._wakeup.set()

    def add_part(self, part: CompletedPart) -> None:
        self.state.parts[part.part_number] = part
        self.mark_dirty()

    async def _write_if_needed(self) -> None:
        async with self._lock:
            version = self._version
            if version == self._written:
                return
            # A snapshot (a shallow copy of the parts), serialised in the thread.
            snapshot = attrs.evolve(self.state, parts=dict(self.state.parts))
            await anyio.to_thread.run_sync(write_checkpoint, self.path, snapshot)
            self._written = version
            self.writes += 1

    async def run(self) -> None:
        """Background writer; cancel it when the transfer ends."""
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            try:
                await self._write_if_needed()
            except OSError as exc:
                logger.warning("could not write checkpoint %s: %s", self.path, exc)
            await anyio.sleep(self.interval)

    async def flush(self) -> None:
        """Write the latest state now (shielded from cancellation)."""
        with anyio.CancelScope(shield=True):
            await self._write_if_needed()

    async def delete(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await anyio.to_thread.run_sync(delete_checkpoint, self.path)
                self._written = self._version
