"""Where the bytes of an upload come from: the part sources of the one
multipart driver (:mod:`aioims.transfer.driver`), like s3transfer's input
managers feeding its one submission task.

* :class:`FileSource` — a regular file, read by ``pread`` in the process-wide
  ``aioims-reader`` threads (:mod:`aioims.transfer.pool`):
  any part, in any order (random access); resumable (its identity is the
  path, size and mtime); parts already on S3 are re-read for the whole-file
  MD5 only.  Where no byte of a part needs to pass through Python, the
  driver sends a :class:`~aioims.transfer.region.FileRegion` of it instead
  (:meth:`FileSource.region`; ``sendfile`` on plain HTTP).
* :class:`StreamSource` — a one-shot stream (an async reader, an async
  iterable of bytes, or a blocking binary file object): parts are cut in
  order by one producer; it cannot resume.
* :class:`ReopenableSource` — a stream that can be reopened at an offset
  (``open_at(offset)``, e.g. an IMS image download with HTTP Range): read in
  order like a stream, but resumable: a later run reopens it at the first
  part S3 does not hold yet.

The driver never asks more of a source than this module's :class:`PartSource`.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import IO, Any, Protocol, Union

import anyio

from ..errors import IMSError
from .checkpoint import SourceIdentity
from .errors import S3TransferError, SourceChangedError
from .events import _is_async_callable
from .hashing import checksum_part, hash_range, new_part_buffer, read_part_checksummed
from .pool import WorkerPool, run_in_pool
from .region import FileRegion

#: Threads reading file parts (and computing their checksums): started with
#: the first file source, in the thread that opens it (off the loop).
READ_THREADS = 16
_READ_POOL = WorkerPool("aioims-reader", READ_THREADS)

__all__ = [
    "AsyncReader",
    "ChunkReader",
    "FileSource",
    "OpenAt",
    "PartSource",
    "ReopenableSource",
    "StreamLike",
    "StreamSource",
]

#: ``open_at(offset)`` → an async context manager yielding an async iterator
#: of the bytes from ``offset`` to the end.
OpenAt = Callable[[int], AbstractAsyncContextManager[AsyncIterator[bytes]]]

_THREAD_ALLOC = 1 << 20


class AsyncReader(Protocol):
    """Anything with ``async def read(n) -> bytes`` (aiohttp's StreamReader...)."""

    def read(self, n: int = ..., /) -> Awaitable[bytes]: ...


StreamLike = Union[AsyncReader, AsyncIterable[bytes]]  # noqa: UP007 - runtime alias


class PartSource:
    """The interface the driver reads parts through.

    ``size``: bytes in all.  ``identity``: what tells a later run that the
    source is the same (None: the source cannot be resumed).
    ``random_access``: parts may be read in any order with
    :meth:`read_part`; otherwise the driver positions the source once with
    :meth:`start_at` and then reads it in order with :meth:`read_exact`.
    """

    size: int = 0
    identity: SourceIdentity | None = None
    random_access: bool = False

    async def __aenter__(self) -> PartSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()

    async def aclose(self) -> None:
        """Release what the source holds (file descriptor, HTTP response)."""

    def can_start_at(self, offset: int) -> bool:
        """May reading start at ``offset`` (> 0 means skipping what S3 holds)?"""
        return offset == 0 or self.random_access

    # -- random access ---------------------------------------------------------

    async def read_part(
        self, offset: int, length: int, checksum: str | None, body: io.BytesIO | None
    ) -> tuple[io.BytesIO, dict[str, str]]:
        """A part's bytes (into ``body`` when given) and its checksum
        parameters (``checksum``: ``"md5"``, ``"crc32c"`` or None)."""
        raise NotImplementedError

    def hash_range(self, hasher: Any, offset: int, length: int) -> None:
        """Feed ``length`` bytes at ``offset`` to ``hasher`` (blocking; worker thread)."""
        raise NotImplementedError

    def region(self, offset: int, length: int) -> FileRegion:
        """``length`` bytes at ``offset`` as a request body that is not read
        (only a regular file has it: see
        :func:`aioims.transfer.driver.sends_file_region`)."""
        raise NotImplementedError

    # -- in order --------------------------------------------------------------

    async def start_at(self, offset: int) -> None:
        """Position the source at ``offset`` (once, before :meth:`read_exact`)."""
        if offset != 0:
            raise ValueError("this source can only be read from its start")

    async def read_exact(self, size: int, body: io.BytesIO | None = None) -> tuple[io.BytesIO, int]:
        raise NotImplementedError

    async def at_eof(self) -> bool:
        raise NotImplementedError

    async def digest(self, body: io.BytesIO, checksum: str | None, whole: Any) -> dict[str, str]:
        """The checksum parameters of ``body`` and feed ``whole`` (one
        worker-thread call)."""
        return await anyio.to_thread.run_sync(checksum_part, body, checksum, whole)

    # -- after the parts -------------------------------------------------------

    async def check_unchanged(self) -> None:
        """Raise :class:`SourceChangedError` if the source changed while read."""


def _open_file(path: Path) -> tuple[int, SourceIdentity, bool]:
    _READ_POOL.ensure(READ_THREADS)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        identity = SourceIdentity(str(path.resolve()), st.st_size, st.st_mtime_ns)
    except BaseException:
        os.close(fd)
        raise
    return fd, identity, stat.S_ISREG(st.st_mode)


def _fstat_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_size, st.st_mtime_ns


class FileSource(PartSource):
    """A regular file, read with ``pread`` in the ``aioims-reader`` threads."""

    random_access = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.fd = -1
        #: The path is a regular file (not a device or a pipe): its parts
        #: may be sent as file regions.
        self.regular = False

    async def __aenter__(self) -> FileSource:
        self.fd, identity, self.regular = await anyio.to_thread.run_sync(_open_file, self.path)
        self.identity = identity
        self.size = identity.size
        return self

    async def aclose(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            await anyio.to_thread.run_sync(os.close, fd)

    async def read_part(
        self, offset: int, length: int, checksum: str | None, body: io.BytesIO | None
    ) -> tuple[io.BytesIO, dict[str, str]]:
        fd = self.fd
        return await run_in_pool(
            _READ_POOL, lambda: read_part_checksummed(fd, offset, length, checksum, body)
        )

    def hash_range(self, hasher: Any, offset: int, length: int) -> None:
        hash_range(hasher, self.fd, offset, length)

    def region(self, offset: int, length: int) -> FileRegion:
        """The part at ``offset`` as a :class:`FileRegion` of the open file
        (nothing is read; valid until the source is closed)."""
        if self.fd < 0:
            raise ValueError("the file source is not open")
        return FileRegion(self.fd, offset, length)

    async def check_unchanged(self) -> None:
        assert self.identity is not None
        size, mtime_ns = await anyio.to_thread.run_sync(_fstat_identity, self.fd)
        if (size, mtime_ns) != (self.identity.size, self.identity.mtime_ns):
            raise SourceChangedError(f"{self.identity.path} changed during the upload")


def _fill_sync(fileobj: IO[bytes], view: memoryview) -> int:
    readinto = getattr(fileobj, "readinto", None)
    if readinto is not None:
        return int(readinto(view) or 0)
    data = fileobj.read(len(view))
    view[: len(data)] = data
    return len(data)


class ChunkReader:
    """Reads exact-size blocks from an async reader, an async iterable of
    bytes, or (in worker threads) a blocking binary file object."""

    def __init__(self, source: Any) -> None:
        self._read: Callable[[int], Awaitable[bytes]] | None = None
        self._iter: AsyncIterator[bytes] | None = None
        self._sync: IO[bytes] | None = None
        self._leftover: memoryview | None = None
        read = getattr(source, "read", None)
        if read is not None and _is_async_callable(read):
            self._read = read
        elif hasattr(source, "__aiter__"):
            self._iter = source.__aiter__()
        elif read is not None:
            self._sync = source
        else:
            raise TypeError(
                "source must have an async read(n), be an async iterable of bytes, "
                "or be a binary file object"
            )

    async def _next_chunk(self, wanted: int) -> bytes:
        if self._read is not None:
            return await self._read(wanted)
        assert self._iter is not None
        try:
            return await self._iter.__anext__()
        except StopAsyncIteration:
            return b""

    async def read_exact(self, size: int, body: io.BytesIO | None = None) -> tuple[io.BytesIO, int]:
        """A part buffer (``body``, a recycled one of ``size`` bytes, or a new
        one) filled with ``size`` bytes (fewer at the end of the stream: the
        count is returned with it)."""
        if body is not None:
            body.seek(0)
        elif size >= _THREAD_ALLOC:  # zero-filling 8 MiB is for a worker thread
            body = await anyio.to_thread.run_sync(new_part_buffer, size)
        else:
            body = new_part_buffer(size)
        got = 0
        with body.getbuffer() as view:
            if self._leftover is not None:
                take = min(size, len(self._leftover))
                view[:take] = self._leftover[:take]
                self._leftover = self._leftover[take:] if take < len(self._leftover) else None
                got = take
            while got < size:
                if self._sync is not None:
                    with view[got:] as rest:
                        count = await anyio.to_thread.run_sync(_fill_sync, self._sync, rest)
                    if count <= 0:
                        break
                    got += count
                    continue
                chunk = await self._next_chunk(min(size - got, 1 << 20))
                if not chunk:
                    break
                take = min(len(chunk), size - got)
                view[got : got + take] = memoryview(chunk)[:take]
                if take < len(chunk):
                    self._leftover = memoryview(chunk)[take:]
                got += take
        if got < size:
            body.truncate(got)
        return body, got

    async def at_eof(self) -> bool:
        return (await self.read_exact(1))[1] == 0


class StreamSource(PartSource):
    """A one-shot stream of ``size`` bytes (not resumable)."""

    def __init__(self, source: Any, size: int) -> None:
        self.reader = ChunkReader(source)
        self.size = size

    async def read_exact(self, size: int, body: io.BytesIO | None = None) -> tuple[io.BytesIO, int]:
        return await self.reader.read_exact(size, body)

    async def at_eof(self) -> bool:
        return await self.reader.at_eof()


class _SourceReader:
    """``read(n)`` over a chunk iterator; a failure of the source becomes a
    transient :class:`S3TransferError` (operation ``SourceRead``) so the
    driver keeps the multipart upload and the journal for a resume."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def read(self, n: int = -1) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""
        except (IMSError, OSError) as exc:
            if isinstance(exc, (S3TransferError, SourceChangedError)):
                raise
            raise S3TransferError(
                f"reading the source failed: {exc}",
                operation="SourceRead",
                code=getattr(exc, "code", None) or type(exc).__name__,
                request_id=getattr(exc, "request_id", None),
                http_status=getattr(exc, "http_status", None),
                transient=True,
            ) from exc


class ReopenableSource(PartSource):
    """A stream of ``size`` bytes that ``open_at(offset)`` reopens anywhere.

    ``identity`` names it in the journal: include what changes when its
    bytes change (e.g. the source image's checksum)."""

    def __init__(self, open_at: OpenAt, size: int, identity: str) -> None:
        self.open_at = open_at
        self.size = size
        self.identity = SourceIdentity(identity, size, 0)
        self._stack = AsyncExitStack()
        self._reader: ChunkReader | None = None

    def can_start_at(self, offset: int) -> bool:
        return True

    async def start_at(self, offset: int) -> None:
        chunks = await self._stack.enter_async_context(self.open_at(offset))
        self._reader = ChunkReader(_SourceReader(chunks))

    async def read_exact(self, size: int, body: io.BytesIO | None = None) -> tuple[io.BytesIO, int]:
        assert self._reader is not None, "start_at() first"
        return await self._reader.read_exact(size, body)

    async def at_eof(self) -> bool:
        assert self._reader is not None
        return await self._reader.at_eof()

    async def aclose(self) -> None:
        await self._stack.aclose()
