"""Reading parts and hashing them off the event loop.

The whole-file MD5 is computed during the upload, from the very buffers the
parts are uploaded from (the file is read once).  Parts finish out of order,
so :class:`OrderedHasher` feeds the hasher in part order: it holds a read
buffer until its turn and hashes it in one of the process-wide hasher
threads (hashlib releases the GIL on large buffers; no event-loop hop per
part).  A buffer is given back (its slot released) only once it is both
uploaded and hashed, so at most ``max_concurrency`` part buffers are alive,
plus one 1 MiB chunk when re-hashing a resumed part.

Resumed parts (already on S3 from an earlier run) are not uploaded again,
but the whole-file MD5 needs them: they are read again, in 1 MiB chunks in a
hasher thread, for hashing only.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
from collections.abc import Callable
from typing import Any

import anyio

from .config import MiB, PartLimiter, PartPlan
from .errors import SourceChangedError
from .pool import WorkerPool

_HASH_CHUNK = 1 * MiB
_HAVE_PREADV = hasattr(os, "preadv")


def new_md5() -> Any:
    return hashlib.md5(usedforsecurity=False)


class PartBuffer(io.BytesIO):
    """A part buffer that reports how far it has been read: the HTTP client
    reads the body in chunks as it writes them to the socket, so
    ``on_read(position)`` gives progress at byte granularity (not per
    finished part).  ``on_read`` is None when nobody listens; it may be
    called from any thread (a sender thread calls it after each slice)."""

    on_read: Callable[[int], None] | None = None

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        callback = self.on_read
        if callback is not None and data:
            callback(self.tell())
        return data


def new_part_buffer(length: int) -> io.BytesIO:
    """A BytesIO that owns a zero-filled buffer of ``length`` bytes.

    S3 bodies are handed to botocore as BytesIO objects that own their
    buffer: botocore would wrap ``bytes`` in a BytesIO that shares them, and
    aiohttp's ``getbuffer()`` on that copies the whole part (on the event
    loop); a ``bytearray`` would be written to the socket in one go and
    copied into the transport's buffer.  Ours is read in 256 KiB chunks.

    ``bytes(length)`` is calloc'ed: its pages are zero-filled lazily, by the
    ``preadv`` that first writes them (in a worker thread, without the GIL).
    The BytesIO holds the only reference to it, so ``getbuffer()`` does not
    copy.  (Zero-filling with a seek/write would touch every page while
    holding the GIL: ~1 ms per MiB here, a stall of the event loop.)
    """
    return PartBuffer(bytes(length))


def _pread_into(fd: int, view: memoryview, offset: int) -> None:
    got = 0
    size = len(view)
    while got < size:
        with view[got:] as rest:
            if _HAVE_PREADV:
                count = os.preadv(fd, [rest], offset + got)
            else:  # pragma: no cover - platforms without preadv
                data = os.pread(fd, len(rest), offset + got)
                count = len(data)
                rest[:count] = data
        if count <= 0:
            raise SourceChangedError(
                f"short read at offset {offset + got}: the file shrank during the upload"
            )
        got += count


def read_body(fd: int, offset: int, length: int, body: io.BytesIO | None = None) -> io.BytesIO:
    """Read ``length`` bytes at ``offset`` into ``body`` (a recycled buffer of
    exactly that size) or a new part buffer (blocking)."""
    if body is None:
        body = new_part_buffer(length)
    body.seek(0)
    with body.getbuffer() as view:
        _pread_into(fd, view, offset)
    return body


def checksum_part(body: io.BytesIO, kind: str | None, whole: Any | None) -> dict[str, str]:
    """The part's checksum parameters (``kind``: ``"md5"``, ``"crc32c"`` or
    None, see :mod:`aioims.transfer.checksums`), and feed the whole-source
    hasher, in one worker-thread call."""
    from .checksums import part_checksum_params

    with body.getbuffer() as view:
        if whole is not None:
            whole.update(view)
        return part_checksum_params(kind, view)


def read_part_checksummed(
    fd: int, offset: int, length: int, kind: str | None, body: io.BytesIO | None = None
) -> tuple[io.BytesIO, dict[str, str]]:
    """Read a part and compute its checksum parameters, in one worker-thread call."""
    from .checksums import part_checksum_params

    body = read_body(fd, offset, length, body)
    with body.getbuffer() as view:
        return body, part_checksum_params(kind, view)


def hash_range(hasher: Any, fd: int, offset: int, length: int) -> None:
    """Feed ``length`` bytes of the file at ``offset`` to ``hasher`` in 1 MiB chunks."""
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(_HASH_CHUNK, end - offset), offset)
        if not chunk:
            raise SourceChangedError("short read while hashing: the file shrank during the upload")
        hasher.update(chunk)
        offset += len(chunk)


class PartSlots:
    """At most ``limit`` part buffers alive.

    A slot is acquired before a part is read and released after its last
    user (upload, hasher) is done with the buffer.  Full-size buffers are
    recycled: a transfer allocates ``limit`` of them once, instead of one per
    part (which fragments the heap and grows the RSS well past
    ``limit x part_size``).

    With a shared ``limiter`` (``TransferConfig.part_limiter``) each slot
    also holds one of the limiter's, for ``owner``; :meth:`close` gives back
    those still held when the transfer ends early.
    """

    def __init__(
        self,
        limit: int,
        part_size: int,
        limiter: PartLimiter | None = None,
        owner: object = None,
    ) -> None:
        self._semaphore = anyio.Semaphore(limit)
        self._users: dict[int, int] = {}
        self._bodies: dict[int, io.BytesIO] = {}
        self._free: list[io.BytesIO] = []
        self._part_size = part_size
        self._limiter = limiter
        self._owner = owner if owner is not None else self
        self._shared: set[int] = set()

    async def acquire(self, part_number: int, users: int, length: int | None = None) -> None:
        await self._semaphore.acquire()
        if self._limiter is not None:
            try:
                await self._limiter.acquire(
                    self._owner, self._part_size if length is None else length
                )
            except BaseException:
                self._semaphore.release()
                raise
            self._shared.add(part_number)
        self._users[part_number] = users

    def recycled(self, length: int) -> io.BytesIO | None:
        """A free buffer of ``length`` bytes, if there is one."""
        if length == self._part_size and self._free:
            return self._free.pop()
        return None

    def attach(self, part_number: int, body: io.BytesIO) -> None:
        """``body`` holds part ``part_number``: recycle it when the slot is released."""
        self._bodies[part_number] = body

    def release(self, part_number: int) -> None:
        left = self._users[part_number] - 1
        if left:
            self._users[part_number] = left
            return
        del self._users[part_number]
        body = self._bodies.pop(part_number, None)
        if body is not None and body.seek(0, io.SEEK_END) == self._part_size:
            body.seek(0)
            self._free.append(body)
        if part_number in self._shared:
            self._shared.discard(part_number)
            assert self._limiter is not None
            self._limiter.release(self._owner)
        self._semaphore.release()

    def close(self) -> None:
        """Give the shared limiter back every slot still held (call it when
        the transfer ends: a failed or cancelled part never releases)."""
        if self._limiter is not None:
            for _ in range(len(self._shared)):
                self._limiter.release(self._owner)
        self._shared.clear()


#: Threads that feed whole-file hashers (one drain per transfer at a time).
HASH_THREADS = max(2, min(os.cpu_count() or 2, 8))
_HASH_POOL = WorkerPool("aioims-hasher", HASH_THREADS)


class OrderedHasher:
    """Whole-file MD5 over parts that arrive out of order.

    The hashing happens off the event loop, in part order, without a hop per
    part: :meth:`submit` hands over a part's buffer (a dict insert under a
    lock) and, when that part is the next one to hash and nobody is hashing,
    queues a *drain* on the process-wide hasher threads; the drain hashes
    every consecutive part it finds ready, gives each buffer's slot back
    with ``release(n)`` (called on the event loop) and stops at the first
    part not read yet — whose :meth:`submit` queues the next drain.  At most
    one drain per transfer runs at a time, so the order is kept.

    Parts in ``resumed`` (already on S3) are not uploaded again; the drain
    feeds their bytes with ``rehash(hasher, offset, length)`` (e.g.
    :meth:`aioims.transfer.sources.FileSource.hash_range`).

    :meth:`run` returns once the last part is hashed, raises what a drain
    raised, and when cancelled waits (shielded) for a running drain to stop
    at its next part: a buffer or the file is never used after the transfer
    gave them up.
    """

    def __init__(
        self,
        plan: PartPlan,
        resumed: set[int],
        rehash: Callable[[Any, int, int], None] | None,
        release: Callable[[int], None],
    ) -> None:
        self._plan = plan
        self._resumed = frozenset(resumed)
        self._rehash = rehash
        self._release = release
        self._md5 = new_md5()
        self._lock = threading.Lock()
        # shared with the drain thread (under _lock)
        self._ready: dict[int, io.BytesIO] = {}
        self._next = 1
        self._busy = False
        self._stop = False
        self._error: BaseException | None = None
        # event-loop side
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drains = 0
        self._changed = anyio.Event()
        self.done = False

    def submit(self, part_number: int, data: io.BytesIO) -> None:
        """Hand over a part's buffer (its slot is released once hashed).
        Call it on the event loop."""
        with self._lock:
            self._ready[part_number] = data
            kick = self._can_drain()
        if kick:
            self._kick()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await _HASH_POOL.ensure_async(HASH_THREADS)
            with self._lock:
                kick = self._can_drain()
            if kick:
                self._kick()
            while True:
                with self._lock:
                    error, finished = self._error, self._next > self._plan.part_count
                if error is not None:
                    raise error
                if finished and not self._drains:
                    break
                await self._changed.wait()
                self._changed = anyio.Event()
        except BaseException:
            with self._lock:
                self._stop = True
            with anyio.CancelScope(shield=True):
                while self._drains:
                    await self._changed.wait()
                    self._changed = anyio.Event()
            raise
        self.done = True

    def hexdigest(self) -> str:
        assert self.done
        return str(self._md5.hexdigest())

    # -- internals -----------------------------------------------------------

    def _can_drain(self) -> bool:
        """Under the lock: should a drain start now?  (Marks it started.)"""
        if self._busy or self._stop or self._loop is None or self._error is not None:
            return False
        number = self._next
        if number > self._plan.part_count:
            return False
        if number not in self._ready and number not in self._resumed:
            return False
        self._busy = True
        return True

    def _kick(self) -> None:  # on the loop
        self._drains += 1
        _HASH_POOL.submit(self._drain)

    def _drain(self) -> None:  # in a hasher thread
        loop = self._loop
        assert loop is not None
        try:
            while True:
                with self._lock:
                    number = self._next
                    if self._stop or number > self._plan.part_count:
                        self._busy = False
                        return
                    data = self._ready.pop(number, None)
                    if data is None and number not in self._resumed:
                        self._busy = False
                        return
                if data is None:
                    assert self._rehash is not None
                    self._rehash(
                        self._md5, self._plan.part_offset(number), self._plan.part_length(number)
                    )
                else:
                    with data.getbuffer() as view:
                        self._md5.update(view)
                    del data
                    loop.call_soon_threadsafe(self._release, number)
                with self._lock:
                    self._next = number + 1
        except BaseException as exc:
            with self._lock:
                self._error = exc
                self._busy = False
        finally:
            loop.call_soon_threadsafe(self._drained)

    def _drained(self) -> None:  # on the loop
        self._drains -= 1
        self._changed.set()
