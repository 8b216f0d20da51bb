"""Resumable uploads: checkpoint files, reconciliation with ListParts, and a
child process killed with SIGKILL mid-upload."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from aioims import UploadTarget
from aioims.emulator.s3front import FaultRule, S3Front
from aioims.transfer import (
    MiB,
    PartDone,
    PartStarted,
    TransferConfig,
    TransferEvent,
    TransferFailed,
    TransferStarted,
    upload_file,
)

pytestmark = pytest.mark.timeout(180)

CONFIG = TransferConfig(part_size=5 * MiB, max_concurrency=2, checkpoint_interval=0.05)


@pytest.fixture
async def front(s3_url: str) -> AsyncIterator[S3Front]:
    async with S3Front(upstream=s3_url) as proxy:
        yield proxy


def front_target(front: S3Front, bucket: str, key: str) -> UploadTarget:
    creds = front.issue_credentials(lifetime=3600.0)
    return UploadTarget(
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        token=creds.token,
        bucket=bucket,
        file=key,
        domain=front.url,
    )


def new_key() -> str:
    return f"img-{uuid.uuid4().hex[:8]}"


def stored_md5(boto3_s3: Any, bucket: str, key: str) -> str:
    body = boto3_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.md5(body).hexdigest()


def uploads_left(boto3_s3: Any, bucket: str) -> list[str]:
    return [
        u["UploadId"] for u in boto3_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]


async def cancel_after(
    target: UploadTarget, path: Path, checkpoint: Path, parts: int, **kw: Any
) -> list[TransferEvent]:
    """Run an upload with a checkpoint and cancel it after ``parts`` parts."""
    events: list[TransferEvent] = []
    with anyio.CancelScope() as scope:

        def progress(event: TransferEvent) -> None:
            events.append(event)
            if sum(isinstance(e, PartDone) for e in events) >= parts:
                scope.cancel()

        await upload_file(
            target, path, config=CONFIG, progress=progress, checkpoint=checkpoint, **kw
        )
    assert scope.cancelled_caught
    return events


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(38 * MiB)  # 8 parts of 5 MiB
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, data


async def test_cancel_then_resume_sends_only_missing_parts(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    key = new_key()
    checkpoint = tmp_path / "state" / "disk.img.upload.json"
    checkpoint.parent.mkdir()
    target = front_target(front, bucket, key)
    events = await cancel_after(target, path, checkpoint, 3, image_id="img-42")
    failed = events[-1]
    assert isinstance(failed, TransferFailed) and failed.cancelled and failed.resumable
    assert not failed.aborted and front.stats.count("AbortMultipartUpload") == 0

    # The upload and its checkpoint are left for a later run.
    started = events[0]
    assert isinstance(started, TransferStarted) and started.upload_id
    assert uploads_left(boto3_s3, bucket) == [started.upload_id]
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o600
    text = checkpoint.read_text()
    for secret in (target.access_key, target.secret_key, target.token, front.url):
        assert secret not in text
    state = json.loads(text)
    assert state["upload_id"] == started.upload_id and state["image_id"] == "img-42"
    assert state["bucket"] == bucket and state["key"] == key
    assert state["source"]["size"] == len(data) and state["part_size"] == 5 * MiB
    done = {p["part_number"] for p in state["parts"]}
    assert len(done) >= 3
    # A part the checkpoint claims but S3 does not have is sent again.
    state["parts"].append({"part_number": 8, "etag": '"0123"', "size": 3 * MiB})
    checkpoint.write_text(json.dumps(state))
    listed = boto3_s3.list_parts(Bucket=bucket, Key=key, UploadId=started.upload_id)
    on_s3 = {p["PartNumber"] for p in listed.get("Parts", [])}

    front.stats.reset()
    second: list[TransferEvent] = []
    result = await upload_file(
        front_target(front, bucket, key), path, config=CONFIG, progress=second.append,
        checkpoint=checkpoint, image_id="img-42",
    )  # fmt: skip
    sent = {e.part_number for e in second if isinstance(e, PartStarted)}
    # ListParts may know a part or two more than the checkpoint (in flight at
    # the cancellation): those are not sent again either.
    assert done <= on_s3 and 8 not in on_s3
    assert sent == set(range(1, 9)) - on_s3
    assert set(front.stats.part_numbers) == sent  # what really reached S3
    assert front.stats.count("CreateMultipartUpload") == 0
    assert front.stats.count("ListParts") == 1
    assert result.upload_id == started.upload_id and result.resumed_parts == len(on_s3)
    resumed = second[0]
    assert isinstance(resumed, TransferStarted) and resumed.resumed_parts == len(on_s3)
    assert result.md5 == hashlib.md5(data).hexdigest() == stored_md5(boto3_s3, bucket, key)
    assert [p.part_number for p in result.parts] == list(range(1, 9))
    assert not checkpoint.exists()
    assert not uploads_left(boto3_s3, bucket)


async def test_changed_file_starts_over(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = image
    key = new_key()
    checkpoint = tmp_path / "cp.json"
    events = await cancel_after(front_target(front, bucket, key), path, checkpoint, 2)
    stale = events[0]
    assert isinstance(stale, TransferStarted)
    new_data = os.urandom(27 * MiB)
    path.write_bytes(new_data)  # other size and mtime
    result = await upload_file(
        front_target(front, bucket, key), path, config=CONFIG, checkpoint=checkpoint
    )
    assert result.resumed_parts == 0 and result.upload_id != stale.upload_id
    assert stored_md5(boto3_s3, bucket, key) == hashlib.md5(new_data).hexdigest() == result.md5
    assert not uploads_left(boto3_s3, bucket)  # the stale upload was aborted
    assert not checkpoint.exists()


async def test_vanished_upload_starts_over(
    front: S3Front, bucket: str, boto3_s3: Any, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    key = new_key()
    checkpoint = tmp_path / "cp.json"
    events = await cancel_after(front_target(front, bucket, key), path, checkpoint, 2)
    stale = events[0]
    assert isinstance(stale, TransferStarted)
    boto3_s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=stale.upload_id)
    result = await upload_file(
        front_target(front, bucket, key), path, config=CONFIG, checkpoint=checkpoint
    )
    assert result.resumed_parts == 0 and result.upload_id != stale.upload_id
    assert stored_md5(boto3_s3, bucket, key) == hashlib.md5(data).hexdigest()


async def test_list_parts_is_paginated(
    front: S3Front,
    bucket: str,
    boto3_s3: Any,
    image: tuple[Path, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aioims.transfer import _engine

    monkeypatch.setattr(_engine, "LIST_PARTS_PAGE", 2)
    path, data = image
    key = new_key()
    checkpoint = tmp_path / "cp.json"
    await cancel_after(front_target(front, bucket, key), path, checkpoint, 5)
    done = {p["part_number"] for p in json.loads(checkpoint.read_text())["parts"]}
    front.stats.reset()
    result = await upload_file(
        front_target(front, bucket, key), path, config=CONFIG, checkpoint=checkpoint
    )
    assert result.resumed_parts >= len(done) >= 5
    assert front.stats.count("ListParts") >= 3  # >= 5 parts, 2 per page
    assert stored_md5(boto3_s3, bucket, key) == hashlib.md5(data).hexdigest()


CHILD = textwrap.dedent(
    """
    import sys
    import anyio
    from aioims import UploadTarget
    from aioims.transfer import MiB, TransferConfig, upload_file

    url, key_id, secret, token, bucket, key, path, checkpoint = sys.argv[1:9]
    target = UploadTarget(access_key=key_id, secret_key=secret, token=token,
                          bucket=bucket, file=key, domain=url)
    config = TransferConfig(part_size=5 * MiB, max_concurrency=2, checkpoint_interval=0.05)
    anyio.run(lambda: upload_file(target, path, config=config, checkpoint=checkpoint))
    print("FINISHED")
    """
)


async def test_killed_process_resumes(
    front: S3Front, bucket: str, boto3_s3: Any, tmp_path: Path
) -> None:
    data = os.urandom(64 * MiB)  # 13 parts
    path = tmp_path / "big.img"
    path.write_bytes(data)
    key = new_key()
    checkpoint = tmp_path / "big.img.upload.json"
    # Slow the parts down so the child is surely killed half-way.
    front.faults.add(FaultRule(operation="UploadPart", action="delay", delay=0.3, times=None))
    target = front_target(front, bucket, key)
    child = await anyio.open_process(
        [sys.executable, "-c", CHILD, front.url, target.access_key, target.secret_key,
         target.token, bucket, key, str(path), str(checkpoint)],
    )  # fmt: skip
    done: set[int] = set()
    try:
        with anyio.fail_after(60):
            while len(done) < 3:
                await anyio.sleep(0.02)
                if checkpoint.exists():
                    try:
                        parts = json.loads(checkpoint.read_text())["parts"]
                    except ValueError:
                        continue  # never happens with atomic writes, but be safe
                    done = {p["part_number"] for p in parts}
        child.send_signal(signal.SIGKILL)
        await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await child.aclose()
    assert child.returncode == -signal.SIGKILL
    assert len(done) < 13 and uploads_left(boto3_s3, bucket)

    front.faults.clear()
    front.stats.reset()
    state = json.loads(checkpoint.read_text())
    on_disk = {p["part_number"] for p in state["parts"]}
    events: list[TransferEvent] = []
    result = await upload_file(
        front_target(front, bucket, key), path, config=CONFIG, checkpoint=checkpoint,
        progress=events.append,
    )  # fmt: skip
    sent = {e.part_number for e in events if isinstance(e, PartStarted)}
    assert sent.isdisjoint(on_disk) and len(sent) < 13
    assert sorted(front.stats.part_numbers) == sorted(sent)
    assert result.resumed_parts == 13 - len(sent) >= len(on_disk)
    assert result.upload_id == state["upload_id"]
    assert result.md5 == hashlib.md5(data).hexdigest() == stored_md5(boto3_s3, bucket, key)
    assert not checkpoint.exists()
    assert not uploads_left(boto3_s3, bucket)
