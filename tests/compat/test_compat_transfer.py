"""The transfer engine against every S3 server of the suite (moto, radosgw
over HTTP and HTTPS with a private CA), with STS session credentials:
upload shapes, odd keys, streams, and the driver's rules where servers
differ (issue #11).  Results are checked with boto3 as an independent
client."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiobotocore.session import get_session
from compat_servers import S3Server

from aioims.transfer import (
    MiB,
    PartDone,
    S3TransferError,
    TransferEvent,
    TransferFailed,
    upload_file,
    upload_fileobj,
    upload_stream,
)
from aioims.transfer._engine import multipart_etag

# a real S3 server, seconds per test: the slow lane
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def write(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def check_stored(server: S3Server, bucket: str, key: str, data: bytes, result: Any) -> None:
    """What landed is the data; the result's ETag is the object's ETag."""
    assert server.body(bucket, key) == data
    head = server.head(bucket, key)
    assert head is not None and head["ContentLength"] == len(data)
    assert result.etag == head["ETag"], "TransferResult.etag must be the object's ETag"
    assert result.md5 == hashlib.md5(data).hexdigest()
    if result.upload_id is not None:
        assert multipart_etag(result.parts) == head["ETag"]
    assert server.uploads(bucket) == []


# size x part size x concurrency: 0 B, 1 B, the single-PUT / multipart edge,
# a 1-byte last part, several parts (5 MiB parts, 4 at a time); then several
# parts one at a time, and 6 MiB parts (not a multiple of 5 MiB).
SHAPES = [
    *[(size, 5 * MiB, 4) for size in (0, 1, 5 * MiB - 1, 5 * MiB, 5 * MiB + 1, 16 * MiB + 3)],
    (16 * MiB + 3, 5 * MiB, 1),
    (16 * MiB + 3, 6 * MiB, 3),
]


@pytest.mark.parametrize(
    ("size", "part_size", "concurrency"),
    SHAPES,
    ids=[f"{s}B-p{p // MiB}M-c{c}" for s, p, c in SHAPES],
)
async def test_upload_shapes(
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    size: int,
    part_size: int,
    concurrency: int,
) -> None:
    data = write(tmp_path / "disk.img", size)
    target = s3_server.target(bucket)
    config = s3_server.config(part_size=part_size, max_concurrency=concurrency)
    result = await upload_file(target, tmp_path / "disk.img", config=config)
    multipart = size >= 5 * MiB
    assert (result.upload_id is not None) is multipart
    assert len(result.parts) == (-(-size // part_size) if multipart else 1)
    check_stored(s3_server, bucket, target.file, data, result)


#: (key, multipart?): URL encoding of the key in every request of an upload.
ODD_KEYS = [
    ("dir/sub/disk.qcow2", False),
    ("with space and +plus", True),
    ("unicode-é-ü-日本語", True),
    ("percent%20and%2Fslash", False),
    ("query?mark#hash&amp=1", True),
    ("a//double//slash", False),
    ("~tilde!$'()*,;=@[]", True),
    ("k" * 200, False),
]


async def test_odd_keys(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    for key, multipart in ODD_KEYS:
        data = write(tmp_path / "disk.img", 5 * MiB + 17 if multipart else 1000)
        target = s3_server.target(bucket, key)
        result = await upload_file(target, tmp_path / "disk.img", config=s3_server.config())
        assert (result.upload_id is not None) is multipart
        check_stored(s3_server, bucket, key, data, result)


async def test_upload_stream_and_fileobj(s3_server: S3Server, bucket: str) -> None:
    data = os.urandom(11 * MiB + 5)

    async def chunks() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(data), 1 * MiB + 7):
            yield bytes(view[start : start + 1 * MiB + 7])

    target = s3_server.target(bucket)
    result = await upload_stream(target, chunks(), size=len(data), config=s3_server.config())
    check_stored(s3_server, bucket, target.file, data, result)

    target = s3_server.target(bucket)
    result = await upload_fileobj(target, io.BytesIO(data), config=s3_server.config())
    check_stored(s3_server, bucket, target.file, data, result)


@pytest.mark.parametrize("rgw_server", ["rgw-https"], indirect=True)  # a certificate to check
async def test_https_without_the_ca_is_refused(rgw_server: S3Server, tmp_path: Path) -> None:
    write(tmp_path / "f", 10)
    target = rgw_server.target(rgw_server.new_bucket())
    config = rgw_server.config(ca_bundle=None)
    with pytest.raises(S3TransferError) as info:
        await upload_file(target, tmp_path / "f", config=config)
    assert info.value.code == "SSLError" and info.value.attempts == 1


@pytest.mark.parametrize("rgw_server", ["rgw-https"], indirect=True)  # trailers: HTTPS only
async def test_https_with_botocore_default_checksums_is_refused(
    rgw_server: S3Server, tmp_path: Path
) -> None:
    """Pins the quirk behind aioims' "when_required" default: over HTTPS,
    botocore's "when_supported" sends aws-chunked bodies with a checksum
    trailer, which radosgw 16.2 refuses (411 MissingContentLength)."""
    write(tmp_path / "f", 1000)
    target = rgw_server.target(rgw_server.new_bucket())
    config = rgw_server.config(request_checksum_calculation="when_supported")
    with pytest.raises(S3TransferError) as info:
        await upload_file(target, tmp_path / "f", config=config)
    assert info.value.http_status == 411 and info.value.code == "MissingContentLength"


# -- the driver's rules where servers differ -------------------------------------------


async def cancel_after_parts(
    target: Any, path: Path, checkpoint: Path, parts: int, config: Any
) -> list[TransferEvent]:
    events: list[TransferEvent] = []
    with anyio.CancelScope() as scope:

        def progress(event: TransferEvent) -> None:
            events.append(event)
            if sum(isinstance(e, PartDone) for e in events) >= parts:
                scope.cancel()

        await upload_file(target, path, config=config, progress=progress, checkpoint=checkpoint)
    assert scope.cancelled_caught
    return events


async def test_resume_after_an_outside_abort_starts_over(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Issue #11 (2): radosgw answers ListParts of a gone upload with 404
    NoSuchKey; the resume must start a new upload, not fail for ever."""
    data = write(tmp_path / "disk.img", 16 * MiB)
    checkpoint = tmp_path / "disk.img.upload.json"
    target = s3_server.target(bucket)
    config = s3_server.config(max_concurrency=1)
    await cancel_after_parts(target, tmp_path / "disk.img", checkpoint, 1, config)
    assert checkpoint.exists()
    (upload_id,) = s3_server.uploads(bucket)
    s3_server.admin.abort_multipart_upload(Bucket=bucket, Key=target.file, UploadId=upload_id)

    result = await upload_file(target, tmp_path / "disk.img", config=config, checkpoint=checkpoint)
    assert result.upload_id != upload_id and result.resumed_parts == 0
    check_stored(s3_server, bucket, target.file, data, result)
    assert not checkpoint.exists()


