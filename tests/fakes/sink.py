"""A zero-cost S3 sink for big-data tests: the benchmarks' asyncio sink
(``benchmarks/sink.py``: reads and discards every body, stores nothing),
with answers a transfer can check without the sink hashing anything:

* UploadPart answers ``ETag: "<hex of the request's Content-MD5>"`` (what S3
  would answer for an intact body; a constant without Content-MD5);
* CompleteMultipartUpload answers the multipart ETag computed from the part
  ETags it handed out for that upload id (``"md5-of-md5s-N"``), so a test
  can check that every part's Content-MD5 matched the file on disk;
* CreateMultipartUpload hands out a fresh upload id each time;
* ``GET /_sink/stats`` answers JSON: ``parts`` (UploadPart bodies fully
  read), ``part_bytes`` (their bytes), ``completes``, ``requests``.

Run it as a child process (it exits when its stdin closes)::

    python tests/fakes/sink.py --port 0     # prints "READY http://127.0.0.1:PORT"

or from a test: ``with start_sink() as sink: ... sink.url ... sink.stats()``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.sink import SinkProtocol  # noqa: E402 - after the path set-up above

READY_PREFIX = "READY "
EMPTY_ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'


class Stats:
    def __init__(self) -> None:
        self.parts = 0
        self.part_bytes = 0
        self.completes = 0
        self.requests = 0
        #: upload id -> {part number: md5 hex}
        self.uploads: dict[str, dict[int, str]] = {}
        self.ids = itertools.count(1)


STATS = Stats()


def _http(status: str, body: bytes, etag: str | None, head_only: bool,
          content_type: str = "application/xml") -> bytes:  # fmt: skip
    head = f"HTTP/1.1 {status}\r\nServer: test-sink\r\nContent-Type: {content_type}\r\n"
    if etag is not None:
        head += f"ETag: {etag}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + (b"" if head_only else body)


class CheckingSink(SinkProtocol):
    """The benchmarks' sink protocol with per-request answers (see above)."""

    def _start(self, head: str) -> None:
        assert self.transport is not None
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        path, _, query = target.partition("?")
        args = parse_qs(query, keep_blank_values=True)
        STATS.requests += 1
        length = int(headers.get("content-length", "0") or 0)
        self.pending = self._answer(method, path, args, headers, length)
        self._part = "partNumber" in args and method == "PUT"
        self._length = length
        if headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
            return
        self.remaining = length
        if not self.remaining:
            self._finish()

    def _answer(self, method: str, path: str, args: dict[str, list[str]],
                headers: dict[str, str], length: int) -> bytes:  # fmt: skip
        head_only = method == "HEAD"
        if path == "/_sink/stats":
            body = json.dumps(
                {"parts": STATS.parts, "part_bytes": STATS.part_bytes,
                 "completes": STATS.completes, "requests": STATS.requests}
            ).encode()  # fmt: skip
            return _http("200 OK", body, None, head_only, "application/json")
        bucket, _, key = path.lstrip("/").partition("/")
        if "uploads" in args and method == "POST":
            upload_id = f"sink-{next(STATS.ids)}"
            STATS.uploads[upload_id] = {}
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult>'
                f"<Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{upload_id}</UploadId>"
                "</InitiateMultipartUploadResult>"
            ).encode()
            return _http("200 OK", body, None, head_only)
        if "partNumber" in args and method == "PUT":
            md5_hex = EMPTY_ETAG.strip('"')
            with contextlib.suppress(binascii.Error, ValueError):
                raw = base64.b64decode(headers.get("content-md5", ""), validate=True)
                if len(raw) == 16:
                    md5_hex = raw.hex()
            upload = STATS.uploads.setdefault(args.get("uploadId", [""])[0], {})
            upload[int(args["partNumber"][0])] = md5_hex
            return _http("200 OK", b"", f'"{md5_hex}"', head_only)
        if "uploadId" in args and method == "POST":
            parts = STATS.uploads.pop(args["uploadId"][0], {})
            digest = hashlib.md5(usedforsecurity=False)
            for number in sorted(parts):
                digest.update(bytes.fromhex(parts[number]))
            etag = f'"{digest.hexdigest()}-{len(parts)}"'
            STATS.completes += 1
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult>'
                f"<Location>/{bucket}/{key}</Location><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                f"<ETag>{etag.replace(chr(34), '&quot;')}</ETag></CompleteMultipartUploadResult>"
            ).encode()
            return _http("200 OK", body, None, head_only)
        if "uploadId" in args and method == "DELETE":
            STATS.uploads.pop(args["uploadId"][0], None)
            return _http("204 No Content", b"", None, head_only)
        return _http("200 OK", b"", EMPTY_ETAG, head_only)

    def _finish(self) -> None:
        if self.pending is not None and getattr(self, "_part", False):
            STATS.parts += 1
            STATS.part_bytes += self._length
            self._part = False
        super()._finish()


def _exit_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read1(65536):
            pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop.set)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CheckingSink, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"{READY_PREFIX}http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    threading.Thread(target=_exit_when_stdin_closes, args=(loop, stop), daemon=True).start()
    async with server:
        await stop.wait()


class SinkProcess:
    """A running sink child: ``.url``, ``.stats()``, ``.stop()``."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_sink/stats", timeout=30) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def start_sink() -> Iterator[SinkProcess]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--port", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith(READY_PREFIX):
        process.kill()
        process.wait()
        raise RuntimeError(f"the sink did not start: {line!r}")
    sink = SinkProcess(process, line[len(READY_PREFIX) :].strip())
    try:
        yield sink
    finally:
        sink.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="zero-cost S3 sink with checkable ETags")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
