"""A region of an open file as a request body.

:class:`FileRegion` stands for ``length`` bytes of a file at ``offset``
(the file descriptor stays its :class:`~aioims.transfer.sources.FileSource`'s).
It is what the driver hands botocore instead of a part buffer when nothing
(no checksum, no payload signature) needs the part's bytes (see
:func:`aioims.transfer.driver.sends_file_region`): the threaded sender
(:mod:`aioims.transfer.sender`) then sends it from a worker thread straight
from the file: with ``sendfile`` on a plain-HTTP connection — the kernel
copies the page cache to the socket — and over TLS by reading it slice by
slice into the thread's own slice buffer; only through a proxy is it read
into a part buffer (:meth:`FileRegion.to_buffer`, in a worker thread) first.

botocore never reads it when nothing needs its bytes (no Content-MD5, no
flexible checksum, no payload signing): it takes its ``Content-Length``
from ``len()``, which is the bytes left from the current position (as
botocore counts a seekable stream's), never the file's size, and rewinds
it with ``seek(0)`` before a retry.  ``read(n)`` (``pread`` at the region's
position: safe from any thread, no shared file offset) serves whoever does
read it; a file that became shorter than the region raises
:class:`~aioims.transfer.errors.SourceChangedError` instead of returning
fewer bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from .hashing import PartBuffer, _pread_into

__all__ = ["FileRegion"]


class FileRegion:
    """``length`` bytes of the open file ``fd`` at ``offset``, with a
    position (a seekable, readable request body that owns no buffer).

    ``on_read(position)``: progress callback, as on a part buffer (called
    by whoever sends the body, from any thread; ``position`` counts from
    the start of the region)."""

    __slots__ = ("_position", "fd", "length", "offset", "on_read")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise ValueError("a file region needs a non-negative offset and length")
        self.fd = fd
        self.offset = offset
        self.length = length
        self._position = 0
        self.on_read: Callable[[int], None] | None = None

    def __repr__(self) -> str:
        return f"<FileRegion fd={self.fd} offset={self.offset} length={self.length}>"

    def __len__(self) -> int:
        """Bytes left from the current position (botocore's Content-Length)."""
        return max(0, self.length - self._position)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.length + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes from the current position (blocking ``pread``:
        call it from a worker thread)."""
        left = len(self)
        count = left if size is None or size < 0 else min(size, left)
        if count == 0:
            return b""
        data = bytearray(count)
        with memoryview(data) as view:
            _pread_into(self.fd, view, self.offset + self._position)
        self._position += count
        callback = self.on_read
        if callback is not None:
            callback(self._position)
        return bytes(data)

    def to_buffer(self) -> PartBuffer:
        """The bytes left, in a part buffer that reports progress through
        this region's ``on_read`` (blocking: a worker thread's call).  The
        region's position does not move."""
        count = len(self)
        buffer = PartBuffer(bytes(count))
        with buffer.getbuffer() as view:
            _pread_into(self.fd, view, self.offset + self._position)
        start, callback = self._position, self.on_read
        if callback is not None:
            buffer.on_read = callback if start == 0 else (lambda p: callback(start + p))
        return buffer

    def close(self) -> None:
        """Nothing to release: the file descriptor is the source's."""