class CompleteHook:
    """An ``s3_client_factory`` wrapping real aiobotocore clients, to act
    around CompleteMultipartUpload."""

    def __init__(self, server: S3Server, mode: str) -> None:
        self.server = server
        self.mode = mode  # "hang-after" | "hang-before" | "abort-before"
        self.reached = anyio.Event()
        self.completes = 0

    def factory(self, kwargs: dict[str, Any]) -> Any:
        @contextlib.asynccontextmanager
        async def open_client() -> AsyncIterator[Any]:
            async with get_session().create_client("s3", **kwargs) as client:
                yield _Hooked(client, self)

        return open_client()


class _Hooked:
    def __init__(self, client: Any, hook: CompleteHook) -> None:
        self._client = client
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def complete_multipart_upload(self, **kw: Any) -> Any:
        hook = self._hook
        hook.completes += 1
        if hook.mode == "hang-before":
            hook.reached.set()
            await anyio.sleep_forever()
        if hook.mode == "abort-before" and hook.completes == 1:
            admin = hook.server.admin
            await anyio.to_thread.run_sync(
                lambda: admin.abort_multipart_upload(
                    Bucket=kw["Bucket"], Key=kw["Key"], UploadId=kw["UploadId"]
                )
            )
        answer = await self._client.complete_multipart_upload(**kw)
        if hook.mode == "hang-after":
            hook.reached.set()
            await anyio.sleep_forever()
        return answer


async def cancel_at_complete(
    server: S3Server, target: Any, path: Path, mode: str
) -> TransferFailed:
    hook = CompleteHook(server, mode)
    events: list[TransferEvent] = []
    config = server.config(s3_client_factory=hook.factory)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await upload_file(target, path, config=config, progress=events.append)

        tg.start_soon(run)
        await hook.reached.wait()
        tg.cancel_scope.cancel()
    failed = [e for e in events if isinstance(e, TransferFailed)]
    assert len(failed) == 1 and failed[0].cancelled
    return failed[0]


