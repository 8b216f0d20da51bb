"""The threaded part sender: part bodies written by worker threads.

aiohttp writes every byte of a request body from the event-loop thread (and
encrypts it there over HTTPS), which caps an upload at what one busy thread
can push and stalls the loop.  :class:`ThreadedSession` is an aiobotocore
HTTP session (plugged in through the public ``AioConfig(http_session_cls=...)``
hook; ``TransferConfig(sender="thread")`` does it) that keeps aiobotocore in
charge of building, signing, retrying and parsing every request, and changes
only how the bytes of a *large* request body reach the socket:

* a ``PUT`` whose body is bytes-like or an ``io.BytesIO`` (subclasses too,
  unless they override ``getbuffer``; the bytes from the current position,
  ``Content-Length`` of them) of at least
  :data:`THREAD_MIN_BODY` bytes, with a ``Content-Length`` and no
  ``Transfer-Encoding`` (UploadPart, PutObject), is sent by a thread of a
  process-wide pool over a keep-alive blocking socket:
  ``sendall(memoryview)`` in 1 MiB slices (``SSL_write`` releases the GIL);
* a ``PUT`` whose body is a :class:`~aioims.transfer.region.FileRegion` (a
  part the driver did not read: no checksum needs its bytes), whatever its
  size, to an ``http://`` or ``https://`` URL no proxy applies to, is sent
  by a worker thread straight from the file, in :data:`SEND_SLICE` slices:
  on ``http://`` with ``os.sendfile`` (the kernel copies the page cache; no
  byte passes through Python); on ``https://`` (or a platform without
  ``sendfile``) the thread reads each slice (``preadv``) into its own
  reusable slice buffer (one per worker thread, allocated once, never
  shared) and sends it with ``sendall`` — no part-sized buffer, no hop
  through the event loop or an executor.  Through a proxy the region is
  first read into a part buffer in the loop's default executor — never on
  the event loop — and that buffer is sent by aiohttp, through the proxy;
* everything else — and every request when a proxy applies to the URL — goes
  through aiobotocore's own aiohttp session, unchanged.

Behaviour of the threaded path:

* TLS: the same ``SSLContext`` aiobotocore builds from ``verify``
  (``verify_ssl``/``ca_bundle``: system store, a PEM bundle, or no checks)
  and ``client_cert``; host names are checked (``check_hostname``), an IP
  endpoint against the certificate's IP-address names.  A certificate error
  is botocore's ``SSLError`` (classified fatal: never retried).
* Timeouts: ``connect_timeout`` for connect + TLS handshake; ``read_timeout``
  (or a per-request override) for every blocking send of a slice and every
  read of the answer.
* Keep-alive: a connection is reused when the answer allows it; an idle one
  is checked before reuse, and a reused one that fails before any byte of
  an answer arrives (the server closed it while idle) is replaced by a new
  connection once — not counted as an attempt.
* An answer that arrives before the body is fully sent (e.g. ``403`` while
  the server stops reading) is read and returned; the connection is then
  closed.
* ``Expect: 100-continue`` (added by botocore, not signed) is not sent: the
  early-answer check above serves the same purpose without a round trip.
* Cancellation: the coroutine never returns before the worker thread has
  let go of the body (its buffer, or its file).  On cancellation it aborts the send (shuts
  the socket down), waits (shielded) for the thread to finish, then raises
  ``CancelledError`` — so a part buffer is never reused while it is sent.
* Progress: a body with an ``on_read(position)`` callback (aioims' part
  buffers and file regions, whose callback may be called from any thread
  and hops to its own loop) has it called by the worker thread after every
  slice sent.
* A file region whose file became shorter than the region (``sendfile``
  or ``preadv`` reaches the end of the file early) fails with
  :class:`~aioims.transfer.errors.SourceChangedError` (not retried); the
  connection, which carried part of a body, is closed (never a short body).
  A stale keep-alive connection replaced mid-request sends the region again
  from its start.
* The worker threads are started once per process, off the event loop
  (:func:`start_sender_pool`, or lazily by the first session through the
  loop's default executor), and grow to the largest ``max_pool_connections``
  seen (at most :data:`MAX_THREADS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.httpsession import AIOHTTPSession
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from .errors import SourceChangedError
from .hashing import _pread_into
from .pool import WorkerPool
from .region import FileRegion

logger = logging.getLogger("aioims.transfer")

#: Bodies at least this large go through the worker threads.
THREAD_MIN_BODY = 256 * 1024
#: Bytes per blocking send (the socket timeout applies to each).
SEND_SLICE = 1024 * 1024
#: Upper bound of the worker pool.
MAX_THREADS = 64
_MAX_HEADER_BYTES = 64 * 1024
_RECV = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HAVE_SENDFILE = hasattr(os, "sendfile")
_HAVE_POLL = hasattr(select, "poll")


# --------------------------------------------------------------------------
# The process-wide worker pool


_POOL = WorkerPool("aioims-sender", MAX_THREADS)


def start_sender_pool(threads: int = 16) -> None:
    """Start the sender's worker threads now (blocking; call it at program
    start or from a worker thread, not from the event loop)."""
    _POOL.ensure(threads)


def sender_pool_size() -> int:
    return _POOL.size


async def ensure_sender_pool(threads: int) -> None:
    """Grow the pool to ``threads`` without starting threads on the loop."""
    await _POOL.ensure_async(threads)


# --------------------------------------------------------------------------
# Connections and the HTTP/1.1 exchange (all of it runs in worker threads)


class _Stale(Exception):
    """A reused connection failed before any byte of an answer arrived."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Aborted(Exception):
    """The send was aborted (the awaiting coroutine was cancelled)."""


