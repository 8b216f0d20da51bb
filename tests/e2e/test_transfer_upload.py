"""Transfer engine against the real (moto) S3 server: single PUT, concurrent
multipart, streams, events.  Results are checked with an independent boto3
client."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from aioims import UploadTarget
from aioims.transfer import (
    BytesSent,
    EventStream,
    MiB,
    PartDone,
    PartStarted,
    SourceChangedError,
    TransferCompleted,
    TransferConfig,
    TransferEvent,
    TransferStarted,
    upload_file,
    upload_fileobj,
    upload_stream,
)

pytestmark = pytest.mark.timeout(120)

FAST = TransferConfig(part_size=5 * MiB, max_concurrency=4, backoff_base=0.01)


def make_target(s3_url: str, bucket: str) -> UploadTarget:
    return UploadTarget(
        access_key="testing",
        secret_key="testing",
        token="",
        bucket=bucket,
        file=f"img-{uuid.uuid4().hex[:8]}",
        domain=s3_url,
    )


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def stored(boto3_s3: Any, target: UploadTarget) -> bytes:
    body: bytes = boto3_s3.get_object(Bucket=target.bucket, Key=target.file)["Body"].read()
    return body


def no_uploads_left(boto3_s3: Any, bucket: str) -> bool:
    return not boto3_s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


async def test_small_file_single_put(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path
) -> None:
    data = write_random(tmp_path / "small.img", 100_000)
    target = make_target(s3_url, bucket)
    events: list[TransferEvent] = []
    result = await upload_file(target, tmp_path / "small.img", progress=events.append)
    assert result.upload_id is None
    assert len(result.parts) == 1 and result.parts[0].size == len(data)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.etag == f'"{result.md5}"'
    assert stored(boto3_s3, target) == data
    assert [type(e) for e in events] == [
        TransferStarted, PartStarted, PartDone, BytesSent, TransferCompleted,
    ]  # fmt: skip
    started = events[0]
    assert isinstance(started, TransferStarted) and started.upload_id is None


async def test_empty_file(s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    target = make_target(s3_url, bucket)
    result = await upload_file(target, tmp_path / "empty")
    assert result.size == 0 and result.md5 == hashlib.md5(b"").hexdigest()
    assert stored(boto3_s3, target) == b""


async def test_multipart_40_mib(s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path) -> None:
    data = write_random(tmp_path / "disk.img", 40 * MiB + 12345)
    target = make_target(s3_url, bucket)
    events: list[TransferEvent] = []
    result = await upload_file(target, tmp_path / "disk.img", config=FAST, progress=events.append)
    assert result.upload_id is not None
    assert [p.part_number for p in result.parts] == list(range(1, 10))
    assert sum(p.size for p in result.parts) == len(data) == result.size
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.resumed_parts == 0 and result.elapsed > 0
    body = stored(boto3_s3, target)
    assert hashlib.md5(body).hexdigest() == result.md5
    assert boto3_s3.head_object(Bucket=bucket, Key=target.file)["ETag"] == result.etag
    assert no_uploads_left(boto3_s3, bucket)
    # Events: one start, each part started and done once, totals grow to the size.
    assert isinstance(events[0], TransferStarted) and events[0].part_count == 9
    assert sorted(e.part_number for e in events if isinstance(e, PartStarted)) == list(range(1, 10))
    assert sorted(e.part_number for e in events if isinstance(e, PartDone)) == list(range(1, 10))
    totals = [e.bytes_sent_total for e in events if isinstance(e, BytesSent)]
    assert totals == sorted(totals) and totals[-1] == len(data)
    assert isinstance(events[-1], TransferCompleted) and events[-1].result == result


async def test_without_md5_and_content_md5(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path
) -> None:
    data = write_random(tmp_path / "disk.img", 11 * MiB)
    target = make_target(s3_url, bucket)
    config = TransferConfig(part_size=5 * MiB, max_concurrency=2, content_md5=False)
    result = await upload_file(target, tmp_path / "disk.img", config=config, md5=False)
    assert result.md5 is None and len(result.parts) == 3
    assert stored(boto3_s3, target) == data


async def test_event_stream_consumed_concurrently(s3_url: str, bucket: str, tmp_path: Path) -> None:
    write_random(tmp_path / "disk.img", 16 * MiB)
    target = make_target(s3_url, bucket)
    stream = EventStream(max_buffer=2)
    seen: list[TransferEvent] = []

    async def consume() -> None:
        async for event in stream:  # a slow consumer
            seen.append(event)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        result = await upload_file(target, tmp_path / "disk.img", config=FAST, progress=stream)
    assert isinstance(seen[-1], TransferCompleted) and seen[-1].result == result
    assert sorted(e.part_number for e in seen if isinstance(e, PartDone)) == [1, 2, 3, 4]


async def test_async_callback_and_raising_callback(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_random(tmp_path / "disk.img", 12 * MiB)
    seen: list[TransferEvent] = []

    async def slow(event: TransferEvent) -> None:
        await anyio.sleep(0.005)
        seen.append(event)
        if isinstance(event, PartDone):
            raise RuntimeError("observer bug")

    target = make_target(s3_url, bucket)
    result = await upload_file(target, tmp_path / "disk.img", config=FAST, progress=slow)
    assert isinstance(seen[-1], TransferCompleted)  # delivered before returning
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert "progress callback raised" in caplog.text

    def sync_bad(event: TransferEvent) -> None:
        raise ValueError("observer bug")

    target = make_target(s3_url, bucket)
    await upload_file(target, tmp_path / "disk.img", config=FAST, progress=sync_bad)
    assert stored(boto3_s3, target) == data


# -- streams -----------------------------------------------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        await anyio.sleep(0)
        yield data[offset : offset + size]


class _Reader:
    """Like aiohttp's StreamReader: ``async read(n)`` returns up to n bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    async def read(self, n: int = -1) -> bytes:
        await anyio.sleep(0)
        return self._data.read(min(n, 100_000))