async def test_cancel_after_the_server_completed_is_not_reported_aborted(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Issue #11 (3): a cancel while CompleteMultipartUpload is in flight,
    after the server completed: the abort finds the upload gone, but the
    object exists, so the failure must not say aborted=True."""
    data = write(tmp_path / "disk.img", 5 * MiB + 1)
    target = s3_server.target(bucket)
    failed = await cancel_at_complete(s3_server, target, tmp_path / "disk.img", "hang-after")
    assert s3_server.body(bucket, target.file) == data
    assert not failed.aborted, "the object exists: the upload was completed, not aborted"
    assert s3_server.uploads(bucket) == []


async def test_cancel_before_the_server_completed_is_aborted(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    write(tmp_path / "disk.img", 5 * MiB + 1)
    target = s3_server.target(bucket)
    failed = await cancel_at_complete(s3_server, target, tmp_path / "disk.img", "hang-before")
    assert failed.aborted
    assert s3_server.head(bucket, target.file) is None
    assert s3_server.uploads(bucket) == []


async def test_complete_of_an_aborted_upload_is_not_retried_as_transient(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Issue #11 (5): radosgw answers completing an aborted upload with 500
    InternalError; the upload is gone, retrying it (as transient) is futile."""
    write(tmp_path / "disk.img", 5 * MiB + 1)
    target = s3_server.target(bucket)
    hook = CompleteHook(s3_server, "abort-before")
    config = s3_server.config(s3_client_factory=hook.factory, max_attempts_per_part=5)
    with pytest.raises(S3TransferError) as info:
        await upload_file(target, tmp_path / "disk.img", config=config)
    assert hook.completes <= 2, f"Complete sent {hook.completes} times to a gone upload"
    assert not info.value.transient and not info.value.resumable
    assert s3_server.head(bucket, target.file) is None
    assert s3_server.uploads(bucket) == []


@pytest.mark.parametrize("s3_server", ["moto", "rgw-http"], indirect=True)  # server-independent
async def test_checkpoint_temp_files_of_a_killed_writer_are_cleaned(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Issue #11 (6): a SIGKILL during a checkpoint write leaves a temp file
    next to the checkpoint; the next run with that checkpoint removes it."""
    data = write(tmp_path / "disk.img", 5 * MiB + 1)
    checkpoint = tmp_path / "disk.img.upload.json"
    dead_pid = 4_194_304 + 4242  # above Linux's pid_max: never a live process
    stale = tmp_path / f".{checkpoint.name}.{dead_pid}.{uuid.uuid4().hex[:8]}.tmp"
    stale.write_text('{"partial": ')
    target = s3_server.target(bucket)
    result = await upload_file(
        target, tmp_path / "disk.img", config=s3_server.config(), checkpoint=checkpoint
    )
    check_stored(s3_server, bucket, target.file, data, result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.img"]


# -- per-part checksums: CRC32C where honoured, Content-MD5 where not ---------------------


async def test_part_checksums_crc32c_and_auto(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """``part_checksum="crc32c"`` (declared at CreateMultipartUpload, every
    part's CRC32C in Complete) is accepted, and resumed by a run configured
    for Content-MD5 (the upload's algorithm wins); ``"auto"`` probes once and
    finds that the server ignores CRC32C (radosgw 16, moto), whose probe
    object the upload overwrites."""
    from aioims.transfer import checksums

    data = write(tmp_path / "disk.img", 16 * MiB + 3)
    checkpoint = tmp_path / "disk.img.upload.json"
    target = s3_server.target(bucket)
    crc = s3_server.config(part_checksum="crc32c", max_concurrency=1)
    await cancel_after_parts(target, tmp_path / "disk.img", checkpoint, 2, crc)
    assert checkpoint.exists()
    md5_config = s3_server.config(part_checksum="md5")
    result = await upload_file(target, tmp_path / "disk.img", config=md5_config,
                               checkpoint=checkpoint)  # fmt: skip
    assert result.resumed_parts >= 2 and all(p.checksum_crc32c for p in result.parts)
    check_stored(s3_server, bucket, target.file, data, result)

    checksums.forget_probes()
    try:
        target = s3_server.target(bucket)
        result = await upload_file(target, tmp_path / "disk.img",
                                   config=s3_server.config(part_checksum="auto"))  # fmt: skip
        assert checksums.cached_probe(s3_server.endpoint) is False
        assert all(p.checksum_crc32c is None for p in result.parts)
        check_stored(s3_server, bucket, target.file, data, result)
    finally:
        checksums.forget_probes()
