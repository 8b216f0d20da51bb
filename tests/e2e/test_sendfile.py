"""Parts sent as file regions by the driver (``sendfile`` on plain HTTP):
the rule that decides it, the region body itself, and whole uploads
(byte-exact to moto, checked with an independent boto3 client; bigger ones
to the zero-cost sink).  The sender's side on the wire (keep-alive, early
answers, regions over TLS read by the sending thread — a whole upload over
HTTPS too —, the proxy fallback, cancellation, a file that shrinks) is in
``test_sender.py``."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from botocore.utils import determine_content_length

from aioims import UploadTarget, hooks
from aioims.transfer import (
    BytesSent,
    FileSource,
    SourceChangedError,
    StreamSource,
    TransferConfig,
    TransferEvent,
    upload_file,
)
from aioims.transfer import sender as sender_module
from aioims.transfer.driver import sends_file_region
from aioims.transfer.region import FileRegion

MiB = 1024 * 1024

#: Integrity off: no Content-MD5, no payload signing (the whole-file MD5 is
#: upload_file's ``md5=``).
BARE = TransferConfig(
    sender="thread", content_md5=False, payload_signing=False, part_size=5 * MiB,
    max_concurrency=2,
)  # fmt: skip


def target(url: str, bucket: str, key: str = "img/a b+c.raw") -> UploadTarget:
    return UploadTarget(
        access_key="testing", secret_key="testing", bucket=bucket, file=key, domain=url
    )


@pytest.fixture
def sendfile_jobs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lengths of the bodies the sender threads send with sendfile."""
    sent: list[int] = []
    original = sender_module._send_file

    def counting(conn: Any, job: Any) -> bool:
        sent.append(job.length)
        return original(conn, job)

    monkeypatch.setattr(sender_module, "_send_file", counting)
    return sent


# --------------------------------------------------------------------------
# The region body