async def test_upload_stream_async_iterable(s3_url: str, bucket: str, boto3_s3: Any) -> None:
    data = os.urandom(17 * MiB + 7)
    target = make_target(s3_url, bucket)
    events: list[TransferEvent] = []
    result = await upload_stream(
        target, _chunks(data, 777_777), size=len(data), config=FAST, progress=events.append
    )
    assert result.md5 == hashlib.md5(data).hexdigest() and len(result.parts) == 4
    assert stored(boto3_s3, target) == data
    assert isinstance(events[-1], TransferCompleted)


async def test_upload_stream_reader_and_small(s3_url: str, bucket: str, boto3_s3: Any) -> None:
    data = os.urandom(11 * MiB)
    target = make_target(s3_url, bucket)
    result = await upload_stream(target, _Reader(data), size=len(data), config=FAST)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert stored(boto3_s3, target) == data
    small = b"hello image"
    target = make_target(s3_url, bucket)
    result = await upload_stream(target, _Reader(small), size=len(small))
    assert result.upload_id is None and stored(boto3_s3, target) == small


async def test_upload_fileobj(s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path) -> None:
    data = write_random(tmp_path / "disk.img", 12 * MiB)
    target = make_target(s3_url, bucket)
    with open(tmp_path / "disk.img", "rb") as f:
        f.seek(1000)
        result = await upload_fileobj(target, f, config=FAST)
    assert result.size == len(data) - 1000
    assert stored(boto3_s3, target) == data[1000:]


@pytest.mark.parametrize("delta", [-1, +1])
async def test_stream_size_mismatch_aborts(
    s3_url: str, bucket: str, boto3_s3: Any, delta: int
) -> None:
    data = os.urandom(12 * MiB)
    target = make_target(s3_url, bucket)
    events: list[TransferEvent] = []
    with pytest.raises(SourceChangedError) as info:
        await upload_stream(
            target, _chunks(data, 1 << 20), size=len(data) + delta, config=FAST,
            progress=events.append,
        )  # fmt: skip
    assert info.value.aborted
    assert no_uploads_left(boto3_s3, bucket)


async def test_stream_source_error_propagates_and_aborts(
    s3_url: str, bucket: str, boto3_s3: Any
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(6 * MiB)
        raise ConnectionResetError("source download broke")

    target = make_target(s3_url, bucket)
    with pytest.raises(ConnectionResetError):
        await upload_stream(target, broken(), size=20 * MiB, config=FAST)
    assert no_uploads_left(boto3_s3, bucket)


class _CountingLimiter:
    """A shared part budget (like the migration's FairPartLimiter)."""

    def __init__(self, limit: int) -> None:
        self.semaphore = anyio.Semaphore(limit)
        self.in_use = 0
        self.max_in_use = 0
        self.owners: set[object] = set()

    async def acquire(self, owner: object, nbytes: int) -> None:
        await self.semaphore.acquire()
        self.owners.add(owner)
        self.in_use += 1
        self.max_in_use = max(self.max_in_use, self.in_use)

    def release(self, owner: object) -> None:
        self.in_use -= 1
        self.semaphore.release()


async def test_shared_part_limiter(s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path) -> None:
    data = write_random(tmp_path / "disk.img", 21 * MiB)
    limiter = _CountingLimiter(3)
    config = TransferConfig(part_size=5 * MiB, max_concurrency=4, part_limiter=limiter)
    targets = [make_target(s3_url, bucket) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for target in targets[:2]:
            tg.start_soon(lambda t=target: upload_file(t, tmp_path / "disk.img", config=config))
        tg.start_soon(
            lambda: upload_stream(targets[2], _chunks(data, 1 << 20), size=len(data), config=config)
        )
    assert 1 < limiter.max_in_use <= 3 and limiter.in_use == 0
    assert len(limiter.owners) == 3
    for target in targets:
        assert stored(boto3_s3, target) == data
    # A failing transfer gives its slots back too.
    with pytest.raises(SourceChangedError):
        await upload_stream(targets[0], _chunks(data, 1 << 20), size=len(data) + 1, config=config)
    assert limiter.in_use == 0