class _Conn:
    __slots__ = ("buffer", "sock", "uses")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.uses = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def idle_alive(self) -> bool:
        """False when an idle connection was closed by the server (or has
        unexpected bytes waiting)."""
        if self.buffer:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            self.sock.recv(1)
        except ssl.SSLWantReadError:
            return True  # only TLS records without data (session tickets)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(timeout)
        return False  # EOF, or bytes nobody asked for


class _Job:
    """One request for a worker thread; ``abort()`` may be called from the loop.

    The body is ``body`` (a view of the caller's bytes) or, when ``body`` is
    None, ``length`` bytes of the file ``file = (fd, offset)``: sent with
    ``sendfile`` when ``sendfile`` is true, else read slice by slice into the
    thread's slice buffer and sent from it."""

    def __init__(
        self,
        head: bytes,
        body: memoryview | None,
        read_timeout: float | None,
        *,
        file: tuple[int, int] | None = None,
        length: int | None = None,
        sendfile: bool = False,
    ) -> None:
        self.head = head
        self.body = body
        self.file = file
        self.sendfile = sendfile
        self.length = len(body) if body is not None else int(length or 0)
        self.read_timeout = read_timeout
        #: ``(on_read, start)``: progress of a body with an ``on_read(position)``
        #: callback (aioims' part buffers; callable from any thread), called
        #: by the worker thread after each slice.
        self.progress: tuple[Callable[[int], None], int] | None = None
        self.aborted = False
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        with self.lock:
            self.sock = sock
            if sock is not None and self.aborted:
                _shutdown(sock)

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            if self.sock is not None:
                _shutdown(self.sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown(): it wakes a thread blocked in send/recv
    # and, unlike SSLSocket.shutdown(), leaves the TLS object alone.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Answer:
    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


def _recv_more(conn: _Conn) -> bool:
    data = conn.sock.recv(_RECV)
    if not data:
        return False
    conn.buffer += data
    return True


def _read_exact(conn: _Conn, n: int) -> bytes:
    while len(conn.buffer) < n:
        if not _recv_more(conn):
            raise ConnectionResetError("connection closed in the middle of an answer")
    out = bytes(conn.buffer[:n])
    del conn.buffer[:n]
    return out


def _read_line(conn: _Conn) -> bytes:
    while True:
        end = conn.buffer.find(b"\r\n")
        if end >= 0:
            line = bytes(conn.buffer[:end])
            del conn.buffer[: end + 2]
            return line
        if len(conn.buffer) > _MAX_HEADER_BYTES:
            raise ConnectionResetError("answer line too long")
        if not _recv_more(conn):
            raise ConnectionResetError("connection closed in the middle of an answer")


def _read_answer(conn: _Conn, method: str) -> _Answer:
    """Read one HTTP/1.1 answer (1xx interim answers skipped)."""
    while True:
        while b"\r\n\r\n" not in conn.buffer:
            if len(conn.buffer) > _MAX_HEADER_BYTES:
                raise ConnectionResetError("answer headers too long")
            if not _recv_more(conn):
                if conn.buffer:
                    raise ConnectionResetError("connection closed in the middle of an answer")
                raise _NoAnswer()
        end = conn.buffer.index(b"\r\n\r\n")
        head = bytes(conn.buffer[:end]).decode("latin-1")
        del conn.buffer[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionResetError(f"bad status line {lines[0][:80]!r}")
        version, status = parts[0], int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:
            continue
        break
    connection = headers.get("connection", "").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    if method == "HEAD" or status in (204, 304):
        return _Answer(status, headers, b"", keep_alive)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = _read_line(conn).split(b";", 1)[0].strip()
            size = int(size_line, 16)
            if size == 0:
                while _read_line(conn):  # trailers
                    pass
                break
            chunks.append(_read_exact(conn, size))
            _read_exact(conn, 2)
        return _Answer(status, headers, b"".join(chunks), keep_alive)
    if "content-length" in headers:
        body = _read_exact(conn, int(headers["content-length"]))
        return _Answer(status, headers, body, keep_alive)
    while _recv_more(conn):  # delimited by the end of the connection
        pass
    body = bytes(conn.buffer)
    conn.buffer.clear()
    return _Answer(status, headers, body, False)


class _NoAnswer(ConnectionResetError):
    """The connection ended before any byte of an answer."""


def _early_answer(conn: _Conn) -> bool:
    """True when bytes of an answer are waiting while the body is being sent."""
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return False
    if not readable:
        return False
    if not isinstance(conn.sock, ssl.SSLSocket):
        return True
    timeout = conn.sock.gettimeout()
    conn.sock.setblocking(False)
    try:
        data = conn.sock.recv(_RECV)
    except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
        return False  # TLS records without data (e.g. a TLS 1.3 session ticket)
    except OSError:
        return True  # let the answer read report it
    finally:
        with contextlib.suppress(OSError):
            conn.sock.settimeout(timeout)
    conn.buffer += data
    return True


def _send_body(conn: _Conn, job: _Job) -> bool:
    """Send the body; False if an answer arrived before it was all sent."""
    body = job.body
    if body is None:
        return _send_file(conn, job) if job.sendfile else _send_file_slices(conn, job)
    total = len(body)
    offset = 0
    while offset < total:
        if job.aborted:
            raise _Aborted()
        end = min(offset + SEND_SLICE, total)
        conn.sock.sendall(body[offset:end])
        offset = end
        if not _slice_sent(conn, job, offset):
            return False
    return True


def _slice_sent(conn: _Conn, job: _Job, offset: int) -> bool:
    """After a slice: report progress; False if an answer arrived before the
    end of the body (the send stops; the answer is read)."""
    if job.progress is not None:
        on_read, first = job.progress
        on_read(first + offset)
    return offset >= job.length or not _early_answer(conn)


def _wait_writable(sock: socket.socket, timeout: float | None) -> None:
    """Block until ``sock`` may take more bytes (or has an error/hang-up,
    which the next send reports); TimeoutError after ``timeout`` seconds."""
    if _HAVE_POLL:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        ready = bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
    else:  # pragma: no cover - platforms without poll
        _, writable, failed = select.select([], [sock], [sock], timeout)
        ready = bool(writable or failed)
    if not ready:
        raise TimeoutError("timed out")


def _send_file(conn: _Conn, job: _Job) -> bool:
    """Send ``job.length`` bytes of ``job.file`` with ``os.sendfile`` in
    :data:`SEND_SLICE` slices; False if an answer arrived before the end.

    A socket with a timeout is non-blocking underneath: a full send buffer
    (``EAGAIN``) is waited for, at most the job's ``read_timeout``.  The end
    of the file before the region's end raises :class:`SourceChangedError`."""
    assert job.file is not None
    fd, start = job.file
    sock = conn.sock
    out = sock.fileno()
    timeout = job.read_timeout
    total = job.length
    offset = 0
    while offset < total:
        if job.aborted:
            raise _Aborted()
        end = min(offset + SEND_SLICE, total)
        while offset < end:
            try:
                sent = os.sendfile(out, fd, start + offset, end - offset)
            except (BlockingIOError, InterruptedError):
                _wait_writable(sock, timeout)
                continue
            if sent == 0:
                raise SourceChangedError(
                    f"short read at offset {start + offset}: the file shrank during the upload"
                )
            offset += sent
        if not _slice_sent(conn, job, offset):
            return False
    return True


_THREAD = threading.local()


def _slice_buffer() -> memoryview:
    """The calling thread's slice buffer: :data:`SEND_SLICE` bytes, allocated
    at its first use and kept for the thread's life (worker threads live as
    long as the process); never shared with another thread."""
    view: memoryview | None = getattr(_THREAD, "slice", None)
    if view is None:
        view = _THREAD.slice = memoryview(bytearray(SEND_SLICE))
    return view


def _send_file_slices(conn: _Conn, job: _Job) -> bool:
    """Send ``job.length`` bytes of ``job.file`` by reading them (``preadv``)
    into the thread's slice buffer, one :data:`SEND_SLICE` at a time, and
    ``sendall``-ing each (over TLS: ``SSL_write``, GIL released); False if an
    answer arrived before the end.  Only this thread touches the buffer, and
    a send that failed leaves it to nobody (its connection is closed), so it
    is refilled freely.  A file that ends before the region's end raises
    :class:`SourceChangedError` before the slice is sent: never a short body."""
    assert job.file is not None
    fd, start = job.file
    buffer = _slice_buffer()
    total = job.length
    offset = 0
    while offset < total:
        if job.aborted:
            raise _Aborted()
        count = min(SEND_SLICE, total - offset)
        with buffer[:count] as piece:
            _pread_into(fd, piece, start + offset)
            conn.sock.sendall(piece)
        offset += count
        if not _slice_sent(conn, job, offset):
            return False
    return True


# --------------------------------------------------------------------------
# The aiobotocore session


class _BufferedRaw:
    """The ``raw`` of an :class:`AioAWSResponse` whose body is already read."""

    def __init__(self, url: str, body: bytes) -> None:
        self.url = url
        self._body = body

    async def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n >= len(self._body):
            data, self._body = self._body, b""
        else:
            data, self._body = self._body[:n], self._body[n:]
        return data

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _settle(future: asyncio.Future[Any], on_cancel: Callable[[], None] | None = None) -> Any:
    """The result of a worker thread's ``future``.  On cancellation:
    ``on_cancel()``, then wait (shielded) until the thread is done — it may
    still use the caller's buffer or file — and raise ``CancelledError``."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((future,))  # never raises the job's error
        if not future.cancelled():
            future.exception()  # retrieved: no "never retrieved" warning
        raise


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _body_view(body: Any, length: int) -> memoryview | None:
    """A view of the request body's bytes, or None if it cannot be had
    without reading (then the aiohttp path sends it)."""
    if isinstance(body, (bytes, bytearray)):
        view = memoryview(body)
    elif isinstance(body, memoryview):
        view = body.cast("B") if body.format != "B" or body.ndim != 1 else body
    elif isinstance(body, io.BytesIO) and type(body).getbuffer is io.BytesIO.getbuffer:
        start = body.tell()
        whole = body.getbuffer()
        if start + length > len(whole):
            whole.release()
            return None
        view = whole[start : start + length]
        whole.release()  # the slice keeps the export alive until released
        return view
    else:
        return None
    if len(view) != length:
        return None
    return view


class ThreadedSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's aiohttp session, with large ``PUT`` bodies sent by the
    worker threads of :func:`start_sender_pool` (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        timeout = kwargs.get("timeout")
        if isinstance(timeout, (list, tuple)):
            self._connect_timeout, self._read_timeout = timeout
        else:
            self._connect_timeout = self._read_timeout = timeout
        self._thread_lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._tls: ssl.SSLContext | None = None
        self._open = True
        #: Requests sent by the threads (of them, file regions sent with
        #: sendfile / read slice by slice by the thread) / by aiohttp (for
        #: tests and benchmarks).
        self.threaded_sends = 0
        self.sendfile_sends = 0
        self.region_sends = 0
        self.fallback_sends = 0

    async def __aenter__(self) -> ThreadedSession:
        await super().__aenter__()
        self._open = True
        await ensure_sender_pool(self._max_pool_connections)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        with self._thread_lock:
            self._open = False
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        await super().__aexit__(*exc)

    # -- which path -------------------------------------------------------

    def _put_length(self, request: Any) -> int | None:
        """The ``Content-Length`` of a ``PUT`` the worker threads may send
        (None: aiohttp's path)."""
        if request.method != "PUT" or request.stream_output:
            return None
        headers = request.headers
        if "Transfer-Encoding" in headers:
            return None
        length_text = headers.get("Content-Length")
        if length_text is None:
            return None
        try:
            length = int(length_text)
        except ValueError:
            return None
        scheme = urlsplit(request.url).scheme
        if scheme not in _DEFAULT_PORTS:
            return None
        if self._proxy_config.proxy_url_for(request.url):
            return None  # proxies: aiohttp's CONNECT support
        return length

    def _threadable(self, request: Any) -> memoryview | None:
        length = self._put_length(request)
        if length is None or length < THREAD_MIN_BODY:
            return None
        return _body_view(request.body, length)

    def _region_length(self, request: Any, region: FileRegion) -> int | None:
        """The length of a file region the worker threads send from the file
        (``http://`` or ``https://``, no proxy, the region's bytes left =
        Content-Length), else None."""
        length = self._put_length(request)
        if length is None or length != len(region):
            return None
        return length

    async def send(self, request: Any) -> Any:
        body = request.body
        if isinstance(body, FileRegion):
            return await self._send_region(request, body)
        view = self._threadable(request)
        if view is None:
            self.fallback_sends += 1
            return await super().send(request)
        self.threaded_sends += 1
        try:
            job = self._job(request, view)
        except BaseException:
            view.release()
            raise
        on_read = getattr(body, "on_read", None)
        if callable(on_read) and isinstance(body, io.BytesIO):
            job.progress = (on_read, body.tell())
        answer = await self._submit(job, request.url)
        if isinstance(body, io.BytesIO):
            body.seek(job.length, io.SEEK_CUR)  # consumed, as aiohttp leaves it
        return await self._response(request, answer)

    async def _send_region(self, request: Any, region: FileRegion) -> Any:
        """A file region, sent by a worker thread from the file: with
        ``sendfile`` on ``http://``, read slice by slice into the thread's
        slice buffer on ``https://`` (or without ``sendfile``).  Through a
        proxy its bytes are read into a part buffer in the default executor
        (never on the loop) and that buffer is sent instead."""
        length = self._region_length(request, region)
        if length is None:
            loop = asyncio.get_running_loop()
            buffer = await _settle(loop.run_in_executor(None, region.to_buffer))
            request.body = buffer
            try:
                response = await self.send(request)
            finally:
                request.body = region
            region.seek(buffer.tell(), io.SEEK_CUR)  # what was consumed of it
            return response
        sendfile = _HAVE_SENDFILE and urlsplit(request.url).scheme == "http"
        self.threaded_sends += 1
        if sendfile:
            self.sendfile_sends += 1
        else:
            self.region_sends += 1
        position = region.tell()
        job = self._job(
            request,
            None,
            file=(region.fd, region.offset + position),
            length=length,
            sendfile=sendfile,
        )
        if region.on_read is not None:
            job.progress = (region.on_read, position)
        answer = await self._submit(job, request.url)
        region.seek(length, io.SEEK_CUR)  # consumed, as aiohttp leaves a body
        return await self._response(request, answer)

    async def _submit(self, job: _Job, url: str) -> _Answer:
        """Run ``job`` in a worker thread; on cancellation abort it and wait
        for the thread to let go of the body before raising."""
        future = asyncio.wrap_future(_POOL.submit(lambda: self._run(job, url)))
        answer: _Answer = await _settle(future, job.abort)
        return answer

    async def _response(self, request: Any, answer: _Answer) -> Any:
        response = AioAWSResponse(
            request.url, answer.status, answer.headers, _BufferedRaw(request.url, answer.body)
        )
        if not request.stream_output:
            await response.content
        return response

    def _job(
        self,
        request: Any,
        view: memoryview | None,
        *,
        file: tuple[int, int] | None = None,
        length: int | None = None,
        sendfile: bool = False,
    ) -> _Job:
        parts = urlsplit(request.url)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        lines = [f"{request.method} {target} HTTP/1.1"]
        names = set()
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered == "expect":
                continue
            names.add(lowered)
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            lines.append(f"{name}: {text}")
        if "host" not in names:
            lines.insert(1, f"Host: {_host_header(request.url)}")
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        read_timeout = self._read_timeout
        context = getattr(request, "context", None)
        if context and context.get("read_timeout") is not None:
            read_timeout = context["read_timeout"]
        return _Job(head, view, read_timeout, file=file, length=length, sendfile=sendfile)

    # -- worker thread side -------------------------------------------------

    def _run(self, job: _Job, url: str) -> _Answer:
        try:
            return self._exchange(job, url)
        finally:
            if job.body is not None:
                job.body.release()

    def _exchange(self, job: _Job, url: str) -> _Answer:
        parts = urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS[scheme]
        key = (scheme, host, port)
        for _ in range(3):  # stale keep-alive connections do not count
            if job.aborted:
                raise _Aborted()
            conn = self._checkout(key)
            fresh = conn is None
            if conn is None:
                conn = self._connect(scheme, host, port, url)
            job.attach(conn.sock)
            try:
                answer = self._once(conn, job, url, reused=not fresh)
            except _Stale as stale:
                conn.close()
                logger.debug("stale keep-alive connection (%s): reconnecting", stale.error)
                continue
            except BaseException:
                conn.close()
                if job.aborted:
                    raise _Aborted() from None
                raise
            finally:
                job.attach(None)
            if answer.keep_alive:
                self._checkin(key, conn)
            else:
                conn.close()
            return answer
        raise ConnectionClosedError(endpoint_url=url, error="keep-alive connections kept closing")

    def _once(self, conn: _Conn, job: _Job, url: str, *, reused: bool) -> _Answer:
        conn.uses += 1
        sent_all = False
        try:
            conn.sock.settimeout(job.read_timeout)
            conn.sock.sendall(job.head)
            sent_all = _send_body(conn, job)
        except _Aborted:
            raise
        except TimeoutError as exc:
            # A server that answered and stopped reading: return its answer.
            answer = self._answer_after_send_error(conn, job)
            if answer is None:
                raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
            return answer
        except ssl.SSLError as exc:
            if job.aborted:
                raise _Aborted() from exc
            answer = self._answer_after_send_error(conn, job)
            if answer is not None:
                return answer
            if reused:
                raise _Stale(exc) from exc
            raise ConnectionClosedError(endpoint_url=url, error=exc) from exc
        except OSError as exc:
            if job.aborted:
                raise _Aborted() from exc
            answer = self._answer_after_send_error(conn, job)
            if answer is not None:
                return answer
            if reused and exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED):
                raise _Stale(exc) from exc
            raise ConnectionClosedError(endpoint_url=url, error=exc) from exc
        try:
            answer = _read_answer(conn, "PUT")
        except TimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
        except _NoAnswer as exc:
            if reused and not job.aborted:
                raise _Stale(exc) from exc
            raise ConnectionClosedError(endpoint_url=url, error=exc) from exc
        except (OSError, ValueError) as exc:
            if job.aborted:
                raise _Aborted() from exc
            if reused and isinstance(exc, ConnectionResetError) and not conn.buffer:
                raise _Stale(exc) from exc
            raise ConnectionClosedError(endpoint_url=url, error=exc) from exc
        if not sent_all:
            answer.keep_alive = False  # the server did not read the whole body
        return answer

    def _answer_after_send_error(self, conn: _Conn, job: _Job) -> _Answer | None:
        """An answer the server sent before it stopped reading the body."""
        if job.aborted:
            return None
        try:
            conn.sock.settimeout(min(job.read_timeout or 5.0, 5.0))
            answer = _read_answer(conn, "PUT")
        except (OSError, ValueError):
            return None
        answer.keep_alive = False
        return answer

    def _checkout(self, key: tuple[str, str, int]) -> _Conn | None:
        while True:
            with self._thread_lock:
                conns = self._idle.get(key)
                if not conns:
                    return None
                conn = conns.pop()
            if conn.idle_alive():
                return conn
            conn.close()

    def _checkin(self, key: tuple[str, str, int], conn: _Conn) -> None:
        with self._thread_lock:
            if self._open:
                conns = self._idle.setdefault(key, [])
                if len(conns) < self._max_pool_connections:
                    conns.append(conn)
                    return
        conn.close()

    def _tls_context(self) -> ssl.SSLContext:
        with self._thread_lock:
            if self._tls is None:
                # The very context aiobotocore would give aiohttp (verify,
                # ca_bundle, client certificate), built off the event loop.
                self._tls = self._build_ssl_contexts(None)[0]
            return self._tls

    def _connect(self, scheme: str, host: str, port: int, url: str) -> _Conn:
        try:
            sock = socket.create_connection((host, port), timeout=self._connect_timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=url, error=exc) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in self._socket_options:  # botocore's (e.g. TCP keep-alive)
                sock.setsockopt(*option)
            if scheme == "https":
                sock = self._tls_context().wrap_socket(sock, server_hostname=host)
        except ssl.SSLError as exc:
            sock.close()
            raise SSLError(endpoint_url=url, error=exc) from exc
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except OSError as exc:
            sock.close()
            raise EndpointConnectionError(endpoint_url=url, error=exc) from exc
        return _Conn(sock)