def test_region_length_seek_and_read(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        region = FileRegion(fd, 1000, 2 * MiB)
        # botocore takes the length from len(): the region's, never the file's
        assert len(region) == determine_content_length(region) == 2 * MiB
        assert region.read(10) == data[1000:1010] and region.tell() == 10
        assert len(region) == 2 * MiB - 10
        assert region.seek(0) == 0 and region.read() == data[1000 : 1000 + 2 * MiB]
        assert region.read() == b"" and len(region) == 0
        region.seek(-5, io.SEEK_END)
        assert region.read() == data[1000 + 2 * MiB - 5 : 1000 + 2 * MiB]
        with pytest.raises(ValueError):
            region.seek(-1)
        # to_buffer: the bytes left in a part buffer reporting through on_read
        positions: list[int] = []
        region.on_read = positions.append
        region.seek(MiB)
        buffer = region.to_buffer()
        assert region.tell() == MiB and buffer.getvalue() == data[1000 + MiB : 1000 + 2 * MiB]
        buffer.read(100)
        assert positions == [MiB + 100]
        # a file that shrank: a typed error, never a short body
        os.truncate(path, 1000 + MiB)
        region.seek(0)
        with pytest.raises(SourceChangedError, match="shrank"):
            region.read()
        with pytest.raises(SourceChangedError):
            region.to_buffer()
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# The rule


async def test_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    http, https = "http://s3.local:9000", "https://s3.local"
    async with FileSource(path) as source:
        # regions on http and https (sendfile only on http: the sender's choice)
        assert sends_file_region(BARE, http, None, False, source)
        assert sends_file_region(BARE, "HTTP://S3.LOCAL", None, False, source)
        assert sends_file_region(BARE, https, None, False, source)
        assert sends_file_region(BARE, "HTTPS://S3.LOCAL", None, False, source)
        # every condition alone turns it off
        assert not sends_file_region(BARE, "ftp://s3.local", None, False, source)
        assert not sends_file_region(BARE, https, "md5", False, source)  # Content-MD5
        assert not sends_file_region(BARE, https, "crc32c", False, source)  # CRC32C
        assert not sends_file_region(BARE, https, None, True, source)  # whole-file MD5
        assert not sends_file_region(BARE, http, "md5", False, source)  # Content-MD5
        assert not sends_file_region(BARE, http, "crc32c", False, source)  # CRC32C
        assert not sends_file_region(BARE, http, None, True, source)  # whole-file MD5
        signed = TransferConfig(sender="thread", content_md5=False, payload_signing=True)
        assert not sends_file_region(signed, http, None, False, source)  # payload signing
        assert not sends_file_region(signed, https, None, False, source)
        aiohttp = TransferConfig(sender="aiohttp", content_md5=False)
        assert not sends_file_region(aiohttp, http, None, False, source)  # aiohttp sender
        assert not sends_file_region(aiohttp, https, None, False, source)
        # botocore's own flexible checksums read the body (or wrap it, over TLS)
        flexible = attrs.evolve(BARE, request_checksum_calculation="when_supported")
        assert not sends_file_region(flexible, http, None, False, source)
        assert not sends_file_region(flexible, https, None, False, source)
        source.regular = False  # a device or a pipe
        assert not sends_file_region(BARE, http, None, False, source)
        assert not sends_file_region(BARE, https, None, False, source)
    stream = StreamSource(io.BytesIO(b"x" * 100), 100)
    assert not sends_file_region(BARE, http, None, False, stream)


# --------------------------------------------------------------------------
# Whole uploads


async def test_upload_by_sendfile_is_byte_exact_on_moto(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, sendfile_jobs: list[int]
) -> None:
    data = os.urandom(13 * MiB + 5)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    events: list[TransferEvent] = []
    config = TransferConfig(
        sender="thread", content_md5=False, payload_signing=False, part_size=5 * MiB,
        max_concurrency=1,
    )  # fmt: skip
    result = await upload_file(
        target(s3_url, bucket), path, config=config, md5=False, progress=events.append
    )
    assert sorted(sendfile_jobs) == [3 * MiB + 5, 5 * MiB, 5 * MiB]
    assert result.size == len(data) and result.md5 is None
    got = boto3_s3.get_object(Bucket=bucket, Key="img/a b+c.raw")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert boto3_s3.head_object(Bucket=bucket, Key="img/a b+c.raw")["ETag"] == result.etag
    # progress: within parts (after each slice sent), up to the total
    sent = [e.bytes_sent_total for e in events if isinstance(e, BytesSent)]
    assert sent == sorted(sent) and sent[-1] == len(data)
    assert any(value % (5 * MiB) for value in sent[:-1])


async def test_single_put_by_sendfile(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, sendfile_jobs: list[int]
) -> None:
    data = os.urandom(MiB + 3)
    path = tmp_path / "small.raw"
    path.write_bytes(data)
    result = await upload_file(target(s3_url, bucket, "small"), path, config=BARE, md5=False)
    assert result.upload_id is None and sendfile_jobs == [len(data)]
    assert boto3_s3.get_object(Bucket=bucket, Key="small")["Body"].read() == data
    (tmp_path / "empty").write_bytes(b"")
    await upload_file(target(s3_url, bucket, "empty"), tmp_path / "empty", config=BARE, md5=False)
    assert sendfile_jobs == [len(data), 0]
    assert boto3_s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


async def test_integrity_on_reads_the_parts(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, sendfile_jobs: list[int]
) -> None:
    """The whole-file MD5 (or Content-MD5) needs the bytes: no region."""
    data = os.urandom(11 * MiB)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    result = await upload_file(target(s3_url, bucket), path, config=BARE, md5=True)
    assert result.md5 == hashlib.md5(data).hexdigest()
    config = TransferConfig(sender="thread", part_size=5 * MiB)  # Content-MD5 on
    await upload_file(target(s3_url, bucket, "other"), path, config=config, md5=False)
    assert sendfile_jobs == []


async def test_big_upload_by_sendfile_to_the_sink(
    s3_sink: Any, tmp_path: Path, sendfile_jobs: list[int]
) -> None:
    size = 96 * MiB + 17
    path = tmp_path / "big.raw"
    with path.open("wb") as handle:
        for _ in range(size // MiB):
            handle.write(os.urandom(MiB))
        handle.write(os.urandom(size % MiB))
    before = s3_sink.stats()
    config = TransferConfig(
        sender="thread", content_md5=False, payload_signing=False, part_size=8 * MiB,
        max_concurrency=4,
    )  # fmt: skip
    result = await upload_file(target(s3_sink.url, "bench"), path, config=config, md5=False)
    after = s3_sink.stats()
    assert result.size == size and len(result.parts) == 13
    assert after["parts"] - before["parts"] == 13
    assert after["part_bytes"] - before["part_bytes"] == size
    assert sorted(sendfile_jobs) == [17] + [8 * MiB] * 12  # a 17-byte last part too


async def test_file_shrinking_during_the_upload(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path
) -> None:
    """The file is cut after part 1: part 2's sendfile ends early → a
    SourceChangedError, no retry, the multipart upload aborted, no object."""
    path = tmp_path / "disk.raw"
    path.write_bytes(os.urandom(12 * MiB))
    config = TransferConfig(
        sender="thread", content_md5=False, payload_signing=False, part_size=5 * MiB,
        max_concurrency=1,
    )  # fmt: skip

    async def cut(point: str, info: dict[str, Any]) -> None:
        if point == "part:after" and info.get("part_number") == 1:
            os.truncate(path, 6 * MiB)

    with hooks.installed(cut), pytest.raises(SourceChangedError, match="shrank") as caught:
        await upload_file(target(s3_url, bucket), path, config=config, md5=False)
    assert caught.value.aborted and not caught.value.resumable
    assert not boto3_s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert boto3_s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


async def test_cancel_mid_sendfile_aborts_the_upload(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a sender thread is in sendfile: the upload task ends
    only after the thread left it, and the multipart upload is aborted."""
    path = tmp_path / "disk.raw"
    path.write_bytes(os.urandom(11 * MiB))
    started = threading.Event()
    trace: list[str] = []
    original = sender_module._send_file

    def held(conn: Any, job: Any) -> bool:
        trace.append("enter")
        started.set()
        try:
            for _ in range(6000):  # until the coroutine aborts the job (at most 30 s)
                if job.aborted:
                    break
                time.sleep(0.005)
            return original(conn, job)
        finally:
            trace.append("exit")

    monkeypatch.setattr(sender_module, "_send_file", held)
    config = TransferConfig(
        sender="thread", content_md5=False, payload_signing=False, part_size=5 * MiB,
        max_concurrency=1,
    )  # fmt: skip
    task = asyncio.ensure_future(
        upload_file(target(s3_url, bucket), path, config=config, md5=False)
    )
    assert await asyncio.to_thread(started.wait, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert trace == ["enter", "exit"]  # the thread was done before the task ended
    assert not boto3_s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # aborted
    assert boto3_s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
