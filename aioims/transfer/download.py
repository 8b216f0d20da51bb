"""Verified, resumable download of an image file to disk.

:meth:`IMSSession.download_private_image` with a path as ``dest`` uses this:

* the body goes to ``<dest>.part``; only a complete (and, with ``verify``,
  MD5-checked) file is renamed to ``dest`` — never a truncated file under the
  final name;
* the bytes come from :meth:`IMSSession.open_image_file`, the one download
  primitive (its range policy: a server that ignores ``Range`` is read from
  the start and the head skipped);
* ``resume=True`` continues an existing ``<dest>.part`` from its length
  (its bytes are hashed again, in a worker thread, for the MD5); with
  ``resume=False`` a failed or cancelled download removes the ``.part``
  file, with ``resume=True`` it is kept;
* the ``.part`` file is opened with ``O_NOFOLLOW`` (a symlink there is an
  error, never followed) and created with the umask's mode, like any file
  the user writes (qemu/libvirt read the result);
* memory stays bounded: the body is written in blocks of ``chunk_size``;
  writing and hashing run in worker threads, never on the event loop;
* ``verify=True`` reads the image first (``get_image``) and compares the
  file's size and MD5 with the image's ``size`` and ``checksum``
  (:class:`~aioims.ChecksumMismatchError` on mismatch, the ``.part`` file is
  then removed);
* ``progress`` gets :class:`DownloadStarted`, :class:`BytesReceived` and
  :class:`DownloadCompleted` events (sync callable, async callable or
  :class:`~aioims.transfer.EventStream`).
"""

# The API takes per-call `timeout=` by design, hence:
# ruff: noqa: ASYNC109

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio
import attrs

from ..errors import ChecksumMismatchError, ConnectionFailedError, ValidationError
from ..models import ImageStatus
from ._emitting import run_with_emitter
from .events import Emitter, EventStream, ProgressCallback, TransferEvent

if TYPE_CHECKING:
    from ..config import RetryPolicy
    from ..session import IMSSession

_REHASH_BLOCK = 8 << 20


@attrs.frozen
class DownloadStarted(TransferEvent):
    """``resumed_bytes`` were already in the ``.part`` file; ``total_bytes``
    is None when neither the image nor the response told the size."""

    image_id: str
    total_bytes: int | None
    resumed_bytes: int = 0


@attrs.frozen
class BytesReceived(TransferEvent):
    bytes_received_total: int
    total_bytes: int | None


@attrs.frozen
class DownloadCompleted(TransferEvent):
    image_id: str
    size: int
    md5: str
    path: str


class _PartFile:
    """The ``.part`` file and the running MD5 of what it holds (thread side)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self._file: IO[bytes] | None = None

    def open(self, resume: bool) -> int:
        """Open for appending; with ``resume`` hash what is there already."""
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        try:
            if resume and os.path.lexists(self.path):
                fd = os.open(self.path, os.O_RDWR | nofollow)
                self._file = os.fdopen(fd, "r+b")
                while block := self._file.read(_REHASH_BLOCK):
                    self.md5.update(block)
                    self.size += len(block)
            else:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | nofollow, 0o666)
                self._file = os.fdopen(fd, "wb")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValidationError(
                    f"{self.path} is a symbolic link: refusing to write through it",
                    field="dest",
                ) from None
            raise
        return self.size

    def restart(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes | bytearray) -> None:
        assert self._file is not None
        self._file.write(data)
        self.md5.update(data)
        self.size += len(data)

    def finish(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


async def download_to_path(
    ims: IMSSession,
    image_id: str,
    dest: Path,
    *,
    resume: bool = False,
    verify: bool = True,
    progress: ProgressCallback | EventStream | None = None,
    chunk_size: int = 1 << 20,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
) -> int:
    """Download to ``dest`` as described in the module docstring; returns the
    file's size (bytes written in total, resumed bytes included)."""
    expected_size: int | None = None
    expected_md5: str | None = None
    if verify:
        image = await ims.get_image(image_id, timeout=timeout, retry=retry)
        if image.status == ImageStatus.ACTIVE:
            expected_size = image.size
            expected_md5 = (image.checksum or "").lower() or None
    part = _PartFile(part_path(dest))
    emitter = Emitter(progress)

    async def body() -> int:
        offset = await anyio.to_thread.run_sync(part.open, resume)
        if expected_size is not None and offset > expected_size:
            await anyio.to_thread.run_sync(part.restart)
            offset = 0
        if expected_size is not None and offset == expected_size and offset > 0:
            emitter.emit(DownloadStarted(image_id, expected_size, offset))
        else:
            await _receive(
                ims, part, offset, expected_size, image_id, emitter, chunk_size, timeout, retry,
            )  # fmt: skip
        await anyio.to_thread.run_sync(part.finish)
        md5 = part.md5.hexdigest()
        if expected_size is not None and part.size != expected_size:
            raise ConnectionFailedError(
                f"download of {image_id} has {part.size} bytes, the image has {expected_size}"
            )
        if expected_md5 is not None and md5 != expected_md5:
            await anyio.to_thread.run_sync(part.remove)
            raise ChecksumMismatchError(
                f"downloaded file MD5 {md5} differs from image {image_id} checksum {expected_md5}",
                expected=expected_md5,
                actual=md5,
            )
        await anyio.to_thread.run_sync(part.close)
        await anyio.to_thread.run_sync(os.replace, part.path, dest)
        emitter.emit(DownloadCompleted(image_id, part.size, md5, str(dest)))
        return part.size

    done = False
    try:
        size = await run_with_emitter(emitter, body)
        done = True
        return size
    finally:
        if not done:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(part.close if resume else part.remove)


async def _receive(
    ims: IMSSession,
    part: _PartFile,
    offset: int,
    expected_size: int | None,
    image_id: str,
    emitter: Emitter,
    chunk_size: int,
    timeout: float | None,
    retry: RetryPolicy | None,
) -> None:
    async with ims.open_image_file(image_id, offset, timeout=timeout, retry=retry) as file:
        total = expected_size if expected_size is not None else file.total
        emitter.emit(DownloadStarted(image_id, total, offset))
        pending = bytearray()
        async for chunk in file.chunks(chunk_size):
            pending += chunk
            if len(pending) >= chunk_size:
                block, pending = pending, bytearray()
                await anyio.to_thread.run_sync(part.write, block)
                emitter.emit(BytesReceived(part.size, total))
        if pending:
            await anyio.to_thread.run_sync(part.write, pending)
            emitter.emit(BytesReceived(part.size, total))
