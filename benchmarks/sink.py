"""A zero-cost S3 "sink" in pure asyncio: the fallback when nginx is missing.

Answers the calls an upload makes, reads and discards every body, stores
nothing (the same answers as ``nginx-s3-sink.conf``):

* ``POST /bucket/key?uploads``            -> InitiateMultipartUploadResult
* ``PUT  /bucket/key?partNumber=N&...``   -> 200, ``ETag`` header
* ``POST /bucket/key?uploadId=X``         -> CompleteMultipartUploadResult
* anything else (PutObject, HeadObject...) -> 200, empty body

Run on its own (the harness does, in a child process)::

    python benchmarks/sink.py --port 0      # prints "READY http://127.0.0.1:PORT"

It exits when its stdin closes, so it never outlives the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
from urllib.parse import parse_qs

READY_PREFIX = "READY "
ETAG = b'"d41d8cd98f00b204e9800998ecf8427e"'
INITIATE = (
    b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>b</Bucket>'
    b"<Key>k</Key><UploadId>sink-upload</UploadId></InitiateMultipartUploadResult>"
)
COMPLETE = (
    b'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><Location>l'
    b'</Location><Bucket>b</Bucket><Key>k</Key><ETag>"sink-1"</ETag>'
    b"</CompleteMultipartUploadResult>"
)
_MAX_HEAD = 64 * 1024


def answer_body(method: str, query: str) -> bytes:
    """The body the sink answers ``method`` with for the query string ``query``."""
    if query.startswith("uploads"):
        return INITIATE
    args = parse_qs(query, keep_blank_values=True)
    if "partNumber" in args:
        return b""
    if "uploadId" in args and method == "POST":
        return COMPLETE
    return b""


def response(body: bytes, head_only: bool) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nServer: sink\r\nContent-Type: application/xml\r\n"
        b"ETag: " + ETAG + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head if head_only else head + body


class SinkProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive; bodies framed by Content-Length or chunked."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.remaining = 0  # body bytes still to discard (Content-Length framing)
        self.chunked = False
        self.pending: bytes | None = None  # the answer, sent once the body is read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.remaining and not self.buffer:
            if len(data) <= self.remaining:  # the hot path: discard without copying
                self.remaining -= len(data)
                if not self.remaining:
                    self._finish()
                return
            data = data[self.remaining :]
            self.remaining = 0
            self._finish()
        self.buffer += data
        self._process()

    def _process(self) -> None:
        assert self.transport is not None
        while True:
            if self.remaining:
                take = min(self.remaining, len(self.buffer))
                del self.buffer[:take]
                self.remaining -= take
                if self.remaining:
                    return
                self._finish()
                continue
            if self.chunked:
                if not self._chunk():
                    return
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            self._start(head)

    def _start(self, head: str) -> None:
        assert self.transport is not None
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        _, _, query = target.partition("?")
        self.pending = response(answer_body(method, query), method == "HEAD")
        if headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
            return
        self.remaining = int(headers.get("content-length", "0") or 0)
        if not self.remaining:
            self._finish()

    def _chunk(self) -> bool:
        """Consume one chunk of a chunked body; False when more data is needed."""
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return False
        size = int(bytes(self.buffer[:end]).split(b";")[0] or b"0", 16)
        if size == 0:  # last chunk: skip the (empty) trailer
            tail = self.buffer.find(b"\r\n\r\n", end)
            if tail < 0:
                return False
            del self.buffer[: tail + 4]
            self.chunked = False
            self._finish()
            return True
        if len(self.buffer) < end + 2 + size + 2:
            return False
        del self.buffer[: end + 2 + size + 2]
        return True

    def _finish(self) -> None:
        assert self.transport is not None
        if self.pending is not None:
            self.transport.write(self.pending)
            self.pending = None


def _exit_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 65536):
            pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop.set)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"{READY_PREFIX}http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    threading.Thread(target=_exit_when_stdin_closes, args=(loop, stop), daemon=True).start()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="zero-cost S3 sink (asyncio)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
